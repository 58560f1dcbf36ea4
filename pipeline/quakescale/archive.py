"""The waveform archive: station-days, planning, reading (ObsPy SDS layout + StationXML).

A *station-day* (``StationDay``) is the unit of work: one station's 3-component data of one UTC
day.  :func:`plan_station_days` lists what the archive actually holds (availability, gaps,
readability) without decoding the samples; :func:`read_station_day` returns the merged
3-component ObsPy Stream of one station-day or raises :class:`ArchiveError` naming the file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fnmatch
import io
import multiprocessing as mp
import os
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from obspy import Inventory, Stream, UTCDateTime, read, read_inventory

from .errors import QuakeScaleError
from .schema import STATIONS


class ArchiveError(QuakeScaleError, RuntimeError):
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
                rows[sid] = dict(
                    station_id=sid,
                    network=net.code,
                    station=sta.code,
                    latitude=sta.latitude,
                    longitude=sta.longitude,
                    elevation_m=sta.elevation,
                    kind="",
                )
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


def clear_listing_cache() -> None:
    """Forget the cached directory listings of the SDS archive (after files were written into it,
    or before timing a plan scan)."""
    _LISTING.clear()


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
_HDR = {
    bo: np.dtype(
        [
            ("x", "V20"),
            ("year", bo + "u2"),
            ("doy", bo + "u2"),
            ("hour", "u1"),
            ("minute", "u1"),
            ("sec", "u1"),
            ("pad", "u1"),
            ("frac", bo + "u2"),
            ("nsamp", bo + "u2"),
            ("fact", bo + "i2"),
            ("mult", bo + "i2"),
            ("act", "u1"),
            ("y", "V3"),
            ("tcorr", bo + "i4"),
            ("z", "V4"),
        ]
    )
    for bo in "<>"
}


def _first_header(buf) -> tuple[int, bool] | None:
    """(record length, big-endian) of a fixed-record-length MiniSEED 2 file from its first
    record (``buf``: the file's bytes); ``None`` when it is not plainly such a file."""
    n = len(buf)
    if n < 64 or buf[6] not in b"DRQM":
        return None
    big = 1900 <= int.from_bytes(buf[20:22], "big") <= 2200
    order = "big" if big else "little"
    off = int.from_bytes(buf[46:48], order)
    if off < 48 or off + 8 > n or int.from_bytes(buf[off : off + 2], order) != 1000:
        return None
    reclen = 1 << buf[off + 6]
    if reclen < 128 or n % reclen:
        return None
    return reclen, big


def _record_times(rec: np.ndarray, big: bool):
    """Fixed headers ``rec`` (n x 48 bytes) -> (valid, start, end, rate, nsamp) per record;
    ``valid``: quality code D/R/Q/M, plausible year/day and a positive finite sampling rate."""
    q = rec[:, 6]
    hdr = np.ascontiguousarray(rec).view(_HDR[">" if big else "<"])[:, 0]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        f = hdr["fact"].astype(float)
        m = hdr["mult"].astype(float)
        fs = np.where(
            (f > 0) & (m > 0),
            f * m,
            np.where((f > 0) & (m < 0), -f / m, np.where((f < 0) & (m > 0), -m / f, 1.0 / (f * m))),
        )
        valid = (
            ((q == 68) | (q == 82) | (q == 81) | (q == 77))
            & (hdr["year"] >= 1900)
            & (hdr["year"] <= 2200)
            & (hdr["doy"] >= 1)
            & (hdr["doy"] <= 366)
            & np.isfinite(fs)
            & (fs > 0)
        )
        year = np.where(valid, hdr["year"], 1970).astype("int64")
        doy = np.where(valid, hdr["doy"], 1).astype("int64")
        day = (year - 1970).astype("datetime64[Y]").astype("datetime64[D]") + (doy - 1)
        t = (
            (day - np.datetime64("1970-01-01")).astype("int64") * 86400.0
            + hdr["hour"] * 3600.0
            + hdr["minute"] * 60.0
            + hdr["sec"]
            + hdr["frac"] * 1e-4
        )
        t = t + np.where(hdr["act"] & 0x02, 0.0, hdr["tcorr"] * 1e-4)
        n = hdr["nsamp"]
        end = t + n / fs
    return valid, t, end, fs, n


def mseed_segments(path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(start, end, sampling_rate) of every record of a fixed-record-length MiniSEED 2 file,
    from the 48-byte fixed headers alone (vectorised; no decoding).  ``None`` when the file is
    not plainly such a file -- the caller then asks ObsPy, which says what is wrong."""
    raw = np.fromfile(path, dtype=np.uint8)
    first = _first_header(raw.data)
    if first is None:
        return None
    reclen, big = first
    valid, t, end, fs, n = _record_times(raw.reshape(-1, reclen)[:, :48], big)
    if not valid.all():
        return None
    keep = n > 0
    return t[keep], end[keep], fs[keep]


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
    rec = dict(
        unit=sd.unit,
        station_id=sd.station_id,
        day=sd.day.isoformat(),
        channels=pat,
        n_files=len(files),
        bytes=0,
        coverage=0.0,
        n_gaps=0,
        gap_s=0.0,
        readable=True,
        state="no_data",
        reason="",
    )
    if not files:
        rec["reason"] = f"no {'/'.join(channels)} data in the archive"
        return rec
    day0 = UTCDateTime(sd.day.isoformat()).timestamp
    covs, gaps, gap_s = [], 0, 0.0
    for f in files.values():
        rec["bytes"] += f.stat().st_size
        try:
            raw = _segments(f)
        except Exception as exc:
            rec.update(
                readable=False, state="corrupt", reason=f"unreadable MiniSEED file {f}: {type(exc).__name__}: {exc}"
            )
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


def plan_station_days(
    sds_root, station_ids: list[str], days: list[dt.date], channels: list[str], workers: int | None = None
) -> pd.DataFrame:
    """Scan the archive for every (station, day): a table with unit, station_id, day, channels,
    n_files, bytes, coverage (fraction of the day), n_gaps, gap_s, readable, state
    (ok | gappy | incomplete | corrupt | no_data) and reason; rows day by day, stations in the
    given order.  Planning 10^5 station-days takes ~0.1 ms each (benchmarks/bench_plan.py).

    Same table as :func:`scan_station_day` of every station-day, computed per station over all
    days at once (one listing per channel directory, the fixed headers of many files parsed in
    one vectorised pass; files that are not plainly fixed-length MiniSEED 2 go through the exact
    per-file path and ObsPy).  ``workers`` forked processes share the stations (default: one
    per available CPU, at most 8, for plans of >= 20,000 station-days when called from a
    single-threaded process; otherwise in this process)."""
    days = list(days)
    station_ids = list(station_ids)
    if not days or not station_ids:
        return pd.DataFrame([])
    u_sta = list(dict.fromkeys(station_ids))
    u_day = list(dict.fromkeys(days))
    # worker processes are forked (no re-import of the caller's main module), and only from a
    # process that may have children; by default only from a single-threaded one
    can_fork = "fork" in mp.get_all_start_methods() and not mp.current_process().daemon
    if workers is None:
        big = len(u_sta) * len(u_day) >= _PARALLEL_MIN_UNITS
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        workers = min(cpus, 8) if big and threading.active_count() == 1 else 1
    workers = max(1, min(int(workers), len(u_sta))) if can_fork else 1
    parts = None
    if workers > 1:
        size = max(1, -(-len(u_sta) // (4 * workers)))
        groups = [u_sta[i : i + size] for i in range(0, len(u_sta), size)]
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork")) as ex:
                parts = list(
                    ex.map(
                        _scan_stations,
                        [sds_root] * len(groups),
                        groups,
                        [u_day] * len(groups),
                        [channels] * len(groups),
                    )
                )
        except (BrokenProcessPool, OSError):
            parts = None  # no pool here (limits, a killed worker): scan in this process
    if parts is None:
        parts = [_scan_stations(sds_root, u_sta, u_day, channels)]
    rows: dict = {}
    for part in parts:
        rows.update(part)
    cols: dict[str, list] = {c: [] for c in _PLAN_COLUMNS}
    append = [cols[c].append for c in _PLAN_COLUMNS]
    for d in days:
        for s in station_ids:
            for add, v in zip(append, rows[(s, d)]):
                add(v)
    return pd.DataFrame(cols, columns=list(_PLAN_COLUMNS))


_PLAN_COLUMNS = (
    "unit",
    "station_id",
    "day",
    "channels",
    "n_files",
    "bytes",
    "coverage",
    "n_gaps",
    "gap_s",
    "readable",
    "state",
    "reason",
)
_PARALLEL_MIN_UNITS = 20000  # below this, a process pool costs more than it saves
_BATCH_FILES = 4096  # files per vectorised pass (keeps per-file sort keys exact: < 2**12 offsets of 2**17 s)
_BATCH_BYTES = 64 << 20  # bytes read before they are parsed and released
_SEG = 131072.0  # 2**17 s > one day: per-file offset that turns per-file sorts/maxima into one pass


def _listing(path) -> tuple[str, ...]:
    try:
        return tuple(sorted(os.listdir(path)))
    except OSError:
        return ()


def _scan_stations(root, station_ids: list[str], days: list[dt.date], channels: list[str]) -> dict:
    """{(station_id, day): plan row tuple} for every station x day (``days`` unique)."""
    by_year: dict[int, list[dt.date]] = {}
    for d in days:
        by_year.setdefault(d.year, []).append(d)
    day0 = {d: UTCDateTime(d.isoformat()).timestamp for d in days}
    jday = {d: f"{d.timetuple().tm_yday:03d}" for d in days}
    units = []  # (station_id, day, pattern, {component: path str})
    for sid in station_ids:
        net, sta = sid.split(".")[0], sid.split(".")[1]
        prefix = f"{net}.{sta}."
        for year, ydays in by_year.items():
            base = sds_dir(root, year, net, sta)
            chan_dirs = sorted(n[:-2] for n in _listing(base) if n.endswith(".D"))
            per_pat = []
            for pat in channels:
                found = []
                for cha in chan_dirs:
                    if not fnmatch.fnmatch(cha, pat):
                        continue
                    cdir = str(base / f"{cha}.D")
                    mid = f".{cha}.D.{year}."
                    names: dict[str, str] = {}
                    for n in _listing(cdir):
                        if n.startswith(prefix) and n[:-3].endswith(mid):
                            names.setdefault(n[-3:], n)
                    if names:
                        found.append((cha[-1], cdir, names))
                per_pat.append((pat, found))
            for d in ydays:
                key = jday[d]
                pat, files = "", {}
                for p, found in per_pat:
                    for comp, cdir, names in found:
                        n = names.get(key)
                        if n is not None:
                            files[comp] = f"{cdir}/{n}"
                    if files:
                        pat = p
                        break
                units.append((sid, d, pat, files))
    paths = [f for _, _, _, files in units for f in files.values()]
    d0s = [day0[d] for _, d, _, files in units for _ in files]
    res = _files_coverage(paths, d0s)
    out = {}
    k = 0
    no_data = f"no {'/'.join(channels)} data in the archive"
    missing_of: dict[tuple, list] = {}
    for sid, d, pat, files in units:
        unit = f"{d.isoformat()}/{sid}"
        if not files:
            out[(sid, d)] = (unit, sid, d.isoformat(), pat, 0, 0, 0.0, 0, 0.0, True, "no_data", no_data)
            continue
        nbytes, covs, gaps, gap_s, bad = 0, [], 0, 0.0, None
        for f, r in zip(files.values(), res[k : k + len(files)]):
            if r is None:  # not plainly fixed-length MiniSEED 2: the exact per-file path
                r = _file_coverage(Path(f), day0[d])
            size, covered, g, gs = r
            nbytes += size
            if isinstance(covered, BaseException):
                bad = f"unreadable MiniSEED file {Path(f)}: {type(covered).__name__}: {covered}"
                break
            covs.append(covered / 86400.0)
            gaps, gap_s = max(gaps, g), max(gap_s, gs)
        k += len(files)
        if bad is not None:
            out[(sid, d)] = (unit, sid, d.isoformat(), pat, len(files), nbytes, 0.0, 0, 0.0, False, "corrupt", bad)
            continue
        comps = tuple(files)
        missing = missing_of.get(comps)
        if missing is None:
            have = {_comp_key(c) for c in comps}
            missing = missing_of[comps] = [c for c in ("Z", "N", "E") if _comp_key(c) not in have]
        if missing:
            state, reason = "incomplete", f"{unit}: components {missing} missing for {pat}"
        else:
            state, reason = ("gappy" if gaps else "ok"), ""
        out[(sid, d)] = (
            unit,
            sid,
            d.isoformat(),
            pat,
            len(files),
            nbytes,
            float(min(covs)),
            int(gaps),
            float(gap_s),
            True,
            state,
            reason,
        )
    return out


def _file_coverage(f: Path, day0: float):
    """(bytes, covered seconds | the exception, n_gaps, gap_s) of one file, as scan_station_day."""
    size = f.stat().st_size
    try:
        raw = _segments(f)
    except Exception as exc:
        return size, exc, 0, 0.0
    return (size, *coverage_and_gaps(*raw, day0, day0 + 86400))


def _files_coverage(paths: list[str], day0s: list[float]) -> list:
    """(bytes, covered seconds, n_gaps, gap_s) of each file over its day, from the fixed headers
    of many files parsed together; ``None`` for a file the caller must scan alone (not plainly
    fixed-length MiniSEED 2, unreadable, or a day too close to 1970 for the exact batched sums)."""
    out: list = [None] * len(paths)
    groups: dict[tuple[int, bool], list] = {}
    pending = 0
    for i, (p, d0) in enumerate(zip(paths, day0s)):
        if not d0 >= _SEG:
            continue
        try:
            with open(p, "rb", buffering=0) as fh:
                buf = fh.read()
        except OSError:
            continue
        first = _first_header(buf)
        if first is None:
            continue
        items = groups.setdefault(first, [])
        items.append((i, buf, d0))
        pending += len(buf)
        if len(items) >= _BATCH_FILES or pending >= _BATCH_BYTES:
            for (reclen, big), its in groups.items():
                _batch_coverage(its, reclen, big, out)
            groups.clear()
            pending = 0
    for (reclen, big), its in groups.items():
        _batch_coverage(its, reclen, big, out)
    return out


def _batch_coverage(items: list, reclen: int, big: bool, out: list) -> None:
    """Coverage and gaps of files with the same record length and byte order, in one pass."""
    idx = np.array([i for i, _, _ in items])
    d0 = np.array([d for _, _, d in items])
    nrec = np.array([len(b) // reclen for _, b, _ in items])
    raw = np.frombuffer(b"".join(b for _, b, _ in items), np.uint8).reshape(-1, reclen)[:, :48]
    fid = np.repeat(np.arange(len(items)), nrec)
    valid, t, end, fs, n = _record_times(raw, big)
    good = np.bincount(fid, weights=~valid, minlength=len(items)) == 0  # else: the per-file path
    keep = good[fid] & (n > 0)
    fid, t, end, fs = fid[keep], t[keep], end[keep], fs[keep]
    t0 = d0[fid]
    a = np.maximum(t, t0)
    b = np.minimum(end, t0 + 86400)
    keep = b > a
    fid, a, b, fs, t0 = fid[keep], a[keep], b[keep], fs[keep], t0[keep]
    # times relative to each file's day (exact: a, b lie within [t0, t0 + 1 day]) shifted by
    # file index * 2**17 s: one stable sort and one running maximum serve every file at once
    off = fid * _SEG
    ka = (a - t0) + off
    kb = (b - t0) + off
    sizes = [len(b_) for _, b_, _ in items]
    if not (np.array_equal(ka - off, a - t0) and np.array_equal(kb - off, b - t0)):
        for j in np.flatnonzero(good):  # keys not exact (should not happen): file by file
            m = fid == j
            out[idx[j]] = (sizes[j], *coverage_and_gaps(a[m], b[m], fs[m], d0[j], d0[j] + 86400))
        return
    o = np.argsort(ka, kind="stable")
    fid, ka, kb, fs, off = fid[o], ka[o], kb[o], fs[o], off[o]
    run = np.maximum.accumulate(kb)
    first = np.ones(len(fid), bool)
    first[1:] = fid[1:] != fid[:-1]
    prev = np.empty_like(ka)
    prev[0:1] = ka[0:1]
    prev[1:] = run[:-1]
    prev[first] = ka[first]
    covered = np.bincount(fid, weights=np.clip(kb - np.maximum(ka, prev), 0, None), minlength=len(items))
    gap = ka - prev
    is_gap = ~first & (gap > 1.5 / fs)
    n_gaps = np.bincount(fid[is_gap], minlength=len(items))
    gap_s = np.bincount(fid[is_gap], weights=gap[is_gap], minlength=len(items))
    for j in np.flatnonzero(good):
        out[idx[j]] = (sizes[j], float(covered[j]), int(n_gaps[j]), float(gap_s[j]))


# ----------------------------------------------------------------------------- reading
_MSEED_QUIET = False


@contextlib.contextmanager
def _quiet_mseed_read():
    """Silence ObsPy's MiniSEED reader's warnings (undecodable codes of a corrupt record, libmseed
    notes) during a read: on the main thread with ``catch_warnings`` as before; on another
    thread (:class:`ReadAhead`) by one module filter installed once, since ``catch_warnings``
    swaps the process's filter list and is not thread-safe (in review, a reader thread's
    ``catch_warnings`` dropped the main thread's warnings and left a stray filter behind)."""
    global _MSEED_QUIET
    if threading.current_thread() is threading.main_thread():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
        return
    if not _MSEED_QUIET:
        warnings.filterwarnings("ignore", module=r"obspy\.io\.mseed\.")
        _MSEED_QUIET = True
    yield


def merge_gapped(st: Stream) -> Stream:
    """``st.merge(method=1, fill_value=None)`` (gaps masked), the same traces, with the usual case
    done in one pass: a channel whose pieces share one sampling rate, data type and calibration,
    lie on one sample grid (to the nanosecond) and do not overlap is laid into one array at
    once.  ObsPy's merge joins the pieces two at a time (``Trace.__add__``), each join copying
    everything joined so far: a real day with twenty gaps spent 0.2 s there, now 0.01 s.  Anything
    else (overlaps, duplicates, pieces off the grid, mixed rates) goes to ObsPy's merge for the
    whole stream, its rules unchanged.  The masked samples hold 0 (ObsPy leaves them unset); empty
    traces are dropped, as ObsPy does; the order of the traces may differ from ObsPy's (which
    puts merged ones first): sort them (``read_station_day`` does)."""
    st.traces = [tr for tr in st if tr.stats.npts]
    groups: dict[str, list] = {}
    for tr in st:
        groups.setdefault(tr.id, []).append(tr)
    if all(len(g) == 1 for g in groups.values()):
        return st
    out = Stream()
    for pieces in groups.values():
        merged = _lay_pieces(pieces) if len(pieces) > 1 else pieces[0]
        if merged is None:  # st holds the pieces as read (empty ones aside, which ObsPy drops too)
            st.merge(method=1, fill_value=None)
            return st
        out.append(merged)
    return out


def _lay_pieces(pieces: list):
    """One channel's gap-separated pieces as one (masked) trace, or None when ObsPy must merge them."""
    from obspy import Trace

    pieces = sorted(pieces, key=lambda tr: tr.stats.starttime.ns)
    s0 = pieces[0].stats
    sr, dtype = float(s0.sampling_rate), pieces[0].data.dtype
    if sr <= 0:
        return None
    offsets, end = [], 0
    for tr in pieces:
        s = tr.stats
        if (
            float(s.sampling_rate) != sr
            or tr.data.dtype != dtype
            or s.calib != s0.calib
            or np.ma.isMaskedArray(tr.data)
            or not s.npts
        ):
            return None
        k = round((s.starttime.ns - s0.starttime.ns) * sr / 1e9)
        if abs(k * 1e9 / sr - (s.starttime.ns - s0.starttime.ns)) > 1.0 or k < end:
            return None  # off the first piece's sample grid, or an overlap: ObsPy's rules
        offsets.append(k)
        end = k + s.npts
    data = np.zeros(end, dtype)
    mask = np.ones(end, bool)
    for tr, k in zip(pieces, offsets):
        data[k : k + len(tr.data)] = tr.data
        mask[k : k + len(tr.data)] = False
    header = s0.copy()
    header.npts = end
    return Trace(data=np.ma.masked_array(data, mask) if mask.any() else data, header=header)


def _read_mseed(path, starttime: UTCDateTime | None = None, endtime: UTCDateTime | None = None) -> Stream:
    """One MiniSEED file (the records overlapping ``starttime``..``endtime`` when given, for the
    caller to trim): a plain Steim day file by :func:`quakescale.steim.read_steim` (the same
    traces, 1.3-1.6x as quick on real 512-byte records, without ObsPy's second copy of the day), anything else by
    ObsPy."""
    from .steim import read_steim

    try:
        st = read_steim(
            path,
            None if starttime is None else starttime.ns,
            None if endtime is None else endtime.ns,
        )
    except Exception:  # the compiled reader failed: ObsPy reads it (and says what is wrong)
        st = None
    if st is not None:
        return st
    with _quiet_mseed_read():
        return read(str(path), format="MSEED", starttime=starttime, endtime=endtime)


def _steim_or_none(path):
    """:func:`quakescale.steim.read_steim` of ``path``, None where it declines or fails (the
    caller's :func:`_read_mseed` then reads the file, and says what is wrong)."""
    from .steim import read_steim

    try:
        return read_steim(path)
    except Exception:
        return None


def read_station_day(
    sds_root,
    station_id: str,
    day,
    channels: list[str] | None = None,
    pad_s: float = 0.0,
    on_component=None,
    decode_on=None,
) -> Stream:
    """Merged Z/N/E stream of one station-day (gaps stay masked).  ``pad_s`` also reads the
    neighbouring days' edges so windows across midnight are complete.  Plain Steim day files are
    decoded by :func:`quakescale.steim.read_steim`, anything else by ObsPy (the same traces).  ``on_component``: called
    with each component's merged, trimmed traces (a Stream, the vertical first) as soon as they
    are read, while the next component is read (e.g. to band-pass it on another thread).
    ``decode_on``: a ``submit(fn, *args) -> Future`` (the detection's CPU pool): while this
    thread decodes a component's day file, the next component's is decoded there (the compiled
    Steim reader only: ObsPy's reads stay on this thread), so two decodes run at once; the
    same stream."""
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
    order = sorted(files.items(), key=lambda kv: _comp_key(kv[0]))
    ahead = None  # (path, Future) of the next component's file, decoded on decode_on
    for i, (comp, f) in enumerate(order):
        got = None
        if ahead is not None and ahead[0] == f:
            got = ahead[1].result()
        elif decode_on is not None and i + 1 < len(order):  # decoded there while this one is decoded here
            ahead = (order[i + 1][1], decode_on(_steim_or_none, order[i + 1][1]))
        part = Stream()
        try:
            part += got if got is not None else _read_mseed(f)
        except Exception as exc:
            raise ArchiveError(f"{sd.unit}: unreadable MiniSEED file {f}: {type(exc).__name__}: {exc}") from exc
        if pad_s > 0:
            for other in (day - dt.timedelta(days=1), day + dt.timedelta(days=1)):
                _, of = station_day_files(sds_root, StationDay(other, station_id), [pat])
                if comp in of:
                    try:
                        part += _read_mseed(of[comp], day0 - pad_s, day0 + 86400 + pad_s)
                    except Exception:
                        pass  # neighbours are optional
        # merged channel by channel (merging groups by id): one channel's pieces beside the merged day at a time
        try:
            part = merge_gapped(part)
        except Exception as exc:
            rates = sorted({tr.stats.sampling_rate for tr in part})
            raise ArchiveError(f"{sd.unit}: cannot merge traces ({exc}); sampling rates {rates}") from exc
        part.trim(day0 - pad_s, day0 + 86400 + pad_s, nearest_sample=False)
        st += part
        if on_component is not None:
            on_component(part)
    if len({tr.id for tr in st}) < len(st):  # one id in two components' files (a mislabelled archive): merge it too
        try:
            st = merge_gapped(st)
        except Exception as exc:
            raise ArchiveError(f"{sd.unit}: cannot merge traces ({exc})") from exc
    st.sort()  # merge's trace order varies between calls on gapped data: one order, reproducible outputs
    if len(st) < 3:
        raise ArchiveError(f"{sd.unit}: after merging only {len(st)} channel(s) remain")
    return st


class ReadAhead:
    """The station-days of a task, each read (:func:`read_station_day`) on a background thread
    while the one before it is processed: the archive's I/O and the MiniSEED decoding overlap
    the networks (on a GPU node the host side is most of a station-day's time; on a cluster's
    shared file system, so is waiting for it).

    ``get(station_id, day)`` returns that station-day's stream, or raises its
    :class:`ArchiveError`, exactly as ``read_station_day`` would, and starts reading the next
    ``ahead`` station-days of ``order`` (taken in that order: a station-day may come more than
    once); a station-day not in ``order`` (or whose turns have passed) is read there and then.
    At most ``ahead`` streams wait in memory.  Use as a context manager (or ``close()``, which
    waits for a read under way)."""

    def __init__(self, sds_root, order, channels: list[str] | None = None, pad_s: float = 0.0, ahead: int = 1):
        from concurrent.futures import ThreadPoolExecutor

        self._args = (sds_root, channels, pad_s)
        self._order = [(str(sid), as_day(day)) for sid, day in order]
        self._positions: dict[tuple, list[int]] = {}  # a station-day may come more than once
        for i, key in enumerate(self._order):
            self._positions.setdefault(key, []).append(i)
        self._next = 0  # the position after the last one served
        self._ahead = max(0, int(ahead))
        self._futures: dict = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="quakescale-read") if self._ahead else None

    def _read(self, i: int) -> Stream:
        root, channels, pad_s = self._args
        return read_station_day(root, self._order[i][0], self._order[i][1], channels=channels, pad_s=pad_s)

    def get(self, station_id: str, day) -> Stream:
        root, channels, pad_s = self._args
        i = next((j for j in self._positions.get((str(station_id), as_day(day)), ()) if j >= self._next), None)
        if i is not None:
            self._next = i + 1
        if self._pool is None:
            return read_station_day(root, station_id, as_day(day), channels=channels, pad_s=pad_s)
        # every read on the one reader thread: ObsPy's libmseed wrapper hooks its log callbacks
        # globally per call, so two reads at once could call back into a finished one
        if i is None:
            fut = self._pool.submit(read_station_day, root, station_id, as_day(day), channels, pad_s)
        else:
            fut = self._futures.pop(i, None) or self._pool.submit(self._read, i)
            for j in [j for j in self._futures if j < i]:  # skipped station-days: not kept in memory
                self._futures.pop(j).cancel()
            for j in range(i + 1, min(i + 1 + self._ahead, len(self._order))):
                if j not in self._futures:
                    self._futures[j] = self._pool.submit(self._read, j)
        return fut.result()

    def close(self) -> None:
        for fut in self._futures.values():
            fut.cancel()
        self._futures.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def as_day(day) -> dt.date:
    """A date from a date or an ISO string (``YYYY-MM-DD``, with anything after it ignored)."""
    return day if isinstance(day, dt.date) else dt.date.fromisoformat(str(day)[:10])


def station_windows(
    sds_root, station_id: str, times, pre_s: float, post_s: float, channels: list[str] | None = None
) -> Stream:
    """The waveform windows ``[t - pre_s, t + post_s]`` of one station around ``times`` (UTC):
    each day is read once and cut, so memory holds windows, not days; days without usable
    data give no windows."""
    st = Stream()
    t = pd.to_datetime(pd.Series(times), utc=True)
    for day, grp in t.groupby(t.dt.date):
        try:
            day_st = read_station_day(sds_root, station_id, day, channels)
        except ArchiveError:
            continue
        for ts in grp:
            u = UTCDateTime(ns=int(ts.as_unit("ns").value))
            st += day_st.slice(u - pre_s, u + post_s).split()
    return st


# ----------------------------------------------------------------------------- import
_ENCODING = {np.dtype("int32"): "STEIM2", np.dtype("float32"): "FLOAT32", np.dtype("float64"): "FLOAT64"}
IMPORT_RECLEN = 4096


def sds_path(root, net: str, sta: str, loc: str, cha: str, day: dt.date) -> Path:
    """SDS file of one channel-day: ``YEAR/NET/STA/CHA.D/NET.STA.LOC.CHA.D.YEAR.DOY``."""
    return (
        Path(root)
        / f"{day.year}"
        / net
        / sta
        / f"{cha}.D"
        / f"{net}.{sta}.{loc}.{cha}.D.{day.year}.{day.timetuple().tm_yday:03d}"
    )


def _as_archive_dtype(data: np.ndarray) -> np.ndarray:
    if np.issubdtype(data.dtype, np.integer):
        if data.size and (data.max() > 2**31 - 1 or data.min() < -(2**31)):
            return data.astype(np.float64)
        return data.astype(np.int32)
    return data.astype(np.float64) if data.dtype == np.float64 else data.astype(np.float32)


def _day_bytes(traces: Stream) -> bytes:
    """One channel-day as MiniSEED bytes: merged (overlaps resolved, duplicates dropped),
    contiguous pieces written in time order with fixed 4096-byte records (same input, same bytes)."""
    st = Stream([tr.copy() for tr in traces])
    for tr in st:
        tr.data = _as_archive_dtype(np.asarray(tr.data))
        tr.stats.pop("mseed", None)
        tr.stats.pop("sac", None)
        tr.stats.pop("_format", None)
    dtypes = {tr.data.dtype for tr in st}
    if len(dtypes) > 1:  # int and float pieces of one channel: keep floats
        for tr in st:
            tr.data = tr.data.astype(np.float64)
    st.sort(keys=["starttime", "endtime"])
    st.merge(method=1, fill_value=None)  # overlaps: the later piece wins; identical copies collapse
    st = st.split()
    st.sort(keys=["starttime"])
    buf = io.BytesIO()
    enc = _ENCODING.get(st[0].data.dtype, "FLOAT64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st.write(buf, format="MSEED", reclen=IMPORT_RECLEN, encoding=enc)
    return buf.getvalue()


def import_files(files, sds_root, log=None) -> dict:
    """Turn MiniSEED / SAC files of any length (one per channel and request, as FDSN clients
    write them, or anything ObsPy reads) into an SDS archive under ``sds_root``, idempotently.

    Traces are cut at UTC midnight; each channel-day merges what the archive already holds with
    the new pieces (overlapping files merged, duplicates dropped) and is rewritten only when its
    bytes change, so importing the same files again changes nothing.  Unreadable files are
    listed in ``errors`` and do not stop the import.  Returns counts and the channel-days
    written / unchanged."""
    sds_root = Path(sds_root)
    by_day: dict[tuple, Stream] = {}
    errors, n_files, n_traces = [], 0, 0
    for f in files:
        f = Path(f)
        if f.is_dir():
            errors.append(f"{f}: is a directory (give the files, e.g. {f}/*.mseed)")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                st = read(str(f))
        except Exception as exc:  # not a waveform file ObsPy reads
            errors.append(f"{f}: unreadable ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})")
            continue
        n_files += 1
        for tr in st:
            if not tr.stats.npts:
                continue
            n_traces += 1
            s = tr.stats
            d = dt.date.fromisoformat(str(s.starttime.date))
            while UTCDateTime(d.isoformat()) <= s.endtime:
                d0 = UTCDateTime(d.isoformat())
                piece = tr.slice(d0, d0 + 86400 - 1e-6, nearest_sample=False)  # a midnight sample starts the next day
                if piece.stats.npts:
                    by_day.setdefault((s.network, s.station, s.location, s.channel, d), Stream()).append(piece)
                d += dt.timedelta(days=1)
    written, unchanged = [], []
    for (net, sta, loc, cha, d), pieces in sorted(by_day.items()):
        path = sds_path(sds_root, net, sta, loc, cha, d)
        old = b""
        if path.exists():
            old = path.read_bytes()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    existing = read(str(path), format="MSEED")
            except Exception as exc:
                errors.append(f"{path}: existing archive file unreadable, not merged ({type(exc).__name__}: {exc})")
                continue
            pieces = existing + pieces
        data = _day_bytes(pieces)
        if data == old:
            unchanged.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        written.append(str(path))
        if log:
            log(f"wrote {path}")
    clear_listing_cache()
    return dict(
        files=n_files, traces=n_traces, channel_days=len(by_day), written=written, unchanged=unchanged, errors=errors
    )


def sds_contents(sds_root) -> pd.DataFrame:
    """What an SDS archive holds: one row per channel-day file (network, station, location,
    channel, day, path); empty when ``sds_root`` is not laid out as SDS."""
    rows = []
    root = Path(sds_root)
    for ydir in (
        sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit() and len(p.name) == 4)
        if root.is_dir()
        else []
    ):
        for f in sorted(ydir.glob("*/*/*.D/*")):
            parts = f.name.split(".")
            if len(parts) != 7 or parts[4] != "D" or not parts[6].isdigit():
                continue
            net, sta, loc, cha, _, year, doy = parts
            day = dt.date(int(year), 1, 1) + dt.timedelta(days=int(doy) - 1)
            rows.append(dict(network=net, station=sta, location=loc, channel=cha, day=day, path=str(f)))
    return pd.DataFrame(rows, columns=["network", "station", "location", "channel", "day", "path"])
