"""Benchmark: seconds per station-day for CERP detect+pick on CPU vs the I/O floor (read + filter).

    python benchmarks/bench_detect.py [--quick] [--threads 2] [--days 200] [--world DIR] [--out bench-out/detect.json]

A synthetic world with full 24 h days (4 stations, 150 events/day) is generated once (cached in
bench-out/world-bench, or --world).  For each station-day, in the same process and run:
- I/O floor: ``read_station_day`` + ``preprocess`` (1-20 Hz band-pass on the 100 Hz grid);
- full: ``run_station_day`` (read + filter + detector on all windows + picker on detected ones
  + merge + SNR + Wood-Anderson amplitudes);
- detector alone over all windows for the shipped model and for the seed-size CNN (32 kernels in
  all 8 layers) -- the size choice.
Then ``--days`` consecutive station-days (cycling over the world's) in one process: peak RSS and
RSS growth (memory must stay flat).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from pathlib import Path


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats and station-days (< ~1 min once the world is cached)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--days", type=int, default=None, help="consecutive station-days for the memory check (default 200; 8 with --quick)")
    ap.add_argument("--world", default="bench-out/world-bench")
    ap.add_argument("--out", default="bench-out/detect.json")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    from quakescale.archive import read_station_day
    from quakescale.config import load_config
    from quakescale.detect.models import Detector, load_model, n_params, normalize_windows
    from quakescale.detect.runner import _batch, preprocess, run_station_day, tune_malloc, window_starts

    world = Path(a.world)
    if not (world / "config.yaml").exists():
        from quakescale.synth.world import make_world

        t = time.time()
        make_world(world, n_stations=4, days=1, n_events=150, seed=99, hours_per_day=24.0, n_gaps=0, corrupt=False)
        print(f"world generated in {time.time() - t:.1f} s -> {world}")
    cfg = load_config(world / "config.yaml")
    cfg.detect.device = "cpu"
    import pandas as pd

    sids = sorted(pd.read_parquet(world / "truth" / "stations.parquet").station_id)
    day = cfg.archive.start
    tune_malloc()
    model = load_model(cfg.detect.model, device="cpu")
    run_station_day(cfg, sids[0], day, model=model)  # warm-up (inventory cache, allocator)
    reps = 1 if a.quick else 3
    io_s, full_s, det_s, seed_s, n_picks = [], [], [], [], []
    seed_cnn = Detector(channels=(32,) * 8).eval()
    for sid in sids:
        for _ in range(reps):
            t = time.perf_counter()
            st = read_station_day(cfg.archive.sds_root, sid, day, channels=list(cfg.archive.channels))
            prep = preprocess(st, cfg.detect)
            io_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            df = run_station_day(cfg, sid, day, model=model)
            full_s.append(time.perf_counter() - t)
            n_picks.append(len(df))
        starts = window_starts(prep.data.shape[1])
        for net, acc in ((model.detector, det_s), (seed_cnn, seed_s)):
            t = time.perf_counter()
            with torch.inference_mode():
                for b in range(0, len(starts), 256):
                    net(normalize_windows(torch.from_numpy(_batch(prep.data, starts[b : b + 256]))))
            acc.append(time.perf_counter() - t)
        del st, prep
    io, full = statistics.median(io_s), statistics.median(full_s)
    res = {
        "threads": a.threads,
        "station_days": len(sids),
        "io_floor_s_per_station_day": io,
        "detect_pick_s_per_station_day": full,
        "ratio_to_io_floor": full / io,
        "target_ratio": 3.0,
        "detector_only_s": statistics.median(det_s),
        "seed_size_detector_only_s": statistics.median(seed_s),
        "detector_params": n_params(model.detector),
        "seed_size_detector_params": n_params(seed_cnn),
        "picker_params": n_params(model.picker),
        "picks_per_station_day": statistics.median(n_picks),
        "model": model.label,
    }
    print(f"I/O floor (read + 1-20 Hz filter): {io:.2f} s per station-day")
    print(f"detect + pick (full run_station_day): {full:.2f} s per station-day = {full / io:.2f}x the I/O floor (target <= 3x, {a.threads} threads)")
    print(f"detector alone: {res['detector_only_s']:.2f} s ({res['detector_params']} params); seed-size CNN (32 kernels x 8): {res['seed_size_detector_only_s']:.2f} s ({res['seed_size_detector_params']} params)")
    n_days = a.days if a.days is not None else (8 if a.quick else 200)
    rss = []
    t = time.perf_counter()
    for i in range(n_days):
        run_station_day(cfg, sids[i % len(sids)], day, model=model)
        rss.append(rss_mb())
    k = max(1, n_days // 10)
    res.update(
        memory_station_days=n_days,
        memory_loop_s=time.perf_counter() - t,
        rss_first_mb=statistics.mean(rss[:k]),
        rss_last_mb=statistics.mean(rss[-k:]),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    print(f"memory over {n_days} consecutive station-days: RSS {res['rss_first_mb']:.0f} MB (first) -> {res['rss_last_mb']:.0f} MB (last); peak RSS {res['peak_rss_mb']:.0f} MB")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
