"""``summary.json``: per-stage counts, timings and status, and -- when the input has truth (a
synthetic world) -- the errors against it."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Config
from ..rundir import RunDir, write_json
from .stages import STAGES


def stage_summary(rd: RunDir) -> dict:
    out = {}
    for stage in STAGES:
        st = rd.read_status(stage)
        if not len(st):
            continue
        counts = st["state"].value_counts().to_dict()
        out[stage] = dict(
            units=int(len(st)),
            states={k: int(v) for k, v in counts.items()},
            outputs=int(st["n_out"].sum()),
            seconds_total=round(float(st["seconds"].sum()), 3),
            failed=[dict(unit=r.unit, reason=r.reason) for r in st[st.state == "failed"].head(20).itertuples()],
        )
    return out


def _ns(values) -> np.ndarray:
    """UTC times (any pandas/numpy form, tz-aware or not) as int64 nanoseconds."""
    t = pd.to_datetime(pd.Series(values), utc=True).dt.tz_convert(None)
    return t.to_numpy().astype("datetime64[ns]").astype(np.int64)


def pick_errors(picks: pd.DataFrame, truth: pd.DataFrame, tol_s: float = 0.5) -> dict:
    """Match picks to truth arrivals (same station and phase, nearest within ``tol_s``)."""
    res = {}
    for ph in ("P", "S"):
        p = picks[picks.phase == ph]
        t = truth[(truth.phase == ph) & truth.get("recorded", True)]
        errs, matched = [], 0
        n_picks = len(p)
        for sid, tg in t.groupby("station_id"):
            pp = p[p.station_id == sid]
            if not len(pp):
                continue
            pt = np.sort(_ns(pp["time"]))
            tt = _ns(tg["time"])
            i = np.clip(np.searchsorted(pt, tt), 1, len(pt) - 1) if len(pt) > 1 else np.zeros(len(tt), int)
            cand = np.stack([pt[np.maximum(i - 1, 0)], pt[i]]) - tt[None, :]
            best = cand[np.argmin(np.abs(cand), axis=0), np.arange(len(tt))] / 1e9
            ok = np.abs(best) <= tol_s
            errs.append(best[ok])
            matched += int(ok.sum())
        e = np.concatenate(errs) if errs else np.array([])
        snr_ok = t[t.snr >= 3]
        res[ph] = dict(
            n_truth=int(len(t)),
            n_picks=int(n_picks),
            n_matched=int(matched),
            recall=round(matched / max(len(t), 1), 4),
            mean_error_s=round(float(e.mean()), 4) if len(e) else None,
            std_error_s=round(float(e.std()), 4) if len(e) else None,
            n_truth_snr3=int(len(snr_ok)),
        )
    return res


def event_errors(events: pd.DataFrame, truth: pd.DataFrame, max_dt_s: float = 1.5, max_dist_km: float = 5.0) -> dict:
    """Recall/precision of events vs truth and location errors of the matched ones."""
    from ..geo import epicentral_km

    if not len(events):
        return dict(n_events=0, n_truth=int(len(truth)), recall=0.0, precision=None)
    et = _ns(events["time"]) / 1e9
    tt = _ns(truth["time"]) / 1e9
    order = np.argsort(tt)
    used = np.zeros(len(truth), bool)
    pairs = []
    for i in np.argsort(et):
        j0 = np.searchsorted(tt[order], et[i] - max_dt_s)
        j1 = np.searchsorted(tt[order], et[i] + max_dt_s)
        best, bd = None, None
        for jj in order[j0:j1]:
            if used[jj]:
                continue
            d = float(epicentral_km(events.latitude.iloc[i], events.longitude.iloc[i], truth.latitude.iloc[jj], truth.longitude.iloc[jj]))
            if d <= max_dist_km and (bd is None or abs(et[i] - tt[jj]) < bd):
                best, bd = jj, abs(et[i] - tt[jj])
        if best is not None:
            used[best] = True
            pairs.append((i, best))
    out = dict(n_events=int(len(events)), n_truth=int(len(truth)), n_matched=len(pairs), recall=round(len(pairs) / max(len(truth), 1), 4), precision=round(len(pairs) / max(len(events), 1), 4))
    if pairs:
        a = np.array(pairs)
        ev, tr = events.iloc[a[:, 0]], truth.iloc[a[:, 1]]
        dh = epicentral_km(ev.latitude.to_numpy(), ev.longitude.to_numpy(), tr.latitude.to_numpy(), tr.longitude.to_numpy())
        dz = np.abs(ev.depth_km.to_numpy() - tr.depth_km.to_numpy())
        out.update(median_epicentral_error_km=round(float(np.median(dh)), 4), median_depth_error_km=round(float(np.median(dz)), 4), p90_epicentral_error_km=round(float(np.percentile(dh, 90)), 4))
        if "magnitude" in ev and ev["magnitude"].notna().any():
            dm = ev.magnitude.to_numpy() - tr.magnitude.to_numpy()
            dm = dm[np.isfinite(dm)]
            if len(dm):
                out.update(median_magnitude_error=round(float(np.median(dm)), 4), median_abs_magnitude_error=round(float(np.median(np.abs(dm))), 4))
    return out


def build_summary(cfg: Config, rd: RunDir, extra: dict | None = None) -> dict:
    summary = dict(run=cfg.run.name, written=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), stages=stage_summary(rd))
    if rd.plan.exists():
        plan = pd.read_parquet(rd.plan)
        summary["plan"] = dict(station_days=int(len(plan)), states={k: int(v) for k, v in plan.state.value_counts().items()}, problems=[dict(unit=r.unit, state=r.state, reason=r.reason) for r in plan[~plan.state.isin(["ok"])].itertuples()][:50])
    truth_dir = cfg.archive.truth
    if truth_dir and Path(truth_dir).exists():
        vs = {}
        tp = pd.read_parquet(Path(truth_dir) / "picks.parquet")
        te = pd.read_parquet(Path(truth_dir) / "events.parquet")
        vs["n_truth_events"] = int(len(te))
        pk = gather_picks(rd)
        if pk is not None:
            vs["picks"] = pick_errors(pk, tp)
        for stage, path in (("associate", rd.root / "events" / "associated.parquet"), ("locate", rd.root / "events" / "located.parquet"), ("relocate", rd.root / "relocated" / "relocated.parquet")):
            if path.exists():
                df = pd.read_parquet(path)
                if len(df) or stage != "relocate":
                    vs[stage] = event_errors(df, te)
        summary["vs_truth"] = vs
    if extra:
        summary.update(extra)
    write_json(summary, rd.summary)
    return summary


def gather_picks(rd: RunDir) -> pd.DataFrame | None:
    """All picks of the run (compacted day files or per-station-day files)."""
    d = rd.root / "picks"
    if not d.exists():
        return None
    files = sorted(d.glob("day=*/*.parquet"))
    if not files:
        return None
    import pyarrow.parquet as pq
    import pyarrow as pa

    tables = [pq.read_table(f) for f in files]
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return pd.DataFrame(columns=["station_id", "phase", "time"])
    return pa.concat_tables(tables, promote_options="default").to_pandas()
