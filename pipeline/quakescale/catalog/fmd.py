"""Frequency-magnitude distribution: counts, completeness magnitude and b-value.

- :func:`fmd_counts`: non-cumulative and cumulative counts on magnitude bins of width ``dm``.
- :func:`mc_maxc`: maximum curvature (the bin with the most events; Wiemer & Wyss 2000) plus a
  correction (+0.2 by default; Woessner & Wiemer 2005), which MAXC otherwise underestimates.
- :func:`b_value_aki_utsu`: maximum-likelihood b (Aki 1965, Utsu 1965 with the bin correction
  Mc - dm/2) and its Shi & Bolt (1982) standard error.
- :func:`fmd_summary`: all of the above for a list of magnitudes.
"""

from __future__ import annotations

import numpy as np

LOG10E = np.log10(np.e)


def _clean(mags) -> np.ndarray:
    m = np.asarray(mags, float)
    return m[np.isfinite(m)]


def fmd_counts(mags, dm: float = 0.1):
    """``(bin_centres, non_cumulative, cumulative)``; cumulative = N(M >= bin centre)."""
    m = _clean(mags)
    if len(m) == 0:
        return np.zeros(0), np.zeros(0, int), np.zeros(0, int)
    idx = np.round(m / dm).astype(np.int64)  # magnitudes rounded to their bins
    lo, hi = idx.min(), idx.max()
    non = np.bincount(idx - lo, minlength=hi - lo + 1)
    cum = np.cumsum(non[::-1])[::-1]
    centres = np.arange(lo, hi + 1) * dm
    return np.round(centres, 10), non, cum


def mc_maxc(mags, dm: float = 0.1, correction: float = 0.2) -> float:
    """Completeness magnitude by maximum curvature + ``correction``; NaN without magnitudes."""
    c, non, _ = fmd_counts(mags, dm)
    if len(c) == 0:
        return float("nan")
    return float(np.round(c[int(np.argmax(non))] + correction, 10))


def b_value_aki_utsu(mags, mc: float, dm: float = 0.1) -> tuple[float, float, int]:
    """``(b, sigma_b, n)``: Aki-Utsu maximum-likelihood b of the events with M >= Mc and the
    Shi-Bolt error ``2.3 b^2 sqrt(sum (M - mean)^2 / (n (n - 1)))``; NaNs when n < 2."""
    m = _clean(mags)
    m = m[m >= mc - dm / 2 + 1e-9]  # magnitudes in the Mc bin and above
    n = len(m)
    if n < 2:
        return float("nan"), float("nan"), n
    mean = m.mean()
    denom = mean - (mc - dm / 2.0)
    if denom <= 0:
        return float("nan"), float("nan"), n
    b = LOG10E / denom
    sigma = 2.3 * b * b * np.sqrt(np.sum((m - mean) ** 2) / (n * (n - 1)))
    return float(b), float(sigma), n


def fmd_summary(mags, dm: float = 0.1, correction: float = 0.2, min_events: int = 20) -> dict:
    """Mc (MAXC + correction), b and its Shi-Bolt error, a-value (log10 N(M >= Mc) + b Mc).

    b, sigma and a are None when fewer than ``min_events`` magnitudes reach Mc."""
    m = _clean(mags)
    mc = mc_maxc(m, dm, correction)
    out = {
        "n": int(len(m)),
        "dm": dm,
        "mc_correction": correction,
        "mc": None if np.isnan(mc) else mc,
        "b": None,
        "b_err": None,
        "a": None,
        "n_above_mc": 0,
    }
    if np.isnan(mc):
        return out
    b, sb, n = b_value_aki_utsu(m, mc, dm)
    out["n_above_mc"] = int(n)
    if n >= min_events and np.isfinite(b):
        out.update(b=b, b_err=sb, a=float(np.log10(n) + b * mc))
    return out
