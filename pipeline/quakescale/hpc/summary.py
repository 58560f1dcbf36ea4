"""``summary.json``: per-stage counts, timings and status, and -- when the input has truth (a
synthetic world) -- the errors against it."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from ..catalog.compare import event_errors, pick_errors
from ..config import Config
from ..rundir import RunDir, gather_picks, write_json
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


def build_summary(cfg: Config, rd: RunDir, extra: dict | None = None) -> dict:
    summary = dict(
        run=cfg.run.name, written=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), stages=stage_summary(rd)
    )
    if rd.plan.exists():
        plan = pd.read_parquet(rd.plan)
        problems = [
            dict(unit=r.unit, state=r.state, reason=r.reason) for r in plan[~plan.state.isin(["ok"])].itertuples()
        ]
        summary["plan"] = dict(
            station_days=int(len(plan)),
            states={k: int(v) for k, v in plan.state.value_counts().items()},
            problems=problems[:50],
        )
    truth_dir = cfg.archive.truth
    if truth_dir and Path(truth_dir).exists():
        vs = {}
        tp = pd.read_parquet(Path(truth_dir) / "picks.parquet")
        te = pd.read_parquet(Path(truth_dir) / "events.parquet")
        vs["n_truth_events"] = int(len(te))
        pk = gather_picks(rd)
        if pk is not None:
            vs["picks"] = pick_errors(pk, tp)
        outputs = (
            ("associate", rd.root / "events" / "associated.parquet"),
            ("locate", rd.root / "events" / "located.parquet"),
            ("relocate", rd.root / "relocated" / "relocated.parquet"),
        )
        for stage, path in outputs:
            if path.exists():
                df = pd.read_parquet(path)
                if len(df) or stage != "relocate":
                    vs[stage] = event_errors(df, te)
        summary["vs_truth"] = vs
    if extra:
        summary.update(extra)
    write_json(summary, rd.summary)
    return summary
