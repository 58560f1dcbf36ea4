"""Planning and scheduling at scale: plan N station-days, render the job arrays, Dask overhead per task.

Target (issue 7): planning and job rendering for 10^5 station-days in < 30 s and < 2 GB.

1. An SDS tree of N station-days (3 channels each; every file one small Steim2 record, copied
   from one template with its start moved into the file's day, so the tree is cheap to make)
   -> ``plan_station_days`` (batched header scan; worker processes for large plans) -> seconds,
   peak RSS of this process and of the workers; extrapolated to 10^5 station-days.
   Baseline in the same run: the per-station-day path (``scan_station_day`` per unit in a
   thread pool, the former ``plan_station_days``) on the first ``--baseline-station-days``
   units, whose table must equal the batched one.  Files are in the page cache (just written).
2. What ``quakescale submit`` does after the scan, for a 10^5-row plan: write the plan table,
   read it back with its units sorted, render the sbatch scripts (``render_jobs``: detect arrays
   over chunks of station-days, associate, locate, xcorr array, relocate, catalog) -> seconds;
   and one array task's ``stage_chunk`` (read the plan, sort, slice) -> seconds per task.
3. Dask LocalCluster overhead per task: the same no-op task mapped M times, seconds per task
   (the baseline every chunk of station-days pays once).

    python benchmarks/bench_plan.py [--quick] [--station-days N] [--out bench-out/bench_plan.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import struct
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def _noop(x):
    return x


def make_tree(root: Path, n_station_days: int, n_days: int = 100) -> tuple[list[str], list[dt.date]]:
    import numpy as np
    from obspy import Trace, UTCDateTime

    tmpl = root / "template.mseed"
    tr = Trace(np.arange(1000, dtype=np.int32))
    tr.stats.sampling_rate = 100.0
    tr.stats.starttime = UTCDateTime(2015, 1, 1, 6)
    tr.write(str(tmpl), format="MSEED", encoding="STEIM2", reclen=4096, byteorder=">")
    data = tmpl.read_bytes()
    assert data[20:24] == struct.pack(">HH", 2015, 1)
    n_sta = max(1, n_station_days // n_days)
    days = [dt.date(2015, 1, 1) + dt.timedelta(days=i) for i in range(n_days)]
    ids = [f"XX.S{i:04d}" for i in range(n_sta)]
    # the record's start moved to each file's day (06:00, 10 s of data): real, non-zero coverage
    per_day = [
        (
            f"{d.year}.{d.timetuple().tm_yday:03d}",
            data[:20] + struct.pack(">HH", d.year, d.timetuple().tm_yday) + data[24:],
        )
        for d in days
    ]
    for sid in ids:
        net, sta = sid.split(".")
        for cha in ("HHZ", "HHN", "HHE"):
            d = root / "sds" / "2015" / net / sta / f"{cha}.D"
            d.mkdir(parents=True, exist_ok=True)
            for key, day_data in per_day:
                with open(d / f"{net}.{sta}..{cha}.D.{key}", "wb") as fh:
                    fh.write(day_data)
    return ids, days


def per_station_day_plan(sds_root, station_ids, days, channels, threads: int = 8):
    """The former ``plan_station_days``: ``scan_station_day`` of every unit in a thread pool."""
    import pandas as pd

    from quakescale import archive

    sds = [archive.StationDay(d, s) for d in days for s in station_ids]
    archive.clear_listing_cache()
    try:
        with ThreadPoolExecutor(max_workers=threads) as ex:
            recs = list(ex.map(lambda sd: archive.scan_station_day(sds_root, sd, channels, cached=True), sds))
    finally:
        archive.clear_listing_cache()
    return pd.DataFrame(recs)


def _rss_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


# Peak memory of a process and its children (the plan's worker processes), sampled from /proc by
# a separate process (a sampling thread here would change plan_station_days' default: it forks
# workers only from a single-threaded process).  Rss counts pages shared with the parent after a
# fork once per process (an upper bound); Pss shares them out.
_MONITOR = r"""
import os, select, sys
pid = int(sys.argv[1])
def tree(p):
    out = [p]
    try:
        for t in os.listdir(f"/proc/{p}/task"):
            with open(f"/proc/{p}/task/{t}/children") as fh:
                out += [q for c in fh.read().split() if int(c) != os.getpid() for q in tree(int(c))]
    except OSError:
        pass
    return out
def kb(p):
    v = {}
    try:
        with open(f"/proc/{p}/smaps_rollup") as fh:
            for line in fh:
                k, _, rest = line.partition(":")
                if k in ("Rss", "Pss"):
                    v[k] = int(rest.split()[0])
    except OSError:
        pass
    return v.get("Rss", 0), v.get("Pss", 0)
peak_rss = peak_pss = 0
while True:
    s = [kb(p) for p in tree(pid)]
    peak_rss, peak_pss = max(peak_rss, sum(r for r, _ in s)), max(peak_pss, sum(q for _, q in s))
    if select.select([sys.stdin], [], [], 0.02)[0]:
        break
print(peak_rss / 1024, peak_pss / 1024)
"""


class TreeMemory:
    """``with TreeMemory() as m: ...`` -> ``m.peak_rss_mb``, ``m.peak_pss_mb`` (None off Linux)."""

    def __enter__(self):
        import subprocess
        import sys

        self.peak_rss_mb = self.peak_pss_mb = None
        self.proc = None
        if os.path.exists("/proc/self/smaps_rollup"):
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _MONITOR, str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            time.sleep(0.2)  # first sample before the work starts
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            out, _ = self.proc.communicate("stop\n", timeout=60)
            rss, pss = map(float, out.split())
            self.peak_rss_mb, self.peak_pss_mb = round(rss, 1), round(pss, 1)
        return False


def _bench_cfg(run_dir: Path, chunk_size: int = 16):
    from quakescale.config import parse_config

    return parse_config(
        {
            "run": {"name": "bench", "out_dir": str(run_dir)},
            "archive": {
                "sds_root": "/data/sds",
                "inventory": "/data/stations.xml",
                "start": "2015-01-01",
                "end": "2015-12-31",
            },
            "compute": {
                "backend": "array",
                "chunk_size": chunk_size,
                "array_throttle": 200,
                "prologue": ["module load apptainer"],
                "gpu_pool": {"partition": "gpu", "account": "bench", "gpus": 1},
                "cpu_pool": {"partition": "cpu", "account": "bench"},
                "image_gpu": "/img/gpu.sif",
                "image_cpu": "/img/cpu.sif",
            },
        }
    )


def bench_render(plan, n_units: int, tmp: Path, chunk_size: int = 16) -> dict:
    """``quakescale submit`` after the scan, for ``n_units`` station-days: write the plan table,
    read it back with sorted units, render the sbatch scripts; one array task's chunk lookup."""
    import pandas as pd

    from quakescale.hpc.array import render_jobs
    from quakescale.hpc.stages import chunk_units
    from quakescale.rundir import write_table

    reps = -(-n_units // len(plan))
    big = pd.concat([plan] * reps, ignore_index=True).iloc[:n_units].copy()
    k = pd.Series(range(len(big))) // len(plan)
    big["station_id"] = big["station_id"] + "_" + k.astype(str)
    big["unit"] = big["day"] + "/" + big["station_id"]
    big["done"] = False
    assert big["unit"].is_unique
    n_sta = big["station_id"].nunique()
    run = tmp / "run"
    run.mkdir(parents=True, exist_ok=True)
    cfg = _bench_cfg(run, chunk_size)
    render_jobs(
        _bench_cfg(tmp / "warm", chunk_size), {"detect": 10, "xcorr": 2}, run_dir=tmp / "warm"
    )  # imports, templates
    t = time.perf_counter()
    write_table(big, run / "plan.parquet")
    t_write = time.perf_counter() - t
    t = time.perf_counter()
    units = sorted(pd.read_parquet(run / "plan.parquet")["unit"])
    t_read = time.perf_counter() - t
    t = time.perf_counter()
    specs = render_jobs(
        cfg, {"detect": len(units), "xcorr": n_sta}, run_dir=run, config_path=run / "config.yaml", max_array_size=1000
    )
    t_render = time.perf_counter() - t
    t = time.perf_counter()
    last = chunk_units(
        sorted(pd.read_parquet(run / "plan.parquet", columns=["unit"])["unit"]),
        chunk_size,
        -(-len(units) // chunk_size) - 1,
    )
    t_task = time.perf_counter() - t
    assert last and last[-1] == units[-1]
    files = list((run / "jobs").iterdir())
    return {
        "station_days": len(units),
        "stations": n_sta,
        "chunk_size": chunk_size,
        "write_plan_seconds": round(t_write, 3),
        "read_sort_plan_seconds": round(t_read, 3),
        "render_jobs_seconds": round(t_render, 3),
        "render_total_seconds": round(t_write + t_read + t_render, 3),
        "scripts": len(specs),
        "detect_array_tasks": sum(s.n_tasks for s in specs if s.stage == "detect"),
        "job_files": len(files),
        "job_bytes": sum(f.stat().st_size for f in files),
        "array_task_chunk_lookup_seconds": round(t_task, 3),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--quick",
        action="store_true",
        help="2,000 station-days planned, baseline on 500, 200 Dask tasks (default 10,000, 2,000 and 1,000)",
    )
    ap.add_argument(
        "--station-days",
        type=int,
        default=None,
        help="station-days to plan for real (e.g. 100000; needs ~1.3 GB of disk for a moment)",
    )
    ap.add_argument("--baseline-station-days", type=int, default=None)
    ap.add_argument("--workers", type=int, default=None, help="plan_station_days workers (default: its own choice)")
    ap.add_argument("--no-dask", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("bench-out/bench_plan.json"))
    a = ap.parse_args(argv)
    import pandas as pd

    from quakescale.archive import plan_station_days
    from quakescale.hpc.stages import chunks

    n = a.station_days or (2000 if a.quick else 10000)
    nb = a.baseline_station_days or (500 if a.quick else 2000)
    m = 200 if a.quick else 1000
    res = {"benchmark": "plan_and_schedule", "cpu_count": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="bench-plan-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        ids, days = make_tree(root, n)
        res["tree_seconds"] = round(time.perf_counter() - t, 2)
        rss0 = _rss_mb()
        with TreeMemory() as mem:
            t = time.perf_counter()
            plan = plan_station_days(root / "sds", ids, days, ["HH?"], workers=a.workers)
            plan_s = time.perf_counter() - t
        assert len(plan) == len(ids) * len(days) and (plan.state == "ok").all() and (plan.coverage > 0).all()
        res.update(
            station_days=int(len(plan)),
            plan_seconds=round(plan_s, 3),
            plan_ms_per_station_day=round(1000 * plan_s / len(plan), 4),
            plan_seconds_extrapolated_1e5=round(plan_s / len(plan) * 1e5, 2),
            rss_before_plan_mb=round(rss0, 1),
            peak_rss_mb=round(_rss_mb(), 1),
            plan_tree_peak_rss_mb=mem.peak_rss_mb,
            plan_tree_peak_pss_mb=mem.peak_pss_mb,
        )
        # baseline in the same run: the per-station-day path on the first nb units (whole days)
        bdays = days[: max(1, nb // len(ids))]
        t = time.perf_counter()
        ref = per_station_day_plan(root / "sds", ids, bdays, ["HH?"])
        base_s = time.perf_counter() - t
        fast_part = plan.iloc[: len(ref)].reset_index(drop=True)
        pd.testing.assert_frame_equal(fast_part, ref, check_exact=True)  # same table, exactly
        res.update(
            baseline_station_days=int(len(ref)),
            baseline_seconds=round(base_s, 3),
            baseline_ms_per_station_day=round(1000 * base_s / len(ref), 4),
            baseline_seconds_extrapolated_1e5=round(base_s / len(ref) * 1e5, 1),
            speedup=round((base_s / len(ref)) / (plan_s / len(plan)), 1),
        )
        shutil.rmtree(root / "sds")
        res["render"] = bench_render(plan, 100000, root / "render")
    res["plan_plus_render_seconds_1e5"] = round(
        res["plan_seconds_extrapolated_1e5"] + res["render"]["render_total_seconds"], 2
    )
    res["targets"] = {
        "seconds_lt": 30.0,
        "memory_gb_lt": 2.0,
        "met": res["plan_plus_render_seconds_1e5"] < 30
        and max(res["peak_rss_mb"], res["plan_tree_peak_rss_mb"] or 0, _rss_mb()) < 2048,
    }
    units = [f"2015-01-01/XX.S{i:06d}" for i in range(100000)]
    t = time.perf_counter()
    parts = chunks(units, 16)
    res["chunk_seconds_1e5"] = round(time.perf_counter() - t, 4)
    res["chunks_1e5"] = len(parts)

    if not a.no_dask:
        from distributed import Client, LocalCluster

        with (
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
            Client(cluster) as client,
        ):
            client.gather(client.map(_noop, range(10)))  # warm up
            t = time.perf_counter()
            client.gather(client.map(_noop, range(m), pure=False))
            dask_s = time.perf_counter() - t
        res.update(
            dask_tasks=m,
            dask_ms_per_task=round(1000 * dask_s / m, 3),
            dask_overhead_per_station_day_ms_chunk16=round(1000 * dask_s / m / 16, 4),
        )
    r = res["render"]
    print(
        f"plan: {res['station_days']} station-days in {res['plan_seconds']} s ({res['plan_ms_per_station_day']} "
        "ms each; "
        f"10^5 -> ~{res['plan_seconds_extrapolated_1e5']} s), peak RSS {res['peak_rss_mb']} MB; "
        f"this process + workers: Rss {res['plan_tree_peak_rss_mb']} MB, Pss {res['plan_tree_peak_pss_mb']} MB"
    )
    print(
        f"baseline (per station-day, threads): {res['baseline_station_days']} station-days in "
        f"{res['baseline_seconds']} s "
        f"({res['baseline_ms_per_station_day']} ms each; 10^5 -> ~{res['baseline_seconds_extrapolated_1e5']} s); "
        f"speed-up {res['speedup']}x; same table"
    )
    print(
        f"render for {r['station_days']} station-days: write plan {r['write_plan_seconds']} s + read/sort "
        f"{r['read_sort_plan_seconds']} s + "
        f"render_jobs {r['render_jobs_seconds']} s ({r['scripts']} scripts, {r['detect_array_tasks']} detect "
        "array tasks); "
        f"one array task's chunk lookup {r['array_task_chunk_lookup_seconds']} s"
    )
    print(
        f"plan + render, 10^5 station-days: {res['plan_plus_render_seconds_1e5']} s (target < 30 s, < 2 GB): met "
        f"{res['targets']['met']}"
    )
    print(f"chunks of 16 for 10^5 station-days: {res['chunk_seconds_1e5']} s ({res['chunks_1e5']} tasks)")
    if not a.no_dask:
        print(
            f"Dask LocalCluster: {res['dask_ms_per_task']} ms per task -> "
            f"{res['dask_overhead_per_station_day_ms_chunk16']} ms per station-day in chunks of 16"
        )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {a.out}")
    return res


if __name__ == "__main__":
    main()
