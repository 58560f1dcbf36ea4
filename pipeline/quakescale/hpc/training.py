"""Region-specific retraining through the pipeline's backends.

``quakescale bootstrap`` / ``quakescale train`` are plain functions (``train.bootstrap``,
``train.trainer``); this module runs them where the config's ``compute.backend`` says, the way
the pipeline's stages run:

- ``local``: in this process;
- ``slurm``: one Dask task on a dask-jobqueue ``SLURMCluster`` -- bootstrap on the CPU pool,
  training on the GPU pool with worker resource ``GPU=1`` (inside ``apptainer exec --nv`` when
  ``compute.image_gpu`` is set);
- ``array``: sbatch scripts rendered into ``RUN/jobs/`` from the same templates as the pipeline's
  jobs (``stage.sbatch.tmpl``, pool directives, prologue, container) -- an optional bootstrap job
  on the CPU partition, then the training job on the GPU partition with ``afterok`` -- submitted,
  job ids returned.  The job runs ``quakescale train CONFIG --backend local ...``.

Training resumes from its checkpoints (``train_from_sample_set(resume=True)``), so a job that hits
its walltime is simply submitted again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from ..config import Config, load_config
from ..rundir import write_json
from ..train.bootstrap import BootstrapParams, build_sample_set
from ..train.trainer import train_from_sample_set
from .array import stage_job, submit
from .containers import bind_list, bind_path, config_binds, quakescale_argv

TRAIN_STAGES = ("bootstrap", "train")


def _under_run(cfg: Config, p) -> Path:
    p = Path(p)
    return (p if p.is_absolute() else Path(cfg.run.out_dir) / p).resolve()


def resolve_paths(
    cfg: Config, samples: Sequence | None = None, out=None, bootstrap: bool = False
) -> tuple[list[Path], Path]:
    """Sample-set directories and the weights directory (defaults: ``train.samples_dir`` and
    ``train.weights_dir`` under ``run.out_dir``), absolute.  ``bootstrap`` (the set is built
    first) allows one sample-set directory only."""
    dirs = [Path(s).resolve() for s in samples] if samples else [_under_run(cfg, cfg.train.samples_dir)]
    if bootstrap and len(dirs) != 1:
        raise ValueError(f"--bootstrap builds one sample set: give at most one --samples directory, not {len(dirs)}")
    return dirs, (Path(out).resolve() if out is not None else _under_run(cfg, cfg.train.weights_dir))


def run_bootstrap(
    config_path,
    out=None,
    station_days: Sequence[str] | None = None,
    manual=None,
    log: Callable = print,
    teacher: str | None = None,
) -> dict:
    """``quakescale bootstrap`` in this process: the sample set of the config's region with the
    parameters of :meth:`~quakescale.train.bootstrap_params.BootstrapParams.from_config`
    (``manual`` / ``teacher`` override ``train.manual_picks`` / ``train.teacher``)."""
    cfg = load_config(config_path)
    out = Path(out).resolve() if out is not None else _under_run(cfg, cfg.train.samples_dir)
    given = {k: v for k, v in (("manual_picks", manual), ("teacher", teacher)) if v}
    return build_sample_set(
        cfg,
        out,
        BootstrapParams.from_config(cfg, **given),
        station_days=list(station_days) if station_days else None,
        log=log,
    )


def run_training(
    config_path,
    samples: Sequence | None = None,
    out=None,
    epochs: int | None = None,
    device: str | None = None,
    max_minutes: float | None = None,
    log: Callable = print,
) -> Path:
    """``quakescale train`` in this process; returns the metrics CSV of the weights directory."""

    cfg = load_config(config_path)
    t = cfg.train
    dirs, out = resolve_paths(cfg, samples, out)
    return train_from_sample_set(
        dirs[0] if len(dirs) == 1 else dirs,
        out,
        epochs=epochs,
        device=device or t.device,
        resume=True,
        epochs_detector=None if epochs else t.epochs_detector,
        epochs_picker=None if epochs else t.epochs_picker,
        init_model=t.init_model,
        name=t.name,
        version=t.version,
        lr=t.lr,
        batch_size=t.batch_size,
        seed=cfg.run.seed,
        max_minutes=max_minutes,
        log=log,
    )


# ----------------------------------------------------------------------------- slurm (dask-jobqueue)
def _on_pool(cfg: Config, pool: str, fn, *args, echo: Callable = print, **kw):
    """Run ``fn(*args, **kw)`` as one task on ``pool`` of the config's Dask cluster; wait for it."""
    from distributed import Client  # Dask: only for the slurm/local-cluster backends

    from .cluster import make_cluster  # dask-jobqueue

    cluster = make_cluster(cfg, pool=pool, run_dir=Path(cfg.run.out_dir))
    try:
        with Client(cluster) as client:
            link = getattr(client, "dashboard_link", None)
            echo(f"dask: {cfg.compute.backend} cluster up ({pool} pool)" + (f", dashboard {link}" if link else ""))
            resources = {"GPU": 1} if (pool == "gpu" and cfg.compute.backend == "slurm") else None
            fut = client.submit(fn, *args, resources=resources, pure=False, **kw)
            return fut.result()
    finally:
        cluster.close()


def train_on_cluster(
    config_path,
    samples: Sequence | None = None,
    out=None,
    epochs: int | None = None,
    device: str | None = None,
    max_minutes: float | None = None,
    bootstrap: bool = False,
    backend: str | None = None,
    echo: Callable = print,
) -> Path:
    """``slurm`` (or ``local``) backend: the optional bootstrap as a task on the CPU pool, then the
    training as a task on the GPU pool; returns the metrics CSV.  ``backend`` overrides
    ``compute.backend`` of the config."""
    cfg = load_config(config_path)
    if backend is not None:
        cfg.compute.backend = backend
    config_path = Path(config_path).resolve()
    dirs, out = resolve_paths(cfg, samples, out, bootstrap)
    if bootstrap:
        summary = _on_pool(cfg, "cpu", run_bootstrap, config_path, dirs[0], echo=echo)
        echo(f"bootstrap: {summary.get('n_event', 0)} event + {summary.get('n_noise', 0)} noise samples -> {dirs[0]}")
    metrics = _on_pool(
        cfg, "gpu", run_training, config_path, [str(d) for d in dirs], str(out), epochs, device, max_minutes, echo=echo
    )
    echo(f"train: weights in {out}")
    return Path(metrics)


# ----------------------------------------------------------------------------- array (sbatch)
def render_training_jobs(
    cfg: Config,
    config_path,
    samples: Sequence | None = None,
    out=None,
    epochs: int | None = None,
    device: str | None = None,
    max_minutes: float | None = None,
    bootstrap: bool = False,
    write: bool = True,
):
    """The sbatch scripts of a retraining: ``RUN/jobs/train-1-bootstrap.sbatch`` (CPU pool, when
    ``bootstrap``) and ``RUN/jobs/train-2-train.sbatch`` (GPU pool), as :class:`array.JobSpec`."""
    compute = cfg.compute
    run_dir = Path(cfg.run.out_dir).resolve()
    config_path = Path(config_path).resolve()
    dirs, out = resolve_paths(cfg, samples, out, bootstrap)
    outside = sorted({p for p in (*(d.parent for d in dirs), out.parent) if not p.is_relative_to(run_dir)})
    own = [bind_path(p, "train sample/weights directory") for p in outside]
    binds = bind_list(config_binds(cfg, run_dir) + own, "binds")
    jobs_dir = run_dir / "jobs"
    if write:
        jobs_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    args = {
        "bootstrap": ["bootstrap", str(config_path), "--out", str(dirs[0])],
        "train": [
            "train",
            str(config_path),
            "--backend",
            "local",
            *[a for d in dirs for a in ("--samples", str(d))],
            "--out",
            str(out),
        ]
        + (["--epochs", str(int(epochs))] if epochs else [])
        + (["--device", str(device)] if device else [])
        + (["--max-minutes", str(float(max_minutes))] if max_minutes else []),
    }
    specs, previous = [], []
    for i, stage in enumerate(TRAIN_STAGES, 1):
        if stage == "bootstrap" and not bootstrap:
            continue
        pool_name = "cpu" if stage == "bootstrap" else "gpu"
        argv = quakescale_argv(compute, pool_name, args[stage], binds)
        specs.append(
            stage_job(
                compute,
                cfg.run.name,
                stage,
                pool_name,
                argv,
                run_dir,
                jobs_dir / f"train-{i}-{stage}.sbatch",
                previous,
                write,
            )
        )
        previous = [stage]
    return specs


def submit_training(
    cfg: Config, config_path, *, sbatch: str = "sbatch", extra_args: Sequence[str] = (), **kw
) -> dict[str, list[str]]:
    """``array`` backend: render (:func:`render_training_jobs`) and submit, chained ``afterok``;
    stage -> job ids (also in ``RUN/jobs/train-submitted.json``)."""
    specs = render_training_jobs(cfg, config_path, **kw)
    ids = submit(specs, sbatch=sbatch, extra_args=extra_args)
    write_json(
        {"jobs": ids, "specs": [s.to_dict() for s in specs]},
        Path(cfg.run.out_dir).resolve() / "jobs" / "train-submitted.json",
    )
    return ids
