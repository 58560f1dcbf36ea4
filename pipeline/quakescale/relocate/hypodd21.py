"""HypoDD 2.1b, step for step: run a ``hypoDD.inp`` project (2.x or 1.x layout) and write its files.

A port of the Fortran program (Waldhauser 2001-2016, v2.1beta) where the results depend on it:

- data selection as ``getdata.f``: events of the event file (10 or 11 columns, EV_FIX), depth at
  least 10 m; stations within DIST of the centroid (``delaz``), elevations in km (negative -> 0);
  cc then ct differential times of event pairs whose offset is within WDCC/WDCT of the *first*
  weighting set; pair-station distance MINDIST..MAXDIST and azimuthal gap MAXGAP per pair;
- clustering as ``cluster1.f``: catalog *plus* cc observations of a pair counted against
  OBSCC+OBSCT, clusters ordered as hypoDD orders them, each cluster's data read again;
- the short-distance conversion (``setorg``/``sdc2``) at the cluster centroid;
- travel times and partials of the layered model (``partials.f``: ``ttime``/``refract``/``direct1``
  with the layer tops shifted by the station elevation, IMOD 0 and 1; IMOD 5 straight rays;
  IMOD 4 station-specific models);
- ``dtres``, ``weighting`` (a-priori, distance and MAD residual re-weighting), ``skip``,
  ``resstat``, air quakes (IAQ), ``lsfit_svd`` (4 mean-shift rows, 1.96 x the weighted
  residual variance) and ``lsfit_lsqr`` (Paige-Saunders LSQR as hypoDD's ``lsqr.f``, its
  error estimate sqrt(se) x sqrt(resvar) x 2.7955);
- outputs in hypoDD's FORMAT statements: .loc, .reloc (and .reloc.CCC.III per iteration),
  .sta, .res, .src and hypoDD.log with its iteration table.

Quirks of 2.1b kept on purpose so that files compare: .res and .src hold the last cluster only
(hypoDD reopens them), .sta has zero distance/azimuth columns.  IMOD 9 (3-D ray tracing,
simul2000) is refused.  Inputs are held as hypoDD holds them (REAL: event and station
coordinates, differential times, the centroid) and LSQR runs in single precision with hypoDD's
row summation order; the rest is double precision.  Results agree with the Fortran to a few
decimetres horizontally and about a metre in depth, not bit for bit: on ill-conditioned events
LSQR's early stop amplifies rounding differences over the iterations.

Only numpy is imported (scipy's compiled sparse kernels alone, without scipy.sparse, for LSQR systems
of 200 000 entries or more).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import math
import sys
import time as _time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from ..errors import QuakeScaleError
from ..formats.hypodd import HypoDDFormatError, HypoDDInp, read_dt_columns, read_hypodd_inp

__all__ = ["HypoDD21Error", "run_project", "ProjectResult", "project_summary"]

PI = 3.141593
MINWGHT = 0.00001
LSQR_DTYPE = np.float32  # hypoDD's LSQR runs in single precision; so does ours (closer agreement, half the memory)
SRC_WIDTH = len("%9d %9.4f %9.4f %-7s %7.3f %9.4f %9.4f %9.4f" % (0, 0, 0, "", 0, 0, 0, 0) + "%9.4f" * 9 % ((0,) * 9))


class HypoDD21Error(QuakeScaleError, ValueError):
    pass


# ----------------------------------------------------------------------------- small helpers
def f32(a):
    """A value as hypoDD holds it (REAL, single precision), back in double."""
    return np.asarray(a, np.float32).astype(float)


def f32sum_mean(a) -> float:
    """Sequential single-precision sum / n, as hypoDD's centroid loops."""
    a = np.asarray(a, np.float32)
    return float(np.cumsum(a, dtype=np.float32)[-1] / np.float32(len(a))) if len(a) else 0.0


def nint(x) -> int:
    x = float(x)
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def ff(v, w: int, d: int) -> str:
    """Fortran ``f{w}.{d}``: stars when the value does not fit."""
    v = float(v)
    s = f"{v:{w}.{d}f}"
    if len(s) <= w and s[-1] not in "fn":  # fits and finite ('inf' / 'nan' end so): the common case
        return s
    if not math.isfinite(v):
        s = ("-Inf" if v < 0 else "+Inf") if math.isinf(v) else "NaN"
        return s.rjust(w) if len(s) <= w else "*" * w
    if len(s) > w and s.startswith("-0."):
        s = "-" + s[2:]
    elif len(s) > w and s.startswith("0."):
        s = s[1:]
    return s if len(s) <= w else "*" * w


def _ffcol(values, w: int, d: int) -> list:
    """``ff`` of every value of a list (or array): the common case formatted in one pass."""
    vals = values.tolist() if isinstance(values, np.ndarray) else [float(v) for v in values]
    fmt = f"{{:{w}.{d}f}}".format
    out = [fmt(float(v)) for v in vals]
    for i, s in enumerate(out):
        if len(s) > w or s[-1] in "fn":  # too wide or not finite: the full rules
            out[i] = ff(vals[i], w, d)
    return out


def fi(v, w: int) -> str:
    s = f"{int(v):{w}d}"
    return s if len(s) <= w else "*" * w


def _fortran_now() -> str:
    return _time.strftime("%a %b %d %H:%M:%S %Y ")


# ----------------------------------------------------------------------------- geometry (delaz, sdc)
def delaz(alat, alon, blat, blon, radius0: float = 6371.227):
    """hypoDD's delaz (radius 6371.227 km) / delaz2 (6378.140 km): distance km, azimuth deg."""
    pi2, rad, flat = 1.570796, 1.745329e-02, 0.993231
    alatr, alonr = np.asarray(alat, float) * rad, np.asarray(alon, float) * rad
    blatr, blonr = np.asarray(blat, float) * rad, np.asarray(blon, float) * rad
    acol = pi2 - np.arctan(flat * np.tan(alatr))
    bcol = pi2 - np.arctan(flat * np.tan(blatr))
    diflon = blonr - alonr
    cosdel = np.sin(acol) * np.sin(bcol) * np.cos(diflon) + np.cos(acol) * np.cos(bcol)
    delr = np.arccos(np.clip(cosdel, -1.0, 1.0))
    top = np.sin(diflon)
    den = np.sin(acol) / np.tan(bcol) - np.cos(diflon) * np.cos(acol)
    az = np.arctan2(top, den) / rad
    az = np.where(az < 0.0, 360.0 + az, az)
    colat = pi2 - (alatr + blatr) / 2
    radius = radius0 * (1.0 + 3.37853e-3 * (0 - np.cos(colat) ** 2))  # (1/3) is integer 0 in the Fortran
    return delr * radius, az


class SDC:
    """Short distance conversion (setorg/sdc2: dist, redist), WGS72 ellipsoid, x east, y north, km."""

    def __init__(self, orlat: float, orlon: float, rota: float = 0.0):
        rad = 0.017453292
        self.rad = rad
        self.olat, self.olon = (
            float(np.float32(np.float32(orlat) * np.float32(60.0))),
            float(np.float32(np.float32(orlon) * np.float32(60.0))),
        )
        rearth, ellip = 6378.135, 298.26
        phi = self.olat * rad / 60.0
        beta = phi - math.sin(phi * 2.0) / ellip
        self.rlatc = math.tan(beta) / math.tan(phi)
        lat1 = math.atan(self.rlatc * math.tan(self.olat * rad / 60.0))
        lat2 = math.atan(self.rlatc * math.tan((self.olat + 1.0) * rad / 60.0))
        r = rearth * (1.0 - math.sin(lat1) ** 2 / ellip)
        self.aa = float(np.float32(r * (lat2 - lat1)))
        delb = math.acos(math.sin(lat1) ** 2 + math.cos(rad / 60.0) * math.cos(lat1) ** 2)
        self.bb = float(np.float32(r * delb / math.cos(lat1)))
        self.sint, self.cost = math.sin(rota * rad), math.cos(rota * rad)
        self.rotate = rota * rad
        self._lat2 = math.atan(self.rlatc * math.tan(rad * self.olat / 60.0))

    def xy(self, lat, lon):
        q = 60.0 * np.asarray(lat, float) - self.olat
        lat1 = np.arctan(self.rlatc * np.tan(self.rad * (q + self.olat) / 60.0))
        lat3 = (self._lat2 + lat1) / 2.0
        xx = (60.0 * np.asarray(lon, float) - self.olon) * self.bb * np.cos(lat3)
        q = q * self.aa
        if self.rotate != 0.0:
            q, xx = self.cost * q + self.sint * xx, self.cost * xx - self.sint * q
        return xx, q

    def latlon(self, x, y):
        x, y = np.asarray(x, float), np.asarray(y, float)
        yy = y * self.cost - x * self.sint
        xx = y * self.sint + x * self.cost
        q = yy / self.aa
        yp = q + self.olat
        lat1 = np.arctan(self.rlatc * np.tan(yp * self.rad / 60.0))
        lat3 = (lat1 + self._lat2) / 2.0
        p = xx / (self.bb * np.cos(lat3))
        return yp / 60.0, (p + self.olon) / 60.0


# ----------------------------------------------------------------------------- travel times (ttime)
def ttime_layered(delta, depth, v, top, mi=None):
    """hypoDD's ``ttime`` (vmodel + refract + direct1) for arrays of epicentral distance
    ``delta`` and depth ``depth`` (km) in the layers of speeds ``v`` (nl,) whose tops are
    ``top[mi]`` (``top`` (k, nl): the distinct top sets, e.g. one per station elevation; ``mi``
    the set of each ray, default 0).  Returns travel time (s) and take-off angle ``ain`` (deg)."""
    delta = np.asarray(delta, float)
    depth = np.asarray(depth, float)
    n = delta.size
    tops = np.atleast_2d(np.asarray(top, float))
    nl = tops.shape[1]
    mi = np.zeros(n, np.int64) if mi is None else np.asarray(mi, np.int64)
    vv0 = np.r_[0.0, np.asarray(v, float)]
    # 1-based layer arrays (column 0 unused) so that the code reads like the Fortran
    V = np.broadcast_to(vv0, (n, nl + 1))
    VSQ = V * V
    TOPS = np.zeros((len(tops), nl + 1))
    TOPS[:, 1:] = tops
    THKS = np.zeros((len(tops), nl + 1))
    THKS[:, 1:nl] = TOPS[:, 2:] - TOPS[:, 1:nl]
    TOP = TOPS[mi]
    THK = THKS[mi]
    rows = np.arange(n)
    jl = (TOP[:, 1:] < depth[:, None]).sum(1)  # vmodel: first i with depth <= top(i) -> i-1
    jl = np.where(jl == 0, 1, jl)  # depth <= top(1) cannot occur (depth >= 0.01 km)
    tkj = depth - TOP[rows, jl]
    vjl = V[rows, jl]
    vsqjl = VSQ[rows, jl]
    BIG = 100000.0
    # tiddid (tid, did for every event layer jl) and the downward tid of refract depend on the ray
    # only through its layer tops and speeds: computed once per distinct model, then gathered
    inv = mi
    TID, DID, TDN = _layer_tables(vv0, THKS)
    tid = TID[inv, jl]
    did = DID[inv, jl]
    tdn_all = TDN[inv]
    # refract
    tref = np.full(n, BIG)
    kk = np.zeros(n, np.int64)
    tinj = np.zeros((n, nl + 2))
    for m in range(2, nl + 1):
        act = m > jl
        isbig = tid[:, m] == BIG
        with np.errstate(invalid="ignore", divide="ignore"):
            sqt = np.sqrt(np.maximum(VSQ[:, m] - vsqjl, 0.0))
            tinj[:, m] = tid[:, m] - tkj * sqt / (V[:, m] * vjl)
            didj = did[:, m] - tkj * vjl / sqt
            tr = tinj[:, m] + delta / V[:, m]
        tr = np.where(isbig | (didj > delta), BIG, tr)
        better = act & (tr < tref)
        tref = np.where(better, tr, tref)
        kk = np.where(better, m, kk)
    xovmax = np.full(n, BIG)
    has = tref != BIG
    kk = np.where(has, kk, 0)
    if has.any():
        # lx: first m > jl with tid(m) != BIG
        lx = np.zeros(n, np.int64)
        for m in range(nl, 1, -1):
            ok = (m > jl) & (tid[:, m] != BIG)
            lx = np.where(ok, m, lx)
        lx = np.where(has, np.maximum(lx, 1), 1)
        vlx = V[rows, lx]
        tinjlx = tinj[rows, lx]
        tdn = tdn_all
        jx = np.zeros(n, np.int64)
        for m in range(2, nl + 1):
            ok = (m <= jl) & (tdn[:, m] < BIG)
            jx = np.where(ok, m, jx)
        v1 = V[:, 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            x_jl1 = tinjlx * vlx * v1 / (vlx - v1)
            vjx = V[rows, np.maximum(jx, 1)]
            x_jx = (tinjlx - tdn[rows, np.maximum(jx, 1)]) * vlx * vjx / (vlx - vjx)
        xo = np.where(jl == 1, x_jl1, np.where(jx > 0, x_jx, x_jl1))
        xovmax = np.where(has, xo, BIG)
    t = tref.copy()
    ain = np.zeros(n)
    with np.errstate(invalid="ignore", divide="ignore"):
        u_ref = vjl / V[rows, np.maximum(kk, 1)]
    ain = np.where(kk > 0, np.arcsin(np.clip(u_ref, -1, 1)) * 57.2958, ain)
    dmask = delta <= xovmax
    if dmask.any():
        tdir, u = _direct1(V, VSQ, THK, jl, tkj, delta, depth, dmask)
        use = dmask & (tref > tdir)
        t = np.where(use, tdir, t)
        ain = np.where(use, 180.0 - np.arcsin(np.clip(u, -1, 1)) * 57.2958, ain)
    return t, ain


_TABLES: dict = {}


def _layer_tables(vv0, THKS):
    """tiddid's tid/did for every event layer jl and refract's downward tid, per distinct set of
    layer thicknesses (cached: the same for every iteration)."""
    key = (vv0.tobytes(), THKS.tobytes())
    hit = _TABLES.get(key)
    if hit is not None:
        return hit
    BIG = 100000.0
    nl = len(vv0) - 1
    TID = np.zeros((len(THKS), nl + 1, nl + 2))
    DID = np.zeros_like(TID)
    TDN = np.zeros((len(THKS), nl + 1))
    vv = vv0
    vsq = vv * vv
    j = np.arange(1, nl + 1)
    for m in range(2, nl + 1):
        l = np.arange(1, m)
        bad = vsq[m] <= vsq[l]
        if bad.any():
            TDN[:, m] = BIG
            TID[:, 1:, m] = BIG
            DID[:, 1:, m] = BIG
            continue
        sqt = np.sqrt(vsq[m] - vsq[l])
        tim = THKS[:, l] * sqt / (vv[l] * vv[m])  # (k, m-1)
        dimm = THKS[:, l] * vv[l] / sqt
        TDN[:, m] = tim.sum(1)
        ct = np.c_[np.zeros(len(THKS)), np.cumsum(tim, 1)][:, np.minimum(j - 1, m - 1)]  # sum over l < min(j, m)
        cd = np.c_[np.zeros(len(THKS)), np.cumsum(dimm, 1)][:, np.minimum(j - 1, m - 1)]
        TID[:, 1:, m] = ct + 2 * (tim.sum(1)[:, None] - ct)
        DID[:, 1:, m] = cd + 2 * (dimm.sum(1)[:, None] - cd)
    if len(_TABLES) > 64:
        _TABLES.clear()
    _TABLES[key] = (TID, DID, TDN)
    return TID, DID, TDN


def _direct1(V, VSQ, THK, jl, tkj, delta, depth, mask):
    n, nl1 = V.shape
    nl = nl1 - 1
    rows = np.arange(n)
    tdir = np.full(n, np.inf)
    u = np.zeros(n)
    vjl = V[rows, jl]
    vsqjl = VSQ[rows, jl]
    # jl == 1: straight ray in the top layer
    one = mask & (jl == 1)
    r = np.hypot(depth, delta)
    with np.errstate(invalid="ignore", divide="ignore"):
        tdir = np.where(one, r / V[:, 1], tdir)
        u = np.where(one, delta / r, u)
    m = mask & (jl > 1)
    if not m.any():
        return tdir, u
    idx = np.flatnonzero(m)
    V, VSQ, THK = V[idx], VSQ[idx], THK[idx]
    jl, tkj, delta, depth = jl[idx], tkj[idx], delta[idx], depth[idx]
    vjl, vsqjl = vjl[idx], vsqjl[idx]
    k = len(idx)
    lmax = jl.copy()
    tklmax = tkj.copy()
    vlmax = vjl.copy()
    for l in range(1, nl + 1):
        act = (l < jl) & (V[:, l] > vlmax)
        lmax = np.where(act, l, lmax)
        tklmax = np.where(act, THK[:, l], tklmax)
        vlmax = np.where(act, V[:, l], vlmax)
    tklmax = np.where(tklmax <= 0.05, 0.05, tklmax)
    ua = (vjl / vlmax) * delta / np.sqrt(delta**2 + depth**2)
    ub = (vjl / vlmax) * delta / np.sqrt(delta**2 + tklmax**2)
    uasq, ubsq = ua**2, ub**2
    ubsq = np.where(ubsq >= 1.0, 0.99999, ubsq)
    uasq = np.where(uasq >= 1.0, 0.99999, uasq)
    xa = tkj * ua / np.sqrt(1.0 - uasq)
    xb = np.where(lmax == jl, delta, tkj * ub / np.sqrt(1.0 - ubsq))
    above = np.arange(1, nl + 1)[None, :] < jl[:, None]  # l = 1..nl, l < jl
    ratio = vsqjl[:, None] / np.where(VSQ[:, 1:] > 0, VSQ[:, 1:], 1.0)
    thk = np.where(above, THK[:, 1:], 0.0)

    def sumlay(uu, uusq, r=slice(None)):
        """sum over the layers above of thk * u / sqrt(ratio - u^2), for the rays ``r``."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(above[r], thk[r] * uu[:, None] / np.sqrt(ratio[r] - uusq[:, None]), 0.0).sum(1)

    dela = xa + sumlay(ua, uasq)
    delb = xb + sumlay(ub, ubsq)
    x = np.zeros(k)
    dl = delta.copy()  # 'del' of the Fortran (kept from the last bisection step)
    live = np.ones(k, bool)
    for _ in range(25):
        # the rays still iterating only (row by row the same arithmetic as over all of them)
        if not live.any():
            break
        close = live & ((delb - dela) < 0.02)
        x[close] = 0.5 * (xa[close] + xb[close])
        live &= ~close
        L = np.flatnonzero(live)
        if not len(L):
            continue
        xaL, xbL, daL, dbL, deL = xa[L], xb[L], dela[L], delb[L], delta[L]
        with np.errstate(invalid="ignore", divide="ignore"):
            xL = xaL + (deL - daL) * (xbL - xaL) / (dbL - daL)
        x[L] = xL
        uuL = xL / np.sqrt(xL**2 + tkj[L] ** 2)
        dn = xL + sumlay(uuL, uuL**2, L)
        dl[L] = dn
        xtest = dn - deL
        done = np.abs(xtest) < 0.02
        live[L[done]] = False
        lo = ~done & (xtest < 0.0)
        hi = ~done & ~(xtest < 0.0)
        xa[L[lo]] = xL[lo]
        dela[L[lo]] = dn[lo]
        xb[L[hi]] = xL[hi]
        delb[L[hi]] = dn[hi]
    uu = x / np.sqrt(x**2 + tkj**2)
    usq = uu**2
    with np.errstate(invalid="ignore", divide="ignore"):
        td = np.sqrt(x**2 + tkj**2) / vjl + np.where(
            above, thk * vjl[:, None] / (VSQ[:, 1:] * np.sqrt(ratio - usq[:, None])), 0.0
        ).sum(1)
    td = td - (uu / vjl) * (dl - delta)
    tdir[idx] = td
    u[idx] = uu
    return tdir, u


# ----------------------------------------------------------------------------- input files
def _read_events(path: Path):
    rows = []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        tok = line.split()
        if not tok:
            raise HypoDDFormatError(
                f"{path}:{n}: empty line in the event file (hypoDD stops here: 'Format error in earthquake file')"
            )
        if len(tok) not in (10, 11):
            raise HypoDDFormatError(
                f"{path}:{n}: an event line has 10 values (DATE TIME LAT LON DEP MAG EH EZ RMS ID) "
                f"or 11 (+ FIX), got {len(tok)}: {line.strip()!r}"
            )
        try:
            date, tim = int(tok[0]), int(tok[1])
            vals = [float(t) for t in tok[2:9]]
            cusp = int(tok[9])
            fix = int(tok[10]) if len(tok) == 11 else 0
        except ValueError as exc:
            raise HypoDDFormatError(f"{path}:{n}: bad event line {line.strip()!r}: {exc}") from None
        if date < 10000000:
            date += 19000000
        rows.append((date, tim, *vals, cusp, fix))
    if not rows:
        raise HypoDDFormatError(f"{path}: no events")
    a = list(zip(*rows))
    ev = {
        "date": np.array(a[0], np.int64),
        "time": np.array(a[1], np.int64),
        "lat": f32(a[2]),
        "lon": f32(a[3]),
        "dep": f32(a[4]),
        "mag": f32(a[5]),
        "herr": f32(a[6]),
        "zerr": f32(a[7]),
        "res": f32(a[8]),
        "cusp": np.array(a[9], np.int64),
        "fix": np.array(a[10], np.int64),
    }
    ev["dep"] = f32(np.where(ev["dep"] < 0.01, 0.01, ev["dep"]))
    return ev


def _read_stations(path: Path, imod: int):
    lab, lat, lon, elv, mod = [], [], [], [], []
    j = None
    nneg = 0
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        tok = line.split()
        if j is None:
            j = len(tok)
        if not tok:
            raise HypoDDFormatError(f"{path}:{n}: empty line in the station file")
        try:
            if j == 4:
                e = float(tok[3]) / 1000.0
                if imod != 5 and e < 0 and e != -999:
                    e = 0.0
                    nneg += 1
                m = 0
            elif j == 3:
                e, m = 0.0, 0
            elif j == 5 and imod == 4:
                e = float(tok[3]) / 1000.0
                if imod != 5 and e < 0 and e != -999:
                    nneg += 1
                m = int(tok[4])
            else:
                raise HypoDDFormatError(
                    f"{path}:{n}: bad station line (hypoDD takes 'STA LAT LON [ELEV]'; 5 columns only "
                    f"with IMOD 4): {line.strip()!r}"
                )
            lab.append(tok[0][:7])
            lat.append(float(tok[1]))
            lon.append(float(tok[2]))
            elv.append(e)
            mod.append(m)
        except (ValueError, IndexError):
            raise HypoDDFormatError(
                f"{path}:{n}: bad station line {line.strip()!r} (the first line has {j} columns)"
            ) from None
    return {
        "lab": np.array(lab, dtype=object),
        "lat": f32(lat),
        "lon": f32(lon),
        "elv": f32(elv),
        "mod": np.array(mod, np.int64),
    }, nneg


@dataclass
class _DT:
    """One differential-time file: per datum pair id1, id2, station (code into ``sta_names``),
    dt (otc applied), qual, P or S (``isP``)."""

    c1: np.ndarray
    c2: np.ndarray
    sta_code: np.ndarray
    sta_names: list
    dt: np.ndarray
    qual: np.ndarray
    isP: np.ndarray
    n_no_otc: int = 0


def _read_dt(path: Path, cc: bool) -> _DT:
    """dt.cc / dt.ct as getdata.f reads them (single precision: dt = tt1 - tt2, dt - otc; station
    codes of at most 7 characters) through :func:`~quakescale.formats.hypodd.read_dt_columns`."""
    d = read_dt_columns(path, cc, dtype=np.float32, hypodd=True)
    codes: dict = {}  # a7: tokens that agree in their first 7 characters are one station, first-seen order
    remap = np.fromiter((codes.setdefault(x[:7], len(codes)) for x in d.sta_names), np.int32, len(d.sta_names))
    return _DT(
        d.id1,
        d.id2,
        remap[d.sta_code],
        list(codes),
        (d.t1 - d.t2).astype(float),
        d.qual.astype(float),
        d.is_p,
        d.n_no_otc,
    )


# ----------------------------------------------------------------------------- the project run
@dataclass
class ProjectResult:
    n_relocated: int
    n_clusters: int
    files: list
    log_path: Path
    reloc: list  # per cluster dicts of arrays (for tests/benchmarks)


class _Log:
    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, s: str = ""):
        self.lines.extend(s.split("\n"))


class _Project:
    def __init__(self, inp: HypoDDInp, out_dir: Path):
        self.inp = inp
        self.out = out_dir
        self.log = _Log()
        if inp.imod == 9:
            raise HypoDD21Error(
                f"{inp.path}: IMOD 9 (3-D model, simul2000 ray tracing) is not supported by the builtin "
                "relocator; use HypoDD 2.1b itself (relocate.backend: hypodd) or a 1-D model (IMOD 0/1/4/5)"
            )
        if inp.imod not in (0, 1, 4, 5, 6):
            raise HypoDD21Error(f"{inp.path}: IMOD {inp.imod} is not a HypoDD 2.1b model type (0, 1, 4, 5, 9)")
        if inp.idat not in (1, 2, 3):
            raise HypoDD21Error(
                f"{inp.path}: IDAT must be 1 (cc), 2 (catalog) or 3 (both), got {inp.idat}"
                + (" (IDAT 0, synthetics, is not supported)" if inp.idat == 0 else "")
            )
        if inp.ipha not in (1, 2, 3):
            raise HypoDD21Error(f"{inp.path}: IPHA must be 1 (P), 2 (S) or 3 (both), got {inp.ipha}")
        if inp.isolv not in (1, 2):
            raise HypoDD21Error(f"{inp.path}: ISOLV must be 1 (SVD) or 2 (LSQR), got {inp.isolv}")
        if inp.istart not in (1, 2):
            raise HypoDD21Error(
                f"{inp.path}: ISTART must be 1 (cluster centroid) or 2 (catalog locations), got {inp.istart}"
            )
        if not inp.sets:
            raise HypoDD21Error(f"{inp.path}: no iteration sets (NSET = 0)")

        # weighting sets as getinp(2): -9 means off (-999)
        def m9(v):
            return -999.0 if v == -9 else float(v)

        self.sets = [
            dict(
                niter=abs(int(s.niter)),
                wt_ccp=m9(s.wt_ccp),
                wt_ccs=m9(s.wt_ccs),
                maxres_cc=m9(s.maxres_cc),
                maxdcc=m9(s.maxdist_cc_km),
                wt_ctp=m9(s.wt_ctp),
                wt_cts=m9(s.wt_cts),
                maxres_ct=m9(s.maxres_ct),
                maxdct=m9(s.maxdist_ct_km),
                damp=float(s.damp),
            )
            for s in inp.sets
        ]
        self.aiter0 = np.cumsum([s["niter"] for s in self.sets]).astype(np.int64)
        # model
        if inp.imod in (0, 1, 5, 6):
            nl = len(inp.top_km)
            if nl == 0 or len(inp.vp_kms) < nl:
                raise HypoDD21Error(
                    f"{inp.path}: the velocity model needs one TOP and one VEL per layer "
                    f"(got {len(inp.top_km)} tops, {len(inp.vp_kms)} velocities)"
                )
            self.mod_top = np.asarray(inp.top_km[:nl], float)
            self.mod_v = np.asarray(inp.vp_kms[:nl], float)
            self.mod_ratio = np.asarray(inp.layer_ratios()[:nl], float)
            if np.any(np.diff(self.mod_top) < 0):
                raise HypoDD21Error(f"{inp.path}: layer tops must increase with depth, got {list(self.mod_top)}")
            if np.any(self.mod_v <= 0) or np.any(self.mod_ratio <= 0):
                raise HypoDD21Error(f"{inp.path}: layer velocities and Vp/Vs ratios must be positive")
        else:
            self.mod_top = self.mod_v = self.mod_ratio = np.zeros(0)
        self.models_1d = None
        if inp.imod == 4:
            self.models_1d = self._read_mod1d()
        self.cache: dict = {}

    # ---------------------------------------------------------------- files
    def path(self, name: str) -> Path:
        p = self.inp.resolve(name)
        assert p is not None
        return p

    def _read_mod1d(self):
        """IMOD 4 model file (partials_1dmm.f): blocks of 'MODEL_ID NLAY' then NLAY lines 'TOP VP VS'."""
        f = self.path(self.inp.fn_mod1d)
        if not f.exists():
            raise FileNotFoundError(
                f"{self.inp.path}: station-specific model file {self.inp.fn_mod1d!r} (IMOD 4) not found ({f})"
            )
        lines = [(n, ln.split()) for n, ln in enumerate(f.read_text().splitlines(), 1) if ln.split()]
        models = {}
        i = 0
        while i < len(lines):
            n, tok = lines[i]
            try:
                mid, nl = int(tok[0]), int(tok[1])
                rows = [[float(v) for v in lines[i + 1 + k][1][:3]] for k in range(nl)]
                if nl < 1 or any(len(r) < 3 for r in rows):
                    raise ValueError
            except (ValueError, IndexError):
                raise HypoDDFormatError(
                    f"{f}:{n}: expected a model block 'MODEL_ID NLAY' and NLAY lines 'TOP VP VS' "
                    f"(IMOD 4), got {' '.join(tok)!r}"
                ) from None
            r = np.array(rows)
            models[mid] = (r[:, 0], r[:, 1], r[:, 2])
            i += 1 + nl
        if not models:
            raise HypoDDFormatError(f"{f}: no models (IMOD 4)")
        self.log(f"Station spec 1D models read in = {len(models):4d}")
        return models

    def _events(self):
        if "ev" not in self.cache:
            f = self.path(self.inp.fn_eve)
            if not f.exists():
                raise FileNotFoundError(f"{self.inp.path}: event file {self.inp.fn_eve!r} not found ({f})")
            self.cache["ev"] = _read_events(f)
        return self.cache["ev"]

    def _stations(self):
        if "sta" not in self.cache:
            f = self.path(self.inp.fn_sta)
            if not f.exists():
                raise FileNotFoundError(f"{self.inp.path}: station file {self.inp.fn_sta!r} not found ({f})")
            self.cache["sta"] = _read_stations(f, self.inp.imod)
        return self.cache["sta"]

    def _dtfile(self, cc: bool):
        key = "cc" if cc else "ct"
        if key not in self.cache:
            name = self.inp.fn_cc if cc else self.inp.fn_ct
            f = self.path(name)
            if not f.exists():
                raise FileNotFoundError(
                    f"{self.inp.path}: IDAT={self.inp.idat} needs the "
                    f"{'cross-correlation' if cc else 'catalog'} file {name!r} ({f})"
                )
            self.cache[key] = _read_dt(f, cc)
        return self.cache[key]

    # ---------------------------------------------------------------- getdata
    def getdata(self, icusp):
        inp, log = self.inp, self.log
        log(f"\n~ Reading data ...   {_fortran_now()}")
        E = self._events()
        sel = np.ones(len(E["cusp"]), bool)
        if len(icusp) > 1:
            sel = np.isin(E["cusp"], np.asarray(icusp, np.int64))
        ev = {k: v[sel] for k, v in E.items()}
        nev = len(ev["cusp"])
        if len(icusp) > 0 and len(icusp) != nev:
            u, c = np.unique(ev["cusp"], return_counts=True)
            if (c > 1).any():
                raise HypoDD21Error(
                    f"{self.path(inp.fn_eve)}: event id(s) {u[c > 1][:10].tolist()} listed more than once; "
                    "event ids must be unique"
                )
        if nev == 0:
            raise HypoDD21Error(f"{self.path(inp.fn_eve)}: no events selected")
        clat, clon = f32sum_mean(ev["lat"]), f32sum_mean(ev["lon"])
        S, nneg = self._stations()
        sdist, _ = delaz(clat, clon, S["lat"], S["lon"])
        ks = sdist <= inp.maxdist_km
        st = {k: v[ks] for k, v in S.items()}
        log(f"# stations total = {len(S['lab']):6d}\n# stations < maxdist = {int(ks.sum()):6d}")
        log(f"# stations w/ neg. elevation (set to 0) ={nneg:5d}")
        lab, cnt = np.unique(st["lab"].astype(str), return_counts=True)
        if (cnt > 1).any():
            raise HypoDD21Error(f"{self.path(inp.fn_sta)}: station {lab[cnt > 1][0]!r} is listed twice")
        staidx = {s: i for i, s in enumerate(st["lab"])}
        cusp_set = ev["cusp"]
        order = np.argsort(cusp_set, kind="stable")
        scusp = cusp_set[order]

        def pos(ids):
            k = np.searchsorted(scusp, ids)
            k = np.clip(k, 0, len(scusp) - 1)
            ok = scusp[k] == ids
            return np.where(ok, order[k], -1)

        parts = []
        counts = {}
        for cc in (True, False):
            use = (inp.idat in (1, 3)) if cc else (inp.idat in (2, 3))
            name = inp.fn_cc if cc else inp.fn_ct
            if not use or len(name.strip()) <= 1:
                continue
            D = self._dtfile(cc)
            k1, k2 = pos(D.c1), pos(D.c2)
            keep = (k1 >= 0) & (k2 >= 0)
            i1, i2 = np.where(keep, k1, 0), np.where(keep, k2, 0)
            dlat = ev["lat"][i1] - ev["lat"][i2]
            dlon = ev["lon"][i1] - ev["lon"][i2]
            offs = np.sqrt(
                (dlat * 111) ** 2
                + (dlon * (np.cos(ev["lat"][i1] * PI / 180) * 111)) ** 2
                + (ev["dep"][i1] - ev["dep"][i2]) ** 2
            )
            del k1, k2, i1, i2, dlat, dlon  # large projects: the temporaries go before the next ones come
            maxsep = self.sets[0]["maxdcc" if cc else "maxdct"]
            if maxsep > 0:
                keep &= ~(offs > maxsep)
            name_pos = np.array([staidx.get(nm, -1) for nm in D.sta_names], np.int64)
            ista = name_pos[D.sta_code] if len(D.sta_code) else np.zeros(0, np.int64)
            keep &= ista >= 0
            isP = D.isP
            if inp.ipha == 1:
                keep &= isP
            elif inp.ipha == 2:
                keep &= ~isP
            idx = np.where(isP, 1, 2) + (0 if cc else 2)
            w = np.flatnonzero(keep)
            parts.append(
                dict(c1=D.c1[w], c2=D.c2[w], ista=ista[w], dt=D.dt[w], qual=D.qual[w], idx=idx[w], offs=offs[w])
            )
            if cc:
                counts["ccp"], counts["ccs"] = int((idx[w] == 1).sum()), int((idx[w] == 2).sum())
                if inp.ipha != 2:
                    log(
                        f"# cross corr P dtimes = {counts['ccp']:7d} (no org. time corr. for{D.n_no_otc:7d} event "
                        f"pairs)"
                    )
                if inp.ipha != 1:
                    log(
                        f"# cross corr S dtimes = {counts['ccs']:7d} (no org. time corr. for{D.n_no_otc:7d} event "
                        f"pairs)"
                    )
            else:
                counts["ctp"], counts["cts"] = int((idx[w] == 3).sum()), int((idx[w] == 4).sum())
                if inp.ipha != 2:
                    log(f"# catalog P dtimes = {counts['ctp']:7d}")
                if inp.ipha != 1:
                    log(f"# catalog S dtimes = {counts['cts']:7d}")
        keep = w = ista = idx = offs = None  # the per-file temporaries: released
        if not parts:
            raise HypoDD21Error(
                f"{inp.path}: no differential-time file to read (IDAT {inp.idat}, cc {inp.fn_cc!r}, ct {inp.fn_ct!r})"
            )
        dt = parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        del parts
        ndt = len(dt["dt"])
        log(f"# dtimes total = {ndt:8d}")
        if ndt == 0:
            raise HypoDD21Error(
                f"{inp.path}: no differential times left after selection (events, stations within "
                f"{inp.maxdist_km:g} km, phases); nothing to relocate"
            )
        # pair-station distance and azimuthal gap (MINDIST/MAXDIST/MAXGAP)
        if not (inp.maxgap_deg < 0 and inp.minds_km < 0 and inp.maxds_km < 0):
            maxgap = 370.0 if inp.maxgap_deg < 0 else inp.maxgap_deg
            minds = 0.0 if inp.minds_km < 0 else inp.minds_km
            maxds = 50000.0 if inp.maxds_km < 0 else inp.maxds_km
            sw = dt["c1"] > dt["c2"]
            dt["c1"], dt["c2"] = np.where(sw, dt["c2"], dt["c1"]), np.where(sw, dt["c1"], dt["c2"])
            dt["dt"] = np.where(sw, -dt["dt"], dt["dt"])
            e1 = pos(dt["c1"])
            dist, az = delaz(ev["lat"][e1], ev["lon"][e1], st["lat"][dt["ista"]], st["lon"][dt["ista"]], 6378.140)
            qual = dt["qual"]
            pos_q = qual > 0
            inr = (dist >= minds) & (dist <= maxds)
            keep = ~pos_q | inr  # out-of-range data of a pair are dropped (qual -9)
            # gap per pair over the in-range data with positive quality
            key = dt["c1"] * (int(scusp.max()) + 1) + dt["c2"]
            cand = pos_q & inr
            gapbad = np.zeros(ndt, bool)
            if cand.any():
                k_c = key[cand]
                a_c = np.array([nint(a) for a in az[cand]], np.int64)
                o = np.lexsort((a_c, k_c))
                ks_, as_ = k_c[o], a_c[o]
                brk = np.flatnonzero(np.r_[True, ks_[1:] != ks_[:-1]])
                ends = np.r_[brk[1:], len(ks_)]
                badkeys = []
                for b0, b1 in zip(brk, ends):
                    aa = as_[b0:b1]
                    g = np.diff(np.r_[aa, aa[0] + 360])
                    if len(g) and g.max() > maxgap:
                        badkeys.append(ks_[b0])
                if badkeys:
                    gapbad = cand & np.isin(key, np.asarray(badkeys, np.int64))
            keep &= ~gapbad
            for k in dt:
                dt[k] = dt[k][keep]
            dt["qual"] = np.abs(dt["qual"])
            n2 = len(dt["dt"])
            log(f"    after gap/distance check: {n2:8d} ({nint(n2 * 100.0 / ndt):3d}%)")
            log("    nccp,nccs,nctp,ncts: " + " ".join(f"{int((dt['idx'] == i).sum()):11d}" for i in (1, 2, 3, 4)))
            ndt = n2
            if ndt == 0:
                raise HypoDD21Error(f"{inp.path}: no differential times left after the MINDIST/MAXDIST/MAXGAP check")
        # events with data (file order), stations with data (file order)
        used = np.isin(ev["cusp"], np.r_[dt["c1"], dt["c2"]])
        ev = {k: v[used] for k, v in ev.items()}
        log(f"# events after dtime match = {len(ev['cusp']):10d}")
        sused = np.zeros(len(st["lab"]), bool)
        sused[dt["ista"]] = True
        newpos = np.cumsum(sused) - 1
        st = {k: v[sused] for k, v in st.items()}
        dt["ista"] = newpos[dt["ista"]]
        log(f"# stations = {len(st['lab']):6d}")
        o = np.argsort(ev["cusp"], kind="stable")
        sc = ev["cusp"][o]
        dt["ic1"] = o[np.searchsorted(sc, dt["c1"])]
        dt["ic2"] = o[np.searchsorted(sc, dt["c2"])]
        return ev, st, dt

    # ---------------------------------------------------------------- cluster1
    def cluster(self, ev, dt):
        inp, log = self.inp, self.log
        log("\n~ clustering ...  ")
        nev = len(ev["cusp"])
        icusp = np.sort(ev["cusp"])
        j = np.searchsorted(icusp, dt["c1"])
        k = np.searchsorted(icusp, dt["c2"])
        a, b = np.maximum(j, k), np.minimum(j, k)
        minobs_cc = 0 if inp.idat in (0, 2) else inp.minobs_cc
        minobs_ct = 0 if inp.idat in (0, 1) else inp.minobs_ct
        key = a.astype(np.int64) * nev + b
        keys, counts = np.unique(key, return_counts=True)
        linked = keys[(counts >= (minobs_cc + minobs_ct)) & (keys // nev != keys % nev)]
        la, lb = linked // nev, linked % nev
        # union-find of the linked pairs; component order = first link in the scan (i asc, j asc)
        parent = np.arange(nev)

        def find(x):
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for x, y in zip(la.tolist(), lb.tolist()):
            rx, ry = find(x), find(y)
            if rx != ry:
                parent[max(rx, ry)] = min(rx, ry)
        roots = np.array([find(i) for i in range(nev)])
        has = np.zeros(nev, bool)
        has[la] = True
        has[lb] = True
        first = {}
        for x in la.tolist():  # linked is sorted by (i, j): the first pair of a component in hypoDD's scan
            r = roots[x]
            if r not in first:
                first[r] = len(first)
        comps = sorted(first, key=lambda r: first[r])
        clusters = [icusp[(roots == r) & has] for r in comps]
        noclust = icusp[~has]
        # hypoDD's ordering: for i < j, swap when size(i) <= size(j)
        nc = len(clusters)
        for i in range(nc - 1):
            for jj in range(i + 1, nc):
                if len(clusters[i]) <= len(clusters[jj]):
                    clusters[i], clusters[jj] = clusters[jj], clusters[i]
        log(f"# clustered events ={sum(len(c) for c in clusters):5d}")
        log(f"# isolated events ={len(noclust):5d}")
        for r0 in range(0, len(noclust), 8):
            log("".join(f"{int(c):9d}" for c in noclust[r0 : r0 + 8]))
        log(f"# clusters ={nc:5d}  for min. number of links set to {minobs_ct + minobs_cc:5d}")
        for i, c in enumerate(clusters, 1):
            log(f"Cluster{i:5d}: {len(c):5d} events")
            for r0 in range(0, len(c), 8):
                log("".join(f"{int(x):9d}  " for x in c[r0 : r0 + 8]))
        log()
        if nc == 0:
            raise HypoDD21Error(
                f"{inp.path}: no cluster: no event pair has OBSCC+OBSCT = {minobs_cc + minobs_ct} or more observations"
            )
        return clusters

    # ---------------------------------------------------------------- partials
    def partials(self, src_lat, src_lon, src_dep, st, need=None):
        """Travel times and slowness components (nsta, nsrc) of P and S, as partials.f."""
        imod = self.inp.imod
        nsta, nsrc = len(st["lab"]), len(src_lat)
        # layer-boundary nudge (partials.f modifies src_dep in place)
        if imod in (0, 1, 6):
            for t in self.mod_top:
                src_dep[np.abs(src_dep - t) < 0.0001] -= 0.001
        dist, az = delaz(src_lat[None, :], src_lon[None, :], st["lat"][:, None], st["lon"][:, None], 6378.140)
        dist = np.broadcast_to(dist, (nsta, nsrc))
        az = np.broadcast_to(az, (nsta, nsrc))
        if imod == 5:
            return self._partials_sr(src_dep, st, dist, az)
        out = {}
        if imod == 4:
            ttp = np.zeros((nsta, nsrc))
            tts = np.zeros((nsta, nsrc))
            ainp = np.zeros((nsta, nsrc))
            ains = np.zeros((nsta, nsrc))
            vsrc_p = np.zeros((nsta, nsrc))
            vsrc_s = np.zeros((nsta, nsrc))
            for i in range(nsta):
                mid = int(st["mod"][i])
                if mid not in self.models_1d:
                    if not getattr(self, "_warned_mod", None):
                        self.log(f" No model found for model ID {mid:11d}. Default model (#1) chosen.")
                    st["mod"][i] = mid = 1
                    if 1 not in self.models_1d:
                        raise HypoDD21Error(
                            f"{self.inp.fn_mod1d}: no model {int(st['mod'][i])} for station {st['lab'][i]} "
                            "and no default model 1 (IMOD 4)"
                        )
                top, vp, vs = self.models_1d[mid]
                for t in top:  # partials_1dmm.f nudges src_dep off each model's boundaries, station by station
                    src_dep[np.abs(src_dep - t) < 0.0001] -= 0.001
                r = self._rays(
                    top,
                    vp,
                    vs,
                    dist[i : i + 1],
                    src_dep,
                    st["elv"][i : i + 1],
                    None if need is None else need[i : i + 1],
                )
                ttp[i], tts[i], ainp[i], ains[i], vsrc_p[i], vsrc_s[i] = (x[0] for x in r)
        else:
            vs = self.mod_v / self.mod_ratio
            ttp, tts, ainp, ains, vsrc_p, vsrc_s = self._rays(
                self.mod_top, self.mod_v, vs, dist, src_dep, st["elv"], need
            )
        deg = PI / 180.0
        out["ttp"], out["tts"] = ttp, tts
        out["zp"] = np.cos(ainp * deg) / vsrc_p
        out["zs"] = np.cos(ains * deg) / vsrc_s
        sinp, sins = np.sin(ainp * deg), np.sin(ains * deg)  # each factor once (the same values)
        c90, c0 = np.cos((az - 90) * deg), np.cos(az * deg)
        out["xp"] = sinp * c90 / vsrc_p
        out["xs"] = sins * c90 / vsrc_s
        out["yp"] = sinp * c0 / vsrc_p
        out["ys"] = sins * c0 / vsrc_s
        out["dist"], out["az"], out["ainp"], out["ains"] = dist, az, ainp, ains
        return out

    def _rays(self, top, vp, vs, dist, src_dep, elv, need=None):
        """ttime for P and S of every (station, source) -- or of those in ``need`` (others 0)."""
        nsta, nsrc = dist.shape
        nl = len(top)
        ue, ie = np.unique(elv, return_inverse=True)
        topadj = np.empty((len(ue), nl))
        topadj[:, 0] = 0.0
        topadj[:, 1:] = top[None, 1:] + ue[:, None]
        sel = np.arange(nsta * nsrc) if need is None else np.flatnonzero(np.asarray(need).ravel())
        mi = ie.ravel()[sel // nsrc]
        depth = src_dep[sel % nsrc] + elv[sel // nsrc]
        d = np.ascontiguousarray(dist).ravel()[sel]
        out = [np.zeros(nsta * nsrc) for _ in range(4)]
        tp, ap = ttime_layered(d, depth, vp, topadj, mi)
        ratio = vp / vs
        if np.ptp(ratio) <= 1e-12 * ratio[0]:
            ts, as_ = tp * ratio[0], ap  # one Vp/Vs: the S rays are the P rays, times scaled
        else:
            ts, as_ = ttime_layered(d, depth, vs, topadj, mi)
        for o, v in zip(out, (tp, ts, ap, as_)):
            o[sel] = v
        ttp, tts, ainp, ains = (o.reshape(nsta, nsrc) for o in out)
        k = (top[None, :] < src_dep[:, None]).sum(1)  # partials.f: first k with src_dep <= top(k); v(k-1)
        k = np.maximum(k, 1) - 1
        vsp = np.broadcast_to(vp[k][None, :], (nsta, nsrc))
        vss = np.broadcast_to(vs[k][None, :], (nsta, nsrc))
        return ttp, tts, ainp, ains, vsp, vss

    def _partials_sr(self, src_dep, st, dist, az):
        """IMOD 5 (partials_1dsr.f): straight rays in a constant-velocity half-space, stations at their elevation."""
        v = float(self.mod_v[0])
        vs = v / float(self.mod_ratio[0])
        z = src_dep[None, :] + st["elv"][:, None]
        r = np.sqrt(dist**2 + z**2)
        deg = PI / 180.0
        with np.errstate(invalid="ignore", divide="ignore"):
            ain = np.where(r > 0, 180.0 - np.arcsin(np.clip(dist / r, -1, 1)) * 57.2958, 90.0)
        out = {"ttp": r / v, "tts": r / vs, "ainp": ain, "ains": ain, "dist": dist, "az": az}
        out["zp"] = np.cos(ain * deg) / v
        out["zs"] = np.cos(ain * deg) / vs
        out["xp"] = np.sin(ain * deg) * np.cos((az - 90) * deg) / v
        out["xs"] = np.sin(ain * deg) * np.cos((az - 90) * deg) / vs
        out["yp"] = np.sin(ain * deg) * np.cos(az * deg) / v
        out["ys"] = np.sin(ain * deg) * np.cos(az * deg) / vs
        return out

    # ---------------------------------------------------------------- the run
    def run(self) -> ProjectResult:
        inp, log = self.inp, self.log
        t_start = _time.perf_counter()
        log(f"{'starting hypoDD (v2.1beta - 06/15/2016)...':45s}{_fortran_now():25s}  [QuakeScale port of HypoDD 2.1b]")
        self._log_input()
        ev, st, dt = self.getdata(inp.ids)
        no_clust = (
            (inp.idat == 1 and inp.minobs_cc == 0)
            or (inp.idat == 2 and inp.minobs_ct == 0)
            or (inp.idat == 3 and inp.minobs_ct + inp.minobs_cc == 0)
        )
        if no_clust:
            clusters = [ev["cusp"]]
            log("\nno clustering performed.")
        else:
            clusters = self.cluster(ev, dt)
        nclust = len(clusters)
        if inp.cid != 0:
            if inp.cid < 0 or inp.cid > nclust:
                raise HypoDD21Error(f"{inp.path}: CID {inp.cid} is not a cluster number (1..{nclust})")
            todo = [inp.cid]
        else:
            todo = list(range(1, nclust + 1))
        self.f_loc, self.f_reloc, self.f_sta = [], [], []
        self.f_res = None
        self.src_lines = None
        results = []
        for icl in todo:
            log(f"\nRELOCATION OF CLUSTER:{icl:2d}     {_fortran_now():25s}\n----------------------")
            if not ((nclust == 1 and len(clusters[0]) == len(ev["cusp"])) or no_clust):
                cev, cst, cdt = self.getdata(list(clusters[icl - 1]))
                r = self._relocate_cluster(
                    icl,
                    {k: v.copy() for k, v in cev.items()},
                    {k: v.copy() for k, v in cst.items()},
                    {k: v.copy() for k, v in cdt.items()},
                )
                del cev, cst, cdt
            else:  # the one cluster is all the data: handed over as it is (no copies; nothing reads it after)
                args = (ev, st, dt)
                ev = st = dt = None
                self.cache.pop("cc", None)  # the files' columns: getdata is not called again
                self.cache.pop("ct", None)
                r = self._relocate_cluster(icl, *args)
                del args
            if r is not None:
                results.append(r)
        files = self._write_outputs()
        log(f"{'Program hypoDD finished. ':>28s}{_fortran_now():25s}")
        logp = self.out / "hypoDD.log"
        logp.write_text("\n".join(self.log.lines) + "\n")
        files.append(logp)
        self.seconds = _time.perf_counter() - t_start
        return ProjectResult(sum(len(r["cusp"]) for r in results), nclust, files, logp, results)

    def _log_input(self):
        inp, log = self.inp, self.log
        log(f"Input parameters: {inp.path.name} (hypoDD{'2.0' if inp.version == 2 else '1.x'} format)")
        log(
            f"INPUT FILES:\n cross dtime data: {inp.fn_cc}\n catalog dtime data: {inp.fn_ct}\n events: {inp.fn_eve}\n"
            f" stations: {inp.fn_sta}"
        )
        log(
            f"OUTPUT FILES:\n initial locations: {inp.fn_loc}\n relocated events: {inp.fn_reloc}\n event pair "
            f"residuals: "
            f"{inp.fn_res}\n station residuals: {inp.fn_stares}\n source parameters: {inp.fn_srcpar}"
        )
        log(
            f"\n  IDATA= {inp.idat:2d}  IPHASE= {inp.ipha:2d}  MAXDIST (from cluster)= {ff(inp.maxdist_km, 9, 0)}\n"
            f"  MINOBS_CC= {inp.minobs_cc:3d}  MINOBS_CT= {inp.minobs_ct:3d}\n"
            f"  MINDIST (from pair)={ff(inp.minds_km, 7, 0)}  MAXDIST (from pair)= {ff(inp.maxds_km, 9, 0)}  "
            f"MAXGAP= {ff(inp.maxgap_deg, 6, 0)}\n  ISTART= {inp.istart:1d}  ISOLV= {inp.isolv:1d}  IAQ= {inp.iaq:1d}  "
        )
        a0 = 0
        for s, a in zip(self.sets, self.aiter0):
            log(
                f"  ITER {a0 + 1:3d}-{int(a):3d}: DAMP= {ff(s['damp'], 7, 1)}\n"
                f"    WT_CCP= {ff(s['wt_ccp'], 7, 2)}  WT_CCS= {ff(s['wt_ccs'], 7, 2)}  MAXR_CC= "
                f"{ff(s['maxres_cc'], 7, 2)}  "
                f"MAXD_CC= {ff(s['maxdcc'], 7, 2)}  \n"
                f"    WT_CTP= {ff(s['wt_ctp'], 7, 2)}  WT_CTS= {ff(s['wt_cts'], 7, 2)}  MAXR_CT= "
                f"{ff(s['maxres_ct'], 7, 2)}  "
                f"MAXD_CT= {ff(s['maxdct'], 7, 2)}"
            )
            a0 = int(a)
        if inp.imod in (0, 1, 5, 6):
            log(
                "Use local layered 1D model."
                if inp.imod != 5
                else "Use constant velocity model (only first layer used)."
            )
            log(f"  MOD_NL= {len(self.mod_top):2d}\n    MOD_TOP    MOD_VP   MOD_VS   MOD_RATIO")
            for t, v, r in zip(self.mod_top, self.mod_v, self.mod_ratio):
                log("  " + ff(t, 9, 3) + ff(v, 9, 3) + ff(v / r, 9, 3) + ff(r, 9, 3))
        elif inp.imod == 4:
            log(f"Use station specific 1D models from file {inp.fn_mod1d}")
        log("Relocate all clusters" if inp.cid == 0 else f"Relocate cluster number {inp.cid:4d}")
        log("Relocate all events" if not inp.ids else f"Relocate {len(inp.ids):6d} events")
        log("Keep air quakes." if inp.iaq == 0 else "Remove air quakes.")

    # ---------------------------------------------------------------- one cluster
    def _relocate_cluster(self, icl, ev, st, dt):
        inp, log = self.inp, self.log
        nevold = nev = len(ev["cusp"])
        nccold = int((dt["idx"] <= 2).sum())
        nctold = int((dt["idx"] >= 3).sum())
        ncc, nct = nccold, nctold
        sdc0_lat, sdc0_lon, sdc0_dep = f32sum_mean(ev["lat"]), f32sum_mean(ev["lon"]), f32sum_mean(ev["dep"])
        log(f"Cluster centroid at: {ff(sdc0_lat, 10, 6)}  {ff(sdc0_lon, 11, 6)}  {ff(sdc0_dep, 9, 6)}")
        log(f"Rotation of coordinate system: {ff(0.0, 10, 6)}")
        sdc = SDC(sdc0_lat, sdc0_lon, 0.0)
        x, y = sdc.xy(ev["lat"], ev["lon"])
        ev["x"], ev["y"], ev["z"] = x * 1000.0, y * 1000.0, (ev["dep"] - sdc0_dep) * 1000.0
        log(f"# events:{nev:5d}")
        for i in range(nev):
            self.f_loc.append(
                f"{fi(ev['cusp'][i], 9)} {ff(ev['lat'][i], 10, 6)} {ff(ev['lon'][i], 11, 6)} {ff(ev['dep'][i], 9, 3)} "
                f"{ff(ev['x'][i], 10, 1)} {ff(ev['y'][i], 10, 1)} {ff(ev['z'][i], 10, 1)} "
                f"{ff(ev['herr'][i] * 1000, 8, 1)} "
                f"{ff(ev['herr'][i] * 1000, 8, 1)} {ff(ev['zerr'][i] * 1000, 8, 1)} "
                f"{_datestr(ev['date'][i], ev['time'][i], 5, 2)} "
                f"{ff(ev['mag'][i], 5, 2)} {fi(icl, 3)}"
            )
        # trialsrc
        if inp.istart == 1:
            nsrc = 1
            src = {
                "cusp": ev["cusp"].copy(),
                "lat": np.full(nev, sdc0_lat),
                "lon": np.full(nev, sdc0_lon),
                "dep": np.full(nev, sdc0_dep),
                "x": np.zeros(nev),
                "y": np.zeros(nev),
                "z": np.zeros(nev),
                "t": np.zeros(nev),
            }
        else:
            nsrc = nev
            src = {
                "cusp": ev["cusp"].copy(),
                "lat": ev["lat"].copy(),
                "lon": ev["lon"].copy(),
                "dep": ev["dep"].copy(),
                "x": ev["x"].copy(),
                "y": ev["y"].copy(),
                "z": ev["z"].copy(),
                "t": np.zeros(nev),
            }
        for k in ("x", "y", "z", "t"):
            src[k + "0"] = src[k].copy()
        src["ex"] = np.zeros(nev)
        src["ey"] = np.zeros(nev)
        src["ez"] = np.zeros(nev)
        src["et"] = np.zeros(nev)
        log(f"# initial trial sources:{nsrc:6d}")
        aiter = self.aiter0.copy()
        maxiter = int(aiter[-1])
        kiter = jiter = mbad = 0
        amcusp = np.zeros(0, np.int64)
        rms = dict(cc=0.0, ct=0.0, cc0=0.0, ct0=0.0, ccold=0.0, ctold=0.0, cc0old=0.0, ct0old=0.0)
        avs = dict(ex=0.0, ey=0.0, ez=0.0, et=0.0, dx=0.0, dy=0.0, dz=0.0, dt=0.0)
        acond = 0.0
        it = 1
        tmpr1 = tmpr2 = 0.0
        xav = yav = zav = 0.0
        while True:
            log(f"\n===ITERATION {it - jiter:3d} ({it:3d}) {_fortran_now():25s}")
            iset = int(np.searchsorted(aiter, it, side="left"))
            s = self.sets[min(iset, len(self.sets) - 1)]
            log(
                f"\nWeighting parameters for this iteration:\n"
                f"  wt_ccp= {ff(s['wt_ccp'], 7, 4)}  wt_ccs= {ff(s['wt_ccs'], 7, 4)}  maxr_cc= "
                f"{ff(s['maxres_cc'], 7, 4)}  "
                f"maxd_cc= {ff(s['maxdcc'], 7, 2)}  \n"
                f"  wt_ctp= {ff(s['wt_ctp'], 7, 4)}  wt_cts= {ff(s['wt_cts'], 7, 4)}  maxr_ct= "
                f"{ff(s['maxres_ct'], 7, 4)}  "
                f"maxd_ct= {ff(s['maxdct'], 7, 2)}\n  damp= {ff(s['damp'], 5, 1)}"
            )
            log(f"\n~ getting partials for {len(st['lab']):5d} stations and {nsrc:5d} source(s) ...")
            sl = slice(0, nsrc)
            need = None
            if it < maxiter and nsrc > 1:  # only the rays the data use; all of them (.src) in the last iteration
                need = np.zeros((len(st["lab"]), nsrc), bool)
                need[dt["ista"], dt["ic1"]] = True
                need[dt["ista"], dt["ic2"]] = True
            P = self.partials(src["lat"][sl], src["lon"][sl], src["dep"][sl], st, need)
            self.src_lines = (src["cusp"][sl].copy(), src["lat"][sl].copy(), src["lon"][sl].copy(), st, P)
            # dtres
            log("~ getting residual vector...")
            isS = (dt["idx"] == 2) | (dt["idx"] == 4)
            if nsrc == 1:
                dt["res"] = dt["dt"].copy()
                dt["cal"] = np.zeros(len(dt["dt"]))
            else:
                tt = np.where(isS[None, :], 0, 0)  # placeholder for shape clarity
                del tt
                T = (
                    np.where(isS, P["tts"][dt["ista"], dt["ic1"]], P["ttp"][dt["ista"], dt["ic1"]])
                    - src["t"][dt["ic1"]] / 1000
                )
                T2 = (
                    np.where(isS, P["tts"][dt["ista"], dt["ic2"]], P["ttp"][dt["ista"], dt["ic2"]])
                    - src["t"][dt["ic2"]] / 1000
                )
                dt["cal"] = T - T2
                dt["res"] = dt["dt"] - dt["cal"]
            # weighting
            ineg = self._weighting(dt, s, amcusp if mbad > 0 else np.zeros(0, np.int64))
            if ineg:
                kiter += 1
                keep = dt["wt"] >= MINWGHT
                log("skipping data...")
                n_before = len(keep)
                for k in dt:
                    dt[k] = dt[k][keep]
                ncc, nct = int((dt["idx"] <= 2).sum()), int((dt["idx"] >= 3).sum())
                log(f"# obs = {len(dt['dt']):9d} ({ff(len(dt['dt']) * 100.0 / max(n_before, 1), 5, 1)}%)")
                used = np.zeros(nev, bool)
                used[dt["ic1"]] = True
                used[dt["ic2"]] = True
                if not used.all():
                    newpos = np.cumsum(used) - 1
                    for k in ev:
                        ev[k] = ev[k][used]
                    if nsrc != 1:
                        for k in src:
                            src[k] = src[k][used]
                        nsrc = int(used.sum())
                    else:
                        for k in src:
                            src[k] = src[k][used]
                    dt["ic1"], dt["ic2"] = newpos[dt["ic1"]], newpos[dt["ic2"]]
                    nev = int(used.sum())
                    for k in ("ttp", "tts", "xp", "yp", "zp", "xs", "ys", "zs"):
                        if nsrc != 1:
                            P[k] = P[k][:, used]
                log(f"# events = {nev:9d}")
                sused = np.zeros(len(st["lab"]), bool)
                sused[dt["ista"]] = True
                if not sused.all():
                    newpos = np.cumsum(sused) - 1
                    st = {k: v[sused] for k, v in st.items()}
                    dt["ista"] = newpos[dt["ista"]]
                    for k in ("ttp", "tts", "xp", "yp", "zp", "xs", "ys", "zs"):
                        P[k] = P[k][sused]
                log(f"# stations = {len(st['lab']):9d}")
                if nev < 2:
                    log(" Cluster has less than 2 events.")
                    return None
            else:
                log("no data skipped.")
            if it == 1:
                self._resstat(dt, nev, rms, initial=True)
            sol = self._lsfit(dt, nev, nsrc, ev, P, s["damp"], rms)
            if sol is None:
                return None
            dx, dy, dz, dtt, ex, ey, ez, et, acond = sol
            for k, v in (("ex", ex), ("ey", ey), ("ez", ez), ("et", et)):
                avs[k + "old"] = avs[k]
                avs[k] = float(np.mean(v))
            for k, v in (("dx", dx), ("dy", dy), ("dz", dz), ("dt", dtt)):
                avs[k] = float(np.mean(np.abs(v)))
            self._log_location_summary(avs, it, ex, ey, ez, et)
            if inp.isolv == 1 and nsrc == 1:
                pass
            nsrc_eff = nev if nsrc == 1 and inp.isolv == 2 else nsrc
            # air quakes
            aq = np.flatnonzero(src["dep"][:nsrc_eff] + dz[:nsrc_eff] / 1000 < 0)
            for i in aq:
                log(f">>>Warning: negative depth - {int(ev['cusp'][i]):12d}")
            dz = dz.copy()
            dz[aq] = 0.0
            dz[ev["fix"] == -1] = 0.0
            amcusp = ev["cusp"][aq].copy()
            mbad = len(aq)
            if inp.iaq == 0:
                mbad = -mbad
            if abs(mbad) > 0:
                log(f" Number of air quakes (AQ) = {abs(mbad):11d}")
                if nsrc_eff - mbad <= 1:
                    log("Warning: number of non-airquakes < 2\n   skipping this cluster")
                    return None
            if mbad > 0:
                aiter = aiter + 1
                jiter += 1
                maxiter += 1
            else:
                if nsrc == 1:
                    nsrc = nev
                src["cusp"] = ev["cusp"].copy()
                src["x"] = src["x"] + dx
                src["y"] = src["y"] + dy
                src["z"] = src["z"] + dz
                src["t"] = src["t"] + dtt
                src["dep"] = f32(src["dep"] + dz / 1000)
                lat, lon = sdc.latlon(src["x"] / 1000, src["y"] / 1000)
                src["lat"], src["lon"] = lat, lon
                src["ex"], src["ey"], src["ez"], src["et"] = ex, ey, ez, et
                if not (np.all(np.isfinite(src["x"])) and np.all(np.isfinite(src["z"]))):
                    raise HypoDD21Error(
                        f"cluster {icl} iteration {it}: non-finite locations after the update "
                        "(singular system); check the data or use ISOLV 2 with damping"
                    )
                xav = float(np.mean(src["x"] - src["x0"]))
                yav = float(np.mean(src["y"] - src["y0"]))
                zav = float(np.mean(src["z"] - src["z0"]))
                tav = float(np.mean(src["t"] - src["t0"]))
                log(
                    f"  cluster centroid at: {ff(np.mean(lat), 10, 6)}  {ff(np.mean(lon), 11, 6)}  "
                    f"{ff(np.mean(src['dep']), 9, 6)}"
                )
                log(
                    "  mean centroid (origin) shift in x,y,z,t [m,ms]: \n"
                    + ff(xav, 7, 1)
                    + ff(yav, 7, 1)
                    + ff(zav, 7, 1)
                    + ff(tav, 7, 1)
                )
                log("  (OS in std output gives maximum value.)")
                dt["offs"] = np.sqrt(
                    (src["x"][dt["ic1"]] - src["x"][dt["ic2"]]) ** 2
                    + (src["y"][dt["ic1"]] - src["y"][dt["ic2"]]) ** 2
                    + (src["z"][dt["ic1"]] - src["z"][dt["ic2"]]) ** 2
                )
                iscc = dt["idx"] <= 2
                ncc, nct = int(iscc.sum()), int((~iscc).sum())
                cohav = float(np.sum(np.sqrt(np.abs(dt["qual"][iscc])))) / ncc if ncc else float("nan")
                picav = float(np.sum(dt["qual"][~iscc])) / nct if nct else float("nan")
                log(f"\nMore:\n  mean phase coherency = {ff(cohav, 5, 3)}\n  mean pick quality = {ff(picav, 5, 3)}")
                stst = self._station_stats(dt, len(st["lab"]))
                self.sta_stats = stst
                k1 = int(np.argmax(stst["rmsc"])) if len(stst["rmsc"]) else 0
                l1 = int(np.argmax(stst["rmsn"])) if len(stst["rmsn"]) else 0
                tmpr1 = float(stst["rmsc"].max()) * 1000 if len(stst["rmsc"]) else 0.0
                tmpr2 = float(stst["rmsn"].max()) * 1000 if len(stst["rmsn"]) else 0.0
                if inp.idat in (1, 3):
                    log(f"  station with largest cc rms: {st['lab'][k1]:7s}={ff(tmpr1, 7, 0)} ms (RMSST)")
                if inp.idat in (2, 3):
                    log(f"  station with largest ct rms: {st['lab'][l1]:7s}={ff(tmpr2, 7, 0)} ms (RMSST)")
                # per-iteration relocation file
                name = f"{inp.fn_reloc}.{icl:03d}.{it - jiter:03d}"
                if inp.iwrite:
                    xs, ys = sdc.xy(src["lat"], src["lon"])
                    L = {k: np.asarray(src[k]).tolist() for k in ("cusp", "lat", "lon", "dep", "z", "ex", "ey", "ez")}
                    xs, ys = (np.asarray(xs) * 1000).tolist(), (np.asarray(ys) * 1000).tolist()
                    dates, times, mags = ev["date"].tolist(), ev["time"].tolist(), ev["mag"].tolist()
                    C = [
                        [fi(v, 9) for v in L["cusp"]],
                        _ffcol(L["lat"], 10, 6),
                        _ffcol(L["lon"], 11, 6),
                        _ffcol(L["dep"], 9, 3),
                        _ffcol(xs, 10, 1),
                        _ffcol(ys, 10, 1),
                        _ffcol(L["z"], 10, 1),
                        _ffcol(L["ex"], 8, 1),
                        _ffcol(L["ey"], 8, 1),
                        _ffcol(L["ez"], 8, 1),
                        [_datestr(a, b, 6, 3) for a, b in zip(dates, times)],
                        _ffcol(mags, 5, 2),
                        [fi(icl, 3)] * nev,
                    ]
                    lines = [" ".join(r) for r in zip(*C)]
                    (self.out / Path(name).name).write_text("\n".join(lines) + "\n")
                    log(f"\nRelocation results for this iteration are stored in {Path(name).name}")
            self._log_table(
                it, jiter, mbad, nev, nevold, nct, nctold, ncc, nccold, rms, tmpr1, tmpr2, avs, xav, yav, zav, acond
            )
            log(f"Iteration {it:2d} finished {_fortran_now():25s}")
            if it >= maxiter:
                break
            it += 1
        return self._finish_cluster(icl, ev, st, dt, src, sdc)

    def _weighting(self, dt, s, amcusp):
        inp, log = self.inp, self.log
        idx, qual = dt["idx"], dt["qual"]
        wt = (
            np.select(
                [idx == 1, idx == 2, idx == 3, idx == 4], [s["wt_ccp"], s["wt_ccs"], s["wt_ctp"], s["wt_cts"]], 0.0
            )
            * qual
        )
        ineg = False
        if len(amcusp):
            bad = np.isin(dt["c1"], amcusp) | np.isin(dt["c2"], amcusp)
            wt[bad] = 0.0
            ineg = bool(bad.any())
        idata = inp.idat
        mrcc, mrct, mdcc, mdct = s["maxres_cc"], s["maxres_ct"], s["maxdcc"], s["maxdct"]
        if ((idata in (1, 3)) and (mrcc != -999 or mdcc != -999)) or (
            (idata in (2, 3)) and (mrct != -999 or mdct != -999)
        ):
            log(f"re-weighting ... {_fortran_now()}")
            res = dt["res"]
            mad_cc = mad_ct = 0.0

            def mad(r):
                if len(r) == 0:
                    return 0.0
                med = _fmedian(r)
                return _fmedian(np.abs(r - med)) / 0.67449

            iscc = idx <= 2
            if idata == 3:
                if mrcc >= 1:
                    mad_cc = mad(res[iscc])
                if mrct >= 1:
                    mad_ct = mad(res[~iscc])
            elif (idata == 1 and mrcc >= 1) or (idata == 2 and mrct >= 1):
                mad_cc = mad(res)
                if idata == 2:
                    mad_ct = mad_cc
            maxres_cc = mad_cc * mrcc if mrcc >= 1 else mrcc
            maxres_ct = mad_ct * mrct if mrct >= 1 else mrct
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                if mdcc != -999:
                    wt = np.where(iscc, wt * (1 - (dt["offs"] / (mdcc * 1000)) ** 5) ** 5, wt)
                if mrcc > 0:
                    m = iscc & (wt > 0.000001)
                    wt = np.where(m, wt * (1 - (np.abs(res) / maxres_cc) ** 3) ** 3, wt)
                if mdct != -999:
                    wt = np.where(~iscc, wt * (1 - (dt["offs"] / (mdct * 1000)) ** 3) ** 3, wt)
                if mrct > 0:
                    m = ~iscc & (wt > 0.000001)
                    wt = np.where(m, wt * (1 - (np.abs(res) / maxres_ct) ** 3) ** 3, wt)
            low = wt < MINWGHT
            ineg = bool(low.any())
            ncc, nct = int(iscc.sum()), int((~iscc).sum())
            if idata in (1, 3):
                pc = (int((low & iscc).sum()) * 100.0 / ncc) if ncc else float("nan")
                log(f" cc res/dist cutoff:{ff(maxres_cc, 7, 3)}s/{ff(mdcc, 6, 2)}km ({ff(pc, 5, 1)}%)")
            if idata in (2, 3):
                pc = (int((low & ~iscc).sum()) * 100.0 / nct) if nct else float("nan")
                log(f" ct res/dist cutoff [s]:{ff(maxres_ct, 7, 3)}s/{ff(mdct, 6, 2)}km ({ff(pc, 5, 1)}%)")
        dt["wt"] = wt
        return ineg

    def _resstat(self, dt, nev, rms, initial=False):
        """resstat.f: rms of cc and ct (weighted, scaled) and the weighted variance (returned, ms^2)."""
        d, w, idx = dt["res"], dt["wt"], dt["idx"]
        ndt = len(d)
        iscc = idx <= 2
        j = int(iscc.sum())
        for k in ("cc0", "ct0", "cc", "ct"):
            rms[k + "old"] = rms[k]
        with np.errstate(invalid="ignore", divide="ignore"):
            f_cc = j / np.sum(w[iscc])
            f_ct = (ndt - j) / np.sum(w[~iscc])

            def stats(mask, f, n):
                dd = d[mask]
                a0 = dd.sum() / n
                r0 = math.sqrt(max((np.sum(dd**2) - a0**2 / n) / (n - 1), 0.0)) if n > 1 else float("nan")
                ww = f * w[mask] * dd
                a = ww.sum() / n
                r = math.sqrt(max((np.sum(ww**2) - a**2 / n) / (n - 1), 0.0)) if n > 1 else float("nan")
                return r0, r

            rms["cc0"], rms["cc"] = stats(iscc, f_cc, j) if j else (float("nan"), float("nan"))
            rms["ct0"], rms["ct"] = stats(~iscc, f_ct, ndt - j) if ndt - j else (float("nan"), float("nan"))
            dav = d.mean()
            dav0 = np.mean(w * d)
            sw = np.sum(w)
            dav1 = np.mean((ndt / sw) * w * d)
            s_ = d * 1000 - dav * 1000
            s1 = w * d * 1000 - dav0 * 1000
            if ndt > 4 * nev:
                dvar = (np.sum(s_**2) - np.sum(s_) ** 2 / ndt) / (ndt - 4 * nev)
                dvar1 = (np.sum(s1**2) - np.sum(s1) ** 2 / ndt) / (ndt - 4 * nev)
            else:
                dvar, dvar1 = np.sum(s_**2), np.sum(s1**2)
                self.log(" >>> Warning: ndt < 4*nev")
        log = self.log
        idata = self.inp.idat
        if initial:
            log("\nResidual summary of initial data:")
            log(f" absolute mean [s] = {ff(dav, 7, 4)}\n weighted mean [s] = {ff(dav1, 7, 4)}")
            log(f" absolute variance [s] = {ff(dvar / 1000, 10, 4)}\n weighted variance [s] = {ff(dvar1 / 1000, 7, 4)}")
            if idata in (1, 3):
                log(
                    f" absolute cc rms [s] = {ff(rms['cc0'], 7, 4)}\n weighted cc rms [s] (RMSCC) = "
                    f"{ff(rms['cc'], 7, 4)}"
                )
            if idata in (2, 3):
                log(
                    f" absolute ct rms [s] = {ff(rms['ct0'], 7, 4)}\n weighted ct rms [s] (RMSCT) = "
                    f"{ff(rms['ct'], 7, 4)}"
                )
        else:

            def pct(a, b):
                return ff((a - b) * 100 / b if b else float("nan"), 7, 2)

            log("\nResidual summary:")
            log(f" absolute mean [s] = {ff(dav, 7, 4)}\n weighted mean [s] = {ff(dav1, 7, 4)}")
            log(
                f" absolute variance [s] = {ff(dvar / 1000, 10, 4)}\n weighted variance [s] = {ff(dvar1 / 1000, 10, 4)}"
            )
            if idata in (1, 3):
                log(f" absolute cc rms [s] = {ff(rms['cc0'], 7, 4)} ({pct(rms['cc0'], rms['cc0old'])} %)")
                log(f" weighted cc rms [s] = {ff(rms['cc'], 7, 4)} ({pct(rms['cc'], rms['ccold'])} %)")
            if idata in (2, 3):
                log(f" absolute ct rms [s] = {ff(rms['ct0'], 7, 4)} ({pct(rms['ct0'], rms['ct0old'])} %)")
                log(f" weighted ct rms [s] = {ff(rms['ct'], 7, 4)} ({pct(rms['ct'], rms['ctold'])} %)")
        return float(dvar1)

    @staticmethod
    def _G_partials(P):
        """(station, source, P/S) rows of the x, y, z partials, for one gather per datum and event."""
        ns = P["xp"].shape[1]
        return np.stack([P[k] for k in ("xp", "yp", "zp", "xs", "ys", "zs")], axis=-1).reshape(-1, 3), ns

    @staticmethod
    def _G_rows(dt, nsrc, PS, ns, a=0, b=None):
        """Rows a:b of the DD system: 8 columns per datum (x, y, z, t of event 1 and event 2), unweighted."""
        idx = dt["idx"][a:b]
        isS = ((idx == 2) | (idx == 4)).astype(np.intp)
        base = dt["ista"][a:b] * (2 * ns) + isS
        vals = np.empty((len(idx), 8))
        vals[:, 0:3] = np.take(PS, base if nsrc == 1 else base + 2 * dt["ic1"][a:b], axis=0)
        vals[:, 4:7] = np.take(PS, base if nsrc == 1 else base + 2 * dt["ic2"][a:b], axis=0)
        np.negative(vals[:, 4:7], out=vals[:, 4:7])
        vals[:, 3] = 1.0
        vals[:, 7] = -1.0
        return vals

    @staticmethod
    def _G_cols(dt, nextra=0):
        """The 8 column indices of every datum (int32: the LSQR kernels take them as they are), in a
        buffer with ``nextra`` more entries (the EV_FIX rows' columns: the CSR indices, no copy)."""
        nd = len(dt["ic1"])
        buf = np.empty(8 * nd + nextra, np.int32)
        cols = buf[: 8 * nd].reshape(nd, 8)
        cols[:, 0] = dt["ic1"]
        cols[:, 4] = dt["ic2"]
        cols[:, 0] *= 4
        cols[:, 4] *= 4
        for k in (1, 2, 3):
            np.add(cols[:, 0], k, out=cols[:, k])
            np.add(cols[:, 4], k, out=cols[:, 4 + k])
        return cols, buf

    def _lsfit(self, dt, nev, nsrc, ev, P, damp, rms):
        log = self.log
        ndt = len(dt["res"])
        wt = dt["wt"]
        d = dt["res"] * 1000.0 * wt
        n = 4 * nev
        # EV_FIX constraint rows: (event column, weight)
        fixrows = []
        fixw = {1: (2,), 2: (2, 3), 3: (0, 1, 2), 4: (0, 1, 2, 3), 5: (3,), 6: (0, 1)}
        svd = self.inp.isolv == 1
        lsqr_w = {1: 100.0, 2: 100.0, 3: 10.0, 4: 100.0, 5: 1000.0, 6: 100.0}
        for i in np.flatnonzero(ev["fix"] > 0):
            f = int(ev["fix"][i])
            for c in fixw.get(f, ()):
                fixrows.append((4 * i + c, damp if svd else lsqr_w[f]))
        PS, ns = self._G_partials(P)
        cols, colbuf = self._G_cols(dt, 0 if svd else len(fixrows))
        # the unweighted rows: kept whole up to _KEEP_G_ROWS data, else recomputed chunk by chunk where
        # needed (the same gathers: the same values) -- 64 bytes per datum not held on large projects
        vals = self._G_rows(dt, nsrc, PS, ns) if svd or ndt <= _KEEP_G_ROWS else None

        def rows(a, b):
            return vals[a:b] if vals is not None else self._G_rows(dt, nsrc, PS, ns, a, b)

        if svd:
            wvals = vals * wt[:, None]
            nndt = ndt + 4 + len(fixrows)
            if n > 4000 or nndt > 400000:
                raise HypoDD21Error(
                    f"SVD (ISOLV 1) of a {nndt} x {n} system is too large for a dense SVD; use ISOLV 2 (LSQR)"
                )
            G = np.zeros((nndt, n))
            np.add.at(G, (np.repeat(np.arange(ndt), 8), cols.ravel()), wvals.ravel())
            for k in range(4):
                G[ndt + k, k::4] = 1.0
            for r, (c, wgt) in enumerate(fixrows):
                G[ndt + 4 + r, c] = wgt
            dd = np.r_[d, np.zeros(4 + len(fixrows))]
            log("  extra rows added to make mean shift zero: 4")
            log(f"  extra rows added to constrain selected parameters: {len(fixrows):8d}")
            norm = np.sqrt((G**2).sum(0) / nndt)
            norm[norm == 0] = 1.0
            G /= norm
            log(f"~ singular value decomposition of G ({nndt:6d}x{n:6d} matrix) ...")
            U, q, Vt = np.linalg.svd(G, full_matrices=False)
            log("~ backsubstitution ...")
            qmax = q.max() if len(q) else 0.0
            zero = q < qmax * 0.0000001
            if zero.any():
                log(f"\n>>> {int(zero.sum()):3d} singular values close/= zero !!\n")
            qi = np.where(zero, 0.0, 1.0 / np.where(zero, 1.0, q))
            x = Vt.T @ ((U.T @ dd) * qi)
            cvm_diag = (Vt.T**2) @ (qi**2)
            x = x / norm
            pred = (vals * x[cols]).sum(1)
            pred[wt == 0] = 0.0
            dt["res"] = dt["res"] - pred / 1000
            resvar1 = self._resstat(dt, nev, rms)
            se = np.sqrt(cvm_diag) * math.sqrt(max(resvar1, 0.0)) * 1.96 / norm
            acond = 0.0
        else:
            log("\n~ setting up G matrix.. ")
            log(f"      ndt, nev, nsrc, damp: {ndt:11d} {nev:11d} {nsrc:11d} {damp:14.7f}")
            fc = np.array([c for c, _ in fixrows], np.int64)
            fw = np.array([w for _, w in fixrows], float)
            # row chunks: the weighted, scaled entries never exist whole in double precision.  np.add.at
            # accumulates in the order bincount does (flat order, from 0): the same sums, bit for bit.
            ch = _ROW_CHUNK
            sq = np.zeros(n)
            for a in range(0, ndt, ch):
                wv = rows(a, a + ch) * wt[a : a + ch, None]
                np.add.at(sq, cols[a : a + ch].ravel(), (wv * wv).ravel())
            norm = np.sqrt((sq + np.bincount(fc, weights=fw**2, minlength=n)) / ndt)
            del sq
            norm[norm == 0] = 1.0
            buf = np.empty(8 * ndt + len(fc), LSQR_DTYPE)  # the CSR data: 8 entries per datum, then EV_FIX rows
            v32 = buf[: 8 * ndt].reshape(ndt, 8)
            for a in range(0, ndt, ch):
                wv = rows(a, a + ch) * wt[a : a + ch, None]
                wv /= norm[cols[a : a + ch]]
                v32[a : a + ch] = wv  # single precision, as astype
            del wv
            A = _DDOperator(v32, cols, (fw / norm[fc]).astype(LSQR_DTYPE), fc, n, data=buf, indices=colbuf)
            del v32, buf, colbuf
            b = np.r_[d, np.zeros(len(fixrows))]
            log("~ scaling G columns ... ")
            log(f"~ lsqr ...    {_fortran_now()}")
            x, se_l, istop, anorm, acond, rnorm, arnorm, xnorm = _lsqr(A, b, damp, m_rows=ndt)
            log(
                f"  istop = {istop:1d}; acond (CND)={ff(acond, 8, 1)}; anorm ={ff(anorm, 8, 1)}; arnorm "
                f"={ff(arnorm, 8, 1)}; "
                f"xnorm ={ff(xnorm, 8, 1)}"
            )
            x = x / norm
            se_l = se_l / norm
            del A
            pred = np.empty(ndt)
            for a in range(0, ndt, _ROW_CHUNK):
                pred[a : a + _ROW_CHUNK] = (rows(a, a + _ROW_CHUNK) * x[cols[a : a + _ROW_CHUNK]]).sum(1)
            pred[wt == 0] = 0.0
            dt["res"] = dt["res"] - pred / 1000
            resvar1 = self._resstat(dt, nev, rms)
            se = np.sqrt(np.abs(se_l)) * math.sqrt(max(resvar1, 0.0)) * 2.7955
        X = x.reshape(-1, 4)
        E = se.reshape(-1, 4)
        return -X[:, 0], -X[:, 1], -X[:, 2], -X[:, 3], E[:, 0], E[:, 1], E[:, 2], E[:, 3], acond

    def _log_location_summary(self, a, it, ex, ey, ez, et):
        if it == 1:
            for k in ("ex", "ey", "ez", "et"):
                a[k + "old"] = a[k]
        for k in ("dx", "dy", "dz", "dt"):
            a.setdefault(k + "prev", a[k] if it == 1 else a.get(k + "prev", a[k]))
        d = {k: a[k] - a[k + "prev"] if it > 1 else 0.0 for k in ("dx", "dy", "dz", "dt")}
        self.log(
            "\nLocation summary:\n  mean 2sig-error (x,y,z,t) [m,ms]: \n"
            + "".join(ff(a[k], 7, 1) for k in ("ex", "ey", "ez", "et"))
            + " ("
            + "".join(ff(a[k] - a[k + "old"], 7, 1) for k in ("ex", "ey", "ez", "et"))
            + ")\n"
            "  mean shift (x,y,z,t) [m,ms] (DX,DY,DZ,DT): \n"
            + "".join(ff(a[k], 7, 1) for k in ("dx", "dy", "dz", "dt"))
            + " ("
            + "".join(ff(d[k], 7, 1) for k in ("dx", "dy", "dz", "dt"))
            + ")"
        )
        for k in ("dx", "dy", "dz", "dt"):
            a[k + "prev"] = a[k]

    def _log_table(
        self, it, jiter, mbad, nev, nevold, nct, nctold, ncc, nccold, rms, tmpr1, tmpr2, a, xav, yav, zav, acond
    ):
        inp, log = self.inp, self.log
        str3 = "   " if mbad > 0 else f"{it - jiter:3d}"

        def pc(n, o):
            return fi(nint(n * 100.0 / o), 3) if o else "NaN"

        def dr(r, o):
            return ff((r - o) * 100 / o if o else float("inf"), 6, 1)

        rmsst = fi(nint(max(tmpr1, tmpr2)), 6)
        tail = (
            fi(nint(a["dx"]), 5)
            + fi(nint(a["dy"]), 5)
            + fi(nint(a["dz"]), 5)
            + fi(nint(a["dt"]), 5)
            + fi(nint(max(abs(xav), abs(yav), abs(zav))), 5)
            + fi(abs(mbad), 4)
        )
        cnd = fi(nint(acond), 5) if inp.isolv == 2 else ""
        head_cnd = "  CND" if inp.isolv == 2 else ""
        if inp.idat == 3:
            log(
                "\n  IT   EV  CT  CC    RMSCT      RMSCC   RMSST   DX   DY   DZ   DT   " + ("OS  AQ" + head_cnd) + "\n"
                "        %   %   %   ms     %   ms     %    ms    m    m    m   ms    m "
            )
            log(
                f"{fi(it, 2)}{str3} {pc(nev, nevold)} {pc(nct, nctold)} "
                f"{pc(ncc, nccold)}{fi(nint(rms['ct'] * 1000), 5)}"
                f"{dr(rms['ct'], rms['ctold'])}{fi(nint(rms['cc'] * 1000), 5)}{dr(rms['cc'], rms['ccold'])}"
                f"{rmsst}{tail}{cnd}"
            )
        else:
            lab, r, ro, n, no = (
                ("CC", rms["cc"], rms["ccold"], ncc, nccold)
                if inp.idat == 1
                else ("CT", rms["ct"], rms["ctold"], nct, nctold)
            )
            log(
                f"\n  IT   EV  {lab}    RMS{lab}   RMSST   DX   DY   DZ   DT   OS  AQ{head_cnd}\n"
                "        %   %   ms     %    ms    m    m    m   ms    m "
            )
            log(f"{fi(it, 2)}{str3} {pc(nev, nevold)} {pc(n, no)}{fi(nint(r * 1000), 5)}{dr(r, ro)}{rmsst}{tail}{cnd}")

    def _station_stats(self, dt, nsta):
        ista, idx, res = dt["ista"], dt["idx"], dt["res"]
        out = {}
        for k, i in (("np", 1), ("ns", 2), ("nnp", 3), ("nns", 4)):
            out[k] = np.bincount(ista[idx == i], minlength=nsta)
        cc = idx <= 2
        sc = np.bincount(ista[cc], weights=res[cc] ** 2, minlength=nsta)
        sn = np.bincount(ista[~cc], weights=res[~cc] ** 2, minlength=nsta)
        nc, nn = out["np"] + out["ns"], out["nnp"] + out["nns"]
        with np.errstate(invalid="ignore", divide="ignore"):
            out["rmsc"] = np.where(nc > 0, np.sqrt(sc / np.maximum(nc, 1)), 0.0)
            out["rmsn"] = np.where(nn > 0, np.sqrt(sn / np.maximum(nn, 1)), 0.0)
        return out

    def _finish_cluster(self, icl, ev, st, dt, src, sdc):
        nev = len(ev["cusp"])
        src_t = src["t"] / 1000.0
        dates, times = ev["date"].copy(), ev["time"].copy()
        for i in range(nev):
            dates[i], times[i] = _shift_time(int(ev["date"][i]), int(ev["time"][i]), float(src_t[i]))
        ic1, ic2, idx, res = dt["ic1"], dt["ic2"], dt["idx"], dt["res"]

        def cnt(mask):
            return np.bincount(ic1[mask], minlength=nev) + np.bincount(ic2[mask], minlength=nev)

        np_, ns_, nnp_, nns_ = cnt(idx == 1), cnt(idx == 2), cnt(idx == 3), cnt(idx == 4)
        cc = idx <= 2
        rc = np.bincount(ic1[cc], weights=res[cc] ** 2, minlength=nev) + np.bincount(
            ic2[cc], weights=res[cc] ** 2, minlength=nev
        )
        rn = np.bincount(ic1[~cc], weights=res[~cc] ** 2, minlength=nev) + np.bincount(
            ic2[~cc], weights=res[~cc] ** 2, minlength=nev
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            rmsc = np.where(np_ + ns_ > 0, np.sqrt(rc / np.maximum(np_ + ns_, 1)), -9.0)
            rmsn = np.where(nnp_ + nns_ > 0, np.sqrt(rn / np.maximum(nnp_ + nns_, 1)), -9.0)
        if self.inp.fn_res and len(self.inp.fn_res.strip()) > 1:
            # the columns, formatted when written (in chunks: 150 000 lines as strings are ~30 MB);
            # hypoDD reopens the file per cluster: the last cluster's residuals remain
            self.f_res = (
                np.asarray(st["lab"]),
                dt["ista"].copy(),
                dt["dt"].copy(),
                dt["c1"].copy(),
                dt["c2"].copy(),
                idx.copy(),
                dt["qual"].copy(),
                res * 1000,
                dt["wt"].copy(),
                dt["offs"].copy(),
            )
        xs, ys = sdc.xy(src["lat"], src["lon"])
        for i in range(nev):
            self.f_reloc.append(
                f"{fi(src['cusp'][i], 9)} {ff(src['lat'][i], 10, 6)} {ff(src['lon'][i], 11, 6)} "
                f"{ff(src['dep'][i], 9, 3)} "
                f"{ff(xs[i] * 1000, 10, 1)} {ff(ys[i] * 1000, 10, 1)} {ff(src['z'][i], 10, 1)} "
                f"{ff(src['ex'][i], 8, 1)} "
                f"{ff(src['ey'][i], 8, 1)} {ff(src['ez'][i], 8, 1)} {_datestr(dates[i], times[i], 6, 3)} "
                f"{ff(ev['mag'][i], 5, 2)} "
                f"{fi(np_[i], 5)} {fi(ns_[i], 5)} {fi(nnp_[i], 5)} {fi(nns_[i], 5)} {ff(rmsc[i], 6, 3)} "
                f"{ff(rmsn[i], 6, 3)} {fi(icl, 3)}"
            )
        ss = getattr(self, "sta_stats", None)
        nsta = len(st["lab"])
        if ss is None or len(ss["np"]) != nsta:
            ss = self._station_stats(dt, nsta)
        for i in range(nsta):
            self.f_sta.append(
                f"{st['lab'][i]:<7s} {ff(st['lat'][i], 9, 4)} {ff(st['lon'][i], 9, 4)} {ff(0.0, 9, 4)} {ff(0.0, 9, 4)} "
                f"{fi(ss['np'][i], 7)} {fi(ss['ns'][i], 7)} {fi(ss['nnp'][i], 7)} {fi(ss['nns'][i], 7)} "
                f"{ff(ss['rmsc'][i], 9, 4)} {ff(ss['rmsn'][i], 9, 4)} {fi(icl, 3)}"
            )
        return {
            "cusp": src["cusp"].copy(),
            "lat": src["lat"].copy(),
            "lon": src["lon"].copy(),
            "dep": src["dep"].copy(),
            "ex": src["ex"].copy(),
            "ey": src["ey"].copy(),
            "ez": src["ez"].copy(),
            "cluster": icl,
        }

    def _write_outputs(self):
        inp = self.inp
        files = []

        def put(name, lines):
            p = self.out / Path(name).name
            with open(p, "w") as fh:
                chunk = []
                for ln in lines:
                    chunk.append(ln)
                    if len(chunk) >= 20000:
                        fh.write("\n".join(chunk) + "\n")
                        chunk = []
                if chunk:
                    fh.write("\n".join(chunk) + "\n")
            files.append(p)

        put(inp.fn_loc or "hypoDD.loc", self.f_loc)
        put(inp.fn_reloc or "hypoDD.reloc", self.f_reloc)
        if len(inp.fn_stares.strip()) > 1:
            put(inp.fn_stares, self.f_sta)
        if len(inp.fn_res.strip()) > 1 and self.f_res is not None:
            put(inp.fn_res, _res_lines(*self.f_res))
        if len(inp.fn_srcpar.strip()) > 1 and self.src_lines is not None:
            put(inp.fn_srcpar, _src_lines(inp.imod, *self.src_lines))
        return files


def _res_lines(lab, ista, dt, c1, c2, idx, qual, res_ms, wt, offs, chunk: int = 20000):
    """The .res lines (2.1b's layout), generated chunk by chunk from the columns."""
    fmt = "%-7s %12.7f %9d %9d %1d %9.4f %12.6f %11.6f %8.1f"
    for a in range(0, len(ista), chunk):
        b = a + chunk
        rows = zip(
            lab[ista[a:b]].tolist(),
            dt[a:b].tolist(),
            c1[a:b].tolist(),
            c2[a:b].tolist(),
            idx[a:b].tolist(),
            qual[a:b].tolist(),
            res_ms[a:b].tolist(),
            wt[a:b].tolist(),
            offs[a:b].tolist(),
        )
        for r in rows:
            line = fmt % r
            if len(line) != 86:
                line = (
                    f"{r[0]:<7s} {ff(r[1], 12, 7)} {fi(r[2], 9)} {fi(r[3], 9)} {fi(r[4], 1)} {ff(r[5], 9, 4)} "
                    f"{ff(r[6], 12, 6)} {ff(r[7], 11, 6)} {ff(r[8], 8, 1)}"
                )
            yield line


def _src_lines(imod, cusp, lat, lon, st, P):
    """The .src lines: per station, per source (all sources of the last iteration)."""
    nsta, nsrc = P["ttp"].shape
    fmt = "%9d %9.4f %9.4f %-7s %7.3f %9.4f %9.4f %9.4f%9.4f%9.4f%9.4f%9.4f%9.4f%9.4f%9.4f%9.4f%9.4f"
    keys = ("dist", "az", "ainp", "ains", "ttp", "tts", "xp", "yp", "zp", "xs", "ys", "zs")
    if imod == 4:  # partials_1dmm.f writes fewer columns
        fmt = "%9d  %9.4f  %9.4f  %-7s%6.3f  %9.4f  %9.4f  %9.4f%9.4f%9.3f%9.3f"
        keys = keys[:6]
    cusp_l = [int(c) for c in np.asarray(cusp).tolist()]
    lat_l, lon_l = np.asarray(lat, float).tolist(), np.asarray(lon, float).tolist()
    for i in range(nsta):
        lab, e = st["lab"][i], float(st["elv"][i])
        rows = np.stack([np.asarray(P[k][i, :nsrc], float) for k in keys], axis=-1).tolist()
        for j in range(nsrc):
            vals = rows[j]
            line = fmt % (cusp_l[j], lat_l[j], lon_l[j], lab, e, *vals)
            if len(line) != SRC_WIDTH and imod != 4:
                line = (
                    f"{fi(cusp_l[j], 9)} {ff(lat_l[j], 9, 4)} {ff(lon_l[j], 9, 4)} {lab:<7s} {ff(e, 7, 3)} "
                    f"{ff(vals[0], 9, 4)} "
                    f"{ff(vals[1], 9, 4)} {ff(vals[2], 9, 4)}" + "".join(ff(v, 9, 4) for v in vals[3:])
                )
            yield line


def _fmedian(x) -> float:
    """mdian1.f: sort, middle value (mean of the two middle values when even)."""
    x = np.asarray(x, float)
    n = len(x)
    n2 = n // 2
    if n < 2:
        x = np.sort(x)
        return float(0.5 * (x[n2 - 1] + x[n2])) if 2 * n2 == n else float(x[n2])
    x = np.partition(x, (n2 - 1, n2))  # the two middle order statistics, without a full sort
    return float(0.5 * (x[n2 - 1] + x[n2])) if 2 * n2 == n else float(x[n2])


def _datestr(date: int, tim: int, w: int, d: int) -> str:
    date, tim = int(date), int(tim)
    return (
        f"{date // 10000:4d} {(date % 10000) // 100:2d} {date % 100:2d} {tim // 1000000:2d} "
        f"{(tim % 1000000) // 10000:2d} "
        f"{ff((tim % 10000) / 100.0, w, d)}"
    )


def _shift_time(date: int, tim: int, src_t: float):
    """hypoDD's final origin-time update (juliam/datum): origin = catalog time - src_t (s), centiseconds."""
    yr, mo, dy = date // 10000, (date % 10000) // 100, date % 100
    hr, mn = tim // 1000000, (tim % 1000000) // 10000
    try:
        base = datetime(yr, mo, dy) + timedelta(hours=hr, minutes=mn)
    except ValueError:
        return date, tim
    sc = (tim % 10000) / 100.0 - src_t
    q = int(sc / 60.0)
    base += timedelta(minutes=q)
    sc -= q * 60.0
    if nint(sc * 100) < 0:
        base -= timedelta(minutes=1)
        sc += 60.0
    elif nint(sc * 100) >= 6000:
        base += timedelta(minutes=1)
        sc -= 60.0
    return (base.year * 10000 + base.month * 100 + base.day, base.hour * 1000000 + base.minute * 10000 + nint(sc * 100))


_SPARSETOOLS = []  # [module or None], loaded once


def _sparsetools():
    """scipy's compiled sparse kernels (``scipy.sparse._sparsetools``: csr_matvec / csc_matvec), loaded
    from their extension file alone: importing ``scipy.sparse`` costs ~0.5 s of CPU and ~30 MB (its
    array-API layer imports numpy.testing and f2py); the extension itself needs numpy only.  Falls
    back to the ordinary import, and to None (numpy products) where scipy is absent."""
    if _SPARSETOOLS:
        return _SPARSETOOLS[0]
    mod = sys.modules.get("scipy.sparse._sparsetools")
    if mod is None:
        try:
            spec = importlib.util.find_spec("scipy")  # finds the package without running its __init__
            for base in (spec.submodule_search_locations or []) if spec is not None else []:
                for suf in importlib.machinery.EXTENSION_SUFFIXES:
                    f = Path(base) / "sparse" / f"_sparsetools{suf}"
                    if f.is_file():
                        loader = importlib.machinery.ExtensionFileLoader("scipy.sparse._sparsetools", str(f))
                        spec_f = importlib.util.spec_from_file_location(loader.name, str(f), loader=loader)
                        m = importlib.util.module_from_spec(spec_f)
                        loader.exec_module(m)
                        mod = m
                        break
                if mod is not None:
                    break
        except Exception:  # noqa: BLE001  # pragma: no cover - an unusual install: the ordinary import below
            mod = None
    if mod is None:
        try:
            from scipy.sparse import _sparsetools as mod  # scipy: only where the extension file is not found
        except ImportError:  # pragma: no cover - scipy is a dependency; numpy path otherwise
            mod = None
    _SPARSETOOLS.append(mod)
    return mod


_ROW_CHUNK = 32768  # rows per chunk where the DD matrix is built or applied in numpy
_KEEP_G_ROWS = 262_144  # data up to which the unweighted DD rows are kept (16 MB) rather than recomputed


class _DDOperator:
    """The weighted, column-scaled DD matrix in single precision: 8 entries per datum (x, y, z, t of
    its two events) plus one entry per EV_FIX row.  ``matvec_add`` (u + A v) sums each row as
    hypoDD's aprod does -- onto u, the entries in order -- which matters: LSQR on the ill-conditioned
    depth directions amplifies rounding.  Small systems: numpy gathers and bincounts; larger: scipy's
    compiled CSR kernels (``csr_matvec`` adds onto its output, the same order) on int32 indices
    (int64 where the entries do not fit), loaded without ``scipy.sparse`` (see ``_sparsetools``).
    ``vals`` (float64 or LSQR_DTYPE) is converted once; the caller may drop its copy.  ``data``: a
    LSQR_DTYPE buffer of 8 * rows + EV_FIX entries whose head ``vals`` already is (adopted, no copy);
    ``indices``: the same for the columns (int32)."""

    SCIPY_FROM = 200_000  # entries; below, numpy products (the results of this port depend on the path)

    def __init__(self, vals, cols, fvals, fcols, n, data=None, indices=None):
        self.nd = len(vals)
        self.shape = (self.nd + len(fvals), n)
        self.dtype = np.dtype(LSQR_DTYPE)
        self.fvals, self.fcols, self.n = fvals.astype(self.dtype), fcols, n
        self.kern = _sparsetools() if vals.size >= self.SCIPY_FROM else None
        if self.kern is not None:
            k = vals.shape[1]
            nnz = k * self.nd + len(fvals)
            it = np.int32 if max(nnz, n) < 2**31 - 1 else np.int64
            self.indptr = np.empty(self.shape[0] + 1, it)
            self.indptr[: self.nd + 1] = np.arange(0, k * self.nd + 1, k, dtype=it)
            self.indptr[self.nd + 1 :] = k * self.nd + 1 + np.arange(len(fvals), dtype=it)
            if indices is not None and indices.dtype == it and len(indices) == nnz:
                self.indices = indices  # cols is its head already
            else:
                self.indices = np.empty(nnz, it)
                self.indices[: k * self.nd] = cols.ravel()
            self.indices[k * self.nd :] = fcols
            if data is not None and data.dtype == self.dtype and len(data) == nnz:
                self.data = data  # vals is its head already
            else:
                self.data = np.empty(nnz, self.dtype)
                self.data[: k * self.nd] = vals.ravel()  # the cast to single precision, as astype
            self.data[k * self.nd :] = self.fvals
        else:
            self.vals = np.asarray(vals, self.dtype)
            self.cols = cols
            self.flat_cols = cols.ravel()

    def matvec_add(self, v, u, overwrite=False):
        """u + A v; ``overwrite``: u (of LSQR_DTYPE) may be the output."""
        if self.kern is not None:
            y = u if overwrite and u.dtype == self.dtype else np.array(u, dtype=self.dtype)
            self.kern.csr_matvec(
                self.shape[0], self.shape[1], self.indptr, self.indices, self.data, np.asarray(v, self.dtype), y
            )
            return y
        out = u[: self.nd].astype(self.dtype)
        for k in range(self.cols.shape[1]):
            out += self.vals[:, k] * v[self.cols[:, k]]
        return np.r_[out, u[self.nd :] + self.fvals * v[self.fcols]] if len(self.fvals) else out

    def rmatvec(self, u):
        if self.kern is not None:
            y = np.zeros(self.n, self.dtype)  # A's CSR arrays are A^T's CSC arrays: no transpose needed
            self.kern.csc_matvec(
                self.n, self.shape[0], self.indptr, self.indices, self.data, np.asarray(u, self.dtype), y
            )
            return y
        out = np.bincount(self.flat_cols, weights=(self.vals * u[: self.nd, None]).ravel(), minlength=self.n)
        if len(self.fvals):
            out += np.bincount(self.fcols, weights=self.fvals * u[self.nd :], minlength=self.n)
        return out.astype(self.dtype)


def _lsqr(A, b, damp, m_rows=None, atol=1e-6, btol=1e-6, conlim=1e5):
    """LSQR (Paige & Saunders) as hypoDD's lsqr.f, with its standard-error estimates
    se(i) = rnorm/sqrt(m) * sqrt(var_i) (damped) and its stopping tests (nconv 1)."""
    m, n = A.shape
    itnlim = 100 * n
    dtp = A.dtype
    u = b.astype(dtp)
    x = np.zeros(n, dtp)
    se = np.zeros(n, dtp)
    usq = np.empty_like(u)  # u * u, reused (np.add.reduce over it: the same pairwise sums)
    beta = math.sqrt(float(np.add.reduce(np.multiply(u, u, out=usq))))
    if beta > 0:
        u /= beta
    v = A.rmatvec(u)
    alfa = math.sqrt(float(np.add.reduce(v * v)))
    if alfa > 0:
        v /= alfa
    w = v.copy()
    rhobar, phibar, bnorm, rnorm = alfa, beta, beta, beta
    arnorm = alfa * beta
    anorm = acond = xnorm = 0.0
    if arnorm <= 0:
        return x, se, 0, anorm, acond, rnorm, arnorm, xnorm
    dampsq = damp * damp
    ddnorm = res2 = xxnorm = z = 0.0
    cs2, sn2 = -1.0, 0.0
    bbnorm = 0.0
    ctol = 1.0 / conlim if conlim > 0 else 0.0
    itn = istop = 0
    while True:
        itn += 1
        u = A.matvec_add(v, (-alfa) * u, overwrite=True)  # (-alfa) * u is a new array: the kernel's output
        beta = math.sqrt(float(np.add.reduce(np.multiply(u, u, out=usq))))
        if beta > 0:
            u /= beta
        bbnorm += alfa**2 + beta**2 + dampsq
        v = A.rmatvec(u) - beta * v
        alfa = math.sqrt(float(np.add.reduce(v * v)))
        if alfa > 0:
            v /= alfa
        rhbar2 = rhobar**2 + dampsq
        rhbar1 = math.sqrt(rhbar2)
        cs1, sn1 = rhobar / rhbar1, damp / rhbar1
        psi = sn1 * phibar
        phibar = cs1 * phibar
        rho = math.sqrt(rhbar2 + beta**2)
        cs, sn = rhbar1 / rho, beta / rho
        theta = sn * alfa
        rhobar = -cs * alfa
        phi = cs * phibar
        phibar = sn * phibar
        tau = sn * phi
        t1, t2, t3 = phi / rho, -theta / rho, 1.0 / rho
        x += t1 * w
        tw = (t3 * w) ** 2
        se += tw
        ddnorm += float(tw.sum(dtype=float))
        w = t2 * w + v
        delta = sn2 * rho
        gambar = -cs2 * rho
        rhs = phi - delta * z
        zbar = rhs / gambar
        xnorm = math.sqrt(xxnorm + zbar**2)
        gamma = math.sqrt(gambar**2 + theta**2)
        cs2, sn2 = gambar / gamma, theta / gamma
        z = rhs / gamma
        xxnorm += z**2
        anorm = math.sqrt(bbnorm)
        acond = anorm * math.sqrt(ddnorm)
        res1 = phibar**2
        res2 += psi**2
        rnorm = math.sqrt(res1 + res2)
        arnorm = alfa * abs(tau)
        test1 = rnorm / bnorm
        test2 = arnorm / (anorm * rnorm) if anorm * rnorm > 0 else 0.0
        test3 = 1.0 / acond if acond > 0 else 0.0
        t1 = test1 / (1.0 + anorm * xnorm / bnorm)
        rtol = btol + atol * anorm * xnorm / bnorm
        if itn >= itnlim:
            istop = 7
        if 1.0 + test3 <= 1.0:
            istop = 6
        if 1.0 + test2 <= 1.0:
            istop = 5
        if 1.0 + t1 <= 1.0:
            istop = 4
        if test3 <= ctol:
            istop = 3
        if test2 <= atol:
            istop = 2
        if test1 <= rtol:
            istop = 1
        if istop != 0:
            break
    mm = m if m_rows is None else m_rows
    t = float(mm - n) if mm > n else 1.0
    if dampsq > 0:
        t = float(mm)
    t = rnorm / math.sqrt(t)
    se = t * np.sqrt(se.astype(float))
    x = x.astype(float)
    return x, se, istop, anorm, acond, rnorm, arnorm, xnorm


def run_project(inp_path, out_dir=None) -> ProjectResult:
    """Run the HypoDD project of ``inp_path`` (2.x or 1.x control file; data files relative to
    it) as HypoDD 2.1b does; outputs (names from the control file) go to ``out_dir``
    (default: the control file's folder)."""
    inp = read_hypodd_inp(inp_path)
    out = Path(out_dir) if out_dir is not None else Path(inp_path).parent
    out.mkdir(parents=True, exist_ok=True)
    return _Project(inp, out).run()


def project_summary(res: ProjectResult, inp_path) -> str:
    names = ", ".join(p.name for p in res.files)
    where = res.files[0].parent if res.files else Path(inp_path).parent
    return (
        f"relocated {res.n_relocated} events in {res.n_clusters} cluster(s) from {inp_path} (HypoDD 2.1b steps); "
        f"wrote {names} in {where}"
    )
