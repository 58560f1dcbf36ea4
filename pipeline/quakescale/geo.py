"""Local Cartesian coordinates around a network centre (km east, km north).

An azimuthal-equidistant-like local projection (spherical Earth, R = 6371 km) accurate to a
few metres within 150 km of the centre -- the scale of a local network.  Depth is km below
sea level, positive down; elevation km above sea level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EARTH_RADIUS_KM = 6371.0
KM_PER_DEG = np.pi * EARTH_RADIUS_KM / 180.0


@dataclass(frozen=True)
class LocalProjection:
    lat0: float
    lon0: float

    def to_xy(self, lat, lon):
        lat = np.asarray(lat, float)
        lon = np.asarray(lon, float)
        y = (lat - self.lat0) * KM_PER_DEG
        x = (lon - self.lon0) * KM_PER_DEG * np.cos(np.radians(0.5 * (lat + self.lat0)))
        return x, y

    def to_latlon(self, x_km, y_km):
        y = np.asarray(y_km, float)
        x = np.asarray(x_km, float)
        lat = self.lat0 + y / KM_PER_DEG
        lon = self.lon0 + x / (KM_PER_DEG * np.cos(np.radians(0.5 * (lat + self.lat0))))
        return lat, lon


def epicentral_km(lat1, lon1, lat2, lon2):
    """Great-circle distance in km (haversine)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(np.asarray(lon2, float) - np.asarray(lon1, float))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0, 1)))


def azimuth_deg(lat1, lon1, lat2, lon2):
    """Azimuth from point 1 to point 2, degrees clockwise from north."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dl = np.radians(np.asarray(lon2, float) - np.asarray(lon1, float))
    x = np.sin(dl) * np.cos(p2)
    y = np.cos(p1) * np.sin(p2) - np.sin(p1) * np.cos(p2) * np.cos(dl)
    return np.degrees(np.arctan2(x, y)) % 360.0
