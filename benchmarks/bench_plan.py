"""Planning and scheduling at scale: plan N station-days, chunk them, and the Dask overhead per task.

1. An SDS tree of N station-days (3 channels each; every file one small Steim2 record, copied
   from one template so the tree is cheap to make) -> ``plan_station_days`` (header scan of
   every file, threads) -> seconds and peak memory; extrapolated to 10^5 station-days.
2. The stage chunks for 10^5 station-days (``chunks``) -> seconds.
3. Dask LocalCluster overhead per task: the same no-op task mapped M times, seconds per task
   (the baseline every chunk of station-days pays once).

    python benchmarks/bench_plan.py [--quick] [--out bench-out/bench_plan.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path


def _noop(x):
    return x


def make_tree(root: Path, n_station_days: int, n_days: int = 100) -> tuple[list[str], list[dt.date]]:
    import numpy as np
    from obspy import Trace, UTCDateTime

    tmpl = root / "template.mseed"
    tr = Trace(np.arange(1000, dtype=np.int32))
    tr.stats.sampling_rate = 100.0
    tr.write(str(tmpl), format="MSEED", encoding="STEIM2", reclen=4096)
    data = tmpl.read_bytes()
    n_sta = max(1, n_station_days // n_days)
    days = [dt.date(2015, 1, 1) + dt.timedelta(days=i) for i in range(n_days)]
    ids = [f"XX.S{i:04d}" for i in range(n_sta)]
    for sid in ids:
        net, sta = sid.split(".")
        for cha in ("HHZ", "HHN", "HHE"):
            d = root / "sds" / "2015" / net / sta / f"{cha}.D"
            d.mkdir(parents=True, exist_ok=True)
            for day in days:
                u = UTCDateTime(day.isoformat())
                (d / f"{net}.{sta}..{cha}.D.{u.year}.{u.julday:03d}").write_bytes(data)
    return ids, days


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2,000 station-days and 200 Dask tasks (default 10,000 and 1,000)")
    ap.add_argument("--out", type=Path, default=Path("bench-out/bench_plan.json"))
    a = ap.parse_args(argv)
    from quakescale.archive import plan_station_days
    from quakescale.hpc.stages import chunks

    n = 2000 if a.quick else 10000
    m = 200 if a.quick else 1000
    res = {"benchmark": "plan_and_schedule", "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        ids, days = make_tree(root, n)
        res["tree_seconds"] = round(time.perf_counter() - t, 2)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t = time.perf_counter()
        plan = plan_station_days(root / "sds", ids, days, ["HH?"])
        plan_s = time.perf_counter() - t
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        assert len(plan) == len(ids) * len(days) and (plan.state != "no_data").all()
        res.update(station_days=int(len(plan)), plan_seconds=round(plan_s, 3), plan_ms_per_station_day=round(1000 * plan_s / len(plan), 4),
                   plan_seconds_extrapolated_1e5=round(plan_s / len(plan) * 1e5, 1), peak_rss_mb=round(max(rss0, rss1), 1))
        shutil.rmtree(root / "sds")
    units = [f"2015-01-01/XX.S{i:06d}" for i in range(100000)]
    t = time.perf_counter()
    parts = chunks(units, 16)
    res["chunk_seconds_1e5"] = round(time.perf_counter() - t, 4)
    res["chunks_1e5"] = len(parts)

    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
        client.gather(client.map(_noop, range(10)))  # warm up
        t = time.perf_counter()
        client.gather(client.map(_noop, range(m), pure=False))
        dask_s = time.perf_counter() - t
    res.update(dask_tasks=m, dask_ms_per_task=round(1000 * dask_s / m, 3),
               dask_overhead_per_station_day_ms_chunk16=round(1000 * dask_s / m / 16, 4))
    print(f"plan: {res['station_days']} station-days in {res['plan_seconds']} s ({res['plan_ms_per_station_day']} ms each; "
          f"10^5 -> ~{res['plan_seconds_extrapolated_1e5']} s), peak RSS {res['peak_rss_mb']} MB")
    print(f"chunks of 16 for 10^5 station-days: {res['chunk_seconds_1e5']} s ({res['chunks_1e5']} tasks)")
    print(f"Dask LocalCluster: {res['dask_ms_per_task']} ms per task -> {res['dask_overhead_per_station_day_ms_chunk16']} ms per station-day in chunks of 16")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {a.out}")
    return res


if __name__ == "__main__":
    main()
