"""Catalog writers, readers, comparison and FMD: round trips and the Italy 2016 reference outputs."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from quakescale import schema as S
from quakescale.catalog.compare import compare_files, compare_summary, format_summary, match_catalogs
from quakescale.catalog.fmd import b_value_aki_utsu, fmd_counts, fmd_summary, mc_maxc
from quakescale.catalog.readers import CatalogFormatError, detect_format, read_catalog
from quakescale.catalog.writers import CatalogWriteError, read_manifest_ref, write_catalogs
from shared_data import ITALY

needs_italy = pytest.mark.skipif(not ITALY.exists(), reason=f"reference data not found at {ITALY}")

MANIFEST = "RUN/manifest.json#sha256:0123abcd"


def synthetic(n=40, n_sta=6, seed=0):
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2014-08-03T08:30:00Z")
    ev = pd.DataFrame(
        {
            "event_id": np.arange(101, 101 + n),
            "time": t0
            + pd.to_timedelta(np.sort(rng.uniform(0, 2 * 86400, n)), unit="s")
            + pd.to_timedelta(rng.integers(0, 1000, n), unit="ns"),
            "latitude": 27.1 + rng.normal(0, 0.05, n),
            "longitude": 103.35 + rng.normal(0, 0.05, n),
            "depth_km": rng.uniform(2, 15, n),
            "magnitude": np.round(rng.exponential(0.43, n) + 0.5, 2),
            "mag_type": "ML",
            "n_stations": rng.integers(4, n_sta + 1, n),
            "n_p": 6,
            "n_s": 5,
            "rms_s": rng.uniform(0.05, 0.3, n),
            "stage": "relocate",
            "erh_km": rng.uniform(0.1, 1.0, n),
            "erz_km": rng.uniform(0.2, 2.0, n),
            "gap_deg": rng.uniform(40, 200, n),
            "cluster_id": 1,
        }
    )
    st = pd.DataFrame(
        {
            "station_id": [f"XL.L{i:02d}" for i in range(n_sta)],
            "network": "XL",
            "station": [f"L{i:02d}" for i in range(n_sta)],
            "latitude": 27.1 + rng.normal(0, 0.1, n_sta),
            "longitude": 103.35 + rng.normal(0, 0.1, n_sta),
            "elevation_m": 1500.0,
            "kind": "campaign",
        }
    )
    rows = []
    for e in ev.itertuples():
        for k, s in enumerate(st.station_id[:4]):
            for ph, dt in (("P", 2.0 + k), ("S", 3.5 + 1.7 * k)):
                rows.append(
                    {
                        "event_id": e.event_id,
                        "station_id": s,
                        "phase": ph,
                        "channel": "HHZ" if ph == "P" else "HHE",
                        "time": e.time + pd.Timedelta(seconds=dt),
                        "probability": 0.9,
                        "method": "cerp",
                        "residual_s": float(rng.normal(0, 0.1)),
                    }
                )
    return ev, pd.DataFrame(rows), st


# --------------------------------------------------------------------------- writers


def test_write_catalogs_round_trip(tmp_path):
    from obspy import read_events

    ev, pk, st = synthetic()
    calls = []

    def arc_writer(events, picks, stations, path, manifest_ref):
        calls.append((len(events), len(picks), len(stations), manifest_ref))
        Path(path).write_text(f"arc {manifest_ref}\n")
        return path

    out = write_catalogs(ev, pk, st, tmp_path / "catalogs", MANIFEST, arc_writer=arc_writer)
    assert set(out) == {"events_parquet", "picks_parquet", "csv", "quakeml", "hypodd", "arc"}
    assert calls == [(40, 320, 6, MANIFEST)]
    for k in ("events_parquet", "picks_parquet", "csv", "quakeml", "hypodd"):
        assert read_manifest_ref(out[k]) == MANIFEST, k
    assert not list((tmp_path / "catalogs").glob(".*tmp"))  # atomic writes leave no temporaries

    # Parquet: exact round trip, schema metadata kept, extras kept
    t = pq.read_table(out["events_parquet"])
    assert t.schema.metadata[b"quakescale.schema"] == b"events"
    assert t.schema.field("time").type == S.TS
    back = t.to_pandas()
    assert (back["time"].to_numpy() == ev["time"].to_numpy()).all()  # ns exact
    assert np.array_equal(back["event_id"], ev["event_id"]) and "erh_km" in back and "cluster_id" in back
    p = pq.read_table(out["picks_parquet"]).to_pandas()
    assert len(p) == 320 and set(p["network"]) == {"XL"} and p["residual_s"].notna().all()
    assert p.groupby("event_id").size().eq(8).all()

    # CSV through the generic reader: microsecond times, 1e-7 degree positions
    c = read_catalog(out["csv"])
    assert c.attrs["format"] == "csv" and len(c) == 40
    assert np.abs((c["time"] - ev["time"]).dt.total_seconds()).max() < 1e-6
    assert np.abs(c["latitude"] - ev["latitude"]).max() < 1e-7
    assert np.allclose(c["depth_km"], ev["depth_km"], atol=1e-6)

    # QuakeML read back by ObsPy
    cat = read_events(str(out["quakeml"]))
    assert len(cat) == 40
    assert any(cm.text == f"manifest: {MANIFEST}" for cm in cat.comments)
    assert cat.creation_info.author.startswith("QuakeScale")
    for e, row in zip(cat, ev.itertuples()):
        o = e.preferred_origin()
        assert str(e.resource_id) == f"smi:quakescale/event/{row.event_id}"
        assert str(o.resource_id).startswith("smi:quakescale/origin/")
        assert abs(o.time.ns - pd.Timestamp(row.time).value) < 1000  # QuakeML keeps microseconds
        assert o.latitude == pytest.approx(row.latitude, abs=1e-9)
        assert o.longitude == pytest.approx(row.longitude, abs=1e-9)
        assert o.depth == pytest.approx(row.depth_km * 1000, abs=1e-3)
        assert o.quality.standard_error == pytest.approx(row.rms_s)
        assert o.origin_uncertainty.horizontal_uncertainty == pytest.approx(row.erh_km * 1000)
        assert e.preferred_magnitude().mag == pytest.approx(row.magnitude)
        assert len(e.picks) == 8 and len(o.arrivals) == 8
        picks = {str(p.resource_id): p for p in e.picks}
        a = o.arrivals[0]
        assert str(a.pick_id) in picks and a.time_residual is not None
        assert 0 < a.distance < 1.0 and 0 <= a.azimuth < 360  # degrees, from the station table
        assert picks[str(a.pick_id)].waveform_id.network_code == "XL"
    first = pk[pk.event_id == 101].sort_values("time")
    got = sorted(p.time.ns for p in cat[0].picks)
    assert np.allclose(got, first["time"].astype("int64").to_numpy(), atol=1000)

    # hypoDD.reloc read back by the hypoDD reader
    h = read_catalog(out["hypodd"])
    assert h.attrs["format"] == "hypodd_reloc" and len(h) == 40
    assert np.abs((h["time"] - ev["time"]).dt.total_seconds()).max() <= 0.0005 + 1e-9
    assert np.abs(h["latitude"] - ev["latitude"]).max() < 1e-6
    assert np.abs(h["depth_km"] - ev["depth_km"]).max() < 1e-3
    assert np.allclose(h["ex_m"], ev["erh_km"] * 1000, atol=0.06)
    assert np.allclose(h["ez_m"], ev["erz_km"] * 1000, atol=0.06)
    assert (h["cluster_id"] == 1).all() and (h["rms_cc_s"] == -9).all()
    # X/Y are metres east/north of the centroid
    assert abs(h["x_m"].mean()) < 1 and np.corrcoef(h["x_m"], ev["longitude"])[0, 1] > 0.999


def test_write_catalogs_subset_and_no_arc(tmp_path):
    ev, pk, st = synthetic(n=5)
    out = write_catalogs(ev, pk, None, tmp_path, "m", formats=("quakeml", "arc"))
    assert set(out) == {"quakeml"}  # arc skipped without a hook
    assert not (tmp_path / "events.parquet").exists()
    out = write_catalogs(
        ev.iloc[:0], None, None, tmp_path / "empty", "m", formats=("parquet", "csv", "hypodd", "quakeml")
    )
    assert pq.read_table(out["events_parquet"]).num_rows == 0
    assert len(read_catalog(out["csv"])) == 0


def test_write_catalogs_errors_name_the_problem(tmp_path):
    ev, pk, st = synthetic(n=5)
    with pytest.raises(CatalogWriteError, match="depth_km"):
        write_catalogs(ev.drop(columns="depth_km"), pk, st, tmp_path, "m")
    with pytest.raises(CatalogWriteError, match="event_id"):
        write_catalogs(ev, pk.assign(event_id=999), st, tmp_path, "m")
    with pytest.raises(CatalogWriteError, match="appears more than once"):
        write_catalogs(pd.concat([ev, ev.iloc[:1]]), None, st, tmp_path, "m")
    with pytest.raises(CatalogWriteError, match="unknown catalog format"):
        write_catalogs(ev, pk, st, tmp_path, "m", formats=("shapefile",))


@needs_italy
def test_hypodd_writer_reproduces_reference_reloc(tmp_path):
    """Re-writing HypoDD's own hypoDD.reloc gives the same fields, column for column (X/Y/Z are
    relative to our centroid: the same up to a shift and the projection difference)."""
    ref = read_catalog(ITALY / "hypoDD" / "hypoDD.reloc")
    ev = ref.assign(ex_km=ref.ex_m / 1000, ey_km=ref.ey_m / 1000, ez_km=ref.ez_m / 1000)
    out = write_catalogs(ev, None, None, tmp_path, "m", formats=("hypodd",))
    ours = [ln for ln in open(out["hypodd"]) if not ln.startswith("#")]
    theirs = open(ITALY / "hypoDD" / "hypoDD.reloc").read().splitlines(keepends=True)
    assert len(ours) == len(theirs) == 539
    assert [len(a) for a in ours] == [len(b) for b in theirs]  # same fixed-width layout
    for a, b in zip(ours, theirs):
        fa, fb = a.split(), b.split()
        assert fa[:4] + fa[7:] == fb[:4] + fb[7:]
    xyz = np.array([[float(v) for v in a.split()[4:7]] for a in ours]) - np.array(
        [[float(v) for v in b.split()[4:7]] for b in theirs]
    )
    assert (xyz.std(axis=0) < [30, 30, 1]).all()


# --------------------------------------------------------------------------- readers


@needs_italy
def test_readers_on_italy_reference_files():
    real = read_catalog(ITALY / "REAL" / "catalog_sel.txt")
    vel = read_catalog(ITALY / "VELEST" / "new.cat")
    vel_in = read_catalog(ITALY / "VELEST" / "italy.cat")  # CNV-style "hhmm" and N/E suffixes
    reloc = read_catalog(ITALY / "hypoDD" / "hypoDD.reloc")
    loc = read_catalog(ITALY / "hypoDD" / "hypoDD.loc")
    assert [real.attrs["format"], vel.attrs["format"], reloc.attrs["format"], loc.attrs["format"]] == [
        "real",
        "velest",
        "hypodd_reloc",
        "hypodd_loc",
    ]
    assert (len(real), len(vel), len(vel_in), len(reloc), len(loc)) == (659, 659, 659, 539, 652)
    assert str(real["time"].dtype) == "datetime64[ns, UTC]"
    r0 = real.iloc[0]
    assert r0["time"] == pd.Timestamp("2016-10-14T00:00:09.270Z")
    assert (r0.latitude, r0.longitude, r0.depth_km, r0.magnitude, r0.n_p, r0.n_s) == (
        42.802,
        13.2112,
        6.0,
        0.908,
        35,
        24,
    )
    assert vel.iloc[0]["time"] == pd.Timestamp("2016-10-14T00:00:09.150Z") and vel.iloc[0].rms_s == 0.21
    assert vel_in.iloc[12]["time"] == pd.Timestamp("2016-10-14T00:10:23.950Z")  # "161014  010 23.95"
    assert vel_in.iloc[12].latitude == 42.756
    # REAL's initial locations are VELEST's input
    assert np.allclose(vel_in.latitude, real.latitude, atol=1e-4)
    assert reloc.iloc[0]["time"] == pd.Timestamp("2016-10-14T00:00:09.060Z")
    assert (reloc.iloc[0].n_ctp, reloc.iloc[0].n_cts, reloc.iloc[0].rms_ct_s) == (72, 48, 0.066)
    assert reloc["depth_km"].between(0, 30).all() and real["time"].is_monotonic_increasing


def test_detect_format_and_errors(tmp_path):
    bad = tmp_path / "weird.txt"
    bad.write_text("hello world\n")
    with pytest.raises(CatalogFormatError, match="weird.txt"):
        read_catalog(bad)
    with pytest.raises(FileNotFoundError):
        detect_format(tmp_path / "missing.cat")
    real_like = tmp_path / "cat.txt"
    real_like.write_text(
        "    1 2016 10 14 00:00:09.270 9.2704 0.2427 42.8020 13.2112 6.0000 0.908 0.241 35 24 59 27.17\n"
    )
    assert detect_format(real_like) == "real"
    short = tmp_path / "x.reloc"
    short.write_text("1 2 3\n")
    with pytest.raises(CatalogFormatError, match="x.reloc:1"):
        read_catalog(short)


# --------------------------------------------------------------------------- compare


@needs_italy
def test_compare_real_vs_velest_italy():
    res = compare_files(ITALY / "REAL" / "catalog_sel.txt", ITALY / "VELEST" / "new.cat")
    assert (res["catalog_format"], res["reference_format"]) == ("real", "velest")
    assert res["n_cat"] == res["n_ref"] == 659
    assert res["n_matched"] == 659 and res["recall"] == 1.0 and res["precision"] == 1.0
    # measured: median dh 0.690 km, |dz| 1.31 km, |dt| 0.095 s; VELEST moved events 1.0 km deeper on average
    assert res["median_dh_km"] == pytest.approx(0.690, abs=0.02)
    assert res["median_dz_km"] == pytest.approx(1.31, abs=0.03)
    assert res["median_dt_s"] == pytest.approx(0.095, abs=0.005)
    assert res["p90_dh_km"] == pytest.approx(1.19, abs=0.03)
    assert res["mean_dz_km"] == pytest.approx(-1.006, abs=0.02)
    assert "recall 1.000" in format_summary(res)


@needs_italy
def test_compare_hypodd_loc_vs_reloc_matches_readme_shift():
    loc = read_catalog(ITALY / "hypoDD" / "hypoDD.loc")
    reloc = read_catalog(ITALY / "hypoDD" / "hypoDD.reloc")
    m = match_catalogs(loc, reloc)
    assert len(m) == 538  # event 163 moved 6.5 km, beyond max_dist_km=5
    assert (m["cat_event_id"] == m["ref_event_id"]).all()  # every pair is the same event
    assert 163 not in set(m["ref_event_id"])
    s = compare_summary(loc, reloc, m)
    # the data README: loc -> reloc median shift 465 m horizontal, 641 m vertical
    assert s["median_dh_km"] == pytest.approx(0.465, abs=0.005)
    assert s["median_dz_km"] == pytest.approx(0.641, abs=0.005)
    assert s["recall"] == pytest.approx(538 / 539) and s["precision"] == pytest.approx(538 / 652)


def _greedy_loop(cat, ref, max_dt_s, max_dist_km):
    """Reference: the plain sequential greedy over all pairs (O(n*m))."""
    from quakescale.geo import epicentral_km

    tc = cat["time"].astype("int64").to_numpy() / 1e9
    tr = ref["time"].astype("int64").to_numpy() / 1e9
    dt = tc[:, None] - tr[None, :]
    dh = epicentral_km(
        cat.latitude.to_numpy()[:, None],
        cat.longitude.to_numpy()[:, None],
        ref.latitude.to_numpy()[None, :],
        ref.longitude.to_numpy()[None, :],
    )
    pairs = [
        (abs(dt[i, j]), dh[i, j], i, j) for i, j in zip(*np.nonzero((np.abs(dt) <= max_dt_s) & (dh <= max_dist_km)))
    ]
    used_c, used_r, out = set(), set(), []
    for _, _, i, j in sorted(pairs):
        if i not in used_c and j not in used_r:
            used_c.add(i)
            used_r.add(j)
            out.append((i, j))
    return sorted(out)


def test_match_equals_sequential_greedy_on_dense_catalogs():
    rng = np.random.default_rng(3)
    for _trial in range(4):
        n, m = 120, 100
        t0 = pd.Timestamp("2020-01-01", tz="UTC")
        cat = pd.DataFrame(
            {
                "time": t0 + pd.to_timedelta(rng.uniform(0, 60, n), unit="s"),
                "latitude": 40 + rng.uniform(0, 0.05, n),
                "longitude": 10 + rng.uniform(0, 0.05, n),
                "depth_km": rng.uniform(0, 10, n),
            }
        )
        ref = pd.DataFrame(
            {
                "time": t0 + pd.to_timedelta(rng.uniform(0, 60, m), unit="s"),
                "latitude": 40 + rng.uniform(0, 0.05, m),
                "longitude": 10 + rng.uniform(0, 0.05, m),
                "depth_km": rng.uniform(0, 10, m),
            }
        )
        got = match_catalogs(cat, ref, max_dt_s=1.5, max_dist_km=3.0)
        want = _greedy_loop(cat, ref, 1.5, 3.0)
        assert len(want) > 30  # dense: many conflicts to resolve
        assert sorted(zip(got.cat_index, got.ref_index)) == want
        assert got["cat_index"].is_unique and got["ref_index"].is_unique


def test_match_scales_to_1e5_events():
    rng = np.random.default_rng(7)
    n = 100_000
    t0 = pd.Timestamp("2014-08-01", tz="UTC")
    truth = pd.DataFrame(
        {
            "event_id": np.arange(n),
            "time": t0 + pd.to_timedelta(rng.uniform(0, 100 * 86400, n), unit="s"),
            "latitude": 27 + rng.uniform(0, 0.3, n),
            "longitude": 103 + rng.uniform(0, 0.3, n),
            "depth_km": rng.uniform(0, 20, n),
        }
    )
    keep = rng.random(n) < 0.95  # 5 % missed
    cat = truth[keep].copy()
    cat["time"] = cat["time"] + pd.to_timedelta(rng.normal(0, 0.2, len(cat)), unit="s")
    cat["latitude"] += rng.normal(0, 0.005, len(cat))
    n_false = 3000  # spurious events
    false = pd.DataFrame(
        {
            "event_id": np.arange(n, n + n_false),
            "time": t0 + pd.to_timedelta(rng.uniform(0, 100 * 86400, n_false), unit="s"),
            "latitude": 27 + rng.uniform(0, 0.3, n_false),
            "longitude": 103 + rng.uniform(0, 0.3, n_false),
            "depth_km": 5.0,
        }
    )
    cat = pd.concat([cat, false], ignore_index=True).sample(frac=1, random_state=1).reset_index(drop=True)
    t = time.perf_counter()
    m = match_catalogs(cat, truth, max_dt_s=1.5, max_dist_km=5.0)
    dt = time.perf_counter() - t
    assert dt < 10.0, f"matching 1e5 events took {dt:.1f} s"
    n_true = int(keep.sum())
    correct = (m["cat_event_id"] == m["ref_event_id"]).sum()
    assert correct >= 0.995 * n_true
    assert len(m) <= n_true + n_false
    s = compare_summary(cat, truth, m)
    assert s["recall"] == pytest.approx(0.95, abs=0.01)
    assert s["median_dt_s"] == pytest.approx(0.2 * 0.6745, abs=0.01)  # median |N(0, 0.2)|


def test_compare_files_on_written_catalogs(tmp_path):
    ev, pk, st = synthetic(n=30)
    out = write_catalogs(ev, pk, st, tmp_path, "m", formats=("parquet", "csv", "quakeml", "hypodd"))
    for a, b in (("csv", "quakeml"), ("events_parquet", "hypodd"), ("quakeml", "events_parquet")):
        res = compare_files(out[a], out[b])
        assert res["n_matched"] == 30 and res["recall"] == 1.0, (a, b)
        assert res["median_dh_km"] < 1e-3 and res["p90_dt_s"] <= 0.0005 + 1e-9
    # shifted copy: half the events 10 km away are not matched
    ev2 = ev.copy()
    ev2.loc[::2, "latitude"] += 0.09
    res = compare_summary(ev2, ev)
    assert res["n_matched"] == 15


# --------------------------------------------------------------------------- FMD


def test_fmd_b_value_and_mc_recover_gutenberg_richter():
    rng = np.random.default_rng(11)
    b_true, mc_true = 1.0, 1.0
    m = rng.exponential(1 / (b_true * np.log(10)), 400_000) - 0.5  # GR from -0.5
    detect = rng.random(len(m)) < 1 / (1 + np.exp(-(m - 0.8) / 0.08))  # complete above ~1.0
    mags = np.round(m[detect], 1)
    s = fmd_summary(mags)
    assert s["mc"] == pytest.approx(mc_true, abs=0.15)
    assert s["b"] == pytest.approx(b_true, abs=0.05)
    assert s["b_err"] == pytest.approx(s["b"] / np.sqrt(s["n_above_mc"]), rel=0.25)
    c, non, cum = fmd_counts(mags)
    assert cum[0] == len(mags) and non.sum() == len(mags) and np.all(np.diff(cum) <= 0)
    assert mc_maxc([1.0, 1.1, 1.1, 1.1, 1.2], correction=0.2) == pytest.approx(1.3)
    b, sb, n = b_value_aki_utsu(np.round(rng.exponential(1 / (1.5 * np.log(10)), 5000) + 1.95, 1), mc=2.0)
    assert b == pytest.approx(1.5, abs=0.08) and n == 5000
    assert fmd_summary([])["mc"] is None and fmd_summary([1.0] * 5)["b"] is None


def test_event_errors_and_match_events_use_the_one_matcher():
    """``event_errors`` (summary.json's vs_truth) and ``associate.match_events`` pair events as
    ``match_catalogs`` does: known shifts come back as the errors, false events stay unmatched."""
    from quakescale.associate import match_events
    from quakescale.catalog.compare import event_errors

    rng = np.random.default_rng(3)
    n = 40
    truth = pd.DataFrame(
        {
            "event_id": np.arange(n),
            "latitude": 27.0 + rng.uniform(0, 0.5, n),
            "longitude": 103.0 + rng.uniform(0, 0.5, n),
            "depth_km": rng.uniform(2, 15, n),
            "magnitude": rng.uniform(0, 3, n),
            "time": pd.Timestamp("2020-01-01", tz="UTC") + pd.to_timedelta(np.arange(n) * 30.0, unit="s"),
        }
    )
    found = truth.iloc[:30].copy()
    found["latitude"] += 0.9 / 111.19  # 0.9 km north
    found["depth_km"] += 0.4
    found["magnitude"] += 0.2
    found["time"] += pd.Timedelta(0.3, unit="s")
    false = truth.iloc[:5].assign(time=lambda d: d["time"] + pd.Timedelta(12, unit="s"))  # between truth events
    cat = pd.concat([found, false], ignore_index=True)
    res = event_errors(cat, truth)
    assert (res["n_matched"], res["recall"], res["precision"]) == (30, 0.75, round(30 / 35, 4))
    assert res["median_epicentral_error_km"] == pytest.approx(0.9, abs=1e-3)
    assert res["median_depth_error_km"] == pytest.approx(0.4) and res["median_magnitude_error"] == pytest.approx(0.2)
    m = match_catalogs(cat, truth)
    e = match_events(cat, truth, max_dt_s=1.5, max_dist_km=5.0)
    assert m["cat_index"].tolist() == list(range(30)) and m["ref_index"].tolist() == list(range(30))
    assert e["i_found"].tolist() == m["cat_index"].tolist() and e["i_ref"].tolist() == m["ref_index"].tolist()
    assert np.allclose(e["dt_s"], 0.3) and np.allclose(e["dist_km"], m["dh_km"])
