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
    synthetic_picks,
    unassociated,
)
from quakescale.formats import picks_io
from quakescale.formats.velmodels import read_model
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
    print(f"\nsynthetic: {len(syn.picks)} picks (30 % false), {len(syn.events)} events -> {len(ev)} found; "
          f"recall {recall:.3f} precision {precision:.3f}; median epicentre error {m['dist_km'].median():.2f} km; "
          f"{len(syn.picks) / secs:.0f} picks/s")
    assert recall >= 0.95
    assert precision >= 0.95
    assert m["dist_km"].median() < 2.5
    # the picks of a found event are mostly its own true picks
    true_eid = syn.picks["event_id"].to_numpy()[asg["pick_index"].to_numpy()]
    assert (true_eid < 0).mean() < 0.05


def test_assignment_invariants(syn, assoc, result):
    ev, asg, _ = result
    assert asg["pick_index"].is_unique  # each pick used at most once
    assert (asg["residual_s"].abs() <= assoc.max_residual_s + 1e-9).all()
    # per event, at most one P and one S per station; counts match the event rows
    assert not asg.duplicated(["event_id", "station_id", "phase"]).any()
    g = asg.groupby("event_id")
    counts = pd.DataFrame({"n_stations": g["station_id"].nunique(), "n_p": g["phase"].apply(lambda x: (x == "P").sum()),
                           "n_s": g["phase"].apply(lambda x: (x == "S").sum())})
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
        ev = pd.DataFrame({"event_id": [eid], "time": [t + pd.Timedelta(seconds=time_s)], "latitude": [0.0],
                           "longitude": [0.0], "depth_km": [5.0], "n_stations": [n_picks], "n_p": [n_picks],
                           "n_s": [0], "n_picks": [n_picks], "score": [float(n_picks)]})
        asg = pd.DataFrame({"event_id": eid, "station_id": [f"X.S{i}" for i in pick_idx], "phase": "P",
                            "time": t, "residual_s": 0.0, "weight": 1.0, "pick_index": pick_idx})
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


def test_bad_input_is_named(syn, assoc):
    bad = syn.picks.head(20).copy()
    bad.loc[bad.index[3], "station_id"] = "ZZ.NOPE"
    with pytest.raises(AssociationInputError, match="ZZ.NOPE"):
        assoc.associate(bad)
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
    pd.DataFrame({"id": p["station_id"], "timestamp": p["time"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                  "type": p["phase"].str.lower(), "prob": 0.7}).to_csv(csv, index=False)
    got = picks_io.read_csv_picks(csv)
    assert list(got.columns[:12]) == [f.name for f in schema.PICKS]
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
    print(f"\nItaly 2016-10-14 00-04h: {len(picks)} STA/LTA picks in {secs:.1f} s; {len(ev)} events, REAL {len(ref)}; "
          f"matched {len(m)} (|dt|<=1.5 s, <=5 km): recall {recall:.3f}, precision vs REAL {precision:.3f}")
    assert recall >= 0.85
    assert precision >= 0.6
    assert asg["pick_index"].is_unique
