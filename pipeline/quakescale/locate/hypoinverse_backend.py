"""Locate a Hypoinverse project: with the builtin locator, or with the real ``hypoinverse``.

``locate_hypoinverse_project(command_file)`` reads a Hypoinverse command file, locates the events of
its PHS archive with the builtin locator under Hypoinverse 1.40's conventions and writes the SUM,
ARC and PRT outputs in hyp1.40's own layouts -- the project runs unchanged:

- weights: each reading's weight code through ``WET`` (default 1, .75, .5, .25; codes 4-9 weigh 0),
  S readings times ``SWT`` (default 1);
- station delays: ``DEL n file`` gives the delays of model ``n`` (and the HINV station file those of
  sets 1 and 2); P readings take the delays of the P model, S readings those of the S model paired
  with it by ``SAL``, or POS x the P delay when there is no S model;
- station elevations: CRH models put every station at the model top (elevations are not used);
- ``DIS``/``RMS``: the taper distances and residuals and the iteration where residual weighting
  starts, as the command file sets them; ``ERR``, ``MIN``, ``CON``;
- trial hypocentre: ``ZTR`` depth (negative or ``ZTR z T``: depth fixed); with the terminator
  format of ``H71`` (second argument) 1 the trial values on the terminator line, else the standard
  trial (under the earliest station); with 3 the hypocentre of the header line;
- outputs: ``SUM`` in the ``H71`` summary format (1 Y2000 179 columns, 2 Hypo71-2000, 3 readable,
  4 csv), ``ARC`` (179-column summary, one 120-column line per station with its P and S, the input
  terminator; ``CAR 3`` writes shadow lines), ``PRT`` (one block per event with the station table).

Commands the runner does not carry out are named once each in a warning (see
:data:`~quakescale.formats.hypoinverse.SUPPORTED_COMMANDS`).  ``backend="hypoinverse"`` instead runs
the executable (``hyp1.40`` by default; config ``locate.hypoinverse_exe``) on the same command file,
as an argument list with the command file fed on stdin (``@file``), and reads its SUM/ARC back.
"""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import QuakeScaleError
from ..formats import hypoinverse as hinv
from ..geo import azimuth_deg, epicentral_km
from ..times import utc_timestamp
from .locator import LocateParams, locate_events, travel_time_table

__all__ = [
    "find_hypoinverse",
    "run_hypoinverse",
    "locate_hypoinverse_project",
    "HypoinverseNotFound",
    "HypoinverseProjectError",
    "project_delays",
    "write_prt",
]

log = logging.getLogger("quakescale.locate")

EXE_NAMES = ("hyp1.40", "hyp2000", "hypoinverse", "hyp1.4")


class HypoinverseNotFound(QuakeScaleError, RuntimeError):
    pass


class HypoinverseProjectError(QuakeScaleError, ValueError):
    """A Hypoinverse project that cannot be located (missing or empty input)."""


def find_hypoinverse(exe: str | None = None) -> str | None:
    """Path of the Hypoinverse executable (``exe`` or one of the usual names) on PATH, or None."""
    for name in ([exe] if exe else []) + list(EXE_NAMES):
        found = shutil.which(name) if name else None
        if found:
            return found
    return None


def run_hypoinverse(command_file, exe: str | None = None, timeout_s: float = 3600.0):
    """Run Hypoinverse on ``command_file`` in its directory; returns ``(events, phases)`` read
    from the SUM and ARC files it names (empty phases when there is no ARC)."""
    command_file = Path(command_file).resolve()
    path = find_hypoinverse(exe)
    if path is None:
        raise HypoinverseNotFound(
            f"no Hypoinverse executable ({exe or ' / '.join(EXE_NAMES)}) on PATH; "
            "install hyp1.40 or use the builtin backend"
        )
    cmd = hinv.read_command_file(command_file)
    proc = subprocess.run(
        [path],
        input=f"@{command_file.name}\nSTO\n",
        text=True,
        capture_output=True,
        cwd=command_file.parent,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{path} failed on {command_file} (exit {proc.returncode}): {proc.stderr[-2000:] or proc.stdout[-2000:]}"
        )
    events = hinv.read_sum(cmd.sum) if cmd.sum and cmd.sum.exists() else pd.DataFrame()
    phases = hinv.read_arc(cmd.arc)[1] if cmd.arc and cmd.arc.exists() else pd.DataFrame()
    return events, phases


# ----------------------------------------------------------------------------- conventions
def _sid(site: str, net: str) -> str:
    return f"{net}.{site}" if net else site


def project_delays(cmd: hinv.HypCommands, stations: pd.DataFrame, for_location: bool = True) -> pd.DataFrame:
    """Station delays of a project as ``DataFrame(station_id, phase, delay_s)``.

    Delay sets by model number: sets 1 and 2 from the station file (columns 50-60), replaced by
    ``DEL n file`` for model ``n``.  P readings use the set of the P model (``SAL`` P model, else
    the lowest CRH model).  S readings without a paired S model use POS x the P delay (Hypoinverse's
    scaled S).  With an S model paired by ``SAL``, hyp1.40 *locates* with the P model's delay
    (POS is 1 for a paired model: ``for_location``) but prints and archives the residuals with the
    S model's own delay set (``for_location=False``); both are reproduced.  Delays of stations not
    in the station file are ignored, as Hypoinverse does; stations without a delay get 0."""
    sets: dict = {}
    st = stations.drop_duplicates("station_id")
    for k, col in ((1, "delay1_s"), (2, "delay2_s")):
        if col in st.columns:
            vals = pd.to_numeric(st[col], errors="coerce")
            if vals.notna().any() and (vals.fillna(0) != 0).any():
                sets[k] = dict(zip(st["station_id"], vals.fillna(0.0)))
    known = set(st["station_id"])
    files = []
    for mid, path in sorted(cmd.dels.items()):  # DEL 0 first, then the one-model files replace its sets
        where = cmd.where.get(f"DEL {mid}", "")
        if mid == 0:
            files += sorted(hinv.read_delays_all_models(path, where).items())
        else:
            files.append((mid, hinv.read_delays(path, where)))
    for mid, d in files:
        sets[mid] = {sid: v for (site, net), v in d.items() if (sid := _sid(site, net)) in known}
        unknown = [_sid(s, n) for (s, n) in d if _sid(s, n) not in known]
        if unknown:
            log.info(
                "%s: delays of model %d: %d station(s) not in the station file ignored (%s)",
                cmd.path,
                mid,
                len(unknown),
                ", ".join(unknown[:5]),
            )
    p_id, s_id = cmd.p_s_model_ids()
    rows = []
    pset = sets.get(p_id, {})
    for sid, v in pset.items():
        rows.append((sid, "P", float(v)))
    if s_id is not None and not for_location:
        for sid, v in sets.get(s_id, {}).items():
            rows.append((sid, "S", float(v)))
    elif s_id is not None:
        for sid, v in pset.items():
            rows.append((sid, "S", float(v)))
    else:
        pos = cmd.pos or 1.75
        for sid, v in pset.items():
            rows.append((sid, "S", float(v) * pos))
    return pd.DataFrame(rows, columns=["station_id", "phase", "delay_s"])


def _terminator_trial(term, minute: pd.Timestamp | None):
    """(time, lat, lon, depth, fix_char) trial values of a Hypoinverse-format terminator line."""
    out = [None, None, None, None, ""]
    if not isinstance(term, str) or not term.strip():
        return out

    def num(a, b, nd=0):
        x = term[a:b].strip() if len(term) > a else ""
        if not x:
            return None
        try:
            return float(x) if "." in x else int(x) / 10**nd
        except ValueError:
            return None

    hhmm, sec = term[6:10].strip(), num(10, 14, 2)
    if hhmm.isdigit() and len(hhmm) == 4 and sec is not None and minute is not None:
        out[0] = minute.floor("D") + pd.Timedelta(hours=int(hhmm[:2]), minutes=int(hhmm[2:]), seconds=sec)
    latd, latm = num(14, 16), num(17, 21, 2)
    if latd is not None and latm is not None:
        out[1] = (latd + latm / 60.0) * (-1 if term[16:17] == "S" else 1)
    lond, lonm = num(21, 24), num(25, 29, 2)
    if lond is not None and lonm is not None:
        out[2] = (lond + lonm / 60.0) * (1 if term[24:25] == "E" else -1)
    out[3] = num(29, 34, 2)
    out[4] = term[34:35].strip() if len(term) > 34 else ""
    return out


def _depth_datum(res: pd.DataFrame, elev: pd.Series) -> pd.Series:
    """hyp1.40's depth datum (m): mean elevation of the 5 closest distinct stations of the event
    with a known (non-zero) elevation."""
    r = res.assign(elev=res["station_id"].map(elev).fillna(0.0))
    r = r[r["elev"] != 0].sort_values(["event_id", "distance_km"]).drop_duplicates(["event_id", "station_id"])
    return r.groupby("event_id").head(5).groupby("event_id")["elev"].mean().round()


# ----------------------------------------------------------------------------- hyp1.40 iteration
_KM_PER_DEG = 111.19  # Hypoinverse's degree length


def _hyp_settings(cmd: hinv.HypCommands) -> dict:
    """hyp1.40's iteration constants: its defaults (CON 20 .04 .001; DAM 7 30 .5 .9 .012 .02 .6 50 250)
    and the DIS/RMS/ERR/SWT/WET/ZTR values of the command file."""
    dis = list(cmd.dis or ()) + [None] * 4
    rms = list(cmd.rms or ()) + [None] * 4
    wet = [float(x) for x in (cmd.wet or ())][:4]
    wet += list((1.0, 0.75, 0.5, 0.25)[len(wet) :])
    return dict(
        itrlim=int(cmd.itrlim) if cmd.itrlim is not None else 20,
        dquit=0.04,
        drqt=0.001,
        dxfix=7.0,
        dzmax=30.0,
        dzair=0.5,
        damp=0.9,
        eigtol=0.012,
        rback=0.02,
        bacfac=0.6,
        dxmax=50.0,
        itrdis=int(dis[0]) if dis[0] is not None else 4,
        discut=float(dis[1]) if dis[1] is not None else 50.0,
        disw1=float(dis[2]) if dis[2] is not None else 1.0,
        disw2=float(dis[3]) if dis[3] is not None else 3.0,
        itrres=int(rms[0]) if rms[0] is not None else 4,
        rmscut=float(rms[1]) if rms[1] is not None else 0.16,
        rmsw1=float(rms[2]) if rms[2] is not None else 1.5,
        rmsw2=float(rms[3]) if rms[3] is not None else 3.0,
        nres=2,
        rderr=float(cmd.err) if cmd.err is not None else 0.15,
        ercof=1.0,
        swt=float(cmd.swt) if cmd.swt is not None else 1.0,
        wet=tuple(wet),
    )


def _locate_one_hyp140(tobs, is_s, wq, dly, slat, slon, sid, tt, trial, fix_depth: bool, h: dict):
    """One event by hyp1.40's iteration (manual appendices 2-3): readings ``tobs`` (s after the
    event minute, 0.01 s), ``wq`` their weight-code weights (S already times SWT), ``dly`` their
    station delays; ``trial`` = (t1, lat, lon, z).  Returns a dict of the solution or None when
    fewer than 4 readings carry weight."""
    t1, clat, clon, z1 = trial
    m = len(tobs)
    if m < 4 or (wq > 0).sum() < 4:
        return None
    itr, n_par = 0, 3
    lzfix = True
    done = False
    rmsmin = oldrms = rr = 1e4
    jbac = 0
    y = np.zeros(4)
    conerr = False
    max_loops = h["itrlim"] + 30
    while True:
        itr += 1
        coslat = math.cos(math.radians(clat))
        dy = (slat - clat) * _KM_PER_DEG
        dx = (slon - clon) * _KM_PER_DEG * coslat
        dist = np.hypot(dx, dy)
        az = np.arctan2(dx, dy)
        # second-closest weighted station
        wst = np.unique(np.round(dist[wq > 0], 6))
        d2 = wst[1] if len(wst) > 1 else (wst[0] if len(wst) else 0.0)
        scale = max(d2, h["discut"])
        full, zero = scale * h["disw1"], scale * h["disw2"]
        wfac = np.ones(m)
        if itr >= h["itrdis"]:
            far = dist >= full
            wfac = np.where(
                far, np.where(dist > zero, 0.0, 0.5 * np.cos(np.pi * (dist - full) / (zero - full)) + 0.5), 1.0
            )
        w = wq * wfac
        z_eval = np.full(m, max(z1, 0.0))
        T = np.zeros(m)
        dtdd = np.zeros(m)
        dtdz = np.zeros(m)
        for ph, msk in (("P", ~is_s), ("S", is_s)):
            if msk.any():
                a, b, c = tt.time(ph, dist[msk], z_eval[msk], 0.0)
                T[msk], dtdd[msk], dtdz[msk] = a, b, c
        tcal = np.floor(T * 100.0 + 1e-9) / 100.0  # hyp1.40 keeps calculated times in whole 0.01 s
        r = tobs - tcal - dly - t1
        A = np.column_stack([np.ones(m), -dtdd * np.cos(az), -dtdd * np.sin(az), dtdz])
        # residual weighting (applied NRES times), then normalisation
        for _ in range(h["nres"]):
            wn2 = (w**2).sum()
            if wn2 == 0:
                return None
            rmswt = math.sqrt(((w * r) ** 2).sum() / wn2)
            tref = max(rmswt, h["rmscut"])
            width = (h["rmsw2"] - h["rmsw1"]) * tref
            if itr >= h["itrres"]:
                x = (np.abs(r) - h["rmsw1"] * tref) / width
                w = np.where(w == 0, 0.0, np.where(x > 1, 0.0, np.where(x > 0, w * (0.5 + 0.5 * np.cos(np.pi * x)), w)))
                counted = w != 0
            else:
                counted = np.ones(m, bool)
            nwr, wnorm = int(counted.sum()), float(w[counted].sum())
        if wnorm <= 0:
            return None
        w = w * (nwr / wnorm)
        wn2 = (w**2).sum()
        rms = math.sqrt(((r * w) ** 2).sum() / wn2)
        nwr = int((w > 0.1).sum())
        if nwr < 4:
            return None
        if itr > h["itrdis"] and itr > h["itrres"] and not done:
            done = (((abs(oldrms - rms) < h["drqt"]) or rr < h["dquit"]) and (not lzfix or fix_depth)) or (
                itr > h["itrlim"] and rms < rmsmin + h["rback"]
            )
        if itr > max_loops:
            done, conerr = True, True
        if rms > rmsmin + h["rback"] and not done:
            jbac += 1
            oldrms = rms
            rmsmin = min(rmsmin, rms)
            y = -h["bacfac"] * y if jbac == 1 else (1 - h["bacfac"]) * y
            rr = rr * (h["bacfac"] if jbac == 1 else 1 - h["bacfac"])
            conerr = True
        else:
            Aw = A[:, :n_par] * w[:, None]
            U, sv, Vt = np.linalg.svd(Aw, full_matrices=False)
            utr = U.T @ (r * w)
            keep = sv > h["eigtol"]
            y = np.zeros(4)
            y[:n_par] = Vt[keep].T @ (utr[keep] / (sv[keep] + 0.006))
            y *= 0.5 * h["damp"] if itr > int(h["itrlim"] * 0.6) else h["damp"]
            nfree = int(keep.sum())
            if done:
                sigsq = h["rderr"] ** 2 + h["ercof"] * rms**2
                V = Vt.T
                cov = np.zeros((4, 4))
                cov[:n_par, :n_par] = sigsq * (V / (sv**2 + h["eigtol"] ** 2)) @ V.T
                imp = (U**2).sum(1)
                return dict(
                    t1=t1,
                    lat=clat,
                    lon=clon,
                    z=z1,
                    rms=rms,
                    w=w,
                    r=r,
                    dist=dist,
                    az=az,
                    cov=cov,
                    n_par=n_par,
                    nfree=nfree,
                    itr=itr,
                    conerr=conerr,
                    importance=imp,
                    tcal=tcal,
                    dtdd=dtdd,
                    dtdz=dtdz,
                )
            conerr = False
            if z1 + y[3] < 0.0:
                conerr = True
                tmp = -h["dzair"] * z1 / y[3]
                y[3] = -h["dzair"] * z1
                y[:3] *= tmp
            if abs(y[3]) > h["dzmax"]:
                conerr = True
                y[3] *= h["dzmax"] / (abs(y[3]) + h["dzmax"])
            oldrms = rms
            rmsmin = min(rmsmin, rms)
            jbac = 0
            rr = float(np.sqrt((y[1:] ** 2).sum()))
            if rr > h["dxmax"]:
                conerr = True
                y *= h["dxmax"] / rr
                rr = float(np.sqrt((y[1:] ** 2).sum()))
        t1 += y[0]
        clat += y[1] / _KM_PER_DEG
        clon += y[2] / (_KM_PER_DEG * math.cos(math.radians(clat)))
        z1 += y[3]
        if rr < h["dxfix"] and not fix_depth:
            lzfix = False
        n_par = 3 if lzfix else 4


def locate_hyp140(
    events: pd.DataFrame,
    picks: pd.DataFrame,
    stations: pd.DataFrame,
    model,
    cmd: hinv.HypCommands,
    delays: pd.DataFrame,
    trials: pd.DataFrame,
    tt=None,
):
    """Locate ``events`` as hyp1.40 does (see :func:`_locate_one_hyp140`); returns ``(located,
    readings)`` in the columns :func:`locate_events` returns (plus ``importance``), the readings
    with ``residual_s``, ``weight`` (hyp1.40's normalised final weight), ``distance_km``,
    ``azimuth_deg``, ``travel_time_s``.  ``trials``: event_id, lat, lon, depth_km (NaN: the
    standard trial under the earliest P), fix_depth."""
    h = _hyp_settings(cmd)
    if tt is None:
        tt = travel_time_table(model, 300.0, 60.0)
    sta = stations.drop_duplicates("station_id").set_index("station_id")
    dl = {(r.station_id, r.phase): float(r.delay_s) for r in delays.itertuples()} if len(delays) else {}
    tri = trials.set_index("event_id")
    ev_rows, rd_rows = [], []
    pk_by = {k: g for k, g in picks.groupby("event_id", sort=False)}
    for e in events.to_dict("records"):
        eid = e["event_id"]
        g = pk_by.get(eid)
        minute = utc_timestamp(e["time"]).floor("min")
        row = dict(e, located=False)
        if g is None or len(g) < 4:
            ev_rows.append(row)
            continue
        g = g.reset_index(drop=True)
        tobs = np.round((pd.to_datetime(g["time"], utc=True) - minute).dt.total_seconds().to_numpy(float), 2)
        is_s = (g["phase"] == "S").to_numpy()
        codes = pd.to_numeric(g["weight_code"], errors="coerce").fillna(0).astype(int).to_numpy()
        wq = np.where(codes < 4, np.asarray(h["wet"] + (0.0,) * 6)[np.clip(codes, 0, 9)], 0.0)
        wq = wq * np.where(is_s, h["swt"], 1.0)
        if "station_weight" in sta.columns:  # HINV station weight code (column 15)
            wq = wq * sta.loc[g["station_id"], "station_weight"].fillna(1.0).to_numpy(float)
        dly = np.array([dl.get((s, ph), 0.0) for s, ph in zip(g["station_id"], g["phase"])])
        slat = sta.loc[g["station_id"], "latitude"].to_numpy(float)
        slon = sta.loc[g["station_id"], "longitude"].to_numpy(float)
        t = tri.loc[eid]
        pmask = (~is_s) & (codes < 4)
        k0 = int(np.argmin(np.where(pmask, tobs, np.inf))) if pmask.any() else int(np.argmin(tobs))
        lat0 = float(t["lat"]) if pd.notna(t["lat"]) else slat[k0] + 0.005
        lon0 = float(t["lon"]) if pd.notna(t["lon"]) else slon[k0] - 0.005 * np.sign(slon[k0] or 1.0)
        t10 = float(t["t1"]) if "t1" in t and pd.notna(t["t1"]) else tobs[k0] - 2.0
        sol = _locate_one_hyp140(
            tobs,
            is_s,
            wq,
            dly,
            slat,
            slon,
            g["station_id"].to_numpy(),
            tt,
            (t10, lat0, lon0, float(t["depth_km"])),
            bool(t["fix_depth"]),
            h,
        )
        if sol is None:
            ev_rows.append(row)
            continue
        cov = sol["cov"]
        c3 = cov[1:, 1:]
        vals, vecs = np.linalg.eigh(c3)
        order = np.argsort(vals)[::-1]
        vals, vecs = np.clip(vals[order], 0, None), vecs[:, order]
        serr = np.minimum(np.sqrt(vals), 99.0)
        # axes: rows 0 north, 1 east, 2 down
        horiz = serr * np.hypot(vecs[0], vecs[1])
        vert = serr * np.abs(vecs[2])
        azs, dips = [], []
        for j in range(3):
            hv = math.hypot(vecs[0, j], vecs[1, j])
            a = math.degrees(math.atan2(vecs[1, j], vecs[0, j])) if hv > 0 else 0.0
            dp = math.degrees(math.atan2(vecs[2, j], hv)) if hv > 0 else 90.0
            if dp < 0:
                dp, a = -dp, a + 180
            azs.append(a % 360)
            dips.append(dp)
        w = sol["w"]
        used = w > 0.1
        lat_f, lon_f = sol["lat"], sol["lon"]
        epi = epicentral_km(lat_f, lon_f, slat, slon)
        az = azimuth_deg(lat_f, lon_f, slat, slon)
        azu = np.sort(np.asarray(az)[w > 0]) if (w > 0).any() else np.array([])
        gap = float(max(np.max(np.diff(azu)) if len(azu) > 1 else 0.0, (azu[0] + 360 - azu[-1]) if len(azu) else 360.0))
        row.update(
            time=minute + pd.to_timedelta(sol["t1"], unit="s"),
            latitude=lat_f,
            longitude=lon_f,
            depth_km=sol["z"],
            rms_s=sol["rms"],
            gap_deg=gap,
            dmin_km=float(np.min(np.asarray(epi)[w > 0])) if (w > 0).any() else np.nan,
            n_p=int((used & ~is_s).sum()),
            n_s=int((used & is_s).sum()),
            n_stations=int(g.loc[used, "station_id"].nunique()),
            erh_km=min(float(horiz.max()), 99.0),
            erz_km=min(float(vert.max()), 99.0) if sol["n_par"] == 4 else np.nan,
            depth_fixed=sol["nfree"] < 4,
            located=True,
            n_iter=sol["itr"],
            convergence_problem=sol["conerr"],
        )
        for j in range(3):
            row[f"err{j + 1}_az_deg"], row[f"err{j + 1}_dip_deg"], row[f"err{j + 1}_km"] = azs[j], dips[j], serr[j]
        ev_rows.append(row)
        rd = pd.DataFrame(
            {
                "event_id": eid,
                "station_id": g["station_id"],
                "phase": g["phase"],
                "time": g["time"],
                "residual_s": sol["r"],
                "weight": w,
                "travel_time_s": sol["tcal"],
                "distance_km": np.asarray(epi, float),
                "azimuth_deg": np.asarray(az, float),
                "importance": sol["importance"],
                "_k": np.arange(len(g)),
                # emergence angle at the source from the ray's slowness components (90 = horizontal, > 90 upgoing)
                "takeoff_deg": np.degrees(np.arctan2(sol["dtdd"], -sol["dtdz"])),
            }
        )
        rd_rows.append(rd)
    located = pd.DataFrame(ev_rows)
    readings = (
        pd.concat(rd_rows, ignore_index=True)
        if rd_rows
        else pd.DataFrame(
            columns=[
                "event_id",
                "station_id",
                "phase",
                "time",
                "residual_s",
                "weight",
                "travel_time_s",
                "distance_km",
                "azimuth_deg",
                "importance",
                "_k",
            ]
        )
    )
    return located, readings


# ----------------------------------------------------------------------------- outputs
_MONTHS = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()


def write_prt(events: pd.DataFrame, phases: pd.DataFrame, path, cmd: hinv.HypCommands) -> None:
    """A hyp1.40-style printout: a short run header, then per event the final hypocentre block
    (origin, location, RMS, errors, counts, depth datum) and the station table
    (``STA NET COM L CR DIST AZM AN P/S WT SEC (TOBS -TCAL -DLY =RES) WT``), one row per reading,
    S rows of a station below its P row, as hyp1.40 prints them."""
    out = [" HYPOINVERSE 2000 (QuakeScale builtin runner, hyp1.40 conventions)", ""]
    out.append(f" COMMANDS:    {cmd.path.name}")
    out.append(f" STATIONS:    {cmd.sta.name if cmd.sta else ''}")
    out.append(f" PHASES:       {cmd.phs.name if cmd.phs else ''}")
    for mid, f in sorted(cmd.crh.items()):
        out.append(f" HOMOGENEOUS LAYER CRUST {mid}:  {f.name}")
    for mid, f in sorted(cmd.dels.items()):
        out.append(f" DELAYS {mid}:   {f.name}")
    out.append("")
    by_ev = {k: g for k, g in phases.groupby("event_id", sort=False)} if len(phases) else {}
    for n, e in enumerate(events.to_dict("records"), 1):
        t = utc_timestamp(e["time"]).round("10ms")
        sec = t.second + t.microsecond / 1e6
        minute = t.floor("min")
        out.append(" " + "#" * 84)
        out.append(
            f"  {t.day:2d} {_MONTHS[t.month - 1]} {t.year:4d}, {t.hour:2d}:{t.minute:02d}  SEQUENCE NO.{n:5d}, "
            f"ID NO.{int(e.get('file_event_id', e['event_id']) or 0):10d}"
        )
        lat, lon = float(e["latitude"]), float(e["longitude"])
        la, lo = abs(lat), abs(lon)
        out.append(" " + "-" * 84)
        out.append(" YEAR MO DA  --ORIGIN--  --LAT N-  --LON W--  DEPTH-M RMS   ERH   ERZ  XMAG1 FMAG1 PMAG GEOID-DEP")
        out.append(
            f" {t.year:4d}-{t.month:02d}-{t.day:02d}  {t.hour:02d}{t.minute:02d}{sec:6.2f}"
            f"{int(la):4d}{'S' if lat < 0 else ' '}"
            f"{(la - int(la)) * 60:5.2f}{int(lo):5d}{'E' if lon >= 0 else 'W'}{(lo - int(lo)) * 60:5.2f}"
            f"{float(e['depth_km']):7.2f}{hinv.fortran_float(e.get('rms_s'), 6, 2)}"
            f"{hinv.fortran_float(e.get('erh_km'), 6, 2)}"
            f"{hinv.fortran_float(e.get('erz_km'), 6, 2)}{'':23s}{hinv.fortran_float(e.get('geoid_depth_km'), 10, 2)}"
        )
        out.append(" NSTA NPHS  DMIN MODEL GAP ITR NFM NWR NWS NVR REMRKS-AVH")
        out.append(
            f" {int(e.get('n_stations', 0) or 0):4d}{int(e.get('n_readings', 0) or 0):5d}"
            f"{hinv.fortran_float(e.get('dmin_km'), 6, 1)}  "
            f"{str(e.get('crust_model', ''))[:3]:3s}  {hinv.fortran_int(e.get('gap_deg'), 3)}"
            f"{hinv.fortran_int(e.get('n_iter'), 4)}   0{hinv.fortran_int(e.get('n_phases'), 4)}"
            f"{hinv.fortran_int(e.get('n_s'), 4)}{hinv.fortran_int(e.get('n_valid'), 4)} "
            f"{e.get('program_remark', '') or ' '}"
        )
        if pd.notna(e.get("ext_mag")):
            out.append(f" EXTERNAL MAG={float(e['ext_mag']):5.2f}  TYPE={e.get('ext_mag_type', '')}")
        out.append(" DEPDAT " + hinv.fortran_int(e.get("depth_datum_m"), 5))
        out.append("")
        out.append(" STA NET COM L CR DIST AZM  AN P/S WT   SEC (TOBS -TCAL -DLY  =RES)  WT   SR  INFO")
        g = by_ev.get(e["event_id"])
        if g is None:
            out.append("")
            continue
        g = g[g["phase"].isin(["P", "S"])].copy()
        g["_order"] = g["distance_km"].fillna(1e9)
        g["_ph"] = (g["phase"] == "S").astype(int)
        g = g.sort_values(["_order", "station_id", "_ph"], kind="stable")
        last = None
        for r in g.to_dict("records"):
            tobs_abs = (utc_timestamp(r["time"]) - minute).total_seconds()
            tobs = tobs_abs - sec
            dly = 0.0 if pd.isna(r.get("delay_s")) else float(r["delay_s"])
            res = float(r["residual_s"]) if pd.notna(r.get("residual_s")) else 0.0
            tcal = tobs - dly - res
            wt = float(r["weight_used"]) if pd.notna(r.get("weight_used")) else 0.0
            wc = r.get("weight_code")
            wcs = " " if wc is None or pd.isna(wc) or int(wc) == 0 else str(int(wc))[:1]
            same = last == r["station_id"]
            head = (
                (" " * 8 + r["phase"] + " " * 23)
                if same
                else (
                    f" {str(r.get('station', ''))[:5]:5s}{str(r.get('network', ''))[:2]:2s}"
                    f"{'S' if r['phase'] == 'S' else ' '}"
                    f"{str(r.get('channel', '') or '')[:3]:3s}     {hinv.fortran_float(r.get('distance_km'), 5, 1)}"
                    f"{hinv.fortran_int(r.get('azimuth_deg'), 4)}{hinv.fortran_int(r.get('takeoff_deg'), 4)}  "
                )
            )
            out.append(
                f"{head}{r['phase']} {wcs} {tobs_abs:7.2f}{tobs:6.2f}{tcal:6.2f}{dly:5.2f}{res:6.2f}"
                f"{'*' if wt < 0.1 else ' '}{wt:5.2f}{'S' if r['phase'] == 'S' else ' '}"
            )
            last = r["station_id"]
        out.append("")
    Path(path).write_text("\n".join(out) + "\n")


# ----------------------------------------------------------------------------- the runner
def _require_file(cmd: hinv.HypCommands, key: str, p) -> None:
    if p is None:
        raise HypoinverseProjectError(f"{cmd.path}: no {key} command; the builtin runner needs it")
    if not Path(p).exists():
        raise HypoinverseProjectError(f"{cmd.where.get(key, cmd.path)}: {key}: file not found: {p}")


def locate_hypoinverse_project(
    command_file, backend: str = "builtin", exe: str | None = None, out_dir=None, engine: str = "hyp1.40", **overrides
):
    """Locate the project of a Hypoinverse command file and write its SUM / ARC / PRT outputs.

    ``engine``: ``"hyp1.40"`` (default) iterates each event as hyp1.40 does (its trial, depth
    freeing, SVD step, damping, back-off and stopping rules), so the results match hyp1.40's own;
    ``"quakescale"`` runs the pipeline's batched locator (:func:`locate_events`) with the command
    file's settings mapped onto :class:`LocateParams` (``overrides`` are applied on top).
    ``out_dir`` redirects the outputs (same file names) instead of the paths in the command file.
    Returns ``(events, phases)`` as written (phases with residuals, used weights and delays)."""
    if engine not in ("hyp1.40", "quakescale"):
        raise ValueError(f"engine must be 'hyp1.40' or 'quakescale', got {engine!r}")
    if overrides and engine == "hyp1.40":
        raise ValueError(f"locator settings {sorted(overrides)} apply to engine='quakescale' only")
    if backend == "hypoinverse":
        return run_hypoinverse(command_file, exe=exe)
    if backend != "builtin":
        raise ValueError(f"backend must be 'builtin' or 'hypoinverse', got {backend!r}")
    cmd = hinv.read_command_file(command_file)
    for name, where in cmd.unsupported.items():
        log.warning("%s: %s is not supported by the builtin Hypoinverse runner; ignored", where, name)
    _require_file(cmd, "STA", cmd.sta)
    _require_file(cmd, "PHS", cmd.phs)
    if not cmd.crh:
        raise HypoinverseProjectError(f"{cmd.path}: no CRH model command; the builtin runner needs one")
    model = cmd.model()
    stations_all = hinv.read_sta(cmd.sta)
    stations = stations_all.drop_duplicates("station_id").reset_index(drop=True)
    ev_in, ph_in = hinv.read_arc(cmd.phs)
    if not len(ev_in):
        raise HypoinverseProjectError(f"{cmd.where.get('PHS', cmd.path)}: PHS file {cmd.phs} has no events")

    params = LocateParams.from_any(cmd.locate_params(), **overrides)
    params.use_initial_depth = True
    delays = project_delays(cmd, stations)
    params.station_delays = delays if len(delays) else None

    picks = (
        ph_in[ph_in["phase"].isin(["P", "S"])].copy()
        if len(ph_in)
        else pd.DataFrame(columns=["event_id", "station_id", "phase", "time", "weight_code"])
    )
    picks["weight_code"] = pd.to_numeric(picks.get("weight_code"), errors="coerce").fillna(0).clip(0, 4)
    unknown = ~picks["station_id"].isin(stations["station_id"])
    if unknown.any():
        log.warning(
            "%s: %d reading(s) of station(s) not in the station file skipped (%s)",
            cmd.phs,
            int(unknown.sum()),
            ", ".join(sorted(set(picks.loc[unknown, "station_id"]))[:8]),
        )
        picks = picks[~unknown]
    picks = picks.reset_index(drop=True)

    # trial hypocentres: ZTR depth (or the terminator's), epicentre from the terminator (H71 x 1 x),
    # the header (H71 x 3 x) or the standard trial under the earliest P
    term_fmt = cmd.h71[1]
    trials = pd.DataFrame(
        {
            "event_id": ev_in["event_id"],
            "lat": np.nan,
            "lon": np.nan,
            "t1": np.nan,
            "depth_km": params.trial_depth_km,
            "fix_depth": bool(cmd.ztr_fixed),
        }
    )
    for i, e in enumerate(ev_in.to_dict("records")):
        minute = utc_timestamp(e["time"]).floor("min")
        if term_fmt == 3:
            if pd.notna(e["latitude"]) and (abs(e["latitude"]) > 1e-9 or abs(e["longitude"]) > 1e-9):
                trials.loc[i, ["lat", "lon"]] = [e["latitude"], e["longitude"]]
            trials.loc[i, "t1"] = (utc_timestamp(e["time"]) - minute).total_seconds()
        elif term_fmt == 1:
            tt_, tlat, tlon, tz, fixc = _terminator_trial(e.get("terminator"), minute)
            if tlat is not None and tlon is not None:
                trials.loc[i, ["lat", "lon"]] = [tlat, tlon]
            if tt_ is not None:
                trials.loc[i, "t1"] = (tt_ - minute).total_seconds()
            if tz is not None:
                trials.loc[i, "depth_km"] = abs(tz)
                trials.loc[i, "fix_depth"] = bool(tz < 0) or bool(cmd.ztr_fixed)
            if fixc == "-":
                trials.loc[i, "fix_depth"] = True
            elif fixc in ("X", "O"):
                log.warning(
                    "%s: event %s: fixed-hypocentre flag %r on the terminator not supported; located freely",
                    cmd.phs,
                    e["event_id"],
                    fixc,
                )

    if engine == "quakescale":  # the table the pipeline's locate stage uses
        tt = travel_time_table(model, 300.0, max(params.max_depth_km + 1.0, 40.0))
    else:  # every layer of the CRH model (hyp1.40 has no depth limit), out to the network's extent
        span = 0.0
        if len(stations) > 1:
            used = stations[stations["station_id"].isin(picks["station_id"])]
            la, lo = used["latitude"].to_numpy(float), used["longitude"].to_numpy(float)
            d = epicentral_km(la[:, None], lo[:, None], la[None, :], lo[None, :])
            span = float(np.max(d)) if len(used) else 0.0
        tt = travel_time_table(
            model,
            float(np.clip(span + 100.0, 150.0, 400.0)),
            max(params.max_depth_km + 1.0, float(model.top_km[-1]) + 10.0, 40.0),
        )
    if engine == "quakescale":  # the pipeline's batched locator under the project's settings
        init = ev_in.copy()
        init["latitude"], init["longitude"], init["depth_km"] = trials["lat"], trials["lon"], trials["depth_km"]
        loc, res = locate_events(
            init[["event_id", "time", "latitude", "longitude", "depth_km"]], picks, stations, model, params, tt=tt
        )
        res = res.assign(_k=res.groupby("event_id").cumcount(), importance=np.nan)
        w = res["weight"].fillna(0.0).clip(lower=0)
        wsum = w.groupby(res["event_id"]).transform("sum")
        npos = (w > 0).groupby(res["event_id"]).transform("sum")
        res["weight"] = np.where(wsum > 0, w * npos / wsum.where(wsum > 0, 1.0), 0.0)
    else:
        loc, res = locate_hyp140(ev_in, picks, stations, model, cmd, delays, trials, tt=tt)

    # readings with their final weights (normalised as hyp1.40 prints them) and delays
    out_ph = picks.copy()
    out_ph["_k"] = out_ph.groupby("event_id").cumcount()
    out_ph = out_ph.drop(
        columns=[
            c
            for c in ("residual_s", "weight_used", "distance_km", "azimuth_deg", "delay_s", "importance")
            if c in out_ph.columns
        ]
    )
    if "takeoff_deg" not in res.columns:
        res["takeoff_deg"] = np.nan
    out_ph = out_ph.drop(columns=[c for c in ("takeoff_deg",) if c in out_ph.columns])
    out_ph = out_ph.merge(
        res[["event_id", "_k", "residual_s", "weight", "distance_km", "azimuth_deg", "importance", "takeoff_deg"]],
        on=["event_id", "_k"],
        how="left",
    ).drop(columns=["_k"])
    out_ph["weight_used"] = out_ph.pop("weight").fillna(0.0)
    # the station file's full code goes to the outputs (as hyp1.40 writes it): the reading's own
    # channel when the station file lists it for that site, else the station's first line
    chans = stations_all.groupby("station_id")["channel"].agg(list)
    first = stations_all.drop_duplicates("station_id").set_index("station_id")
    ch_in = out_ph.get("channel", pd.Series("", index=out_ph.index)).fillna("").astype(str)
    keep = [c in chans.get(sid, []) for sid, c in zip(out_ph["station_id"], ch_in)]
    out_ph["channel"] = np.where(keep, ch_in, out_ph["station_id"].map(first["channel"]).fillna(""))
    out_ph["component"] = np.where(
        keep, out_ph.get("component", ""), out_ph["station_id"].map(first["component"]).fillna("")
    )
    dl = {(r.station_id, r.phase): r.delay_s for r in delays.itertuples()} if len(delays) else {}
    shown = project_delays(cmd, stations, for_location=False)
    dl_shown = {(r.station_id, r.phase): r.delay_s for r in shown.itertuples()} if len(shown) else {}
    d_loc = np.array([dl.get((s, p), 0.0) for s, p in zip(out_ph["station_id"], out_ph["phase"])])
    out_ph["delay_s"] = [dl_shown.get((s, p), 0.0) for s, p in zip(out_ph["station_id"], out_ph["phase"])]
    out_ph["residual_s"] = out_ph["residual_s"] + d_loc - out_ph["delay_s"]  # as hyp1.40 prints and archives them

    # summary values as hyp1.40 counts them
    wu = out_ph["weight_used"]
    g = out_ph.assign(
        w01=wu > 0.1, s01=(wu > 0.1) & (out_ph["phase"] == "S"), valid=out_ph["weight_code"].fillna(0) < 4
    )
    cnt = g.groupby("event_id").agg(
        n_phases=("w01", "sum"), n_s=("s01", "sum"), n_valid=("valid", "sum"), n_readings=("phase", "size")
    )
    loc = loc.drop(columns=[c for c in cnt.columns if c in loc.columns]).merge(cnt, on="event_id", how="left")
    loc["located"] = loc["located"].fillna(False).astype(bool)
    loc["depth_fixed"] = loc["depth_fixed"].fillna(False).astype(bool) if "depth_fixed" in loc else False
    for c in ("n_phases", "n_s", "n_valid", "n_readings"):
        loc[c] = loc[c].fillna(0).astype(int)
    elev = stations.set_index("station_id")["elevation_m"]
    datum = _depth_datum(out_ph.dropna(subset=["distance_km"]), elev)
    loc["depth_datum_m"] = loc["event_id"].map(datum).fillna(0.0)
    loc["geoid_depth_km"] = loc["depth_km"] - loc["depth_datum_m"] / 1000.0
    loc["crust_model"] = cmd.model_code()
    loc["model_type"] = "H"
    src = ev_in.set_index("event_id")
    loc["file_event_id"] = loc["event_id"].map(src["file_event_id"])
    loc["ext_mag"] = loc["event_id"].map(src["ext_mag"])
    loc["ext_mag_type"] = loc["event_id"].map(src["ext_mag_type"]).fillna("")
    for c in ("terminator", "shadow", "terminator_shadow", "analyst_remark", "region", "version"):
        loc[c] = loc["event_id"].map(src[c])
    loc["magnitude"] = np.nan  # the runner computes no magnitude; the input's is passed through as external
    loc["mag_type"] = None
    conv = loc["convergence_problem"].fillna(False).astype(bool) if "convergence_problem" in loc else False
    loc["program_remark"] = np.where(loc["depth_fixed"], "-", np.where(conv, "#", ""))
    min_ok = loc["located"] & (loc["n_phases"] >= params.min_picks)
    if (~min_ok).any():
        log.warning(
            "%s: %d event(s) with fewer than %d weighted readings (MIN) not written (as hyp1.40 skips them)",
            cmd.phs,
            int((~min_ok).sum()),
            params.min_picks,
        )
    written = loc[min_ok].reset_index(drop=True)
    out_ph = out_ph[out_ph["event_id"].isin(written["event_id"])]
    # hyp1.40 lists each event's stations in distance order (P and S of a station together)
    out_ph = out_ph.assign(_d=out_ph["distance_km"].fillna(np.inf)).sort_values(["event_id", "_d"], kind="stable")
    out_ph = out_ph.drop(columns=["_d"])
    amp = ph_in[~ph_in["phase"].isin(["P", "S"])] if len(ph_in) else ph_in
    out_all = (
        pd.concat([out_ph, amp[amp["event_id"].isin(written["event_id"])]], ignore_index=True) if len(amp) else out_ph
    )

    sum_path, arc_path, prt_path = cmd.sum, cmd.arc, cmd.prt
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        sum_path = out_dir / (cmd.sum.name if cmd.sum else "out.sum")
        arc_path = out_dir / (cmd.arc.name if cmd.arc else "out.arc")
        prt_path = out_dir / cmd.prt.name if cmd.prt else None
    if sum_path is not None:
        hinv.write_sum(
            written,
            sum_path,
            fmt=cmd.h71[0] if cmd.h71[0] in (1, 2, 3, 4) else 1,
            mags=cmd.rdm_mags,
            blank_mags=cmd.rdm_blank,
        )
    if arc_path is not None:
        hinv.write_arc(written, out_all, arc_path, shadows=cmd.car == 3, car=cmd.car)
    if prt_path is not None:
        write_prt(written, out_ph, prt_path, cmd)
    return written, out_all
