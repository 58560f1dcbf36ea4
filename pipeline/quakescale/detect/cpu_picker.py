"""The CERP picker's inference on a CPU: numpy (single-threaded BLAS per part) and a compiled
bidirectional-GRU recurrence (:mod:`.gru_kernel`, numba), the windows in parts on the CPU pool.

Why: ``torch.nn.GRU`` on a CPU steps through time with a handful of ATen ops per step; at the
picker's size (hidden 32, 60 steps, 2 layers x 2 directions) each does little work, and on a
dense aftershock day (5,600 picked windows) the picker was the largest step of a station-day.
Here, per part of :data:`CHUNK` windows on one thread:

- the first frame layer reads the half-second blocks of the padded window once (frame ``j`` is
  blocks ``j`` and ``j + 1``, so its product is ``A block_j + B block_{j+1}``) instead of
  copying every sample into two frames; on a station-day (:func:`pick_windows`) the windows'
  blocks are read from the day itself, and windows on one grid of blocks (a 15 s stride) share
  their inner blocks: each is multiplied once, in counts, and each window's normalisation
  (:func:`~.models.normalize_windows`: component means and standard deviation, from the same
  blocks' sums) is applied to the products (:func:`_first_layer`; no gathered copy of the
  windows, half the products);
- the other frame layer, the GRU's input projections (both directions in one product) and the
  heads are numpy products; the recurrence is :func:`.gru_kernel.bigru_layer32`.

Nothing else spins beside the pool's threads (torch's OpenMP threads wait between torch ops; a
threaded BLAS is held at one thread for the call), so the parts scale with the pool's width.
Same function as the torch modules up to float32 rounding (class logits within 1e-5, hidden
states within 1e-6; tested, also for a quiet window after a loud one and for constant windows);
the picks of the benchmark days are the same.  Used for inference
on a CPU by :meth:`~.models.Picker.forward` and :func:`~.runner.cerp_picks` when
:func:`supported`; training, a GPU and other pickers use the torch modules.
"""

from __future__ import annotations

import contextlib
import threading
import warnings

import numpy as np
import torch

from .threads import tmap

CHUNK = 128  # windows per task: a part's blocks, frames and GRU states stay in the core's cache
H_FAST = 32  # the GRU hidden size the compiled recurrence is built for (a compile-time constant there)
_BLAS_LOCK = threading.Lock()
_BLAS: list = [None, 0, None]  # controller, callers inside, the limiter of the first caller


@contextlib.contextmanager
def _one_blas_thread():
    """A context in which numpy's BLAS runs single-threaded: the pool's threads each take a part
    of the windows, and a threaded BLAS would spin its own threads against them.  The limit is
    process-wide (threadpoolctl): the first caller in sets it, the last one out restores what
    the first found, so callers on several threads (a Dask worker's) leave it as it was.  Other
    threads' BLAS calls run single-threaded meanwhile."""
    with _BLAS_LOCK:
        if _BLAS[0] is None:
            import scipy.linalg.cython_blas  # noqa: F401  (the BLAS numba's np.dot calls: loaded before the controller looks)
            from threadpoolctl import ThreadpoolController

            _BLAS[0] = ThreadpoolController()
        if _BLAS[1] == 0:
            _BLAS[2] = _BLAS[0].limit(limits=1, user_api="blas")
        _BLAS[1] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS[1] -= 1
            if _BLAS[1] == 0:
                _BLAS[2].restore_original_limits()
                _BLAS[2] = None


def usable(picker, h: torch.Tensor) -> bool:
    """Whether :func:`forward` serves this call: inference (no autograd) on a CPU of float32
    windows ``(B, C, n)`` (after the picker's front end) by a :func:`supported` picker."""
    return (
        h.device.type == "cpu"
        and h.dtype == torch.float32
        and not torch.is_grad_enabled()
        and h.dim() == 3
        and h.shape[0] > 0
        and h.shape[-1] % picker.step_n == 0
        and h.shape[-1] >= 2 * picker.step_n
        and supported(picker)
    )


_KERNEL_OK: bool | None = None


def compiled(build, what: str) -> bool:
    """Whether ``build()`` (import a compiled kernel and run it on a tiny input: numba compiles it
    or loads it from its cache) succeeds; if not, one warning that ``what`` falls back."""
    try:
        build()
        return True
    except Exception as exc:  # numba missing or broken on this platform
        import logging

        logging.getLogger("quakescale.detect").warning("CERP %s (%s: %s)", what, type(exc).__name__, exc)
        return False


def _build_gru() -> None:
    """The picker's kernels compiled (or loaded from numba's cache) here, before the pool's
    threads call them."""
    from .gru_kernel import bias_relu, bigru_layer32, edge_blocks, first_frames, gather_blocks, heads, window_block_sums

    f32 = np.float32
    data, mu, i64 = np.zeros((3, 8), f32), np.zeros(3, f32), np.zeros(1, np.int64)
    xb, sq, q = np.empty((1, 3, 2), f32), np.empty((1, 3)), np.zeros((2, 5), f32)
    gather_blocks(data, mu, i64, 0, xb, sq)
    window_block_sums(q, 2, sq, i64, 1, np.empty((1, 6)))
    edge_blocks(data, mu, i64, 0, xb)
    first_frames(
        q,
        i64 + 1,
        np.ones(1, f32),
        np.zeros((1, 2), f32),
        np.zeros((1, 1), f32),
        np.zeros((1, 1), f32),
        np.zeros(1, f32),
        np.empty((1, 2, 1), f32),
    )
    bias_relu(q, np.zeros(5, f32))
    heads(np.zeros((1, 1, 5), f32), 3, np.empty((1, 1, 3), f32), np.empty((1, 1, 2), f32))
    bigru_layer32(
        np.zeros((1, 2, 2, 3 * H_FAST), np.float32),
        np.zeros((2, 3 * H_FAST), np.float32),
        np.zeros((2, H_FAST, 3 * H_FAST), np.float32),
        np.zeros((2, 3 * H_FAST), np.float32),
        np.empty((1, 2, 2 * H_FAST), np.float32),
    )


def kernel_available() -> bool:
    """Whether the compiled recurrence imports (numba); without it the torch modules serve, with
    one warning per process."""
    global _KERNEL_OK
    if _KERNEL_OK is None:
        _KERNEL_OK = compiled(
            _build_gru, "picker: the compiled GRU is unavailable; using torch's nn.GRU (slower on a CPU)"
        )
    return _KERNEL_OK


def supported(picker) -> bool:
    """A picker this module runs: an even step, Linear + ReLU frame layers, and a bidirectional
    batch-first GRU with biases of hidden size :data:`H_FAST` (the shipped and default picker),
    with the compiled recurrence available (:func:`kernel_available`)."""
    gru = picker.gru
    return (
        picker.step_n % 2 == 0
        and _frame_layers(picker) is not None
        and gru.hidden_size == H_FAST
        and gru.bidirectional
        and gru.batch_first
        and gru.bias
        and gru.proj_size == 0
        and kernel_available()
    )


def _frame_layers(picker) -> list | None:
    """The frame block's Linear layers when it is Linear + ReLU pairs (else None)."""
    mods = list(picker.frame)
    pairs = len(mods) % 2 == 0 and all(
        isinstance(a, torch.nn.Linear) and isinstance(r, torch.nn.ReLU) for a, r in zip(mods[::2], mods[1::2])
    )
    return mods[::2] if pairs else None


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def _weights(picker, c: int) -> dict:
    """The picker's weights as numpy, laid out for :func:`_chunk` (``c``: input channels)."""
    step = picker.step_n
    first, *rest = _frame_layers(picker)
    w1 = _np(first.weight).reshape(-1, c, 2, step)  # (F, C, 2 halves, step): frame = [block j, block j+1]
    wab = np.concatenate([w1[:, :, 0].reshape(len(w1), -1), w1[:, :, 1].reshape(len(w1), -1)]).T  # (C step, 2F)
    gru, sfx = picker.gru, ("", "_reverse")
    layers = []
    for layer in range(gru.num_layers):
        p = {
            (n, x): _np(getattr(gru, f"{n}_l{layer}{x}"))
            for n in ("weight_ih", "bias_ih", "weight_hh", "bias_hh")
            for x in sfx
        }
        layers.append(
            (
                np.ascontiguousarray(np.concatenate([p["weight_ih", x] for x in sfx]).T),  # (in, 6H)
                np.ascontiguousarray(np.stack([p["bias_ih", x] for x in sfx])),  # (2, 3H)
                np.ascontiguousarray(np.stack([p["weight_hh", x].T for x in sfx])),  # (2, H, 3H)
                np.ascontiguousarray(np.stack([p["bias_hh", x] for x in sfx])),
            )
        )
    heads = (picker.cls, picker.off)
    half = step // 2
    return {
        "step": step,
        "wab": np.ascontiguousarray(wab),
        # and C columns of ones: each block's sum per component comes out of the same product
        "wab_sums": np.ascontiguousarray(
            np.concatenate([wab, np.kron(np.eye(c, dtype=np.float32), np.ones((step, 1), np.float32))], axis=1)
        ),
        "sab": np.ascontiguousarray(w1.sum(axis=-1).transpose(1, 2, 0).reshape(c, -1)),  # (C, 2F): A sums, B sums
        "wa_tail": np.ascontiguousarray(w1[:, :, 0, half:].reshape(len(w1), -1).T),  # (C half, F)
        "wb_head": np.ascontiguousarray(w1[:, :, 1, : step - half].reshape(len(w1), -1).T),
        "b1": _np(first.bias),
        "rest": [(np.ascontiguousarray(_np(m.weight).T), _np(m.bias)) for m in rest],
        "gru": layers,
        "head_w": np.ascontiguousarray(np.concatenate([_np(m.weight) for m in heads]).T),
        "head_b": np.concatenate([_np(m.bias) for m in heads]),
        "n_cls": picker.cls.out_features,
    }


def _frames(w: dict, x: np.ndarray) -> np.ndarray:
    """The first frame layer (bias, ReLU) of normalised windows ``x`` (b, C, n): (b, T, F).

    Frames are 1 s at a 0.5 s step of the window zero-padded by half a step at each end: frame
    ``j`` is blocks ``j`` and ``j + 1`` of the padded window cut in half-second blocks, so its
    product is ``A block_j + B block_{j+1}``: one product over the blocks (each sample once)
    instead of over the frames (each sample twice, copied there first)."""
    b, c, n = x.shape
    step = w["step"]
    pad, t = step // 2, n // step
    blk = np.empty((b, t + 1, c, step), np.float32)
    blk[:, 1:t] = x[:, :, pad : n - pad].reshape(b, c, t - 1, step).transpose(0, 2, 1, 3)
    blk[:, 0, :, :pad] = 0.0
    blk[:, 0, :, pad:] = x[:, :, :pad]
    blk[:, t, :, : step - pad] = x[:, :, n - pad :]
    blk[:, t, :, step - pad :] = 0.0
    q = (blk.reshape(b * (t + 1), c * step) @ w["wab"]).reshape(b, t + 1, -1)
    f = q.shape[-1] // 2
    h = q[:, :t, :f] + q[:, 1:, f:]
    h += w["b1"]
    np.maximum(h, 0.0, out=h)
    return h


def _chunk(w: dict, x: np.ndarray) -> np.ndarray:
    """The picker on normalised windows ``x`` (b, C, n): (b, T, n_cls + 2) of class logits and raw
    offsets (first frame layer: :func:`_frames`)."""
    return _after_first(w, _frames(w, x))


def _after_first(w: dict, h: np.ndarray) -> np.ndarray:
    """The picker after its first frame layer ``h`` (b, T, F): the other frame layers, the two
    GRU layers (:func:`.gru_kernel.bigru_layer32`) and the heads -> (b, T, n_cls + 2)."""
    from .gru_kernel import bias_relu, bigru_layer32  # numba: imported on first use

    b, t = h.shape[:2]
    h = h.reshape(b * t, -1)
    for wt, bias in w["rest"]:
        h = h @ wt
        bias_relu(h, bias)
    for wih, bih, whh, bhh in w["gru"]:
        gi = h @ wih  # the input biases are added in the recurrence
        out = np.empty((b, t, 2 * H_FAST), np.float32)
        bigru_layer32(gi.reshape(b, t, 2, 3 * H_FAST), bih, whh, bhh, out)
        h = out.reshape(b * t, -1)
    y = h @ w["head_w"]
    y += w["head_b"]
    return y.reshape(b, t, -1)


def forward(picker, h: torch.Tensor, chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:meth:`Picker.forward` after the front end: (class logits (B, T, 3), onset offsets (B, T, 2)
    in [0, 1)), in parts of ``chunk`` (:data:`CHUNK`) windows on the CPU pool."""
    x = np.ascontiguousarray(h.numpy())
    w = _weights(picker, x.shape[1])
    chunk = chunk or CHUNK
    y = np.empty((len(x), x.shape[-1] // w["step"], w["head_w"].shape[1]), np.float32)

    def run(b0: int) -> None:
        y[b0 : b0 + chunk] = _chunk(w, x[b0 : b0 + chunk])

    with _one_blas_thread():
        tmap(run, range(0, len(x), chunk))
    y = torch.from_numpy(y)
    k = w["n_cls"]
    return y[..., :k], torch.sigmoid(y[..., k:])


def normalize(x: np.ndarray, eps: float = 1e-10) -> np.ndarray:
    """:func:`~.models.normalize_windows` of float32 windows ``x`` (b, C, n), in place: the same
    arithmetic as its torch branch (component means in float32, the window's variance from the
    components' norms in float64)."""
    n = x.shape[-1]
    mean = x.mean(axis=-1, keepdims=True, dtype=np.float32)
    q = np.linalg.norm(x, axis=-1, keepdims=True).astype(np.float64)
    ss = np.clip((q * q - n * np.square(mean.astype(np.float64))).sum(axis=-2, keepdims=True), 0.0, None)
    inv = (1.0 / (np.sqrt(ss / (x.shape[-2] * n - 1)) + eps)).astype(np.float32)
    x *= inv
    x -= mean * inv
    return x


def fits(picker, n_in: int) -> bool:
    """Whether :func:`pick_windows` runs this picker on windows of ``n_in`` samples (whole
    steps, at least two) -- the runner's condition, with :func:`supported`."""
    step = picker.step_n
    return isinstance(picker.front, torch.nn.Identity) and n_in % step == 0 and n_in >= 2 * step and supported(picker)


def _first_layer(w: dict, data: np.ndarray, mu: np.ndarray, sel: np.ndarray, n_in: int, h: np.ndarray) -> None:
    """The first frame layer (with its bias and ReLU) of the windows of ``data`` (C, n) at
    ``sel`` (one residue of ``step``), each normalised (component means, the window's std: the
    function of :func:`normalize`, other arithmetic), into ``h`` (b, T, F).

    Windows that overlap on one grid of half-second blocks share their inner blocks (at a 15 s
    stride, half of them), so each block is multiplied once, in raw counts, and each window's
    normalisation ``(x - m) * inv`` is applied to the products (the layer is linear before its
    bias).  The window's means and standard deviation come from the same blocks' sums.  The
    samples enter less ``mu`` (C,), one constant per component for all windows (the products
    keep their precision when the data sit on an offset that is large against their spread)."""
    from .gru_kernel import edge_blocks, first_frames, gather_blocks, window_block_sums

    step = w["step"]
    pad, t = step // 2, n_in // step
    c = data.shape[0]
    f = w["b1"].shape[0]
    r = int(sel[0]) % step
    a = (sel - r) // step  # padded block j of window s starts at s - pad + step * j = r - pad + step * (a + j)
    lo = int(a.min()) + 1
    cover = np.zeros(int(a.max()) + t - lo + 1, np.int32)  # the inner blocks (1 .. T-1) of all windows
    np.add.at(cover, a + 1 - lo, 1)
    np.add.at(cover, a + t - lo, -1)
    ks = np.flatnonzero(np.cumsum(cover[:-1]) > 0) + lo
    o1 = (r - pad) % step
    nb = (data.shape[1] - o1) // step
    d = (r - pad - o1) // step  # global block g is row g + d of the reshaped view
    if ks[0] + d < 0 or ks[-1] + d >= nb:  # pick_windows keeps windows inside the data
        raise ValueError("_first_layer: a window's blocks reach outside the data")
    xb = np.empty((len(ks), c, step), np.float32)
    sq = np.empty((len(ks), c))
    gather_blocks(data, mu, ks + d, o1, xb, sq)  # the blocks less mu, and their sums of squares
    q = xb.reshape(len(ks), c * step) @ w["wab_sums"]  # (K, 2F + C): A products, B products, block sums
    p0 = np.searchsorted(ks, a + 1)  # each window's inner blocks are rows p0 .. p0 + T - 2 of q
    # each window's sums and sums of squares from its own blocks (float64; no running sum over the
    # part: a loud window before a quiet one would cancel its digits) and its edge half blocks
    inner = np.empty((len(sel), 2 * c))
    window_block_sums(q, 2 * f, sq, p0, t - 1, inner)  # (b, 2C)
    e0 = np.empty((len(sel), c, pad), np.float32)
    e1 = np.empty((len(sel), c, pad), np.float32)
    edge_blocks(data, mu, sel, 0, e0)
    edge_blocks(data, mu, sel, n_in - pad, e1)
    e64 = np.concatenate([e0, e1], axis=-1).astype(np.float64)
    sums = inner[:, :c] + e64.sum(axis=-1)
    sq = inner[:, c:] + (e64 * e64).sum(axis=-1)
    mean = sums / n_in
    ss = np.clip((sq - n_in * mean * mean).sum(axis=1), 0.0, None)
    std = np.sqrt(ss / (c * n_in - 1))
    inv = (1.0 / (std + 1e-10)).astype(np.float32)
    mean = mean.astype(np.float32)
    corr = mean @ w["sab"]  # (b, 2F): the means' share of the A and B products
    en0 = ((e0 - mean[:, :, None]) * inv[:, None, None]).reshape(len(sel), -1) @ w["wa_tail"]
    en1 = ((e1 - mean[:, :, None]) * inv[:, None, None]).reshape(len(sel), -1) @ w["wb_head"]
    first_frames(q, p0, inv, corr, en0, en1, w["b1"], h)
    # a window whose mean (less mu) is over 1,000 times its std: the float32 products and sums of
    # squares lose its deviations (a constant window, e.g. zeros away from mu, would give noise
    # times 1e10), so it is gathered and normalised on its own, as the torch path does
    odd = np.flatnonzero(std <= 1e-3 * np.abs(sums / n_in).max(axis=1))
    if len(odd):
        x = np.stack([data[:, s0 : s0 + n_in] for s0 in sel[odd]]).astype(np.float32)
        h[odd] = _frames(w, normalize(x))


def offsets(data: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """One constant per component near the windows' level (the median of their first samples; 0
    where none is finite), subtracted before the shared products."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN components
        mu = np.nanmedian(data[:, np.asarray(starts, np.int64)], axis=1) if len(starts) else np.zeros(len(data))
    return np.where(np.isfinite(mu), mu, 0.0).astype(np.float32)


def _chunk_windows(w: dict, data: np.ndarray, sel: np.ndarray, n_in: int, mu: np.ndarray | None = None) -> np.ndarray:
    """:func:`_chunk` of the windows of ``data`` starting at ``sel``, normalised, with the first
    frame layer shared between windows on one block grid (:func:`_first_layer`)."""

    step = w["step"]
    t = n_in // step
    mu = offsets(data, sel) if mu is None else mu
    h = np.empty((len(sel), t, w["b1"].shape[0]), np.float32)
    res = sel % step
    for r in np.unique(res):  # one grid per residue (a day's windows: one, and the last window's)
        k = np.flatnonzero(res == r)
        if len(k) == len(sel):
            _first_layer(w, data, mu, sel, n_in, h)
        else:
            hk = np.empty((len(k),) + h.shape[1:], np.float32)
            _first_layer(w, data, mu, sel[k], n_in, hk)
            h[k] = hk
    return _after_first(w, h)


def pick_windows(
    picker, data: np.ndarray, starts: np.ndarray, n_in: int, chunk: int = CHUNK
) -> tuple[np.ndarray, np.ndarray]:
    """The picker on the ``n_in``-sample windows of ``data`` (C, n) starting at ``starts``, each
    normalised as :func:`~.models.normalize_windows` does (component means, the window's std):
    (class probabilities (B, T, 3), onset offsets (B, T, 2)), float32.  The windows are not
    gathered: the first frame layer reads their blocks from ``data``, shared between windows on one
    block grid (:func:`_first_layer`; the means and std from the same blocks' sums, in float64).
    The network runs in parts of ``chunk`` windows on the CPU pool with single-threaded BLAS: no
    other thread pool (torch's OpenMP threads, a threaded BLAS) spins against them.  For pickers
    that :func:`fits` ``n_in``; ``detect.batch_size`` sizes the torch path's batches, not these
    parts."""
    n_in = int(n_in)
    c = data.shape[0]
    w = _weights(picker, c)
    t = n_in // w["step"]
    k = w["n_cls"]
    probs = np.empty((len(starts), t, k), np.float32)
    offs = np.empty((len(starts), t, w["head_w"].shape[1] - k), np.float32)
    data = np.ascontiguousarray(data, np.float32)
    starts = np.asarray(starts, np.int64)
    if len(starts) and (starts.min() < 0 or starts.max() + n_in > data.shape[-1]):
        raise ValueError(
            f"pick_windows: windows of {n_in} samples at {starts.min()}..{starts.max()} "
            f"reach outside the data's {data.shape[-1]} samples"
        )
    mu = offsets(data, starts)
    from .gru_kernel import heads

    def run(b0: int) -> None:
        sel = starts[b0 : b0 + chunk]
        y = _chunk_windows(w, data, sel, n_in, mu)
        # softmax and sigmoid in one pass (exp(-y) = inf for y < -88: the sigmoid is 0, as torch's)
        heads(y, k, probs[b0 : b0 + len(sel)], offs[b0 : b0 + len(sel)])

    with _one_blas_thread():
        tmap(run, range(0, len(starts), chunk))
    return probs, offs
