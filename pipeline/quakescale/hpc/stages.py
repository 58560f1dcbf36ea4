"""The stage list and the one function that runs one unit of work of one stage.

Core invariant: ``run_task(run_dir, stage, units)`` runs the given units of a stage, reading its
inputs from the run directory (the resolved config is ``RUN/config.yaml``) and writing outputs
atomically plus one status part file.  Backends (local Dask, SLURM via dask-jobqueue, sbatch
arrays) only decide where it runs.  A unit that already has an ``ok``/``no_data`` status row is
skipped (resume); ``force`` redoes it.
"""

from __future__ import annotations

import json
import socket
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Config, load_config, save_config
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
    if rd.config.exists():
        old = load_config(rd.config, check_paths=False)
        if old.digest() != cfg.digest():
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


def read_plan(rd: RunDir) -> pd.DataFrame:
    if not rd.plan.exists():
        raise FileNotFoundError(f"{rd.plan} not found: run `quakescale plan CONFIG` first")
    return pd.read_parquet(rd.plan)


# ----------------------------------------------------------------------------- units
def stage_units(cfg: Config, rd: RunDir, stage: str) -> list[str]:
    if stage == "detect":
        return list(read_plan(rd)["unit"])
    if stage == "xcorr":
        return station_ids(cfg)
    return ["all"]


def chunks(units: list[str], size: int) -> list[list[str]]:
    return [units[i : i + size] for i in range(0, len(units), size)]


def pending_units(cfg: Config, rd: RunDir, stage: str, force: bool = False) -> list[str]:
    units = stage_units(cfg, rd, stage)
    if force:
        return units
    done = rd.done_units(stage)
    return [u for u in units if u not in done]


# ----------------------------------------------------------------------------- tasks
_TASKS = {}


def task(stage):
    def deco(fn):
        _TASKS[stage] = fn
        return fn

    return deco


def run_task(run_dir, stage: str, units: list[str], force: bool = False) -> list[dict]:
    """Run ``units`` of ``stage`` in this process; returns the status rows written."""
    rd = RunDir(run_dir)
    cfg = run_config(run_dir)
    if stage not in _TASKS:
        raise ValueError(f"unknown stage {stage!r}; stages: {STAGES}")
    done = set() if force else rd.done_units(stage)
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
