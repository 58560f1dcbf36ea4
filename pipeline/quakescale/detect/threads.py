"""The CPU steps of a station-day on as many threads as torch may use.

Reading aside, a station-day's numpy/scipy steps (per-component band-pass, per-horizontal
Wood-Anderson traces, AIC refinement and SNRs per phase) are independent of one another and
release the GIL in their inner loops (``sosfilt``, FFTs, ufuncs, fancy indexing).  They share one
small pool whose width is ``torch.get_num_threads()``: the same budget the networks get, so
a worker that gives torch 1 thread (a Dask worker: ``OMP_NUM_THREADS=1``) runs them one after
the other, as before, and nothing is oversubscribed.  The results do not depend on the width:
every task writes its own outputs.

Tasks never wait on other tasks of the pool (a call from inside a pool thread runs inline), and
a forked child (Dask nanny, ``ProcessPoolExecutor``) builds its own pool.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

_PREFIX = "quakescale-cpu"
_LOCK = threading.Lock()
_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, width, pool)


def width() -> int:
    """Threads for the CPU steps: torch's intra-op thread count (1 without torch)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return 1
    return max(1, int(torch.get_num_threads()))


def _pool() -> ThreadPoolExecutor | None:
    global _POOL
    if threading.current_thread().name.startswith(_PREFIX):
        return None
    n = width()
    if n < 2:
        return None
    with _LOCK:
        if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] != n:
            # a pool of another width is dropped, not shut down: a caller may still be using it
            # (its threads end when it is collected)
            _POOL = (os.getpid(), n, ThreadPoolExecutor(n, thread_name_prefix=_PREFIX))
        return _POOL[2]


def tmap(fn, items) -> list:
    """``[fn(x) for x in items]``, the items on the pool's threads (in order; exceptions raised)."""
    items = list(items)
    pool = _pool() if len(items) > 1 else None
    if pool is None:
        return [fn(x) for x in items]
    return list(pool.map(fn, items))


def submit(fn, *args) -> Future:
    """``fn(*args)`` on a pool thread, or now when there is no pool: its :class:`Future`."""
    pool = _pool()
    if pool is not None:
        return pool.submit(fn, *args)
    fut: Future = Future()
    try:
        fut.set_result(fn(*args))
    except Exception as exc:  # the caller sees it at .result(), as from the pool
        fut.set_exception(exc)
    return fut


def executor() -> ThreadPoolExecutor | None:
    """The pool itself (None when its width is 1 or the caller is one of its threads)."""
    return _pool()
