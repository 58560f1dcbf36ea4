"""The locate/relocate stages as Hypoinverse / HypoDD projects.

Without the executables, the strongest check is a round trip through the tools' own files: the
pipeline's tables are exported as a project, OUR runners of those projects
(``locate_hypoinverse_project``, ``run_hypodd_project``) read the exported files -- exactly what
the real programs read -- and their answers, read back by the same readers the real backends use,
must agree with the in-memory stage functions on the same data.  Any information lost or
changed on the way (weights, model, parameters, station codes, ids, times) shows up as a
difference.  The real programs run when they are on PATH.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from quakescale.config import LocateSection, RelocateSection
from quakescale.formats import hypodd as H
from quakescale.formats import hypoinverse as hinv
from quakescale.geo import LocalProjection
from quakescale.locate.hypoinverse_backend import find_hypoinverse, locate_hypoinverse_project
from quakescale.locate.hypoinverse_project import (
    HypoinverseNotFound,
    export_hypoinverse_project,
    locate_with_backend,
    read_hypoinverse_results,
)
from quakescale.locate.locator import LocateParams, locate_events
from quakescale.relocate import dd
from quakescale.relocate.hypodd_backend import run_hypodd_project
from quakescale.relocate.hypodd_project import (
    HypoDDNotFound,
    export_hypodd_project,
    read_hypodd_results,
    relocate_with_backend,
)
from quakescale.synth.relocation import synthetic_case
from quakescale.velocity import TravelTimeTable


# ----------------------------------------------------------------------------- synthetic cases
def locate_case(seed=3, n_events=40):
    """Events spread over 20 km, initial (associator-like) locations a few km off, mixed pick
    weights (1, .5, .2 = weight codes 0, 1, 2), station elevations, one station code longer than
    Hypoinverse's five characters, event ids beyond Hypoinverse's ten digits."""
    truth, start, picks, stations, model = synthetic_case(
        n_events,
        12,
        seed=seed,
        sigma_p_s=0.03,
        sigma_s_s=0.06,
        extent_km=10.0,
        start_sigma_km=3.0,
        start_sigma_z_km=3.0,
        zero_mean_start=False,
    )
    rng = np.random.default_rng(seed)
    picks["weight"] = rng.choice([1.0, 0.5, 0.2], len(picks))
    stations["elevation_m"] = rng.uniform(0, 1500, len(stations))
    stations.loc[0, "station_id"] = "QS.LONGSTA"
    picks.loc[picks.station_id == "XS.S00", "station_id"] = "QS.LONGSTA"
    big = 20_000_000_000
    for df in (truth, start, picks):
        df["event_id"] = df["event_id"] + big
    return truth, start, picks, stations, model


def planar_m(a: pd.DataFrame, b: pd.DataFrame):
    m = a.merge(b, on="event_id", suffixes=("_a", "_b"))
    p = LocalProjection(float(m.latitude_a.mean()), float(m.longitude_a.mean()))
    xa, ya = p.to_xy(m.latitude_a.to_numpy(), m.longitude_a.to_numpy())
    xb, yb = p.to_xy(m.latitude_b.to_numpy(), m.longitude_b.to_numpy())
    return m, np.hypot(xa - xb, ya - yb) * 1000.0, np.abs(m.depth_km_a - m.depth_km_b).to_numpy() * 1000.0


def cc_times(truth, start, picks, stations, model, max_sep_km=5.0, seed=5):
    """dt.cc rows for the catalog pairs: true differential travel times + 3 ms, cc 0.75-0.95,
    plus rows with cc 0.5 (below min_cc 0.7: both paths must drop them)."""
    from quakescale.relocate.pairs import catalog_pairs

    p = LocalProjection(27.1, 103.35)
    ex, ey = p.to_xy(truth.latitude.to_numpy(), truth.longitude.to_numpy())
    sx, sy = p.to_xy(stations.latitude.to_numpy(), stations.longitude.to_numpy())
    tt = TravelTimeTable(model, max_dist_km=80, max_depth_km=20)
    d = np.hypot(ex[:, None] - sx[None], ey[:, None] - sy[None])
    T = {ph: tt.time(ph, d, np.broadcast_to(truth.depth_km.to_numpy()[:, None], d.shape))[0] for ph in "PS"}
    pos = pd.Series(np.arange(len(truth)), index=truth.event_id.to_numpy())
    pr = (
        catalog_pairs(start, picks, stations, max_sep_km=max_sep_km)[["event_id_1", "event_id_2"]]
        .drop_duplicates()
        .to_numpy()
    )
    ns = len(stations)
    rng = np.random.default_rng(seed)
    a, b = np.repeat(pr[:, 0], 2 * ns), np.repeat(pr[:, 1], 2 * ns)
    j = np.tile(np.repeat(np.arange(ns), 2), len(pr))
    ph = np.tile(np.array(["P", "S"]), ns * len(pr))
    ia, ib = pos[a].to_numpy(), pos[b].to_numpy()
    dt = np.where(ph == "P", T["P"][ia, j] - T["P"][ib, j], T["S"][ia, j] - T["S"][ib, j]) + rng.normal(
        0, 0.003, len(a)
    )
    cc = rng.uniform(0.75, 0.95, len(a))
    low = rng.random(len(a)) < 0.1
    cc[low] = 0.5
    dt[low] += 0.3  # wrong times: harmful if they slipped through
    return pd.DataFrame(
        {
            "event_id_1": a,
            "event_id_2": b,
            "station_id": stations.station_id.to_numpy()[j],
            "phase": ph,
            "dt_s": dt,
            "cc": cc,
        }
    )


def dist_m(a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    """3-D distance (m) per event matched on event_id (all matched events)."""
    m, dh, dz = planar_m(a, b)
    return np.hypot(dh, dz)


# ----------------------------------------------------------------------------- Hypoinverse
def test_hypoinverse_project_carries_the_locate_stage(tmp_path):
    truth, start, picks, stations, model = locate_case()
    params = LocateSection(
        trial_depth_km=6.0, dist_full_km=50.0, dist_zero_km=150.0, residual_full_s=0.25, residual_cutoff_factor=2.5
    )
    mem, mem_res = locate_events(start, picks, stations, model, params)
    cmd = export_hypoinverse_project(start, picks, stations, model, params, tmp_path / "hyp")

    # the command file says what the config says
    hc = hinv.read_command_file(cmd)
    lp = hc.locate_params()
    assert lp["trial_depth_km"] == 6.0 and lp["dist_full_km"] == 50.0 and lp["dist_zero_km"] == pytest.approx(150.0)
    assert lp["residual_full_s"] == pytest.approx(0.25) and lp["residual_cutoff_factor"] == pytest.approx(2.5)
    assert hc.model().vs_kms == pytest.approx(model.vs_kms, rel=1e-6)  # POS carries Vs exactly
    sta = hinv.read_sta(hc.sta)
    assert len(sta) == len(stations) and (sta.station.str.len() <= 5).all()

    # our Hypoinverse runner (its batched engine, station elevations and the fixed residual taper
    # of the in-memory locator: the data were made with elevations) on the exported files, read
    # back like the real program's outputs, against the in-memory locator with the same settings
    same = dict(residual_rms_floor_s=None, use_elevation=True)
    mem, mem_res = locate_events(start, picks, stations, model, LocateParams.from_any(lp, **same))
    locate_hypoinverse_project(cmd, backend="builtin", engine="quakescale", **same)
    ev, ph = read_hypoinverse_results(cmd)
    assert set(ev.event_id) == set(start.event_id)  # ids > 10 digits renumbered and restored
    assert ev.located.all() and mem.located.all()
    m, dh, dz = planar_m(mem, ev)
    dt = np.abs((m.time_a - m.time_b).dt.total_seconds())
    print(
        f"hypoinverse project vs in-memory: horizontal median {np.median(dh):.1f} m max {dh.max():.1f} m; "
        f"depth median {np.median(dz):.1f} m max {dz.max():.1f} m; origin time max {dt.max() * 1000:.1f} ms"
    )
    # formats carry 0.01 min of arc (~18 m), 10 m depth, 10 ms: agreement at that level.  The
    # bound on the largest difference holds for events the locator converged on (an event that
    # still oscillates after max_iter ends wherever the 10 ms rounding of its picks leaves it).
    conv = (m.event_id.map(mem.set_index("event_id").n_iter) < params.max_iter).to_numpy()
    assert conv.mean() > 0.8
    assert np.median(dh) < 25.0 and dh[conv].max() < 60.0
    assert np.median(dz) < 25.0 and dz[conv].max() < 100.0
    assert dt.max() < 0.02
    assert (m.n_p_a == m.n_p_b).mean() > 0.9 and (m.n_s_a == m.n_s_b).mean() > 0.9
    assert np.abs(m.rms_s_a - m.rms_s_b).max() < 0.01
    # the location is meaningful: much better than the initial one
    e_loc = np.median(dist_m(truth, ev))
    e_start = np.median(dist_m(truth, start))
    assert e_loc < 0.5 * e_start

    # residual table: every pick back, under its own station id
    r = mem_res.merge(ph, on=["event_id", "station_id", "phase"], suffixes=("_a", "_b"))
    assert len(r) == len(mem_res) == len(ph)
    assert "QS.LONGSTA" in set(ph.station_id)
    assert np.median(np.abs(r.residual_s_a - r.residual_s_b)) < 0.01
    assert np.median(np.abs(r.travel_time_s_a - r.travel_time_s_b)) < 0.01
    # weight codes 0/1/2 = weights 1/.5/.2; archived as Hypoinverse prints them (normalised to
    # sum to the number of weighted readings of the event)
    wa = r.weight_a.clip(lower=0)
    wa = wa * (wa > 0).groupby(r.event_id).transform("sum") / wa.groupby(r.event_id).transform("sum")
    assert np.abs(wa - r.weight_b).max() < 0.05

    # the builtin backend of the stage's call is the in-memory locator
    b, _ = locate_with_backend(start, picks, stations, model, params, tmp_path / "unused", backend="builtin")
    pd.testing.assert_frame_equal(b, mem)


def test_hypoinverse_export_names_bad_input(tmp_path):
    truth, start, picks, stations, model = locate_case(n_events=5)
    with pytest.raises(ValueError, match="station.*not in the station table.*XS.S03"):
        export_hypoinverse_project(start, picks, stations[stations.station_id != "XS.S03"], model, None, tmp_path)
    with pytest.raises(ValueError, match="phase other than P/S"):
        export_hypoinverse_project(start, picks.assign(phase="Lg"), stations, model, None, tmp_path)


# ----------------------------------------------------------------------------- HypoDD
def test_hypodd_project_carries_the_relocate_stage(tmp_path):
    """Catalog times only; two networks share a station code (S00), so codes must be made unique."""
    truth, start, picks, stations, model = synthetic_case(60, 12, seed=1)
    stations.loc[1, "station_id"] = "YY.S00"
    picks.loc[picks.station_id == "XS.S01", "station_id"] = "YY.S00"
    params = RelocateSection(iterations=[3, 3], damping=[70.0, 50.0], max_sep_km=5.0, min_links=6, min_obs=6)
    mem = dd.relocate(start, picks, stations, model, params=params)
    inp_path = export_hypodd_project(start, picks, stations, model, None, params, tmp_path / "dd")

    inp = H.read_hypodd_inp(inp_path)
    assert inp.idat == 2 and inp.minobs_ct == 6 and [s.niter for s in inp.sets] == [3, 3]
    assert [s.damp for s in inp.sets] == [70.0, 50.0] and inp.sets[1].maxdist_ct_km == 5.0
    assert inp.model().vs_kms == pytest.approx(model.vs_kms, rel=1e-6)
    codes = H.read_station_dat(inp.resolve(inp.fn_sta))["station"]
    assert codes.is_unique and (codes.str.len() <= 7).all()

    run_hypodd_project(inp_path)  # our solver on the exported files, hypoDD.reloc beside them
    proj = read_hypodd_results(tmp_path / "dd", start)
    assert set(proj.event_id) == set(mem.event_id) and len(mem) >= 55
    e = dist_m(mem, proj)
    print(f"hypoDD project vs in-memory: median {np.median(e):.1f} m, max {e.max():.1f} m")
    assert np.median(e) < 20.0 and e.max() < 60.0
    m = mem.merge(proj, on="event_id")
    assert (m.cluster_x == m.cluster_y).all() and (m.n_ct_p_x == m.n_ct_p_y).all() and (m.n_ct_s_x == m.n_ct_s_y).all()
    assert (np.abs(m.n_links_x - m.n_links_y) <= 1).mean() > 0.9
    assert np.median(np.abs(m.dx_m_x - m.dx_m_y)) < 20.0 and np.median(np.abs(m.dz_m_x - m.dz_m_y)) < 20.0
    assert np.abs((m.time_x - m.time_y).dt.total_seconds()).max() < 0.005
    assert np.median(dist_m(truth, proj)) < 0.5 * np.median(dist_m(truth, start))

    out = relocate_with_backend(start, picks, stations, model, None, params, tmp_path / "unused", backend="builtin")
    pd.testing.assert_frame_equal(out, mem)


def test_hypodd_project_with_cc_and_long_ids(tmp_path):
    truth, start, picks, stations, model = synthetic_case(
        50, 12, seed=2, sigma_p_s=0.01, sigma_s_s=0.02, start_sigma_km=0.4, start_sigma_z_km=0.5
    )
    dtcc = cc_times(truth, start, picks, stations, model)
    big = 5_000_000_000  # beyond HypoDD's i9 / integer*4 ids
    for df in (truth, start, picks):
        df["event_id"] = df["event_id"] + big
    dtcc["event_id_1"] += big
    dtcc["event_id_2"] += big
    params = RelocateSection(max_sep_km=5.0)
    mem = dd.relocate(start, picks, stations, model, dtcc=dtcc, params=params)
    inp_path = export_hypodd_project(start, picks, stations, model, dtcc, params, tmp_path / "dd")
    inp = H.read_hypodd_inp(inp_path)
    assert inp.idat == 3 and inp.fn_cc == "dt.cc" and inp.minobs_cc == params.min_links
    cc_file = H.read_dtcc(inp.resolve(inp.fn_cc))
    assert len(cc_file) == int((dtcc.cc >= params.cc.min_cc).sum())
    assert cc_file.event_id_1.max() <= 999_999_999
    assert np.allclose(np.sort(cc_file.cc), np.sort(dtcc.cc[dtcc.cc >= 0.7] ** 2), atol=1e-4)

    run_hypodd_project(inp_path, out_dir=tmp_path / "dd" / "out")
    proj = read_hypodd_results(tmp_path / "dd", start, reloc_path=tmp_path / "dd" / "out" / "hypoDD.reloc")
    assert set(proj.event_id) == set(mem.event_id) and proj.event_id.min() > big
    e = dist_m(mem, proj)
    print(f"hypoDD project (ct + cc) vs in-memory: median {np.median(e):.1f} m, max {e.max():.1f} m")
    assert np.median(e) < 20.0 and e.max() < 60.0
    assert (proj.n_cc_p > 0).mean() > 0.9
    e_proj = np.median(dist_m(truth, proj))
    assert e_proj < 0.5 * np.median(dist_m(truth, start))


def test_hypodd_export_nothing_to_relocate(tmp_path):
    truth, start, picks, stations, model = synthetic_case(3, 6, seed=0)
    with pytest.raises(dd.DDError, match="nothing to relocate"):
        export_hypodd_project(start.iloc[:1], picks, stations, model, None, None, tmp_path)
    with pytest.raises(dd.DDError, match="without a location.*2"):
        export_hypodd_project(start.assign(depth_km=[1.0, np.nan, 2.0]), picks, stations, model, None, None, tmp_path)


# ----------------------------------------------------------------------------- executables
def test_missing_executables_fail_clearly(tmp_path, monkeypatch):
    """With nothing on PATH the real backends name the executable and the config field."""
    truth, start, picks, stations, model = synthetic_case(20, 8, seed=0)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(HypoinverseNotFound, match=r"'hyp1\.40'.*locate\.hypoinverse_exe"):
        locate_with_backend(
            start, picks, stations, model, LocateSection(), tmp_path / "loc", backend="hypoinverse", exe="hyp1.40"
        )
    with pytest.raises(HypoDDNotFound, match=r"'hypoDD'.*relocate\.hypodd_exe"):
        relocate_with_backend(
            start, picks, stations, model, None, RelocateSection(), tmp_path / "rel", backend="hypodd", exe="hypoDD"
        )
    with pytest.raises(ValueError, match="locate.backend"):
        locate_with_backend(start, picks, stations, model, None, tmp_path, backend="velest")
    with pytest.raises(ValueError, match="relocate.backend"):
        relocate_with_backend(start, picks, stations, model, None, None, tmp_path, backend="growclust")


@pytest.mark.skipif(
    find_hypoinverse() is None, reason="no Hypoinverse executable (hyp1.40/hyp2000/hypoinverse) on PATH"
)
def test_real_hypoinverse_locates_the_exported_project(tmp_path):
    truth, start, picks, stations, model = locate_case()
    params = LocateSection()
    ev, res = locate_with_backend(
        start,
        picks,
        stations,
        model,
        params,
        tmp_path / "locate-hypoinverse",
        backend="hypoinverse",
        exe=find_hypoinverse(),
    )
    mem, _ = locate_events(start, picks, stations, model, params)
    assert ev.located.sum() >= 0.9 * len(start)
    m, dh, dz = planar_m(mem, ev[ev.located])
    print(f"real Hypoinverse vs builtin: horizontal median {np.median(dh):.0f} m, depth median {np.median(dz):.0f} m")
    assert np.median(dh) < 500.0
    assert np.median(dist_m(truth, ev[ev.located])) < 0.5 * np.median(dist_m(truth, start))
    assert set(res.station_id) <= set(stations.station_id)


@pytest.mark.skipif(shutil.which("hypoDD") is None, reason="hypoDD executable not on PATH")
def test_real_hypodd_relocates_the_exported_project(tmp_path):
    truth, start, picks, stations, model = synthetic_case(60, 12, seed=1)
    params = RelocateSection(max_sep_km=5.0)
    out = relocate_with_backend(
        start, picks, stations, model, None, params, tmp_path / "relocate-hypodd", backend="hypodd", exe="hypoDD"
    )
    mem = dd.relocate(start, picks, stations, model, params=params)
    assert len(out) >= 0.9 * len(mem)
    e = dist_m(mem, out)
    print(f"real hypoDD vs builtin: median {np.median(e):.1f} m")
    assert np.median(e) < 50.0
    assert np.median(dist_m(truth, out)) < 0.5 * np.median(dist_m(truth, start))
