"""Readers for picks, station lists and reference catalogs written by other tools.

Everything comes back as a pandas DataFrame in our schemas (:data:`quakescale.schema.PICKS`,
:data:`quakescale.schema.STATIONS`) so that the associator sees one table shape whatever
picked the phases:

- REAL STA/LTA pick files ``<NET>.<STA>.<P|S>.txt`` (lines ``t_sec weight amp``, seconds after
  the day's midnight), loose in a folder or inside a zip (:func:`read_real_picks`);
- REAL ``station.dat`` (``lon lat net sta chan elev_km``) and StationXML
  (:func:`read_stations`);
- generic CSV picks from another picker (:func:`read_csv_picks`; common column spellings of
  PhaseNet / GaMMA / PyOcto / SeisBench exports are understood);
- REAL ``catalog_sel.txt`` (:func:`read_real_catalog`) for comparisons.
"""

from __future__ import annotations

from ..errors import QuakeScaleError
import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from ._text import token_lines

__all__ = [
    "PickFormatError",
    "read_real_picks",
    "read_real_stations",
    "read_stationxml",
    "read_stations",
    "read_csv_picks",
    "read_real_catalog",
    "picks_frame",
]

PICK_COLUMNS = ["station_id", "network", "station", "location", "channel", "phase", "time",
                "probability", "snr", "amp_wa_mm", "method", "model"]
STATION_COLUMNS = ["station_id", "network", "station", "latitude", "longitude", "elevation_m", "kind"]

_REAL_NAME = re.compile(r"(?:^|/)([A-Za-z0-9]+)\.([A-Za-z0-9_\-]+)\.([PS])\.txt$")


class PickFormatError(QuakeScaleError, ValueError):
    """A pick / station / catalog file that cannot be read; the message names file and line."""


def picks_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Complete a frame to the PICKS column set (missing optional columns as nulls), in order;
    extra columns are kept after the schema's."""
    out = df.copy()
    n = len(out)
    for c in ("location", "channel"):
        if c not in out:
            out[c] = ""
    for c in ("probability", "snr"):
        out[c] = out[c].astype("float32") if c in out else np.full(n, np.nan, np.float32)
    if "amp_wa_mm" not in out:
        out["amp_wa_mm"] = np.nan
    for c in ("method", "model"):
        if c not in out:
            out[c] = ""
    if "network" not in out or "station" not in out:
        parts = out["station_id"].astype(str).str.split(".", n=1, expand=True)
        out["network"] = parts[0]
        out["station"] = parts[1] if parts.shape[1] > 1 else ""
    out["time"] = pd.to_datetime(out["time"], utc=True).astype("datetime64[ns, UTC]")
    out["phase"] = out["phase"].astype(str).str.upper().str[0]
    extra = [c for c in out.columns if c not in PICK_COLUMNS]
    return out[PICK_COLUMNS + extra].reset_index(drop=True)


# ----------------------------------------------------------------------------- REAL picks
def _day_from_name(name: str):
    m = re.search(r"(\d{8})", name)
    if not m:
        return None
    return pd.Timestamp(m.group(1), tz="UTC")


def read_real_picks(path, day=None) -> pd.DataFrame:
    """Read REAL's STA/LTA pick files ``<NET>.<STA>.<P|S>.txt`` (lines ``t_sec weight amp``:
    seconds after midnight of ``day``, the picker's weight -- SNR or probability -- and the
    amplitude) from a zip file or a folder.  ``day`` defaults to the ``YYYYMMDD`` in the path
    (REAL names its pick folders by day).  The weight goes to ``snr``, the amplitude of S picks
    to ``amp_wa_mm`` (all amplitudes also to ``amp_raw``)."""
    path = Path(path)
    if not path.exists():
        raise PickFormatError(f"REAL pick path {path} does not exist")
    files: list[tuple[str, str]] = []
    if path.is_dir():
        for f in sorted(path.rglob("*.txt")):
            files.append((str(f.relative_to(path)), f.read_text()))
    else:
        try:
            with zipfile.ZipFile(path) as zf:
                for name in sorted(zf.namelist()):
                    if name.endswith(".txt"):
                        files.append((name, zf.read(name).decode("ascii", "replace")))
        except zipfile.BadZipFile as exc:
            raise PickFormatError(f"{path}: not a zip file and not a folder ({exc})") from exc
    if day is None:
        day = _day_from_name(str(path))
        if day is None:
            for name, _ in files:
                day = _day_from_name(name)
                if day is not None:
                    break
        if day is None:
            raise PickFormatError(f"{path}: no YYYYMMDD in the path or file names; pass day=")
    day = pd.Timestamp(day)
    day = day.tz_localize("UTC") if day.tz is None else day.tz_convert("UTC")
    frames = []
    for name, text in files:
        m = _REAL_NAME.search(name)
        if not m:
            continue
        net, sta, ph = m.groups()
        try:
            arr = np.loadtxt(io.StringIO(text), ndmin=2)
        except ValueError as exc:
            raise PickFormatError(f"{path}:{name}: expected lines 't_sec weight amp': {exc}") from exc
        if arr.size == 0:
            continue
        if arr.shape[1] < 1:
            raise PickFormatError(f"{path}:{name}: no columns")
        t = arr[:, 0]
        w = arr[:, 1] if arr.shape[1] > 1 else np.full(len(t), np.nan)
        a = arr[:, 2] if arr.shape[1] > 2 else np.full(len(t), np.nan)
        frames.append(pd.DataFrame({
            "station_id": f"{net}.{sta}", "network": net, "station": sta, "phase": ph,
            "time": day + pd.to_timedelta(np.round(t * 1e9).astype(np.int64), unit="ns"),
            "snr": w.astype(np.float32), "amp_wa_mm": a if ph == "S" else np.nan, "amp_raw": a,
            "method": "stalta", "model": "REAL-demo-stalta",
        }))
    if not frames:
        raise PickFormatError(f"{path}: no '<NET>.<STA>.<P|S>.txt' pick files found")
    df = pd.concat(frames, ignore_index=True).sort_values("time", kind="stable")
    return picks_frame(df)


# ----------------------------------------------------------------------------- stations
def read_real_stations(path) -> pd.DataFrame:
    """REAL ``station.dat``: ``lon lat net sta chan elev_km`` per line."""
    path = Path(path)
    rows = []
    for n, line, tok in token_lines(path, 6, PickFormatError, "'lon lat net sta chan elev_km'", comment="#"):
        try:
            lon, lat, elev = float(tok[0]), float(tok[1]), float(tok[5])
        except ValueError as exc:
            raise PickFormatError(f"{path}:{n}: {exc} in {line!r}") from exc
        rows.append((f"{tok[2]}.{tok[3]}", tok[2], tok[3], lat, lon, elev * 1000.0, "permanent", tok[4]))
    df = pd.DataFrame(rows, columns=STATION_COLUMNS + ["channel"])
    return df.drop_duplicates("station_id").reset_index(drop=True)


def read_stationxml(path) -> pd.DataFrame:
    """StationXML (via ObsPy) -> STATIONS table, one row per NET.STA."""
    from obspy import read_inventory

    inv = read_inventory(str(path))
    rows = []
    for net in inv:
        for sta in net:
            rows.append((f"{net.code}.{sta.code}", net.code, sta.code, float(sta.latitude),
                         float(sta.longitude), float(sta.elevation), "permanent"))
    if not rows:
        raise PickFormatError(f"{path}: StationXML without stations")
    return pd.DataFrame(rows, columns=STATION_COLUMNS).drop_duplicates("station_id").reset_index(drop=True)


def read_stations(path) -> pd.DataFrame:
    """Stations from StationXML (``.xml``), REAL ``station.dat`` (``.dat``), or a CSV/Parquet
    table with ``station_id latitude longitude elevation_m`` (or ``network``+``station``)."""
    path = Path(path)
    suf = path.suffix.lower()
    if suf == ".xml":
        return read_stationxml(path)
    if suf == ".dat":
        return read_real_stations(path)
    df = pd.read_parquet(path) if suf == ".parquet" else pd.read_csv(path)
    if "station_id" not in df:
        if {"network", "station"} <= set(df.columns):
            df["station_id"] = df["network"].astype(str) + "." + df["station"].astype(str)
        else:
            raise PickFormatError(f"{path}: station table needs 'station_id' or 'network'+'station'")
    if "elevation_m" not in df:
        if "elevation_km" in df:
            df["elevation_m"] = df["elevation_km"] * 1000.0
        else:
            df["elevation_m"] = 0.0
    for c in ("latitude", "longitude"):
        if c not in df:
            raise PickFormatError(f"{path}: station table misses column {c!r}")
    return df


# ----------------------------------------------------------------------------- CSV picks
_ALIASES = {
    "station_id": ["station_id", "id", "station", "sta", "trace_id", "station_code"],
    "phase": ["phase", "type", "phase_type", "phase_hint", "iphase"],
    "time": ["time", "phase_time", "timestamp", "pick_time", "peak_time", "arrival_time"],
    "probability": ["probability", "prob", "phase_score", "phase_prob", "peak_value", "score"],
    "amp_wa_mm": ["amp_wa_mm", "amp", "amplitude", "phase_amp", "phase_amplitude"],
}


def read_csv_picks(path, sep=None, time_unit: str | None = None) -> pd.DataFrame:
    """Picks from another picker as CSV -> PICKS table.  Understood column names:
    station (``station_id``/``id``/``station``, ``NET.STA[.LOC[.CHA]]`` or with ``network``
    column), phase (``phase``/``type``/``phase_hint``), time (``time``/``phase_time``/
    ``timestamp``: ISO strings, or numbers = epoch seconds, or ``time_unit``), probability
    (``probability``/``prob``/``phase_score``) and amplitude (``amp``/``phase_amp``)."""
    path = Path(path)
    df = pd.read_csv(path, sep=sep, engine="python" if sep is None else "c")
    cols = {c.lower().strip(): c for c in df.columns}
    out = pd.DataFrame(index=df.index)
    for key, names in _ALIASES.items():
        for n in names:
            if n in cols:
                out[key] = df[cols[n]]
                break
    for key in ("station_id", "phase", "time"):
        if key not in out:
            raise PickFormatError(f"{path}: no {key} column (looked for {_ALIASES[key]}; have {list(df.columns)})")
    sid = out["station_id"].astype(str)
    if "network" in cols and not sid.str.contains(".", regex=False).all():
        sid = df[cols["network"]].astype(str) + "." + sid
    parts = sid.str.split(".", expand=True)
    if parts.shape[1] < 2:
        raise PickFormatError(f"{path}: station ids must be NET.STA (got e.g. {sid.iloc[0]!r}) or give a 'network' column")
    out["station_id"] = parts[0] + "." + parts[1]
    out["network"], out["station"] = parts[0], parts[1]
    out["location"] = parts[2].fillna("") if parts.shape[1] > 2 else ""
    out["channel"] = parts[3].fillna("") if parts.shape[1] > 3 else ""
    t = out["time"]
    if pd.api.types.is_numeric_dtype(t):
        out["time"] = pd.to_datetime(t, unit=time_unit or "s", utc=True)
    else:
        try:
            out["time"] = pd.to_datetime(t, utc=True, format="mixed")
        except (ValueError, TypeError) as exc:
            raise PickFormatError(f"{path}: cannot parse time column: {exc}") from exc
    ph = out["phase"].astype(str).str.upper().str[0]
    bad = ~ph.isin(["P", "S"])
    if bad.any():
        raise PickFormatError(f"{path}: phase must be P or S; row {int(np.flatnonzero(bad)[0]) + 2} has {out['phase'][bad].iloc[0]!r}")
    out["phase"] = ph
    out["method"] = "external"
    out["model"] = path.name
    return picks_frame(out.sort_values("time", kind="stable"))


# ----------------------------------------------------------------------------- REAL catalog
def read_real_catalog(path) -> pd.DataFrame:
    """REAL ``catalog_sel.txt``: ``num yr mo dy hh:mm:ss.sss t_sec std lat lon depth mag
    mag_std nP nS nPS gap``."""
    path = Path(path)
    rows = []
    for n, line, tok in token_lines(path, 16, PickFormatError, "the columns of REAL catalog_sel"):
        try:
            day = pd.Timestamp(f"{int(tok[1]):04d}-{int(tok[2]):02d}-{int(tok[3]):02d}", tz="UTC")
            t = day + pd.to_timedelta(round(float(tok[5]) * 1e9), unit="ns")
            rows.append((int(tok[0]), t, float(tok[7]), float(tok[8]), float(tok[9]), float(tok[10]),
                         int(tok[12]), int(tok[13]), int(tok[14]), float(tok[6]),
                         float(tok[15]) if len(tok) > 15 else np.nan))
        except ValueError as exc:
            raise PickFormatError(f"{path}:{n}: {exc} in {line!r}") from exc
    return pd.DataFrame(rows, columns=["event_id", "time", "latitude", "longitude", "depth_km", "magnitude",
                                       "n_p", "n_s", "n_picks", "std_s", "gap_deg"])
