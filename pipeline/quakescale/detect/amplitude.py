"""Wood-Anderson amplitudes for local magnitudes (the seed's amplitude window).

For each event at a station the amplitude is measured from ``amp_pre_p_s`` (1 s) before P to
``amp_post_s_s`` (5 s) after S: the raw horizontal traces (counts) are cut with padding,
instrument-corrected to displacement with the StationXML response, passed through the
Wood-Anderson seismograph (:data:`quakescale.ml.WA_PAZ`, static magnification 2080), and the
zero-to-peak amplitude over both horizontals is returned in millimetres (column ``amp_wa_mm``).
Only the padded windows are processed, never the whole day; :class:`WAMeter` evaluates each
channel's response once and does one FFT per window (:func:`wa_amplitude` is the ObsPy
``remove_response`` + ``simulate`` reference it is tested against).
"""

from __future__ import annotations

import numpy as np
from obspy import Stream, UTCDateTime

from ..ml import WA_PAZ, wa_response_disp

PAD_S = 20.0
PRE_FILT_HZ = (0.7, 1.2, 35.0, 45.0)


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

    def _transfer(self, tr, nfft: int, t: UTCDateTime) -> np.ndarray:
        key = (tr.id, nfft, tr.stats.sampling_rate)
        if key not in self._resp:
            fs = tr.stats.sampling_rate
            f = np.fft.rfftfreq(nfft, 1.0 / fs)
            try:
                resp = self.inv.get_response(tr.id, t)
                h = resp.get_evalresp_response_for_frequencies(f, output="DISP")  # counts per m
            except Exception as exc:
                raise ValueError(f"amplitude: no instrument response for {tr.id} at {t} in the inventory: {exc}") from exc
            with np.errstate(divide="ignore", invalid="ignore"):
                g = np.where(np.abs(h) > 0, wa_response_disp(f) / h, 0.0) * _cosine_prefilter(f)
            g[0] = 0.0
            self._resp[key] = g
        return self._resp[key]

    def __call__(self, t_start: UTCDateTime, t_end: UTCDateTime) -> float:
        """Zero-to-peak WA amplitude (mm) over both horizontals; NaN without data/response."""
        if not len(self.hor) or self.inv is None:
            return float("nan")
        peak = float("nan")
        for tr in self.hor:
            fs = tr.stats.sampling_rate
            i0 = int(np.floor((t_start - self.pad_s - tr.stats.starttime) * fs))
            i1 = int(np.ceil((t_end + self.pad_s - tr.stats.starttime) * fs))
            i0c, i1c = max(i0, 0), min(i1, tr.stats.npts)
            if i1c - i0c < int((t_end - t_start + self.pad_s) * fs):
                continue
            x = tr.data[i0c:i1c]
            if np.ma.isMaskedArray(x):
                if np.ma.count_masked(x):
                    continue
                x = x.data
            x = np.asarray(x, np.float64)
            x = x - np.linspace(x[:20].mean(), x[-20:].mean(), len(x))
            m = int(min(self.pad_s / 2, 5.0) * fs)
            w = 0.5 * (1 - np.cos(np.linspace(0, np.pi, m)))
            x[:m] *= w
            x[-m:] *= w[::-1]
            nfft = 1 << int(np.ceil(np.log2(len(x))))
            wa = np.fft.irfft(np.fft.rfft(x, nfft) * self._transfer(tr, nfft, t_start), nfft)[: len(x)]
            a = int(round((t_start - tr.stats.starttime) * fs)) - i0c
            b = int(round((t_end - tr.stats.starttime) * fs)) - i0c + 1
            seg = wa[max(a, 0) : max(b, 0)]
            if len(seg):
                p = float(np.abs(seg).max()) * 1000.0  # m -> mm
                peak = p if not np.isfinite(peak) else max(peak, p)
        return peak


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
            raise ValueError(f"amplitude: no instrument response for {tr.id} at {t_start} in the inventory: {exc}") from exc
        tr.simulate(paz_simulate=WA_PAZ, simulate_sensitivity=True)
        w = tr.slice(t_start, t_end)
        if w.stats.npts:
            p = float(np.abs(w.data).max()) * 1000.0  # m -> mm
            peak = p if not np.isfinite(peak) else max(peak, p)
    return float(peak)


def amplitude_windows(p_times_ns: np.ndarray, s_times_ns: np.ndarray, pre_p_s: float = 1.0, post_s_s: float = 5.0, max_sp_s: float = 30.0) -> list[tuple[int, int]]:
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


def s_pick_amplitudes(stream: Stream, inventory, p_times_ns, s_times_ns, pre_p_s: float = 1.0, post_s_s: float = 5.0) -> np.ndarray:
    """WA amplitude (mm) for each S pick; NaN where it cannot be measured."""
    wins = amplitude_windows(p_times_ns, s_times_ns, pre_p_s, post_s_s)
    meter = WAMeter(stream, inventory)
    return np.array([meter(ns_to_utc(a), ns_to_utc(b)) for a, b in wins], dtype=np.float64)
