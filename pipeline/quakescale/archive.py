"""The waveform archive: station-days, planning, reading (ObsPy SDS layout + StationXML).

A *station-day* (``StationDay``) is the unit of work: one station's 3-component data of one UTC
day.  :func:`plan_station_days` lists what the archive actually holds (availability, gaps,
readability) without decoding the samples; :func:`read_station_day` returns the merged
3-component ObsPy Stream of one station-day or raises :class:`ArchiveError` naming the file.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from obspy import Inventory, Stream, UTCDateTime, read, read_inventory

from .schema import STATIONS, conform


class ArchiveError(RuntimeError):
    """A station-day that cannot be read; the message names the file or station."""


@dataclass(frozen=True, order=True)
class StationDay:
    day: dt.date
    station_id: str

    @property
    def unit(self) -> str:
        return f"{self.day.isoformat()}/{self.station_id}"

    @classmethod
    def from_unit(cls, unit: str) -> "StationDay":
        try:
            d, sid = unit.split("/")
            return cls(dt.date.fromisoformat(d), sid)
        except ValueError:
            raise ValueError(f"station-day {unit!r} must look like YYYY-MM-DD/NET.STA") from None

    @property
    def network(self) -> str:
        return self.station_id.split(".")[0]

    @property
    def station(self) -> str:
        return self.station_id.split(".")[1]


# ----------------------------------------------------------------------------- inventory
def load_inventory(path) -> Inventory:
    """StationXML file, or every ``*.xml`` in a directory."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.xml"))
        if not files:
            raise ArchiveError(f"inventory directory {path} holds no *.xml StationXML files")
        inv = Inventory(networks=[], source="quakescale")
        for f in files:
            inv += _read_inv(f)
        return inv
    return _read_inv(path)


def _read_inv(f: Path) -> Inventory:
    try:
        return read_inventory(str(f))
    except Exception as exc:  # obspy raises many types
        raise ArchiveError(f"cannot read StationXML {f}: {exc}") from exc


def stations_table(inv: Inventory, station_ids: list[str] | None = None) -> pd.DataFrame:
    """One row per NET.STA: station_id, network, station, latitude, longitude, elevation_m."""
    rows = {}
    for net in inv:
        for sta in net:
            sid = f"{net.code}.{sta.code}"
            if sid not in rows:
                rows[sid] = dict(station_id=sid, network=net.code, station=sta.code, latitude=sta.latitude, longitude=sta.longitude, elevation_m=sta.elevation, kind="")
    df = pd.DataFrame(list(rows.values()), columns=STATIONS.names)
    if station_ids:
        missing = sorted(set(station_ids) - set(df.station_id))
        if missing:
            raise ArchiveError(f"stations {missing} are not in the inventory (it has {sorted(df.station_id)[:20]}...)")
        df = df[df.station_id.isin(station_ids)]
    return df.sort_values("station_id").reset_index(drop=True)


# ----------------------------------------------------------------------------- files
def sds_dir(root, year: int, net: str, sta: str) -> Path:
    return Path(root) / f"{year}" / net / sta


_LISTING: dict = {}


def _listdir(path: Path) -> tuple[str, ...]:
    """Directory entries, cached while a plan runs (one listing per channel directory, not one
    glob per station-day)."""
    key = str(path)
    if key not in _LISTING:
        try:
            _LISTING[key] = tuple(sorted(os.listdir(path)))
        except OSError:
            _LISTING[key] = ()
    return _LISTING[key]


def station_day_files(root, sd: StationDay, channels: list[str], cached: bool = False) -> tuple[str, dict[str, Path]]:
    """The first channel pattern (e.g. ``HH?``) with a vertical and two horizontals for the day.

    Returns (pattern, {component: path}); an empty dict when the archive has nothing.
    ``cached`` reuses directory listings (planning many station-days at once)."""
    day = UTCDateTime(sd.day.isoformat())
    base = sds_dir(root, day.year, sd.network, sd.station)
    ls = _listdir if cached else (lambda p: tuple(sorted(os.listdir(p))) if p.is_dir() else ())
    chan_dirs = [n[:-2] for n in ls(base) if n.endswith(".D")]
    prefix = f"{sd.network}.{sd.station}."
    for pat in channels:
        found = {}
        for cha in sorted(chan_dirs):
            if not fnmatch.fnmatch(cha, pat):
                continue
            suffix = f".{cha}.D.{day.year}.{day.julday:03d}"
            names = [n for n in ls(base / f"{cha}.D") if n.startswith(prefix) and n.endswith(suffix)]
            if names:
                found[cha[-1]] = base / f"{cha}.D" / names[0]
        if found:
            return pat, found  # an incomplete set is reported by plan and refused by read
    return "", {}


def _comp_key(c: str) -> int:
    return {"Z": 0, "N": 1, "1": 1, "E": 2, "2": 2}.get(c, 9)


_QUALITY = np.frombuffer(b"DRQM", np.uint8)


def mseed_segments(path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(start, end, sampling_rate) of every record of a fixed-record-length MiniSEED 2 file,
    from the 48-byte fixed headers alone (vectorised; no decoding).  ``None`` when the file is
    not plainly such a file -- the caller then asks ObsPy, which says what is wrong."""
    raw = np.fromfile(path, dtype=np.uint8)
    if len(raw) < 64 or raw[6] not in _QUALITY:
        return None
    big = 1900 <= int.from_bytes(raw[20:22].tobytes(), "big") <= 2200
    order = "big" if big else "little"
    bo = ">" if big else "<"
    off = int.from_bytes(raw[46:48].tobytes(), order)
    if off < 48 or off + 8 > len(raw) or int.from_bytes(raw[off : off + 2].tobytes(), order) != 1000:
        return None
    reclen = 1 << int(raw[off + 6])
    if reclen < 128 or len(raw) % reclen:
        return None
    rec = raw.reshape(-1, reclen)[:, :48]
    q = rec[:, 6]
    if not ((q == 68) | (q == 82) | (q == 81) | (q == 77)).all():  # D R Q M
        return None
    hdr = np.ascontiguousarray(rec).view(np.dtype([("x", "V20"), ("year", bo + "u2"), ("doy", bo + "u2"), ("hour", "u1"), ("minute", "u1"), ("sec", "u1"), ("pad", "u1"), ("frac", bo + "u2"),
                                                  ("nsamp", bo + "u2"), ("fact", bo + "i2"), ("mult", bo + "i2"), ("act", "u1"), ("y", "V3"), ("tcorr", bo + "i4"), ("z", "V4")]))[:, 0]
    if not ((hdr["year"] >= 1900) & (hdr["year"] <= 2200) & (hdr["doy"] >= 1) & (hdr["doy"] <= 366)).all():
        return None
    f = hdr["fact"].astype(float)
    m = hdr["mult"].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        fs = np.where((f > 0) & (m > 0), f * m, np.where((f > 0) & (m < 0), -f / m, np.where((f < 0) & (m > 0), -m / f, 1.0 / (f * m))))
    if not (np.isfinite(fs) & (fs > 0)).all():
        return None
    day = (hdr["year"].astype("int64") - 1970).astype("datetime64[Y]").astype("datetime64[D]") + (hdr["doy"].astype("int64") - 1)
    t = (day - np.datetime64("1970-01-01")).astype("int64") * 86400.0 + hdr["hour"] * 3600.0 + hdr["minute"] * 60.0 + hdr["sec"] + hdr["frac"] * 1e-4
    t = t + np.where(hdr["act"] & 0x02, 0.0, hdr["tcorr"] * 1e-4)
    keep = hdr["nsamp"] > 0
    t, n, fs = t[keep], hdr["nsamp"][keep], fs[keep]
    return t, t + n / fs, fs


def _segments(f: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, ends, rates) of the records (or traces) of a MiniSEED file."""
    seg = mseed_segments(f)
    if seg is not None:
        return seg
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st = read(str(f), headonly=True, format="MSEED")
    a = np.array([tr.stats.starttime.timestamp for tr in st])
    r = np.array([tr.stats.sampling_rate for tr in st])
    return a, np.array([tr.stats.endtime.timestamp + tr.stats.delta for tr in st]), r


def coverage_and_gaps(starts, ends, rates, t0: float, t1: float) -> tuple[float, int, float]:
    """Seconds covered in [t0, t1), number of gaps and seconds missing between segments
    (a gap: more than 1.5 samples between one segment's end and the next start)."""
    a = np.maximum(np.asarray(starts, float), t0)
    b = np.minimum(np.asarray(ends, float), t1)
    r = np.asarray(rates, float)
    keep = b > a
    a, b, r = a[keep], b[keep], r[keep]
    if not len(a):
        return 0.0, 0, 0.0
    o = np.argsort(a, kind="stable")
    a, b, r = a[o], b[o], r[o]
    run_end = np.maximum.accumulate(b)
    prev = np.concatenate([[a[0]], run_end[:-1]])
    covered = float(np.clip(b - np.maximum(a, prev), 0, None).sum())
    gap = a[1:] - run_end[:-1]
    is_gap = gap > 1.5 / r[1:]
    return covered, int(is_gap.sum()), float(gap[is_gap].sum())


def scan_station_day(root, sd: StationDay, channels: list[str], cached: bool = False) -> dict:
    """Availability of one station-day from the record headers only (no decoding)."""
    pat, files = station_day_files(root, sd, channels, cached=cached)
    rec = dict(unit=sd.unit, station_id=sd.station_id, day=sd.day.isoformat(), channels=pat, n_files=len(files), bytes=0, coverage=0.0, n_gaps=0, gap_s=0.0, readable=True, state="no_data", reason="")
    if not files:
        rec["reason"] = f"no {'/'.join(channels)} data in the archive"
        return rec
    day0 = UTCDateTime(sd.day.isoformat()).timestamp
    covs, gaps, gap_s = [], 0, 0.0
    for comp, f in files.items():
        rec["bytes"] += f.stat().st_size
        try:
            raw = _segments(f)
        except Exception as exc:
            rec.update(readable=False, state="corrupt", reason=f"unreadable MiniSEED file {f}: {type(exc).__name__}: {exc}")
            return rec
        covered, g, gs = coverage_and_gaps(*raw, day0, day0 + 86400)
        covs.append(covered / 86400.0)
        gaps, gap_s = max(gaps, g), max(gap_s, gs)
    rec["coverage"] = float(np.min(covs))
    rec["n_gaps"] = int(gaps)
    rec["gap_s"] = float(gap_s)
    missing = [c for c in ("Z", "N", "E") if not any(_comp_key(k) == _comp_key(c) for k in files)]
    if missing:
        rec.update(state="incomplete", reason=f"{sd.unit}: components {missing} missing for {pat}")
    else:
        rec["state"] = "gappy" if gaps else "ok"
    return rec


def plan_station_days(sds_root, station_ids: list[str], days: list[dt.date], channels: list[str], threads: int = 8) -> pd.DataFrame:
    """Scan the archive for every (station, day): a table with unit, station_id, day, channels,
    n_files, bytes, coverage (fraction of the day), n_gaps, gap_s, readable, state
    (ok | gappy | incomplete | corrupt | no_data) and reason."""
    sds = [StationDay(d, s) for d in days for s in station_ids]
    _LISTING.clear()
    try:
        with ThreadPoolExecutor(max_workers=max(1, threads)) as ex:
            recs = list(ex.map(lambda sd: scan_station_day(sds_root, sd, channels, cached=True), sds))
    finally:
        _LISTING.clear()
    return pd.DataFrame(recs)


# ----------------------------------------------------------------------------- reading
def read_station_day(sds_root, station_id: str, day, channels: list[str] | None = None, pad_s: float = 0.0) -> Stream:
    """Merged Z/N/E stream of one station-day (gaps stay masked).  ``pad_s`` also reads the
    neighbouring days' edges so windows across midnight are complete."""
    if isinstance(day, str):
        day = dt.date.fromisoformat(day)
    channels = channels or ["HH?", "EH?", "BH?", "SH?"]
    sd = StationDay(day, station_id)
    pat, files = station_day_files(sds_root, sd, channels)
    if not files:
        raise ArchiveError(f"{sd.unit}: no {'/'.join(channels)} data under {sds_root}")
    if "Z" not in files or len(files) < 3:
        raise ArchiveError(f"{sd.unit}: incomplete 3-component set {sorted(files)} for {pat} under {sds_root}")
    st = Stream()
    day0 = UTCDateTime(day.isoformat())
    for comp, f in sorted(files.items(), key=lambda kv: _comp_key(kv[0])):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                st += read(str(f), format="MSEED")
        except Exception as exc:
            raise ArchiveError(f"{sd.unit}: unreadable MiniSEED file {f}: {type(exc).__name__}: {exc}") from exc
        if pad_s > 0:
            for other in (day - dt.timedelta(days=1), day + dt.timedelta(days=1)):
                _, of = station_day_files(sds_root, StationDay(other, station_id), [pat])
                if comp in of:
                    try:
                        st += read(str(of[comp]), format="MSEED", starttime=day0 - pad_s, endtime=day0 + 86400 + pad_s)
                    except Exception:
                        pass  # neighbours are optional
    try:
        st.merge(method=1, fill_value=None)
    except Exception as exc:
        raise ArchiveError(f"{sd.unit}: cannot merge traces ({exc}); sampling rates {sorted({tr.stats.sampling_rate for tr in st})}") from exc
    st.trim(day0 - pad_s, day0 + 86400 + pad_s, nearest_sample=False)
    if len(st) < 3:
        raise ArchiveError(f"{sd.unit}: after merging only {len(st)} channel(s) remain")
    return st


def read_window(sds_root, station_id: str, t0: UTCDateTime, t1: UTCDateTime, channels: list[str] | None = None) -> Stream:
    """Data of one station between two times (may span days), merged; empty when absent."""
    channels = channels or ["HH?", "EH?", "BH?", "SH?"]
    st = Stream()
    d = dt.date.fromisoformat(str(t0.date))
    while UTCDateTime(d.isoformat()) <= t1:
        _, files = station_day_files(sds_root, StationDay(d, station_id), channels)
        for f in files.values():
            try:
                st += read(str(f), format="MSEED", starttime=t0, endtime=t1)
            except Exception:
                continue
        d += dt.timedelta(days=1)
    if len(st):
        st.merge(method=1, fill_value=None)
        st.trim(t0, t1)
    return st
