"""Job-script rendering, quoting, chunking, squeue parsing and cluster kwargs (no SLURM needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from quakescale.config import parse_config
from quakescale.hpc import array, stages
from quakescale.hpc.cluster import make_cluster, slurm_cluster_kwargs, walltime_seconds
from quakescale.hpc.jobscript import (
    JobScriptError,
    SlurmJobScript,
    check_walltime,
    directive_quote,
    memory_mb,
    placement_directives,
    render_template,
)
from quakescale.rundir import RunDir

NASTY = [
    "a b",
    "it's",
    'say "hi"',
    "$(touch PWNED)",
    "`touch PWNED2`",
    "x;touch PWNED3",
    "#hash",
    "back\\slash",
    "*",
    "~",
]


def _cfg(run_dir, name="test run", **compute):
    return parse_config(
        {
            "run": {"name": name, "out_dir": str(run_dir)},
            "archive": {
                "sds_root": "/data/sds",
                "inventory": "/data/meta/stations.xml",
                "start": "2014-08-03",
                "end": "2014-08-04",
            },
            "compute": compute,
        }
    )


# -- values and directives -------------------------------------------------------------------


def test_directive_quote_plain_and_quoted():
    assert directive_quote("gpu", "f") == "gpu"
    assert directive_quote("/runs/a-1/x_%j.out", "f") == "/runs/a-1/x_%j.out"
    assert directive_quote("my lab", "f") == '"my lab"'
    assert directive_quote('a"b\\c#d', "f") == '"a\\"b\\\\c#d"'
    with pytest.raises(JobScriptError, match="compute.gpu_pool.partition"):
        directive_quote("gpu\nrm -rf /", "compute.gpu_pool.partition")


def test_memory_and_walltime():
    assert memory_mb("16GB") == 15259  # 16e9 bytes, rounded up to MiB
    assert memory_mb("4GiB") == 4096
    assert memory_mb("500 MB") == 477
    assert memory_mb("1024MiB") == 1024
    with pytest.raises(JobScriptError, match="compute.cpu_pool.memory"):
        memory_mb("lots", "compute.cpu_pool.memory")
    assert check_walltime("04:00:00") == "04:00:00"
    assert walltime_seconds("04:00:00") == 14400
    assert walltime_seconds("1-02:00:00") == 93600
    assert walltime_seconds("30") == 1800
    assert walltime_seconds("2-3") == 2 * 86400 + 3 * 3600
    with pytest.raises(JobScriptError, match="walltime"):
        check_walltime("4 hours")


def test_placement_directives_quote_every_config_value(tmp_path):
    cfg = _cfg(
        tmp_path,
        gpu_pool={
            "partition": "gpu",
            "account": "geo lab",
            "qos": "high",
            "gpus": 1,
            "job_extra_directives": ["--constraint=a100|h100", "--exclusive", "-C fast node", "#SBATCH --comment=x y"],
        },
    )
    assert placement_directives(cfg.compute.gpu_pool) == [
        "--partition=gpu",
        '--account="geo lab"',
        "--qos=high",
        "--gres=gpu:1",
        '--constraint="a100|h100"',
        "--exclusive",
        '-C "fast node"',
        '--comment="x y"',
    ]
    cfg.compute.cpu_pool.job_extra_directives = ["rm -rf /"]
    with pytest.raises(JobScriptError, match=r"compute.cpu_pool.job_extra_directives\[0\]"):
        placement_directives(cfg.compute.cpu_pool, "compute.cpu_pool")


def test_template_placeholders():
    assert render_template("a {{x}} $HOME ${Y} {{ x }}", {"x": 1}) == "a 1 $HOME ${Y} 1"
    with pytest.raises(JobScriptError, match="missing"):
        render_template("{{missing}}", {"x": 1})


def test_rendered_array_script_passes_arguments_exactly(tmp_path):
    """bash runs the rendered script: the command gets exactly its arguments (no injection) and
    --chunk = array index + offset; the prologue and env run first."""
    probe = [sys.executable, "-c", "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ['QS_X']]))"]
    cfg = _cfg(tmp_path, prologue=["export QS_PROLOGUE=1"])
    js = SlurmJobScript.for_pool(
        cfg.compute.cpu_pool,
        name="n a m e",
        command=probe + NASTY,
        prologue=cfg.compute.prologue,
        array="0-9%3",
        template="array.sbatch.tmpl",
        extra={"chunk_offset": 1000},
        env={"QS_X": "$(touch PWNED4) it's"},
        chdir=tmp_path / "a dir",
        output=tmp_path / "o %A.out",
    )
    script = js.write(tmp_path / "job.sbatch")
    text = script.read_text()
    assert text.startswith('#!/usr/bin/env bash\n#SBATCH --job-name="n a m e"\n')
    assert f'#SBATCH --chdir="{tmp_path}/a dir"' in text and "#SBATCH --array=0-9%3" in text
    assert os.access(script, os.X_OK)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    r = subprocess.run(
        ["bash", str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "SLURM_ARRAY_TASK_ID": "7"},
    )
    assert r.returncode == 0, r.stderr
    args, env_x = json.loads(r.stdout)
    assert args == NASTY + ["--chunk", "1007"]
    assert env_x == "$(touch PWNED4) it's"
    assert not list(tmp_path.glob("PWNED*"))
    # without SLURM_ARRAY_TASK_ID the script refuses to run
    env = {k: v for k, v in os.environ.items() if k != "SLURM_ARRAY_TASK_ID"}
    r = subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "array job" in r.stderr


def test_prologue_must_be_single_lines(tmp_path):
    cfg = _cfg(tmp_path, prologue=["module load cuda\nrm -rf /"])
    with pytest.raises(JobScriptError, match=r"compute.prologue\[0\]"):
        array.render_jobs(cfg, {"detect": 1, "xcorr": 1})


# -- chunks and array rendering ----------------------------------------------------------------


def test_chunks_cover_units_once():
    units = [f"s{i}" for i in range(103)]
    n = stages.n_chunks(len(units), 16)
    assert n == 7
    got = [u for c in range(n) for u in stages.chunk_units(units, 16, c)]
    assert got == units
    assert stages.chunks(units, 16) == [stages.chunk_units(units, 16, c) for c in range(n)]  # Dask map == array tasks
    assert stages.chunk_bounds(6, 16, 103) == (96, 103)
    with pytest.raises(IndexError, match="chunk 7 out of range: 103 units in chunks of 16 give chunks 0..6"):
        stages.chunk_units(units, 16, 7)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        stages.chunks(units, 0)
    assert array.array_parts(2500, 1000) == [(0, 1000), (1000, 1000), (2000, 500)]
    assert array.array_parts(0, 1000) == []


def test_render_jobs_chain_arrays_and_throttle(tmp_path):
    run = tmp_path / "my run"
    cfg = _cfg(
        run,
        name="Ludian 2014/08",
        chunk_size=16,
        array_throttle=50,
        gpu_pool={"partition": "gpu", "gpus": 1, "memory": "32GB", "walltime": "02:00:00", "cores": 8},
        cpu_pool={"partition": "cpu", "account": "seis"},
    )
    specs = array.render_jobs(cfg, {"detect": 40_000, "xcorr": 30}, max_array_size=1000)
    assert [(s.stage, s.part, s.array, s.chunk_offset, s.after) for s in specs] == [
        ("detect", 0, "0-999%16", 0, []),
        ("detect", 1, "0-999%16", 1000, []),
        ("detect", 2, "0-499%16", 2000, []),
        ("associate", 0, None, 0, ["detect"]),
        ("locate", 0, None, 0, ["associate"]),
        ("xcorr", 0, "0-29%50", 0, ["locate"]),
        ("relocate", 0, None, 0, ["xcorr"]),
        ("catalog", 0, None, 0, ["relocate"]),
    ]
    assert sum(s.n_tasks for s in specs if s.stage == "detect") == 2500  # 40000 / 16
    names = sorted(p.name for p in (run / "jobs").glob("*.sbatch"))
    assert names == [
        "01-detect.p000.sbatch",
        "01-detect.p001.sbatch",
        "01-detect.p002.sbatch",
        "02-associate.sbatch",
        "03-locate.sbatch",
        "04-xcorr.p000.sbatch",
        "05-relocate.sbatch",
        "06-catalog.sbatch",
    ]
    d1 = (run / "jobs" / "01-detect.p001.sbatch").read_text()
    for line in [
        "#SBATCH --job-name=qs-Ludian_2014_08-detect",
        "#SBATCH --partition=gpu",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=30518M",
        "#SBATCH --time=02:00:00",
        "#SBATCH --array=0-999%16",
        f'#SBATCH --output="{run}/logs/detect-%A_%a.out"',
        "chunk=$((SLURM_ARRAY_TASK_ID + 1000))",
        f"exec {sys.executable} -m quakescale detect '{run}/config.yaml' --chunk \"${{chunk}}\"",
    ]:
        assert line in d1, line
    loc = (run / "jobs" / "03-locate.sbatch").read_text()
    assert "#SBATCH --account=seis" in loc and "--gres" not in loc and "--array" not in loc
    assert f"exec {sys.executable} -m quakescale locate '{run}/config.yaml'\n" in loc
    plan = json.loads((run / "jobs" / "jobs.json").read_text())
    assert plan["units"] == {"detect": 40000, "xcorr": 30} and len(plan["jobs"]) == 8
    # cc disabled: no xcorr job, relocate waits for locate
    cfg.relocate.cc.enabled = False
    specs = array.render_jobs(cfg, {"detect": 10}, write=False)
    assert [(s.stage, s.after) for s in specs][-2:] == [("relocate", ["locate"]), ("catalog", ["relocate"])]


def test_render_jobs_with_images_uses_apptainer(tmp_path):
    run = tmp_path / "run"
    cfg = _cfg(run, image_gpu="/img/qs-gpu.sif", image_cpu="/img/qs-cpu.sif", binds=["/scratch"])
    specs = array.render_jobs(cfg, {"detect": 3, "xcorr": 2})
    det = specs[0].script.read_text()
    assert (
        f"exec apptainer exec --nv --bind {run},/data/sds,/data/meta,/scratch /img/qs-gpu.sif "
        f'quakescale detect {run}/config.yaml --chunk "${{chunk}}"'
    ) in det
    rel = [s for s in specs if s.stage == "relocate"][0].script.read_text()
    assert (
        f"exec apptainer exec --bind {run},/data/sds,/data/meta,/scratch /img/qs-cpu.sif quakescale relocate "
        f"{run}/config.yaml\n"
    ) in rel


def test_submit_reports_refusal(tmp_path):
    cfg = _cfg(tmp_path / "run")
    specs = array.render_jobs(cfg, {"detect": 1, "xcorr": 1})
    with pytest.raises(array.SubmitError, match="01-detect.p000.sbatch"):
        array.submit(specs, sbatch="false")
    with pytest.raises(array.SubmitError, match="could not run"):
        array.submit(specs, sbatch=str(tmp_path / "no-such-sbatch"))


# -- squeue and status -----------------------------------------------------------------------

# captured from squeue 22.05 (--noheader --format='%i|%F|%K|%j|%T|%r')
SQUEUE_TEXT = """\
4|4|N/A|qs-run-associate|PENDING|Dependency
5_[2-3]|5|2-3|qs-run-detect|PENDING|Resources
3_[0-9%2]|3|0-9%2|qs-run-detect|PENDING|JobHeldUser
5_0|5|0|qs-run-detect|RUNNING|None
5_1|5|1|qs-run-detect|COMPLETING|None
9_[1,3,5-7]|9|1,3,5-7|odd|name|PENDING|Priority
"""


def test_parse_squeue_and_counts():
    rows = array.parse_squeue(SQUEUE_TEXT)
    assert [(r.array_job_id, r.n_tasks, r.state) for r in rows] == [
        ("4", 1, "PENDING"),
        ("5", 2, "PENDING"),
        ("3", 10, "PENDING"),
        ("5", 1, "RUNNING"),
        ("5", 1, "COMPLETING"),
        ("9", 5, "PENDING"),
    ]
    assert rows[-1].name == "odd|name" and rows[-1].reason == "Priority"
    assert array.count_array_tasks("0-10:2") == 6
    with pytest.raises(ValueError, match="not in the format"):
        array.parse_squeue("garbage line")


def test_stage_status_from_status_tables_and_queue(tmp_path):
    rd = RunDir(tmp_path)
    rd.write_status(
        "detect", [{"unit": f"u{i}", "state": "ok"} for i in range(6)] + [{"unit": "u6", "state": "no_data"}]
    )
    rd.write_status("detect", [{"unit": "u7", "state": "failed", "reason": "corrupt file"}])
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "submitted.json").write_text(json.dumps({"jobs": {"detect": ["5", "3"], "associate": ["4"]}}))
    st = array.stage_status(tmp_path, {"detect": 20}, array.parse_squeue(SQUEUE_TEXT)).set_index("stage")
    assert st.loc["detect"][["units", "done", "failed", "pending", "queued", "running"]].tolist() == [
        20,
        7,
        1,
        12,
        12,
        2,
    ]
    assert st.loc["associate"][["done", "queued", "running"]].tolist() == [0, 1, 0]
    assert (
        st.loc["associate", "pending"] is None or st.loc["associate", "pending"] != st.loc["associate", "pending"]
    )  # unknown
    assert st.loc["detect", "jobs"] == "5,3"
    assert (
        list(st.index) == list(stages.JOB_STAGES) == ["detect", "associate", "locate", "xcorr", "relocate", "catalog"]
    )
    text = array.format_stage_status(st.reset_index()).splitlines()
    assert text[0].split() == ["stage", "units", "done", "failed", "pending", "queued", "running", "jobs"]
    assert text[1].split() == ["detect", "20", "7", "1", "12", "12", "2", "5,3"]
    assert text[2].split() == ["associate", "-", "0", "0", "-", "1", "0", "4"]
    with pytest.raises(RuntimeError, match="not found"):
        array.squeue(squeue_cmd="/no/such/squeue")


# -- Dask clusters ----------------------------------------------------------------------------


def test_slurm_cluster_kwargs_and_job_script(tmp_path):
    from dask_jobqueue import SLURMCluster

    cfg = _cfg(
        tmp_path / "run",
        backend="slurm",
        interface="lo",
        prologue=["module load cuda/12.4"],
        image_gpu="/img/gpu image.sif",
        binds=["/scratch"],
        gpu_pool={
            "partition": "gpu",
            "account": "geo lab",
            "qos": "normal",
            "gpus": 1,
            "memory": "16GB",
            "walltime": "01:00:00",
        },
        cpu_pool={"partition": "cpu", "memory": "8GB", "walltime": "00:10:00", "cores": 2},
    )
    kw = slurm_cluster_kwargs(cfg.compute, "gpu", run_dir=tmp_path / "run", binds=["/data"])
    assert kw["python"] == "apptainer exec --nv --bind /data '/img/gpu image.sif' python"
    assert kw["worker_extra_args"] == ["--resources", "GPU=1", "--lifetime", "3300s", "--lifetime-stagger", "60s"]
    assert kw["job_extra_directives"][:4] == ["--partition=gpu", '--account="geo lab"', "--qos=normal", "--gres=gpu:1"]
    cluster = SLURMCluster(**kw)  # no job is submitted until scaling
    try:
        script = cluster.job_script()
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
    finally:
        cluster.close()
    for line in [
        "#SBATCH --partition=gpu",
        '#SBATCH --account="geo lab"',
        "#SBATCH --gres=gpu:1",
        "#SBATCH -t 01:00:00",
        "#SBATCH --cpus-per-task=4",
        "module load cuda/12.4",
        "apptainer exec --nv --bind /data '/img/gpu image.sif' python -m distributed.cli.dask_worker",
    ]:
        assert line in script, line
    assert "--resources GPU=1" in script and "--interface lo" in script
    cpu = slurm_cluster_kwargs(cfg.compute, "cpu")
    assert (
        cpu["python"] == sys.executable and cpu["worker_extra_args"] == []
    )  # no image, no GPU resource, short walltime
    assert stages.STAGE["detect"].resources(cfg.compute) == {"GPU": 1}
    assert stages.STAGE["locate"].resources(cfg.compute) is None
    with pytest.raises(ValueError, match="pool 'tpu'"):
        slurm_cluster_kwargs(cfg.compute, "tpu")


def test_local_cluster_runs_tasks(tmp_path):
    from dask.distributed import Client

    cfg = _cfg(tmp_path, backend="local", n_workers=1)
    assert stages.STAGE["detect"].resources(cfg.compute) is None
    with make_cluster(cfg.compute) as cluster, Client(cluster) as client:
        assert len(cluster.workers) == 1
        assert client.submit(sum, [1, 2, 3]).result(timeout=60) == 6
    cfg.compute.backend = "array"
    with pytest.raises(ValueError, match="array mode"):
        make_cluster(cfg.compute)


@pytest.mark.parametrize(
    "profile", sorted((Path(__file__).resolve().parents[1] / "slurm" / "profiles").glob("*.yaml")), ids=lambda p: p.name
)
def test_cluster_profiles_are_valid_compute_sections(profile, tmp_path):
    import yaml

    data = yaml.safe_load(profile.read_text())
    cfg = parse_config(
        {
            "run": {"out_dir": str(tmp_path)},
            "archive": {"sds_root": "/d", "inventory": "/d", "start": "2014-08-03", "end": "2014-08-03"},
            "compute": data["compute"],
        },
        source=str(profile),
    )
    specs = array.render_jobs(cfg, {"detect": 100, "xcorr": 5}, write=False)
    assert specs[0].stage == "detect" and specs[0].pool == "gpu"
    kw = slurm_cluster_kwargs(cfg.compute, "gpu")
    assert f"--partition={cfg.compute.gpu_pool.partition}" in kw["job_extra_directives"]
