"""The stage table and the one function that runs one unit of work of one stage.

Core invariant: ``run_task(run_dir, stage, units)`` runs the given units of a stage, reading its
inputs from the run directory (the resolved config is ``RUN/config.yaml``) and writing outputs
atomically plus one status part file.  A stage whose input is missing because an upstream stage
failed (or has not run) fails with :class:`~quakescale.errors.UpstreamMissing` naming that stage,
its unit and its reason.  Station-days whose data are bad (unreadable, incomplete) are
``skipped`` with the reason, not ``failed``: a failure is a defect of the run, bad data are not.
Backends (local Dask, SLURM via dask-jobqueue, sbatch arrays) only decide where it runs: they all
read :data:`STAGE` (one :class:`Stage` record per stage: fanned out or not, pool, unit lister,
chunk size) and cut unit lists with :func:`chunk_units`.  A unit that already has an
``ok``/``no_data`` status row is skipped (resume); ``force`` redoes it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .. import schema as S
from ..archive import (
    ArchiveError,
    ReadAhead,
    StationDay,
    load_inventory,
    plan_station_days,
    station_windows,
    stations_table,
)
from ..config import Config, load_config, save_config
from ..rundir import RunDir, assigned_picks, compact_picks, events_path, gather_picks, need, write_json, write_table


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
            write_json(
                {"previous_config_digest": old.digest(), "new_config_digest": cfg.digest(), "time": time.time()},
                rd.root / "logs" / f"config-change-{int(time.time())}.json",
            )
    save_config(cfg, rd.config)
    return rd


def run_config(run_dir) -> Config:
    return load_config(RunDir(run_dir).config, check_paths=False)


# ----------------------------------------------------------------------------- plan
def station_ids(cfg: Config) -> list[str]:
    inv = load_inventory(cfg.archive.inventory)
    return list(stations_table(inv, cfg.archive.stations or None).station_id)


def stage_plan(cfg: Config, rd: RunDir) -> pd.DataFrame:
    plan = plan_station_days(cfg.archive.sds_root, station_ids(cfg), cfg.days(), cfg.archive.channels)
    done = rd.done_units("detect")
    plan["done"] = plan["unit"].isin(done)
    write_table(plan, rd.plan)
    return plan


def read_plan(rd: RunDir, columns: list[str] | None = None) -> pd.DataFrame:
    if not rd.plan.exists():
        raise FileNotFoundError(f"{rd.plan} not found: run `quakescale plan CONFIG` first")
    return pd.read_parquet(rd.plan, columns=columns)


# ----------------------------------------------------------------------------- the stage table
def _detect_units(cfg: Config, rd: RunDir) -> list[str]:
    return list(read_plan(rd, ["unit"])["unit"])  # each array task reads this: one column


def _one_unit(cfg: Config, rd: RunDir) -> list[str]:
    return ["all"]


#: Dask worker resources a pool's workers carry on the slurm backend and its tasks ask for (and,
#: on the local backend with the networks on a GPU, the detect stage's own worker: hpc.pipeline)
POOL_RESOURCES: dict[str, dict[str, int]] = {"gpu": {"GPU": 1}, "cpu": {}}


@dataclass(frozen=True)
class Stage:
    """One stage of a run, as every backend sees it.

    ``fanned``: its units are mapped to workers (Dask) or array tasks (sbatch), in chunks;
    otherwise it has one unit, ``"all"``.  ``pool``: ``gpu`` or ``cpu`` (the SLURM pool, and the
    Dask resources its tasks ask for).  ``units(cfg, rd)``: its unit list.  ``chunk_field``: the
    ``compute`` field giving units per task (``None``: one unit per task).  ``job``: whether it
    has an sbatch job of its own in array mode (the plan runs at submission instead)."""

    name: str
    units: Callable[[Config, RunDir], list[str]] = _one_unit
    fanned: bool = False
    pool: str = "cpu"
    chunk_field: str | None = None
    job: bool = True

    def __post_init__(self):
        if self.pool not in POOL_RESOURCES:
            raise ValueError(f"stage {self.name}: pool {self.pool!r} not in {list(POOL_RESOURCES)}")

    def chunk_size(self, compute) -> int:
        """Units per task: ``compute.<chunk_field>``, or 1."""
        return int(getattr(compute, self.chunk_field)) if self.chunk_field else 1

    def resources(self, compute) -> dict | None:
        """Dask ``resources=`` of this stage's tasks: ``{"GPU": 1}`` for the GPU pool on the slurm
        backend (its workers carry that resource), else ``None`` (:func:`~.pipeline.run_pipeline`
        asks for the GPU resource itself on its local GPU cluster)."""
        if compute.backend == "slurm" and POOL_RESOURCES[self.pool]:
            return dict(POOL_RESOURCES[self.pool])
        return None


#: the stages in dependency order
STAGE_LIST: tuple[Stage, ...] = (
    Stage("plan", job=False),
    Stage("detect", _detect_units, fanned=True, pool="gpu", chunk_field="chunk_size"),
    Stage("associate"),
    Stage("locate"),
    Stage("xcorr", lambda cfg, rd: station_ids(cfg), fanned=True),
    Stage("relocate"),
    Stage("catalog"),
)
STAGE: dict[str, Stage] = {s.name: s for s in STAGE_LIST}
STAGES: tuple[str, ...] = tuple(STAGE)  # names, in order
JOB_STAGES: tuple[str, ...] = tuple(s.name for s in STAGE_LIST if s.job)  # one sbatch job (array) each


def get_stage(stage: str) -> Stage:
    if stage not in STAGE:
        raise ValueError(f"unknown stage {stage!r}; stages: {list(STAGES)}")
    return STAGE[stage]


def stage_units(cfg: Config, rd: RunDir, stage: str) -> list[str]:
    return get_stage(stage).units(cfg, rd)


# ----------------------------------------------------------------------------- chunks
def n_chunks(n_units: int, chunk_size: int) -> int:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return -(-int(n_units) // int(chunk_size))


def chunk_bounds(chunk: int, chunk_size: int, n_units: int) -> tuple[int, int]:
    """``(start, stop)`` of chunk ``chunk`` in the unit list; a clear error when out of range."""
    n = n_chunks(n_units, chunk_size)
    if not 0 <= chunk < n:
        raise IndexError(
            f"chunk {chunk} out of range: {n_units} units in chunks of {chunk_size} give chunks 0..{n - 1}"
        )
    start = chunk * chunk_size
    return start, min(start + chunk_size, n_units)


def chunk_units(units: Sequence, chunk_size: int, chunk: int) -> list:
    """The units of chunk ``chunk``: ``units[chunk*size:(chunk+1)*size]`` -- the one chunking rule
    (array task ``--chunk K`` and the Dask map use it)."""
    a, b = chunk_bounds(chunk, chunk_size, len(units))
    return list(units[a:b])


def chunks(units: Sequence, size: int) -> list[list]:
    """Every chunk of ``units``, in order."""
    return [chunk_units(units, size, c) for c in range(n_chunks(len(units), size))]


def stage_chunk(cfg: Config, rd: RunDir, stage: str, chunk: int) -> list[str]:
    """Chunk ``chunk`` of the stage's full sorted unit list (stable across resubmissions): what
    array task ``chunk`` runs."""
    st = get_stage(stage)
    try:
        return chunk_units(sorted(st.units(cfg, rd)), st.chunk_size(cfg.compute), chunk)
    except IndexError as exc:
        raise IndexError(f"{stage}: {exc}") from None


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
    ``retry_failed`` (the default for an explicit call: an array task or a named unit).
    After a fatal GPU error (:func:`fatal_device_error`) the task stops: that unit's status says
    so, the units after it get none (a rerun or a retry does them), and the process gives up its
    device (:func:`_give_up_device`)."""
    rd = RunDir(run_dir)
    cfg = run_config(run_dir)
    get_stage(stage)
    done = set() if force else rd.done_units(stage, settled_states(retry_failed))
    todo = [u for u in units if u not in done]
    with _task_context(cfg, stage, todo) as ctx:
        rows = _run_units(cfg, rd, stage, todo, ctx)
    if rows:
        rd.write_status(stage, rows)
    if rows and rows[-1].get("device_lost"):
        left = len(todo) - len(rows)
        why = " ".join(rows[-1]["reason"].split())  # one line
        _give_up_device(f"{stage} {rows[-1]['unit']}: {why} ({left} unit(s) of this task left for a rerun)")
    return rows


# what a CUDA error says when it leaves the process's context unusable (every later call fails
# alike); out of memory is not one of them (torch.OutOfMemoryError: the next unit may fit)
_FATAL_DEVICE = (
    "illegal memory access",
    "illegal address",
    "illegal instruction",
    "misaligned address",
    "unspecified launch failure",
    "launch timed out",
    "device-side assert",
    "uncorrectable ecc",
    "ecc error",
    "cublas_status_execution_failed",
    "cudnn_status_execution_failed",
    "cudnn_status_mapping_error",
)


def fatal_device_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is a CUDA error that leaves this process's
    CUDA context unusable: an illegal address or instruction, a failed or timed-out kernel
    launch, a device-side assert, an ECC error, a cuBLAS/cuDNN execution failure (torch raises
    them as ``torch.AcceleratorError`` or ``RuntimeError``, "CUDA error: ...").  Out of memory
    is not fatal."""
    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if type(e).__name__ == "OutOfMemoryError":
            return False
        msg = str(e).lower()
        if ("cuda" in msg or "cublas" in msg or "cudnn" in msg) and any(k in msg for k in _FATAL_DEVICE):
            return True
        e = e.__cause__ or e.__context__
    return False


EXIT_DEVICE_LOST = 75  # a Dask worker's exit code after a fatal GPU error (EX_TEMPFAIL: try again elsewhere)


def _dask_worker():
    """The Dask worker this runs on, or None (an array task never imports Dask: a worker has)."""
    dist = sys.modules.get("distributed")
    try:
        return dist.get_worker() if dist is not None else None
    except ValueError:  # not in a worker's task
        return None


def _give_up_device(msg: str) -> None:
    """After a fatal GPU error: on a Dask worker, end the worker process (its nanny starts a fresh
    one with a new CUDA context, and the scheduler runs the task again there; on the old worker
    every later task would fail the same way); anywhere else (an sbatch array task, ``quakescale
    STAGE``), raise :class:`~quakescale.errors.DeviceLost`, so the process exits non-zero."""
    from ..errors import DeviceLost

    if _dask_worker() is None:
        raise DeviceLost(msg)
    log = logging.getLogger("quakescale.hpc")
    log.error("fatal GPU error, this worker exits for a fresh one: %s", msg)
    logging.shutdown()
    os._exit(EXIT_DEVICE_LOST)


def gpu_worker_threads() -> int:
    """The threads of the Dask worker this runs on, when this task holds the worker's whole ``GPU``
    resource (the slurm GPU pool, or the local backend's GPU worker: one such task at a time, and
    the worker's other threads would sit idle); 0 anywhere else (a task that did not ask for the
    GPU may share its worker with others)."""
    w = _dask_worker()
    try:
        ts = w.state.tasks.get(w.get_current_task())
    except AttributeError:  # not on a Dask worker
        return 0
    total = w.state.total_resources.get("GPU", 0)
    asked = (getattr(ts, "resource_restrictions", None) or {}).get("GPU", 0) if ts is not None else 0
    return int(w.state.nthreads) if total and asked >= total else 0


@contextlib.contextmanager
def host_threads():
    """On a GPU-pool Dask worker, torch's thread count (the width of the CPU steps' pool: read,
    band-pass, picker on a CPU, amplitudes) raised to the worker's threads for the task: Dask's
    nanny starts workers with ``OMP_NUM_THREADS=1``, which left a GPU job's other cores idle while
    the host side of a station-day ran on one."""
    n = gpu_worker_threads()
    if n < 2:
        yield
        return
    import torch

    n0 = torch.get_num_threads()
    torch.set_num_threads(max(n, n0))
    try:
        yield
    finally:
        torch.set_num_threads(n0)


@contextlib.contextmanager
def _task_context(cfg: Config, stage: str, units: list[str]):
    """What a stage's units share within one task: for detect, the :class:`ReadAhead` that reads
    the next station-day while one is picked (``detect.read_ahead``; by default only when the
    networks run on a GPU), and on a GPU-pool worker all its threads (:func:`host_threads`)."""
    if stage == "detect":
        with host_threads(), _detect_context(cfg, units) as ctx:
            yield ctx
    else:
        yield {}


@contextlib.contextmanager
def _detect_context(cfg: Config, units: list[str]):
    ahead = read_ahead(cfg) if len(units) > 1 else 0
    if ahead < 1:
        yield {}
        return
    from ..detect.runner import PAD_DAY_S

    order = []
    for u in units:
        try:
            sd = StationDay.from_unit(u)
        except Exception:  # not a station-day: its own run records why
            continue
        order.append((sd.station_id, sd.day))
    with ReadAhead(cfg.archive.sds_root, order, list(cfg.archive.channels), PAD_DAY_S, ahead) as reader:
        yield {"reader": reader}


def networks_on_gpu(cfg: Config) -> bool:
    """Whether the detect stage's networks run on a GPU here (``detect.device`` cuda, or auto with a
    GPU torch can see)."""
    if cfg.detect.device == "cpu" or cfg.detect.method not in ("cerp", "seisbench"):
        return False
    import torch

    return torch.cuda.is_available()


def read_ahead(cfg: Config) -> int:
    """``detect.read_ahead``, or when null: 1 if the detect networks run on a GPU, else 0.  On a CPU
    worker the next day's read competes with the networks for the same cores (no gain measured on
    2 cores) and holds one more raw station-day in memory (a 4-day task's peak RSS 0.84 -> 0.96 GB)."""
    if cfg.detect.read_ahead is not None:
        return int(cfg.detect.read_ahead)
    return 1 if networks_on_gpu(cfg) else 0


def _run_units(cfg: Config, rd: RunDir, stage: str, units: list[str], ctx: dict) -> list[dict]:
    rows = []
    for u in units:
        t0, lost = time.time(), False
        try:
            state, n_out, reason = _TASKS[stage](cfg, rd, u, **ctx)
        except Exception as exc:  # one bad unit is recorded and skipped; the run goes on
            state, n_out = "failed", 0
            reason = f"{type(exc).__name__}: {exc}"
            lost = fatal_device_error(exc)
            if lost:
                reason = f"fatal GPU error (the task stopped here, its process gave up the device): {reason}"
            (rd.sub("logs") / f"{stage}-failures.log").open("a").write(
                f"--- {u} on {socket.gethostname()}\n{traceback.format_exc()}\n"
            )
        rows.append(
            dict(unit=u, state=state, n_out=int(n_out), reason=reason[:2000], seconds=round(time.time() - t0, 3))
        )
        if lost:  # every later unit would fail alike on this process's CUDA context (run_task ends it)
            rows[-1]["device_lost"] = True
            break
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
    return _cached(
        ("stations", str(cfg.archive.inventory), tuple(cfg.archive.stations)),
        lambda: stations_table(load_inventory(cfg.archive.inventory), cfg.archive.stations or None),
    )


def velocity_model(cfg: Config):
    from ..formats.velmodels import resolve_model

    return _cached(("model", cfg.velocity.model), lambda: resolve_model(cfg.velocity.model))


# ----------------------------------------------------------------------------- detect
@task("detect")
def _detect_task(cfg, rd, unit, reader=None):
    from ..detect.runner import get_model, run_station_day  # torch: only in the processes that detect

    sd = StationDay.from_unit(unit)
    model = None
    if cfg.detect.method == "cerp":
        model = _cached(
            ("cerp", cfg.detect.model, cfg.detect.device), lambda: get_model(cfg.detect.model, cfg.detect.device)
        )
    inv = _cached(("inv", str(cfg.archive.inventory)), lambda: load_inventory(str(cfg.archive.inventory)))
    try:
        df = run_station_day(cfg, sd.station_id, sd.day, model=model, inventory=inv, reader=reader)
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


# ----------------------------------------------------------------------------- associate
@task("associate")
def _associate_task(cfg, rd, unit):
    from ..associate import Associator, associate_partitioned

    compact_picks(rd)
    picks = gather_picks(rd)
    if picks is None or not len(picks):  # empty tables: later stages run on nothing, not on missing files
        write_table(S.EVENTS.empty_table(), events_path(rd, "associated"), S.EVENTS, where="associated events")
        write_table(S.ASSIGNMENTS.empty_table(), events_path(rd, "assignments"), S.ASSIGNMENTS, where="assignments")
        return "ok", 0, "no picks"
    picks = picks.sort_values(["time", "station_id"], kind="stable").reset_index(drop=True)
    a = cfg.associate
    assoc = Associator.from_config(cfg, stations_df(cfg), velocity_model(cfg))
    events, asg = associate_partitioned(picks, assoc, partition_s=a.partition_s, overlap_s=a.overlap_s)
    events = events.assign(stage="associate")
    for col, default in (("magnitude", np.nan), ("mag_type", ""), ("rms_s", np.nan)):
        if col not in events:
            events[col] = default
    write_table(events, events_path(rd, "associated"), S.EVENTS, where="associated events")
    write_table(asg, events_path(rd, "assignments"), S.ASSIGNMENTS, where="assignments")
    return "ok", len(events), f"{len(events)} events from {len(picks)} picks"


# ----------------------------------------------------------------------------- locate
@task("locate")
def _locate_task(cfg, rd, unit):
    from ..locate.hypoinverse_project import locate_with_backend
    from ..locate.locator import resolve_distance_taper
    from ..locate.magnitude import event_magnitudes

    ev = pd.read_parquet(need(rd, "associated", "locate"))
    if not len(ev):
        write_table(ev, events_path(rd, "located"), S.EVENTS)
        return "ok", 0, "no events"
    picks = assigned_picks(rd)
    sta = stations_df(cfg)
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
    write_table(located[~keep].reset_index(drop=True), events_path(rd, "rejected"))
    located = located[keep].reset_index(drop=True)
    write_table(located, events_path(rd, "located"), S.EVENTS, where="located events")
    write_table(residuals, events_path(rd, "residuals"))
    write_table(station_mags, events_path(rd, "station_magnitudes"))
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
@task("xcorr")
def _xcorr_task(cfg, rd, unit):
    from ..relocate.xcorr import XCorrParams, station_dtcc

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
        pre_s, post_s = pad + max(prm.p_window_s[0], prm.s_window_s[0]), pad + max(prm.p_window_s[1], prm.s_window_s[1])
        stream = station_windows(cfg.archive.sds_root, station_id, picks["time"], pre_s, post_s, cfg.archive.channels)
        latlon = (float(sta.loc[station_id, "latitude"]), float(sta.loc[station_id, "longitude"]))
        dtcc = station_dtcc(stream, picks, ev, station_id, station_latlon=latlon, params=prm)
    write_table(dtcc, rd.root / "dtcc" / f"{station_id}.parquet", S.DTCC, where=f"dtcc {station_id}")
    return "ok", len(dtcc), f"{len(dtcc)} cc measurements"


# ----------------------------------------------------------------------------- relocate
@task("relocate")
def _relocate_task(cfg, rd, unit):
    from ..relocate.dd import DDError
    from ..relocate.hypodd_project import relocate_with_backend
    from ..relocate.pairs import auto_max_station_km

    ev = pd.read_parquet(need(rd, "located", "relocate"))
    if len(ev) < 2:
        write_table(ev.assign(stage="relocate"), rd.root / "relocated" / "relocated.parquet")
        return "ok", 0, "fewer than 2 located events"
    picks = assigned_picks(rd)
    files = sorted((rd.root / "dtcc").glob("*.parquet"))
    dtcc = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else None
    sta = stations_df(cfg)[["station_id", "latitude", "longitude", "elevation_m"]]
    prm, note = cfg.relocate, ""
    if prm.max_station_km == "auto":  # from the station spacing (dense: the seed's 150 km; regional: wider)
        km, note = auto_max_station_km(sta)
        prm, note = prm.model_copy(update={"max_station_km": km}), f"; max_station_km auto {km:g} km"
    try:
        out = relocate_with_backend(
            ev,
            picks,
            sta,
            velocity_model(cfg),
            dtcc,
            prm,
            work_dir=rd.root / "relocate-hypodd",
            backend=prm.backend,
            exe=prm.hypodd_exe,
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
    return (
        "ok",
        len(out),
        f"{len(out)} of {len(ev)} events relocated ({0 if dtcc is None else len(dtcc)} cc times{note})",
    )


# ----------------------------------------------------------------------------- catalog
@task("catalog")
def _catalog_task(cfg, rd, unit):
    from ..catalog.report import make_report
    from ..catalog.writers import write_catalogs
    from ..formats.hypoinverse import write_arc_catalog

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
    picks = assigned_picks(rd) if events_path(rd, "assignments").exists() else None
    if picks is not None and len(picks):
        picks = picks[picks.event_id.isin(ev.event_id)]
    sta = stations_df(cfg)
    out = rd.sub("catalogs")
    paths = write_catalogs(ev, picks, sta, out, manifest_ref=str(rd.manifest), arc_writer=write_arc_catalog)
    truth = None
    if cfg.archive.truth and (Path(cfg.archive.truth) / "events.parquet").exists():
        truth = pd.read_parquet(Path(cfg.archive.truth) / "events.parquet")
    make_report(rd.root, ev, picks, sta, truth_events=truth, out=out / "report.html", title=cfg.run.name)
    return "ok", len(ev), f"{len(ev)} events from {src.relative_to(rd.root)}; " + ", ".join(sorted(paths))


assert set(_TASKS) == set(STAGES), "every stage of STAGE_LIST has one @task"
