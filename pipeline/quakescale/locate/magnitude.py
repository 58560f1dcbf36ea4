"""Local magnitude (ML) from Wood-Anderson amplitudes, and the frequency-magnitude distribution.

ML: station magnitudes ``ML_i = log10(A_i / mm) + (-log A0)(r_i)`` with the distance correction
named by ``correction`` (default Hutton & Boore 1987, :mod:`quakescale.ml`) at hypocentral
distance ``r`` (km, station elevation included); ``A`` is the zero-to-peak WA amplitude that the
picker measured on the S pick.  Per station the largest amplitude is used (one magnitude per
station); the event magnitude is the median of the station magnitudes, ``mag_n`` their number.

Units are explicit: amplitudes come in a column whose name carries the unit -- ``amp_wa_mm``
(the project's schema), or ``amp_wa_m`` / ``amp_wa_um`` / ``amp_wa_nm``, converted to mm.  A
plausibility guard refuses amplitudes above ``max_amp_mm`` (10 m; a real WA trace saturates
far below) and event magnitudes above ``max_ml`` (7.5 for a local network) with an error that
names the likely unit mix-up, instead of silently reporting magnitude 8.  With
``strict=False`` (the pipeline's locate stage) nothing raises: an absurd amplitude is excluded
from its event's magnitude with the reason in the station-magnitudes table (``used``,
``reason``), an amplitude measured on clipped counts (``amp_clipped``) is excluded while the
event has unclipped ones (else used, noted as a lower bound), and an event ML above ``max_ml``
is left NaN with the reason in ``mag_note``.

FMD: completeness ``Mc`` by maximum curvature (the most populated magnitude bin) plus a stated
correction (+0.2, Woessner & Wiemer 2005); ``b`` by maximum likelihood (Aki 1965 with Utsu's
binning correction ``Mc - dM/2``), its uncertainty after Shi & Bolt (1982), and ``a`` such that
``log10 N(>= Mc) = a - b Mc``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import QuakeScaleError
from ..geo import epicentral_km
from ..ml import DISTANCE_CORRECTIONS, ml_from_amplitude

__all__ = ["event_magnitudes", "fmd", "AMPLITUDE_UNITS_TO_MM", "MagnitudeUnitError"]

AMPLITUDE_UNITS_TO_MM = {"amp_wa_mm": 1.0, "amp_wa_m": 1e3, "amp_wa_um": 1e-3, "amp_wa_nm": 1e-6}


class MagnitudeUnitError(QuakeScaleError, ValueError):
    """Amplitudes whose size does not fit their declared unit."""


def _amplitude_column(picks: pd.DataFrame) -> str:
    cols = [c for c in AMPLITUDE_UNITS_TO_MM if c in picks.columns]
    if not cols:
        raise ValueError(
            f"picks: no Wood-Anderson amplitude column; expected one of {list(AMPLITUDE_UNITS_TO_MM)} "
            f"(the unit is part of the name), have {list(picks.columns)}"
        )
    if len(cols) > 1:
        raise ValueError(f"picks: several amplitude columns {cols}; keep exactly one so the unit is unambiguous")
    return cols[0]


def _absurd_message(c: str, n: int, largest: float, max_amp_mm: float) -> str:
    return (
        f"picks.{c}: {n} amplitude(s) exceed {max_amp_mm:g} mm after conversion to mm "
        f"(largest {largest:.4g} mm); a Wood-Anderson trace cannot be that large -- are these counts, nm "
        f"or m labelled as {c}?"
    )


def _amplitudes_mm(picks: pd.DataFrame, max_amp_mm: float, strict: bool = True) -> pd.Series:
    c = _amplitude_column(picks)
    amp = pd.to_numeric(picks[c], errors="coerce") * AMPLITUDE_UNITS_TO_MM[c]
    bad = amp > max_amp_mm
    if bad.any() and strict:
        raise MagnitudeUnitError(_absurd_message(c, int(bad.sum()), float(amp.max()), max_amp_mm))
    return amp


def event_magnitudes(
    events: pd.DataFrame,
    picks_with_amp_wa_mm: pd.DataFrame,
    stations: pd.DataFrame,
    correction: str = "hutton_boore_1987",
    min_stations: int = 1,
    max_amp_mm: float = 1.0e4,
    max_ml: float = 7.5,
    use_elevation: bool = True,
    strict: bool = True,
):
    """ML per station and per event.

    ``events``: event_id, latitude, longitude, depth_km; ``picks_with_amp_wa_mm``: event_id,
    station_id, an amplitude column (see module doc), optionally phase (S rows are preferred when
    a station has S amplitudes) and ``amp_clipped``; ``stations``: station_id, latitude,
    longitude[, elevation_m].

    Returns ``(events_out, station_mags)``: events with ``magnitude``, ``mag_type`` ("ML"),
    ``mag_n`` (stations used), ``mag_mad`` (median absolute deviation) and ``mag_note``; NaN
    magnitude where fewer than ``min_stations`` amplitudes.  ``station_mags``: event_id,
    station_id, amp_wa_mm, hypo_distance_km, ml, used, reason (why a station was left out).
    ``strict`` (default): absurd amplitudes or magnitudes raise :class:`MagnitudeUnitError`;
    ``strict=False``: they are excluded with their reason and nothing raises.
    """
    if correction not in DISTANCE_CORRECTIONS:
        raise ValueError(f"unknown ML distance correction {correction!r}; known: {sorted(DISTANCE_CORRECTIONS)}")
    for name, df, cols in (
        ("events", events, ("event_id", "latitude", "longitude", "depth_km")),
        ("picks", picks_with_amp_wa_mm, ("event_id", "station_id")),
        ("stations", stations, ("station_id", "latitude", "longitude")),
    ):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ValueError(f"{name}: missing column(s) {missing}")
    _amplitude_column(picks_with_amp_wa_mm)  # raises when no amplitude column
    picks = picks_with_amp_wa_mm.copy()
    picks["amp_mm"] = _amplitudes_mm(picks, max_amp_mm, strict)
    picks = picks[np.isfinite(picks["amp_mm"]) & (picks["amp_mm"] > 0)]
    picks = picks[picks["event_id"].isin(events["event_id"])]
    if "phase" in picks.columns:
        # prefer S amplitudes where a station has them
        has_s = (
            picks.assign(_s=picks["phase"].astype(str).str.upper().str.startswith("S"))
            .groupby(["event_id", "station_id"])["_s"]
            .transform("any")
        )
        picks = picks[~has_s | picks["phase"].astype(str).str.upper().str.startswith("S")]
    sta = stations.drop_duplicates("station_id").set_index("station_id")
    unknown = sorted(set(picks["station_id"]) - set(sta.index))
    if unknown:
        raise ValueError(f"amplitude picks refer to station(s) not in the station table: {unknown[:10]}")
    # why each amplitude would be left out ("" = usable); one row per (event, station): the
    # largest usable amplitude, else the largest excluded one with its reason
    absurd = picks["amp_mm"] > max_amp_mm
    clipped = (
        picks["amp_clipped"].fillna(False).astype(bool)
        if "amp_clipped" in picks.columns
        else pd.Series(False, index=picks.index)
    )
    reason = pd.Series("", index=picks.index, dtype=object)
    reason[clipped] = "clipped: amplitude is a lower bound"
    reason[absurd] = [
        f"absurd amplitude {a:.4g} mm > {max_amp_mm:g} mm (clipping, wrong response or unit?)"
        for a in picks.loc[absurd, "amp_mm"]
    ]
    picks = picks.assign(_reason=reason, _rank=np.where(absurd, 2, np.where(clipped, 1, 0)))
    per = (
        picks.sort_values(
            ["event_id", "station_id", "_rank", "amp_mm"], ascending=[True, True, True, False], kind="stable"
        )
        .drop_duplicates(["event_id", "station_id"])
        .reset_index(drop=True)
    )
    ev = events.set_index("event_id")
    elat = ev.loc[per["event_id"], "latitude"].to_numpy(float)
    elon = ev.loc[per["event_id"], "longitude"].to_numpy(float)
    edep = ev.loc[per["event_id"], "depth_km"].to_numpy(float)
    slat = sta.loc[per["station_id"], "latitude"].to_numpy(float)
    slon = sta.loc[per["station_id"], "longitude"].to_numpy(float)
    selev = (
        sta.loc[per["station_id"], "elevation_m"].fillna(0).to_numpy(float) / 1000.0
        if use_elevation and "elevation_m" in sta.columns
        else np.zeros(len(per))
    )
    epi = epicentral_km(elat, elon, slat, slon)
    r = np.sqrt(epi**2 + (np.nan_to_num(edep) + selev) ** 2)
    r = np.maximum(r, 1.0)
    ml = ml_from_amplitude(per["amp_mm"].to_numpy(float), r, correction)
    rank = per["_rank"].to_numpy()
    # clipped amplitudes count only where the event has no unclipped one (then as lower bounds)
    best = pd.Series(rank).groupby(per["event_id"].to_numpy()).transform("min").to_numpy()
    used = (rank == 0) | ((rank == 1) & (best == 1))
    station_mags = pd.DataFrame(
        {
            "event_id": per["event_id"],
            "station_id": per["station_id"],
            "amp_wa_mm": per["amp_mm"],
            "hypo_distance_km": r,
            "ml": ml,
            "used": used,
            "reason": np.where(used & (rank == 0), "", per["_reason"].to_numpy()),
        }
    )
    g = station_mags[station_mags["used"]].groupby("event_id")["ml"]
    med = g.median()
    n = g.size()
    mad = g.apply(lambda x: float(np.median(np.abs(x - np.median(x)))))
    out = events.copy()
    out["magnitude"] = out["event_id"].map(med).where(out["event_id"].map(n).fillna(0) >= min_stations)
    out["mag_n"] = out["event_id"].map(n).fillna(0).astype(np.int32)
    out["mag_mad"] = out["event_id"].map(mad)
    note = pd.Series("", index=out.index, dtype=object)
    n_excl = station_mags[~station_mags["used"]].groupby("event_id").size()
    has_excl = out["event_id"].isin(n_excl.index)
    note[has_excl] = [
        f"{int(n_excl[e])} station amplitude(s) excluded (see station magnitudes)"
        for e in out.loc[has_excl, "event_id"]
    ]
    lower = station_mags[station_mags["used"] & (station_mags["reason"] != "")]["event_id"].unique()
    note[out["event_id"].isin(lower)] = "clipped amplitudes only: magnitude is a lower bound"
    too_big = out["magnitude"] > max_ml
    if too_big.any():
        worst = out.loc[too_big, ["event_id", "magnitude"]].head(3).to_dict("records")
        if strict:
            raise MagnitudeUnitError(
                f"ML above {max_ml} for {int(too_big.sum())} event(s) (e.g. {worst}) on a local network; "
                f"check the amplitude unit (column names carry it: {list(AMPLITUDE_UNITS_TO_MM)})"
            )
        note[too_big] = [
            f"ML {m:.2f} above {max_ml:g} on a local network: not reported (amplitude unit?)"
            for m in out.loc[too_big, "magnitude"]
        ]
        out.loc[too_big, "magnitude"] = np.nan
    out["mag_type"] = np.where(out["magnitude"].notna(), "ML", None)
    out["mag_note"] = note.to_numpy()
    return out, station_mags


def fmd(
    magnitudes, bin_width: float = 0.1, mc_correction: float = 0.2, mc: float | None = None, min_events: int = 20
) -> dict:
    """Frequency-magnitude distribution.

    Returns ``dict(mc, mc_maxc, mc_correction, b, b_err, a, n, bin_width, method)``: ``mc_maxc``
    the maximum-curvature estimate (centre of the most populated bin), ``mc = mc_maxc +
    mc_correction`` unless ``mc`` is given; ``b`` Aki-Utsu maximum likelihood over events with
    ``M >= mc`` (binned magnitudes: ``b = log10(e) / (mean - (mc - bin_width/2))``), ``b_err`` the
    Shi & Bolt (1982) standard error ``2.3 b^2 sqrt(sum (M - mean)^2 / (n (n - 1)))``, ``a`` from
    ``log10 n = a - b mc``.
    """
    m = np.asarray(pd.Series(magnitudes, dtype=float).dropna(), float)
    if len(m) < min_events:
        raise ValueError(f"fmd: need at least {min_events} magnitudes, got {len(m)}")
    mb = np.round(m / bin_width) * bin_width
    lo = mb.min()
    idx = np.round((mb - lo) / bin_width).astype(int)
    counts = np.bincount(idx)
    mc_maxc = float(lo + np.argmax(counts) * bin_width)
    mc_used = float(mc) if mc is not None else mc_maxc + mc_correction
    mc_used = round(mc_used / bin_width) * bin_width
    sel = mb[mb >= mc_used - 1e-9]
    n = len(sel)
    if n < 2:
        raise ValueError(f"fmd: fewer than 2 magnitudes above Mc = {mc_used:.2f}")
    mean = sel.mean()
    b = np.log10(np.e) / (mean - (mc_used - bin_width / 2.0))
    b_err = 2.3 * b**2 * np.sqrt(((sel - mean) ** 2).sum() / (n * (n - 1)))
    a = np.log10(n) + b * mc_used
    return dict(
        mc=float(mc_used),
        mc_maxc=mc_maxc,
        mc_correction=float(mc_correction if mc is None else mc_used - mc_maxc),
        b=float(b),
        b_err=float(b_err),
        a=float(a),
        n=int(n),
        bin_width=float(bin_width),
        method="Mc: maximum curvature + correction; b: Aki-Utsu maximum likelihood; b_err: Shi & Bolt 1982",
    )
