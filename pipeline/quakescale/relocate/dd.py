"""Double-difference relocation (Waldhauser & Ellsworth 2000), as HypoDD does it.

The solver follows hypoDD 1.3 step by step so that a HypoDD project gives HypoDD's answer:

- data: catalog (``ct``) and/or cross-correlation (``cc``) differential travel times of P and S;
  stations farther than DIST from the centroid are dropped; events without data are dropped;
- clusters: events linked by at least OBSCT catalog (or OBSCC cc) observations per pair,
  connected components, largest first (no clustering when the minimum is 0);
- per cluster, a local Cartesian frame at the centroid; each iteration: travel times and
  partial derivatives in the layered model (direct and head waves), residuals
  ``dt_obs - (T1 - T2 + tau1 - tau2)``, a priori weights (WTCCP/WTCCS/WTCTP/WTCTS x quality),
  re-weighting by distance (bicube, ``(1-(d/WD)^3)^3``, ``^5`` for cc) and by residual
  (bicube, cut off in s or, when >= 1, in multiples of the MAD/0.67449), data whose weight drops
  below 1e-5 are skipped for good, then events/stations left without data;
- the weighted, column-normalised system is solved by damped LSQR (scipy.sparse) or, for small
  problems, SVD with four rows that keep the mean shift zero; for LSQR the rows of each event
  pair are first replaced by their 8-row QR factor (same normal equations, same LSQR steps, ~9x
  fewer non-zeros -- see :func:`_compressed_system`);
- air quakes (depth < 0 after the step): the step is not applied, their data are removed and the
  iteration repeated (HypoDD's behaviour), the iteration sets shift by one.

Everything is numpy arrays sized by the data (no fixed maxima).  A step that would give
non-finite coordinates raises :class:`DDSolverError` naming the iteration and events, never NaN.

Pipeline face: :func:`relocate`.  HypoDD project face:
:func:`quakescale.relocate.hypodd_backend.run_hypodd_project` (this solver on a 1.x/2.x project's
files); ``quakescale relocate hypodd`` runs :mod:`.hypodd21`, HypoDD 2.1b step for step.
"""

from __future__ import annotations

import logging
import time as _time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import lsqr

from ..config import RelocateSection
from ..errors import QuakeScaleError
from ..formats.hypodd import IterationSet
from ..geo import LocalProjection, azimuth_deg, epicentral_km
from ..velocity import LayeredModel, TravelTimeTable
from .pairs import PAIR_FIELDS, catalog_pairs, resolve_max_station_km

__all__ = [
    "DDError",
    "DDSolverError",
    "DDData",
    "DDResult",
    "RelocateParams",
    "relocate_dd",
    "relocate",
    "default_iteration_sets",
    "find_clusters",
]

log = logging.getLogger("quakescale.relocate")

MINWGHT = 0.00001
IDX_CCP, IDX_CCS, IDX_CTP, IDX_CTS = 1, 2, 3, 4


class DDError(QuakeScaleError, ValueError):
    pass


class DDSolverError(DDError):
    pass


@dataclass
class DDData:
    """Differential times in one table: event_id_1, event_id_2, station, phase ('P'/'S'),
    dt_s (t1 - t2 travel-time difference), qual (a priori weight: pick weight or cc), kind
    ('ct' | 'cc')."""

    table: pd.DataFrame

    @classmethod
    def from_tables(cls, dtct: pd.DataFrame | None = None, dtcc: pd.DataFrame | None = None) -> "DDData":
        parts = []
        if dtct is not None and len(dtct):
            d = pd.DataFrame(
                {
                    "event_id_1": dtct["event_id_1"].astype(np.int64),
                    "event_id_2": dtct["event_id_2"].astype(np.int64),
                    "station": dtct["station"].astype(str),
                    "phase": dtct["phase"].str.upper().str[0],
                    "dt_s": (dtct["t1_s"].astype(float) - dtct["t2_s"].astype(float))
                    if "dt_s" not in dtct
                    else dtct["dt_s"].astype(float),
                    "qual": dtct["weight"].astype(float),
                    "kind": "ct",
                }
            )
            parts.append(d)
        if dtcc is not None and len(dtcc):
            sta = dtcc["station"] if "station" in dtcc else dtcc["station_id"]
            dt = dtcc["dt_s"].astype(float)
            if "otc_s" in dtcc:
                dt = dt - dtcc["otc_s"].astype(float)
            qual = dtcc["cc"].astype(float) ** 2 if "weight" not in dtcc else dtcc["weight"].astype(float)
            d = pd.DataFrame(
                {
                    "event_id_1": dtcc["event_id_1"].astype(np.int64),
                    "event_id_2": dtcc["event_id_2"].astype(np.int64),
                    "station": sta.astype(str),
                    "phase": dtcc["phase"].str.upper().str[0],
                    "dt_s": dt,
                    "qual": qual,
                    "kind": "cc",
                }
            )
            parts.append(d)
        if not parts:
            return cls(pd.DataFrame(columns=["event_id_1", "event_id_2", "station", "phase", "dt_s", "qual", "kind"]))
        t = pd.concat(parts, ignore_index=True)
        for col in ("station", "phase", "kind"):  # compact: millions of rows, few distinct values
            t[col] = t[col].astype("category")
        return cls(t)


@dataclass
class DDResult:
    events: pd.DataFrame  # relocated events (all clusters)
    initial: pd.DataFrame  # initial locations of the events in clusters (hypoDD.loc)
    residuals: pd.DataFrame  # final data (hypoDD.res)
    stations: pd.DataFrame  # per-station counts and rms (hypoDD.sta)
    log: list[str] = field(default_factory=list)
    clusters: list[list[int]] = field(default_factory=list)
    n_iterations: dict = field(default_factory=dict)
    seconds: float = 0.0


def default_iteration_sets(
    iterations, damping, with_cc: bool, max_sep_km: float, max_pair_cc_km: float
) -> list[IterationSet]:
    """Two-stage scheme of the HypoDD examples: first catalog-led without re-weighting, then
    re-weighted (residuals > 6 MAD and pairs beyond the separation limits get zero weight);
    with cc data the second stage is led by cc.  The config's values: :meth:`RelocateParams.iteration_sets`."""
    if len(iterations) != len(damping):
        raise DDError(f"damping ({len(damping)} values) needs one value per iteration set ({len(iterations)})")
    sets = []
    for k, (n, d) in enumerate(zip(iterations, damping)):
        first = k == 0
        if with_cc:
            if first:
                sets.append(IterationSet(int(n), 0.01, 0.005, -9, -9, 1.0, 0.5, -9, -9, float(d)))
            else:
                sets.append(IterationSet(int(n), 1.0, 0.5, 6, max_pair_cc_km, 0.01, 0.005, 6, max_sep_km, float(d)))
        else:
            if first:
                sets.append(IterationSet(int(n), -9, -9, -9, -9, 1.0, 0.5, -9, -9, float(d)))
            else:
                sets.append(IterationSet(int(n), -9, -9, -9, -9, 1.0, 0.5, 6, max_sep_km, float(d)))
    return sets


def _median(a):
    return float(np.median(a)) if len(a) else 0.0


def find_clusters(
    e1: np.ndarray,
    e2: np.ndarray,
    kind_cc: np.ndarray,
    n_events: int,
    minobs_ct: int,
    minobs_cc: int,
    use_ct: bool,
    use_cc: bool,
) -> np.ndarray:
    """Cluster label per event (0 = largest cluster, -1 = isolated) from pair link counts."""
    key = e1.astype(np.int64) * n_events + e2.astype(np.int64)
    sw = e1 > e2
    key[sw] = e2[sw].astype(np.int64) * n_events + e1[sw]
    linked = np.zeros(0, np.int64)
    parts = []
    if use_ct and minobs_ct > 0:
        k, c = np.unique(key[~kind_cc], return_counts=True)
        parts.append(k[c >= minobs_ct])
    if use_cc and minobs_cc > 0:
        k, c = np.unique(key[kind_cc], return_counts=True)
        parts.append(k[c >= minobs_cc])
    if parts:
        linked = np.unique(np.concatenate(parts))
    a, b = linked // n_events, linked % n_events
    g = sp.coo_matrix((np.ones(len(a)), (a, b)), shape=(n_events, n_events))
    _, lab = connected_components(g, directed=False)
    has = np.zeros(n_events, bool)
    has[a] = True
    has[b] = True
    lab = np.where(has, lab, -1)
    labs, counts = np.unique(lab[lab >= 0], return_counts=True)
    first = np.array([np.flatnonzero(lab == label)[0] for label in labs]) if len(labs) else np.zeros(0, int)
    order = np.lexsort((first, -counts))
    remap = np.full(lab.max() + 1 if len(lab) and lab.max() >= 0 else 1, -1)
    remap[labs[order]] = np.arange(len(labs))
    return np.where(lab >= 0, remap[np.clip(lab, 0, None)], -1)


class _Cluster:
    """State of one cluster's relocation (arrays, resized when data/events are skipped)."""

    def __init__(self, ev: pd.DataFrame, st: pd.DataFrame, dd: pd.DataFrame, model: LayeredModel, use_elev: bool):
        self.ev = ev.reset_index(drop=True)
        self.lat0 = float(self.ev["latitude"].mean())
        self.lon0 = float(self.ev["longitude"].mean())
        self.dep0 = float(self.ev["depth_km"].mean())
        self.proj = LocalProjection(self.lat0, self.lon0)
        x, y = self.proj.to_xy(self.ev["latitude"].to_numpy(), self.ev["longitude"].to_numpy())
        self.x = x * 1000.0
        self.y = y * 1000.0
        self.z = (self.ev["depth_km"].to_numpy(float) - self.dep0) * 1000.0
        self.x0, self.y0, self.z0 = self.x.copy(), self.y.copy(), self.z.copy()
        self.t = np.zeros(len(self.ev))  # ms, origin-time shift (origin = catalog + t)
        self.ex = np.zeros(len(self.ev))
        self.ey = np.zeros(len(self.ev))
        self.ez = np.zeros(len(self.ev))
        self.et = np.zeros(len(self.ev))
        self.ids = self.ev["event_id"].to_numpy(np.int64)
        self.st = st.reset_index(drop=True)
        sx, sy = self.proj.to_xy(self.st["latitude"].to_numpy(), self.st["longitude"].to_numpy())
        self.sx, self.sy = sx, sy  # km
        self.selev = (
            (self.st["elevation_m"].to_numpy(float) / 1000.0)
            if (use_elev and "elevation_m" in self.st)
            else np.zeros(len(self.st))
        )
        eidx = pd.Index(self.ids)
        self.ic1 = eidx.get_indexer(dd["event_id_1"]).astype(np.int64)
        self.ic2 = eidx.get_indexer(dd["event_id_2"]).astype(np.int64)
        sidx = pd.Index(self.st["station"].astype(str))
        scol = dd["station"]
        if isinstance(scol.dtype, pd.CategoricalDtype):
            cat_pos = sidx.get_indexer(scol.cat.categories.astype(str))
            codes = scol.cat.codes.to_numpy()
            self.ista = np.where(codes >= 0, cat_pos[codes], -1).astype(np.int64)
        else:
            self.ista = sidx.get_indexer(scol.astype(str)).astype(np.int64)
        if (self.ic1 < 0).any() or (self.ic2 < 0).any() or (self.ista < 0).any():
            raise DDError("internal: differential times reference events or stations outside the cluster")
        self.isS = np.asarray(dd["phase"] == "S")
        self.iscc = np.asarray(dd["kind"] == "cc")
        self.idx = np.where(self.iscc, np.where(self.isS, IDX_CCS, IDX_CCP), np.where(self.isS, IDX_CTS, IDX_CTP))
        self.dt = dd["dt_s"].to_numpy(float)
        self.qual = dd["qual"].to_numpy(float)
        # the data of one event pair side by side (the solver compresses them pair by pair);
        # row_id keeps the input order for the outputs
        self.row_id = np.argsort(self.ic1 * len(self.ids) + self.ic2, kind="stable")
        for name in ("ic1", "ic2", "ista", "isS", "iscc", "idx", "dt", "qual"):
            setattr(self, name, getattr(self, name)[self.row_id])
        self.res = np.zeros(len(dd))
        self.wt = np.zeros(len(dd))
        self.update_offsets()
        max_dist = (
            float(np.hypot(self.sx[:, None] - self.x[None, :] / 1000, self.sy[:, None] - self.y[None, :] / 1000).max())
            if len(self.st)
            else 10.0
        )
        zmax = max(40.0, float(self.ev["depth_km"].max()) + 15.0)
        self.tt = TravelTimeTable(model, max_dist_km=max_dist + 20.0, max_depth_km=zmax)

    # -------------------------------------------------------------- helpers
    def update_offsets(self):
        self.offs = np.sqrt(
            (self.x[self.ic1] - self.x[self.ic2]) ** 2
            + (self.y[self.ic1] - self.y[self.ic2]) ** 2
            + (self.z[self.ic1] - self.z[self.ic2]) ** 2
        )

    def depth_km(self):
        return self.dep0 + self.z / 1000.0

    def partials(self):
        """Travel times (s) and derivatives (ms/m) for every (event, station, phase) in use."""
        nsta = len(self.st)
        if getattr(self, "_keys", None) is None:
            # (event, station) keys in use, sorted, and each datum's position among them -- a dense
            # mask over events x stations instead of a sort (linear in the data)
            nkey = len(self.ids) * nsta
            a = self.ic1 * nsta + self.ista
            b = self.ic2 * nsta + self.ista
            mask = np.zeros(nkey, bool)
            mask[a] = True
            mask[b] = True
            self._keys = np.flatnonzero(mask)
            pos = np.cumsum(mask) - 1
            self._kcache = (pos[a], pos[b])
        keys = self._keys
        ie, isx = keys // nsta, keys % nsta
        dx = self.x[ie] / 1000.0 - self.sx[isx]
        dy = self.y[ie] / 1000.0 - self.sy[isx]
        dist = np.hypot(dx, dy)
        dep = self.depth_km()[ie]
        with np.errstate(invalid="ignore", divide="ignore"):
            ux = np.where(dist > 1e-9, dx / dist, 0.0)
            uy = np.where(dist > 1e-9, dy / dist, 0.0)
        # (phase, key, [t, dT/dx, dT/dy, dT/dz]) with phase 0 = P, 1 = S
        out = np.empty((2, len(keys), 4))
        for j, ph in enumerate(("P", "S")):
            t, p, q = self.tt.time(ph, dist, dep, self.selev[isx])
            out[j, :, 0], out[j, :, 1], out[j, :, 2], out[j, :, 3] = t, p * ux, p * uy, q
        return keys, out

    def residuals(self):
        keys, out = self.partials()
        k1, k2 = self._kcache
        off = self.isS.astype(np.int64) * out.shape[1]
        # partials are kept per (event, station, phase): P[kr1] / P[kr2] are the rows of event 1 / 2
        self.P = out.reshape(-1, 4)
        self.P3 = np.ascontiguousarray(self.P[:, 1:])  # dT/dx, dT/dy, dT/dz
        self.Pev = np.tile(keys // len(self.st), 2)  # event of each row of P
        self.kr1 = k1 + off
        self.kr2 = k2 + off
        cal = self.P[self.kr1, 0] - self.P[self.kr2, 0] + (self.t[self.ic1] - self.t[self.ic2]) / 1000.0
        self.res = self.dt - cal

    def G12(self):
        """dT/d(x, y, z) of event 1 and event 2 of every datum, (n, 3) each."""
        return np.take(self.P3, self.kr1, axis=0), np.take(self.P3, self.kr2, axis=0)

    def keep_data(self, keep: np.ndarray):
        self._keys = None
        self._kcache = None
        self._seg = None
        for name in (
            "ic1",
            "ic2",
            "ista",
            "isS",
            "iscc",
            "idx",
            "dt",
            "qual",
            "res",
            "wt",
            "offs",
            "kr1",
            "kr2",
            "row_id",
        ):
            if hasattr(self, name):
                setattr(self, name, getattr(self, name)[keep])
        # events without data
        used = np.zeros(len(self.ids), bool)
        used[self.ic1] = True
        used[self.ic2] = True
        if not used.all():
            newpos = np.cumsum(used) - 1
            for name in ("x", "y", "z", "x0", "y0", "z0", "t", "ex", "ey", "ez", "et", "ids"):
                setattr(self, name, getattr(self, name)[used])
            self.ev = self.ev[used].reset_index(drop=True)
            self.ic1 = newpos[self.ic1]
            self.ic2 = newpos[self.ic2]
            if hasattr(self, "Pev"):
                self.Pev = newpos[self.Pev]  # rows of removed events are no longer referenced
        sused = np.zeros(len(self.st), bool)
        sused[self.ista] = True
        if not sused.all():
            newpos = np.cumsum(sused) - 1
            self.st = self.st[sused].reset_index(drop=True)
            self.sx, self.sy, self.selev = self.sx[sused], self.sy[sused], self.selev[sused]
            self.ista = newpos[self.ista]


def _weighting(c: _Cluster, s: IterationSet, bad: set, use_ct: bool, use_cc: bool) -> bool:
    """A priori weights and re-weighting (hypoDD weighting.f).  Returns True when data must be
    skipped (weights below MINWGHT)."""
    apriori = np.select(
        [c.idx == IDX_CCP, c.idx == IDX_CCS, c.idx == IDX_CTP, c.idx == IDX_CTS],
        [s.wt_ccp, s.wt_ccs, s.wt_ctp, s.wt_cts],
        0.0,
    )
    wt = apriori * c.qual
    ineg = False
    if bad:
        badm = np.isin(c.ids[c.ic1], list(bad)) | np.isin(c.ids[c.ic2], list(bad))
        wt[badm] = 0.0
        ineg = bool(badm.any())
    iscc = c.iscc
    rw_cc = use_cc and (s.maxres_cc > 0 or s.maxdist_cc_km > 0)
    rw_ct = use_ct and (s.maxres_ct > 0 or s.maxdist_ct_km > 0)
    if rw_cc or rw_ct:

        def mad_cut(mask, maxres):
            if maxres >= 1:
                r = c.res[mask]
                med = _median(r)
                mad = _median(np.abs(r - med)) / 0.67449
                return mad * maxres
            return maxres

        if use_cc and use_ct:
            cut_cc = mad_cut(iscc, s.maxres_cc)
            cut_ct = mad_cut(~iscc, s.maxres_ct)
        else:
            allm = np.ones(len(c.res), bool)
            cut_cc = mad_cut(allm, s.maxres_cc)
            cut_ct = mad_cut(allm, s.maxres_ct)
        # cross-correlation data
        if s.maxdist_cc_km > 0:
            wt = np.where(iscc, wt * (1 - (c.offs / (s.maxdist_cc_km * 1000)) ** 5) ** 5, wt)
        if s.maxres_cc > 0 and cut_cc > 0:
            m = iscc & (wt > 0.000001)
            wt[m] = wt[m] * (1 - (np.abs(c.res[m]) / cut_cc) ** 3) ** 3
        # catalog data
        if s.maxdist_ct_km > 0:
            wt = np.where(~iscc, wt * (1 - (c.offs / (s.maxdist_ct_km * 1000)) ** 3) ** 3, wt)
        if s.maxres_ct > 0 and cut_ct > 0:
            m = ~iscc & (wt > 0.000001)
            wt[m] = wt[m] * (1 - (np.abs(c.res[m]) / cut_ct) ** 3) ** 3
        ineg = bool(np.any(wt < MINWGHT))
    c.wt = wt
    return ineg


SEG_MAX_ROWS = 48  # rows of one event pair compressed together (longer runs are split)


def _segments(c: _Cluster):
    """The data (sorted by event pair, see :class:`_Cluster`) cut into segments: the rows of one
    pair (event 1, event 2), at most ``L`` per segment.  Returns (position of each row in the
    padded (nseg * L) block, L, number of segments, the 8 unknowns of each segment (nseg, 8),
    first row of each segment).  Valid until data are skipped."""
    if getattr(c, "_seg", None) is None:
        n = len(c.ids)
        key = c.ic1 * n + c.ic2
        if len(key) > 1 and np.any(key[1:] < key[:-1]):
            raise DDError("internal: differential times are not grouped by event pair")
        brk = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        gsize = np.diff(np.r_[brk, len(key)])
        L = int(np.clip(gsize.max(), 9, SEG_MAX_ROWS))
        nseg_g = -(-gsize // L)
        seg0 = np.r_[0, np.cumsum(nseg_g)[:-1]]
        rank = np.arange(len(key)) - np.repeat(brk, gsize)
        seg = np.repeat(seg0, gsize) + rank // L
        slot = rank % L
        nseg = int(nseg_g.sum())
        e1, e2 = np.repeat(c.ic1[brk], nseg_g), np.repeat(c.ic2[brk], nseg_g)
        cols = np.empty((nseg, 8), np.int32 if 4 * n < 2**31 else np.int64)
        for k in range(4):
            cols[:, k] = 4 * e1 + k
            cols[:, 4 + k] = 4 * e2 + k
        segstart = np.searchsorted(seg, np.arange(nseg + 1))
        c._seg = (seg * L + slot, L, nseg, cols, segstart)
    return c._seg


def _compressed_system(c: _Cluster, w: np.ndarray):
    """The weighted DD system, compressed without changing its least-squares problem.

    Every datum of an event pair touches the same 8 unknowns (x, y, z, t of both events), so
    the rows of one pair [A_p | b_p] are replaced by the R factor of their QR decomposition
    (8 rows, upper triangular) and Q^T b_p; one last row with zero coefficients carries the part
    of b that no row can fit.  A^T A, A^T b, |b|, the column norms and |A|_F are those of the
    full system, so LSQR (whose iterates, stopping tests and variance estimates depend only on
    these) takes the same steps -- on ~5x fewer rows and ~9x fewer non-zeros.
    Returns (R (nseg, 8, 8), rhs (nseg, 8), |b_perp|^2, cols (nseg, 8))."""
    pos, L, nseg, cols, segstart = _segments(c)
    R = np.empty((nseg, 9, 9))
    chunk = max(1, 3_000_000 // (9 * L))
    for s0 in range(0, nseg, chunk):
        s1 = min(nseg, s0 + chunk)
        r0, r1 = segstart[s0], segstart[s1]
        ww = w[r0:r1, None]
        v = np.empty((r1 - r0, 9))
        v[:, 0:3] = np.take(c.P3, c.kr1[r0:r1], axis=0) * ww
        v[:, 3] = ww[:, 0]
        v[:, 4:7] = np.take(c.P3, c.kr2[r0:r1], axis=0) * -ww
        v[:, 7] = -ww[:, 0]
        v[:, 8] = c.res[r0:r1] * 1000.0 * ww[:, 0]  # ms
        blk = np.zeros(((s1 - s0) * L, 9))
        blk[pos[r0:r1] - s0 * L] = v
        R[s0:s1] = np.linalg.qr(blk.reshape(s1 - s0, L, 9), mode="r")
    return R[:, :8, :8], R[:, :8, 8], float(np.sum(R[:, 8, 8] ** 2)), cols


def _solve(c: _Cluster, damp: float, solver: str, it: int, tol: float = 1e-6):
    n_ev = len(c.ids)
    nd = len(c.dt)
    w = c.wt
    ncol = 4 * n_ev
    if solver == "svd":
        if ncol > 6000:
            raise DDSolverError(
                f"SVD solver: {n_ev} events ({ncol} unknowns) is too large for the dense SVD mode; use solver='lsqr'"
            )
        cols = np.empty((nd, 8), np.int64)
        for k in range(4):
            cols[:, k] = 4 * c.ic1 + k
            cols[:, 4 + k] = 4 * c.ic2 + k
        G1, G2 = c.G12()
        vals = np.empty((nd, 8))
        vals[:, :3] = G1 * w[:, None]
        vals[:, 4:7] = -G2 * w[:, None]
        vals[:, 3] = w
        vals[:, 7] = -w
        b = c.res * 1000.0 * w  # ms
        norm = np.sqrt(np.bincount(cols.ravel(), weights=vals.ravel() ** 2, minlength=ncol) / nd)
        norm[norm == 0] = 1.0
        vals /= norm[cols]
        A = np.zeros((nd + 4, ncol))
        np.add.at(A, (np.repeat(np.arange(nd), 8), cols.ravel()), vals.ravel())
        # four rows keeping the mean shift zero (lsfit_svd)
        for k in range(4):
            A[nd + k, k::4] = 1.0 / norm[k::4]
        bb = np.r_[b, np.zeros(4)]
        U, S, Vt = np.linalg.svd(A, full_matrices=False)
        smax = S.max() if len(S) else 0.0
        good = S > 1e-6 * smax if smax > 0 else np.zeros(len(S), bool)
        rank = int(good.sum())
        if rank < ncol:
            leverage = (Vt[good] ** 2).sum(0)  # 1 for a determined unknown, < 1 for one in the null space
            weak = np.argsort(leverage)[:8]
            evs = sorted({int(c.ids[j // 4]) for j in weak if leverage[j] < 0.999})
            raise DDSolverError(
                f"iteration {it}: the DD system is singular (rank {rank} < {ncol} unknowns for {n_ev} events, "
                f"{nd} data); least constrained events: {evs}. Remove weakly linked events or use "
                "solver='lsqr' with damping"
            )
        x = Vt.T @ ((U.T @ bb) / S)
        var = (Vt.T**2) @ (1.0 / S**2)
        cond = float(smax / S.min())
        istop = 0
    else:
        Rm, rhs, perp2, cols = _compressed_system(c, w)
        nseg = len(cols)
        # column scaling as hypoDD (rms of each column of the weighted system = that of R)
        norm = np.sqrt(np.bincount(cols.ravel(), weights=(Rm**2).sum(1).ravel(), minlength=ncol) / nd)
        norm[norm == 0] = 1.0
        iu, ju = np.triu_indices(8)
        data = (Rm[:, iu, ju] / norm[cols[:, ju]]).ravel()
        del Rm
        indices = cols[:, ju].ravel()
        indptr = np.r_[0, np.cumsum(np.tile(8 - np.arange(8), nseg)), 36 * nseg].astype(
            np.int64 if 36 * nseg >= 2**31 else np.int32
        )
        A = sp.csr_matrix((data, indices.astype(indptr.dtype, copy=False), indptr), shape=(8 * nseg + 1, ncol))
        b = np.r_[rhs.ravel(), np.sqrt(perp2)]
        out = lsqr(A, b, damp=damp, atol=tol, btol=tol, conlim=1e5, iter_lim=100 * ncol, calc_var=True)
        x, istop, cond, var = out[0], out[1], out[6], out[9]
        c.lsqr_itn = int(out[2])
        del A, data, indices
    x = x / norm
    se = np.sqrt(np.abs(var)) / norm
    if not np.all(np.isfinite(x)):
        bad = np.flatnonzero(~np.isfinite(x.reshape(-1, 4)).all(1))
        raise DDSolverError(
            f"iteration {it}: solver ({solver}) returned non-finite shifts for events "
            f"{[int(v) for v in c.ids[bad][:10]]}; the system is singular or badly scaled"
        )
    # linearised post-fit residuals (as hypoDD keeps them): dt_cal changes by G x
    xr = x.reshape(-1, 4)
    u = np.einsum("ij,ij->i", c.P3, xr[c.Pev, :3]) + xr[c.Pev, 3]  # per (event, station, phase)
    pred = u[c.kr1] - u[c.kr2]
    pred[w == 0] = 0.0
    res_after = c.res - pred / 1000.0
    wres = res_after * w
    resvar = float(np.sum(wres**2) / max(nd - 1, 1)) * 1e6  # ms^2
    return x.reshape(-1, 4), se.reshape(-1, 4), res_after, istop, cond, resvar


def _rms(v):
    return float(np.sqrt(np.mean(v**2))) if len(v) else 0.0


def _relocate_cluster(ev, st, dd, model, sets, solver, use_ct, use_cc, cl_no, logs, use_elev=False, lsqr_tol=1e-6):
    c = _Cluster(ev, st, dd, model, use_elev)
    aiter = np.cumsum([s.niter for s in sets])
    maxiter = int(aiter[-1])
    bad: set = set()
    it = 1
    jiter = 0
    logs.append(
        f"cluster {cl_no}: {len(c.ids)} events, {len(c.dt)} dtimes, centroid {c.lat0:.6f} {c.lon0:.6f} {c.dep0:.6f}"
    )
    loc0 = c.ev.copy()
    loc0["x_m"], loc0["y_m"], loc0["z_m"] = c.x0, c.y0, c.z0
    while True:
        k = int(np.searchsorted(aiter, it, side="left"))
        s = sets[min(k, len(sets) - 1)]
        c.residuals()
        ineg = _weighting(c, s, bad, use_ct, use_cc)
        if ineg:
            keep = c.wt >= MINWGHT
            c.keep_data(keep)
            if len(c.ids) < 2:
                logs.append(f"cluster {cl_no}: fewer than 2 events left after skipping data; cluster skipped")
                return None
        c.lsqr_itn = 0
        x, se, res_after, istop, cond, resvar = _solve(c, s.damp, solver, it, lsqr_tol)
        rms_ct = _rms(res_after[~c.iscc])
        rms_cc = _rms(res_after[c.iscc])
        newdep = c.depth_km() + x[:, 2] / 1000.0
        aq = np.flatnonzero(newdep < 0)
        bad = set(int(v) for v in c.ids[aq])
        factor = 2.7955
        logs.append(
            f"iter {it - jiter:3d} ({it:3d}): ev {len(c.ids):6d} ct {int((~c.iscc).sum()):8d} cc "
            f"{int(c.iscc.sum()):8d} "
            f"rms_ct {rms_ct * 1000:7.1f} ms rms_cc {rms_cc * 1000:7.1f} ms damp {s.damp:g} istop {istop} itn "
            f"{c.lsqr_itn} cnd {cond:8.1f} "
            f"mean |dx,dy,dz| {np.mean(np.abs(x[:, 0])):7.1f} {np.mean(np.abs(x[:, 1])):7.1f} "
            f"{np.mean(np.abs(x[:, 2])):7.1f} m aq {len(aq)}"
        )
        if aq.size:
            if len(c.ids) - len(aq) <= 1:
                logs.append(f"cluster {cl_no}: number of non-airquakes < 2; cluster skipped")
                return None
            aiter = aiter + 1
            maxiter += 1
            jiter += 1
        else:
            c.x += x[:, 0]
            c.y += x[:, 1]
            c.z += x[:, 2]
            c.t += x[:, 3]
            sq = np.sqrt(resvar)
            c.ex, c.ey, c.ez, c.et = (se[:, j] * sq * factor for j in range(4))
            c.res = res_after
            c.update_offsets()
            for name in ("x", "y", "z", "t"):
                if not np.all(np.isfinite(getattr(c, name))):
                    raise DDSolverError(f"cluster {cl_no} iteration {it}: non-finite {name} after the update")
        if it >= maxiter:
            break
        it += 1
    # outputs
    lat, lon = c.proj.to_latlon(c.x / 1000.0, c.y / 1000.0)
    n = len(c.ids)

    def cnt(mask):
        return np.bincount(c.ic1[mask], minlength=n) + np.bincount(c.ic2[mask], minlength=n)

    def rms_ev(mask):
        num = np.bincount(c.ic1[mask], weights=c.res[mask] ** 2, minlength=n) + np.bincount(
            c.ic2[mask], weights=c.res[mask] ** 2, minlength=n
        )
        den = cnt(mask)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, np.sqrt(num / np.maximum(den, 1)), -9.0)

    out = pd.DataFrame(
        {
            "event_id": c.ids,
            "latitude": lat,
            "longitude": lon,
            "depth_km": c.depth_km(),
            "x_m": c.x,
            "y_m": c.y,
            "z_m": c.z,
            "ex_m": c.ex,
            "ey_m": c.ey,
            "ez_m": c.ez,
            "et_ms": c.et,
            "time": (
                pd.to_datetime(c.ev["time"], utc=True)
                + pd.to_timedelta(np.round(c.t * 1e6).astype(np.int64), unit="ns")
            ).to_numpy()
            if "time" in c.ev
            else pd.NaT,
            "magnitude": c.ev["magnitude"].to_numpy(float) if "magnitude" in c.ev else 0.0,
            "n_cc_p": cnt(c.idx == IDX_CCP),
            "n_cc_s": cnt(c.idx == IDX_CCS),
            "n_ct_p": cnt(c.idx == IDX_CTP),
            "n_ct_s": cnt(c.idx == IDX_CTS),
            "rms_cc_s": rms_ev(c.iscc),
            "rms_ct_s": rms_ev(~c.iscc),
            "cluster": cl_no,
            "dx_m": c.x - c.x0,
            "dy_m": c.y - c.y0,
            "dz_m": c.z - c.z0,
            "dt_ms": c.t,
        }
    )
    pairs = np.unique(np.r_[c.ic1 * n + c.ic2, c.ic2 * n + c.ic1])
    out["n_links"] = np.bincount(pairs // n, minlength=n)
    res = pd.DataFrame(
        {
            "station": c.st["station"].to_numpy()[c.ista],
            "dt_s": c.dt,
            "event_id_1": c.ids[c.ic1],
            "event_id_2": c.ids[c.ic2],
            "idx": c.idx,
            "qual": c.qual,
            "res_ms": c.res * 1000.0,
            "wt": c.wt,
            "offs_m": c.offs,
            "cluster": cl_no,
        }
    )
    res = res.iloc[np.argsort(c.row_id, kind="stable")].reset_index(drop=True)  # input order
    ns = len(c.st)
    sta_rows = []
    for j in range(ns):
        m = c.ista == j
        sta_rows.append(
            dict(
                station=c.st["station"].iloc[j],
                latitude=c.st["latitude"].iloc[j],
                longitude=c.st["longitude"].iloc[j],
                dist_km=float(np.hypot(c.sx[j], c.sy[j])),
                az_deg=float(azimuth_deg(c.lat0, c.lon0, c.st["latitude"].iloc[j], c.st["longitude"].iloc[j])),
                n_cc_p=int((m & (c.idx == IDX_CCP)).sum()),
                n_cc_s=int((m & (c.idx == IDX_CCS)).sum()),
                n_ct_p=int((m & (c.idx == IDX_CTP)).sum()),
                n_ct_s=int((m & (c.idx == IDX_CTS)).sum()),
                rms_cc_s=_rms(c.res[m & c.iscc]),
                rms_ct_s=_rms(c.res[m & ~c.iscc]),
                cluster=cl_no,
            )
        )
    return out, loc0, res, pd.DataFrame(sta_rows), it


def relocate_dd(
    events: pd.DataFrame,
    stations: pd.DataFrame,
    data: DDData,
    model: LayeredModel,
    sets: list[IterationSet],
    solver: str = "lsqr",
    idat: int = 3,
    ipha: int = 3,
    maxdist_km: float = 500.0,
    minobs_ct: int = 8,
    minobs_cc: int = 0,
    cluster: int = 0,
    use_elevation: bool = False,
    lsqr_tol: float = 1e-6,
) -> DDResult:
    """Double-difference relocation of ``events`` (event_id, latitude, longitude, depth_km,
    [time, magnitude]) with the differential times in ``data``; ``stations`` has station,
    latitude, longitude, [elevation_m].  ``idat``/``ipha``/``maxdist_km``/``minobs_*``/
    ``cluster`` have hypoDD.inp's meaning (IDAT 1 cc, 2 ct, 3 both; IPHA 1 P, 2 S, 3 both;
    CID 0 = all clusters).  ``lsqr_tol`` is LSQR's atol = btol (HypoDD: 1e-6)."""
    t0 = _time.perf_counter()
    if solver not in ("lsqr", "svd"):
        raise DDError(f"solver must be 'lsqr' or 'svd', got {solver!r}")
    for col in ("event_id", "latitude", "longitude", "depth_km"):
        if col not in events:
            raise DDError(f"events table: missing column {col!r}")
    for col in ("station", "latitude", "longitude"):
        if col not in stations:
            raise DDError(f"stations table: missing column {col!r}")
    if not sets:
        raise DDError("no iteration sets given")
    logs: list[str] = []
    ev = events.reset_index(drop=True)
    if ev["event_id"].duplicated().any():
        raise DDError(
            f"events table: duplicated event_id(s) {sorted(set(ev['event_id'][ev['event_id'].duplicated()]))[:10]}"
        )
    use_ct = idat in (2, 3)
    use_cc = idat in (1, 3)
    d = data.table
    d = d[((d["kind"] == "ct") & use_ct) | ((d["kind"] == "cc") & use_cc)]
    if ipha == 1:
        d = d[d["phase"] == "P"]
    elif ipha == 2:
        d = d[d["phase"] == "S"]
    # stations within maxdist of the centroid
    clat, clon = float(ev["latitude"].mean()), float(ev["longitude"].mean())
    sdist = epicentral_km(clat, clon, stations["latitude"].to_numpy(float), stations["longitude"].to_numpy(float))
    st = stations[sdist <= maxdist_km].reset_index(drop=True)
    ids = set(ev["event_id"])
    d = d[d["event_id_1"].isin(ids) & d["event_id_2"].isin(ids) & d["station"].isin(set(st["station"]))]
    d = d[d["event_id_1"] != d["event_id_2"]].reset_index(drop=True)
    logs.append(
        f"stations within {maxdist_km:g} km: {len(st)} of {len(stations)}; dtimes ct P "
        f"{int(((d.kind == 'ct') & (d.phase == 'P')).sum())} "
        f"S {int(((d.kind == 'ct') & (d.phase == 'S')).sum())} cc P {int(((d.kind == 'cc') & (d.phase == 'P')).sum())} "
        f"S {int(((d.kind == 'cc') & (d.phase == 'S')).sum())}"
    )
    used = set(d["event_id_1"]) | set(d["event_id_2"])
    ev = ev[ev["event_id"].isin(used)].reset_index(drop=True)
    logs.append(f"events after dtime match: {len(ev)}")
    if len(ev) < 2:
        raise DDError(f"fewer than 2 events with differential times (of {len(events)}); nothing to relocate")
    pos = {e: i for i, e in enumerate(ev["event_id"])}
    e1 = d["event_id_1"].map(pos).to_numpy(np.int64)
    e2 = d["event_id_2"].map(pos).to_numpy(np.int64)
    if (use_ct and minobs_ct > 0) or (use_cc and minobs_cc > 0):
        lab = find_clusters(e1, e2, (d["kind"] == "cc").to_numpy(), len(ev), minobs_ct, minobs_cc, use_ct, use_cc)
    else:
        lab = np.zeros(len(ev), np.int64)
    ncl = int(lab.max()) + 1 if (lab >= 0).any() else 0
    clusters = [list(ev["event_id"][lab == k]) for k in range(ncl)]
    logs.append(
        f"clusters: {ncl} ({', '.join(str(len(c)) for c in clusters[:10])}{'...' if ncl > 10 else ''}); isolated "
        f"events {int((lab < 0).sum())}"
    )
    todo = range(1, ncl + 1) if cluster == 0 else [cluster]
    if cluster and (cluster < 1 or cluster > ncl):
        raise DDError(f"cluster {cluster} requested, but there are {ncl} cluster(s)")
    outs, locs, ress, stas, iters = [], [], [], [], {}
    for k in todo:
        members = set(clusters[k - 1])
        cev = ev[ev["event_id"].isin(members)]
        cd = d[d["event_id_1"].isin(members) & d["event_id_2"].isin(members)]
        cst = st[st["station"].isin(set(cd["station"]))]
        r = _relocate_cluster(cev, cst, cd, model, sets, solver, use_ct, use_cc, k, logs, use_elevation, lsqr_tol)
        if r is None:
            continue
        o, l0, rs, ss, n_it = r
        outs.append(o)
        locs.append(l0.assign(cluster=k))
        ress.append(rs)
        stas.append(ss)
        iters[k] = n_it

    def cat(lst):
        return pd.concat(lst, ignore_index=True) if lst else pd.DataFrame()

    res = DDResult(cat(outs), cat(locs), cat(ress), cat(stas), logs, clusters, iters, _time.perf_counter() - t0)
    for line in logs:
        log.info(line)
    return res


# ----------------------------------------------------------------------------- pipeline face
@dataclass(frozen=True)
class RelocateParams:
    """The relocation settings of the pipeline face, read from a config ``RelocateSection`` (whose
    defaults are the only ones: :meth:`from_config`).  ``min_cc`` and ``max_pair_cc_km`` come from
    ``relocate.cc``; ``use_elevation`` and ``lsqr_tol`` (LSQR atol=btol) are not config settings."""

    max_station_km: float | str  # a number or "auto" (relocate.pairs.resolve_max_station_km)
    max_sep_km: float
    min_obs: int
    max_obs: int
    max_neighbors: int
    min_links: int
    iterations: list[int]
    damping: list[float]
    solver: str
    min_cc: float  # cc data below it are dropped
    max_pair_cc_km: float
    use_elevation: bool = False
    lsqr_tol: float = 1e-4

    @classmethod
    def from_config(cls, section=None, **overrides) -> "RelocateParams":
        """``section``: a config ``RelocateSection`` (None: its defaults), a RelocateParams or a dict
        of field values; keyword arguments override single fields (unknown names raise :class:`DDError`)."""
        if isinstance(section, dict):
            return cls.from_config(None, **{**section, **overrides})
        if isinstance(section, cls):
            base = asdict(section)
        else:
            s = RelocateSection() if section is None else section
            base = {k: getattr(s, k) for k in (*PAIR_FIELDS, "iterations", "damping", "solver")}
            base.update(min_cc=s.cc.min_cc, max_pair_cc_km=s.cc.max_pair_km)
        unknown = set(overrides) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise DDError(
                f"relocate: unknown parameter(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}"
            )
        return replace(cls(**base), **overrides)

    def iteration_sets(self, with_cc: bool) -> list[IterationSet]:
        """:func:`default_iteration_sets` of these settings."""
        return default_iteration_sets(
            self.iterations,
            self.damping,
            with_cc=with_cc,
            max_sep_km=self.max_sep_km,
            max_pair_cc_km=self.max_pair_cc_km,
        )


def relocate(
    events: pd.DataFrame,
    picks: pd.DataFrame,
    stations: pd.DataFrame,
    model: LayeredModel,
    dtcc: pd.DataFrame | None = None,
    params=None,
    **kw,
) -> pd.DataFrame:
    """Relocate pipeline events.

    events: event_id, time, latitude, longitude, depth_km; picks: event_id, station_id, phase,
    time, [weight]; stations: station_id, latitude, longitude, [elevation_m]; dtcc: DTCC table
    (event_id_1, event_id_2, station_id, phase, dt_s, cc) or None.  ``params`` is a config
    RelocateSection, a :class:`RelocateParams` or None (the config's defaults: max_station_km "auto",
    cc.min_cc 0.7); keyword arguments override its fields: max_station_km, max_sep_km,
    min_obs, max_obs, max_neighbors, min_links, iterations, damping, solver, min_cc (cc data
    below it are dropped), max_pair_cc_km, use_elevation, lsqr_tol (LSQR atol=btol; 1e-4 here --
    each DD iteration refines the last, so the looser tolerance of HypoDD's 1e-6 costs 2x time
    and gains nothing measurable; the HypoDD project path keeps 1e-6).

    Returns the relocated events (input columns updated, ``stage='relocate'``) with dx_m, dy_m,
    dz_m (shift), ex_m, ey_m, ez_m (error estimates), cluster, n_links, n_ct_p/s, n_cc_p/s.
    Events that could not be relocated are not returned.
    """
    p = RelocateParams.from_config(params, **kw)
    max_station_km = resolve_max_station_km(p.max_station_km, stations)  # "auto": from the station spacing
    dtct = catalog_pairs(events, picks, stations, p, max_station_km=max_station_km)
    cc = None
    if dtcc is not None and len(dtcc):
        cc = dtcc[dtcc["cc"] >= p.min_cc]
    data = DDData.from_tables(dtct, cc)
    st = stations.rename(columns={"station_id": "station"})
    if "elevation_m" not in st:
        st = st.assign(elevation_m=0.0)
    with_cc = cc is not None and len(cc) > 0
    res = relocate_dd(
        events,
        st,
        data,
        model,
        p.iteration_sets(with_cc),
        solver=p.solver,
        idat=3 if with_cc else 2,
        ipha=3,
        maxdist_km=max_station_km + 50.0,
        minobs_ct=p.min_links,
        minobs_cc=p.min_links if with_cc else 0,
        cluster=0,
        use_elevation=p.use_elevation,
        lsqr_tol=p.lsqr_tol,
    )
    if res.events.empty:
        return events.iloc[0:0].assign(stage="relocate")
    r = res.events.set_index("event_id")
    out = events[events["event_id"].isin(r.index)].copy().reset_index(drop=True)
    idx = out["event_id"]
    for col in ("latitude", "longitude", "depth_km"):
        out[col] = idx.map(r[col]).to_numpy()
    if "time" in out:
        out["time"] = pd.to_datetime(idx.map(r["time"]), utc=True).to_numpy()
    for col in (
        "dx_m",
        "dy_m",
        "dz_m",
        "ex_m",
        "ey_m",
        "ez_m",
        "cluster",
        "n_links",
        "n_ct_p",
        "n_ct_s",
        "n_cc_p",
        "n_cc_s",
        "rms_ct_s",
        "rms_cc_s",
    ):
        out[col] = idx.map(r[col]).to_numpy()
    out["stage"] = "relocate"
    out.attrs["relocate_log"] = res.log
    return out
