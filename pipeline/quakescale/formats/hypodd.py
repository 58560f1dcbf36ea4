"""HypoDD file formats: readers and writers.

- phase file (``.pha``, ph2dt input): ``# yr mo dy hr mn sc lat lon dep mag eh ez rms id`` headers
  followed by ``STA tt weight PHA`` lines (travel time since origin, s);
- ``event.dat`` / ``event.sel``: ``date(yyyymmdd) time(hhmmsscc) lat lon dep mag eh ez rms id``;
- ``station.dat``: ``STA lat lon [elev_m]``;
- ``dt.ct``: ``# id1 id2`` then ``STA t1 t2 weight PHA``;
- ``dt.cc``: ``# id1 id2 otc`` then ``STA dt cc PHA``;
- ``hypoDD.inp`` (HypoDD 1.x layout: file names, IDAT IPHA DIST, OBSCC OBSCT, ISTART ISOLV NSET,
  NSET weighting lines, NLAY RATIO, TOP, VEL, CID, IDs);
- ``hypoDD.loc`` / ``hypoDD.reloc`` / ``hypoDD.res`` / ``hypoDD.sta``.

Formats follow the Fortran FORMAT statements of ph2dt/hypoDD so that files written here are
read by hypoDD and compare line by line with its own outputs.  Readers are whitespace based
and name the file and line on bad input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import QuakeScaleError
from ..velocity import LayeredModel
from ._text import token_lines


class _LazyPandas:
    """pandas on first use: the HypoDD control-file reader and the 2.1b port start without it."""

    def __getattr__(self, name):
        import pandas

        return getattr(pandas, name)


pd = _LazyPandas()

__all__ = [
    "HypoDDFormatError",
    "read_pha",
    "write_pha",
    "read_station_dat",
    "write_station_dat",
    "read_event_dat",
    "write_event_dat",
    "DTColumns",
    "read_dt_columns",
    "read_dtct",
    "write_dtct",
    "read_dtcc",
    "write_dtcc",
    "IterationSet",
    "HypoDDInp",
    "read_hypodd_inp",
    "write_hypodd_inp",
    "read_reloc",
    "write_reloc",
    "read_loc",
    "write_loc",
    "write_res",
    "write_sta",
]


class HypoDDFormatError(QuakeScaleError, ValueError):
    pass


def _ts(yr, mo, dy, hr, mn, sc) -> pd.Timestamp:
    return (
        pd.Timestamp(year=int(yr), month=int(mo), day=int(dy), tz="UTC")
        + pd.to_timedelta(int(hr) * 3600 + int(mn) * 60, unit="s")
        + pd.to_timedelta(round(float(sc) * 1e6), unit="us")
    )


# ----------------------------------------------------------------------------- phase file
def read_pha(path):
    """Read a HypoDD phase file.  Returns ``(events, phases)``:
    events: event_id, time (UTC), latitude, longitude, depth_km, magnitude, eh_km, ez_km, rms_s;
    phases: event_id, station, travel_time_s, weight, phase."""
    path = Path(path)
    evs, phs = [], []
    cur = None
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            s = line.strip()
            if not s:
                continue
            tok = s.split()
            if tok[0] == "#" or tok[0].startswith("#"):
                if tok[0] != "#":
                    tok = ["#", tok[0][1:]] + tok[1:]
                if len(tok) < 15:
                    raise HypoDDFormatError(f"{path}:{n}: event line needs 14 fields after '#', got {s!r}")
                try:
                    yr, mo, dy, hr, mn = (int(float(t)) for t in tok[1:6])
                    sc = float(tok[6])
                    lat, lon, dep, mag, eh, ez, rms = (float(t) for t in tok[7:14])
                    eid = int(tok[14])
                except ValueError as exc:
                    raise HypoDDFormatError(f"{path}:{n}: bad event line {s!r}: {exc}") from None
                cur = eid
                evs.append(
                    dict(
                        event_id=eid,
                        time=_ts(yr, mo, dy, hr, mn, sc),
                        latitude=lat,
                        longitude=lon,
                        depth_km=dep,
                        magnitude=mag,
                        eh_km=eh,
                        ez_km=ez,
                        rms_s=rms,
                    )
                )
            else:
                if cur is None:
                    raise HypoDDFormatError(f"{path}:{n}: phase line before the first '#' event line")
                if len(tok) < 4:
                    raise HypoDDFormatError(f"{path}:{n}: phase line needs 'STA tt weight PHA', got {s!r}")
                try:
                    phs.append(
                        dict(
                            event_id=cur,
                            station=tok[0],
                            travel_time_s=float(tok[1]),
                            weight=float(tok[2]),
                            phase=tok[3].upper(),
                        )
                    )
                except ValueError as exc:
                    raise HypoDDFormatError(f"{path}:{n}: bad phase line {s!r}: {exc}") from None
    ev = pd.DataFrame(
        evs, columns=["event_id", "time", "latitude", "longitude", "depth_km", "magnitude", "eh_km", "ez_km", "rms_s"]
    )
    ph = pd.DataFrame(phs, columns=["event_id", "station", "travel_time_s", "weight", "phase"])
    return ev, ph


def write_pha(events: pd.DataFrame, phases: pd.DataFrame, path) -> Path:
    path = Path(path)
    groups = {k: g for k, g in phases.groupby("event_id", sort=False)}
    lines = []
    for r in events.itertuples(index=False):
        t = pd.Timestamp(r.time)
        sec = t.second + t.microsecond * 1e-6
        mag = getattr(r, "magnitude", 0.0)
        mag = 0.0 if mag is None or not np.isfinite(mag) else mag
        lines.append(
            f"# {t.year:4d} {t.month:2d} {t.day:2d} {t.hour:2d} {t.minute:2d} {sec:6.3f} "
            f"{r.latitude:.5f} {r.longitude:.5f} {r.depth_km:.3f} {mag:.2f} "
            f"{getattr(r, 'eh_km', 0.0):.2f} {getattr(r, 'ez_km', 0.0):.2f} {getattr(r, 'rms_s', 0.0):.2f} "
            f"{int(r.event_id)}"
        )
        g = groups.get(r.event_id)
        if g is not None:
            for p in g.itertuples(index=False):
                lines.append(f"{p.station} {p.travel_time_s:.4f} {p.weight:.4f} {p.phase}")
    path.write_text("\n".join(lines) + "\n")
    return path


# ----------------------------------------------------------------------------- stations
def read_station_dat(path) -> pd.DataFrame:
    """``STA lat lon [elev_m]`` per line.  Returns station, latitude, longitude, elevation_m."""
    path = Path(path)
    rows = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        tok = line.split()
        if not tok:
            continue
        if len(tok) < 3:
            raise HypoDDFormatError(f"{path}:{n}: station line needs 'STA lat lon [elev]', got {line!r}")
        try:
            rows.append(
                dict(
                    station=tok[0],
                    latitude=float(tok[1]),
                    longitude=float(tok[2]),
                    elevation_m=float(tok[3]) if len(tok) > 3 else 0.0,
                )
            )
        except ValueError as exc:
            raise HypoDDFormatError(f"{path}:{n}: bad station line {line!r}: {exc}") from None
    df = pd.DataFrame(rows, columns=["station", "latitude", "longitude", "elevation_m"])
    dup = df["station"][df["station"].duplicated()]
    if len(dup):
        raise HypoDDFormatError(f"{path}: station(s) listed twice: {sorted(set(dup))}")
    return df


def write_station_dat(stations: pd.DataFrame, path, elevation: bool = False) -> Path:
    col = "station" if "station" in stations else "station_id"
    lines = []
    for r in stations.itertuples(index=False):
        sta = getattr(r, col).split(".")[-1] if col == "station_id" else getattr(r, col)
        s = f"{sta:<7s} {r.latitude:10.5f} {r.longitude:11.5f}"
        if elevation:
            s += f" {getattr(r, 'elevation_m', 0.0):8.1f}"
        lines.append(s)
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


# ----------------------------------------------------------------------------- event.dat
def read_event_dat(path) -> pd.DataFrame:
    """event.dat / event.sel: ``yyyymmdd hhmmsscc lat lon dep mag eh ez rms id``."""
    path = Path(path)
    rows = []
    for n, line, tok in token_lines(path, 10, HypoDDFormatError, "an event line"):
        try:
            date, tim = int(tok[0]), int(tok[1])
            lat, lon, dep, mag, eh, ez, rms = (float(t) for t in tok[2:9])
            eid = int(tok[9])
        except ValueError as exc:
            raise HypoDDFormatError(f"{path}:{n}: bad event line {line!r}: {exc}") from None
        yr, mo, dy = date // 10000, (date % 10000) // 100, date % 100
        hr, mn, cs = tim // 1000000, (tim % 1000000) // 10000, tim % 10000
        rows.append(
            dict(
                event_id=eid,
                time=_ts(yr, mo, dy, hr, mn, cs / 100.0),
                latitude=lat,
                longitude=lon,
                depth_km=dep,
                magnitude=mag,
                eh_km=eh,
                ez_km=ez,
                rms_s=rms,
                date=date,
                hhmmsscc=tim,
            )
        )
    return pd.DataFrame(
        rows,
        columns=[
            "event_id",
            "time",
            "latitude",
            "longitude",
            "depth_km",
            "magnitude",
            "eh_km",
            "ez_km",
            "rms_s",
            "date",
            "hhmmsscc",
        ],
    )


def _date_time_ints(t) -> tuple[int, int]:
    t = pd.Timestamp(t)
    cs = int(round((t.second + t.microsecond * 1e-6) * 100))
    return t.year * 10000 + t.month * 100 + t.day, t.hour * 1000000 + t.minute * 10000 + cs


def write_event_dat(events: pd.DataFrame, path) -> Path:
    lines = []
    for r in events.itertuples(index=False):
        date, tim = _date_time_ints(r.time)
        mag = getattr(r, "magnitude", 0.0)
        mag = 0.0 if mag is None or not np.isfinite(mag) else mag
        lines.append(
            f"{date:8d}  {tim:8d}  {r.latitude:8.4f}  {r.longitude:9.4f}  {r.depth_km:9.3f}  {mag:5.2f}  "
            f"{getattr(r, 'eh_km', 0.0):6.2f}  {getattr(r, 'ez_km', 0.0):6.2f}  {getattr(r, 'rms_s', 0.0):5.2f} "
            f"{int(r.event_id):10d}"
        )
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


# ----------------------------------------------------------------------------- dt.ct / dt.cc
@dataclass
class DTColumns:
    """A ``dt.ct`` / ``dt.cc`` file as numpy columns, one row per datum in file order: the pair's
    ids, the station (a code into ``sta_names``, the tokens in first-seen order), ``t1``/``t2``
    (dt.ct: TT1, TT2; dt.cc: DT and the pair's OTC), ``qual`` (the weight column), ``is_p`` (P, else
    S) and ``n_no_otc``: dt.cc pairs with OTC -999 left out (``hypodd=True`` only)."""

    id1: np.ndarray
    id2: np.ndarray
    sta_code: np.ndarray
    sta_names: list
    t1: np.ndarray
    t2: np.ndarray
    qual: np.ndarray
    is_p: np.ndarray
    n_no_otc: int = 0


class _DTBuilder:
    """Columns of a dt file gathered in chunks (numpy arrays, station codes) to keep memory low."""

    CHUNK = 32_768  # data lines per chunk: the token lists (Python strings, ~60 bytes each) stay small

    def __init__(self, cc: bool, dtype):
        self.cc = cc
        self.dtype = dtype
        self.codes: dict = {}
        self.parts: list = []
        self._reset()

    def _reset(self):
        self.c1, self.c2, self.n_per, self.sta, self.t1, self.t2, self.qual, self.pha = [], [], [], [], [], [], [], []

    def flush(self):
        if not self.t1:
            return
        n_per = np.asarray(self.n_per, np.int64)
        t1 = np.array(self.t1, dtype=self.dtype)
        q = np.array(self.qual, dtype=self.dtype)
        t2 = np.repeat(np.array(self.t2, dtype=self.dtype), n_per) if self.cc else np.array(self.t2, dtype=self.dtype)
        code = self.codes
        first = {x: code.setdefault(x, len(code)) for x in dict.fromkeys(self.sta)}  # first-seen order
        sc = np.fromiter(map(first.__getitem__, self.sta), np.int32, len(self.sta))
        c1 = np.repeat(np.asarray(self.c1, np.int64), n_per)
        c2 = np.repeat(np.asarray(self.c2, np.int64), n_per)
        self.parts.append((c1, c2, sc, t1, t2, q, np.array(self.pha) == "P"))
        self._reset()

    def result(self, n_no_otc: int) -> DTColumns:
        self.flush()
        if self.parts:
            cols = [np.concatenate([p[k] for p in self.parts]) for k in range(7)]
        else:
            e = np.zeros(0, self.dtype)
            cols = [
                np.zeros(0, np.int64),
                np.zeros(0, np.int64),
                np.zeros(0, np.int32),
                e,
                e.copy(),
                e.copy(),
                np.zeros(0, bool),
            ]
        names = list(self.codes)  # dicts keep insertion order: code k is the k-th name
        return DTColumns(cols[0], cols[1], cols[2], names, cols[3], cols[4], cols[5], cols[6], n_no_otc)


def read_dt_columns(path, cc: bool, dtype=np.float64, hypodd: bool = False) -> DTColumns:
    """The one ``dt.ct`` (``cc=False``) / ``dt.cc`` (``cc=True``) parser (numpy only), as
    :class:`DTColumns`; numbers parsed into ``dtype`` (hypoDD's REAL: ``np.float32``).

    ``hypodd=True`` reads as HypoDD 2.1b's ``getdata.f``: the phase must be ``P`` or ``S``, a dt.cc
    pair line must give OTC and pairs with OTC -999 are left out (counted in ``n_no_otc``).
    Otherwise phases are upper-cased (then P or S), a missing OTC is 0 and -999 is kept.

    Pair by pair: a pair's data lines are split at once and sliced into columns; a file with an
    irregular pair goes through the line-by-line reader, which names the file, line and value."""
    path = Path(path)
    text = path.read_text(errors="replace")
    if not text.startswith("#"):
        return _read_dt_lines(path, cc, dtype, hypodd)
    ncol = 4 if cc else 5
    out = _DTBuilder(cc, dtype)
    n_no_otc = 0
    for block in text[1:].split("\n#"):
        head, _, body = block.partition("\n")
        h = head.split()
        tok = body.split()
        nb = body.count("\n") + (0 if body.endswith("\n") or not body else 1)
        phs = tok[ncol - 1 :: ncol]
        if len(h) < (3 if cc else 2) or len(tok) != ncol * nb or phs.count("P") + phs.count("S") != nb:
            return _read_dt_lines(path, cc, dtype, hypodd)
        try:
            a, b = int(h[0]), int(h[1])
            otc = float(h[2]) if cc else 0.0
        except ValueError:
            return _read_dt_lines(path, cc, dtype, hypodd)
        if hypodd and cc and abs(otc + 999) < 0.001:
            n_no_otc += 1
            continue
        out.c1.append(a)
        out.c2.append(b)
        out.n_per.append(nb)
        out.sta += tok[0::ncol]
        out.pha += phs
        out.t1 += tok[1::ncol]
        if cc:
            out.qual += tok[2::ncol]
            out.t2.append(otc)
        else:
            out.t2 += tok[2::ncol]
            out.qual += tok[3::ncol]
        if len(out.t1) >= out.CHUNK:
            try:
                out.flush()
            except ValueError:
                return _read_dt_lines(path, cc, dtype, hypodd)
    try:
        return out.result(n_no_otc)
    except ValueError:
        return _read_dt_lines(path, cc, dtype, hypodd)


def _read_dt_lines(path: Path, cc: bool, dtype, hypodd: bool) -> DTColumns:
    out = _DTBuilder(cc, dtype)
    a = b = None
    otc = 0.0
    skip = True
    n_no_otc = 0
    what = "cross data" if cc else "catalog data"
    with open(path, errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if line[:1] == "#":
                tok = line[1:].split()
                try:
                    a, b = int(tok[0]), int(tok[1])
                    otc = float(tok[2]) if cc and (hypodd or len(tok) > 2) else 0.0
                except (ValueError, IndexError):
                    raise HypoDDFormatError(
                        f"{path}:{n}: format error in {what} file: pair line needs "
                        f"'# ID1 ID2{' OTC' if cc else ''}', got {line.rstrip()!r}"
                    ) from None
                skip = hypodd and cc and abs(otc + 999) < 0.001
                n_no_otc += int(skip)
                continue
            tok = line.split()
            if not tok:
                continue
            if a is None:
                raise HypoDDFormatError(f"{path}:{n}: data line before the first '#' pair line")
            if skip:
                continue
            try:
                if cc:
                    s_, d, t2, q, p_ = tok[0], float(tok[1]), otc, float(tok[2]), tok[3]
                else:
                    s_, d, t2, q, p_ = tok[0], float(tok[1]), float(tok[2]), float(tok[3]), tok[4]
            except (ValueError, IndexError):
                raise HypoDDFormatError(
                    f"{path}:{n}: format error in {what} file: expected "
                    f"{'STA DT WGHT PHA' if cc else 'STA TT1 TT2 WGHT PHA'}, got {line.rstrip()!r}"
                ) from None
            if not hypodd:
                p_ = p_.upper()
            if p_ not in ("P", "S"):
                raise HypoDDFormatError(f"{path}:{n}: phase identifier must be P or S, got {p_!r}")
            out.c1.append(a)
            out.c2.append(b)
            out.n_per.append(1)
            out.sta.append(s_)
            out.t1.append(d)
            out.t2.append(t2)
            out.qual.append(q)
            out.pha.append(p_)
    return out.result(n_no_otc)  # one row per datum here (n_per 1): the otc column repeats as it is


def read_dtct(path) -> pd.DataFrame:
    """dt.ct -> event_id_1, event_id_2, station, t1_s, t2_s, weight, phase (file order kept)."""
    d = read_dt_columns(path, cc=False)
    return pd.DataFrame(
        {
            "event_id_1": d.id1,
            "event_id_2": d.id2,
            "station": np.array(d.sta_names, object)[d.sta_code],
            "t1_s": d.t1,
            "t2_s": d.t2,
            "weight": d.qual,
            "phase": np.where(d.is_p, "P", "S"),
        }
    )


def write_dtct(dt: pd.DataFrame, path) -> Path:
    """ph2dt layout: ``'#',1x,i9,1x,i9`` and ``a7,1x,f7.3,1x,f7.3,1x,f6.4,1x,a1``."""
    out = []
    e1 = dt["event_id_1"].to_numpy()
    e2 = dt["event_id_2"].to_numpy()
    new = np.ones(len(dt), bool)
    new[1:] = (e1[1:] != e1[:-1]) | (e2[1:] != e2[:-1])
    for i, r in enumerate(dt.itertuples(index=False)):
        if new[i]:
            out.append(f"# {r.event_id_1:9d} {r.event_id_2:9d}")
        out.append(f"{r.station[:7]:<7s} {r.t1_s:7.3f} {r.t2_s:7.3f} {r.weight:6.4f} {r.phase}")
    Path(path).write_text("\n".join(out) + "\n")
    return Path(path)


def read_dtcc(path) -> pd.DataFrame:
    """dt.cc -> event_id_1, event_id_2, station, dt_s, cc, phase, otc_s (file order kept)."""
    d = read_dt_columns(path, cc=True)
    return pd.DataFrame(
        {
            "event_id_1": d.id1,
            "event_id_2": d.id2,
            "station": np.array(d.sta_names, object)[d.sta_code],
            "dt_s": d.t1,
            "cc": d.qual,
            "phase": np.where(d.is_p, "P", "S"),
            "otc_s": d.t2,
        }
    )


def write_dtcc(dtcc: pd.DataFrame, path) -> Path:
    """HypoDD dt.cc; accepts ``station`` or ``station_id`` (NET.STA -> STA)."""
    sta_col = "station" if "station" in dtcc else "station_id"
    df = dtcc.sort_values(["event_id_1", "event_id_2"], kind="stable")
    out = []
    for (a, b), g in df.groupby(["event_id_1", "event_id_2"], sort=False):
        otc = float(g["otc_s"].iloc[0]) if "otc_s" in g else 0.0
        out.append(f"# {int(a):9d} {int(b):9d} {otc:8.3f}")
        for r in g.itertuples(index=False):
            sta = getattr(r, sta_col)
            if sta_col == "station_id":
                sta = sta.split(".")[-1]
            out.append(f"{sta:<7s} {r.dt_s:10.5f} {r.cc:7.4f} {r.phase}")
    Path(path).write_text("\n".join(out) + ("\n" if out else ""))
    return Path(path)


# ----------------------------------------------------------------------------- hypoDD.inp
@dataclass
class IterationSet:
    """One line of hypoDD.inp's weighting block.  Negative values (-9) switch a cut off;
    residual cut offs >= 1 are multiples of the MAD, below 1 seconds (as in HypoDD)."""

    niter: int
    wt_ccp: float = -9.0
    wt_ccs: float = -9.0
    maxres_cc: float = -9.0
    maxdist_cc_km: float = -9.0
    wt_ctp: float = 1.0
    wt_cts: float = 0.5
    maxres_ct: float = -9.0
    maxdist_ct_km: float = -9.0
    damp: float = 80.0


@dataclass
class HypoDDInp:
    """A hypoDD.inp control file, 1.x or 2.x layout (``version``).  Fields keep hypoDD's names
    where they have one: IDAT ``idat``, IPHA ``ipha``, DIST ``maxdist_km``, OBSCC/OBSCT
    ``minobs_cc``/``minobs_ct``, MINDIST/MAXDIST/MAXGAP ``minds_km``/``maxds_km``/``maxgap_deg``
    (2.x; -999 = off), ISTART, ISOLV, IAQ (2.x; 1.x removes air quakes), the weighting sets,
    IMOD (2.x; 1.x is IMOD 0) with the layer tops, Vp and one Vp/Vs ratio per layer
    (``ratios``), the IMOD 4 model file, the IMOD 9 fields, CID and the event ids."""

    path: Path
    fn_cc: str = ""
    fn_ct: str = ""
    fn_eve: str = "event.dat"
    fn_sta: str = "station.dat"
    fn_loc: str = "hypoDD.loc"
    fn_reloc: str = "hypoDD.reloc"
    fn_stares: str = "hypoDD.sta"
    fn_res: str = "hypoDD.res"
    fn_srcpar: str = "hypoDD.src"
    idat: int = 2
    ipha: int = 3
    maxdist_km: float = 250.0
    minobs_cc: int = 0
    minobs_ct: int = 8
    istart: int = 2
    isolv: int = 2
    sets: list[IterationSet] = field(default_factory=list)
    nlay: int = 0
    vpvs: float = 1.73
    top_km: list[float] = field(default_factory=list)
    vp_kms: list[float] = field(default_factory=list)
    cid: int = 0
    ids: list[int] = field(default_factory=list)
    version: int = 1
    minds_km: float = -999.0
    maxds_km: float = -999.0
    maxgap_deg: float = -999.0
    iaq: int = 1
    imod: int = 0
    ratios: list[float] = field(default_factory=list)
    iwrite: int = 1
    fn_mod1d: str = ""
    fn_mod3d: str = ""
    origin_3d: tuple = ()
    raytrace_3d: tuple = ()

    def resolve(self, name: str) -> Path | None:
        if not name:
            return None
        p = Path(name)
        return p if p.is_absolute() else (self.path.parent / p)

    def layer_ratios(self) -> list[float]:
        return list(self.ratios) if len(self.ratios) == len(self.top_km) else [self.vpvs] * len(self.top_km)

    def model(self):
        r = np.asarray(self.layer_ratios(), float)
        vp = np.asarray(self.vp_kms, float)
        return LayeredModel(
            name=f"{self.path.name}",
            top_km=[float(t) for t in self.top_km],
            vp_kms=[float(v) for v in vp],
            vs_kms=[float(v) for v in vp / r],
        )


def _data_lines(path: Path, skip_first: bool = False) -> list[tuple[int, str]]:
    out = []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if skip_first and n == 1:
            continue
        if line[:1] == "*" or line[1:2] == "*":
            continue
        out.append((n, line))
    return out


def _fields(path: Path, n: int, line: str, names: str, types: str, at_least: int | None = None) -> list:
    """Fortran list-directed read of ``types`` ('i' integer, 'f' real) from ``line`` (extra
    values ignored), naming the file, line and field on bad input."""
    tok = line.replace(",", " ").split()
    labels = names.split()
    need = len(types) if at_least is None else at_least
    if len(tok) < need:
        raise HypoDDFormatError(f"{path}:{n}: expected {names} ({len(types)} values), got {line.strip()!r}")
    out = []
    for k, (t, kind) in enumerate(zip(tok, types)):
        try:
            out.append(int(t) if kind == "i" else float(t.replace("d", "e").replace("D", "e")))
        except ValueError:
            what = "an integer" if kind == "i" else "a number"
            raise HypoDDFormatError(
                f"{path}:{n}: field {labels[k] if k < len(labels) else k + 1} must be {what}, "
                f"got {t!r} in {line.strip()!r}"
            ) from None
    return out


def _ids(path: Path, rows) -> list[int]:
    ids = []
    for n, ln in rows:
        for t in ln.replace(",", " ").split():
            try:
                v = int(t)
            except ValueError:
                raise HypoDDFormatError(f"{path}:{n}: event id must be an integer, got {t!r}") from None
            if v == 0:
                break
            ids.append(v)
    return ids


def _read_inp2(path: Path) -> HypoDDInp:
    """hypoDD 2.x (getinp2.f): line numbering counts every line that is not a comment
    (blank lines are empty file names), after the ``hypoDD_2`` line."""
    lines = _data_lines(path, skip_first=True)
    inp = HypoDDInp(path=path, version=2)

    def get(line_no, what):
        if line_no - 1 >= len(lines):
            raise HypoDDFormatError(f"{path}: file ends before {what} (data line {line_no} of the hypoDD_2 layout)")
        return lines[line_no - 1]

    names = [get(k, "the file names")[1].strip() for k in range(1, 10)]
    (
        inp.fn_cc,
        inp.fn_ct,
        inp.fn_eve,
        inp.fn_sta,
        inp.fn_loc,
        inp.fn_reloc,
        inp.fn_stares,
        inp.fn_res,
        inp.fn_srcpar,
    ) = names
    if inp.fn_reloc.endswith("-"):
        inp.fn_reloc, inp.iwrite = inp.fn_reloc[:-1], 0
    n, ln = get(10, "IDAT IPHA DIST")
    inp.idat, inp.ipha, inp.maxdist_km = _fields(path, n, ln, "IDAT IPHA DIST", "iif")
    if inp.maxdist_km < 0:
        inp.maxdist_km = 50000.0
    n, ln = get(11, "OBSCC OBSCT MINDIST MAXDIST MAXGAP")
    inp.minobs_cc, inp.minobs_ct, inp.minds_km, inp.maxds_km, inp.maxgap_deg = _fields(
        path, n, ln, "OBSCC OBSCT MINDIST MAXDIST MAXGAP", "iifff"
    )
    n, ln = get(12, "ISTART ISOLV IAQ NSET")
    inp.istart, inp.isolv, inp.iaq, nset = _fields(path, n, ln, "ISTART ISOLV IAQ NSET", "iiii")
    if not 1 <= nset <= 10:
        raise HypoDDFormatError(f"{path}:{n}: NSET must be 1..10, got {nset}")
    for k in range(nset):
        n, ln = get(13 + k, "the weighting lines")
        v = _fields(path, n, ln, "NITER WTCCP WTCCS WRCC WDCC WTCTP WTCTS WRCT WDCT DAMP", "ifffffffff")
        damp = abs(v[9]) if inp.isolv == 1 else v[9]
        inp.sets.append(IterationSet(int(v[0]), v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], damp))
    l0 = 13 + nset
    n, ln = get(l0, "IMOD")
    inp.imod = _fields(path, n, ln, "IMOD", "i")[0]
    if inp.imod in (0, 6):
        n, ln = get(l0 + 1, "NLAY RATIO")
        nl, ratio = _fields(path, n, ln, "NLAY RATIO", "if")
        inp.nlay, inp.vpvs = nl, ratio
        n, ln = get(l0 + 2, "TOP")
        inp.top_km = _fields(path, n, ln, " ".join(["TOP"] * nl), "f" * nl)
        n, ln = get(l0 + 3, "VEL")
        inp.vp_kms = _fields(path, n, ln, " ".join(["VEL"] * nl), "f" * nl)
        inp.ratios = [ratio] * nl
    elif inp.imod in (1, 5):
        n, ln = get(l0 + 1, "TOP")
        nl = len(ln.replace(",", " ").split())
        tops = _fields(path, n, ln, " ".join(["TOP"] * nl), "f" * nl)
        if inp.imod == 5:
            nl = 1
        if tops[nl - 1] == -9:
            nl -= 1
        inp.top_km, inp.nlay = tops[:nl], nl
        n, ln = get(l0 + 2, "VEL")
        inp.vp_kms = _fields(path, n, ln, " ".join(["VEL"] * nl), "f" * nl)
        n, ln = get(l0 + 3, "RATIO")
        inp.ratios = _fields(path, n, ln, " ".join(["RATIO"] * nl), "f" * nl)
        inp.vpvs = float(np.median(inp.ratios)) if nl else 1.73
    elif inp.imod == 9:
        inp.fn_mod3d = get(l0 + 1, "the 3-D model file")[1].strip()
        n, ln = get(l0 + 2, "LAT_3D LON_3D ROT_3D")
        inp.origin_3d = tuple(_fields(path, n, ln, "LAT_3D LON_3D ROT_3D", "fff"))
        n, ln = get(l0 + 3, "IPHA NDIP ISKIP SCALE1 SCALE2 XFAX TLIM NITPB")
        inp.raytrace_3d = tuple(_fields(path, n, ln, "IPHA NDIP ISKIP SCALE1 SCALE2 XFAX TLIM NITPB", "iiiffffi"))
    elif inp.imod == 4:
        inp.fn_mod1d = get(l0 + 1, "the station model file")[1].strip()
    else:
        raise HypoDDFormatError(f"{path}:{n}: IMOD must be 0, 1, 4, 5 or 9, got {inp.imod}")
    if l0 + 4 <= len(lines):
        n, ln = lines[l0 + 3]
        inp.cid = _fields(path, n, ln, "CID", "i")[0]
        inp.ids = _ids(path, lines[l0 + 4 :])
    return inp


def read_hypodd_inp(path) -> HypoDDInp:
    """Read a ``hypoDD.inp``: the 2.x layout (first line ``hypoDD_2``; getinp2.f) or the 1.x
    layout of the distributed examples and the Italy demo (getinp.f).  Blank data lines are
    file names left empty (e.g. no dt.cc)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: hypoDD control file not found")
    first = path.read_text(errors="replace")[:9]
    if first.startswith(("hypoDD_v2", "hypoDD_2")):
        return _read_inp2(path)
    lines = _data_lines(path)
    if len(lines) < 17:
        raise HypoDDFormatError(f"{path}: too few data lines ({len(lines)}) for a hypoDD.inp")
    inp = HypoDDInp(path=path)
    names = [ln.strip() for _, ln in lines[:9]]
    (
        inp.fn_cc,
        inp.fn_ct,
        inp.fn_eve,
        inp.fn_sta,
        inp.fn_loc,
        inp.fn_reloc,
        inp.fn_stares,
        inp.fn_res,
        inp.fn_srcpar,
    ) = names
    rest = [(n, ln) for n, ln in lines[9:] if ln.strip()]

    def nums(i, k, what):
        n, ln = rest[i]
        tok = ln.replace(",", " ").split()
        try:
            vals = [float(t) for t in tok[:k]]
        except ValueError:
            raise HypoDDFormatError(f"{path}:{n}: expected {what}, got {ln.strip()!r}") from None
        if len(vals) < k:
            raise HypoDDFormatError(f"{path}:{n}: expected {k} values ({what}), got {ln.strip()!r}")
        return vals

    try:
        inp.idat, inp.ipha, inp.maxdist_km = (lambda v: (int(v[0]), int(v[1]), v[2]))(nums(0, 3, "IDAT IPHA DIST"))
        if inp.maxdist_km < 0:
            inp.maxdist_km = 50000.0
        inp.minobs_cc, inp.minobs_ct = (int(v) for v in nums(1, 2, "OBSCC OBSCT"))
        inp.istart, inp.isolv, nset = (int(v) for v in nums(2, 3, "ISTART ISOLV NSET"))
        i = 3
        for _ in range(nset):
            v = nums(i, 10, "NITER WTCCP WTCCS WRCC WDCC WTCTP WTCTS WRCT WDCT DAMP")
            inp.sets.append(IterationSet(int(v[0]), v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]))
            i += 1
        nl, ratio = nums(i, 2, "NLAY RATIO")
        inp.nlay, inp.vpvs = int(nl), ratio
        inp.top_km = nums(i + 1, inp.nlay, "TOP (one per layer)")
        inp.vp_kms = nums(i + 2, inp.nlay, "VEL (one per layer)")
        inp.ratios = [ratio] * inp.nlay
        i += 3
        if i < len(rest):
            inp.cid = int(nums(i, 1, "CID")[0])
            i += 1
        inp.ids = _ids(path, rest[i:])
    except IndexError:
        raise HypoDDFormatError(f"{path}: file ends before the control block is complete") from None
    return inp


def write_hypodd_inp(inp: HypoDDInp, path) -> Path:
    L = [
        "* hypoDD.inp written by QuakeScale",
        inp.fn_cc,
        inp.fn_ct,
        inp.fn_eve,
        inp.fn_sta,
        inp.fn_loc,
        inp.fn_reloc,
        inp.fn_stares,
        inp.fn_res,
        inp.fn_srcpar,
        "* IDAT IPHA DIST",
        f"  {inp.idat} {inp.ipha} {inp.maxdist_km:g}",
        "* OBSCC OBSCT",
        f"  {inp.minobs_cc} {inp.minobs_ct}",
        "* ISTART ISOLV NSET",
        f"  {inp.istart} {inp.isolv} {len(inp.sets)}",
        "* NITER WTCCP WTCCS WRCC WDCC WTCTP WTCTS WRCT WDCT DAMP",
    ]
    for s in inp.sets:
        L.append(
            f"  {s.niter} {s.wt_ccp:g} {s.wt_ccs:g} {s.maxres_cc:g} {s.maxdist_cc_km:g} {s.wt_ctp:g} "
            f"{s.wt_cts:g} {s.maxres_ct:g} {s.maxdist_ct_km:g} {s.damp:g}"
        )
    L += [
        "* NLAY RATIO",
        f"  {len(inp.top_km)} {inp.vpvs:g}",
        "* TOP",
        " ".join(f"{t:g}" for t in inp.top_km),
        "* VEL",
        " ".join(f"{v:g}" for v in inp.vp_kms),
        "* CID",
        f"  {inp.cid}",
        "* ID",
        " ".join(str(i) for i in inp.ids),
    ]
    Path(path).write_text("\n".join(L) + "\n")
    return Path(path)


# ----------------------------------------------------------------------------- outputs
RELOC_COLUMNS = [
    "event_id",
    "latitude",
    "longitude",
    "depth_km",
    "x_m",
    "y_m",
    "z_m",
    "ex_m",
    "ey_m",
    "ez_m",
    "year",
    "month",
    "day",
    "hour",
    "minute",
    "second",
    "magnitude",
    "n_cc_p",
    "n_cc_s",
    "n_ct_p",
    "n_ct_s",
    "rms_cc_s",
    "rms_ct_s",
    "cluster",
]
LOC_COLUMNS = RELOC_COLUMNS[:17] + ["cluster"]


def _read_table(path, columns) -> pd.DataFrame:
    path = Path(path)
    rows = []
    # "#" lines: our catalog header (2.1b never writes one: its lines start with the event id)
    for _n, _line, tok in token_lines(path, len(columns), HypoDDFormatError, " ".join(columns), comment="#"):
        vals = []
        for t in tok[: len(columns)]:
            try:
                vals.append(float(t))
            except ValueError:
                vals.append(np.nan)  # Fortran overflow '****'
        rows.append(vals)
    df = pd.DataFrame(rows, columns=columns)
    for c in ("event_id", "year", "month", "day", "hour", "minute", "cluster", "n_cc_p", "n_cc_s", "n_ct_p", "n_ct_s"):
        if c in df:
            df[c] = df[c].astype(np.int64)
    if len(df):
        base = pd.to_datetime(dict(year=df.year, month=df.month, day=df.day), utc=True)
        df["time"] = (
            base + pd.to_timedelta(df.hour * 3600 + df.minute * 60, unit="s") + pd.to_timedelta(df.second, unit="s")
        )
    else:
        df["time"] = pd.Series([], dtype="datetime64[ns, UTC]")
    return df


def read_reloc(path) -> pd.DataFrame:
    return _read_table(path, RELOC_COLUMNS)


def read_loc(path) -> pd.DataFrame:
    return _read_table(path, LOC_COLUMNS)


def _f(v, w, d):
    s = f"{v:{w}.{d}f}"
    return s if len(s) <= w else "*" * w


def _time_parts(t):
    t = pd.Timestamp(t)
    sec = t.second + t.microsecond * 1e-6 + t.nanosecond * 1e-9
    return t.year, t.month, t.day, t.hour, t.minute, sec


def _loc_columns(r, sec_w: int, sec_d: int) -> str:
    """The columns .reloc and .loc share: id, lat, lon, depth, x, y, z, ex, ey, ez, date, time, mag."""
    yr, mo, dy, hr, mn, sc = _time_parts(r.time)
    return (
        f"{int(r.event_id):9d} {_f(r.latitude, 10, 6)} {_f(r.longitude, 11, 6)} {_f(r.depth_km, 9, 3)} "
        f"{_f(r.x_m, 10, 1)} {_f(r.y_m, 10, 1)} {_f(r.z_m, 10, 1)} {_f(r.ex_m, 8, 1)} {_f(r.ey_m, 8, 1)} "
        f"{_f(r.ez_m, 8, 1)} {yr:4d} {mo:2d} {dy:2d} {hr:2d} {mn:2d} {_f(sc, sec_w, sec_d)} {_f(r.magnitude, 5, 2)}"
    )


def write_reloc(df: pd.DataFrame, path) -> Path:
    """hypoDD.reloc: ``i9,1x,f10.6,1x,f11.6,1x,f9.3,3(1x,f10.1),3(1x,f8.1),1x,i4,4(1x,i2),1x,f6.3,
    1x,f5.2,4(1x,i5),2(1x,f6.3),1x,i3``."""
    out = [
        f"{_loc_columns(r, 6, 3)} {int(r.n_cc_p):5d} {int(r.n_cc_s):5d} {int(r.n_ct_p):5d} {int(r.n_ct_s):5d} "
        f"{_f(r.rms_cc_s, 6, 3)} {_f(r.rms_ct_s, 6, 3)} {int(r.cluster):3d}"
        for r in df.itertuples(index=False)
    ]
    Path(path).write_text("\n".join(out) + ("\n" if out else ""))
    return Path(path)


def write_loc(df: pd.DataFrame, path) -> Path:
    """hypoDD.loc (initial locations), same leading columns as .reloc, f5.2 seconds."""
    out = [f"{_loc_columns(r, 5, 2)} {int(r.cluster):3d}" for r in df.itertuples(index=False)]
    Path(path).write_text("\n".join(out) + ("\n" if out else ""))
    return Path(path)


def _fits(v: np.ndarray, w: int, d: int) -> np.ndarray:
    """Whether each value prints within Fortran's ``f{w}.{d}`` (else the field is stars); NaN prints."""
    pos = 10.0 ** (w - d - 1) - 10.0**-d  # one unit of the last digit short of the widest value,
    neg = 10.0 ** (w - d - 2) - 10.0**-d  # so that rounding cannot widen it (a minus sign takes a digit)
    return np.isnan(v) | ((v < pos) & (v > -neg))


def write_res(res: pd.DataFrame, path) -> Path:
    """hypoDD.res: ``a7,1x,f12.7,1x,i9,1x,i9,1x,i1,1x,f9.4,1x,f12.6,1x,f11.6,1x,f8.1`` with a
    header line (STA DT C1 C2 IDX QUAL RES [ms] WT OFFS). One format call per row (10^7 rows
    are common); rows with a value too wide for its field go through the field-wise path."""
    head = "STA           DT        C1        C2    IDX     QUAL    RES [ms]   WT         OFFS"
    fcols = [("dt_s", 12, 7), ("qual", 9, 4), ("res_ms", 12, 6), ("wt", 11, 6), ("offs_m", 8, 1)]
    vals = {c: res[c].to_numpy(float) for c, _, _ in fcols}
    ok = np.ones(len(res), bool)
    for c, w, d in fcols:
        ok &= _fits(vals[c], w, d)
    sta = res["station"].astype(str).str.slice(0, 7).tolist()
    rows = zip(
        sta,
        vals["dt_s"].tolist(),
        res["event_id_1"].astype(np.int64).tolist(),
        res["event_id_2"].astype(np.int64).tolist(),
        res["idx"].astype(np.int64).tolist(),
        vals["qual"].tolist(),
        vals["res_ms"].tolist(),
        vals["wt"].tolist(),
        vals["offs_m"].tolist(),
    )
    fmt = "%-7s %12.7f %9d %9d %1d %9.4f %12.6f %11.6f %8.1f"
    out = [head]
    for good, r in zip(ok.tolist(), rows):
        if good:
            out.append(fmt % r)
        else:
            out.append(
                f"{r[0]:<7s} {_f(r[1], 12, 7)} {r[2]:9d} {r[3]:9d} {r[4]:1d} {_f(r[5], 9, 4)} {_f(r[6], 12, 6)} "
                f"{_f(r[7], 11, 6)} {_f(r[8], 8, 1)}"
            )
    Path(path).write_text("\n".join(out) + "\n")
    return Path(path)


def write_sta(sta: pd.DataFrame, path) -> Path:
    """hypoDD.sta: ``a7,1x,f9.4,1x,f9.4,1x,f9.4,1x,f9.4,4(1x,i7),1x,f9.4,1x,f9.4,1x,i3``."""
    out = []
    for r in sta.itertuples(index=False):
        out.append(
            f"{r.station[:7]:<7s} {_f(r.latitude, 9, 4)} {_f(r.longitude, 9, 4)} {_f(r.dist_km, 9, 4)} "
            f"{_f(r.az_deg, 9, 4)} {int(r.n_cc_p):7d} {int(r.n_cc_s):7d} {int(r.n_ct_p):7d} {int(r.n_ct_s):7d} "
            f"{_f(r.rms_cc_s, 9, 4)} {_f(r.rms_ct_s, 9, 4)} {int(r.cluster):3d}"
        )
    Path(path).write_text("\n".join(out) + ("\n" if out else ""))
    return Path(path)
