"""Benchmark: double-difference relocation time and peak memory, catalog data only.

    python benchmarks/bench_relocate.py [--quick] [--n-events N] [--out bench-out/relocate.json]

A synthetic world (events on a fault patch that grows with N so that the event density stays
that of a dense aftershock sequence -- square up to 12 km wide (N <= 5,400), then longer along
strike with the down-dip width kept at 12 km so that every event stays 3-15 km deep; 20 stations,
picks with 10/20 ms errors, start locations perturbed by ~0.4/0.5 km) -> catalog differential times
(ph2dt, pipeline parameters: 6 km, 20 neighbours, 8 links, 8..50 observations) -> DD relocation
(LSQR, atol=btol=1e-4 as the pipeline's relocate(), iterations [4, 4], damping [80, 60]).  Reports
seconds for both steps (and their sum, the figure held against the target) and the peak resident
memory of the run's process (ru_maxrss), location errors vs truth.
Baseline in the same run: the same pipeline on N/10 events; reported as the time ratio against
the event ratio (1.0 = linear scaling).
Target (issue 6): 20,000 events in < 5 min and < 8 GB.  --quick: 2,000 events.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # LSQR makes many small BLAS calls

import numpy as np  # noqa: E402

from quakescale.relocate import dd  # noqa: E402
from quakescale.relocate.pairs import catalog_pairs  # noqa: E402
from quakescale.synth.relocation import location_errors_m, synthetic_case  # noqa: E402

MAX_WIDTH_KM = 12.0


def geometry(n: int) -> tuple[float, float]:
    """(half-length along strike, down-dip width) in km: area 2 e^2 with e = 2 sqrt(N/150) km
    (the density of a dense aftershock sequence), the width capped at 12 km (depths 3-15 km)."""
    e = max(2.0, 2.0 * np.sqrt(n / 150.0))
    width = min(e, MAX_WIDTH_KM)
    return e * e / width, width


def run(n: int, seed: int = 0) -> dict:
    extent, width = geometry(n)
    truth, start, picks, stations, model = synthetic_case(
        n,
        20,
        seed=seed,
        sigma_p_s=0.01,
        sigma_s_s=0.02,
        start_sigma_km=0.4,
        start_sigma_z_km=0.5,
        extent_km=extent,
        width_km=width,
        network_radius_km=30.0 + 1.5 * extent,
    )
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    t = time.perf_counter()
    dtct = catalog_pairs(
        start,
        picks,
        stations,
        max_station_km=150.0,
        max_sep_km=6.0,
        min_obs=8,
        max_obs=50,
        max_neighbors=20,
        min_links=8,
    )
    t_pairs = time.perf_counter() - t
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    st = stations.rename(columns={"station_id": "station"})
    t = time.perf_counter()
    sets = dd.RelocateParams.from_config().iteration_sets(with_cc=False)  # the config's [4, 4], [80, 60]
    res = dd.relocate_dd(
        start,
        st,
        dd.DDData.from_tables(dtct),
        model,
        sets,
        solver="lsqr",
        idat=2,
        maxdist_km=400.0,
        minobs_ct=8,
        lsqr_tol=1e-4,
    )
    t_dd = time.perf_counter() - t
    rss2 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    e0 = location_errors_m(truth, start)
    e1 = location_errors_m(truth, res.events)
    lsqr_itn = [int(line.split(" itn ")[1].split()[0]) for line in res.log if " itn " in line]
    return dict(
        n_events=n,
        n_dtimes=int(len(dtct)),
        n_solves=len(lsqr_itn),
        lsqr_iterations=int(sum(lsqr_itn)),
        total_seconds=t_pairs + t_dd,
        n_pairs=int(dtct.groupby(["event_id_1", "event_id_2"]).ngroups),
        n_relocated=int(len(res.events)),
        ph2dt_seconds=t_pairs,
        dd_seconds=t_dd,
        rss_after_synthetic_gb=rss0,
        peak_rss_after_ph2dt_gb=rss1,
        peak_rss_gb=rss2,
        median_error_start_m=float(e0.median()),
        median_error_relocated_m=float(e1.median()),
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n-events", type=int, default=None)
    ap.add_argument("--out", default="bench-out/relocate.json")
    a = ap.parse_args(argv)
    n = a.n_events or (2000 if a.quick else 20000)
    ctx = mp.get_context("fork")  # each run in its own process: peak RSS per run
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        base = pool.apply(run, (max(150, n // 10),))
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        main_run = pool.apply(run, (n,))
    out = dict(
        main=main_run,
        baseline_small=base,
        time_ratio_vs_small=main_run["dd_seconds"] / base["dd_seconds"],
        total_time_ratio_vs_small=main_run["total_seconds"] / base["total_seconds"],
        event_ratio_vs_small=main_run["n_events"] / base["n_events"],
        target_seconds=300,
        target_gb=8.0,
        meets_target=bool(main_run["total_seconds"] < 300 and main_run["peak_rss_gb"] < 8.0) if n >= 20000 else None,
    )
    for k, v in out.items():
        if isinstance(v, dict):
            print(k)
            for kk, vv in v.items():
                print(f"  {kk:30s} {vv:.4g}" if isinstance(vv, float) else f"  {kk:30s} {vv}")
        else:
            print(f"{k:32s} {v:.4g}" if isinstance(v, float) else f"{k:32s} {v}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
