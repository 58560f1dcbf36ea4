"""The picker's bidirectional-GRU recurrence, compiled (numba), for :mod:`.cpu_picker`.

Per direction and step: the recurrent products of all windows as one BLAS product, then the
gates with an exponential of our own (range reduction + a degree-6 polynomial in
float32, vectorised; measured within 2.2e-7 relative of exp for |x| <= ln2/2 and 4.4e-7 at
the clamps, where the fast-math reassociation loses part of the two-part ln 2), states written
in place.  The input
projections come precomputed, as in ``nn.GRU``, their biases added here.  Also the picker's
smaller passes: the first frame layer's block gathers and sums (:func:`gather_blocks`,
:func:`window_block_sums`, :func:`edge_blocks`, :func:`first_frames`), bias + ReLU and the
softmax + sigmoid heads.  Compiled on first use
and cached on disk (numba's cache: next to this file, else the user's cache directory); where
no cache directory is writable it compiles in each process (this module's kernels ~2.5 s; with the
detector's, the band-pass and the per-pick kernels ~7 s on this project's 2-core host; loaded from
the cache: ~0.4 s).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .cpu_picker import H_FAST

_G = 3 * H_FAST
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)  # ln 2 in two parts: k * _LN2_HI is exact for |k| < 2^8
_LN2_LO = np.float32(-2.12194440e-4)
# no 'nnan'/'ninf': the clamps below must see NaN and inf as they are
_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}


def _jit(strict: bool = False, **kw):
    """``njit`` with nogil, numpy's error model and these fast-math flags (none when ``strict``:
    numpy's operations in numpy's order, the same bits), cached on disk when a cache directory
    is writable (numba raises at decoration when none is)."""
    opts = dict(nogil=True, error_model="numpy", **({} if strict else {"fastmath": _FM}), **kw)

    def deco(fn):
        try:
            return njit(cache=True, **opts)(fn)
        except RuntimeError:  # no writable cache location
            return njit(**opts)(fn)

    return deco


@_jit(inline="always")
def _exp_parts(x):
    """exp(x) = p * 2**k for float32 x clamped to [-87, 87]: (p, the float32 bits of 2**k); NaN
    stays NaN in p."""
    x = min(max(x, np.float32(-87.0)), np.float32(87.0))
    k = np.floor(x * _LOG2E + np.float32(0.5))
    r = x - k * _LN2_HI - k * _LN2_LO  # |r| <= ln2 / 2: the Taylor series to r^6 is within 1.2e-7 there
    p = np.float32(1.0 / 720.0)
    p = p * r + np.float32(1.0 / 120.0)
    p = p * r + np.float32(1.0 / 24.0)
    p = p * r + np.float32(1.0 / 6.0)
    p = p * r + np.float32(0.5)
    p = p * r + np.float32(1.0)
    p = p * r + np.float32(1.0)
    return p, (np.int32(k) + np.int32(127)) << 23


@_jit()
def bigru_layer32(gi, bih, whh, bhh, out):
    """One bidirectional GRU layer of hidden size 32 over all windows of ``gi``.

    ``gi`` (B, T, 2, 3H): the input projections (forward, reverse; gates r, z, n in
    ``nn.GRU``'s order), to which the input biases ``bih`` (2, 3H) are added here (not in a pass
    of their own over ``gi``); ``whh`` (2, H, 3H): the recurrent weights transposed; ``bhh``
    (2, 3H); ``out`` (B, T, 2H): forward states then reverse states, as ``nn.GRU`` writes them.

    Per direction and step, the recurrent products of all B windows are one ``(B, H) @ (H, 3H)``
    product (BLAS, through numba's ``np.dot``; the caller holds BLAS at one thread), then each
    window's gates; a dense day's 5,600 windows: 0.16 s on one thread instead of 0.26 s with
    each window's product accumulated on its own."""
    n_b, n_t = gi.shape[0], gi.shape[1]
    if n_b == 0:
        return
    h = np.zeros((n_b, H_FAST), np.float32)
    gh = np.empty((n_b, _G), np.float32)
    e = np.empty(_G, np.float32)
    k = np.empty(_G, np.int32)
    s = k.view(np.float32)  # 2**k from its bits
    one, two = np.float32(1.0), np.float32(2.0)
    for d in range(2):
        w, bias, ibias, col = np.ascontiguousarray(whh[d]), bhh[d], bih[d], d * H_FAST
        h[:] = 0
        for tt in range(n_t):
            t = n_t - 1 - tt if d else tt
            np.dot(h, w, gh)  # gh = h W_hh (b_hh added below)
            for b in range(n_b):
                g = gi[b, t, d]
                ghb = gh[b]
                hb = h[b]
                for j in range(2 * H_FAST):  # r, z = sigmoid(.) = 1 / (1 + exp(-.))
                    e[j], k[j] = _exp_parts(-((g[j] + ibias[j]) + (ghb[j] + bias[j])))
                for j in range(H_FAST):  # n = tanh(g_n + r gh_n) = 2 sigmoid(2 .) - 1
                    r = one / (one + e[j] * s[j])
                    m = 2 * H_FAST + j
                    e[m], k[m] = _exp_parts(-two * ((g[m] + ibias[m]) + r * (ghb[m] + bias[m])))
                for j in range(H_FAST):  # h = (1 - z) n + z h
                    z = one / (one + e[H_FAST + j] * s[H_FAST + j])
                    n = two / (one + e[2 * H_FAST + j] * s[2 * H_FAST + j]) - one
                    hn = n + z * (hb[j] - n)
                    hb[j] = hn
                    out[b, t, col + j] = hn


@_jit()
def first_frames(q, p0, inv, corr, edge0, edge1, b1, h):
    """The picker's first frame layer from shared block products (:func:`.cpu_picker._first_layer`):
    ``h[i, j] = relu(inv[i] * (A[p0[i] + j - 1] + B[p0[i] + j] - corr[i]) + b1)`` with ``A``, ``B``
    the two halves of ``q`` (K, 2F), frame 0's A part and frame T-1's B part (the window's edge
    half blocks, already normalised) from ``edge0`` / ``edge1`` (b, F), ``corr`` (b, 2F) the
    component means' share of the A and B parts."""
    n_b, n_t, f = h.shape
    zero = np.float32(0.0)
    for i in range(n_b):
        s = inv[i]
        for j in range(n_t):
            ka = p0[i] + j - 1
            kb = p0[i] + j
            for c in range(f):
                if j == 0:
                    v = (q[kb, f + c] - corr[i, f + c]) * s + edge0[i, c]
                elif j == n_t - 1:
                    v = (q[ka, c] - corr[i, c]) * s + edge1[i, c]
                else:
                    v = (q[ka, c] + q[kb, f + c] - corr[i, c] - corr[i, f + c]) * s
                h[i, j, c] = max(v + b1[c], zero)


@_jit()
def gather_blocks(data, mu, rows, o1, xb, sq):
    """The picker's half-second blocks of ``data`` (C, n) that start at ``o1 + rows[k] * step``,
    less the component constants ``mu``, into ``xb`` (K, C, step), and each block's sum of squares
    per component into ``sq`` (K, C) (float64): one pass instead of a gather, a subtraction and
    an ``einsum`` (a dense day: 35 ms -> ~10 ms on one thread)."""
    n_c, step = xb.shape[1], xb.shape[2]
    for k in range(len(rows)):
        a = o1 + rows[k] * step
        for c in range(n_c):
            m = mu[c]
            acc = 0.0
            src = data[c, a : a + step]
            dst = xb[k, c]
            for s in range(step):
                v = src[s] - m
                dst[s] = v
                acc += np.float64(v) * np.float64(v)
            sq[k, c] = acc


@_jit(strict=True)
def window_block_sums(q, col0, sq, p0, n, out):
    """Each window's sums from its own blocks (rows added in order, float64): ``out[i, :C]`` the
    blocks' sums ``q[:, col0:col0 + C]`` and ``out[i, C:]`` their sums of squares ``sq`` (K, C),
    over rows ``p0[i] .. p0[i] + n - 1``."""
    n_c = sq.shape[1]
    for i in range(len(p0)):
        for c in range(2 * n_c):
            out[i, c] = 0.0
        for j in range(n):
            r = p0[i] + j
            for c in range(n_c):
                out[i, c] += np.float64(q[r, col0 + c])
                out[i, n_c + c] += sq[r, c]


@_jit()
def edge_blocks(data, mu, sel, off, out):
    """``out[i, c, :] = data[c, sel[i] + off : sel[i] + off + out.shape[2]] - mu[c]``."""
    for i in range(len(sel)):
        for c in range(out.shape[1]):
            a = sel[i] + off
            m = mu[c]
            for s in range(out.shape[2]):
                out[i, c, s] = data[c, a + s] - m


@_jit(strict=True)
def bias_relu(h, b):
    """``h = max(h + b, 0)`` in place, rows of ``h`` (M, F) by ``b`` (F,): one pass."""
    zero = np.float32(0.0)
    for i in range(h.shape[0]):
        for j in range(h.shape[1]):
            h[i, j] = max(h[i, j] + b[j], zero)


@_jit(strict=True)
def heads(y, k, probs, offs):
    """The picker's outputs from its head ``y`` (B, T, k + m): the softmax of the first ``k``
    columns (``probs`` (B, T, k)) and the sigmoid of the other ``m`` (``offs``), float32, with
    the numpy code's formulas (the largest logit subtracted; ``1 / (1 + exp(-y))``, 0 where exp
    overflows; NaN where a logit is NaN), within a float32 unit of it (the C library's exp)."""
    one = np.float32(1.0)
    for i in range(y.shape[0]):
        for t in range(y.shape[1]):
            r = y[i, t]
            mx = r[0]
            for c in range(1, k):  # np.max: NaN wins
                if r[c] > mx or r[c] != r[c]:
                    mx = r[c] if mx == mx else mx
            tot = np.float32(0.0)
            for c in range(k):
                e = np.exp(r[c] - mx)
                probs[i, t, c] = e
                tot += e
            for c in range(k):
                probs[i, t, c] = probs[i, t, c] / tot
            for c in range(k, y.shape[2]):
                offs[i, t, c - k] = one / (one + np.exp(-r[c]))
