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
    ev = dict(
        event_id=1234567,
        time=pd.Timestamp("2016-10-14T00:00:09.27Z"),
        latitude=42.8020,
        longitude=13.2112,
        depth_km=6.0,
        magnitude=0.91,
        mag_type="ML",
        n_p=35,
        n_s=24,
        gap_deg=27.2,
        dmin_km=1.4,
        rms_s=0.24,
        erh_km=0.31,
        erz_km=0.72,
        depth_fixed=False,
    )
    line = hinv.format_summary_line(ev)
    assert line[0:16] == "2016101400000927"
    assert line[16:18] == "42" and line[18] == " " and line[19:23] == "4812"  # 0.802 deg = 48.12'
    assert line[23:26] == " 13" and line[26] == "E" and line[27:31] == "1267"  # 0.2112 deg = 12.67'
    assert line[31:36] == "  600" and line[36:39] == " 91" and line[39:42] == " 59"
    assert line[42:45] == " 27" and line[45:48] == "  1" and line[48:52] == "  24"
    assert line[82:85] == " 24" and line[85:89] == "  31" and line[89:93] == "  72"
    assert line[136:146] == "   1234567" and line[146] == "L" and line[147:150] == " 91"
    back = hinv.parse_summary_line(line)
    assert back["latitude"] == pytest.approx(42.8020, abs=1e-4) and back["longitude"] == pytest.approx(
        13.2112, abs=1e-4
    )
    assert back["n_phases"] == 59 and back["n_s"] == 24 and back["mag_type"] == "ML"
    west = hinv.parse_summary_line(hinv.format_summary_line(dict(ev, latitude=-33.5, longitude=-70.25)))
    assert west["latitude"] == pytest.approx(-33.5) and west["longitude"] == pytest.approx(-70.25)


def test_phase_line_columns_follow_the_manual(tmp_path):
    ev = pd.DataFrame(
        [dict(event_id=7, time=pd.Timestamp("2016-10-14T00:00:09.27Z"), latitude=42.8, longitude=13.2, depth_km=6.0)]
    )
    ph = pd.DataFrame(
        [
            dict(
                event_id=7,
                station_id="IV.T1214",
                channel="HHZ",
                phase="P",
                onset="I",
                first_motion="U",
                weight_code=0,
                time=pd.Timestamp("2016-10-14T00:00:10.59Z"),
                residual_s=0.03,
                weight_used=0.94,
                distance_km=2.4,
                azimuth_deg=21,
            ),
            dict(
                event_id=7,
                station_id="YR.ED03",
                channel="HHN",
                phase="S",
                onset="E",
                weight_code=1,
                time=pd.Timestamp("2016-10-14T00:01:07.06Z"),
                residual_s=-0.54,
                weight_used=0.5,
                amplitude=12.5,
                amp_units="1",
                period_s=0.2,
            ),
        ]
    )
    hinv.write_arc(ev, ph, tmp_path / "x.arc")
    lines = (tmp_path / "x.arc").read_text().splitlines()
    p, s = lines[1], lines[2]
    assert len(lines[0]) == 179 and len(p) == 120 and len(s) == 120  # hyp1.40's widths
    assert p[0:5] == "T1214" and p[5:7] == "IV" and p[9:12] == "HHZ" and p[13:17] == "IPU0"
    assert p[17:29] == "201610140000" and p[29:34] == " 1059" and p[34:38] == "   3" and p[38:41] == " 94"
    assert p[74:78] == "  24" and p[91:94] == " 21"
    # seconds after the event's minute, as hyp1.40 writes them (67.06 s)
    assert s[0:5] == "ED03 " and s[5:7] == "YR" and s[17:29] == "201610140000" and s[41:46] == " 6706"
    assert (
        s[46:50] == "ES 1" and s[50:54] == " -54" and s[54:61] == "   1250" and s[63:66] == " 50" and s[83:86] == " 20"
    )
    assert s[13:17] == "   0" and s[29:34] == "    0"  # no P on this line: hyp1.40's zeros
    assert lines[3].strip() == "7" and len(lines[3]) == 72


def test_station_file_round_trip(tmp_path, italy):
    _, _, sta = italy
    hinv.write_sta(sta, tmp_path / "station.dat", channels=["001", "002", "003"])
    back = hinv.read_sta(tmp_path / "station.dat")
    assert len(back) == 3 * len(sta)
    one = back.drop_duplicates("station_id").set_index("station_id").loc[sta.station_id]
    np.testing.assert_allclose(one.latitude, sta.latitude, atol=1e-4 / 60 + 1e-9)
    np.testing.assert_allclose(one.longitude, sta.longitude, atol=1e-4 / 60 + 1e-9)
    np.testing.assert_allclose(one.elevation_m, sta.elevation_m.round(), atol=0.51)
    line = (tmp_path / "station.dat").read_text().splitlines()[0]
    assert line[:5] == "AM05 " and line[6:8] == "XO" and line[10:13] == "001" and line[25] == "N" and line[37] == "E"
    hinv.write_sta(back, tmp_path / "again.dat")
    assert (tmp_path / "again.dat").read_text() == (tmp_path / "station.dat").read_text()


def test_arc_round_trip_with_shadows(tmp_path, italy):
    ev, ph, _ = italy
    ev, ph = ev.head(40), ph[ph.event_id.isin(ev.event_id.head(40))]
    hinv.write_arc(ev, ph, tmp_path / "a.arc")
    rev, rph = hinv.read_arc(tmp_path / "a.arc")
    assert len(rev) == 40 and len(rph) == len(ph)
    assert (rev.event_id.to_numpy() == ev.event_id.to_numpy()).all()
    # one line per station: the P and S of a station share it (hyp1.40), so compare sorted readings
    key = ["event_id", "station_id", "phase"]
    a = ph.sort_values(key + ["time"]).reset_index(drop=True)
    b = rph.sort_values(key + ["time"]).reset_index(drop=True)
    dt = (b.time - a.time).dt.total_seconds().abs()
    assert dt.max() <= 0.005 + 1e-9
    assert (b.station_id.to_numpy() == a.station_id.to_numpy()).all() and (
        b.phase.to_numpy() == a.phase.to_numpy()
    ).all()
    n_lines = ph.groupby(["event_id", "station_id"]).ngroups
    assert rph.line_no.nunique() == n_lines  # P and S of one station on one line
    assert (epicentral_km(rev.latitude, rev.longitude, ev.latitude, ev.longitude) < 0.02).all()
    # shadow lines as they come: insert some, read, write, identical text
    lines = (tmp_path / "a.arc").read_text().splitlines()
    shadowed = []
    for ln in lines:
        shadowed.append(ln)
        shadowed.append(
            "$1" + " " * 80 + "0343   0   0" if ln[:12].isdigit() else "$   6 5.49 1.80 7.91 3.30 0.10 PSN0   77 PHP3"
        )
    (tmp_path / "s.arc").write_text("\n".join(shadowed) + "\n")
    sev, sph = hinv.read_arc(tmp_path / "s.arc")
    # a line's shadow rides on its first reading
    assert sev.shadow.str.startswith("$1").all() and sph.groupby("line_no").shadow.first().str.startswith("$   6").all()
    assert sev.terminator_shadow.notna().all()
    hinv.write_arc(sev, sph, tmp_path / "s2.arc")
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
    ev = pd.DataFrame(
        dict(
            event_id=np.arange(1, n + 1),
            time=pd.Timestamp("2016-10-14T03:00:00Z") + pd.to_timedelta(rng.uniform(0, 3600, n), unit="s"),
            latitude=rng.uniform(42.5, 43.0, n),
            longitude=rng.uniform(13.0, 13.5, n),
            depth_km=rng.uniform(-1, 20, n),
            magnitude=rng.uniform(0, 3, n),
            mag_type="ML",
            n_p=rng.integers(4, 40, n),
            n_s=rng.integers(0, 30, n),
            gap_deg=rng.uniform(20, 300, n),
            dmin_km=rng.uniform(0, 30, n),
            rms_s=rng.uniform(0, 0.5, n),
            erh_km=rng.uniform(0, 5, n),
            erz_km=rng.uniform(0, 9, n),
            err1_az_deg=rng.uniform(0, 359, n),
            err1_dip_deg=rng.uniform(0, 89, n),
            err1_km=rng.uniform(0, 9, n),
            depth_fixed=rng.random(n) < 0.2,
        )
    )
    hinv.write_sum(ev, tmp_path / "a.sum")
    back = hinv.read_sum(tmp_path / "a.sum")
    assert (back.time - ev.time).dt.total_seconds().abs().max() <= 0.005 + 1e-9
    np.testing.assert_allclose(back.depth_km, ev.depth_km, atol=0.005 + 1e-9)
    np.testing.assert_allclose(back.rms_s, ev.rms_s, atol=0.005 + 1e-9)
    np.testing.assert_allclose(back.magnitude, ev.magnitude, atol=0.005 + 1e-9)
    np.testing.assert_allclose(back.n_phases, ev.n_p + ev.n_s)
    assert (back.program_remark.eq("-") == ev.depth_fixed).all()
    hinv.write_sum(back, tmp_path / "b.sum")
    assert (tmp_path / "b.sum").read_text() == (tmp_path / "a.sum").read_text()
    title, top, vel = hinv.read_crh(ITALY / "hypoinverse/vel_model_P.crh")
    assert top == [0.0, 1.0, 5.0, 21.0, 31.0] and vel[0] == 5.30
    hinv.write_crh(top, vel, tmp_path / "p.crh", title)
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
    hinv.write_sta(sta, d / "station.dat", channels=["001", "002", "003"])
    sel = ev.head(120)
    hinv.write_arc(
        sel.assign(magnitude=np.nan), ph[ph.event_id.isin(sel.event_id)].assign(weight_code=0), d / "hypoinput.arc"
    )
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
    print(
        f"Hypoinverse project (CRH model, builtin) vs VELEST: median epicentre {np.median(eh):.2f} km, depth "
        f"{np.median(dz):.2f} km"
    )
    assert np.median(eh) < 1.5 and np.median(dz) < 3.0
    assert summ.rms_s.median() < 0.3


@pytest.mark.skipif(find_hypoinverse() is None, reason="no Hypoinverse executable (hyp1.40 / hyp2000) on PATH")
def test_real_hypoinverse_backend(italy_project):
    d, sel = italy_project
    ev, _ = locate_hypoinverse_project(d / "hyp.command", backend="hypoinverse")
    vel = read_velest_cat(ITALY / "VELEST/new.cat").iloc[: len(sel)]
    assert len(ev) > 0.8 * len(sel)
    assert (
        np.median(
            epicentral_km(
                ev.latitude.to_numpy()[:10], ev.longitude.to_numpy()[:10], vel.latitude[:10], vel.longitude[:10]
            )
        )
        < 3
    )


# ------------------------------------------------------------------------------------------------
# hyp1.40 conventions on a small synthetic project (arrival times from the CRH model itself)
_CRH_P = "MODEL Vp\n5.30   0.00\n5.65   1.00\n6.20   5.00\n6.21  21.00\n7.50  31.00\n"
_CRH_S = "MODEL Vs\n2.75   0.00\n2.80   1.00\n3.40   5.00\n3.50  21.00\n4.00  31.00\n"
_TRUTH = dict(time=pd.Timestamp("2016-10-14T00:00:10.00Z"), latitude=42.80, longitude=13.20, depth_km=8.0)


def _command(extra=""):
    return (
        "200 T 2000 0\nH71 3 1 3\nLET 5 2 0 /\nRMS 4 0.16 1.5 3\nDIS 4 50 1 3\nERR .10\nMIN 4\nZTR 8\nERF T\nTOP F\n"
        "STA 'station.dat'\nCRH 1 'p.crh'\nCRH 2 's.crh'\nSAL 1 2\n"
        + extra
        + "PHS 'in.arc'\nFIL\nARC 'out.arc'\nPRT 'out.prt'\nSUM 'out.sum'\nCAR 1\nLOC\nSTO\n"
    )


def _stations(n=12, elev=None):
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.linspace(4, 40, n)
    lat = 42.80 + r * np.cos(ang) / 111.19
    lon = 13.20 + r * np.sin(ang) / (111.19 * np.cos(np.radians(42.8)))
    return pd.DataFrame(
        {
            "station_id": [f"IV.S{i:02d}" for i in range(n)],
            "network": "IV",
            "station": [f"S{i:02d}" for i in range(n)],
            "latitude": lat,
            "longitude": lon,
            "elevation_m": np.full(n, 500.0) if elev is None else elev,
        }
    )


def _synthetic_project(d: Path, stations=None, extra_cmd="", extra_picks=None, delays=None, ext_mag=1.4):
    from quakescale.geo import epicentral_km as epi
    from quakescale.locate.locator import travel_time_table

    d.mkdir(parents=True, exist_ok=True)
    sta = _stations() if stations is None else stations
    (d / "p.crh").write_text(_CRH_P)
    (d / "s.crh").write_text(_CRH_S)
    (d / "hyp.command").write_text(_command(extra_cmd))
    hinv.write_sta(sta, d / "station.dat", channels=["001"])
    model = hinv.crh_model(d / "p.crh", d / "s.crh")
    tt = travel_time_table(model, 300.0, 60.0)
    dist = epi(_TRUTH["latitude"], _TRUTH["longitude"], sta.latitude.to_numpy(), sta.longitude.to_numpy())
    rows = []
    for ph in ("P", "S"):
        t = tt.time(ph, np.asarray(dist, float), np.full(len(sta), _TRUTH["depth_km"]), 0.0)[0]
        for sid, tti in zip(sta.station_id, t):
            dl = (delays or {}).get((sid, ph), 0.0)
            rows.append(
                dict(
                    event_id=1,
                    station_id=sid,
                    phase=ph,
                    weight_code=0,
                    time=_TRUTH["time"] + pd.to_timedelta(round(tti + dl, 2), unit="s"),
                )
            )
    ph = pd.DataFrame(rows + list(extra_picks or []))
    ev = pd.DataFrame(
        [
            dict(
                event_id=1,
                time=_TRUTH["time"],
                latitude=_TRUTH["latitude"] + 0.05,
                longitude=_TRUTH["longitude"],
                depth_km=5.0,
                ext_mag=ext_mag,
                ext_mag_type="L",
            )
        ]
    )
    hinv.write_arc(ev, ph, d / "in.arc")
    return d


def _locate(d: Path):
    ev, ph = locate_hypoinverse_project(d / "hyp.command")
    return ev.iloc[0], ph


def test_synthetic_project_recovers_the_truth(tmp_path):
    e, _ = _locate(_synthetic_project(tmp_path / "a"))
    assert epicentral_km(e.latitude, e.longitude, _TRUTH["latitude"], _TRUTH["longitude"]) < 0.05
    assert abs(e.depth_km - _TRUTH["depth_km"]) < 0.15
    assert abs((e.time - _TRUTH["time"]).total_seconds()) < 0.02


def test_station_delay_moves_origin_time_by_the_delay(tmp_path):
    """Every P and S reading late by 0.25 s and a DEL file saying so: the same hypocentre; without
    the DEL file the origin time is late by the delay (hand computation: t = T0 + tt + d)."""
    sta = _stations()
    late = {(s, ph): 0.25 for s in sta.station_id for ph in ("P", "S")}
    base, _ = _locate(_synthetic_project(tmp_path / "base"))
    d = _synthetic_project(tmp_path / "late", delays=late)
    no_del, _ = _locate(d)
    assert (no_del.time - base.time).total_seconds() == pytest.approx(0.25, abs=0.011)
    (d / "p.del").write_text("".join(f"{s[3:]:5s} IV  0.25\n" for s in sta.station_id))
    (d / "s.del").write_text("".join(f"{s[3:]:5s} IV  0.25\n" for s in sta.station_id))
    (d / "hyp.command").write_text(_command("DEL 1 'p.del'\nDEL 2 's.del'\n"))
    with_del, ph = _locate(d)
    assert (with_del.time - base.time).total_seconds() == pytest.approx(0.0, abs=0.011)
    assert epicentral_km(with_del.latitude, with_del.longitude, base.latitude, base.longitude) < 0.01
    assert abs(with_del.depth_km - base.depth_km) < 0.02
    arc = (d / "out.arc").read_text().splitlines()
    assert all(ln[66:70] == "  25" and (ln[70:74] == "  25") for ln in arc[1:-1])  # P and S delays archived


def test_del_for_a_missing_file_names_the_command(tmp_path):
    d = _synthetic_project(tmp_path / "x")
    (d / "hyp.command").write_text(_command("DEL 1 'nope.del'\n"))
    with pytest.raises(hinv.HypoinverseFormatError, match=r"hyp.command:15.*nope.del"):
        locate_hypoinverse_project(d / "hyp.command")


def test_crh_model_ignores_station_elevation(tmp_path):
    """CRH models put every station at the model top: elevations 0 m or 0..2500 m give the same
    location to the byte."""
    a = _synthetic_project(tmp_path / "flat", stations=_stations(elev=np.zeros(12)))
    b = _synthetic_project(tmp_path / "high", stations=_stations(elev=np.linspace(0, 2500, 12)))
    ea, _ = _locate(a)
    eb, _ = _locate(b)
    assert ea.latitude == eb.latitude and ea.longitude == eb.longitude and ea.depth_km == eb.depth_km
    assert ea.time == eb.time
    la, lb = (x / "out.arc" for x in (a, b))
    # only the depth datum (mean elevation of the closest stations) and geoid depth differ
    assert la.read_text().splitlines()[0][:170] == lb.read_text().splitlines()[0][:170]


def test_weight_code_4_removes_a_reading(tmp_path):
    bad = dict(event_id=1, station_id="IV.S05", phase="P", weight_code=4, time=_TRUTH["time"] + pd.Timedelta(seconds=1))
    sta = _stations()
    a, _ = _locate(_synthetic_project(tmp_path / "a", stations=sta.drop(index=5).reset_index(drop=True)))
    extra = _synthetic_project(tmp_path / "b", stations=sta)
    # station S05 has only the bad P (code 4); its good readings removed
    arc = extra / "in.arc"
    ev, ph = hinv.read_arc(arc)
    ph = pd.concat([ph[ph.station_id != "IV.S05"], pd.DataFrame([bad])], ignore_index=True)
    hinv.write_arc(ev, ph, arc)
    b, phb = _locate(extra)
    # (hyp1.40 keeps a code-4 reading in the weight normalisation of the early iterations, so the
    # path -- not the solution -- may differ by metres)
    assert (
        epicentral_km(a.latitude, a.longitude, b.latitude, b.longitude) < 0.01 and abs(a.depth_km - b.depth_km) < 0.01
    )
    assert abs((a.time - b.time).total_seconds()) <= 0.005
    row = phb[(phb.station_id == "IV.S05") & (phb.phase == "P")].iloc[0]
    assert row.weight_used == 0 and row.weight_code == 4
    line = [ln for ln in (extra / "out.arc").read_text().splitlines() if ln.startswith("S05")][0]
    assert line[16] == "4" and line[38:41] == "  0"
    # the weight of a code comes from WET: code 1 under WET 1 0 0 0 also removes it
    bad1 = dict(bad, weight_code=1)
    hinv.write_arc(ev, pd.concat([ph[ph.station_id != "IV.S05"], pd.DataFrame([bad1])], ignore_index=True), arc)
    (extra / "hyp.command").write_text(_command("WET 1. 0. 0. 0.\n"))
    c, _ = _locate(extra)
    assert (
        epicentral_km(a.latitude, a.longitude, c.latitude, c.longitude) < 0.01
        and abs((a.time - c.time).total_seconds()) <= 0.005
    )


def test_output_layouts_match_hyp140(tmp_path):
    d = _synthetic_project(tmp_path / "a", ext_mag=1.37)
    e, _ = _locate(d)
    arc = (d / "out.arc").read_text().splitlines()
    head, stations, term = arc[0], arc[1:-1], arc[-1]
    assert len(head) == 179 and all(len(x) == 120 for x in stations) and len(stations) == 12  # one line per station
    assert all(x[14] == "P" and x[47] == "S" for x in stations)
    assert head[122] == "L" and head[123:126] == "137"  # external magnitude carried through
    assert head[110:113] == "MOD" and head[168:170] == "MH"
    assert term == (d / "in.arc").read_text().splitlines()[-1]  # the input's terminator passed through
    summ = (d / "out.sum").read_text().splitlines()  # H71 3: readable, with the field-name line
    assert summ[0].startswith("   DATE     TIME  SEC") and summ[0].rstrip().endswith("EXT-MAG")
    assert summ[1][:16] == e.time.strftime("%Y/%m/%d %H:%M") and summ[1].rstrip().endswith("1.37 ML")
    back = hinv.read_sum(d / "out.sum")
    assert back.latitude.iloc[0] == pytest.approx(e.latitude, abs=1e-4) and back.ext_mag.iloc[0] == 1.37
    prt = (d / "out.prt").read_text()
    assert "SEQUENCE NO.    1" in prt and " STA NET COM L CR DIST AZM  AN P/S WT   SEC (TOBS -TCAL -DLY  =RES)" in prt
    assert (
        prt.count("\n S00 ") + prt.count("\n S00IV") >= 0
        and len([x for x in prt.splitlines() if x[32:33] in "PS"]) >= 24
    )
    # CAR 3: a shadow line after every line; H71 1 / 2 / 4 summaries
    for h71, check in (
        (1, lambda s: len(s[0]) == 179),
        (2, lambda s: s[0][8] == " " and len(s[0]) < 100),
        (4, lambda s: s[0].startswith("   DATE     TIME,") and s[1].count(",") > 15),
    ):
        (d / "hyp.command").write_text(_command().replace("H71 3 1 3", f"H71 {h71} 1 3").replace("CAR 1", "CAR 3"))
        _locate(d)
        s = (d / "out.sum").read_text().splitlines()
        assert check(s), (h71, s[:2])
        back = hinv.read_sum(d / "out.sum")
        assert back.latitude.iloc[0] == pytest.approx(e.latitude, abs=2e-4)
        lines = (d / "out.arc").read_text().splitlines()
        assert all(x.startswith("$") for x in lines[1::2]) and len(lines) == 2 * (1 + 12 + 1)


def test_bad_input_is_one_line(tmp_path, capsys, monkeypatch):
    from quakescale.cli import main

    d = _synthetic_project(tmp_path / "a")
    (d / "in.arc").write_text("")
    with pytest.raises(Exception, match=r"in.arc has no events"):
        locate_hypoinverse_project(d / "hyp.command")
    (d / "hyp.command").write_text(_command().replace("'p.crh'", "'missing.crh'"))
    with pytest.raises(
        hinv.HypoinverseFormatError, match=r"hyp.command:12: CRH 1: model file not found: .*missing.crh"
    ):
        locate_hypoinverse_project(d / "hyp.command")
    monkeypatch.setattr(sys, "argv", ["quakescale", "locate", "hypoinverse", str(d / "hyp.command")])
    with pytest.raises(SystemExit) as ex:
        main()
    assert ex.value.code == 1
    err = capsys.readouterr().err
    first = err.strip().splitlines()[0]
    assert "missing.crh" in first and "hyp.command:12" in first and "Traceback" not in err


def test_unsupported_commands_warn_once(tmp_path, caplog):
    d = _synthetic_project(tmp_path / "a")
    (d / "hyp.command").write_text(_command("MUL T 1\nMUL T 1\nXMC 'x.xmc' T 0\n"))
    with caplog.at_level("WARNING", logger="quakescale.locate"):
        _locate(d)
    msgs = [r.getMessage() for r in caplog.records if "not supported" in r.getMessage()]
    assert len(msgs) == 2 and any("MUL" in m for m in msgs) and any("XMC" in m for m in msgs)
    assert set(hinv.SUPPORTED_COMMANDS) >= {"DEL", "WET", "SWT", "CRH", "SAL", "POS", "DIS", "RMS", "ZTR", "H71", "CAR"}


def test_catalog_arc_from_the_located_catalog(tmp_path):
    from quakescale.catalog.writers import write_catalogs

    ev = pd.DataFrame(
        [
            dict(
                event_id=12,
                time=_TRUTH["time"],
                latitude=42.8,
                longitude=13.2,
                depth_km=8.0,
                magnitude=1.2,
                mag_type="ML",
                n_p=3,
                n_s=2,
                rms_s=0.05,
            )
        ]
    )
    pk = pd.DataFrame(
        [
            dict(
                event_id=12,
                station_id=f"IV.S0{i}",
                phase=ph,
                time=_TRUTH["time"] + pd.Timedelta(seconds=2 + i + (ph == "S")),
                residual_s=0.01,
                weight=1.0,
            )
            for i in range(3)
            for ph in ("P", "S")
        ][:5]
    )
    out = write_catalogs(ev, pk, None, tmp_path, "manifest-x", arc_writer=hinv.write_arc_catalog)
    lines = out["arc"].read_text().splitlines()
    assert len(lines[0]) == 179 and lines[0][136:146] == "        12" and lines[0][146:150] == "L120"
    assert [len(x) for x in lines[1:4]] == [120] * 3 and lines[4].strip() == "12"
    rev, rph = hinv.read_arc(out["arc"])
    assert rev.event_id.tolist() == [12] and len(rph) == 5 and rev.magnitude.iloc[0] == pytest.approx(1.2)


@pytest.mark.skipif(find_hypoinverse() is None, reason="no Hypoinverse executable (hyp1.40 / hyp2000) on PATH")
def test_synthetic_project_matches_hyp140(tmp_path):
    """Where hyp1.40 is installed: our outputs against its own on the synthetic project, with delays."""
    sta = _stations()
    late = {(s, ph): 0.1 * (i % 3) for i, s in enumerate(sta.station_id) for ph in ("P", "S")}
    for name in ("ours", "ref"):  # stations listed far to near: both archives list them near to far
        d = _synthetic_project(tmp_path / name, stations=sta.iloc[::-1].reset_index(drop=True), delays=late)
        (d / "p.del").write_text("".join(f"{s[3:]:5s} IV {0.1 * (i % 3):5.2f}\n" for i, s in enumerate(sta.station_id)))
        (d / "hyp.command").write_text(_command("DEL 1 'p.del'\n"))
    ours, _ = locate_hypoinverse_project(tmp_path / "ours" / "hyp.command")
    locate_hypoinverse_project(tmp_path / "ref" / "hyp.command", backend="hypoinverse")
    ref, _ = hinv.read_arc(tmp_path / "ref" / "out.arc")
    assert (
        epicentral_km(ref.latitude.iloc[0], ref.longitude.iloc[0], ours.latitude.iloc[0], ours.longitude.iloc[0]) < 0.1
    )
    assert abs(ref.depth_km.iloc[0] - ours.depth_km.iloc[0]) < 0.2
    assert abs((ref.time.iloc[0] - ours.time.iloc[0]).total_seconds()) <= 0.02
    a = (tmp_path / "ref" / "out.arc").read_text().splitlines()
    b = (tmp_path / "ours" / "out.arc").read_text().splitlines()
    assert [len(x) for x in a] == [len(x) for x in b]
    # same stations, order, full codes from the station file, weight codes, delays
    assert [x[:17] + x[66:74] for x in a[1:-1]] == [x[:17] + x[66:74] for x in b[1:-1]]


def test_prt_station_table_reads_like_hyp140s(tmp_path):
    """The PRT station table in hyp1.40's columns: the reader the benchmark uses on hyp1.40's own
    printouts gets every reading back (station, phase, seconds, delay)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_hypoinverse import parse_prt_readings

    d = _synthetic_project(tmp_path / "a")
    _, ph = _locate(d)
    (ev,) = parse_prt_readings((d / "out.prt").read_text())
    got = sorted((s, ph_, round(sec, 2)) for s, _, ph_, _, sec, _ in ev["readings"])
    minute = _TRUTH["time"].floor("min")
    want = sorted((r.station, r.phase, round((r.time - minute).total_seconds(), 2)) for r in ph.itertuples())
    assert got == want and ev["mag"] == 1.4 and ev["mag_type"] == "L"


@pytest.mark.skipif(find_hypoinverse() is None, reason="no Hypoinverse executable (hyp1.40 / hyp2000) on PATH")
@pytest.mark.parametrize("h71", [1, 2, 3, 4])
def test_summary_formats_match_hyp140(tmp_path, h71):
    """Each H71 summary format and CAR 3 archive: our lines have hyp1.40's widths, header line
    and shadow-line pattern on the same project."""
    for name in ("ours", "ref"):
        d = _synthetic_project(tmp_path / name)
        (d / "hyp.command").write_text(_command().replace("H71 3 1 3", f"H71 {h71} 1 3").replace("CAR 1", "CAR 3"))
    locate_hypoinverse_project(tmp_path / "ours" / "hyp.command")
    locate_hypoinverse_project(tmp_path / "ref" / "hyp.command", backend="hypoinverse")
    for f in ("out.sum", "out.arc"):
        a = (tmp_path / "ref" / f).read_text().splitlines()
        b = (tmp_path / "ours" / f).read_text().splitlines()
        assert [len(x) for x in a] == [len(x) for x in b], f
        assert [x[:1] == "$" for x in a] == [x[:1] == "$" for x in b]
    if h71 in (3, 4):
        heads = [(tmp_path / w / "out.sum").read_text().splitlines()[0] for w in ("ref", "ours")]
        assert heads[0] == heads[1]


def test_del0_file_and_station_weight_code(tmp_path):
    """``DEL 0`` (one file, one F4.2 delay per model) acts as DEL 1 + DEL 2; a station weight code
    0 in column 15 of the station file removes the station's readings."""
    sta = _stations()
    late = {(s, ph): 0.25 for s in sta.station_id for ph in ("P", "S")}
    base, _ = _locate(_synthetic_project(tmp_path / "base"))
    d = _synthetic_project(tmp_path / "late", delays=late)
    (d / "all.del").write_text("".join(f"{s[3:]:5s} IV     25  25\n" for s in sta.station_id))
    (d / "hyp.command").write_text(_command("DEL 0 'all.del'\n"))
    e, _ = _locate(d)
    assert (e.time - base.time).total_seconds() == pytest.approx(0.0, abs=0.011)
    assert epicentral_km(e.latitude, e.longitude, base.latitude, base.longitude) < 0.01
    # station weight 0 on S05 == S05 absent
    without, _ = _locate(_synthetic_project(tmp_path / "without", stations=sta.drop(index=5).reset_index(drop=True)))
    w0 = _synthetic_project(tmp_path / "w0")
    lines = (w0 / "station.dat").read_text().splitlines()
    lines = [ln[:14] + "0" + ln[15:] if ln.startswith("S05") else ln for ln in lines]
    (w0 / "station.dat").write_text("\n".join(lines) + "\n")
    e0, ph0 = _locate(w0)
    # (like a code-4 reading, a zero-weight station stays in hyp1.40's early weight normalisation:
    # the path, not the solution, differs by metres)
    assert epicentral_km(e0.latitude, e0.longitude, without.latitude, without.longitude) < 0.03
    assert abs((e0.time - without.time).total_seconds()) <= 0.01
    assert (ph0.loc[ph0.station_id == "IV.S05", "weight_used"] == 0).all()


def test_trial_depth_and_depth_fixing(tmp_path):
    """ZTR z T holds every depth at z (remark '-'); a trial depth with the fix flag on an event's
    Hypoinverse terminator holds that event only; ZTR or a trial depth alone is just the start."""
    d = _synthetic_project(tmp_path / "a")
    (d / "hyp.command").write_text(_command().replace("ZTR 8", "ZTR 5 T"))
    e, _ = _locate(d)
    assert e.depth_km == 5.0 and e.depth_fixed and (d / "out.arc").read_text()[81] == "-"
    assert (d / "out.sum").read_text().splitlines()[1][94] == "-"  # readable summary QASR: A = '-'
    (d / "hyp.command").write_text(_command().replace("ZTR 8", "ZTR 5"))
    free, _ = _locate(d)
    assert abs(free.depth_km - _TRUTH["depth_km"]) < 0.15 and not free.depth_fixed
    lines = (d / "in.arc").read_text().splitlines()
    # terminator trial depth 6.00 (columns 30-34) with the fix flag '-' (column 35): held at 6 km
    # (hyp1.40 gives 6.00 and '-' on this project; a trial depth alone is only the start)
    lines[-1] = (" " * 29 + "  600-").ljust(62) + lines[-1][62:]
    (d / "in.arc").write_text("\n".join(lines) + "\n")
    fixed, _ = _locate(d)
    assert fixed.depth_km == 6.0 and fixed.depth_fixed
    lines[-1] = (" " * 29 + "  600").ljust(62) + lines[-1][62:]
    (d / "in.arc").write_text("\n".join(lines) + "\n")
    start6, _ = _locate(d)
    assert abs(start6.depth_km - _TRUTH["depth_km"]) < 0.15 and not start6.depth_fixed
