"""I/O floor: seconds per station-day to read + band-pass one 3-component day from the archive.

Every later stage is compared with this floor (detection target: <= 3x it).  Synthesises a
small world of full 24 h station-days (or uses --world), then times, per station-day:
read (ObsPy, Steim2 decode + merge) and read + detrend + 1-20 Hz band-pass.

    python benchmarks/bench_io.py [--quick] [--world DIR] [--out bench-out/bench_io.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 station-days of 24 h (default 6)")
    ap.add_argument("--world", type=Path, help="existing synthetic world (else one is made in a temp dir)")
    ap.add_argument("--out", type=Path, default=Path("bench-out/bench_io.json"))
    args = ap.parse_args(argv)

    from quakescale.archive import read_station_day
    from quakescale.synth.world import make_world

    n = 2 if args.quick else 6
    tmp = None
    if args.world is None:
        tmp = tempfile.TemporaryDirectory()
        world = Path(tmp.name)
        t0 = time.time()
        make_world(world, n_stations=max(4, n), days=1, n_events=20, seed=99, n_gaps=0, corrupt=False)
        synth_s = time.time() - t0
    else:
        world, synth_s = args.world, None
    import pandas as pd

    ids = list(pd.read_parquet(world / "truth" / "stations.parquet").station_id)[:n]
    read_s, filt_s, samples = [], [], 0
    for sid in ids:
        t0 = time.perf_counter()
        st = read_station_day(world / "sds", sid, "2014-08-03")
        t1 = time.perf_counter()
        st = st.split().detrend("demean").filter("bandpass", freqmin=1.0, freqmax=20.0, corners=4, zerophase=False)
        t2 = time.perf_counter()
        read_s.append(t1 - t0)
        filt_s.append(t2 - t0)
        samples += sum(tr.stats.npts for tr in st)
    res = dict(
        benchmark="io_floor",
        station_days=len(ids),
        seconds_per_station_day_read=round(float(np.median(read_s)), 4),
        seconds_per_station_day_read_filter=round(float(np.median(filt_s)), 4),
        samples_per_station_day=int(samples / len(ids)),
        synth_seconds_per_station_day=round(synth_s / max(4, n), 3) if synth_s else None,
        cpu_count=os.cpu_count(),
    )
    print(
        f"I/O floor: read {res['seconds_per_station_day_read']:.3f} s, read+band-pass "
        f"{res['seconds_per_station_day_read_filter']:.3f} s per 3-c station-day "
        f"({res['samples_per_station_day']:,} samples)"
    )
    if synth_s:
        print(f"synthesis: {res['synth_seconds_per_station_day']:.2f} s per station-day (24 h)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")
    return res


if __name__ == "__main__":
    main()
