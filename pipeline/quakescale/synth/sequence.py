"""The synthetic aftershock sequence: an L-shaped conjugate fault pair, Omori-Utsu decay in
time, Gutenberg-Richter magnitudes, depths 5-15 km.

The geometry follows the 2014 Ludian sequence in spirit: a NW-trending main fault and a shorter
NE-trending conjugate fault meeting near the mainshock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..geo import LocalProjection


@dataclass(frozen=True)
class SequenceParams:
    omori_p: float = 1.1
    omori_c_days: float = 0.05
    b_value: float = 1.0
    m_min: float = 1.0
    m_max: float = 4.8
    depth_min_km: float = 5.0
    depth_max_km: float = 15.0
    # faults: (name, azimuth deg, start km, end km along strike from the junction, share)
    faults: tuple = (("NW", 325.0, -3.0, 14.0, 0.65), ("NE", 55.0, 0.0, 9.0, 0.35))
    fault_width_km: float = 0.25  # scatter across strike (1 sigma)
    min_interevent_s: float = 8.0  # keep arrivals of consecutive events distinguishable


def omori_times(n: int, duration_s: float, rng: np.random.Generator, p: float, c_days: float) -> np.ndarray:
    """``n`` event times in [0, duration_s) from the Omori-Utsu rate (t + c)^-p."""
    c = c_days * 86400.0
    u = rng.uniform(0, 1, n)
    if abs(p - 1.0) < 1e-9:
        t = c * ((1 + duration_s / c) ** u - 1)
    else:
        a = c ** (1 - p)
        b = (duration_s + c) ** (1 - p)
        t = (a + u * (b - a)) ** (1 / (1 - p)) - c
    return np.sort(t)


def gr_magnitudes(n: int, rng: np.random.Generator, b: float, m_min: float, m_max: float) -> np.ndarray:
    """Truncated Gutenberg-Richter magnitudes (continuous), rounded to 0.01."""
    beta = b * np.log(10)
    u = rng.uniform(0, 1, n)
    m = m_min - np.log(1 - u * (1 - np.exp(-beta * (m_max - m_min)))) / beta
    return np.round(m, 2)


def make_sequence(
    n_events: int,
    recorded_s: float,
    rng: np.random.Generator,
    proj: LocalProjection,
    params: SequenceParams = SequenceParams(),
) -> pd.DataFrame:
    """Events in 'recorded time' (seconds from the start of recording): event_id, t_rec_s,
    x_km, y_km, depth_km, latitude, longitude, magnitude, fault."""
    t = omori_times(n_events, recorded_s, rng, params.omori_p, params.omori_c_days)
    # spread events that would fall too close together (the picker must tell them apart)
    for i in range(1, len(t)):
        if t[i] - t[i - 1] < params.min_interevent_s:
            t[i] = t[i - 1] + params.min_interevent_s + rng.uniform(0, 5)
    names = [f[0] for f in params.faults]
    share = np.array([f[4] for f in params.faults], float)
    which = rng.choice(len(names), size=n_events, p=share / share.sum())
    x = np.empty(n_events)
    y = np.empty(n_events)
    for k, (_name, az, s0, s1, _) in enumerate(params.faults):
        sel = which == k
        s = rng.uniform(s0, s1, sel.sum())
        w = rng.normal(0, params.fault_width_km, sel.sum())
        a = np.radians(az)
        x[sel] = s * np.sin(a) + w * np.cos(a)
        y[sel] = s * np.cos(a) - w * np.sin(a)
    mid = 0.5 * (params.depth_min_km + params.depth_max_km)
    z = np.clip(rng.normal(mid, 2.5, n_events), params.depth_min_km, params.depth_max_km)
    lat, lon = proj.to_latlon(x, y)
    mags = gr_magnitudes(n_events, rng, params.b_value, params.m_min, params.m_max)
    return pd.DataFrame(
        dict(
            event_id=np.arange(1, n_events + 1, dtype=np.int64),
            t_rec_s=t,
            x_km=x,
            y_km=y,
            depth_km=z,
            latitude=lat,
            longitude=lon,
            magnitude=mags,
            fault=[names[k] for k in which],
        )
    )
