"""The waveform archive: station-days, planning, reading (ObsPy SDS layout + StationXML).

A *station-day* (``StationDay``) is the unit of work: one station's 3-component data of one UTC
day.  :func:`plan_station_days` lists what the archive actually holds (availability, gaps,
readability) without decoding the samples; :func:`read_station_day` returns the merged
3-component ObsPy Stream of one station-day or raises :class:`ArchiveError` naming the file.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
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


def station_day_files(root, sd: StationDay, channels: list[str]) -> tuple[str, dict[str, Path]]:
    """The first channel pattern (e.g. ``HH?``) with a vertical and two horizontals for the day.

    Returns (pattern, {component: path}); an empty dict when the archive has nothing."""
    day = UTCDateTime(sd.day.isoformat())
    base = sds_dir(root, day.year, sd.network, sd.station)
    if not base.is_dir():
        return "", {}
    chan_dirs = [p.name[:-2] for p in base.iterdir() if p.name.endswith(".D")]
    for pat in channels:
        found = {}
        for cha in sorted(chan_dirs):
            if not fnmatch.fnmatch(cha, pat):
                continue
            files = sorted((base / f"{cha}.D").glob(f"{sd.network}.{sd.station}.*.{cha}.D.{day.year}.{day.julday:03d}"))
            if files:
                found[cha[-1]] = files[0]
        if "Z" in found and (len(found) >= 3):
            return pat, found
        if found:
            return pat, found  # incomplete set: reported by plan, refused by read
    return "", {}


def _comp_key(c: str) -> int:
    return {"Z": 0, "N": 1, "1": 1, "E": 2, "2": 2}.get(c, 9)


def scan_station_day(root, sd: StationDay, channels: list[str]) -> dict:
    """Availability of one station-day from the record headers only (no decoding)."""
    pat, files = station_day_files(root, sd, channels)
    rec = dict(unit=sd.unit, station_id=sd.station_id, day=sd.day.isoformat(), channels=pat, n_files=len(files), bytes=0, coverage=0.0, n_gaps=0, gap_s=0.0, readable=True, state="no_data", reason="")
    if not files:
        rec["reason"] = f"no {'/'.join(channels)} data in the archive"
        return rec
    day0 = UTCDateTime(sd.day.isoformat())
    covs, gaps, gap_s = [], 0, 0.0
    for comp, f in files.items():
        rec["bytes"] += f.stat().st_size
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                st = read(str(f), headonly=True, format="MSEED")
        except Exception as exc:
            rec.update(readable=False, state="corrupt", reason=f"unreadable MiniSEED file {f}: {type(exc).__name__}: {exc}")
            return rec
        segs = sorted((max(tr.stats.starttime, day0), min(tr.stats.endtime, day0 + 86400)) for tr in st)
        covered, last_end, g, gs = 0.0, None, 0, 0.0
        for a, b in segs:
            if b <= a:
                continue
            if last_end is not None and a - last_end > 1.5 / st[0].stats.sampling_rate:
                g += 1
                gs += a - last_end
            covered += b - a
            last_end = b if last_end is None else max(last_end, b)
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
    with ThreadPoolExecutor(max_workers=max(1, threads)) as ex:
        recs = list(ex.map(lambda sd: scan_station_day(sds_root, sd, channels), sds))
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
