"""Shared synthetic worlds for the tests (session-scoped; small: few stations, short days).

Seeds used by tests: 7 (the tests' world).  Training of the shipped weights uses 1001-1005.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_world(tmp_path_factory) -> Path:
    """8 stations x 1 day recorded for 2 hours, 40 events, 3 gaps, 1 corrupt file (seed 7)."""
    from quakescale.synth.world import make_world

    out = tmp_path_factory.mktemp("world7")
    make_world(out, n_stations=8, days=1, n_events=40, seed=7, hours_per_day=2.0)
    return out


@pytest.fixture(scope="session")
def local_run(small_world, tmp_path_factory):
    """The whole pipeline on ``small_world`` with the local Dask backend (2 workers):
    (config, summary, log lines).  The reference the other backends must reproduce."""
    from quakescale.config import load_config
    from quakescale.hpc.pipeline import run_pipeline

    cfg = load_config(small_world / "config.yaml")
    cfg.run.out_dir = tmp_path_factory.mktemp("local-run") / "run"
    cfg.compute.n_workers = 2
    cfg.compute.chunk_size = 2
    logs = []
    summary = run_pipeline(cfg, echo=logs.append)
    return cfg, summary, logs


def first_station_day(world: Path):
    """(config, CERP model on the CPU, the prepared day) of the first station of ``world``."""
    import pandas as pd

    from quakescale.archive import read_station_day
    from quakescale.config import load_config
    from quakescale.detect.models import load_model
    from quakescale.detect.runner import preprocess

    cfg = load_config(world / "config.yaml")
    model = load_model(cfg.detect.model, device="cpu")
    sid = sorted(pd.read_parquet(world / "truth" / "picks.parquet").station_id.unique())[0]
    st = read_station_day(cfg.archive.sds_root, sid, cfg.archive.start, channels=list(cfg.archive.channels))
    return cfg, model, preprocess(st, cfg.detect)
