"""steim.read_steim: the compiled reader of plain Steim day files gives ObsPy's traces, sample
for sample, or None (then ObsPy reads the file); read_station_day the same day either way."""

from __future__ import annotations

import numpy as np
import pytest
from obspy import Stream, Trace, UTCDateTime, read

import quakescale.steim as steim
from quakescale.archive import read_station_day
from quakescale.steim import read_steim
from shared_data import DATA

T0 = UTCDateTime("2020-01-01T00:00:00")


def _trace(n: int, start=T0, scale: float = 1e3, seed: int = 0, channel: str = "HHZ", sr: float = 100.0) -> Trace:
    """Random-walk counts of every Steim width: quiet stretches (4-6 bit differences), loud ones
    (15-30 bit)."""
    rng = np.random.default_rng(seed)
    d = np.round(rng.standard_normal(n) * scale * rng.choice([0.001, 0.05, 1.0, 40.0], n, p=[0.3, 0.3, 0.3, 0.1]))
    x = np.cumsum(d).astype(np.int64)
    x = np.clip(x, -(2**31), 2**31 - 1).astype(np.int32)
    return Trace(
        x,
        header={
            "network": "XX",
            "station": "ABCD",
            "location": "00",
            "channel": channel,
            "starttime": start,
            "sampling_rate": sr,
        },
    )


def _write(path, st: Stream, encoding: str, reclen: int = 512) -> None:
    st.write(str(path), format="MSEED", encoding=encoding, reclen=reclen)


def _assert_obspy(path) -> Stream:
    got, ref = read_steim(path), read(str(path), format="MSEED")
    assert got is not None
    assert len(got) == len(ref)
    for a, b in zip(got, ref):
        assert a.id == b.id and a.stats.starttime == b.stats.starttime and a.stats.npts == b.stats.npts
        assert a.stats.sampling_rate == b.stats.sampling_rate
        assert a.data.dtype == b.data.dtype == np.int32
        np.testing.assert_array_equal(a.data, b.data)
        assert dict(a.stats) == dict(b.stats)
    return got


@pytest.mark.parametrize("encoding,reclen", [("STEIM2", 512), ("STEIM2", 4096), ("STEIM1", 512), ("STEIM1", 4096)])
def test_same_samples_as_obspy(tmp_path, encoding, reclen):
    tr = _trace(200_003, scale=1e3 if encoding == "STEIM1" else 1e2)
    if encoding == "STEIM1":  # a jump to the int32 limit and back: Steim-1's full 32-bit words (Steim-2 holds 30 bits)
        tr.data[tr.stats.npts // 3] = 2**31 - 7
    f = tmp_path / "a.mseed"
    _write(f, Stream([tr]), encoding, reclen)
    got = _assert_obspy(f)
    assert got[0].stats.npts == 200_003


def test_gaps_make_traces_as_obspy(tmp_path):
    a = _trace(50_000, seed=1, scale=10)
    b = _trace(30_000, start=a.stats.endtime + 12.34, seed=2, scale=10)
    c = _trace(20_000, start=b.stats.endtime + 0.01 * 3, seed=3, scale=10)  # a 2-sample gap
    f = tmp_path / "g.mseed"
    _write(f, Stream([a, b, c]), "STEIM2")
    assert len(_assert_obspy(f)) == 3


def test_selection_keeps_the_overlapping_records(tmp_path):
    tr = _trace(360_000, scale=10)
    f = tmp_path / "s.mseed"
    _write(f, Stream([tr]), "STEIM2")
    t0, t1 = T0 + 3000, T0 + 3030
    got = read_steim(f, t0.ns, t1.ns)
    assert got is not None and len(got) == 1
    assert got[0].stats.starttime <= t0 and got[0].stats.endtime >= t1
    assert got[0].stats.npts < 10_000  # a few records, not the file
    ref = read(str(f)).slice(t0, t1)
    np.testing.assert_array_equal(got.slice(t0, t1)[0].data, ref[0].data)


@pytest.mark.parametrize(
    "case",
    ["int32", "little", "overlap", "two_channels", "off_grid", "corrupt_last", "not_mseed"],
)
def test_anything_else_is_obspys(tmp_path, case):
    """Other encodings, little-endian files, overlaps, mixed channels, records off the grid and a
    record whose last sample fails the Steim check: None, and read_station_day still reads them
    as ObsPy does."""
    tr = _trace(20_000, scale=10)
    f = tmp_path / "x.mseed"
    if case == "int32":
        _write(f, Stream([tr]), "INT32")
    elif case == "little":
        Stream([tr]).write(str(f), format="MSEED", encoding="STEIM2", reclen=512, byteorder="<")
    elif case == "overlap":
        _write(f, Stream([tr, _trace(5000, start=T0 + 10, seed=5, scale=10)]), "STEIM2")
    elif case == "two_channels":
        _write(f, Stream([tr, _trace(20_000, seed=6, scale=10, channel="HHN")]), "STEIM2")
    elif case == "off_grid":
        _write(f, Stream([tr, _trace(5000, start=tr.stats.endtime + 0.0123, seed=7, scale=10)]), "STEIM2")
    elif case == "corrupt_last":
        _write(f, Stream([tr]), "STEIM2")
        raw = bytearray(f.read_bytes())
        raw[64 + 8 : 64 + 12] = (12345).to_bytes(4, "big")  # the first record's reverse-integration constant
        f.write_bytes(bytes(raw))
    else:
        f.write_bytes(b"not a MiniSEED file at all" * 40)
    assert read_steim(f) is None


def test_read_station_day_same_either_way(tmp_path, monkeypatch):
    """A padded station-day (neighbours' edges read too, one gap) is the same stream with the
    compiled reader and with ObsPy's."""
    day = UTCDateTime("2020-01-02")
    n = 86400 * 20  # 20 Hz: a day of small records
    for k, d in enumerate((day - 86400, day, day + 86400)):
        comps = {}
        for j, c in enumerate("ZNE"):
            tr = _trace(n, start=d, seed=10 * k + j, scale=10, sr=20.0)
            if k == 1 and c == "N":
                tr = tr.copy()
                tr.data = np.ma.masked_array(tr.data, np.zeros(n, bool))
                tr.data.mask[100_000:100_500] = True
                pieces = tr.split()
                comps[c] = pieces
                continue
            comps[c] = Stream([tr])
        for c, st in comps.items():
            dd = tmp_path / str(d.year) / "XX" / "ABCD" / f"HH{c}.D"
            dd.mkdir(parents=True, exist_ok=True)
            st = st.copy()
            for tr in st:
                tr.stats.channel = f"HH{c}"
            _write(dd / f"XX.ABCD.00.HH{c}.D.{d.year}.{d.julday:03d}", st, "STEIM2")
    fast = read_station_day(tmp_path, "XX.ABCD", "2020-01-02", channels=["HH?"], pad_s=30.0)
    calls = []
    orig = steim.read_steim
    monkeypatch.setattr(steim, "read_steim", lambda *a, **k: calls.append(a) or orig(*a, **k))
    read_station_day(tmp_path, "XX.ABCD", "2020-01-02", channels=["HH?"], pad_s=30.0)
    assert len(calls) == 9  # 3 components x (day + 2 neighbours)
    monkeypatch.setattr(steim, "read_steim", lambda *a, **k: None)
    ref = read_station_day(tmp_path, "XX.ABCD", "2020-01-02", channels=["HH?"], pad_s=30.0)
    assert [tr.id for tr in fast] == [tr.id for tr in ref]
    for a, b in zip(fast, ref):
        assert a.stats.starttime == b.stats.starttime and a.stats.npts == b.stats.npts == n + 2 * 30 * 20 + 1
        np.testing.assert_array_equal(np.ma.getmaskarray(a.data), np.ma.getmaskarray(b.data))
        np.testing.assert_array_equal(np.ma.getdata(a.data), np.ma.getdata(b.data))
    assert np.ma.isMaskedArray(fast[1].data) and fast[1].data.mask.sum() == 500


def test_read_station_day_decodes_the_next_component_on_a_pool(tmp_path, monkeypatch):
    """``decode_on``: the second component's day file is decoded on the pool while the first is
    decoded by the caller (the third by the caller again); the same stream.  A decode that fails
    on the pool is read again by the caller, as without a pool."""
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    day = UTCDateTime("2020-01-02")
    for j, c in enumerate("ZNE"):
        dd = tmp_path / str(day.year) / "XX" / "ABCD" / f"HH{c}.D"
        dd.mkdir(parents=True, exist_ok=True)
        tr = _trace(86400 * 5, start=day, seed=j, scale=10, sr=5.0, channel=f"HH{c}")
        _write(dd / f"XX.ABCD.00.HH{c}.D.{day.year}.{day.julday:03d}", Stream([tr]), "STEIM2")
    ref = read_station_day(tmp_path, "XX.ABCD", "2020-01-02", channels=["HH?"])
    where = []
    orig = steim.read_steim

    def spy(path, *a, **k):
        where.append((Path(path).name.split(".")[3], threading.current_thread().name))
        return orig(path, *a, **k)

    monkeypatch.setattr(steim, "read_steim", spy)
    with ThreadPoolExecutor(1, thread_name_prefix="pool") as pool:
        got = read_station_day(tmp_path, "XX.ABCD", "2020-01-02", channels=["HH?"], decode_on=pool.submit)
        assert sorted(where) == [("HHE", "MainThread"), ("HHN", "pool_0"), ("HHZ", "MainThread")]
        for a, b in zip(got, ref, strict=True):
            assert a.id == b.id and a.stats.starttime == b.stats.starttime
            np.testing.assert_array_equal(a.data, b.data)

        def fails_on_the_pool(path, *a, **k):
            if threading.current_thread().name.startswith("pool"):
                raise MemoryError("no room for the day on the pool")
            return orig(path, *a, **k)

        monkeypatch.setattr(steim, "read_steim", fails_on_the_pool)
        again = read_station_day(tmp_path, "XX.ABCD", "2020-01-02", channels=["HH?"], decode_on=pool.submit)
    for a, b in zip(again, ref, strict=True):
        np.testing.assert_array_equal(a.data, b.data)


def test_real_files_same_as_obspy():
    """The real Mesetas hours (loose MiniSEED as FDSN serves it, blockette 1001 first): ObsPy's
    samples wherever the fast path takes the file."""
    files = sorted((DATA / "mesetas2019_dev" / "waveforms").glob("*.mseed"))
    if not files:
        pytest.skip("real Mesetas waveforms not present")
    taken = 0
    for f in files:
        if read_steim(f) is not None:
            _assert_obspy(f)
            taken += 1
    assert taken >= len(files) - 3  # FLO2's files repeat their records (an overlap): ObsPy's


def test_not_a_file(tmp_path):
    assert read_steim(tmp_path / "missing") is None
