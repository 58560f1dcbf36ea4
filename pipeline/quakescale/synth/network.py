"""The synthetic network and its instruments.

Like the seed's deployment: about half near-field campaign stations (short-period 2 Hz
sensors, network ``XL``, channels ``EH?``) within ~30 km of the sequence, half regional
permanent broadband stations (network ``YN``, channels ``HH?``) out to ~100 km.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..geo import LocalProjection

# Ludian 2014 mainshock area
CENTER_LAT = 27.19
CENTER_LON = 103.35


@dataclass(frozen=True)
class Instrument:
    kind: str
    band: str  # channel prefix, e.g. "HH"
    zeros: tuple
    poles: tuple
    sensitivity: float  # counts per m/s at norm_freq
    norm_freq_hz: float
    noise_rms_ms: float  # 1-20 Hz ground-velocity noise RMS (m/s) at night
    sensor: str
    datalogger: str


BROADBAND = Instrument(
    kind="permanent",
    band="HH",
    zeros=(0j, 0j),
    poles=(-0.03701 + 0.03701j, -0.03701 - 0.03701j, -251.3 + 0j, -131.0 + 467.3j, -131.0 - 467.3j),
    sensitivity=5.0e8,
    norm_freq_hz=5.0,
    noise_rms_ms=1.5e-8,
    sensor="broadband 120 s (Trillium-like)",
    datalogger="24-bit, 419430 counts/V",
)

SHORT_PERIOD = Instrument(
    kind="campaign",
    band="EH",
    zeros=(0j, 0j),
    poles=(-8.886 + 8.886j, -8.886 - 8.886j),
    sensitivity=2.5e8,
    norm_freq_hz=5.0,
    noise_rms_ms=4.0e-8,
    sensor="short-period 2 Hz geophone",
    datalogger="24-bit campaign recorder",
)

INSTRUMENTS = {"campaign": SHORT_PERIOD, "permanent": BROADBAND}


def make_network(
    n_stations: int, rng: np.random.Generator, lat0: float = CENTER_LAT, lon0: float = CENTER_LON
) -> pd.DataFrame:
    """Station table: station_id, network, station, latitude, longitude, elevation_m, kind,
    band, x_km, y_km, p_delay_s, s_delay_s (station statics standing in for 3-D structure)."""
    if n_stations < 4:
        raise ValueError(f"--stations must be at least 4 (association needs 4), got {n_stations}")
    proj = LocalProjection(lat0, lon0)
    n_near = (n_stations + 1) // 2
    n_far = n_stations - n_near
    rows = []
    for kind, n, rmin, rmax, net, prefix in (
        ("campaign", n_near, 4.0, 30.0, "XL", "L"),
        ("permanent", n_far, 35.0, 100.0, "YN", "Y"),
    ):
        az0 = rng.uniform(0, 360)
        for i in range(n):
            az = np.radians(az0 + 360.0 * i / max(n, 1) + rng.uniform(-12, 12))
            r = rng.uniform(rmin, rmax)
            x, y = r * np.sin(az), r * np.cos(az)
            lat, lon = proj.to_latlon(x, y)
            sta = f"{prefix}{i + 1:02d}"
            rows.append(
                dict(
                    station_id=f"{net}.{sta}",
                    network=net,
                    station=sta,
                    latitude=float(np.round(lat, 5)),
                    longitude=float(np.round(lon, 5)),
                    elevation_m=float(np.round(rng.uniform(300, 1800), 0)),
                    kind=kind,
                    band=INSTRUMENTS[kind].band,
                    p_delay_s=float(rng.normal(0.0, 0.03)),
                )
            )
    df = pd.DataFrame(rows)
    df["s_delay_s"] = df["p_delay_s"] * 1.73
    x, y = proj.to_xy(df["latitude"].to_numpy(), df["longitude"].to_numpy())
    df["x_km"], df["y_km"] = x, y
    return df
