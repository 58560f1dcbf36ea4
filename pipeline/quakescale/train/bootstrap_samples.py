"""Bootstrap step 3: cutting the samples of each station-day, and writing the waveforms.

Positives are 45 s windows with their anchor P at 16 s (:data:`~quakescale.train.samples.P_AT_N`):
one per associated P (``source`` bootstrap), per unpicked but visible associated event (weak)
and per manual P (manual); negatives are random windows clear of every pick and predicted
arrival.  :class:`SampleCutter` keeps the state shared by all station-days (events, predicted
arrivals, counters, the random generator) and cuts one station-day at a time in a fixed order,
so the same inputs give the same set.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from obspy.signal.trigger import recursive_sta_lta

from ..detect.refine import RefineParams, refine_indices
from ..formats.picks_io import read_picks
from ..geo import azimuth_deg, epicentral_km
from ..velocity import TravelTimeTable
from .bootstrap_params import BootstrapParams
from .samples import FS, P_AT_N, STORE_N, to_float16

SNR_PRE_S, SNR_POST_S, SNR_GAP_S = 5.0, 2.0, 0.2


def sample_snr(x: np.ndarray, idx: int, phase: str, fs: float = FS) -> float:
    """SNR of an onset at ``idx`` in a (3, n) array: peak in ``SNR_POST_S`` after / RMS of
    ``SNR_PRE_S`` before (ending ``SNR_GAP_S`` before the onset); Z for P, horizontal envelope
    for S.  NaN when the window does not hold enough samples."""
    i = int(round(idx))
    sig = x[0].astype(np.float64) if phase == "P" else np.hypot(x[1].astype(np.float64), x[2].astype(np.float64))
    a, b = max(i - int(SNR_PRE_S * fs), 0), max(i - int(SNR_GAP_S * fs), 0)
    pre, post = sig[a:b], sig[i : i + int(SNR_POST_S * fs)]
    if len(pre) < 10 or len(post) < 1:
        return float("nan")
    rms = float(np.sqrt(np.mean(pre**2)))
    return float(np.abs(post).max() / rms) if rms > 0 else float("nan")


def manual_picks_table(path, stations: pd.DataFrame | None = None) -> pd.DataFrame:
    """Manual picks as ``station_id, phase, time, event_id`` (-1 where the file has no events),
    sorted by time, from any pick file :func:`quakescale.formats.picks_io.read_picks` reads
    (HypoDD phase file, Hypoinverse archive, CSV ...); ``stations`` maps HypoDD station codes."""
    df = read_picks(path, stations=stations)
    if "event_id" not in df:
        df = df.assign(event_id=-1)
    df = df[["station_id", "phase", "time", "event_id"]].copy()
    df["time"] = pd.to_datetime(df["time"], utc=True)
    return df.sort_values("time", kind="stable").reset_index(drop=True)


def predicted_arrivals(
    events: pd.DataFrame, stations: pd.DataFrame, model, max_depth_km: float
) -> dict[str, np.ndarray]:
    """Predicted P and S times (ns) of every associated event at every station: {sid: (n_ev, 2)}."""
    if not len(events):
        return {s: np.zeros((0, 2), np.int64) for s in stations.station_id}
    epi = epicentral_km(
        events["latitude"].to_numpy()[:, None],
        events["longitude"].to_numpy()[:, None],
        stations["latitude"].to_numpy()[None, :],
        stations["longitude"].to_numpy()[None, :],
    )
    dep = np.clip(np.broadcast_to(events["depth_km"].to_numpy()[:, None], epi.shape), 0.0, max_depth_km)
    tt = TravelTimeTable(model, max_dist_km=float(epi.max()) + 5.0, max_depth_km=max_depth_km + 1.0)
    tp, _, _ = tt.time("P", epi, dep)
    ts, _, _ = tt.time("S", epi, dep)
    origin = events["time"].astype("int64").to_numpy()
    out = {}
    for j, sid in enumerate(stations.station_id):
        out[sid] = np.stack(
            [origin + (tp[:, j] * 1e9).astype(np.int64), origin + (ts[:, j] * 1e9).astype(np.int64)], axis=1
        )
    return out


def guided_labels(
    prep,
    pred: np.ndarray,
    p_lab: np.ndarray,
    s_lab: np.ndarray,
    tol_s: float,
    window_s: float,
    min_contrast: float,
    phases=("S",),
):
    """Labels for predicted arrivals (``pred`` (n_ev, 2) P/S sample indices) that have no label
    within ``tol_s``: the AIC onset (:func:`quakescale.detect.refine.refine_indices`) within
    ``window_s`` of the prediction where its onset contrast reaches ``min_contrast``.  Returns
    the sorted label arrays with the new picks and the number added per phase."""
    prm = RefineParams(
        before_s=window_s, after_s=window_s, max_shift_s=window_s, edge_s=0.1, contrast_s=0.5, min_contrast=min_contrast
    )
    out, added = [], []
    for c, lab, ph in ((0, p_lab, "P"), (1, s_lab, "S")):
        if ph not in phases:
            out.append(lab)
            added.append(0)
            continue
        pr = pred[:, c].astype(np.float64)
        if len(lab):
            pr = pr[np.min(np.abs(pr[:, None] - lab[None, :]), axis=1) > tol_s * FS]
        new, acc, _ = refine_indices(prep.data, prep.valid, pr, ph, prm)
        add = np.round(new[acc]).astype(np.int64)
        out.append(np.sort(np.concatenate([lab, add])))
        added.append(len(add))
    return out[0], out[1], added[0], added[1]


def _to_idx(t_ns, t0_ns: int) -> np.ndarray:
    """Times (ns) as the nearest sample indices of data starting at ``t0_ns``."""
    return np.round((np.asarray(t_ns, np.int64) - t0_ns) / (1e9 / FS)).astype(np.int64)


def inside(labels: np.ndarray, start: int) -> np.ndarray:
    """The sample indices of ``labels`` inside the stored window starting at ``start``, relative to it."""
    return labels[(labels >= start) & (labels < start + STORE_N)] - start


def _row(
    kind,
    source,
    station_id,
    event_id,
    start_ns,
    p_idx,
    s_idx,
    p_ign,
    s_ign,
    snr_p,
    snr_s,
    epi_distance_km,
    azimuth,
    p_travel_s,
    s_travel_s,
    day,
) -> dict:
    """One row of ``index.parquet`` (its columns in order)."""
    return dict(
        kind=kind,
        source=source,
        station_id=station_id,
        event_id=event_id,
        start_ns=start_ns,
        p_idx=p_idx,
        s_idx=s_idx,
        p_ign=p_ign,
        s_ign=s_ign,
        snr_p=snr_p,
        snr_s=snr_s,
        epi_distance_km=epi_distance_km,
        azimuth_deg=azimuth,
        p_travel_s=p_travel_s,
        s_travel_s=s_travel_s,
        day=day,
    )


@dataclass
class _StationDay:
    """What cutting one station-day needs: its preprocessed data, the labels (sample indices), the
    predicted arrivals of the events near it and the raw triggers to mask."""

    day: dt.date
    station_id: str
    prep: object
    gaps: np.ndarray  # cumulative count of invalid samples: a window [a, b) is gap-free when gaps[b] == gaps[a]
    p_assigned: pd.DataFrame  # associated P picks kept as labels
    s_assigned: pd.DataFrame
    p_labels: np.ndarray
    s_labels: np.ndarray
    predicted: np.ndarray  # (n_ev, 2) P / S sample indices of the events near this station-day
    event_ids: np.ndarray
    raw_triggers: list | None  # [P, S] sorted sample indices of raw triggers (mask_raw_triggers)

    @property
    def n(self) -> int:
        return self.prep.data.shape[1]

    def to_idx(self, t_ns):
        return _to_idx(t_ns, self.prep.t0_ns)

    def gap_free(self, start: int) -> bool:
        return start >= 0 and start + STORE_N <= self.n and self.gaps[start + STORE_N] - self.gaps[start] == 0


class SampleCutter:
    """Cuts the samples of one station-day after another (:meth:`cut`), counting what it
    excluded (``excluded``), the windows holding unlabelled arrivals (``n_masked``), the weak
    positives (``n_weak``) and the association-guided labels per phase (``n_guided``)."""

    def __init__(
        self,
        cfg,
        params: BootstrapParams,
        picks: pd.DataFrame,
        raw: list,
        events: pd.DataFrame,
        assignments: pd.DataFrame,
        stations: pd.DataFrame,
        predicted: dict,
        manual: pd.DataFrame | None,
    ):
        self.det = cfg.detect
        self.params = params
        self.rng = np.random.default_rng(params.seed)
        self.raw = raw
        self.events = events
        self.predicted = predicted
        self.event_time = {}
        if len(events):
            self.event_time = dict(zip(events["event_id"].to_numpy(), events["time"].astype("int64").to_numpy()))
        self.event_loc = events.set_index("event_id")[["latitude", "longitude"]] if len(events) else None
        self.station_loc = stations.set_index("station_id")[["latitude", "longitude"]]
        if len(assignments):
            self.assignments = assignments.assign(t_ns=assignments["time"].astype("int64").to_numpy())
        else:
            self.assignments = assignments.assign(t_ns=pd.Series([], dtype=np.int64))
        self.picks_station = picks["station_id"].to_numpy()
        self.picks_t = picks["time"].astype("int64").to_numpy()
        self.pick_method, self.pick_prob = picks["classic"].to_numpy(), picks["probability"].to_numpy()
        self.manual = manual.assign(t_ns=manual["time"].astype("int64").to_numpy()) if manual is not None else None
        self.n_masked = self.n_weak = 0
        self.n_guided = {"P": 0, "S": 0}
        self.excluded = {"snr_low": 0, "snr_high": 0, "edge_or_gap": 0, "incomplete_labels": 0, "noise_not_found": 0}

    # ------------------------------------------------------------------ one station-day
    def cut(self, day: dt.date, station_id: str, prep) -> tuple[list[dict], list[np.ndarray]]:
        """The index rows and float16 waveforms of one station-day: bootstrap positives, weak
        positives, manual positives, then negatives (as many as ``noise_per_event`` x positives)."""
        sd = self._station_day(day, station_id, prep)
        rows: list[dict] = []
        waves: list[np.ndarray] = []
        self._positives(sd, rows, waves)
        if self.params.weak_snr_min is not None and len(sd.predicted):
            self._weak_positives(sd, rows, waves)
        if self.manual is not None:
            self._manual_positives(sd, rows, waves)
        self._negatives(sd, len(rows), rows, waves)
        return rows, waves

    def _station_day(self, day, sid, prep) -> _StationDay:
        """Labels of the station-day: its associated picks less those that are only evidence,
        completed by association-guided picks; the events whose arrivals can touch it."""
        p = self.params
        n = prep.data.shape[1]
        asg = self.assignments
        g = asg[asg["station_id"] == sid] if len(asg) else asg
        if p.stalta_only_p == "ignore" and len(g):
            # a P only the STA/LTA found (the kurtosis picker did not confirm it) is emergent and
            # loosely timed: association evidence, not a label (it is left unlabelled)
            g = g[~((g["phase"] == "P").to_numpy() & (self.pick_method[g["pick_index"].to_numpy()] == "stalta"))]
        if p.teacher_model and len(g):
            # a model pick is a label only where it fits its event closely; elsewhere it is
            # left unlabelled (the loss ignores it, see _unlabelled)
            pick = g["pick_index"].to_numpy()
            fits = (
                (np.abs(g["residual_s"].to_numpy()) <= p.model_max_residual_s)
                & g["phase"].isin(p.model_label_phases).to_numpy()
                & (self.pick_prob[pick] >= p.model_min_probability)
            )
            g = g[(self.pick_method[pick] != "model") | fits]
        p_assigned, s_assigned = g[g["phase"] == "P"], g[g["phase"] == "S"]
        p_labels = np.sort(_to_idx(p_assigned["t_ns"].to_numpy(), prep.t0_ns))
        s_labels = np.sort(_to_idx(s_assigned["t_ns"].to_numpy(), prep.t0_ns))
        pred = self.predicted.get(sid)
        if pred is not None and len(pred):
            here = np.stack([_to_idx(pred[:, 0], prep.t0_ns), _to_idx(pred[:, 1], prep.t0_ns)], axis=1)
        else:
            here = np.zeros((0, 2), np.int64)
        # only the events whose predicted arrivals can touch this station-day's windows (a long
        # archive holds many more: keeps the per-station-day work bounded)
        near = (here[:, 1] >= -STORE_N) & (here[:, 0] < n + STORE_N) if len(here) else np.zeros(0, bool)
        here = here[near]
        event_ids = self.events["event_id"].to_numpy()[near] if len(self.events) else np.zeros(0, np.int64)
        if p.guided_contrast is not None and len(here):
            # association-guided picks: an arrival predicted for an associated event with no
            # classic pick near it is searched for on the waveform (AIC onset within
            # guided_window_s of the prediction, Z for P, N+E for S) and labelled when sharp
            p_labels, s_labels, got_p, got_s = guided_labels(
                prep, here, p_labels, s_labels, p.label_tol_s, p.guided_window_s, p.guided_contrast, p.guided_phases
            )
            self.n_guided["P"] += got_p
            self.n_guided["S"] += got_s
        raw_triggers = None
        if p.mask_raw_triggers:
            raw_triggers = [
                np.sort(
                    _to_idx(
                        np.concatenate(
                            [t[ph == phase] for s, t, ph in self.raw if s == sid] or [np.zeros(0, np.int64)]
                        ),
                        prep.t0_ns,
                    )
                )
                for phase in ("P", "S")
            ]
        gaps = np.concatenate([[0], np.cumsum(~prep.valid)])
        return _StationDay(
            day, sid, prep, gaps, p_assigned, s_assigned, p_labels, s_labels, here, event_ids, raw_triggers
        )

    def _positive(self, sd: _StationDay, anchor: int):
        """(start, waveform, P SNR) of a positive sample with its P at ``anchor``; None, counted
        in ``excluded``, when it crosses the data's edge or a gap or its SNR is out of
        [snr_min, snr_max]."""
        start = anchor - P_AT_N
        if not sd.gap_free(start):
            self.excluded["edge_or_gap"] += 1
            return None
        w = sd.prep.data[:, start : start + STORE_N]
        snr_p = sample_snr(w, P_AT_N, "P")
        if not np.isfinite(snr_p) or snr_p < self.params.snr_min:
            self.excluded["snr_low"] += 1
            return None
        if snr_p > self.params.snr_max:
            self.excluded["snr_high"] += 1
            return None
        return start, w, snr_p

    def _unlabelled(self, sd: _StationDay, start: int) -> tuple[list, list]:
        """Arrivals predicted (from the associated hypocentres; with ``mask_raw_triggers`` also
        raw classic triggers) inside the window at ``start`` with no label within
        ``label_tol_s``: P and S sample indices in the window."""
        res = []
        for c, lab in ((0, sd.p_labels), (1, sd.s_labels)):
            pr = sd.predicted[:, c] if len(sd.predicted) else np.zeros(0, np.int64)
            if self.params.mask_raw_triggers:
                pr = np.concatenate([pr, sd.raw_triggers[c]])
            pr = pr[(pr >= start) & (pr < start + STORE_N)]
            if len(pr) and len(lab):
                pr = pr[np.min(np.abs(pr[:, None] - lab[None, :]), axis=1) > self.params.label_tol_s * FS]
            res.append((pr - start).tolist())
        return res[0], res[1]

    def _geometry(self, event_id, sid) -> tuple[float, float]:
        la, lo = self.event_loc.loc[event_id]
        sla, slo = self.station_loc.loc[sid]
        return float(epicentral_km(la, lo, sla, slo)), float(azimuth_deg(la, lo, sla, slo))

    def _positives(self, sd: _StationDay, rows: list, waves: list) -> None:
        """One positive per associated P (the anchor) of the station-day."""
        for r in sd.p_assigned.itertuples():
            got = self._positive(sd, int(sd.to_idx(r.t_ns)))
            if got is None:
                continue
            start, w, snr_p = got
            p_ign, s_ign = self._unlabelled(sd, start)
            if (len(p_ign) or len(s_ign)) and self.params.unlabelled_arrivals == "drop":
                self.excluded["incomplete_labels"] += 1
                continue
            self.n_masked += bool(len(p_ign) or len(s_ign))
            s_pick = sd.s_assigned[sd.s_assigned["event_id"] == r.event_id]
            s_rel = int(sd.to_idx(s_pick["t_ns"].iloc[0])) - start if len(s_pick) else -1
            snr_s = sample_snr(w, s_rel, "S") if 0 <= s_rel < STORE_N else float("nan")
            origin = self.event_time.get(r.event_id)
            dist, azi = self._geometry(r.event_id, sd.station_id)
            s_travel = ((s_pick["t_ns"].iloc[0] - origin) / 1e9) if len(s_pick) else float("nan")
            waves.append(to_float16(w))
            rows.append(
                _row(
                    "event",
                    "bootstrap",
                    sd.station_id,
                    int(r.event_id),
                    int(sd.prep.time_ns(start)),
                    inside(sd.p_labels, start).tolist(),
                    inside(sd.s_labels, start).tolist(),
                    p_ign,
                    s_ign,
                    snr_p,
                    snr_s,
                    dist,
                    azi,
                    (r.t_ns - origin) / 1e9,
                    s_travel,
                    sd.day.isoformat(),
                )
            )

    def _weak_positives(self, sd: _StationDay, rows: list, waves: list) -> None:
        """Events associated elsewhere that no picker found here: a positive for the detector
        where the predicted P or S shows an onset; the picker's loss ignores the steps around
        arrivals no (guided) label covers."""
        p = self.params
        have = set(sd.p_assigned["event_id"].to_numpy().tolist())
        shifts = range(-int(p.weak_search_s * FS), int(p.weak_search_s * FS) + 1, 25)
        for j, eid in enumerate(sd.event_ids):
            if int(eid) in have:
                continue
            p_at = int(sd.predicted[j, 0])
            start = p_at - P_AT_N
            if not sd.gap_free(start):
                continue
            w = sd.prep.data[:, start : start + STORE_N]
            snr_p = max(sample_snr(w, P_AT_N + k, "P") for k in shifts)
            s_rel = int(sd.predicted[j, 1]) - start
            if 0 <= s_rel < STORE_N - int(SNR_POST_S * FS):
                snr_s = max(sample_snr(w, s_rel + k, "S") for k in shifts)
            else:
                snr_s = float("nan")
            best = np.nanmax([snr_p, snr_s, -1.0])  # an S seen without its P counts too
            if best < p.weak_snr_min or best > p.snr_max:
                continue
            p_ign, s_ign = self._unlabelled(sd, start)
            dist, azi = self._geometry(eid, sd.station_id)
            waves.append(to_float16(w))
            p_travel = (sd.predicted[j, 0] - sd.to_idx(self.event_time[eid])) / FS
            rows.append(
                _row(
                    "event",
                    "weak",
                    sd.station_id,
                    int(eid),
                    int(sd.prep.time_ns(start)),
                    inside(sd.p_labels, start).tolist(),
                    inside(sd.s_labels, start).tolist(),
                    p_ign,
                    s_ign,
                    snr_p,
                    snr_s,
                    dist,
                    azi,
                    p_travel,
                    np.nan,
                    sd.day.isoformat(),
                )
            )
            self.n_weak += 1

    def _manual_positives(self, sd: _StationDay, rows: list, waves: list) -> None:
        """One picker sample per manual P of the station, labelled with the manual picks."""
        mine = self.manual[self.manual["station_id"] == sd.station_id]
        p_man = np.sort(sd.to_idx(mine.loc[mine.phase == "P", "t_ns"]))
        s_man = np.sort(sd.to_idx(mine.loc[mine.phase == "S", "t_ns"]))
        for r in mine[mine.phase == "P"].itertuples():
            anchor = int(sd.to_idx(r.t_ns))
            if not (0 <= anchor < sd.n):
                continue
            got = self._positive(sd, anchor)
            if got is None:
                continue
            start, w, snr_p = got
            s_in = inside(s_man, start)
            waves.append(to_float16(w))
            rows.append(
                _row(
                    "event",
                    "manual",
                    sd.station_id,
                    int(r.event_id),
                    int(sd.prep.time_ns(start)),
                    inside(p_man, start).tolist(),
                    s_in.tolist(),
                    [],
                    [],
                    snr_p,
                    sample_snr(w, int(s_in[0]), "S") if len(s_in) else float("nan"),
                    np.nan,
                    np.nan,
                    np.nan,
                    np.nan,
                    sd.day.isoformat(),
                )
            )

    def _exclusions(self, sd: _StationDay) -> tuple[np.ndarray, np.ndarray]:
        """Start and end sample indices of what a negative must not touch: every raw and manual
        pick of the station and every predicted arrival from 2 s before the P to the S coda."""
        sid = sd.station_id
        raw_t = np.concatenate([self.picks_t[self.picks_station == sid]] + [t for s, t, _ in self.raw if s == sid])
        tt = sd.to_idx(raw_t)
        ex_start, ex_end = [tt], [tt]
        if self.manual is not None:
            tm = sd.to_idx(self.manual.loc[self.manual["station_id"] == sid, "t_ns"])
            ex_start.append(tm)
            ex_end.append(tm)
        pred = self.predicted.get(sid)
        if pred is not None and len(pred):
            pp, ss = sd.to_idx(pred[:, 0]), sd.to_idx(pred[:, 1])
            ex_start.append(pp - int(2 * FS))
            ex_end.append(ss + (self.params.coda_factor * (ss - pp)).astype(np.int64) + int(10 * FS))
        return np.concatenate(ex_start), np.concatenate(ex_end)

    def _stalta_max_per_second(self, sd: _StationDay) -> np.ndarray:
        """The Z STA/LTA (``detect.sta_s`` / ``lta_s``) maximum of every second (0 over gaps and the
        first LTA)."""
        sta, lta = max(int(self.det.sta_s * FS), 1), max(int(self.det.lta_s * FS), 2)
        cf = recursive_sta_lta(sd.prep.data[0].astype(np.float64), sta, lta)
        cf[: int(self.det.lta_s * FS)] = 0.0
        cf[~sd.prep.valid] = 0.0
        return np.maximum.reduceat(cf, np.arange(0, sd.n, 100))

    def _negatives(self, sd: _StationDay, n_positives: int, rows: list, waves: list) -> None:
        """Random windows with no pick, manual pick or predicted arrival (+ coda) near them
        (``exclusion_before_s`` before to 2 s after) and, with ``noise_max_stalta``, no STA/LTA
        above it: ``noise_per_event`` x ``n_positives`` (at least 1) of them, or as many as 50
        tries per window find (the rest counted in ``excluded.noise_not_found``)."""
        p = self.params
        ex_start, ex_end = self._exclusions(sd)
        stalta = self._stalta_max_per_second(sd) if p.noise_max_stalta is not None else None
        before = int(p.exclusion_before_s * FS)
        want, tries = int(round(p.noise_per_event * max(n_positives, 1))), 0
        while want > 0 and tries < 50 * want + 100:
            tries += 1
            start = int(self.rng.integers(0, max(sd.n - STORE_N, 1)))
            if not sd.gap_free(start):
                continue
            if np.any((ex_end >= start - before) & (ex_start < start + STORE_N + int(2 * FS))):
                continue
            if stalta is not None and stalta[start // 100 : (start + STORE_N) // 100 + 1].max() > p.noise_max_stalta:
                continue
            w = sd.prep.data[:, start : start + STORE_N]
            waves.append(to_float16(w))
            rows.append(
                _row(
                    "noise",
                    "bootstrap",
                    sd.station_id,
                    -1,
                    int(sd.prep.time_ns(start)),
                    [],
                    [],
                    [],
                    [],
                    sample_snr(w, STORE_N // 2, "P"),
                    np.nan,
                    np.nan,
                    np.nan,
                    np.nan,
                    np.nan,
                    sd.day.isoformat(),
                )
            )
            want -= 1
        self.excluded["noise_not_found"] += want


def write_waveforms(out: Path, blocks: list[Path], n_rows: int) -> Path:
    """``OUT/waveforms.npy`` (float16 (n_rows, 3, STORE_N), streamed) from the station-day
    blocks, in order; raises when their count does not match the index."""
    path = out / "waveforms.npy"
    wf = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n_rows, 3, STORE_N))
    k = 0
    for f in blocks:
        b = np.load(f)
        wf[k : k + len(b)] = b
        k += len(b)
    wf.flush()
    del wf
    if k != n_rows:
        raise RuntimeError(f"bootstrap: {k} waveforms written for {n_rows} index rows in {out}")
    return path
