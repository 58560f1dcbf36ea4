"""Synthetic picks of a network (truth known): the associator's test and benchmark fixture."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..geo import LocalProjection
from ..velocity import TravelTimeTable

__all__ = ["SyntheticPicks", "synthetic_picks"]


@dataclass
class SyntheticPicks:
    stations: pd.DataFrame
    events: pd.DataFrame  # truth: event_id time latitude longitude depth_km x_km y_km n_stations
    picks: pd.DataFrame  # PICKS schema + event_id (-1 for false picks)


def synthetic_picks(
    tt: TravelTimeTable,
    n_events: int = 100,
    n_stations: int = 20,
    region_km: float = 100.0,
    duration_s: float | None = None,
    false_fraction: float = 0.3,
    p_detect: float = 0.85,
    s_detect: float = 0.75,
    sigma_p_s: float = 0.1,
    sigma_s_s: float = 0.2,
    max_depth_km: float = 20.0,
    lat0: float = 27.2,
    lon0: float = 103.4,
    start: str = "2014-08-03T00:00:00",
    seed: int = 0,
    outlier_fraction: float = 0.02,
) -> SyntheticPicks:
    """Picks of a synthetic network: ``n_stations`` stations and ``n_events`` events uniform in
    a ``region_km`` square (depths 1..max_depth), origin times uniform over ``duration_s``
    (default 60 s per event); first-arrival P/S from ``tt`` plus Gaussian errors
    (``sigma_p_s``/``sigma_s_s``, and a small ``outlier_fraction`` of 0.5-1.5 s errors);
    picks missing at random (detection probabilities fall off with distance), and false
    picks -- ``false_fraction`` of all picks -- uniform in time on random stations/phases."""
    rng = np.random.default_rng(seed)
    proj = LocalProjection(lat0, lon0)
    half = region_km / 2
    sx, sy = rng.uniform(-half, half, n_stations), rng.uniform(-half, half, n_stations)
    slat, slon = proj.to_latlon(sx, sy)
    sids = np.array([f"SY.S{i:03d}" for i in range(n_stations)])
    stations = pd.DataFrame(
        {
            "station_id": sids,
            "network": "SY",
            "station": [s[3:] for s in sids],
            "latitude": slat,
            "longitude": slon,
            "elevation_m": 0.0,
            "kind": "synthetic",
        }
    )
    duration_s = duration_s or 60.0 * n_events
    ex, ey = rng.uniform(-half, half, n_events), rng.uniform(-half, half, n_events)
    ez = rng.uniform(1.0, max_depth_km, n_events)
    eo = np.sort(rng.uniform(0, duration_s, n_events))
    dist = np.hypot(ex[:, None] - sx[None], ey[:, None] - sy[None])
    rows_t, rows_s, rows_p, rows_e = [], [], [], []
    for phc, name, pdet, sig in ((0, "P", p_detect, sigma_p_s), (1, "S", s_detect, sigma_s_s)):
        ttv = tt.time(name, dist, ez[:, None])[0]
        prob = pdet * np.clip(1.2 - dist / (1.5 * region_km), 0.2, 1.0)
        det = rng.random(dist.shape) < prob
        err = rng.normal(0, sig, dist.shape)
        out = rng.random(dist.shape) < outlier_fraction
        err[out] = rng.choice([-1, 1], out.sum()) * rng.uniform(0.5, 1.5, out.sum())
        e_i, s_i = np.nonzero(det)
        rows_t.append(eo[e_i] + ttv[e_i, s_i] + err[e_i, s_i])
        rows_s.append(s_i)
        rows_p.append(np.full(len(e_i), phc))
        rows_e.append(e_i)
    t = np.concatenate(rows_t)
    s = np.concatenate(rows_s)
    p = np.concatenate(rows_p)
    e = np.concatenate(rows_e)
    n_true = len(t)
    n_false = int(round(false_fraction * n_true / (1 - false_fraction))) if false_fraction < 1 else 0
    t = np.concatenate([t, rng.uniform(0, duration_s + 30, n_false)])
    s = np.concatenate([s, rng.integers(0, n_stations, n_false)])
    p = np.concatenate([p, rng.integers(0, 2, n_false)])
    e = np.concatenate([e, np.full(n_false, -1)])
    order = np.argsort(t, kind="stable")
    t, s, p, e = t[order], s[order], p[order], e[order]
    t0 = pd.Timestamp(start, tz="UTC")
    picks = pd.DataFrame(
        {
            "station_id": sids[s],
            "network": "SY",
            "station": [x[3:] for x in sids[s]],
            "location": "",
            "channel": "HH?",
            "phase": np.where(p == 0, "P", "S"),
            "time": t0 + pd.to_timedelta(np.round(t * 1e9).astype(np.int64), unit="ns"),
            "probability": np.float32(0.9),
            "snr": np.float32(10.0),
            "amp_wa_mm": np.nan,
            "method": "truth",
            "model": "synthetic",
            "event_id": e.astype(np.int64),
        }
    )
    elat, elon = proj.to_latlon(ex, ey)
    true_picks = picks[picks["event_id"] >= 0]
    nsta = true_picks.groupby("event_id")["station_id"].nunique().reindex(np.arange(n_events), fill_value=0)
    events = pd.DataFrame(
        {
            "event_id": np.arange(n_events, dtype=np.int64),
            "time": t0 + pd.to_timedelta(np.round(eo * 1e9).astype(np.int64), unit="ns"),
            "latitude": elat,
            "longitude": elon,
            "depth_km": ez,
            "x_km": ex,
            "y_km": ey,
            "n_stations": nsta.to_numpy(),
        }
    )
    return SyntheticPicks(stations, events, picks)
