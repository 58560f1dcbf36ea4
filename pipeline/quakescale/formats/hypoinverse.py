"""Hypoinverse-2000 files: station (.sta, HINV Y2000 format), archive phase files (.arc, Y2000,
with shadow lines kept as they come), summary (.sum), CRH velocity models and the command file.

Column layouts follow the Hypoinverse-2000 manual (Klein 2002) and Earthworm's ``read_arc.c``;
below, columns are 0-based Python slices (manual column = start + 1).

Summary (header) line, Y2000 (also the ``.sum`` record)::

    [0:4] year  [4:12] MMDDHHMM  [12:16] sec F4.2  [16:18] lat deg  [18] 'S'|' '  [19:23] lat min F4.2
    [23:26] lon deg  [26] 'E'|' '(W)  [27:31] lon min F4.2  [31:36] depth F5.2  [36:39] amp mag F3.2
    [39:42] n P&S weighted  [42:45] gap  [45:48] dmin km  [48:52] rms F4.2
    [52:55][55:57][57:61] largest principal error az, dip, size F4.2  [61:64][64:66][66:70] intermediate
    [70:73] coda mag F3.2  [73:76] region  [76:80] smallest principal error F4.2  [80] analyst remark
    [81] program remark ('-' depth fixed)  [82:85] n S  [85:89] ERH F4.2  [89:93] ERZ F4.2
    [93:96] n first motions  [110:113] crust model code  [118:121] n valid P&S  [121] amp mag type
    [136:146] event id I10  [146] preferred mag label  [147:150] preferred mag F3.2  [162] version

Phase (station archive) line, Y2000::

    [0:5] site  [5:7] net  [8] comp1  [9:12] channel  [13] P onset  [14] 'P'  [15] P first motion
    [16] P weight code  [17:29] YYYYMMDDHHMM  [29:34] P sec F5.2  [34:38] P residual F4.2
    [38:41] P weight used F3.2  [41:46] S sec F5.2  [46] S onset  [47] 'S'  [48] S first motion
    [49] S weight code  [50:54] S residual F4.2  [54:61] amplitude F7.2  [61:63] amp units code
    [63:66] S weight used F3.2  [66:70] P delay F4.2  [70:74] S delay F4.2  [74:78] distance F4.1
    [78:81] take-off angle  [83:86] period F3.2  [87:91] coda duration  [91:94] azimuth
    [97:100] amp magnitude F3.2  [108] data source  [111:113] location code

Terminator line: blank except the event id in [62:72]; a ``$`` shadow line may follow any
record and is kept verbatim (``shadow`` columns) and written back after the same record.

Station line (HINV Y2000 format #2; ``H71 3 1 3`` / ``LET 5 2 0``)::

    [0:5] site  [6:8] net  [9] comp1  [10:13] channel  [15:17] lat deg  [18:25] lat min F7.4
    [25] 'S'|'N'|' '  [26:29] lon deg  [30:37] lon min F7.4  [37] 'E'|'W'|' '(W)  [38:42] elev m
    [42:45] default period F3.1  [45:80] kept verbatim  [80:82] location code

Numbers in implied-decimal fields are written without a decimal point (Fortran ``F4.2`` on
input accepts both); blank fields read as NaN.
"""

from __future__ import annotations

from ..errors import QuakeScaleError
import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..velocity import LayeredModel

__all__ = [
    "read_sta", "write_sta", "read_arc", "write_arc", "read_sum", "write_sum", "read_crh", "write_crh",
    "read_command_file", "HypCommands", "format_summary_line", "parse_summary_line",
]


class HypoinverseFormatError(QuakeScaleError, ValueError):
    pass


# ---------------------------------------------------------------------------------- fields
def _num(s: str, ndec: int = 0) -> float:
    s = s.strip()
    if not s:
        return math.nan
    try:
        if "." in s:
            return float(s)
        return int(s) / 10**ndec
    except ValueError:
        raise HypoinverseFormatError(f"not a number: {s!r}") from None


def _fnum(v, width: int, ndec: int = 0) -> str:
    """Implied-decimal fixed field: ``v * 10**ndec`` rounded, right-justified, clipped to fit."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)) or pd.isna(v):
        return " " * width
    iv = int(round(float(v) * 10**ndec))
    hi = 10**width - 1
    lo = -(10 ** (width - 1) - 1)
    iv = min(max(iv, lo), hi)
    return f"{iv:{width}d}"


def _txt(v, width: int, left: bool = True) -> str:
    s = "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)
    s = s[:width]
    return s.ljust(width) if left else s.rjust(width)


def _put(buf: list, start: int, s: str) -> None:
    if len(buf) < start + len(s):
        buf.extend(" " * (start + len(s) - len(buf)))
    buf[start : start + len(s)] = list(s)


def _get(line: str, a: int, b: int) -> str:
    return line[a:b] if len(line) >= b else line[a:b].ljust(b - a) if len(line) > a else " " * (b - a)


def _ts(value) -> pd.Timestamp:
    t = pd.Timestamp(value)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _minute_and_sec(t: pd.Timestamp, base: pd.Timestamp | None = None):
    base = base if base is not None else t.floor("min")
    return base, (t - base).total_seconds()


# ---------------------------------------------------------------------------------- summary
_SUM_COLS = [
    "event_id", "time", "latitude", "longitude", "depth_km", "magnitude", "mag_type", "amp_mag", "coda_mag",
    "n_phases", "gap_deg", "dmin_km", "rms_s", "err1_az_deg", "err1_dip_deg", "err1_km", "err2_az_deg",
    "err2_dip_deg", "err2_km", "err3_km", "region", "analyst_remark", "program_remark", "n_s", "erh_km", "erz_km",
    "n_first_motions", "crust_model", "n_valid", "version",
]


def parse_summary_line(line: str, where: str = "") -> dict:
    try:
        base = pd.Timestamp(
            year=int(line[0:4]), month=int(line[4:6]), day=int(line[6:8]), hour=int(_get(line, 8, 10) or 0),
            minute=int(_get(line, 10, 12) or 0), tz="UTC",
        )
        sec = _num(_get(line, 12, 16), 2)
        t = base + pd.to_timedelta(0.0 if math.isnan(sec) else sec, unit="s")
        latd, latm = _num(_get(line, 16, 18)), _num(_get(line, 19, 23), 2)
        lond, lonm = _num(_get(line, 23, 26)), _num(_get(line, 27, 31), 2)
    except (ValueError, HypoinverseFormatError) as exc:
        raise HypoinverseFormatError(f"{where}: bad summary line {line!r}: {exc}") from None
    lat = (latd + np.nan_to_num(latm) / 60.0) * (-1 if _get(line, 18, 19) in ("S", "s") else 1)
    lon = (lond + np.nan_to_num(lonm) / 60.0) * (1 if _get(line, 26, 27) in ("E", "e") else -1)
    eid = _num(_get(line, 136, 146))
    pref = _num(_get(line, 147, 150), 2)
    amp = _num(_get(line, 36, 39), 2)
    label = _get(line, 146, 147).strip()
    return {
        "event_id": None if math.isnan(eid) else int(eid),
        "time": t,
        "latitude": lat,
        "longitude": lon,
        "depth_km": _num(_get(line, 31, 36), 2),
        "magnitude": pref if not math.isnan(pref) else amp,
        "mag_type": ("M" + label) if label else (("M" + _get(line, 121, 122).strip()) if _get(line, 121, 122).strip() else None),
        "amp_mag": amp,
        "coda_mag": _num(_get(line, 70, 73), 2),
        "n_phases": _num(_get(line, 39, 42)),
        "gap_deg": _num(_get(line, 42, 45)),
        "dmin_km": _num(_get(line, 45, 48)),
        "rms_s": _num(_get(line, 48, 52), 2),
        "err1_az_deg": _num(_get(line, 52, 55)),
        "err1_dip_deg": _num(_get(line, 55, 57)),
        "err1_km": _num(_get(line, 57, 61), 2),
        "err2_az_deg": _num(_get(line, 61, 64)),
        "err2_dip_deg": _num(_get(line, 64, 66)),
        "err2_km": _num(_get(line, 66, 70), 2),
        "err3_km": _num(_get(line, 76, 80), 2),
        "region": _get(line, 73, 76).strip(),
        "analyst_remark": _get(line, 80, 81).strip(),
        "program_remark": _get(line, 81, 82).strip(),
        "n_s": _num(_get(line, 82, 85)),
        "erh_km": _num(_get(line, 85, 89), 2),
        "erz_km": _num(_get(line, 89, 93), 2),
        "n_first_motions": _num(_get(line, 93, 96)),
        "crust_model": _get(line, 110, 113).strip(),
        "n_valid": _num(_get(line, 118, 121)),
        "version": _get(line, 162, 163).strip(),
    }


def format_summary_line(ev) -> str:
    """One Y2000 summary line (164 columns) from a mapping/row with the ``_SUM_COLS`` names
    (missing ones blank).  Locator output columns are understood too (n_p + n_s -> n_phases,
    depth_fixed -> program remark '-')."""
    g = ev.get if hasattr(ev, "get") else (lambda k, d=None: getattr(ev, k, d))
    buf = [" "] * 164
    t = _ts(g("time"))
    t = t.round("10ms")
    _put(buf, 0, t.strftime("%Y%m%d%H%M"))
    _put(buf, 12, f"{int(round((t.second + t.microsecond / 1e6) * 100)):04d}")  # zero-padded, as Hypoinverse writes
    lat, lon = float(g("latitude", math.nan)), float(g("longitude", math.nan))
    if math.isfinite(lat):
        a = abs(lat)
        d, m = int(a), round((a - int(a)) * 60, 2)
        if m >= 60:
            d, m = d + 1, 0.0
        _put(buf, 16, f"{d:2d}" + ("S" if lat < 0 else " ") + _fnum(m, 4, 2))
    if math.isfinite(lon):
        a = abs(lon)
        d, m = int(a), round((a - int(a)) * 60, 2)
        if m >= 60:
            d, m = d + 1, 0.0
        _put(buf, 23, f"{d:3d}" + ("E" if lon >= 0 else " ") + _fnum(m, 4, 2))
    _put(buf, 31, _fnum(g("depth_km"), 5, 2))
    mag = g("magnitude")
    amp = g("amp_mag", mag)
    _put(buf, 36, _fnum(amp, 3, 2))
    nph = g("n_phases")
    if nph is None or pd.isna(nph):
        npp, nss = g("n_p"), g("n_s")
        nph = None if npp is None or pd.isna(npp) else int(npp) + int(0 if nss is None or pd.isna(nss) else nss)
    _put(buf, 39, _fnum(nph, 3))
    _put(buf, 42, _fnum(g("gap_deg"), 3))
    _put(buf, 45, _fnum(g("dmin_km"), 3))
    _put(buf, 48, _fnum(g("rms_s"), 4, 2))
    _put(buf, 52, _fnum(g("err1_az_deg"), 3) + _fnum(g("err1_dip_deg"), 2) + _fnum(g("err1_km"), 4, 2))
    _put(buf, 61, _fnum(g("err2_az_deg"), 3) + _fnum(g("err2_dip_deg"), 2) + _fnum(g("err2_km"), 4, 2))
    _put(buf, 70, _fnum(g("coda_mag"), 3, 2))
    _put(buf, 73, _txt(g("region"), 3))
    _put(buf, 76, _fnum(g("err3_km"), 4, 2))
    _put(buf, 80, _txt(g("analyst_remark"), 1))
    prem = g("program_remark")
    if (prem is None or (not isinstance(prem, str) and pd.isna(prem)) or prem == "") and bool(g("depth_fixed", False)):
        prem = "-"
    _put(buf, 81, _txt(prem, 1))
    _put(buf, 82, _fnum(g("n_s"), 3))
    _put(buf, 85, _fnum(g("erh_km"), 4, 2))
    _put(buf, 89, _fnum(g("erz_km"), 4, 2))
    _put(buf, 93, _fnum(g("n_first_motions"), 3))
    _put(buf, 110, _txt(g("crust_model"), 3))
    nv = g("n_valid")
    _put(buf, 118, _fnum(nph if nv is None or pd.isna(nv) else nv, 3))
    mt = g("mag_type")
    label = mt[1:2] if isinstance(mt, str) and mt.upper().startswith("M") and len(mt) > 1 else ""
    if mag is not None and not pd.isna(mag):
        _put(buf, 121, _txt(label, 1))
        _put(buf, 146, _txt(label, 1))
        _put(buf, 147, _fnum(mag, 3, 2))
    eid = g("event_id")
    _put(buf, 136, _fnum(eid, 10))
    _put(buf, 162, _txt(g("version"), 1))
    return "".join(buf).rstrip()


# ---------------------------------------------------------------------------------- phases
def _parse_phase_line(line: str, where: str) -> list[dict]:
    site, net = _get(line, 0, 5).strip(), _get(line, 5, 7).strip()
    common = dict(
        station=site, network=net, station_id=f"{net}.{site}" if net else site, component=_get(line, 8, 9).strip(),
        channel=_get(line, 9, 12).strip(), location=_get(line, 111, 113).strip(),
        distance_km=_num(_get(line, 74, 78), 1), takeoff_deg=_num(_get(line, 78, 81)),
        azimuth_deg=_num(_get(line, 91, 94)), data_source=_get(line, 108, 109).strip(),
    )
    try:
        base = pd.Timestamp(
            year=int(line[17:21]), month=int(line[21:23]), day=int(line[23:25]), hour=int(line[25:27]),
            minute=int(line[27:29]), tz="UTC",
        )
    except ValueError as exc:
        raise HypoinverseFormatError(f"{where}: bad phase date/time in {line!r}: {exc}") from None
    rows = []
    if _get(line, 14, 15).upper() == "P":
        sec = _num(_get(line, 29, 34), 2)
        rows.append(dict(
            common, phase="P", onset=_get(line, 13, 14).strip(), first_motion=_get(line, 15, 16).strip(),
            weight_code=_num(_get(line, 16, 17)), time=base + pd.to_timedelta(np.nan_to_num(sec), unit="s"),
            residual_s=_num(_get(line, 34, 38), 2), weight_used=_num(_get(line, 38, 41), 2),
            delay_s=_num(_get(line, 66, 70), 2), amplitude=math.nan, amp_units="", period_s=math.nan,
            amp_mag=math.nan,
        ))
    if _get(line, 47, 48).upper() == "S":
        sec = _num(_get(line, 41, 46), 2)
        rows.append(dict(
            common, phase="S", onset=_get(line, 46, 47).strip(), first_motion=_get(line, 48, 49).strip(),
            weight_code=_num(_get(line, 49, 50)), time=base + pd.to_timedelta(np.nan_to_num(sec), unit="s"),
            residual_s=_num(_get(line, 50, 54), 2), weight_used=_num(_get(line, 63, 66), 2),
            delay_s=_num(_get(line, 70, 74), 2), amplitude=_num(_get(line, 54, 61), 2),
            amp_units=_get(line, 61, 63).strip(), period_s=_num(_get(line, 83, 86), 2),
            amp_mag=_num(_get(line, 97, 100), 2),
        ))
    if not rows:  # amplitude-only or unknown phase line: keep it as an amplitude row
        rows.append(dict(
            common, phase="A", onset="", first_motion="", weight_code=math.nan, time=base, residual_s=math.nan,
            weight_used=math.nan, delay_s=math.nan, amplitude=_num(_get(line, 54, 61), 2),
            amp_units=_get(line, 61, 63).strip(), period_s=_num(_get(line, 83, 86), 2), amp_mag=_num(_get(line, 97, 100), 2),
        ))
    return rows


def _format_phase_line(r) -> str:
    g = r.get if hasattr(r, "get") else (lambda k, d=None: getattr(r, k, d))
    buf = [" "] * 113
    sta, net = g("station"), g("network")
    if sta is None or (not isinstance(sta, str) and pd.isna(sta)):
        sid = str(g("station_id"))
        net, sta = sid.split(".", 1) if "." in sid else ("", sid)
    _put(buf, 0, _txt(sta, 5) + _txt(net, 2))
    _put(buf, 8, _txt(g("component"), 1) + _txt(g("channel"), 3))
    t = _ts(g("time")).round("10ms")
    base, sec = _minute_and_sec(t)
    _put(buf, 17, base.strftime("%Y%m%d%H%M"))
    ph = str(g("phase", "P")).upper()[:1]
    wc = g("weight_code")
    wcs = " " if wc is None or pd.isna(wc) else str(int(wc))[:1]
    if ph == "P":
        _put(buf, 13, _txt(g("onset"), 1) + "P" + _txt(g("first_motion"), 1) + wcs)
        _put(buf, 29, _fnum(sec, 5, 2) + _fnum(g("residual_s"), 4, 2) + _fnum(g("weight_used"), 3, 2))
        _put(buf, 66, _fnum(g("delay_s"), 4, 2))
    elif ph == "S":
        _put(buf, 29, _fnum(0, 5, 2))
        _put(buf, 41, _fnum(sec, 5, 2) + _txt(g("onset"), 1) + "S" + _txt(g("first_motion"), 1) + wcs)
        _put(buf, 50, _fnum(g("residual_s"), 4, 2))
        _put(buf, 63, _fnum(g("weight_used"), 3, 2))
        _put(buf, 70, _fnum(g("delay_s"), 4, 2))
    if ph in ("S", "A"):
        _put(buf, 54, _fnum(g("amplitude"), 7, 2) + _txt(g("amp_units"), 2, left=False))
        _put(buf, 83, _fnum(g("period_s"), 3, 2))
        _put(buf, 97, _fnum(g("amp_mag"), 3, 2))
    _put(buf, 74, _fnum(g("distance_km"), 4, 1) + _fnum(g("takeoff_deg"), 3))
    _put(buf, 91, _fnum(g("azimuth_deg"), 3))
    _put(buf, 108, _txt(g("data_source"), 1))
    _put(buf, 111, _txt(g("location"), 2))
    return "".join(buf).rstrip()


def _is_summary(line: str) -> bool:
    return len(line) >= 16 and line[:12].isdigit()


def read_arc(path):
    """Read a Y2000 archive (or phase) file.  Returns ``(events, phases)``: one events row per
    summary line (``_SUM_COLS`` + ``shadow``, ``terminator``, ``terminator_shadow``), one phases
    row per P or S reading (a line with both gives two rows sharing ``line_no``) with its
    ``shadow`` (on the first row of the line)."""
    path = Path(path)
    events, phases = [], []
    cur = None
    closed = True
    last = None  # (record, key) receiving the next shadow line
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.rstrip("\r\n")
        where = f"{path}:{n}"
        if line.startswith("$"):
            if last is None:
                raise HypoinverseFormatError(f"{where}: shadow line before any record")
            rec, key = last
            rec[key] = line if rec.get(key) is None else rec[key] + "\n" + line
            continue
        if not line.strip():
            continue
        if _is_summary(line):
            cur = parse_summary_line(line, where)
            cur.update(shadow=None, terminator=None, terminator_shadow=None, _n=len(events))
            events.append(cur)
            closed = False
            last = (cur, "shadow")
            continue
        if closed:
            raise HypoinverseFormatError(f"{where}: expected a summary (header) line starting with YYYYMMDDHHMM, got {line!r}")
        if not line[:12].strip():  # terminator
            cur["terminator"] = line
            if cur["event_id"] is None:
                tid = _num(_get(line, 62, 72))
                cur["event_id"] = None if math.isnan(tid) else int(tid)
            last = (cur, "terminator_shadow")
            closed = True
            continue
        rows = _parse_phase_line(line, where)
        for r in rows:
            r["_ev"] = cur["_n"]
            r["line_no"] = n
            r["shadow"] = None
        phases.extend(rows)
        last = (rows[0], "shadow")
    # event ids: summary id, else terminator id, else sequence number
    used = set()
    for i, e in enumerate(events):
        if e["event_id"] is None or e["event_id"] in used:
            e["event_id"] = i + 1
            while e["event_id"] in used:
                e["event_id"] += 1
        used.add(e["event_id"])
    ev_df = pd.DataFrame(events, columns=_SUM_COLS + ["shadow", "terminator", "terminator_shadow"])
    ids = ev_df["event_id"].to_numpy()
    ph_df = pd.DataFrame(phases)
    if len(ph_df):
        ph_df.insert(0, "event_id", ids[ph_df.pop("_ev").to_numpy(int)])
    else:
        ph_df = pd.DataFrame(columns=["event_id", "station_id", "phase", "time"])
    return ev_df, ph_df


def write_arc(path, events: pd.DataFrame, phases: pd.DataFrame, shadows: bool = True) -> None:
    """Write a Y2000 archive file: summary line (+ shadow), one line per P or S reading
    (+ shadow), terminator (+ shadow) per event.  Shadows from :func:`read_arc` are written back
    as they came; events/phases without them get none (Hypoinverse accepts both)."""
    out = []
    by_ev = {k: g for k, g in phases.groupby("event_id", sort=False)} if len(phases) else {}
    for e in events.to_dict("records"):
        out.append(format_summary_line(e))
        if shadows and isinstance(e.get("shadow"), str):
            out.extend(e["shadow"].split("\n"))
        for r in by_ev.get(e["event_id"], pd.DataFrame()).to_dict("records"):
            out.append(_format_phase_line(r))
            if shadows and isinstance(r.get("shadow"), str):
                out.extend(r["shadow"].split("\n"))
        term = e.get("terminator")
        if not isinstance(term, str):
            term = " " * 62 + _fnum(e.get("event_id"), 10)
        out.append(term.rstrip())
        if shadows and isinstance(e.get("terminator_shadow"), str):
            out.extend(e["terminator_shadow"].split("\n"))
    Path(path).write_text("\n".join(out) + "\n")


def read_sum(path) -> pd.DataFrame:
    path = Path(path)
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("$"):
            continue
        rows.append(parse_summary_line(line, f"{path}:{n}"))
    return pd.DataFrame(rows, columns=_SUM_COLS)


def write_sum(path, events: pd.DataFrame) -> None:
    Path(path).write_text("".join(format_summary_line(e) + "\n" for e in events.to_dict("records")))


# ---------------------------------------------------------------------------------- stations
def read_sta(path) -> pd.DataFrame:
    """One row per line (site/channel); ``station_id`` NET.STA.  Use
    ``df.drop_duplicates('station_id')`` for the locator's station table."""
    path = Path(path)
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("*"):
            continue
        try:
            latd, latm = float(_get(line, 15, 17)), float(_get(line, 18, 25))
            lond, lonm = float(_get(line, 26, 29)), float(_get(line, 30, 37))
        except ValueError:
            raise HypoinverseFormatError(f"{path}:{n}: bad HINV station line (lat/lon columns 16-38): {line!r}") from None
        ns, ew = _get(line, 25, 26), _get(line, 37, 38)
        elev = _num(_get(line, 38, 42))
        site, net = _get(line, 0, 5).strip(), _get(line, 6, 8).strip()
        rows.append(dict(
            station_id=f"{net}.{site}" if net else site, network=net, station=site,
            component=_get(line, 9, 10).strip(), channel=_get(line, 10, 13).strip(),
            latitude=(latd + latm / 60.0) * (-1 if ns in ("S", "s") else 1),
            longitude=(lond + lonm / 60.0) * (1 if ew in ("E", "e") else -1),
            elevation_m=0.0 if math.isnan(elev) else elev, period_s=_num(_get(line, 42, 45), 1),
            location=_get(line, 80, 82).strip(), extra=_get(line, 45, 80).rstrip(),
        ))
    if not rows:
        raise HypoinverseFormatError(f"{path}: no station lines")
    return pd.DataFrame(rows)


def write_sta(path, stations: pd.DataFrame, channels=None) -> None:
    """Write HINV Y2000 station lines; ``channels`` (e.g. ``["001", "002", "003"]``) repeats each
    station once per channel when the table has no ``channel`` column."""
    out = []
    for r in stations.to_dict("records"):
        sid = str(r["station_id"])
        net, site = (r.get("network"), r.get("station"))
        if not isinstance(site, str):
            net, site = sid.split(".", 1) if "." in sid else ("", sid)
        chans = [r.get("channel")] if isinstance(r.get("channel"), str) else list(channels or [""])
        for ch in chans:
            buf = [" "] * 45
            _put(buf, 0, _txt(site, 5))
            _put(buf, 6, _txt(net, 2))
            _put(buf, 9, _txt(r.get("component"), 1) + _txt(ch, 3))
            lat, lon = float(r["latitude"]), float(r["longitude"])
            for start, val, deg_w, pos, neg in ((15, lat, 2, "N", "S"), (26, lon, 3, "E", "W")):
                a = abs(val)
                d, m = int(a), round((a - int(a)) * 60, 4)
                if m >= 60:
                    d, m = d + 1, 0.0
                _put(buf, start, f"{d:{deg_w}d} {m:7.4f}{pos if val >= 0 else neg}")
            _put(buf, 38, _fnum(r.get("elevation_m", 0.0), 4))
            _put(buf, 42, _fnum(r.get("period_s"), 3, 1))
            extra = r.get("extra")
            loc = r.get("location")
            if isinstance(extra, str) and extra:
                _put(buf, 45, extra)
            if isinstance(loc, str) and loc:
                _put(buf, 80, _txt(loc, 2))
            out.append("".join(buf).rstrip())
    Path(path).write_text("\n".join(out) + "\n")


# ---------------------------------------------------------------------------------- CRH
def read_crh(path) -> tuple[str, list[float], list[float]]:
    """``(title, top_km, velocity_kms)`` of one CRH file (title line, then ``velocity top``)."""
    path = Path(path)
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    if len(lines) < 2:
        raise HypoinverseFormatError(f"{path}: a CRH model needs a title line and at least one 'velocity top' line")
    top, vel = [], []
    for n, line in enumerate(lines[1:], 2):
        tok = line.split()
        try:
            vel.append(float(tok[0]))
            top.append(float(tok[1]))
        except (ValueError, IndexError):
            raise HypoinverseFormatError(f"{path}:{n}: expected 'velocity_kms top_km', got {line!r}") from None
    return lines[0].strip(), top, vel


def write_crh(path, top_km, velocity_kms, title: str = "MODEL") -> None:
    out = [title[:30]]
    for v, t in zip(velocity_kms, top_km):
        out.append(f"{v:4.2f}  {t:5.2f}")
    Path(path).write_text("\n".join(out) + "\n")


def crh_model(p_path, s_path=None, vpvs: float = 1.73) -> LayeredModel:
    """A LayeredModel from a P CRH file and an optional S CRH file (else Vs = Vp / vpvs)."""
    title, top, vp = read_crh(p_path)
    if s_path is not None:
        _, stop, vs = read_crh(s_path)
        if len(stop) != len(top) or not np.allclose(stop, top):
            raise HypoinverseFormatError(f"{s_path}: S layer tops {stop} differ from P tops {top} in {p_path}")
    else:
        vs = [v / vpvs for v in vp]
    return LayeredModel(tuple(top), tuple(vp), tuple(vs), name=Path(p_path).stem)


# ---------------------------------------------------------------------------------- command file
@dataclass
class HypCommands:
    """The Hypoinverse commands that matter for locating (paths resolved against the file)."""

    path: Path
    sta: Path | None = None
    crh: dict = field(default_factory=dict)  # model number -> path
    sal: tuple | None = None  # (P model, S model)
    pos: float | None = None  # Vp/Vs
    dis: tuple | None = None  # (MINSTA, DIS km, RDM1, RDM2)
    rms: tuple | None = None  # (NRMS, RMSC s, RMS1, RMS2)
    ztr: float | None = None
    ztr_fixed: bool = False
    min_phases: int | None = None
    err: float | None = None
    wet: tuple | None = None
    phs: Path | None = None
    arc: Path | None = None
    sum: Path | None = None
    prt: Path | None = None
    commands: list = field(default_factory=list)  # (COMMAND, args) in file order

    def p_s_model_paths(self):
        p_id, s_id = (self.sal if self.sal else (min(self.crh) if self.crh else None, None))
        p = self.crh.get(p_id) if p_id is not None else None
        s = self.crh.get(s_id) if s_id is not None else None
        return p, s

    def model(self) -> LayeredModel:
        p, s = self.p_s_model_paths()
        if p is None:
            raise HypoinverseFormatError(f"{self.path}: no CRH model command")
        return crh_model(p, s, vpvs=self.pos or 1.73)

    def locate_params(self) -> dict:
        """Map the commands onto :class:`~quakescale.locate.locator.LocateParams` names.

        ZTR -> trial_depth_km; MIN -> min_picks; ERR -> read_error_s; WET -> quality_weights;
        DIS (MINSTA, DIS, RDM1, RDM2) -> dist_full_km = DIS, dist_zero_km = RDM2 * DIS (Hypoinverse
        tapers from the larger of DIS and RDM1 x the MINSTA-th station distance to RDM2 times
        that; our builtin uses the fixed DIS form); RMS (NRMS, RMSC, RMS1, RMS2) ->
        residual_full_s = RMS1 x RMSC, residual_cutoff_factor = RMS2 (Hypoinverse scales by the
        larger of RMSC and the event RMS; the builtin uses RMSC).
        """
        out: dict = {}
        if self.ztr is not None:
            out["trial_depth_km"] = float(self.ztr)
        if self.min_phases is not None:
            out["min_picks"] = int(self.min_phases)
        if self.err is not None:
            out["read_error_s"] = float(self.err)
        if self.wet is not None:
            out["quality_weights"] = tuple(float(w) for w in self.wet) + (0.0,) * (5 - len(self.wet))
        if self.dis is not None and len(self.dis) >= 2:
            out["dist_full_km"] = float(self.dis[1])
            out["dist_zero_km"] = float(self.dis[1]) * (float(self.dis[3]) if len(self.dis) > 3 else 3.0)
        if self.rms is not None and len(self.rms) >= 3:
            out["residual_full_s"] = float(self.rms[1]) * float(self.rms[2])
            if len(self.rms) > 3:
                out["residual_cutoff_factor"] = float(self.rms[3])
        return out


def _split_args(rest: str) -> list[str]:
    rest = rest.split("/", 1)[0] if not re.search(r"['\"][^'\"]*/[^'\"]*['\"]", rest) else _strip_comment_quoted(rest)
    try:
        return shlex.split(rest.replace(",", " "))
    except ValueError:
        return rest.replace(",", " ").split()


def _strip_comment_quoted(rest: str) -> str:
    out, q = [], None
    for ch in rest:
        if q:
            out.append(ch)
            if ch == q:
                q = None
        elif ch in "'\"":
            q = ch
            out.append(ch)
        elif ch == "/":
            break
        else:
            out.append(ch)
    return "".join(out)


def read_command_file(path) -> HypCommands:
    """Read the commands of a Hypoinverse command (``.hyp``) file that set files and the
    location parameters: STA, CRH, SAL, POS, DIS, RMS, ZTR, MIN, ERR, WET, PHS, ARC, SUM, PRT.
    Other commands are kept in ``commands`` (in order) and otherwise ignored; ``@file`` includes
    are followed."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Hypoinverse command file not found: {path}")
    cmd = HypCommands(path=path)
    _read_into(cmd, path, depth=0)
    return cmd


def _read_into(cmd: HypCommands, path: Path, depth: int) -> None:
    base = path.parent
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("*"):
            continue
        if line.startswith("@"):
            if depth > 5:
                raise HypoinverseFormatError(f"{path}:{n}: @include nested too deep")
            _read_into(cmd, base / line[1:].split()[0], depth + 1)
            continue
        name = line[:3].upper()
        args = _split_args(line[3:])
        cmd.commands.append((name, args))
        where = f"{path}:{n}"

        def nums(k=None):
            try:
                vals = [float(a) for a in args]
            except ValueError:
                raise HypoinverseFormatError(f"{where}: {name} expects numbers, got {args}") from None
            return tuple(vals[:k] if k else vals)

        def fpath(i=0):
            if len(args) <= i:
                raise HypoinverseFormatError(f"{where}: {name} needs a file name")
            return (base / args[i]).resolve() if not Path(args[i]).is_absolute() else Path(args[i])

        if name == "STA":
            cmd.sta = fpath()
        elif name == "CRH":
            if len(args) < 2:
                raise HypoinverseFormatError(f"{where}: CRH needs 'model_number file'")
            cmd.crh[int(float(args[0]))] = fpath(1)
        elif name == "SAL":
            v = nums()
            cmd.sal = (int(v[0]), int(v[1]) if len(v) > 1 else None)
        elif name == "POS":
            cmd.pos = nums(1)[0]
        elif name == "DIS":
            cmd.dis = nums()
        elif name == "RMS":
            cmd.rms = nums()
        elif name == "ZTR":
            cmd.ztr = float(args[0])
            cmd.ztr_fixed = len(args) > 1 and args[1].upper().startswith("T")
        elif name == "MIN":
            cmd.min_phases = int(nums(1)[0])
        elif name == "ERR":
            cmd.err = nums(1)[0]
        elif name == "WET":
            cmd.wet = nums()
        elif name in ("PHS", "ARC", "SUM", "PRT"):
            setattr(cmd, name.lower(), fpath())
