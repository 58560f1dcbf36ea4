"""A small synthetic relocation case (truth known): the double-difference tests' and benchmarks'
fixture, and the 3-D error of relocated events against the truth."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..geo import LocalProjection
from ..velocity import LayeredModel, TravelTimeTable, default_model

__all__ = ["synthetic_case", "location_errors_m"]


def synthetic_case(
    n_events: int = 120,
    n_stations: int = 12,
    seed: int = 0,
    sigma_p_s: float = 0.02,
    sigma_s_s: float = 0.04,
    start_sigma_km: float = 0.5,
    start_sigma_z_km: float = 0.6,
    model: LayeredModel | None = None,
    extent_km: float = 2.0,
    lat0: float = 27.10,
    lon0: float = 103.35,
    network_radius_km: float = 35.0,
    zero_mean_start: bool = True,
    width_km: float | None = None,
    center_depth_km: float = 9.0,
):
    """A small synthetic world for tests and benchmarks: events on a fault patch (+-extent_km
    along strike, ``width_km`` (default extent_km) in depth around ``center_depth_km``),
    stations around it, picks = exact first-arrival times + Gaussian errors, start locations
    = truth + Gaussian perturbations.  Returns ``(truth, start, picks, stations, model)`` as
    pipeline tables."""
    rng = np.random.default_rng(seed)
    model = model or default_model()
    proj = LocalProjection(lat0, lon0)
    u = rng.uniform(-extent_km, extent_km, n_events)
    width = extent_km if width_km is None else float(width_km)
    v = rng.uniform(-0.5 * width, 0.5 * width, n_events)
    ex = u * np.cos(np.radians(30)) + rng.normal(0, 0.05, n_events)
    ey = u * np.sin(np.radians(30)) + rng.normal(0, 0.05, n_events)
    ez = center_depth_km + v
    t0 = pd.Timestamp("2014-08-03T08:00:00Z") + pd.to_timedelta(np.arange(n_events) * 97.0, unit="s")
    lat, lon = proj.to_latlon(ex, ey)
    truth = pd.DataFrame(
        {
            "event_id": np.arange(1, n_events + 1, dtype=np.int64),
            "time": t0,
            "latitude": lat,
            "longitude": lon,
            "depth_km": ez,
            "x_km": ex,
            "y_km": ey,
        }
    )
    az = np.sort(rng.uniform(0, 2 * np.pi, n_stations))
    r = rng.uniform(5.0, network_radius_km, n_stations)
    sx, sy = r * np.sin(az), r * np.cos(az)
    slat, slon = proj.to_latlon(sx, sy)
    stations = pd.DataFrame(
        {
            "station_id": [f"XS.S{i:02d}" for i in range(n_stations)],
            "latitude": slat,
            "longitude": slon,
            "elevation_m": 0.0,
        }
    )
    rows = []
    d = np.hypot(ex[:, None] - sx[None, :], ey[:, None] - sy[None, :])
    tt = TravelTimeTable(
        model,
        max_dist_km=max(network_radius_km + 10, float(d.max()) + 5.0),
        max_depth_km=max(20.0, float(ez.max()) + 5.0),
    )
    for ph, sig in (("P", sigma_p_s), ("S", sigma_s_s)):
        t, _, _ = tt.time(ph, d, np.broadcast_to(ez[:, None], d.shape))
        t = t + rng.normal(0, sig, t.shape)
        ie, js = np.meshgrid(np.arange(n_events), np.arange(n_stations), indexing="ij")
        rows.append(
            pd.DataFrame(
                {
                    "event_id": truth["event_id"].to_numpy()[ie.ravel()],
                    "station_id": stations["station_id"].to_numpy()[js.ravel()],
                    "phase": ph,
                    "time": t0[ie.ravel()] + pd.to_timedelta(t.ravel(), unit="s"),
                    "weight": 1.0,
                }
            )
        )
    picks = pd.concat(rows, ignore_index=True)
    picks["time"] = pd.to_datetime(picks["time"], utc=True)
    pert = rng.normal(0, 1, (n_events, 3)) * [start_sigma_km, start_sigma_km, start_sigma_z_km]
    if zero_mean_start:
        # an unbiased absolute locator: random errors per event, the cluster centroid right.
        # DD cannot undo a shift common to all events (it keeps the catalogue centroid).
        pert = pert - pert.mean(0)
    sx0, sy0, sz0 = ex + pert[:, 0], ey + pert[:, 1], ez + pert[:, 2]
    slat0, slon0 = proj.to_latlon(sx0, sy0)
    dt0 = rng.normal(0, 0.05, n_events)
    start = pd.DataFrame(
        {
            "event_id": truth["event_id"],
            "time": t0 + pd.to_timedelta(dt0, unit="s"),
            "latitude": slat0,
            "longitude": slon0,
            "depth_km": sz0,
            "magnitude": 1.0,
        }
    )
    return truth, start, picks, stations, model


def location_errors_m(a: pd.DataFrame, b: pd.DataFrame) -> pd.Series:
    """3-D distance (m) between two event tables (matched on event_id)."""
    m = a.merge(b, on="event_id", suffixes=("_a", "_b"))
    p = LocalProjection(float(m["latitude_a"].mean()), float(m["longitude_a"].mean()))
    xa, ya = p.to_xy(m["latitude_a"], m["longitude_a"])
    xb, yb = p.to_xy(m["latitude_b"], m["longitude_b"])
    dz = m["depth_km_a"].to_numpy(float) - m["depth_km_b"].to_numpy(float)
    return pd.Series(np.sqrt((xa - xb) ** 2 + (ya - yb) ** 2 + dz**2) * 1000.0, index=m["event_id"].to_numpy())
