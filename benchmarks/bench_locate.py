"""Benchmark: builtin batched locator, events/s on CPU for a batch of synthetic events.

    python benchmarks/bench_locate.py [--quick] [--out bench-out/locate.json]

Baseline in the same run: the same locator called one event at a time (the loop a per-event
locator such as a Hypoinverse-style program would do), on a subset; reported as a speed ratio.
Target (issue 5): >= 1,000 events/s for a batch of 10,000 events.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from quakescale.geo import epicentral_km  # noqa: E402
from quakescale.locate.locator import locate_events  # noqa: E402
from test_locate import synth_world  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="2,000 events, 50-event baseline")
    ap.add_argument("--n-events", type=int, default=None)
    ap.add_argument("--out", default="bench-out/locate.json")
    a = ap.parse_args(argv)
    n = a.n_events or (2000 if a.quick else 10000)
    n_base = 50 if a.quick else 200
    t = time.perf_counter()
    model, tt, stations, truth, picks, init = synth_world(n_ev=n, n_sta=20, seed=42)
    t_synth = time.perf_counter() - t
    t = time.perf_counter()
    loc, res = locate_events(init, picks, stations, model, tt=tt)
    t_batch = time.perf_counter() - t
    eh = epicentral_km(loc.latitude, loc.longitude, truth.latitude, truth.longitude)
    dz = (loc.depth_km - truth.depth_km).abs()
    # baseline: one event per call
    t = time.perf_counter()
    for i in range(n_base):
        locate_events(init.iloc[[i]], picks[picks.event_id == i], stations, model, tt=tt)
    t_single = (time.perf_counter() - t) / n_base
    out = dict(
        n_events=n,
        n_picks=int(len(picks)),
        seconds=t_batch,
        events_per_s=n / t_batch,
        baseline_one_at_a_time_events_per_s=1.0 / t_single,
        speedup_vs_one_at_a_time=(n / t_batch) * t_single,
        median_epicentral_error_km=float(np.median(eh)),
        median_depth_error_km=float(np.median(dz)),
        synth_seconds=t_synth,
        target_events_per_s=1000,
        meets_target=bool(n / t_batch >= 1000),
    )
    for k, v in out.items():
        print(f"{k:40s} {v:.4g}" if isinstance(v, float) else f"{k:40s} {v}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
