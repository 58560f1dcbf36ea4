"""Benchmark: QuakeScale's PALM-style associator vs PyOcto on identical synthetic picks.

    python benchmarks/bench_associate_synthetic.py [--quick] [--n-picks N] [--threads 2] [--out FILE]

A synthetic network (20 stations in 100 km, events uniform in the box, Gaussian pick errors
0.1 s P / 0.2 s S, missing picks, ``--false-fraction`` false picks uniform in time) is made
from our TravelTimeTable; both associators get the same picks and the same layered model
(PyOcto's binary 1-D travel-time grid is written from our table, so no eikonal solver is
needed).  Each runs in its own process; we report wall time, picks/s, peak RSS (ru_maxrss of
the child), and event recall / precision against the truth (|dt| <= 1.5 s, <= 5 km).

PyOcto (0.2.2, PyPI) lives in its own venv, ``bench-out/pyocto-venv`` (Python 3.11, numpy<2),
created on first use with ``python3.11 -m venv`` + pip; ``--skip-pyocto`` runs ours only.
The real pick sets (Italy 2016, both pickers, vs REAL's catalog): ``bench_associate.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_associate import _run_child, write_pyocto_model  # noqa: E402  (one child runner, one PyOcto model writer)

ROOT = Path(__file__).resolve().parents[1]

PYOCTO_RUNNER = r"""
import json, sys, time
import numpy as np, pandas as pd
import pyocto
cfg = json.loads(open(sys.argv[1]).read())
picks = pd.read_csv(cfg["picks"])
stations = pd.read_csv(cfg["stations"])
vm = pyocto.VelocityModel1D(cfg["model"], tolerance=cfg["pyocto_tolerance"])
assoc = pyocto.OctoAssociator(
    xlim=tuple(cfg["xlim"]), ylim=tuple(cfg["ylim"]), zlim=tuple(cfg["zlim"]), velocity_model=vm,
    time_before=cfg["time_before"], n_picks=cfg["n_picks"], n_p_picks=cfg["n_p_picks"],
    n_s_picks=cfg["n_s_picks"], n_p_and_s_picks=cfg["n_p_and_s_picks"],
    pick_match_tolerance=cfg["pick_match_tolerance"], n_threads=cfg["threads"])
t0 = time.perf_counter()
events, assignments = assoc.associate(picks, stations)
secs = time.perf_counter() - t0
if len(events) == 0:
    events = pd.DataFrame(columns=["time", "x", "y", "z", "picks"])
events[["time", "x", "y", "z", "picks"]].to_csv(cfg["events_out"], index=False)
json.dump({"seconds": secs, "n_events": int(len(events)), "n_assigned": int(len(assignments)),
           "pyocto_version": getattr(pyocto, "__version__", "?")}, open(cfg["result_out"], "w"))
"""


def ensure_pyocto(venv: Path) -> Path:
    py = venv / "bin" / "python"
    if py.exists():
        ok = subprocess.run([str(py), "-c", "import pyocto, pandas"], capture_output=True)
        if ok.returncode == 0:
            return py
    subprocess.run(["python3.11", "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "numpy<2", "pandas", "pyocto==0.2.2"], check=True)
    return py


def score(found: pd.DataFrame, truth: pd.DataFrame):
    from quakescale.associate import match_events

    truth = truth[truth["n_stations"] >= 4]
    m = match_events(found, truth, max_dt_s=1.5, max_dist_km=5.0)
    return len(m) / max(len(truth), 1), len(m) / max(len(found), 1)


def run_ours_child(cfg_path: str) -> None:
    """Child mode: associate the stored picks with our associator, write events + timing."""
    from quakescale.associate import Associator, associate_partitioned
    from quakescale.velocity import TravelTimeTable, default_model

    cfg = json.loads(Path(cfg_path).read_text())
    picks = pd.read_parquet(cfg["picks"])
    stations = pd.read_parquet(cfg["stations"])
    t0 = time.perf_counter()
    tt = TravelTimeTable(
        default_model(), max_dist_km=220, max_depth_km=cfg["zlim"][1] + 1, dist_step_km=0.25, depth_step_km=0.1
    )
    a = Associator(
        stations,
        tt=tt,
        max_depth_km=cfg["zlim"][1],
        max_residual_s=cfg["tolerance"],
        min_stations=4,
        min_picks=cfg["n_picks"],
    )
    t_setup = time.perf_counter() - t0
    client = None
    if cfg["threads"] > 1:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=cfg["threads"], threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    t0 = time.perf_counter()
    ev, asg = associate_partitioned(picks, a, partition_s=cfg["partition_s"], overlap_s=120.0, client=client)
    secs = time.perf_counter() - t0
    if client is not None:
        client.close()
        cluster.close()
    ev[["time", "latitude", "longitude", "depth_km", "x_km", "y_km", "n_picks"]].to_parquet(cfg["events_out"])
    Path(cfg["result_out"]).write_text(
        json.dumps({"seconds": secs, "setup_seconds": t_setup, "n_events": len(ev), "n_assigned": len(asg)})
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20 000 picks instead of 10^6 (under a minute)")
    ap.add_argument("--n-picks", type=int, default=1_000_000)
    ap.add_argument("--n-stations", type=int, default=20)
    ap.add_argument("--false-fraction", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-picks", type=int, default=8)
    ap.add_argument("--skip-pyocto", action="store_true")
    ap.add_argument(
        "--pyocto-own-defaults",
        action="store_true",
        help="PyOcto with its own defaults (tolerance 1.5 s, >= 3 P, 3 S, 3 P+S stations) "
        "instead of thresholds identical to ours",
    )
    ap.add_argument("--out", default=str(ROOT / "bench-out" / "associate_synthetic.json"))
    ap.add_argument("--_ours-child", dest="ours_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.ours_child:
        run_ours_child(args.ours_child)
        return 0

    from quakescale.synth.picks import synthetic_picks
    from quakescale.velocity import TravelTimeTable, default_model

    n_picks = 20_000 if args.quick else args.n_picks
    work = Path(args.out).resolve().parent / "associate_work"
    work.mkdir(parents=True, exist_ok=True)
    tt = TravelTimeTable(default_model(), max_dist_km=220, max_depth_km=31, dist_step_km=0.25, depth_step_km=0.1)
    # ~ picks per event for this network, measured on a pilot
    pilot = synthetic_picks(tt, n_events=200, n_stations=args.n_stations, false_fraction=args.false_fraction, seed=11)
    per_event = len(pilot.picks) / 200
    n_events = max(10, int(round(n_picks / per_event)))
    t0 = time.perf_counter()
    syn = synthetic_picks(tt, n_events=n_events, n_stations=args.n_stations, false_fraction=args.false_fraction, seed=7)
    print(
        f"synthetic: {len(syn.picks)} picks, {n_events} events, {args.n_stations} stations, "
        f"{args.false_fraction:.0%} false ({time.perf_counter() - t0:.1f} s to make)"
    )
    picks_path, st_path = work / "picks.parquet", work / "stations.parquet"
    syn.picks.drop(columns=["event_id"]).to_parquet(picks_path)
    syn.stations.to_parquet(st_path)
    common = {
        "picks": str(picks_path),
        "stations": str(st_path),
        "tolerance": 2.0,
        "n_picks": args.min_picks,
        "zlim": [0.0, 30.0],
        "threads": args.threads,
    }
    out = {
        "n_picks": len(syn.picks),
        "n_events": n_events,
        "n_stations": args.n_stations,
        "false_fraction": args.false_fraction,
        "threads": args.threads,
        "min_picks": args.min_picks,
        "host_cpus": os.cpu_count(),
    }

    # ---- ours
    cfg = dict(
        common,
        partition_s=3600.0,
        events_out=str(work / "ours_events.parquet"),
        result_out=str(work / "ours_result.json"),
    )
    (work / "ours.json").write_text(json.dumps(cfg))
    rc, rss, _, log = _run_child([sys.executable, __file__, "--_ours-child", str(work / "ours.json")])
    if rc != 0:
        print(log)
        raise SystemExit(f"our associator failed (rc {rc})")
    r = json.loads(Path(cfg["result_out"]).read_text())
    ev = pd.read_parquet(cfg["events_out"])
    rec, prec = score(ev, syn.events)
    out["quakescale"] = dict(
        r, picks_per_s=len(syn.picks) / r["seconds"], peak_rss_mib_main=rss, recall=rec, precision=prec
    )
    print(
        f"QuakeScale: {r['seconds']:.1f} s ({len(syn.picks) / r['seconds']:.0f} picks/s, {args.threads} workers), "
        f"peak RSS {rss:.0f} MiB (main process), {len(ev)} events, recall {rec:.3f} precision {prec:.3f}"
    )

    # ---- PyOcto
    if not args.skip_pyocto:
        py = ensure_pyocto(ROOT / "bench-out" / "pyocto-venv")
        model_path = work / "pyocto_model.bin"
        write_pyocto_model(tt, model_path, delta=0.5, xdist=220.0, zdist=32.0)
        from quakescale.associate import Associator

        a = Associator(syn.stations, tt=tt, max_depth_km=30.0)  # for the shared projection / box
        sx, sy = a.proj.to_xy(syn.stations["latitude"].to_numpy(), syn.stations["longitude"].to_numpy())
        pst = pd.DataFrame(
            {"id": syn.stations["station_id"], "x": sx, "y": sy, "z": -syn.stations["elevation_m"].to_numpy() / 1000.0}
        )
        pst.to_csv(work / "pyocto_stations.csv", index=False)
        t_ref = syn.picks["time"].min().floor("D")
        ppk = pd.DataFrame(
            {
                "station": syn.picks["station_id"],
                "phase": syn.picks["phase"],
                "time": (syn.picks["time"] - t_ref).dt.total_seconds(),
            }
        )
        ppk.to_csv(work / "pyocto_picks.csv", index=False, float_format="%.4f")
        if args.pyocto_own_defaults:
            psettings = dict(
                pyocto_tolerance=1.5, pick_match_tolerance=1.5, n_p_picks=3, n_s_picks=3, n_p_and_s_picks=3
            )
        else:
            psettings = dict(
                pyocto_tolerance=2.0, pick_match_tolerance=2.0, n_p_picks=0, n_s_picks=0, n_p_and_s_picks=0
            )
        pcfg = dict(
            common,
            picks=str(work / "pyocto_picks.csv"),
            stations=str(work / "pyocto_stations.csv"),
            model=str(model_path),
            xlim=list(a.xlim),
            ylim=list(a.ylim),
            time_before=60.0,
            **psettings,
            events_out=str(work / "pyocto_events.csv"),
            result_out=str(work / "pyocto_result.json"),
        )
        (work / "pyocto.json").write_text(json.dumps(pcfg))
        (work / "pyocto_runner.py").write_text(PYOCTO_RUNNER)
        rc, rss, _, log = _run_child([str(py), str(work / "pyocto_runner.py"), str(work / "pyocto.json")])
        if rc != 0:
            print(log)
            raise SystemExit(f"PyOcto failed (rc {rc})")
        r = json.loads(Path(pcfg["result_out"]).read_text())
        pev = pd.read_csv(pcfg["events_out"])
        lat, lon = a.proj.to_latlon(pev["x"].to_numpy(float), pev["y"].to_numpy(float))
        pev = pd.DataFrame(
            {"time": t_ref + pd.to_timedelta(pev["time"].to_numpy(float), unit="s"), "latitude": lat, "longitude": lon}
        )
        rec, prec = score(pev, syn.events)
        out["pyocto"] = dict(
            r,
            picks_per_s=len(syn.picks) / r["seconds"],
            peak_rss_mib=rss,
            recall=rec,
            precision=prec,
            settings=dict(psettings, n_picks=args.min_picks, time_before=60.0),
        )
        print(
            f"PyOcto:     {r['seconds']:.1f} s ({len(syn.picks) / r['seconds']:.0f} picks/s, {args.threads} threads), "
            f"peak RSS {rss:.0f} MiB, {len(pev)} events, recall {rec:.3f} precision {prec:.3f}"
        )
        q, p = out["quakescale"], out["pyocto"]
        out["ratio_throughput_ours_over_pyocto"] = q["picks_per_s"] / p["picks_per_s"]
        out["ratio_recall_ours_over_pyocto"] = q["recall"] / max(p["recall"], 1e-9)
        print(
            f"ratio ours/PyOcto: throughput {out['ratio_throughput_ours_over_pyocto']:.2f}x, "
            f"recall {out['ratio_recall_ours_over_pyocto']:.3f}x"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=float))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
