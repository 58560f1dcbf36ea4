"""PALM-style phase association: picks of all stations -> events + pick assignments.

The seed (PALM, Zhou et al. 2021) associates in two steps: *temporal* clustering of candidate
origin times, then a *spatial* grid search for the hypocentre with the smallest travel-time
residual; an event is kept when at least ``min_stations`` stations agree within
``max_residual_s`` (2.0 s).  This module does the same, built to be linear in the number of
picks:

1. **Candidate origin times** (temporal clustering).  A coarse set of detection nodes
   (``detect_spacing_km`` apart, covering the network plus a margin) carries precomputed
   P and S travel times to every station.  Each pick proposes one origin time per node
   (``t_pick - T(node, station, phase)``); the proposals are binned per node
   (``np.bincount``, no pairwise comparison) and bins where enough picks agree within
   ``2 * max(max_residual_s, 2 s)`` become candidates (best node per time bin,
   non-maximum suppression in time).  Work: ``n_picks x n_nodes``.
2. **Grid search** (coarse to fine).  For each candidate, strongest first, the *unused* picks
   in its time window are back-projected onto a ``grid_spacing_km`` grid around the node and
   then a ``fine_spacing_km`` grid around the best point.  The origin time at each node comes
   from a histogram of the reduced times, and the node score is a soft count of the picks
   that fit, weighted by pick probability (``sum(w_prob * max(0, 1 - (res / tol)**2))``,
   ``tol = max_residual_s + residual_per_s * T``): the most picks, fitting most tightly.  The
   event is accepted when its inliers (``|res| <= tol``, one P and one S per station at most)
   pass the evidence thresholds (see :class:`Associator`) and it does not sit on the search
   region's edge; its picks are then used up -- each pick belongs to at most one event.
3. Passes repeat on the picks left over (events overlapping in time) until nothing new is
   found (``max_passes``).

The search is kept cheap without changing its outcome: a candidate whose picks cannot pass
the evidence thresholds even if all of them fitted (counts and weights bound the final ones
from above) is dropped before or right after the first stage; picks that cannot reach a
node's origin-time window are left out of that stage; travel times of a box are looked up
once per epicentre and station/phase (the first stage's box, always the same around its
detection node, is cached per node); later passes re-bin only the time blocks where picks were
taken.  Events and assignments are those of the full search.

:func:`associate_partitioned` splits a long pick set into time partitions with overlap, runs
them in a loop or on a Dask client, keeps each event in the partition that owns its origin
time and resolves boundary duplicates exactly once.

The association hypocentre (``latitude``/``longitude``/``depth_km``, also ``x_km``/``y_km``)
is a starting point for the locator, not a final location.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from .catalog.compare import match_catalogs
from .errors import QuakeScaleError
from .geo import LocalProjection
from .times import utc_ns as _ns
from .velocity import LayeredModel, TravelTimeTable, default_model

__all__ = [
    "Associator",
    "associate_partitioned",
    "unassociated",
    "match_events",
    "AssociationInputError",
    "PALM_SEED",
]

_PHASES = {"P": 0, "S": 1}
log = logging.getLogger("quakescale.associate")

# The seed's (PALM's) loose acceptance -- >= min_stations within 2.0 s, no pick-count, score or
# edge rules.  For uses that want every plausible event rather than a catalog, e.g. the
# bootstrap's labels from classic picks (few S).  Pass as ``Associator(st, model, **PALM_SEED)``.
PALM_SEED = dict(
    max_residual_s=2.0,
    min_p=0,
    min_s=0,
    min_picks=0,
    min_p_and_s=0,
    min_score=0.0,
    residual_per_s=0.0,
    max_outside_km=None,
    reject_depth_edge=False,
    use_probability=False,
    min_snr=0.0,
    max_nearest_km=None,
)


class AssociationInputError(QuakeScaleError, ValueError):
    """Bad picks or stations handed to the associator (names the column / station)."""


# ============================================================================ associator
class Associator:
    """PALM-style associator.  ``stations``: STATIONS-schema table (``station_id``,
    ``latitude``, ``longitude``, ``elevation_m``).  ``model``: the 1-D model of the travel
    times (or pass a ready ``tt`` table).  ``region``: optional
    ``(lat_min, lat_max, lon_min, lon_max)`` search box; by default the stations' box plus
    ``margin_km``.  Depths are searched in ``[min_depth_km, max_depth_km]``.

    Acceptance of an event: inliers (``|residual| <= max_residual_s + residual_per_s * T``,
    T the predicted travel time) from ``>= min_stations`` stations, ``>= min_p`` P and
    ``>= min_s`` S picks, ``>= min_picks`` picks in all, ``>= min_p_and_s`` stations with both
    a P and an S pick (the count thresholds are PyOcto's defaults: 10, 3, 3, 3), a score
    ``>= min_score`` (the sum over its picks of probability weight x fit ``1 - (res/tol)^2``;
    the weight is the pick's probability over the 90th percentile of the set's, at most 1; 1
    without probabilities), when given an RMS ``<= max_rms_s``, and not on the search
    region's edge: depth at ``max_depth_km`` (``reject_depth_edge``) or an epicentre more than
    ``max_outside_km`` outside the stations' box.  Picks below ``min_probability`` are not
    used, nor picks whose ``snr`` (peak / noise RMS) is below ``min_snr`` (3: a peak at the
    noise's own level; picks without an SNR are kept); ``use_probability=False``: every pick
    weighs 1.  On a network of fewer stations than PyOcto's thresholds assume, the pick counts
    are capped (``min_picks`` at 0.6 x the number of stations, ``min_p``/``min_s`` at a quarter
    of it, ``min_p_and_s`` at an eighth; ``min_score`` in proportion): 8 stations -> 5 picks,
    2 P, 2 S, 1 P+S station, score 4.  These relaxed thresholds hold only for an event within
    ``max_nearest_km`` of one of its stations (whose S-P time pins its distance down); an event
    farther from all of them must pass the thresholds as requested, and one within it needs a
    pick there of SNR ``>= min_snr_near`` (an event is loudest near its source; picks without
    an SNR count as clear).  On a sparse regional network (Mesetas 2019, 8 stations, the
    shipped CERP picker's picks) the SNR floor and these rules take the located events within
    50 km of the sequence from 29 of 88 to 45 of 49 (benchmarks/bench_realdata.py --picker cerp).
    Measured on the Italy 2016 day (benchmarks/bench_associate.py): precision 0.09 -> 0.60
    (REAL's STA/LTA picks) and 0.10 -> 0.29 (PhaseNet picks) against REAL's catalog, at higher
    recall than PyOcto.  The event table carries ``score`` (the quality above) and
    ``n_p_and_s``.  Grids: detection nodes every ``detect_spacing_km``; grid search from
    ``2 * grid_spacing_km`` over the detection cell, then ``grid_spacing_km`` and halving down
    to ``fine_spacing_km``.  ``max_passes``: passes
    over the left-over picks; ``block_s``: time block of the detection histogram (memory);
    ``unknown_stations``: ``"error"`` or ``"drop"`` for picks of stations not in the table."""

    def __init__(
        self,
        stations: pd.DataFrame,
        model: LayeredModel | None = None,
        max_residual_s: float = 1.0,
        min_stations: int = 4,
        min_p: int = 3,
        min_s: int = 3,
        min_picks: int = 10,
        min_p_and_s: int = 3,
        min_score: float = 8.0,
        residual_per_s: float = 0.03,
        max_rms_s: float | None = None,
        min_probability: float = 0.0,
        min_snr: float = 3.0,
        min_snr_near: float = 5.0,
        use_probability: bool = True,
        loc_residual_s: float | None = None,
        max_outside_km: float | None = 10.0,
        max_nearest_km: float | None = 50.0,
        reject_depth_edge: bool = True,
        grid_spacing_km: float = 2.0,
        fine_spacing_km: float = 1.0,
        detect_spacing_km: float = 10.0,
        max_depth_km: float = 30.0,
        min_depth_km: float = 0.0,
        margin_km: float = 20.0,
        region: tuple[float, float, float, float] | None = None,
        tt: TravelTimeTable | None = None,
        use_elevation: bool = True,
        max_passes: int = 3,
        block_s: float = 600.0,
        unknown_stations: str = "drop",
    ) -> None:
        for col in ("station_id", "latitude", "longitude"):
            if col not in stations:
                raise AssociationInputError(f"stations table: missing column {col!r} (have {list(stations.columns)})")
        if unknown_stations not in ("error", "drop"):
            raise ValueError("unknown_stations must be 'error' or 'drop'")
        if max_residual_s <= 0 or grid_spacing_km <= 0 or fine_spacing_km <= 0 or detect_spacing_km <= 0:
            raise ValueError("max_residual_s and the grid spacings must be positive")
        st = stations.drop_duplicates("station_id").reset_index(drop=True)
        if len(st) == 0:
            raise AssociationInputError("stations table is empty")
        self.stations = st
        self.station_ids = st["station_id"].astype(str).to_numpy()
        self._sindex = {s: i for i, s in enumerate(self.station_ids)}
        self.max_residual_s = float(max_residual_s)
        self.min_stations = int(min_stations)
        self.min_p, self.min_s, self.min_picks = int(min_p), int(min_s), int(min_picks)
        self.min_p_and_s = int(min_p_and_s)
        self.min_score = float(min_score)
        self.residual_per_s = float(residual_per_s)
        # origin-time bins of the detection: the coarse nodes are detect_spacing_km apart, so the
        # proposals of one event spread by more than a tight max_residual_s; never below 2 s
        self.detect_bin_s = max(float(max_residual_s), 2.0)
        if self.min_stations < 1:
            raise AssociationInputError(f"min_stations must be at least 1 (got {min_stations})")
        if not 0.0 <= float(min_probability) <= 1.0:
            raise AssociationInputError(f"min_probability must be in [0, 1] (got {min_probability})")
        self.min_probability = float(min_probability)
        if float(min_snr) < 0 or float(min_snr_near) < 0:
            raise AssociationInputError(f"min_snr and min_snr_near must be >= 0 (got {min_snr}, {min_snr_near})")
        self.min_snr = float(min_snr)
        self.min_snr_near = float(min_snr_near)
        self.use_probability = bool(use_probability)
        self.loc_residual_s = float(loc_residual_s) if loc_residual_s else None
        # a sparse network cannot give what a dense one does: the pick thresholds are capped by
        # the stations there are (PyOcto's 10 picks / 3 P+S stations are for tens of stations)
        n_net = len(st)
        self.requested = dict(
            min_picks=self.min_picks,
            min_p=self.min_p,
            min_s=self.min_s,
            min_p_and_s=self.min_p_and_s,
            min_score=self.min_score,
        )
        self.min_picks = min(self.min_picks, math.ceil(0.6 * n_net))
        self.min_p = min(self.min_p, math.ceil(n_net / 4))
        self.min_s = min(self.min_s, math.ceil(n_net / 4))
        # one station with both phases, near the event (max_nearest_km), pins its distance down
        self.min_p_and_s = min(self.min_p_and_s, math.ceil(n_net / 8))
        if self.requested["min_picks"] > 0:
            self.min_score = self.min_score * self.min_picks / self.requested["min_picks"]
        self.max_outside_km = None if max_outside_km is None else float(max_outside_km)
        self.max_nearest_km = None if max_nearest_km is None else float(max_nearest_km)
        self.reject_depth_edge = bool(reject_depth_edge)
        self.max_rms_s = None if max_rms_s is None else float(max_rms_s)
        self.grid_spacing_km = float(grid_spacing_km)
        self.fine_spacing_km = float(fine_spacing_km)
        self.detect_spacing_km = float(detect_spacing_km)
        self.max_depth_km, self.min_depth_km = float(max_depth_km), float(min_depth_km)
        self.max_passes = int(max_passes)
        self.block_s = float(block_s)
        self.unknown_stations = unknown_stations

        lat = st["latitude"].to_numpy(float)
        lon = st["longitude"].to_numpy(float)
        if region is None:
            self.proj = LocalProjection(float(np.mean(lat)), float(np.mean(lon)))
            sx, sy = self.proj.to_xy(lat, lon)
            self.xlim = (float(sx.min()) - margin_km, float(sx.max()) + margin_km)
            self.ylim = (float(sy.min()) - margin_km, float(sy.max()) + margin_km)
        else:
            la0, la1, lo0, lo1 = region
            self.proj = LocalProjection(0.5 * (la0 + la1), 0.5 * (lo0 + lo1))
            sx, sy = self.proj.to_xy(lat, lon)
            cx, cy = self.proj.to_xy(np.array([la0, la0, la1, la1]), np.array([lo0, lo1, lo0, lo1]))
            self.xlim = (float(cx.min()), float(cx.max()))
            self.ylim = (float(cy.min()), float(cy.max()))
        self.sx, self.sy = np.asarray(sx, float), np.asarray(sy, float)
        self.station_box = (float(self.sx.min()), float(self.sx.max()), float(self.sy.min()), float(self.sy.max()))
        elev = (
            st["elevation_m"].to_numpy(float) / 1000.0 if ("elevation_m" in st and use_elevation) else np.zeros(len(st))
        )
        self.selev = np.nan_to_num(elev)

        # travel-time table covering every station-node distance of the search region
        span = math.hypot(self.xlim[1] - self.xlim[0], self.ylim[1] - self.ylim[0]) + 2 * margin_km + 10.0
        if tt is None:
            model = model or default_model()
            tt = TravelTimeTable(
                model, max_dist_km=span, max_depth_km=self.max_depth_km + 1.0, dist_step_km=0.25, depth_step_km=0.25
            )
        self.tt = tt
        self._prepare_lookup()
        self._prepare_detection_nodes()
        # coarse-to-fine stages: (half-width, step); the first covers a detection cell
        steps = [2 * self.grid_spacing_km, self.grid_spacing_km]
        while steps[-1] / 2 >= self.fine_spacing_km * 0.99:
            steps.append(steps[-1] / 2)
        if steps[-1] > self.fine_spacing_km * 1.01:
            steps.append(self.fine_spacing_km)
        halves = [self.detect_spacing_km] + steps[:-1]
        self._stages = [self._axis_offsets(h, st) for h, st in zip(halves, steps)]
        n_col = 2 * len(self.sx)
        self._all_columns = self._columns(np.arange(n_col) >> 1, np.arange(n_col) & 1)[1]
        box0_bytes = len(self.det_nodes) * len(self._stages[0]) ** 3 * n_col * 8
        self._box0_cache: dict | None = {} if box0_bytes <= 64e6 else None

    def __getstate__(self):  # (Dask scatters the associator) the per-node cache is not shipped
        state = self.__dict__.copy()
        if state.get("_box0_cache"):
            state["_box0_cache"] = {}
        return state

    # the constructor arguments an ``associate:`` config section carries
    SECTION_FIELDS = (
        "max_residual_s",
        "min_stations",
        "min_p",
        "min_s",
        "min_picks",
        "min_p_and_s",
        "min_score",
        "residual_per_s",
        "min_probability",
        "min_snr",
        "min_snr_near",
        "max_nearest_km",
        "max_rms_s",
        "loc_residual_s",
        "max_outside_km",
        "reject_depth_edge",
        "unknown_stations",
        "grid_spacing_km",
        "fine_spacing_km",
        "detect_spacing_km",
        "max_depth_km",
        "margin_km",
        "max_passes",
    )

    @classmethod
    def from_section(cls, stations: pd.DataFrame, model: LayeredModel | None, section, **kw) -> "Associator":
        """An associator with the parameters of a config ``associate:`` section (an
        :class:`~quakescale.config.AssociateSection`); ``kw`` overrides (e.g. ``tt``)."""
        args = {f: getattr(section, f) for f in cls.SECTION_FIELDS}
        args.update(kw)
        return cls(stations, model, **args)

    @classmethod
    def from_config(cls, cfg, stations: pd.DataFrame, model: LayeredModel | None, **kw) -> "Associator":
        """The associator of a run config: :meth:`from_section` on ``cfg.associate`` with the
        search depth capped by ``velocity.max_depth_km``.  ``stations`` / ``model``: the config's
        station table and velocity model (loaded by the caller, which caches them); ``kw``
        overrides, e.g. the bootstrap's loose acceptance."""
        depth = min(cfg.associate.max_depth_km, cfg.velocity.max_depth_km)
        return cls.from_section(stations, model, cfg.associate, **{"max_depth_km": depth, **kw})

    # ------------------------------------------------------------------ set-up
    def _prepare_lookup(self) -> None:
        """Flat nearest-sample tables for fast (vectorised gather) travel times; the final
        residuals use the table's bilinear interpolation."""
        tt = self.tt
        self._nd, self._nz = len(tt.dist), len(tt.depth)
        self._inv_dstep = 1.0 / tt.dist_step
        self._inv_zstep = 1.0 / tt.depth_step
        self._z0 = float(tt.depth[0])
        flat_t, flat_e = [], []
        for ph in ("P", "S"):
            tab = tt.tables[ph]
            v0 = tt.model.velocities(ph)[0]
            flat_t.append(tab.t.ravel())
            flat_e.append(np.sqrt(np.clip(1.0 / v0**2 - tab.p**2, 0.0, None)).ravel())
        self._tflat = np.concatenate(flat_t)
        self._eflat = np.concatenate(flat_e)
        # the bilinear time of the final residuals (as TravelTimeTable.time, both phases at once)
        self._tflat_exact = self._tflat
        self._pflat = np.concatenate([tt.tables[ph].p.ravel() for ph in ("P", "S")])
        self._inv_v0sq = np.array([1.0 / tt.model.velocities(ph)[0] ** 2 for ph in ("P", "S")])
        self._dmax = float(tt.dist[-1])
        # every search node lies in the region box: the farthest station-node distance is at a corner
        cx = np.array([self.xlim[0], self.xlim[0], self.xlim[1], self.xlim[1]])
        cy = np.array([self.ylim[0], self.ylim[1], self.ylim[0], self.ylim[1]])
        far = float(np.hypot(cx[:, None] - self.sx[None], cy[:, None] - self.sy[None]).max())
        self._within_table = far < self._dmax - 1e-6

    def _tt_fast(self, ph, dist, depth, elev):
        i = np.minimum((dist * self._inv_dstep + 0.5).astype(np.int64), self._nd - 1)
        j = np.clip(((depth - self._z0) * self._inv_zstep + 0.5).astype(np.int64), 0, self._nz - 1)
        flat = ph * (self._nd * self._nz) + i * self._nz + j
        t = self._tflat[flat]
        if np.any(dist > self._dmax):  # beyond the table: slowest head wave is fine for association
            t = t + np.clip(dist - self._dmax, 0, None) * (1.0 / self.tt.model.velocities("P")[-1])
        return t + elev * self._eflat[flat]

    def _prepare_detection_nodes(self) -> None:
        d = self.detect_spacing_km

        def centers(lo, hi):
            n = max(1, int(math.ceil((hi - lo) / d)))
            return lo + (np.arange(n) + 0.5) * (hi - lo) / n

        xs, ys = centers(*self.xlim), centers(*self.ylim)
        zs = centers(self.min_depth_km, self.max_depth_km)
        X, Y, Z = np.meshgrid(xs, ys, zs, indexing="ij")
        self.det_nodes = np.stack([X.ravel(), Y.ravel(), Z.ravel()], 1)
        dist = np.hypot(self.det_nodes[:, None, 0] - self.sx[None], self.det_nodes[:, None, 1] - self.sy[None])
        z = np.broadcast_to(self.det_nodes[:, None, 2], dist.shape)
        cols = []
        for ph in ("P", "S"):
            cols.append(self.tt.time(ph, dist, z, self.selev[None, :])[0])
        # (K, n_sta * 2): column = station * 2 + phase
        self.det_tt = np.stack(cols, 2).reshape(len(self.det_nodes), -1).astype(np.float64)
        self.det_ttmax = self.det_tt.max(1)
        self._det_ttT = np.ascontiguousarray(self.det_tt.T)  # (n_sta * 2, K): rows gathered per pick
        self._det_ttTw = self._det_ttT / self.detect_bin_s  # the same in origin-time bins (_detect)

    @staticmethod
    def _axis_offsets(half: float, step: float) -> np.ndarray:
        """Offsets along one axis of a search box; the box is their product (x, y, z)."""
        n = int(round(half / step))
        return np.arange(-n, n + 1) * step

    # ------------------------------------------------------------------ input
    def _prepare_picks(self, picks: pd.DataFrame):
        for col in ("station_id", "phase", "time"):
            if col not in picks:
                raise AssociationInputError(f"picks table: missing column {col!r} (have {list(picks.columns)})")
        sid = picks["station_id"].astype(str).to_numpy()
        codes = pd.Series(sid).map(self._sindex)
        unknown = codes.isna().to_numpy()
        if unknown.any():
            missing = sorted(set(sid[unknown]))
            if self.unknown_stations == "error":
                raise AssociationInputError(
                    f"picks table: {len(missing)} station(s) not in the stations table, e.g. {missing[:5]} "
                    "(drop their picks: unknown_stations='drop', i.e. without --strict)"
                )
            log.warning(
                "associate: %d pick(s) of %d station(s) not in the stations table dropped, e.g. %s",
                int(unknown.sum()),
                len(missing),
                ", ".join(missing[:5]),
            )
        ph = picks["phase"].astype(str).str.upper().str[:1].map(_PHASES)
        badph = ph.isna().to_numpy() & ~unknown
        if badph.any():
            i = int(np.flatnonzero(badph)[0])
            raise AssociationInputError(
                f"picks table: phase must be 'P' or 'S'; row {i} has {picks['phase'].iloc[i]!r}"
            )
        t = pd.to_datetime(pd.Series(picks["time"]), utc=True)
        if t.isna().any():
            raise AssociationInputError(f"picks table: {int(t.isna().sum())} pick(s) without a time")
        keep = ~unknown
        snr = np.full(len(picks), np.nan)
        if "snr" in picks:
            snr = pd.to_numeric(picks["snr"], errors="coerce").to_numpy(float)
            if self.min_snr > 0:  # below ~3 a pick's peak is at the noise's level
                keep &= ~(snr < self.min_snr)  # no SNR (NaN): kept
        prob = np.ones(len(picks))
        if "probability" in picks:
            pr = pd.to_numeric(picks["probability"], errors="coerce").to_numpy(float)
            prob = np.where(np.isfinite(pr), np.clip(pr, 0.0, 1.0), 1.0)
            if self.min_probability > 0:
                keep &= prob >= self.min_probability
            if not self.use_probability:
                prob = np.ones(len(picks))
            # pickers differ in scale (PhaseNet ~0.3-1, EQTransformer ~0.1-0.6): the weight is the
            # probability relative to the set's 90th percentile, at most 1
            fin = np.isfinite(pr) & keep
            if fin.sum() >= 10 and self.use_probability:
                prob = np.clip(prob / max(float(np.quantile(prob[fin], 0.9)), 1e-3), 0.0, 1.0)
        if "pick_index" in picks:
            pidx = picks["pick_index"].to_numpy(np.int64)
        else:
            pidx = np.arange(len(picks), dtype=np.int64)
        tns = _ns(t)
        tns, pidx, prob, snr = tns[keep], pidx[keep], prob[keep], snr[keep]
        st = codes.to_numpy()[keep].astype(np.int64)
        phc = ph.to_numpy()[keep].astype(np.int64)
        order = np.argsort(tns, kind="stable")
        tns, pidx, st, phc, prob, snr = tns[order], pidx[order], st[order], phc[order], prob[order], snr[order]
        t_ref = int(tns[0] // 1_000_000_000 * 1_000_000_000) if len(tns) else 0
        tsec = (tns - t_ref) / 1e9
        return tsec, st, phc, pidx, t_ref, prob, snr

    # ------------------------------------------------------------------ main entry
    def associate(self, picks: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Associate ``picks`` (PICKS table; an optional ``pick_index`` column is carried into
        the assignments, else the row position).  Returns ``(events, assignments)``:
        EVENTS-schema rows (plus ``x_km y_km n_picks score``), and one ASSIGNMENTS row per
        associated pick (plus ``pick_index``).  Unused picks: :func:`unassociated`."""
        tsec, st, ph, pidx, t_ref, pw, snr = self._prepare_picks(picks)
        n = len(tsec)
        used = np.zeros(n, bool)
        events: list[dict] = []
        assigned: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        col = st * 2 + ph
        # A rejected candidate stays rejected: later passes only take picks away from its
        # window, which cannot create the support it lacked.
        rejected: set = set()
        # what changed since the last detection: the detection skips the time blocks where
        # nothing did (all their candidates were rejected before and would be skipped)
        state: dict = {"start": None, "changed": [], "dirty": set()}
        for _npass in range(self.max_passes):
            cands = self._detect(tsec, col, used, state)
            n_before = len(events)
            for o0, k, _score, blk in cands:
                key = (int(round(o0 / self.detect_bin_s)), int(k))
                if key in rejected:
                    continue
                res = self._refine(o0, int(k), tsec, st, ph, pw, used, snr)
                if res is None:
                    rejected.add(key)
                    continue
                ev, members, resid, w = res
                used[members] = True
                state["changed"].append(tsec[members])
                state["dirty"].add(blk)
                ev["_local"] = len(events)
                events.append(ev)
                assigned.append((members, resid, w))
            if len(events) == n_before:
                break
        return self._tables(events, assigned, tsec, st, ph, pidx, t_ref)

    # ------------------------------------------------------------------ step 1: time clustering
    def _trigger(self) -> int:
        return max(self.min_stations, self.min_p + self.min_s, int(math.ceil(0.6 * self.min_picks)))

    def _detect(self, tsec, col, used, state=None):
        """Candidate (origin time, node, count, block) from binned per-node origin-time
        proposals.  ``state`` (from the previous pass): the block start, the times of the picks
        used since and the blocks whose candidates were accepted -- a block with none of
        these gives the candidates it gave before, all rejected then, so it is skipped."""
        if state is None:
            state = {"start": None, "changed": [], "dirty": set()}
        prev_start, changed, dirty = state["start"], state["changed"], state["dirty"]
        state.update(start=None, changed=[], dirty=set())
        if len(tsec) == 0:
            return []
        w = self.detect_bin_s  # bin width; counts in two-bin windows (2 * w)
        K = len(self.det_nodes)
        ttmax = float(self.det_ttmax.max())
        thr = self._trigger()
        out = []
        free = np.flatnonzero(~used)
        if len(free) < thr:
            return []
        tf, cf = tsec[free], col[free]
        start = math.floor((tf[0] - ttmax) / w) * w
        end = tf[-1]
        nb = int(math.ceil(self.block_s / w))
        blk = start
        sup = 2  # NMS radius in bins (~ 2 * w each side)
        # a pick at t >= blk (and t <= blk + (nb + 2) * w + ttmax) proposes bins b in
        # [-B, nb + B]: each node gets nb + 2B + 1 bins, those outside [0, nb] are dropped after
        B = int(math.ceil(ttmax / w)) + 3
        L = nb + 2 * B + 1
        kidx0 = np.arange(K)[None, :] * L
        state["start"] = start
        reuse = prev_start is not None and prev_start == start
        if reuse:
            changed = np.sort(np.concatenate(changed)) if changed else np.empty(0)
        while blk <= end:
            lo = np.searchsorted(tf, blk, "left")
            hi = np.searchsorted(tf, blk + nb * w + ttmax + 2 * w, "right")
            if (
                reuse
                and blk not in dirty
                and (
                    np.searchsorted(changed, blk, "left")
                    == np.searchsorted(changed, blk + nb * w + ttmax + 2 * w, "right")
                )
            ):
                blk += nb * w
                continue
            if hi - lo >= thr:
                o = self._det_ttTw[cf[lo:hi]]  # (m, K) travel times in bins
                # origin-time proposals in bins from blk, shifted by B: all >= 0, so the integer
                # conversion (truncation) is the floor
                np.subtract(((tf[lo:hi] - blk) / w + B)[:, None], o, out=o)
                b = o.astype(np.int64)
                b += kidx0
                cnt = np.bincount(b.ravel(), minlength=K * L).reshape(K, L)[:, B : B + nb + 1]
                c2 = cnt[:, :-1] + cnt[:, 1:]  # window [b, b+2) -> centre (b + 1) * w
                best = c2.max(0)
                bk = c2.argmax(0)
                # non-maximum suppression in time, first of plateaus
                pad = np.concatenate([np.zeros(sup, best.dtype), best, np.zeros(sup, best.dtype)])
                win = np.lib.stride_tricks.sliding_window_view(pad, 2 * sup + 1).max(1)
                peak = (best >= thr) & (best == win)
                peak &= ~np.concatenate([[False], peak[:-1]])
                for bi in np.flatnonzero(peak):
                    out.append((blk + (bi + 1) * w, int(bk[bi]), int(best[bi]), blk))
            blk += nb * w
        out.sort(key=lambda c: -c[2])
        return out

    # ------------------------------------------------------------------ step 2: grid search
    @staticmethod
    def _soft_fit(r, o, pw, tol, buf, score=True):
        """Given reduced times ``r`` (N, m), origin guesses ``o`` (N,), pick weights ``pw``
        (m,) and a tolerance: re-centre ``o`` on the inliers once and return (soft-count
        score, origin), both (N,) (score None with ``score=False``).  ``buf``: scratch array
        of ``r``'s shape (in-place work)."""
        d = np.subtract(r, o[:, None], out=buf)
        np.abs(d, out=d)
        inl = d <= tol
        nin = inl @ pw  # weighted sums as matrix-vector products (one pass each)
        num = np.multiply(r, inl, out=buf) @ pw
        o = np.where(nin > 0, num / np.maximum(nin, 1e-12), o)
        if not score:
            return None, o
        d = np.subtract(r, o[:, None], out=buf)
        d /= tol
        np.multiply(d, d, out=d)
        np.subtract(1.0, d, out=d)
        np.maximum(d, 0.0, out=d)
        return d @ pw, o

    def _columns(self, s, p):
        """The station/phase columns of picks (s, p): (inverse index per pick, per-column
        x, y, table offset, elevation) -- what :meth:`_tt_box` needs, computed once per pick set."""
        key = s * 2 + p
        present = np.zeros(2 * len(self.sx), bool)
        present[key] = True
        uk = np.flatnonzero(present)
        lut = np.empty(len(present), np.int64)
        lut[uk] = np.arange(len(uk))
        us = uk >> 1
        return lut[key], (self.sx[us], self.sy[us], (uk & 1) * (self._nd * self._nz), self.selev[us])

    def _tt_box(self, xs, ys, zs, cols):
        """Nearest-sample travel times (as :meth:`_tt_fast`) from every node of the box
        ``xs x ys x zs`` (node index ``(ix * len(ys) + iy) * len(zs) + iz``) to the station /
        phase columns ``cols`` (:meth:`_columns`): (N, U).  Distances once per epicentre."""
        sxu, syu, offu, elevu = cols
        dist = np.hypot(xs[:, None, None] - sxu, ys[None, :, None] - syu)  # (nx, ny, U)
        i = np.minimum((dist * self._inv_dstep + 0.5).astype(np.int64), self._nd - 1)
        i *= self._nz
        i += offu
        j = np.minimum(np.maximum(((zs - self._z0) * self._inv_zstep + 0.5).astype(np.int64), 0), self._nz - 1)
        flat = i[:, :, None, :] + j[None, None, :, None]  # (nx, ny, nz, U)
        t = self._tflat[flat]
        if not self._within_table and np.any(dist > self._dmax):
            extra = np.clip(dist - self._dmax, 0, None) * (1.0 / self.tt.model.velocities("P")[-1])
            t = t + extra[:, :, None, :]
        e = self._eflat[flat]
        e *= elevu
        t += e
        return t.reshape(-1, len(offu))

    def _search(self, ttu, inv, t, pw, o_guess, hist_halfwidth_s, tol, kmin=None, kmax=None, ttmax=None):
        """Best node of a box (travel times ``ttu`` (N, U) to the picks' columns ``inv``) for
        picks at ``t`` -> (index, origin, score).  Picks whose reduced time cannot come near
        the origin-time window at any node are left out first: they add nothing to any node's
        histogram or score (``kmin``/``kmax``: each pick's least / largest travel time over the
        box, ``ttmax`` the largest of them; without them nothing is left out)."""
        N = ttu.shape[0]
        if hist_halfwidth_s > 0:
            hb = 0.25
            nbh = int(math.ceil(2 * hist_halfwidth_s / hb))
            base = o_guess - hist_halfwidth_s
        if kmin is not None:  # (stage 0; later stages' picks are all near: the "keep" filter)
            # reach of one pick: the histogram window, then two re-centrings by at most tol each
            ttmax = float(ttu[:, inv].max()) if ttmax is None else ttmax  # over the picks' columns
            tmax = tol + (self.residual_per_s * ttmax if self.residual_per_s > 0 else 0.0)
            if hist_halfwidth_s > 0:
                lo, hi = base - 3 * tmax - 1e-6, base + nbh * hb + 3 * tmax + 1e-6
            else:
                lo, hi = o_guess - 3 * tmax - 1e-6, o_guess + 3 * tmax + 1e-6
            near = (t - kmax <= hi) & (t - kmin >= lo)
            if not near.all():
                if not near.any():  # every node scores 0: what the full search gives then
                    o_empty = (
                        base + 0.5 * max(1, int(round(2 * self.max_residual_s / hb))) * hb
                        if hist_halfwidth_s > 0
                        else o_guess
                    )
                    return 0, float(o_empty), 0.0
                t, pw, inv = t[near], pw[near], inv[near]
        tt = ttu[:, inv]  # (N, m)
        r = np.subtract(t[None, :], tt)
        if self.residual_per_s > 0:  # tolerance grows with the travel time (model error)
            tt *= self.residual_per_s
            tt += tol
            tol = tt
        if hist_halfwidth_s > 0:
            bi = np.floor((r - base) / hb).astype(np.int64)
            # bins 0..nbh-1 per node, with an underflow (column 0) and an overflow bin
            np.maximum(bi, -1, out=bi)
            np.minimum(bi, nbh, out=bi)
            bi += np.arange(1, N * (nbh + 2), nbh + 2)[:, None]
            cnt = np.bincount(bi.ravel(), minlength=N * (nbh + 2)).reshape(N, nbh + 2)
            nw = max(1, int(round(2 * self.max_residual_s / hb)))
            cs = np.cumsum(cnt, 1)  # cs[:, c] - cs[:, 0] = picks in bins < c
            win = cs[:, nw : nbh + 1] - cs[:, : nbh + 1 - nw]  # picks in bins [j, j + nw)
            j = win.argmax(1)
            o = base + (j + 0.5 * nw) * hb
        else:
            o = np.empty(N)
            o.fill(o_guess)
        buf = np.empty_like(r)
        _, o = self._soft_fit(r, o, pw, tol, buf, score=False)  # the first score is not used
        score, o = self._soft_fit(r, o, pw, tol, buf)
        k = int(np.argmax(score))
        return k, float(o[k]), float(score[k])

    def _stage0_box(self, k, s, p):
        """Stage 0's box around detection node ``k`` (always the same box): (axes, travel times
        (N, U), each pick's column in them, each pick's least and largest time over the box).
        When the boxes of all nodes fit in ~64 MB, their times to every station/phase column
        are cached per node (the candidates of a day come back to the same nodes)."""
        if self._box0_cache is None:
            xs, ys, zs = axes = self._box_axes(self.det_nodes[k], self._stages[0])
            inv, cols = self._columns(s, p)
            ttu = self._tt_box(xs, ys, zs, cols)
            return axes, ttu, inv, ttu.min(0)[inv], ttu.max(0)[inv]
        hit = self._box0_cache.get(k)
        if hit is None:
            xs, ys, zs = axes = self._box_axes(self.det_nodes[k], self._stages[0])
            full = self._tt_box(xs, ys, zs, self._all_columns)
            hit = self._box0_cache[k] = (axes, full, full.min(0), full.max(0))
        axes, full, fmin, fmax = hit
        key = s * 2 + p
        return axes, full, key, fmin[key], fmax[key]

    def _box_axes(self, best, offs):
        """The search box around ``best`` (per-axis node values, clamped to the region)."""
        mn, mx = np.minimum, np.maximum  # = np.clip, without its overhead
        return (
            mn(mx(best[0] + offs, self.xlim[0]), self.xlim[1]),
            mn(mx(best[1] + offs, self.ylim[0]), self.ylim[1]),
            mn(mx(best[2] + offs, self.min_depth_km), self.max_depth_km),
        )

    @staticmethod
    def _box_node(axes, k):
        xs, ys, zs = axes
        iz = k % len(zs)
        iy = (k // len(zs)) % len(ys)
        ix = k // (len(zs) * len(ys))
        return np.array([xs[ix], ys[iy], zs[iz]])

    def _tt_exact(self, ph, dist, depth, elev):
        """``TravelTimeTable.time`` (bilinear) for mixed phases ``ph`` in one pass: the same
        arithmetic, only the time (and dT/dDelta for the elevation term) computed."""
        tt = self.tt
        d = np.asarray(dist, float)
        fi = np.clip(d / tt.dist_step, 0, len(tt.dist) - 1.000001)
        fj = min(max((float(depth) - tt.min_depth_km) / tt.depth_step, 0.0), len(tt.depth) - 1.000001)
        i = fi.astype(np.int64)
        j = int(fj)  # one depth: scalars (the same values the table's broadcast arrays hold)
        a = fi - i
        b = fj - j
        base = ph * (self._nd * self._nz) + i * self._nz + j
        a1, b1 = 1 - a, 1 - b

        def interp(arr):
            return (
                arr[base] * a1 * b1
                + arr[base + self._nz] * a * b1
                + arr[base + 1] * a1 * b
                + arr[base + self._nz + 1] * a * b
            )

        t = interp(self._tflat_exact)
        dtdd = interp(self._pflat)
        beyond = d > tt.dist[-1]
        if np.any(beyond):
            t = np.where(beyond, t + (d - tt.dist[-1]) * dtdd, t)
        elev = np.asarray(elev, float)
        if np.any(elev != 0):
            t = t + elev * np.sqrt(np.clip(self._inv_v0sq[ph] - dtdd**2, 0.0, None))
        return t

    def _stage0_can_pass(self, ttmax, kmin, kmax, t, s, p, pw, o0, hw, tol, thr) -> bool:
        """Before the first search: the picks that stage 0's "keep" filter can let through
        from any node of the box, whatever origin time the search finds, must already be able
        to pass (upper bounds as :meth:`_can_pass`); else the candidate is hopeless."""
        rps = self.residual_per_s
        tmax = tol + rps * ttmax
        hb = 0.25
        nbh = int(math.ceil(2 * hw / hb))
        base = o0 - hw
        eps = 1e-6
        olo, ohi = base - 2 * tmax, base + nbh * hb + 2 * tmax  # where the origin can end up
        mk = 2 * (tol + rps * max(float(t.max()) - olo, 0.0)) + self.grid_spacing_km / 2.0
        near = (t - kmax <= ohi + mk + eps) & (t - kmin >= olo - mk - eps)
        return int(near.sum()) >= thr and self._can_pass(s[near], p[near], pw[near])

    def _can_pass(self, s, p, pw) -> bool:
        """Whether picks (s, p, pw) could still give an accepted event: the final inliers are a
        subset of them with one P and one S per station at most and weights <= ``pw``, so these
        counts bound the final ones from above (a candidate failing here would fail there)."""
        key = s * 2 + p
        present = np.zeros(2 * len(self.sx), bool)
        present[key] = True
        hp, hs = present[0::2], present[1::2]
        n_p, n_s = int(np.count_nonzero(hp)), int(np.count_nonzero(hs))
        n_sta = int(np.count_nonzero(hp | hs))
        if (
            n_sta < self.min_stations
            or n_p < self.min_p
            or n_s < self.min_s
            or n_p + n_s < self.min_picks
            or n_p + n_s - n_sta < self.min_p_and_s
        ):
            return False
        if self.min_score > 0:
            wmax = np.zeros(len(present))
            np.maximum.at(wmax, key, pw)
            if wmax.sum() < self.min_score * (1 - 1e-9) - 1e-9:
                return False
        return True

    def _refine(self, o0, k, tsec, st, ph, pw_all, used, snr_all=None):
        tol = self.max_residual_s
        thr = self._trigger()
        node = self.det_nodes[k]
        slack = 2.0 * tol + self.detect_spacing_km / 3.0
        lo = np.searchsorted(tsec, o0 - slack, "left")
        hi = np.searchsorted(tsec, o0 + self.det_ttmax[k] + slack, "right")
        sel = np.arange(lo, hi)[~used[lo:hi]]
        if len(sel) < thr:
            return None
        t, s, p, pw = tsec[sel], st[sel], ph[sel], pw_all[sel]
        # coarse to fine: 2 x grid_spacing_km over the detection cell, then halving steps; the
        # stages finer than grid_spacing_km score with loc_residual_s (sharper location)
        best, ob = node, o0
        inv = cols = None  # the kept picks' columns: set by the first stage, used by the finer ones
        for i, offs in enumerate(self._stages):
            stol = self.loc_residual_s if (self.loc_residual_s and i >= 2) else tol
            if i == 0:  # the detection node's box
                axes, full, key, kmin, kmax = self._stage0_box(k, s, p)
                hw = slack + 2 * tol
                ttmax = float(kmax.max())
                if not self._stage0_can_pass(ttmax, kmin, kmax, t, s, p, pw, o0, hw, tol, thr):
                    return None
                kb, ob, score = self._search(full, key, t, pw, ob, hw, stol, kmin, kmax, ttmax)
            else:
                xs, ys, zs = axes = self._box_axes(best, offs)
                ttu = self._tt_box(xs, ys, zs, cols)
                kb, ob, score = self._search(ttu, inv, t, pw, ob, 0.0, stol)
            best = self._box_node(axes, kb)
            if i == 0:
                if score < 0.5 * max(thr, self.min_picks):
                    return None
                # keep the picks that can matter from here on (full[kb]: the times from best)
                r0 = t - full[kb, key] - ob
                keep = np.abs(r0) <= 2 * (tol + self.residual_per_s * (t - ob)) + self.grid_spacing_km / 2.0
                sel, t, s, p, pw = sel[keep], t[keep], s[keep], p[keep], pw[keep]
                if len(sel) < thr or not self._can_pass(s, p, pw):
                    return None
                inv, cols = self._columns(s, p)
        # final residuals (bilinear table) and per-station/phase de-duplication
        dist = np.hypot(best[0] - self.sx[s], best[1] - self.sy[s])
        tpred = self._tt_exact(p, dist, best[2], self.selev[s])
        r = t - tpred
        tol = tol + self.residual_per_s * tpred  # per pick
        o = ob
        for _ in range(2):
            inl = np.abs(r - o) <= tol
            if not inl.any():
                return None
            o = float(np.mean(r[inl]))
        res = r - o
        inl = np.flatnonzero(np.abs(res) <= tol)
        tol = np.broadcast_to(tol, res.shape)[inl]
        if len(inl) < thr:
            return None
        key = s[inl] * 2 + p[inl]
        order = np.lexsort((np.abs(res[inl]), key))
        inl, tol = inl[order], tol[order]
        first = np.concatenate([[True], key[order][1:] != key[order][:-1]])
        inl, tol = inl[first], tol[first]
        n_sta = len(np.unique(s[inl]))
        n_p = int((p[inl] == 0).sum())
        n_s = int((p[inl] == 1).sum())
        if n_sta < self.min_stations or n_p < self.min_p or n_s < self.min_s or len(inl) < self.min_picks:
            return None
        n_ps = n_p + n_s - n_sta  # one P and one S per station at most here
        if n_ps < self.min_p_and_s:
            return None
        if self._on_edge(best):
            return None
        if self.max_nearest_km is not None and not self._full_evidence(len(inl), n_p, n_s, n_ps):
            # far from all of its stations, a few picks cannot pin an event down (S-P times of
            # near stations do): the relaxed (sparse-network) thresholds hold near a station only
            # and an event is loudest near its source: one of those picks stands clear of the
            # noise (SNR >= min_snr_near; picks without an SNR count as clear)
            dn = np.hypot(best[0] - self.sx[s[inl]], best[1] - self.sy[s[inl]]) <= self.max_nearest_km
            if not dn.any():
                return None
            if snr_all is not None and self.min_snr_near > 0:
                sn = snr_all[sel[inl][dn]]
                if not (np.isnan(sn) | (sn >= self.min_snr_near)).any():
                    return None
        rr = res[inl]
        if self.max_rms_s is not None and float(np.sqrt(np.mean(rr**2))) > self.max_rms_s:
            return None
        w = np.clip(1.0 - (rr / tol) ** 2, 0.0, None) * pw[inl]
        if w.sum() < self.min_score:
            return None
        ev = dict(
            o=o,
            x=best[0],
            y=best[1],
            z=best[2],
            n_sta=n_sta,
            n_p=n_p,
            n_s=n_s,
            n_ps=n_ps,
            rms=float(np.sqrt(np.mean(rr**2))),
            score=float(w.sum()),
        )
        return ev, sel[inl], rr, w

    def _full_evidence(self, n_picks, n_p, n_s, n_ps) -> bool:
        """Whether an event passes the pick thresholds as requested (before the sparse-network caps)."""
        q = self.requested
        return n_picks >= q["min_picks"] and n_p >= q["min_p"] and n_s >= q["min_s"] and n_ps >= q["min_p_and_s"]

    def _on_edge(self, best) -> bool:
        """An event the search region's edge holds: depth at the limit, or an epicentre more
        than ``max_outside_km`` outside the stations' box (the search cannot tell where it is)."""
        if self.reject_depth_edge and best[2] >= self.max_depth_km - 0.5 * self.fine_spacing_km:
            return True
        if self.max_outside_km is not None:
            x0, x1, y0, y1 = self.station_box
            dx = max(x0 - best[0], best[0] - x1, 0.0)
            dy = max(y0 - best[1], best[1] - y1, 0.0)
            if math.hypot(dx, dy) > self.max_outside_km:
                return True
        return False

    # ------------------------------------------------------------------ output
    def _tables(self, events, assigned, tsec, st, ph, pidx, t_ref):
        if not events:
            return _empty_events(), _empty_assignments()
        ev = pd.DataFrame(events)
        order = np.argsort(ev["o"].to_numpy(), kind="stable")
        ev = ev.iloc[order].reset_index(drop=True)
        new_id = np.empty(len(ev), np.int64)
        new_id[ev["_local"].to_numpy()] = np.arange(1, len(ev) + 1)
        lat, lon = self.proj.to_latlon(ev["x"].to_numpy(), ev["y"].to_numpy())
        times = pd.to_datetime(t_ref + np.round(ev["o"].to_numpy() * 1e9).astype(np.int64), utc=True)
        events_df = pd.DataFrame(
            {
                "event_id": np.arange(1, len(ev) + 1, dtype=np.int64),
                "time": times,
                "latitude": lat,
                "longitude": lon,
                "depth_km": ev["z"].to_numpy(float),
                "magnitude": np.nan,
                "mag_type": "",
                "n_stations": ev["n_sta"].to_numpy(np.int32),
                "n_p": ev["n_p"].to_numpy(np.int32),
                "n_s": ev["n_s"].to_numpy(np.int32),
                "rms_s": ev["rms"].to_numpy(float),
                "stage": "associate",
                "x_km": ev["x"].to_numpy(float),
                "y_km": ev["y"].to_numpy(float),
                "n_picks": (ev["n_p"] + ev["n_s"]).to_numpy(np.int32),
                "score": ev["score"].to_numpy(float),
                "n_p_and_s": ev["n_ps"].to_numpy(np.int32),
            }
        )
        mem = np.concatenate([a[0] for a in assigned])
        eid = np.concatenate([np.full(len(a[0]), new_id[i]) for i, a in enumerate(assigned)])
        asg = (
            pd.DataFrame(
                {
                    "event_id": eid,
                    "station_id": self.station_ids[st[mem]],
                    "phase": np.where(ph[mem] == 0, "P", "S"),
                    "time": pd.to_datetime(t_ref + np.round(tsec[mem] * 1e9).astype(np.int64), utc=True),
                    "residual_s": np.concatenate([a[1] for a in assigned]),
                    "weight": np.concatenate([a[2] for a in assigned]),
                    "pick_index": pidx[mem],
                }
            )
            .sort_values(["event_id", "time"], kind="stable")
            .reset_index(drop=True)
        )
        return events_df, asg


def _empty_events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_id": pd.Series([], dtype=np.int64),
            "time": pd.Series([], dtype="datetime64[ns, UTC]"),
            "latitude": pd.Series([], dtype=float),
            "longitude": pd.Series([], dtype=float),
            "depth_km": pd.Series([], dtype=float),
            "magnitude": pd.Series([], dtype=float),
            "mag_type": pd.Series([], dtype=object),
            "n_stations": pd.Series([], dtype=np.int32),
            "n_p": pd.Series([], dtype=np.int32),
            "n_s": pd.Series([], dtype=np.int32),
            "rms_s": pd.Series([], dtype=float),
            "stage": pd.Series([], dtype=object),
            "x_km": pd.Series([], dtype=float),
            "y_km": pd.Series([], dtype=float),
            "n_picks": pd.Series([], dtype=np.int32),
            "score": pd.Series([], dtype=float),
            "n_p_and_s": pd.Series([], dtype=np.int32),
        }
    )


def _empty_assignments() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_id": pd.Series([], dtype=np.int64),
            "station_id": pd.Series([], dtype=object),
            "phase": pd.Series([], dtype=object),
            "time": pd.Series([], dtype="datetime64[ns, UTC]"),
            "residual_s": pd.Series([], dtype=float),
            "weight": pd.Series([], dtype=float),
            "pick_index": pd.Series([], dtype=np.int64),
        }
    )


def unassociated(picks: pd.DataFrame, assignments: pd.DataFrame) -> pd.DataFrame:
    """The picks no event took (by ``pick_index``, i.e. row position unless the picks carry a
    ``pick_index`` column)."""
    idx = picks["pick_index"].to_numpy() if "pick_index" in picks else np.arange(len(picks))
    return picks[~np.isin(idx, assignments["pick_index"].to_numpy())]


# ============================================================================ partitions
def _run_partition(associator: Associator, part: pd.DataFrame, core0_ns: int, core1_ns: int):
    ev, asg = associator.associate(part)
    if len(ev) == 0:
        return ev, asg
    tns = _ns(ev["time"])
    keep = (tns >= core0_ns) & (tns < core1_ns)
    ev = ev[keep]
    asg = asg[asg["event_id"].isin(ev["event_id"])]
    return ev, asg


def associate_partitioned(
    picks: pd.DataFrame, associator: Associator, partition_s: float = 3600.0, overlap_s: float = 120.0, client=None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Associate a long pick set in time partitions of ``partition_s`` with ``overlap_s`` on
    both sides (``overlap_s`` must exceed the longest travel time).  Each partition keeps the
    events whose origin time falls in its core; an event found by two partitions (origin
    times straddling a boundary) is kept once: the one with more picks wins and the other is
    dropped whole, so every pick belongs to at most one event.  ``client``: a
    ``dask.distributed`` client to map the partitions over (plain loop otherwise).  Event ids
    are renumbered 1..N by time; ``pick_index`` refers to the row position in ``picks``."""
    if len(picks) == 0:
        return _empty_events(), _empty_assignments()
    p = picks.copy()
    if "pick_index" not in p:
        p["pick_index"] = np.arange(len(p), dtype=np.int64)
    if "station_id" in p and associator.unknown_stations == "drop":  # once here, not once per partition
        known = p["station_id"].astype(str).isin(associator._sindex).to_numpy()
        if not known.all():
            missing = sorted(set(p["station_id"].astype(str)[~known]))
            log.warning(
                "associate: %d pick(s) of %d station(s) not in the stations table dropped, e.g. %s",
                int((~known).sum()),
                len(missing),
                ", ".join(missing[:5]),
            )
            p = p[known]
            if len(p) == 0:
                return _empty_events(), _empty_assignments()
    tns = _ns(p["time"])
    P = int(round(partition_s * 1e9))
    ov = int(round(overlap_s * 1e9))
    t0 = int(tns.min() // P * P)
    nparts = int((tns.max() - t0) // P) + 1
    order = np.argsort(tns, kind="stable")
    ts = tns[order]
    jobs = []
    for i in range(nparts):
        c0, c1 = t0 + i * P, t0 + (i + 1) * P
        lo = np.searchsorted(ts, c0 - ov, "left")
        hi = np.searchsorted(ts, c1 + ov, "left")
        if hi - lo == 0:
            continue
        jobs.append((p.iloc[order[lo:hi]], c0, c1))
    if client is not None:
        fut_assoc = client.scatter(associator, broadcast=True)
        futs = [client.submit(_run_partition, fut_assoc, part, c0, c1, pure=False) for part, c0, c1 in jobs]
        results = client.gather(futs)
    else:
        results = [_run_partition(associator, part, c0, c1) for part, c0, c1 in jobs]
    return _merge_partitions(results)


def _merge_partitions(results):
    evs, asgs = [], []
    offset = 0
    for ev, asg in results:
        if len(ev) == 0:
            continue
        ev = ev.copy()
        asg = asg.copy()
        ev["event_id"] = ev["event_id"] + offset
        asg["event_id"] = asg["event_id"] + offset
        offset = int(ev["event_id"].max()) + 1
        evs.append(ev)
        asgs.append(asg)
    if not evs:
        return _empty_events(), _empty_assignments()
    ev = pd.concat(evs, ignore_index=True)
    asg = pd.concat(asgs, ignore_index=True)
    # boundary duplicates: events sharing picks -> keep the stronger, drop the other whole
    dup = asg["pick_index"].duplicated(keep=False)
    if dup.any():
        shared = asg[dup]
        pairs = shared.groupby("pick_index")["event_id"].apply(lambda x: sorted(set(x)))
        involved = sorted({e for lst in pairs for e in lst})
        strength = ev.set_index("event_id").loc[involved, ["n_picks", "score"]]
        rank = sorted(involved, key=lambda e: (-strength.loc[e, "n_picks"], -strength.loc[e, "score"], e))
        conflicts: dict[int, set] = {e: set() for e in involved}
        for lst in pairs:
            for a in lst:
                conflicts[a].update(x for x in lst if x != a)
        kept, dropped = set(), set()
        for e in rank:
            if conflicts[e] & kept:
                dropped.add(e)
            else:
                kept.add(e)
        ev = ev[~ev["event_id"].isin(dropped)]
        asg = asg[~asg["event_id"].isin(dropped)]
    ev = ev.sort_values("time", kind="stable").reset_index(drop=True)
    remap = dict(zip(ev["event_id"].to_numpy(), np.arange(1, len(ev) + 1)))
    ev["event_id"] = np.arange(1, len(ev) + 1, dtype=np.int64)
    asg = asg.assign(event_id=asg["event_id"].map(remap).astype(np.int64))
    asg = asg.sort_values(["event_id", "time"], kind="stable").reset_index(drop=True)
    return ev, asg


# ============================================================================ evaluation
def match_events(
    found: pd.DataFrame, ref: pd.DataFrame, max_dt_s: float = 1.5, max_dist_km: float | None = 5.0
) -> pd.DataFrame:
    """One-to-one matching of ``found`` to ``ref`` events (both with ``time``, ``latitude``,
    ``longitude``): pairs within ``max_dt_s`` (and ``max_dist_km`` epicentral when given),
    closest in time first (:func:`quakescale.catalog.compare.match_catalogs`).  Returns the pairs
    (``i_found``, ``i_ref`` row positions, ``dt_s`` = |time difference|, ``dist_km``)."""
    m = match_catalogs(found, ref, max_dt_s=max_dt_s, max_dist_km=max_dist_km)
    return pd.DataFrame(
        {"i_found": m["cat_index"], "i_ref": m["ref_index"], "dt_s": m["dt_s"].abs(), "dist_km": m["dh_km"]}
    )
