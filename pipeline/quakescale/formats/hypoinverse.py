"""Hypoinverse-2000 files as hyp1.40 reads and writes them: station (.sta, HINV Y2000 format #2),
archive phase files (.arc, Y2000, shadow lines kept as they come), summaries (.sum, the four
``H71`` formats), delay files (``DEL``), CRH velocity models and the command file.

Column layouts follow the Hypoinverse-2000 manual (Klein 2002, USGS OFR 02-171) and hyp1.40's own
output; below, columns are 0-based Python slices (manual column = start + 1).

Summary (archive header) line, Y2000, 179 columns (``format_summary_line``)::

    [0:4] year  [4:12] MMDDHHMM  [12:16] sec F4.2  [16:18] lat deg  [18] 'S'|' '  [19:23] lat min F4.2
    [23:26] lon deg  [26] 'E'|' '(W)  [27:31] lon min F4.2  [31:36] depth F5.2  [36:39] amp mag F3.2
    [39:42] n P&S weight > 0.1  [42:45] gap  [45:48] dmin km  [48:52] rms F4.2
    [52:55][55:57][57:61] largest principal error az, dip, size F4.2  [61:64][64:66][66:70] intermediate
    [70:73] coda mag F3.2  [73:76] region  [76:80] smallest principal error F4.2  [80] analyst remark
    [81] program remark ('-' depth fixed, '#' convergence)  [82:85] n S  [85:89] ERH F4.2
    [89:93] ERZ F4.2  [93:96] n first motions  [110:113] crust model code  [118:121] n valid P&S
    [121] amp mag type  [122] external mag type  [123:126] external mag F3.2  [136:146] event id I10
    [146] preferred mag label  [147:150] preferred mag F3.2  [162] version  [164:166] domain
    [166:168] processing version  [168] depth type  [169] crust model type  [170:174] depth datum m
    [174:179] geoid depth F5.2
    Missing numbers are written as hyp1.40 writes them (0); magnitude fields read back as absent
    when their reading counts are 0.

Station (phase) line, Y2000, 120 columns: one line per station, its P and its S::

    [0:5] site  [5:7] net  [8] comp1  [9:12] channel  [13] P onset  [14] 'P'  [15] P first motion
    [16] P weight code  [17:29] YYYYMMDDHHMM  [29:34] P sec F5.2  [34:38] P residual F4.2
    [38:41] P weight used F3.2  [41:46] S sec F5.2  [46] S onset  [47] 'S'  [48] S first motion
    [49] S weight code  [50:54] S residual F4.2  [54:61] amplitude F7.2  [61:63] amp units code
    [63:66] S weight used F3.2  [66:70] P delay F4.2  [70:74] S delay F4.2  [74:78] distance F4.1
    [78:81] emergence angle  [83:86] period F3.2  [87:91] coda duration  [91:94] azimuth
    [94:97] coda mag F3.2  [97:100] amp magnitude F3.2  [100:104][104:108] P, S importance F4.3
    [108] data source  [111:113] location code
    Times are seconds after the line's minute (the event's minute when written; > 60 allowed).

Terminator line: blank or with the event id in [62:72] and, in Hypoinverse's terminator format,
a trial hypocentre (see the runner); a ``$`` shadow line may follow any record and is kept
verbatim (``shadow`` columns) and written back after the same record.

Station line (HINV Y2000 format #2; ``H71 x x 3`` / ``LET 5 2 0``)::

    [0:5] site  [6:8] net  [9] comp1  [10:13] channel  [15:17] lat deg  [18:25] lat min F7.4
    [25] 'S'|'N'|' '  [26:29] lon deg  [30:37] lon min F7.4  [37] 'E'|'W'|' '(W)  [38:42] elev m
    [42:45] default period F3.1  [45:80] kept verbatim (P delays of sets 1 and 2 in [49:54], [55:60])
    [80:82] location code

Numbers in implied-decimal fields are written without a decimal point (Fortran ``F4.2`` on
input accepts both); blank fields read as NaN.
"""

from __future__ import annotations

import logging
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import QuakeScaleError
from ..times import utc_timestamp
from ..velocity import LayeredModel

__all__ = [
    "read_sta",
    "write_sta",
    "read_arc",
    "write_arc",
    "read_sum",
    "write_sum",
    "read_crh",
    "write_crh",
    "read_command_file",
    "HypCommands",
    "format_summary_line",
    "parse_summary_line",
    "format_summary_h71",
    "summary_header",
    "quality_code",
    "read_delays",
    "read_delays_all_models",
    "write_arc_catalog",
    "fortran_int",
    "fortran_float",
    "is_summary_line",
    "SUPPORTED_COMMANDS",
    "NO_EFFECT_COMMANDS",
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


def _minute_and_sec(t: pd.Timestamp, base: pd.Timestamp | None = None):
    base = base if base is not None else t.floor("min")
    return base, (t - base).total_seconds()


# ---------------------------------------------------------------------------------- summary
_SUM_COLS = [
    "event_id",
    "time",
    "latitude",
    "longitude",
    "depth_km",
    "magnitude",
    "mag_type",
    "amp_mag",
    "coda_mag",
    "n_phases",
    "gap_deg",
    "dmin_km",
    "rms_s",
    "err1_az_deg",
    "err1_dip_deg",
    "err1_km",
    "err2_az_deg",
    "err2_dip_deg",
    "err2_km",
    "err3_km",
    "region",
    "analyst_remark",
    "program_remark",
    "n_s",
    "erh_km",
    "erz_km",
    "n_first_motions",
    "crust_model",
    "n_valid",
    "version",
    "ext_mag",
    "ext_mag_type",
    "pref_mag",
    "pref_mag_type",
    "depth_datum_m",
    "geoid_depth_km",
]


def _utc_minute(line: str, year, month, day, hour, minute) -> pd.Timestamp:
    """The UTC minute written in ``line``: each argument the (start, end) columns of its field."""
    y, mo, d, h, mi = (int(line[a:b]) for a, b in (year, month, day, hour, minute))
    return pd.Timestamp(year=y, month=mo, day=d, hour=h, minute=mi, tz="UTC")


def parse_summary_line(line: str, where: str = "") -> dict:
    try:
        base = pd.Timestamp(
            year=int(line[0:4]),
            month=int(line[4:6]),
            day=int(line[6:8]),
            hour=int(_get(line, 8, 10) or 0),
            minute=int(_get(line, 10, 12) or 0),
            tz="UTC",
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
    label = _get(line, 146, 147).strip()
    pref = _num(_get(line, 147, 150), 2) if label else math.nan
    amp = _num(_get(line, 36, 39), 2)
    coda = _num(_get(line, 70, 73), 2)
    if amp == 0 and not _num(_get(line, 96, 100), 1):  # hyp1.40 writes 0 for "no magnitude"
        amp = math.nan
    if coda == 0 and not _num(_get(line, 100, 104), 1):
        coda = math.nan
    ext_label = _get(line, 122, 123).strip()
    ext = _num(_get(line, 123, 126), 2) if ext_label else math.nan
    return {
        "event_id": None if math.isnan(eid) else int(eid),
        "time": t,
        "latitude": lat,
        "longitude": lon,
        "depth_km": _num(_get(line, 31, 36), 2),
        "magnitude": pref if not math.isnan(pref) else ext if not math.isnan(ext) else amp,
        "mag_type": (
            ("M" + label)
            if label
            else (
                ("M" + ext_label)
                if ext_label
                else (("M" + _get(line, 121, 122).strip()) if _get(line, 121, 122).strip() else None)
            )
        ),
        "amp_mag": amp,
        "coda_mag": coda,
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
        "ext_mag": ext,
        "ext_mag_type": ext_label,
        "pref_mag": pref,
        "pref_mag_type": label,
        "depth_datum_m": _num(_get(line, 170, 174)),
        "geoid_depth_km": _num(_get(line, 174, 179), 2),
    }


def fortran_int(v, width: int, scale: float = 1.0, zero: bool = True) -> str:
    """Fortran ``Iw`` of ``v * scale`` (rounded); missing -> 0 (as hyp1.40 writes) or blanks; too wide -> ``*``
    (the Hypoinverse writers here and the hyp1.40 runner's PRT file)."""
    if v is None or (not isinstance(v, str) and pd.isna(v)) or (isinstance(v, float) and not math.isfinite(v)):
        return f"{0:{width}d}" if zero else " " * width
    iv = int(round(float(v) * scale))
    hi, lo = 10**width - 1, -(10 ** (width - 1) - 1)
    if iv > hi or iv < lo:
        return "*" * width
    return f"{iv:{width}d}"


def _mag3(v) -> str:
    """hyp1.40's 3-character magnitude (I3 of 100 x mag; 0 when absent)."""
    if v is None or pd.isna(v):
        return "  0"
    iv = int(round(float(v) * 100))
    return f"{float(v):3.0f}" if iv < -99 else f"{iv:3d}"[-3:] if iv <= 999 else "***"


def _c(v, width: int) -> str:
    return _txt(v, width)


def _latlon_fields(lat: float, lon: float):
    out = []
    for val, _pos_east in ((lat, None), (lon, True)):
        if not math.isfinite(val):
            out.append(None)
            continue
        a = abs(val)
        d = int(a)
        m = int(round((a - d) * 6000))
        if m >= 6000:
            d, m = d + 1, m - 6000
        out.append((d, m))
    return out


def format_summary_line(ev, width: int = 179) -> str:
    """One Y2000 summary (archive header / ``H71 1`` summary) line, hyp1.40's 179-column layout
    (manual: "Y2000 summary format"), from a mapping/row with the ``_SUM_COLS`` names (missing
    numbers written as hyp1.40 writes them: 0).  Locator output columns are understood too
    (n_p + n_s -> n_phases, depth_fixed -> program remark '-').  ``width`` 164 cuts the line
    after the version column (the older QuakeScale width)."""
    g = ev.get if hasattr(ev, "get") else (lambda k, d=None: getattr(ev, k, d))

    def v(k, d=None):
        x = g(k, d)
        return d if x is None or (not isinstance(x, str) and pd.isna(x)) else x

    t = utc_timestamp(g("time")).round("10ms")
    lat, lon = float(v("latitude", math.nan)), float(v("longitude", math.nan))
    ll = _latlon_fields(lat, lon)
    nph = v("n_phases")
    if nph is None:
        npp, nss = v("n_p"), v("n_s")
        nph = None if npp is None else int(npp) + int(nss or 0)
    prem = v("program_remark", "")
    if not prem and bool(v("depth_fixed", False)):
        prem = "-"
    mag, mt = v("magnitude"), v("mag_type")
    label = mt[1:2] if isinstance(mt, str) and mt.upper().startswith("M") and len(mt) > 1 else ""
    if "pref_mag_type" in (ev.keys() if hasattr(ev, "keys") else ()):  # as read from a summary line
        mag, label = v("pref_mag"), v("pref_mag_type", "")
    ext, ext_t = v("ext_mag"), v("ext_mag_type", "")
    keys = set(ev.keys()) if hasattr(ev, "keys") else set()
    sec100 = int(round((t.second + t.microsecond / 1e6) * 100))
    parts = [
        t.strftime("%Y%m%d%H%M"),
        f"{sec100:04d}"[-4:],
        f"{ll[0][0]:2d}" if ll[0] else "  ",
        "S" if lat < 0 else " ",
        f"{ll[0][1]:4d}" if ll[0] else "    ",
        f"{ll[1][0]:3d}" if ll[1] else "   ",
        "E" if lon >= 0 else " ",
        f"{ll[1][1]:4d}" if ll[1] else "    ",
        fortran_int(v("depth_km"), 5, 100),
        _mag3(v("amp_mag") if "amp_mag" in keys else mag),
        fortran_int(nph, 3),
        fortran_int(v("gap_deg"), 3),
        fortran_int(min(v("dmin_km", 0), 999), 3),
        fortran_int(min(v("rms_s", 0), 99.99), 4, 100),
        fortran_int(v("err1_az_deg"), 3),
        fortran_int(v("err1_dip_deg"), 2),
        fortran_int(v("err1_km"), 4, 100),
        fortran_int(v("err2_az_deg"), 3),
        fortran_int(v("err2_dip_deg"), 2),
        fortran_int(v("err2_km"), 4, 100),
        _mag3(v("coda_mag")),
        _c(v("region", ""), 3),
        fortran_int(v("err3_km"), 4, 100),
        _c(v("analyst_remark", ""), 1),
        _c(prem, 1),
        fortran_int(v("n_s"), 3),
        fortran_int(v("erh_km"), 4, 100),
        fortran_int(v("erz_km"), 4, 100),
        fortran_int(v("n_first_motions"), 3),
        fortran_int(v("n_amp_mags"), 3) + "0",
        fortran_int(v("n_coda_mags"), 3) + "0",
        fortran_int(v("amp_mag_mad"), 3, 100),
        fortran_int(v("coda_mag_mad"), 3, 100),
        _c(v("crust_model", ""), 3),
        _c(v("crust_flag", ""), 1),
        _c(v("source_codes", ""), 4),
        fortran_int(v("n_valid", nph), 3),
        _c(v("amp_mag_type", ""), 1),
        _c(ext_t, 1),
        _mag3(ext),
        fortran_int(v("n_ext_mags"), 2) + "0",
        _c(v("amp2_mag_type", ""), 1),
        _mag3(v("amp2_mag")),
        fortran_int(v("n_amp2_mags"), 2) + "0",
        fortran_int(v("file_event_id", v("event_id")), 10),
        _c(label if mag is not None else "", 1),
        _mag3(mag if label else None),
        fortran_int(v("n_pref_mags"), 3) + "0",
        _c(v("coda2_mag_type", ""), 1),
        _mag3(v("coda2_mag")),
        fortran_int(v("n_coda2_mags"), 3) + "0",
        _c(v("version", ""), 1),
        _c(v("review_version", ""), 1),
        _c(v("domain", "NC"), 2),
        _c(v("processing_version", "01"), 2),
        _c(v("depth_type", "M"), 1),
        _c(v("model_type", "H"), 1),
        fortran_int(v("depth_datum_m"), 4),
        fortran_int(v("geoid_depth_km"), 5, 100),
    ]
    line = "".join(parts)
    assert len(line) == 179, (len(line), line)
    return line[:width]


def _summary_record(ev) -> dict:
    return ev if isinstance(ev, dict) else dict(ev)


def quality_code(rms, gap, erh, erz, nwr, depth, dmin) -> str:
    """Hypo71 quality letter (A-D) from the solution (RMS/ERH/ERZ) and the station geometry."""
    rms, erh, erz = (float(x) if x is not None and pd.notna(x) else 99.0 for x in (rms, erh, erz))
    gap, dmin, depth = (float(x) if x is not None and pd.notna(x) else 999.0 for x in (gap, dmin, depth))
    nwr = int(nwr) if nwr is not None and pd.notna(nwr) else 0
    if rms < 0.15 and erh <= 1.0 and erz <= 2.0:
        qs = 1
    elif rms < 0.30 and erh <= 2.5 and erz <= 5.0:
        qs = 2
    elif rms < 0.50 and erh <= 5.0:
        qs = 3
    else:
        qs = 4
    if nwr >= 6 and gap <= 90 and (dmin <= depth or dmin <= 5.0):
        qd = 1
    elif nwr >= 6 and gap <= 135 and (dmin <= 2 * depth or dmin <= 10.0):
        qd = 2
    elif nwr >= 6 and gap <= 180 and dmin <= 50.0:
        qd = 3
    else:
        qd = 4
    return chr(int(math.floor((qs + qd) / 2 + 0.5)) + 64)


_RDM_HEAD = {1: "DUR-MAG1", 2: "DUR-MAG2", 3: "AMP-MAG1", 4: "AMP-MAG2", 5: "EXT-MAG  "}
_RDM_HEAD_CSV = {1: "DUR,MAG1", 2: "DUR,MAG2", 3: "AMP,MAG1", 4: "AMP,MAG2", 5: "EXT,MAG ,"}  # as hyp1.40 labels them


def summary_header(fmt: int, mags=(1, 3, 5)) -> str | None:
    """The field-name line hyp1.40 writes first in readable (``H71 3``) and csv (``H71 4``) summaries."""
    if fmt == 3:
        return (
            "   DATE     TIME  SEC     LAT      LON    "
            + " DEPTH PREF-MAG NM NUM GAP  DMIN  RMS    ERH   ERZ QASR "
            + " " * 4
            + "ID-NUM LOC"
            + "".join(" " + _RDM_HEAD[m] for m in mags)
        )
    if fmt == 4:
        return (
            "   DATE     TIME, SEC ,   LAT  ,   LON   ,"
            + " DEPTH,PREF,MAG,NM,NUM,GAP, DMIN, RMS ,  ERH,  ERZ,QASR,"
            + " " * 4
            + "ID-NUM,LOC"
            + "".join("," + _RDM_HEAD_CSV[m] for m in mags)
        )
    return None


def fortran_float(v, width: int, dec: int) -> str:
    """Fortran ``Fw.d`` of ``v``; missing or non-finite -> 0.0 (as hyp1.40 writes); too wide -> ``*``."""
    if v is None or pd.isna(v) or not math.isfinite(float(v)):
        v = 0.0
    s = f"{float(v):{width}.{dec}f}"
    return s if len(s) <= width else "*" * width


def format_summary_h71(ev, fmt: int, mags=(1, 3, 5), blank_mags: bool = True) -> str:
    """One summary line in hyp1.40's ``H71`` formats: 2 = Y2000 Hypo71 summary, 3 = readable
    (blank separators), 4 = csv.  ``mags``: the RDM magnitude choice (1/2 coda, 3/4 amplitude,
    5 external)."""
    g = ev.get if hasattr(ev, "get") else (lambda k, d=None: getattr(ev, k, d))

    def v(k, d=None):
        x = g(k, d)
        return d if x is None or (not isinstance(x, str) and pd.isna(x)) else x

    t = utc_timestamp(g("time")).round("10ms")
    sec = t.second + t.microsecond / 1e6
    lat, lon = float(v("latitude", 0.0)), float(v("longitude", 0.0))
    nph = v("n_phases")
    if nph is None:
        nph = int(v("n_p", 0)) + int(v("n_s", 0))
    depth = float(v("depth_km", 0.0))
    prem = v("program_remark", "") or ("-" if bool(v("depth_fixed", False)) else "")
    q = quality_code(v("rms_s"), v("gap_deg"), v("erh_km"), v("erz_km"), nph, depth, v("dmin_km"))
    mag, mt = v("magnitude"), v("mag_type")
    label = mt[1:2] if isinstance(mt, str) and mt.upper().startswith("M") and len(mt) > 1 else ""
    if "pref_mag_type" in (ev.keys() if hasattr(ev, "keys") else ()):
        mag, label = v("pref_mag"), v("pref_mag_type", "")
    pref = mag if label else None
    eid = int(v("file_event_id", v("event_id", 0)))
    if fmt == 2:
        a = abs(lat)
        b = abs(lon)
        return (
            f"{t.year:4d}{t.month:02d}{t.day:02d} {t.hour:02d}{t.minute:02d}{sec:6.2f}"
            f"{int(a):3d}{'S' if lat < 0 else ' '}"
            f"{(a - int(a)) * 60:5.2f}{int(b):4d}{'E' if lon >= 0 else ' '}{(b - int(b)) * 60:5.2f}{depth:7.2f} "
            f"{_c(label, 1)}{fortran_float(pref, 5, 2)}{fortran_int(nph, 3)}{fortran_int(v('gap_deg'), 4)}"
            f"{fortran_float(v('dmin_km'), 5, 1)}{fortran_float(v('rms_s'), 5, 2)}{fortran_float(v('erh_km'), 5, 1)}"
            f"{fortran_float(v('erz_km'), 5, 1)}{_c(v('analyst_remark', ''), 1)}{q}"
            f"{_c(v('source_code', ''), 1)}{_c(prem, 1)}{eid:10d} {_c(v('version', ''), 1)}{_c(v('region', ''), 3)}"
        )
    sep = "," if fmt == 4 else " "
    if pref is not None:
        cr5, cr2, cr2a = f"{float(pref):5.2f}", "M" + label, f"{min(int(v('n_pref_mags', 0)), 99):2d}"
    elif not blank_mags:
        cr5, cr2, cr2a = " 0.00", "M" + (label or " "), " 0"
    else:
        cr5, cr2, cr2a = "     ", "  ", "  "
    ext, ext_t = v("ext_mag"), v("ext_mag_type", "")
    vals = {
        1: (v("coda_mag"), v("coda_mag_type", "")),
        2: (v("coda2_mag"), v("coda2_mag_type", "")),
        3: (v("amp_mag"), v("amp_mag_type", "")),
        4: (v("amp2_mag"), v("amp2_mag_type", "")),
        5: (ext, ext_t),
    }
    tail = ""
    for m in mags:
        val, lab = vals[m]
        if val is not None and pd.notna(val):
            tail += sep + f"{float(val):5.2f}" + sep + "M" + _c(lab, 1)
        elif not blank_mags:
            tail += sep + " 0.00" + sep + "M" + _c(lab, 1)
        else:
            tail += sep + "     " + sep + "  "
    line = (
        f"{t.year:4d}/{t.month:02d}/{t.day:02d} {t.hour:02d}:{t.minute:02d}{sep}{sec:5.2f}{sep}{lat:8.4f}{sep}"
        f"{lon:9.4f}{sep}{depth:6.2f}{sep}{cr5}{sep}{cr2}{sep}{cr2a}{sep}"
        f"{fortran_int(nph, 3)}{sep}{fortran_int(v('gap_deg'), 3)}{sep}"
        f"{fortran_float(v('dmin_km'), 5, 1)}{sep}{fortran_float(v('rms_s'), 5, 2)}{sep}"
        f"{fortran_float(v('erh_km'), 5, 1)}{sep}{fortran_float(v('erz_km'), 5, 1)}{sep}"
        f"{q}{_c(prem, 1)}{_c(v('source_code', ''), 1)}{_c(v('analyst_remark', ''), 1)}{sep}{eid:10d}{sep}"
        f"{_c(v('region', ''), 3)}{tail}"
    )
    return line


# ---------------------------------------------------------------------------------- phases
# The P and the S reading of a Y2000 station line: (start, end) columns of each field (0-based, end
# exclusive).  Only S carries the amplitude fields; an amplitude-only line is read with the S columns.
_READING_COLUMNS = {
    "P": dict(
        phase=(14, 15),
        seconds=(29, 34),
        onset=(13, 14),
        first_motion=(15, 16),
        weight_code=(16, 17),
        residual_s=(34, 38),
        weight_used=(38, 41),
        delay_s=(66, 70),
        importance=(100, 104),
    ),
    "S": dict(
        phase=(47, 48),
        seconds=(41, 46),
        onset=(46, 47),
        first_motion=(48, 49),
        weight_code=(49, 50),
        residual_s=(50, 54),
        weight_used=(63, 66),
        delay_s=(70, 74),
        importance=(104, 108),
        amplitude=(54, 61),
        amp_units=(61, 63),
        period_s=(83, 86),
        amp_mag=(97, 100),
    ),
}


def _amplitude_fields(line: str, c: dict) -> dict:
    """amplitude, amp_units, period_s, amp_mag of a reading (NaN / blank where ``c`` has no such columns)."""
    if "amplitude" not in c:
        return dict(amplitude=math.nan, amp_units="", period_s=math.nan, amp_mag=math.nan)
    return dict(
        amplitude=_num(_get(line, *c["amplitude"]), 2),
        amp_units=_get(line, *c["amp_units"]).strip(),
        period_s=_num(_get(line, *c["period_s"]), 2),
        amp_mag=_num(_get(line, *c["amp_mag"]), 2),
    )


def _parse_phase_line(line: str, where: str) -> list[dict]:
    site, net = _get(line, 0, 5).strip(), _get(line, 5, 7).strip()
    common = dict(
        station=site,
        network=net,
        station_id=f"{net}.{site}" if net else site,
        component=_get(line, 8, 9).strip(),
        channel=_get(line, 9, 12).strip(),
        location=_get(line, 111, 113).strip(),
        distance_km=_num(_get(line, 74, 78), 1),
        takeoff_deg=_num(_get(line, 78, 81)),
        azimuth_deg=_num(_get(line, 91, 94)),
        data_source=_get(line, 108, 109).strip(),
    )
    try:
        base = _utc_minute(line, (17, 21), (21, 23), (23, 25), (25, 27), (27, 29))
    except ValueError as exc:
        raise HypoinverseFormatError(f"{where}: bad phase date/time in {line!r}: {exc}") from None
    rows = []
    for phase, c in _READING_COLUMNS.items():
        if _get(line, *c["phase"]).upper() != phase:
            continue
        sec = _num(_get(line, *c["seconds"]), 2)
        rows.append(
            dict(
                common,
                phase=phase,
                onset=_get(line, *c["onset"]).strip(),
                first_motion=_get(line, *c["first_motion"]).strip(),
                weight_code=_num(_get(line, *c["weight_code"])),
                time=base + pd.to_timedelta(np.nan_to_num(sec), unit="s"),
                residual_s=_num(_get(line, *c["residual_s"]), 2),
                weight_used=_num(_get(line, *c["weight_used"]), 2),
                delay_s=_num(_get(line, *c["delay_s"]), 2),
                **_amplitude_fields(line, c),
                importance=_num(_get(line, *c["importance"]), 3),
            )
        )
    if not rows:  # amplitude-only or unknown phase line: keep it as an amplitude row
        rows.append(
            dict(
                common,
                phase="A",
                onset="",
                first_motion="",
                weight_code=math.nan,
                time=base,
                residual_s=math.nan,
                weight_used=math.nan,
                delay_s=math.nan,
                **_amplitude_fields(line, _READING_COLUMNS["S"]),
            )
        )
    return rows


def _format_phase_line(r, p=None, s=None, base: pd.Timestamp | None = None) -> str:
    """One Y2000 archive station line, hyp1.40's 120-column layout: the P reading ``p`` and the S
    reading ``s`` of one station (either may be None) on one line; ``r`` alone is one reading
    (P, S or an amplitude row).  Times are seconds after ``base`` (the minute of the line;
    default the earlier reading's minute)."""
    if p is None and s is None:
        ph = str((r.get if hasattr(r, "get") else lambda k, d=None: getattr(r, k, d))("phase", "P")).upper()[:1]
        p, s = (r, None) if ph == "P" else (None, r)
        amp_row = r if ph == "A" else None
    else:
        amp_row = None
    first = p if p is not None else s if s is not None else r

    def g(row, k, d=None):
        if row is None:
            return d
        x = row.get(k, d) if hasattr(row, "get") else getattr(row, k, d)
        return d if x is None or (not isinstance(x, str) and pd.isna(x)) else x

    sta, net = g(first, "station"), g(first, "network", "")
    if sta is None:
        sid = str(g(first, "station_id"))
        net, sta = sid.split(".", 1) if "." in sid else ("", sid)
    times = [
        utc_timestamp(g(x, "time")).round("10ms") for x in (p, s, amp_row) if x is not None and g(x, "time") is not None
    ]
    if base is None:
        base = min(times).floor("min") if times else pd.Timestamp("2000-01-01", tz="UTC")
    elif times and min(times) < base:
        base = min(times).floor("min")

    def sec(x):
        return (utc_timestamp(g(x, "time")).round("10ms") - base).total_seconds()

    def code(row):
        wc = g(row, "weight_code")
        return "0" if wc is None else str(int(wc))[:1]

    def rmk(row, ph):
        return (_txt(g(row, "onset", ""), 1) + ph) if row is not None else "  "

    pp = p if p is not None else None
    parts = [
        _txt(sta, 5),
        _txt(net, 2),
        " ",
        _txt(g(first, "component", ""), 1),
        _txt(g(first, "channel", ""), 3),
        " ",
        rmk(pp, "P") + (_txt(g(pp, "first_motion", ""), 1) if pp is not None else " "),
        code(pp) if pp is not None else "0",
        base.strftime("%Y%m%d%H%M"),
        fortran_int(sec(pp) if pp is not None else None, 5, 100),
        fortran_int(g(pp, "residual_s"), 4, 100),
        fortran_int(g(pp, "weight_used"), 3, 100),
        fortran_int(sec(s) if s is not None else None, 5, 100),
        rmk(s, "S"),
        " ",
        code(s) if s is not None else "0",
        fortran_int(g(s, "residual_s"), 4, 100),
        fortran_int(g(amp_row if amp_row is not None else s, "amplitude"), 7, 100),
        _txt(str(g(amp_row if amp_row is not None else s, "amp_units", "")).strip() or "0", 2, left=False),
        fortran_int(g(s, "weight_used"), 3, 100),
        fortran_int(g(pp, "delay_s"), 4, 100),
        fortran_int(g(s, "delay_s"), 4, 100),
        fortran_int(g(first, "distance_km"), 4, 10),
        fortran_int(g(first, "takeoff_deg"), 3),
        "0",
        "0",
        fortran_int(g(amp_row if amp_row is not None else s, "period_s"), 3, 100),
        _txt(g(first, "station_remark", ""), 1),
        _txt(g(first, "coda_duration", ""), 4, left=False),
        fortran_int(g(first, "azimuth_deg"), 3),
        _mag3(g(first, "coda_mag")),
        _mag3(g(amp_row if amp_row is not None else s, "amp_mag")),
        fortran_int(g(pp, "importance"), 4, 1000),
        fortran_int(g(s, "importance"), 4, 1000),
        _txt(g(first, "data_source", ""), 1),
        " ",
        " ",
        _txt(g(first, "location", ""), 2),
        fortran_int(g(first, "amp_type"), 2),
        _txt(g(first, "alt_component", ""), 3),
        " ",
        " ",
    ]
    line = "".join(parts)
    assert len(line) == 120, (len(line), line)
    return line


def is_summary_line(line: str) -> bool:
    """A Y2000 archive summary (header) line: it starts with the 12 digits of its date and time."""
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
            if cur is not None and not closed:
                cur["terminator"] = ""
                last = (cur, "terminator_shadow")
                closed = True
            continue
        if is_summary_line(line):
            cur = parse_summary_line(line, where)
            cur.update(shadow=None, terminator=None, terminator_shadow=None, _n=len(events))
            events.append(cur)
            closed = False
            last = (cur, "shadow")
            continue
        if closed:
            raise HypoinverseFormatError(
                f"{where}: expected a summary (header) line starting with YYYYMMDDHHMM, got {line!r}"
            )
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
    # event ids: summary id, else terminator id, else sequence number (the file's own id is kept)
    used = set()
    for e in events:
        e["file_event_id"] = e["event_id"] if e["event_id"] is not None else 0
    for i, e in enumerate(events):
        if e["event_id"] is None or e["event_id"] in used:
            e["event_id"] = i + 1
            while e["event_id"] in used:
                e["event_id"] += 1
        used.add(e["event_id"])
    ev_df = pd.DataFrame(events, columns=_SUM_COLS + ["file_event_id", "shadow", "terminator", "terminator_shadow"])
    ids = ev_df["event_id"].to_numpy()
    ph_df = pd.DataFrame(phases)
    if len(ph_df):
        ph_df.insert(0, "event_id", ids[ph_df.pop("_ev").to_numpy(int)])
    else:
        ph_df = pd.DataFrame(columns=["event_id", "station_id", "phase", "time"])
    return ev_df, ph_df


def _station_lines(rows: list[dict]) -> list[tuple]:
    """Group an event's readings into archive lines: the P and the S of one station (site, net,
    component, channel, location) share a line, in the order the stations first appear; amplitude
    rows and second picks of a phase get their own line."""
    lines: list[list] = []
    open_: dict = {}
    for r in rows:
        ph = str(r.get("phase", "P")).upper()[:1]
        key = tuple(
            str(r.get(k) if r.get(k) is not None and not pd.isna(r.get(k)) else "")
            for k in ("station_id", "network", "station", "component", "channel", "location")
        )
        if ph == "A":
            lines.append([None, None, r])
            continue
        slot = 0 if ph == "P" else 1
        cur = open_.get(key)
        if cur is None or cur[slot] is not None:
            cur = [None, None, None]
            lines.append(cur)
            open_[key] = cur
        cur[slot] = r
    return [tuple(x) for x in lines]


def write_arc(events: pd.DataFrame, phases: pd.DataFrame, path, shadows: bool = True, car: int | None = None) -> None:
    """Write a Y2000 archive file as hyp1.40 does: the 179-column summary line, one 120-column
    line per station with its P and S, the terminator, per event.  Shadows from :func:`read_arc`
    are written back as they came (``shadows``); ``car=3`` (Hypoinverse ``CAR 3``) writes a ``$``
    shadow line after every line that has none.  Terminators read from the input (blank ones
    included) are passed through; events without one get a terminator with the event id."""
    out = []
    by_ev: dict = {}
    for r in phases.to_dict("records") if len(phases) else []:  # one conversion, grouped in order
        by_ev.setdefault(r["event_id"], []).append(r)
    every = car == 3

    def shadow(rec):
        sh = rec.get("shadow") if rec is not None else None
        if shadows and isinstance(sh, str):
            out.extend(sh.split("\n"))
        elif every:
            out.append("$")

    for e in events.to_dict("records"):
        out.append(format_summary_line(e))
        shadow(e)
        t0 = e.get("time")
        base = utc_timestamp(t0).round("10ms").floor("min") if t0 is not None and not pd.isna(t0) else None
        for p, s, a in _station_lines(by_ev.get(e["event_id"], [])):
            out.append(
                _format_phase_line(a if a is not None else (p if p is not None else s), p, s, base)
                if a is None
                else _format_phase_line(a, base=base)
            )
            shadow(p if p is not None else s if s is not None else a)
        term = e.get("terminator")
        if not isinstance(term, str):
            term = " " * 62 + _fnum(e.get("event_id"), 10)
        out.append(term.rstrip())
        if shadows and isinstance(e.get("terminator_shadow"), str):
            out.extend(e["terminator_shadow"].split("\n"))
        elif every:
            out.append("$")
    Path(path).write_text("\n".join(out) + "\n")


# H71 summary formats 2 (Hypo71-2000) and 3/4 (readable, csv): (start, end) columns of the numbers,
# the start column of each one-character remark, and the event id's columns
_H71_COLUMNS = {
    2: (
        dict(
            depth_km=(38, 45),
            magnitude=(47, 52),
            n_phases=(52, 55),
            gap_deg=(55, 59),
            dmin_km=(59, 64),
            rms_s=(64, 69),
            erh_km=(69, 74),
            erz_km=(74, 79),
        ),
        dict(analyst_remark=79, quality=80, program_remark=82),
        (83, 93),
    ),
    3: (
        dict(
            depth_km=(42, 48),
            magnitude=(49, 54),
            n_phases=(61, 64),
            gap_deg=(65, 68),
            dmin_km=(69, 74),
            rms_s=(75, 80),
            erh_km=(81, 86),
            erz_km=(87, 92),
        ),
        dict(quality=93, program_remark=94, analyst_remark=96),
        (98, 108),
    ),
}


def _h71_fields(line: str, layout: int, num) -> dict:
    """The numbers, remarks and event id of an H71 summary line of ``layout`` 2 or 3 (3 and 4 share it)."""
    numbers, remarks, (a, b) = _H71_COLUMNS[layout]
    r = {k: num(*cols) for k, cols in numbers.items()}
    r.update({k: line[c : c + 1].strip() for k, c in remarks.items()})
    r["event_id"] = int(num(a, b)) if line[a:b].strip(" ,") else None
    return r


def _parse_h71_line(line: str, fmt: int, where: str) -> dict:
    """A summary line of the ``H71`` 2 (Hypo71-2000), 3 (readable) or 4 (csv) formats."""

    def num(a, b):
        x = line[a:b].strip().strip(",")
        return float(x) if x else math.nan

    try:
        if fmt == 2:
            base = _utc_minute(line, (0, 4), (4, 6), (6, 8), (9, 11), (11, 13))
            sec = num(13, 19)
            lat = (num(19, 22) + num(23, 28) / 60.0) * (-1 if line[22] == "S" else 1)
            lon = (num(28, 32) + num(33, 38) / 60.0) * (1 if line[32] == "E" else -1)
            r = _h71_fields(line, 2, num)
            r["mag_type"] = ("M" + line[46]) if line[46].strip() else None
        else:
            base = _utc_minute(line, (0, 4), (5, 7), (8, 10), (11, 13), (14, 16))
            sec = num(17, 22)
            lat, lon = num(23, 31), num(32, 41)
            label = line[55:57].strip().strip(",")
            r = _h71_fields(line, 3, num)
            r.update(mag_type=label or None, region=line[109:112].strip(" ,"))
            if len(line) > 113:  # trailing magnitudes: value + type pairs of 9 characters
                k = 112
                while k + 9 <= len(line) + 1:
                    val, typ = line[k + 1 : k + 6].strip(), line[k + 7 : k + 9].strip()
                    if val and typ and math.isnan(r["magnitude"]):
                        r["ext_mag"], r["ext_mag_type"] = float(val), typ[1:]
                    k += 9
    except (ValueError, IndexError) as exc:
        raise HypoinverseFormatError(f"{where}: bad H71 {fmt} summary line {line!r}: {exc}") from None
    r.update(time=base + pd.to_timedelta(0.0 if math.isnan(sec) else sec, unit="s"), latitude=lat, longitude=lon)
    return r


def read_sum(path) -> pd.DataFrame:
    """Read a summary file in any of hyp1.40's summary formats: Y2000 Hypoinverse (``H71 1``),
    Hypo71-2000 (``H71 2``), readable (``H71 3``) or csv (``H71 4``); the format is recognised
    from the first line."""
    path = Path(path)
    rows = []
    lines = path.read_text().splitlines()
    fmt = 1
    if lines and lines[0].startswith("   DATE"):
        fmt = 4 if "," in lines[0] else 3
    elif lines and len(lines[0]) > 20 and lines[0][8] == " " and lines[0][:8].isdigit():
        fmt = 2
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("$") or line.startswith("   DATE"):
            continue
        where = f"{path}:{n}"
        rows.append(parse_summary_line(line, where) if fmt == 1 else _parse_h71_line(line, fmt, where))
    return pd.DataFrame(rows).reindex(columns=list(dict.fromkeys(_SUM_COLS + (list(rows[0]) if rows else []))))


def write_sum(events: pd.DataFrame, path, fmt: int = 1, mags=(1, 3, 5), blank_mags: bool = True) -> None:
    """Write a summary file in hyp1.40's ``H71`` summary format ``fmt``: 1 Y2000 Hypoinverse
    (179 columns), 2 Hypo71-2000, 3 readable with a field-name line, 4 csv."""
    out = []
    head = summary_header(fmt, mags)
    if head is not None:
        out.append(head)
    for e in events.to_dict("records"):
        out.append(format_summary_line(e) if fmt == 1 else format_summary_h71(e, fmt, mags, blank_mags))
    Path(path).write_text("".join(x + "\n" for x in out))


# ---------------------------------------------------------------------------------- stations
def _station_weight(c: str) -> float:
    """HINV station weight code (column 15): digits 0-9 are tenths ('0' and '*' no weight), any
    other character full weight."""
    if c == "*":
        return 0.0
    return int(c) / 10.0 if c.isdigit() else 1.0


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
            raise HypoinverseFormatError(
                f"{path}:{n}: bad HINV station line (lat/lon columns 16-38): {line!r}"
            ) from None
        ns, ew = _get(line, 25, 26), _get(line, 37, 38)
        elev = _num(_get(line, 38, 42))
        site, net = _get(line, 0, 5).strip(), _get(line, 6, 8).strip()
        rows.append(
            dict(
                station_id=f"{net}.{site}" if net else site,
                network=net,
                station=site,
                component=_get(line, 9, 10).strip(),
                channel=_get(line, 10, 13).strip(),
                latitude=(latd + latm / 60.0) * (-1 if ns in ("S", "s") else 1),
                longitude=(lond + lonm / 60.0) * (1 if ew in ("E", "e") else -1),
                elevation_m=0.0 if math.isnan(elev) else elev,
                period_s=_num(_get(line, 42, 45), 1),
                location=_get(line, 80, 82).strip(),
                extra=_get(line, 45, 80).rstrip(),
                station_weight=_station_weight(_get(line, 14, 15)),
                delay1_s=_num(_get(line, 49, 54), 2),
                delay2_s=_num(_get(line, 55, 60), 2),
            )
        )
    if not rows:
        raise HypoinverseFormatError(f"{path}: no station lines")
    return pd.DataFrame(rows)


def write_sta(stations: pd.DataFrame, path, channels=None) -> None:
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


def write_crh(top_km, velocity_kms, path, title: str = "MODEL") -> None:
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
#: Commands the builtin runner carries out (``locate hypoinverse``); see :data:`NO_EFFECT_COMMANDS`.
SUPPORTED_COMMANDS = {
    "200": "Y2000 formats (always on)",
    "H71": "summary output format (1 Hypoinverse, 2 Hypo71, 3 readable, 4 csv), terminator format (1, 2, 3 = trial "
    "from the header), station format (only the Hypoinverse #2 station format is read)",
    "STA": "station file (HINV #2 format; station weight code in column 15, P delays of sets 1 and 2 in columns 50-60)",
    "CRH": "layered model (stations at the model top: elevations not used)",
    "SAL": "independent S model for a P model",
    "POS": "Vp/Vs for S models scaled from P (S delay = POS x P delay)",
    "DEL": "station delays: DEL n for model n, DEL 0 one file for all models (model-set selection: P delays of the "
    "P model, S delays of its SAL model)",
    "DIS": "distance weighting: ITRDIS, DISCUT, DISW1, DISW2 (fixed taper DISCUT*DISW1..DISCUT*DISW2)",
    "RMS": "residual weighting: ITRRES, RMSCUT, RMSW1, RMSW2 (fixed taper RMSCUT*RMSW1..RMSCUT*RMSW2)",
    "ERR": "reading error (s)",
    "WET": "weights of weight codes 0-3 (codes 4-9: weight 0)",
    "SWT": "S weight factor",
    "ZTR": "trial depth and fix-depth flag (negative trial depth fixes depth for CRH models)",
    "MIN": "minimum number of weighted readings",
    "CON": "ITRLIM (maximum iterations)",
    "PHS": "phase (archive) input file",
    "ARC": "archive output",
    "SUM": "summary output",
    "PRT": "printout",
    "CAR": "archive format (1 no shadows, 3 a shadow after every line)",
    "RDM": "which magnitudes the readable summary lists / blank or zero for missing magnitudes",
}
#: Commands accepted without effect on the result (interactive, listing or format-detection ones).
NO_EFFECT_COMMANDS = {
    "LET",
    "ERF",
    "TOP",
    "TYP",
    "FIL",
    "LOC",
    "STO",
    "COP",
    "LST",
    "KPR",
    "REP",
    "JUN",
    "PRE",
    "LAB",
    "NET",
    "APP",
}


@dataclass
class HypCommands:
    """The Hypoinverse commands that matter for locating (paths resolved against the file).

    ``where`` maps a command (``"STA"``, ``"CRH 1"``, ``"DEL 2"``, ``"PHS"`` ...) to the
    ``file:line`` that named it, for error messages; ``unsupported`` lists the commands the
    builtin runner does not carry out, with their first ``file:line``."""

    path: Path
    sta: Path | None = None
    crh: dict = field(default_factory=dict)  # model number -> path
    crh_titles: dict = field(default_factory=dict)
    dels: dict = field(default_factory=dict)  # model number -> delay file
    sal: tuple | None = None  # (P model, S model)
    pos: float | None = None  # Vp/Vs
    dis: tuple | None = None  # (MINSTA, DIS km, RDM1, RDM2)
    rms: tuple | None = None  # (NRMS, RMSC s, RMS1, RMS2)
    ztr: float | None = None
    ztr_fixed: bool = False
    min_phases: int | None = None
    err: float | None = None
    wet: tuple | None = None
    swt: float | None = None
    itrlim: int | None = None
    h71: tuple = (1, 1, 3)  # summary, terminator, station formats
    car: int = 1
    rdm_blank: bool = True
    rdm_mags: tuple = (1, 3, 5)
    phs: Path | None = None
    arc: Path | None = None
    sum: Path | None = None
    prt: Path | None = None
    commands: list = field(default_factory=list)  # (COMMAND, args) in file order
    where: dict = field(default_factory=dict)
    unsupported: dict = field(default_factory=dict)  # command -> first file:line

    def p_s_model_ids(self):
        if self.sal:
            return self.sal
        return (min(self.crh) if self.crh else None, None)

    def p_s_model_paths(self):
        p_id, s_id = self.p_s_model_ids()
        p = self.crh.get(p_id) if p_id is not None else None
        s = self.crh.get(s_id) if s_id is not None else None
        return p, s

    def model(self) -> LayeredModel:
        p, s = self.p_s_model_paths()
        if p is None:
            raise HypoinverseFormatError(f"{self.path}: no CRH model command")
        p_id, s_id = self.p_s_model_ids()
        for mid, f in ((p_id, p), (s_id, s)):
            if f is not None and not Path(f).exists():
                raise HypoinverseFormatError(
                    f"{self.where.get(f'CRH {mid}', self.path)}: CRH {mid}: model file not found: {f}"
                )
        return crh_model(p, s, vpvs=self.pos or 1.75)

    def model_code(self) -> str:
        """The 3-letter crust model code hyp1.40 writes: the start of the P model's CRH title."""
        p_id, _ = self.p_s_model_ids()
        title = self.crh_titles.get(p_id)
        if title is None and self.crh.get(p_id) is not None and Path(self.crh[p_id]).exists():
            title = read_crh(self.crh[p_id])[0]
        return (title or "")[:3]

    def locate_params(self) -> dict:
        """Map the commands onto :class:`~quakescale.locate.locator.LocateParams` names, with
        hyp1.40's defaults for the commands the file does not give.

        ZTR -> trial_depth_km (default 7); MIN -> min_picks (4); ERR -> read_error_s (0.15);
        WET -> quality_weights (1, .75, .5, .25; codes 4-9 weigh 0); SWT -> s_weight (1);
        DIS (ITRDIS, DISCUT, DISW1, DISW2) -> dist_full_km = DISCUT*DISW1, dist_zero_km =
        DISCUT*DISW2 (Hypoinverse stretches the taper with the second-closest station distance
        when that exceeds DISCUT, i.e. for events outside the network; the builtin uses the fixed
        form); RMS (ITRRES, RMSCUT, RMSW1, RMSW2) -> residual_full_s = RMSCUT*RMSW1,
        residual_cutoff_factor = RMSW2/RMSW1, residual_weighting_iter = ITRRES - 1 (Hypoinverse
        stretches with the event RMS when that exceeds RMSCUT); CON -> max_iter; CRH models ->
        use_elevation False (every station at the model top).
        """
        out: dict = {
            "trial_depth_km": 7.0,
            "min_picks": 4,
            "read_error_s": 0.15,
            "quality_weights": (1.0, 0.75, 0.5, 0.25, 0.0),
            "s_weight": 1.0,
            "use_elevation": False,
            "dist_full_km": 50.0,
            "dist_zero_km": 150.0,
            "residual_full_s": 0.16 * 1.5,
            "residual_cutoff_factor": 2.0,
            "residual_weighting_iter": 3,
            "residual_rms_floor_s": 0.16,
        }
        if self.ztr is not None:
            out["trial_depth_km"] = abs(float(self.ztr))
        if self.min_phases is not None:
            out["min_picks"] = int(self.min_phases)
        if self.err is not None:
            out["read_error_s"] = float(self.err)
        if self.wet is not None:
            w = [float(x) for x in self.wet][:4]
            w += list((1.0, 0.75, 0.5, 0.25)[len(w) :])
            out["quality_weights"] = tuple(w) + (0.0,)
        if self.swt is not None:
            out["s_weight"] = float(self.swt)
        if self.dis is not None:
            d = list(self.dis) + [None] * 4
            itr = d[0] if d[0] is not None else 4
            cut = d[1] if d[1] is not None else 50.0
            w1 = d[2] if d[2] is not None else 1.0
            w2 = d[3] if d[3] is not None else 3.0
            out["dist_full_km"] = float(cut) * float(w1)
            out["dist_zero_km"] = float(cut) * float(w2)
            del itr
        if self.rms is not None:
            r = list(self.rms) + [None] * 4
            itr = int(r[0]) if r[0] is not None else 4
            cut = float(r[1]) if r[1] is not None else 0.16
            w1 = float(r[2]) if r[2] is not None else 1.5
            w2 = float(r[3]) if r[3] is not None else 3.0
            out["residual_full_s"] = cut * w1
            out["residual_cutoff_factor"] = w2 / w1 if w1 > 0 else 3.0
            out["residual_weighting_iter"] = max(itr - 1, 0)
            out["residual_rms_floor_s"] = cut
        if self.itrlim is not None:
            out["max_iter"] = max(int(self.itrlim), 1)
        return out


def _split_args(rest: str) -> list[str]:
    rest = _strip_comment_quoted(rest)
    try:
        return shlex.split(rest.replace(",", " "))
    except ValueError:
        return rest.replace(",", " ").split()


def _strip_comment_quoted(rest: str) -> str:
    """Drop a ``/`` comment (outside quotes) and a backslash comment."""
    out, q = [], None
    for ch in rest:
        if q:
            out.append(ch)
            if ch == q:
                q = None
        elif ch in "'\"":
            q = ch
            out.append(ch)
        elif ch in "/\\":
            break
        else:
            out.append(ch)
    return "".join(out)


def read_command_file(path) -> HypCommands:
    """Read a Hypoinverse command (``.hyp``) file: the commands of :data:`SUPPORTED_COMMANDS` set
    fields; every command is kept in ``commands`` (in order); ``@file`` includes are followed.
    Commands that are neither supported nor in :data:`NO_EFFECT_COMMANDS` are listed in
    ``unsupported`` (the runner warns once for each)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Hypoinverse command file not found: {path}")
    cmd = HypCommands(path=path)
    _read_into(cmd, path, depth=0)
    return cmd


def _read_into(cmd: HypCommands, path: Path, depth: int) -> None:
    base = path.parent
    for n, raw in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("*"):
            continue
        where = f"{path}:{n}"
        if line.startswith("@"):
            if depth > 5:
                raise HypoinverseFormatError(f"{where}: @include nested too deep")
            inc = base / line[1:].split()[0]
            if not inc.exists():
                raise HypoinverseFormatError(f"{where}: @ include file not found: {inc}")
            _read_into(cmd, inc, depth + 1)
            continue
        name = line[:3].upper()
        args = _split_args(line[3:]) if name not in ("TYP",) else []
        cmd.commands.append((name, args))

        # the helpers read this line's args/where/name (bound now: they are called before the next line)
        def nums(k=None, args=args, where=where, name=name):
            vals = []
            for a in args[:k] if k else args:
                try:
                    vals.append(float(a))
                except ValueError:
                    if a.upper() in ("T", "F", ".TRUE.", ".FALSE."):
                        break
                    raise HypoinverseFormatError(f"{where}: {name}: expected numbers, got {args}") from None
            return tuple(vals)

        def fpath(i=0, args=args, where=where, name=name):
            if len(args) <= i:
                raise HypoinverseFormatError(f"{where}: {name} needs a file name")
            return (base / args[i]).resolve() if not Path(args[i]).is_absolute() else Path(args[i])

        def one(k=0, what="a number", args=args, where=where, name=name):
            if len(args) <= k:
                raise HypoinverseFormatError(f"{where}: {name} needs {what}, got {args}")
            try:
                return float(args[k])
            except ValueError:
                raise HypoinverseFormatError(f"{where}: {name}: {what} expected, got {args[k]!r}") from None

        if name == "STA":
            cmd.sta = fpath()
            cmd.where["STA"] = where
        elif name == "CRH":
            if len(args) < 2:
                raise HypoinverseFormatError(f"{where}: CRH needs 'model_number file'")
            mid = int(one(0, "a model number"))
            cmd.crh[mid] = fpath(1)
            cmd.where[f"CRH {mid}"] = where
        elif name == "DEL":
            if len(args) < 2:
                raise HypoinverseFormatError(f"{where}: DEL needs 'model_number file'")
            mid = int(one(0, "a model number"))
            if mid < 0:
                cmd.unsupported.setdefault(f"DEL {mid}", where)
                continue
            cmd.dels[mid] = fpath(1)  # 0: one file with the delays of every model
            cmd.where[f"DEL {mid}"] = where
        elif name == "SAL":
            v = nums()
            if len(v) < 2:
                raise HypoinverseFormatError(f"{where}: SAL needs 'P_model S_model'")
            cmd.sal = (int(v[0]), int(v[1])) if int(v[1]) else None
        elif name == "POS":
            cmd.pos = one()
        elif name == "DIS":
            cmd.dis = nums()
        elif name == "RMS":
            cmd.rms = nums()
        elif name == "ZTR":
            if not args:
                raise HypoinverseFormatError(f"{where}: ZTR needs a trial depth")
            try:
                cmd.ztr = float(args[0])
            except ValueError:
                raise HypoinverseFormatError(f"{where}: ZTR: trial depth must be a number, got {args[0]!r}") from None
            cmd.ztr_fixed = (len(args) > 1 and args[1].upper().startswith(("T", ".T"))) or cmd.ztr < 0
        elif name == "MIN":
            cmd.min_phases = int(one())
        elif name == "ERR":
            cmd.err = one()
        elif name == "WET":
            cmd.wet = nums()
        elif name == "SWT":
            cmd.swt = one()
        elif name == "CON":
            cmd.itrlim = int(one())
        elif name == "H71":
            v = [int(x) for x in nums()] + [None] * 3
            cmd.h71 = tuple(v[i] if v[i] is not None else cmd.h71[i] for i in range(3))
            if cmd.h71[2] != 3:
                cmd.unsupported.setdefault(f"H71 station format {cmd.h71[2]}", where)
        elif name == "CAR":
            cmd.car = int(one())
        elif name == "RDM":
            if args:
                cmd.rdm_blank = args[0].upper().startswith(("T", ".T"))
                mags = [int(float(a)) for a in args[1:] if a.replace(".", "").isdigit()]
                if mags:
                    cmd.rdm_mags = tuple(m for m in mags if 1 <= m <= 5)[:5]
        elif name in ("PHS", "ARC", "SUM", "PRT"):
            setattr(cmd, name.lower(), fpath())
            cmd.where[name] = where
        elif name in ("200",):
            pass
        elif name not in NO_EFFECT_COMMANDS:
            cmd.unsupported.setdefault(name, where)


def read_delays_all_models(path, where: str = "") -> dict:
    """``model -> {(site, net): delay_s}`` of a ``DEL 0`` file: site A5, 1X, net A2, 2X, alternate
    flag A1, then one F4.2 delay per model in model-number order."""
    path = Path(path)
    if not path.exists():
        raise HypoinverseFormatError(f"{where or path}: delay file not found: {path}")
    out: dict = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("*"):
            continue
        key = (_get(line, 0, 5).strip(), _get(line, 6, 8).strip())
        rest = line[11:]
        for k in range(0, len(rest.rstrip()), 4):
            try:
                val = _num(rest[k : k + 4], 2)
            except HypoinverseFormatError:
                raise HypoinverseFormatError(
                    f"{path}:{n}: delay of model {k // 4 + 1} (columns {12 + k}-{15 + k}) is not a number: {line!r}"
                ) from None
            out.setdefault(k // 4 + 1, {})[key] = 0.0 if math.isnan(val) else val
    return out


def read_delays(path, where: str = "") -> dict:
    """``(site, net) -> delay_s`` of a one-model Hypoinverse delay file (``DEL n 'file'``:
    site A5, 1X, net A2, 1X, delay F5.2)."""
    path = Path(path)
    if not path.exists():
        raise HypoinverseFormatError(f"{where or path}: delay file not found: {path}")
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("*"):
            continue
        try:
            val = _num(_get(line, 9, 14), 2)
        except HypoinverseFormatError:
            raise HypoinverseFormatError(f"{path}:{n}: delay (columns 10-14) is not a number: {line!r}") from None
        out[(_get(line, 0, 5).strip(), _get(line, 6, 8).strip())] = 0.0 if math.isnan(val) else val
    return out


# ---------------------------------------------------------------------------------- pipeline catalog
def write_arc_catalog(
    events: pd.DataFrame, picks: pd.DataFrame | None, stations: pd.DataFrame | None, path, manifest_ref: str = ""
) -> Path:
    """``RUN/catalogs/catalog.arc``: the located (or relocated) catalog as a hyp1.40 Y2000 archive --
    179-column summary lines, one 120-column line per station with its P and S, a terminator with
    the event id -- so Hypoinverse (as phase input) and archive converters read it.

    Events: ``event_id, time, latitude, longitude, depth_km`` (+ magnitude, mag_type, n_p, n_s,
    rms_s, gap_deg, dmin_km, erh_km, erz_km ...: blank / 0 when absent).  Picks: ``event_id,
    station_id, phase, time`` (+ ``residual_s``, ``weight`` 0..1 -> weight codes 0-4 through the
    WET values 1, .5, .2, .1, ``channel``, ``location``).  Station codes longer than Hypoinverse's
    5 (site) + 2 (network) characters are cut (logged).  The archive format has no comment field:
    the manifest is recorded by the other catalog files."""
    log = logging.getLogger("quakescale.catalog")
    path = Path(path)
    ev = events.copy()
    if "n_phases" not in ev.columns and "n_p" in ev.columns:
        ev["n_phases"] = ev["n_p"].fillna(0).astype(int) + ev.get("n_s", 0).fillna(0).astype(int)
    ev["crust_model"] = ev.get("crust_model", "QSC")
    ev["model_type"] = ev.get("model_type", "H")
    ph = (
        picks.copy()
        if picks is not None and len(picks)
        else pd.DataFrame(columns=["event_id", "station_id", "phase", "time"])
    )
    if len(ph):
        ph = ph[ph["phase"].astype(str).str.upper().str[:1].isin(["P", "S"])].copy()
        ph["phase"] = ph["phase"].astype(str).str.upper().str[:1]
        sid = ph["station_id"].astype(str)
        net = sid.str.split(".").str[0].where(sid.str.contains(r"\."), "")
        sta = sid.str.split(".").str[-1]
        cut = (sta.str.len() > 5) | (net.str.len() > 2)
        if cut.any():
            log.warning(
                "catalog.arc: %d station code(s) longer than Hypoinverse's 5+2 characters cut (%s)",
                int(sid[cut].nunique()),
                ", ".join(sorted(set(sid[cut]))[:5]),
            )
        ph["station"], ph["network"] = sta.str[:5], net.str[:2]
        if "weight_code" not in ph.columns:
            if "weight" in ph.columns:
                w = pd.to_numeric(ph["weight"], errors="coerce").fillna(1.0).to_numpy(float)
                qw = np.array([1.0, 0.5, 0.2, 0.1, 0.0])
                ph["weight_code"] = np.argmin(np.abs(w[:, None] - qw[None, :]), axis=1)
            else:
                ph["weight_code"] = 0
        if "weight_used" not in ph.columns and "weight" in ph.columns:
            ph["weight_used"] = ph["weight"]
        ch = ph["channel"].fillna("").astype(str) if "channel" in ph.columns else pd.Series("", index=ph.index)
        ph["channel"] = ch.str[:3]
        ph = ph[ph["event_id"].isin(ev["event_id"])]
    write_arc(ev, ph, path, shadows=False)
    return path
