"""``run_pipeline``: the whole run, stage by stage, on the configured backend; resumable.

Fanned-out stages (detect over station-days, xcorr over stations; ``stages.STAGE``) are cut into
chunks of the stage's chunk size (:func:`~quakescale.hpc.stages.chunks`) and mapped with Dask
(local cluster or the stage's SLURM pool); every chunk is one ``run_task`` call, so a rerun only
redoes the units without an ``ok`` status row.  The other stages run once (``unit = "all"``) in the
driver process or on the CPU pool.
"""

from __future__ import annotations

import json
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import dask
import distributed
import numpy
import obspy
import pandas
import pyarrow
from distributed import Client, KilledWorker, as_completed

from .. import __version__
from ..config import Config
from ..rundir import RunDir, write_json
from .cluster import make_cluster
from .containers_info import container_info
from .stages import POOL_RESOURCES, STAGE, STAGES, chunks, networks_on_gpu, pending_units, prepare_run, run_task
from .summary import build_summary


def _git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except Exception:
        return None


def _versions() -> dict:
    v = dict(
        quakescale=__version__,
        python=sys.version.split()[0],
        numpy=numpy.__version__,
        obspy=obspy.__version__,
        pandas=pandas.__version__,
        pyarrow=pyarrow.__version__,
        dask=dask.__version__,
        distributed=distributed.__version__,
    )
    try:  # torch is imported here only: the driver of a run never needs it otherwise (a broken CUDA stays a note)
        import torch

        v["torch"] = torch.__version__
        v["cuda"] = torch.version.cuda
        v["gpus"] = (
            [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if torch.cuda.is_available()
            else []
        )
    except Exception:
        pass
    return v


def manifest(cfg: Config, rd: RunDir, timings: dict, extra: dict | None = None) -> dict:
    m = dict(
        config_digest=cfg.digest(),
        config=cfg.to_dict(),
        versions=_versions(),
        git_commit=_git_commit(),
        host=socket.gethostname(),
        platform=platform.platform(),
        container=container_info(),
        stages=timings,
        written=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    if extra:
        m.update(extra)
    write_json(m, rd.manifest)
    return m


def _cluster_key(cfg: Config, pool: str) -> str:
    """Which cluster a stage's tasks go to: the slurm pool; on the local backend one cluster for
    everything, except the GPU pool's stage when its networks run on this machine's GPU
    (``local-gpu``: one worker with every CPU and the GPU resource, :func:`make_cluster`)."""
    if cfg.compute.backend == "slurm":
        return pool
    return "local-gpu" if POOL_RESOURCES[pool] and networks_on_gpu(cfg) else "local"


def _map_chunks(
    cfg: Config, rd: RunDir, stage: str, parts: list[list[str]], force: bool, client, echo, resources=None
) -> list[dict]:
    rows: list[dict] = []
    if not parts:
        return rows
    if client is None:
        for i, p in enumerate(parts, 1):
            rows += run_task(rd.root, stage, p, force, True)
            echo(f"  {stage}: chunk {i}/{len(parts)}")
        return rows

    def submit(p, key):
        return client.submit(
            run_task, str(rd.root), stage, p, force, True, key=key, retries=2, pure=False, resources=resources
        )

    futs = {submit(p, f"{stage}-{i}-{abs(hash(tuple(p)))}"): p for i, p in enumerate(parts)}
    t0 = time.time()
    done_units = 0
    killed: list[list[str]] = []
    for i, f in enumerate(as_completed(list(futs)), 1):
        try:
            rows += f.result()
        except KilledWorker:  # e.g. a fatal GPU error on every try (or a task queued beside it)
            killed.append(futs[f])
        done_units += len(futs[f])
        rate = done_units / max(time.time() - t0, 1e-9)
        echo(f"  {stage}: {i}/{len(parts)} tasks, {done_units} units, {rate:.2f} units/s")
    if len(killed) > 1:
        # a worker that dies takes the blame for every task it held: those running beside the
        # guilty one, and those waiting in its queue (Dask does not queue resource-restricted
        # tasks on the scheduler); the innocent ones are told from the guilty by running each
        # alone, one after the other (their units already done are skipped)
        echo(f"  {stage}: {len(killed)} tasks ended with their workers; each run again alone")
        retry, killed = killed, []
        for j, p in enumerate(retry):
            try:
                rows += submit(p, f"{stage}-alone-{j}-{abs(hash(tuple(p)))}-{time.time_ns()}").result()
            except KilledWorker:
                killed.append(p)
    for p in killed:  # its units keep their status (failed or pending): a rerun retries them
        echo(
            f"  {stage}: a task of {len(p)} unit(s) took down its worker on every try "
            "(KilledWorker); its units stay failed or pending (quakescale status)"
        )
    return rows


def stale(rd: RunDir, stage: str) -> bool:
    """True when an earlier stage (plan aside) finished work after this stage last did: its
    output no longer follows its inputs (e.g. an array resubmission detected a missing
    station-day after association had run)."""
    if stage not in STAGES or stage == "plan":
        return False
    own = rd.read_status(stage)
    own = own[own.state.isin(["ok", "skipped"])] if len(own) else own
    if not len(own):
        return False
    t_self = own["finished"].min()
    for prev in STAGES[1 : STAGES.index(stage)]:
        st = rd.read_status(prev)
        if len(st):
            st = st[st.state.isin(["ok", "skipped"])]
            if len(st) and st["finished"].max() > t_self:
                return True
    return False


def run_pipeline(
    cfg: Config, stages=None, force=frozenset(), echo=print, client=None, retry_failed: bool = False
) -> dict:
    """Run the stages in order.  A stage runs its pending units (all of them with ``force``);
    once a stage produced new output, every later stage is redone, so the catalog always
    follows its inputs.  Failed units are retried only with ``retry_failed``."""
    rd = prepare_run(cfg)
    wanted = [s for s in STAGES if stages is None or s in stages]
    timings = {}
    did_work = False
    upstream_changed = False
    owned = {}  # pool -> (client, cluster) started here
    given = client
    try:
        for stage in wanted:
            t0 = time.time()
            f = stage in force or upstream_changed or (stage == "plan" and rd.config_changed) or stale(rd, stage)
            if STAGE[stage].fanned:
                todo = pending_units(cfg, rd, stage, force=f, retry_failed=retry_failed)
                pool = STAGE[stage].pool
                key = _cluster_key(cfg, pool) if todo and given is None else "local"
                client = given
                if client is None and todo and (len(todo) > 1 or cfg.compute.backend == "slurm"):
                    if key not in owned:
                        owned[key] = _start_client(cfg, echo, pool, rd, local_gpu=key == "local-gpu")
                    client = owned[key][0]
                echo(f"{stage}: {len(todo)} unit(s) to do")
                did_work |= bool(todo)
                resources = STAGE[stage].resources(cfg.compute)
                if key == "local-gpu" and client is not None:
                    resources = dict(POOL_RESOURCES["gpu"])
                parts = chunks(todo, STAGE[stage].chunk_size(cfg.compute))
                rows = _map_chunks(cfg, rd, stage, parts, f, client, echo, resources)
                if key == "local-gpu" and key in owned:  # its CUDA context and model go now, not at the end
                    _close(*owned.pop(key))
                upstream_changed |= any(r["state"] in ("ok", "skipped") for r in rows)
                n_failed = sum(r["state"] == "failed" for r in rows)
                if n_failed:
                    echo(f"{stage}: {n_failed} unit(s) failed (reasons: quakescale status; retry: --retry-failed)")
            else:
                if f or "all" not in rd.done_units(
                    stage, ("ok", "no_data", "skipped") + (() if retry_failed else ("failed",))
                ):
                    rows = run_task(rd.root, stage, ["all"], force=True)
                    did_work = True
                    if stage != "plan":  # a new plan adds units; it does not invalidate done ones
                        upstream_changed |= any(r["state"] in ("ok", "skipped") for r in rows)
                    for r in rows:
                        if r["state"] == "failed":
                            echo(f"{stage}: FAILED: {r['reason']}")
                    echo(f"{stage}: {rows[0]['state'] if rows else 'nothing to do'} ({time.time() - t0:.1f} s)")
                else:
                    echo(f"{stage}: already done")
            rd.compact_status(stage)
            timings[stage] = round(time.time() - t0, 3)
    finally:
        for c, cl in owned.values():
            _close(c, cl)
    if not did_work and rd.summary.exists():
        # nothing to do: a finished run is left byte-for-byte as it was
        echo("run: everything already done; nothing changed")
        summary = json.loads(rd.summary.read_text())
    else:
        summary = build_summary(cfg, rd, extra={"timings_s": timings})
        manifest(cfg, rd, timings)
    summary["problems"] = run_problems(rd, wanted)  # not stored: what this run's exit code follows
    return summary


def run_problems(rd: RunDir, stages) -> list[str]:
    """Why a run did not succeed: units of ``stages`` whose latest status is ``failed``, and the
    catalog not written when the catalog stage was wanted ([] for a good run; station-days
    skipped for bad data or without data are not problems)."""
    out = []
    for stage in stages:
        st = rd.read_status(stage)
        if not len(st):
            continue
        st = st.sort_values("finished", kind="stable").drop_duplicates("unit", keep="last")
        bad = st[st.state == "failed"]
        if len(bad):
            r = bad.iloc[0]
            out.append(f"{stage}: {len(bad)} unit(s) failed, e.g. {r.unit}: {' '.join(str(r.reason).split())[:300]}")
    if "catalog" in stages and not (rd.root / "catalogs" / "events.csv").exists():
        out.append(f"catalog: not written ({rd.root / 'catalogs' / 'events.csv'} missing)")
    return out


def _close(client, cluster) -> None:
    for x in (client, cluster):  # each on its own: a client that fails to close still frees its cluster
        try:
            x.close()
        except Exception:
            pass


def _start_client(cfg: Config, echo, pool: str = "gpu", rd: RunDir | None = None, local_gpu: bool = False):
    cluster = make_cluster(cfg, pool=pool, run_dir=rd.root if rd is not None else None, local_gpu=local_gpu)
    client = Client(cluster)
    link = getattr(client, "dashboard_link", None)
    what = "GPU: one worker, every CPU" if local_gpu else f"{pool} pool"
    echo(f"dask: {cfg.compute.backend} cluster up ({what})" + (f", dashboard {link}" if link else ""))
    return client, cluster
