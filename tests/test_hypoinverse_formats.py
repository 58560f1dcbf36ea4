"""Hypoinverse-2000 files: column layout, read -> write -> read identity, command file, builtin
backend on a Hypoinverse project, and the real executable when present."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quakescale.formats import hypoinverse as hinv
from quakescale.formats.velest import read_velest_cat
from quakescale.geo import epicentral_km
from quakescale.locate.hypoinverse_backend import find_hypoinverse, locate_hypoinverse_project

sys.path.insert(0, str(Path(__file__).parent))
from test_locate import ITALY, italy_stations, read_real_phase_sel  # noqa: E402

pytestmark = pytest.mark.skipif(not ITALY.exists(), reason="real_demo_italy2016 data not present")


@pytest.fixture(scope="module")
def italy():
    ev, ph = read_real_phase_sel(ITALY / "REAL/phase_sel.txt")
    return ev, ph, italy_stations()


def test_summary_line_columns_follow_the_manual():
    ev = dict(event_id=1234567, time=pd.Timestamp("2016-10-14T00:00:09.27Z"), latitude=42.8020, longitude=13.2112,
              depth_km=6.0, magnitude=0.91, mag_type="ML", n_p=35, n_s=24, gap_deg=27.2, dmin_km=1.4, rms_s=0.24,
              erh_km=0.31, erz_km=0.72, depth_fixed=False)
    line = hinv.format_summary_line(ev)
    assert line[0:16] == "2016101400000927"
    assert line[16:18] == "42" and line[18] == " " and line[19:23] == "4812"  # 0.802 deg = 48.12'
    assert line[23:26] == " 13" and line[26] == "E" and line[27:31] == "1267"  # 0.2112 deg = 12.67'
    assert line[31:36] == "  600" and line[36:39] == " 91" and line[39:42] == " 59"
    assert line[42:45] == " 27" and line[45:48] == "  1" and line[48:52] == "  24"
    assert line[82:85] == " 24" and line[85:89] == "  31" and line[89:93] == "  72"
    assert line[136:146] == "   1234567" and line[146] == "L" and line[147:150] == " 91"
    back = hinv.parse_summary_line(line)
    assert back["latitude"] == pytest.approx(42.8020, abs=1e-4) and back["longitude"] == pytest.approx(13.2112, abs=1e-4)
    assert back["n_phases"] == 59 and back["n_s"] == 24 and back["mag_type"] == "ML"
    west = hinv.parse_summary_line(hinv.format_summary_line(dict(ev, latitude=-33.5, longitude=-70.25)))
    assert west["latitude"] == pytest.approx(-33.5) and west["longitude"] == pytest.approx(-70.25)


def test_phase_line_columns_follow_the_manual(tmp_path):
    ev = pd.DataFrame([dict(event_id=7, time=pd.Timestamp("2016-10-14T00:00:09.27Z"), latitude=42.8, longitude=13.2, depth_km=6.0)])
    ph = pd.DataFrame([
        dict(event_id=7, station_id="IV.T1214", channel="HHZ", phase="P", onset="I", first_motion="U", weight_code=0,
             time=pd.Timestamp("2016-10-14T00:00:10.59Z"), residual_s=0.03, weight_used=0.94, distance_km=2.4, azimuth_deg=21),
        dict(event_id=7, station_id="YR.ED03", channel="HHN", phase="S", onset="E", weight_code=1,
             time=pd.Timestamp("2016-10-14T00:01:07.06Z"), residual_s=-0.54, weight_used=0.5, amplitude=12.5, amp_units="1", period_s=0.2),
    ])
    hinv.write_arc(tmp_path / "x.arc", ev, ph)
    lines = (tmp_path / "x.arc").read_text().splitlines()
    p, s = lines[1], lines[2]
    assert len(lines[0]) == 179 and len(p) == 120 and len(s) == 120  # hyp1.40's widths
    assert p[0:5] == "T1214" and p[5:7] == "IV" and p[9:12] == "HHZ" and p[13:17] == "IPU0"
    assert p[17:29] == "201610140000" and p[29:34] == " 1059" and p[34:38] == "   3" and p[38:41] == " 94"
    assert p[74:78] == "  24" and p[91:94] == " 21"
    # seconds after the event's minute, as hyp1.40 writes them (67.06 s)
    assert s[0:5] == "ED03 " and s[5:7] == "YR" and s[17:29] == "201610140000" and s[41:46] == " 6706"
    assert s[46:50] == "ES 1" and s[50:54] == " -54" and s[54:61] == "   1250" and s[63:66] == " 50" and s[83:86] == " 20"
    assert s[13:17] == "   0" and s[29:34] == "    0"  # no P on this line: hyp1.40's zeros
    assert lines[3].strip() == "7" and len(lines[3]) == 72


def test_station_file_round_trip(tmp_path, italy):
    _, _, sta = italy
    hinv.write_sta(tmp_path / "station.dat", sta, channels=["001", "002", "003"])
    back = hinv.read_sta(tmp_path / "station.dat")
    assert len(back) == 3 * len(sta)
    one = back.drop_duplicates("station_id").set_index("station_id").loc[sta.station_id]
    np.testing.assert_allclose(one.latitude, sta.latitude, atol=1e-4 / 60 + 1e-9)
    np.testing.assert_allclose(one.longitude, sta.longitude, atol=1e-4 / 60 + 1e-9)
    np.testing.assert_allclose(one.elevation_m, sta.elevation_m.round(), atol=0.51)
    line = (tmp_path / "station.dat").read_text().splitlines()[0]
    assert line[:5] == "AM05 " and line[6:8] == "XO" and line[10:13] == "001" and line[25] == "N" and line[37] == "E"
    hinv.write_sta(tmp_path / "again.dat", back)
    assert (tmp_path / "again.dat").read_text() == (tmp_path / "station.dat").read_text()


def test_arc_round_trip_with_shadows(tmp_path, italy):
    ev, ph, _ = italy
    ev, ph = ev.head(40), ph[ph.event_id.isin(ev.event_id.head(40))]
    hinv.write_arc(tmp_path / "a.arc", ev, ph)
    rev, rph = hinv.read_arc(tmp_path / "a.arc")
    assert len(rev) == 40 and len(rph) == len(ph)
    assert (rev.event_id.to_numpy() == ev.event_id.to_numpy()).all()
    # one line per station: the P and S of a station share it (hyp1.40), so compare sorted readings
    key = ["event_id", "station_id", "phase"]
    a = ph.sort_values(key + ["time"]).reset_index(drop=True)
    b = rph.sort_values(key + ["time"]).reset_index(drop=True)
    dt = (b.time - a.time).dt.total_seconds().abs()
    assert dt.max() <= 0.005 + 1e-9
    assert (b.station_id.to_numpy() == a.station_id.to_numpy()).all() and (b.phase.to_numpy() == a.phase.to_numpy()).all()
    n_lines = ph.groupby(["event_id", "station_id"]).ngroups
    assert rph.line_no.nunique() == n_lines  # P and S of one station on one line
    assert (epicentral_km(rev.latitude, rev.longitude, ev.latitude, ev.longitude) < 0.02).all()
    # shadow lines as they come: insert some, read, write, identical text
    lines = (tmp_path / "a.arc").read_text().splitlines()
    shadowed = []
    for ln in lines:
        shadowed.append(ln)
        shadowed.append("$1" + " " * 80 + "0343   0   0" if ln[:12].isdigit() else "$   6 5.49 1.80 7.91 3.30 0.10 PSN0   77 PHP3")
    (tmp_path / "s.arc").write_text("\n".join(shadowed) + "\n")
    sev, sph = hinv.read_arc(tmp_path / "s.arc")
    # a line's shadow rides on its first reading
    assert sev.shadow.str.startswith("$1").all() and sph.groupby("line_no").shadow.first().str.startswith("$   6").all()
    assert sev.terminator_shadow.notna().all()
    hinv.write_arc(tmp_path / "s2.arc", sev, sph)
    assert (tmp_path / "s2.arc").read_text() == (tmp_path / "s.arc").read_text()
    # a combined P+S line (Hypoinverse phase input style) gives two readings
    comb = "ED03 YR  001" + "  P 0" + "201610140000" + " 1059" + " " * 7 + " 1706" + " S 1"
    assert comb[13:17] == " P 0" and comb[41:46] == " 1706" and comb[46:50] == " S 1"
    (tmp_path / "c.arc").write_text(lines[0] + "\n" + comb + "\n" + " " * 62 + "         1\n")
    _, cph = hinv.read_arc(tmp_path / "c.arc")
    assert list(cph.phase) == ["P", "S"] and cph.time.iloc[1] == pd.Timestamp("2016-10-14T00:00:17.06Z")
    with pytest.raises(hinv.HypoinverseFormatError, match="c2.arc:1"):
        (tmp_path / "c2.arc").write_text(comb + "\n")
        hinv.read_arc(tmp_path / "c2.arc")


def test_sum_and_crh_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    n = 30
    ev = pd.DataFrame(dict(
        event_id=np.arange(1, n + 1), time=pd.Timestamp("2016-10-14T03:00:00Z") + pd.to_timedelta(rng.uniform(0, 3600, n), unit="s"),
        latitude=rng.uniform(42.5, 43.0, n), longitude=rng.uniform(13.0, 13.5, n), depth_km=rng.uniform(-1, 20, n),
        magnitude=rng.uniform(0, 3, n), mag_type="ML", n_p=rng.integers(4, 40, n), n_s=rng.integers(0, 30, n),
        gap_deg=rng.uniform(20, 300, n), dmin_km=rng.uniform(0, 30, n), rms_s=rng.uniform(0, 0.5, n),
        erh_km=rng.uniform(0, 5, n), erz_km=rng.uniform(0, 9, n), err1_az_deg=rng.uniform(0, 359, n),
        err1_dip_deg=rng.uniform(0, 89, n), err1_km=rng.uniform(0, 9, n), depth_fixed=rng.random(n) < 0.2,
    ))
    hinv.write_sum(tmp_path / "a.sum", ev)
    back = hinv.read_sum(tmp_path / "a.sum")
    assert (back.time - ev.time).dt.total_seconds().abs().max() <= 0.005 + 1e-9
    np.testing.assert_allclose(back.depth_km, ev.depth_km, atol=0.005 + 1e-9)
    np.testing.assert_allclose(back.rms_s, ev.rms_s, atol=0.005 + 1e-9)
    np.testing.assert_allclose(back.magnitude, ev.magnitude, atol=0.005 + 1e-9)
    np.testing.assert_allclose(back.n_phases, ev.n_p + ev.n_s)
    assert (back.program_remark.eq("-") == ev.depth_fixed).all()
    hinv.write_sum(tmp_path / "b.sum", back)
    assert (tmp_path / "b.sum").read_text() == (tmp_path / "a.sum").read_text()
    title, top, vel = hinv.read_crh(ITALY / "hypoinverse/vel_model_P.crh")
    assert top == [0.0, 1.0, 5.0, 21.0, 31.0] and vel[0] == 5.30
    hinv.write_crh(tmp_path / "p.crh", top, vel, title)
    assert hinv.read_crh(tmp_path / "p.crh") == (title, top, vel)


def test_command_file_reader():
    cmd = hinv.read_command_file(ITALY / "hypoinverse/hyp.command")
    assert cmd.sta.name == "station.dat" and cmd.phs.name == "hypoinput.arc"
    assert cmd.arc.name == "hypoOut.arc" and cmd.sum.name == "catOut.sum"
    assert sorted(cmd.crh) == [1, 2] and cmd.sal == (1, 2) and cmd.crh[2].name == "vel_model_S.crh"
    assert cmd.rms == (4, 0.16, 1.5, 3) and cmd.ztr == 8 and cmd.min_phases == 5 and cmd.err == 0.10
    assert cmd.pos is None and cmd.wet is None  # commented out with '*'
    m = cmd.model()
    assert m.vp_kms == (5.30, 5.65, 6.20, 6.21, 7.50) and m.vs_kms[0] == 2.75
    p = cmd.locate_params()
    # RMS 4 .16 1.5 3: full weight to RMSCUT*RMSW1 = 0.24 s, none beyond RMSCUT*RMSW2 = 0.48 s
    assert p["trial_depth_km"] == 8 and p["min_picks"] == 5 and p["residual_cutoff_factor"] == 2
    assert p["residual_full_s"] == pytest.approx(0.24) and p["residual_weighting_iter"] == 3
    assert p["use_elevation"] is False and p["s_weight"] == 1.0 and p["quality_weights"] == (1.0, 0.75, 0.5, 0.25, 0.0)
    assert cmd.h71 == (3, 1, 3) and "RDM" not in cmd.unsupported and "CAR" not in cmd.unsupported


@pytest.fixture(scope="module")
def italy_project(tmp_path_factory, italy):
    """The Italy Hypoinverse project (hyp.command and CRH files unchanged), with station.dat and
    hypoinput.arc generated from the REAL phases and the station list."""
    ev, ph, sta = italy
    d = tmp_path_factory.mktemp("hyp")
    for f in ("hyp.command", "vel_model_P.crh", "vel_model_S.crh"):
        shutil.copy(ITALY / "hypoinverse" / f, d / f)
    hinv.write_sta(d / "station.dat", sta, channels=["001", "002", "003"])
    sel = ev.head(120)
    hinv.write_arc(d / "hypoinput.arc", sel.assign(magnitude=np.nan), ph[ph.event_id.isin(sel.event_id)].assign(weight_code=0))
    return d, sel


def test_builtin_backend_runs_the_project_unchanged(italy_project):
    d, sel = italy_project
    loc, phases = locate_hypoinverse_project(d / "hyp.command")
    assert (d / "catOut.sum").exists() and (d / "hypoOut.arc").exists()
    summ = hinv.read_sum(d / "catOut.sum")
    rev, rph = hinv.read_arc(d / "hypoOut.arc")
    assert len(summ) == len(sel) == len(rev)
    assert rph.residual_s.notna().mean() > 0.95 and rph.weight_used.notna().all()
    vel = read_velest_cat(ITALY / "VELEST/new.cat").iloc[: len(sel)]
    eh = epicentral_km(summ.latitude, summ.longitude, vel.latitude, vel.longitude)
    dz = (summ.depth_km - vel.depth_km).abs()
    print(f"Hypoinverse project (CRH model, builtin) vs VELEST: median epicentre {np.median(eh):.2f} km, depth {np.median(dz):.2f} km")
    assert np.median(eh) < 1.5 and np.median(dz) < 3.0
    assert summ.rms_s.median() < 0.3


@pytest.mark.skipif(find_hypoinverse() is None, reason="no Hypoinverse executable (hyp1.40 / hyp2000) on PATH")
def test_real_hypoinverse_backend(italy_project):
    d, sel = italy_project
    ev, _ = locate_hypoinverse_project(d / "hyp.command", backend="hypoinverse")
    vel = read_velest_cat(ITALY / "VELEST/new.cat").iloc[: len(sel)]
    assert len(ev) > 0.8 * len(sel)
    assert np.median(epicentral_km(ev.latitude.to_numpy()[:10], ev.longitude.to_numpy()[:10], vel.latitude[:10], vel.longitude[:10])) < 3
