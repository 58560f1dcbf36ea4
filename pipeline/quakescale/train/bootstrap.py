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
     also raw classic triggers no event claimed) go to ``p_ign`` / ``s_ign``: the picker's
     loss ignores the steps around them (``unlabelled_arrivals="drop"`` instead excludes such
     windows);
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
   **Manual picks** (optional; HypoDD ``.pha``, Hypoinverse ``.arc``/``.phs``/``.hyp``, CSV or
   any other pick file :func:`quakescale.formats.picks_io.read_picks` reads)
   give picker samples anchored on each manual P, labelled with the manual picks.
4. **SNR** per sample (P: Z peak in 2 s after / RMS 5 s before; S: the same on the horizontal
   envelope); samples outside ``[snr_min, snr_max]`` are excluded.

The sample set is a directory readable by :class:`quakescale.train.samples.SampleSet` (and so
by the trainer) and in batches by :func:`quakescale.train.samples.iter_batches` without loading
everything::

    waveforms.npy       (N, 3, 4500) float16 (memmap), Z/N/E, each sample scaled to peak 1
    index.parquet       one row per sample: sample, kind (event|noise), source (bootstrap|weak|manual),
                        station_id, event_id, start_ns, p_idx, s_idx, p_ign, s_ign, snr_p, snr_s,
                        epi_distance_km, azimuth_deg, p_travel_s, s_travel_s
    picks.parquet       the merged classic picks (PICKS columns + ``agree``, ``pair``)
    events.parquet      associated events; assignments.parquet  their picks
    summary.json        counts, exclusions, station-days skipped (with the reason)
    summary.png         Figure 2 of the seed: SNR, distance, azimuth, travel time vs distance
    card.json           parameters (:meth:`BootstrapParams.card`)

Waveforms are written one station-day block at a time (``blocks/``) and concatenated at the end,
so memory stays bounded by one station-day whatever the size of the set.

Every parameter named above is a field of :class:`~quakescale.train.bootstrap_params.BootstrapParams`
(built from the config by :meth:`BootstrapParams.from_config`).  This module is the driver; the
steps live in :mod:`~quakescale.train.bootstrap_picks` (1-2: teacher picks, association) and
:mod:`~quakescale.train.bootstrap_samples` (3-4: cutting, SNR, waveforms); the manual picks are
read by :func:`quakescale.formats.picks_io.read_picks`; training on the set is
:func:`quakescale.train.trainer.train_from_sample_set`.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..archive import ArchiveError, StationDay, load_inventory, stations_table
from ..formats.velmodels import resolve_model
from ..rundir import write_json, write_table
from .bootstrap_params import BootstrapParams
from .bootstrap_picks import (
    MAX_DEPTH_KM,
    PrepCache,
    associate_picks,
    bootstrap_associator,
    pick_station_days,
    read_prep,
    teacher_detect_section,
)
from .bootstrap_samples import SampleCutter, manual_picks_table, predicted_arrivals, write_waveforms
from .figures import plot_dataset_summary
from .samples import FS, P_AT_N, STORE_N

__all__ = ["BootstrapParams", "build_sample_set", "station_day_list"]


def station_day_list(cfg, station_days=None) -> list[tuple[dt.date, str]]:
    """Sorted unique ``(day, station_id)`` to bootstrap.  ``station_days``: None (every station of
    the inventory x every day of the config), or items ``"YYYY-MM-DD/NET.STA"``,
    ``(day, "NET.STA")`` or :class:`~quakescale.archive.StationDay`."""
    if station_days is None:
        sids = list(stations_table(load_inventory(cfg.archive.inventory), cfg.archive.stations or None).station_id)
        return [(d, s) for d in cfg.days() for s in sids]
    out = []
    for it in station_days:
        if isinstance(it, str):
            sd = StationDay.from_unit(it)
            out.append((sd.day, sd.station_id))
        elif hasattr(it, "station_id") and hasattr(it, "day"):
            out.append((it.day, it.station_id))
        else:
            d, s = it
            out.append((d if isinstance(d, dt.date) else dt.date.fromisoformat(str(d)[:10]), str(s)))
    return sorted(set(out))


def build_sample_set(
    cfg,
    out_dir,
    params: BootstrapParams | None = None,
    *,
    station_days=None,
    cache_mb: float = 1500.0,
    summary_png: bool = True,
    log=print,
    **overrides,
) -> dict:
    """Build a bootstrap sample set from the station-days of a run config (no truth used).

    ``cfg``: a :class:`quakescale.config.Config` (archive, velocity, detect = classic picker
    parameters and preprocessing, associate).  ``out_dir``: the sample-set directory (created;
    a previous set there is overwritten).  ``params``: the :class:`BootstrapParams` (None: its
    defaults -- the classic teacher, no self-training; ``quakescale bootstrap`` passes
    :meth:`BootstrapParams.from_config`); ``overrides``: field values of ``params`` that win
    (e.g. ``snr_min=3.0``, ``manual_picks=PATH``).  ``station_days``: see
    :func:`station_day_list`.  ``cache_mb``: preprocessed station-days kept in memory between
    the picking and the cutting pass (the rest are read twice).  ``summary_png``: draw
    ``summary.png``.  ``log``: progress lines.  Returns the summary dict (also ``OUT/summary.json``)."""
    params = (params or BootstrapParams()).replace(**overrides)
    if params.seed is None:
        params = params.replace(seed=cfg.run.seed)
    t_start = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    blocks = out / "blocks"
    if blocks.exists():
        shutil.rmtree(blocks)
    blocks.mkdir()
    sds = station_day_list(cfg, station_days)
    stations = stations_table(load_inventory(cfg.archive.inventory), cfg.archive.stations or None)
    model = resolve_model(cfg.velocity.model)
    cache = PrepCache(cache_mb)

    # --- 1. the teacher's picks (classic: STA/LTA + kurtosis, merged) per station-day
    teacher = pick_station_days(cfg, sds, params, cache, log)
    picks, skipped = teacher.picks, teacher.skipped

    # --- 2. association
    associator = bootstrap_associator(cfg, stations, model)
    events, asg = associate_picks(cfg, picks, associator, params, log)
    write_table(picks, out / "picks.parquet")
    write_table(events, out / "events.parquet")
    write_table(asg, out / "assignments.parquet")
    manual = None
    if params.manual_picks is not None:
        manual = manual_picks_table(params.manual_picks, stations)
        log(f"bootstrap: {len(manual)} manual picks from {params.manual_picks}")

    # --- 3. windows, one station-day at a time
    predicted = predicted_arrivals(events, stations, model, min(cfg.velocity.max_depth_km, MAX_DEPTH_KM))
    cutter = SampleCutter(cfg, params, picks, teacher.raw, events, asg, stations, predicted, manual)
    rows: list[dict] = []
    block_files: list[Path] = []
    skipped_units = {s["unit"] for s in skipped}
    for day, sid in sds:
        if f"{day}/{sid}" in skipped_units:
            continue
        prep = cache.pop((day, sid))
        if prep is None:
            try:
                _, prep = read_prep(cfg, sid, day)
            except (ArchiveError, ValueError) as exc:
                skipped.append({"unit": f"{day}/{sid}", "reason": str(exc)[:300]})
                continue
        day_rows, waves = cutter.cut(day, sid, prep)
        del prep
        rows.extend(day_rows)
        if waves:
            block_files.append(blocks / f"{len(block_files):06d}.npy")
            np.save(block_files[-1], np.stack(waves))
        del waves

    if not rows:
        raise ValueError(
            f"bootstrap: no samples could be cut (events {len(events)}, station-days {len(sds)}, "
            f"skipped {len(skipped)})"
        )
    # --- 4. one waveforms.npy from the blocks (streamed), the index, the card and the summary
    write_waveforms(out, block_files, len(rows))
    shutil.rmtree(blocks)
    index = pd.DataFrame(rows)
    index.insert(0, "sample", np.arange(len(index), dtype=np.int64))
    index["source_dir"] = str(out)
    write_table(index, out / "index.parquet")
    tdet = teacher_detect_section(cfg.detect, params.teacher)
    card_params = params.card(cfg, "classic" if tdet is None else f"{tdet.method}:{tdet.model}", associator)
    write_json(
        {"kind": "bootstrap", "store_n": STORE_N, "p_at_n": P_AT_N, "fs_hz": FS, "params": card_params},
        out / "card.json",
    )
    ev_rows = index[index.kind == "event"]
    summary = {
        "out_dir": str(out),
        "n_samples": len(index),
        "n_event": int((index.kind == "event").sum()),
        "n_noise": int((index.kind == "noise").sum()),
        "n_manual": int((index.source == "manual").sum()),
        "n_weak": cutter.n_weak,
        "n_masked": cutter.n_masked,
        "n_guided": cutter.n_guided,
        "n_p_labels": int(ev_rows.p_idx.map(len).sum()),
        "n_s_labels": int(ev_rows.s_idx.map(len).sum()),
        "n_events_associated": int(len(events)),
        "n_classic_picks": int(len(picks)),
        "n_station_days": len(sds),
        "skipped": skipped,
        "excluded": cutter.excluded,
        "snr_p_median": float(np.nanmedian(ev_rows.snr_p)) if len(ev_rows) else float("nan"),
        "seconds": round(time.time() - t_start, 1),
        "params": card_params,
    }
    if summary_png:
        summary["summary_png"] = str(plot_dataset_summary(index, out / "summary.png"))
    write_json(summary, out / "summary.json")
    log(f"bootstrap: {summary['n_event']} event + {summary['n_noise']} noise samples -> {out} ({summary['seconds']} s)")
    return summary
