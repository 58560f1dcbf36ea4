"""Region-specific sample sets from a region's own continuous data (``quakescale bootstrap``).

The seed's recipe for a new region, without any truth:

1. **Classic picks** on every chosen station-day: recursive STA/LTA and kurtosis
   (:func:`quakescale.detect.classic.classic_picks`, parameters from ``detect.sta_s`` ...) on
   the same preprocessed 1-20 Hz data as the CERP models
   (:func:`quakescale.detect.runner.preprocess`).  The two pick lists are merged per phase:
   picks within ``merge_s`` are one pick, timed by the STA/LTA (AIC) onset when it has one
   (the kurtosis onset is biased early), flagged ``agree`` when both pickers found it.  Each S
   stays paired with the P it was searched after.
2. **Association** across stations (:class:`quakescale.associate.Associator`, PALM-style,
   ``associate.max_residual_s`` / ``associate.min_stations`` >= 4) in time partitions
   (:func:`quakescale.associate.associate_partitioned`).
3. **Positive samples**: for each associated event and each station with an associated P,
   a 45 s 3-component window with that P at 16 s (the layout of
   :mod:`quakescale.train.samples`, so :class:`~quakescale.train.augment.RandomCrop` can shift
   it within 15 s); labels are every associated P / S of that station inside the window.
   Classic S pickers miss most S, so labels are completed and the rest is not taught as noise:

   - *association-guided picks*: an arrival predicted from an associated hypocentre with no
     pick near it is searched on the waveform (AIC onset within ``guided_window_s``, Z for P,
     N+E for S) and labelled where the onset is sharp (``guided_contrast``);
   - *unlabelled arrivals* (predicted ones still without a label; P picks only the STA/LTA
     found, which are loosely timed, ``stalta_only_p="ignore"``; with ``mask_raw_triggers``
     also raw classic triggers no event claimed) go to ``p_ign`` / ``s_ign``: the picker's loss ignores the steps around them
     (``unlabelled_arrivals="drop"`` instead excludes such windows);
   - *weak positives*: an associated event no classic picker found at a station is a detector
     positive there when its predicted P or S shows an onset (``weak_snr_min``) -- the weak
     events (an S seen without its P) the detector must learn to pass.
   - *self-training* (``teacher_model``; None here, ``train.self_training`` of the config turns
     it on for ``quakescale bootstrap``): the starting model's picks join the
     classic ones before association; an event still needs ``min_classic_picks`` classic picks,
     and a model pick becomes a label only for ``model_label_phases`` (S: the classic S picker
     is the weak one), with probability >= ``model_min_probability`` and within
     ``model_max_residual_s`` of its event's prediction; other model picks are left unlabelled.

   **Negative samples**: random windows with no pick at all -- no raw classic pick of either
   picker, no manual pick and no arrival *predicted* for an associated event at the station
   from ``exclusion_before_s`` before to the window end (coda included).
   **Manual picks** (optional; HypoDD ``.pha``, Hypoinverse ``.arc``/``.phs``/``.hyp`` or CSV)
   give picker samples anchored on each manual P, labelled with the manual picks.
4. **SNR** per sample (P: Z peak in 2 s after / RMS 5 s before; S: the same on the horizontal
   envelope); samples outside ``[snr_min, snr_max]`` are excluded.

The sample set is a directory readable by :class:`quakescale.train.samples.SampleSet` (and so
by the trainer) and in batches by :func:`iter_batches` without loading everything::

    waveforms.npy       (N, 3, 4500) float16 (memmap), Z/N/E, each sample scaled to peak 1
    index.parquet       one row per sample: sample, kind (event|noise), source (bootstrap|weak|manual),
                        station_id, event_id, start_ns, p_idx, s_idx, p_ign, s_ign, snr_p, snr_s,
                        epi_distance_km, azimuth_deg, p_travel_s, s_travel_s
    picks.parquet       the merged classic picks (PICKS columns + ``agree``, ``pair``)
    events.parquet      associated events; assignments.parquet  their picks
    summary.json        counts, exclusions, station-days skipped (with the reason)
    summary.png         Figure 2 of the seed: SNR, distance, azimuth, travel time vs distance
    card.json           parameters

Waveforms are written one station-day block at a time (``blocks/``) and concatenated at the end,
so memory stays bounded by one station-day whatever the size of the set.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .samples import P_AT_N, STORE_N, SampleSet, _f16

FS = 100.0
SNR_PRE_S, SNR_POST_S, SNR_GAP_S = 5.0, 2.0, 0.2


# ----------------------------------------------------------------------------- helpers
def _station_days(cfg, station_days=None) -> list[tuple[dt.date, str]]:
    """``station_days``: None (every station of the inventory x every day of the config), or
    items ``"YYYY-MM-DD/NET.STA"``, ``(day, "NET.STA")`` or :class:`~quakescale.archive.StationDay`."""
    if station_days is None:
        from ..archive import load_inventory, stations_table

        sids = list(stations_table(load_inventory(cfg.archive.inventory), cfg.archive.stations or None).station_id)
        return [(d, s) for d in cfg.days() for s in sids]
    out = []
    for it in station_days:
        if isinstance(it, str):
            from ..archive import StationDay

            sd = StationDay.from_unit(it)
            out.append((sd.day, sd.station_id))
        elif hasattr(it, "station_id") and hasattr(it, "day"):
            out.append((it.day, it.station_id))
        else:
            d, s = it
            out.append((d if isinstance(d, dt.date) else dt.date.fromisoformat(str(d)[:10]), str(s)))
    return sorted(set(out))


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


def merge_classic(picks_a: list, picks_b: list, merge_s: float = 0.6, fs: float = FS) -> list[dict]:
    """Merge two classic pick lists ``[(phase, sample, quality)]`` (a: STA/LTA, b: kurtosis).

    Returns dicts ``phase, idx, quality, agree, method, pair`` where ``pair`` (for S) is the
    index of the merged P it follows (-1 when none).  Picks of one phase within ``merge_s`` are
    one pick timed by ``a`` when present; ``agree`` marks picks both lists found."""
    tol = merge_s * fs
    merged: list[dict] = []
    for ph in ("P", "S"):
        a = sorted((p for p in picks_a if p[0] == ph), key=lambda p: p[1])
        b = sorted((p for p in picks_b if p[0] == ph), key=lambda p: p[1])
        used_b = np.zeros(len(b), bool)
        bt = np.array([p[1] for p in b], np.float64)
        for p in a:
            j = -1
            if len(bt):
                d = np.abs(bt - p[1])
                d[used_b] = np.inf
                k = int(np.argmin(d))
                if d[k] <= tol:
                    j = k
            if j >= 0:
                used_b[j] = True
                merged.append(dict(phase=ph, idx=float(p[1]), quality=float(max(p[2], b[j][2])), agree=True, method="stalta+kurtosis"))
            else:
                merged.append(dict(phase=ph, idx=float(p[1]), quality=float(p[2]), agree=False, method="stalta"))
        for k, p in enumerate(b):
            if not used_b[k]:
                merged.append(dict(phase=ph, idx=float(p[1]), quality=float(p[2]), agree=False, method="kurtosis"))
    # a P trigger on an S wave: a P of one picker where the other paired an S (after its own
    # P) is an S arrival -- keep the S, drop the P
    s_t = np.array([r["idx"] for r in merged if r["phase"] == "S"])
    if len(s_t):
        merged = [r for r in merged if r["phase"] == "S" or np.abs(s_t - r["idx"]).min() > tol]
    return _pair(merged, fs)


def add_model_picks(merged: list[dict], model_picks: list, merge_s: float = 0.6, fs: float = FS) -> list[dict]:
    """Add a model's picks ``[(phase, sample, probability)]`` that no merged classic pick of the
    same phase lies within ``merge_s`` of (``method`` "model"); S pairs are redone."""
    tol = merge_s * fs
    have = {ph: np.array([r["idx"] for r in merged if r["phase"] == ph]) for ph in ("P", "S")}
    out = list(merged)
    for ph, i, q in model_picks:
        h = have[ph]
        if len(h) and np.abs(h - i).min() <= tol:
            continue
        out.append(dict(phase=ph, idx=float(i), quality=float(q), agree=False, method="model"))
    return _pair(out, fs)


def read_manual_picks(path, stations: pd.DataFrame | None = None) -> pd.DataFrame:
    """Manual picks as ``station_id, phase, time, event_id`` from a HypoDD phase file
    (``*.pha``, ``phase.dat``), a Hypoinverse archive (``*.arc``, ``*.phs``, ``*.hyp``) or CSV
    (``*.csv``: columns understood by :func:`quakescale.formats.picks_io.read_csv_picks`).

    HypoDD phase files carry station codes without network: ``stations`` (with ``station`` and
    ``station_id``) maps them; an unknown or ambiguous code raises naming the file."""
    path = Path(path)
    name = path.name.lower()
    if not path.exists():
        raise FileNotFoundError(f"manual picks: file not found: {path}")
    if name.endswith(".csv"):
        from ..formats.picks_io import read_csv_picks

        df = read_csv_picks(path)
        df = df.assign(event_id=-1)
    elif name.endswith(".pha") or name.startswith("phase") and name.endswith(".dat"):
        from ..formats.hypodd import read_pha

        ev, ph = read_pha(path)
        if stations is None:
            raise ValueError(f"manual picks {path}: a HypoDD phase file needs the station table to map codes to NET.STA")
        codes = stations.groupby("station")["station_id"].agg(list).to_dict()
        sid = []
        for s in ph["station"]:
            ids = codes.get(s, [])
            if len(ids) != 1:
                raise ValueError(f"manual picks {path}: station code {s!r} is {'unknown' if not ids else 'ambiguous ' + str(ids)} in the inventory")
            sid.append(ids[0])
        t0 = ev.set_index("event_id")["time"]
        df = pd.DataFrame({"station_id": sid, "phase": ph["phase"].str[0].to_numpy(), "event_id": ph["event_id"].to_numpy(),
                           "time": (t0.loc[ph["event_id"]].to_numpy() + pd.to_timedelta(ph["travel_time_s"].to_numpy(), unit="s"))})
    elif name.endswith((".arc", ".phs", ".hyp")):
        from ..formats.hypoinverse import read_arc

        _, ph = read_arc(path)
        df = ph[ph["phase"].isin(["P", "S"])][["station_id", "phase", "time", "event_id"]]
    else:
        raise ValueError(f"manual picks {path}: unknown format (use .pha / phase.dat (HypoDD), .arc/.phs/.hyp (Hypoinverse) or .csv)")
    df = df[["station_id", "phase", "time", "event_id"]].copy()
    df["time"] = pd.to_datetime(df["time"], utc=True)
    return df.sort_values("time", kind="stable").reset_index(drop=True)


def zh_log_ratio(data: np.ndarray, idx: float, fs: float = FS, post_s: float = 1.0, pre_s: float = 3.0) -> float:
    """log10 of the vertical over the horizontal energy increase in ``post_s`` after an onset
    (mean power after minus mean power in ``pre_s`` before): P waves arrive steeply and are
    mostly vertical (> -0.6 in the synthetic worlds' 5 %-95 % range), S waves mostly horizontal
    (< -0.8)."""
    i = int(round(idx))
    a, b = max(i - int(pre_s * fs), 0), max(i - int(0.2 * fs), 0)
    post = data[:, i : i + int(post_s * fs)].astype(np.float64)
    pre = data[:, a:b].astype(np.float64)
    if post.shape[1] < 10 or pre.shape[1] < 10:
        return float("nan")
    ez = (post[0] ** 2).mean() - (pre[0] ** 2).mean()
    eh = (post[1:] ** 2).sum(0).mean() - (pre[1:] ** 2).sum(0).mean()
    return float(np.log10(max(ez, 1e-30) / max(eh, 1e-30)))


def phase_check(merged: list[dict], data: np.ndarray, threshold: float = -0.6) -> list[dict]:
    """Keep P picks whose :func:`zh_log_ratio` exceeds ``threshold`` and S picks below it (a
    classic trigger on an S wave is not taught as a P, nor a P as an S); S pairs are redone."""
    keep = []
    for r in merged:
        q = zh_log_ratio(data, r["idx"])
        r["zh_log10"] = q
        if not np.isfinite(q) or (q > threshold) == (r["phase"] == "P"):
            keep.append(r)
    return _pair(keep)


def refine_kurtosis_p(merged: list[dict], data: np.ndarray, fs: float = FS, before_s: float = 0.5, after_s: float = 2.0) -> list[dict]:
    """Re-time P picks only the kurtosis picker found (its onset runs early) by the AIC minimum
    of Z in ``before_s`` before to ``after_s`` after the pick, as the STA/LTA picker does."""
    from ..detect.classic import aic_onset

    n = data.shape[1]
    for r in merged:
        if r["phase"] == "P" and r["method"] == "kurtosis":
            a, b = max(int(r["idx"] - before_s * fs), 0), min(int(r["idx"] + after_s * fs), n)
            if b - a > 20:
                r["idx"] = float(a + aic_onset(data[0, a:b]))
    return _pair(merged, fs)


def _pair(merged: list[dict], fs: float = FS) -> list[dict]:
    """Sort by time and pair each S with the latest P at least 0.3 s before it (``pair``)."""
    merged.sort(key=lambda r: r["idx"])
    p_idx = np.array([r["idx"] for r in merged if r["phase"] == "P"])
    p_pos = [i for i, r in enumerate(merged) if r["phase"] == "P"]
    for r in merged:
        r["pair"] = -1
        if r["phase"] == "S" and len(p_idx):
            k = int(np.searchsorted(p_idx, r["idx"] - 0.3 * fs, side="right")) - 1
            if k >= 0:
                r["pair"] = p_pos[k]
    return merged


class _PrepCache:
    """Preprocessed station-days kept between the picking and the cutting pass while they fit
    in ``max_mb``; the rest are read again."""

    def __init__(self, max_mb: float):
        self.max_bytes = max_mb * 1e6
        self.used = 0
        self.store: dict = {}

    def put(self, key, prep) -> None:
        nb = prep.data.nbytes + prep.valid.nbytes
        if self.used + nb <= self.max_bytes:
            self.store[key] = prep
            self.used += nb

    def pop(self, key):
        p = self.store.pop(key, None)
        if p is not None:
            self.used -= p.data.nbytes + p.valid.nbytes
        return p


def _read_prep(cfg, sid: str, day: dt.date):
    from ..archive import read_station_day
    from ..detect.runner import preprocess

    st = read_station_day(cfg.archive.sds_root, sid, day, channels=list(cfg.archive.channels))
    return preprocess(st, cfg.detect)


def teacher_detect_section(det, teacher: str | None):
    """The :class:`~quakescale.config.DetectSection` of a bootstrap teacher: ``None`` for
    ``"classic"`` (the seed's STA/LTA + kurtosis, merged, see :func:`merge_classic`); otherwise a
    copy of ``det`` with the teacher's ``method`` / ``model``: ``cerp`` (the shipped weights),
    ``cerp:WEIGHTS`` (a weights directory or ``builtin:NAME``), ``stalta``, ``kurtosis``, or any
    other method the station-day runner knows, e.g. ``seisbench:NAME:WEIGHTS``.  Raises
    :class:`quakescale.config.ConfigError` naming ``train.teacher`` for a method it does not know."""
    from pydantic import ValidationError

    from ..config import ConfigError

    spec = "classic" if teacher is None else str(teacher).strip()
    if spec == "classic":
        return None
    method, _, model = spec.partition(":")
    upd: dict = {"method": method}
    if method == "cerp":
        upd["model"] = model or "builtin:default"
    elif model:
        upd["model"] = model
    try:
        return type(det)(**{**det.model_dump(), **upd})
    except ValidationError as exc:
        why = "; ".join(str(e.get("msg", e)) for e in exc.errors())
        raise ConfigError(f"train.teacher {spec!r}: not a picker the station-day runner can run ({why}); "
                          "use classic, cerp[:WEIGHTS], stalta, kurtosis or another detect.method[:MODEL]") from None


def teacher_merged(stream, prep, tdet, model=None) -> list[dict]:
    """A teacher picker's picks of one station-day (:func:`quakescale.detect.runner.pick_stream`
    with ``tdet``) in the merged-pick form of :func:`merge_classic`, indexed on ``prep``'s samples
    (``method`` ``"teacher"``, ``quality`` = the picker's probability, each S paired with the P before it)."""
    from ..detect.runner import pick_stream

    df = pick_stream(stream, None, tdet, model)
    if not len(df):
        return []
    idx = (df["time"].astype("int64").to_numpy() - prep.t0_ns) / (1e9 / FS)
    n = prep.data.shape[1]
    keep = (idx >= 0) & (idx < n)
    prob = df["probability"].to_numpy(np.float64)
    rows = sorted(zip(idx[keep], df["phase"].to_numpy()[keep], prob[keep]), key=lambda r: r[0])
    merged = [dict(phase=str(ph), idx=float(i), quality=float(q), agree=True, method="teacher") for i, ph, q in rows]
    return _pair(merged)


def _predicted_arrivals(events: pd.DataFrame, stations: pd.DataFrame, model, max_depth_km: float) -> dict[str, np.ndarray]:
    """Predicted P and S times (ns) of every associated event at every station: {sid: (n_ev, 2)}."""
    from ..geo import epicentral_km
    from ..velocity import TravelTimeTable

    if not len(events):
        return {s: np.zeros((0, 2), np.int64) for s in stations.station_id}
    epi = epicentral_km(events["latitude"].to_numpy()[:, None], events["longitude"].to_numpy()[:, None],
                        stations["latitude"].to_numpy()[None, :], stations["longitude"].to_numpy()[None, :])
    dep = np.clip(np.broadcast_to(events["depth_km"].to_numpy()[:, None], epi.shape), 0.0, max_depth_km)
    tt = TravelTimeTable(model, max_dist_km=float(epi.max()) + 5.0, max_depth_km=max_depth_km + 1.0)
    tp, _, _ = tt.time("P", epi, dep)
    ts, _, _ = tt.time("S", epi, dep)
    o = events["time"].astype("int64").to_numpy()[:, None]
    out = {}
    for j, sid in enumerate(stations.station_id):
        out[sid] = np.stack([o[:, 0] + (tp[:, j] * 1e9).astype(np.int64), o[:, 0] + (ts[:, j] * 1e9).astype(np.int64)], axis=1)
    return out


def _guided_labels(prep, pred: np.ndarray, p_lab: np.ndarray, s_lab: np.ndarray, tol_s: float, window_s: float, min_contrast: float, phases=("S",)):
    """Labels for predicted arrivals (``pred`` (n_ev, 2) P/S sample indices) that have no label
    within ``tol_s``: the AIC onset (:func:`quakescale.detect.refine.refine_indices`) within
    ``window_s`` of the prediction where its onset contrast reaches ``min_contrast``.  Returns
    the sorted label arrays with the new picks and the number added per phase."""
    from ..detect.refine import RefineParams, refine_indices

    prm = RefineParams(before_s=window_s, after_s=window_s, max_shift_s=window_s, edge_s=0.1, contrast_s=0.5, min_contrast=min_contrast)
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


# ----------------------------------------------------------------------------- builder
def build_sample_set(
    cfg,
    out_dir,
    station_days=None,
    manual_picks=None,
    snr_min: float = 2.0,
    snr_max: float = 2000.0,
    noise_per_event: float = 1.0,
    merge_s: float = 0.6,
    kurtosis_on: float = 8.0,
    require_agree: bool = False,
    zh_threshold: float | None = -0.6,
    unlabelled_arrivals: str = "mask",
    weak_snr_min: float | None = 3.0,
    weak_search_s: float = 1.0,
    guided_contrast: float | None = 3.0,
    guided_window_s: float = 1.5,
    guided_phases: tuple = ("S",),
    mask_raw_triggers: bool = False,
    stalta_only_p: str = "ignore",
    teacher_model: str | None = None,
    teacher: str = "classic",
    min_classic_picks: int = 2,
    model_max_residual_s: float = 0.3,
    model_label_phases: tuple = ("S",),
    model_min_probability: float = 0.95,
    noise_max_stalta: float | None = 2.5,
    label_tol_s: float = 1.5,
    exclusion_before_s: float = 40.0,
    coda_factor: float = 1.5,
    cache_mb: float = 1500.0,
    seed: int | None = None,
    summary_png: bool = True,
    log=print,
) -> dict:
    """Build a bootstrap sample set from the station-days of a run config (no truth used).

    ``cfg``: a :class:`quakescale.config.Config` (archive, velocity, detect = classic picker
    parameters and preprocessing, associate).  ``station_days``: see :func:`_station_days`.
    ``manual_picks``: optional phase file (HypoDD / Hypoinverse / CSV) adding picker samples.
    ``snr_min`` / ``snr_max``: positive samples whose P SNR falls outside are excluded.
    ``noise_per_event``: negatives per positive of each station-day.  ``require_agree``: keep
    only P picks both classic pickers found (fewer, cleaner).  ``zh_threshold``: the
    polarisation check of :func:`phase_check` (None: off).  ``unlabelled_arrivals``: what to do with a positive
    window holding an arrival predicted (from the associated hypocentres) with no label within
    ``label_tol_s`` (the classic S picker misses most S): ``"mask"`` keeps it and lists the
    arrival in ``p_ign`` / ``s_ign``, so the picker's loss ignores the steps around it instead of
    teaching it as noise; ``"drop"`` excludes the window.  ``weak_snr_min``: an associated event
    that no classic picker found at a station gives a detector positive there (``source`` weak,
    P and S in ``p_ign`` / ``s_ign`` unless a guided pick labels them) when the SNR within
    ``weak_search_s`` of its predicted P (Z) or S (horizontals) reaches this (None: no weak positives) -- the weak events the detector must learn to pass.
    ``teacher``: where the picks come from (:func:`teacher_detect_section`): ``"classic"`` (the
    seed's STA/LTA + kurtosis, merged, polarisation-checked) or any picker of the station-day
    runner (``cerp[:WEIGHTS]``, ``stalta``, ``seisbench:NAME:WEIGHTS`` ...): its picks, associated,
    become the labels, completed as above (guided S labels, unlabelled arrivals ignored, weak
    positives); ``teacher_model`` (self-training) applies to the classic teacher only.
    ``noise_max_stalta``: negatives
    also keep the Z STA/LTA below this (weak events under the trigger stay out of them).  Returns the summary dict (also
    ``OUT/summary.json``)."""
    from ..archive import ArchiveError, load_inventory, stations_table
    from ..associate import PALM_SEED, Associator, associate_partitioned
    from ..detect.classic import classic_picks
    from ..detect.runner import cerp_picks, get_model, picks_table
    from ..geo import azimuth_deg, epicentral_km
    from ..rundir import write_json, write_table
    from ..formats.velmodels import resolve_model

    if stalta_only_p not in ("ignore", "label"):
        raise ValueError(f"bootstrap: stalta_only_p must be 'ignore' or 'label', not {stalta_only_p!r}")
    if unlabelled_arrivals not in ("mask", "drop"):
        raise ValueError(f"bootstrap: unlabelled_arrivals must be 'mask' or 'drop', not {unlabelled_arrivals!r}")
    t_start = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    blocks = out / "blocks"
    if blocks.exists():
        shutil.rmtree(blocks)
    blocks.mkdir()
    seed = cfg.run.seed if seed is None else seed
    rng = np.random.default_rng(seed)
    det = cfg.detect
    sds = _station_days(cfg, station_days)
    stations = stations_table(load_inventory(cfg.archive.inventory), cfg.archive.stations or None)
    model = resolve_model(cfg.velocity.model)
    cache = _PrepCache(cache_mb)
    skipped: list[dict] = []
    tdet = teacher_detect_section(det, teacher)
    teacher_model = teacher_model if tdet is None else None  # self-training completes the classic teacher only
    tnet = get_model(tdet.model, tdet.device) if tdet is not None and tdet.method == "cerp" else None
    teacher = get_model(teacher_model, det.device) if teacher_model else None
    teacher_label = (f"stalta+kurtosis@{det.sta_s:g}/{det.lta_s:g}/{det.trigger_on:g}/{kurtosis_on:g}" if tdet is None
                     else f"teacher:{tdet.method}:{tdet.model}")

    # --- 1. the teacher's picks (classic: STA/LTA + kurtosis, merged) per station-day
    pick_frames, raw_times = [], []
    for day, sid in sds:
        try:
            if tdet is None:
                prep = _read_prep(cfg, sid, day)
            else:
                from ..archive import read_station_day
                from ..detect.runner import preprocess

                stream = read_station_day(cfg.archive.sds_root, sid, day, channels=list(cfg.archive.channels))
                prep = preprocess(stream, det)
        except (ArchiveError, ValueError) as exc:
            skipped.append({"unit": f"{day}/{sid}", "reason": str(exc)[:300]})
            continue
        if tdet is not None:  # another picker's picks are the evidence (association still decides the labels)
            merged = teacher_merged(stream, prep, tdet, tnet)
            del stream
            raw_times.append((sid, prep.time_ns(np.array([r["idx"] for r in merged], np.float64)),
                              np.array([r["phase"] for r in merged], dtype=object)))
        else:
            pa = classic_picks(prep.data, prep.valid, "stalta", det, kurtosis_on=kurtosis_on)
            pb = classic_picks(prep.data, prep.valid, "kurtosis", det, kurtosis_on=kurtosis_on)
            raw_times.append((sid, prep.time_ns(np.array([p[1] for p in pa + pb], np.float64)), np.array([p[0] for p in pa + pb], dtype=object)))
            merged = merge_classic(pa, pb, merge_s)
            merged = refine_kurtosis_p(merged, prep.data)
            if zh_threshold is not None:
                merged = phase_check(merged, prep.data, zh_threshold)
            if require_agree:
                keep_p = {i for i, r in enumerate(merged) if r["phase"] == "P" and r["agree"]}
                merged = [r for i, r in enumerate(merged) if (r["phase"] == "P" and i in keep_p) or (r["phase"] == "S" and r["pair"] in keep_p)]
            if teacher is not None:
                # self-training: the starting model's picks join the classic ones (association
                # still decides what becomes a label); they also keep negatives away
                tpk, _ = cerp_picks(prep, teacher, det)
                merged = add_model_picks(merged, tpk, merge_s)
                sid_, tt_, ph_ = raw_times[-1]
                raw_times[-1] = (sid_, np.concatenate([tt_, prep.time_ns(np.array([q[1] for q in tpk], np.float64))]),
                                 np.concatenate([ph_, np.array([q[0] for q in tpk], dtype=object)]))
        df = picks_table(prep, [(r["phase"], r["idx"], r["quality"]) for r in merged], "bootstrap", teacher_label)
        if len(df):
            # picks_table sorts by time (stable); the merged list is sorted by sample already
            df["agree"] = [r["agree"] for r in merged]
            df["classic"] = [r["method"] for r in merged]
            df["day"] = day.isoformat()
            pick_frames.append(df)
        cache.put((day, sid), prep)
        del prep
    if not pick_frames:
        raise ValueError(f"bootstrap: no {'classic' if tdet is None else 'teacher'} picks in {len(sds)} station-day(s) under {cfg.archive.sds_root} (skipped: {skipped[:3]})")
    picks = pd.concat(pick_frames, ignore_index=True).sort_values(["time", "station_id"], kind="stable").reset_index(drop=True)
    picks["pick_index"] = np.arange(len(picks), dtype=np.int64)
    log(f"bootstrap: {len(picks)} {'classic' if tdet is None else teacher_label} picks ({int((picks.phase == 'P').sum())} P) on {len(sds) - len(skipped)} station-days")

    # --- 2. association
    a = cfg.associate
    # labels want every plausible event of the classic picks (few S): the seed's loose acceptance
    assoc = Associator(stations, model, **{**PALM_SEED, "min_stations": a.min_stations}, grid_spacing_km=a.grid_spacing_km,
                       fine_spacing_km=a.fine_spacing_km, max_depth_km=min(cfg.velocity.max_depth_km, 30.0),
                       unknown_stations="drop")
    events, asg = associate_partitioned(picks, assoc, partition_s=a.partition_s, overlap_s=a.overlap_s)
    if teacher is not None and len(events):
        # events stand on classic evidence: one the model's picks alone make is not a label source
        is_classic = (picks["classic"] != "model").to_numpy()
        n_cl = pd.Series(is_classic[asg["pick_index"].to_numpy()]).groupby(asg["event_id"].to_numpy()).sum()
        good = n_cl.index[n_cl >= min_classic_picks]
        log(f"bootstrap: {len(events) - len(good)} of {len(events)} events dropped (< {min_classic_picks} classic picks)")
        events = events[events["event_id"].isin(good)].reset_index(drop=True)
        asg = asg[asg["event_id"].isin(good)].reset_index(drop=True)
    log(f"bootstrap: {len(events)} associated events, {len(asg)} associated picks")
    write_table(picks, out / "picks.parquet")
    write_table(events, out / "events.parquet")
    write_table(asg, out / "assignments.parquet")

    manual = None
    if manual_picks is not None:
        manual = read_manual_picks(manual_picks, stations)
        log(f"bootstrap: {len(manual)} manual picks from {manual_picks}")

    # exclusion times per station: every raw pick, every manual pick, predicted arrivals
    pred = _predicted_arrivals(events, stations, model, min(cfg.velocity.max_depth_km, 30.0))
    ev_time = dict(zip(events["event_id"].to_numpy(), events["time"].astype("int64").to_numpy())) if len(events) else {}
    ev_loc = events.set_index("event_id")[["latitude", "longitude"]] if len(events) else None
    st_loc = stations.set_index("station_id")[["latitude", "longitude"]]
    asg = asg.assign(t_ns=asg["time"].astype("int64").to_numpy()) if len(asg) else asg.assign(t_ns=pd.Series([], dtype=np.int64))
    picks_t = picks["time"].astype("int64").to_numpy()
    manual_t = manual.assign(t_ns=manual["time"].astype("int64").to_numpy()) if manual is not None else None

    # --- 3. windows, one station-day at a time
    pick_method, pick_prob = picks["classic"].to_numpy(), picks["probability"].to_numpy()
    rows: list[dict] = []
    n_masked = n_weak = 0
    n_guided = {"P": 0, "S": 0}
    n_blocks, excluded = 0, {"snr_low": 0, "snr_high": 0, "edge_or_gap": 0, "incomplete_labels": 0, "noise_not_found": 0}
    skipped_units = {s["unit"] for s in skipped}
    for day, sid in sds:
        if f"{day}/{sid}" in skipped_units:
            continue
        prep = cache.pop((day, sid))
        if prep is None:
            try:
                prep = _read_prep(cfg, sid, day)
            except (ArchiveError, ValueError) as exc:
                skipped.append({"unit": f"{day}/{sid}", "reason": str(exc)[:300]})
                continue
        n = prep.data.shape[1]
        t0 = prep.t0_ns
        to_idx = lambda t_ns: np.round((np.asarray(t_ns, np.int64) - t0) / (1e9 / FS)).astype(np.int64)  # noqa: E731
        cv = np.concatenate([[0], np.cumsum(~prep.valid)])
        chunks: list[np.ndarray] = []
        g = asg[asg["station_id"] == sid] if len(asg) else asg
        if stalta_only_p == "ignore" and len(g):
            # a P only the STA/LTA found (the kurtosis picker did not confirm it) is emergent and
            # loosely timed: association evidence, not a label (it is left unlabelled)
            g = g[~((g["phase"] == "P").to_numpy() & (pick_method[g["pick_index"].to_numpy()] == "stalta"))]
        if teacher is not None and len(g):
            # a model pick is a label only where it fits its event closely; elsewhere it is
            # left unlabelled (the loss ignores it, see unlabelled())
            pi_ = g["pick_index"].to_numpy()
            fits = ((np.abs(g["residual_s"].to_numpy()) <= model_max_residual_s) & g["phase"].isin(model_label_phases).to_numpy()
                    & (pick_prob[pi_] >= model_min_probability))
            g = g[(pick_method[pi_] != "model") | fits]
        gp, gs = g[g["phase"] == "P"], g[g["phase"] == "S"]
        p_lab, s_lab = np.sort(to_idx(gp["t_ns"].to_numpy())), np.sort(to_idx(gs["t_ns"].to_numpy()))

        def positive(anchor: int):
            """(start, waveform, P SNR) of a positive sample with its P at ``anchor``; None,
            counted in ``excluded``, when it crosses the data's edge or a gap or its SNR is out
            of [snr_min, snr_max]."""
            s0 = anchor - P_AT_N
            if s0 < 0 or s0 + STORE_N > n or cv[s0 + STORE_N] - cv[s0] > 0:
                excluded["edge_or_gap"] += 1
                return None
            w = prep.data[:, s0 : s0 + STORE_N]
            snr_p = sample_snr(w, P_AT_N, "P")
            if not np.isfinite(snr_p) or snr_p < snr_min:
                excluded["snr_low"] += 1
                return None
            if snr_p > snr_max:
                excluded["snr_high"] += 1
                return None
            return s0, w, snr_p

        pred_here = np.stack([to_idx(pred[sid][:, 0]), to_idx(pred[sid][:, 1])], axis=1) if sid in pred and len(pred[sid]) else np.zeros((0, 2), np.int64)
        # only the events whose predicted arrivals can touch this station-day's windows (a long
        # archive holds many more: keeps the per-station-day work bounded)
        near = (pred_here[:, 1] >= -STORE_N) & (pred_here[:, 0] < n + STORE_N) if len(pred_here) else np.zeros(0, bool)
        pred_here, ev_ids_here = pred_here[near], events["event_id"].to_numpy()[near] if len(events) else np.zeros(0, np.int64)
        if guided_contrast is not None and len(pred_here):
            # association-guided picks: an arrival predicted for an associated event with no
            # classic pick near it is searched for on the waveform (AIC onset within
            # guided_window_s of the prediction, Z for P, N+E for S) and labelled when sharp
            p_lab, s_lab, got_p, got_s = _guided_labels(prep, pred_here, p_lab, s_lab, label_tol_s, guided_window_s, guided_contrast, guided_phases)
            n_guided["P"] += got_p
            n_guided["S"] += got_s

        raw_here = [np.sort(to_idx(np.concatenate([t[ph_ == phase] for s_, t, ph_ in raw_times if s_ == sid] or [np.zeros(0, np.int64)])))
                    for phase in ("P", "S")] if mask_raw_triggers else None

        def inside(lab: np.ndarray, s0: int) -> np.ndarray:
            """The sample indices of ``lab`` inside the stored window starting at ``s0``, relative to it."""
            return lab[(lab >= s0) & (lab < s0 + STORE_N)] - s0

        def unlabelled(s0: int) -> tuple[list, list]:
            """Arrivals predicted (from the associated hypocentres; with ``mask_raw_triggers``
            also raw classic triggers) inside the window at ``s0`` with no label within
            ``label_tol_s``: P and S sample indices in the window."""
            res = []
            for c, lab in ((0, p_lab), (1, s_lab)):
                pr = pred_here[:, c] if len(pred_here) else np.zeros(0, np.int64)
                if mask_raw_triggers:
                    pr = np.concatenate([pr, raw_here[c]])
                pr = pr[(pr >= s0) & (pr < s0 + STORE_N)]
                if len(pr) and len(lab):
                    pr = pr[np.min(np.abs(pr[:, None] - lab[None, :]), axis=1) > label_tol_s * FS]
                res.append((pr - s0).tolist())
            return res[0], res[1]

        n_ev = 0
        for r in gp.itertuples():
            pi = int(to_idx(r.t_ns))
            got = positive(pi)
            if got is None:
                continue
            s0, w, snr_p = got
            p_ign, s_ign = unlabelled(s0)
            if (len(p_ign) or len(s_ign)) and unlabelled_arrivals == "drop":
                excluded["incomplete_labels"] += 1
                continue
            n_masked += bool(len(p_ign) or len(s_ign))
            sev = gs[gs["event_id"] == r.event_id]
            s_rel = int(to_idx(sev["t_ns"].iloc[0])) - s0 if len(sev) else -1
            snr_s = sample_snr(w, s_rel, "S") if 0 <= s_rel < STORE_N else float("nan")
            o = ev_time.get(r.event_id)
            la, lo = ev_loc.loc[r.event_id]
            sla, slo = st_loc.loc[sid]
            pin, sin_ = inside(p_lab, s0), inside(s_lab, s0)
            chunks.append(_f16(w))
            rows.append(dict(kind="event", source="bootstrap", station_id=sid, event_id=int(r.event_id), start_ns=int(prep.time_ns(s0)),
                             p_idx=pin.tolist(), s_idx=sin_.tolist(), p_ign=p_ign, s_ign=s_ign, snr_p=snr_p, snr_s=snr_s,
                             epi_distance_km=float(epicentral_km(la, lo, sla, slo)), azimuth_deg=float(azimuth_deg(la, lo, sla, slo)),
                             p_travel_s=(r.t_ns - o) / 1e9, s_travel_s=((sev["t_ns"].iloc[0] - o) / 1e9) if len(sev) else float("nan"),
                             day=day.isoformat()))
            n_ev += 1
        if weak_snr_min is not None and len(pred_here):
            # events associated elsewhere that no classic picker found here: a positive for the
            # detector where the predicted P or S shows an onset; the picker's loss ignores the
            # steps around arrivals no (guided) label covers
            have = set(gp["event_id"].to_numpy().tolist())
            for j, eid in enumerate(ev_ids_here):
                if int(eid) in have:
                    continue
                pi = int(pred_here[j, 0])
                s0 = pi - P_AT_N
                if s0 < 0 or s0 + STORE_N > n or cv[s0 + STORE_N] - cv[s0] > 0:
                    continue
                w = prep.data[:, s0 : s0 + STORE_N]
                ks = range(-int(weak_search_s * FS), int(weak_search_s * FS) + 1, 25)
                snr_p = max(sample_snr(w, P_AT_N + k, "P") for k in ks)
                s_rel = int(pred_here[j, 1]) - s0
                snr_s = max(sample_snr(w, s_rel + k, "S") for k in ks) if 0 <= s_rel < STORE_N - int(SNR_POST_S * FS) else float("nan")
                best = np.nanmax([snr_p, snr_s, -1.0])  # an S seen without its P counts too
                if best < weak_snr_min or best > snr_max:
                    continue
                p_ign, s_ign = unlabelled(s0)
                la, lo = ev_loc.loc[eid]
                sla, slo = st_loc.loc[sid]
                chunks.append(_f16(w))
                rows.append(dict(kind="event", source="weak", station_id=sid, event_id=int(eid), start_ns=int(prep.time_ns(s0)),
                                 p_idx=inside(p_lab, s0).tolist(), s_idx=inside(s_lab, s0).tolist(),
                                 p_ign=p_ign, s_ign=s_ign, snr_p=snr_p, snr_s=snr_s, epi_distance_km=float(epicentral_km(la, lo, sla, slo)),
                                 azimuth_deg=float(azimuth_deg(la, lo, sla, slo)), p_travel_s=(pred_here[j, 0] - to_idx(ev_time[eid])) / FS, s_travel_s=np.nan,
                                 day=day.isoformat()))
                n_ev += 1
                n_weak += 1
        if manual_t is not None:
            mg = manual_t[manual_t["station_id"] == sid]
            mp, ms = np.sort(to_idx(mg.loc[mg.phase == "P", "t_ns"])), np.sort(to_idx(mg.loc[mg.phase == "S", "t_ns"]))
            for r in mg[mg.phase == "P"].itertuples():
                pi = int(to_idx(r.t_ns))
                if not (0 <= pi < n):
                    continue
                got = positive(pi)
                if got is None:
                    continue
                s0, w, snr_p = got
                sin_ = inside(ms, s0)
                chunks.append(_f16(w))
                rows.append(dict(kind="event", source="manual", station_id=sid, event_id=int(r.event_id), start_ns=int(prep.time_ns(s0)),
                                 p_idx=inside(mp, s0).tolist(), s_idx=sin_.tolist(), p_ign=[], s_ign=[], snr_p=snr_p,
                                 snr_s=sample_snr(w, int(sin_[0]), "S") if len(sin_) else float("nan"),
                                 epi_distance_km=np.nan, azimuth_deg=np.nan, p_travel_s=np.nan, s_travel_s=np.nan, day=day.isoformat()))
                n_ev += 1
        # negatives: no raw pick, manual pick or predicted arrival (+ coda) near the window
        ex_start, ex_end = [], []
        tt = to_idx(np.concatenate([picks_t[picks["station_id"].to_numpy() == sid]] + [t for s_, t, _ in raw_times if s_ == sid]))
        ex_start.append(tt)
        ex_end.append(tt)
        if manual_t is not None:
            tm = to_idx(manual_t.loc[manual_t["station_id"] == sid, "t_ns"])
            ex_start.append(tm)
            ex_end.append(tm)
        if sid in pred and len(pred[sid]):
            pp = to_idx(pred[sid][:, 0])
            ss = to_idx(pred[sid][:, 1])
            ex_start.append(pp - int(2 * FS))
            ex_end.append(ss + (coda_factor * (ss - pp)).astype(np.int64) + int(10 * FS))
        ex_s, ex_e = np.concatenate(ex_start), np.concatenate(ex_end)
        if noise_max_stalta is not None:
            # weak events below the pickers' trigger: no STA/LTA above noise_max_stalta either
            from obspy.signal.trigger import recursive_sta_lta

            cf = recursive_sta_lta(prep.data[0].astype(np.float64), max(int(det.sta_s * FS), 1), max(int(det.lta_s * FS), 2))
            cf[: int(det.lta_s * FS)] = 0.0
            cf[~prep.valid] = 0.0
            cf_blk = np.maximum.reduceat(cf, np.arange(0, n, 100))  # 1 s maxima
        else:
            cf_blk = None
        before = int(exclusion_before_s * FS)
        want, tries = int(round(noise_per_event * max(n_ev, 1))), 0
        while want > 0 and tries < 50 * want + 100:
            tries += 1
            s0 = int(rng.integers(0, max(n - STORE_N, 1)))
            if s0 + STORE_N > n or cv[s0 + STORE_N] - cv[s0] > 0:
                continue
            if np.any((ex_e >= s0 - before) & (ex_s < s0 + STORE_N + int(2 * FS))):
                continue
            if cf_blk is not None and cf_blk[s0 // 100 : (s0 + STORE_N) // 100 + 1].max() > noise_max_stalta:
                continue
            w = prep.data[:, s0 : s0 + STORE_N]
            chunks.append(_f16(w))
            rows.append(dict(kind="noise", source="bootstrap", station_id=sid, event_id=-1, start_ns=int(prep.time_ns(s0)), p_idx=[], s_idx=[], p_ign=[], s_ign=[],
                             snr_p=sample_snr(w, STORE_N // 2, "P"), snr_s=np.nan, epi_distance_km=np.nan, azimuth_deg=np.nan,
                             p_travel_s=np.nan, s_travel_s=np.nan, day=day.isoformat()))
            want -= 1
        excluded["noise_not_found"] += want
        if chunks:
            np.save(blocks / f"{n_blocks:06d}.npy", np.stack(chunks))
            n_blocks += 1
        del prep, chunks

    if not rows:
        raise ValueError(f"bootstrap: no samples could be cut (events {len(events)}, station-days {len(sds)}, skipped {len(skipped)})")
    # --- 4. one waveforms.npy from the blocks (streamed)
    wf = np.lib.format.open_memmap(out / "waveforms.npy", mode="w+", dtype=np.float16, shape=(len(rows), 3, STORE_N))
    k = 0
    for f in sorted(blocks.glob("*.npy")):
        b = np.load(f)
        wf[k : k + len(b)] = b
        k += len(b)
    wf.flush()
    del wf
    if k != len(rows):
        raise RuntimeError(f"bootstrap: {k} waveforms written for {len(rows)} index rows in {out}")
    shutil.rmtree(blocks)
    index = pd.DataFrame(rows)
    index.insert(0, "sample", np.arange(len(index), dtype=np.int64))
    index["source_dir"] = str(out)
    write_table(index, out / "index.parquet")
    params = dict(snr_min=snr_min, snr_max=snr_max, noise_per_event=noise_per_event, merge_s=merge_s, kurtosis_on=kurtosis_on,
                  require_agree=require_agree, zh_threshold=zh_threshold, unlabelled_arrivals=unlabelled_arrivals, weak_snr_min=weak_snr_min, weak_search_s=weak_search_s, guided_contrast=guided_contrast, guided_window_s=guided_window_s, guided_phases=list(guided_phases), mask_raw_triggers=mask_raw_triggers, stalta_only_p=stalta_only_p, teacher_model=teacher_model, teacher="classic" if tdet is None else f"{tdet.method}:{tdet.model}", min_classic_picks=min_classic_picks, model_max_residual_s=model_max_residual_s, model_label_phases=list(model_label_phases), model_min_probability=model_min_probability, label_tol_s=label_tol_s, noise_max_stalta=noise_max_stalta, exclusion_before_s=exclusion_before_s, coda_factor=coda_factor, seed=seed,
                  sta_s=det.sta_s, lta_s=det.lta_s, trigger_on=det.trigger_on, trigger_off=det.trigger_off,
                  max_residual_s=a.max_residual_s, min_stations=a.min_stations, velocity_model=str(cfg.velocity.model),
                  manual_picks=str(manual_picks) if manual_picks is not None else None)
    write_json({"kind": "bootstrap", "store_n": STORE_N, "p_at_n": P_AT_N, "fs_hz": FS, "params": params}, out / "card.json")
    ev_rows = index[index.kind == "event"]
    summary = {
        "out_dir": str(out),
        "n_samples": len(index),
        "n_event": int((index.kind == "event").sum()),
        "n_noise": int((index.kind == "noise").sum()),
        "n_manual": int((index.source == "manual").sum()),
        "n_weak": n_weak,
        "n_masked": n_masked,
        "n_guided": n_guided,
        "n_p_labels": int(ev_rows.p_idx.map(len).sum()),
        "n_s_labels": int(ev_rows.s_idx.map(len).sum()),
        "n_events_associated": int(len(events)),
        "n_classic_picks": int(len(picks)),
        "n_station_days": len(sds),
        "skipped": skipped,
        "excluded": excluded,
        "snr_p_median": float(np.nanmedian(ev_rows.snr_p)) if len(ev_rows) else float("nan"),
        "seconds": round(time.time() - t_start, 1),
        "params": params,
    }
    if summary_png:
        from .figures import plot_dataset_summary

        summary["summary_png"] = str(plot_dataset_summary(index, out / "summary.png"))
    write_json(summary, out / "summary.json")
    log(f"bootstrap: {summary['n_event']} event + {summary['n_noise']} noise samples -> {out} ({summary['seconds']} s)")
    return summary


# ----------------------------------------------------------------------------- reading
def iter_batches(sample_dirs, batch_size: int = 512, kind: str | None = None, shuffle: bool = False, seed: int = 0):
    """Yield ``(index_rows DataFrame, x float32 (b, 3, 4500))`` batches from one or more sample
    sets without loading the waveforms (memmap reads of ``batch_size`` rows at a time)."""
    ds = SampleSet(sample_dirs)
    rows = np.arange(len(ds))
    if kind is not None:
        rows = rows[(ds.index["kind"] == kind).to_numpy()]
    if shuffle:
        rows = np.random.default_rng(seed).permutation(rows)
    for i in range(0, len(rows), batch_size):
        r = rows[i : i + batch_size]
        yield ds.index.iloc[r], ds.load(r)


# ----------------------------------------------------------------------------- training
def _metrics_rows(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.exists() and path.stat().st_size else pd.DataFrame()


def train_from_sample_set(
    sample_dir,
    out_weights_dir,
    epochs: int | None = None,
    device: str = "auto",
    resume: bool = True,
    epochs_detector: int | None = None,
    epochs_picker: int | None = None,
    init_model: str | None = "builtin:default",
    name: str = "cerp-region",
    version: str | None = None,
    lr: float = 1e-3,
    batch_size: int = 512,
    seed: int = 0,
    max_minutes: float | None = None,
    teacher_mask: float | None = 0.3,
    log=print,
) -> Path:
    """Train (or fine-tune) the CERP models on bootstrap sample set(s); returns ``metrics.csv``.

    Calls :func:`quakescale.train.trainer.train` (Adam ``lr``, ``batch_size``, 7:2:1, the
    shift + white-noise augmentation).  ``epochs`` sets both ``epochs_detector`` and
    ``epochs_picker`` unless given apart.  ``init_model`` (``builtin:NAME`` / a weights dir /
    None) is the starting point: the seed retrains the shipped model on the region's samples;
    None trains from scratch.  ``resume``: a finished run in ``out_weights_dir`` (card + test
    metrics) is returned as is; an interrupted one continues from ``checkpoints/*_last.pt``
    for the epochs left, appending to ``metrics.csv``.  Also writes ``training_curves.png``.
    The weights directory is loadable with ``detect.model: OUT``; every pick made with it
    carries ``NAME@VERSION`` in its ``model`` column (VERSION defaults to a date stamp plus the
    sample set's short hash).  ``teacher_mask``: when fine-tuning, steps where the starting model
    sees a P with at least this probability and the (incomplete) bootstrap labels have none are
    left out of the picker's loss (:func:`quakescale.train.trainer.train`); None: off."""
    import hashlib

    import torch

    from ..detect.models import load_model, new_model
    from .figures import plot_training_curves
    from .trainer import train

    out = Path(out_weights_dir)
    dirs = [Path(d) for d in ([sample_dir] if isinstance(sample_dir, (str, Path)) else sample_dir)]
    ep_d = epochs_detector if epochs_detector is not None else (epochs if epochs is not None else 10)
    ep_p = epochs_picker if epochs_picker is not None else (epochs if epochs is not None else 20)
    metrics = out / "metrics.csv"
    if resume and (out / "card.json").exists() and (out / "test_metrics.json").exists() and metrics.exists():
        log(f"train: {out} is complete (card.json + test_metrics.json); nothing to do (resume)")
        plot_training_curves(metrics, out / "training_curves.png")
        return metrics
    if version is None:
        h = hashlib.sha256()
        for d in dirs:
            h.update((d / "index.parquet").read_bytes())
        version = time.strftime("%Y.%m.%d", time.gmtime()) + "+" + h.hexdigest()[:8]
    model = load_model(init_model, device="cpu") if init_model else new_model(seed)
    done_d = done_p = 0
    prev = pd.DataFrame()
    ck = out / "checkpoints"
    if resume and ck.exists() and ((ck / "detector_last.pt").exists() or (ck / "picker_last.pt").exists()):
        for nm, net in (("detector", model.detector), ("picker", model.picker)):
            f = ck / f"{nm}_last.pt"
            if f.exists():
                blob = torch.load(f, map_location="cpu", weights_only=True)
                net.load_state_dict(blob[nm])
                if nm == "detector":
                    done_d = int(blob.get("epoch", 0))
                else:
                    done_p = int(blob.get("epoch", 0))
        prev = _metrics_rows(metrics)
        log(f"train: resuming {out} after detector epoch {done_d}, picker epoch {done_p}")
    init_label = model.label if init_model else "scratch"
    train(dirs, out, epochs_detector=0 if done_p else max(ep_d - done_d, 0), epochs_picker=max(ep_p - done_p, 0), lr=lr, batch_size=batch_size, seed=seed,
          device=device, name=name, version=version, max_minutes=max_minutes, model=model, teacher_mask=teacher_mask if init_model else None,
          recipe={"init_model": init_label, "bootstrap": True, "teacher_mask": teacher_mask if init_model else None, "resumed_after": {"detector": done_d, "picker": done_p},
                  "epochs_detector": ep_d, "epochs_picker": ep_p}, log=log)
    if len(prev):
        new = _metrics_rows(metrics)
        if len(new):
            off = new["model"].map({"detector": done_d, "picker": done_p}).fillna(0).astype(int)
            new["epoch"] = new["epoch"] + off
        prev = prev[((prev["model"] == "detector") & (prev["epoch"] <= done_d)) | ((prev["model"] == "picker") & (prev["epoch"] <= done_p))]
        pd.concat([prev, new], ignore_index=True).to_csv(metrics, index=False)
    plot_training_curves(metrics, out / "training_curves.png")
    return metrics
