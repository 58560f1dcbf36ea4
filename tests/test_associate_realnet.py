"""Association on a sparse real network (issue 14): the 8 stations of mesetas2019_dev, picks of the
shipped CERP weights (synthetic-trained: many false picks on real noise), locator taper 150/300 km
(what `quakescale init` fits to this network).  Before the SNR floor and the nearest-station rule:
29 of 88 located events within 50 km of the sequence (the old loose defaults: 42 of 204)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from shared_data import DATA

MESETAS = DATA / "mesetas2019_dev"
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(not (MESETAS / "waveforms").is_dir(), reason=f"no real data at {MESETAS}")
def test_mesetas_cerp_events_at_the_sequence(tmp_path):
    """>= 80 % of the located events within 50 km of the sequence (3.45 N, 74.19 W) and no fewer
    than 42 there (measured: 45 of 49)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_realdata

    out = tmp_path / "realdata.json"
    assert bench_realdata.main(["--picker", "cerp", "--quick", "--work", str(tmp_path / "w"), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["exit_code"] == 0
    ev = res["events"]
    import pandas as pd

    reason = " ".join(pd.read_parquet(tmp_path / "w" / "run" / "status" / "locate.parquet")["reason"].astype(str))
    assert "distance taper 150/300 km" in reason, reason
    near, located = ev["located_within_50km"], ev["located"]
    print(f"\nMesetas, CERP picks: {near} of {located} located events within 50 km of the sequence")
    assert near >= 42 and near >= 0.8 * located
