"""Wood-Anderson amplitudes for local magnitudes (the seed's amplitude window).

For each event at a station the amplitude is measured from ``amp_pre_p_s`` (1 s) before P to
``amp_post_s_s`` (5 s) after S: the raw horizontal traces (counts) are cut with padding,
instrument-corrected to displacement with the StationXML response, passed through the
Wood-Anderson seismograph (:data:`quakescale.ml.WA_PAZ`, static magnification 2080), and the
zero-to-peak amplitude over both horizontals is returned in millimetres (column ``amp_wa_mm``).
Only the padded windows are processed, never the whole day; :class:`WAMeter` evaluates each
channel's response once per FFT length. :meth:`WAMeter.measure` transforms one padded window;
:meth:`WAMeter.measure_many` (a station-day's S picks) merges the padded windows into gap-free
spans and transforms each span once, in overlap-save blocks of ``NFFT_BLOCK`` samples overlapping
by 2 ``BLOCK_PAD_S`` (60 s: an inner block edge inside a mainshock must not leak into the quiet
samples read from that block), so that overlapping windows do not transform the same samples
again (:func:`wa_amplitude` is the ObsPy ``remove_response`` + ``simulate`` reference both are
tested against).  Constant raw counts over a window (a dead or flat-lined channel) give no
amplitude on that channel, with a note, instead of 0 mm.

Real metadata lose nothing (:meth:`WAMeter.measure`): where the StationXML has no response
stages (what FDSN services serve at channel level) the amplitude comes from the channel's
sensitivity and input units (``M/S``: velocity, ``M/S**2``: acceleration, ``M``: displacement;
a flat response over the 1.2-35 Hz band that the WA amplitude uses), with one warning per
channel; without any response the amplitude is NaN.  Each measurement says where it came
from (``amp_source``: response | sensitivity | none), why it is missing (``amp_note``) and
whether the raw counts in the window look clipped (``amp_clipped``: within 5 % of a 24-bit
digitiser's full scale, or a flat top of >= 3 equal extreme samples).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np
from obspy import Stream, UTCDateTime
from scipy import fft as sp_fft

from ..ml import WA_PAZ, wa_response_disp
from . import pick_kernels
from .threads import tmap

PAD_S = 20.0
PRE_FILT_HZ = (0.7, 1.2, 35.0, 45.0)
CLIP_COUNTS = 0.95 * 2**23  # 24-bit digitisers saturate at +-2**23 counts
FLAT_TOP_N = 3  # this many equal samples at the window's extreme: a flat (clipped) top
FLAT_TOP_MIN_COUNTS = 1.0e4  # ... when the extreme is at least this large (not a quiet quantised trace)
# longest FFT of measure_many's overlap-save blocks (655 s at 100 Hz, 6 % overlap); measured on a busy real
# day: 2**15 / 2**16 / 2**17 within 5 % of each other, 2**16 the quickest
NFFT_BLOCK = 2**16
BLOCK_PAD_S = 60.0  # measure_many's blocks overlap by twice this: what is read lies >= 60 s from inner block edges
ROW_SAMPLES = 2**20  # measure_many transforms pieces of one FFT length this many samples at a time
AMP_SOURCES = ("response", "sensitivity", "none")
_UNIT_POWER = {"M": 0, "NM": 0, "M/S": 1, "NM/S": 1, "M/S**2": 2, "M/S2": 2, "M/SEC": 1, "M/SEC**2": 2, "NM/S**2": 2}
_UNIT_SCALE = {"NM": 1e9, "NM/S": 1e9, "NM/S**2": 1e9}  # counts per nm -> counts per m

log = logging.getLogger("quakescale.amplitude")
_WARNED: set = set()  # channels warned about in this process (one warning per channel)


def _warn_once(key, msg: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning(msg)


@dataclass
class Amplitude:
    """One WA measurement: amplitude (mm, NaN when none), where it came from, why it is missing
    or approximate, and whether the window's raw counts look clipped."""

    amp_mm: float = float("nan")
    source: str = "none"  # response | sensitivity | none
    note: str = ""
    clipped: bool = False


def clipped_counts(x: np.ndarray, clip_counts: float = CLIP_COUNTS) -> str:
    """Why the raw counts ``x`` look clipped ('' when they do not)."""
    if not len(x):
        return ""
    a = np.abs(np.asarray(x, np.float64))
    m = float(a.max())
    if m >= clip_counts:
        return f"clipped: {m:.4g} counts, within 5 % of a 24-bit digitiser's full scale"
    if m >= FLAT_TOP_MIN_COUNTS:
        at = np.flatnonzero(a == m)
        if len(at) >= FLAT_TOP_N:
            run = np.split(at, np.flatnonzero(np.diff(at) > 1) + 1)
            if max(len(r) for r in run) >= FLAT_TOP_N:
                return f"clipped: flat top of >= {FLAT_TOP_N} samples at {m:.4g} counts"
    return ""


def _horizontals(stream: Stream) -> Stream:
    """The horizontal traces in a fixed order (by id, then start): the notes of a measurement list
    channels in the same order on every run, whatever order the archive read gave."""
    hor = [tr for tr in stream if tr.stats.channel[-1:] in ("N", "E", "1", "2")]
    return Stream(sorted(hor, key=lambda tr: (tr.id, tr.stats.starttime.ns)))


def _cosine_prefilter(f: np.ndarray, band=PRE_FILT_HZ) -> np.ndarray:
    f1, f2, f3, f4 = band
    w = np.zeros_like(f)
    m = (f >= f2) & (f <= f3)
    w[m] = 1.0
    lo = (f > f1) & (f < f2)
    w[lo] = 0.5 * (1 - np.cos(np.pi * (f[lo] - f1) / (f2 - f1)))
    hi = (f > f3) & (f < f4)
    w[hi] = 0.5 * (1 + np.cos(np.pi * (f[hi] - f3) / (f4 - f3)))
    return w


class WAMeter:
    """Wood-Anderson amplitudes of one station: instrument responses evaluated once per channel
    and FFT length (no per-window ObsPy overhead); :meth:`measure` does one FFT / inverse FFT per
    window, :meth:`measure_many` one per gap-free span of windows (overlap-save blocks)."""

    def __init__(self, stream: Stream, inventory, pad_s: float = PAD_S, nfft_block: int = NFFT_BLOCK):
        self.hor = _horizontals(stream)
        self.inv = inventory
        self.pad_s = pad_s
        self.nfft_block = nfft_block
        self._resp: dict = {}

    def _transfer(self, tr, nfft: int, t: UTCDateTime) -> tuple:
        """(WA filter or None, source, note) of one channel for FFT length ``nfft``."""
        key = (tr.id, nfft, tr.stats.sampling_rate)
        if key not in self._resp:
            fs = tr.stats.sampling_rate
            f = np.fft.rfftfreq(nfft, 1.0 / fs)
            h, source, note = _instrument_disp(self.inv, tr.id, t, f)
            if h is None:
                self._resp[key] = (None, "none", note)
            else:
                with np.errstate(divide="ignore", invalid="ignore"):
                    g = np.where(np.abs(h) > 0, wa_response_disp(f) / h, 0.0) * _cosine_prefilter(f)
                g[0] = 0.0
                self._resp[key] = (g, source, note)
        return self._resp[key]

    def __call__(self, t_start: UTCDateTime, t_end: UTCDateTime) -> float:
        """Zero-to-peak WA amplitude (mm) over both horizontals; NaN without data/response."""
        return self.measure(t_start, t_end).amp_mm

    def measure(self, t_start: UTCDateTime, t_end: UTCDateTime) -> Amplitude:
        """The WA amplitude over both horizontals with its source, note and clipping flag."""
        if self.inv is None:
            return Amplitude(note="no inventory")
        if not len(self.hor):
            return Amplitude(note="no horizontal channel")
        peak = float("nan")
        sources, notes, clipped = [], [], []
        for tr in self.hor:
            fs = tr.stats.sampling_rate
            i0 = int(np.floor((t_start - self.pad_s - tr.stats.starttime) * fs))
            i1 = int(np.ceil((t_end + self.pad_s - tr.stats.starttime) * fs))
            i0c, i1c = max(i0, 0), min(i1, tr.stats.npts)
            if i1c - i0c < int((t_end - t_start + self.pad_s) * fs):
                notes.append(f"{tr.stats.channel}: window not covered by data")
                continue
            x = tr.data[i0c:i1c]
            if np.ma.isMaskedArray(x):
                if np.ma.count_masked(x):
                    notes.append(f"{tr.stats.channel}: gap in the window")
                    continue
                x = x.data
            g, source, note = self._transfer(tr, 1 << int(np.ceil(np.log2(i1c - i0c))), t_start)
            if g is None:
                notes.append(note)
                continue
            a = int(round((t_start - tr.stats.starttime) * fs)) - i0c
            b = int(round((t_end - tr.stats.starttime) * fs)) - i0c + 1
            raw = x[max(a, 0) : max(b, 0)]
            if len(raw) > 1 and raw.min() == raw.max():
                notes.append(_flat_note(tr.stats.channel))
                continue
            clip = clipped_counts(raw)
            if clip:
                clipped.append(f"{tr.stats.channel} {clip}")
            x = np.asarray(x, np.float64)
            x = x - np.linspace(x[:20].mean(), x[-20:].mean(), len(x))
            m = int(min(self.pad_s / 2, 5.0) * fs)
            w = 0.5 * (1 - np.cos(np.linspace(0, np.pi, m)))
            x[:m] *= w
            x[-m:] *= w[::-1]
            nfft = len(g) * 2 - 2
            wa = np.fft.irfft(np.fft.rfft(x, nfft) * g, nfft)[: len(x)]
            seg = wa[max(a, 0) : max(b, 0)]
            if len(seg):
                p = float(np.abs(seg).max()) * 1000.0  # m -> mm
                peak = p if not np.isfinite(peak) else max(peak, p)
                sources.append(source)
        if not np.isfinite(peak):
            return Amplitude(note="; ".join(dict.fromkeys(notes)) or "no amplitude", clipped=bool(clipped))
        src = "sensitivity" if "sensitivity" in sources else "response"
        return Amplitude(peak, src, "; ".join(dict.fromkeys(clipped + notes)), bool(clipped))

    def measure_many(self, windows_ns, chunk: int = 128) -> list[Amplitude]:
        """:meth:`measure` of many ``(t_start_ns, t_end_ns)`` windows at once: per horizontal
        channel the WA trace is computed once over each gap-free span of samples that the windows
        need (overlap-save blocks, :func:`_blocks`) and each window's peak is read off it; the
        sources, notes and clipping flags are those of :meth:`measure`; the amplitudes differ from
        it because the transforms' edges lie elsewhere (>= ``pad_s`` from the measured samples in
        both; inner block edges >= ``BLOCK_PAD_S``): an aftershock day: median 2e-6, 99 % < 4e-4 in
        log10; next to a mainshock, where the windows' own edges matter, this agrees better with
        :meth:`measure` of a 160 s pad (400 random windows at each of 4 Mesetas stations: at most
        1.7e-3 in log10, :meth:`measure` up to 0.15). ``chunk`` is kept for compatibility (unused)."""
        w = np.asarray(windows_ns, np.int64).reshape(-1, 2)
        k = len(w)
        if self.inv is None or not len(self.hor) or not k:
            return [self.measure(ns_to_utc(a), ns_to_utc(b)) for a, b in w]
        per_tr = tmap(lambda tr: self._trace_many(tr, w), self.hor)  # the horizontals on the CPU pool
        # the usual window (every channel measured, no note, no clipping) without the loop below
        peaks_all = np.stack([pt[0] for pt in per_tr])  # (channels, windows)
        clean = np.isfinite(peaks_all).all(axis=0)
        sens = np.zeros(k, bool)
        for _, srcs, nts, clips in per_tr:
            clean &= np.fromiter((not c and not n and s is not None for s, n, c in zip(srcs, nts, clips)), bool, k)
            sens |= np.fromiter((s == "sensitivity" for s in srcs), bool, k)
        peak_all = peaks_all.max(axis=0)
        out: list = [None] * k
        for j in np.flatnonzero(clean).tolist():
            out[j] = Amplitude(float(peak_all[j]), "sensitivity" if sens[j] else "response", "", False)
        for j in np.flatnonzero(~clean).tolist():
            peak = float("nan")
            sources, notes, clipped = [], [], []
            for peaks, srcs, nts, clips in per_tr:
                if clips[j]:
                    clipped.append(clips[j])
                if nts[j]:
                    notes.append(nts[j])
                if srcs[j] is not None:
                    p = float(peaks[j])
                    peak = p if not np.isfinite(peak) else max(peak, p)
                    sources.append(srcs[j])
            if not np.isfinite(peak):
                out[j] = Amplitude(note="; ".join(dict.fromkeys(notes)) or "no amplitude", clipped=bool(clipped))
            else:
                src = "sensitivity" if "sensitivity" in sources else "response"
                out[j] = Amplitude(peak, src, "; ".join(dict.fromkeys(clipped + notes)), bool(clipped))
        return out

    def _trace_many(self, tr, w: np.ndarray) -> tuple:
        """Per window of one channel: (peak mm, source or None, note, clipping note), as in
        :meth:`measure`: the same coverage, gap and clipping checks on the same samples; the
        padded spans of the usable windows are merged and each merged span is transformed once."""
        k = len(w)
        peaks = np.full(k, np.nan)
        srcs: list = [None] * k
        nts, clips = [""] * k, [""] * k
        fs = tr.stats.sampling_rate
        st_ns = tr.stats.starttime.ns
        pad_ns = int(round(self.pad_s * 1e9))
        sec = lambda d: np.round(d / 1e9, 6)  # noqa: E731  (UTCDateTime differences: s, 6 decimals)
        i0 = np.floor(sec(w[:, 0] - pad_ns - st_ns) * fs).astype(np.int64)
        i1 = np.ceil(sec(w[:, 1] + pad_ns - st_ns) * fs).astype(np.int64)
        i0c, i1c = np.maximum(i0, 0), np.minimum(i1, tr.stats.npts)
        need = (sec(w[:, 1] - w[:, 0]) + self.pad_s) * fs
        ok = (i1c - i0c) >= need.astype(np.int64)
        for j in np.flatnonzero(~ok):
            nts[j] = f"{tr.stats.channel}: window not covered by data"
        data, gaps = tr.data, None
        if np.ma.isMaskedArray(data):
            mask = np.ma.getmaskarray(data)
            if mask.any():
                gaps = _GapRuns(mask)
                lo = np.clip(i0c, 0, len(mask))
                gap = ok & gaps.any(lo, np.clip(i1c, lo, len(mask)))
                for j in np.flatnonzero(gap):
                    nts[j] = f"{tr.stats.channel}: gap in the window"
                ok &= ~gap
            data = np.ma.getdata(data)
        # the measured samples [ia, ib) of each window (absolute indices), as measure() slices them
        ia = i0c + np.maximum(np.rint(sec(w[:, 0] - st_ns) * fs).astype(np.int64) - i0c, 0)
        ib = i0c + np.minimum(np.maximum(np.rint(sec(w[:, 1] - st_ns) * fs).astype(np.int64) - i0c + 1, 0), i1c - i0c)
        idx = np.flatnonzero(ok)
        if not len(idx):
            return peaks, srcs, nts, clips
        # merge the usable windows' padded spans [i0c, i1c) (gap-free each) that overlap or lie
        # closer than 2 pads over gap-free samples: each merged span is gap-free
        order = idx[np.argsort(i0c[idx], kind="stable")]
        lo_s, hi_s = i0c[order], np.maximum.accumulate(i1c[order])
        join = lo_s[1:] <= hi_s[:-1] + 2 * int(np.ceil(self.pad_s * fs))
        if gaps is not None:
            join &= ~gaps.any(np.minimum(hi_s[:-1], lo_s[1:]), lo_s[1:])
        first = np.flatnonzero(np.r_[True, ~join])
        spans = [
            (order[f0:f1], int(lo_s[f0]), int(hi_s[f1 - 1])) for f0, f1 in zip(first, np.r_[first[1:], len(order)])
        ]
        pad_b = int(np.ceil(max(self.pad_s, BLOCK_PAD_S) * fs))  # inner block edges: further from what is read
        plans = [_blocks(s1 - s0, pad_b, self.nfft_block) for _, s0, s1 in spans]
        # the filter once, at the longest FFT; a shorter power of two samples every 2nd, 4th, ... frequency of it
        nmax = max(nf for nf, _ in plans)
        g, source, note = self._transfer(tr, nmax, ns_to_utc(w[spans[0][0][0], 0]))
        if g is None:
            for j in idx:
                nts[j] = note
            return peaks, srcs, nts, clips
        m = int(min(self.pad_s / 2, 5.0) * fs)
        taper = 0.5 * (1 - np.cos(np.linspace(0, np.pi, m)))
        # what to transform: (nfft, span, first sample, length, read from, read to) in the span's
        # samples; one piece for a short span, else its overlap-save blocks that some window reads
        pieces, wins = [], []
        for si, ((js, s0, s1), (nfft, starts)) in enumerate(zip(spans, plans)):
            js = js[ib[js] > ia[js]]  # windows with samples to measure
            lo, hi = ia[js] - s0, ib[js] - s0
            top = None
            if len(js):  # constant raw counts (a dead or flat-lined channel): no amplitude, a note
                x_sp = data[s0:s1]
                wmax, wmin = _extremes(x_sp, lo, hi)
                flat = (hi - lo > 1) & (wmax == wmin)
                for j in js[flat]:
                    nts[j] = _flat_note(tr.stats.channel)
                js, lo, hi = js[~flat], lo[~flat], hi[~flat]
                top = np.maximum(wmax[~flat], -wmin[~flat])  # the clipping check's extremes
            wins.append((js, lo, hi))
            if not len(js):
                continue
            peaks[js] = 0.0
            for j in js:
                srcs[j] = source
            if not starts:
                pieces.append((nfft, si, 0, s1 - s0, 0, s1 - s0))
            k1 = 0
            for i, b0 in enumerate(starts):  # block i is read over [k0, k1): the read parts tile the span
                k0, k1 = k1, b0 + (nfft if i == len(starts) - 1 else nfft - pad_b)
                if np.any((lo < k1) & (hi > k0)):
                    pieces.append((nfft, si, b0, nfft, k0, k1))
            for j in _clip_candidates(data[s0:s1], lo, hi, top):
                clip = clipped_counts(data[ia[js[j]] : ib[js[j]]])
                if clip:
                    clips[js[j]] = f"{tr.stats.channel} {clip}"
        for nfft in sorted({q[0] for q in pieces}):
            group = [q for q in pieces if q[0] == nfft]
            g_n = g[:: nmax // nfft]
            rows = max(1, ROW_SAMPLES // nfft)
            for c in range(0, len(group), rows):
                chunk = group[c : c + rows]
                xs = np.zeros((len(chunk), nfft), np.float32)  # the float32 the transforms take
                for r, (_, si, b0, ln, _, _) in enumerate(chunk):
                    s0 = spans[si][1]
                    _detrend_taper32(xs[r, :ln], data[s0 + b0 : s0 + b0 + ln], taper)
                wa = np.abs(_wa_rows(xs, g_n, nfft))
                for r, (_, si, b0, _, k0, k1) in enumerate(chunk):
                    js, lo, hi = wins[si]
                    sel = np.flatnonzero((lo < k1) & (hi > k0))
                    part = _window_reduce(np.maximum, wa[r], np.maximum(lo[sel], k0) - b0, np.minimum(hi[sel], k1) - b0)
                    peaks[js[sel]] = np.maximum(peaks[js[sel]], part * 1000.0)  # m -> mm
        return peaks, srcs, nts, clips


class _GapRuns:
    """The masked runs of a day's mask, to ask whether ``[a, b)`` holds a masked sample for many
    intervals at once: a few arrays of run bounds instead of a day-long running count (35 MB of
    int32 per channel, twice during its concatenation, on both horizontals at once)."""

    def __init__(self, mask: np.ndarray):
        change = np.flatnonzero(mask[1:] != mask[:-1]) + 1  # bool compares: no int copy of the day
        bounds = np.concatenate(([0], change, [len(mask)]))
        first = 0 if mask[0] else 1  # runs alternate: data, gap, data, ...
        self.g0, self.g1 = bounds[first:-1:2], bounds[first + 1 :: 2]

    def any(self, a, b) -> np.ndarray:
        """Per pair: does ``[a, b)`` hold a masked sample (False where ``b <= a``)."""
        a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
        j = np.searchsorted(self.g1, a, side="right")  # the first gap run ending after a
        out = np.zeros(np.broadcast(a, b).shape, bool)
        inside = j < len(self.g1)
        out[inside] = self.g0[j[inside]] < b[inside]
        return out & (b > a)


def _flat_note(channel: str) -> str:
    return f"{channel}: constant counts in the window (dead or flat-lined channel)"


def _blocks(n: int, pad: int, nfft_max: int) -> tuple:
    """How :meth:`WAMeter.measure_many` transforms a span of ``n`` samples: ``(nfft, [])`` for one
    transform of all of them, or ``(nfft, starts)`` for overlap-save blocks of ``nfft`` samples
    starting at ``starts`` (the last one ends at ``n``; neighbours overlap by >= 2 ``pad``). Of the
    powers of two from 4 ``pad`` to ``nfft_max`` it takes the one that transforms the fewest
    samples (one transform when that is as cheap)."""
    shortest = 1 << int(np.ceil(np.log2(4 * pad + 1)))  # blocks keep at least half their samples
    longest = max(1 << int(np.floor(np.log2(max(nfft_max, 2)))), shortest)
    direct = 1 << int(np.ceil(np.log2(max(n, 2))))
    cost, best = (direct, direct) if direct <= longest else (np.inf, 0)
    nb = shortest
    while nb <= longest and nb < n:
        c = (-(-(n - nb) // (nb - 2 * pad)) + 1) * nb
        if c <= cost:
            cost, best = c, nb
        nb *= 2
    if best >= n:
        return best, []
    return best, list(range(0, n - best, best - 2 * pad)) + [n - best]


_RAMPS: dict = {}


def _detrend_taper(out: np.ndarray, x: np.ndarray, taper: np.ndarray) -> None:
    """``out`` (float64, len(x)) = the counts ``x`` as :meth:`WAMeter.measure` prepares a window:
    minus the line between the means of the first and last 20 samples, cosine-tapered over
    ``len(taper)`` samples at each end."""
    out[:] = x
    ln = len(out)
    ramp = _RAMPS.get(ln)
    if ramp is None:
        ramp = np.arange(ln, dtype=np.float64)
        if len(_RAMPS) > 8:
            _RAMPS.clear()
        _RAMPS[ln] = ramp
    x0, x1 = out[:20].sum() / 20, out[-20:].sum() / 20
    line = ramp * ((x1 - x0) / (ln - 1))
    line += x0
    line[-1] = x1
    out -= line
    m = len(taper)
    out[:m] *= taper
    out[-m:] *= taper[::-1]


def _wa_rows(xs: np.ndarray, g: np.ndarray, nfft: int) -> np.ndarray:
    """The rows of ``xs`` (prepared counts, zero-padded to ``nfft``) through the WA filter ``g``,
    transformed in float32 (scipy.fft): the counts are detrended in float64 first, and float32
    keeps the WA trace to ~3e-7 of the block's peak.  The aftershock benchmark day (peaks from
    0.135 to 9,468 mm) gives amplitudes within 1.2e-4 in log10 of float64 transforms (median
    5e-8); the transforms of a day of two horizontals take 0.09 s instead of numpy's float64
    0.19-0.29 s."""
    f = sp_fft.rfft(xs.astype(np.float32, copy=False), nfft, axis=-1)
    f *= g.astype(np.complex64)
    return sp_fft.irfft(f, nfft, axis=-1, overwrite_x=True)


def _window_reduce(ufunc, x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``ufunc.reduce(x[lo:hi])`` for each (lo, hi) pair with lo < hi."""
    out = np.empty(len(lo), x.dtype)
    if len(lo) <= 4:  # a few windows: slices are quicker
        for i in range(len(lo)):
            out[i] = ufunc.reduce(x[lo[i] : hi[i]])
        return out
    inner = hi < len(x)  # reduceat needs every index inside x
    if inner.any():
        out[inner] = ufunc.reduceat(x, np.stack([lo[inner], hi[inner]], axis=1).ravel())[::2]
    for i in np.flatnonzero(~inner):
        out[i] = ufunc.reduce(x[lo[i] : hi[i]])
    return out


def _clip_candidates(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, top: np.ndarray | None = None) -> np.ndarray:
    """Indices of the windows ``x[lo:hi]`` (raw counts) that :func:`clipped_counts` may flag: an
    extreme >= ``CLIP_COUNTS``, or one >= ``FLAT_TOP_MIN_COUNTS`` that ``FLAT_TOP_N`` consecutive
    samples reach (a necessary condition of a flat top: the same verdicts, far fewer calls).
    ``top``: the windows' largest absolute counts when the caller has them."""
    if top is None:
        wmax, wmin = _extremes(x, lo, hi)
        top = np.maximum(wmax, -wmin)
    if not len(top) or top.max() < FLAT_TOP_MIN_COUNTS:
        return np.zeros(0, np.int64)
    cand = top >= CLIP_COUNTS
    big = np.flatnonzero(~cand & (top >= FLAT_TOP_MIN_COUNTS) & (hi - lo >= FLAT_TOP_N))
    if len(big):
        if _compiled(x):
            flags = np.zeros(len(big), bool)
            pick_kernels.flat_top_windows(x, lo[big], hi[big], top[big], FLAT_TOP_N, flags)
            cand[big] = flags
        else:
            _flat_tops(x, lo, hi, top, big, cand)
    return np.flatnonzero(cand)


def _flat_tops(x, lo, hi, top, big, cand) -> None:
    """numpy's :func:`_clip_candidates` flat-top check of the windows ``big``, into ``cand``."""
    at = x >= FLAT_TOP_MIN_COUNTS
    at |= x <= -FLAT_TOP_MIN_COUNTS
    at = np.flatnonzero(at)
    a = np.abs(x[at].astype(np.float64))
    k = FLAT_TOP_N - 1
    if len(at) > k:
        run = at[k:] - at[:-k] == k  # FLAT_TOP_N consecutive samples from at[i] ...
        for i in range(k):  # ... with equal |x|
            run &= a[i : len(at) - k + i] == a[i + 1 : len(at) - k + i + 1]
        s, v = at[: len(at) - k][run], a[: len(at) - k][run]
        r0, r1 = np.searchsorted(s, lo[big]), np.searchsorted(s, hi[big] - k)
        for i in np.flatnonzero(r1 > r0):
            cand[big[i]] = v[r0[i] : r1[i]].max() >= top[big[i]]


def _compiled(x) -> bool:
    """Whether the compiled window kernels (:mod:`.pick_kernels`) serve the 1-D samples ``x``."""
    return pick_kernels.takes(x, 1, (np.int32, np.float32, np.float64))


def _extremes(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each window's ``max`` and ``min`` of ``x[lo:hi]`` (float64; ``lo < hi``), computed once
    for the flat-line and the clipping checks (numpy's ``reduceat``: quicker than a loop)."""
    return (
        _window_reduce(np.maximum, x, lo, hi).astype(np.float64),
        _window_reduce(np.minimum, x, lo, hi).astype(np.float64),
    )


def _detrend_taper32(out: np.ndarray, x: np.ndarray, taper: np.ndarray) -> None:
    """:func:`_detrend_taper` into a float32 ``out`` (the float64 result rounded)."""
    if _compiled(x):
        pick_kernels.detrend_taper32(x, taper, out)
    else:
        y = np.empty(len(x))
        _detrend_taper(y, x, taper)
        out[:] = y


# ObsPy's evalresp holds the channel being evaluated in C globals and ctypes releases the GIL
# during the call: two threads inside it at once gave responses off by 2.5e8 (found in review;
# 5-14 of 600 concurrent calls); one call at a time
_EVALRESP_LOCK = threading.Lock()


def _instrument_disp(inv, seed_id: str, t: UTCDateTime, f: np.ndarray) -> tuple:
    """(counts per metre of ground displacement at ``f``, source, note) of one channel: the full
    response where the inventory has stages, else the sensitivity and its input units (flat);
    ``(None, "none", reason)`` without either."""
    try:
        resp = inv.get_response(seed_id, t)
    except Exception as exc:  # no such channel/epoch in the inventory
        return None, "none", f"no response for {seed_id} at {t} in the inventory ({' '.join(str(exc).split())[:120]})"
    if getattr(resp, "response_stages", None):
        try:
            with _EVALRESP_LOCK:  # evalresp keeps the channel it evaluates in C globals
                return resp.get_evalresp_response_for_frequencies(f, output="DISP"), "response", ""
        except Exception as exc:
            reason = f"response of {seed_id} not usable ({' '.join(str(exc).split())[:120]})"
    else:
        reason = f"{seed_id} has no response stages in the inventory"
    sens = getattr(resp, "instrument_sensitivity", None)
    value = getattr(sens, "value", None) if sens is not None else None
    units = (getattr(sens, "input_units", None) or "").strip().upper() if sens is not None else ""
    if not value or not np.isfinite(value) or units not in _UNIT_POWER:
        _warn_once(
            (seed_id, "none"),
            f"amplitude: {reason} and no usable sensitivity (value {value}, input units {units or '?'}): "
            "amplitudes NaN",
        )
        return None, "none", f"{reason}; no usable sensitivity (input units {units or '?'})"
    power = _UNIT_POWER[units]
    gain = float(value) * _UNIT_SCALE.get(units, 1.0)
    _warn_once(
        (seed_id, "sensitivity"),
        f"amplitude: {reason}; Wood-Anderson amplitudes from its sensitivity "
        f"({gain:.4g} counts per {units.lower().replace('nm', 'm')}, flat)",
    )
    return gain * (2j * np.pi * np.asarray(f, float)) ** power, "sensitivity", ""


def wa_amplitude(stream: Stream, inventory, t_start: UTCDateTime, t_end: UTCDateTime, pad_s: float = PAD_S) -> float:
    """Zero-to-peak WA amplitude (mm) on the horizontals between ``t_start`` and ``t_end``
    (reference implementation with ObsPy's ``remove_response`` + ``simulate``)."""
    hor = _horizontals(stream)
    if not len(hor) or inventory is None:
        return float("nan")
    peak = np.nan
    seg = hor.slice(t_start - pad_s, t_end + pad_s).copy()
    if len(seg) and any(np.ma.isMaskedArray(tr.data) for tr in seg):
        seg = seg.split()
    for tr in seg:
        if tr.stats.npts < int(2 * pad_s * tr.stats.sampling_rate) // 2:
            continue
        tr.data = tr.data.astype(np.float64)
        tr.detrend("linear")
        tr.taper(0.05, max_length=pad_s / 2)
        try:
            tr.remove_response(inventory=inventory, output="DISP", pre_filt=PRE_FILT_HZ, zero_mean=False, taper=False)
        except Exception as exc:  # no matching response for this channel/time
            raise ValueError(
                f"amplitude: no instrument response for {tr.id} at {t_start} in the inventory: {exc}"
            ) from exc
        tr.simulate(paz_simulate=WA_PAZ, simulate_sensitivity=True)
        w = tr.slice(t_start, t_end)
        if w.stats.npts:
            p = float(np.abs(w.data).max()) * 1000.0  # m -> mm
            peak = p if not np.isfinite(peak) else max(peak, p)
    return float(peak)


def amplitude_windows(
    p_times_ns: np.ndarray, s_times_ns: np.ndarray, pre_p_s: float = 1.0, post_s_s: float = 5.0, max_sp_s: float = 30.0
) -> list[tuple[int, int]]:
    """For each S pick, the amplitude window (ns): from ``pre_p_s`` before the latest P pick that
    precedes it by 0.3-``max_sp_s`` seconds (or before S when there is none) to ``post_s_s`` after S."""
    p = np.sort(np.asarray(p_times_ns, dtype=np.int64))
    s = np.asarray(s_times_ns, dtype=np.int64).reshape(-1)
    start = s.copy()
    if len(p) and len(s):
        i = np.searchsorted(p, s - int(0.3e9), side="right") - 1
        pi = p[np.maximum(i, 0)]
        use = (i >= 0) & (s - pi <= max_sp_s * 1e9)
        start[use] = pi[use]
    a = (start.astype(np.float64) - pre_p_s * 1e9).astype(np.int64)  # float64 ns, as int(start - pre_p_s * 1e9)
    b = (s.astype(np.float64) + post_s_s * 1e9).astype(np.int64)
    return list(zip(a.tolist(), b.tolist()))


def ns_to_utc(t_ns: int) -> UTCDateTime:
    return UTCDateTime(ns=int(t_ns))


def s_pick_amplitudes(
    stream: Stream, inventory, p_times_ns, s_times_ns, pre_p_s: float = 1.0, post_s_s: float = 5.0
) -> np.ndarray:
    """WA amplitude (mm) for each S pick; NaN where it cannot be measured."""
    return np.array(
        [m.amp_mm for m in s_pick_measurements(stream, inventory, p_times_ns, s_times_ns, pre_p_s, post_s_s)],
        dtype=np.float64,
    )


def s_pick_measurements(
    stream: Stream, inventory, p_times_ns, s_times_ns, pre_p_s: float = 1.0, post_s_s: float = 5.0
) -> list[Amplitude]:
    """:class:`Amplitude` (mm, source, note, clipped) for each S pick; never raises for one pick."""
    wins = amplitude_windows(p_times_ns, s_times_ns, pre_p_s, post_s_s)
    meter = WAMeter(stream, inventory)
    try:  # all windows at once (the same numbers); one window at a time if that fails
        return meter.measure_many(wins)
    except Exception as exc:
        log.debug("amplitude: batched measurement failed (%s); one window at a time", exc)
    out = []
    for a, b in wins:
        try:
            out.append(meter.measure(ns_to_utc(a), ns_to_utc(b)))
        except Exception as exc:  # one odd window loses its amplitude, not the station-day
            out.append(Amplitude(note=f"amplitude failed: {type(exc).__name__}: {' '.join(str(exc).split())[:160]}"))
    return out
