"""1-D layered velocity models and first-arrival travel-time tables.

A :class:`LayeredModel` is a stack of constant-velocity flat layers (tops in km below the
datum, P and S velocities in km/s).  :class:`TravelTimeTable` computes first-arrival times of
P and S from a source at depth to a receiver at the datum exactly for that stack -- the direct
(up-going) ray found by shooting over the ray parameter, and the head waves refracted along
every interface below the source, as HYPOINVERSE and HypoDD do for layered models -- tabulates
them on an epicentral-distance x source-depth grid and interpolates them in batches, with the
derivatives a locator needs (dT/dDelta is the ray parameter, dT/dz is the vertical slowness).

Station elevation is a correction through the top layer along the ray
(``elev_km * sqrt(1/v0**2 - p**2)``).  Source depths are measured from the datum (sea level in
the synthetic world, as in HypoDD with station elevations ignored when ``elev_km`` is zero).

Readers for the model formats users have (layer table, TauP ``.nd``, HypoDD ``hypoDD.inp``,
Hypoinverse ``.crh``) are in :mod:`quakescale.formats.velmodels` (``read_model`` picks one by file
name; ``resolve_model`` also knows the ``builtin:NAME`` models of :data:`BUILTIN_MODELS`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

__all__ = ["LayeredModel", "TravelTimeTable", "default_model", "BUILTIN_MODELS"]


@dataclass(frozen=True)
class LayeredModel:
    """Flat layers: ``top_km[i]`` is the top of layer ``i``; the last layer is a half-space."""

    top_km: tuple[float, ...]
    vp_kms: tuple[float, ...]
    vs_kms: tuple[float, ...]
    name: str = "model"

    def __post_init__(self) -> None:
        n = len(self.top_km)
        if n == 0 or len(self.vp_kms) != n or len(self.vs_kms) != n:
            raise ValueError(
                f"velocity model {self.name!r}: top_km, vp_kms and vs_kms need the same, non-zero "
                f"length (got {len(self.top_km)}, {len(self.vp_kms)}, {len(self.vs_kms)})"
            )
        tops = np.asarray(self.top_km, float)
        if np.any(np.diff(tops) <= 0):
            raise ValueError(f"velocity model {self.name!r}: layer tops must increase strictly: {list(tops)}")
        if tops[0] > 0:
            raise ValueError(f"velocity model {self.name!r}: first layer top must be <= 0 km, got {tops[0]}")
        for label, v in (("vp_kms", self.vp_kms), ("vs_kms", self.vs_kms)):
            if np.any(np.asarray(v, float) <= 0):
                raise ValueError(f"velocity model {self.name!r}: {label} must be positive: {list(v)}")

    @classmethod
    def from_vpvs(cls, top_km, vp_kms, vpvs: float = 1.73, name: str = "model") -> "LayeredModel":
        vp = tuple(float(v) for v in vp_kms)
        return cls(tuple(float(t) for t in top_km), vp, tuple(v / vpvs for v in vp), name)

    def velocities(self, phase: str) -> np.ndarray:
        ph = phase.upper()[0]
        if ph == "P":
            return np.asarray(self.vp_kms, float)
        if ph == "S":
            return np.asarray(self.vs_kms, float)
        raise ValueError(f"phase must be 'P' or 'S', got {phase!r}")

    def velocity_at(self, depth_km, phase: str = "P") -> np.ndarray:
        v = self.velocities(phase)
        idx = np.searchsorted(np.asarray(self.top_km, float), np.asarray(depth_km, float), side="right") - 1
        return v[np.clip(idx, 0, len(v) - 1)]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "top_km": list(self.top_km),
            "vp_kms": list(self.vp_kms),
            "vs_kms": list(self.vs_kms),
        }

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def default_model() -> LayeredModel:
    """The synthetic world's model: a Ludian-like crust (layering after Fang et al. 2014,
    approximate values; Vp/Vs 1.73).  Not a published model -- a realistic stand-in."""
    return LayeredModel.from_vpvs(
        top_km=(0.0, 4.0, 12.0, 22.0, 40.0),
        vp_kms=(5.20, 5.90, 6.25, 6.70, 7.90),
        vpvs=1.73,
        name="ludian_like",
    )


@dataclass
class _PhaseTable:
    t: np.ndarray  # (ndist, ndepth) seconds
    p: np.ndarray  # dT/dDelta, s/km
    q: np.ndarray  # dT/dz, s/km


class TravelTimeTable:
    """First-arrival P and S times on an epicentral-distance x depth grid.

    ``tt = TravelTimeTable(model, max_dist_km=200, max_depth_km=40)``;
    ``t, dtdd, dtdz = tt.time("P", dist_km, depth_km, elev_km)`` works on arrays of any
    (broadcastable) shape.  Bilinear interpolation; the grid steps (default 0.25 km in distance,
    0.1 km in depth) keep interpolation errors below 1 ms inside the crust.
    """

    def __init__(
        self,
        model: LayeredModel,
        max_dist_km: float = 200.0,
        max_depth_km: float = 40.0,
        dist_step_km: float = 0.25,
        depth_step_km: float = 0.1,
        min_depth_km: float | None = None,
    ) -> None:
        self.model = model
        top0 = float(model.top_km[0])
        self.min_depth_km = top0 if min_depth_km is None else float(min_depth_km)
        self.dist = np.arange(0.0, max_dist_km + dist_step_km * 0.5, dist_step_km)
        self.depth = np.arange(self.min_depth_km, max_depth_km + depth_step_km * 0.5, depth_step_km)
        self.dist_step = dist_step_km
        self.depth_step = depth_step_km
        self.tables = {ph: self._build(ph) for ph in ("P", "S")}

    # ------------------------------------------------------------------ building
    def _build(self, phase: str) -> _PhaseTable:
        t, p, q = _first_arrivals_many(self.model, phase, self.dist, self.depth)
        return _PhaseTable(t, p, q)

    # ------------------------------------------------------------------ lookup
    def time(self, phase: str, dist_km, depth_km, elev_km=0.0):
        """Travel time (s), dT/dDelta (s/km) and dT/dz (s/km) for epicentral distances
        ``dist_km``, source depths ``depth_km`` (below datum) and receiver elevations
        ``elev_km`` (above datum).  Depths outside the table are clamped; the derivative then
        still describes the clamped point (locators must keep depths inside)."""
        tab = self.tables[phase.upper()[0]]
        d = np.asarray(dist_km, float)
        z = np.asarray(depth_km, float)
        d, z = np.broadcast_arrays(d, z)
        fi = np.clip(d / self.dist_step, 0, len(self.dist) - 1.000001)
        fj = np.clip((z - self.min_depth_km) / self.depth_step, 0, len(self.depth) - 1.000001)
        i = fi.astype(np.int64)
        j = fj.astype(np.int64)
        a = fi - i
        b = fj - j

        def interp(arr):
            return (
                arr[i, j] * (1 - a) * (1 - b)
                + arr[i + 1, j] * a * (1 - b)
                + arr[i, j + 1] * (1 - a) * b
                + arr[i + 1, j + 1] * a * b
            )

        t = interp(tab.t)
        dtdd = interp(tab.p)
        dtdz = interp(tab.q)
        # Beyond the tabulated distance: extrapolate along the ray parameter (head wave).
        beyond = d > self.dist[-1]
        if np.any(beyond):
            t = np.where(beyond, t + (d - self.dist[-1]) * dtdd, t)
        elev = np.asarray(elev_km, float)
        if np.any(elev != 0):
            v0 = self.model.velocities(phase)[0]
            eta0 = np.sqrt(np.clip(1.0 / v0**2 - dtdd**2, 0.0, None))
            t = t + elev * eta0
        return t, dtdd, dtdz

    def __call__(self, phase, dist_km, depth_km, elev_km=0.0):
        return self.time(phase, dist_km, depth_km, elev_km)[0]

    def digest(self) -> str:
        h = hashlib.sha256(self.model.digest().encode())
        h.update(np.asarray([self.dist[-1], self.depth[0], self.depth[-1], self.dist_step, self.depth_step]).tobytes())
        return h.hexdigest()[:16]


def first_arrivals(model: LayeredModel, phase: str, dist_km: np.ndarray, depth_km: float):
    """Exact first-arrival time, ray parameter and dT/dz in a flat layered model for a
    source at ``depth_km`` and receivers at the datum (depth ``model.top_km[0]`` counts as
    the surface) at epicentral distances ``dist_km``."""
    v_all = model.velocities(phase)
    tops = np.asarray(model.top_km, float)
    surface = tops[0]
    z = max(float(depth_km), surface)
    dist = np.asarray(dist_km, float)
    k = int(np.searchsorted(tops, z, side="right") - 1)  # source layer
    # Thickness of each layer crossed by the up-going leg (surface -> source).
    bottoms = np.append(tops[1:], np.inf)
    h_up = np.clip(np.minimum(bottoms, z) - tops, 0.0, None)[: k + 1]
    v_up = v_all[: k + 1]
    vmax_up = v_up.max()
    vs = v_all[k]

    # --- direct wave: shoot over sin(theta) at the fastest layer of the path
    if z - surface < 1e-9:
        t_dir = dist / vs
        p_dir = np.full_like(dist, 1.0 / vs)
        q_dir = np.zeros_like(dist)
    else:
        # Dense ray-parameter sampling, clustered towards grazing incidence.
        u = np.linspace(0.0, 1.0, 4001)
        s = np.sin(0.5 * np.pi * (1 - (1 - u) ** 3)) * (1 - 1e-10)
        pr = s / vmax_up
        pv = pr[:, None] * v_up[None, :]
        cos = np.sqrt(1.0 - pv**2)
        x = (h_up[None, :] * pv / cos).sum(1)
        tt = (h_up[None, :] / (v_up[None, :] * cos)).sum(1)
        pi = np.interp(dist, x, pr)
        # time along the ray: T = p X + tau(p)
        tau = tt - pr * x
        t_dir = pi * dist + np.interp(pi, pr, tau)
        far = dist > x[-1]
        t_dir = np.where(far, tt[-1] + (dist - x[-1]) / vmax_up, t_dir)
        pi = np.where(far, 1.0 / vmax_up, pi)
        p_dir = pi
        q_dir = np.sqrt(np.clip(1.0 / vs**2 - p_dir**2, 0.0, None))  # deeper source -> later

    best_t, best_p, best_q = t_dir, p_dir, q_dir

    # --- head waves along each interface below the source
    for m in range(k + 1, len(tops)):
        head = _head_wave(v_all, tops, bottoms, m)
        if head is None:
            continue
        pm, h_rec, eta, tan = head
        h_src = np.clip(np.minimum(bottoms[:m], tops[m]) - np.maximum(tops[:m], z), 0.0, None)  # source -> interface
        x_cross = ((h_rec + h_src) * tan).sum()
        tau = ((h_rec + h_src) * eta).sum()
        t_head = dist * pm + tau
        ok = (dist >= x_cross) & (t_head < best_t)
        best_t = np.where(ok, t_head, best_t)
        best_p = np.where(ok, pm, best_p)
        best_q = np.where(ok, -np.sqrt(1.0 / vs**2 - pm**2), best_q)
    return best_t, best_p, best_q


def _head_wave(v_all: np.ndarray, tops: np.ndarray, bottoms: np.ndarray, m: int):
    """The head wave along interface ``m`` (top of layer ``m``): None when a layer above is as fast,
    else its ray parameter ``pm``, the thicknesses from the surface down to the interface per layer
    above (``h_rec``), and per layer above ``eta`` (vertical slowness) and ``tan`` (tangent of the
    ray's angle)."""
    above = v_all[:m]
    if v_all[m] <= above.max():
        return None
    pm = 1.0 / v_all[m]
    h_rec = np.clip(np.minimum(bottoms[:m], tops[m]) - tops[:m], 0.0, None)  # surface -> interface
    eta = np.sqrt(1.0 / above**2 - pm**2)
    tan = pm * above / np.sqrt(1.0 - (pm * above) ** 2)
    return pm, h_rec, eta, tan


def _first_arrivals_many(model: LayeredModel, phase: str, dist_km: np.ndarray, depths_km):
    """:func:`first_arrivals` for many source depths at once, ``(nd, nz)`` arrays of time, ray
    parameter and dT/dz: the table build.  The same arithmetic per depth (values identical),
    with the depth-independent parts computed once, the head waves of one interface for all
    depths in one array operation, and only at distances beyond the interface's crossover
    (nearer ones cannot take it: ``dist >= x_cross`` is required)."""
    v_all = model.velocities(phase)
    tops = np.asarray(model.top_km, float)
    surface = tops[0]
    dist = np.asarray(dist_km, float)
    if dist.ndim != 1 or np.any(np.diff(dist) < 0):  # the crossover cut needs sorted distances
        cols = [first_arrivals(model, phase, dist, float(z)) for z in depths_km]
        return tuple(np.stack([c[i] for c in cols], 1) for i in range(3))
    zs = np.array([max(float(z), surface) for z in depths_km])
    ks = (np.searchsorted(tops, zs, side="right") - 1).astype(np.int64)
    bottoms = np.append(tops[1:], np.inf)
    nz, nd = len(zs), len(dist)
    bt, bp, bq = np.empty((nz, nd)), np.empty((nz, nd)), np.empty((nz, nd))
    u = np.linspace(0.0, 1.0, 4001)
    s = np.sin(0.5 * np.pi * (1 - (1 - u) ** 3)) * (1 - 1e-10)
    per_layer: dict = {}
    for jz, z in enumerate(zs):  # direct wave (as first_arrivals)
        k = int(ks[jz])
        h_up = np.clip(np.minimum(bottoms, z) - tops, 0.0, None)[: k + 1]
        v_up = v_all[: k + 1]
        vmax_up = v_up.max()
        vs = v_all[k]
        if z - surface < 1e-9:
            bt[jz] = dist / vs
            bp[jz] = np.full_like(dist, 1.0 / vs)
            bq[jz] = np.zeros_like(dist)
            continue
        if k not in per_layer:  # one layer at a time (depths ascending): memory stays small
            per_layer.clear()
            pr = s / vmax_up
            pv = pr[:, None] * v_up[None, :]
            cos = np.sqrt(1.0 - pv**2)
            per_layer[k] = (pr, pv, cos, v_up[None, :] * cos)
        pr, pv, cos, vcos = per_layer[k]
        x = (h_up[None, :] * pv / cos).sum(1)
        tt = (h_up[None, :] / vcos).sum(1)
        pi = np.interp(dist, x, pr)
        tau = tt - pr * x
        t_dir = pi * dist + np.interp(pi, pr, tau)
        far = dist > x[-1]
        bt[jz] = np.where(far, tt[-1] + (dist - x[-1]) / vmax_up, t_dir)
        pi = np.where(far, 1.0 / vmax_up, pi)
        bp[jz] = pi
        bq[jz] = np.sqrt(np.clip(1.0 / vs**2 - pi**2, 0.0, None))
    vs_rows = v_all[ks]
    for m in range(1, len(tops)):  # head waves, interface by interface (the order of first_arrivals)
        rows = np.flatnonzero(ks < m)
        if len(rows) == 0:
            continue
        head = _head_wave(v_all, tops, bottoms, m)
        if head is None:
            continue
        pm, h_rec, eta, tan = head
        h_src = np.clip(
            np.minimum(bottoms[:m], tops[m])[None, :] - np.maximum(tops[:m][None, :], zs[rows, None]), 0.0, None
        )
        hh = h_rec[None, :] + h_src
        x_cross = (hh * tan[None, :]).sum(1)
        tau = (hh * eta[None, :]).sum(1)
        i0 = int(np.searchsorted(dist, x_cross.min(), side="left"))
        if i0 >= nd:
            continue
        d = dist[i0:]
        t_head = d[None, :] * pm + tau[:, None]
        sub_t = bt[rows, i0:]
        ok = (d[None, :] >= x_cross[:, None]) & (t_head < sub_t)
        if not ok.any():
            continue
        bt[rows, i0:] = np.where(ok, t_head, sub_t)
        bp[rows, i0:] = np.where(ok, pm, bp[rows, i0:])
        bq[rows, i0:] = np.where(ok, -np.sqrt(1.0 / vs_rows[rows, None] ** 2 - pm**2), bq[rows, i0:])
    return bt.T.copy(), bp.T.copy(), bq.T.copy()


BUILTIN_MODELS = {"ludian_like": default_model}
