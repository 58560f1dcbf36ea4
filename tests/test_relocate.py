"""Double-difference relocation: ph2dt against the reference dt.ct, the solver against
HypoDD's relocation of the Italy 2016 day, a synthetic world with known truth, solver modes and
failure modes, and the real hypoDD backend when it is installed."""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # LSQR's many small BLAS calls; the test machine is shared

import shutil

import numpy as np
import pandas as pd
import pytest

from quakescale.formats import hypodd as H
from quakescale.geo import LocalProjection, epicentral_km
from quakescale.relocate import dd
from quakescale.relocate.hypodd_backend import run_hypodd_project
from quakescale.relocate.pairs import nr_indexx, ph2dt
from quakescale.synth.relocation import location_errors_m, synthetic_case
from shared_data import ITALY as _ITALY

ITALY = _ITALY / "hypoDD"
need_italy = pytest.mark.skipif(not ITALY.exists(), reason=f"reference data {ITALY} not present")


def test_nr_indexx_orders_like_a_sort():
    rng = np.random.default_rng(0)
    a = rng.normal(size=200)
    assert np.array_equal(a[nr_indexx(a)], np.sort(a))
    assert nr_indexx([5.0]).tolist() == [0]
    ties = [1.0, 0.5, 1.0, 0.5, 1.0]
    idx = nr_indexx(ties)
    assert sorted(idx.tolist()) == list(range(5)) and np.all(np.diff(np.asarray(ties)[idx]) >= 0)


@need_italy
def test_ph2dt_matches_reference_dtct():
    ev, ph = H.read_pha(ITALY / "italy.pha")
    st = H.read_station_dat(ITALY / "station.dat")
    # ph2dt.inp: MINWGHT MAXDIST MAXSEP MAXNGH MINLNK MINOBS MAXOBS = 0 300 10 10 8 8 50
    dt, sel, stats = ph2dt(ev, ph, st, 0, 300, 10, 10, 8, 8, 50)
    # the counts of ph2dt.log
    assert (stats.p_pairs_total, stats.s_pairs_total, stats.outliers) == (34316, 42824, 201)
    assert (stats.p_selected, stats.s_selected, stats.weakly_linked, stats.n_pairs) == (33913, 42161, 11, 4370)
    ref = H.read_dtct(ITALY / "dt.ct")
    key = ["event_id_1", "event_id_2", "station", "phase"]
    assert set(map(tuple, dt[key].to_numpy())) == set(map(tuple, ref[key].to_numpy()))  # identical observations
    m = dt.merge(ref, on=key)
    assert len(m) == len(ref) == len(dt)
    assert np.array_equal(np.round(m.t1_s_x, 3), np.round(m.t1_s_y, 3)) and np.array_equal(
        np.round(m.t2_s_x, 3), np.round(m.t2_s_y, 3)
    )
    assert np.allclose(m.weight_x, m.weight_y)
    # pair order identical; line order within pairs identical except near-ties in station distance
    pairs = dt[["event_id_1", "event_id_2"]].drop_duplicates().to_numpy()
    rpairs = ref[["event_id_1", "event_id_2"]].drop_duplicates().to_numpy()
    assert np.array_equal(pairs, rpairs)
    same = (dt[key].to_numpy() == ref[key].to_numpy()).all(1).mean()
    assert same > 0.999


@need_italy
def test_ph2dt_fast_path_matches_reference():
    from quakescale.relocate.pairs import ph2dt_fast

    ev, ph = H.read_pha(ITALY / "italy.pha")
    st = H.read_station_dat(ITALY / "station.dat")
    dt = ph2dt_fast(ev, ph, st, 0, 300, 10, 10, 8, 8, 50)
    ref = H.read_dtct(ITALY / "dt.ct")
    key = ["event_id_1", "event_id_2", "station", "phase"]
    a, b = set(map(tuple, dt[key].to_numpy())), set(map(tuple, ref[key].to_numpy()))
    assert len(dt) == len(ref) and len(a & b) >= len(b) - 5  # identical but for near-tie outliers
    pa = set(map(tuple, dt[key[:2]].to_numpy()))
    assert pa == set(map(tuple, ref[key[:2]].to_numpy()))


def _italy_compare(res):
    ref = H.read_reloc(ITALY / "hypoDD.reloc")
    m = ref.merge(res.events, on="event_id", suffixes=("_r", "_o"))
    p = LocalProjection(42.776, 13.209)
    xr, yr = p.to_xy(m.latitude_r, m.longitude_r)
    xo, yo = p.to_xy(m.latitude_o, m.longitude_o)
    dh = np.hypot(xr - xo, yr - yo) * 1000
    dz = np.abs(m.depth_km_r - m.depth_km_o) * 1000
    return ref, m, dh, dz


@need_italy
def test_italy_relocation_matches_hypodd(tmp_path):
    res = run_hypodd_project(ITALY / "hypoDD.inp", tmp_path)
    # hypoDD.log: 657 events after dtime match; 3 clusters (652, 3, 2), cluster 1 relocated
    assert "events after dtime match: 657" in res.log
    assert [len(c) for c in res.clusters] == [652, 3, 2]
    ev = res.events
    assert np.isfinite(ev[["latitude", "longitude", "depth_km", "x_m", "y_m", "z_m"]].to_numpy()).all()
    assert (ev.depth_km >= 0).all()  # air quakes are removed, as hypoDD does
    ref, m, dh, dz = _italy_compare(res)
    print(
        f"Italy: ours {len(ev)} events, HypoDD {len(ref)}, common {len(m)}; "
        f"median |dh| {np.median(dh):.1f} m, |dz| {np.median(dz):.1f} m"
    )
    assert abs(len(ev) - len(ref)) <= 15 and len(m) >= 520
    assert np.median(dh) <= 50.0 and np.median(dz) <= 100.0
    # the output files are HypoDD's formats and read back
    back = H.read_reloc(tmp_path / "hypoDD.reloc")
    assert len(back) == len(ev) and np.allclose(back.latitude, ev.latitude, atol=2e-6)
    assert len(H.read_loc(tmp_path / "hypoDD.loc")) == 652
    assert (tmp_path / "hypoDD.res").read_text().startswith("STA")
    assert len((tmp_path / "hypoDD.sta").read_text().splitlines()) == len(res.stations)


def test_synthetic_truth_pipeline_api():
    truth, start, picks, stations, model = synthetic_case(
        150, 15, seed=0, sigma_p_s=0.01, sigma_s_s=0.02, start_sigma_km=0.4, start_sigma_z_km=0.5
    )
    out = dd.relocate(
        start,
        picks,
        stations,
        model,
        max_sep_km=6.0,
        min_obs=8,
        max_obs=50,
        max_neighbors=20,
        min_links=8,
        iterations=[4, 4],
        damping=[80.0, 60.0],
        solver="lsqr",
    )
    e0 = location_errors_m(truth, start)
    e1 = location_errors_m(truth, out)
    print(f"synthetic: start median error {e0.median():.0f} m -> relocated {e1.median():.0f} m ({len(out)} events)")
    assert len(out) == len(truth)
    assert e1.median() <= 100.0 and e1.median() < 0.3 * e0.median()
    for col in ("dx_m", "dy_m", "dz_m", "ex_m", "ey_m", "ez_m", "cluster", "n_links"):
        assert col in out and out[col].notna().all(), col
    assert (out.stage == "relocate").all() and (out.cluster == 1).all() and (out.n_links >= 8).all()
    assert pd.api.types.is_datetime64_any_dtype(out.time)


def test_svd_and_lsqr_agree_on_a_small_problem():
    truth, start, picks, stations, model = synthetic_case(25, 10, seed=4, sigma_p_s=0.005, sigma_s_s=0.01)
    a = dd.relocate(start, picks, stations, model, solver="lsqr", iterations=[5, 5], damping=[20.0, 10.0])
    b = dd.relocate(start, picks, stations, model, solver="svd", iterations=[5, 5], damping=[20.0, 10.0])
    ea, eb = location_errors_m(truth, a), location_errors_m(truth, b)
    e0 = location_errors_m(truth, start)
    assert eb.median() < 0.5 * e0.median() and ea.median() < 0.5 * e0.median()
    assert location_errors_m(a, b).median() < 100.0


def test_singular_system_fails_clearly_never_nan():
    # two events observed at a single station: 3-D shifts are not determined
    ev = pd.DataFrame(
        {
            "event_id": [1, 2],
            "latitude": [27.1, 27.101],
            "longitude": [103.3, 103.3],
            "depth_km": [9.0, 9.2],
            "time": pd.to_datetime(["2014-08-03T08:00:00Z", "2014-08-03T08:10:00Z"]),
        }
    )
    st = pd.DataFrame({"station": ["S1"], "latitude": [27.2], "longitude": [103.4], "elevation_m": [0.0]})
    dtct = pd.DataFrame(
        {
            "event_id_1": [1, 1],
            "event_id_2": [2, 2],
            "station": ["S1", "S1"],
            "t1_s": [2.0, 3.5],
            "t2_s": [2.1, 3.6],
            "weight": [1.0, 1.0],
            "phase": ["P", "S"],
        }
    )
    data = dd.DDData.from_tables(dtct)
    sets = [H.IterationSet(3, wt_ctp=1, wt_cts=1, damp=10)]
    from quakescale.velocity import default_model

    with pytest.raises(dd.DDSolverError, match="singular"):
        dd.relocate_dd(ev, st, data, default_model(), sets, solver="svd", idat=2, minobs_ct=0)
    # LSQR with damping gives a finite (minimum-norm) answer, never NaN
    r = dd.relocate_dd(ev, st, data, default_model(), sets, solver="lsqr", idat=2, minobs_ct=0)
    assert np.isfinite(r.events[["latitude", "longitude", "depth_km"]].to_numpy()).all()


def test_bad_inputs_are_named():
    from quakescale.velocity import default_model

    ev = pd.DataFrame({"event_id": [1, 2], "latitude": [27.1, 27.1], "longitude": [103.3, 103.3]})
    st = pd.DataFrame({"station": ["S1"], "latitude": [27.2], "longitude": [103.4]})
    with pytest.raises(dd.DDError, match="depth_km"):
        dd.relocate_dd(ev, st, dd.DDData.from_tables(None), default_model(), [H.IterationSet(1)])
    ev["depth_km"] = 5.0
    with pytest.raises(dd.DDError, match="fewer than 2 events"):
        dd.relocate_dd(ev, st, dd.DDData.from_tables(None), default_model(), [H.IterationSet(1)])
    with pytest.raises(dd.DDError, match="unknown parameter"):
        dd.relocate(ev, pd.DataFrame(), st, default_model(), max_sep=3)


def test_relocate_params_come_from_the_config():
    from quakescale.config import RelocateSection

    sec = RelocateSection()
    p = dd.RelocateParams.from_config()  # no section: the config's defaults, the only ones
    assert (p.max_station_km, p.max_sep_km, p.min_obs, p.max_obs, p.max_neighbors, p.min_links) == (
        sec.max_station_km,
        sec.max_sep_km,
        sec.min_obs,
        sec.max_obs,
        sec.max_neighbors,
        sec.min_links,
    )
    assert (p.iterations, p.damping, p.solver) == (sec.iterations, sec.damping, sec.solver)
    assert (p.min_cc, p.max_pair_cc_km) == (sec.cc.min_cc, sec.cc.max_pair_km)
    q = dd.RelocateParams.from_config(RelocateSection(max_sep_km=3.0, cc={"min_cc": 0.8}), min_links=5)
    assert (q.max_sep_km, q.min_cc, q.min_links, q.min_obs) == (3.0, 0.8, 5, sec.min_obs)
    r = dd.RelocateParams.from_config(q, lsqr_tol=1e-6)  # a RelocateParams passes through, overridden
    assert (r.lsqr_tol, r.max_sep_km, r.min_links) == (1e-6, 3.0, 5)
    sets = q.iteration_sets(with_cc=False)
    assert [s.niter for s in sets] == sec.iterations and sets[1].maxdist_ct_km == 3.0  # MAXSEP in the second set
    with pytest.raises(dd.DDError, match=r"unknown parameter\(s\) \['max_sep'\]"):
        dd.RelocateParams.from_config(None, max_sep=3)


@pytest.mark.skipif(
    shutil.which("hypoDD") is None, reason="hypoDD executable not on PATH (the backend runs the real program)"
)
@need_italy
def test_hypodd_backend_runs_real_program(tmp_path):
    from quakescale.relocate.hypodd_backend import run_hypodd

    res = run_hypodd(ITALY / "hypoDD.inp", tmp_path)
    ref = H.read_reloc(ITALY / "hypoDD.reloc")
    assert abs(len(res) - len(ref)) <= 5


def test_cc_data_sharpen_the_relocation():
    """dt.cc (here: true differential times + 3 ms noise for the catalog pairs) on top of the
    catalog data: the cc-led second iteration set brings the events closer to the truth."""
    from quakescale.relocate.pairs import catalog_pairs
    from quakescale.velocity import TravelTimeTable

    truth, start, picks, stations, model = synthetic_case(
        150, 15, seed=0, sigma_p_s=0.01, sigma_s_s=0.02, start_sigma_km=0.4, start_sigma_z_km=0.5
    )
    p = LocalProjection(27.1, 103.35)
    ex, ey = p.to_xy(truth.latitude.to_numpy(), truth.longitude.to_numpy())
    sx, sy = p.to_xy(stations.latitude.to_numpy(), stations.longitude.to_numpy())
    tt = TravelTimeTable(model, max_dist_km=80, max_depth_km=20)
    d = np.hypot(ex[:, None] - sx[None], ey[:, None] - sy[None])
    T = {ph: tt.time(ph, d, np.broadcast_to(truth.depth_km.to_numpy()[:, None], d.shape))[0] for ph in "PS"}
    pr = catalog_pairs(start, picks, stations, max_sep_km=6)[["event_id_1", "event_id_2"]].drop_duplicates().to_numpy()
    rng = np.random.default_rng(5)
    a, b = np.repeat(pr[:, 0], 30), np.repeat(pr[:, 1], 30)
    j = np.tile(np.repeat(np.arange(15), 2), len(pr))
    ph = np.tile(np.array(["P", "S"]), 15 * len(pr))
    dt = np.where(ph == "P", T["P"][a - 1, j] - T["P"][b - 1, j], T["S"][a - 1, j] - T["S"][b - 1, j]) + rng.normal(
        0, 0.003, len(a)
    )
    dtcc = pd.DataFrame(
        {
            "event_id_1": a,
            "event_id_2": b,
            "station_id": stations.station_id.to_numpy()[j],
            "phase": ph,
            "dt_s": dt,
            "cc": 0.9,
        }
    )
    ct_only = dd.relocate(start, picks, stations, model)
    with_cc = dd.relocate(start, picks, stations, model, dtcc=dtcc)
    e_ct = location_errors_m(truth, ct_only).median()
    e_cc = location_errors_m(truth, with_cc).median()
    print(f"catalog only {e_ct:.0f} m, with cc {e_cc:.0f} m")
    assert e_cc < 0.75 * e_ct and e_cc < 50.0
    assert (with_cc.n_cc_p > 0).all() and (with_cc.n_cc_s > 0).all()


def test_compressed_system_keeps_the_least_squares_problem(monkeypatch):
    """The solver replaces the rows of each event pair by their QR factor: A^T A, A^T b and |b|
    must be those of the full weighted DD system, also when long pairs are cut into segments."""
    from quakescale.relocate.pairs import catalog_pairs

    truth, start, picks, stations, model = synthetic_case(40, 10, seed=3)
    dtct = catalog_pairs(start, picks, stations, max_sep_km=6)
    c = dd._Cluster(
        start, stations.rename(columns={"station_id": "station"}), dd.DDData.from_tables(dtct).table, model, False
    )
    c.residuals()
    w = np.random.default_rng(0).uniform(0.2, 1.0, len(c.dt))
    G1, G2 = c.G12()
    nd, ncol = len(c.dt), 4 * len(c.ids)
    A = np.zeros((nd, ncol))
    r = np.arange(nd)
    for k in range(3):
        A[r, 4 * c.ic1 + k] += G1[:, k] * w
        A[r, 4 * c.ic2 + k] -= G2[:, k] * w
    A[r, 4 * c.ic1 + 3] += w
    A[r, 4 * c.ic2 + 3] -= w
    b = c.res * 1000.0 * w
    ata, atb = A.T @ A, A.T @ b
    nseg = []
    for L in (48, 9):
        monkeypatch.setattr(dd, "SEG_MAX_ROWS", L)
        c._seg = None
        R, rhs, perp2, cols = dd._compressed_system(c, w)
        nseg.append(len(cols))
        Ac = np.zeros((8 * len(cols), ncol))
        for s in range(len(cols)):
            Ac[8 * s : 8 * s + 8, cols[s]] = R[s]
        assert np.allclose(Ac.T @ Ac, ata, rtol=0, atol=1e-10 * np.abs(ata).max())
        assert np.allclose(Ac.T @ rhs.ravel(), atb, rtol=0, atol=1e-10 * np.abs(atb).max())
        assert np.isclose((rhs**2).sum() + perp2, (b**2).sum(), rtol=1e-10)
    assert nseg[1] > nseg[0] == len(dtct.groupby(["event_id_1", "event_id_2"]))  # 20 rows per pair: 3 segments of <= 9


# ----------------------------------------------------------------------------- HypoDD 2.1b port
from shared_data import DATA as _DATA  # noqa: E402

HAYWARD = _DATA / "hypodd_ex1_hayward"
need_hayward = pytest.mark.skipif(
    not (HAYWARD / "reference" / "hypoDD.reloc").exists(), reason=f"reference data {HAYWARD} not present"
)


def _reloc_rows(path):
    rows = {}
    for line in path.read_text().splitlines():
        t = line.split()
        rows[int(t[0])] = [float(v) for v in t[1:]]
    return rows


def _compare_reloc(ours, ref):
    """Horizontal / vertical differences (m) and error-column ratios (ex, ey, ez) per common event."""
    a, b = _reloc_rows(ours), _reloc_rows(ref)
    common = sorted(set(a) & set(b))
    A = np.array([a[k] for k in common])
    B = np.array([b[k] for k in common])
    dy = (A[:, 0] - B[:, 0]) * 111195.0
    dx = (A[:, 1] - B[:, 1]) * 111195.0 * np.cos(np.radians(B[:, 0]))
    dh = np.hypot(dx, dy)
    dz = np.abs(A[:, 2] - B[:, 2]) * 1000.0
    ratio = A[:, 6:9] / B[:, 6:9]
    return set(a), set(b), dh, dz, ratio


@need_hayward
def test_hayward_2x_project_runs_unchanged_and_matches_hypodd21(tmp_path):
    """HypoDD 2.1b's first example (hypoDD_2 control file, IMOD 1, ct + cc, SVD) run as it is."""
    from quakescale.relocate.hypodd21 import run_project

    proj = tmp_path / "hayward"
    shutil.copytree(HAYWARD, proj, ignore=shutil.ignore_patterns("reference"))
    res = run_project(proj / "hypoDD.inp")
    ref = HAYWARD / "reference"
    ours_ids, ref_ids, dh, dz, ratio = _compare_reloc(proj / "hypoDD.reloc", ref / "hypoDD.reloc")
    print(
        f"Hayward vs HypoDD 2.1b: {len(ours_ids)} / {len(ref_ids)} events; horizontal median {np.median(dh):.2f} m "
        f"(max {dh.max():.2f}), vertical median {np.median(dz):.2f} m (max {dz.max():.2f}); "
        f"error ratios median {np.median(ratio, 0).round(3).tolist()}"
    )
    assert res.n_relocated == 16 and ours_ids == ref_ids
    assert np.median(dh) <= 1.0 and np.median(dz) <= 2.0 and dh.max() < 3.0 and dz.max() < 5.0
    assert np.all(np.abs(ratio - 1) <= 0.10)  # ex, ey, ez (SVD: 1.96 x the weighted residual variance)
    # files in 2.1b's layouts: .loc identical to the column, .res without a header, .src one line per station x event
    loc, rloc = (proj / "hypoDD.loc").read_text().splitlines(), (ref / "hypoDD.loc").read_text().splitlines()
    assert len(loc) == len(rloc) and all(a[:102] == b[:102] for a, b in zip(loc, rloc))  # up to the seconds
    res_lines = (proj / "hypoDD.res").read_text().splitlines()
    ref_res = (ref / "hypoDD.res").read_text().splitlines()
    assert res_lines[0].split()[0] == ref_res[0].split()[0] == "NCCAI"  # no header line
    assert {len(x) for x in res_lines} == {len(x) for x in ref_res} == {86}
    assert abs(len(res_lines) - len(ref_res)) <= 0.01 * len(ref_res)
    src, ref_src = (proj / "hypoDD.src").read_text().splitlines(), (ref / "hypoDD.src").read_text().splitlines()
    assert len(src) == len(ref_src) and [x[:30] for x in src] == [x[:30] for x in ref_src]
    a = np.array([[float(v) for v in x.split()[4:]] for x in src])
    b = np.array([[float(v) for v in x.split()[4:]] for x in ref_src])
    assert np.abs(a[:, 5:7] - b[:, 5:7]).max() < 0.002  # travel times P, S (s): elevations and IMOD 1 as 2.1b
    sta, ref_sta = (proj / "hypoDD.sta").read_text().splitlines(), (ref / "hypoDD.sta").read_text().splitlines()
    assert [x[:48] for x in sta] == [x[:48] for x in ref_sta]
    # per-iteration files and the log's iteration table
    assert len(list(proj.glob("hypoDD.reloc.001.*"))) == 13
    log = (proj / "hypoDD.log").read_text()

    def table(text):
        return [
            ln
            for ln in text.splitlines()
            if len(ln.split()) == 16 and all(t.lstrip("-").replace(".", "").isdigit() for t in ln.split())
        ]

    rows, ref_rows = table(log), table((ref / "hypoDD.log").read_text(errors="replace"))
    assert len(rows) == len(ref_rows) == 13
    for a_, b_ in zip(rows, ref_rows):  # IT EV CT CC RMSCT ... : counts equal, rms within 1 ms
        x, y = a_.split(), b_.split()
        assert x[:5] == y[:5] and abs(int(x[5]) - int(y[5])) <= 1


def test_ttime_layered_against_closed_forms():
    from quakescale.relocate.hypodd21 import ttime_layered

    # half-space: straight ray
    d, z = np.array([0.5, 10.0, 40.0]), np.array([5.0, 5.0, 12.0])
    t, ain = ttime_layered(d, z, [6.0], np.zeros((1, 1)))
    assert np.allclose(t, np.hypot(d, z) / 6.0, rtol=1e-9)
    assert np.allclose(ain, 180 - np.degrees(np.arcsin(d / np.hypot(d, z))), atol=1e-3)
    # two layers, source in the upper one, far station: the head wave along the top of layer 2
    v1, v2, h, zs, x = 4.0, 6.0, 10.0, 3.0, 80.0
    t, ain = ttime_layered([x], [zs], [v1, v2], np.array([[0.0, h]]))
    ic = np.arcsin(v1 / v2)
    head = x / v2 + (2 * h - zs) * np.cos(ic) / v1
    assert t[0] == pytest.approx(head, rel=1e-6) and ain[0] == pytest.approx(np.degrees(ic), abs=1e-3)
    # source in the lower layer, station close: direct ray bent at the interface (Snell), time from the ray parameter
    t, ain = ttime_layered([3.0], [15.0], [4.0, 6.0], np.array([[0.0, 10.0]]))
    p = np.sin(np.radians(180 - ain[0])) / 6.0
    x1, x2 = 5.0 * p * 6.0 / np.sqrt(1 - (p * 6.0) ** 2), 10.0 * p * 4.0 / np.sqrt(1 - (p * 4.0) ** 2)
    assert x1 + x2 == pytest.approx(3.0, abs=0.03)
    assert t[0] == pytest.approx(np.hypot(x1, 5.0) / 6.0 + np.hypot(x2, 10.0) / 4.0, abs=2e-3)


def _write_inp(path, imod_block, extra=""):
    body = (
        "hypoDD_2\n* test\ndt.cc\ndt.ct\nevent.sel\nstation.sel\n\nhypoDD.reloc\nhypoDD.sta\nhypoDD.res\n"
        "hypoDD.src\n"
        "3 3 120\n0 8 -999 -999 -999\n2 1 1 1\n  4  0.01 0.005 -999 -999 1.0 0.5 -999 -999 20\n"
        + imod_block
        + "1\n"
        + extra
    )
    path.write_text(body)
    return path


@need_hayward
def test_imod9_is_refused_in_one_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import quakescale

    for f in ("dt.cc", "dt.ct", "event.sel", "station.sel"):
        shutil.copy(HAYWARD / f, tmp_path / f)
    inp = _write_inp(tmp_path / "hypoDD.inp", "9\nvel3D.dat\n37.878078  -122.243950  0\n2 9 4 1 1 1.35 0.0005 50\n")
    pkg_root = str(Path(quakescale.__file__).resolve().parents[1])  # the quakescale under test, in a fresh process
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([pkg_root, os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run(
        [sys.executable, "-m", "quakescale", "relocate", "hypodd", str(inp)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert r.returncode == 1
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert err[0].startswith("error: ") and "IMOD 9" in err[0] and len(err) == 2 and "Traceback" not in r.stderr


@need_hayward
def test_imod0_imod1_imod4_with_one_model_agree(tmp_path):
    """IMOD 0 (one Vp/Vs), IMOD 1 (a ratio per layer, here all equal) and IMOD 4 (station-specific models,
    here one) are the same model; the run with each agrees."""
    from quakescale.relocate.hypodd21 import run_project

    tops = "0.00 0.25 1.50 2.50 3.50 5.00 6.00 9.00 15.00 25.00"
    vp = "1.42 3.24 4.82 5.36 5.60 5.65 5.90 6.15 6.60 8.00"
    out = {}
    mod1d = "1 10\n" + "".join(f"{t} {v} {float(v) / 1.73:.7f}\n" for t, v in zip(tops.split(), vp.split()))
    for imod, block in (
        (0, f"0\n10 1.73\n{tops}\n{vp}\n"),
        (1, f"1\n{tops} -9\n{vp} -9\n" + "1.73 " * 10 + "-9\n"),
        (4, "4\nmod1d.dat\n*\n0\n0\n"),
    ):
        d = tmp_path / f"imod{imod}"
        d.mkdir()
        for f in ("dt.cc", "dt.ct", "event.sel", "station.sel"):
            shutil.copy(HAYWARD / f, d / f)
        (d / "mod1d.dat").write_text(mod1d)  # IMOD 4: station-specific models; station.sel names none -> model 1
        inp = _write_inp(d / "hypoDD.inp", block)
        parsed = H.read_hypodd_inp(inp)
        assert parsed.imod == imod
        if imod != 4:
            assert parsed.top_km[-1] == 25.0 and parsed.ratios == [1.73] * 10 and len(parsed.vp_kms) == 10
        run_project(inp)
        out[imod] = _reloc_rows(d / "hypoDD.reloc")
    for imod in (1, 4):
        assert out[0].keys() == out[imod].keys() and len(out[0]) == 16
        assert max(abs(out[0][k][0] - out[imod][k][0]) + abs(out[0][k][2] - out[imod][k][2]) for k in out[0]) < 1e-5


@pytest.mark.skipif(shutil.which("hypoDD") is None, reason="hypoDD (2.1b) not on PATH")
@need_hayward
def test_port_matches_the_installed_hypodd21(tmp_path):
    """Where HypoDD 2.1b itself is installed: both on the same 2.x project, side by side."""
    from quakescale.relocate.hypodd21 import run_project
    from quakescale.relocate.hypodd_backend import run_hypodd

    run_hypodd(HAYWARD / "hypoDD.inp", tmp_path / "fortran")
    run_project(HAYWARD / "hypoDD.inp", tmp_path / "ours")
    ours, theirs, dh, dz, ratio = _compare_reloc(
        tmp_path / "ours" / "hypoDD.reloc", tmp_path / "fortran" / "hypoDD.reloc"
    )
    assert ours == theirs and np.median(dh) <= 1.0 and np.median(dz) <= 2.0
    assert np.median(np.abs(ratio - 1)) <= 0.10


def test_max_station_km_auto_follows_the_network():
    """``relocate.max_station_km: auto``: the seed's 150 km on a dense local network; on a sparse
    regional one the locator taper's zero distance, so the stations that located the events also
    link them (with 150 km most pairs lose their observations and nothing relocates)."""
    from quakescale.relocate.pairs import auto_max_station_km, catalog_pairs, resolve_max_station_km

    _, _, _, dense, _ = synthetic_case(20, 15, seed=0)  # stations within 35 km
    assert auto_max_station_km(dense)[0] == 150.0 and resolve_max_station_km(90, dense) == 90.0
    truth, start, picks, stations, model = synthetic_case(
        60,
        10,
        seed=0,
        network_radius_km=280.0,
        sigma_p_s=0.01,
        sigma_s_s=0.02,
        start_sigma_km=1.0,
        start_sigma_z_km=1.0,
    )
    km, why = auto_max_station_km(stations)
    assert km > 150.0 and "regional" in why
    dist = epicentral_km(
        float(truth.latitude.mean()),
        float(truth.longitude.mean()),
        stations.latitude.to_numpy(),
        stations.longitude.to_numpy(),
    )
    assert (dist > 150).sum() >= 5 and (dist <= km).all()  # the seed's 150 km leaves out most stations here
    seed = catalog_pairs(start, picks, stations, max_station_km=150.0)
    auto = catalog_pairs(start, picks, stations, max_station_km="auto")
    assert len(auto) > 2 * max(len(seed), 1)
    assert set(auto.station) == set(stations.station_id)  # every station of the network links pairs
    out = dd.relocate(start, picks, stations, model, max_station_km=km)
    assert len(out) >= 0.9 * len(truth)
    e0, e1 = location_errors_m(truth, start), location_errors_m(truth, out)
    assert e1.median() < 0.5 * e0.median()


def test_catalog_pairs_takes_its_defaults_from_the_config():
    """``catalog_pairs`` has no defaults of its own: None means ``config.RelocateSection()`` (here
    ``max_station_km: auto``, which on a sparse regional network links far more pairs than the old
    inline 150 km), a section or ``RelocateParams`` gives all ph2dt settings, keywords override one."""
    from quakescale.config import RelocateSection
    from quakescale.relocate.pairs import catalog_pairs

    _, start, picks, stations, _ = synthetic_case(
        60,
        10,
        seed=0,
        network_radius_km=280.0,
        sigma_p_s=0.01,
        sigma_s_s=0.02,
        start_sigma_km=1.0,
        start_sigma_z_km=1.0,
    )
    default = catalog_pairs(start, picks, stations)
    pd.testing.assert_frame_equal(
        default,
        catalog_pairs(
            start,
            picks,
            stations,
            max_station_km="auto",
            max_sep_km=6.0,
            min_obs=8,
            max_obs=50,
            max_neighbors=20,
            min_links=8,
        ),
    )
    assert len(default) > 2 * max(len(catalog_pairs(start, picks, stations, max_station_km=150.0)), 1)
    strict = RelocateSection(min_links=12, max_sep_km=3.0)
    a = catalog_pairs(start, picks, stations, strict)
    pd.testing.assert_frame_equal(a, catalog_pairs(start, picks, stations, min_links=12, max_sep_km=3.0))
    pd.testing.assert_frame_equal(a, catalog_pairs(start, picks, stations, dd.RelocateParams.from_config(strict)))
    pd.testing.assert_frame_equal(a, catalog_pairs(start, picks, stations, {"min_links": 12}, max_sep_km=3.0))
    assert 0 < len(a) < len(default)
    with pytest.raises(TypeError, match="min_link"):
        catalog_pairs(start, picks, stations, min_link=4)
