"""HypoDD file formats: reading the reference files of real HypoDD/ph2dt/FDTCC runs, writing
them back in the same layout."""

import numpy as np
import pandas as pd
import pytest

from quakescale.formats import hypodd as H
from shared_data import ITALY as _ITALY
from shared_data import RIDGECREST as FDTCC

ITALY = _ITALY / "hypoDD"
need_italy = pytest.mark.skipif(not ITALY.exists(), reason=f"reference data {ITALY} not present")
need_fdtcc = pytest.mark.skipif(not FDTCC.exists(), reason=f"reference data {FDTCC} not present")


@need_italy
def test_read_italy_phase_event_station_files():
    ev, ph = H.read_pha(ITALY / "italy.pha")
    assert len(ev) == 659 and len(ph) == 20536  # ph2dt.log: events total 659, phases 20536
    first = ev.iloc[0]
    assert first.event_id == 1 and first.latitude == pytest.approx(42.8085) and first.depth_km == pytest.approx(6.63)
    assert first.time == pd.Timestamp("2016-10-14T00:00:09.270Z")
    assert set(ph.phase) == {"P", "S"}
    sel = H.read_event_dat(ITALY / "event.sel")
    assert len(sel) == 659
    m = ev.merge(sel, on="event_id")
    assert np.allclose(m.latitude_x, m.latitude_y) and np.allclose(m.depth_km_x, m.depth_km_y)
    # ph2dt truncates origin seconds to centiseconds (int(rtime)) in event.sel
    assert (abs((m.time_x - m.time_y).dt.total_seconds()) < 0.0101).all()
    st = H.read_station_dat(ITALY / "station.dat")
    assert len(st) == 60 and {"AM05", "ARRO"} <= set(st.station)


@need_italy
def test_dtct_roundtrip_is_byte_identical(tmp_path):
    ref = ITALY / "dt.ct"
    dt = H.read_dtct(ref)
    assert len(dt) == 33913 + 42161  # ph2dt.log P + S pairs selected
    assert dt.groupby(["event_id_1", "event_id_2"]).ngroups == 4370
    out = H.write_dtct(dt, tmp_path / "dt.ct")
    a = [ln.rstrip() for ln in ref.read_text().splitlines()]
    b = [ln.rstrip() for ln in out.read_text().splitlines()]
    assert a == b


@need_italy
def test_hypodd_inp_italy():
    inp = H.read_hypodd_inp(ITALY / "hypoDD.inp")
    assert inp.fn_cc == "" and inp.fn_ct == "dt.ct" and inp.fn_eve == "event.sel" and inp.fn_reloc == "hypoDD.reloc"
    assert (inp.idat, inp.ipha, inp.maxdist_km) == (2, 3, 250)
    assert (inp.minobs_cc, inp.minobs_ct, inp.istart, inp.isolv) == (0, 8, 2, 2)
    assert [s.niter for s in inp.sets] == [4, 4, 4, 4]
    assert [s.damp for s in inp.sets] == [80, 80, 60, 60]
    assert [s.wt_cts for s in inp.sets] == [1, 0.8, 0.5, 0.3]
    assert [s.maxres_ct for s in inp.sets] == [-9, 0.5, 0.2, 0.2]
    assert [s.maxdist_ct_km for s in inp.sets] == [-9, 8, 5, 2]
    assert inp.vpvs == pytest.approx(1.82) and inp.top_km == [0, 1, 5, 9, 13, 21, 31]
    assert inp.vp_kms[0] == pytest.approx(5.65) and inp.cid == 1
    m = inp.model()
    assert m.vs_kms[0] == pytest.approx(5.65 / 1.82)


def test_hypodd_inp_roundtrip(tmp_path):
    inp = H.HypoDDInp(
        path=tmp_path / "x.inp",
        fn_cc="dt.cc",
        fn_ct="dt.ct",
        idat=3,
        sets=[
            H.IterationSet(5, 0.01, 0.005, -9, -9, 1, 0.5, -9, -9, 50),
            H.IterationSet(5, 1, 0.5, 6, 4, 0.01, 0.005, 6, 6, 30),
        ],
        top_km=[0.0, 4.0],
        vp_kms=[5.2, 6.0],
        vpvs=1.73,
        cid=0,
    )
    p = H.write_hypodd_inp(inp, tmp_path / "x.inp")
    back = H.read_hypodd_inp(p)
    assert back.fn_cc == "dt.cc" and back.idat == 3 and len(back.sets) == 2
    assert back.sets[1].maxdist_cc_km == 4 and back.sets[1].damp == 30 and back.top_km == [0.0, 4.0]


@need_italy
def test_reloc_loc_read_write(tmp_path):
    ref = H.read_reloc(ITALY / "hypoDD.reloc")
    assert len(ref) == 539 and ref.cluster.eq(1).all()
    r0 = ref.iloc[0]
    assert (r0.event_id, r0.n_ct_p, r0.n_ct_s) == (1, 72, 48) and r0.rms_cc_s == -9.0
    assert r0.time == pd.Timestamp("2016-10-14T00:00:09.060Z")
    back = H.read_reloc(H.write_reloc(ref, tmp_path / "r.reloc"))
    for c in ("latitude", "longitude", "depth_km", "x_m", "ez_m", "rms_ct_s"):
        assert np.allclose(back[c], ref[c], atol=1e-6), c
    assert (back.time == ref.time).all()
    loc = H.read_loc(ITALY / "hypoDD.loc")
    assert len(loc) == 652
    back = H.read_loc(H.write_loc(loc, tmp_path / "l.loc"))
    assert np.allclose(back.latitude, loc.latitude) and (abs((back.time - loc.time).dt.total_seconds()) < 0.006).all()


@need_fdtcc
def test_dtcc_read_write(tmp_path):
    cc = H.read_dtcc(FDTCC / "dt.cc")
    assert list(cc.station) == ["B917", "B917", "B918", "B921"]
    assert list(cc.phase) == ["P", "S", "S", "P"]
    assert cc.dt_s.tolist() == [0.0932, 0.1432, 0.0232, 0.0932] and cc.cc.tolist() == [0.96, 0.84, 0.87, 0.98]
    back = H.read_dtcc(H.write_dtcc(cc, tmp_path / "dt.cc"))
    assert np.allclose(back.dt_s, cc.dt_s) and list(back.station) == list(cc.station)
    # NET.STA ids are written as STA
    cc2 = cc.assign(station_id="PB." + cc.station).drop(columns="station")
    back = H.read_dtcc(H.write_dtcc(cc2, tmp_path / "dt2.cc"))
    assert list(back.station) == list(cc.station)


def test_dt_parser_hypodd_rules_and_lenient_readers(tmp_path):
    """One parser: hypoDD's rules (hypodd21) skip OTC -999 pairs and take 7-character codes; the
    table readers keep every pair, upper-case phases and take a missing OTC as 0."""
    cc = tmp_path / "dt.cc"
    cc.write_text(
        "# 1 2 0.05\nLONGSTA1 0.10 0.90 P\nLONGSTA2 -0.20 0.80 S\n# 1 3 -999.0\nB1 0.30 0.70 P\n"
        "# 2 3 0.0\nB1 0.25 0.60 S\n"
    )
    d = H.read_dt_columns(cc, cc=True, dtype=np.float32, hypodd=True)
    assert d.n_no_otc == 1 and d.id1.tolist() == [1, 1, 2] and d.id2.tolist() == [2, 2, 3]
    assert d.sta_names == ["LONGSTA1", "LONGSTA2", "B1"] and d.is_p.tolist() == [True, False, False]
    assert d.t1.dtype == np.float32 and np.allclose(d.t1 - d.t2, [0.05, -0.25, 0.25])
    t = H.read_dtcc(cc)
    assert len(t) == 4 and t.otc_s.tolist() == [0.05, 0.05, -999.0, 0.0] and t.cc.tolist() == [0.9, 0.8, 0.7, 0.6]
    cc.write_text("# 1 2\nST 0.10 0.90 p\n")  # no OTC, lower-case phase
    t = H.read_dtcc(cc)
    assert t.phase.tolist() == ["P"] and t.otc_s.tolist() == [0.0]
    with pytest.raises(H.HypoDDFormatError, match=r"dt.cc:1: .*pair line needs '# ID1 ID2 OTC'"):
        H.read_dt_columns(cc, cc=True, hypodd=True)
    ct = tmp_path / "dt.ct"
    ct.write_text("# 4 5\nS1 1.50 1.40 1.0 P\nS1 2.50 2.30 0.5 x\n")
    with pytest.raises(H.HypoDDFormatError, match=r"dt.ct:3: phase identifier must be P or S, got 'X'"):
        H.read_dtct(ct)


def test_pha_roundtrip(tmp_path):
    ev = pd.DataFrame(
        {
            "event_id": [3, 9],
            "time": pd.to_datetime(["2014-08-03T08:30:10.123Z", "2014-08-03T09:00:00.000Z"]),
            "latitude": [27.1, 27.11],
            "longitude": [103.3, 103.31],
            "depth_km": [9.5, 10.0],
            "magnitude": [2.1, -0.3],
        }
    )
    ph = pd.DataFrame(
        {
            "event_id": [3, 3, 9],
            "station": ["L01", "L02", "L01"],
            "travel_time_s": [2.5, 4.25, 3.0],
            "weight": [1.0, 0.5, -1.0],
            "phase": ["P", "S", "P"],
        }
    )
    e2, p2 = H.read_pha(H.write_pha(ev, ph, tmp_path / "x.pha"))
    assert list(e2.event_id) == [3, 9] and np.allclose(e2.magnitude, [2.1, -0.3])
    assert e2.time.iloc[0] == pd.Timestamp("2014-08-03T08:30:10.123Z")
    assert p2.weight.tolist() == [1.0, 0.5, -1.0] and p2.travel_time_s.tolist() == [2.5, 4.25, 3.0]


def test_bad_input_names_file_and_line(tmp_path):
    p = tmp_path / "bad.ct"
    p.write_text("# 1 2\nSTA1 1.0 x 1.0 P\n")
    with pytest.raises(H.HypoDDFormatError, match=r"bad.ct:2"):
        H.read_dtct(p)
    p = tmp_path / "station.dat"
    p.write_text("A 1 2\nA 1 2\n")
    with pytest.raises(H.HypoDDFormatError, match="listed twice"):
        H.read_station_dat(p)
    p = tmp_path / "v2.inp"
    p.write_text("hypoDD_2\n" + "x\n" * 30)  # 2.x files are read; a bad value names the file, line and field
    with pytest.raises(H.HypoDDFormatError, match=r"v2.inp:11: expected IDAT IPHA DIST"):
        H.read_hypodd_inp(p)


# ----------------------------------------------------------------------------- hypoDD 2.x control files
from shared_data import DATA as _DATA  # noqa: E402

HAYWARD = _DATA / "hypodd_ex1_hayward"
need_hayward = pytest.mark.skipif(not (HAYWARD / "hypoDD.inp").exists(), reason=f"reference data {HAYWARD} not present")


@need_hayward
def test_hypodd_inp_2x_every_field():
    inp = H.read_hypodd_inp(HAYWARD / "hypoDD.inp")
    assert inp.version == 2
    assert (inp.fn_cc, inp.fn_ct, inp.fn_eve, inp.fn_sta) == ("dt.cc", "dt.ct", "event.sel", "station.sel")
    assert (inp.fn_loc, inp.fn_reloc, inp.fn_stares, inp.fn_res, inp.fn_srcpar) == (
        "hypoDD.loc",
        "hypoDD.reloc",
        "hypoDD.sta",
        "hypoDD.res",
        "hypoDD.src",
    )
    assert (inp.idat, inp.ipha, inp.maxdist_km) == (3, 3, 120)
    assert (inp.minobs_cc, inp.minobs_ct, inp.minds_km, inp.maxds_km, inp.maxgap_deg) == (0, 8, -999, -999, -999)
    assert (inp.istart, inp.isolv, inp.iaq) == (2, 1, 1)
    assert [s.niter for s in inp.sets] == [1, 3, 3, 3, 3]
    assert [s.wt_ccp for s in inp.sets] == [0.01, 0.01, 1, 1, 1]
    assert [s.maxres_cc for s in inp.sets] == [-999, -999, 6, 5, 4]
    assert [s.maxdist_cc_km for s in inp.sets] == [-999, -999, 3, 2, 1]
    assert [s.wt_cts for s in inp.sets] == [0.5, 0.5, 0.5, 0.05, 0.005]
    assert [s.maxres_ct for s in inp.sets] == [20, 10, 10, 9, 8]
    assert [s.maxdist_ct_km for s in inp.sets] == [-999, 4, 3, 2, 2]
    assert [s.damp for s in inp.sets] == [20] * 5
    assert inp.imod == 1 and len(inp.top_km) == 10 and inp.top_km[:3] == [0.0, 0.25, 1.5] and inp.vp_kms[-1] == 8.0
    assert inp.ratios == [1.73] * 10 and inp.model().vs_kms[1] == pytest.approx(3.24 / 1.73)
    assert inp.cid == 1 and inp.ids == []
    v1 = H.read_hypodd_inp(HAYWARD / "hypoDD.inp.v1")  # the 1.x twin stays readable
    assert v1.version == 1 and v1.imod == 0 and v1.iaq == 1 and v1.top_km == inp.top_km


def test_hypodd_inp_2x_bad_field_names_file_line_and_field(tmp_path):
    text = (
        "hypoDD_2\n* c\ndt.cc\ndt.ct\nevent.sel\nstation.sel\nhypoDD.loc\nhypoDD.reloc-\nhypoDD.sta\nhypoDD.res\n"
        "hypoDD.src\n3 3 -1\n0 8 0.5 40 180\n2 2 0 2\n 4 0.01 0.005 -999 -999 1 0.5 -999 -999 80\n"
        " 4 1 0.5 6 2 0.01 0.005 6 4 60 ctcc\n1\n0 1 3 6 -9\n4.5 5.8 6.3 7.9 -9\n1.70 1.72 1.75 1.78 -9\n2\n"
        "11 12 13\n14\n"
    )
    p = tmp_path / "hypoDD.inp"
    p.write_text(text)
    inp = H.read_hypodd_inp(p)
    assert inp.iwrite == 0 and inp.fn_reloc == "hypoDD.reloc" and inp.maxdist_km == 50000  # DIST < 0: no limit
    assert (inp.minds_km, inp.maxds_km, inp.maxgap_deg, inp.iaq) == (0.5, 40, 180, 0)
    assert inp.top_km == [0, 1, 3, 6] and inp.ratios == [1.70, 1.72, 1.75, 1.78]
    assert inp.cid == 2 and inp.ids == [11, 12, 13, 14]
    assert inp.sets[1].damp == 60 and inp.sets[1].maxres_cc == 6
    bad = text.replace("0 8 0.5 40 180", "0 x8 0.5 40 180")
    p.write_text(bad)
    with pytest.raises(H.HypoDDFormatError, match=r"hypoDD.inp:13: field OBSCT must be an integer, got 'x8'"):
        H.read_hypodd_inp(p)
    p.write_text(text.replace("\n1\n0 1 3 6", "\n7\n0 1 3 6"))
    with pytest.raises(H.HypoDDFormatError, match="IMOD must be 0, 1, 4, 5 or 9, got 7"):
        H.read_hypodd_inp(p)
