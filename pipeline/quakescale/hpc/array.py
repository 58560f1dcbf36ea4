"""The ``array`` backend: sbatch job arrays chained with ``afterok``, no long-lived scheduler.

``quakescale submit CONFIG`` = :func:`render_jobs` + :func:`submit`:

```
RUN/jobs/01-detect.p000.sbatch   array over chunks of station-days (GPU pool), --array=0-N%T
RUN/jobs/02-associate.sbatch     afterok: every detect array
RUN/jobs/03-locate.sbatch        afterok: associate
RUN/jobs/04-xcorr.p000.sbatch    array over stations (CPU pool), afterok: locate
RUN/jobs/05-relocate.sbatch      afterok: xcorr
RUN/jobs/06-catalog.sbatch       afterok: relocate
RUN/jobs/jobs.json               what was rendered; submitted.json: stage -> job ids
```
Array task ``i`` of part ``p`` runs ``quakescale STAGE RUN/config.yaml --chunk (offset_p + i)``;
chunk ``k`` is ``units[k*size:(k+1)*size]`` of the stage's sorted unit list
(:func:`~quakescale.hpc.stages.stage_chunk`, through :func:`~quakescale.hpc.stages.chunk_units`;
stages, pools and chunk sizes come from :data:`~quakescale.hpc.stages.STAGE`).  SLURM refuses
array indices above ``MaxArraySize`` (default 1001), so long runs are split into several arrays
("parts") and the ``%N`` throttle is divided among them so that at most N tasks of a stage run at
once.

``quakescale status CONFIG`` = :func:`stage_status`: done/failed from the run directory's status
tables, queued/running from ``squeue`` (:func:`parse_squeue`); no ``sacct``.
"""

from __future__ import annotations

import getpass
import json
import re
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import pandas as pd

from ..errors import QuakeScaleError
from ..rundir import RunDir, write_json
from .containers import config_binds, quakescale_argv
from .jobscript import SlurmJobScript, prologue_lines
from .stages import DONE, JOB_STAGES, STAGE, n_chunks

__all__ = [
    "SubmitError",
    "JobSpec",
    "array_parts",
    "job_name",
    "render_jobs",
    "submit",
    "submit_run",
    "slurm_max_array_size",
    "SQUEUE_FORMAT",
    "SqueueRow",
    "parse_squeue",
    "count_array_tasks",
    "squeue",
    "stage_status",
    "format_stage_status",
]


class SubmitError(QuakeScaleError, RuntimeError):
    """sbatch refused a job; the message names the script and carries sbatch's stderr."""


# -- arrays ----------------------------------------------------------------------------------


def array_parts(n: int, max_array_size: int = 1000) -> list[tuple[int, int]]:
    """Split ``n`` chunks into ``(offset, count)`` arrays whose indices stay below ``max_array_size``."""
    if max_array_size < 1:
        raise ValueError("max_array_size must be >= 1")
    return [(o, min(max_array_size, n - o)) for o in range(0, n, max_array_size)]


def slurm_max_array_size(scontrol: str = "scontrol") -> int:
    """``MaxArraySize - 1`` (the largest usable array index count) from ``scontrol show config``;
    1000 when SLURM cannot be asked."""
    try:
        out = subprocess.run([scontrol, "show", "config"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 1000
    m = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.M)
    return max(1, int(m.group(1)) - 1) if m else 1000


# -- rendering -------------------------------------------------------------------------------


@dataclass
class JobSpec:
    stage: str
    script: Path
    pool: str
    after: list[str] = field(default_factory=list)  # stages whose every job must end ok first
    part: int = 0
    array: str | None = None  # "0-999%50"
    chunk_offset: int = 0
    n_tasks: int = 1
    job_id: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["script"] = str(self.script)
        return d


_NAME_SAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def job_name(run_name: str, stage: str) -> str:
    """``qs-RUN-STAGE`` with anything but ``[A-Za-z0-9_.-]`` replaced (names show in squeue)."""
    return f"qs-{_NAME_SAFE.sub('_', run_name)[:40]}-{stage}"


def stage_job(
    compute,
    run_name: str,
    stage: str,
    pool_name: str,
    argv: Sequence[str],
    run_dir: Path,
    script: Path,
    after: Sequence[str] = (),
    write: bool = True,
) -> JobSpec:
    """One (non-array) job of ``stage`` on ``pool_name`` (``gpu`` | ``cpu``) running ``argv``:
    ``stage.sbatch.tmpl`` with the pool's directives and the prologue, log in ``RUN/logs/``;
    written to ``script`` (or only rendered, to validate, when not ``write``)."""
    pool = compute.gpu_pool if pool_name == "gpu" else compute.cpu_pool
    js = SlurmJobScript.for_pool(
        pool,
        name=job_name(run_name, stage),
        command=list(argv),
        prologue=prologue_lines(compute.prologue),
        chdir=run_dir,
        output=Path(run_dir) / "logs" / f"{stage}-%j.out",
        template="stage.sbatch.tmpl",
        pool_field=f"compute.{pool_name}_pool",
        env={"QUAKESCALE_RUN_DIR": str(run_dir), "QUAKESCALE_STAGE": stage},
    )
    if write:
        js.write(script)
    else:
        js.render()
    return JobSpec(stage, script, pool_name, list(after))


def render_jobs(
    cfg,
    units: Mapping[str, int],
    *,
    run_dir=None,
    config_path=None,
    stages: Sequence[str] | None = None,
    command: Callable[[str, str], list[str]] | None = None,
    max_array_size: int = 1000,
    write: bool = True,
) -> list[JobSpec]:
    """Render the sbatch scripts of a run into ``RUN/jobs/`` (in dependency order).

    ``units``: number of units of the fanned-out stages (``{"detect": station_days, "xcorr":
    stations}``); a fanned-out stage with 0 units is left out.  ``stages``: default all of
    :data:`~quakescale.hpc.stages.JOB_STAGES`, without xcorr when ``relocate.cc.enabled`` is false.
    ``command(stage, pool)`` gives the argv of a task (``--chunk i`` is appended for arrays); default
    ``quakescale STAGE RUN/config.yaml``, inside the pool's image when one is configured.
    """
    compute = cfg.compute
    run_dir = Path(run_dir if run_dir is not None else cfg.run.out_dir).resolve()
    config_path = Path(config_path) if config_path is not None else run_dir / "config.yaml"
    if stages is None:
        stages = [s for s in JOB_STAGES if s != "xcorr" or cfg.relocate.cc.enabled]
    unknown = [s for s in stages if s not in JOB_STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; allowed values: {list(JOB_STAGES)}")
    stages = [s for s in JOB_STAGES if s in stages]  # dependency order
    if command is None:
        binds = config_binds(cfg, run_dir)

        def command(stage, pool):
            return quakescale_argv(compute, pool, [stage, str(config_path)], binds)

    prologue = prologue_lines(compute.prologue)
    jobs_dir = run_dir / "jobs"
    logs_dir = run_dir / "logs"
    if write:
        jobs_dir.mkdir(parents=True, exist_ok=True)
        logs_dir.mkdir(parents=True, exist_ok=True)
    specs: list[JobSpec] = []
    previous: list[str] = []
    step = 0
    for stage in stages:
        pool_name = STAGE[stage].pool
        pool = compute.gpu_pool if pool_name == "gpu" else compute.cpu_pool
        pool_field = f"compute.{pool_name}_pool"
        name = job_name(cfg.run.name, stage)
        argv = list(command(stage, pool_name))
        if STAGE[stage].fanned:
            if stage not in units:
                raise ValueError(f"render_jobs: units[{stage!r}] (number of {stage} units) is required")
            nc = n_chunks(units[stage], STAGE[stage].chunk_size(compute))
            if nc == 0:
                continue
            step += 1
            parts = array_parts(nc, max_array_size)
            throttle = max(1, int(compute.array_throttle) // len(parts))
            for p, (offset, count) in enumerate(parts):
                array = f"0-{count - 1}%{throttle}"
                script = jobs_dir / (f"{step:02d}-{stage}.p{p:03d}.sbatch")
                js = SlurmJobScript.for_pool(
                    pool,
                    name=name,
                    command=argv,
                    prologue=prologue,
                    chdir=run_dir,
                    output=logs_dir / f"{stage}-%A_%a.out",
                    array=array,
                    template="array.sbatch.tmpl",
                    extra={"chunk_offset": int(offset)},
                    pool_field=pool_field,
                    env={"QUAKESCALE_RUN_DIR": str(run_dir), "QUAKESCALE_STAGE": stage},
                )
                if write:
                    js.write(script)
                else:
                    js.render()
                specs.append(JobSpec(stage, script, pool_name, list(previous), p, array, int(offset), count))
        else:
            step += 1
            specs.append(
                stage_job(
                    compute,
                    cfg.run.name,
                    stage,
                    pool_name,
                    argv,
                    run_dir,
                    jobs_dir / f"{step:02d}-{stage}.sbatch",
                    previous,
                    write,
                )
            )
        previous = [stage]
    if write:
        write_json({"jobs": [s.to_dict() for s in specs], "units": dict(units)}, jobs_dir / "jobs.json")
    return specs


# -- submission ------------------------------------------------------------------------------


def _parse_job_id(out: str, script) -> str:
    first = out.strip().splitlines()[0] if out.strip() else ""
    m = re.match(r"^(\d+)(;\S+)?$", first.strip())
    if not m:
        raise SubmitError(f"sbatch --parsable gave no job id for {script}: {out!r}")
    return m.group(1)


def submit(
    specs: Sequence[JobSpec],
    *,
    sbatch: str = "sbatch",
    extra_args: Sequence[str] = (),
    run_dir=None,
    timeout_s: float = 120.0,
) -> dict[str, list[str]]:
    """Submit rendered jobs in order with ``sbatch --parsable``; a job that waits for stages gets
    ``--dependency=afterok:ID:ID...`` (every job of those stages) and ``--kill-on-invalid-dep=yes``
    (a failed upstream cancels it instead of leaving it pending forever).  Returns stage -> job ids
    (also written to ``RUN/jobs/submitted.json`` when ``run_dir`` is given).  On a refusal the jobs
    already submitted are cancelled and :class:`SubmitError` names the script."""
    ids: dict[str, list[str]] = {}
    for spec in specs:
        args = [sbatch, "--parsable"]
        deps = [j for st in spec.after for j in ids.get(st, [])]
        if deps:
            args += [f"--dependency=afterok:{':'.join(deps)}", "--kill-on-invalid-dep=yes"]
        args += [str(a) for a in extra_args]
        args.append(str(spec.script))
        try:
            r = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.SubprocessError) as exc:
            _cancel_all(ids)
            raise SubmitError(f"could not run {sbatch} for {spec.script}: {exc}") from None
        if r.returncode != 0:
            _cancel_all(ids)
            raise SubmitError(
                f"sbatch refused {spec.script} (exit {r.returncode}): {r.stderr.strip() or r.stdout.strip()}"
            )
        spec.job_id = _parse_job_id(r.stdout, spec.script)
        ids.setdefault(spec.stage, []).append(spec.job_id)
    if run_dir is not None:
        write_json({"jobs": ids, "specs": [s.to_dict() for s in specs]}, Path(run_dir) / "jobs" / "submitted.json")
    return ids


def _cancel_all(ids: Mapping[str, list[str]]) -> None:
    flat = [j for v in ids.values() for j in v]
    if flat:
        subprocess.run(["scancel", *flat], capture_output=True, timeout=60)


def submit_run(
    cfg,
    units: Mapping[str, int],
    *,
    run_dir=None,
    config_path=None,
    max_array_size: int | None = None,
    sbatch: str = "sbatch",
    **render_kw,
) -> dict[str, list[str]]:
    """``quakescale submit``: render into RUN/jobs/, submit chained, return stage -> job ids."""
    run_dir = Path(run_dir if run_dir is not None else cfg.run.out_dir).resolve()
    if max_array_size is None:
        max_array_size = slurm_max_array_size()
    specs = render_jobs(
        cfg, units, run_dir=run_dir, config_path=config_path, max_array_size=max_array_size, **render_kw
    )
    return submit(specs, sbatch=sbatch, run_dir=run_dir)


# -- squeue ----------------------------------------------------------------------------------

SQUEUE_FORMAT = "%i|%F|%K|%j|%T|%r"


@dataclass
class SqueueRow:
    job_id: str  # "123", "123_4", "123_[5-99%10]"
    array_job_id: str  # the job id of the array (the job id itself for plain jobs)
    array_tasks: str  # "N/A", "4", "5-99%10", "1,3,5-7"
    name: str
    state: str  # PENDING, RUNNING, COMPLETING, ...
    reason: str
    n_tasks: int  # jobs this row stands for


def count_array_tasks(spec: str) -> int:
    """Tasks in a squeue ``%K`` field: ``N/A`` -> 1, ``7`` -> 1, ``0-9%2`` -> 10, ``1,3,5-7`` -> 5,
    ``0-10:2`` -> 6."""
    s = spec.strip().strip("[]")
    if not s or s == "N/A":
        return 1
    s = s.split("%", 1)[0]
    n = 0
    for part in s.split(","):
        m = re.match(r"^(\d+)(?:-(\d+)(?::(\d+))?)?$", part.strip())
        if not m:
            raise ValueError(f"squeue array task field {spec!r} not understood")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) else a
        step = int(m.group(3)) if m.group(3) else 1
        n += len(range(a, b + 1, step))
    return n


def parse_squeue(text: str) -> list[SqueueRow]:
    """Rows of ``squeue --noheader --format='%i|%F|%K|%j|%T|%r'`` (job names may contain ``|``:
    the fields around them are fixed)."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) < 6:
            raise ValueError(f"squeue line not in the format {SQUEUE_FORMAT!r}: {line!r}")
        job_id, array_job_id, tasks = parts[0].strip(), parts[1].strip(), parts[2].strip()
        state, reason = parts[-2].strip(), parts[-1].strip()
        name = "|".join(parts[3:-2])
        rows.append(SqueueRow(job_id, array_job_id, tasks, name, state, reason, count_array_tasks(tasks)))
    return rows


def squeue(user: str | None = None, *, squeue_cmd: str = "squeue", timeout_s: float = 60.0) -> list[SqueueRow]:
    """This user's jobs as :class:`SqueueRow` (pending arrays compressed, one row per running task)."""
    user = user or getpass.getuser()
    try:
        r = subprocess.run(
            [squeue_cmd, "--noheader", f"--user={user}", f"--format={SQUEUE_FORMAT}"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except FileNotFoundError:
        raise RuntimeError(
            f"{squeue_cmd} not found: queue states need a SLURM login node (done/failed come from the run directory)"
        ) from None
    if r.returncode != 0:
        raise RuntimeError(f"squeue failed (exit {r.returncode}): {r.stderr.strip()}")
    return parse_squeue(r.stdout)


def _queue_counts(rows: Sequence[SqueueRow], stage_of_job: Mapping[str, str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        stage = stage_of_job.get(r.array_job_id) or stage_of_job.get(r.job_id.split("_")[0])
        if stage is None:
            continue
        c = out.setdefault(stage, {"queued": 0, "running": 0})
        if r.state in ("PENDING", "REQUEUED", "CONFIGURING", "SUSPENDED"):
            c["queued"] += r.n_tasks
        elif r.state in ("RUNNING", "COMPLETING"):
            c["running"] += r.n_tasks
    return out


def stage_status(
    run_dir,
    expected: Mapping[str, int | None] | None = None,
    squeue_rows: Sequence[SqueueRow] | None = None,
    stages: Sequence[str] = JOB_STAGES,
):
    """Per stage: units expected, done (ok/no_data/skipped), failed, pending (expected - done -
    failed), and array tasks/jobs queued and running in SLURM (``squeue_rows`` mapped to stages
    through ``RUN/jobs/submitted.json``).  Returns a pandas DataFrame, one row per stage."""
    rd = RunDir(run_dir)
    expected = dict(expected or {})
    stage_of_job: dict[str, str] = {}
    sub = Path(run_dir) / "jobs" / "submitted.json"
    if sub.exists():
        for st, ids in json.loads(sub.read_text()).get("jobs", {}).items():
            for j in ids:
                stage_of_job[str(j)] = st
    q = _queue_counts(squeue_rows or [], stage_of_job)
    recs = []
    for st in stages:
        df = rd.read_status(st)
        done = int(df["state"].isin(DONE).sum()) if len(df) else 0
        failed = int((df["state"] == "failed").sum()) if len(df) else 0
        n = expected.get(st)
        pending = max(0, int(n) - done - failed) if n is not None else None
        recs.append(
            {
                "stage": st,
                "units": n,
                "done": done,
                "failed": failed,
                "pending": pending,
                "queued": q.get(st, {}).get("queued", 0),
                "running": q.get(st, {}).get("running", 0),
                "jobs": ",".join(j for j, s in stage_of_job.items() if s == st),
            }
        )
    return pd.DataFrame.from_records(recs)


def format_stage_status(df) -> str:
    """The table of :func:`stage_status` as aligned text for ``quakescale status``."""
    cols = ["stage", "units", "done", "failed", "pending", "queued", "running", "jobs"]
    rows = [
        [("-" if (v is None or v != v) else str(int(v)) if isinstance(v, float) else str(v)) for v in rec]
        for rec in df[cols].itertuples(index=False)
    ]
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)
