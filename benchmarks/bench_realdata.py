"""Benchmark: the whole pipeline on a real network's data as users download it, scored against the
picks and catalogs of established pickers (PhaseNet, EQTransformer; GaMMA association).

    python benchmarks/bench_realdata.py [--picker METHOD[:MODEL] | --weights DIR] [--config FILE] [--data DIR]
                                        [--work DIR] [--quick] [--out bench-out/realdata-PICKER.json]

What a new user does, scripted: ``quakescale archive import`` of the loose MiniSEED files into an
SDS archive, ``quakescale init --archive --inventory`` (defaults + the fitted paths, dates and
channels), then ``quakescale run`` (its exit code is recorded).  ``--picker`` changes only
``detect.method``/``detect.model`` (``cerp`` = the shipped CERP weights, ``cerp:WEIGHTS_DIR``,
``stalta``, ``kurtosis``, or any method the installed QuakeScale knows, e.g. ``seisbench:NAME``);
``--weights DIR`` scores a retrained CERP (``quakescale bootstrap [--teacher T]`` + ``quakescale
train``: the weights directory), i.e. ``--picker cerp:DIR`` tagged ``cerp-DIRNAME``;
``--config FILE`` starts from another config instead (its archive paths and dates are replaced by
the fitted ones, everything else kept).

Scores (``--data`` default: shared/data/mesetas2019_dev):
- station-days ok / skipped / failed, picks (P, S), events associated / located / relocated,
  located within 50 km of the sequence (3.45 N, 74.19 W), stage states (and the relocate stage's
  note) and the run's exit code;
- picks within 0.5 s (same station and phase) of ``reference/phasenet_picks.csv``,
  ``reference/eqtransformer_picks.csv`` and their consensus (picks both made within 0.5 s):
  ``recall`` = share of the reference picks we found, ``near_ref`` = share of ours near a
  PhaseNet or EQTransformer pick;
- GaMMA events (``reference/gamma_*_catalog.csv``) with one of ours (associated / located)
  within 3 s of origin time;
- time per station-hour of the detect stage against the I/O floor (read + band-pass of the same
  station-days, same process).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pipeline"))
sys.path.insert(0, str(ROOT / "tests"))

SEQUENCE = (3.45, -74.19)
TOL_S = 0.5
EVENT_TOL_S = 3.0


def _ns(t) -> np.ndarray:
    return pd.to_datetime(pd.Series(t), utc=True).dt.as_unit("ns").astype("int64").to_numpy()


def read_reference_picks(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path)
    return pd.DataFrame(
        {
            "station_id": df["station_id"].astype(str),
            "phase": df["phase"].astype(str).str.upper().str[0],
            "t": _ns(df["time"]),
        }
    )


def near(a: pd.DataFrame, b: pd.DataFrame, tol_s: float = TOL_S) -> np.ndarray:
    """For each row of ``a``: is there a pick of ``b`` at the same station and phase within ``tol_s``?"""
    out = np.zeros(len(a), bool)
    tol = int(tol_s * 1e9)
    for (sid, ph), g in a.groupby(["station_id", "phase"]):
        bt = np.sort(b.loc[(b.station_id == sid) & (b.phase == ph), "t"].to_numpy())
        if not len(bt):
            continue
        t = g["t"].to_numpy()
        i = np.clip(np.searchsorted(bt, t), 1, len(bt) - 1) if len(bt) > 1 else np.zeros(len(t), int)
        d = np.minimum(np.abs(bt[i] - t), np.abs(bt[np.maximum(i - 1, 0)] - t))
        out[a.index.get_indexer(g.index)] = d <= tol
    return out


def consensus(pn: pd.DataFrame, eqt: pd.DataFrame) -> pd.DataFrame:
    """PhaseNet picks that EQTransformer also made (same station and phase, within 0.5 s)."""
    return pn[near(pn, eqt)].reset_index(drop=True)


def pick_scores(ours: pd.DataFrame, refs: dict) -> dict:
    out = {}
    union = pd.concat(list(refs.values()), ignore_index=True)
    for ph in ("P", "S"):
        o = ours[ours.phase == ph].reset_index(drop=True)
        r = {"n_ours": int(len(o))}
        for name, ref in refs.items():
            rp = ref[ref.phase == ph].reset_index(drop=True)
            r[f"n_{name}"] = int(len(rp))
            r[f"recall_{name}"] = round(float(near(rp, o).mean()), 4) if len(rp) else None
        nr = union[union.phase == ph].reset_index(drop=True)
        r["near_ref"] = round(float(near(o, nr).mean()), 4) if len(o) else None
        out[ph] = r
    return out


def event_recall(ours_t_ns: np.ndarray, gamma: pd.DataFrame, tol_s: float = EVENT_TOL_S) -> dict:
    g = _ns(gamma["time"])
    o = np.sort(np.asarray(ours_t_ns, np.int64))
    if not len(g):
        return {"n": 0, "found": None}
    if not len(o):
        return {"n": int(len(g)), "found": 0.0}
    i = np.clip(np.searchsorted(o, g), 1, len(o) - 1) if len(o) > 1 else np.zeros(len(g), int)
    d = np.minimum(np.abs(o[i] - g), np.abs(o[np.maximum(i - 1, 0)] - g))
    return {"n": int(len(g)), "found": round(float((d <= tol_s * 1e9).mean()), 4)}


def io_floor(cfg, units: list[str]) -> float:
    """Seconds to read and band-pass the station-days (the I/O floor of detection)."""
    from quakescale.archive import StationDay, read_station_day
    from quakescale.detect.runner import PAD_DAY_S, preprocess

    t = time.perf_counter()
    for u in units:
        sd = StationDay.from_unit(u)
        try:
            st = read_station_day(
                cfg.archive.sds_root, sd.station_id, sd.day, list(cfg.archive.channels), pad_s=PAD_DAY_S
            )
            preprocess(st, cfg.detect)
        except Exception:
            continue
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--picker",
        default=None,
        help="METHOD[:MODEL]: cerp (shipped weights), cerp:WEIGHTS, stalta, kurtosis, seisbench:NAME ... "
        "(default: the picker of `quakescale init`, or of --config)",
    )
    ap.add_argument(
        "--weights",
        default=None,
        help="a retrained CERP weights directory (quakescale train): --picker cerp:DIR, tagged cerp-DIRNAME",
    )
    ap.add_argument(
        "--config", default=None, help="start from this config (archive paths and dates replaced by the fitted ones)"
    )
    ap.add_argument(
        "--data",
        default=None,
        help="data set directory (waveforms/, stations.xml, reference/); default shared mesetas2019_dev",
    )
    ap.add_argument("--work", default=None, help="work directory (default bench-out/realdata-PICKER)")
    ap.add_argument("--quick", action="store_true", help="stop after locate (no xcorr/relocate/catalog)")
    ap.add_argument("--out", default=None, help="JSON output (default bench-out/realdata-PICKER.json)")
    ap.add_argument(
        "--rescore", action="store_true", help="score the finished run in --work again (no import/init/run)"
    )
    a = ap.parse_args(argv)
    import yaml

    from shared_data import DATA

    data = Path(a.data) if a.data else DATA / "mesetas2019_dev"
    if not (data / "waveforms").is_dir():
        print(f"no data at {data}: nothing to do")
        return 0
    if a.weights:
        w = Path(a.weights).resolve()
        if not w.is_dir():
            raise SystemExit(f"--weights {w}: not a directory")
        a.picker = f"cerp:{w}"
        tag = f"cerp-{w.parent.name if w.name == 'weights' else w.name}"
    else:
        tag = a.picker.replace(":", "-").replace("/", "_") if a.picker else "default"
    work = Path(a.work or f"bench-out/realdata-{tag}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "pipeline") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    qs = [sys.executable, "-m", "quakescale.cli"]
    res: dict = {"picker": a.picker, "tag": tag, "data": str(data), "config": a.config}

    cfg_path = work / "config.yaml"
    if a.rescore:
        res.update(json.loads(Path(a.out or f"bench-out/realdata-{tag}.json").read_text()).get("run_info", {}))
    else:
        t = time.time()
        files = sorted(str(f) for f in (data / "waveforms").iterdir())
        p = subprocess.run(
            qs + ["archive", "import", *files, "--sds", str(work / "sds")], env=env, capture_output=True, text=True
        )
        if p.returncode:
            raise SystemExit(f"archive import failed:\n{p.stderr}")
        res["import_s"] = round(time.time() - t, 2)
        cfg_path = work / "config.yaml"
        p = subprocess.run(
            qs
            + [
                "init",
                str(cfg_path),
                "--force",
                "--archive",
                str(work / "sds"),
                "--inventory",
                str(data / "stations.xml"),
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        if p.returncode:
            raise SystemExit(f"init failed:\n{p.stderr}")
        print(p.stdout.strip())
        fitted = yaml.safe_load(cfg_path.read_text())
        if a.config:
            base = yaml.safe_load(Path(a.config).read_text())
            base.setdefault("archive", {}).update(fitted["archive"])
            base.setdefault("velocity", {})["max_dist_km"] = fitted["velocity"]["max_dist_km"]
            fitted = base
        if a.picker:
            method, _, model = a.picker.partition(":")
            fitted["detect"]["method"] = method
            if model:
                fitted["detect"]["model"] = model
            elif method == "cerp":
                fitted["detect"]["model"] = "builtin:default"
        fitted["run"]["out_dir"] = "run"
        cfg_path.write_text(yaml.safe_dump(fitted, sort_keys=False))
        run_dir = work / "run"
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        stages = ["plan", "detect", "associate", "locate"] if a.quick else []
        t = time.time()
        p = subprocess.run(
            qs + ["run", str(cfg_path)] + sum((["--stage", s] for s in stages), []),
            env=env,
            capture_output=True,
            text=True,
        )
        res["run_s"] = round(time.time() - t, 2)
        res["exit_code"] = p.returncode
        (work / "run.log").write_text(p.stdout + p.stderr)
        print(f"quakescale run: exit {p.returncode} in {res['run_s']} s (log {work / 'run.log'})")

    res["run_info"] = {k: res[k] for k in ("import_s", "run_s", "exit_code") if k in res}
    from quakescale.config import load_config
    from quakescale.geo import epicentral_km
    from quakescale.rundir import RunDir, gather_picks

    cfg = load_config(cfg_path)
    rd = RunDir(cfg.run.out_dir)
    st = rd.read_status("detect")
    res["station_days"] = {k: int(v) for k, v in st.state.value_counts().items()} if len(st) else {}
    res["station_day_problems"] = (
        [f"{r.unit}: {r.state}: {r.reason}" for r in st[st.state != "ok"].itertuples()] if len(st) else []
    )
    res["stages"] = {}
    for s in ("associate", "locate", "xcorr", "relocate", "catalog"):
        x = rd.read_status(s)
        if len(x):
            res["stages"][s] = {k: int(v) for k, v in x.state.value_counts().items()}
            if s == "relocate":
                res["relocate_note"] = "; ".join(str(r) for r in x.reason.dropna())
    picks = gather_picks(rd)
    picks = picks if picks is not None else pd.DataFrame(columns=["station_id", "phase", "time"])
    ours = pd.DataFrame(
        {"station_id": picks["station_id"].astype(str), "phase": picks["phase"].astype(str), "t": _ns(picks["time"])}
    )
    res["picks"] = {"P": int((ours.phase == "P").sum()), "S": int((ours.phase == "S").sum())}
    if "amp_source" in picks:
        res["amp_source"] = {str(k): int(v) for k, v in picks["amp_source"].fillna("(P pick)").value_counts().items()}
        res["amp_clipped"] = int(picks["amp_clipped"].fillna(False).sum())
    pn = read_reference_picks(data / "reference" / "phasenet_picks.csv")
    eqt = read_reference_picks(data / "reference" / "eqtransformer_picks.csv")
    # score only the stretch our data cover (references may start earlier)
    t0, t1 = _ns([f"{cfg.archive.start}T00:00:00Z"])[0], _ns([f"{cfg.archive.end}T23:59:59Z"])[0]
    pn, eqt = (
        pn[(pn.t >= t0) & (pn.t <= t1)].reset_index(drop=True),
        eqt[(eqt.t >= t0) & (eqt.t <= t1)].reset_index(drop=True),
    )
    cons = consensus(pn, eqt)
    res["pick_scores"] = pick_scores(ours, {"phasenet": pn, "eqtransformer": eqt, "consensus": cons})

    ev = {}
    for name in ("associated", "located"):
        f = rd.root / "events" / f"{name}.parquet"
        ev[name] = pd.read_parquet(f) if f.exists() else pd.DataFrame(columns=["time", "latitude", "longitude"])
    loc = ev["located"]
    d = (
        epicentral_km(SEQUENCE[0], SEQUENCE[1], loc["latitude"].to_numpy(float), loc["longitude"].to_numpy(float))
        if len(loc)
        else np.zeros(0)
    )
    res["events"] = {
        "associated": int(len(ev["associated"])),
        "located": int(len(loc)),
        "located_within_50km": int((d < 50).sum()),
    }
    rel = rd.root / "relocated" / "relocated.parquet"
    if rel.exists():
        res["events"]["relocated"] = int(len(pd.read_parquet(rel)))
    cat = rd.root / "catalogs" / "events.csv"
    if cat.exists():
        res["events"]["catalog"] = int(len(pd.read_csv(cat, comment="#")))
    for g in ("phasenet", "eqtransformer"):
        gf = data / "reference" / f"gamma_{g}_catalog.csv"
        if gf.exists():
            gam = pd.read_csv(gf)
            res["events"][f"gamma_{g}"] = {
                k: event_recall(_ns(ev[k]["time"]) if len(ev[k]) else np.zeros(0, np.int64), gam)
                for k in ("associated", "located")
            }

    # time per station-hour: detect stage seconds vs the I/O floor of the same station-days
    if len(st):
        ok = st[st.state == "ok"]
        hours = 0.0
        from quakescale.archive import StationDay, read_station_day

        for u in ok.unit:
            sd = StationDay.from_unit(u)
            try:
                s_ = read_station_day(cfg.archive.sds_root, sd.station_id, sd.day, list(cfg.archive.channels))
                hours += max(tr.stats.endtime - tr.stats.starttime for tr in s_) / 3600.0
            except Exception:
                pass
        floor = io_floor(cfg, list(ok.unit))
        res["timing"] = {
            "station_hours": round(hours, 2),
            "detect_s": round(float(ok.seconds.sum()), 2),
            "io_floor_s": round(floor, 2),
            "detect_s_per_station_hour": round(float(ok.seconds.sum()) / max(hours, 1e-9), 3),
            "io_floor_s_per_station_hour": round(floor / max(hours, 1e-9), 3),
        }

    out = Path(a.out or f"bench-out/realdata-{tag}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    ps = res["pick_scores"]
    print(
        f"station-days {res['station_days']}; picks P {res['picks']['P']} S {res['picks']['S']}; events {res['events']}"
    )
    for ph in ("P", "S"):
        r = ps[ph]
        print(
            f"{ph}: consensus found {r['recall_consensus']} (of {r['n_consensus']}), "
            f"PhaseNet found {r['recall_phasenet']}, "
            f"EQT found {r['recall_eqtransformer']}; ours near PN|EQT {r['near_ref']} (of {r['n_ours']})"
        )
    if "timing" in res:
        tm = res["timing"]
        print(
            f"detect {tm['detect_s_per_station_hour']} s per station-hour "
            f"vs I/O floor {tm['io_floor_s_per_station_hour']} s"
        )
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
