"""Builtin locator: synthetic truth, weighting, depth handling, and real data against VELEST."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quakescale.formats.velest import read_velest_cat, read_velest_mod
from quakescale.geo import LocalProjection, epicentral_km
from quakescale.locate.locator import LocateParams, cosine_taper, locate_events, travel_time_table
from quakescale.velocity import default_model
from shared_data import ITALY


def synth_world(n_ev=200, n_sta=20, seed=0, p_err=0.05, s_err=0.10, keep=0.9):
    """Stations, true events, picks with Gaussian errors (0.05 s P, 0.1 s S), perturbed guesses."""
    rng = np.random.default_rng(seed)
    model = default_model()
    tt = travel_time_table(model, 200.0, 40.0)
    proj = LocalProjection(27.1, 103.4)
    sx, sy = rng.uniform(-40, 40, n_sta), rng.uniform(-40, 40, n_sta)
    el = rng.uniform(0, 1500, n_sta)
    slat, slon = proj.to_latlon(sx, sy)
    stations = pd.DataFrame(
        dict(station_id=[f"XX.S{i:02d}" for i in range(n_sta)], latitude=slat, longitude=slon, elevation_m=el)
    )
    ex, ey, ez = rng.uniform(-25, 25, n_ev), rng.uniform(-25, 25, n_ev), rng.uniform(2, 20, n_ev)
    t0 = pd.Timestamp("2014-08-03T08:30:00Z").value + (np.arange(n_ev) * 60e9).astype(np.int64)
    elat, elon = proj.to_latlon(ex, ey)
    truth = pd.DataFrame(
        dict(event_id=np.arange(n_ev), time=pd.to_datetime(t0, utc=True), latitude=elat, longitude=elon, depth_km=ez)
    )
    d = np.hypot(ex[:, None] - sx[None], ey[:, None] - sy[None])
    rows = []
    for ph, sd in (("P", p_err), ("S", s_err)):
        T = tt(ph, d, np.broadcast_to(ez[:, None], d.shape), np.broadcast_to(el[None] / 1000, d.shape))
        tobs = t0[:, None] + ((T + rng.normal(0, sd, T.shape)) * 1e9).astype(np.int64)
        e, s = np.nonzero(rng.random(T.shape) < keep)
        rows.append(
            pd.DataFrame(
                dict(
                    event_id=e,
                    station_id=stations.station_id.to_numpy()[s],
                    phase=ph,
                    time=pd.to_datetime(tobs[e, s], utc=True),
                )
            )
        )
    picks = pd.concat(rows, ignore_index=True)
    init = truth.copy()
    init["latitude"], init["longitude"] = proj.to_latlon(ex + rng.normal(0, 3, n_ev), ey + rng.normal(0, 3, n_ev))
    init["time"] = truth.time + pd.to_timedelta(rng.normal(0, 0.5, n_ev), unit="s")
    init["depth_km"] = 10.0
    return model, tt, stations, truth, picks, init


def read_real_phase_sel(path):
    day = pd.Timestamp("2016-10-14", tz="UTC")
    ev, ph = [], []
    for line in open(path):
        t = line.split()
        if len(t) == 16:
            eid = int(t[0])
            ev.append(
                dict(
                    event_id=eid,
                    time=day + pd.to_timedelta(float(t[5]), unit="s"),
                    latitude=float(t[7]),
                    longitude=float(t[8]),
                    depth_km=float(t[9]),
                )
            )
        elif t:
            ph.append(
                dict(
                    event_id=eid,
                    station_id=f"{t[0]}.{t[1]}",
                    phase=t[2],
                    time=day + pd.to_timedelta(float(t[3]), unit="s"),
                    amp=float(t[5]),
                )
            )
    return pd.DataFrame(ev), pd.DataFrame(ph)


def italy_stations(elevation=True):
    st = pd.read_csv(
        ITALY / "Data/station.dat", sep=r"\s+", header=None, names=["lon", "lat", "net", "sta", "chan", "elev_km"]
    )
    return pd.DataFrame(
        dict(
            station_id=st.net + "." + st.sta,
            network=st.net,
            station=st.sta,
            latitude=st.lat,
            longitude=st.lon,
            elevation_m=st.elev_km * 1000 if elevation else 0.0,
        )
    )


def test_synthetic_accuracy():
    model, tt, stations, truth, picks, init = synth_world()
    loc, res = locate_events(init, picks, stations, model, tt=tt)
    assert loc["located"].all()
    nsta = loc["n_stations"]
    eh = epicentral_km(loc.latitude, loc.longitude, truth.latitude, truth.longitude)[nsta >= 6]
    dz = (loc.depth_km - truth.depth_km).abs()[nsta >= 6]
    assert np.median(eh) <= 0.5, np.median(eh)
    assert np.median(dz) <= 1.5, np.median(dz)
    dt = (loc.time - truth.time).dt.total_seconds().abs()
    assert dt.median() < 0.1
    # rms close to the pick noise, errors of sensible size, one residual row per pick
    assert 0.03 < loc.rms_s.median() < 0.12
    assert 0.05 < loc.erh_km.median() < 1.0 and 0.1 < loc.erz_km.median() < 3.0
    assert len(res) == len(picks) and res["residual_s"].abs().median() < 0.1
    assert ((loc.gap_deg > 0) & (loc.gap_deg <= 360)).all() and (loc.dmin_km >= 0).all()
    assert (loc.n_p + loc.n_s <= picks.groupby("event_id").size().sort_index().to_numpy()).all()


def test_outlier_pick_gets_zero_weight():
    model, tt, stations, truth, picks, init = synth_world(n_ev=20, seed=1)
    picks = picks.copy()
    bad = picks.index[(picks.event_id == 3) & (picks.phase == "P")][0]
    picks.loc[bad, "time"] += pd.Timedelta(seconds=2.5)
    loc, res = locate_events(init, picks, stations, model, tt=tt)
    assert res.loc[bad, "weight"] == 0.0
    assert abs(res.loc[bad, "residual_s"]) > 2.0
    assert epicentral_km(loc.latitude[3], loc.longitude[3], truth.latitude[3], truth.longitude[3]) < 1.0


def test_weighting_functions_and_params():
    assert cosine_taper(0.3, 0.3, 0.9) == 1.0 and cosine_taper(0.9, 0.3, 0.9) == 0.0
    assert cosine_taper(0.6, 0.3, 0.9) == pytest.approx(0.5)
    p = LocateParams.from_any({"dist_full_km": 30, "backend": "builtin"}, s_weight=0.7)
    assert p.dist_full_km == 30 and p.s_weight == 0.7
    with pytest.raises(ValueError, match="dist_zero_km"):
        LocateParams.from_any(dist_full_km=130)
    with pytest.raises(TypeError, match="unknown locate parameter"):
        LocateParams.from_any(nonsense=1)


def test_fixed_depth_fallback_depth_limits_and_too_few_picks():
    model, tt, stations, truth, picks, init = synth_world(n_ev=30, seed=2)
    few = picks[picks.event_id == 0].sort_values("time").head(5)
    three = picks[picks.event_id == 1].head(3)
    rest = picks[picks.event_id >= 2]
    loc, res = locate_events(
        init, pd.concat([few, three, rest]), stations, model, tt=tt, min_depth_km=0.0, max_depth_km=30.0
    )
    assert loc.loc[0, "depth_fixed"] and loc.loc[0, "depth_km"] == pytest.approx(8.0)
    assert not loc.loc[1, "located"] and np.isnan(loc.loc[1, "rms_s"])
    assert (loc.depth_km[2:] >= 0.0).all() and (loc.depth_km[2:] <= 30.0).all()
    assert not loc.depth_fixed[2:].any()


def test_station_delays_are_applied():
    model, tt, stations, truth, picks, init = synth_world(n_ev=40, seed=3)
    delays = pd.DataFrame(
        dict(station_id=stations.station_id, phase="P", delay_s=np.linspace(-0.4, 0.4, len(stations)))
    )
    shifted = picks.merge(delays, on=["station_id", "phase"], how="left")
    shifted["time"] += pd.to_timedelta(shifted["delay_s"].fillna(0.0), unit="s")
    loc_no, _ = locate_events(init, shifted, stations, model, tt=tt)
    loc_d, _ = locate_events(init, shifted, stations, model, tt=tt, station_delays=delays)
    assert loc_d.rms_s.median() < 0.7 * loc_no.rms_s.median()
    eh = epicentral_km(loc_d.latitude, loc_d.longitude, truth.latitude, truth.longitude)
    assert np.median(eh) < 0.5


def test_bad_input_names_the_problem():
    model, tt, stations, truth, picks, init = synth_world(n_ev=5, seed=4)
    with pytest.raises(ValueError, match="XX.NOPE"):
        locate_events(init, pd.concat([picks, picks.head(1).assign(station_id="XX.NOPE")]), stations, model, tt=tt)
    with pytest.raises(ValueError, match="phase"):
        locate_events(init, picks.assign(phase="Q"), stations, model, tt=tt)


@pytest.mark.skipif(not ITALY.exists(), reason="real_demo_italy2016 data not present")
def test_italy_real_against_velest():
    """REAL's associated phases located with VELEST's model (stations at zero elevation, as in
    VELEST's italy.sta; VELEST's S weight 0.75) versus VELEST's own locations."""
    model = read_velest_mod(ITALY / "VELEST/italy.mod")
    assert model.top_km[0] == -3.0 and model.vp_kms[1] == 5.65 and model.vs_kms[-1] == 4.0
    ev, ph = read_real_phase_sel(ITALY / "REAL/phase_sel.txt")
    assert len(ev) == 659
    vel = read_velest_cat(ITALY / "VELEST/new.cat")
    assert len(vel) == len(ev)
    loc, res = locate_events(ev, ph, italy_stations(elevation=False), model, s_weight=0.75, min_depth_km=-2.0)
    eh = epicentral_km(loc.latitude, loc.longitude, vel.latitude, vel.longitude)
    dz = (loc.depth_km - vel.depth_km).abs()
    print(f"Italy vs VELEST: median epicentre {np.median(eh):.3f} km, depth {np.median(dz):.3f} km")
    assert np.median(eh) <= 1.0
    assert np.median(dz) <= 2.0
    assert abs(loc.rms_s.median() - vel.rms_s.median()) < 0.05
