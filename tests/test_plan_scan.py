"""The batched archive scan of ``plan_station_days`` gives exactly the table of the
per-station-day path (``scan_station_day``), on the synthetic world and on a hand-made SDS tree
with every kind of file the fast header parser must accept or hand over to ObsPy."""

from __future__ import annotations

import datetime as dt
import json
import zlib

import numpy as np
import pandas as pd
import pytest
from obspy import Stream, Trace, UTCDateTime

from quakescale import archive
from quakescale.archive import (
    StationDay,
    load_inventory,
    mseed_segments,
    plan_station_days,
    scan_station_day,
    stations_table,
)


def reference_plan(root, station_ids, days, channels) -> pd.DataFrame:
    """The per-station-day path, one ``scan_station_day`` per (day, station)."""
    return pd.DataFrame([scan_station_day(root, StationDay(d, s), channels) for d in days for s in station_ids])


def assert_same(a: pd.DataFrame, b: pd.DataFrame):
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_exact=True)


# ----------------------------------------------------------------------------- synthetic world
def test_world_plan_equals_per_station_day_scan(small_world):
    meta = json.loads((small_world / "world.json").read_text())
    ids = list(stations_table(load_inventory(small_world / "stations.xml")).station_id)
    days = [dt.date(2014, 8, 3), dt.date(2014, 8, 4)]
    chans = ["HH?", "EH?"]
    ref = reference_plan(small_world / "sds", ids, days, chans)
    fast = plan_station_days(small_world / "sds", ids, days, chans)
    assert_same(fast, ref)
    assert_same(plan_station_days(small_world / "sds", ids, days, chans, workers=2), ref)  # process pool
    # the table has teeth: the world's corrupt file and gaps are there
    assert (fast.state == "corrupt").sum() == 1
    assert meta["corrupt_file"].split("/")[-1] in fast[fast.state == "corrupt"].reason.iloc[0]
    assert set(fast[fast.state == "gappy"].station_id) == {g["station_id"] for g in meta["gaps"]}
    day1 = fast[(fast.day == "2014-08-03") & (fast.state != "corrupt")]
    assert len(day1) == 7 and day1.coverage.between(0.07, 2 / 24 + 1e-9).all()  # 2 h of 24 h recorded
    assert day1[day1.state == "ok"].coverage.to_numpy() == pytest.approx(2 / 24, abs=1e-6)


# ----------------------------------------------------------------------------- hand-made tree
D1, D2, D3 = dt.date(2014, 12, 31), dt.date(2015, 1, 1), dt.date(2015, 1, 2)


def _tr(sid, cha, t0, n, fs=100.0, loc=""):
    net, sta = sid.split(".")
    seed = zlib.crc32(f"{sid}{cha}{t0}".encode())
    tr = Trace(np.random.default_rng(seed).integers(-500, 500, n).astype(np.int32))
    tr.stats.update(
        dict(network=net, station=sta, location=loc, channel=cha, sampling_rate=fs, starttime=UTCDateTime(t0))
    )
    return tr


def _path(root, sid, cha, day, loc=""):
    net, sta = sid.split(".")
    d = root / f"{day.year}" / net / sta / f"{cha}.D"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{net}.{sta}.{loc}.{cha}.D.{day.year}.{day.timetuple().tm_yday:03d}"


def _write(root, sid, cha, day, traces, reclen=512, byteorder=">", loc=""):
    p = _path(root, sid, cha, day, loc)
    Stream(traces).write(str(p), format="MSEED", encoding="STEIM2", reclen=reclen, byteorder=byteorder)
    return p


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("sds")
    files = {}
    t = lambda d, h=0.0: UTCDateTime(d.isoformat()) + h * 3600  # noqa: E731
    for d in (D1, D2):  # XX.OK: three clean components, many records, across the year boundary
        for cha in ("HHZ", "HHN", "HHE"):
            _write(root, "XX.OK", cha, d, [_tr("XX.OK", cha, t(d, 1), 60000)])
    # XX.GAP: a 30 s gap in Z, overlapping traces in N, E begins the day before (clipped)
    _write(
        root, "XX.GAP", "HHZ", D2, [_tr("XX.GAP", "HHZ", t(D2, 1), 20000), _tr("XX.GAP", "HHZ", t(D2, 1) + 230, 20000)]
    )
    _write(
        root, "XX.GAP", "HHN", D2, [_tr("XX.GAP", "HHN", t(D2, 1), 20000), _tr("XX.GAP", "HHN", t(D2, 1) + 150, 20000)]
    )
    _write(root, "XX.GAP", "HHE", D2, [_tr("XX.GAP", "HHE", t(D2) - 60, 30000)])
    # XX.MISS: no E component; also a second location code whose name sorts after the first
    _write(root, "XX.MISS", "HHZ", D2, [_tr("XX.MISS", "HHZ", t(D2, 2), 5000)])
    _write(root, "XX.MISS", "HHZ", D2, [_tr("XX.MISS", "HHZ", t(D2, 3), 9000, loc="10")], loc="10")
    _write(root, "XX.MISS", "HHN", D2, [_tr("XX.MISS", "HHN", t(D2, 2), 5000)])
    # XX.BAD: Z is not MiniSEED at all -> corrupt, reason from ObsPy naming the file
    files["junk"] = _path(root, "XX.BAD", "HHZ", D2)
    files["junk"].write_bytes(b"this is not a miniseed file\n" * 40)
    for cha in ("HHN", "HHE"):
        _write(root, "XX.BAD", cha, D2, [_tr("XX.BAD", cha, t(D2, 1), 3000)])
    # XX.MIX: Z has records of 512 and 4096 bytes (ObsPy reads it; our fixed-length parser declines),
    # N is little-endian; on D3 E is an empty file (corrupt)
    a = _write(root, "XX.MIX", "HHZ", D2, [_tr("XX.MIX", "HHZ", t(D2, 4), 4000)], reclen=512)
    tmp = root / "part2.mseed"
    Stream([_tr("XX.MIX", "HHZ", t(D2, 5), 8000)]).write(str(tmp), format="MSEED", encoding="STEIM2", reclen=4096)
    a.write_bytes(a.read_bytes() + tmp.read_bytes())
    tmp.unlink()
    files["mixed"] = a
    files["little"] = _write(root, "XX.MIX", "HHN", D2, [_tr("XX.MIX", "HHN", t(D2, 4), 4000)], byteorder="<")
    _write(root, "XX.MIX", "HHN", D3, [_tr("XX.MIX", "HHN", t(D3, 4), 4000)])
    _write(root, "XX.MIX", "HHE", D2, [_tr("XX.MIX", "HHE", t(D2, 4), 4000)])
    _write(root, "XX.MIX", "HHZ", D3, [_tr("XX.MIX", "HHZ", t(D3, 4), 4000)])
    files["empty"] = _path(root, "XX.MIX", "HHE", D3)
    files["empty"].write_bytes(b"")
    # XX.PAT: HH? has only Z on D2 (first pattern wins -> incomplete); EH? complete on D2 and D3
    _write(root, "XX.PAT", "HHZ", D2, [_tr("XX.PAT", "HHZ", t(D2, 1), 1000)])
    for d in (D2, D3):
        for cha in ("EHZ", "EHN", "EHE"):
            _write(root, "XX.PAT", cha, d, [_tr("XX.PAT", cha, t(d, 6), 2000, fs=50.0)])
    # stray entries the listing must ignore
    (root / "2015" / "XX" / "OK" / "README").write_text("not a channel dir")
    (_path(root, "XX.OK", "HHZ", D2).parent / "XX.OK..HHZ.D.2015.001.bak").write_bytes(b"x")
    return root, files


STATIONS = ["XX.OK", "XX.GAP", "XX.MISS", "XX.BAD", "XX.MIX", "XX.PAT", "XX.NONE"]


def test_tree_plan_equals_per_station_day_scan(tree):
    root, files = tree
    days = [D1, D2, D3]
    for chans in (["HH?", "EH?"], ["EH?"], ["HH[ZN]"]):
        ref = reference_plan(root, STATIONS, days, chans)
        assert_same(plan_station_days(root, STATIONS, days, chans), ref)
    chans = ["HH?", "EH?"]
    ref = reference_plan(root, STATIONS, days, chans)
    assert_same(plan_station_days(root, STATIONS, days, chans, workers=2), ref)
    # order follows the arguments (days, then stations), duplicates included
    assert_same(
        plan_station_days(root, ["XX.PAT", "XX.OK"], [D3, D2, D3], chans),
        reference_plan(root, ["XX.PAT", "XX.OK"], [D3, D2, D3], chans),
    )

    r = ref.set_index("unit")
    assert r.loc["2015-01-01/XX.OK", "state"] == "ok" and r.loc["2014-12-31/XX.OK", "state"] == "ok"
    assert r.loc["2015-01-01/XX.OK", "coverage"] == pytest.approx(600 / 86400)
    g = r.loc["2015-01-01/XX.GAP"]
    assert g.state == "gappy" and g.n_gaps == 1 and g.gap_s == pytest.approx(30.0, abs=0.02)
    assert g.coverage == pytest.approx(
        240 / 86400
    )  # min over components: Z 400 s, N 350 s (overlap), E 240 s in the day
    m = r.loc["2015-01-01/XX.MISS"]
    assert m.state == "incomplete" and "['E']" in m.reason and m.n_files == 2
    b = r.loc["2015-01-01/XX.BAD"]
    assert b.state == "corrupt" and not b.readable and str(files["junk"]) in b.reason
    assert b.bytes == sum(f.stat().st_size for f in files["junk"].parent.parent.rglob("*.D.*"))  # Z is scanned last
    x = r.loc["2015-01-01/XX.MIX"]  # Z mixed record lengths (ObsPy: 40 s, gap, 80 s), N little-endian
    assert x.state == "gappy" and x.n_gaps == 1 and x.gap_s == pytest.approx(3600 - 40, abs=0.02)
    x = r.loc["2015-01-02/XX.MIX"]
    assert x.state == "corrupt" and str(files["empty"]) in x.reason and x.bytes == 0  # E is scanned first
    p = r.loc["2015-01-01/XX.PAT"]
    assert p.channels == "HH?" and p.state == "incomplete"
    assert r.loc["2015-01-02/XX.PAT", "channels"] == "EH?" and r.loc["2015-01-02/XX.PAT", "state"] == "ok"
    assert (ref[ref.station_id == "XX.NONE"].state == "no_data").all()
    assert (ref[ref.day == "2014-12-31"].state != "no_data").sum() == 1


def test_fast_parser_declines_and_obspy_fallback_agrees(tree):
    """The mixed-record-length file goes through ObsPy; the little-endian one through the fast
    parser; both give the coverage of their own records."""
    root, files = tree
    assert mseed_segments(files["mixed"]) is None and mseed_segments(files["junk"]) is None
    a, b, r = mseed_segments(files["little"])
    assert a.min() == UTCDateTime(D2.isoformat()).timestamp + 4 * 3600 and (r == 100.0).all()
    cov, n_gaps, _ = archive.coverage_and_gaps(
        *archive._segments(files["mixed"]), UTCDateTime("2015-01-01").timestamp, UTCDateTime("2015-01-02").timestamp
    )
    assert cov == pytest.approx(40 + 80) and n_gaps == 1


def test_inexact_batch_keys_fall_back_file_by_file(tree, monkeypatch):
    """When the per-file offsets would not keep times exact, every file is scanned alone: same table."""
    root, _ = tree
    chans = ["HH?", "EH?"]
    ref = reference_plan(root, STATIONS, [D2], chans)
    monkeypatch.setattr(archive, "_SEG", 131072.3)
    assert_same(plan_station_days(root, STATIONS, [D2], chans, workers=1), ref)
    monkeypatch.setattr(archive, "_BATCH_FILES", 2)  # many small passes
    assert_same(plan_station_days(root, STATIONS, [D2], chans, workers=1), ref)


def test_days_near_1970_use_the_exact_path(tmp_path):
    d = dt.date(1970, 1, 2)
    for cha in ("HHZ", "HHN", "HHE"):
        _write(
            tmp_path,
            "XX.OLD",
            cha,
            d,
            [
                _tr("XX.OLD", cha, UTCDateTime(d.isoformat()) + 100, 3000),
                _tr("XX.OLD", cha, UTCDateTime(d.isoformat()) + 200, 3000),
            ],
        )
    ref = reference_plan(tmp_path, ["XX.OLD"], [d], ["HH?"])
    assert ref.state.iloc[0] == "gappy"
    assert_same(plan_station_days(tmp_path, ["XX.OLD"], [d], ["HH?"]), ref)


def test_empty_plan():
    assert len(plan_station_days("/nonexistent", [], [D2], ["HH?"])) == 0
