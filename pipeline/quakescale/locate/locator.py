"""Absolute location: damped, iteratively linearised (Geiger) inversion, batched over events.

Hypoinverse-style, for a flat layered model (:class:`~quakescale.velocity.TravelTimeTable`):
every event is one row of padded ``(n_events, max_picks)`` arrays and all events iterate
together in numpy -- travel times, derivatives, weights and the per-event 4x4 normal equations
(``np.linalg.solve`` on a stack) -- so thousands of events locate per second on one CPU core.

Weights (multiplied, as in Hypoinverse):

- pick quality: the ``weight`` column of the picks (0..1, default 1), or Hypoinverse weight codes
  0-4 in a ``weight_code`` column mapped through ``quality_weights`` (WET command: 1, .5, .2, .1, 0);
- phase: S picks times ``s_weight``;
- distance: 1 up to ``dist_full_km``, cosine taper to 0 at ``dist_zero_km`` (epicentral);
  ``"auto"`` (the default) follows the network (:func:`auto_distance_taper`): the seed's
  40/120 km for a dense local network, wider for a regional one; an event whose stations all
  lie beyond ``dist_full_km`` is noted in ``dist_note`` (and logged);
- residual (from iteration ``residual_weighting_iter`` on): 1 for ``|r| <= residual_full_s``,
  cosine taper to 0 at ``residual_cutoff_factor * residual_full_s``.

Depth starts at ``trial_depth_km`` (Hypoinverse ZTR) unless ``use_initial_depth``; it is kept
inside ``[min_depth_km, max_depth_km]`` (an update above the top is halved towards it -- no air
quakes); events with fewer than ``min_picks_free_depth`` weighted picks, or whose depth column is
unresolved, are located with depth fixed (``depth_fixed`` true in the output).

Errors: ``C = sigma^2 (G^T W G)^-1`` with the weights normalised to sum to the number of used
readings and ``sigma = max(read_error_s, rms)``; ``erh_km = sqrt(Cxx + Cyy)`` (as HYPO71/
Hypoinverse ERH), ``erz_km = sqrt(Czz)``, and the three principal axes of the spatial covariance
(azimuth, dip, size) for the Hypoinverse summary line.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from functools import lru_cache

import numpy as np
import pandas as pd

from ..geo import LocalProjection, azimuth_deg, epicentral_km
from ..times import utc_ns
from ..velocity import LayeredModel, TravelTimeTable

__all__ = [
    "LocateParams",
    "locate_events",
    "travel_time_table",
    "cosine_taper",
    "auto_distance_taper",
    "resolve_distance_taper",
]

log = logging.getLogger("quakescale.locate")

#: a network whose stations have their 3rd-nearest neighbour within this (median) is dense and local
DENSE_NETWORK_KM = 60.0
SEED_TAPER_KM = (40.0, 120.0)


def auto_distance_taper(stations: pd.DataFrame, k: int = 3) -> tuple[float, float, str]:
    """``(dist_full_km, dist_zero_km, why)`` from the station spacing: ``d_k`` is the median over
    stations of the distance to their ``k``-th nearest neighbour (an event near a station then
    has ``k + 1`` stations within about ``d_k``).  ``d_k <= 60 km``: a dense local network, the
    seed's 40/120 km; otherwise full weight to ``d_k`` rounded up to 10 km and zero at twice that."""
    lat = stations["latitude"].to_numpy(float)
    lon = stations["longitude"].to_numpy(float)
    if len(lat) < 2:
        return (*SEED_TAPER_KM, "fewer than 2 stations: the seed's 40/120 km")
    d = np.sort(epicentral_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :]), axis=1)
    dk = float(np.median(d[:, min(k, len(lat) - 1)]))
    if dk <= DENSE_NETWORK_KM:
        return (
            *SEED_TAPER_KM,
            f"dense local network (median distance to the {k}rd-nearest station {dk:.0f} km): the seed's 40/120 km",
        )
    full = float(np.ceil(dk / 10.0) * 10.0)
    return (
        full,
        2.0 * full,
        f"regional network (median distance to the {k}rd-nearest station {dk:.0f} km): "
        f"full weight to {full:g} km, zero at {2 * full:g} km",
    )


def resolve_distance_taper(params, stations: pd.DataFrame) -> dict:
    """``params`` (config section, LocateParams or dict) as a dict with ``"auto"`` distances
    replaced by :func:`auto_distance_taper` values (``taper_note`` says which)."""
    if isinstance(params, LocateParams):
        vals = asdict(params)
    elif hasattr(params, "model_dump"):
        vals = params.model_dump()
    else:
        vals = dict(params or {})
    full, zero = vals.get("dist_full_km", "auto"), vals.get("dist_zero_km", "auto")
    if full == "auto" or zero == "auto":
        af, az, why = auto_distance_taper(stations)
        if full == "auto" and zero == "auto":
            full, zero = af, az
        elif full == "auto":
            full = min(af, float(zero) / 2.0) if af >= float(zero) else af
        else:
            zero = max(az, 2.0 * float(full)) if az <= float(full) else az
        vals["taper_note"] = why
    vals["dist_full_km"], vals["dist_zero_km"] = float(full), float(zero)
    return vals


@dataclass
class LocateParams:
    """Mirror of config ``LocateSection`` (same names and defaults) plus locator internals."""

    residual_full_s: float = 0.3
    residual_cutoff_factor: float = 3.0
    dist_full_km: float | str = 40.0  # "auto": from the station spacing (auto_distance_taper)
    dist_zero_km: float | str = 120.0
    s_weight: float = 0.5
    trial_depth_km: float = 8.0
    min_depth_km: float = 0.0
    max_depth_km: float = 35.0
    max_iter: int = 20
    damping: float = 0.02
    # --- internals (Hypoinverse-like defaults)
    use_initial_depth: bool = False  # start from the associator's depth instead of trial_depth_km
    residual_weighting_iter: int = 3  # first iteration (0-based) that applies residual weights
    min_picks: int = 4  # fewer weighted picks: not located (initial location returned)
    min_picks_free_depth: int = 6  # fewer weighted picks: depth fixed at the trial depth
    quality_weights: tuple = (1.0, 0.5, 0.2, 0.1, 0.0)  # Hypoinverse WET, codes 0..4
    read_error_s: float = 0.10  # Hypoinverse ERR
    max_step_km: float = 10.0  # horizontal step limit per iteration
    max_depth_step_km: float = 5.0
    converge_km: float = 0.005
    use_elevation: bool = True
    station_delays: object = None  # DataFrame(station_id, phase, delay_s) or {(sta, phase): s}
    # Hypoinverse RMSCUT: when set, the residual taper stretches with the event's weighted RMS
    # (full weight to residual_full_s * max(1, rms / floor), as Hypoinverse's RMS command); None: fixed
    residual_rms_floor_s: float | None = None

    @classmethod
    def from_any(cls, params=None, **kwargs) -> "LocateParams":
        """Build from a config section (pydantic), a dict, a LocateParams, and/or keywords;
        unknown keys of a config section (backend, hypoinverse_exe ...) are ignored."""
        vals: dict = {}
        if params is not None:
            if isinstance(params, LocateParams):
                vals.update(asdict(params))
            elif hasattr(params, "model_dump"):
                vals.update(params.model_dump())
            elif isinstance(params, dict):
                vals.update(params)
            else:
                raise TypeError(f"locate params must be a LocateParams, dict or config section, got {type(params)}")
        vals.update(kwargs)
        names = {f.name for f in fields(cls)}
        unknown = set(kwargs) - names
        if unknown:
            raise TypeError(f"unknown locate parameter(s): {sorted(unknown)}; known: {sorted(names)}")
        p = cls(**{k: v for k, v in vals.items() if k in names})
        if "auto" not in (p.dist_full_km, p.dist_zero_km) and p.dist_zero_km <= p.dist_full_km:
            raise ValueError(f"dist_zero_km ({p.dist_zero_km}) must exceed dist_full_km ({p.dist_full_km})")
        if p.residual_cutoff_factor <= 1:
            raise ValueError(f"residual_cutoff_factor must exceed 1, got {p.residual_cutoff_factor}")
        if p.max_depth_km <= p.min_depth_km:
            raise ValueError(f"max_depth_km ({p.max_depth_km}) must exceed min_depth_km ({p.min_depth_km})")
        return p


def cosine_taper(x, full, zero):
    """1 for ``x <= full``, 0 for ``x >= zero``, half-cosine in between."""
    x = np.asarray(x, float)
    u = np.clip((x - full) / (zero - full), 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * u))


@lru_cache(maxsize=8)
def _cached_table(model: LayeredModel, max_dist_km: float, max_depth_km: float) -> TravelTimeTable:
    return TravelTimeTable(model, max_dist_km=max_dist_km, max_depth_km=max_depth_km)


def travel_time_table(model: LayeredModel, max_dist_km: float = 200.0, max_depth_km: float = 40.0) -> TravelTimeTable:
    """A (cached) travel-time table covering the locator's depth range."""
    return _cached_table(model, float(max_dist_km), float(max_depth_km))


# ---------------------------------------------------------------------------------- input prep
_REQ_EVENTS = ("event_id", "time", "latitude", "longitude")
_REQ_PICKS = ("event_id", "station_id", "phase", "time")
_REQ_STATIONS = ("station_id", "latitude", "longitude")


def _require(df: pd.DataFrame, cols, what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; have {list(df.columns)}")


def _delay_lookup(delays) -> dict:
    if delays is None:
        return {}
    if isinstance(delays, dict):
        return {(str(k[0]), str(k[1]).upper()[:1]): float(v) for k, v in delays.items()}
    if isinstance(delays, pd.DataFrame):
        _require(delays, ("station_id", "phase", "delay_s"), "station delays")
        return {(str(r.station_id), str(r.phase).upper()[:1]): float(r.delay_s) for r in delays.itertuples()}
    raise TypeError(f"station_delays must be a DataFrame(station_id, phase, delay_s) or a dict, got {type(delays)}")


# ---------------------------------------------------------------------------------- main entry
def locate_events(
    events: pd.DataFrame,
    assignments_or_picks: pd.DataFrame,
    stations: pd.DataFrame,
    model: LayeredModel,
    params=None,
    tt: TravelTimeTable | None = None,
    **kwargs,
):
    """Locate every event of ``events`` from its picks.

    ``events``: event_id, time, latitude, longitude[, depth_km] (initial guesses);
    ``assignments_or_picks``: event_id, station_id, phase (P/S), time[, weight | weight_code];
    ``stations``: station_id, latitude, longitude[, elevation_m];
    ``params``: a :class:`LocateParams`, the config ``LocateSection`` or a dict; keywords override.

    Returns ``(located_events, residuals)``: one row per input event (``located`` false when it had
    fewer than ``min_picks`` weighted picks; such rows keep the initial location) and one row per
    pick with ``residual_s``, final ``weight``, ``distance_km``, ``azimuth_deg``, ``travel_time_s``.
    """
    p = LocateParams.from_any(params, **kwargs)
    _require(events, _REQ_EVENTS, "events")
    _require(assignments_or_picks, _REQ_PICKS, "picks")
    _require(stations, _REQ_STATIONS, "stations")
    if "auto" in (p.dist_full_km, p.dist_zero_km):
        p = LocateParams.from_any(resolve_distance_taper(p, stations))
    ev = events.reset_index(drop=True)
    if ev["event_id"].duplicated().any():
        raise ValueError(f"events: duplicate event_id(s) {ev.loc[ev.event_id.duplicated(), 'event_id'].tolist()[:5]}")
    picks = assignments_or_picks.reset_index(drop=True)
    picks = picks[picks["event_id"].isin(ev["event_id"])].reset_index(drop=True)
    sta = stations.drop_duplicates("station_id").set_index("station_id")
    unknown = sorted(set(picks["station_id"]) - set(sta.index))
    if unknown:
        raise ValueError(f"picks refer to station(s) not in the station table: {unknown[:10]}")
    phase = picks["phase"].astype(str).str.upper().str[:1].to_numpy()
    bad = ~np.isin(phase, ["P", "S"])
    if bad.any():
        raise ValueError(f"picks: phase must be P or S, got {sorted(set(picks['phase'][bad]))[:5]}")

    n_ev = len(ev)
    top0 = float(model.top_km[0])
    if tt is None:  # cover the network: events anywhere within it see every station
        span = _network_span_km(stations)
        tt = travel_time_table(
            model, max(200.0, float(np.ceil((span + 100.0) / 50.0) * 50.0)), max(p.max_depth_km + 1.0, 40.0)
        )
    zmin = max(p.min_depth_km, float(tt.depth[0]))
    zmax = min(p.max_depth_km, float(tt.depth[-1]))

    # projection around the station centroid
    lat0 = float(sta["latitude"].mean())
    lon0 = float(sta["longitude"].mean())
    proj = LocalProjection(lat0, lon0)
    sx_all, sy_all = proj.to_xy(sta["latitude"].to_numpy(float), sta["longitude"].to_numpy(float))
    if p.use_elevation and "elevation_m" in sta.columns:
        selev_all = sta["elevation_m"].fillna(0.0).to_numpy(float) / 1000.0
    else:
        selev_all = np.zeros(len(sta))
    selev_all = selev_all + top0  # elevation above the model top (receivers sit at the top)
    sidx = sta.index.get_indexer(picks["station_id"])

    # padded arrays
    eidx = pd.Index(ev["event_id"]).get_indexer(picks["event_id"])
    order = np.argsort(eidx, kind="stable")
    counts = np.bincount(eidx, minlength=n_ev)
    kmax = max(int(counts.max()) if n_ev else 0, 1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    col = np.empty(len(picks), np.int64)
    col[order] = np.arange(len(picks)) - np.repeat(starts, counts)
    row = eidx
    valid = np.zeros((n_ev, kmax), bool)
    valid[row, col] = True

    ref_ns = utc_ns(ev["time"], "events.time")
    pick_ns = utc_ns(picks["time"], "picks.time")
    tobs = np.zeros((n_ev, kmax))
    tobs[row, col] = (pick_ns - ref_ns[row]) / 1e9
    delays = _delay_lookup(p.station_delays)
    if delays:
        dl = np.array([delays.get((s, ph), 0.0) for s, ph in zip(picks["station_id"], phase)])
        tobs[row, col] -= dl
    is_s = np.zeros((n_ev, kmax), bool)
    is_s[row, col] = phase == "S"
    sx = np.zeros((n_ev, kmax))
    sy = np.zeros((n_ev, kmax))
    se = np.zeros((n_ev, kmax))
    sx[row, col] = sx_all[sidx]
    sy[row, col] = sy_all[sidx]
    se[row, col] = selev_all[sidx]
    sid = np.full((n_ev, kmax), -1, np.int64)
    sid[row, col] = sidx

    wq = np.ones(len(picks))
    if "weight_code" in picks.columns:
        codes = pd.to_numeric(picks["weight_code"], errors="coerce").fillna(0).clip(0, len(p.quality_weights) - 1)
        wq = np.asarray(p.quality_weights, float)[codes.to_numpy(int)]
    elif "weight" in picks.columns:
        wq = pd.to_numeric(picks["weight"], errors="coerce").fillna(1.0).clip(0, None).to_numpy(float)
    w0 = np.zeros((n_ev, kmax))
    w0[row, col] = wq * np.where(phase == "S", p.s_weight, 1.0)
    w0[~valid] = 0.0

    # initial hypocentre
    ex, ey = proj.to_xy(ev["latitude"].to_numpy(float), ev["longitude"].to_numpy(float))
    ex = np.asarray(ex, float).copy()
    ey = np.asarray(ey, float).copy()
    nan0 = ~np.isfinite(ex) | ~np.isfinite(ey)
    if nan0.any():  # no initial epicentre: start beneath the earliest pick's station
        tmp = np.where(valid, tobs, np.inf)
        k0 = np.argmin(tmp, axis=1)
        ex[nan0] = sx[nan0, k0[nan0]] + 0.1
        ey[nan0] = sy[nan0, k0[nan0]] + 0.1
    if p.use_initial_depth and "depth_km" in ev.columns:
        ez = ev["depth_km"].fillna(p.trial_depth_km).to_numpy(float).copy()
    else:
        ez = np.full(n_ev, float(p.trial_depth_km))
    ez = np.clip(ez, zmin, zmax)
    t0 = np.zeros(n_ev)

    n_w = (w0 > 0).sum(1)
    located = n_w >= p.min_picks
    fix_depth = n_w < p.min_picks_free_depth

    def forward(ex, ey, ez):
        dx = ex[:, None] - sx
        dy = ey[:, None] - sy
        d = np.sqrt(dx * dx + dy * dy)
        T = np.zeros_like(d)
        dtdd = np.zeros_like(d)
        dtdz = np.zeros_like(d)
        zz = np.broadcast_to(ez[:, None], d.shape)
        for ph, m in (("P", valid & ~is_s), ("S", valid & is_s)):
            if m.any():
                a, b, c = tt.time(ph, d[m], zz[m], se[m])
                T[m], dtdd[m], dtdz[m] = a, b, c
        return dx, dy, d, T, dtdd, dtdz

    # initial origin time: weighted median of (t_obs - T)
    dx, dy, d, T, dtdd, dtdz = forward(ex, ey, ez)
    t0 = _weighted_median(np.where(valid, tobs - T, np.nan), np.where(valid, w0, 0.0))
    t0 = np.where(np.isfinite(t0), t0, 0.0)

    wdist_full, wdist_zero = p.dist_full_km, p.dist_zero_km
    r_full = p.residual_full_s
    r_zero = p.residual_full_s * p.residual_cutoff_factor
    active = located.copy()
    n_iter = np.zeros(n_ev, np.int64)
    for it in range(p.max_iter):
        if not active.any():
            break
        res = tobs - t0[:, None] - T
        w = w0 * cosine_taper(d, wdist_full, wdist_zero)
        if it >= p.residual_weighting_iter:
            w = w * _residual_taper(res, w, valid, r_full, r_zero, p.residual_rms_floor_s)
        w = np.where(valid, w, 0.0)
        dsafe = np.maximum(d, 1e-3)
        G = np.stack([dtdd * dx / dsafe, dtdd * dy / dsafe, dtdz, np.ones_like(d)], axis=-1)  # (E,K,4)
        G = G * valid[..., None]
        G[..., 2] = np.where(fix_depth[:, None], 0.0, G[..., 2])
        m, _ = _solve(G, w, res, p.damping)
        # step limits
        hs = np.hypot(m[:, 0], m[:, 1])
        sc = np.where(hs > p.max_step_km, p.max_step_km / np.maximum(hs, 1e-12), 1.0)
        m[:, 0] *= sc
        m[:, 1] *= sc
        m[:, 2] = np.clip(m[:, 2], -p.max_depth_step_km, p.max_depth_step_km)
        m[~active] = 0.0
        ex = ex + m[:, 0]
        ey = ey + m[:, 1]
        znew = ez + m[:, 2]
        # no air quakes: an update above the top is halved towards it; below the bottom clamps
        znew = np.where(znew < zmin, 0.5 * (ez + zmin), znew)
        ez = np.clip(znew, zmin, zmax)
        t0 = t0 + m[:, 3]
        n_iter += active
        step = np.sqrt(m[:, 0] ** 2 + m[:, 1] ** 2 + m[:, 2] ** 2)
        dx, dy, d, T, dtdd, dtdz = forward(ex, ey, ez)
        if it >= p.residual_weighting_iter:
            active &= step > p.converge_km

    # final weights, residuals and statistics
    res = tobs - t0[:, None] - T
    w = w0 * cosine_taper(d, wdist_full, wdist_zero)
    w = w * _residual_taper(res, np.where(valid, w, 0.0), valid, r_full, r_zero, p.residual_rms_floor_s)
    w = np.where(valid, w, 0.0)
    used = w > 1e-3
    sw = w.sum(1)
    rms = np.sqrt(np.where(sw > 0, (w * res**2).sum(1) / np.maximum(sw, 1e-12), np.nan))
    dsafe = np.maximum(d, 1e-3)
    G = np.stack([dtdd * dx / dsafe, dtdd * dy / dsafe, dtdz, np.ones_like(d)], axis=-1) * valid[..., None]
    G[..., 2] = np.where(fix_depth[:, None], 0.0, G[..., 2])
    nu = used.sum(1)
    wn = w * (nu / np.maximum(sw, 1e-12))[:, None]  # weights normalised to sum to n used
    sigma = np.maximum(p.read_error_s, np.nan_to_num(rms, nan=p.read_error_s))
    cov = _covariance(G, wn, fix_depth) * (sigma**2)[:, None, None]
    cxx, cyy, czz = cov[:, 0, 0], cov[:, 1, 1], cov[:, 2, 2]
    erh = np.sqrt(np.clip(cxx + cyy, 0, None))
    erz = np.where(fix_depth, np.nan, np.sqrt(np.clip(czz, 0, None)))
    prin = _principal_errors(cov[:, :3, :3])

    lat, lon = proj.to_latlon(ex, ey)
    n_p = (used & ~is_s).sum(1)
    n_s = (used & is_s).sum(1)
    # stations used, gap and nearest distance
    st_lat = sta["latitude"].to_numpy(float)
    st_lon = sta["longitude"].to_numpy(float)
    sid_safe = np.where(valid, sid, 0)
    epi = epicentral_km(lat[:, None], lon[:, None], st_lat[sid_safe], st_lon[sid_safe])
    az = azimuth_deg(lat[:, None], lon[:, None], st_lat[sid_safe], st_lon[sid_safe])
    gap = _gap(np.where(used, az, np.nan))
    dmin = np.where(used.any(1), np.min(np.where(used, epi, np.inf), axis=1), np.nan)
    su = np.sort(np.where(used, sid, -1), axis=1)
    n_sta = ((su >= 0) & np.concatenate([np.ones((n_ev, 1), bool), np.diff(su, axis=1) != 0], axis=1)).sum(1)

    out = ev.copy()
    loc = located
    t_final = ref_ns + np.round(np.where(loc, t0, 0.0) * 1e9).astype(np.int64)
    out["time"] = pd.to_datetime(t_final, utc=True)
    out["latitude"] = np.where(loc, lat, ev["latitude"].to_numpy(float))
    out["longitude"] = np.where(loc, lon, ev["longitude"].to_numpy(float))
    init_depth = ev["depth_km"].to_numpy(float) if "depth_km" in ev.columns else np.full(n_ev, np.nan)
    out["depth_km"] = np.where(loc, ez, init_depth)
    out["rms_s"] = np.where(loc, rms, np.nan)
    out["gap_deg"] = np.where(loc, gap, np.nan)
    out["dmin_km"] = np.where(loc, dmin, np.nan)
    out["n_p"] = n_p.astype(np.int32)
    out["n_s"] = n_s.astype(np.int32)
    out["n_stations"] = n_sta.astype(np.int32)
    out["erh_km"] = np.where(loc, erh, np.nan)
    out["erz_km"] = np.where(loc, erz, np.nan)
    for i in range(3):
        out[f"err{i + 1}_az_deg"] = np.where(loc, prin[0][:, i], np.nan)
        out[f"err{i + 1}_dip_deg"] = np.where(loc, prin[1][:, i], np.nan)
        out[f"err{i + 1}_km"] = np.where(loc, prin[2][:, i], np.nan)
    # stations all beyond full distance weight: say so (the event may be outside the network)
    dnear = np.where(valid.any(1), np.min(np.where(valid, epi, np.inf), axis=1), np.nan)
    far = valid.any(1) & (dnear > p.dist_full_km)
    out["dist_note"] = np.where(
        far,
        [
            f"all stations beyond the distance taper: nearest {x:.0f} km > {p.dist_full_km:g} km full weight"
            + (f" (zero weight beyond {p.dist_zero_km:g} km)" if x >= p.dist_zero_km else "")
            for x in np.nan_to_num(dnear)
        ],
        "",
    )
    if far.any():
        log.warning(
            "locate: %d event(s) have all their stations beyond the distance taper (full weight to %g km, "
            "zero at %g km), e.g. event %s (nearest station %.0f km); widen locate.dist_full_km/dist_zero_km "
            "if the network is regional",
            int(far.sum()),
            p.dist_full_km,
            p.dist_zero_km,
            ev["event_id"].to_numpy()[far][0],
            float(dnear[far][0]),
        )
    out["depth_fixed"] = fix_depth & loc
    out["located"] = loc
    out["n_iter"] = n_iter.astype(np.int32)
    out["stage"] = "locate"

    # per-pick residual table, in the order of the input picks
    rres = pd.DataFrame(
        {
            "event_id": picks["event_id"].to_numpy(),
            "station_id": picks["station_id"].to_numpy(),
            "phase": phase,
            "time": pd.to_datetime(pick_ns, utc=True),
            "residual_s": res[row, col],
            "weight": w[row, col],
            "travel_time_s": T[row, col],
            "distance_km": epi[row, col],
            "azimuth_deg": az[row, col],
        }
    )
    rres.loc[~loc[row], ["residual_s", "weight"]] = np.nan
    return out, rres


def _network_span_km(stations: pd.DataFrame) -> float:
    """Largest epicentral distance between two stations (km)."""
    lat = stations["latitude"].to_numpy(float)
    lon = stations["longitude"].to_numpy(float)
    if len(lat) < 2:
        return 0.0
    return float(np.nanmax(epicentral_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :])))


# ---------------------------------------------------------------------------------- numerics
def _residual_taper(res, w, valid, r_full, r_zero, rms_floor):
    """Residual weights: the cosine taper from ``r_full`` to ``r_zero``; with ``rms_floor``
    (Hypoinverse RMSCUT) both scale by ``max(1, rmswt / rms_floor)`` per event, ``rmswt`` the
    RMS of the residuals under the current weights (``sqrt(sum (w r)^2 / sum w^2)``)."""
    if rms_floor is None:
        return cosine_taper(np.abs(res), r_full, r_zero)
    wv = np.where(valid, w, 0.0)
    num = ((wv * np.where(valid, res, 0.0)) ** 2).sum(1)
    den = (wv**2).sum(1)
    rmswt = np.sqrt(np.where(den > 0, num / np.maximum(den, 1e-300), 0.0))
    scale = np.maximum(1.0, rmswt / float(rms_floor))[:, None]
    return cosine_taper(np.abs(res), r_full * scale, r_zero * scale)


def _weighted_median(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Row-wise weighted median ignoring NaNs/zero weights; NaN for empty rows."""
    x = np.where(np.isfinite(x) & (w > 0), x, np.inf)
    w = np.where(np.isfinite(x), w, 0.0)
    o = np.argsort(x, axis=1)
    xs = np.take_along_axis(x, o, 1)
    ws = np.take_along_axis(w, o, 1)
    cw = np.cumsum(ws, 1)
    tot = cw[:, -1:]
    k = np.argmax(cw >= 0.5 * tot, axis=1)
    med = xs[np.arange(len(x)), k]
    return np.where((tot[:, 0] > 0) & np.isfinite(med), med, np.nan)


def _solve(G, w, r, damping):
    """Weighted, column-scaled, damped least squares per event: (A + damping I) m = b."""
    Gw = G * w[..., None]
    A = np.einsum("ekj,ekl->ejl", Gw, G)
    b = np.einsum("ekj,ek->ej", Gw, r)
    diag = np.einsum("ejj->ej", A)
    scale = np.where(diag > 1e-12, 1.0 / np.sqrt(np.maximum(diag, 1e-300)), 0.0)
    As = A * scale[:, :, None] * scale[:, None, :]
    bs = b * scale
    eye = np.eye(4)[None]
    zero_col = diag <= 1e-12
    As = As + damping * eye + zero_col[:, :, None] * eye  # unresolved parameters: no update
    try:
        ms = np.linalg.solve(As, bs[..., None])[..., 0]
    except np.linalg.LinAlgError:
        ms = np.stack([np.linalg.lstsq(a, c, rcond=None)[0] for a, c in zip(As, bs)])
    return ms * scale, A


def _covariance(G, w, fix_depth):
    Gw = G * w[..., None]
    A = np.einsum("ekj,ekl->ejl", Gw, G)
    A[fix_depth, 2, :] = 0.0
    A[fix_depth, :, 2] = 0.0
    A[fix_depth, 2, 2] = 1.0
    A = A + 1e-9 * np.eye(4)[None]
    C = np.linalg.pinv(A)
    C[fix_depth, 2, :] = 0.0
    C[fix_depth, :, 2] = 0.0
    return C


def _principal_errors(C3):
    """Azimuth (deg E of N), dip (deg, down positive) and size (km) of the three principal
    axes of each spatial covariance, largest first (x east, y north, z down)."""
    vals, vecs = np.linalg.eigh(C3)
    vals = vals[:, ::-1]
    vecs = vecs[:, :, ::-1]
    vz = vecs[:, 2, :]
    flip = np.where(vz < 0, -1.0, 1.0)
    vecs = vecs * flip[:, None, :]
    az = np.degrees(np.arctan2(vecs[:, 0, :], vecs[:, 1, :])) % 360.0
    dip = np.degrees(np.arcsin(np.clip(vecs[:, 2, :], -1, 1)))
    size = np.sqrt(np.clip(vals, 0, None))
    return az, dip, size


def _gap(az: np.ndarray) -> np.ndarray:
    """Largest azimuthal gap (deg) per row of station azimuths (NaN = not used)."""
    n = np.isfinite(az).sum(1)
    s = np.sort(np.where(np.isfinite(az), az, np.inf), axis=1)
    first = s[:, :1]
    s2 = np.where(np.isfinite(s), s, np.nan)
    diffs = np.diff(s2, axis=1)
    last = np.nanmax(np.where(np.isfinite(s2), s2, -np.inf), axis=1)
    wrap = first[:, 0] + 360.0 - last
    inner = (
        np.nanmax(np.where(np.isfinite(diffs), diffs, -np.inf), axis=1)
        if az.shape[1] > 1
        else np.full(len(az), -np.inf)
    )
    g = np.maximum(inner, wrap)
    return np.where(n >= 2, g, 360.0)
