"""The stage list and the one function that runs one unit of work of one stage.

Core invariant: ``run_task(run_dir, stage, units)`` runs the given units of a stage, reading its
inputs from the run directory (the resolved config is ``RUN/config.yaml``) and writing outputs
atomically plus one status part file.  A stage whose input is missing because an upstream stage
failed (or has not run) fails with :class:`~quakescale.errors.UpstreamMissing` naming that stage,
its unit and its reason.  Station-days whose data are bad (unreadable, incomplete) are
``skipped`` with the reason, not ``failed``: a failure is a defect of the run, bad data are not.
Backends (local Dask, SLURM via dask-jobqueue, sbatch arrays) only decide where it runs.  A unit
that already has an ``ok``/``no_data`` status row is skipped (resume); ``force`` redoes it.
"""

from __future__ import annotations

import socket
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Config, load_config, save_config
from ..errors import UpstreamMissing
from ..rundir import RunDir, write_json

STAGES = ["plan", "detect", "associate", "locate", "xcorr", "relocate", "catalog"]
FANNED = {"detect", "xcorr"}  # stages whose units are fanned out to workers


def open_run(cfg_or_path) -> tuple[Config, RunDir]:
    cfg = load_config(cfg_or_path) if not isinstance(cfg_or_path, Config) else cfg_or_path
    rd = RunDir(cfg.run.out_dir)
    rd.root.mkdir(parents=True, exist_ok=True)
    return cfg, rd


def prepare_run(cfg: Config) -> RunDir:
    """Create the run directory and write the resolved config workers will read."""
    rd = RunDir(cfg.run.out_dir)
    rd.root.mkdir(parents=True, exist_ok=True)
    rd.config_changed = False
    if rd.config.exists():
        old = load_config(rd.config, check_paths=False)
        if old.digest() != cfg.digest():
            rd.config_changed = True
            # a changed config is recorded; finished units stay valid only for unchanged stages
            write_json({"previous_config_digest": old.digest(), "new_config_digest": cfg.digest(), "time": time.time()}, rd.root / "logs" / f"config-change-{int(time.time())}.json")
    save_config(cfg, rd.config)
    return rd


def run_config(run_dir) -> Config:
    return load_config(RunDir(run_dir).config, check_paths=False)


# ----------------------------------------------------------------------------- plan
def station_ids(cfg: Config) -> list[str]:
    from ..archive import load_inventory, stations_table

    inv = load_inventory(cfg.archive.inventory)
    return list(stations_table(inv, cfg.archive.stations or None).station_id)


def stage_plan(cfg: Config, rd: RunDir) -> pd.DataFrame:
    from ..archive import plan_station_days

    plan = plan_station_days(cfg.archive.sds_root, station_ids(cfg), cfg.days(), cfg.archive.channels)
    done = rd.done_units("detect")
    plan["done"] = plan["unit"].isin(done)
    from ..rundir import write_table

    write_table(plan, rd.plan)
    return plan


def read_plan(rd: RunDir, columns: list[str] | None = None) -> pd.DataFrame:
    if not rd.plan.exists():
        raise FileNotFoundError(f"{rd.plan} not found: run `quakescale plan CONFIG` first")
    return pd.read_parquet(rd.plan, columns=columns)


# ----------------------------------------------------------------------------- units
def stage_units(cfg: Config, rd: RunDir, stage: str) -> list[str]:
    if stage == "detect":
        return list(read_plan(rd, ["unit"])["unit"])  # each array task reads this: one column
    if stage == "xcorr":
        return station_ids(cfg)
    return ["all"]


def chunks(units: list[str], size: int) -> list[list[str]]:
    return [units[i : i + size] for i in range(0, len(units), size)]


def chunk_size(cfg: Config, stage: str) -> int:
    """Units per task: ``compute.chunk_size`` station-days for detect, one station for xcorr."""
    return int(cfg.compute.chunk_size) if stage == "detect" else 1


def chunk_of(cfg: Config, rd: RunDir, stage: str, chunk: int) -> list[str]:
    """Chunk ``chunk`` of the stage's full sorted unit list (stable across resubmissions)."""
    units = sorted(stage_units(cfg, rd, stage))
    size = chunk_size(cfg, stage)
    n = -(-len(units) // size)
    if not 0 <= chunk < n:
        raise IndexError(f"{stage}: chunk {chunk} out of range: {len(units)} units in chunks of {size} give chunks 0..{n - 1}")
    return units[chunk * size : (chunk + 1) * size]


DONE = ("ok", "no_data", "skipped")


def settled_states(retry_failed: bool) -> tuple:
    """States that a rerun leaves alone: done ones, and failed ones unless ``retry_failed``
    (a failure records a deterministic reason, e.g. a corrupt file; retrying it blindly
    would redo work on every rerun)."""
    return DONE if retry_failed else DONE + ("failed",)


def pending_units(cfg: Config, rd: RunDir, stage: str, force: bool = False, retry_failed: bool = False) -> list[str]:
    units = stage_units(cfg, rd, stage)
    if force:
        return units
    done = rd.done_units(stage, settled_states(retry_failed))
    return [u for u in units if u not in done]


# ----------------------------------------------------------------------------- tasks
_TASKS = {}


def task(stage):
    def deco(fn):
        _TASKS[stage] = fn
        return fn

    return deco


def run_task(run_dir, stage: str, units: list[str], force: bool = False, retry_failed: bool = True) -> list[dict]:
    """Run ``units`` of ``stage`` in this process; returns the status rows written.

    Units already done are skipped unless ``force``; failed units are retried when
    ``retry_failed`` (the default for an explicit call: an array task or a named unit)."""
    rd = RunDir(run_dir)
    cfg = run_config(run_dir)
    if stage not in _TASKS:
        raise ValueError(f"unknown stage {stage!r}; stages: {STAGES}")
    done = set() if force else rd.done_units(stage, settled_states(retry_failed))
    rows = []
    for u in units:
        if u in done:
            continue
        t0 = time.time()
        try:
            state, n_out, reason = _TASKS[stage](cfg, rd, u)
        except Exception as exc:  # one bad unit is recorded and skipped; the run goes on
            state, n_out = "failed", 0
            reason = f"{type(exc).__name__}: {exc}"
            (rd.sub("logs") / f"{stage}-failures.log").open("a").write(f"--- {u} on {socket.gethostname()}\n{traceback.format_exc()}\n")
        rows.append(dict(unit=u, state=state, n_out=int(n_out), reason=reason[:2000], seconds=round(time.time() - t0, 3)))
    if rows:
        rd.write_status(stage, rows)
    return rows


@task("plan")
def _plan_task(cfg, rd, unit):
    plan = stage_plan(cfg, rd)
    return "ok", len(plan), ""


# ----------------------------------------------------------------------------- shared inputs
_CACHE: dict = {}


def _cached(key, make):
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def stations_df(cfg: Config) -> pd.DataFrame:
    from ..archive import load_inventory, stations_table

    return _cached(("stations", str(cfg.archive.inventory), tuple(cfg.archive.stations)), lambda: stations_table(load_inventory(cfg.archive.inventory), cfg.archive.stations or None))


def velocity_model(cfg: Config):
    from ..velocity import resolve_model

    return _cached(("model", cfg.velocity.model), lambda: resolve_model(cfg.velocity.model))


def _events_path(rd: RunDir, name: str) -> Path:
    return rd.root / "events" / f"{name}.parquet"


#: which stage writes each input a later stage reads
PRODUCER = {"associated": "associate", "assignments": "associate", "located": "locate", "relocated": "relocate"}


def upstream_reason(rd: RunDir, stage: str) -> str:
    """What the status rows of ``stage`` say: its failed unit(s) and reason, or that it has not run."""
    st = rd.read_status(stage)
    if not len(st):
        return f"stage {stage!r} has not run"
    bad = st[st.state == "failed"]
    if len(bad):
        r = bad.iloc[-1]
        return f"stage {stage!r} failed (unit {r.unit}: {' '.join(str(r.reason).split())[:300]})"
    r = st.iloc[-1]
    return f"stage {stage!r} is {r.state} (unit {r.unit}) but left no output"


def need(rd: RunDir, name: str, stage: str) -> Path:
    """The path of input ``name`` (events/NAME.parquet); :class:`UpstreamMissing` naming the
    upstream stage and its reason when it is absent."""
    path = _events_path(rd, name)
    if not path.exists():
        up = PRODUCER.get(name, "?")
        raise UpstreamMissing(
            f"{stage}: input {path.relative_to(rd.root)} is missing because {upstream_reason(rd, up)}"
        )
    return path


# ----------------------------------------------------------------------------- detect
@task("detect")
def _detect_task(cfg, rd, unit):
    from ..archive import ArchiveError, StationDay
    from ..detect.runner import get_model, run_station_day, _inventory
    from ..rundir import write_table
    from .. import schema as S

    sd = StationDay.from_unit(unit)
    model = None
    if cfg.detect.method == "cerp":
        model = _cached(("cerp", cfg.detect.model, cfg.detect.device), lambda: get_model(cfg.detect.model, cfg.detect.device))
    inv = _cached(("inv", str(cfg.archive.inventory)), lambda: _inventory(str(cfg.archive.inventory)))
    try:
        df = run_station_day(cfg, sd.station_id, sd.day, model=model, inventory=inv)
    except ArchiveError as exc:  # bad or missing data: recorded with the reason, not a failure
        msg = str(exc)
        return ("no_data" if ": no " in msg else "skipped"), 0, msg
    write_table(df, rd.picks_file(sd.day.isoformat(), sd.station_id), S.PICKS, where=unit)
    n_p = int((df["phase"] == "P").sum()) if len(df) else 0
    return "ok", len(df), f"P={n_p} S={len(df) - n_p}" + amplitude_summary(df)


def amplitude_summary(df: pd.DataFrame) -> str:
    """'; amp: sensitivity 12, none 3 (reason)' for a station-day's S picks ('' when all from
    the full response)."""
    if not len(df) or "amp_source" not in df:
        return ""
    src = df["amp_source"].dropna()
    counts = src.value_counts()
    if not len(counts) or set(counts.index) == {"response"}:
        return ""
    out = "; amp: " + ", ".join(f"{k} {int(v)}" for k, v in counts.items())
    if "amp_clipped" in df and df["amp_clipped"].fillna(False).any():
        out += f", clipped {int(df['amp_clipped'].fillna(False).sum())}"
    none = df[df["amp_source"] == "none"]["amp_note"].dropna()
    if len(none):
        out += f" ({none.iloc[0][:200]})"
    return out


def compact_picks(rd: RunDir) -> int:
    """One file per day (``picks/day=D/all.parquet``) instead of one per station-day, so a
    large run leaves no 10^6 small files; station files written later override the compacted
    rows of their station."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from ..rundir import write_table

    n = 0
    for ddir in sorted((rd.root / "picks").glob("day=*")):
        files = sorted(f for f in ddir.glob("*.parquet") if f.name != "all.parquet")
        if not files:
            continue
        new = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
        stations_new = set(f.stem for f in files)
        allf = ddir / "all.parquet"
        if allf.exists():
            old = pq.read_table(allf)
            old = old.filter(pa.compute.invert(pa.compute.is_in(old["station_id"], pa.array(sorted(stations_new)))))
            new = pa.concat_tables([old, new], promote_options="default")
        write_table(new, allf)
        for f in files:
            f.unlink()
        n += len(files)
    return n


# ----------------------------------------------------------------------------- associate
@task("associate")
def _associate_task(cfg, rd, unit):
    from ..associate import Associator, associate_partitioned
    from ..rundir import write_table
    from .summary import gather_picks
    from .. import schema as S

    compact_picks(rd)
    picks = gather_picks(rd)
    if picks is None or not len(picks):  # empty tables: later stages run on nothing, not on missing files
        write_table(S.EVENTS.empty_table(), _events_path(rd, "associated"), S.EVENTS, where="associated events")
        write_table(S.ASSIGNMENTS.empty_table(), _events_path(rd, "assignments"), S.ASSIGNMENTS, where="assignments")
        return "ok", 0, "no picks"
    picks = picks.sort_values(["time", "station_id"], kind="stable").reset_index(drop=True)
    a = cfg.associate
    assoc = Associator(
        stations_df(cfg), velocity_model(cfg), max_residual_s=a.max_residual_s, min_stations=a.min_stations, min_p=a.min_p, min_s=a.min_s,
        min_picks=a.min_picks, max_rms_s=a.max_rms_s, grid_spacing_km=a.grid_spacing_km, fine_spacing_km=a.fine_spacing_km,
        detect_spacing_km=a.detect_spacing_km, max_depth_km=min(a.max_depth_km, cfg.velocity.max_depth_km), margin_km=a.margin_km,
        max_passes=a.max_passes,
    )
    events, asg = associate_partitioned(picks, assoc, partition_s=a.partition_s, overlap_s=a.overlap_s)
    events = events.assign(stage="associate")
    for col, default in (("magnitude", np.nan), ("mag_type", ""), ("rms_s", np.nan)):
        if col not in events:
            events[col] = default
    write_table(events, _events_path(rd, "associated"), S.EVENTS, where="associated events")
    write_table(asg, _events_path(rd, "assignments"), S.ASSIGNMENTS, where="assignments")
    return "ok", len(events), f"{len(events)} events from {len(picks)} picks"


def assigned_picks(rd: RunDir) -> pd.DataFrame:
    """Picks that belong to events: the assignment rows joined with the pick attributes
    (amplitude, probability, channel) of the gathered picks."""
    from .summary import gather_picks

    asg = pd.read_parquet(need(rd, "assignments", "picks of events"))
    picks = gather_picks(rd)
    if picks is None or not len(asg):
        return asg
    key = ["station_id", "phase", "time"]
    cols = ("amp_wa_mm", "amp_source", "amp_clipped", "probability", "snr", "channel", "network", "station", "location")
    extra = [c for c in cols + ("method", "model") if c in picks]
    p = picks[key + extra].drop_duplicates(key)
    return asg.merge(p, on=key, how="left")


# ----------------------------------------------------------------------------- locate
@task("locate")
def _locate_task(cfg, rd, unit):
    from ..locate.magnitude import event_magnitudes
    from ..rundir import write_table
    from .. import schema as S

    ev = pd.read_parquet(need(rd, "associated", "locate"))
    if not len(ev):
        write_table(ev, _events_path(rd, "located"), S.EVENTS)
        return "ok", 0, "no events"
    picks = assigned_picks(rd)
    sta = stations_df(cfg)
    from ..locate.hinv_project import locate_with_backend
    from ..locate.locator import resolve_distance_taper

    params = resolve_distance_taper(cfg.locate, sta)
    located, residuals = locate_with_backend(
        ev,
        picks,
        sta,
        velocity_model(cfg),
        params,
        work_dir=rd.root / "locate-hypoinverse",
        backend=cfg.locate.backend,
        exe=cfg.locate.hypoinverse_exe,
    )
    located, station_mags = event_magnitudes(
        located,
        picks[picks.phase == "S"],
        sta,
        correction=cfg.magnitude.correction,
        min_stations=cfg.magnitude.min_stations,
        strict=False,
    )
    located = located.assign(stage="locate")
    keep = located["n_stations"].fillna(0).to_numpy() >= cfg.locate.min_stations
    if "located" in located:
        keep &= located["located"].astype(bool).to_numpy()
    write_table(located[~keep].reset_index(drop=True), _events_path(rd, "rejected"))
    located = located[keep].reset_index(drop=True)
    write_table(located, _events_path(rd, "located"), S.EVENTS, where="located events")
    write_table(residuals, _events_path(rd, "residuals"))
    write_table(station_mags, _events_path(rd, "station_magnitudes"))
    n_far = int((located.get("dist_note", pd.Series(dtype=object)).fillna("") != "").sum())
    n_excl = int((~station_mags["used"]).sum()) if "used" in station_mags else 0
    reason = (
        f"{len(located)} of {len(ev)} events located ({int((~keep).sum())} rejected: fewer than "
        f"{cfg.locate.min_stations} weighted stations or no convergence); distance taper "
        f"{params['dist_full_km']:g}/{params['dist_zero_km']:g} km"
    )
    if params.get("taper_note"):
        reason += f" ({params['taper_note']})"
    if n_far:
        reason += f"; WARNING {n_far} located event(s) with every station beyond {params['dist_full_km']:g} km"
    if n_excl:
        reason += f"; {n_excl} station amplitude(s) excluded from ML (events/station_magnitudes.parquet: reason)"
    return "ok", len(located), reason


# ----------------------------------------------------------------------------- xcorr
def station_windows(cfg: Config, station_id: str, picks: pd.DataFrame, pre_s: float, post_s: float):
    """The waveform windows of one station around its picks: each day is read once and cut,
    so memory holds windows, not days."""

    from obspy import Stream, UTCDateTime

    from ..archive import ArchiveError, read_station_day

    st = Stream()
    t = pd.to_datetime(picks["time"], utc=True)
    for day, grp in t.groupby(t.dt.date):
        try:
            day_st = read_station_day(cfg.archive.sds_root, station_id, day, cfg.archive.channels)
        except ArchiveError:
            continue
        for ts in grp:
            u = UTCDateTime(ns=int(ts.as_unit("ns").value))
            st += day_st.slice(u - pre_s, u + post_s).split()
    return st


@task("xcorr")
def _xcorr_task(cfg, rd, unit):
    from ..relocate.xcorr import XCorrParams, station_dtcc
    from ..rundir import write_table
    from .. import schema as S

    station_id = unit
    if not cfg.relocate.cc.enabled:
        return "ok", 0, "cc disabled"
    ev_path = need(rd, "located", f"xcorr {station_id}")
    ev = pd.read_parquet(ev_path)
    picks = _cached(("assigned", str(rd.root), ev_path.stat().st_mtime_ns), lambda: assigned_picks(rd))
    picks = picks[(picks.station_id == station_id) & picks.event_id.isin(ev.event_id)]
    prm = XCorrParams.from_config(cfg.relocate.cc)
    sta = stations_df(cfg).set_index("station_id")
    if station_id not in sta.index or not len(picks):
        dtcc = S.DTCC.empty_table().to_pandas()
    else:
        pad = prm.filter_pad_s + prm.max_lag_s + 1.0
        stream = station_windows(cfg, station_id, picks, pad + max(prm.p_window_s[0], prm.s_window_s[0]), pad + max(prm.p_window_s[1], prm.s_window_s[1]))
        latlon = (float(sta.loc[station_id, "latitude"]), float(sta.loc[station_id, "longitude"]))
        dtcc = station_dtcc(stream, picks, ev, station_id, station_latlon=latlon, params=prm)
    write_table(dtcc, rd.root / "dtcc" / f"{station_id}.parquet", S.DTCC, where=f"dtcc {station_id}")
    return "ok", len(dtcc), f"{len(dtcc)} cc measurements"


# ----------------------------------------------------------------------------- relocate
@task("relocate")
def _relocate_task(cfg, rd, unit):
    from ..rundir import write_table

    ev = pd.read_parquet(need(rd, "located", "relocate"))
    if len(ev) < 2:
        write_table(ev.assign(stage="relocate"), rd.root / "relocated" / "relocated.parquet")
        return "ok", 0, "fewer than 2 located events"
    picks = assigned_picks(rd)
    files = sorted((rd.root / "dtcc").glob("*.parquet"))
    dtcc = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else None
    sta = stations_df(cfg)[["station_id", "latitude", "longitude", "elevation_m"]]
    from ..relocate.dd import DDError
    from ..relocate.pairs import auto_max_station_km

    prm, note = cfg.relocate, ""
    if prm.max_station_km == "auto":  # from the station spacing (dense: the seed's 150 km; regional: wider)
        km, note = auto_max_station_km(sta)
        prm, note = prm.model_copy(update={"max_station_km": km}), f"; max_station_km auto {km:g} km"
    try:
        from ..relocate.hypodd_project import relocate_with_backend

        out = relocate_with_backend(
            ev, picks, sta, velocity_model(cfg), dtcc, prm, work_dir=rd.root / "relocate-hypodd", backend=prm.backend, exe=prm.hypodd_exe
        )
    except DDError as exc:
        if "nothing to relocate" not in str(exc):
            raise
        write_table(ev.iloc[0:0].assign(stage="relocate"), rd.root / "relocated" / "relocated.parquet")
        return "skipped", 0, f"not relocated: {exc}"

    log = out.attrs.pop("relocate_log", None)
    if log:
        (rd.sub("logs") / "relocate.log").write_text("\n".join(map(str, log)) + "\n")
    write_table(out, rd.root / "relocated" / "relocated.parquet")
    return "ok", len(out), f"{len(out)} of {len(ev)} events relocated ({0 if dtcc is None else len(dtcc)} cc times{note})"


# ----------------------------------------------------------------------------- catalog
@task("catalog")
def _catalog_task(cfg, rd, unit):
    from ..catalog.writers import write_catalogs
    from ..catalog.report import make_report

    rel = rd.root / "relocated" / "relocated.parquet"
    loc = need(rd, "located", "catalog")
    src = rel if rel.exists() and len(pd.read_parquet(rel)) else loc
    ev = pd.read_parquet(src)
    if src == rel:  # located events that relocation left out stay in the catalog (stage "locate")
        located = pd.read_parquet(loc)
        ev = (
            pd.concat([ev, located[~located.event_id.isin(ev.event_id)]], ignore_index=True)
            .sort_values(["time", "event_id"], kind="stable")
            .reset_index(drop=True)
        )
    picks = assigned_picks(rd) if _events_path(rd, "assignments").exists() else None
    if picks is not None and len(picks):
        picks = picks[picks.event_id.isin(ev.event_id)]
    sta = stations_df(cfg)
    from ..formats.hypoinverse import write_arc_catalog as arc_writer

    out = rd.sub("catalogs")
    paths = write_catalogs(ev, picks, sta, out, manifest_ref=str(rd.manifest), arc_writer=arc_writer)
    truth = None
    if cfg.archive.truth and (Path(cfg.archive.truth) / "events.parquet").exists():
        truth = pd.read_parquet(Path(cfg.archive.truth) / "events.parquet")
    make_report(rd.root, ev, picks, sta, truth_events=truth, out=out / "report.html", title=cfg.run.name)
    return "ok", len(ev), f"{len(ev)} events from {src.relative_to(rd.root)}; " + ", ".join(sorted(paths))
