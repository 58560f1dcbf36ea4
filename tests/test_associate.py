"""PALM-style association: synthetic truth, partitions, readers and the REAL Italy 2016 day."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from quakescale import schema
from quakescale.associate import (
    AssociationInputError,
    Associator,
    _merge_partitions,
    associate_partitioned,
    match_events,
    unassociated,
)
from quakescale.formats import picks_io
from quakescale.formats.velmodels import read_model
from quakescale.synth.picks import synthetic_picks
from quakescale.velocity import TravelTimeTable, default_model
from shared_data import ITALY

needs_italy = pytest.mark.skipif(not ITALY.exists(), reason="REAL demo data not present")


@pytest.fixture(scope="module")
def tt():
    return TravelTimeTable(default_model(), max_dist_km=220, max_depth_km=31, dist_step_km=0.25, depth_step_km=0.1)


@pytest.fixture(scope="module")
def syn(tt):
    # 150 events, 20 stations in 100 km, sigma 0.1 s P / 0.2 s S, missing picks, 30 % false
    return synthetic_picks(tt, n_events=150, n_stations=20, region_km=100, false_fraction=0.3, seed=3)


@pytest.fixture(scope="module")
def assoc(syn, tt):
    return Associator(syn.stations, tt=tt, max_depth_km=30, min_stations=4, min_picks=8)


@pytest.fixture(scope="module")
def result(assoc, syn):
    t0 = time.perf_counter()
    ev, asg = assoc.associate(syn.picks)
    return ev, asg, time.perf_counter() - t0


def _scores(ev, truth):
    truth = truth[truth["n_stations"] >= 4]
    m = match_events(ev, truth, max_dt_s=1.5, max_dist_km=5.0)
    return len(m) / len(truth), len(m) / max(len(ev), 1), m


def test_synthetic_recall_precision(syn, result):
    ev, asg, secs = result
    assert (syn.picks["event_id"] < 0).mean() == pytest.approx(0.3, abs=0.01)
    recall, precision, m = _scores(ev, syn.events)
    print(
        f"\nsynthetic: {len(syn.picks)} picks (30 % false), {len(syn.events)} events -> {len(ev)} found; "
        f"recall {recall:.3f} precision {precision:.3f}; median epicentre error {m['dist_km'].median():.2f} km; "
        f"{len(syn.picks) / secs:.0f} picks/s"
    )
    assert recall >= 0.95
    assert precision >= 0.95
    assert m["dist_km"].median() < 2.5
    # the picks of a found event are mostly its own true picks
    true_eid = syn.picks["event_id"].to_numpy()[asg["pick_index"].to_numpy()]
    assert (true_eid < 0).mean() < 0.05


def test_assignment_invariants(syn, assoc, result):
    ev, asg, _ = result
    assert asg["pick_index"].is_unique  # each pick used at most once
    # |residual| within the tolerance, which grows with the travel time (pick time - origin time)
    origin = asg["event_id"].map(ev.set_index("event_id")["time"])
    travel = (asg["time"] - origin).dt.total_seconds()
    assert (asg["residual_s"].abs() <= assoc.max_residual_s + assoc.residual_per_s * (travel + 0.5) + 1e-9).all()
    assert (asg["residual_s"].abs() > assoc.max_residual_s).any() or assoc.residual_per_s == 0
    # per event, at most one P and one S per station; counts match the event rows
    assert not asg.duplicated(["event_id", "station_id", "phase"]).any()
    g = asg.groupby("event_id")
    counts = pd.DataFrame(
        {
            "n_stations": g["station_id"].nunique(),
            "n_p": g["phase"].apply(lambda x: (x == "P").sum()),
            "n_s": g["phase"].apply(lambda x: (x == "S").sum()),
        }
    )
    e = ev.set_index("event_id")
    assert (counts["n_stations"] == e.loc[counts.index, "n_stations"]).all()
    assert (counts["n_p"] == e.loc[counts.index, "n_p"]).all()
    assert (counts["n_s"] == e.loc[counts.index, "n_s"]).all()
    assert (ev["n_stations"] >= 4).all() and ((ev["n_p"] + ev["n_s"]) >= 8).all()
    # assignment times are the picks' times; unused picks are the rest
    src = syn.picks.iloc[asg["pick_index"].to_numpy()]
    assert (src["time"].to_numpy() == asg["time"].to_numpy()).all()
    assert (src["station_id"].to_numpy() == asg["station_id"].to_numpy()).all()
    assert len(unassociated(syn.picks, asg)) == len(syn.picks) - len(asg)
    # the tables conform to the versioned schemas
    schema.conform(ev, schema.EVENTS)
    schema.conform(asg, schema.ASSIGNMENTS)
    assert ev["time"].is_monotonic_increasing


def test_partitioned_matches_single(syn, assoc, result):
    ev1, _, _ = result
    # 150 events over 9000 s -> 8 partitions of 1200 s with 120 s overlap
    ev, asg = associate_partitioned(syn.picks, assoc, partition_s=1200, overlap_s=120)
    recall, precision, _ = _scores(ev, syn.events)
    print(f"\npartitioned: {len(ev)} events (single run {len(ev1)}); recall {recall:.3f} precision {precision:.3f}")
    assert asg["pick_index"].is_unique
    assert abs(len(ev) - len(ev1)) <= 2
    assert recall >= 0.95 and precision >= 0.95
    assert list(ev["event_id"]) == list(range(1, len(ev) + 1))
    # no event twice: no two events within 1 s and 5 km
    dt = np.diff(ev["time"].to_numpy().astype("datetime64[ns]").astype(np.int64)) / 1e9
    dd = np.hypot(np.diff(ev["x_km"].to_numpy()), np.diff(ev["y_km"].to_numpy()))
    assert not ((dt <= 1.0) & (dd <= 5.0)).any()


def test_boundary_duplicates_merged_once():
    t = pd.Timestamp("2020-01-01", tz="UTC")

    def part(eid, time_s, n_picks, pick_idx):
        ev = pd.DataFrame(
            {
                "event_id": [eid],
                "time": [t + pd.Timedelta(seconds=time_s)],
                "latitude": [0.0],
                "longitude": [0.0],
                "depth_km": [5.0],
                "n_stations": [n_picks],
                "n_p": [n_picks],
                "n_s": [0],
                "n_picks": [n_picks],
                "score": [float(n_picks)],
            }
        )
        asg = pd.DataFrame(
            {
                "event_id": eid,
                "station_id": [f"X.S{i}" for i in pick_idx],
                "phase": "P",
                "time": t,
                "residual_s": 0.0,
                "weight": 1.0,
                "pick_index": pick_idx,
            }
        )
        return ev, asg

    # the same event found by two partitions (origins either side of the boundary), one pick differs
    a = part(1, 3599.99, 6, [10, 11, 12, 13, 14, 15])
    b = part(1, 3600.01, 5, [10, 11, 12, 13, 16])
    c = part(2, 3700.0, 5, [20, 21, 22, 23, 24])
    ev, asg = _merge_partitions([a, (pd.concat([b[0], c[0]]), pd.concat([b[1], c[1]]))])
    assert len(ev) == 2
    assert ev["n_picks"].tolist() == [6, 5]
    assert asg["pick_index"].is_unique
    assert sorted(asg["pick_index"]) == [10, 11, 12, 13, 14, 15, 20, 21, 22, 23, 24]


def test_partitioned_with_dask_client(syn, assoc):
    distributed = pytest.importorskip("distributed")
    sub = syn.picks[syn.picks["time"] < syn.picks["time"].min() + pd.Timedelta(seconds=2400)]
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
        ev_d, asg_d = associate_partitioned(sub, assoc, partition_s=600, overlap_s=120, client=client)
    ev_l, asg_l = associate_partitioned(sub, assoc, partition_s=600, overlap_s=120)
    assert len(ev_d) == len(ev_l) > 20
    assert (ev_d["time"].to_numpy() == ev_l["time"].to_numpy()).all()
    assert asg_d["pick_index"].tolist() == asg_l["pick_index"].tolist()


def test_bad_input_is_named(syn, assoc, tt, caplog):
    bad = syn.picks.head(20).copy()
    bad.loc[bad.index[3], "station_id"] = "ZZ.NOPE"
    strict = Associator(syn.stations, tt=tt, max_depth_km=30, unknown_stations="error")
    with pytest.raises(AssociationInputError, match="ZZ.NOPE"):
        strict.associate(bad)
    # by default a pick of an unknown station is dropped with a warning naming the station
    with caplog.at_level("WARNING", logger="quakescale.associate"):
        ev, asg = associate_partitioned(bad, assoc)
    assert "ZZ.NOPE" in caplog.text and "dropped" in caplog.text
    assert 3 not in set(asg["pick_index"])
    with pytest.raises(AssociationInputError, match="min_stations"):
        Associator(syn.stations, tt=tt, min_stations=0)
    bad = syn.picks.head(20).copy()
    bad.loc[bad.index[2], "phase"] = "X"
    with pytest.raises(AssociationInputError, match="phase"):
        assoc.associate(bad)
    with pytest.raises(AssociationInputError, match="time"):
        assoc.associate(syn.picks.drop(columns="time"))
    ev, asg = assoc.associate(syn.picks.iloc[:0])
    assert len(ev) == 0 and len(asg) == 0


def test_csv_picks_roundtrip(tmp_path, syn):
    p = syn.picks.head(50)
    csv = tmp_path / "picks.csv"
    pd.DataFrame(
        {
            "id": p["station_id"],
            "timestamp": p["time"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "type": p["phase"].str.lower(),
            "prob": 0.7,
        }
    ).to_csv(csv, index=False)
    got = picks_io.read_csv_picks(csv)
    assert list(got.columns[: len(schema.PICKS)]) == [f.name for f in schema.PICKS]
    assert (got["station_id"].to_numpy() == p["station_id"].to_numpy()).all()
    assert (got["phase"].to_numpy() == p["phase"].to_numpy()).all()
    assert (np.abs((got["time"] - p["time"].reset_index(drop=True)).dt.total_seconds()) < 1e-5).all()
    schema.conform(got, schema.PICKS)
    bad = tmp_path / "bad.csv"
    bad.write_text("id,timestamp\nSY.S001,2020-01-01T00:00:00\n")
    with pytest.raises(picks_io.PickFormatError, match="phase"):
        picks_io.read_csv_picks(bad)


@needs_italy
def test_real_readers():
    picks = picks_io.read_real_picks(ITALY / "Pick" / "20161014.zip")
    assert len(picks) == 85289 and picks["station_id"].nunique() == 60
    assert set(picks["phase"]) == {"P", "S"}
    assert picks["time"].min() >= pd.Timestamp("2016-10-14", tz="UTC")
    assert picks["time"].max() < pd.Timestamp("2016-10-15", tz="UTC")
    schema.conform(picks, schema.PICKS)
    st = picks_io.read_real_stations(ITALY / "Data" / "station.dat")
    assert len(st) == 60 and set(picks["station_id"]) <= set(st["station_id"])
    assert st.set_index("station_id").loc["IV.CAMP", "elevation_m"] == pytest.approx(1283.0)
    cat = picks_io.read_real_catalog(ITALY / "REAL" / "catalog_sel.txt")
    assert len(cat) == 659 and cat["n_p"].min() >= 5
    assert cat["time"].iloc[0] == pd.Timestamp("2016-10-14T00:00:09.2704", tz="UTC")


@needs_italy
def test_italy_vs_real_first_hours():
    """REAL-like thresholds (np0=5, nps0=18: >= 5 P and >= 18 picks), itvel.nd, depth <= 20 km;
    the first 4 hours of the day (the full day: benchmarks/bench_associate.py --italy)."""
    picks = picks_io.read_real_picks(ITALY / "Pick" / "20161014.zip")
    st = picks_io.read_real_stations(ITALY / "Data" / "station.dat")
    ref = picks_io.read_real_catalog(ITALY / "REAL" / "catalog_sel.txt")
    end = pd.Timestamp("2016-10-14T04:00:00", tz="UTC")
    picks, ref = picks[picks["time"] < end], ref[ref["time"] < end]
    a = Associator(st, read_model(ITALY / "REAL" / "tt_db" / "itvel.nd"), max_depth_km=20, min_p=5, min_picks=18)
    t0 = time.perf_counter()
    ev, asg = associate_partitioned(picks, a, partition_s=3600, overlap_s=120)
    secs = time.perf_counter() - t0
    m = match_events(ev, ref, max_dt_s=1.5, max_dist_km=5.0)
    recall, precision = len(m) / len(ref), len(m) / len(ev)
    print(
        f"\nItaly 2016-10-14 00-04h: {len(picks)} STA/LTA picks in {secs:.1f} s; {len(ev)} events, REAL {len(ref)}; "
        f"matched {len(m)} (|dt|<=1.5 s, <=5 km): recall {recall:.3f}, precision vs REAL {precision:.3f}"
    )
    assert recall >= 0.85
    assert precision >= 0.6
    assert asg["pick_index"].is_unique


def test_csv_picks_bad_files_one_clear_error(tmp_path):
    header_only = tmp_path / "header.csv"
    header_only.write_text("station_id,phase,time\n")
    with pytest.raises(picks_io.PickFormatError, match="header only"):
        picks_io.read_csv_picks(header_only)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(picks_io.PickFormatError, match="empty file"):
        picks_io.read_csv_picks(empty)
    amp = tmp_path / "amp.csv"
    amp.write_text("station_id,phase,time,amplitude\nSY.S001,P,2020-01-01T00:00:00,0.5\n")
    with pytest.raises(picks_io.PickFormatError, match="amplitude column 'amplitude' without a unit"):
        picks_io.read_csv_picks(amp)
    assert picks_io.read_csv_picks(amp, amp_unit="wa_mm")["amp_wa_mm"].tolist() == [0.5]
    raw = picks_io.read_csv_picks(amp, amp_unit="raw")
    assert raw["amp_wa_mm"].isna().all() and raw["amp_raw"].tolist() == [0.5]
    named = tmp_path / "named.csv"
    named.write_text("station_id,phase,time,amp_wa_mm\nSY.S001,S,2020-01-01T00:00:00,0.25\n")
    assert picks_io.read_csv_picks(named)["amp_wa_mm"].tolist() == [0.25]


def test_layer_table_csv_with_header(tmp_path):
    from quakescale.formats.velmodels import ModelFormatError, read_model

    f = tmp_path / "model.csv"
    f.write_text("top_km,vp_km_s,vs_km_s\n0,5.3,2.75\n1,5.65,2.80\n5,6.20,3.40\n")
    m = read_model(f)
    assert m.top_km == (0.0, 1.0, 5.0) and m.vp_kms == (5.3, 5.65, 6.2) and m.vs_kms == (2.75, 2.8, 3.4)
    g = tmp_path / "reordered.csv"
    g.write_text("# a comment\nvp,depth\n5.3,0\n6.0,4\n")
    m = read_model(g)
    assert m.top_km == (0.0, 4.0) and m.vs_kms[0] == pytest.approx(5.3 / 1.73)
    bad = tmp_path / "bad.csv"
    bad.write_text("top_km,vp_km_s\n0,5.3\n0,6.0\n")
    with pytest.raises(ModelFormatError, match="bad.csv:3"):
        read_model(bad)


def test_edge_events_rejected_and_probability_floor(tt):
    """Events far outside the stations' box sit on the search region's edge: rejected; picks
    below the probability floor are not used."""
    syn = synthetic_picks(tt, n_events=40, n_stations=20, region_km=100, false_fraction=0.0, seed=5)
    inside = Associator(syn.stations, tt=tt, max_depth_km=30, min_stations=4, min_picks=8)
    ev_in, _ = inside.associate(syn.picks)
    assert len(ev_in) >= 35
    # only the western stations listen: the eastern events lie far outside their box
    west = syn.stations[inside.sx < np.quantile(inside.sx, 0.5)]
    wpicks = syn.picks[syn.picks["station_id"].isin(west["station_id"])].reset_index(drop=True)

    def outside_km(a, ev):
        x0, x1, y0, y1 = a.station_box
        dx = np.maximum(np.maximum(x0 - ev["x_km"], ev["x_km"] - x1), 0)
        dy = np.maximum(np.maximum(y0 - ev["y_km"], ev["y_km"] - y1), 0)
        return np.hypot(dx, dy)

    free = Associator(
        west,
        tt=tt,
        max_depth_km=30,
        min_stations=4,
        min_picks=8,
        max_outside_km=None,
        reject_depth_edge=False,
        margin_km=80.0,
    )
    ev_free, _ = free.associate(wpicks)
    assert (outside_km(free, ev_free) > 10).sum() >= 3  # without the rule: events out there
    edge = Associator(west, tt=tt, max_depth_km=30, min_stations=4, min_picks=8, max_outside_km=10.0, margin_km=80.0)
    ev_edge, _ = edge.associate(wpicks)
    assert len(ev_edge) > 0 and (outside_km(edge, ev_edge) <= 10).all()
    assert (ev_edge["depth_km"] < 30 - 0.25).all()
    low = syn.picks.assign(probability=np.float32(0.2))
    floor = Associator(syn.stations, tt=tt, max_depth_km=30, min_stations=4, min_picks=8, min_probability=0.3)
    ev_low, _ = floor.associate(low)
    assert len(ev_low) == 0
    ev_ok, _ = floor.associate(syn.picks)  # probability 0.9
    assert len(ev_ok) == len(ev_in)


def test_snr_floor_and_nearest_station_rule(tt):
    """Picks below min_snr are not used (no SNR: kept).  On a sparse network (8 stations ~100 km
    apart, half the picks false) the relaxed pick thresholds hold only within max_nearest_km of a
    station with picks, and with a clear pick (SNR >= min_snr_near) there: other events need the
    thresholds as requested."""
    syn = synthetic_picks(tt, n_events=40, n_stations=20, region_km=100, false_fraction=0.0, seed=5)
    a = Associator(syn.stations, tt=tt, max_depth_km=30, min_stations=4, min_picks=8)
    n_ok = len(a.associate(syn.picks.assign(snr=np.float32(10.0)))[0])
    assert n_ok >= 35
    assert len(a.associate(syn.picks.assign(snr=np.float32(2.0)))[0]) == 0  # at the noise's level
    assert len(a.associate(syn.picks.assign(snr=np.nan))[0]) == n_ok

    sp = synthetic_picks(
        tt, n_events=150, n_stations=8, region_km=200, false_fraction=0.5, seed=11, p_detect=0.7, s_detect=0.7
    )

    def run(max_nearest_km):
        b = Associator(sp.stations, tt=tt, max_depth_km=30, max_nearest_km=max_nearest_km)
        ev, asg = b.associate(sp.picks)
        sx = pd.Series(b.sx, index=b.station_ids)
        sy = pd.Series(b.sy, index=b.station_ids)
        x = ev.set_index("event_id").loc[asg["event_id"], ["x_km", "y_km"]].to_numpy()
        d = np.hypot(x[:, 0] - sx[asg["station_id"]].to_numpy(), x[:, 1] - sy[asg["station_id"]].to_numpy())
        ev = ev.assign(nearest_km=pd.Series(d).groupby(asg["event_id"].to_numpy()).min().loc[ev["event_id"]].to_numpy())
        full = (ev["n_picks"] >= 10) & (ev["n_p"] >= 3) & (ev["n_s"] >= 3) & (ev["n_p_and_s"] >= 3)
        m = match_events(ev, sp.events, max_dt_s=1.5, max_dist_km=10.0)
        return ev, full, len(m) / max(len(ev), 1), len(m)

    assert (b := Associator(sp.stations, tt=tt, max_depth_km=30)).min_p_and_s == 1 and b.min_picks == 5
    ev0, full0, prec0, n0 = run(None)
    ev1, full1, prec1, n1 = run(50.0)
    print(
        f"\nsparse network: without the rule {len(ev0)} events, precision {prec0:.3f}; "
        f"with it {len(ev1)}, precision {prec1:.3f}"
    )
    assert ((ev0["nearest_km"] > 50.5) & ~full0).sum() >= 3  # without the rule: weak far events
    assert ((ev1["nearest_km"] <= 50.5) | full1).all()
    assert prec1 > prec0 and n1 >= 0.8 * n0
    # picks above the floor (3) but none clear near the event (SNR < min_snr_near): only events with
    # the full evidence remain
    ev2, asg2 = Associator(sp.stations, tt=tt, max_depth_km=30).associate(sp.picks.assign(snr=np.float32(4.0)))
    assert len(ev2) > 0 and (ev2["n_picks"] >= 10).all() and (ev2["n_p_and_s"] >= 3).all()
    assert (~full1).sum() >= 10  # (with clear picks, many events held by the caps)


@needs_italy
def test_phasenet_reader():
    picks = picks_io.read_picks(ITALY / "Pick_PhaseNet" / "picks.csv")
    assert len(picks) == 115440
    assert (picks["phase"] == "P").sum() == 54994
    assert picks["probability"].between(0.3, 1.0).all()
    assert picks["amp_wa_mm"].isna().all()  # PhaseNet amplitudes are velocities, never taken as Wood-Anderson
    st = picks_io.read_real_stations(ITALY / "Data" / "station.dat")
    assert set(picks["station_id"]) <= set(st["station_id"])
    # PhaseNet's own split of the same table (temp.p): IV ARRO P at 16.70 s, probability 0.645
    arro = picks[(picks["station_id"] == "IV.ARRO") & (picks["phase"] == "P")]
    hit = arro[arro["time"] == pd.Timestamp("2016-10-14T00:00:16.70", tz="UTC")]
    assert len(hit) == 1 and hit["probability"].iloc[0] == pytest.approx(0.645, abs=1e-6)
    schema.conform(picks, schema.PICKS)


@needs_italy
@pytest.mark.parametrize("pick_set", ["stalta", "phasenet"])
def test_italy_defaults_precision(pick_set):
    """The defaults on the first 4 hours of the Italy day, both shared pick sets, vs REAL's
    catalog (one-to-one within 1.5 s and 5 km).  The full day, side by side with PyOcto:
    benchmarks/bench_associate.py (PyOcto 0.2.2 defaults, full day: 0.933 / 0.467 and 0.954 / 0.232)."""
    path = ITALY / ("Pick/20161014.zip" if pick_set == "stalta" else "Pick_PhaseNet/picks.csv")
    picks = picks_io.read_picks(path)
    st = picks_io.read_real_stations(ITALY / "Data" / "station.dat")
    ref = picks_io.read_real_catalog(ITALY / "REAL" / "catalog_sel.txt")
    end = pd.Timestamp("2016-10-14T04:00:00", tz="UTC")
    picks, ref = picks[picks["time"] < end].reset_index(drop=True), ref[ref["time"] < end]
    ev, asg = associate_partitioned(picks, Associator(st, read_model(ITALY / "REAL" / "tt_db" / "itvel.nd")))
    m = match_events(ev, ref, max_dt_s=1.5, max_dist_km=5.0)
    recall, precision = len(m) / len(ref), len(m) / len(ev)
    print(
        f"\nItaly 00-04h {pick_set}, defaults: {len(ev)} events, REAL {len(ref)}; "
        f"recall {recall:.3f} precision {precision:.3f}"
    )
    assert recall >= LIMITS[pick_set][0] and precision >= LIMITS[pick_set][1]
    assert asg["pick_index"].is_unique
    assert (ev["depth_km"] < 30 - 0.25).all()
    assert {"score", "n_p_and_s"} <= set(ev.columns) and (ev["n_p_and_s"] >= 3).all() and (ev["n_picks"] >= 10).all()


# measured 0.972 / 0.665 and 0.993 / 0.312; the limits sit above PyOcto's full-day figures
LIMITS = {"stalta": (0.93, 0.60), "phasenet": (0.95, 0.28)}


def _cli(*args):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "quakescale.cli", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def test_cli_associate_config_thresholds_and_bad_input(tmp_path, tt):
    import yaml

    from quakescale.config import TEMPLATE

    syn = synthetic_picks(tt, n_events=20, n_stations=20, region_km=100, false_fraction=0.1, seed=9)
    pk = tmp_path / "picks.csv"
    syn.picks[["station_id", "phase", "time", "probability"]].to_csv(pk, index=False)
    st = tmp_path / "stations.csv"
    syn.stations[["station_id", "latitude", "longitude", "elevation_m"]].to_csv(st, index=False)
    m = default_model()
    model = tmp_path / "model.csv"
    pd.DataFrame({"top_km": m.top_km, "vp_km_s": m.vp_kms, "vs_km_s": m.vs_kms}).to_csv(model, index=False)
    common = ["--picks", pk, "--stations", st, "--model", model]

    r = _cli("associate", *common, "-o", tmp_path / "a")
    assert r.returncode == 0, r.stderr
    n_default = len(pd.read_parquet(tmp_path / "a" / "events.parquet"))
    assert n_default >= 18
    # the config's associate: section is used (21 stations: more than there are)
    cfg = yaml.safe_load(TEMPLATE)
    cfg["associate"]["min_stations"] = 21
    cfgf = tmp_path / "run.yaml"
    cfgf.write_text(yaml.safe_dump(cfg))
    r = _cli("associate", cfgf, *common, "-o", tmp_path / "b")
    assert r.returncode == 0, r.stderr
    assert len(pd.read_parquet(tmp_path / "b" / "events.parquet")) == 0
    # ... and the command line wins over it
    r = _cli("associate", cfgf, *common, "-o", tmp_path / "c", "--min-stations", "4")
    assert r.returncode == 0, r.stderr
    assert len(pd.read_parquet(tmp_path / "c" / "events.parquet")) == n_default

    def one_line_error(r, *words):
        assert r.returncode == 1, (r.returncode, r.stderr)
        first = r.stderr.strip().splitlines()[0]
        assert first.startswith("error: ") and "Traceback" not in r.stderr
        for w in words:
            assert w in first, (w, first)

    one_line_error(_cli("associate", tmp_path / "nope.yaml", *common, "-o", tmp_path / "d"), "nope.yaml")
    one_line_error(_cli("associate", *common, "-o", tmp_path / "d", "--min-stations", "0"), "min_stations")
    ho = tmp_path / "header.csv"
    ho.write_text("station_id,phase,time\n")
    one_line_error(
        _cli("associate", "--picks", ho, "--stations", st, "--model", model, "-o", tmp_path / "d"),
        "header.csv",
        "header only",
    )
    unknown = tmp_path / "unknown.csv"
    bad = syn.picks[["station_id", "phase", "time"]].copy()
    bad.loc[bad.index[0], "station_id"] = "ZZ.NOPE"
    bad.to_csv(unknown, index=False)
    r = _cli("associate", "--picks", unknown, "--stations", st, "--model", model, "-o", tmp_path / "e")
    assert r.returncode == 0 and "ZZ.NOPE" in r.stderr  # dropped, with a warning
    one_line_error(
        _cli("associate", "--picks", unknown, "--stations", st, "--model", model, "-o", tmp_path / "e", "--strict"),
        "ZZ.NOPE",
    )
