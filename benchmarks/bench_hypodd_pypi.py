"""Benchmark: our HypoDD drop-in against HypoDD 2.1b (the Fortran program) and the PyPI ``hypodd``
package (a Python port of HypoDD), side by side on identical HypoDD projects.

    python benchmarks/bench_hypodd_pypi.py [--quick] [--n-events 500 [120 ...]] [--project path/hypoDD.inp ...]
                                           [--repeat 3] [--baseline-tree DIR] [--no-italy] [--no-pypi]
                                           [--out bench-out/hypodd_pypi.json]

Columns: ``ours`` (``quakescale.relocate.hypodd21.run_project``, what ``quakescale relocate hypodd
hypoDD.inp`` runs), ``hypodd21`` (the Fortran HypoDD 2.1b when ``hypoDD`` is on PATH or in
``containers/bin/``; built from source, e.g. github.com/fwaldhauser/HypoDD) and ``pypi`` (when
``hypodd==0.2.1`` is installed, the ``bench`` extra).  A missing program is recorded as skipped.
``--baseline-tree DIR`` adds ``ours_base``: the same entry point from another checkout's ``pipeline/``
(e.g. ``git archive <commit> pipeline | tar -x -C DIR``), to time a change before/after in one run.
Projects:

- synthetic: ``synth.relocation.synthetic_case`` (N events on a fault patch, 12 stations, picks with 10/20 ms
  errors, start locations off by ~0.4/0.5 km), catalog differential times from
  ``pairs.catalog_pairs``, written as a HypoDD 1.x project by ``hypodd_project.export_hypodd_project``;
- hayward: ``shared/data/hypodd_ex1_hayward`` (HypoDD 2.1b's example 1: hypoDD_2 control file,
  IMOD 1, ct + cc, SVD) with its reference outputs;
- italy: ``shared/data/real_demo_italy2016/hypoDD`` (1.x control file, 659 events, LSQR);
- every ``--project`` given (e.g. 2.1b's Calaveras and Parkfield examples), as they are.

Each program runs in its own process on a copy of the project.  Reported per run: seconds
(inside the process; for the Fortran the program's wall clock), wall clock of the whole process,
CPU seconds of the whole process (user + system, start-up and imports included), peak resident
memory, relocated events.  ``--repeat N`` runs every program N times, alternated (ours, 2.1b,
..., ours, 2.1b, ...: a loaded machine slows all alike) and reports medians (each run's figures are
kept in the JSON).  Agreement with the Fortran HypoDD 2.1b when it ran
(events in common, only-ours / only-2.1b counts, median and p90 horizontal / vertical
differences, median ex/ey/ez ratios), else with the reference files (synthetic: the truth).
--quick: 200 synthetic events, PyPI only on the synthetic project.
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

_DATA = next(
    (
        p
        for p in (
            Path(__file__).resolve().parents[2] / "shared" / "data",
            Path(os.environ.get("QUAKESCALE_SHARED_DATA", "/nonexistent")),
            Path("/work/shared/data"),
        )
        if p.is_dir()
    ),
    Path("/work/shared/data"),
)
ITALY = _DATA / "real_demo_italy2016" / "hypoDD"
HAYWARD = _DATA / "hypodd_ex1_hayward"


# ----------------------------------------------------------------------------- child process
def _vmhwm_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _fortran_exe() -> str | None:
    exe = shutil.which("hypoDD")
    if exe is None:
        local = Path(__file__).resolve().parents[1] / "containers" / "bin" / "hypoDD"
        exe = str(local) if local.exists() and os.access(local, os.X_OK) else None
    return exe


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
        elif which == "hypodd21":
            exe = _fortran_exe()
            os.chdir(out_dir)
            t0 = time.perf_counter()
            timer = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
            cmd = (
                [timer, "-f", "%M", "-o", "_hypodd21_maxrss_kb.txt", exe, Path(inp).name]
                if timer
                else [exe, Path(inp).name]
            )
            p = subprocess.run(cmd, capture_output=True, text=True)
            (Path(out_dir) / "_hypodd21_stdout.txt").write_text(p.stdout + p.stderr)
            if p.returncode != 0 or not (Path(out_dir) / "hypoDD.reloc").exists():
                raise RuntimeError(f"{exe} exited with {p.returncode}: {(p.stdout + p.stderr)[-300:]}")
        else:  # ours, ours_base (PYTHONPATH set by the parent)
            from quakescale.relocate.hypodd21 import run_project

            t0 = time.perf_counter()
            run_project(inp, out_dir)
        r["ok"] = True
    except Exception as e:  # recorded, not hidden: the parent reports it
        r["error"] = f"{type(e).__name__}: {e}"
    r["seconds"] = time.perf_counter() - t0
    # peak RSS of this process's own memory: VmHWM (ru_maxrss would include the parent's size, kept across exec);
    # the Fortran program's from /usr/bin/time (else the children's ru_maxrss)
    r["peak_rss_mb"] = _vmhwm_mb()
    if which == "hypodd21":
        f = Path(out_dir) / "_hypodd21_maxrss_kb.txt"
        try:
            r["peak_rss_mb"] = float(f.read_text().split()[-1]) / 1024.0
        except (OSError, ValueError, IndexError):
            r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    Path(result).write_text(json.dumps(r))


def _run(which: str, inp: Path, out_dir: Path, timeout_s: float, pythonpath: str | None = None) -> dict:
    inp, out_dir = (Path(inp).resolve(), Path(out_dir).resolve())  # the PyPI child changes directory
    out_dir.mkdir(parents=True, exist_ok=True)
    result = out_dir / f"_{which}_result.json"
    if result.exists():
        result.unlink()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", which, str(inp), str(out_dir), str(result)]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    # bytecode cached as an installed package has it (a PYTHONDONTWRITEBYTECODE environment would
    # otherwise recompile every module in every run: ~0.1 s of CPU that no user pays)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    import resource

    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    with open(out_dir / f"_{which}_stdout.txt", "w") as log:
        try:
            p = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s, env=env)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            rc = None
    wall = time.perf_counter() - t
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the child and what it waited for (the Fortran program)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if result.exists():
        r = json.loads(result.read_text())
    else:
        r = {
            "program": which,
            "ok": False,
            "seconds": None,
            "peak_rss_mb": None,
            "error": (
                f"timed out after {timeout_s:.0f} s" if rc is None else f"process exited with {rc} (see {log.name})"
            ),
        }
    r["wall_seconds"] = wall
    r["cpu_seconds"] = cpu
    return r


# ----------------------------------------------------------------------------- agreement
def _read_reloc(path: Path):
    """hypoDD.reloc -> event_id, latitude, longitude, depth_km, ex_m, ey_m, ez_m (no dates: synthetic
    projects carry years such as 1001 that a timestamp cannot hold)."""
    import pandas as pd

    if not (path.exists() and path.stat().st_size):
        return None
    rows = []
    for ln in path.read_text().splitlines():
        t = ln.split()
        if len(t) >= 10:
            num = [float(v) if "*" not in v else float("nan") for v in t[1:10]]
            rows.append([int(t[0]), num[0], num[1], num[2], num[6], num[7], num[8]])
    return pd.DataFrame(rows, columns=["event_id", "latitude", "longitude", "depth_km", "ex_m", "ey_m", "ez_m"])


def _read_iteration_reloc(path: Path):
    """PyPI hypodd's per-iteration files (hypoDD.reloc.CCC.III): the leading .reloc columns only."""
    import pandas as pd

    rows = [ln.split()[:4] for ln in path.read_text().splitlines() if ln.strip()]
    return pd.DataFrame(
        {
            "event_id": [int(r[0]) for r in rows],
            "latitude": [float(r[1]) for r in rows],
            "longitude": [float(r[2]) for r in rows],
            "depth_km": [float(r[3]) for r in rows],
        }
    )


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
    out = {
        "n_common": int(len(m)),
        "only_a": int(len(a) - len(m)),
        "only_b": int(len(b) - len(m)),
        "median_dh_m": float(np.median(dh)),
        "median_dz_m": float(np.median(dz)),
        "p90_dh_m": float(np.percentile(dh, 90)),
        "p90_dz_m": float(np.percentile(dz, 90)),
        "median_3d_m": float(np.median(np.hypot(dh, dz))),
        "max_3d_m": float(np.max(np.hypot(dh, dz))),
    }
    for c in ("ex_m", "ey_m", "ez_m"):
        if f"{c}_a" in m and f"{c}_b" in m:
            with np.errstate(invalid="ignore", divide="ignore"):
                r = m[f"{c}_a"].to_numpy(float) / m[f"{c}_b"].to_numpy(float)
            r = r[np.isfinite(r)]
            out[f"{c[:2]}_ratio_median"] = float(np.median(r)) if len(r) else None
            out[f"{c[:2]}_within_10pct"] = float(np.mean(np.abs(r - 1) <= 0.1)) if len(r) else None
    return out


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
    for k in ("ours", "pypi", "ours_base"):
        if rel.get(k) is not None and rel.get("hypodd21") is not None:
            out[f"{k}_vs_hypodd21"] = _diff(rel[k], rel["hypodd21"])
    if rel.get("ours") is not None and rel.get("ours_base") is not None:
        out["ours_vs_ours_base"] = _diff(rel["ours"], rel["ours_base"])
        a = Path(runs["ours"]["dir"]) / "hypoDD.reloc"
        b = Path(runs["ours_base"]["dir"]) / "hypoDD.reloc"
        out["ours_vs_ours_base"]["reloc_identical"] = a.read_bytes() == b.read_bytes()
    o = runs.get("ours", {})
    for k in ("pypi", "hypodd21", "ours_base"):
        p = runs.get(k, {})
        if o.get("ok") and p.get("ok"):
            out[f"speedup_vs_{k}_seconds"] = p["seconds"] / o["seconds"]
            out[f"speedup_vs_{k}_wall"] = p["wall_seconds"] / o["wall_seconds"]
            if p.get("cpu_seconds") and o.get("cpu_seconds"):
                out[f"speedup_vs_{k}_cpu"] = p["cpu_seconds"] / o["cpu_seconds"]
            out[f"memory_ratio_{k}_over_ours"] = p["peak_rss_mb"] / o["peak_rss_mb"]
    out["runs"] = runs
    return out


# ----------------------------------------------------------------------------- projects
def synthetic_project(work: Path, n: int, n_stations: int = 12, seed: int = 0):
    import numpy as np

    from quakescale.relocate.hypodd_project import export_hypodd_project
    from quakescale.synth.relocation import synthetic_case

    extent = max(2.0, 2.0 * np.sqrt(n / 150.0))
    truth, start, picks, stations, model = synthetic_case(
        n,
        n_stations,
        seed=seed,
        sigma_p_s=0.01,
        sigma_s_s=0.02,
        start_sigma_km=0.4,
        start_sigma_z_km=0.5,
        extent_km=extent,
        network_radius_km=30.0 + 1.5 * extent,
    )
    proj = work / "project"
    inp = export_hypodd_project(
        start,
        picks,
        stations,
        model,
        params={"max_sep_km": 6.0, "min_obs": 8, "max_obs": 50, "max_neighbors": 20, "min_links": 8},
        out_dir=proj,
    )
    return inp, truth, start


def _copy_inputs(inp: Path, dest: Path) -> Path:
    """The .inp and the input files it names, into ``dest`` (PyPI hypodd writes beside them)."""
    from quakescale.formats import hypodd as H

    dest.mkdir(parents=True, exist_ok=True)
    h = H.read_hypodd_inp(inp)
    for name in (h.fn_cc, h.fn_ct, h.fn_eve, h.fn_sta, h.fn_mod1d):
        if name and h.resolve(name).exists():
            shutil.copy(h.resolve(name), dest / Path(name).name)
    shutil.copy(inp, dest / inp.name)
    for f in dest.iterdir():
        f.chmod(0o644)
    return dest / inp.name


def bench_project(
    name: str,
    inp: Path,
    work: Path,
    timeout_s: float,
    run_pypi: bool,
    pypi_skip_reason: str = "",
    repeat: int = 1,
    baseline_tree: str | None = None,
) -> dict:
    """Every program on the project, ``repeat`` rounds alternated; medians of the figures, each run kept."""
    import statistics

    progs = [("ours", True, None)]
    if baseline_tree:
        progs.append(("ours_base", True, str(Path(baseline_tree).resolve() / "pipeline")))
    progs += [("hypodd21", _fortran_exe() is not None, None), ("pypi", run_pypi, None)]
    runs = {}
    for which, run, _ in progs:
        if not run:
            runs[which] = {
                "skipped": pypi_skip_reason if which == "pypi" else "hypoDD (2.1b) not on PATH nor in containers/bin"
            }
    each: dict = {}
    for _ in range(max(1, repeat)):
        for which, run, ppath in progs:
            if not run or (which == "pypi" and each.get("pypi") and not each["pypi"][-1]["ok"]):
                continue
            d = work / which
            if d.exists():
                shutil.rmtree(d)
            pinp = _copy_inputs(inp, d) if which not in ("ours", "ours_base") else inp
            each.setdefault(which, []).append(_run(which, pinp, d, timeout_s, ppath) | {"dir": str(d)})
    for which, rs in each.items():
        r = dict(rs[-1])
        if len(rs) > 1:
            for k in ("seconds", "wall_seconds", "cpu_seconds", "peak_rss_mb"):
                v = [x[k] for x in rs if x.get(k) is not None]
                r[k] = statistics.median(v) if v else None
            r["ok"] = all(x["ok"] for x in rs)
            r["repeats"] = [
                {k: x.get(k) for k in ("seconds", "wall_seconds", "cpu_seconds", "peak_rss_mb")} for x in rs
            ]
        runs[which] = r
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
    ap.add_argument(
        "--n-events",
        type=int,
        nargs="+",
        default=None,
        help="synthetic events, one project each (default 500, --quick 200)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="rounds per project, programs alternated; medians reported")
    ap.add_argument(
        "--baseline-tree", default=None, help="another checkout (its pipeline/): an extra 'ours_base' column"
    )
    ap.add_argument("--no-italy", action="store_true", help="leave out the Italy project")
    ap.add_argument("--no-pypi", action="store_true", help="leave out the PyPI port")
    ap.add_argument("--out", default="bench-out/hypodd_pypi.json")
    ap.add_argument("--work", default=None, help="folder for the projects (default: beside --out)")
    ap.add_argument("--timeout-s", type=float, default=900.0, help="per run")
    ap.add_argument(
        "--project", action="append", help="another HypoDD project (its hypoDD.inp), run unchanged; repeatable"
    )
    ap.add_argument("--child", nargs=4, metavar=("PROGRAM", "INP", "OUT_DIR", "RESULT"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        return _child(*a.child)
    import numpy as np  # noqa: F401  (imports here keep the child processes lean)

    from quakescale.formats import hypodd as H

    version = None if a.no_pypi else _pypi_version()
    no_pypi = "the PyPI package 'hypodd' is not installed (pip install hypodd==0.2.1, the 'bench' extra)"
    ns = a.n_events or [200 if a.quick else 500]
    work = Path(a.work) if a.work else Path(a.out).with_suffix("").parent / "hypodd_pypi_work"
    work.mkdir(parents=True, exist_ok=True)
    out = {
        "pypi_hypodd_version": version,
        "hypodd21_exe": _fortran_exe(),
        "quick": bool(a.quick),
        "target_speedup": 5.0,
        "repeat": a.repeat,
        "baseline_tree": a.baseline_tree,
    }
    kw = {"repeat": a.repeat, "baseline_tree": a.baseline_tree}

    # synthetic
    for n in ns:
        key = "synthetic" if len(ns) == 1 else f"synthetic{n}"
        sdir = work / key
        if sdir.exists():
            shutil.rmtree(sdir)
        inp, truth, start = synthetic_project(sdir, n)
        dtct = H.read_dtct(inp.parent / "dt.ct")
        truth_t = truth[["event_id", "latitude", "longitude", "depth_km"]]
        runs = bench_project(key, inp, sdir, a.timeout_s, run_pypi=version is not None, pypi_skip_reason=no_pypi, **kw)
        syn = _compare(key, runs, truth_t, "truth")
        syn |= {
            "n_events": n,
            "n_dtimes": int(len(dtct)),
            "n_pairs": int(dtct.groupby(["event_id_1", "event_id_2"]).ngroups),
            "start_vs_truth": _diff(start[["event_id", "latitude", "longitude", "depth_km"]], truth_t),
        }
        out[key] = syn

    # Italy
    if a.no_italy:
        out["italy"] = {"skipped": "--no-italy"}
    elif (ITALY / "hypoDD.inp").exists():
        idir = work / "italy"
        if idir.exists():
            shutil.rmtree(idir)
        ref = _read_reloc(ITALY / "hypoDD.reloc")
        runs = bench_project(
            "italy",
            ITALY / "hypoDD.inp",
            idir,
            a.timeout_s,
            run_pypi=not a.quick and version is not None,
            pypi_skip_reason=no_pypi if version is None else "--quick: PyPI hypodd needs ~2 min on this project",
            **kw,
        )
        it = _compare("italy", runs, ref, "reference")
        it |= {"n_reference_events": int(len(ref)), "n_dtimes": int(len(H.read_dtct(ITALY / "dt.ct")))}
        out["italy"] = it
    else:
        out["italy"] = {"skipped": f"{ITALY} not present"}

    # Hayward (2.x) and the projects given
    projects = []
    if (HAYWARD / "hypoDD.inp").exists():
        projects.append(("hayward", HAYWARD / "hypoDD.inp"))
    for k, pth in enumerate(a.project or []):
        projects.append((f"project{k + 1}:{Path(pth).resolve().parent.name}", Path(pth).resolve()))
    for name, pinp in projects:
        pdir = work / name.replace(":", "_")
        if pdir.exists():
            shutil.rmtree(pdir)
        runs = bench_project(
            name,
            _copy_inputs(pinp, pdir / "project"),
            pdir,
            a.timeout_s,
            run_pypi=not a.quick and version is not None,
            pypi_skip_reason=no_pypi if version is None else "--quick",
            **kw,
        )
        ref_file = pinp.parent / "reference" / "hypoDD.reloc"
        ref_file = ref_file if ref_file.exists() else pinp.parent / "hypoDD.reloc"
        ref = _read_reloc(ref_file) if ref_file.exists() else None
        d = (
            _compare(name, runs, ref, "reference")
            if ref is not None
            else _compare(name, runs, _read_reloc(Path(runs["ours"]["dir"]) / "hypoDD.reloc"), "reference")
        )
        d |= {"n_reference_events": int(len(ref)) if ref is not None else None, "inp": str(pinp), "n_dtimes": None}
        out[name] = d

    _print(out)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2, default=str))
    return out


def _print(out: dict) -> None:
    print(
        f"QuakeScale vs HypoDD 2.1b ({out.get('hypodd21_exe') or 'not found'}) and PyPI hypodd "
        f"({out.get('pypi_hypodd_version') or 'not installed'}), identical HypoDD projects"
    )
    for name, d in out.items():
        if not isinstance(d, dict):
            continue
        if "runs" not in d:
            print(f"{name}: {d.get('skipped', 'not run')}")
            continue
        extra = ""
        if name.startswith("synthetic"):
            extra = (
                f"{d['n_events']} events, {d['n_dtimes']} dt ({d['n_pairs']} pairs); start vs truth median 3-D "
                f"{d['start_vs_truth']['median_3d_m']:.0f} m"
            )
        elif d.get("n_reference_events") is not None:
            extra = f"reference hypoDD.reloc {d['n_reference_events']} events"
        print(f"{name}: {extra}")
        ref = "truth" if name.startswith("synthetic") else "reference"
        for k, r in d["runs"].items():
            if r.get("skipped"):
                print(f"  {k:9s} skipped: {r['skipped']}")
                continue
            sec = f"{r['seconds']:.1f}" if r.get("seconds") is not None else "-"
            rss = f"{r['peak_rss_mb']:.0f}" if r.get("peak_rss_mb") is not None else "-"
            status = "ok    " if r["ok"] else "FAILED"
            cpu = f", cpu {r['cpu_seconds']:.2f} s" if r.get("cpu_seconds") is not None else ""
            line = f"  {k:9s} {status} {sec:>7s} s (wall {r['wall_seconds']:.2f} s{cpu}) {rss:>6s} MB"
            v = r.get(f"vs_{ref}")
            if v:
                line += (
                    f"  {r['n_relocated']} relocated; vs {ref}: {v['n_common']} common, "
                    f"median dh {v['median_dh_m']:.1f} m dz {v['median_dz_m']:.1f} m"
                )
            print(line)
            if not r["ok"]:
                print(f"        error: {r['error']}")
        for k in ("ours_vs_hypodd21", "pypi_vs_hypodd21", "ours_vs_pypi", "ours_vs_ours_base"):
            if k in d:
                v = d[k]
                er = " ".join(
                    f"{c} {v[c + '_ratio_median']:.3f}" for c in ("ex", "ey", "ez") if v.get(c + "_ratio_median")
                )
                print(
                    f"  {k}: {v['n_common']} common (+{v['only_a']}/-{v['only_b']}), "
                    f"median dh {v['median_dh_m']:.2f} m dz {v['median_dz_m']:.2f} m "
                    f"(p90 {v['p90_dh_m']:.2f} / {v['p90_dz_m']:.2f}; max 3-D {v['max_3d_m']:.4f}); error ratios {er}"
                    + (f"; .reloc byte-identical: {v['reloc_identical']}" if "reloc_identical" in v else "")
                )
        for k in ("hypodd21", "pypi", "ours_base"):
            if f"speedup_vs_{k}_seconds" in d:
                cpu = f", cpu {d[f'speedup_vs_{k}_cpu']:.2f}x" if f"speedup_vs_{k}_cpu" in d else ""
                print(
                    f"  speed-up vs {k}: {d[f'speedup_vs_{k}_seconds']:.2f}x "
                    f"(wall {d[f'speedup_vs_{k}_wall']:.2f}x{cpu}), "
                    f"memory {k}/ours {d[f'memory_ratio_{k}_over_ours']:.2f}"
                )


if __name__ == "__main__":
    main()
