"""The whole run on the local Dask backend: events recovered vs truth, resume, worker loss."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from quakescale.config import load_config


def _digest_tree(root: Path) -> dict:
    out = {}
    for f in sorted(root.rglob("*")):
        if f.is_file():
            out[str(f.relative_to(root))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def finished_run(local_run):
    return local_run


def test_full_run_recovers_the_sequence(finished_run, small_world):
    cfg, summary, logs = finished_run
    run = Path(cfg.run.out_dir)
    vs = summary["vs_truth"]
    # detection: the corrupt station-day is recorded as skipped (bad data, with the reason), the others are ok
    st = pd.read_parquet(run / "status" / "detect.parquet")
    assert (st.state == "ok").sum() == 7
    bad = st[st.state == "skipped"]
    assert len(bad) == 1 and "unreadable MiniSEED file" in bad.reason.iloc[0]
    assert summary["problems"] == []  # skipped bad data is no failure: `quakescale run` exits 0
    # the locator's auto distance taper is the seed's 40/120 km on this dense local network
    loc = pd.read_parquet(run / "status" / "locate.parquet")
    assert "distance taper 40/120 km" in loc.reason.iloc[-1], loc.reason.iloc[-1]
    # picks, events, locations vs truth
    assert vs["picks"]["P"]["recall"] > 0.5 and abs(vs["picks"]["P"]["mean_error_s"]) < 0.1
    assert vs["locate"]["recall"] >= 0.7, vs["locate"]
    assert vs["locate"]["precision"] >= 0.8, vs["locate"]
    assert vs["locate"]["median_epicentral_error_km"] < 0.5 and vs["locate"]["median_depth_error_km"] < 1.5
    assert abs(vs["locate"]["median_magnitude_error"]) < 0.2
    # relocation keeps the well-linked events and every one of them is real
    assert vs["relocate"]["recall"] >= 0.8 and vs["relocate"]["precision"] >= 0.95, vs["relocate"]
    assert vs["relocate"]["median_epicentral_error_km"] < 0.5
    # catalogs and provenance
    cats = run / "catalogs"
    for name in ("events.parquet", "events.csv", "catalog.xml", "hypoDD.reloc", "catalog.arc", "report.html"):
        assert (cats / name).exists(), name
    arc_lines = (cats / "catalog.arc").read_text().splitlines()  # hyp1.40 widths: summary 179, stations 120
    assert sum(len(x) == 179 and x[:12].isdigit() for x in arc_lines) == len(pd.read_parquet(cats / "events.parquet"))
    man = json.loads((run / "manifest.json").read_text())
    assert man["config_digest"] == cfg.digest() and man["versions"]["quakescale"]
    assert str(run / "manifest.json") in (cats / "events.csv").read_text().splitlines()[0]


def test_rerun_does_no_work_and_changes_no_byte(finished_run):
    from quakescale.hpc.pipeline import run_pipeline

    cfg, _, _ = finished_run
    run = Path(cfg.run.out_dir)
    before = _digest_tree(run)
    logs = []
    run_pipeline(cfg, echo=logs.append)
    after = _digest_tree(run)
    assert before == after
    assert any("nothing changed" in line for line in logs)


@pytest.mark.slow  # 86-155 s (2 shared cores): a second whole run, one station-day per task
def test_kill_a_worker_during_detection(finished_run, small_world, tmp_path):
    """A Dask worker dies mid-detection: the run completes and the catalog equals the
    undisturbed run's."""
    from distributed import Client, LocalCluster

    from quakescale.hpc.pipeline import run_pipeline

    ref_cfg, _, _ = finished_run
    cfg = load_config(small_world / "config.yaml")
    cfg.run.out_dir = tmp_path / "run"
    cfg.compute.chunk_size = 1
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    killed = []

    def killer():
        parts = Path(cfg.run.out_dir) / "status" / "detect"
        t0 = time.time()
        while time.time() - t0 < 120:
            if parts.exists() and any(parts.glob("*.parquet")):
                pids = client.run(os.getpid)
                pid = sorted(pids.values())[0]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.05)

    th = threading.Thread(target=killer)
    th.start()
    try:
        run_pipeline(cfg, client=client, echo=lambda *_: None)
    finally:
        th.join()
        client.close()
        cluster.close()
    assert killed, "no worker was killed"
    a = pd.read_parquet(Path(ref_cfg.run.out_dir) / "catalogs" / "events.parquet")
    b = pd.read_parquet(Path(cfg.run.out_dir) / "catalogs" / "events.parquet")
    cols = ["event_id", "time", "latitude", "longitude", "depth_km", "magnitude"]
    pd.testing.assert_frame_equal(a[cols].reset_index(drop=True), b[cols].reset_index(drop=True))


CUDA_FAULT = (
    "CUDA error: an illegal memory access was encountered\n"
    "CUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace below might be "
    "incorrect."
)


def test_fatal_gpu_errors_are_told_from_the_others():
    """An illegal address, a failed launch, a device-side assert, an ECC error, a cuBLAS execution
    failure (also as the cause of another error) leave the CUDA context unusable; out of memory,
    bad data and other errors do not."""
    import torch

    from quakescale.archive import ArchiveError
    from quakescale.hpc.stages import fatal_device_error

    fatal = [
        RuntimeError(CUDA_FAULT),
        RuntimeError("CUDA error: unspecified launch failure"),
        RuntimeError("CUDA error: device-side assert triggered"),
        RuntimeError("CUDA error: uncorrectable ECC error encountered"),
        RuntimeError("CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm( handle, opa, opb)`"),
    ]
    if hasattr(torch, "AcceleratorError"):  # torch >= 2.8 raises CUDA errors as this class
        fatal.append(torch.AcceleratorError(CUDA_FAULT))
    try:
        try:
            raise RuntimeError(CUDA_FAULT)
        except RuntimeError as exc:
            raise ValueError("picker failed on XL.L01 2014-08-03") from exc
    except ValueError as chained:
        fatal.append(chained)
    for exc in fatal:
        assert fatal_device_error(exc), exc
    benign = [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu"),
        ArchiveError("XL.L01/2014-08-03: unreadable MiniSEED file"),
        ValueError("illegal memory access in a config value"),  # no CUDA in it
    ]
    for exc in benign:
        assert not fatal_device_error(exc), exc


def _copy_run(finished_run, tmp_path) -> tuple[Path, list[str]]:
    """A copy of the finished run's directory and its detect units."""
    import shutil

    cfg, _, _ = finished_run
    run = tmp_path / "run"
    shutil.copytree(Path(cfg.run.out_dir), run)
    units = sorted(pd.read_parquet(run / "status" / "detect.parquet").unit)
    return run, units


def test_a_fatal_gpu_error_stops_the_task_and_leaves_the_rest(finished_run, tmp_path, monkeypatch):
    """A unit that hits a fatal CUDA error: it is recorded failed (the reason says so), the task's
    later units are not run (no status: a rerun does them) and the task raises DeviceLost (an
    array task or ``quakescale detect`` exits non-zero); an error that is not fatal to the device
    fails its unit only, as before."""
    from quakescale.errors import DeviceLost
    from quakescale.hpc import stages
    from quakescale.rundir import RunDir

    run, units = _copy_run(finished_run, tmp_path)
    ran = []

    def fake_detect(cfg, rd, unit, **ctx):
        ran.append(unit)
        if unit == units[1]:
            raise RuntimeError(CUDA_FAULT)
        return "ok", 1, ""

    monkeypatch.setitem(stages._TASKS, "detect", fake_detect)
    parts = RunDir(run).status_parts_dir("detect")
    before = set(parts.glob("*.parquet")) if parts.exists() else set()
    with pytest.raises(DeviceLost, match=f"detect {units[1]}: fatal GPU error.*illegal memory access.*2 unit"):
        stages.run_task(run, "detect", units[:4], force=True)
    assert ran == units[:2]  # units[2:4] never ran on the broken context
    new = set(parts.glob("*.parquet")) - before
    assert len(new) == 1
    rows = pd.read_parquet(new.pop()).set_index("unit")
    assert list(rows.index) == units[:2]
    assert rows.loc[units[0], "state"] == "ok"
    assert rows.loc[units[1], "state"] == "failed" and rows.loc[units[1], "reason"].startswith("fatal GPU error")

    ran.clear()

    def fails_otherwise(cfg, rd, unit, **ctx):
        import torch

        ran.append(unit)
        if unit == units[1]:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return "ok", 1, ""

    monkeypatch.setitem(stages._TASKS, "detect", fails_otherwise)
    rows = stages.run_task(run, "detect", units[:4], force=True)
    assert ran == units[:4] and [r["state"] for r in rows] == ["ok", "failed", "ok", "ok"]


def test_a_dask_worker_with_a_lost_gpu_is_replaced_and_the_task_rerun(finished_run, tmp_path):
    """On a Dask worker, a fatal CUDA error ends the worker process (exit 75): its nanny starts a
    fresh one, the scheduler runs the task again there, and the station-days are picked.  (No GPU
    here: the first worker's detect task is replaced by one that raises what torch raises after
    an illegal memory access.)"""
    from distributed import Client, LocalCluster

    from quakescale.hpc.stages import run_task

    run, units = _copy_run(finished_run, tmp_path)
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    try:

        def break_the_gpu():
            from quakescale.hpc import stages

            def faulty(cfg, rd, unit, **ctx):
                raise RuntimeError(CUDA_FAULT)

            stages._TASKS["detect"] = faulty

        client.run(break_the_gpu)
        (pid0,) = client.run(os.getpid).values()
        rows = client.submit(run_task, str(run), "detect", units[:2], True, True, pure=False).result(timeout=240)
        (pid1,) = client.run(os.getpid).values()
    finally:
        client.close()
        cluster.close()
    assert pid1 != pid0  # the worker that lost its GPU was replaced
    assert [r["state"] for r in rows] == ["ok", "ok"]  # and the fresh one picked both station-days
    parts = [pd.read_parquet(f) for f in (run / "status" / "detect").glob("*.parquet")]
    assert any("fatal GPU error" in " ".join(p.reason) for p in parts)  # the lost attempt is on record


def test_a_station_day_that_always_kills_its_gpu_fails_alone(finished_run, tmp_path):
    """A fatal GPU error on every try (a Dask worker plugin breaks each fresh worker's detect task
    for one station-day): after the scheduler's allowed failures that task ends in KilledWorker,
    and so does the task that was running beside it on the same worker each time it died (Dask
    blames every task a dying worker holds); run again alone, one after the other, the innocent
    task is picked, the station-day keeps its failed status, and the stage's rows come back (the
    run then reports it and exits 1) instead of the whole run raising."""
    import dask
    from distributed import Client, LocalCluster
    from distributed.diagnostics.plugin import WorkerPlugin

    from quakescale.config import load_config as load
    from quakescale.hpc.pipeline import _map_chunks
    from quakescale.rundir import RunDir

    run, units = _copy_run(finished_run, tmp_path)
    bad = units[0]

    class BrokenGpu(WorkerPlugin):
        def setup(self, worker):
            from quakescale.hpc import stages

            real = stages._TASKS["detect"]

            def faulty(cfg, rd, unit, **ctx):
                if unit == bad:
                    time.sleep(1.0)
                    raise RuntimeError(CUDA_FAULT)
                if unit == units[1]:
                    time.sleep(3.0)  # still running when the worker dies beside it
                return real(cfg, rd, unit, **ctx)

            stages._TASKS["detect"] = faulty

    logs = []
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        # one worker, two threads: both tasks run on it together, and it dies under both
        cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None)
        client = Client(cluster)
        try:
            client.register_plugin(BrokenGpu())
            cfg = load(run / "config.yaml")
            rows = _map_chunks(cfg, RunDir(run), "detect", [[bad], units[1:3]], True, client, logs.append)
        finally:
            client.close()
            cluster.close()
    assert sorted(r["unit"] for r in rows) == units[1:3] and all(r["state"] == "ok" for r in rows), logs
    assert any("2 tasks ended with their workers; each run again alone" in line for line in logs), logs
    assert sum("took down its worker on every try" in line for line in logs) == 1, logs
    st = RunDir(run).read_status("detect").set_index("unit")
    assert st.loc[bad, "state"] == "failed" and "fatal GPU error" in st.loc[bad, "reason"]


def test_array_tasks_chunk_the_stage_units_once(finished_run):
    """The sbatch arrays and ``quakescale STAGE --chunk K`` cut the same unit lists with the same
    rule: the chunks of the array tasks cover every unit of the run's plan exactly once."""
    from quakescale.hpc.array import render_jobs
    from quakescale.hpc.stages import STAGE, stage_chunk
    from quakescale.rundir import RunDir

    cfg, _, _ = finished_run
    rd = RunDir(cfg.run.out_dir)
    plan_units = sorted(pd.read_parquet(rd.plan)["unit"])
    units = {s.name: len(s.units(cfg, rd)) for s in STAGE.values() if s.fanned}
    assert units == {"detect": len(plan_units), "xcorr": 8}
    specs = render_jobs(cfg, units, run_dir=rd.root, write=False)
    for stage in ("detect", "xcorr"):
        n_tasks = sum(s.n_tasks for s in specs if s.stage == stage)
        got = [u for k in range(n_tasks) for u in stage_chunk(cfg, rd, stage, k)]
        assert got == sorted(STAGE[stage].units(cfg, rd))
        size = cfg.compute.chunk_size if stage == "detect" else 1
        assert n_tasks == -(-len(got) // size) and len(stage_chunk(cfg, rd, stage, 0)) == size
        with pytest.raises(IndexError, match=f"{stage}: chunk {n_tasks} out of range"):
            stage_chunk(cfg, rd, stage, n_tasks)
    assert sorted(STAGE["detect"].units(cfg, rd)) == plan_units


def _threads_in_a_detect_task():
    import torch

    from quakescale.hpc.stages import host_threads

    before = torch.get_num_threads()
    with host_threads():
        inside = torch.get_num_threads()
    return before, inside, torch.get_num_threads()


def test_a_gpu_pool_worker_gives_a_detect_task_all_its_threads():
    """Dask's nanny starts workers with OMP_NUM_THREADS=1 (torch: 1 thread).  A task holding a
    worker's whole GPU resource (the slurm GPU pool: one such task at a time) gets all the
    worker's threads for its CPU steps, restored after; a task that did not ask for the GPU (it may
    share the worker with others), a CPU worker's task, and a process that is no Dask worker keep
    theirs."""
    from distributed import Client, LocalCluster

    for worker_res, task_res, expect in (({"GPU": 1}, {"GPU": 1}, 3), ({"GPU": 1}, None, 1), (None, None, 1)):
        with (
            LocalCluster(
                n_workers=1, threads_per_worker=3, processes=True, resources=worker_res, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            fut = client.submit(_threads_in_a_detect_task, pure=False, resources=task_res)
            before, inside, after = fut.result()
        assert (before, inside, after) == (1, expect, 1), (worker_res, task_res)
    here = _threads_in_a_detect_task()
    assert here[0] == here[1] == here[2]


def _all_picks(run_dir: Path) -> pd.DataFrame:
    df = pd.concat([pd.read_parquet(f) for f in sorted((run_dir / "picks").rglob("*.parquet"))], ignore_index=True)
    return df.sort_values(["station_id", "time", "phase"], kind="stable").reset_index(drop=True)


def test_local_backend_with_a_gpu_detects_on_one_worker_with_every_cpu(
    finished_run, small_world, tmp_path, monkeypatch
):
    """The local backend on a GPU machine: detection goes to one worker that holds every CPU and
    the GPU resource (one CUDA context, one station-day on the GPU at a time) instead of to the
    CPU-count workers; the picks are those of the usual local run.  (No GPU here: the networks
    run on the CPU, the cluster layout is the GPU one.)"""
    from quakescale.hpc import pipeline as P

    monkeypatch.setattr(P, "networks_on_gpu", lambda cfg: True)
    ref_cfg, _, _ = finished_run
    cfg = load_config(small_world / "config.yaml")
    cfg.run.out_dir = tmp_path / "run"
    cfg.compute.n_workers = 2
    cfg.compute.chunk_size = 2
    logs = []
    P.run_pipeline(cfg, stages=["plan", "detect"], echo=logs.append)
    assert any("GPU: one worker, every CPU" in line for line in logs), logs
    status = pd.read_parquet(Path(cfg.run.out_dir) / "status" / "detect.parquet")
    assert len(status) and set(status.state) <= {"ok", "no_data", "skipped"}
    a, b = _all_picks(Path(ref_cfg.run.out_dir)), _all_picks(Path(cfg.run.out_dir))
    pd.testing.assert_frame_equal(a.drop(columns=["time"]), b.drop(columns=["time"]))
    assert (a.time - b.time).abs().max() == pd.Timedelta(0)
