"""Benchmark: QuakeScale's associator vs PyOcto on the real Italy 2016-10-14 pick sets.

    python benchmarks/bench_associate.py [--quick] [--sets stalta,phasenet] [--skip-pyocto]
                                         [--threads N] [--set KEY=VALUE ...] [--out FILE]

Both shared pick sets of the REAL demo day (Central Italy, 2016-10-14; 57 stations) are
associated by both programs with the same 1-D model (REAL's ``itvel.nd``) and scored against
REAL's 659-event catalog with the same scorer: one-to-one match within 1.5 s and 5 km
(epicentral).  Per set and program we print recall, precision, CPU seconds (user + system of
the association, all threads), wall seconds and the child's peak RSS.

- ``stalta``: ``Pick/20161014.zip``, REAL's STA/LTA picks (85,289 picks);
- ``phasenet``: ``Pick_PhaseNet/picks.csv``, PhaseNet picks of the same day (115,440 picks).

Ours runs with its defaults (``Associator()`` = ``associate:`` section of the config), reading
the picks as ``quakescale associate`` does.  PyOcto 0.2.2 runs with its own defaults
(``OctoAssociator``: >= 10 picks, 3 P, 3 S, 3 stations with both, pick_match_tolerance 1.5 s;
model tolerance 1.5 s), region = the stations' box + 20 km, depth 0-30 km, ``time_before``
60 s, its 1-D travel-time grid written from our table of the same model.  Each run is a
child process (``os.wait4`` gives its CPU time and peak RSS).  ``--set KEY=VALUE`` overrides
one of our Associator parameters (tuning).  ``--quick``: the first 6 hours of each day.

PyOcto: ``pip install --no-deps pyocto==0.2.2`` (its metadata pins numpy<2 on Python 3.11;
it runs with numpy 2) -- or the ``bench`` extra on Python >= 3.12.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "pipeline"))
from shared_data import ITALY  # noqa: E402

SETS = {
    "stalta": ITALY / "Pick" / "20161014.zip",
    "phasenet": ITALY / "Pick_PhaseNet" / "picks.csv",
}
MODEL = ITALY / "REAL" / "tt_db" / "itvel.nd"
STATIONS = ITALY / "Data" / "station.dat"
CATALOG = ITALY / "REAL" / "catalog_sel.txt"
ZMAX = 30.0
MARGIN = 20.0

PYOCTO_CHILD = r"""
import json, sys, time
import pandas as pd
import pyocto
cfg = json.loads(open(sys.argv[1]).read())
picks = pd.read_parquet(cfg["picks"])
stations = pd.read_parquet(cfg["stations"])
vm = pyocto.VelocityModel1D(cfg["model"], tolerance=cfg["tolerance"])
assoc = pyocto.OctoAssociator(xlim=tuple(cfg["xlim"]), ylim=tuple(cfg["ylim"]), zlim=tuple(cfg["zlim"]),
                              velocity_model=vm, time_before=cfg["time_before"], n_threads=cfg["threads"])
c0, t0 = time.process_time(), time.perf_counter()
events, assignments = assoc.associate(picks, stations)
cpu, wall = time.process_time() - c0, time.perf_counter() - t0
if len(events) == 0:
    events = pd.DataFrame(columns=["time", "x", "y", "z", "picks"])
events[["time", "x", "y", "z", "picks"]].to_csv(cfg["events_out"], index=False)
json.dump({"cpu_s": cpu, "wall_s": wall, "n_events": int(len(events)), "n_assigned": int(len(assignments))},
          open(cfg["result_out"], "w"))
"""


def _run_child(cmd):
    """Run a child; return (returncode, peak RSS MiB, child CPU s, output)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read().decode(errors="replace")
    _, status, ru = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), ru.ru_maxrss / 1024.0, ru.ru_utime + ru.ru_stime, out


def write_pyocto_model(tt, path: Path, delta: float, xdist: float, zdist: float) -> None:
    """PyOcto's VelocityModel1D binary (nx, nz, delta, P times, S times on a distance x depth
    grid), filled with our first-arrival table of the same model (surface receiver)."""
    nx, nz = int(xdist / delta) + 1, int(zdist / delta) + 1
    D, Z = np.meshgrid(np.arange(nx) * delta, np.arange(nz) * delta, indexing="ij")
    with open(path, "wb") as f:
        f.write(struct.pack("iid", nx, nz, delta))
        for ph in ("P", "S"):
            f.write(np.ascontiguousarray(tt.time(ph, D, Z)[0], dtype=np.float64).tobytes())


def _window(picks: pd.DataFrame, quick: bool) -> pd.DataFrame:
    if not quick:
        return picks
    t0 = picks["time"].min().floor("D")
    return picks[picks["time"] < t0 + pd.Timedelta(hours=6)].reset_index(drop=True)


def _reference(quick: bool) -> pd.DataFrame:
    from quakescale.formats import picks_io

    ref = picks_io.read_real_catalog(CATALOG)
    if quick:
        ref = ref[ref["time"] < ref["time"].min().floor("D") + pd.Timedelta(hours=6)]
    return ref.reset_index(drop=True)


def score(found: pd.DataFrame, ref: pd.DataFrame) -> dict:
    from quakescale.associate import match_events

    m = match_events(found, ref, max_dt_s=1.5, max_dist_km=5.0)
    return {
        "n_events": len(found),
        "matched": len(m),
        "recall": len(m) / max(len(ref), 1),
        "precision": len(m) / max(len(found), 1),
    }


# ------------------------------------------------------------------------------- ours (child)
def run_ours_child(cfg_path: str) -> None:
    from quakescale.associate import Associator, associate_partitioned
    from quakescale.formats import picks_io
    from quakescale.formats.velmodels import read_model as load_model

    cfg = json.loads(Path(cfg_path).read_text())
    picks = pd.read_parquet(cfg["picks"])
    stations = picks_io.read_stations(cfg["stations"])
    c0, t0 = time.process_time(), time.perf_counter()
    a = Associator(stations, load_model(cfg["model"]), **cfg["params"])
    ev, asg = associate_partitioned(picks, a)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    ev.to_parquet(cfg["events_out"])
    Path(cfg["result_out"]).write_text(
        json.dumps({"cpu_s": cpu, "wall_s": wall, "n_events": len(ev), "n_assigned": len(asg)})
    )


def _parse_value(v: str):
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return {"none": None, "true": True, "false": False}.get(v.lower(), v)


def bench_set(name: str, args, work: Path, tt, ref: pd.DataFrame) -> dict:
    from quakescale.associate import Associator
    from quakescale.formats import picks_io

    picks = _window(picks_io.read_picks(SETS[name]), args.quick)
    stations = picks_io.read_stations(STATIONS)
    pk_path = work / f"{name}_picks.parquet"
    picks.to_parquet(pk_path)
    res = {"n_picks": len(picks)}
    params = dict(_parse_value_pair(s) for s in args.set)
    cfg = {
        "picks": str(pk_path),
        "stations": str(STATIONS),
        "model": str(MODEL),
        "params": params,
        "events_out": str(work / f"{name}_ours_events.parquet"),
        "result_out": str(work / f"{name}_ours.json"),
    }
    (work / f"{name}_ours_cfg.json").write_text(json.dumps(cfg))
    rc, rss, _, log = _run_child([sys.executable, __file__, "--_ours-child", str(work / f"{name}_ours_cfg.json")])
    if rc != 0:
        print(log)
        raise SystemExit(f"our associator failed on {name} (rc {rc})")
    r = json.loads(Path(cfg["result_out"]).read_text())
    ev = pd.read_parquet(cfg["events_out"])
    res["quakescale"] = dict(r, peak_rss_mib=rss, params=params, **score(ev, ref))

    if not args.skip_pyocto:
        a = Associator(stations, tt=tt, max_depth_km=ZMAX, margin_km=MARGIN)  # projection + search box
        sx, sy = a.proj.to_xy(stations["latitude"].to_numpy(), stations["longitude"].to_numpy())
        pst = pd.DataFrame(
            {"id": stations["station_id"], "x": sx, "y": sy, "z": -stations["elevation_m"].to_numpy() / 1000.0}
        )
        pst.to_parquet(work / "pyocto_stations.parquet")
        t_ref = picks["time"].min().floor("D")
        ppk = pd.DataFrame(
            {
                "station": picks["station_id"],
                "phase": picks["phase"],
                "time": (picks["time"] - t_ref).dt.total_seconds(),
            }
        )
        ppk.to_parquet(work / f"{name}_pyocto_picks.parquet")
        pcfg = {
            "picks": str(work / f"{name}_pyocto_picks.parquet"),
            "stations": str(work / "pyocto_stations.parquet"),
            "model": str(work / "pyocto_model.bin"),
            "tolerance": 1.5,
            "xlim": list(a.xlim),
            "ylim": list(a.ylim),
            "zlim": [0.0, ZMAX],
            "time_before": 60.0,
            "threads": args.threads,
            "events_out": str(work / f"{name}_pyocto_events.csv"),
            "result_out": str(work / f"{name}_pyocto.json"),
        }
        (work / f"{name}_pyocto_cfg.json").write_text(json.dumps(pcfg))
        (work / "pyocto_child.py").write_text(PYOCTO_CHILD)
        rc, rss, _, log = _run_child(
            [sys.executable, str(work / "pyocto_child.py"), str(work / f"{name}_pyocto_cfg.json")]
        )
        if rc != 0:
            print(log)
            raise SystemExit(f"PyOcto failed on {name} (rc {rc})")
        r = json.loads(Path(pcfg["result_out"]).read_text())
        pev = pd.read_csv(pcfg["events_out"])
        lat, lon = a.proj.to_latlon(pev["x"].to_numpy(float), pev["y"].to_numpy(float))
        pev = pd.DataFrame(
            {"time": t_ref + pd.to_timedelta(pev["time"].to_numpy(float), unit="s"), "latitude": lat, "longitude": lon}
        )
        res["pyocto"] = dict(
            r, peak_rss_mib=rss, settings="PyOcto defaults; tolerance 1.5 s, time_before 60 s", **score(pev, ref)
        )
        q, p = res["quakescale"], res["pyocto"]
        res["cpu_ratio_ours_over_pyocto"] = q["cpu_s"] / max(p["cpu_s"], 1e-9)
        res["pass"] = bool(
            q["recall"] >= p["recall"] and q["precision"] >= p["precision"] and res["cpu_ratio_ours_over_pyocto"] <= 0.2
        )
    return res


def _parse_value_pair(s: str):
    if "=" not in s:
        raise SystemExit(f"--set wants KEY=VALUE, got {s!r}")
    k, v = s.split("=", 1)
    return k.strip(), _parse_value(v.strip())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="first 6 hours of the day only")
    ap.add_argument("--sets", default="stalta,phasenet", help="comma-separated: stalta, phasenet")
    ap.add_argument("--skip-pyocto", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="PyOcto threads (CPU time is summed over threads)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override an Associator parameter")
    ap.add_argument("--out", default=str(ROOT / "bench-out" / "associate.json"))
    ap.add_argument("--_ours-child", dest="ours_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.ours_child:
        run_ours_child(args.ours_child)
        return 0
    if not ITALY.exists():
        print(f"shared data not found ({ITALY}); nothing to do")
        return 0
    from quakescale.formats.velmodels import read_model as load_model
    from quakescale.velocity import TravelTimeTable

    work = Path(args.out).resolve().parent / "associate_work"
    work.mkdir(parents=True, exist_ok=True)
    tt = TravelTimeTable(
        load_model(MODEL), max_dist_km=260, max_depth_km=ZMAX + 2, dist_step_km=0.25, depth_step_km=0.1
    )
    if not args.skip_pyocto:
        write_pyocto_model(tt, work / "pyocto_model.bin", delta=0.5, xdist=250.0, zdist=ZMAX + 1)
    ref = _reference(args.quick)
    out = {"quick": args.quick, "reference_events": len(ref), "host_cpus": os.cpu_count(), "sets": {}}
    print(
        f"{'set':9s} {'program':10s} {'events':>7s} {'recall':>7s} {'precis.':>7s} {'CPU s':>7s} {'wall s':>7s} "
        f"{'RSS MiB':>8s}"
    )
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        if name not in SETS:
            raise SystemExit(f"unknown set {name!r} (have {list(SETS)})")
        res = bench_set(name, args, work, tt, ref)
        out["sets"][name] = res
        for prog in ("pyocto", "quakescale"):
            if prog in res:
                r = res[prog]
                print(
                    f"{name:9s} {prog:10s} {r['n_events']:7d} {r['recall']:7.3f} {r['precision']:7.3f} "
                    f"{r['cpu_s']:7.1f} {r['wall_s']:7.1f} {r['peak_rss_mib']:8.0f}"
                )
        if "pass" in res:
            print(
                f"{name:9s} CPU ours/PyOcto {res['cpu_ratio_ours_over_pyocto']:.3f}; "
                f"acceptance (recall, precision >= PyOcto's, CPU <= 1/5): {'PASS' if res['pass'] else 'FAIL'}"
            )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=float))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
