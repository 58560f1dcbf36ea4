"""Benchmark: rendering the sbatch job arrays of a large run (target: 10^5 station-days < 30 s, < 2 GB).

    python benchmarks/bench_jobs.py [--quick] [--station-days N] [--out bench-out/jobs.json]

Measures, for N station-days (1000 stations x N/1000 days):
- ``array``: ``render_jobs`` of the whole chain (detect arrays over chunks of ``chunk_size``
  station-days, associate, locate, xcorr array over stations, relocate, catalog), written to disk;
- ``array_chunk1``: the same with one station-day per array task (the largest array count);
- ``chunking``: every array task's ``chunk_units`` over the sorted station-day list;
- ``baseline``: the naive alternative measured in the same run -- one sbatch script per chunk
  (no arrays), which is what submitting chunk jobs one by one would render.
Peak Python memory (tracemalloc) and the process's max RSS are reported with each.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from quakescale.config import parse_config
from quakescale.hpc import array, stages
from quakescale.hpc.jobscript import SlurmJobScript


def _cfg(run_dir: Path, chunk_size: int):
    return parse_config(
        {
            "run": {"name": "bench", "out_dir": str(run_dir)},
            "archive": {
                "sds_root": "/data/sds",
                "inventory": "/data/stations.xml",
                "start": "2014-01-01",
                "end": "2014-12-31",
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


def _measure(fn):
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, dt, peak


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10^4 station-days instead of 10^5")
    ap.add_argument("--station-days", type=int, default=None)
    ap.add_argument("--chunk-size", type=int, default=16)
    ap.add_argument("--stations", type=int, default=1000)
    ap.add_argument("--max-array-size", type=int, default=1000)
    ap.add_argument("--out", default="bench-out/jobs.json")
    a = ap.parse_args(argv)
    n = a.station_days or (10_000 if a.quick else 100_000)
    results: dict = {
        "station_days": n,
        "chunk_size": a.chunk_size,
        "stations": a.stations,
        "max_array_size": a.max_array_size,
    }

    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
        tmp = Path(tmp)
        units = {"detect": n, "xcorr": a.stations}
        array.render_jobs(_cfg(tmp / "warmup", a.chunk_size), {"detect": 10, "xcorr": 2})  # imports, template cache

        cfg = _cfg(tmp / "array", a.chunk_size)
        specs, dt, peak = _measure(lambda: array.render_jobs(cfg, units, max_array_size=a.max_array_size))
        results["array"] = {
            "seconds": dt,
            "peak_mb": peak / 2**20,
            "scripts": len(specs),
            "detect_tasks": sum(s.n_tasks for s in specs if s.stage == "detect"),
            "bytes": sum(p.stat().st_size for p in (tmp / "array" / "jobs").iterdir()),
        }

        cfg1 = _cfg(tmp / "array1", 1)
        specs1, dt, peak = _measure(lambda: array.render_jobs(cfg1, units, max_array_size=a.max_array_size))
        results["array_chunk1"] = {
            "seconds": dt,
            "peak_mb": peak / 2**20,
            "scripts": len(specs1),
            "detect_tasks": sum(s.n_tasks for s in specs1 if s.stage == "detect"),
        }

        ids = sorted(
            f"2014-{1 + (i // a.stations) % 12:02d}-{1 + (i // a.stations) // 12 % 28:02d}/XX.S{i % a.stations:04d}"
            for i in range(n)
        )
        nc = stages.n_chunks(n, a.chunk_size)
        total, dt, peak = _measure(lambda: sum(len(stages.chunk_units(ids, a.chunk_size, c)) for c in range(nc)))
        assert total == n, (total, n)
        results["chunking"] = {"seconds": dt, "peak_mb": peak / 2**20, "chunks": nc}

        # baseline: one script per chunk, no arrays
        pool = cfg.compute.gpu_pool
        run_dir = tmp / "baseline"
        (run_dir / "jobs").mkdir(parents=True)
        argv0 = ["apptainer", "exec", "--nv", "/img/gpu.sif", "quakescale", "detect", str(run_dir / "config.yaml")]

        def baseline():
            for c in range(nc):
                SlurmJobScript.for_pool(
                    pool,
                    name="qs-bench-detect",
                    command=argv0 + ["--chunk", str(c)],
                    prologue=cfg.compute.prologue,
                    chdir=run_dir,
                    output=run_dir / "logs" / f"detect-{c}-%j.out",
                ).write(run_dir / "jobs" / f"detect-{c:06d}.sbatch")
            return nc

        nb, dt, peak = _measure(baseline)
        results["baseline_script_per_chunk"] = {"seconds": dt, "peak_mb": peak / 2**20, "scripts": nb}

    results["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["ratio_baseline_over_array"] = results["baseline_script_per_chunk"]["seconds"] / max(
        results["array"]["seconds"], 1e-9
    )
    results["targets"] = {
        "seconds_lt": 30.0,
        "memory_gb_lt": 2.0,
        "met": results["array"]["seconds"] < 30
        and results["array_chunk1"]["seconds"] < 30
        and results["max_rss_mb"] < 2048,
    }

    print(f"station-days: {n}  chunk_size: {a.chunk_size}  max array size: {a.max_array_size}")
    r = results["array"]
    print(
        f"array render ({r['scripts']} scripts, {r['detect_tasks']} detect tasks): {r['seconds']:.3f} s, peak "
        f"{r['peak_mb']:.1f} MB"
    )
    r = results["array_chunk1"]
    print(
        f"array render, chunk 1 ({r['scripts']} scripts, {r['detect_tasks']} detect tasks): {r['seconds']:.3f} s, "
        f"peak {r['peak_mb']:.1f} MB"
    )
    r = results["chunking"]
    print(f"chunk_units for all {r['chunks']} chunks: {r['seconds']:.3f} s, peak {r['peak_mb']:.1f} MB")
    r = results["baseline_script_per_chunk"]
    print(f"baseline, one script per chunk ({r['scripts']} scripts): {r['seconds']:.3f} s, peak {r['peak_mb']:.1f} MB")
    print(
        f"baseline / array time: {results['ratio_baseline_over_array']:.0f}x   max RSS "
        f"{results['max_rss_mb']:.0f} MB   "
        f"targets (<30 s, <2 GB) met: {results['targets']['met']}"
    )
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    sys.exit(0 if main()["targets"]["met"] else 1)
