"""Dask clusters for the ``local`` and ``slurm`` backends.

``make_cluster(cfg.compute, pool="gpu"|"cpu")``:
- ``local``: a ``dask.distributed.LocalCluster`` sized from the machine (one pool serves all;
  with ``local_gpu``, the detect stage's own cluster when its networks run on this machine's GPU);
- ``slurm``: a dask-jobqueue ``SLURMCluster`` for one pool, adaptive between the pool's
  ``min_jobs`` and ``max_jobs``.  The GPU pool's workers carry the resource ``GPU=1``
  (``stages.POOL_RESOURCES``) so that detection tasks, submitted with
  ``resources=STAGE["detect"].resources(compute)``, land only there;
  the worker's Python is wrapped in ``apptainer exec --nv --bind ... IMAGE python`` when
  ``compute.image_gpu`` (or ``image_cpu`` for the CPU pool) is set.  Scheduler and workers use
  ``compute.interface`` (``lo`` for a single-node test cluster, ``ib0``/``eth0`` on a real one).

The job script of a worker comes from dask-jobqueue's template, filled with the same prologue and
placement directives (partition, account, qos, gres, extras; quoted) as the sbatch array scripts
of ``array.py`` -- see ``jobscript.py``.  Lost workers: the scheduler reruns their tasks on other
workers (up to ``distributed.scheduler.allowed-failures`` times); workers get a ``--lifetime``
a few minutes short of the walltime so adaptive scaling replaces them before SLURM kills them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

import psutil
from dask.distributed import LocalCluster
from dask_jobqueue import SLURMCluster
from dask_jobqueue.slurm import SLURMJob

from .containers import POOLS, config_binds, python_argv, shell_line
from .jobscript import SlurmJobScript, check_walltime, directive_quote, memory_mb, placement_directives, prologue_lines
from .stages import POOL_RESOURCES

__all__ = ["QuakeScaleSLURMJob", "default_local_workers", "walltime_seconds", "slurm_cluster_kwargs", "make_cluster"]


class QuakeScaleSLURMJob(SLURMJob):
    """dask-jobqueue's SLURM job whose script is rendered by :class:`jobscript.SlurmJobScript`
    from ``jobs/dask-worker.sbatch.tmpl`` -- the same renderer as the sbatch array scripts.
    dask-jobqueue still decides the directives' content (cores, memory, walltime, job name) and
    the worker command; the extras/prologue come from ``jobscript`` (see
    :func:`slurm_cluster_kwargs`)."""

    def job_script(self) -> str:
        directives = [line.split(None, 1)[1] for line in self.job_header.splitlines() if line.startswith("#SBATCH ")]
        return SlurmJobScript(
            name=self.job_name or "dask-worker",
            command=(),
            command_text=self._command_template,
            directives=directives,
            prologue=[p for p in self._job_script_prologue if p],
            template="dask-worker.sbatch.tmpl",
            shebang=self.shebang,
        ).render()


# Stage tasks hold large unmanaged buffers (torch, waveforms); Dask's memory pause would freeze a
# worker at 80 % of its limit with no managed data to spill.  SLURM enforces the job's memory.
WORKER_ENV = [
    "export DASK_DISTRIBUTED__WORKER__MEMORY__TARGET=False",
    "export DASK_DISTRIBUTED__WORKER__MEMORY__SPILL=False",
    "export DASK_DISTRIBUTED__WORKER__MEMORY__PAUSE=False",
]


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_local_workers(threads_per_worker: int = 1, memory_per_worker_bytes: float = 2e9) -> int:
    """Workers for a LocalCluster: CPUs / threads, but not more than memory / 2 GB, at least 1."""
    ncpu = _cpus()
    try:
        mem = psutil.virtual_memory().total
    except Exception:  # memory unknown: CPUs decide
        mem = float("inf")
    return max(1, min(ncpu // max(1, threads_per_worker), int(mem // memory_per_worker_bytes)))


def walltime_seconds(walltime: str) -> int:
    """SLURM time string (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``) -> seconds."""
    s = check_walltime(walltime)
    days = 0
    if "-" in s:
        d, s = s.split("-", 1)
        days = int(d)
        parts = [int(x) for x in s.split(":")] + [0] * (3 - len(s.split(":")))
        h, m, sec = parts[:3]
    else:
        parts = [int(x) for x in s.split(":")]
        if len(parts) == 1:
            h, m, sec = 0, parts[0], 0
        elif len(parts) == 2:
            h, m, sec = 0, parts[0], parts[1]
        else:
            h, m, sec = parts
    return ((days * 24 + h) * 60 + m) * 60 + sec


def _pool(compute, pool: str):
    if pool not in POOLS:
        raise ValueError(f"pool {pool!r}: allowed values: {list(POOLS)}")
    return compute.gpu_pool if pool == "gpu" else compute.cpu_pool


def slurm_cluster_kwargs(
    compute, pool: str = "cpu", *, run_dir=None, binds: Iterable = (), name: str = "quakescale"
) -> dict:
    """Keyword arguments of ``dask_jobqueue.SLURMCluster`` for one pool of ``compute``."""
    p = _pool(compute, pool)
    field = f"compute.{pool}_pool"
    memory_mb(p.memory, field + ".memory")  # validate early, with the field named
    walltime = check_walltime(p.walltime, field + ".walltime")
    directives = placement_directives(p, field)
    if run_dir is not None:
        logs = Path(run_dir).resolve() / "logs" / "dask"
        logs.mkdir(parents=True, exist_ok=True)
        directives.append(f"--output={directive_quote(logs / f'{pool}-%j.out', 'run directory')}")
    extra_args: list[str] = []
    if POOL_RESOURCES[pool]:  # what the pool's stages ask for (Stage.resources)
        extra_args += ["--resources", ",".join(f"{k}={v}" for k, v in POOL_RESOURCES[pool].items())]
    wall_s = walltime_seconds(walltime)
    if wall_s > 900:
        extra_args += ["--lifetime", f"{wall_s - 300}s", "--lifetime-stagger", "60s"]
    safe_name = re.sub(r"[^A-Za-z0-9_.\-]+", "_", name)[:40]
    return dict(
        cores=int(p.cores),
        processes=1,
        memory=str(p.memory),
        walltime=walltime,
        queue=None,  # partition/account are written by placement_directives, quoted
        account=None,
        job_name=f"qs-{safe_name}-{pool}",
        interface=compute.interface,
        job_script_prologue=prologue_lines(compute.prologue) + WORKER_ENV,
        job_extra_directives=directives,
        worker_extra_args=extra_args,
        python=shell_line(python_argv(compute, pool, binds)),
        scheduler_options={"dashboard_address": ":0"},
        log_directory=None,
        job_cls=QuakeScaleSLURMJob,
    )


def make_cluster(
    compute,
    pool: str = "cpu",
    *,
    run_dir=None,
    binds: Iterable | None = None,
    name: str | None = None,
    adapt: bool = True,
    local_gpu: bool = False,
    **overrides,
):
    """A Dask cluster for ``compute.backend``: LocalCluster (local) or SLURMCluster (slurm).

    ``local_gpu`` (local backend, the networks on this machine's GPU): one worker process with all
    the CPUs (``compute.n_workers`` x ``threads_per_worker`` where set) as threads and the ``GPU``
    resource that detect tasks then ask for, as a slurm GPU
    job is: one CUDA context and one copy of the model, one station-day on the GPU at a time, the
    CPU steps on all threads (:func:`~quakescale.hpc.stages.host_threads`), instead of a CUDA
    context and ~1 GB of batches in each of the CPU-count workers.

    ``compute``: ``cfg.compute``, or the whole ``cfg`` (then the container binds default to
    ``containers.config_binds(cfg, run_dir)`` and the job name to ``cfg.run.name``).
    ``pool`` picks the SLURM pool (``gpu`` for detection, ``cpu`` for the rest); the local backend
    has one pool (and ``local_gpu``, below).  ``binds``: bind paths of the container.  ``overrides``
    go to the cluster class.
    The ``array`` backend has no cluster (``array.py``).
    """
    if hasattr(compute, "compute"):  # a whole Config
        cfg = compute
        compute = cfg.compute
        if binds is None and (compute.image_gpu or compute.image_cpu):
            binds = config_binds(cfg, run_dir if run_dir is not None else cfg.run.out_dir)
        name = name or cfg.run.name
    binds = binds or ()
    name = name or "quakescale"
    if compute.backend == "local":
        kw = dict(
            n_workers=compute.n_workers or default_local_workers(compute.threads_per_worker),
            threads_per_worker=compute.threads_per_worker,
            processes=True,
            dashboard_address=":0",
        )
        if local_gpu:
            cpus = compute.n_workers * compute.threads_per_worker if compute.n_workers else _cpus()
            kw.update(n_workers=1, threads_per_worker=max(1, cpus), resources=dict(POOL_RESOURCES["gpu"]))
        if compute.interface:
            kw["interface"] = compute.interface
        kw.update(overrides)
        return LocalCluster(**kw)
    if compute.backend == "slurm":
        kw = slurm_cluster_kwargs(compute, pool, run_dir=run_dir, binds=binds, name=name)
        kw.update(overrides)
        cluster = SLURMCluster(**kw)
        if adapt:
            p = _pool(compute, pool)
            cluster.adapt(minimum_jobs=p.min_jobs, maximum_jobs=max(p.max_jobs, p.min_jobs))
        return cluster
    raise ValueError(
        f"compute.backend {compute.backend!r} has no Dask cluster (array mode submits sbatch job arrays: "
        "quakescale submit)"
    )
