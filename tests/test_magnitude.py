"""ML from Wood-Anderson amplitudes (units explicit), and the frequency-magnitude distribution."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quakescale.geo import LocalProjection, epicentral_km
from quakescale.locate.magnitude import MagnitudeUnitError, event_magnitudes, fmd
from quakescale.ml import amplitude_from_ml


def world(n_ev=150, n_sta=15, seed=0, scatter=0.15, ml_range=(0.5, 4.5)):
    rng = np.random.default_rng(seed)
    proj = LocalProjection(27.1, 103.4)
    slat, slon = proj.to_latlon(rng.uniform(-40, 40, n_sta), rng.uniform(-40, 40, n_sta))
    stations = pd.DataFrame(
        dict(
            station_id=[f"XX.S{i:02d}" for i in range(n_sta)],
            latitude=slat,
            longitude=slon,
            elevation_m=rng.uniform(0, 1500, n_sta),
        )
    )
    elat, elon = proj.to_latlon(rng.uniform(-25, 25, n_ev), rng.uniform(-25, 25, n_ev))
    events = pd.DataFrame(
        dict(
            event_id=np.arange(n_ev),
            latitude=elat,
            longitude=elon,
            depth_km=rng.uniform(2, 20, n_ev),
            ml_true=rng.uniform(*ml_range, n_ev),
        )
    )
    rows = []
    for e in events.itertuples():
        epi = epicentral_km(e.latitude, e.longitude, stations.latitude, stations.longitude)
        r = np.sqrt(epi**2 + (e.depth_km + stations.elevation_m / 1000) ** 2)
        amp = amplitude_from_ml(e.ml_true + rng.normal(0, scatter, n_sta), r)
        for sid, a in zip(stations.station_id, amp):
            rows.append(dict(event_id=e.event_id, station_id=sid, phase="S", amp_wa_mm=a))
            rows.append(dict(event_id=e.event_id, station_id=sid, phase="P", amp_wa_mm=np.nan))
    return events, pd.DataFrame(rows), stations


def test_ml_recovers_truth_and_reports_stations():
    events, picks, stations = world()
    out, sm = event_magnitudes(events, picks, stations)
    err = (out.magnitude - out.ml_true).abs()
    assert err.median() <= 0.2 and err.median() < 0.08
    assert (out.mag_type == "ML").all() and (out.mag_n == 15).all()
    assert len(sm) == len(events) * 15 and sm.ml.notna().all()
    assert set(sm.columns) >= {"event_id", "station_id", "amp_wa_mm", "hypo_distance_km", "ml"}


def test_amplitude_units_are_explicit():
    events, picks, stations = world(n_ev=20, seed=1)
    ref, _ = event_magnitudes(events, picks, stations)
    in_m = picks.rename(columns={"amp_wa_mm": "amp_wa_m"}).assign(amp_wa_m=lambda d: d.amp_wa_m / 1e3)
    got, _ = event_magnitudes(events, in_m, stations)
    np.testing.assert_allclose(got.magnitude, ref.magnitude, atol=1e-9)
    in_nm = picks.rename(columns={"amp_wa_mm": "amp_wa_nm"}).assign(amp_wa_nm=lambda d: d.amp_wa_nm * 1e6)
    got, _ = event_magnitudes(events, in_nm, stations)
    np.testing.assert_allclose(got.magnitude, ref.magnitude, atol=1e-9)
    # nanometres mislabelled as mm: refused, not magnitude 8
    wrong = picks.assign(amp_wa_mm=picks.amp_wa_mm * 1e6)
    with pytest.raises(MagnitudeUnitError, match="mm"):
        event_magnitudes(events, wrong, stations)
    # micrometres mislabelled as mm for an M4.7: with the amplitude guard lifted, the ML ceiling catches it
    big_ev, big_picks, big_sta = world(n_ev=5, seed=5, ml_range=(4.6, 4.9))
    wrong = big_picks.assign(amp_wa_mm=big_picks.amp_wa_mm * 1e3)
    with pytest.raises(MagnitudeUnitError, match="mm"):
        event_magnitudes(big_ev, wrong, big_sta)
    with pytest.raises(MagnitudeUnitError, match="unit"):
        event_magnitudes(big_ev, wrong, big_sta, max_amp_mm=1e12)
    loose, _ = event_magnitudes(big_ev, wrong, big_sta, max_amp_mm=1e12, max_ml=99.0)
    assert (loose.magnitude - loose.ml_true - 3.0).abs().max() < 0.3
    with pytest.raises(ValueError, match="amplitude column"):
        event_magnitudes(events, picks.drop(columns="amp_wa_mm"), stations)
    with pytest.raises(ValueError, match="several amplitude columns"):
        event_magnitudes(events, picks.assign(amp_wa_m=1e-3), stations)
    with pytest.raises(ValueError, match="unknown ML distance correction"):
        event_magnitudes(events, picks, stations, correction="richter_1935_typo")


def gr_catalog(n=8000, b=1.0, mmin=0.0, mc50=1.0, sigma=0.2, seed=0):
    """Gutenberg-Richter magnitudes with b, thinned by a cumulative-normal detection curve."""
    rng = np.random.default_rng(seed)
    m = mmin + rng.exponential(np.log10(np.e) / b, 6 * n)
    from scipy.stats import norm

    keep = rng.random(m.size) < norm.cdf(m, mc50, sigma)
    return np.round(m[keep][:n], 1)


@pytest.mark.parametrize("b_true", [0.8, 1.0, 1.2])
def test_fmd_b_value(b_true):
    m = gr_catalog(b=b_true, seed=int(b_true * 10))
    r = fmd(m)
    assert abs(r["b"] - b_true) <= 0.1, r
    assert r["mc"] == pytest.approx(r["mc_maxc"] + 0.2)
    assert 0.8 <= r["mc_maxc"] <= 1.3
    # Shi & Bolt error ~ b / sqrt(n)
    assert 0.5 * b_true / np.sqrt(r["n"]) < r["b_err"] < 2.0 * b_true / np.sqrt(r["n"])
    assert r["a"] == pytest.approx(np.log10(r["n"]) + r["b"] * r["mc"])


def test_fmd_needs_enough_events():
    with pytest.raises(ValueError, match="at least"):
        fmd([1.0, 1.1, 1.2])


def test_absurd_and_clipped_amplitudes_are_excluded_with_reasons():
    """strict=False (the locate stage): one absurd amplitude does not fail anything -- it is left
    out of its event's ML with the reason; clipped amplitudes count only where an event has no
    other; an event ML above max_ml is not reported, with a note."""
    events, picks, stations = world(n_ev=10, seed=2)
    ref, _ = event_magnitudes(events, picks, stations)
    bad = picks.copy()
    i = bad.index[(bad.event_id == 3) & (bad.phase == "S")][0]
    bad.loc[i, "amp_wa_mm"] = 5.0e4  # an accelerometer read as velocity, a spike ...
    with pytest.raises(MagnitudeUnitError):
        event_magnitudes(events, bad, stations)
    got, sm = event_magnitudes(events, bad, stations, strict=False)
    row = sm[(sm.event_id == 3) & (sm.station_id == bad.loc[i, "station_id"])].iloc[0]
    assert not row.used and "absurd amplitude" in row.reason and row.amp_wa_mm == 5.0e4
    assert (
        got.set_index("event_id").loc[3, "mag_n"] == 14 and "excluded" in got.set_index("event_id").loc[3, "mag_note"]
    )
    assert abs(got.set_index("event_id").loc[3, "magnitude"] - ref.set_index("event_id").loc[3, "magnitude"]) < 0.1
    np.testing.assert_allclose(got.magnitude.drop(index=3), ref.magnitude.drop(index=3))
    # clipped: excluded while the event has unclipped amplitudes, used (lower bound) where all are
    clip = picks.assign(amp_clipped=(picks.event_id == 5) | ((picks.event_id == 4) & (picks.station_id == "XX.S00")))
    got, sm = event_magnitudes(events, clip, stations, strict=False)
    g = got.set_index("event_id")
    assert g.loc[4, "mag_n"] == 14 and not sm[(sm.event_id == 4) & (sm.station_id == "XX.S00")].used.iloc[0]
    assert g.loc[5, "mag_n"] == 15 and "lower bound" in g.loc[5, "mag_note"]
    # an implausible event ML: NaN with the reason, not an exception
    big_ev, big_picks, big_sta = world(n_ev=5, seed=5, ml_range=(4.6, 4.9))
    got, _ = event_magnitudes(
        big_ev, big_picks.assign(amp_wa_mm=big_picks.amp_wa_mm * 1e3), big_sta, strict=False, max_amp_mm=1e12
    )
    assert got.magnitude.isna().all() and got.mag_note.str.contains("above 7.5").all()
