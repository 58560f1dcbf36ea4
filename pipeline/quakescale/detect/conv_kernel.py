"""The CERP detector's first block (normalise, Conv1d k=3, MaxPool 2, ReLU), compiled (numba), for
:mod:`.cpu_detector`.

oneDNN runs that block slowly on a CPU: with 3 input channels its kernels, which vectorise over
channels, have next to nothing to vectorise (a day's 5,760 windows: ~0.09 s on 2 threads, a third
of the detector).  Here the window's samples are split into even and odd ones, so the
convolution at ``2p`` (taps ``2p-1 .. 2p+1``) and at ``2p+1`` (``2p .. 2p+2``) read both streams
at ``p`` and ``p + 1``: unit strides, vectorised over the output positions.  Each window is read
straight from the station-day (no gathered copy), less its first sample per component, summed
on the way (float64); the convolution runs on those samples, and the window's normalisation
(:func:`~.models.normalize_windows`: component means, the window's standard deviation) is
applied to its output: normalising is linear, and the max-pool commutes with a positive scale
and a shift shared by both positions of a pair; the zero padding of the normalised window is
the component's mean here.
"""

from __future__ import annotations

import numpy as np

from .gru_kernel import _jit


@_jit()
def _conv_pool3(xe, xo, w, y):
    """``max(conv at 2p, conv at 2p + 1)`` without the bias, for 3 input channels (a constant: the
    loop over positions vectorises)."""
    half = y.shape[1]
    xe0, xe1, xe2 = xe[0], xe[1], xe[2]
    xo0, xo1, xo2 = xo[0], xo[1], xo[2]
    for o in range(w.shape[0]):
        w00, w01, w02 = w[o, 0, 0], w[o, 0, 1], w[o, 0, 2]
        w10, w11, w12 = w[o, 1, 0], w[o, 1, 1], w[o, 1, 2]
        w20, w21, w22 = w[o, 2, 0], w[o, 2, 1], w[o, 2, 2]
        yo = y[o]
        for p in range(half):
            ev = (
                (w00 * xo0[p] + w01 * xe0[p] + w02 * xo0[p + 1])
                + (w10 * xo1[p] + w11 * xe1[p] + w12 * xo1[p + 1])
                + (w20 * xo2[p] + w21 * xe2[p] + w22 * xo2[p + 1])
            )
            od = (
                (w00 * xe0[p] + w01 * xo0[p + 1] + w02 * xe0[p + 1])
                + (w10 * xe1[p] + w11 * xo1[p + 1] + w12 * xe1[p + 1])
                + (w20 * xe2[p] + w21 * xo2[p + 1] + w22 * xe2[p + 1])
            )
            yo[p] = max(ev, od)


@_jit()
def first_block(data, starts, n_in, w, b, out):
    """``relu(max_pool(conv1d(normalize(window), w, b, padding=1), 2))`` of the ``n_in``-sample
    windows of ``data`` (C, N) at ``starts``, written channels-last into ``out`` (B, n_in // 2,
    C_out).  ``w`` (C_out, C, 3), ``b`` (C_out,); ``n_in`` even."""
    c_in, c_out = data.shape[0], w.shape[0]
    half = n_in // 2
    xe = np.empty((c_in, half + 1), np.float32)  # x[2p] - x0, then the padding at x[n_in]
    xo = np.empty((c_in, half + 1), np.float32)  # the padding at x[-1], then x[2p + 1] - x0
    y = np.empty((c_out, half), np.float32)
    mean = np.empty(c_in, np.float32)
    ksum = np.empty((c_out, c_in), np.float32)  # the taps' sums: a constant's convolution
    for o in range(c_out):
        for c in range(c_in):
            ksum[o, c] = w[o, c, 0] + w[o, c, 1] + w[o, c, 2]
    shift = np.empty(c_out, np.float32)
    for bi in range(len(starts)):
        s = starts[bi]
        ss = 0.0
        for c in range(c_in):  # split into even and odd samples; then the sums (float64)
            # less the window's first sample: the raw products keep their precision on an offset
            x0 = data[c, s] if np.isfinite(data[c, s]) else np.float32(0.0)
            d = data[c, s : s + n_in]
            xec, xoc = xe[c], xo[c]
            for p in range(half):
                xec[p] = d[2 * p] - x0
                xoc[p + 1] = d[2 * p + 1] - x0
            # a loop of its own: with the sums in the split loop neither vectorised (0.058 s for
            # a day's windows against 0.010 s + 0.010 s apart)
            acc, acc2 = 0.0, 0.0
            for i in range(n_in):
                v = np.float64(d[i] - x0)
                acc += v
                acc2 += v * v
            m = acc / n_in
            mean[c] = np.float32(m)
            ss += acc2 - n_in * m * m
            xo[c, 0] = mean[c]  # the zero padding of the normalised window is the mean here
            xe[c, half] = mean[c]
        inv = np.float32(1.0 / (np.sqrt(max(ss, 0.0) / (c_in * n_in - 1)) + 1e-10))
        _conv_pool3(xe, xo, w, y)  # unnormalised: normalising commutes with the max (inv > 0)
        for o in range(c_out):
            sh = np.float32(0.0)
            for c in range(c_in):
                sh += mean[c] * ksum[o, c]
            shift[o] = sh
        for p in range(half):
            for o in range(c_out):
                out[bi, p, o] = max((y[o, p] - shift[o]) * inv + b[o], np.float32(0.0))
