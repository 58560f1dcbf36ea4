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
- REAL ``catalog_sel.txt`` (:func:`read_real_catalog`) for comparisons;
- the picks of HypoDD phase files and Hypoinverse archives (:func:`read_hypodd_phase_picks`,
  :func:`read_hypoinverse_phase_picks`).

:func:`read_picks` is the one dispatcher: it decides the format of any pick file.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import QuakeScaleError
from ._text import token_lines
from .hypodd import read_pha
from .hypoinverse import read_arc

__all__ = [
    "PickFormatError",
    "read_real_picks",
    "read_real_stations",
    "read_stationxml",
    "read_stations",
    "read_csv_picks",
    "read_real_catalog",
    "read_phasenet_picks",
    "read_picks",
    "read_hypodd_phase_picks",
    "read_hypoinverse_phase_picks",
    "picks_frame",
]

PICK_COLUMNS = [
    "station_id",
    "network",
    "station",
    "location",
    "channel",
    "phase",
    "time",
    "probability",
    "snr",
    "amp_wa_mm",
    "method",
    "model",
]
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
    for c in ("amp_source", "amp_note"):  # optional PICKS v2 columns: unknown for picks from elsewhere
        if c not in out:
            out[c] = pd.Series([None] * n, dtype=object)
    if "amp_clipped" not in out:
        out["amp_clipped"] = pd.Series([None] * n, dtype=object)
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
        frames.append(
            pd.DataFrame(
                {
                    "station_id": f"{net}.{sta}",
                    "network": net,
                    "station": sta,
                    "phase": ph,
                    "time": day + pd.to_timedelta(np.round(t * 1e9).astype(np.int64), unit="ns"),
                    "snr": w.astype(np.float32),
                    "amp_wa_mm": a if ph == "S" else np.nan,
                    "amp_raw": a,
                    "method": "stalta",
                    "model": "REAL-demo-stalta",
                }
            )
        )
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
            rows.append(
                (
                    f"{net.code}.{sta.code}",
                    net.code,
                    sta.code,
                    float(sta.latitude),
                    float(sta.longitude),
                    float(sta.elevation),
                    "permanent",
                )
            )
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
}
# amplitude columns whose unit the file does not say: taken only when the caller says it
_AMP_ALIASES = ["amp", "amplitude", "phase_amp", "phase_amplitude"]
AMP_UNITS = ("wa_mm", "raw")


def _read_table(path: Path, sep=None) -> pd.DataFrame:
    """A delimited table with a header; empty files and header-only files are refused with a
    clear message (naming the file) instead of pandas' own errors."""
    if path.stat().st_size == 0:
        raise PickFormatError(f"{path}: empty file (0 bytes), expected a header line and picks")
    try:
        df = pd.read_csv(path, sep=sep, engine="python" if sep is None else "c")
    except pd.errors.EmptyDataError as exc:
        raise PickFormatError(f"{path}: no header line and no picks (blank file)") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, csv.Error) as exc:
        raise PickFormatError(f"{path}: not a readable delimited table: {exc}") from exc
    if len(df) == 0:
        raise PickFormatError(f"{path}: header only, no picks (columns {list(df.columns)})")
    return df


def read_csv_picks(path, sep=None, time_unit: str | None = None, amp_unit: str | None = None) -> pd.DataFrame:
    """Picks from another picker as CSV -> PICKS table.  Understood column names:
    station (``station_id``/``id``/``station``, ``NET.STA[.LOC[.CHA]]`` or with ``network``
    column), phase (``phase``/``type``/``phase_hint``), time (``time``/``phase_time``/
    ``timestamp``: ISO strings, or numbers = epoch seconds, or ``time_unit``), probability
    (``probability``/``prob``/``phase_score``).  Amplitudes: a column ``amp_wa_mm`` is
    Wood-Anderson mm; any other amplitude column (``amp``/``amplitude``/``phase_amp``) has no
    unit we can trust, so ``amp_unit`` must say it: ``"wa_mm"`` (use it for magnitudes) or
    ``"raw"`` (keep it as ``amp_raw``, not used for magnitudes); unsaid -> error."""
    path = Path(path)
    if amp_unit is not None and amp_unit not in AMP_UNITS:
        raise PickFormatError(f"{path}: amplitude unit must be one of {AMP_UNITS}, not {amp_unit!r}")
    df = _read_table(path, sep)
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
    if "amp_wa_mm" in cols:
        out["amp_wa_mm"] = pd.to_numeric(df[cols["amp_wa_mm"]], errors="coerce")
    else:
        amp_col = next((cols[n] for n in _AMP_ALIASES if n in cols), None)
        if amp_col is not None:
            if amp_unit is None:
                raise PickFormatError(
                    f"{path}: amplitude column {amp_col!r} without a unit: say amp_unit='wa_mm' (Wood-Anderson mm, "
                    "used for magnitudes) or 'raw' (kept as amp_raw) -- CLI --amp-unit; or rename it amp_wa_mm"
                )
            vals = pd.to_numeric(df[amp_col], errors="coerce")
            if amp_unit == "wa_mm":
                out["amp_wa_mm"] = vals
            else:
                out["amp_raw"] = vals
    sid = out["station_id"].astype(str)
    if "network" in cols and not sid.str.contains(".", regex=False).all():
        sid = df[cols["network"]].astype(str) + "." + sid
    parts = sid.str.split(".", expand=True)
    if parts.shape[1] < 2 or parts[1].isna().any():
        bad = int(np.flatnonzero(parts[1].isna())[0]) if parts.shape[1] >= 2 else 0
        raise PickFormatError(
            f"{path}:{bad + 2}: station ids must be NET.STA (got {sid.iloc[bad]!r}) or give a 'network' column"
        )
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
    if out["time"].isna().any():
        raise PickFormatError(f"{path}:{int(np.flatnonzero(out['time'].isna())[0]) + 2}: pick without a time")
    ph = out["phase"].astype(str).str.upper().str[0]
    bad = ~ph.isin(["P", "S"])
    if bad.any():
        raise PickFormatError(
            f"{path}: phase must be P or S; row {int(np.flatnonzero(bad)[0]) + 2} has {out['phase'][bad].iloc[0]!r}"
        )
    out["phase"] = ph
    if "probability" in out:
        out["probability"] = pd.to_numeric(out["probability"], errors="coerce")
    out["method"] = "external"
    out["model"] = path.name
    return picks_frame(out.sort_values("time", kind="stable"))


# ----------------------------------------------------------------------------- PhaseNet picks.csv
_PN_NAME = re.compile(r"(?:^|_)([A-Za-z0-9]{1,2})_([A-Za-z0-9]+)(?:_[A-Za-z0-9]*)?$")


def _pn_list(text: str, path, line: int, field: str) -> np.ndarray:
    text = str(text).strip()
    if text in ("", "[]", "nan"):
        return np.zeros(0)
    try:
        return np.array([float(x) for x in text.strip("[]").split(",") if x.strip()], float)
    except ValueError as exc:
        raise PickFormatError(f"{path}:{line}: field {field!r} is not a [list] of numbers: {exc}") from exc


def read_phasenet_picks(path, sampling_rate_hz: float = 100.0) -> pd.DataFrame:
    """PhaseNet's (2019-2021) per-trace ``picks.csv``: tab-separated ``fname t0 p_idx p_prob
    s_idx s_prob [p_amp s_amp]``, one row per station and window, the list fields as
    ``[a,b,...]``; pick time = ``t0 + idx / sampling_rate_hz``.  The station comes from
    ``fname`` (``..._NET_STA_mseed``).  Amplitudes (PhaseNet's peak ground velocity, m/s) go
    to ``amp_raw``, never to ``amp_wa_mm``."""
    path = Path(path)
    df = _read_table(path, sep="\t")
    need = ["fname", "t0", "p_idx", "p_prob", "s_idx", "s_prob"]
    miss = [c for c in need if c not in df]
    if miss:
        raise PickFormatError(f"{path}: not a PhaseNet picks.csv: missing column(s) {miss} (have {list(df.columns)})")
    frames = []
    for i, row in enumerate(df.itertuples(index=False), 2):
        name = str(row.fname)
        m = _PN_NAME.search(re.sub(r"\.(mseed|sac)$", "", name))
        if not m:
            raise PickFormatError(f"{path}:{i}: cannot read NET_STA from fname {name!r}")
        net, sta = m.groups()
        try:
            t0 = pd.Timestamp(row.t0)
            t0 = t0.tz_localize("UTC") if t0.tz is None else t0.tz_convert("UTC")
        except (ValueError, TypeError) as exc:
            raise PickFormatError(f"{path}:{i}: bad t0 {row.t0!r}: {exc}") from exc
        for ph in ("p", "s"):
            idx = _pn_list(getattr(row, f"{ph}_idx"), path, i, f"{ph}_idx")
            prob = _pn_list(getattr(row, f"{ph}_prob"), path, i, f"{ph}_prob")
            if len(prob) != len(idx):
                raise PickFormatError(f"{path}:{i}: {ph}_idx has {len(idx)} values but {ph}_prob {len(prob)}")
            amp = _pn_list(getattr(row, f"{ph}_amp"), path, i, f"{ph}_amp") if f"{ph}_amp" in df else np.zeros(0)
            if len(amp) != len(idx):
                amp = np.full(len(idx), np.nan)
            if len(idx) == 0:
                continue
            frames.append(
                pd.DataFrame(
                    {
                        "station_id": f"{net}.{sta}",
                        "network": net,
                        "station": sta,
                        "phase": ph.upper(),
                        "time": t0
                        + pd.to_timedelta(np.round(idx / sampling_rate_hz * 1e9).astype(np.int64), unit="ns"),
                        "probability": prob.astype(np.float32),
                        "amp_raw": amp,
                        "method": "external",
                        "model": "phasenet",
                    }
                )
            )
    if not frames:
        raise PickFormatError(f"{path}: PhaseNet table without picks")
    out = pd.concat(frames, ignore_index=True).sort_values("time", kind="stable")
    return picks_frame(out)


# ----------------------------------------------------------------------------- catalog phase files
def read_hypodd_phase_picks(path, stations: pd.DataFrame | None, unknown_codes: str = "error") -> pd.DataFrame:
    """A HypoDD phase file (``*.pha``, ``phase.dat``) as picks with their ``event_id``: pick time
    = origin time + travel time.  Its station codes have no network: ``stations`` (with
    ``station_id`` and ``station``, else the code after the dot) maps them; an ambiguous code
    raises naming the file, an unknown one too (``unknown_codes="error"``) or its picks are
    dropped (``"drop"``)."""
    path = Path(path)
    ev, ph = read_pha(path)
    if stations is None:
        raise PickFormatError(f"{path}: a HypoDD phase file needs the station table to map codes to NET.STA")
    code_of = stations["station"] if "station" in stations else stations["station_id"].astype(str).str.split(".").str[1]
    codes = stations["station_id"].groupby(code_of.to_numpy()).agg(list).to_dict()
    sid = []
    for code in ph["station"]:
        ids = codes.get(code, [])
        if len(ids) > 1 or (not ids and unknown_codes != "drop"):
            why = "unknown" if not ids else f"ambiguous {ids}"
            raise PickFormatError(f"{path}: station code {code!r} is {why} in the inventory")
        sid.append(ids[0] if ids else None)
    known = np.array([s is not None for s in sid], bool)
    ph, sid = ph[known], [s for s in sid if s is not None]
    origin = ev.set_index("event_id")["time"]
    travel = pd.to_timedelta(ph["travel_time_s"].to_numpy(), unit="s")
    df = pd.DataFrame(
        {
            "station_id": sid,
            "phase": ph["phase"].str[0].to_numpy(),
            "event_id": ph["event_id"].to_numpy(),
            "time": origin.loc[ph["event_id"]].reset_index(drop=True) + pd.Series(travel),
        }
    )
    df["method"], df["model"] = "manual", path.name
    return picks_frame(df)


def read_hypoinverse_phase_picks(path) -> pd.DataFrame:
    """The P and S readings of a Hypoinverse archive (``*.arc``, ``*.phs``, ``*.hyp``) as picks
    with their ``event_id``."""
    path = Path(path)
    _, ph = read_arc(path)
    df = ph[ph["phase"].isin(["P", "S"])][["station_id", "phase", "time", "event_id"]].copy()
    df["method"], df["model"] = "manual", path.name
    return picks_frame(df)


def read_picks(
    path, amp_unit: str | None = None, stations: pd.DataFrame | None = None, unknown_codes: str = "error"
) -> pd.DataFrame:
    """The one reader of pick files (``quakescale associate-external``, the bootstrap's manual
    picks), the format decided by the name, then the header line:

    - ``*.parquet``: our PICKS table;
    - a folder or ``*.zip``: REAL pick files (:func:`read_real_picks`);
    - ``*.pha`` / ``phase*.dat``: a HypoDD phase file (:func:`read_hypodd_phase_picks`; needs
      ``stations`` to map its station codes, ``unknown_codes`` says what an unknown one does) --
      with an ``event_id`` column;
    - ``*.arc`` / ``*.phs`` / ``*.hyp``: a Hypoinverse archive
      (:func:`read_hypoinverse_phase_picks`) -- with an ``event_id`` column;
    - PhaseNet's ``picks.csv`` (``fname`` and ``p_idx`` in the header, :func:`read_phasenet_picks`);
    - anything else: a generic CSV (:func:`read_csv_picks`, ``amp_unit`` for its amplitudes)."""
    path = Path(path)
    if not path.exists():
        raise PickFormatError(f"{path}: no such pick file or folder")
    name = path.name.lower()
    if name.endswith(".parquet"):
        return picks_frame(pd.read_parquet(path))
    if name.endswith(".zip") or path.is_dir():
        return read_real_picks(path)
    if name.endswith(".pha") or (name.startswith("phase") and name.endswith(".dat")):
        return read_hypodd_phase_picks(path, stations, unknown_codes)
    if name.endswith((".arc", ".phs", ".hyp")):
        return read_hypoinverse_phase_picks(path)
    head = path.open("rb").readline(4096).decode("utf-8", "replace")
    if "p_idx" in head and "fname" in head:
        return read_phasenet_picks(path)
    return read_csv_picks(path, amp_unit=amp_unit)


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
            rows.append(
                (
                    int(tok[0]),
                    t,
                    float(tok[7]),
                    float(tok[8]),
                    float(tok[9]),
                    float(tok[10]),
                    int(tok[12]),
                    int(tok[13]),
                    int(tok[14]),
                    float(tok[6]),
                    float(tok[15]) if len(tok) > 15 else np.nan,
                )
            )
        except ValueError as exc:
            raise PickFormatError(f"{path}:{n}: {exc} in {line!r}") from exc
    return pd.DataFrame(
        rows,
        columns=[
            "event_id",
            "time",
            "latitude",
            "longitude",
            "depth_km",
            "magnitude",
            "n_p",
            "n_s",
            "n_picks",
            "std_s",
            "gap_deg",
        ],
    )
