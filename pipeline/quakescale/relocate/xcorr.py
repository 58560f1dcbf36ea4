"""Waveform cross-correlation differential times (dt.cc).

Core (:func:`correlate_windows`): batched normalised cross-correlation of window pairs held in
numpy arrays ``(n_windows, [n_components,] n_samples)`` by FFT (numpy/scipy, or torch -- on the
GPU when one is present), lags limited to ``max_lag`` samples, sub-sample peak by parabolic
interpolation.  ``cc(s) = sum_k a[k+s] b[k] / sqrt(sum a^2 sum b^2)`` over the overlap of the two
equal-length windows (zero padding, the normalisation of FDTCC); a positive lag means that the
phase comes later in window ``a`` (event 1).  Multi-component windows (S on N and E) average the
normalised correlation functions before the peak is taken.

Station face (:func:`station_dtcc`): an ObsPy Stream of one station (continuous data or event
segments), the picks of that station and the events -> DTCC table (event_id_1, event_id_2,
station_id, phase, dt_s, cc).  Each event's window is cut, detrended, tapered and band-passed
once and shared by all pairs it belongs to; pairs are the events closer than ``max_pair_km`` (or a
given pair list) with the station closer than ``max_station_km``.  ``dt_s`` is the differential
travel time ``(t1 - o1) - (t2 - o2)`` measured by the correlation (HypoDD's convention); the
correlation acts on the windows' actual sample times, so picks between samples are exact.

The fan-out unit of the pipeline is one station (:func:`station_dtcc`); the integrator reads the
station's waveforms (SDS) into a Stream and calls it per station on a CPU worker.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import fft as sfft
from scipy import signal
from scipy.spatial import cKDTree

from ..config import CCSection
from ..formats.hypodd import write_dtcc
from ..geo import LocalProjection, epicentral_km
from ..schema import DTCC

__all__ = ["XCorrParams", "correlate_windows", "bandpass_windows", "station_dtcc", "dtcc_to_hypodd", "event_pairs"]


_CC = CCSection()  # the config's defaults: the one home of the cc settings' values


@dataclass
class XCorrParams:
    """Cross-correlation parameters: those of config ``relocate.cc`` with its defaults (the seed's),
    and the FDTCC-style options below that the config does not set."""

    max_pair_km: float = _CC.max_pair_km
    max_station_km: float = _CC.max_station_km
    p_window_s: tuple[float, float] = _CC.p_window_s  # before, after the pick
    s_window_s: tuple[float, float] = _CC.s_window_s
    freqmin_hz: float = _CC.freqmin_hz
    freqmax_hz: float = _CC.freqmax_hz
    max_lag_s: float = _CC.max_lag_s
    p_max_lag_s: float | None = None  # per-phase overrides of max_lag_s
    s_max_lag_s: float | None = None
    min_cc: float = _CC.min_cc
    min_snr: float = 0.0  # FDTCC-style: mean power after / before the pick (0 = off)
    max_dt_s: float | None = None  # reject |dt| above (FDTCC thre_shift)
    absolute: bool = False  # take |cc| (FDTCC) instead of the positive peak
    interp: str = "parabolic"  # "parabolic" | "none"
    filter_pad_s: float = 1.0
    p_components: str = "Z"
    s_components: str = "NE"
    backend: str = "numpy"  # "numpy" | "torch"

    @classmethod
    def from_config(cls, cc) -> "XCorrParams":
        kw = {
            k: getattr(cc, k)
            for k in (
                "max_pair_km",
                "max_station_km",
                "p_window_s",
                "s_window_s",
                "freqmin_hz",
                "freqmax_hz",
                "max_lag_s",
                "min_cc",
            )
            if hasattr(cc, k)
        }
        return cls(**kw)


# ----------------------------------------------------------------------------- core
def _torch_device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def correlate_windows(
    a: np.ndarray,
    b: np.ndarray,
    max_lag: int,
    absolute: bool = False,
    interp: str = "parabolic",
    backend: str = "numpy",
    chunk: int = 1024,
    ia: np.ndarray | None = None,
    ib: np.ndarray | None = None,
):
    """Normalised cross-correlation of window pairs.

    ``a``, ``b``: ``(n, L)`` or ``(n, C, L)`` arrays (same L); with ``ia``/``ib`` given, ``a`` and
    ``b`` are banks of windows and pair ``k`` is ``(a[ia[k]], b[ib[k]])`` -- each window is
    transformed once.  Returns ``(lag_samples, cc)`` float arrays of the pairs; the lag is
    fractional with ``interp='parabolic'``."""
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    if a.ndim == 2:
        a = a[:, None, :]
    if b.ndim == 2:
        b = b[:, None, :]
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"window banks differ in shape: {a.shape} vs {b.shape}")
    L = a.shape[-1]
    max_lag = int(min(max_lag, L - 1))
    if ia is None:
        if len(a) != len(b):
            raise ValueError(f"need as many windows in a ({len(a)}) as in b ({len(b)}) without pair indices")
        ia = ib = np.arange(len(a))
    ia = np.asarray(ia, np.int64)
    ib = np.asarray(ib, np.int64)
    nfft = sfft.next_fast_len(L + max_lag + 1, real=True)
    na = np.sqrt((a.astype(np.float64) ** 2).sum(-1)).astype(np.float32)  # (n, C)
    nb = np.sqrt((b.astype(np.float64) ** 2).sum(-1)).astype(np.float32)
    lags = np.arange(-max_lag, max_lag + 1)
    n = len(ia)
    best = np.zeros(n, np.float64)
    lagout = np.zeros(n, np.float64)
    if n == 0:
        return lagout, best
    C = a.shape[1]
    if backend == "torch":
        import torch

        dev = _torch_device()
        ta = torch.from_numpy(a).to(dev)
        tb = torch.from_numpy(b).to(dev)
        Fa = torch.fft.rfft(ta, n=nfft)
        Fb = torch.conj(torch.fft.rfft(tb, n=nfft))
        tna = torch.from_numpy(na).to(dev)
        tnb = torch.from_numpy(nb).to(dev)
        idx = torch.from_numpy(np.r_[np.arange(nfft - max_lag, nfft), np.arange(0, max_lag + 1)]).to(dev)
    else:
        Fa = sfft.rfft(a, n=nfft, axis=-1, workers=-1)
        Fb = np.conj(sfft.rfft(b, n=nfft, axis=-1, workers=-1))
        idx = np.r_[np.arange(nfft - max_lag, nfft), np.arange(0, max_lag + 1)]
    order = np.lexsort((ib, ia))  # gather locality: pairs of the same first event together
    ia_s, ib_s = ia[order], ib[order]
    block = max(chunk, 16384)
    M = 2 * max_lag + 1
    for b0 in range(0, n, block):
        b1 = min(n, b0 + block)
        curves = np.empty((b1 - b0, M), np.float32)
        sub = chunk if backend != "torch" else max(chunk, 8192)
        for s0 in range(b0, b1, sub):
            s1 = min(b1, s0 + sub)
            ja, jb = ia_s[s0:s1], ib_s[s0:s1]
            if backend == "torch":
                import torch

                tja = torch.from_numpy(ja).to(dev)
                tjb = torch.from_numpy(jb).to(dev)
                cc = torch.fft.irfft(Fa[tja] * Fb[tjb], n=nfft)[..., idx]  # (m, C, 2M+1)
                den = (tna[tja] * tnb[tjb]).clamp_min(1e-30)
                curves[s0 - b0 : s1 - b0] = (cc / den[..., None]).mean(1).cpu().numpy()
            else:
                X = Fa[ja]
                X *= Fb[jb]
                y = sfft.irfft(X, n=nfft, axis=-1, workers=-1)
                cc = np.concatenate([y[..., nfft - max_lag :], y[..., : max_lag + 1]], axis=-1)
                cc /= np.maximum(na[ja] * nb[jb], 1e-30)[..., None]
                curves[s0 - b0 : s1 - b0] = cc[:, 0] if C == 1 else cc.mean(1)
        val = np.abs(curves) if absolute else curves
        k = np.argmax(val, axis=1)
        rows = np.arange(len(k))
        y0 = val[rows, k].astype(np.float64)
        lag = lags[k].astype(np.float64)
        peak = y0
        if interp == "parabolic":
            inner = (k > 0) & (k < M - 1)
            ym = val[rows, np.clip(k - 1, 0, M - 1)].astype(np.float64)
            yp = val[rows, np.clip(k + 1, 0, M - 1)].astype(np.float64)
            den2 = ym - 2 * y0 + yp
            ok = inner & (den2 < 0)
            p = np.zeros(len(k))
            p[ok] = 0.5 * (ym[ok] - yp[ok]) / den2[ok]
            p = np.clip(p, -0.5, 0.5)
            lag = lag + p
            peak = np.where(ok, y0 - 0.25 * (ym - yp) * p, y0)
        dst = order[b0:b1]
        best[dst] = np.minimum(peak, 1.0)
        lagout[dst] = lag
    return lagout, best


def bandpass_windows(
    x: np.ndarray, fs: float, freqmin: float, freqmax: float, order: int = 4, taper: float = 0.01
) -> np.ndarray:
    """Demean, detrend, Hann-taper and zero-phase Butterworth band-pass along the last axis."""
    x = signal.detrend(np.asarray(x, np.float64), axis=-1, type="linear")
    n = x.shape[-1]
    m = max(1, int(n * taper + 0.5))
    w = np.ones(n)
    ramp = 0.5 * (1 - np.cos(np.pi * np.arange(m) / m))
    w[:m] = ramp
    w[n - m :] = ramp[::-1]
    x = x * w
    nyq = 0.5 * fs
    hi = min(freqmax, 0.95 * nyq)
    if freqmin <= 0 or hi <= freqmin:
        return x
    sos = signal.butter(order, [freqmin / nyq, hi / nyq], btype="band", output="sos")
    return signal.sosfiltfilt(sos, x, axis=-1)


# ----------------------------------------------------------------------------- station face
def _component_traces(stream, comps: str):
    """Traces grouped by component letter, trying the alternatives (N<->1, E<->2)."""
    alt = {"N": "N1", "E": "E2", "Z": "Z3"}
    out = []
    for c in comps:
        trs = [tr for tr in stream if tr.stats.channel[-1:] in alt.get(c, c)]
        if not trs:
            return None
        out.append(trs)
    return out


def _cut(trs, t0_ns: int, n: int):
    """Samples [t0, t0 + n/fs) from the trace covering them; returns (data, start_ns) or None.
    The window starts at the sample nearest t0."""
    for tr in trs:
        fs = float(tr.stats.sampling_rate)
        st_ns = int(np.int64(tr.stats.starttime.ns))
        i0 = int(round((t0_ns - st_ns) * 1e-9 * fs))
        if i0 >= 0 and i0 + n <= tr.stats.npts:
            return tr.data[i0 : i0 + n], st_ns + int(round(i0 / fs * 1e9))
    return None


def event_pairs(events: pd.DataFrame, max_pair_km: float) -> np.ndarray:
    """Pairs (i < j, positions in ``events``) with hypocentral separation <= max_pair_km."""
    if len(events) < 2:
        return np.zeros((0, 2), np.int64)
    p = LocalProjection(float(events["latitude"].mean()), float(events["longitude"].mean()))
    x, y = p.to_xy(events["latitude"].to_numpy(), events["longitude"].to_numpy())
    xyz = np.c_[x, y, events["depth_km"].to_numpy(float)]
    pr = cKDTree(xyz).query_pairs(max_pair_km, output_type="ndarray")
    return np.sort(pr, axis=1) if len(pr) else np.zeros((0, 2), np.int64)


def station_dtcc(
    stream,
    picks: pd.DataFrame,
    events: pd.DataFrame,
    station_id: str,
    station_latlon: tuple[float, float] | None = None,
    params: XCorrParams | None = None,
    pairs: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """DTCC table for one station.

    stream: ObsPy Stream with this station's traces (any number of segments); picks: event_id,
    phase, time (UTC) -- rows of other stations are ignored when a ``station_id`` column is
    present; events: event_id, time, latitude, longitude, depth_km; ``pairs`` (event_id_1,
    event_id_2) restricts the pairs (e.g. those of dt.ct), otherwise events within
    ``max_pair_km``.
    """
    prm = params or XCorrParams()
    cols = [f.name for f in DTCC]
    empty = pd.DataFrame(
        {c: pd.Series(dtype=t) for c, t in zip(cols, ["int64", "int64", "object", "object", "float64", "float64"])}
    )
    if "station_id" in picks:
        picks = picks[picks["station_id"] == station_id]
    ev = events.reset_index(drop=True)
    if station_latlon is not None:
        d = epicentral_km(
            station_latlon[0], station_latlon[1], ev["latitude"].to_numpy(float), ev["longitude"].to_numpy(float)
        )
        ev = ev[d <= prm.max_station_km].reset_index(drop=True)
    if len(ev) < 2 or len(picks) == 0 or len(stream) == 0:
        return empty
    pos = {e: i for i, e in enumerate(ev["event_id"])}
    if pairs is None:
        pr = event_pairs(ev, prm.max_pair_km)
    else:
        ok = pairs["event_id_1"].isin(pos) & pairs["event_id_2"].isin(pos)
        pr = np.c_[pairs["event_id_1"][ok].map(pos).to_numpy(), pairs["event_id_2"][ok].map(pos).to_numpy()].astype(
            np.int64
        )
    if len(pr) == 0:
        return empty
    otime = (
        pd.to_datetime(ev["time"], utc=True).dt.tz_localize(None).to_numpy().astype("datetime64[ns]").astype(np.int64)
    )
    fs = float(stream[0].stats.sampling_rate)
    out = []
    for phase, (wb, wa), comps, mlag in (
        ("P", prm.p_window_s, prm.p_components, prm.p_max_lag_s),
        ("S", prm.s_window_s, prm.s_components, prm.s_max_lag_s),
    ):
        pk = picks[picks["phase"].str.upper().str[0] == phase]
        if pk.empty:
            continue
        ptime = pk.assign(pos_=pk["event_id"].map(pos)).dropna(subset=["pos_"]).drop_duplicates("event_id")
        trs = _component_traces(stream, comps)
        if trs is None:
            trs = _component_traces(stream, "Z")
            if trs is None:
                continue
        max_lag = int(round((mlag if mlag is not None else prm.max_lag_s) * fs))
        L = int(round((wb + wa) * fs)) + 1
        pad = int(round(prm.filter_pad_s * fs))
        n_ev = len(ev)
        bank = np.zeros((n_ev, len(trs), L), np.float32)
        have = np.zeros(n_ev, bool)
        wstart = np.zeros(n_ev, np.int64)  # window start (ns)
        snr = np.full(n_ev, np.inf)
        for r in ptime.itertuples(index=False):
            i = int(r.pos_)
            t_pick = pd.Timestamp(r.time).as_unit("ns").value
            t0 = t_pick - int(round((wb + prm.filter_pad_s) * 1e9))
            segs = []
            for comp in trs:
                got = _cut(comp, t0, L + 2 * pad)
                if got is None:
                    break
                segs.append(got)
            if len(segs) != len(trs):
                continue
            x = np.stack([s[0] for s in segs]).astype(np.float64)
            x = bandpass_windows(x, fs, prm.freqmin_hz, prm.freqmax_hz)
            w = x[:, pad : pad + L]
            bank[i] = w
            have[i] = True
            wstart[i] = segs[0][1] + int(round(pad / fs * 1e9))
            if prm.min_snr > 0:
                k = int(round(wb * fs))
                noise = np.mean(w[:, :k] ** 2, axis=1) if k > 0 else np.full(len(trs), np.nan)
                sig = np.mean(w[:, k:] ** 2, axis=1)
                with np.errstate(divide="ignore", invalid="ignore"):
                    snr[i] = float(np.mean(sig / noise))
        sel = have[pr[:, 0]] & have[pr[:, 1]]
        if prm.min_snr > 0:
            sel &= (snr[pr[:, 0]] > prm.min_snr) & (snr[pr[:, 1]] > prm.min_snr)
        p = pr[sel]
        if len(p) == 0:
            continue
        lag, cc = correlate_windows(
            bank, bank, max_lag, absolute=prm.absolute, interp=prm.interp, backend=prm.backend, ia=p[:, 0], ib=p[:, 1]
        )
        dt = lag / fs + ((wstart[p[:, 0]] - otime[p[:, 0]]) - (wstart[p[:, 1]] - otime[p[:, 1]])) * 1e-9
        keep = cc >= prm.min_cc
        if prm.max_dt_s is not None:
            keep &= np.abs(dt) <= prm.max_dt_s
        out.append(
            pd.DataFrame(
                {
                    "event_id_1": ev["event_id"].to_numpy()[p[keep, 0]].astype(np.int64),
                    "event_id_2": ev["event_id"].to_numpy()[p[keep, 1]].astype(np.int64),
                    "station_id": station_id,
                    "phase": phase,
                    "dt_s": dt[keep],
                    "cc": cc[keep],
                }
            )
        )
    if not out:
        return empty
    return (
        pd.concat(out, ignore_index=True)
        .sort_values(["event_id_1", "event_id_2", "phase"], kind="stable")
        .reset_index(drop=True)
    )


def dtcc_to_hypodd(dtcc: pd.DataFrame, path) -> None:
    """Write a DTCC table as HypoDD dt.cc (station code = the STA part of NET.STA)."""
    write_dtcc(dtcc, path)
