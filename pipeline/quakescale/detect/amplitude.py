"""Wood-Anderson amplitudes for local magnitudes (the seed's amplitude window).

For each event at a station the amplitude is measured from ``amp_pre_p_s`` (1 s) before P to
``amp_post_s_s`` (5 s) after S: the raw horizontal traces (counts) are cut with padding,
instrument-corrected to displacement with the StationXML response, passed through the
Wood-Anderson seismograph (:data:`quakescale.ml.WA_PAZ`, static magnification 2080), and the
zero-to-peak amplitude over both horizontals is returned in millimetres (column ``amp_wa_mm``).
Only the padded windows are processed, never the whole day; :class:`WAMeter` evaluates each
channel's response once and does one FFT per window (:func:`wa_amplitude` is the ObsPy
``remove_response`` + ``simulate`` reference it is tested against).

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
from dataclasses import dataclass

import numpy as np
from obspy import Stream, UTCDateTime

from ..ml import WA_PAZ, wa_response_disp

PAD_S = 20.0
PRE_FILT_HZ = (0.7, 1.2, 35.0, 45.0)
CLIP_COUNTS = 0.95 * 2**23  # 24-bit digitisers saturate at +-2**23 counts
FLAT_TOP_N = 3  # this many equal samples at the window's extreme: a flat (clipped) top
FLAT_TOP_MIN_COUNTS = 1.0e4  # ... when the extreme is at least this large (not a quiet quantised trace)
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
    return Stream([tr for tr in stream if tr.stats.channel[-1:] in ("N", "E", "1", "2")])


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
    and FFT length, then every window is one FFT / inverse FFT (no per-window ObsPy overhead)."""

    def __init__(self, stream: Stream, inventory, pad_s: float = PAD_S):
        self.hor = _horizontals(stream)
        self.inv = inventory
        self.pad_s = pad_s
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
            clip = clipped_counts(x[max(a, 0) : max(b, 0)])
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
        """:meth:`measure` of many ``(t_start_ns, t_end_ns)`` windows at once (the same numbers):
        sample indices in integer nanoseconds instead of UTCDateTime arithmetic, the windows of a
        channel that share an FFT length transformed together, ``chunk`` rows at a time."""
        w = np.asarray(windows_ns, np.int64).reshape(-1, 2)
        k = len(w)
        if self.inv is None or not len(self.hor) or not k:
            return [self.measure(ns_to_utc(a), ns_to_utc(b)) for a, b in w]
        per_tr = [self._trace_many(tr, w, chunk) for tr in self.hor]
        out = []
        for j in range(k):
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
                out.append(Amplitude(note="; ".join(dict.fromkeys(notes)) or "no amplitude", clipped=bool(clipped)))
            else:
                src = "sensitivity" if "sensitivity" in sources else "response"
                out.append(Amplitude(peak, src, "; ".join(dict.fromkeys(clipped + notes)), bool(clipped)))
        return out

    def _trace_many(self, tr, w: np.ndarray, chunk: int) -> tuple:
        """Per window of one channel: (peak mm, source or None, note, clipping note), as in
        :meth:`measure`."""
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
        data = tr.data
        if np.ma.isMaskedArray(data):
            mask = np.ma.getmaskarray(data)
            if mask.any():
                cm = np.concatenate(([0], np.cumsum(mask, dtype=np.int32)))
                lo = np.clip(i0c, 0, len(mask))
                gap = ok & (cm[np.clip(i1c, lo, len(mask))] - cm[lo] > 0)
                for j in np.flatnonzero(gap):
                    nts[j] = f"{tr.stats.channel}: gap in the window"
                ok &= ~gap
            data = np.ma.getdata(data)
        a = np.rint(sec(w[:, 0] - st_ns) * fs).astype(np.int64) - i0c
        b = np.rint(sec(w[:, 1] - st_ns) * fs).astype(np.int64) - i0c + 1
        a, b = np.maximum(a, 0), np.maximum(b, 0)
        length = i1c - i0c
        nfft = np.ones(k, np.int64)
        nfft[ok] = 1 << np.ceil(np.log2(length[ok])).astype(np.int64)
        m = int(min(self.pad_s / 2, 5.0) * fs)
        taper = 0.5 * (1 - np.cos(np.linspace(0, np.pi, m)))
        taper_r = taper[::-1].copy()
        for nf in np.unique(nfft[ok]):
            idx = np.flatnonzero(ok & (nfft == nf))
            g, source, note = self._transfer(tr, int(nf), ns_to_utc(w[idx[0], 0]))
            if g is None:
                for j in idx:
                    nts[j] = note
                continue
            nfft_g = len(g) * 2 - 2
            ramp = np.arange(nfft_g, dtype=np.float64)
            for c0 in range(0, len(idx), chunk):
                rows = idx[c0 : c0 + chunk]
                xs = np.zeros((len(rows), nfft_g))
                for r, j in enumerate(rows):
                    ln = int(length[j])
                    x = xs[r, :ln]
                    x[:] = data[i0c[j] : i1c[j]]
                    seg = x[a[j] : b[j]]
                    if len(seg) and max(seg.max(), -seg.min()) >= FLAT_TOP_MIN_COUNTS:
                        clip = clipped_counts(data[i0c[j] : i1c[j]][a[j] : b[j]])
                        if clip:
                            clips[j] = f"{tr.stats.channel} {clip}"
                    # x -= np.linspace(mean of the first 20, mean of the last 20, ln), the same numbers
                    x0, x1 = x[:20].sum() / 20, x[-20:].sum() / 20
                    line = ramp[:ln] * ((x1 - x0) / (ln - 1))
                    line += x0
                    line[-1] = x1
                    x -= line
                    x[:m] *= taper
                    x[-m:] *= taper_r
                wa = np.fft.irfft(np.fft.rfft(xs, nfft_g, axis=-1) * g, nfft_g, axis=-1)
                for r, j in enumerate(rows):
                    seg = wa[r, a[j] : min(b[j], length[j])]
                    if len(seg):
                        peaks[j] = float(max(seg.max(), -seg.min())) * 1000.0  # m -> mm
                        srcs[j] = source
        return peaks, srcs, nts, clips


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
    out = []
    for s in np.asarray(s_times_ns, dtype=np.int64):
        i = np.searchsorted(p, s - int(0.3e9), side="right") - 1
        start = s
        if i >= 0 and s - p[i] <= max_sp_s * 1e9:
            start = p[i]
        out.append((int(start - pre_p_s * 1e9), int(s + post_s_s * 1e9)))
    return out


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
