"""Region-specific retraining (issue 8): the default model on a new region, before / after
bootstrap + retraining on that region's own continuous data (no truth used for training).

    python benchmarks/bench_retrain.py [--quick] [--out bench-out/retrain.json] [--work DIR]

Region A is the synthetic world of :func:`quakescale.synth.world.make_world` (Ludian-like crust,
Vp/Vs 1.73, the instruments' noise) -- what the shipped ``builtin:default`` weights were trained
on.  Region B differs in

- velocity: a slower crust with Vp/Vs 1.80 (:func:`region_b_model`);
- noise: ``--noise-scale`` x louder ambient noise and a cultural 4-7 Hz hum (machinery) whose
  level switches every few minutes (:func:`region_b_noise`).

``make_world`` takes the model, a noise scale and a noise generator as parameters while region B is
generated (see :func:`make_region_b`).

Region B is recorded on two days: day 1 is bootstrapped (:func:`build_sample_set`) and the
default model is fine-tuned on it (:func:`train_from_sample_set`); day 2 is held out.  Two
sample sets are built and retrained on (``--variant``):

- ``classic``: the seed's STA/LTA + kurtosis picks -> association -> windows (with the
  association-guided S labels and ignored unlabelled arrivals);
- ``self_training`` (the ``train.self_training`` default): the default model's picks join the
  classic ones; events still need classic picks, and only its confident S picks become labels.

On day 2 the default model, each retrained model (named in the run config: ``detect.model:
WEIGHTS_DIR``, through the station-day runner) and the STA/LTA picker are scored against the
truth picks (truth SNR >= 3): recall, precision and P/S pick error (picks within 0.5 s of a
truth arrival of the same phase), the error on the arrivals both models pick, and events
(associated like the pipeline).  Reference figures: the README's table and the closing notes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

MATCH_S = 0.5
TRUTH_SNR = 3.0


# ----------------------------------------------------------------------------- region B
def region_b_model():
    from quakescale.velocity import LayeredModel

    return LayeredModel.from_vpvs(
        top_km=(0.0, 3.0, 10.0, 20.0, 38.0), vp_kms=(4.60, 5.40, 6.00, 6.50, 7.80), vpvs=1.80, name="region_b"
    )


def region_b_noise(orig, hum_rms_factor: float = 2.5):
    """``make_noise`` of region B: the original ambient noise plus a 4-7 Hz hum (fundamental +
    second harmonic, slowly drifting) whose RMS switches between 0 and ``hum_rms_factor`` x the
    ambient 1-20 Hz RMS every 2-8 minutes.  Reproducible from the generator it is given."""

    def make_noise(n, t0_s, band_rms_counts, rng):
        x = orig(n, t0_s, band_rms_counts, rng)
        t = np.arange(n) / 100.0
        f0 = rng.uniform(4.0, 7.0)
        drift = 0.05 * np.sin(2 * np.pi * t / rng.uniform(200, 600))
        # on/off level in segments of 2-8 minutes
        lvl = np.zeros(n, np.float32)
        i = 0
        while i < n:
            L = int(rng.uniform(120, 480) * 100)
            lvl[i : i + L] = rng.choice([0.0, 0.5, 1.0, 1.0])
            i += L
        k = np.ones(500) / 500
        lvl = np.convolve(lvl, k, mode="same")
        phase = 2 * np.pi * np.cumsum(f0 * (1 + drift)) / 100.0
        for c in range(3):
            h = np.sin(phase + rng.uniform(0, 2 * np.pi)) + 0.5 * np.sin(2 * phase + rng.uniform(0, 2 * np.pi))
            x[c] += (hum_rms_factor * band_rms_counts / np.sqrt(0.625) * lvl * h).astype(np.float32)
        return x

    return make_noise


def make_region_b(out, noise_scale: float = 1.5, **kw) -> dict:
    """``make_world`` with region B's velocity model, louder ambient noise and machinery hum."""
    from quakescale.synth.waveforms import make_noise
    from quakescale.synth.world import make_world

    return make_world(out, model=region_b_model(), noise_scale=noise_scale, noise_fn=region_b_noise(make_noise), **kw)


# ----------------------------------------------------------------------------- scoring
def score(picks: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Recall / precision / pick errors of ``picks`` against ``truth`` (same station, phase,
    within MATCH_S; one truth arrival matches at most one pick)."""
    out = {}
    n_picks_all, n_match_all = 0, 0
    for ph in ("P", "S"):
        errs, n_truth, n_picks = [], 0, 0
        for sid, g in truth[truth.phase == ph].groupby("station_id"):
            tt = np.sort(g["time"].astype("int64").to_numpy())
            n_truth += len(tt)
            mine = picks[(picks.station_id == sid) & (picks.phase == ph)]
            pt = mine["time"].astype("int64").to_numpy()
            used = np.zeros(len(pt), bool)
            for t in tt:
                if not len(pt):
                    break
                d = np.abs(pt - t).astype(float)
                d[used] = np.inf
                k = int(np.argmin(d))
                if d[k] <= MATCH_S * 1e9:
                    used[k] = True
                    errs.append((pt[k] - t) / 1e9)
        n_picks = int((picks.phase == ph).sum()) if len(picks) else 0
        e = np.asarray(errs)
        out[ph] = {
            "n_truth": n_truth,
            "n_picks": n_picks,
            "n_matched": len(e),
            "recall": len(e) / max(n_truth, 1),
            "precision": len(e) / max(n_picks, 1),
            "err_med_abs_s": float(np.median(np.abs(e))) if len(e) else float("nan"),
            "err_mean_abs_s": float(np.mean(np.abs(e))) if len(e) else float("nan"),
            "err_std_s": float(e.std()) if len(e) else float("nan"),
        }
        n_picks_all += n_picks
        n_match_all += len(e)
    out["precision"] = n_match_all / max(n_picks_all, 1)
    return out


def paired_errors(picks_a: pd.DataFrame, picks_b: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Pick errors of two pick sets on the same arrivals: the truth arrivals both match within
    MATCH_S (so a model that also picks weaker, harder arrivals is not penalised for them)."""
    out = {}
    for ph in ("P", "S"):
        ea, eb = [], []
        for sid, g in truth[truth.phase == ph].groupby("station_id"):
            tt = g["time"].astype("int64").to_numpy()
            d = []
            for p in (picks_a, picks_b):
                pt = p.loc[(p.station_id == sid) & (p.phase == ph), "time"].astype("int64").to_numpy()
                if not len(pt):
                    pt = np.array([np.iinfo(np.int64).min // 2])
                x = (pt[None, :] - tt[:, None]) / 1e9
                d.append(x[np.arange(len(tt)), np.argmin(np.abs(x), axis=1)])
            ok = (np.abs(d[0]) <= MATCH_S) & (np.abs(d[1]) <= MATCH_S)
            ea.extend(d[0][ok])
            eb.extend(d[1][ok])
        ea, eb = np.asarray(ea), np.asarray(eb)
        out[ph] = {
            "n": len(ea),
            "before_std_s": float(ea.std()) if len(ea) else float("nan"),
            "after_std_s": float(eb.std()) if len(eb) else float("nan"),
            "before_med_abs_s": float(np.median(np.abs(ea))) if len(ea) else float("nan"),
            "after_med_abs_s": float(np.median(np.abs(eb))) if len(eb) else float("nan"),
        }
    return out


def recall_at_precision(picks: pd.DataFrame, truth: pd.DataFrame, precision: dict) -> dict:
    """Recall of ``picks`` when only its most probable picks of each phase are kept, as many as
    keep its precision at least ``precision[phase]`` (e.g. the default model's): the two models
    compared at the same operating point rather than at one probability threshold."""
    out = {}
    for ph in ("P", "S"):
        g = picks[picks.phase == ph].sort_values("probability", ascending=False, kind="stable").reset_index(drop=True)
        best = 0.0
        for n in np.unique(np.linspace(1, len(g), min(len(g), 60)).astype(int)) if len(g) else []:
            sc = score(g.head(n), truth[truth.phase == ph])[ph]
            if sc["precision"] >= precision[ph]:
                best = max(best, sc["recall"])
        out[ph] = best
    return out


def score_events(
    picks: pd.DataFrame, cfg, truth_events: pd.DataFrame, truth_picks: pd.DataFrame, min_stations: int = 4
) -> dict:
    """Event-level recall / precision: the picks associated like the pipeline does
    (:class:`Associator` with the config's velocity model and ``associate`` section), matched
    to the truth events that ``min_stations`` stations recorded with SNR >= TRUTH_SNR
    (origin time within 1.5 s, epicentre within 10 km)."""
    from quakescale.archive import load_inventory, stations_table
    from quakescale.associate import Associator, associate_partitioned, match_events
    from quakescale.formats.velmodels import resolve_model

    n_sta = truth_picks[truth_picks.phase == "P"].groupby("event_id")["station_id"].nunique()
    ref = truth_events[truth_events.event_id.isin(n_sta[n_sta >= min_stations].index)].reset_index(drop=True)
    if not len(picks):
        return {"n_truth": len(ref), "n_found": 0, "n_matched": 0, "recall": 0.0, "precision": float("nan")}
    a = cfg.associate
    assoc = Associator(
        stations_table(load_inventory(cfg.archive.inventory)),
        resolve_model(cfg.velocity.model),
        max_residual_s=a.max_residual_s,
        min_stations=a.min_stations,
        grid_spacing_km=a.grid_spacing_km,
        fine_spacing_km=a.fine_spacing_km,
        max_depth_km=30.0,
    )
    p = picks.sort_values(["time", "station_id"], kind="stable").reset_index(drop=True)
    ev, _ = associate_partitioned(p, assoc, partition_s=a.partition_s, overlap_s=a.overlap_s)
    m = match_events(ev, ref, max_dt_s=1.5, max_dist_km=10.0)
    return {
        "n_truth": len(ref),
        "n_found": len(ev),
        "n_matched": len(m),
        "recall": len(m) / max(len(ref), 1),
        "precision": len(m) / max(len(ev), 1),
    }


def pick_day(cfg, day, station_ids, method: str, model_spec: str | None = None) -> pd.DataFrame:
    """Picks of every station-day of ``day`` through the pipeline's station-day runner, with the
    method / model named in the config (``detect.method``, ``detect.model``)."""
    from obspy import UTCDateTime

    from quakescale.archive import ArchiveError, read_station_day
    from quakescale.detect.runner import pick_stream

    c = cfg.model_copy(deep=True)
    c.detect.method = method
    if model_spec is not None:
        c.detect.model = str(model_spec)
    c.detect.device = "cpu"
    frames = []
    d0 = UTCDateTime(day.isoformat()).ns
    for sid in station_ids:
        try:
            # run_station_day without the inventory: Wood-Anderson amplitudes are not scored here
            st = read_station_day(c.archive.sds_root, sid, day, channels=list(c.archive.channels))
            df = pick_stream(st, None, c.detect)
            t = df["time"].astype("int64").to_numpy()
            frames.append(df[(t >= d0) & (t < d0 + 86400 * 10**9)])
        except (ArchiveError, ValueError) as exc:
            print(f"  skip {day}/{sid}: {str(exc)[:80]}")
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["station_id", "phase", "time", "model"])
    )


# ----------------------------------------------------------------------------- default model
def get_default_model(spec: str, work: Path, quick: bool, device: str):
    """The region-A model: ``spec`` (``builtin:default``) or, when it cannot be loaded (weights
    not shipped yet), a stand-in trained here exactly like the shipped one (truth-labelled region
    A samples, :func:`samples_from_world` + the trainer)."""
    from quakescale.detect.models import load_model

    try:
        m = load_model(spec, device="cpu")
        return spec, m.label, False
    except (FileNotFoundError, ValueError) as exc:
        print(f"default model {spec!r} not loadable ({str(exc)[:120]}); training a region-A stand-in")
    from quakescale.synth.world import make_world
    from quakescale.train.samples import samples_from_world
    from quakescale.train.trainer import train

    wa, sa, wd = work / "regionA", work / "regionA-samples", work / "regionA-weights"
    if not (wd / "card.json").exists():
        if not (wa / "truth" / "picks.parquet").exists():
            make_world(wa, n_stations=10, days=1, n_events=120, seed=2001, hours_per_day=2.0 if quick else 4.0)
        if not (sa / "index.parquet").exists():
            samples_from_world(wa, sa, seed=0)
        train(
            [sa],
            wd,
            epochs_detector=4 if quick else 8,
            epochs_picker=12 if quick else 30,
            batch_size=64,
            device=device,
            name="cerp-regionA",
            version="standin",
            log=lambda *a: None,
        )
    return str(wd), load_model(wd, device="cpu").label, True


# ----------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small world, few epochs (a few minutes on 2 cores)")
    ap.add_argument("--out", default="bench-out/retrain.json")
    ap.add_argument("--work", default="bench-out/retrain-work")
    ap.add_argument("--default-model", default="builtin:default")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--noise-scale", type=float, default=1.5)
    ap.add_argument("--epochs-detector", type=int, default=None)
    ap.add_argument("--epochs-picker", type=int, default=None)
    ap.add_argument(
        "--batch-size", type=int, default=64, help="the seed's 512 needs far more samples than a small world gives"
    )
    ap.add_argument("--seed", type=int, default=3101)
    ap.add_argument("--hours", type=float, default=None, help="recorded hours per day (quick 1.5, full 4)")
    ap.add_argument("--stations", type=int, default=None, help="stations (quick 8, full 12)")
    ap.add_argument("--events", type=int, default=None, help="events over both days (quick 90, full 240)")
    ap.add_argument(
        "--variant", choices=["both", "classic", "self_training"], default="both", help="sample set(s) to retrain on"
    )
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    from quakescale.config import load_config
    from quakescale.synth.sequence import SequenceParams
    from quakescale.train.bootstrap import build_sample_set
    from quakescale.train.trainer import train_from_sample_set

    t_all = time.time()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    timings = {}
    hours = a.hours or (1.5 if a.quick else 4.0)
    n_st = a.stations or (8 if a.quick else 12)
    n_ev = a.events or (90 if a.quick else 240)
    ep_d = a.epochs_detector or (3 if a.quick else 8)
    ep_p = a.epochs_picker or (8 if a.quick else 25)

    t = time.time()
    spec, default_label, standin = get_default_model(a.default_model, work, a.quick, a.device)
    timings["default_model_s"] = time.time() - t

    tag = f"{n_st}st-{hours:g}h-{n_ev}ev-s{a.seed}"
    wb = work / f"regionB-{tag}"
    t = time.time()
    if not (wb / "truth" / "picks.parquet").exists():
        # two recorded days: day 1 for bootstrap + retraining, day 2 held out; a flat Omori rate
        make_region_b(
            wb,
            noise_scale=a.noise_scale,
            n_stations=n_st,
            days=2,
            n_events=n_ev,
            seed=a.seed,
            hours_per_day=hours,
            sequence=SequenceParams(omori_c_days=5.0),
            n_gaps=1,
            corrupt=False,
        )
    timings["world_s"] = time.time() - t
    cfg = load_config(wb / "config.yaml")
    days = cfg.days()
    train_day, test_day = days[0], days[1]
    from quakescale.archive import load_inventory, stations_table

    sids = list(stations_table(load_inventory(cfg.archive.inventory)).station_id)
    truth = pd.read_parquet(wb / "truth" / "picks.parquet")
    truth = truth[truth.recorded & (truth.snr >= TRUTH_SNR) & (truth.time.dt.date == test_day)]
    print(
        f"region B: {n_st} stations, {hours} h x 2 days; held-out day {test_day}: "
        f"{int((truth.phase == 'P').sum())} P + {int((truth.phase == 'S').sum())} S truth arrivals (SNR >= "
        f"{TRUTH_SNR})"
    )

    tev = pd.read_parquet(wb / "truth" / "events.parquet")
    tev = tev[tev.time.dt.date == test_day]

    def evaluate(picks):
        s = score(picks, truth)
        s["events"] = score_events(picks, cfg, tev, truth)
        return s

    # reference: the default model at home (region A: same network/sequence seed, default crust and noise)
    t = time.time()
    wa = work / f"regionA-ref-{tag}"
    if not (wa / "truth" / "picks.parquet").exists():
        from quakescale.synth.world import make_world

        make_world(
            wa,
            n_stations=n_st,
            days=2,
            n_events=n_ev,
            seed=a.seed,
            hours_per_day=hours,
            sequence=SequenceParams(omori_c_days=5.0),
            n_gaps=1,
            corrupt=False,
        )
    cfg_a = load_config(wa / "config.yaml")
    truth_a = pd.read_parquet(wa / "truth" / "picks.parquet")
    truth_a = truth_a[truth_a.recorded & (truth_a.snr >= TRUTH_SNR) & (truth_a.time.dt.date == test_day)]
    tev_a = pd.read_parquet(wa / "truth" / "events.parquet")
    pa = pick_day(cfg_a, test_day, sids, "cerp", spec)
    home = score(pa, truth_a)
    home["events"] = score_events(pa, cfg_a, tev_a[tev_a.time.dt.date == test_day], truth_a)
    timings["region_a_reference_s"] = time.time() - t

    # before: the default model (and the classic picker) on the held-out day
    t = time.time()
    before_picks = pick_day(cfg, test_day, sids, "cerp", spec)
    before = evaluate(before_picks)
    classic = evaluate(pick_day(cfg, test_day, sids, "stalta"))
    timings["eval_before_s"] = time.time() - t

    # bootstrap on day 1 (no truth), then fine-tune the default model on it; two sample sets:
    # the seed's (STA/LTA + kurtosis picks -> association) and self-training (the default
    # model's picks join the classic ones; events still need classic picks)
    variants = {"classic": {}, "self_training": {"teacher_model": spec}}
    if a.variant != "both":
        variants = {a.variant: variants[a.variant]}
    results, summaries, labels, after_picks = {}, {}, {}, {}
    for vname, extra in variants.items():
        t = time.time()
        sdir = work / f"regionB-bootstrap-{vname}-{tag}"
        summaries[vname] = build_sample_set(cfg, sdir, station_days=[(train_day, s) for s in sids], seed=0, **extra)
        timings[f"bootstrap_{vname}_s"] = time.time() - t
        t = time.time()
        wdir = work / f"regionB-weights-{vname}-{tag}"
        train_from_sample_set(
            sdir,
            wdir,
            device=a.device,
            resume=False,
            epochs_detector=ep_d,
            epochs_picker=ep_p,
            init_model=spec,
            name=f"cerp-regionB-{vname.replace('_', '-')}",
            version="bench",
            batch_size=a.batch_size,
            seed=0,
            log=print,
        )
        timings[f"train_{vname}_s"] = time.time() - t
        # after: the retrained model, named in the run config (detect.model: WEIGHTS_DIR)
        t = time.time()
        after_picks[vname] = pick_day(cfg, test_day, sids, "cerp", wdir)
        results[vname] = evaluate(after_picks[vname])
        results[vname]["paired_errors"] = paired_errors(before_picks, after_picks[vname], truth)
        results[vname]["recall_at_before_precision"] = recall_at_precision(
            after_picks[vname], truth, {ph: before[ph]["precision"] for ph in ("P", "S")}
        )
        results[vname]["weights"] = str(wdir)
        timings[f"eval_after_{vname}_s"] = time.time() - t
        labels[vname] = sorted(set(after_picks[vname]["model"])) if len(after_picks[vname]) else []

    def row(name, s):
        return (
            f"{name:<34} P recall {s['P']['recall']:.3f} prec {s['P']['precision']:.3f} |err| med "
            f"{s['P']['err_med_abs_s']:.3f} s std {s['P']['err_std_s']:.3f} s"
            f" | S recall {s['S']['recall']:.3f} prec {s['S']['precision']:.3f} |err| med "
            f"{s['S']['err_med_abs_s']:.3f} s std {s['S']['err_std_s']:.3f} s"
            f" | events recall {s['events']['recall']:.3f} prec {s['events']['precision']:.3f} "
            f"({s['events']['n_matched']}/{s['events']['n_truth']}, {s['events']['n_found']} found)"
        )

    print("\nheld-out day, picks within 0.5 s of truth (SNR >= 3); events associated like the pipeline:")
    print(row(f"region A (home): {default_label}", home))
    print("region B:")
    print(row("STA/LTA (classic)", classic))
    print(row(f"before: {default_label}", before))
    ratios = {}
    for vname, r in results.items():
        print(row(f"after ({vname}): {labels[vname][0] if labels[vname] else '?'}", r))
        pe = r["paired_errors"]
        print(
            f"{'':<34} same arrivals (P {pe['P']['n']}, S {pe['S']['n']}): error std before/after P "
            f"{pe['P']['before_std_s']:.3f}/{pe['P']['after_std_s']:.3f} s,"
            f" S {pe['S']['before_std_s']:.3f}/{pe['S']['after_std_s']:.3f} s; median |err| P "
            f"{pe['P']['before_med_abs_s']:.3f}/{pe['P']['after_med_abs_s']:.3f} s,"
            f" S {pe['S']['before_med_abs_s']:.3f}/{pe['S']['after_med_abs_s']:.3f} s"
        )
        rp = r["recall_at_before_precision"]
        print(
            f"{'':<34} at the default model's precision (P {before['P']['precision']:.3f}, S "
            f"{before['S']['precision']:.3f}): recall P {rp['P']:.3f}, S {rp['S']:.3f}"
        )
        q = {f"{ph}_recall": r[ph]["recall"] / max(before[ph]["recall"], 1e-9) for ph in ("P", "S")}
        q.update({f"{ph}_recall_at_before_precision": rp[ph] / max(before[ph]["recall"], 1e-9) for ph in ("P", "S")})
        q.update({f"{ph}_precision": r[ph]["precision"] / max(before[ph]["precision"], 1e-9) for ph in ("P", "S")})
        q["event_recall"] = r["events"]["recall"] / max(before["events"]["recall"], 1e-9)
        q["event_precision"] = r["events"]["precision"] / max(before["events"]["precision"], 1e-9)
        q.update(
            {
                f"{ph}_err_std_same_arrivals": pe[ph]["after_std_s"] / pe[ph]["before_std_s"]
                if pe[ph]["before_std_s"]
                else float("nan")
                for ph in ("P", "S")
            }
        )
        ratios[vname] = q
        print(f"{'':<34} ratios after/before: { ({k: round(v, 3) for k, v in q.items()}) }")
    res = {
        "quick": a.quick,
        "region_b": {
            "velocity": region_b_model().to_dict(),
            "noise_scale": a.noise_scale,
            "hum": "4-7 Hz, 0-2.5x ambient RMS, switching every 2-8 min",
            "stations": n_st,
            "hours_per_day": hours,
            "events": n_ev,
            "seed": a.seed,
        },
        "default_model": {"spec": spec, "label": default_label, "standin_trained_here": standin},
        "retrained": {
            "epochs_detector": ep_d,
            "epochs_picker": ep_p,
            "batch_size": a.batch_size,
            "labels_on_picks": labels,
        },
        "bootstrap": {v: {k: x for k, x in sm.items() if k not in ("params",)} for v, sm in summaries.items()},
        "heldout_truth": {
            "P": int((truth.phase == "P").sum()),
            "S": int((truth.phase == "S").sum()),
            "min_snr": TRUTH_SNR,
            "match_s": MATCH_S,
        },
        "region_a_home": home,
        "before": before,
        "after": results,
        "classic_stalta": classic,
        "ratios": ratios,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "total_s": round(time.time() - t_all, 1),
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=float) + "\n")
    print(f"wrote {out} ({res['total_s']} s)")
    return res


if __name__ == "__main__":
    main()
