"""Benchmark: our HypoDD drop-in against the PyPI ``hypodd`` package (a Python port of HypoDD),
side by side on identical HypoDD projects.

    python benchmarks/bench_hypodd_pypi.py [--quick] [--n-events 500] [--out bench-out/hypodd_pypi.json]

Needs ``pip install hypodd==0.2.1`` (the ``bench`` extra).  Two projects:

- synthetic: ``dd.synthetic_case`` (N events on a fault patch, 12 stations, picks with 10/20 ms
  errors, start locations off by ~0.4/0.5 km), catalog differential times from
  ``pairs.catalog_pairs``, written as a HypoDD 1.x project (event.dat, station.dat, dt.ct,
  hypoDD.inp: LSQR, iterations 4+4, damping 80/60) by ``hypodd_project.export_hypodd_project``;
- Italy: ``shared/data/real_demo_italy2016/hypoDD`` (beside the checkout, or $QUAKESCALE_SHARED_DATA) with its reference hypoDD.inp (catalog
  data, 4 iteration sets, cluster 1), compared with the reference ``hypoDD.reloc`` (Fortran).

Each program runs in its own Python process on the same files (PyPI: ``run_hypoDD('hypoDD.inp')``
in a copy of the project, the way its ``python -m hypodd.hypoDD`` entry works -- the installed
``hypodd`` console script points at a ``main`` that does not exist; ours:
``dd.run_hypodd_project``, what ``quakescale relocate hypodd hypoDD.inp`` runs).  Reported per
run: seconds (inside the process, reading the files to writing hypoDD.reloc; and wall clock of
the whole process), peak resident memory (the process's ru_maxrss), relocated events, and
agreement: synthetic -- median 3-D / horizontal / vertical error vs the truth; Italy -- event
count and median horizontal / vertical difference vs the reference hypoDD.reloc; both -- ours vs
PyPI's.  A run that fails (PyPI dies on NaN on the Italy project) is recorded with its error
message; its last completed iteration (``hypoDD.reloc.001.NNN``) is compared for information.
PyPI's numba kernels are compiled on their first use and cached (``cache=True``); the first run
ever after installing pays that once.  Target (issue 6): ours >= 5x faster at the same agreement.
--quick: 200 synthetic events; the Italy project with ours only (PyPI needs ~2 min there).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

_DATA = next((p for p in (Path(__file__).resolve().parents[2] / "shared" / "data", Path(os.environ.get("QUAKESCALE_SHARED_DATA", "/nonexistent")),
                           Path("/work/shared/data")) if p.is_dir()), Path("/work/shared/data"))
ITALY = _DATA / "real_demo_italy2016" / "hypoDD"


# ----------------------------------------------------------------------------- child process
def _child(which: str, inp: str, out_dir: str, result: str) -> None:
    """Run one program on one project in this process; write seconds, peak RSS and the error."""
    import resource

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    r = {"program": which, "ok": False, "error": None}
    t0 = time.perf_counter()
    try:
        if which == "pypi":
            import logging

            from hypodd.hypoDD import run_hypoDD

            os.chdir(out_dir)  # PyPI hypodd reads and writes relative to the working directory
            t0 = time.perf_counter()
            run_hypoDD(Path(inp).name)
            logging.getLogger("hypoDD").handlers.clear()
        else:
            from quakescale.relocate.dd import run_hypodd_project

            t0 = time.perf_counter()
            run_hypodd_project(inp, out_dir)
        r["ok"] = True
    except Exception as e:  # recorded, not hidden: the parent reports it
        r["error"] = f"{type(e).__name__}: {e}"
    r["seconds"] = time.perf_counter() - t0
    r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    Path(result).write_text(json.dumps(r))


def _run(which: str, inp: Path, out_dir: Path, timeout_s: float) -> dict:
    inp, out_dir = Path(inp).resolve(), Path(out_dir).resolve()  # the PyPI child changes directory
    out_dir.mkdir(parents=True, exist_ok=True)
    result = out_dir / f"_{which}_result.json"
    if result.exists():
        result.unlink()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", which, str(inp), str(out_dir), str(result)]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    t = time.perf_counter()
    with open(out_dir / f"_{which}_stdout.txt", "w") as log:
        try:
            p = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s, env=env)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            rc = None
    wall = time.perf_counter() - t
    if result.exists():
        r = json.loads(result.read_text())
    else:
        r = {"program": which, "ok": False, "seconds": None, "peak_rss_mb": None,
             "error": f"timed out after {timeout_s:.0f} s" if rc is None else f"process exited with {rc} (see {log.name})"}
    r["wall_seconds"] = wall
    return r


# ----------------------------------------------------------------------------- agreement
def _read_reloc(path: Path):
    from quakescale.formats import hypodd as H

    return H.read_reloc(path) if path.exists() and path.stat().st_size else None


def _read_iteration_reloc(path: Path):
    """PyPI hypodd's per-iteration files (hypoDD.reloc.CCC.III): the leading .reloc columns only."""
    import pandas as pd

    rows = [ln.split()[:4] for ln in path.read_text().splitlines() if ln.strip()]
    return pd.DataFrame({"event_id": [int(r[0]) for r in rows], "latitude": [float(r[1]) for r in rows],
                         "longitude": [float(r[2]) for r in rows], "depth_km": [float(r[3]) for r in rows]})


def _diff(a, b) -> dict:
    """Event count in common and median horizontal / vertical / 3-D differences (m), a vs b."""
    import numpy as np

    from quakescale.geo import LocalProjection

    m = a.merge(b, on="event_id", suffixes=("_a", "_b"))
    if not len(m):
        return {"n_common": 0}
    p = LocalProjection(float(m["latitude_b"].mean()), float(m["longitude_b"].mean()))
    xa, ya = p.to_xy(m["latitude_a"].to_numpy(float), m["longitude_a"].to_numpy(float))
    xb, yb = p.to_xy(m["latitude_b"].to_numpy(float), m["longitude_b"].to_numpy(float))
    dh = np.hypot(np.asarray(xa) - xb, np.asarray(ya) - yb) * 1000.0
    dz = np.abs(m["depth_km_a"].to_numpy(float) - m["depth_km_b"].to_numpy(float)) * 1000.0
    return {"n_common": int(len(m)), "median_dh_m": float(np.median(dh)), "median_dz_m": float(np.median(dz)),
            "median_3d_m": float(np.median(np.hypot(dh, dz))), "max_3d_m": float(np.max(np.hypot(dh, dz)))}


def _last_iteration_file(d: Path) -> Path | None:
    files = sorted(d.glob("hypoDD.reloc.*.*"))
    files = [f for f in files if f.stat().st_size]
    return files[-1] if files else None


def _compare(name: str, runs: dict, ref, ref_name: str) -> dict:
    out = {}
    rel = {}
    for k, r in runs.items():
        if r.get("skipped"):
            continue
        rr = _read_reloc(Path(r["dir"]) / "hypoDD.reloc") if r["ok"] else None
        rel[k] = rr
        r["n_relocated"] = None if rr is None else int(len(rr))
        if rr is not None:
            r[f"vs_{ref_name}"] = _diff(rr, ref)
        elif k == "pypi":
            last = _last_iteration_file(Path(r["dir"]))
            if last is not None:
                lr = _read_iteration_reloc(last)
                r["last_completed_iteration_file"] = last.name
                r[f"last_completed_iteration_vs_{ref_name}"] = _diff(lr, ref) | {"n_relocated": int(len(lr))}
    if rel.get("ours") is not None and rel.get("pypi") is not None:
        out["ours_vs_pypi"] = _diff(rel["ours"], rel["pypi"])
    o, p = runs.get("ours", {}), runs.get("pypi", {})
    if o.get("ok") and p.get("ok"):
        out["speedup_seconds"] = p["seconds"] / o["seconds"]
        out["speedup_wall"] = p["wall_seconds"] / o["wall_seconds"]
        out["memory_ratio"] = p["peak_rss_mb"] / o["peak_rss_mb"]
    out["runs"] = runs
    return out


# ----------------------------------------------------------------------------- projects
def synthetic_project(work: Path, n: int, n_stations: int = 12, seed: int = 0):
    import numpy as np

    from quakescale.relocate import dd
    from quakescale.relocate.hypodd_project import export_hypodd_project

    extent = max(2.0, 2.0 * np.sqrt(n / 150.0))
    truth, start, picks, stations, model = dd.synthetic_case(n, n_stations, seed=seed, sigma_p_s=0.01, sigma_s_s=0.02,
                                                            start_sigma_km=0.4, start_sigma_z_km=0.5, extent_km=extent,
                                                            network_radius_km=30.0 + 1.5 * extent)
    proj = work / "project"
    inp = export_hypodd_project(start, picks, stations, model, params={"max_sep_km": 6.0, "min_obs": 8, "max_obs": 50,
                                                                       "max_neighbors": 20, "min_links": 8},
                                out_dir=proj)
    return inp, truth, start


def _copy_inputs(inp: Path, dest: Path) -> Path:
    """The .inp and the input files it names, into ``dest`` (PyPI hypodd writes beside them)."""
    from quakescale.formats import hypodd as H

    dest.mkdir(parents=True, exist_ok=True)
    h = H.read_hypodd_inp(inp)
    for name in (h.fn_cc, h.fn_ct, h.fn_eve, h.fn_sta):
        if name:
            shutil.copy(h.resolve(name), dest / Path(name).name)
    shutil.copy(inp, dest / inp.name)
    for f in dest.iterdir():
        f.chmod(0o644)
    return dest / inp.name


def bench_project(name: str, inp: Path, work: Path, timeout_s: float, run_pypi: bool, pypi_skip_reason: str = "") -> dict:
    runs = {}
    ours_dir = work / "ours"
    if ours_dir.exists():
        shutil.rmtree(ours_dir)
    runs["ours"] = _run("ours", inp, ours_dir, timeout_s) | {"dir": str(ours_dir)}
    if run_pypi:
        pdir = work / "pypi"
        if pdir.exists():
            shutil.rmtree(pdir)
        pinp = _copy_inputs(inp, pdir)
        runs["pypi"] = _run("pypi", pinp, pdir, timeout_s) | {"dir": str(pdir)}
    else:
        runs["pypi"] = {"skipped": pypi_skip_reason}
    return runs


def _pypi_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("hypodd")
    except Exception:
        return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n-events", type=int, default=None, help="synthetic events (default 500, --quick 200)")
    ap.add_argument("--out", default="bench-out/hypodd_pypi.json")
    ap.add_argument("--work", default=None, help="folder for the projects (default: beside --out)")
    ap.add_argument("--timeout-s", type=float, default=900.0, help="per run")
    ap.add_argument("--child", nargs=4, metavar=("PROGRAM", "INP", "OUT_DIR", "RESULT"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        return _child(*a.child)
    import numpy as np  # noqa: F401  (imports here keep the child processes lean)

    from quakescale.formats import hypodd as H

    version = _pypi_version()
    if version is None:
        sys.exit("bench_hypodd_pypi: the PyPI package 'hypodd' is not installed (pip install hypodd==0.2.1, "
                 "or the project's 'bench' extra)")
    n = a.n_events or (200 if a.quick else 500)
    work = Path(a.work) if a.work else Path(a.out).with_suffix("").parent / "hypodd_pypi_work"
    work.mkdir(parents=True, exist_ok=True)
    out = {"pypi_hypodd_version": version, "quick": bool(a.quick), "target_speedup": 5.0}

    # synthetic
    sdir = work / "synthetic"
    if sdir.exists():
        shutil.rmtree(sdir)
    inp, truth, start = synthetic_project(sdir, n)
    dtct = H.read_dtct(inp.parent / "dt.ct")
    truth_t = truth[["event_id", "latitude", "longitude", "depth_km"]]
    runs = bench_project("synthetic", inp, sdir, a.timeout_s, run_pypi=True)
    syn = _compare("synthetic", runs, truth_t, "truth")
    syn |= {"n_events": n, "n_dtimes": int(len(dtct)), "n_pairs": int(dtct.groupby(["event_id_1", "event_id_2"]).ngroups),
            "start_vs_truth": _diff(start[["event_id", "latitude", "longitude", "depth_km"]], truth_t)}
    out["synthetic"] = syn

    # Italy
    if (ITALY / "hypoDD.inp").exists():
        idir = work / "italy"
        if idir.exists():
            shutil.rmtree(idir)
        ref = H.read_reloc(ITALY / "hypoDD.reloc")
        runs = bench_project("italy", ITALY / "hypoDD.inp", idir, a.timeout_s, run_pypi=not a.quick,
                             pypi_skip_reason="--quick: PyPI hypodd needs ~2 min on this project")
        it = _compare("italy", runs, ref, "reference")
        it |= {"n_reference_events": int(len(ref)), "n_dtimes": int(len(H.read_dtct(ITALY / "dt.ct")))}
        out["italy"] = it
    else:
        out["italy"] = {"skipped": f"{ITALY} not present"}

    _print(out)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2, default=str))
    return out


def _print(out: dict) -> None:
    print(f"PyPI hypodd {out['pypi_hypodd_version']} vs QuakeScale (identical HypoDD projects)")
    for name in ("synthetic", "italy"):
        d = out.get(name, {})
        if "runs" not in d:
            print(f"{name}: {d.get('skipped', 'not run')}")
            continue
        extra = (f"{d['n_events']} events, {d['n_dtimes']} dt ({d['n_pairs']} pairs); start vs truth median 3-D "
                 f"{d['start_vs_truth']['median_3d_m']:.0f} m") if name == "synthetic" else \
            f"{d['n_dtimes']} dt; reference hypoDD.reloc {d['n_reference_events']} events"
        print(f"{name}: {extra}")
        ref = "truth" if name == "synthetic" else "reference"
        for k, r in d["runs"].items():
            if r.get("skipped"):
                print(f"  {k:5s} skipped: {r['skipped']}")
                continue
            sec = f"{r['seconds']:.1f}" if r.get("seconds") is not None else "-"
            rss = f"{r['peak_rss_mb']:.0f}" if r.get("peak_rss_mb") is not None else "-"
            line = f"  {k:5s} {'ok    ' if r['ok'] else 'FAILED'} {sec:>7s} s (wall {r['wall_seconds']:.1f} s) {rss:>6s} MB"
            v = r.get(f"vs_{ref}")
            if v:
                line += (f"  {r['n_relocated']} relocated; vs {ref}: {v['n_common']} common, median dh {v['median_dh_m']:.1f} m "
                         f"dz {v['median_dz_m']:.1f} m 3-D {v['median_3d_m']:.1f} m")
            print(line)
            if not r["ok"]:
                print(f"        error: {r['error']}")
                lv = r.get(f"last_completed_iteration_vs_{ref}")
                if lv:
                    print(f"        last completed iteration ({r['last_completed_iteration_file']}): {lv['n_relocated']} events; "
                          f"vs {ref}: median dh {lv['median_dh_m']:.1f} m dz {lv['median_dz_m']:.1f} m")
        if "ours_vs_pypi" in d:
            v = d["ours_vs_pypi"]
            print(f"  ours vs PyPI: {v['n_common']} common, median dh {v['median_dh_m']:.2f} m dz {v['median_dz_m']:.2f} m, "
                  f"max 3-D {v['max_3d_m']:.1f} m")
        if "speedup_seconds" in d:
            print(f"  speed-up {d['speedup_seconds']:.1f}x (wall {d['speedup_wall']:.1f}x), memory ratio PyPI/ours {d['memory_ratio']:.2f}")


if __name__ == "__main__":
    main()
