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
2. the whole CERP path (``pick_stream``: detector, picker, screening, refinement) per station:
   picks made, the share of them within 0.5 s of a reference pick of the same phase (PhaseNet or
   EQTransformer on Mesetas; the analyst's on Ridgecrest), the reference picks recovered, and
   the seconds spent;
3. Ridgecrest's 12 analyst arrivals found within 0.2 s.

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from shared_data import DATA, RIDGECREST  # noqa: E402

MESETAS = DATA / "mesetas2019_dev"
QUIET_BEFORE_S, QUIET_AFTER_S = 60.0, 5.0
MATCH_S = 0.5


def _ns(times) -> np.ndarray:
    import pandas as pd

    return pd.to_datetime(pd.Series(times), utc=True).dt.as_unit("ns").astype("int64").to_numpy()


def mesetas_sets() -> list[tuple[str, object, dict]]:
    """[(station id, 3-component Stream, {phase: reference times ns})] of the Mesetas stations."""
    import pandas as pd
    from obspy import Stream, read

    refs = pd.concat(
        [pd.read_csv(MESETAS / "reference" / f) for f in ("phasenet_picks.csv", "eqtransformer_picks.csv")]
    )
    out = []
    for sid in sorted(refs.station_id.unique()):
        net, sta = sid.split(".")
        st = Stream()
        for f in sorted((MESETAS / "waveforms").glob(f"{net}.{sta}.*.mseed")):
            st += read(str(f))
        if len(st) < 3:
            continue
        r = refs[refs.station_id == sid]
        out.append((sid, st, {ph: np.sort(_ns(r[r.phase == ph].time)) for ph in ("P", "S")}))
    return out


def ridgecrest_sets() -> list[tuple[str, object, dict]]:
    from obspy import Stream, UTCDateTime, read

    picks: dict = {}
    origin = None
    for line in (RIDGECREST / "hypoDD.pha").read_text().splitlines():
        f = line.split()
        if f[0] == "#":
            origin = UTCDateTime(int(f[1]), int(f[2]), int(f[3]), int(f[4]), int(f[5])) + float(f[6])
        elif origin is not None:
            picks.setdefault(f[0], {"P": [], "S": []})[f[3]].append((origin + float(f[1])).ns)
    out = []
    for sta, ph in sorted(picks.items()):
        st = Stream()
        for c in "ZNE":
            st += read(str(RIDGECREST / "waveforms" / "20190704" / f"PB.{sta}.EH{c}"))
        out.append((f"PB.{sta}", st, {k: np.sort(np.array(v, np.int64)) for k, v in ph.items()}))
    return out


def window_labels(starts_ns: np.ndarray, win_s: float, ref: dict) -> tuple[np.ndarray, np.ndarray]:
    allp = np.sort(np.concatenate([ref["P"], ref["S"]]))
    a, b = starts_ns, starts_ns + int(win_s * 1e9)
    has = np.searchsorted(allp, b, "left") > np.searchsorted(allp, a, "left")
    near = np.searchsorted(allp, b + int(QUIET_AFTER_S * 1e9), "left") > np.searchsorted(
        allp, a - int(QUIET_BEFORE_S * 1e9), "left"
    )
    return has, ~near


def matched(t: np.ndarray, ref: np.ndarray, tol_s: float = MATCH_S) -> np.ndarray:
    if not len(ref):
        return np.zeros(len(t), bool)
    i = np.clip(np.searchsorted(ref, t), 1, len(ref)) if len(ref) > 1 else np.zeros(len(t), int)
    d = np.minimum(np.abs(t - ref[np.maximum(i - 1, 0)]), np.abs(t - ref[np.minimum(i, len(ref) - 1)]))
    return d <= tol_s * 1e9


def evaluate(model, sets) -> dict:
    import torch

    from quakescale.config import DetectSection
    from quakescale.detect.models import normalize_windows
    from quakescale.detect.runner import pick_stream, preprocess, window_starts, window_tensor

    p = DetectSection()
    ev_pass, quiet_pass, n_ev, n_quiet = 0, 0, 0, 0
    n_picks, n_match, n_ref, n_rec, secs = 0, 0, 0, 0, 0.0
    per = {}
    for sid, st, ref in sets:
        prep = preprocess(st.copy(), p)
        starts = window_starts(prep.data.shape[1])
        starts = starts[prep.valid[starts].astype(bool)]
        with torch.inference_mode():
            w = window_tensor(prep.data, 3000, model.device)
            prob = np.concatenate(
                [
                    torch.sigmoid(model.detector(normalize_windows(w[torch.from_numpy(starts[i : i + 64])]))).numpy()
                    for i in range(0, len(starts), 64)
                ]
            )
        has, quiet = window_labels(prep.t0_ns + starts.astype(np.int64) * 10_000_000, 30.0, ref)
        passed = prob >= p.detect_threshold
        t = time.perf_counter()
        df = pick_stream(st.copy(), None, p, model)
        dt = time.perf_counter() - t
        tp = df.time.astype("int64").to_numpy() if len(df) else np.zeros(0, np.int64)
        m = np.zeros(len(df), bool)
        rec = 0
        for ph in ("P", "S"):
            sel = (df.phase == ph).to_numpy() if len(df) else np.zeros(0, bool)
            m[sel] = matched(tp[sel], ref[ph])
            rec += int(matched(ref[ph], np.sort(tp[sel])).sum())
        nr = len(ref["P"]) + len(ref["S"])
        per[sid] = {
            "event_windows": int(has.sum()),
            "event_pass": float(passed[has].mean()) if has.any() else None,
            "quiet_windows": int(quiet.sum()),
            "quiet_pass": float(passed[quiet].mean()) if quiet.any() else None,
            "picks": len(df),
            "matched": int(m.sum()),
            "ref_picks": nr,
            "ref_recovered": rec,
            "seconds": dt,
        }
        ev_pass += int(passed[has].sum())
        quiet_pass += int(passed[quiet].sum())
        n_ev += int(has.sum())
        n_quiet += int(quiet.sum())
        n_picks, n_match, n_ref, n_rec, secs = (
            n_picks + len(df),
            n_match + int(m.sum()),
            n_ref + nr,
            n_rec + rec,
            secs + dt,
        )
    return {
        "event_pass": ev_pass / max(n_ev, 1),
        "quiet_pass": quiet_pass / max(n_quiet, 1),
        "event_windows": n_ev,
        "quiet_windows": n_quiet,
        "picks": n_picks,
        "matched_share": n_match / max(n_picks, 1),
        "ref_recall": n_rec / max(n_ref, 1),
        "seconds": secs,
        "stations": per,
    }


def ridgecrest_arrivals(model, sets, tol_s: float = 0.2) -> int:
    from quakescale.config import DetectSection
    from quakescale.detect.runner import pick_stream

    found = 0
    for _sid, st, ref in sets:
        df = pick_stream(st.copy(), None, DetectSection(), model)
        for ph in ("P", "S"):
            t = np.sort(df[df.phase == ph].time.astype("int64").to_numpy())
            found += int(matched(ref[ph], t, tol_s).sum())
    return found


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
    sets = {"mesetas": mesetas_sets()}
    if (RIDGECREST / "waveforms" / "20190704").is_dir():
        sets["ridgecrest"] = ridgecrest_sets()
    res = {}
    print(
        f"{'model':<28} {'data':<11} {'event pass':>10} {'quiet pass':>10} {'picks':>6} {'matched':>8} "
        f"{'ref recall':>10} {'s':>6}"
    )
    for spec in a.models:
        model = load_model(spec, device="cpu")
        res[spec] = {"label": model.label}
        for name, ss in sets.items():
            r = evaluate(model, ss)
            res[spec][name] = r
            print(
                f"{model.label[:28]:<28} {name:<11} {r['event_pass']:10.3f} {r['quiet_pass']:10.3f} {r['picks']:6d} "
                f"{r['matched_share']:8.3f} {r['ref_recall']:10.3f} {r['seconds']:6.2f}"
            )
        if "ridgecrest" in sets:
            res[spec]["ridgecrest_arrivals_within_0.2s"] = ridgecrest_arrivals(model, sets["ridgecrest"])
            print(
                f"{'':<28} Ridgecrest analyst arrivals found within 0.2 s: "
                f"{res[spec]['ridgecrest_arrivals_within_0.2s']} of 12"
            )
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")
    return res


if __name__ == "__main__":
    main()
