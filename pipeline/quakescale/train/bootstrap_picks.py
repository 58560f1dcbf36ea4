"""Bootstrap steps 1-2: the teacher's picks of every station-day and their association.

The classic teacher is the seed's: recursive STA/LTA and kurtosis
(:func:`quakescale.detect.classic.classic_picks`) on the preprocessed data, merged per phase
(:func:`merge_classic`), kurtosis-only P re-timed (:func:`refine_kurtosis_p`), polarisation-checked
(:func:`phase_check`); with self-training a starting model's picks join them
(:func:`add_model_picks`).  Any other teacher is a picker of the station-day runner
(:func:`teacher_merged`).  Picks are dicts ``phase, idx`` (sample index at :data:`FS`),
``quality``, ``agree``, ``method``, ``pair`` (for an S: the list position of the P it follows).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import ValidationError

from ..archive import ArchiveError, read_station_day
from ..associate import PALM_SEED, Associator, associate_partitioned
from ..config import ConfigError
from ..detect.classic import aic_onset, classic_picks
from ..detect.runner import cerp_picks, get_model, pick_stream, picks_table, preprocess
from .bootstrap_params import FS, BootstrapParams

# The association of bootstrap picks: the seed's loose acceptance (PALM_SEED: every plausible event of
# the classic picks, which hold few S), no probability or RMS cut, picks of unknown stations dropped;
# the search grid follows the config's associate: section (Associator.from_config).
ASSOCIATION_OVERRIDES = {**PALM_SEED, "min_probability": 0.0, "max_rms_s": None, "unknown_stations": "drop"}
MAX_DEPTH_KM = 30.0  # bootstrap events and predicted arrivals: at most this deep (and velocity.max_depth_km)


# ----------------------------------------------------------------------------- merged pick lists
def pair_s_with_p(merged: list[dict], fs: float = FS) -> list[dict]:
    """Sort by time and pair each S with the latest P at least 0.3 s before it (``pair``: that P's
    position in the sorted list, -1 when none)."""
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
        b_idx = np.array([p[1] for p in b], np.float64)
        for p in a:
            j = -1
            if len(b_idx):
                d = np.abs(b_idx - p[1])
                d[used_b] = np.inf
                k = int(np.argmin(d))
                if d[k] <= tol:
                    j = k
            if j >= 0:
                used_b[j] = True
                merged.append(
                    dict(
                        phase=ph,
                        idx=float(p[1]),
                        quality=float(max(p[2], b[j][2])),
                        agree=True,
                        method="stalta+kurtosis",
                    )
                )
            else:
                merged.append(dict(phase=ph, idx=float(p[1]), quality=float(p[2]), agree=False, method="stalta"))
        for k, p in enumerate(b):
            if not used_b[k]:
                merged.append(dict(phase=ph, idx=float(p[1]), quality=float(p[2]), agree=False, method="kurtosis"))
    # a P trigger on an S wave: a P of one picker where the other paired an S (after its own
    # P) is an S arrival -- keep the S, drop the P
    s_idx = np.array([r["idx"] for r in merged if r["phase"] == "S"])
    if len(s_idx):
        merged = [r for r in merged if r["phase"] == "S" or np.abs(s_idx - r["idx"]).min() > tol]
    return pair_s_with_p(merged, fs)


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
    return pair_s_with_p(out, fs)


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
    return pair_s_with_p(keep)


def refine_kurtosis_p(
    merged: list[dict], data: np.ndarray, fs: float = FS, before_s: float = 0.5, after_s: float = 2.0
) -> list[dict]:
    """Re-time P picks only the kurtosis picker found (its onset runs early) by the AIC minimum
    of Z in ``before_s`` before to ``after_s`` after the pick, as the STA/LTA picker does."""
    n = data.shape[1]
    for r in merged:
        if r["phase"] == "P" and r["method"] == "kurtosis":
            a, b = max(int(r["idx"] - before_s * fs), 0), min(int(r["idx"] + after_s * fs), n)
            if b - a > 20:
                r["idx"] = float(a + aic_onset(data[0, a:b]))
    return pair_s_with_p(merged, fs)


# ----------------------------------------------------------------------------- teachers
def teacher_detect_section(det, teacher: str | None):
    """The :class:`~quakescale.config.DetectSection` of a bootstrap teacher: ``None`` for
    ``"classic"`` (the seed's STA/LTA + kurtosis, merged, see :func:`merge_classic`); otherwise a
    copy of ``det`` with the teacher's ``method`` / ``model``: ``cerp`` (the shipped weights),
    ``cerp:WEIGHTS`` (a weights directory or ``builtin:NAME``), ``stalta``, ``kurtosis``, or any
    other method the station-day runner knows, e.g. ``seisbench:NAME:WEIGHTS``.  Raises
    :class:`quakescale.config.ConfigError` naming ``train.teacher`` for a method it does not know."""
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
        raise ConfigError(
            f"train.teacher {spec!r}: not a picker the station-day runner can run ({why}); "
            "use classic, cerp[:WEIGHTS], stalta, kurtosis or another detect.method[:MODEL]"
        ) from None


def teacher_merged(stream, prep, tdet, model=None) -> list[dict]:
    """A teacher picker's picks of one station-day (:func:`quakescale.detect.runner.pick_stream`
    with ``tdet``) in the merged-pick form of :func:`merge_classic`, indexed on ``prep``'s samples
    (``method`` ``"teacher"``, ``quality`` = the picker's probability, each S paired with the P before it)."""
    df = pick_stream(stream, None, tdet, model)
    if not len(df):
        return []
    idx = (df["time"].astype("int64").to_numpy() - prep.t0_ns) / (1e9 / FS)
    n = prep.data.shape[1]
    keep = (idx >= 0) & (idx < n)
    prob = df["probability"].to_numpy(np.float64)
    rows = sorted(zip(idx[keep], df["phase"].to_numpy()[keep], prob[keep]), key=lambda r: r[0])
    merged = [dict(phase=str(ph), idx=float(i), quality=float(q), agree=True, method="teacher") for i, ph, q in rows]
    return pair_s_with_p(merged)


def teacher_label(cfg, params: BootstrapParams) -> str:
    """The ``model`` column of the bootstrap picks: the classic pickers with their thresholds, or
    ``teacher:METHOD:MODEL``."""
    det = cfg.detect
    tdet = teacher_detect_section(det, params.teacher)
    if tdet is None:
        return f"stalta+kurtosis@{det.sta_s:g}/{det.lta_s:g}/{det.trigger_on:g}/{params.kurtosis_on:g}"
    return f"teacher:{tdet.method}:{tdet.model}"


# ----------------------------------------------------------------------------- station-days
def read_prep(cfg, station_id: str, day: dt.date):
    """One station-day of the archive, read and preprocessed like the detect stage's input:
    ``(stream, prep)``."""
    stream = read_station_day(cfg.archive.sds_root, station_id, day, channels=list(cfg.archive.channels))
    return stream, preprocess(stream, cfg.detect)


class PrepCache:
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


@dataclass
class TeacherPicks:
    """Step 1's result.  ``picks``: the merged picks of every station-day (PICKS columns +
    ``agree``, ``classic`` (the picking method), ``day``, ``pick_index``), sorted by time;
    ``raw``: per station-day ``(station_id, times_ns, phases)`` of every raw pick (both classic
    pickers and the self-training model: they keep negatives away); ``skipped``: unreadable
    station-days with the reason; ``label``: the picks' ``model`` column."""

    picks: pd.DataFrame
    raw: list[tuple[str, np.ndarray, np.ndarray]]
    skipped: list[dict]
    label: str


def _classic_merged(prep, params: BootstrapParams, det, start_model) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """The classic teacher's merged picks of one station-day and its raw pick times / phases."""
    stalta = classic_picks(prep.data, prep.valid, "stalta", det, kurtosis_on=params.kurtosis_on)
    kurt = classic_picks(prep.data, prep.valid, "kurtosis", det, kurtosis_on=params.kurtosis_on)
    raw_t = prep.time_ns(np.array([p[1] for p in stalta + kurt], np.float64))
    raw_ph = np.array([p[0] for p in stalta + kurt], dtype=object)
    merged = merge_classic(stalta, kurt, params.merge_s)
    merged = refine_kurtosis_p(merged, prep.data)
    if params.zh_threshold is not None:
        merged = phase_check(merged, prep.data, params.zh_threshold)
    if params.require_agree:
        keep_p = {i for i, r in enumerate(merged) if r["phase"] == "P" and r["agree"]}
        merged = [
            r
            for i, r in enumerate(merged)
            if (r["phase"] == "P" and i in keep_p) or (r["phase"] == "S" and r["pair"] in keep_p)
        ]
    if start_model is not None:
        # self-training: the starting model's picks join the classic ones (association still
        # decides what becomes a label); they also keep negatives away
        model_picks, _ = cerp_picks(prep, start_model, det)
        merged = add_model_picks(merged, model_picks, params.merge_s)
        raw_t = np.concatenate([raw_t, prep.time_ns(np.array([q[1] for q in model_picks], np.float64))])
        raw_ph = np.concatenate([raw_ph, np.array([q[0] for q in model_picks], dtype=object)])
    return merged, raw_t, raw_ph


def pick_station_days(cfg, station_days, params: BootstrapParams, cache: PrepCache, log=print) -> TeacherPicks:
    """Step 1: the teacher's picks of every ``(day, station_id)`` of ``station_days``; each
    preprocessed station-day goes to ``cache`` for the cutting pass.  Unreadable station-days are
    skipped with their reason; none picked at all raises ``ValueError``."""
    det = cfg.detect
    tdet = teacher_detect_section(det, params.teacher)
    teacher_net = get_model(tdet.model, tdet.device) if tdet is not None and tdet.method == "cerp" else None
    start_model = get_model(params.teacher_model, det.device) if params.teacher_model else None
    label = teacher_label(cfg, params)
    frames, raw, skipped = [], [], []
    for day, sid in station_days:
        try:
            stream, prep = read_prep(cfg, sid, day)
        except (ArchiveError, ValueError) as exc:
            skipped.append({"unit": f"{day}/{sid}", "reason": str(exc)[:300]})
            continue
        if tdet is not None:  # another picker's picks are the evidence (association still decides the labels)
            merged = teacher_merged(stream, prep, tdet, teacher_net)
            del stream
            raw.append(
                (
                    sid,
                    prep.time_ns(np.array([r["idx"] for r in merged], np.float64)),
                    np.array([r["phase"] for r in merged], dtype=object),
                )
            )
        else:
            del stream  # the classic pickers work on the preprocessed data
            merged, raw_t, raw_ph = _classic_merged(prep, params, det, start_model)
            raw.append((sid, raw_t, raw_ph))
        df = picks_table(prep, [(r["phase"], r["idx"], r["quality"]) for r in merged], "bootstrap", label)
        if len(df):
            # picks_table sorts by time (stable); the merged list is sorted by sample already
            df["agree"] = [r["agree"] for r in merged]
            df["classic"] = [r["method"] for r in merged]
            df["day"] = day.isoformat()
            frames.append(df)
        cache.put((day, sid), prep)
        del prep
    what = "classic" if tdet is None else "teacher"
    if not frames:
        raise ValueError(
            f"bootstrap: no {what} picks in {len(station_days)} station-day(s) under "
            f"{cfg.archive.sds_root} (skipped: {skipped[:3]})"
        )
    picks = pd.concat(frames, ignore_index=True).sort_values(["time", "station_id"], kind="stable")
    picks = picks.reset_index(drop=True)
    picks["pick_index"] = np.arange(len(picks), dtype=np.int64)
    log(
        f"bootstrap: {len(picks)} {'classic' if tdet is None else label} picks ({int((picks.phase == 'P').sum())} P) "
        f"on {len(station_days) - len(skipped)} station-days"
    )
    return TeacherPicks(picks, raw, skipped, label)


# ----------------------------------------------------------------------------- association
def bootstrap_associator(cfg, stations: pd.DataFrame, model) -> Associator:
    """The associator of bootstrap picks: the config's ``associate:`` section
    (:meth:`~quakescale.associate.Associator.from_config`) with :data:`ASSOCIATION_OVERRIDES`,
    events at most :data:`MAX_DEPTH_KM` (and ``velocity.max_depth_km``) deep."""
    return Associator.from_config(
        cfg, stations, model, **ASSOCIATION_OVERRIDES, max_depth_km=min(cfg.velocity.max_depth_km, MAX_DEPTH_KM)
    )


def associate_picks(
    cfg, picks: pd.DataFrame, associator: Associator, params: BootstrapParams, log=print
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Step 2: events and assignments of the teacher's picks in the config's time partitions.
    With self-training an event needs ``params.min_classic_picks`` classic picks."""
    a = cfg.associate
    events, asg = associate_partitioned(picks, associator, partition_s=a.partition_s, overlap_s=a.overlap_s)
    if params.teacher_model and len(events):
        # events stand on classic evidence: one the model's picks alone make is not a label source
        is_classic = (picks["classic"] != "model").to_numpy()
        n_classic = pd.Series(is_classic[asg["pick_index"].to_numpy()]).groupby(asg["event_id"].to_numpy()).sum()
        good = n_classic.index[n_classic >= params.min_classic_picks]
        log(
            f"bootstrap: {len(events) - len(good)} of {len(events)} events dropped "
            f"(< {params.min_classic_picks} classic picks)"
        )
        events = events[events["event_id"].isin(good)].reset_index(drop=True)
        asg = asg[asg["event_id"].isin(good)].reset_index(drop=True)
    log(f"bootstrap: {len(events)} associated events, {len(asg)} associated picks")
    return events, asg
