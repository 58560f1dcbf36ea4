"""Classic pickers (recursive STA/LTA, kurtosis) on real Ridgecrest data vs hypoDD.pha picks."""

from __future__ import annotations

import numpy as np
import pytest
from obspy import read
from scipy import stats

from quakescale import schema as S
from quakescale.config import DetectSection
from quakescale.detect.classic import aic_onset, classic_picks, sliding_kurtosis
from quakescale.detect.runner import pick_stream
from test_detect import RC, ridgecrest_reference


def _errors(method: str) -> dict:
    errs = {}
    for sta, arrivals in ridgecrest_reference().items():
        st = read(str(RC / "waveforms" / "20190704" / f"PB.{sta}.EH?"))
        df = pick_stream(st, None, DetectSection(method=method))
        S.conform(df, S.PICKS)
        assert (df.method == method).all() and df.probability.between(0, 1).all()
        for ph, t in arrivals:
            d = (df.loc[df.phase == ph, "time"].astype("int64").to_numpy() - t.ns) / 1e9
            errs[(sta, ph, str(t))] = float(d[np.argmin(np.abs(d))]) if len(d) else np.inf
    return errs


def test_stalta_ridgecrest():
    e = _errors("stalta")
    print({k: round(v, 3) for k, v in e.items()})
    p = [abs(v) for k, v in e.items() if k[1] == "P"]
    s = [abs(v) for k, v in e.items() if k[1] == "S"]
    assert max(p) <= 0.05  # all 6 P picks (AIC-refined) within 50 ms
    assert sum(x <= 0.2 for x in s) >= 4  # most S picks within 0.2 s


def test_kurtosis_ridgecrest():
    e = _errors("kurtosis")
    print({k: round(v, 3) for k, v in e.items()})
    p = [abs(v) for k, v in e.items() if k[1] == "P"]
    assert sum(x <= 0.25 for x in p) >= 4
    assert sum(abs(v) <= 0.2 for k, v in e.items() if k[1] == "S") >= 2


def test_aic_and_kurtosis_primitives():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.standard_normal(700), 8 * rng.standard_normal(300)])
    assert abs(aic_onset(x) - 700) <= 3
    y = rng.standard_t(5, 3000)
    k = sliding_kurtosis(y, 200)
    assert k[1999] == pytest.approx(stats.kurtosis(y[1800:2000], fisher=True) + 3.0, rel=1e-6)
    with pytest.raises(ValueError, match="unknown method"):
        classic_picks(np.zeros((3, 1000)), None, "nope", DetectSection())
