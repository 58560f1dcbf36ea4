"""Per-pick and per-window waveform measures of a station-day, compiled (numba): the AIC onset
and contrast of :func:`quakescale.detect.refine.refine_indices`, the SNR of
:func:`quakescale.detect.runner.pick_snrs`, and the flat-top search and block preparation of the
WA amplitudes (:mod:`quakescale.detect.amplitude`).

They read each pick's few hundred samples straight from the station-day (no gathered
``(picks, samples)`` float64 copies) and follow the numpy arithmetic step by step, with numpy's
own summation order where numpy sums pairwise (:func:`_pairwise`: a row's mean, the mean square
before a pick), and no fast-math, so the results are numpy's numbers bit for bit; the AIC
curves' logarithms are taken by numpy itself (its vectorised ``log``, ~5x quicker than the C
library's one value at a time).  The one exception: the S envelope's squares are ``n^2 + e^2``
where numpy squares ``hypot(n, e)`` (:func:`snrs`; a few float64 units in the last place, not
seen in the float32 SNR on the bench days).
An aftershock day (30,000 merged picks to screen, 7,700 kept): onsets 0.09 -> 0.05 CPU-s, SNRs
0.09 -> ~0.01 s.

Compiled on first use and cached on disk like the picker's kernels; where numba is missing or
broken, :func:`available` is False and the numpy code serves (one warning).
"""

from __future__ import annotations

import math
import threading

import numpy as np
from numba import njit

from .gru_kernel import _jit as _strict_jit

_TINY = 1e-30


_jit = _strict_jit(strict=True)  # no fast-math: numpy's operations in numpy's order


@_jit
def _block(a, lo, n):
    """numpy's sum of a run of <= 128 values: 8 accumulators, then the remainder in order."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    while i < n - (n % 8):
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@_jit
def _pairwise(a, lo, n):
    """``a[lo:lo + n]`` summed (float64) in numpy's pairwise order (``np.add.reduce`` of a
    contiguous run: runs of > 128 halved on a multiple of 8, each half summed so, blocks of
    <= 128 by :func:`_block`), without recursion (numba's disk cache cannot load a recursive
    function): the halves are walked depth first on an explicit stack of partial sums."""
    if n <= 128:
        return _block(a, lo, n)
    # depth <= log2(n / 128) + 1: 64 levels cover any length
    st_lo = np.empty(64, np.int64)
    st_n = np.empty(64, np.int64)
    st_sum = np.empty(64)
    st_state = np.zeros(64, np.int64)  # 0: left half next, 1: right half next, 2: done
    d = 0
    st_lo[0], st_n[0], st_state[0] = lo, n, 0
    while True:
        m = st_n[d]
        if m <= 128 or st_state[d] == 2:  # a leaf, or both halves summed: the value goes up
            v = _block(a, st_lo[d], m) if m <= 128 else st_sum[d]
            d -= 1
            if d < 0:
                return v
            if st_state[d] == 0:
                st_sum[d] = v
                st_state[d] = 1
            else:
                st_sum[d] = st_sum[d] + v
                st_state[d] = 2
            continue
        h = m // 2
        h -= h % 8
        left = st_state[d] == 0  # descend left first, then right
        st_lo[d + 1], st_n[d + 1], st_state[d + 1] = st_lo[d] + (0 if left else h), h if left else m - h, 0
        d += 1


def _floor(v):
    return v if not (v < _TINY) else _TINY  # np.maximum(v, 1e-30): NaN stays NaN


_floor = njit(inline="always")(_floor)


@_jit
def aic_variances(data, comps, i0, w, v):
    """The two variances of Maeda's AIC, floored at 1e-30 as ``refine.aic_curves`` floors them,
    of the windows ``data[c, i0[r]:i0[r] + w]`` of the components ``comps``: ``v[0, r, ci, k - 1]``
    of the first ``k`` samples and ``v[1, r, ci, k - 1]`` of the rest, k = 1 .. w - 2 (the
    demeaned window's running sums; its mean in numpy's pairwise order)."""
    x = np.empty(w)
    c0 = np.empty(w)
    c1 = np.empty(w)
    for r in range(len(i0)):
        base = i0[r]
        for ci in range(len(comps)):
            row = data[comps[ci]]
            for j in range(w):
                x[j] = np.float64(row[base + j])
            mean = _pairwise(x, 0, w) / w
            s0, s1 = 0.0, 0.0
            for j in range(w):
                u = x[j] - mean
                s0 += u
                s1 += u * u
                c0[j] = s0
                c1[j] = s1
            for k in range(1, w - 1):
                n2 = w - k
                a0 = c0[k - 1] / k
                v[0, r, ci, k - 1] = _floor(c1[k - 1] / k - a0 * a0)
                b0 = (c0[w - 1] - c0[k - 1]) / n2
                v[1, r, ci, k - 1] = _floor((c1[w - 1] - c1[k - 1]) / n2 - b0 * b0)


@_jit
def onsets_from_logs(lv, data, comps, i0, w, nc, ne, k_out, con_out):
    """Per window: Maeda's AIC ``k log v1 + (w - k - 1) log v2`` from the logarithms ``lv`` of
    :func:`aic_variances`, summed over the components in order, its first minimum away from
    the window's edges (``ne - 1`` split points each side; the first NaN if any, as
    ``np.argmin``) -> ``k_out[r]``, and the after/before RMS contrast there from the energy of
    the components over ``[i0 - nc, i0 + w + nc)`` -> ``con_out[r]``."""
    m = w - 2
    ln = w + 2 * nc
    energy = np.empty(ln)
    ce = np.empty(ln + 1)
    for r in range(len(i0)):
        base = i0[r]
        best, bv = 0, np.inf
        for j in range(ne - 1, m - ne + 1):
            k = j + 1
            a = k * lv[0, r, 0, j] + (w - k - 1) * lv[1, r, 0, j]
            for ci in range(1, len(comps)):
                a = a + (k * lv[0, r, ci, j] + (w - k - 1) * lv[1, r, ci, j])
            if a != a:
                best = j
                break
            if a < bv:
                best, bv = j, a
        k = best + 1
        for j in range(ln):
            energy[j] = 0.0
        for ci in range(len(comps)):
            row = data[comps[ci]]
            for j in range(ln):
                u = np.float64(row[base - nc + j])
                energy[j] += u * u
        ce[0] = 0.0
        s = 0.0
        for j in range(ln):
            s += energy[j]
            ce[j + 1] = s
        jj = k + nc
        after = (ce[jj + nc] - ce[jj]) / nc
        before = (ce[jj] - ce[jj - nc]) / nc
        k_out[r] = k
        con_out[r] = math.sqrt(after / (before if not (before < _TINY) else _TINY))


def onsets(data, comps, i0, w: int, nc: int, ne: int, k_out, con_out) -> None:
    """Per window start ``i0[r]``: the AIC onset (index in the window, ``k_out[r]``) and the
    after/before RMS contrast there (``con_out[r]``), the numbers ``refine._onsets`` computes:
    the variances compiled (:func:`aic_variances`), their logarithms by numpy (its vectorised
    ``log``, the one ``refine.aic_curves`` calls: the same bits, ~5x quicker than the C
    library's one at a time), the curves, minimum and contrast compiled (:func:`onsets_from_logs`)."""
    comps = np.asarray(comps, np.int64)
    v = np.empty((2, len(i0), len(comps), w - 2))
    aic_variances(data, comps, i0, w, v)
    np.log(v, out=v)
    onsets_from_logs(v, data, comps, i0, w, nc, ne, k_out, con_out)


@_jit
def snrs(data, is_p, i, pre, post, gap, out):
    """``runner.pick_snrs`` of picks whose ``pre`` samples before and ``post`` after lie in
    ``data`` (3, n) float32: the peak of |Z| (P, ``is_p``) or of the horizontal envelope (S) over
    ``[i, i + post)`` over the RMS of ``[i - pre, i - gap)``; NaN where that RMS is 0.  The
    envelope's squares are ``n^2 + e^2`` (exact products of float32 samples, one rounding) where
    numpy squares ``hypot(n, e)``, and its peak is the root of the largest: the same to a few units
    in the last place of a float64, far below the float32 the SNR is stored in."""
    nq = pre - gap
    sq = np.empty(nq)
    for r in range(len(i)):
        a = i[r] - pre
        if is_p[r]:
            z = data[0]
            for j in range(nq):
                v = np.float64(z[a + j])
                sq[j] = v * v
            peak = 0.0
            for j in range(i[r], i[r] + post):
                v = abs(np.float64(z[j]))
                if v > peak or v != v:
                    peak = v if not (peak != peak) else peak
        else:
            n_, e_ = data[1], data[2]
            for j in range(nq):
                u, v = np.float64(n_[a + j]), np.float64(e_[a + j])
                sq[j] = u * u + v * v
            p2 = 0.0
            for j in range(i[r], i[r] + post):
                u, v = np.float64(n_[j]), np.float64(e_[j])
                v = u * u + v * v
                if v > p2 or v != v:
                    p2 = v if not (p2 != p2) else p2
            peak = math.sqrt(p2)
        rms = math.sqrt(_pairwise(sq, 0, nq) / nq)
        out[r] = peak / rms if rms > 0 else np.nan


@_jit
def flat_top_windows(x, lo, hi, top, n_run, cand):
    """``cand[i]`` |= window ``x[lo[i]:hi[i]]`` holds ``n_run`` consecutive samples whose
    absolute value is its extreme ``top[i]`` (a flat, clipped top), for windows where
    ``cand[i]`` is not yet set and ``top[i]`` is finite."""
    for i in range(len(lo)):
        if cand[i] or not (top[i] == top[i]):
            continue
        t = top[i]
        run = 0
        for j in range(lo[i], hi[i]):
            if abs(np.float64(x[j])) == t:
                run += 1
                if run >= n_run:
                    cand[i] = True
                    break
            else:
                run = 0


@_jit
def detrend_taper32(x, taper, out):
    """``out[:len(x)]`` (float32) = the counts ``x`` as ``amplitude._detrend_taper`` prepares
    them (float64: less the line between the means of the first and last 20 samples, numpy's
    sums; cosine-tapered at both ends), rounded to float32 as the transforms take them."""
    ln = len(x)
    n20 = min(20, ln)
    y = np.empty(ln)
    for i in range(ln):
        y[i] = np.float64(x[i])
    x0 = _block(y, 0, n20) / 20
    x1 = _block(y, ln - n20, n20) / 20
    slope = (x1 - x0) / (ln - 1)
    for i in range(ln - 1):
        y[i] = y[i] - (np.float64(i) * slope + x0)
    y[ln - 1] = y[ln - 1] - x1
    m = len(taper)
    for j in range(m):
        y[j] = y[j] * taper[j]
    for j in range(m):
        y[ln - m + j] = y[ln - m + j] * taper[m - 1 - j]
    for i in range(ln):
        out[i] = np.float32(y[i])


_OK: bool | None = None
_LOCK = threading.Lock()


def _build() -> None:
    """The kernels for the usual types (float32 station-days, int32 counts); others compile
    on first use."""
    data = np.zeros((3, 64), np.float32)
    k, c = np.empty(1, np.int64), np.empty(1)
    onsets(data, np.array([0], np.int64), np.array([20], np.int64), 12, 4, 3, k, c)
    snrs(data, np.array([True]), np.array([30], np.int64), 20, 10, 2, c)
    lo, hi, x = np.array([0], np.int64), np.array([8], np.int64), np.zeros(8, np.int32)
    flat_top_windows(x, lo, hi, c, 3, np.zeros(1, np.bool_))
    detrend_taper32(x, np.ones(2), np.empty(8, np.float32))


def takes(a, ndim: int, dtypes: tuple, rows: int = 0) -> bool:
    """Whether these kernels take the array ``a``: C-ordered, native byte order (numba refuses
    big-endian arrays), ``ndim`` dimensions, at least ``rows`` rows, one of ``dtypes``; and
    the kernels compile."""
    return (
        isinstance(a, np.ndarray)
        and a.ndim == ndim
        and (ndim < 2 or a.shape[0] >= rows)
        and a.dtype in dtypes
        and a.dtype.isnative
        and a.flags.c_contiguous
        and available()
    )


def available() -> bool:
    """Whether the kernels compile (or load from numba's cache); one warning if not."""
    global _OK
    if _OK is None:
        with _LOCK:  # the P and S refinements ask at once from the CPU pool: one compiles
            if _OK is None:
                from .cpu_picker import compiled

                _OK = compiled(_build, "pick measures: the compiled onset/SNR kernels are unavailable; using numpy")
    return _OK
