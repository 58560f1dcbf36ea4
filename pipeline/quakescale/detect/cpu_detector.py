"""The CERP detector's inference on a CPU: its first block compiled (:mod:`.conv_kernel`), the rest
in torch.

The first block (normalise the window, Conv1d 3 -> 8, k=3, MaxPool 2, ReLU) costs oneDNN about a
third of the detector (3 input channels leave its kernels nothing to vectorise); the compiled
block reads each window straight from the station-day, so there is no gathered copy of the
windows and no normalising pass either.  Each batch runs whole on one thread of the CPU pool
(:mod:`.threads`): the block, then the other seven blocks and the head in torch on that thread
alone (channels-last, as :meth:`~.models.Detector.forward`).  The same function as the torch
modules up to float32 rounding (probabilities within 2e-6; tested).  Without numba, or for a
detector of another shape, the torch modules serve.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import cpu_picker
from .threads import executor, width

_OK: bool | None = None


def _build() -> None:
    from .conv_kernel import first_block

    z = np.zeros
    first_block(
        z((3, 4), np.float32), z(1, np.int64), 4, z((1, 3, 3), np.float32), z(1, np.float32), z((1, 2, 1), np.float32)
    )


def kernel_available() -> bool:
    """Whether the compiled first block is there: numba imports (the picker's check, which warns
    once when it does not) and the block compiles."""
    global _OK
    if not cpu_picker.kernel_available():
        return False
    if _OK is None:
        _OK = cpu_picker.compiled(_build, "detector: the compiled first block is unavailable; using torch's")
    return _OK


def fits(detector, n_in: int, c_in: int) -> bool:
    """Whether :func:`detect_windows` runs this detector on ``c_in``-channel windows of ``n_in``
    samples: a first Conv1d of 3 input channels, kernel 3, padding 1, stride 1; an even window."""
    conv = detector.features[0]
    return (
        isinstance(conv, nn.Conv1d)
        and c_in == 3
        and conv.in_channels == 3
        and conv.kernel_size == (3,)
        and conv.padding == (1,)
        and conv.stride == (1,)
        and conv.dilation == (1,)
        and conv.groups == 1
        and conv.bias is not None
        and n_in % 2 == 0
        and n_in >= 4
        and kernel_available()
    )


@torch.inference_mode()
def _batch(
    detector,
    data: np.ndarray,
    sel: np.ndarray,
    n_in: int,
    w: np.ndarray,
    b: np.ndarray,
    one_thread: bool = False,
    ready=None,
) -> np.ndarray:
    """Probabilities of the windows at ``sel``: the compiled first block, then torch.
    ``one_thread``: a pool thread's own torch ops on one thread (with OpenMP, torch's thread count
    is each thread's own; the pool's threads are ours, and they run side by side).  ``ready(k)``
    returns once samples ``[0, k)`` of ``data`` are final."""
    from .conv_kernel import first_block

    if ready is not None:
        ready(int(sel.max()) + n_in)
    if one_thread and torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    front = np.empty((len(sel), n_in // 2, w.shape[0]), np.float32)
    first_block(data, sel, n_in, w, b, front)
    h = torch.from_numpy(front).permute(0, 2, 1).unsqueeze(2)  # (B, C, 1, n/2), channels-last in memory
    return torch.sigmoid(detector.from_block(h, 1)).numpy()


def detect_windows(detector, data: np.ndarray, starts: np.ndarray, n_in: int, batch: int, ready=None) -> np.ndarray:
    """Event probabilities (B,) float32 of the ``n_in``-sample windows of ``data`` (3, N) at
    ``starts``, each normalised (:func:`~.models.normalize_windows`), in batches of at most
    ``batch`` windows.  With a CPU pool the batches run on its threads, each batch whole on one
    thread (compiled block, then torch on that thread alone), so no thread pool waits or spins
    against another between the two parts.  Raises ValueError for a window outside ``data``.
    ``ready(k)``: returns once samples ``[0, k)`` are final (the day still being band-passed:
    each batch waits for its own samples; it must not wait on work queued behind the batches)."""
    conv = detector.features[0]
    w = np.ascontiguousarray(conv.weight.detach().numpy(), np.float32)
    b = np.ascontiguousarray(conv.bias.detach().numpy(), np.float32)
    if ready is not None and not (data.dtype == np.float32 and data.flags.c_contiguous):
        ready(data.shape[-1])  # a copy reads every sample
    data = np.ascontiguousarray(data, np.float32)
    starts = np.asarray(starts, np.int64)
    if not len(starts):
        return np.zeros(0, np.float32)
    if starts.min() < 0 or starts.max() + n_in > data.shape[-1]:
        raise ValueError(
            f"detect_windows: windows of {n_in} samples at {starts.min()}..{starts.max()} "
            f"reach outside the data's {data.shape[-1]} samples"
        )
    pool = executor()
    parts = width() if pool is not None else 1
    size = max(1, min(int(batch), -(-len(starts) // parts)))  # a small day still fills the pool
    sels = [starts[i : i + size] for i in range(0, len(starts), size)]
    if pool is None or len(sels) < 2:
        return np.concatenate([_batch(detector, data, s, n_in, w, b, ready=ready) for s in sels])
    n0 = torch.get_num_threads()
    try:
        return np.concatenate(list(pool.map(lambda s: _batch(detector, data, s, n_in, w, b, True, ready), sels)))
    finally:
        torch.set_num_threads(n0)  # this thread's count, and the default a new thread starts from
