"""Region-specific retraining through the pipeline's backends on a real SLURM
(slurm/local/start.sh): ``quakescale train --backend array --bootstrap`` (a CPU bootstrap job,
then the GPU-partition training job, afterok) and ``--backend slurm`` (a task on the
dask-jobqueue GPU pool); the weights each produces are then named in a run config and pick."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from slurm_fixture import wait_gone as _wait_gone

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    """A small region (6 stations, 40 min, 30 events) and its run config on the local SLURM."""
    from quakescale.synth.world import make_world

    world = tmp_path_factory.mktemp("train_region")
    make_world(world, n_stations=6, days=1, n_events=30, seed=17, hours_per_day=0.67, n_gaps=0, corrupt=False)
    cfg = yaml.safe_load((world / "config.yaml").read_text())
    cfg["compute"] = yaml.safe_load((REPO / "slurm" / "profiles" / "local-test.yaml").read_text())["compute"]
    cfg["compute"]["backend"] = "array"
    cfg["compute"]["python"] = sys.executable
    cfg["run"]["out_dir"] = str(world / "run")
    cfg.setdefault("train", {}).update(batch_size=32)
    path = world / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return world, path


def _cli(*args, timeout=600):
    r = subprocess.run(
        [sys.executable, "-m", "quakescale", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-2000:]
    return r.stdout


def _picks_with(world: Path, weights: Path) -> pd.DataFrame:
    """The weights named in a run config (detect.model) pick a station-day of the region."""
    from quakescale.config import load_config
    from quakescale.detect.runner import run_station_day

    cfg = load_config(world / "config.yaml")
    cfg.detect.model = str(weights)
    cfg.detect.device = "cpu"
    return run_station_day(cfg, "XL.L01", cfg.archive.start)


def _assert_picks_recover_truth(world: Path, picks: pd.DataFrame) -> dict:
    """The trained weights (one epoch fine-tuned from the shipped ones) still pick the station's
    truth arrivals: most of them, on time (an update that wrecked the weights picks noise)."""
    from quakescale.catalog.compare import pick_errors

    truth = pd.read_parquet(world / "truth" / "picks.parquet")
    res = pick_errors(picks, truth[truth.station_id == "XL.L01"])
    for ph in ("P", "S"):
        r = res[ph]
        assert r["n_truth"] >= 10 and r["recall"] >= 0.5, res
        assert abs(r["mean_error_s"]) < 0.1 and r["std_error_s"] < 0.2, res
        assert r["n_matched"] >= 0.5 * r["n_picks"], res  # most picks are truth arrivals, not noise
    return res


def test_array_backend_bootstraps_on_cpu_then_trains_on_the_gpu_partition(slurm_local, region):
    world, config = region
    run = world / "run"
    out = _cli("train", config, "--bootstrap", "--epochs", "1")
    ids = {line.split(":")[0]: line.split("job ")[1].split() for line in out.splitlines() if ": job " in line}
    assert set(ids) == {"bootstrap", "train"}, out
    scripts = {p.name: p.read_text() for p in (run / "jobs").glob("train-*.sbatch")}
    assert "#SBATCH --partition=cpu" in scripts["train-1-bootstrap.sbatch"]
    assert "#SBATCH --partition=gpu" in scripts["train-2-train.sbatch"]
    assert "--backend local" in scripts["train-2-train.sbatch"]  # the job trains in place, never resubmits
    _wait_gone([j for v in ids.values() for j in v])
    logs = "".join(p.read_text() for p in (run / "logs").glob("*.out"))
    weights = run / "weights"
    assert (weights / "cerp.pt").exists(), logs[-3000:]
    idx = pd.read_parquet(run / "samples" / "index.parquet")
    assert (idx.kind == "event").sum() >= 5 and (idx.kind == "noise").sum() >= 5
    mt = pd.read_csv(weights / "metrics.csv")
    assert list(mt.model) == ["detector", "picker"] and list(mt.epoch) == [1, 1]  # --epochs 1
    assert mt[["train_loss", "val_loss"]].notna().all().all()
    card = json.loads((weights / "card.json").read_text())
    assert card["name"] == "cerp-region" and card["recipe"]["bootstrap"] and card["recipe"]["init_model"] != "scratch"
    assert card["n_samples"]["event"] == int((idx.kind == "event").sum())  # trained on the set the bootstrap job wrote
    picks = _picks_with(world, weights)
    assert len(picks) > 0 and set(picks.model) == {f"cerp-region@{card['version']}"}
    _assert_picks_recover_truth(world, picks)


def test_slurm_backend_trains_as_a_task_on_the_gpu_pool(slurm_local, region):
    world, config = region
    run = world / "run"
    samples = run / "samples"
    if not (samples / "index.parquet").exists():  # run alone: build the set here
        _cli("bootstrap", config, "--out", samples)
    out = _cli(
        "train", config, "--backend", "slurm", "--samples", samples, "--out", run / "weights-slurm", "--epochs", "1"
    )
    assert "dask: slurm cluster up (gpu pool)" in out, out
    weights = run / "weights-slurm"
    assert (weights / "cerp.pt").exists() and (weights / "training_curves.png").exists()
    assert list((run / "logs" / "dask").glob("gpu-*.out")), "no GPU-pool worker job log"
    mt = pd.read_csv(weights / "metrics.csv")
    assert list(mt.model) == ["detector", "picker"] and list(mt.epoch) == [1, 1]
    card = json.loads((weights / "card.json").read_text())
    assert len(card["samples"]) == 1 and set(card["metrics"]) >= {"test_detector_acc", "test_p_recall"}
    picks = _picks_with(world, weights)
    assert len(picks) > 0 and set(picks.model) == {f"{card['name']}@{card['version']}"}
    _assert_picks_recover_truth(world, picks)
