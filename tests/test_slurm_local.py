"""Against a real single-node SLURM (slurm/local/start.sh): sbatch arrays, afterok chains,
squeue parsing, a dask-jobqueue SLURMCluster on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quakescale.config import parse_config
from quakescale.hpc import array
from quakescale.hpc.cluster import make_cluster
from quakescale.hpc.jobscript import SlurmJobScript
from slurm_fixture import START, slurm_local  # noqa: F401

pytestmark = pytest.mark.slurm

# A stand-in for `quakescale STAGE CONFIG [--chunk N]`: it writes one status row per unit of its
# chunk (units are "u000".."uNNN", chunked with stages.chunk_units like the real stage runner) and a
# marker file; the detect chunk listed in FAIL_CHUNK exits 1.
FAKE_STAGE = r"""
import json, os, sys
from pathlib import Path
from quakescale.hpc.stages import chunk_units
from quakescale.rundir import RunDir
stage, run = sys.argv[1], Path(sys.argv[2])
spec = json.loads((run / "fake.json").read_text())
chunk = int(sys.argv[sys.argv.index("--chunk") + 1]) if "--chunk" in sys.argv else None
if chunk is not None:
    units = chunk_units([f"u{i:03d}" for i in range(spec["units"][stage])], spec["chunk_size"][stage], chunk)
    if chunk == spec.get("fail_chunk") and stage == "detect":
        sys.exit(1)
    RunDir(run).write_status(stage, [{"unit": u, "state": "ok"} for u in units], part=f"chunk{chunk:04d}")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    (run / "out" / f"{stage}-{chunk}.json").write_text(json.dumps({"units": units, "task": task}))
else:
    seen = sorted(p.name for p in (run / "out").glob("*.json"))
    RunDir(run).write_status(stage, [{"unit": stage, "state": "ok"}])
    (run / "out" / f"{stage}.json").write_text(json.dumps({"seen": seen}))
"""


def _cfg(run_dir: Path, **compute):
    c = {
        "backend": "array",
        "chunk_size": 4,
        "array_throttle": 2,
        "gpu_pool": {"partition": "gpu", "cores": 1, "memory": "200MB", "walltime": "00:05:00", "gpus": 0},
        "cpu_pool": {"partition": "cpu", "cores": 1, "memory": "200MB", "walltime": "00:05:00"},
    }
    c.update(compute)
    return parse_config(
        {
            "run": {"name": "slurm test", "out_dir": str(run_dir)},
            "archive": {
                "sds_root": str(run_dir),
                "inventory": str(run_dir),
                "start": "2014-08-03",
                "end": "2014-08-03",
            },
            "compute": c,
        }
    )


def _wait_gone(ids, timeout_s=90.0):
    """Wait until none of the job ids is in squeue any more."""
    ids = {str(i) for i in ids}
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        left = [r for r in array.squeue() if r.array_job_id in ids]
        if not left:
            return
        time.sleep(0.3)
    raise AssertionError(f"jobs still queued after {timeout_s}s: {left}")


def _setup_run(tmp_path, n_detect, fail_chunk=None):
    run = tmp_path / "run dir 'quoted'"  # spaces and quotes must survive sbatch and bash
    (run / "out").mkdir(parents=True)
    (run / "fake.json").write_text(
        json.dumps({"units": {"detect": n_detect}, "chunk_size": {"detect": 4}, "fail_chunk": fail_chunk})
    )
    script = tmp_path / "fake_stage.py"
    script.write_text(FAKE_STAGE)
    return run, (lambda stage, pool: [sys.executable, str(script), stage, str(run)])


def test_start_is_idempotent(slurm_local):
    t0 = time.time()
    r = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert time.time() - t0 < 10
    out = subprocess.run(["sinfo", "-h", "-o", "%R %t"], capture_output=True, text=True, check=True).stdout.split("\n")
    parts = {line.split()[0]: line.split()[1] for line in out if line.strip()}
    assert set(parts) == {"cpu", "gpu"}
    assert all(s in ("idle", "mix", "alloc") for s in parts.values())


def test_array_chain_runs_every_chunk_then_dependents(slurm_local, tmp_path):
    # 10 units in chunks of 4 -> chunks 0,1,2; max_array_size 2 -> two arrays (offsets 0 and 2)
    run, command = _setup_run(tmp_path, n_detect=10)
    cfg = _cfg(run)
    specs = array.render_jobs(
        cfg, {"detect": 10}, run_dir=run, stages=["detect", "associate", "locate"], command=command, max_array_size=2
    )
    assert [(s.stage, s.array, s.chunk_offset) for s in specs] == [
        ("detect", "0-1%1", 0),
        ("detect", "0-0%1", 2),
        ("associate", None, 0),
        ("locate", None, 0),
    ]
    ids = array.submit(specs, run_dir=run)
    assert len(ids["detect"]) == 2 and len(ids["associate"]) == 1
    _wait_gone([j for v in ids.values() for j in v])

    out = run / "out"
    chunks = {c: json.loads((out / f"detect-{c}.json").read_text()) for c in range(3)}
    assert [u for c in range(3) for u in chunks[c]["units"]] == [f"u{i:03d}" for i in range(10)]
    assert chunks[2]["task"] == "0"  # second array, task 0 -> chunk 2
    # associate ran after every detect chunk; locate after associate
    assert json.loads((out / "associate.json").read_text())["seen"] == [
        "detect-0.json",
        "detect-1.json",
        "detect-2.json",
    ]
    assert "associate.json" in json.loads((out / "locate.json").read_text())["seen"]
    st = array.stage_status(
        run, {"detect": 10, "associate": 1, "locate": 1}, array.squeue(), stages=["detect", "associate", "locate"]
    ).set_index("stage")
    assert st.loc["detect", "done"] == 10 and st.loc["detect", "pending"] == 0 and st.loc["detect", "failed"] == 0
    assert st.loc["locate", "done"] == 1
    assert (run / "logs").is_dir() and len(list((run / "logs").glob("detect-*.out"))) == 3


def test_failed_chunk_cancels_the_dependents(slurm_local, tmp_path):
    run, command = _setup_run(tmp_path, n_detect=8, fail_chunk=1)
    specs = array.render_jobs(_cfg(run), {"detect": 8}, run_dir=run, stages=["detect", "associate"], command=command)
    ids = array.submit(specs, run_dir=run)
    _wait_gone([j for v in ids.values() for j in v])
    assert (run / "out" / "detect-0.json").exists()
    assert not (run / "out" / "detect-1.json").exists()
    assert not (run / "out" / "associate.json").exists()  # afterok never satisfied -> cancelled
    st = array.stage_status(run, {"detect": 8}, array.squeue(), stages=["detect", "associate"]).set_index("stage")
    assert st.loc["detect", "done"] == 4 and st.loc["detect", "pending"] == 4
    assert st.loc["associate", "done"] == 0


def test_squeue_parsing_of_held_array(slurm_local, tmp_path):
    run = tmp_path / "run"
    cfg = _cfg(run)
    js = SlurmJobScript.for_pool(
        cfg.compute.cpu_pool,
        name="qs-held|name",
        command=["true"],
        array="0-9%2",
        template="array.sbatch.tmpl",
        extra={"chunk_offset": 0},
        output=tmp_path / "held-%A_%a.out",
    )
    script = js.write(tmp_path / "held.sbatch")
    jid = subprocess.run(
        ["sbatch", "--parsable", "--hold", str(script)], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        rows = [r for r in array.squeue() if r.array_job_id == jid]
        assert len(rows) == 1
        r = rows[0]
        assert (r.name, r.state, r.reason, r.n_tasks, r.array_tasks) == (
            "qs-held|name",
            "PENDING",
            "JobHeldUser",
            10,
            "0-9%2",
        )
        (run / "jobs").mkdir(parents=True)
        (run / "jobs" / "submitted.json").write_text(json.dumps({"jobs": {"detect": [jid]}}))
        st = array.stage_status(run, {"detect": 40}, rows, stages=["detect"]).set_index("stage")
        assert (st.loc["detect", "queued"], st.loc["detect", "running"], st.loc["detect", "pending"]) == (10, 0, 40)
    finally:
        subprocess.run(["scancel", jid], check=False)
    _wait_gone([jid])


def test_dask_slurmcluster_gpu_pool_runs_a_gpu_task_on_loopback(slurm_local, tmp_path):
    from dask.distributed import Client

    cfg = _cfg(
        tmp_path / "run",
        backend="slurm",
        interface="lo",
        gpu_pool={
            "partition": "gpu",
            "cores": 1,
            "memory": "1GB",
            "walltime": "00:10:00",
            "gpus": 0,
            "min_jobs": 1,
            "max_jobs": 1,
        },
    )
    cluster = make_cluster(cfg.compute, "gpu", run_dir=tmp_path / "run", adapt=False)
    try:
        assert "--partition=gpu" in cluster.job_script()
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        cluster.scale(jobs=1)
        with Client(cluster) as client:
            client.wait_for_workers(1, timeout=90)
            info = client.scheduler_info()["workers"]
            ((addr, w),) = info.items()
            assert addr.startswith("tcp://127.0.0.1:")
            assert w["resources"] == {"GPU": 1.0}
            fut = client.submit(
                lambda: __import__("os").environ.get("SLURM_JOB_PARTITION"), resources={"GPU": 1}, pure=False
            )
            assert fut.result(timeout=60) == "gpu"
    finally:
        cluster.close()
    assert list((tmp_path / "run" / "logs" / "dask").glob("gpu-*.out"))


def test_lost_worker_job_is_replaced_and_its_task_rerun(slurm_local, tmp_path):
    """scancel the worker's job mid-task: adaptive scaling submits a new job and the task reruns there."""
    import dask

    cfg = _cfg(
        tmp_path / "run",
        backend="slurm",
        interface="lo",
        cpu_pool={
            "partition": "cpu",
            "cores": 1,
            "memory": "1GB",
            "walltime": "00:10:00",
            "min_jobs": 1,
            "max_jobs": 1,
        },
    )
    # the cluster forgets a lost job after lost-worker-timeout (default 15 s), then adaptive replaces it
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "1s"}):
        _lost_worker_run(cfg, tmp_path)


def _lost_worker_run(cfg, tmp_path):
    from dask.distributed import Client

    cluster = make_cluster(cfg.compute, "cpu", run_dir=tmp_path / "run")  # adaptive, 1..1 jobs
    try:
        with Client(cluster) as client:
            client.wait_for_workers(1, timeout=90)

            def task():
                import os
                import time

                time.sleep(4)
                return os.environ["SLURM_JOB_ID"]

            fut = client.submit(task, pure=False)
            t0 = time.time()
            while not any(client.processing().values()) and time.time() - t0 < 30:
                time.sleep(0.1)
            (first,) = client.run(lambda: __import__("os").environ["SLURM_JOB_ID"]).values()
            subprocess.run(["scancel", first], check=True)
            second = fut.result(timeout=120)
            assert second != first
    finally:
        cluster.close()
