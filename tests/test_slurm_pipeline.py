"""The demo run through a real SLURM (slurm/local/start.sh): the dask-jobqueue ``slurm`` backend
and the sbatch ``array`` backend (one array task lost, then a resubmit that completes the run);
both must give the catalog of the ``local`` backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from quakescale.config import ComputeSection, load_config
from slurm_fixture import wait_gone as _wait_gone

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parents[1]
COLS = ["event_id", "time", "latitude", "longitude", "depth_km", "magnitude"]


def _cfg(small_world, out: Path, backend: str):
    cfg = load_config(small_world / "config.yaml")
    profile = yaml.safe_load((REPO / "slurm" / "profiles" / "local-test.yaml").read_text())["compute"]
    cfg.compute = ComputeSection(**profile)
    cfg.compute.backend = backend
    cfg.compute.chunk_size = 4
    cfg.compute.python = sys.executable
    cfg.run.out_dir = out
    return cfg


def _events(run: Path) -> pd.DataFrame:
    return pd.read_parquet(run / "catalogs" / "events.parquet")[COLS].reset_index(drop=True)


def test_slurm_backend_gives_the_local_catalog(slurm_local, small_world, local_run, tmp_path):
    from quakescale.hpc.pipeline import run_pipeline

    cfg = _cfg(small_world, tmp_path / "run", "slurm")
    logs = []
    run_pipeline(cfg, echo=logs.append)
    assert any("slurm cluster up (gpu pool)" in line for line in logs), logs
    assert any("slurm cluster up (cpu pool)" in line for line in logs), logs
    pd.testing.assert_frame_equal(_events(Path(cfg.run.out_dir)), _events(Path(local_run[0].run.out_dir)))


def test_array_backend_resubmit_completes_after_a_lost_task(slurm_local, small_world, local_run, tmp_path):
    from quakescale.hpc import array
    from quakescale.hpc.stages import prepare_run, read_plan, run_task, station_ids

    cfg = _cfg(small_world, tmp_path / "run", "array")
    rd = prepare_run(cfg)
    run_task(rd.root, "plan", ["all"], force=True)
    units = {"detect": len(read_plan(rd)), "xcorr": len(station_ids(cfg))}
    assert units["detect"] == 8  # 2 chunks of 4 station-days
    specs = array.render_jobs(cfg, units, run_dir=rd.root, config_path=rd.config, max_array_size=1000)
    ids = array.submit(specs, extra_args=["--hold"], run_dir=rd.root)
    detect_job = ids["detect"][0]
    # a lost array task (node failure, preemption): cancel chunk 0 before it runs
    subprocess.run(["scancel", f"{detect_job}_0"], check=True)
    every = [j for v in ids.values() for j in v]
    subprocess.run(["scontrol", "release", *every], check=True, capture_output=True)
    _wait_gone(every)
    st = rd.read_status("detect")
    assert len(st) == 4, st  # chunk 1 ran; chunk 0 never did
    assert not (rd.root / "catalogs" / "events.parquet").exists()  # afterok: nothing downstream ran

    # resubmit through the CLI: only the missing chunk does detection work
    out = subprocess.run(
        [sys.executable, "-m", "quakescale", "submit", str(rd.config)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    new_ids = [
        j
        for line in out.stdout.splitlines()
        if ":" in line and not line.startswith("scripts")
        for j in line.split(":", 1)[1].split()
    ]
    assert new_ids, out.stdout
    _wait_gone(new_ids)
    st = rd.read_status("detect", latest=False)
    ok = st[st.state == "ok"]
    assert len(ok) == 7 and ok.unit.is_unique, st  # every readable station-day detected exactly once
    bad = {
        u for u in st.unit if u not in set(ok.unit)
    }  # the corrupt day: recorded as bad data (skipped), not a failure
    assert len(bad) == 1 and set(st[st.unit.isin(bad)].state) == {"skipped"}, st
    status = subprocess.run(
        [sys.executable, "-m", "quakescale", "status", str(rd.config)], capture_output=True, text=True
    ).stdout
    assert "catalog" in status
    pd.testing.assert_frame_equal(_events(rd.root), _events(Path(local_run[0].run.out_dir)))
