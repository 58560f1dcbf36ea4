"""archive.merge_gapped: ObsPy's ``merge(method=1, fill_value=None)`` in one pass for gap-separated
pieces on one sample grid, and ObsPy's own merge for everything else -- the same traces either way."""

from __future__ import annotations

import numpy as np
import pytest
from obspy import Stream, Trace, UTCDateTime

from quakescale.archive import merge_gapped, read_station_day

T0 = UTCDateTime("2020-01-01T00:00:00")


def _piece(start_s: float, n: int, channel: str = "HHZ", sr: float = 100.0, dtype=np.int32, seed: int = 0) -> Trace:
    data = np.random.default_rng(seed).integers(-5000, 5000, n).astype(dtype)
    return Trace(
        data,
        header={"network": "XX", "station": "STA", "channel": channel, "starttime": T0 + start_s, "sampling_rate": sr},
    )


def _assert_same(a: Stream, b: Stream) -> None:
    a, b = a.copy(), b.copy()
    a.sort()
    b.sort()
    assert [tr.id for tr in a] == [tr.id for tr in b]
    for x, y in zip(a, b):
        assert dict(x.stats) == dict(y.stats)
        assert np.ma.isMaskedArray(x.data) == np.ma.isMaskedArray(y.data)
        assert x.data.dtype == y.data.dtype
        mx, my = np.ma.getmaskarray(x.data), np.ma.getmaskarray(y.data)
        assert np.array_equal(mx, my)
        assert np.array_equal(np.ma.getdata(x.data)[~mx], np.ma.getdata(y.data)[~my])


def _obspy(st: Stream) -> Stream:
    st = st.copy()
    st.merge(method=1, fill_value=None)
    return st


@pytest.mark.parametrize(
    "layout",
    [
        [(0, 1000), (10.0, 500), (20.0, 300)],  # two gaps
        [(0, 1000), (12.0, 300), (15.0, 700)],  # a gap, then adjacent pieces (15.0 = 12.0 + 300 samples)
        [(0, 1000), (10.01, 500)],  # a gap of one sample
        [(20.0, 300), (0, 1000), (10.0, 500)],  # out of order
        [(0, 86_400)],  # one piece: returned as it is
    ],
)
def test_gaps_on_the_grid_equal_obspy(layout, monkeypatch):
    st = Stream([_piece(t, n, ch, seed=i) for i, (t, n) in enumerate(layout) for ch in ("HHZ", "HHN")])
    st.append(_piece(0, 0, "HHE"))  # an empty trace: dropped, as ObsPy drops it
    want = _obspy(st)
    monkeypatch.setattr(Stream, "merge", lambda *a, **k: pytest.fail("took ObsPy's merge"))  # the one-pass path
    fast = merge_gapped(st.copy())
    _assert_same(fast, want)
    if len(layout) > 1:  # every layout with pieces has a gap
        assert all(np.ma.isMaskedArray(tr.data) for tr in fast)


@pytest.mark.parametrize(
    "extra",
    [
        ("overlap, same samples", lambda: _piece(0, 1000, seed=0).slice(T0 + 5.0, T0 + 9.0)),  # a duplicate
        ("overlap, other samples", lambda: _piece(9.0, 300, seed=7)),
        ("off the grid by 3 ms", lambda: _piece(20.003, 300, seed=8)),
        ("another dtype", lambda: _piece(30.0, 100, dtype=np.float32, seed=9)),
    ],
    ids=lambda e: e[0],
)
def test_everything_else_is_obspys_merge(extra, monkeypatch):
    _, make = extra
    st = Stream([_piece(0, 1000, seed=0), _piece(12.0, 500, seed=1), make()])
    calls = []
    merge = Stream.merge
    monkeypatch.setattr(Stream, "merge", lambda self, *a, **k: calls.append(len(self)) or merge(self, *a, **k))
    try:
        want = _obspy(st)
    except Exception as exc:  # ObsPy refuses (mixed dtypes): so must we, with its error
        with pytest.raises(type(exc)):
            merge_gapped(st.copy())
        assert calls == [3, 3]
        return
    _assert_same(merge_gapped(st.copy()), want)
    assert calls == [3, 3]  # ObsPy's merge, on all three pieces as read


def test_read_station_day_of_a_gapped_archive_equals_obspys_merge(tmp_path):
    """A day written as data centres serve it (pieces between gaps in one MiniSEED file per
    channel), read by read_station_day (fast merge) and by ObsPy's read + merge."""
    from obspy import read

    day = "2020-01-01"
    root = tmp_path / "sds"
    layout = [(0, 360_000), (3_700.0, 50_000), (4_200.0, 1_000_000), (14_205.37, 200_000)]
    for ch in ("HHZ", "HHN", "HHE"):
        d = root / "2020" / "XX" / "STA" / f"{ch}.D"
        d.mkdir(parents=True)
        Stream([_piece(t, n, ch, seed=i) for i, (t, n) in enumerate(layout)]).write(
            str(d / f"XX.STA..{ch}.D.2020.001"), format="MSEED", reclen=512, encoding="STEIM2"
        )
    got = read_station_day(root, "XX.STA", day)
    want = Stream()
    for f in sorted(root.rglob("*.001")):
        want += read(str(f))
    want.merge(method=1, fill_value=None)
    want.trim(UTCDateTime(day), UTCDateTime(day) + 86400, nearest_sample=False)
    _assert_same(got, want)
    assert all(np.ma.getmaskarray(tr.data).sum() > 0 for tr in got)
