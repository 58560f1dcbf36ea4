"""Station-day -> picks: one path for every picker (like SeisBench's ``annotate``).

``pick_stream(stream, inventory, params, model)`` is the core:

1. :func:`preprocess` -- the 3 components (Z, N|1, E|2) on one 100 Hz grid (other rates are
   resampled), each contiguous segment demeaned, detrended, tapered and band-passed 1-20 Hz
   (causal Butterworth, 4 poles; training samples use the same function), gaps filled with zeros
   and marked invalid;
2. method ``cerp``: 30 s windows with 15 s stride (windows more than 10 % in gaps are skipped),
   batched as one tensor, per-window std normalisation, the CNN detector on every window, the
   BiGRU picker only on windows with event probability >= ``detect_threshold``; per-step
   P/S probabilities >= ``pick_threshold`` give one pick per run of steps, timed by the steps'
   sub-step offsets; duplicate picks from overlapping windows merged (within ``MERGE_S``, the
   most probable kept); then (:func:`quakescale.detect.refine.screen_and_refine`) picks below
   ``min_prob_p`` / ``min_prob_s`` dropped, onsets of ``refine_phases`` refined on the waveform
   (AIC, used only where the onset is sharp) and P picks without a waveform onset dropped
   unless the network is very sure (``onset_min_contrast``, ``onset_check_max_prob``);
   method ``seisbench``: any SeisBench picker (:mod:`quakescale.detect.seisbench_picker`) on the raw
   stream, its own preprocessing and batched overlapping windows;
   methods ``stalta`` / ``kurtosis``: :mod:`quakescale.detect.classic` on the whole day;
3. SNR (1-20 Hz peak after / RMS before) and, for S picks, the Wood-Anderson amplitude
   (:mod:`quakescale.detect.amplitude`) from 1 s before P to 5 s after S, with its source
   (response / sensitivity / none), note and clipping flag; a missing amplitude never drops a pick.

The numpy/scipy steps (components in 1, horizontals and SNRs in 3, P and S refinement) run on a
small thread pool as wide as torch's thread count (:mod:`quakescale.detect.threads`; one thread
in a Dask worker): the same table at any width.  Reading a station-day itself
(:func:`run_station_day` without a read-ahead), each component is band-passed on that pool
while the next one is read (:class:`StreamedPreprocess`).  The per-sample and per-pick loops
(band-pass pass, AIC onsets, SNRs, flat-top search) are compiled with numba
(:mod:`.filter_kernel`, :mod:`.pick_kernels`) and give numpy's and scipy's numbers.

``run_station_day(cfg, station_id, day, model=None)`` reads the day from the SDS archive and
returns the table; the detect stage (``quakescale.hpc.stages.run_task``) writes it to
``picks/day=DAY/NET.STA.parquet`` atomically with a status row (ok / no_data / skipped for bad data /
failed + reason).  No scheduler is involved anywhere here.
"""

from __future__ import annotations

import ctypes
import threading
import time
from concurrent.futures import wait
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import torch
from obspy import Stream, Trace, UTCDateTime
from scipy import signal

from .. import schema as S
from ..config import DetectSection
from . import amplitude as amp
from . import cpu_detector, cpu_picker, filter_kernel, pick_kernels
from .models import FS_HZ, STEP_N, WINDOW_N, CerpModel, load_model, normalize_windows
from .refine import screen_arrays
from .threads import executor, submit

MERGE_S = 1.0  # picks of one phase closer than this from overlapping windows are one pick
MAX_GAP_FRACTION = 0.1
PAD_DAY_S = 30.0  # read this much of the neighbouring days so windows across midnight are complete
SNR_PRE_S, SNR_POST_S = 5.0, 2.0
COMPONENTS = (("Z",), ("N", "1"), ("E", "2"))


# ---------------------------------------------------------------- allocator
_MALLOC_TUNED = False


def tune_malloc() -> bool:
    """Raise glibc's mmap/trim thresholds and top pad (as MALLOC_MMAP_THRESHOLD_ etc. would), and
    keep every thread on one arena (``MALLOC_ARENA_MAX=1``).

    Large per-batch tensors otherwise go through mmap/munmap on every call; measured 25 s ->
    11 s per station-day for a larger model in the issue.  With the high trim threshold each
    thread's own arena would keep what it freed: with the CPU pool, one arena took a fresh
    worker's peak RSS from 810 to 775 MB, and no step was slower, nor 4 station-days on two
    Dask-like threads (allocations are few and large).  Called before any thread of the pool allocates (a thread
    keeps the arena it first got).  No-op off glibc."""
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -2, -3, -8
        ok = (
            libc.mallopt(M_MMAP_THRESHOLD, 256 * 1024 * 1024)
            and libc.mallopt(M_TRIM_THRESHOLD, 512 * 1024 * 1024)
            and libc.mallopt(M_TOP_PAD, 64 * 1024 * 1024)
            and libc.mallopt(M_ARENA_MAX, 1)
        )
        _MALLOC_TUNED = bool(ok)
    except (OSError, AttributeError):
        _MALLOC_TUNED = False
    return _MALLOC_TUNED


# ---------------------------------------------------------------- preprocessing
@dataclass
class Prepared:
    """A station-day (or any span) on one 100 Hz grid: Z, N, E band-passed float32."""

    t0_ns: int
    data: np.ndarray  # (3, n) float32
    valid: np.ndarray  # (n,) bool
    network: str
    station: str
    location: str
    channel: str  # e.g. "HH?"
    pending: "_Progress | None" = None  # components still being band-passed (StreamedPreprocess)

    @property
    def station_id(self) -> str:
        return f"{self.network}.{self.station}"

    def wait(self, upto: int | None = None) -> None:
        """Return once samples ``[0, upto)`` (default: all) of every component are final (at
        once unless a :class:`StreamedPreprocess` is still filtering); raises what the filter
        raised."""
        if self.pending is not None:
            self.pending.wait(self.data.shape[1] if upto is None else upto)

    def time_ns(self, idx) -> np.ndarray:
        return self.t0_ns + np.round(np.asarray(idx, np.float64) * (1e9 / FS_HZ)).astype(np.int64)


def as_params(params) -> DetectSection:
    if params is None:
        return DetectSection()
    if isinstance(params, DetectSection):
        return params
    if hasattr(params, "detect") and isinstance(params.detect, DetectSection):
        return params.detect
    return DetectSection(**dict(params))


@lru_cache(maxsize=8)
def _sos(fmin: float, fmax: float, fs: float):
    return signal.butter(4, [fmin, fmax], btype="bandpass", fs=fs, output="sos")


def _to_100hz(tr, fs: float):
    sr = tr.stats.sampling_rate
    if abs(sr - fs) < 1e-6:
        return tr
    tr = tr.copy()
    tr.data = tr.data.astype(np.float64)
    ratio = sr / fs
    if sr > fs and abs(ratio - round(ratio)) < 1e-6:
        tr.filter("lowpass", freq=0.4 * fs, corners=8, zerophase=True)
        tr.data = tr.data[:: int(round(ratio))]
        tr.stats.sampling_rate = fs
    else:
        tr.resample(fs) if sr > fs else tr.interpolate(fs, method="lanczos", a=10)
    return tr


def contiguous_runs(tr) -> list[tuple[int, int]]:
    """``[(i0, i1)]`` sample ranges of a trace that hold data (a merged trace masks its gaps)."""
    d = tr.data
    if not np.ma.isMaskedArray(d) or not np.ma.getmask(d).any():
        return [(0, len(d))] if len(d) else []
    m = np.ma.getmaskarray(d)
    change = np.flatnonzero(m[1:] != m[:-1]) + 1  # bool compares: no int copies of a day's mask
    bounds = np.concatenate(([0], change, [len(m)]))
    first = 0 if not m[0] else 1  # runs of data alternate with gaps
    return [(int(a), int(b)) for a, b in zip(bounds[first:-1:2], bounds[first + 1 :: 2])]


# samples per pass of the segment filter: working memory stays a few MB.  Its rounding is part of
# the output: 2^18 held ~60 MB less after preprocessing (a fresh worker's peak ~15 MB less) but
# moved 4 picks of the real Mesetas hours, all at the end of flat-lined stretches (SNR 1e9-1e15:
# the band-passed flat part is rounding noise) and 2 of 58 associated events
CHUNK_N = 1 << 20


def detrend_taper_filter(x: np.ndarray, sos, taper_n: int, out: np.ndarray | None = None, progress=None) -> np.ndarray:
    """Linear detrend (least squares, closed form), cosine taper of ``taper_n`` samples at both
    ends and a causal SOS filter of one contiguous segment, written as float32 into ``out``
    (allocated when None).

    Same result as ``scipy.signal.detrend(x, 'linear')`` + taper + ``sosfilt`` (to float
    rounding), in chunks of :data:`CHUNK_N` samples: the filter state carries over between
    chunks, so the output is that of one pass, and no full-length float64 copy is ever made.
    ``progress``: called with the number of output samples final so far, after each chunk."""
    n = len(x)
    out = np.empty(n, np.float32) if out is None else out
    if len(out) != n:
        raise ValueError(f"detrend_taper_filter: out has {len(out)} samples for {n}")
    tm = (n - 1) / 2.0
    k = _ramp(min(n, CHUNK_N))  # 0, 1, 2, ... (cached): sum(i x_i) of a chunk at a = a sum(x) + k.x
    total, tdot = 0.0, 0.0
    for a in range(0, n, CHUNK_N):
        xc = np.asarray(x[a : a + CHUNK_N], np.float64)
        s = float(xc.sum())
        total += s
        tdot += a * s + float(np.einsum("i,i->", k[: len(xc)], xc))  # not BLAS: no thread pool for a dot
    ym = total / n if n else 0.0
    denom = n * (n * n - 1) / 12.0
    slope = (tdot - tm * ym * n) / denom if denom > 0 else 0.0
    w = 0.5 * (1 - np.cos(np.linspace(0, np.pi, taper_n))) if taper_n > 1 else None
    zi = np.zeros((sos.shape[0], 2))
    ramp = slope * k
    x = np.asarray(x)
    if sos.shape == (4, 6) and filter_kernel.serves(x, out):  # the same arithmetic in one compiled pass
        w1 = w if w is not None else np.zeros(0)
        sos = np.ascontiguousarray(sos, np.float64)
        for a in range(0, n, CHUNK_N):
            b = min(a + CHUNK_N, n)
            filter_kernel.detrend_taper_sos4(x[a:b], a, ym + slope * (a - tm), ramp, w1, n, sos, zi, out[a:b])
            if progress is not None:
                progress(b)
        return out
    for a in range(0, n, CHUNK_N):
        y = np.asarray(x[a : a + CHUNK_N], np.float64) - (ym + slope * (a - tm))
        y -= ramp[: len(y)]
        if w is not None:
            if a < taper_n:  # head of the segment
                kk = min(taper_n - a, len(y))
                y[:kk] *= w[a : a + kk]
            if a + len(y) > n - taper_n:  # tail
                k0 = max(n - taper_n - a, 0)
                y[k0:] *= w[::-1][a + k0 - (n - taper_n) :][: len(y) - k0]
        y, zi = signal.sosfilt(sos, y, zi=zi)
        out[a : a + len(y)] = y
        if progress is not None:
            progress(a + len(y))
    return out


@lru_cache(maxsize=2)
def _ramp(n: int) -> np.ndarray:
    r = np.arange(n, dtype=np.float64)
    r.flags.writeable = False
    return r


def _components(stream) -> list[list]:
    """The traces of each component (Z, N|1, E|2) of ``stream``, in its order."""
    return [[tr for tr in stream if tr.stats.channel[-1:] in names] for names in COMPONENTS]


def _grid(traces, fs: float, t0=None, t1=None) -> tuple[int, int]:
    """(first sample's time in ns on the 10 ms grid, samples) of the grid spanning ``traces``
    (or ``t0`` .. ``t1``)."""
    t0 = t0 if t0 is not None else min(tr.stats.starttime for tr in traces)
    t1 = t1 if t1 is not None else max(tr.stats.endtime for tr in traces)
    t0_ns = int(round(UTCDateTime(t0).ns / 1e7)) * 10_000_000  # on the 10 ms grid
    return t0_ns, int(np.floor((UTCDateTime(t1).ns - t0_ns) / 1e9 * fs + 1e-6)) + 1


def _fill(trs, c: int, t0_ns: int, fs: float, sos, data: np.ndarray, runs: list, progress=None) -> None:
    """Row ``c`` of ``data`` (the grid from ``t0_ns``) from the traces ``trs`` of one component:
    each contiguous run of 2 s or more resampled to ``fs`` if need be, detrended, tapered and
    filtered into place, and ``(c, a, b)`` appended to ``runs`` for the samples ``[a, b)`` it
    filled (no per-sample mask: :func:`_prepared` makes the day's one).  ``progress`` (a
    :class:`_Progress`, for a component that is one run over the whole grid) hears how far row
    ``c`` is final."""
    n = data.shape[1]
    for tr in trs:
        sr = float(tr.stats.sampling_rate)
        raw = np.ma.getdata(tr.data)
        for r0, r1 in contiguous_runs(tr):
            if (r1 - r0) < 2 * sr:
                continue
            start_ns = tr.stats.starttime.ns + int(round(r0 * 1e9 / sr))
            if abs(sr - fs) < 1e-6:
                x = raw[r0:r1]
            else:  # other rates: resampled segment by segment (rare path, ObsPy)
                seg = Trace(
                    raw[r0:r1].astype(np.float64),
                    header={"sampling_rate": sr, "starttime": UTCDateTime(ns=start_ns)},
                )
                x = _to_100hz(seg, fs).data
            i0 = int(round((start_ns - t0_ns) / 1e9 * fs))
            a, b = max(i0, 0), min(i0 + len(x), n)
            if b <= a:
                continue
            taper_n = min(int(fs), len(x) // 4)
            if a == i0 and b == i0 + len(x):  # the usual case: filtered straight into place
                report = None if progress is None else (lambda k, a=a: progress.report(c, a + k))
                detrend_taper_filter(x, sos, taper_n, out=data[c, a:b], progress=report)
            else:
                data[c, a:b] = detrend_taper_filter(x, sos, taper_n)[a - i0 : b - i0]
            runs.append((c, a, b))


def _merged(spans) -> list[tuple[int, int]]:
    """Sorted, non-overlapping union of ``[a, b)`` spans."""
    out: list[list[int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _common(runs, n_rows: int = 3) -> list[tuple[int, int]]:
    """The spans where every one of ``n_rows`` components has data (``runs``: ``(c, a, b)``)."""
    common = _merged((a, b) for c, a, b in runs if c == 0)
    for c in range(1, n_rows):
        other, both, j = _merged((a, b) for k, a, b in runs if k == c), [], 0
        for a, b in common:
            while j < len(other) and other[j][1] <= a:
                j += 1
            k = j
            while k < len(other) and other[k][0] < b:
                lo, hi = max(a, other[k][0]), min(b, other[k][1])
                if lo < hi:
                    both.append((lo, hi))
                k += 1
        common = both
    return common


def _prepared(t0_ns: int, data: np.ndarray, runs: list | None, first, pending=None) -> Prepared:
    """The :class:`Prepared` day: samples where a component has no data (in no ``(c, a, b)``
    span of ``runs``) zeroed and invalid (``runs`` None: every sample valid, nothing to zero);
    ``first``: the vertical's stats.  The one mask made is the day's ``valid`` (no
    per-component copy)."""
    n = data.shape[1]
    valid = np.ones(n, bool) if runs is None else np.zeros(n, bool)
    if runs is not None:
        end = 0
        for a, b in _common(runs, data.shape[0]) + [(n, n)]:
            data[:, end:a] = 0.0  # a gap in at least one component
            valid[a:b] = True
            end = b
    ch = first.channel[:-1] + "?"
    return Prepared(t0_ns, data, valid, first.network, first.station, first.location, ch, pending)


def preprocess(stream: Stream, params=None, t0: UTCDateTime | None = None, t1: UTCDateTime | None = None) -> Prepared:
    """Band-pass the 3 components of ``stream`` onto one grid from ``t0`` to ``t1`` (default:
    the data's extent).  Raises ValueError naming the stream when a component is missing.

    Gaps (masked samples of a merged trace) are handled as index ranges of the one trace: each
    contiguous run of data is detrended, tapered and filtered on its own (no split into many
    traces); runs shorter than 2 s are dropped; samples in no run are zero and marked invalid.
    The horizontals are filtered on the CPU pool (:mod:`quakescale.detect.threads`) while the
    vertical is filtered on the calling thread."""
    p = as_params(params)
    fs = float(p.sampling_rate_hz)
    if not len(stream):
        raise ValueError("preprocess: empty stream")
    comps = _components(stream)
    if not comps[0]:
        raise ValueError(f"preprocess: no vertical (…Z) channel in {sorted({tr.id for tr in stream})}")
    if not comps[1] or not comps[2]:
        raise ValueError(f"preprocess: incomplete 3-component set {sorted({tr.id for tr in stream})}")
    t0_ns, n = _grid(stream, fs, t0, t1)
    data = np.zeros((3, n), np.float32)
    runs: list = []
    sos = _sos(p.freqmin_hz, p.freqmax_hz, fs)
    # the horizontals on the pool, the vertical here: three filters on two threads keep both
    # cores busy to the end (two pool threads alone leave one idle while the third component runs)
    rest = [submit(_fill, comps[c], c, t0_ns, fs, sos, data, runs) for c in (1, 2)]
    try:
        _fill(comps[0], 0, t0_ns, fs, sos, data, runs)
    finally:
        wait(rest)  # nothing writes into the arrays after this returns or raises
    for f in rest:
        f.result()
    return _prepared(t0_ns, data, runs, comps[0][0].stats)


class _Progress:
    """How far each component's row is final, for readers that start before the filtering ends."""

    def __init__(self, n_rows: int = 3):
        self._cv = threading.Condition()
        self._upto = [0] * n_rows
        self._error: BaseException | None = None

    def report(self, row: int, upto: int) -> None:
        with self._cv:
            self._upto[row] = max(self._upto[row], upto)
            self._cv.notify_all()

    def fail(self, exc: BaseException) -> None:
        with self._cv:
            self._error = exc
            self._cv.notify_all()

    def wait(self, upto: int) -> None:
        with self._cv:
            self._cv.wait_for(lambda: self._error is not None or min(self._upto) >= upto)
            if self._error is not None:
                raise self._error


def _fill_reporting(progress: _Progress, n: int, *args) -> None:
    """:func:`_fill` that tells ``progress`` how far its row is, and what went wrong."""
    try:
        _fill(*args, progress=progress)
    except BaseException as exc:
        progress.fail(exc)
        raise
    progress.report(args[1], n)


class StreamedPreprocess:
    """:func:`preprocess` of a station-day whose components arrive one at a time (the
    ``on_component`` callback of :func:`quakescale.archive.read_station_day`): each is filtered on
    the CPU pool while the next one is read, so the read and the band-pass overlap.

    The grid is taken from the first component (the vertical) and checked against the whole
    stream at :meth:`finish`; where it differs (a component starting earlier or ending later),
    where a component comes in several parts or several traces, or where the reader replaced
    the traces it handed over, :meth:`finish` runs :func:`preprocess` on the stream instead.
    Either way the result is :func:`preprocess`'s, bit for bit.

    Where every component is one gap-free run over the whole grid (the usual day), :meth:`finish`
    does not wait for the last one's filter: the :class:`Prepared` day it returns is
    ``pending`` until then, and readers wait (:meth:`Prepared.wait`) for the samples they need
    (the CPU detector batch by batch, as the filter runs ahead of it)."""

    def __init__(self, params=None):
        self.p = as_params(params)
        self.fs = float(self.p.sampling_rate_hz)
        self.sos = _sos(self.p.freqmin_hz, self.p.freqmax_hz, self.fs)
        self.grid: tuple[int, int] | None = None
        self.data = None
        self.runs: list = []  # (component, a, b) spans filled
        self.traces: list = []
        self.futures: list = []
        self.seen: set[int] = set()
        self.ok = True
        self.whole = True  # every component so far is one gap-free run over the whole grid
        self.progress = _Progress()
        self.used = ""  # how finish() made the day: "overlap", "streamed" or "preprocess"

    def add(self, part) -> None:
        """One component's traces (a Stream), as read."""
        if not self.ok:
            return
        idx = {c for c, trs in enumerate(_components(part)) if trs}
        c = idx.pop() if len(idx) == 1 else None
        if c is None or len(part) != 1 or c in self.seen:
            self.ok = False
            return
        grid = _grid(self.traces + list(part), self.fs)
        if self.grid is None:
            self.grid = grid
            self.data = np.zeros((3, grid[1]), np.float32)
        elif grid != self.grid:  # this component reaches beyond the first one's grid
            self.ok = False
            return
        self.seen.add(c)
        self.traces.extend(part)
        tr = part[0]
        self.whole = (
            self.whole
            and abs(tr.stats.sampling_rate - self.fs) < 1e-6
            and contiguous_runs(tr) == [(0, tr.stats.npts)]
            and tr.stats.npts == self.grid[1]
            and int(round((tr.stats.starttime.ns - self.grid[0]) / 1e9 * self.fs)) == 0
            and tr.stats.npts >= 2 * self.fs
        )
        args = (list(part), c, self.grid[0], self.fs, self.sos, self.data, self.runs)
        self.futures.append(submit(_fill_reporting, self.progress, self.grid[1], *args))

    def finish(self, stream, overlap: bool = True) -> Prepared:
        """The :class:`Prepared` station-day of ``stream`` (the reader's result); ``overlap``:
        without waiting for the filters where every component is one whole run (see above)."""
        same = (
            self.ok
            and len(self.seen) == 3
            and len(stream) == len(self.traces)
            and {id(tr) for tr in stream} == {id(tr) for tr in self.traces}
            and _grid(stream, self.fs) == self.grid
        )
        self.traces = []  # the raw counts are the stream's to drop (release_vertical)
        if same and self.whole and overlap:  # every sample valid: nothing to zero, no mask to wait for
            data, self.data, self.runs, self.futures = self.data, None, [], []
            self.used = "overlap"
            return _prepared(self.grid[0], data, None, _components(stream)[0][0].stats, self.progress)
        wait(self.futures)  # nothing writes into the arrays after this
        futures, self.futures = self.futures, []
        data, runs, self.data, self.runs = self.data, self.runs, None, []
        if same:
            for f in futures:
                f.result()
            comps = _components(stream)
            self.used = "streamed"
            return _prepared(self.grid[0], data, runs, comps[0][0].stats)
        del data, runs
        self.used = "preprocess"
        return preprocess(stream, self.p)

    def close(self) -> None:
        """Wait for the filters under way and drop everything (the read failed)."""
        wait(self.futures)
        self.futures, self.traces, self.data, self.runs = [], [], None, []


# ---------------------------------------------------------------- CERP inference
def window_starts(n: int, window_n: int = WINDOW_N, stride_n: int = 1500) -> np.ndarray:
    if n < window_n:
        return np.zeros(0, np.int64)
    s = np.arange(0, n - window_n + 1, stride_n, dtype=np.int64)
    if s[-1] != n - window_n:
        s = np.append(s, n - window_n)
    return s


def decode_steps(probs: np.ndarray, offsets: np.ndarray, threshold: float) -> list[tuple[str, float, float]]:
    """Per-step (T, 3) probabilities + (T, 2) offsets of one window -> [(phase, sample, prob)]:
    :func:`decode_batch` of that one window (P runs then S runs, in time)."""
    return decode_batch(probs[None], offsets[None], threshold, np.zeros(1, np.int64))


def decode_batch(
    probs: np.ndarray, offsets: np.ndarray, threshold: float, starts: np.ndarray
) -> list[tuple[str, float, float]]:
    """Picks of many windows: ``probs`` (B, T, 3), ``offsets`` (B, T, 2), window ``starts`` (B,) in
    samples -> [(phase, start + sample, prob)], window by window, P runs then S runs, in time
    (:func:`decode_arrays` as a list)."""
    return as_list(*decode_arrays(probs, offsets, threshold, starts))


def decode_arrays(
    probs: np.ndarray, offsets: np.ndarray, threshold: float, starts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`decode_batch` as arrays: (phases, samples float64, probabilities float64).

    Each run of steps above ``threshold`` is one pick; its time is the probability-weighted mean of
    the run's step times ``(step + offset) * STEP_N`` (offsets are relative to each step), its
    probability the run's maximum.  Runs are found on the flattened (B, T + 1) mask (a False step
    between windows), the weighted means and maxima by ``reduceat``."""
    b, t = probs.shape[:2]
    recs = []
    for c, ph in ((1, 0), (2, 1)):
        above = np.zeros((b, t + 1), bool)
        above[:, :t] = probs[:, :, c] >= threshold
        idx = np.flatnonzero(above)
        if not len(idx):
            continue
        first = np.concatenate(([0], np.flatnonzero(np.diff(idx) > 1) + 1))
        win, step = np.divmod(idx, t + 1)
        w = probs[win, step, c]
        tt = (step + offsets[win, step, c - 1]) * STEP_N
        num = np.add.reduceat(w * tt, first)
        den = np.add.reduceat(w, first)
        recs.append((win[first], np.full(len(first), ph), step[first], num / den, np.maximum.reduceat(w, first)))
    if not recs:
        return _no_picks()
    win, ph, step, sample, q = (np.concatenate(x) for x in zip(*recs))
    order = np.lexsort((step, ph, win))
    sample = np.asarray(starts, np.int64)[win[order]] + sample[order]
    return np.array(["P", "S"])[ph[order]], sample, q[order].astype(np.float64)


def _no_picks() -> tuple:
    return np.zeros(0, "<U1"), np.zeros(0), np.zeros(0)


def as_list(ph: np.ndarray, sample: np.ndarray, prob: np.ndarray) -> list[tuple[str, float, float]]:
    """Picks as arrays (phases, samples, probabilities) -> [(phase, sample, probability)]."""
    return list(zip(ph.tolist(), np.asarray(sample, np.float64).tolist(), np.asarray(prob, np.float64).tolist()))


def as_arrays(picks: list[tuple[str, float, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[(phase, sample, probability)] -> arrays (phases, samples float64, probabilities float64)."""
    if not picks:
        return _no_picks()
    ph, sample, prob = zip(*picks)
    return np.array(ph), np.array(sample, np.float64), np.array(prob, np.float64)


def merge_picks(picks: list[tuple[str, float, float]], tol_n: float) -> list[tuple[str, float, float]]:
    """Merge picks of the same phase closer than ``tol_n`` samples: keep the most probable
    (:func:`merge_order` of the list's arrays)."""
    return [picks[j] for j in merge_order(*as_arrays(picks), tol_n).tolist()]


def merge_order(ph: np.ndarray, sample: np.ndarray, prob: np.ndarray, tol_n: float) -> np.ndarray:
    """The picks :func:`merge_picks` keeps, as indices in its output order.

    Per phase, the picks in time order (ties in input order) form groups wherever two neighbours
    lie more than ``tol_n`` apart; each group keeps its first most probable pick; the kept picks
    come in time order (P before S at the same sample).  Sorts, not a Python loop: a dense
    day's 44,000 raw picks in a few ms instead of ~60 ms."""
    kept = []
    for name in ("P", "S"):
        order = np.flatnonzero(ph == name)
        if not len(order):
            continue
        order = order[np.argsort(sample[order], kind="stable")]
        group = np.cumsum(np.r_[True, np.diff(sample[order]) > tol_n])
        best = np.lexsort((np.arange(len(order)), -prob[order], group))  # per group: most probable, then first
        first = np.r_[True, group[best[1:]] != group[best[:-1]]]
        kept.append(order[best[first]])
    if not kept:
        return np.zeros(0, np.int64)
    k = np.concatenate(kept)
    return k[np.argsort(sample[k], kind="stable")]


GPU_MIN_BATCH = 4096  # windows per batch on a GPU (about 150 MB of input); CPU: see CPU_DETECTOR_BATCH


def window_tensor(data: np.ndarray, win_n: int, device: torch.device) -> torch.Tensor:
    """All windows of ``data`` (C, n) as a strided ``(n - win_n + 1, C, win_n)`` view (no copy) on
    ``device``: ``view[starts]`` gathers a batch in one copy.  On a GPU the station-day goes over
    once (pinned, asynchronous) and every batch is cut there."""
    t = torch.from_numpy(data)
    if device.type == "cuda":
        t = t.pin_memory().to(device, non_blocking=True)
    return t.unfold(1, win_n, 1).permute(1, 0, 2)


# windows per detector batch on a CPU (at most detect.batch_size): the detector step of a whole day's 5,760
# windows (gather, normalise, fused channels-last network), 2 threads, median of 5 in one process:
# 64 -> 0.46 s, 128 -> 0.40 s, 256 -> 0.31 s, 512 -> 0.88 s (channels-first, as before: 64 -> 0.55 s,
# 128 -> 0.51 s, 256 -> 0.88 s); the picker's GRU keeps detect.batch_size
CPU_DETECTOR_BATCH = 256


@torch.inference_mode()
def cerp_picks(prep: Prepared, model: CerpModel, params=None) -> tuple[list, dict]:
    """Detector on all windows, picker on detected ones -> merged [(phase, sample, prob)].

    The counts returned include the seconds spent in the detector, the picker (with decoding)
    and the screening/refinement (``t_detector_s``, ``t_picker_s``, ``t_refine_s``)."""
    p = as_params(params)
    tune_malloc()
    fs = p.sampling_rate_hz
    win_n, stride_n = int(round(p.window_s * fs)), int(round(p.stride_s * fs))
    if win_n != WINDOW_N:
        raise ValueError(f"detect.window_s {p.window_s} does not match the model's {WINDOW_N / FS_HZ} s window")
    t_start = time.perf_counter()
    starts = window_starts(prep.data.shape[1], win_n, stride_n)
    if len(starts) and not prep.valid.all():  # samples in gaps per window, from one int32 running count
        cs = np.cumsum(~prep.valid, dtype=np.int32)
        n_gap = cs[starts + win_n - 1] - np.where(starts > 0, cs[np.maximum(starts - 1, 0)], 0)
        del cs
        starts = starts[n_gap / win_n <= MAX_GAP_FRACTION]
    dev = model.device
    batch = p.batch_size if dev.type == "cpu" else max(p.batch_size, GPU_MIN_BATCH)
    cpu_det = dev.type == "cpu" and len(starts) and cpu_detector.fits(model.detector, win_n, prep.data.shape[0])
    if not cpu_det:
        prep.wait()  # the whole day band-passed (a GPU takes it in one copy)
    wins = window_tensor(prep.data, win_n, dev) if len(starts) else None  # none: shorter than a window
    det_batch = min(batch, CPU_DETECTOR_BATCH) if dev.type == "cpu" else batch
    if cpu_det:
        # the first block compiled, reading the windows from the day (cpu_detector), the rest in
        # torch; each batch waits for its samples if the day is still being band-passed
        det_prob = cpu_detector.detect_windows(model.detector, prep.data, starts, win_n, det_batch, prep.wait)
    else:
        starts_t = torch.from_numpy(starts).to(dev)
        out = []  # kept on the device: one transfer at the end lets the GPU run ahead of the host
        for b in range(0, len(starts), det_batch):
            out.append(torch.sigmoid(model.detector(normalize_windows(wins[starts_t[b : b + det_batch]]))).float())
        det_prob = torch.cat(out).cpu().numpy() if out else np.zeros(0, np.float32)
    prep.wait()
    t_det = time.perf_counter()
    hit = np.flatnonzero(det_prob >= p.detect_threshold)
    raw = _no_picks()
    if len(hit) and dev.type == "cpu" and cpu_picker.fits(model.picker, win_n):
        # numpy + a compiled GRU recurrence on the CPU pool (cpu_picker): no torch thread pool spins against it
        pr, of = cpu_picker.pick_windows(model.picker, prep.data, starts[hit], win_n)
        raw = decode_arrays(pr, of, p.pick_threshold, starts[hit])
    elif len(hit):
        prs, ofs = [], []
        for b in range(0, len(hit), batch):
            sel = starts[hit[b : b + batch]]
            logits, off = model.picker(normalize_windows(wins[torch.from_numpy(sel).to(dev)]))
            prs.append(torch.softmax(logits, -1).float())
            ofs.append(off.float())
        pr, of = torch.cat(prs).cpu().numpy(), torch.cat(ofs).cpu().numpy()
        raw = decode_arrays(pr, of, p.pick_threshold, starts[hit])
    k = merge_order(*raw, MERGE_S * fs)
    ph, sample, prob = (x[k] for x in raw)
    t_pick = time.perf_counter()
    keep, sample, counts = screen_arrays(prep.data, prep.valid, ph, sample, prob, p, fs)
    picks = as_list(ph[keep], sample[keep], prob[keep])
    t_ref = time.perf_counter()
    return picks, {
        "n_windows": int(len(starts)),
        "n_detected": int(len(hit)),
        "n_raw_picks": len(raw[0]),
        **counts,
        "t_detector_s": t_det - t_start,
        "t_picker_s": t_pick - t_det,
        "t_refine_s": t_ref - t_pick,
    }


# ---------------------------------------------------------------- output table
def pick_snr(prep: Prepared, phase: str, idx: float, fs: float = FS_HZ) -> float:
    """1-20 Hz peak in the 2 s after the pick / RMS over 5 s before it (Z for P, horizontal
    envelope for S)."""
    i = int(round(idx))
    a, b = max(i - int(SNR_PRE_S * fs), 0), min(i + int(SNR_POST_S * fs), prep.data.shape[1])
    e = max(i - int(0.2 * fs), a)
    if e - a < 10 or b <= i:
        return float("nan")
    seg = (
        prep.data[0, a:b].astype(np.float64)
        if phase == "P"
        else np.hypot(prep.data[1, a:b].astype(np.float64), prep.data[2, a:b].astype(np.float64))
    )
    rms = float(np.sqrt(np.mean(seg[: e - a] ** 2)))
    return float(np.abs(seg[i - a :]).max() / rms) if rms > 0 else float("nan")


def pick_snrs(prep: Prepared, ph: np.ndarray, idx: np.ndarray, fs: float = FS_HZ, chunk: int = 2048) -> np.ndarray:
    """:func:`pick_snr` of every pick (the same numbers): picks with the full 5 s + 2 s inside the
    data gathered ``chunk`` at a time, the rest one by one."""
    n = prep.data.shape[1]
    i = np.rint(np.asarray(idx, np.float64)).astype(np.int64)
    pre, post, gap = int(SNR_PRE_S * fs), int(SNR_POST_S * fs), int(0.2 * fs)
    out = np.full(len(i), np.nan)
    inner = (i - pre >= 0) & (i + post <= n) & (pre - gap >= 10)
    for k in np.flatnonzero(~inner):
        out[k] = pick_snr(prep, ph[k], idx[k], fs)
    d = prep.data
    if pick_kernels.takes(d, 2, (np.float32,), rows=3):
        sel = np.flatnonzero(inner)  # each pick's samples read in place
        res = np.empty(len(sel))
        pick_kernels.snrs(d, ph[sel] == "P", i[sel], pre, post, gap, res)
        out[sel] = res
        return out
    rel = np.arange(-pre, post)
    for phase in ("P", "S"):
        sel_all = np.flatnonzero(inner & (ph == phase))
        for c in range(0, len(sel_all), chunk):
            sel = sel_all[c : c + chunk]
            g = i[sel, None] + rel[None, :]
            if phase == "P":
                seg = prep.data[0][g].astype(np.float64)
            else:
                seg = np.hypot(prep.data[1][g].astype(np.float64), prep.data[2][g].astype(np.float64))
            rms = np.sqrt(np.mean(seg[:, : pre - gap] ** 2, axis=1))
            peak = np.abs(seg[:, pre:]).max(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                out[sel] = np.where(rms > 0, peak / rms, np.nan)
    return out


def picks_table(
    prep: Prepared,
    picks: list[tuple[str, float, float]],
    method: str,
    model_label: str,
    stream: Stream | None = None,
    inventory=None,
    params=None,
) -> pd.DataFrame:
    """Turn [(phase, sample, probability)] into the PICKS table (amplitudes on S picks)."""
    p = as_params(params)
    if not picks:
        df = S.empty(S.PICKS).to_pandas()
        return df
    ph = np.array([x[0] for x in picks])
    idx = np.array([x[1] for x in picks], np.float64)
    t_ns = prep.time_ns(idx)
    snr = submit(pick_snrs, prep, ph, idx)  # on the CPU pool while the amplitudes are measured here
    amp_cols = amplitude_columns(ph, t_ns, stream, inventory, p)
    df = pd.DataFrame(
        {
            "station_id": prep.station_id,
            "network": prep.network,
            "station": prep.station,
            "location": prep.location,
            "channel": prep.channel,
            "phase": ph,
            "time": pd.to_datetime(t_ns, unit="ns", utc=True),
            "probability": np.array([x[2] for x in picks], np.float32),
            "snr": snr.result().astype(np.float32),
            **amp_cols,
            "method": method,
            "model": model_label,
        }
    )
    return df.sort_values("time", kind="stable").reset_index(drop=True)


def amplitude_columns(ph: np.ndarray, t_ns: np.ndarray, stream: Stream | None, inventory, params=None) -> dict:
    """``amp_wa_mm`` / ``amp_source`` / ``amp_note`` / ``amp_clipped`` of picks (measured on S
    picks; every pick is kept whatever its amplitude's fate)."""
    p = as_params(params)
    n = len(ph)
    out = {
        "amp_wa_mm": np.full(n, np.nan),
        "amp_source": np.full(n, None, object),
        "amp_note": np.full(n, "", object),
        "amp_clipped": np.zeros(n, bool),
    }
    is_s = ph == "S"
    if not is_s.any():
        return out
    if stream is None or inventory is None:
        out["amp_source"][is_s] = "none"
        out["amp_note"][is_s] = "no waveforms" if stream is None else "no inventory"
        return out
    ms = amp.s_pick_measurements(stream, inventory, t_ns[ph == "P"], t_ns[is_s], p.amp_pre_p_s, p.amp_post_s_s)
    idx = np.flatnonzero(is_s)
    out["amp_wa_mm"][idx] = [m.amp_mm for m in ms]
    out["amp_source"][idx] = [m.source for m in ms]
    out["amp_note"][idx] = [m.note for m in ms]
    out["amp_clipped"][idx] = [m.clipped for m in ms]
    return out


_MODELS: dict = {}


def get_model(spec: str = "builtin:default", device: str = "auto") -> CerpModel:
    """Load (once per process) the CERP weights named by ``detect.model``."""
    key = (str(spec), device)
    if key not in _MODELS:
        _MODELS[key] = load_model(spec, device)
    return _MODELS[key]


def pick_stream(
    stream: Stream,
    inventory=None,
    params=None,
    model: CerpModel | None = None,
    t0=None,
    t1=None,
    info: dict | None = None,
    release_vertical: bool = False,
    prepared: Prepared | None = None,
) -> pd.DataFrame:
    """Picks of one station's 3-component ``stream`` (PICKS columns, times UTC ns).

    ``params``: a :class:`DetectSection` (or dict / Config); ``method`` chooses cerp / seisbench /
    stalta / kurtosis.  ``inventory`` (ObsPy Inventory) is needed for ``amp_wa_mm`` (NaN without).
    ``info`` (a dict) receives counts (windows, detected windows, raw picks) and the seconds of
    each step (``t_preprocess_s``, ``t_detector_s``, ``t_picker_s``, ``t_refine_s``, ``t_table_s``:
    SNR and amplitudes).  ``release_vertical``: the CERP and classic methods drop the vertical
    traces from ``stream`` once band-passed (the amplitudes read the horizontals only; a
    caller that owns the stream saves a day of raw counts).  ``prepared``: the stream already
    preprocessed (:class:`StreamedPreprocess`; ``t0``/``t1`` are then not used)."""
    p = as_params(params)
    tune_malloc()  # before the CPU pool's threads first allocate
    t = time.perf_counter()
    prep = prepared if prepared is not None else preprocess(stream, p, t0, t1)
    if p.method != "cerp":
        prep.wait()  # (cerp_picks waits batch by batch)
    t_prep = time.perf_counter() - t
    if release_vertical and p.method != "seisbench":
        stream.traces = [tr for tr in stream if tr.stats.channel[-1:] not in COMPONENTS[0]]
    if p.method == "cerp":
        model = model if model is not None else get_model(p.model, p.device)
        picks, stats = cerp_picks(prep, model, p)
        label = model.label
    elif p.method == "seisbench":  # any SeisBench picker (detect/seisbench_picker.py); model: a SeisBenchPicker
        from .seisbench_picker import get_picker, seisbench_picks

        model = model if model is not None else get_picker(p.model, p.device)
        picks, stats = seisbench_picks(stream, prep.t0_ns, p.sampling_rate_hz, model, p)
        label = model.label
    else:
        from .classic import classic_picks

        picks = classic_picks(prep.data, prep.valid, p.method, p)
        stats = {"n_windows": 0, "n_detected": 0, "n_raw_picks": len(picks)}
        label = f"{p.method}@{p.sta_s:g}/{p.lta_s:g}/{p.trigger_on:g}/{p.trigger_off:g}"
    t = time.perf_counter()
    df = picks_table(prep, picks, "cerp" if p.method == "cerp" else p.method, label, stream, inventory, p)
    if info is not None:
        info.update(stats, t_preprocess_s=t_prep, t_table_s=time.perf_counter() - t)
    return df


# ---------------------------------------------------------------- station-day
@lru_cache(maxsize=4)
def _inventory(path: str):
    from ..archive import load_inventory

    return load_inventory(path)


def run_station_day(
    cfg,
    station_id: str,
    day,
    model: CerpModel | None = None,
    inventory=None,
    info: dict | None = None,
    reader=None,
) -> pd.DataFrame:
    """Read one station-day from ``cfg.archive.sds_root`` and return its picks (PICKS columns).

    ``reader``: a :class:`quakescale.archive.ReadAhead` over the task's station-days (read with
    ``pad_s=PAD_DAY_S``), which has read this one while the one before it was picked; ``info``'s
    ``t_read_s`` is then the wait for it.  Without a reader the components are band-passed as
    they are read (:class:`StreamedPreprocess`), and with a CPU pool two component files are
    decoded at once (``decode_on`` of :func:`~quakescale.archive.read_station_day`; the floor
    of ``benchmarks/bench_detect.py`` reads them one after the other, as ``bench_io.py`` does):
    ``t_preprocess_s`` is what is left after the read
    (on a usual day, the last component is still being filtered when the detector starts, and
    what the detector waits for it counts in ``t_detector_s``).
    Raises :class:`quakescale.archive.ArchiveError` for
    missing/unreadable data."""
    from ..archive import as_day, read_station_day

    tune_malloc()  # before any thread allocates (a thread keeps the malloc arena it first gets)
    day = as_day(day)
    t = time.perf_counter()
    prep = streamed = None
    if reader is not None:
        st = reader.get(station_id, day)
    else:
        # with a CPU pool each component is band-passed on it while the next one is read, and the
        # second component's file is decoded on it while the first one is decoded here
        streamed = StreamedPreprocess(cfg.detect) if executor() is not None else None
        try:
            st = read_station_day(
                cfg.archive.sds_root,
                station_id,
                day,
                channels=list(cfg.archive.channels),
                pad_s=PAD_DAY_S,
                on_component=streamed.add if streamed is not None else None,
                decode_on=submit if streamed is not None else None,
            )
        except BaseException:
            if streamed is not None:
                streamed.close()  # no filter outlives the failed read
            raise
    t_read = time.perf_counter()
    if info is not None:
        info["t_read_s"] = t_read - t
    if reader is None and streamed is not None:
        prep = streamed.finish(st)
        del streamed
    t_prep = time.perf_counter()
    inv = inventory if inventory is not None else _inventory(str(cfg.archive.inventory))
    d0 = UTCDateTime(day.isoformat())
    df = pick_stream(st, inv, cfg.detect, model, info=info, release_vertical=True, prepared=prep)
    if info is not None and prep is not None:  # the band-pass left after the read (the rest overlapped it)
        info["t_preprocess_s"] = t_prep - t_read
    if len(df):  # keep picks of this day only (padding may reach into neighbours)
        t = df["time"].astype("int64").to_numpy()
        df = df[(t >= d0.ns) & (t < (d0 + 86400).ns)].reset_index(drop=True)
    return df
