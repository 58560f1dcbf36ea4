"""Benchmark: CERP weights on real waveforms nobody here trained on -- noise rejection, picks, cost.

    python benchmarks/bench_detector_real.py [--models builtin:default DIR ...] [--threads 2]
                                             [--out bench-out/detector_real.json]

Data (``shared/data``, never used in training):

- Mesetas 2019 (8 stations, 2 real hours of a Mw 6.0 sequence; reference picks of PhaseNet and
  EQTransformer);
- Ridgecrest 2019-07-04 17:00-17:11 (3 PBO borehole stations, continuous, 2 events with
  analyst-reviewed P and S in ``hypoDD.pha``).

For each model, in one process:

1. the detector on every 30 s window (15 s stride): the share passed among windows holding a
   reference pick ("event windows") and among "quiet windows" (no reference pick from 60 s
   before the window to 5 s after it: no arrival and little coda) -- a detector trained on
   synthetic noise alone passes nearly all real noise;
2. the whole CERP path (``pick_stream``: detector, picker, screening, refinement) per station,
   scored per phase with ``bench_pickers.agreement`` (recall of the reference picks, share of
   ours within 0.5 s of one) against PhaseNet's picks on Mesetas and the analyst's on
   Ridgecrest (there within 0.2 s: the 12 arrivals found), and the seconds spent.

The reference pickers disagree with each other and miss small events, so "matched" is a lower
bound of precision; quiet-window pass rates are the cleaner noise figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pickers import MESETAS, TOL_S, agreement, load_ref  # noqa: E402
from shared_data import RIDGECREST  # noqa: E402

QUIET_BEFORE_S, QUIET_AFTER_S = 60.0, 5.0
REFS = ("phasenet_picks.csv", "eqtransformer_picks.csv")


def mesetas_sets() -> tuple[list, pd.DataFrame, pd.DataFrame]:
    """([(station id, 3-component Stream)], the PhaseNet and EQTransformer picks together (window
    labels), PhaseNet's alone (pick scores)); columns station_id, phase, t (s), probability."""
    from obspy import Stream, read

    sids = sorted({".".join(f.name.split(".")[:2]) for f in (MESETAS / "waveforms").glob("*.mseed")})
    pn, eqt = (load_ref(name, -np.inf, np.inf, sids) for name in REFS)
    both = pd.concat([pn, eqt], ignore_index=True)
    out = []
    for sid in sorted(both.station_id.unique()):
        net, sta = sid.split(".")
        st = Stream()
        for f in sorted((MESETAS / "waveforms").glob(f"{net}.{sta}.*.mseed")):
            st += read(str(f))
        if len(st) >= 3:
            out.append((sid, st))
    return out, both, pn


def ridgecrest_sets() -> tuple[list, pd.DataFrame]:
    """([(station id, Stream)], the analyst's picks of hypoDD.pha) for the 2019-07-04 data."""
    from obspy import Stream, UTCDateTime, read

    rows, origin = [], None
    for line in (RIDGECREST / "hypoDD.pha").read_text().splitlines():
        f = line.split()
        if f[0] == "#":
            origin = UTCDateTime(int(f[1]), int(f[2]), int(f[3]), int(f[4]), int(f[5])) + float(f[6])
        elif origin is not None:
            rows.append(
                {"station_id": f"PB.{f[0]}", "phase": f[3], "t": origin.timestamp + float(f[1]), "probability": 1.0}
            )
    ref = pd.DataFrame(rows)
    out = []
    for sid in sorted(ref.station_id.unique()):
        st = Stream()
        for c in "ZNE":
            st += read(str(RIDGECREST / "waveforms" / "20190704" / f"{sid}.EH{c}"))
        out.append((sid, st))
    return out, ref


def window_labels(starts_s: np.ndarray, win_s: float, ref_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(holds a reference pick, quiet: none from QUIET_BEFORE_S before to QUIET_AFTER_S after)."""
    t = np.sort(ref_t)
    n_in = np.searchsorted(t, starts_s + win_s) - np.searchsorted(t, starts_s)
    n_near = np.searchsorted(t, starts_s + win_s + QUIET_AFTER_S) - np.searchsorted(t, starts_s - QUIET_BEFORE_S)
    return n_in > 0, n_near == 0


def evaluate(model, stations, label_ref: pd.DataFrame, score_ref: pd.DataFrame, tol: float = TOL_S) -> dict:
    import torch

    from quakescale.config import DetectSection
    from quakescale.detect.models import normalize_windows
    from quakescale.detect.runner import pick_stream, preprocess, window_starts, window_tensor

    p = DetectSection()
    passed_ev, passed_quiet, ours, secs = [], [], [], 0.0
    for sid, st in stations:
        prep = preprocess(st.copy(), p)
        starts = window_starts(prep.data.shape[1])
        starts = starts[prep.valid[starts]]
        with torch.inference_mode():
            w = window_tensor(prep.data, 3000, model.device)
            prob = np.concatenate(
                [
                    torch.sigmoid(model.detector(normalize_windows(w[torch.from_numpy(starts[i : i + 64])]))).numpy()
                    for i in range(0, len(starts), 64)
                ]
            )
        ref_t = label_ref[label_ref.station_id == sid].t.to_numpy()
        has, quiet = window_labels(prep.t0_ns / 1e9 + starts / 100.0, 30.0, ref_t)
        passed = prob >= p.detect_threshold
        passed_ev.append(passed[has])
        passed_quiet.append(passed[quiet])
        t = time.perf_counter()
        df = pick_stream(st.copy(), None, p, model)
        secs += time.perf_counter() - t
        ours.append(pd.DataFrame({"station_id": sid, "phase": df.phase, "t": df.time.astype("int64") / 1e9}))
    ev, qu = np.concatenate(passed_ev), np.concatenate(passed_quiet)
    ours = pd.concat(ours, ignore_index=True)
    return {
        "event_windows": int(len(ev)),
        "event_pass": float(ev.mean()) if len(ev) else None,
        "quiet_windows": int(len(qu)),
        "quiet_pass": float(qu.mean()) if len(qu) else None,
        "picks": int(len(ours)),
        "agreement": agreement(ours, score_ref, tol),
        "seconds": secs,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["builtin:default"], help="weights: builtin:NAME or directories")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="bench-out/detector_real.json")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    from quakescale.detect.models import load_model

    if not (MESETAS / "waveforms").is_dir():
        print(f"no Mesetas data under {MESETAS}: nothing to measure")
        return {}
    data = {}
    stations, both, pn = mesetas_sets()
    data["mesetas"] = (stations, both, pn, TOL_S)
    if (RIDGECREST / "waveforms" / "20190704").is_dir():
        stations, ref = ridgecrest_sets()
        data["ridgecrest"] = (stations, ref, ref, 0.2)
    res = {}
    print(
        f"{'model':<22} {'data':<11} {'event pass':>10} {'quiet pass':>10} {'picks':>6} "
        f"{'P recall/near':>14} {'S recall/near':>14} {'s':>6}"
    )
    for spec in a.models:
        model = load_model(spec, device="cpu")
        res[spec] = {"label": model.label}
        for name, (stations, label_ref, score_ref, tol) in data.items():
            r = evaluate(model, stations, label_ref, score_ref, tol)
            res[spec][name] = r
            ag = r["agreement"]
            print(
                f"{model.label[:22]:<22} {name:<11} {r['event_pass']:10.3f} {r['quiet_pass']:10.3f} {r['picks']:6d} "
                + " ".join(f"{ag[ph]['recall']!s:>6}/{ag[ph]['ours_near_ref']!s:<7}" for ph in ("P", "S"))
                + f" {r['seconds']:6.2f}"
            )
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")
    return res


if __name__ == "__main__":
    main()
