"""Catalog differential times (the ph2dt step of HypoDD).

:func:`ph2dt` reproduces ph2dt 1.3/2.1 line for line: for each event (in file order) the
neighbours are visited nearest first (hypocentral distance, single precision as in Fortran,
Numerical-Recipes heapsort index for the order) until MAXNGH strong neighbours are found or
the next neighbour is beyond MAXSEP; a pair already written from the other side is not written
again (it still counts as a strong neighbour); common station/phase observations farther than
MAXDIST from the pair centroid are dropped, outliers above the separation/delay line
(|t1-t2| > sep/v + 0.5 s, v = 4 km/s for P and 2.3 km/s for S) are dropped; a pair with at least
MINOBS observations is written with at most MAXOBS of them, nearest stations first; a pair with at
least MINLNK observations is a strong neighbour.

Neighbours are searched with a k-d tree so the cost grows with the number of pairs, not with the
square of the number of events; the visiting order is the same as Fortran's full sort.

:func:`catalog_pairs` is the pipeline face: events + picks (absolute times) + stations in,
a dt.ct table out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from ..config import RelocateSection
from ..locate.locator import auto_distance_taper

__all__ = [
    "nr_indexx",
    "ph2dt",
    "ph2dt_fast",
    "Ph2dtStats",
    "catalog_pairs",
    "phases_from_picks",
    "auto_max_station_km",
    "resolve_max_station_km",
    "PAIR_FIELDS",
]

KMPERDEG = np.float32(111.1949266)
PI = np.float32(3.141593)


def nr_indexx(a) -> np.ndarray:
    """Heapsort index (Numerical Recipes INDEXX) -- the order ph2dt uses, ties included.
    Returns 0-based indices."""
    arr = list(a)
    n = len(arr)
    indx = list(range(n))
    if n < 2:
        return np.asarray(indx, np.int64)
    # 1-based emulation
    ix = [0] + [i + 1 for i in range(n)]
    arr1 = [None] + arr
    l = n // 2 + 1
    ir = n
    while True:
        if l > 1:
            l -= 1
            indxt = ix[l]
            q = arr1[indxt]
        else:
            indxt = ix[ir]
            q = arr1[indxt]
            ix[ir] = ix[1]
            ir -= 1
            if ir == 1:
                ix[1] = indxt
                break
        i = l
        j = l + l
        while j <= ir:
            if j < ir and arr1[ix[j]] < arr1[ix[j + 1]]:
                j += 1
            if q < arr1[ix[j]]:
                ix[i] = ix[j]
                i = j
                j = j + j
            else:
                j = ir + 1
        ix[i] = indxt
    return np.asarray(ix[1:], np.int64) - 1


def _delaz_km(alat, alon, blat, blon):
    """ph2dt's delaz (geocentric latitude, spherical earth) distance in km, single precision."""
    alat, alon, blat, blon = (np.asarray(v, np.float64) for v in (alat, alon, blat, blon))
    pi2 = 1.570796
    rad = 1.745329e-2
    flat = 0.993231
    alatr = alat * rad
    alonr = alon * rad
    blatr = blat * rad
    blonr = blon * rad
    tana = flat * np.tan(alatr)
    geoa = np.arctan(tana)
    acol = pi2 - geoa
    tanb = flat * np.tan(blatr)
    geob = np.arctan(tanb)
    bcol = pi2 - geob
    diflon = blonr - alonr
    cosdel = np.sin(acol) * np.sin(bcol) * np.cos(diflon) + np.cos(acol) * np.cos(bcol)
    delr = np.arccos(np.clip(cosdel, -1, 1))
    # earth radius at mean colatitude (as delaz does)
    colat = pi2 - (alatr + blatr) / 2
    radius = 6378.163 * (1 + 3.35278e-3 * ((1.0 / 3.0) - np.cos(colat) ** 2))
    return (delr * radius).astype(np.float32)


@dataclass
class Ph2dtStats:
    n_events: int = 0
    n_phases: int = 0
    p_pairs_total: int = 0
    s_pairs_total: int = 0
    outliers: int = 0
    missing_station: int = 0
    beyond_maxdist: int = 0
    p_selected: int = 0
    s_selected: int = 0
    weakly_linked: int = 0
    n_pairs: int = 0
    outlier_lines: list = field(default_factory=list)


def ph2dt(
    events: pd.DataFrame,
    phases: pd.DataFrame,
    stations: pd.DataFrame,
    minwght: float = 0.0,
    maxdist_km: float = 200.0,
    maxsep_km: float = 10.0,
    maxngh: int = 10,
    minlnk: int = 8,
    minobs: int = 8,
    maxobs: int = 20,
    exact: bool = True,
):
    """ph2dt on tables.

    events: event_id, latitude, longitude, depth_km (file order matters, as in ph2dt);
    phases: event_id, station, travel_time_s, weight, phase;
    stations: station, latitude, longitude.
    Returns ``(dtct, selected_events, stats)``; dtct has event_id_1, event_id_2, station, t1_s,
    t2_s, weight, phase in ph2dt's output order.
    ``exact`` keeps ph2dt's single-precision arithmetic and its station-distance function.
    """
    f32 = np.float32
    ev = events.reset_index(drop=True)
    ph = phases.copy()
    ph = ph[~((ph["weight"] >= 0) & (ph["weight"] < minwght))]
    # ph2dt keeps events with at least MINOBS phases (and writes them to event.sel)
    nph = ph.groupby("event_id").size()
    keep = ev["event_id"].map(nph).fillna(0).to_numpy() >= minobs
    ev = ev[keep].reset_index(drop=True)
    stats = Ph2dtStats(n_events=len(ev), n_phases=int(nph.reindex(ev["event_id"]).fillna(0).sum()))
    nev = len(ev)
    lat = ev["latitude"].to_numpy(f32)
    lon = ev["longitude"].to_numpy(f32)
    dep = ev["depth_km"].to_numpy(f32)
    cusp = ev["event_id"].to_numpy(np.int64)
    sta_pos = {s: j for j, s in enumerate(stations["station"])}
    sta_lat_a = stations["latitude"].to_numpy(float)
    sta_lon_a = stations["longitude"].to_numpy(float)

    # per-event phase lists (order as in the phase file)
    ph_by = {}
    for eid, g in ph.groupby("event_id", sort=False):
        ph_by[eid] = list(zip(g["station"], g["phase"], g["travel_time_s"].astype(f32), g["weight"].astype(f32)))
    obs = [ph_by.get(e, []) for e in cusp]
    # index (station, phase) -> position, first occurrence wins (Fortran stops at first match)
    obs_idx = []
    for lst in obs:
        d = {}
        for j, (s, p, _t, _w) in enumerate(lst):
            d.setdefault((s, p), j)
        obs_idx.append(d)

    # neighbour candidates within maxsep (a superset in float64, then float32 distances as Fortran)
    y = lat.astype(float) * float(KMPERDEG)
    x = (lon.astype(float) - float(np.mean(lon))) * float(KMPERDEG) * np.cos(np.radians(lat.astype(float)))
    tree = cKDTree(np.c_[y, x, dep.astype(float)])
    # x depends on each event's own cos(lat) in Fortran; pad the radius for the approximation
    cand_lists = tree.query_ball_point(np.c_[y, x, dep.astype(float)], r=maxsep_km * 1.05 + 0.5)

    take = {}  # (i, k) -> '0' strong / '9' weak
    rows_e1, rows_e2, rows_sta, rows_t1, rows_t2, rows_w, rows_ph = [], [], [], [], [], [], []
    coslat = np.cos(lat * PI / f32(180.0)).astype(f32)
    for i in range(nev):
        cand = np.asarray([c for c in cand_lists[i] if c != i], np.int64)
        if len(cand):
            dlat = (lat[i] - lat[cand]).astype(f32)
            dlon = (lon[i] - lon[cand]).astype(f32)
            aoff = np.sqrt(
                (dlat * KMPERDEG) ** 2 + (dlon * (coslat[i] * KMPERDEG)) ** 2 + (dep[i] - dep[cand]) ** 2
            ).astype(f32)
            within = aoff <= f32(maxsep_km)
            cand, aoff = cand[within], aoff[within]
            # Fortran sorts all events (self = 99999 last); restricted to candidates the order of
            # distinct distances is the same; ties keep heapsort order over the full array only
            # approximately -- use the heapsort on the candidate set.
            order = nr_indexx(aoff.tolist()) if exact else np.argsort(aoff, kind="stable")
            cand, aoff = cand[order], aoff[order]
        inb = 0
        for m in range(len(cand)):
            if inb >= maxngh:
                break
            k = int(cand[m])
            t = take.get((k, i))
            if t == "0":
                inb += 1
                continue
            if t == "9":
                continue
            off = aoff[m]
            blat = (lat[i] + lat[k]) / f32(2)
            blon = (lon[i] + lon[k]) / f32(2)
            sdist = _delaz_km(sta_lat_a, sta_lon_a, blat, blon)
            a_lab, a_t1, a_t2, a_w, a_d, a_ph = [], [], [], [], [], []
            iimp = 0
            oi, ok_idx = obs[i], obs_idx[k]
            for s, p, t1, w1 in oi:
                l = ok_idx.get((s, p))
                if l is None:
                    continue
                _, _, t2, w2 = obs[k][l]
                if p == "P":
                    stats.p_pairs_total += 1
                elif p == "S":
                    stats.s_pairs_total += 1
                js = sta_pos.get(s)
                if js is None:
                    stats.missing_station += 1
                    continue
                dist = sdist[js]
                if dist > maxdist_km:
                    stats.beyond_maxdist += 1
                    continue
                wtr = f32((abs(w1) + abs(w2)) / f32(2))
                vel = f32(4.0) if p == "P" else f32(2.3)
                if abs(f32(t1 - t2)) > f32(off / vel + f32(0.5)):
                    stats.outliers += 1
                    stats.outlier_lines.append((s, int(cusp[i]), int(cusp[k]), float(off), float(t1), float(t2)))
                    continue
                a_lab.append(s)
                a_t1.append(t1)
                a_t2.append(t2)
                a_w.append(wtr)
                a_ph.append(p)
                if w1 < 0 or w2 < 0:
                    a_d.append(f32(0.0))
                    iimp += 1
                else:
                    a_d.append(dist)
            iobs = len(a_lab)
            itmp = iobs
            if iobs > maxobs:
                itmp = min(maxobs + iimp, iobs)
            if iobs >= minobs:
                order = nr_indexx(a_d) if (exact and iobs > 1) else np.argsort(np.asarray(a_d), kind="stable")
                for kk in order[:itmp]:
                    rows_e1.append(cusp[i])
                    rows_e2.append(cusp[k])
                    rows_sta.append(a_lab[kk])
                    rows_t1.append(a_t1[kk])
                    rows_t2.append(a_t2[kk])
                    rows_w.append(a_w[kk])
                    rows_ph.append(a_ph[kk])
                    if a_ph[kk] == "P":
                        stats.p_selected += 1
                    else:
                        stats.s_selected += 1
                stats.n_pairs += 1
            if iobs >= minlnk:
                take[(i, k)] = "0"
                inb += 1
            else:
                take[(i, k)] = "9"
        if inb < maxngh:
            stats.weakly_linked += 1
    dt = pd.DataFrame(
        {
            "event_id_1": np.asarray(rows_e1, np.int64),
            "event_id_2": np.asarray(rows_e2, np.int64),
            "station": rows_sta,
            "t1_s": np.asarray(rows_t1, np.float32).astype(float),
            "t2_s": np.asarray(rows_t2, np.float32).astype(float),
            "weight": np.asarray(rows_w, np.float32).astype(float),
            "phase": rows_ph,
        }
    )
    return dt, ev, stats


def ph2dt_fast(
    events: pd.DataFrame,
    phases: pd.DataFrame,
    stations: pd.DataFrame,
    minwght: float = 0.0,
    maxdist_km: float = 200.0,
    maxsep_km: float = 10.0,
    maxngh: int = 10,
    minlnk: int = 8,
    minobs: int = 8,
    maxobs: int = 20,
    k_candidates: int | None = None,
    chunk: int = 100_000,
):
    """ph2dt's selection rules, vectorised for large catalogues (the pipeline path).

    Same neighbour walk (nearest first, MAXNGH strong neighbours, pairs written once), same
    station-distance, outlier and MINOBS/MAXOBS/MINLNK rules as :func:`ph2dt`; observations are
    matched through an event x (station, phase) table and the candidates of each event are its
    ``k_candidates`` nearest events within MAXSEP (default ``4 * MAXNGH``).  Differs from
    ph2dt only in the order of ties and when an event has two picks of one station and phase (the
    first is kept).  Returns the dt.ct table."""
    ev = events.reset_index(drop=True)
    ph = phases[~((phases["weight"] >= 0) & (phases["weight"] < minwght))]
    nph = ph.groupby("event_id").size()
    ev = ev[ev["event_id"].map(nph).fillna(0).to_numpy() >= minobs].reset_index(drop=True)
    nev = len(ev)
    cols = ["event_id_1", "event_id_2", "station", "t1_s", "t2_s", "weight", "phase"]
    if nev < 2:
        return pd.DataFrame({c: [] for c in cols})
    sta_codes = stations["station"].to_numpy()
    spos = {s: j for j, s in enumerate(sta_codes)}
    nsta = len(sta_codes)
    ph = ph[ph["station"].isin(spos) & ph["event_id"].isin(set(ev["event_id"]))]
    ph = ph[ph["phase"].isin(["P", "S"])].drop_duplicates(["event_id", "station", "phase"], keep="first")
    epos = pd.Series(np.arange(nev), index=ev["event_id"].to_numpy())
    ie = epos.reindex(ph["event_id"].to_numpy()).to_numpy()
    slot = ph["station"].map(spos).to_numpy() * 2 + (ph["phase"].to_numpy() == "S")
    nslot = 2 * nsta
    TT = np.full((nev, nslot), np.nan, np.float32)
    WT = np.zeros((nev, nslot), np.float32)
    TT[ie, slot] = ph["travel_time_s"].to_numpy(np.float32)
    WT[ie, slot] = ph["weight"].to_numpy(np.float32)
    lat = ev["latitude"].to_numpy(np.float64)
    lon = ev["longitude"].to_numpy(np.float64)
    dep = ev["depth_km"].to_numpy(np.float64)
    y = lat * float(KMPERDEG)
    x = (lon - float(np.mean(lon))) * float(KMPERDEG) * np.cos(np.radians(lat))
    pts = np.c_[y, x, dep]
    k = min(nev, 1 + (k_candidates or 4 * maxngh))
    dist, nb = cKDTree(pts).query(pts, k=k, distance_upper_bound=maxsep_km * 1.02 + 0.05)
    ok = np.isfinite(dist) & (nb != np.arange(nev)[:, None]) & (nb < nev)
    I = np.repeat(np.arange(nev), k).reshape(nev, k)[ok]
    K = nb[ok]
    # ph2dt's separation (single precision, cos of the first event's latitude)
    f32 = np.float32
    lat32, lon32, dep32 = lat.astype(f32), lon.astype(f32), dep.astype(f32)
    cl = np.cos(lat32 * PI / f32(180.0)).astype(f32)
    D = np.sqrt(
        ((lat32[I] - lat32[K]) * KMPERDEG) ** 2
        + ((lon32[I] - lon32[K]) * (cl[I] * KMPERDEG)) ** 2
        + (dep32[I] - dep32[K]) ** 2
    ).astype(f32)
    inside = D <= f32(maxsep_km)
    I, K, D = I[inside], K[inside], D[inside]
    # evaluate each unordered pair once
    a, b = np.minimum(I, K), np.maximum(I, K)
    key = a.astype(np.int64) * nev + b
    ukey, inv = np.unique(key, return_inverse=True)
    ua, ub = ukey // nev, ukey % nev
    slat, slon = stations["latitude"].to_numpy(float), stations["longitude"].to_numpy(float)
    npair = len(ukey)
    count = np.zeros(npair, np.int64)
    store = {}
    vel = np.tile(np.array([4.0, 2.3], np.float32), nsta)
    for c0 in range(0, npair, chunk):
        c1 = min(npair, c0 + chunk)
        A, B = ua[c0:c1], ub[c0:c1]
        t1, t2 = TT[A], TT[B]
        valid = ~np.isnan(t1) & ~np.isnan(t2)
        blat, blon = (lat[A] + lat[B]) / 2, (lon[A] + lon[B]) / 2
        sd = _delaz_km(slat[None, :], slon[None, :], blat[:, None], blon[:, None])  # (m, nsta)
        sd2 = np.repeat(sd, 2, axis=1)
        valid &= sd2 <= maxdist_km
        sep = np.sqrt(
            ((lat32[A] - lat32[B]) * KMPERDEG) ** 2
            + ((lon32[A] - lon32[B]) * (cl[A] * KMPERDEG)) ** 2
            + (dep32[A] - dep32[B]) ** 2
        ).astype(np.float32)
        with np.errstate(invalid="ignore"):
            valid &= ~(np.abs(t1 - t2) > sep[:, None] / vel[None, :] + np.float32(0.5))
        count[c0:c1] = valid.sum(1)
        store[c0] = (valid, sd2, t1, t2, (np.abs(WT[A]) + np.abs(WT[B])) / 2, (WT[A] < 0) | (WT[B] < 0))
    # sequential neighbour walk (cheap: integers only)
    order = np.lexsort((D, I))
    I, K, D, inv = I[order], K[order], D[order], inv[order]
    take = {}
    written = []  # (pair index, i, k)
    starts = np.searchsorted(I, np.arange(nev + 1))
    for i in range(nev):
        inb = 0
        for m in range(starts[i], starts[i + 1]):
            if inb >= maxngh:
                break
            kk = int(K[m])
            t = take.get((kk, i))
            if t == "0":
                inb += 1
                continue
            if t == "9":
                continue
            n = count[inv[m]]
            if n >= minobs:
                written.append((inv[m], i, kk))
            if n >= minlnk:
                take[(i, kk)] = "0"
                inb += 1
            else:
                take[(i, kk)] = "9"
    if not written:
        return pd.DataFrame({c: [] for c in cols})
    # the observations of every written pair at once: valid slots, nearest stations first
    # (imprecise picks -- negative weights -- first, as ph2dt), at most MAXOBS (+ imprecise)
    ids = ev["event_id"].to_numpy(np.int64)
    slot_sta = np.repeat(sta_codes, 2)
    slot_ph = np.tile(np.array(["P", "S"]), nsta)
    wp = np.fromiter((w[0] for w in written), np.int64, len(written))
    wi = np.fromiter((w[1] for w in written), np.int64, len(written))
    wk = np.fromiter((w[2] for w in written), np.int64, len(written))
    nw = len(wp)
    V = np.empty((nw, nslot), bool)
    D = np.empty((nw, nslot), np.float32)
    T1 = np.empty((nw, nslot), np.float32)
    T2 = np.empty((nw, nslot), np.float32)
    W = np.empty((nw, nslot), np.float32)
    IMP = np.empty((nw, nslot), bool)
    c0s = np.array(sorted(store))
    which = c0s[np.searchsorted(c0s, wp, side="right") - 1]
    for c0 in np.unique(which):
        m = np.flatnonzero(which == c0)
        valid, sd2, t1, t2, w, imp = store[c0]
        r = wp[m] - c0
        V[m], IMP[m], W[m] = valid[r], imp[r], w[r]
        D[m] = np.where(imp[r], np.float32(0.0), sd2[r])
        swap = ua[wp[m]] != wi[m]  # pair stored as (k, i): t1 belongs to event i
        T1[m] = np.where(swap[:, None], t2[r], t1[r])
        T2[m] = np.where(swap[:, None], t1[r], t2[r])
    D[~V] = np.inf
    order = np.argsort(D, axis=1, kind="stable")
    nval = V.sum(1)
    nimp = (IMP & V).sum(1)
    nkeep = np.where(nval <= maxobs, nval, np.minimum(maxobs + nimp, nval))
    take = np.arange(nslot)[None, :] < nkeep[:, None]
    row = np.repeat(np.arange(nw), nkeep)
    sl = order[take]
    return pd.DataFrame(
        {
            "event_id_1": ids[wi][row],
            "event_id_2": ids[wk][row],
            "station": slot_sta[sl],
            "t1_s": T1[row, sl].astype(float),
            "t2_s": T2[row, sl].astype(float),
            "weight": W[row, sl].astype(float),
            "phase": slot_ph[sl],
        }
    ).astype({"event_id_1": np.int64, "event_id_2": np.int64})


def phases_from_picks(events: pd.DataFrame, picks: pd.DataFrame) -> pd.DataFrame:
    """Pipeline picks (absolute ``time``, ``station_id``) -> ph2dt phases (travel time since
    origin).  The station code stays the full ``station_id`` so that networks do not collide."""
    ot = events.set_index("event_id")["time"]
    p = picks[picks["event_id"].isin(ot.index)].copy()
    tt = (pd.to_datetime(p["time"], utc=True) - pd.to_datetime(p["event_id"].map(ot), utc=True)).dt.total_seconds()
    w = p["weight"].astype(float) if "weight" in p else pd.Series(1.0, index=p.index)
    return pd.DataFrame(
        {
            "event_id": p["event_id"].astype(np.int64).to_numpy(),
            "station": p["station_id"].to_numpy(),
            "travel_time_s": tt.to_numpy(),
            "weight": w.to_numpy(),
            "phase": p["phase"].str.upper().str[0].to_numpy(),
        }
    )


SEED_MAX_STATION_KM = 150.0  # ph2dt MAXDIST of the seed (a dense local network)


def auto_max_station_km(stations: pd.DataFrame) -> tuple[float, str]:
    """``(max_station_km, why)`` from the station spacing, like the locator's distance taper
    (:func:`quakescale.locate.locator.auto_distance_taper`): a dense local network keeps the seed's
    150 km; a sparse regional one takes the distance where the locator's weight reaches zero
    (twice the median distance to the 3rd-nearest station, rounded up to 10 km) when that is
    farther, so the stations that located an event also link it to its neighbours."""
    _, zero, why = auto_distance_taper(stations)
    km = max(SEED_MAX_STATION_KM, float(zero))
    return km, f"relocate.max_station_km auto = {km:g} km ({why})"


def resolve_max_station_km(value, stations: pd.DataFrame) -> float:
    """``relocate.max_station_km`` as km: a number as is, ``"auto"`` by :func:`auto_max_station_km`."""
    return auto_max_station_km(stations)[0] if value == "auto" else float(value)


PAIR_FIELDS = ("max_station_km", "max_sep_km", "min_obs", "max_obs", "max_neighbors", "min_links")


def catalog_pairs(
    events: pd.DataFrame, picks: pd.DataFrame, stations: pd.DataFrame, params=None, min_weight: float = 0.0, **overrides
) -> pd.DataFrame:
    """Catalog differential times for pipeline tables (dt.ct as a table with ``station`` =
    NET.STA).

    ``params``: the ph2dt settings :data:`PAIR_FIELDS` -- a config ``RelocateSection``, a
    :class:`~quakescale.relocate.dd.RelocateParams`, a dict of (some of) them, or None: the config's
    defaults (``RelocateSection``, the one place they are defined).  Keyword arguments override
    single fields.  Events with fewer than ``min_obs`` picks are not paired; ``max_station_km="auto"``:
    see :func:`auto_max_station_km`."""
    if isinstance(params, dict):
        params, overrides = None, {**params, **overrides}
    unknown = set(overrides) - set(PAIR_FIELDS)
    if unknown:
        raise TypeError(f"catalog_pairs: unknown parameter(s) {sorted(unknown)}; known: {list(PAIR_FIELDS)}")
    base = RelocateSection() if params is None else params
    p = {k: overrides[k] if k in overrides else getattr(base, k) for k in PAIR_FIELDS}
    max_station_km = resolve_max_station_km(p["max_station_km"], stations)
    ph = phases_from_picks(events, picks)
    st = stations.rename(columns={"station_id": "station"})[["station", "latitude", "longitude"]]
    return ph2dt_fast(
        events,
        ph,
        st,
        minwght=min_weight,
        maxdist_km=max_station_km,
        maxsep_km=p["max_sep_km"],
        maxngh=p["max_neighbors"],
        minlnk=p["min_links"],
        minobs=p["min_obs"],
        maxobs=p["max_obs"],
    )
