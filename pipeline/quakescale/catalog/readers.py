"""Readers for earthquake catalogs: ours and the established tools' outputs.

Every reader returns a pandas DataFrame with at least the columns
``event_id`` (int64), ``time`` (UTC ``datetime64[ns]``), ``latitude``, ``longitude``,
``depth_km``, ``magnitude`` (NaN when the format has none), in file order; format-specific
extras keep their own (unit-named) columns.

Formats:
- QuakeScale Parquet (``events.parquet``) and CSV (``events.csv``, ``#`` comment header);
- QuakeML (via ObsPy; preferred origin and magnitude of each event);
- REAL ``catalog_sel.txt``: ``num yr mo dy hh:mm:ss.sss t_sec std lat lon depth mag mag_std
  nP nS nPS station_gap``;
- VELEST ``new.cat``: ``yymmdd hh mm ss.ss lat lon dep mag gap rms`` (lat/lon may carry an
  N/S/E/W suffix);
- HypoDD ``hypoDD.reloc`` (24 columns: ``ID LAT LON DEPTH X Y Z EX EY EZ YR MO DY HR MI SC MAG
  NCCP NCCS NCTP NCTS RCC RCT CID``) and ``hypoDD.loc`` (18 columns, ``... SC MAG CID``).

:func:`read_catalog` picks the reader from the file name, then from the content.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ..errors import QuakeScaleError
from ..formats import hypodd

BASE_COLUMNS = ["event_id", "time", "latitude", "longitude", "depth_km", "magnitude"]

# hypoDD.reloc / .loc: read by formats.hypodd (the one reader of 2.1b's layout), named here as a catalog
_HYPODD_NAMES = {"cluster": "cluster_id", "n_cc_p": "n_ccp", "n_cc_s": "n_ccs", "n_ct_p": "n_ctp", "n_ct_s": "n_cts"}
_HYPODD_DATE = ["year", "month", "day", "hour", "minute", "second"]


class CatalogFormatError(QuakeScaleError, ValueError):
    """A catalog file that cannot be read; the message names the file and the line."""


def _utc_ns(values) -> pd.Series:
    """Any datetime-like to tz-aware UTC datetime64[ns] (pandas 3 infers coarser units)."""
    s = pd.to_datetime(values, utc=True)
    s = pd.Series(s) if not isinstance(s, pd.Series) else s
    return s.astype("datetime64[ns, UTC]")


def _finish(df: pd.DataFrame, path, fmt: str) -> pd.DataFrame:
    for c in BASE_COLUMNS:
        if c not in df.columns:
            if c == "event_id":
                df[c] = np.arange(1, len(df) + 1)
            elif c == "magnitude":
                df[c] = np.nan
            else:
                raise CatalogFormatError(f"{path}: {fmt} catalog has no {c!r} column")
    df["event_id"] = df["event_id"].astype("int64")
    for c in ("latitude", "longitude", "depth_km", "magnitude"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    df["time"] = _utc_ns(df["time"]).to_numpy()
    df.attrs["format"] = fmt
    df.attrs["path"] = str(path)
    rest = [c for c in df.columns if c not in BASE_COLUMNS]
    return df[BASE_COLUMNS + rest].reset_index(drop=True)


def _data_lines(path) -> list[tuple[int, list[str]]]:
    """Non-empty, non-comment lines of a text file, split on whitespace, with line numbers."""
    out = []
    with open(path, "r", errors="replace") as fh:
        for i, line in enumerate(fh, 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            out.append((i, s.split()))
    return out


def _times(yr, mo, dy, hr, mi, sec) -> pd.Series:
    """Vectorised date parts -> UTC ns; seconds may be 60.0 or negative (tools round so)."""
    base = pd.to_datetime(
        pd.DataFrame({"year": np.asarray(yr, int), "month": np.asarray(mo, int), "day": np.asarray(dy, int)})
    )
    off = np.asarray(hr, float) * 3600.0 + np.asarray(mi, float) * 60.0 + np.asarray(sec, float)
    ns = base.to_numpy().astype("datetime64[ns]").astype("int64") + np.round(off * 1e9).astype("int64")
    return pd.Series(pd.to_datetime(ns, unit="ns", utc=True)).astype("datetime64[ns, UTC]")


# --------------------------------------------------------------------------- formats


def read_parquet_catalog(path) -> pd.DataFrame:
    df = pq.read_table(path).to_pandas()
    return _finish(df, path, "parquet")


def read_csv_catalog(path) -> pd.DataFrame:
    df = pd.read_csv(path, comment="#")
    if "time" not in df.columns:
        raise CatalogFormatError(f"{path}: CSV catalog has no 'time' column (columns: {list(df.columns)})")
    return _finish(df, path, "csv")


def read_quakeml(path) -> pd.DataFrame:
    from obspy import read_events

    cat = read_events(str(path))
    rows = []
    for i, ev in enumerate(cat, 1):
        org = ev.preferred_origin() or (ev.origins[0] if ev.origins else None)
        if org is None:
            continue
        mag = ev.preferred_magnitude() or (ev.magnitudes[0] if ev.magnitudes else None)
        rid = str(ev.resource_id)
        m = re.search(r"(\d+)$", rid)
        q = org.quality
        rows.append(
            {
                "event_id": int(m.group(1)) if m else i,
                "time": org.time.ns,
                "latitude": org.latitude,
                "longitude": org.longitude,
                "depth_km": (org.depth / 1000.0) if org.depth is not None else np.nan,
                "magnitude": mag.mag if mag is not None else np.nan,
                "mag_type": (mag.magnitude_type if mag is not None else None) or "",
                "n_stations": (q.used_station_count if q and q.used_station_count is not None else -1),
                "rms_s": (q.standard_error if q and q.standard_error is not None else np.nan),
                "resource_id": rid,
            }
        )
    df = pd.DataFrame(rows, columns=BASE_COLUMNS + ["mag_type", "n_stations", "rms_s", "resource_id"])
    df["time"] = pd.to_datetime(df["time"].astype("int64"), unit="ns", utc=True)
    if df["event_id"].duplicated().any():  # resource ids without unique trailing numbers
        df["event_id"] = np.arange(1, len(df) + 1)
    return _finish(df, path, "quakeml")


def read_real_catalog(path) -> pd.DataFrame:
    """REAL ``catalog_sel.txt`` (or ``catalog_allday.txt``)."""
    rows = []
    for ln, f in _data_lines(path):
        if len(f) < 16:
            raise CatalogFormatError(f"{path}:{ln}: REAL catalog line has {len(f)} fields, expected >= 16")
        hh, mm, ss = f[4].split(":")
        rows.append(
            [int(f[0]), int(f[1]), int(f[2]), int(f[3]), int(hh), int(mm), float(ss)] + [float(x) for x in f[5:16]]
        )
    cols = [
        "event_id",
        "yr",
        "mo",
        "dy",
        "hr",
        "mi",
        "sc",
        "t_s",
        "std_s",
        "latitude",
        "longitude",
        "depth_km",
        "magnitude",
        "mag_std",
        "n_p",
        "n_s",
        "n_ps",
    ]
    a = pd.DataFrame(rows, columns=cols + ["gap_deg"]) if rows else pd.DataFrame(columns=cols + ["gap_deg"])
    a["time"] = (
        _times(a["yr"], a["mo"], a["dy"], a["hr"], a["mi"], a["sc"])
        if len(a)
        else pd.Series([], dtype="datetime64[ns, UTC]")
    )
    for c in ("n_p", "n_s", "n_ps"):
        a[c] = a[c].astype("int64")
    a = a.drop(columns=["yr", "mo", "dy", "hr", "mi", "sc"])
    return _finish(a, path, "real")


def _deg(tok: str) -> float:
    t = tok.strip()
    sign = -1.0 if t[-1:] in ("S", "W", "s", "w") else 1.0
    return sign * float(t.rstrip("NSEWnsew"))


def read_velest_cat(path) -> pd.DataFrame:
    """VELEST ``new.cat``/``italy.cat``: ``yymmdd hh mm ss.ss lat lon depth mag gap rms``.

    Note: in the Italy demo the ``mag`` column holds the event number / 100, not a magnitude.
    """
    rows = []
    for ln, f in _data_lines(path):
        if len(f) < 7 or not re.fullmatch(r"\d{6}", f[0]):
            raise CatalogFormatError(f"{path}:{ln}: not a VELEST catalog line (yymmdd hh mm ss lat lon depth mag ...)")
        if len(f[1]) > 2:  # CNV-style "hhmm" run together, e.g. "010" = 00:10
            hhmm = f[1].zfill(4)
            hh, mm, rest = int(hhmm[:-2]), int(hhmm[-2:]), f[2:]
        else:
            hh, mm, rest = int(f[1]), int(f[2]), f[3:]
        if len(rest) < 5:
            raise CatalogFormatError(f"{path}:{ln}: VELEST catalog line too short (need ss lat lon depth mag)")
        yy = int(f[0][:2])
        try:
            rows.append(
                [
                    (2000 + yy) if yy < 70 else (1900 + yy),
                    int(f[0][2:4]),
                    int(f[0][4:6]),
                    hh,
                    mm,
                    float(rest[0]),
                    _deg(rest[1]),
                    _deg(rest[2]),
                    float(rest[3]),
                    float(rest[4]),
                    float(rest[5]) if len(rest) > 5 else np.nan,
                    float(rest[6]) if len(rest) > 6 else np.nan,
                ]
            )
        except ValueError as exc:
            raise CatalogFormatError(f"{path}:{ln}: bad number in VELEST catalog line: {exc}") from exc
    cols = ["yr", "mo", "dy", "hr", "mi", "sc", "latitude", "longitude", "depth_km", "magnitude", "gap_deg", "rms_s"]
    a = pd.DataFrame(rows, columns=cols)
    a["time"] = (
        _times(a["yr"], a["mo"], a["dy"], a["hr"], a["mi"], a["sc"])
        if len(a)
        else pd.Series([], dtype="datetime64[ns, UTC]")
    )
    a.insert(0, "event_id", np.arange(1, len(a) + 1))
    return _finish(a.drop(columns=["yr", "mo", "dy", "hr", "mi", "sc"]), path, "velest")


def read_hypodd(path) -> pd.DataFrame:
    """HypoDD ``.reloc`` (24 columns) or ``.loc`` (18 columns); X/Y/Z/EX/EY/EZ in metres.  The
    layout is read by :func:`quakescale.formats.hypodd.read_reloc` / ``read_loc``."""
    lines = _data_lines(path)
    if not lines:
        empty = pd.DataFrame(columns=[c for c in hypodd.RELOC_COLUMNS if c not in _HYPODD_DATE] + ["time"])
        return _finish(empty.rename(columns=_HYPODD_NAMES), path, "hypodd")
    n = len(lines[0][1])
    if n not in (24, 18):
        raise CatalogFormatError(f"{path}:{lines[0][0]}: hypoDD line has {n} fields, expected 24 (.reloc) or 18 (.loc)")
    bad = [ln for ln, f in lines if len(f) != n]
    if bad:
        raise CatalogFormatError(
            f"{path}:{bad[0]}: hypoDD line has a different number of fields than line {lines[0][0]} ({n})"
        )
    a = hypodd.read_reloc(path) if n == 24 else hypodd.read_loc(path)
    a["time"] = _times(*(a[c] for c in _HYPODD_DATE))
    a = a.drop(columns=_HYPODD_DATE).rename(columns=_HYPODD_NAMES)
    return _finish(a, path, "hypodd_reloc" if n == 24 else "hypodd_loc")


READERS = {
    "parquet": read_parquet_catalog,
    "csv": read_csv_catalog,
    "quakeml": read_quakeml,
    "real": read_real_catalog,
    "velest": read_velest_cat,
    "hypodd": read_hypodd,
}


def detect_format(path) -> str:
    """Guess a catalog's format from its name, then from its first data line."""
    p = Path(path)
    name = p.name.lower()
    if not p.exists():
        raise FileNotFoundError(f"catalog file not found: {path}")
    if name.endswith(".parquet") or name.endswith(".pq"):
        return "parquet"
    if name.endswith((".xml", ".qml", ".quakeml")):
        return "quakeml"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".reloc", ".loc")) or "reloc" in name:
        return "hypodd"
    with open(p, "rb") as fh:
        head = fh.read(4096)
    if head.startswith(b"PAR1"):
        return "parquet"
    text = head.decode("utf-8", errors="replace")
    if text.lstrip().startswith("<?xml") or "<q:quakeml" in text or "<quakeml" in text.lower():
        return "quakeml"
    first = next((ln.split() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), None)
    if first is None:
        raise CatalogFormatError(f"{path}: empty catalog file, cannot tell its format")
    if len(first) >= 5 and re.fullmatch(r"\d+:\d+:[\d.]+", first[4] or ""):
        return "real"
    if re.fullmatch(r"\d{6}", first[0]) and len(first) >= 8:
        return "velest"
    if len(first) in (18, 24):
        return "hypodd"
    if "," in text.splitlines()[0] or any("time" in ln and "," in ln for ln in text.splitlines()[:3]):
        return "csv"
    raise CatalogFormatError(
        f"{path}: unknown catalog format (first data line {' '.join(first)[:80]!r}); "
        "known: Parquet, CSV, QuakeML, REAL catalog_sel.txt, VELEST new.cat, hypoDD .reloc/.loc"
    )


def read_catalog(path, fmt: str | None = None) -> pd.DataFrame:
    """Read any supported catalog into the common columns (see module docstring)."""
    fmt = fmt or detect_format(path)
    if fmt not in READERS:
        raise CatalogFormatError(f"{path}: unknown catalog format {fmt!r}; known: {sorted(READERS)}")
    return READERS[fmt](path)
