"""Benchmark: the pickers on real data -- CERP (shipped weights) vs the published real-data pickers
(EQTransformer, PhaseNet, GPD, converted offline by ``quakescale models install``) on the Mesetas
2019 aftershock hours (``shared/data/mesetas2019_dev``: 8 stations of the Colombian network, 2 h).

    python benchmarks/bench_pickers.py [--quick] [--pickers cerp,eqt,phasenet,gpd] [--device cpu] [--out FILE]

Each picker runs through the station-day runner's core (``quakescale.detect.runner.pick_stream``,
the same call ``quakescale detect`` makes; amplitudes off, so every picker pays the same) on each
station's 3-component stream.  Against each reference pick set of ``reference/`` -- PhaseNet's,
EQTransformer's (both made with the published weights by SeisMonitor, thresholds not recorded) and
their consensus (same station and phase within 0.5 s: the issue's reference) -- it reports per
phase: recall (reference picks with one of ours within 0.5 s), the share of ours within 0.5 s of a
reference pick, and counts; and the time per station-hour against the I/O floor (reading the
MiniSEED), warm: each picker loaded and run once on the first station before the timed calls.
Reference picks of one station and phase closer than 0.5 s to each other (PhaseNet's file repeats
picks from overlapping windows) count once.  The references have no picks on the CLEJA accelerometer
(they were made on the broadband stations): agreement is measured on the stations they cover,
timing on all.  ``--quick``: 2 stations, 30 min.
The EQTransformer and PhaseNet rows are also the verification of the conversion: the published
weights made those references.  Pickers whose weights are not installed are reported as skipped.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pipeline"))
sys.path.insert(0, str(ROOT / "tests"))

from shared_data import DATA  # noqa: E402

MESETAS = DATA / "mesetas2019_dev"
TOL_S = 0.5
PICKERS = {
    "cerp": {"method": "cerp", "model": "builtin:default"},
    "eqt": {"method": "seisbench", "model": "EQTransformer:original"},
    "phasenet": {"method": "seisbench", "model": "PhaseNet:original"},
    "gpd": {"method": "seisbench", "model": "GPD:original"},
    # the same weights at the reference files' lowest probabilities (their thresholds were not recorded):
    # PhaseNet's file has P >= 0.70, S >= 0.60; EQTransformer's goes down to 0.01
    "phasenet@0.7/0.6": {
        "method": "seisbench",
        "model": "PhaseNet:original",
        "seisbench_p_threshold": 0.7,
        "seisbench_s_threshold": 0.6,
    },
    "eqt@0.03": {
        "method": "seisbench",
        "model": "EQTransformer:original",
        "seisbench_p_threshold": 0.03,
        "seisbench_s_threshold": 0.03,
    },
}


def dedupe(df: pd.DataFrame, tol: float = TOL_S) -> pd.DataFrame:
    """One pick per station/phase cluster (consecutive picks closer than ``tol``), the most probable."""
    out = []
    for _, g in df.sort_values("t").groupby(["station_id", "phase"], sort=False):
        t = g.t.to_numpy()
        grp = np.concatenate([[0], np.cumsum(np.diff(t) > tol)])
        out.append(
            g.assign(_g=grp).sort_values("probability", ascending=False).drop_duplicates("_g").drop(columns="_g")
        )
    return pd.concat(out, ignore_index=True).sort_values(["station_id", "t"]).reset_index(drop=True)


def load_ref(name: str, t0: float, t1: float, stations: list[str]) -> pd.DataFrame:
    r = pd.read_csv(MESETAS / "reference" / name)
    r["t"] = pd.to_datetime(r["time"], utc=True).astype("datetime64[ns, UTC]").astype("int64") / 1e9
    r = r[(r.t >= t0) & (r.t < t1) & r.station_id.isin(stations)]
    return dedupe(r)


def consensus(a: pd.DataFrame, b: pd.DataFrame, tol: float = TOL_S) -> pd.DataFrame:
    """Picks of ``a`` with a pick of ``b`` at the same station and phase within ``tol``."""
    keep = []
    for (sid, ph), g in a.groupby(["station_id", "phase"]):
        tb = b[(b.station_id == sid) & (b.phase == ph)].t.to_numpy()
        if len(tb):
            d = np.abs(g.t.to_numpy()[:, None] - tb[None, :]).min(1)
            keep.append(g[d <= tol])
    return pd.concat(keep, ignore_index=True) if keep else a.iloc[:0]


def agreement(ours: pd.DataFrame, ref: pd.DataFrame, tol: float = TOL_S) -> dict:
    out = {}
    for ph in ("P", "S"):
        a, b = ours[ours.phase == ph], ref[ref.phase == ph]
        found = near = 0
        for sid in set(a.station_id) | set(b.station_id):
            ta, tb = a[a.station_id == sid].t.to_numpy(), b[b.station_id == sid].t.to_numpy()
            if len(ta) and len(tb):
                d = np.abs(ta[:, None] - tb[None, :])
                found += int((d.min(0) <= tol).sum())
                near += int((d.min(1) <= tol).sum())
        out[ph] = {
            "recall": round(found / len(b), 3) if len(b) else None,
            "ours_near_ref": round(near / len(a), 3) if len(a) else None,
            "n_ours": int(len(a)),
            "n_ref": int(len(b)),
            # recall of the reference's confident picks (probability >= 0.5): where both runs of the same
            # weights should agree whatever the thresholds and window settings were
            "recall_ref_prob_ge_0.5": _recall_confident(a, b, tol),
        }
    return out


def _recall_confident(a: pd.DataFrame, b: pd.DataFrame, tol: float) -> float | None:
    if "probability" not in b or not len(b):
        return None
    b = b[b.probability >= 0.5]
    hit = 0
    for sid, g in b.groupby("station_id"):
        ta = a[a.station_id == sid].t.to_numpy()
        if len(ta):
            hit += int((np.abs(g.t.to_numpy()[:, None] - ta[None, :]).min(1) <= tol).sum())
    return round(hit / len(b), 3) if len(b) else None


def read_station(sta: str, t0, t1):
    from obspy import Stream, read

    st = Stream()
    for f in sorted(glob.glob(str(MESETAS / "waveforms" / f"CM.{sta}.*.mseed"))):
        st += read(f, starttime=t0, endtime=t1)
    return st


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 stations, 30 min")
    ap.add_argument(
        "--pickers",
        default="cerp,eqt,phasenet,gpd,phasenet@0.7/0.6,eqt@0.03",
        help=f"comma list of {', '.join(PICKERS)}",
    )
    ap.add_argument("--device", default="cpu", help="auto | cpu | cuda")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "bench_pickers.json")
    ap.add_argument("--save-picks", type=Path, default=None, help="also write each picker's picks to DIR/NAME.parquet")
    args = ap.parse_args(argv)

    from obspy import UTCDateTime

    from quakescale.config import DetectSection
    from quakescale.detect.runner import get_model, pick_stream

    result: dict = {
        "bench": "pickers",
        "data": str(MESETAS),
        "tol_s": TOL_S,
        "quick": args.quick,
        "device": args.device,
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "pickers": {},
    }
    if not (MESETAS / "waveforms").is_dir():
        result["skipped"] = f"{MESETAS} absent"
        print(result["skipped"])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        return 0
    stations = ["PRA", "URMC"] if args.quick else ["CHI", "CLEJA", "FLO2", "GARC", "ORTC", "PRA", "URMC", "YOT"]
    t0 = UTCDateTime("2019-12-24T19:00:00")
    t1 = t0 + (1800 if args.quick else 7200)
    sids = [f"CM.{s}" for s in stations]
    # reference picks inside the span (1 min off each edge, where windows are incomplete)
    r0, r1 = float(t0.timestamp) + 60, float(t1.timestamp) - 60
    refs = {
        "phasenet": load_ref("phasenet_picks.csv", r0, r1, sids),
        "eqtransformer": load_ref("eqtransformer_picks.csv", r0, r1, sids),
    }
    refs["consensus"] = consensus(refs["eqtransformer"], refs["phasenet"])
    # the references cover the broadband stations only (no picks at all on the CLEJA accelerometer):
    # agreement is measured on the stations a reference has picks on; every station is timed
    ref_sids = sorted(set(refs["phasenet"].station_id) | set(refs["eqtransformer"].station_id))
    result["reference_stations"] = ref_sids
    result["reference_counts"] = {k: {ph: int((v.phase == ph).sum()) for ph in ("P", "S")} for k, v in refs.items()}

    streams, t_io = {}, time.perf_counter()
    for s in stations:
        streams[s] = read_station(s, t0, t1)
    t_io = time.perf_counter() - t_io
    station_hours = len(stations) * (t1 - t0) / 3600
    result["io_floor_s_per_station_hour"] = round(t_io / station_hours, 3)
    print(
        f"Mesetas {len(stations)} stations x {(t1 - t0) / 3600:.2f} h; reference picks {result['reference_counts']}; "
        f"I/O floor {result['io_floor_s_per_station_hour']} s per station-hour"
    )

    for name in [p.strip() for p in args.pickers.split(",") if p.strip()]:
        if name not in PICKERS:
            raise SystemExit(f"unknown picker {name!r}; known: {', '.join(PICKERS)}")
        spec = PICKERS[name]
        params = DetectSection(**spec, device=args.device)
        row: dict = {"spec": spec}
        try:  # load once, outside the timing
            if spec["method"] == "seisbench":
                from quakescale.detect.seisbench_picker import get_picker

                get_picker(spec["model"], args.device)
            elif spec["method"] == "cerp":
                get_model(spec["model"], args.device)
        except Exception as exc:  # not installed: reported, not fatal
            row["skipped"] = str(exc).splitlines()[0][:300]
            result["pickers"][name] = row
            print(f"{name:16s} skipped: {row['skipped']}")
            continue
        try:  # and one untimed call: a GPU's context and kernels, compiled kernels' caches, first allocations
            pick_stream(streams[stations[0]], None, params)
        except Exception:  # that station's timed call records why
            pass
        frames, secs, failed = [], 0.0, {}
        for s in stations:
            t = time.perf_counter()
            try:
                df = pick_stream(streams[s], None, params)
            except Exception as exc:
                failed[s] = f"{type(exc).__name__}: {exc}"[:200]
                continue
            secs += time.perf_counter() - t
            frames.append(df)
        ours = (
            pd.concat(frames, ignore_index=True)
            if frames
            else pd.DataFrame(columns=["station_id", "phase", "time", "probability"])
        )
        ours["t"] = ours["time"].astype("int64") / 1e9 if len(ours) else []
        ours = ours[(ours.t >= r0) & (ours.t < r1)]
        row["n_picks_all_stations"] = {ph: int((ours.phase == ph).sum()) for ph in ("P", "S")}
        ours = ours[ours.station_id.isin(ref_sids)]
        row["seconds"] = round(secs, 2)
        row["s_per_station_hour"] = round(secs / station_hours, 3)
        row["x_io_floor"] = round(secs / max(t_io, 1e-9), 1)
        row["failed_stations"] = failed
        row["model_label"] = str(ours.model.iloc[0]) if len(ours) else None
        row["vs"] = {k: agreement(ours, v) for k, v in refs.items()}
        own = refs[
            "eqtransformer" if name.startswith("eqt") else "phasenet"
        ]  # per station, vs the picker's own reference
        row["per_station_vs_own_reference"] = {
            sid: agreement(ours[ours.station_id == sid], own[own.station_id == sid]) for sid in ref_sids
        }
        if args.save_picks:
            args.save_picks.mkdir(parents=True, exist_ok=True)
            ours.drop(columns="t").to_parquet(args.save_picks / f"{name.replace('/', '_')}.parquet")
        result["pickers"][name] = row
        v = row["vs"]
        print(
            f"{name:16s} {row['s_per_station_hour']:7.2f} s/station-h ({row['x_io_floor']}x I/O)  "
            + "  ".join(
                f"{k[:4]} P {v[k]['P']['recall']}/{v[k]['P']['ours_near_ref']} "
                f"S {v[k]['S']['recall']}/{v[k]['S']['ours_near_ref']}"
                for k in v
            )
            + f"  (recall/ours-near; ours P {v['consensus']['P']['n_ours']} S {v['consensus']['S']['n_ours']})"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
