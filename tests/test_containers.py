"""Apptainer recipes (parsed with spython) and the apptainer command lines built for jobs."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest
from spython.main.parse.parsers import SingularityParser

from quakescale.config import parse_config
from quakescale.hpc.cluster import make_cluster, slurm_cluster_kwargs
from quakescale.hpc.containers import (
    ContainerError,
    apptainer_exec,
    config_binds,
    python_argv,
    quakescale_argv,
    shell_line,
    wrap,
)

REPO = Path(__file__).resolve().parents[1]


def _recipe(name):
    parser = SingularityParser(str(REPO / "containers" / name))
    assert list(parser.recipe) == ["spython-base"]  # one stage
    return parser.recipe["spython-base"]


def _files(recipe):
    return dict(line.split() for line in recipe.files)


def test_gpu_recipe_sections():
    r = _recipe("gpu.def")
    assert re.fullmatch(r"pytorch/pytorch:2\.\d+\.\d+-cuda12\.\d+-cudnn9-runtime", r.fromHeader), r.fromHeader
    assert r.cmd == 'exec quakescale "$@"'  # %runscript = quakescale
    assert r.test == "/bin/bash /tests.sh" and 'echo "quakescale selfcheck" >> /tests.sh' in r.install  # %test
    files = _files(r)
    assert (
        files["pipeline"] == "/opt/quakescale/src/pipeline"
        and files["pyproject.toml"] == "/opt/quakescale/src/pyproject.toml"
    )
    assert "python -m pip install /opt/quakescale/src" in r.install
    assert not any(
        "torch" in line and "install" in line and "pip" in line for line in r.install
    )  # torch from the base image
    assert "PYTHONUNBUFFERED=1" in r.environ


def test_cpu_recipe_sections():
    r = _recipe("cpu.def")
    assert re.fullmatch(r"python:3\.1\d-slim(-\w+)?", r.fromHeader), r.fromHeader
    assert r.cmd == 'exec quakescale "$@"'
    assert 'echo "quakescale selfcheck" >> /tests.sh' in r.install
    assert "apt-get install -y --no-install-recommends libgfortran5" in r.install
    assert "python -m pip install --index-url https://download.pytorch.org/whl/cpu torch" in r.install
    files = _files(r)
    assert files["containers/bin"] == "/opt/quakescale/bin"
    # the user's executables from containers/bin are installed, the builtin backends are in the package
    assert any(line.startswith("install -m 0755") and "/usr/local/bin/" in line for line in r.install)
    assert "pipeline" in files


@pytest.mark.parametrize("name", ["gpu.def", "cpu.def"])
def test_recipe_file_sources_exist(name):
    for src in _files(_recipe(name)):
        assert (REPO / src).exists(), f"{name}: %files source {src} missing from the repository"


def test_readme_names_where_to_get_the_programs():
    text = (REPO / "containers" / "README.md").read_text()
    assert "USGS" in text or "U.S. Geological Survey" in text
    assert "Waldhauser" in text and "LDEO" in text and "containers/bin/" in text
    assert (REPO / "containers" / "bin" / ".gitkeep").exists()


def test_apptainer_exec_command_lines():
    cmd = ["quakescale", "detect", "/runs/r 1/config.yaml", "--chunk", "3"]
    args = apptainer_exec(
        "/img/gpu.sif", cmd, gpu=True, binds=["/runs/r 1", "/data/sds", "/runs/r 1", "/scratch:/mnt:ro"]
    )
    assert args == [
        "apptainer",
        "exec",
        "--nv",
        "--bind",
        "/runs/r 1,/data/sds,/scratch:/mnt:ro",
        "/img/gpu.sif",
        "quakescale",
        "detect",
        "/runs/r 1/config.yaml",
        "--chunk",
        "3",
    ]
    assert shell_line(args) == (
        "apptainer exec --nv --bind '/runs/r 1,/data/sds,/scratch:/mnt:ro' /img/gpu.sif "
        "quakescale detect '/runs/r 1/config.yaml' --chunk 3"
    )
    assert shlex.split(shell_line(args)) == args
    assert apptainer_exec("/img/cpu.sif", ["python"]) == ["apptainer", "exec", "/img/cpu.sif", "python"]
    with pytest.raises(ContainerError, match="comma"):
        apptainer_exec("/img/cpu.sif", ["python"], binds=["/a,b"])
    with pytest.raises(ContainerError, match="needs a command"):
        apptainer_exec("/img/cpu.sif", [])


def _cfg(**compute):
    return parse_config(
        {
            "run": {"out_dir": "/runs/ludian"},
            "archive": {
                "sds_root": "/data/sds",
                "inventory": "/data/meta/stations.xml",
                "truth": "/data/truth",
                "start": "2014-08-03",
                "end": "2014-08-03",
            },
            "velocity": {"model": "/models/ludian.nd"},
            "compute": compute,
        }
    )


def test_pool_commands_with_and_without_images():
    cfg = _cfg(image_gpu="/img/gpu.sif", image_cpu="/img/cpu.sif", binds=["/scratch", "/data/sds"])
    binds = config_binds(cfg, "/runs/ludian")
    assert binds == ["/runs/ludian", "/data/sds", "/data/meta", "/data/truth", "/models", "/scratch"]
    b = ",".join(binds)
    assert quakescale_argv(cfg.compute, "gpu", ["detect", "/runs/ludian/config.yaml", "--chunk", "7"], binds) == [
        "apptainer",
        "exec",
        "--nv",
        "--bind",
        b,
        "/img/gpu.sif",
        "quakescale",
        "detect",
        "/runs/ludian/config.yaml",
        "--chunk",
        "7",
    ]
    assert quakescale_argv(cfg.compute, "cpu", ["relocate", "/runs/ludian/config.yaml"], binds) == [
        "apptainer",
        "exec",
        "--bind",
        b,
        "/img/cpu.sif",
        "quakescale",
        "relocate",
        "/runs/ludian/config.yaml",
    ]
    assert python_argv(cfg.compute, "gpu", binds) == [
        "apptainer",
        "exec",
        "--nv",
        "--bind",
        b,
        "/img/gpu.sif",
        "python",
    ]
    kw = slurm_cluster_kwargs(cfg.compute, "cpu", binds=binds)
    assert kw["python"] == f"apptainer exec --bind {b} /img/cpu.sif python"
    # make_cluster(cfg, ...) binds the config's paths itself; the rendered worker job runs in the image
    cfg.compute.backend = "slurm"
    cluster = make_cluster(cfg, "gpu", adapt=False)  # binds from run.out_dir; no logs dir created
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert (
        f"\napptainer exec --nv --bind {b} /img/gpu.sif python -m distributed.cli.dask_worker tcp://127.0.0.1:"
        in script
    )
    assert "#SBATCH -J qs-quakescale-run-gpu" in script
    # no images: host interpreter, no apptainer
    plain = _cfg()
    assert quakescale_argv(plain.compute, "gpu", ["detect", "c.yaml"]) == [
        sys.executable,
        "-m",
        "quakescale",
        "detect",
        "c.yaml",
    ]
    assert python_argv(plain.compute, "cpu") == [sys.executable]
    assert wrap(plain.compute, "gpu", ["true"]) == ["true"]
    plain.compute.python = "/opt/py/bin/python3"
    assert python_argv(plain.compute, "cpu") == ["/opt/py/bin/python3"]


def test_unbindable_paths_are_named():
    cfg = _cfg()
    with pytest.raises(ContainerError, match="run directory"):
        config_binds(cfg, "/runs/a,b")
    cfg.compute.binds = ["/ok", "/x,y"]
    with pytest.raises(ContainerError, match=r"compute.binds\[1\]"):
        config_binds(cfg, "/runs/ok")
