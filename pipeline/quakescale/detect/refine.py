"""Onset refinement on the waveform around each network pick (Maeda's AIC).

The picker times a pick from its 0.5 s steps and their sub-step offsets; on impulsive, high-SNR
onsets the waveform itself defines the onset more sharply.  For every pick, in a short window
``[pick - before_s, pick + after_s]`` of the band-passed trace (Z for P, the two horizontals for
S: their AIC curves summed), the minimum of Maeda's (1985) AIC

    AIC(k) = k log var(x[:k]) + (n - k - 1) log var(x[k:])

is the candidate onset.  It is used only when it is well defined:

- the minimum lies inside the window (not within ``edge_s`` of either end),
- it moves the pick by at most ``max_shift_s``,
- the onset is sharp: the RMS of the ``contrast_s`` after the candidate over the RMS of the
  ``contrast_s`` before it is at least ``min_contrast`` (a weak or emergent onset, or noise,
  gives a ratio near 1, and there the AIC minimum wanders; the network's time is kept).

:func:`screen_and_refine` is the runner's whole post-network policy (probability floors per
phase, the P onset check, the refinement).  Everything is plain numpy on (picks x window)
arrays: one vectorised AIC for all picks of a phase, negligible next to the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import pick_kernels
from .threads import tmap

FS_HZ = 100.0


@dataclass(frozen=True)
class RefineParams:
    """Window and acceptance of the AIC onset refinement (seconds, amplitude ratio)."""

    before_s: float = 0.5
    after_s: float = 0.3
    max_shift_s: float = 0.25
    edge_s: float = 0.05
    contrast_s: float = 0.3
    min_contrast: float = 4.0


def aic_curves(x: np.ndarray) -> np.ndarray:
    """Maeda's AIC of each row of ``x`` (m, n) at split points k = 1 .. n-2 -> (m, n-2).

    AIC(k) = k log var(x[:k]) + (n - k - 1) log var(x[k:]); the minimum is the onset."""
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=-1, keepdims=True)
    n = x.shape[-1]
    c1 = np.cumsum(x * x, axis=-1)
    c0 = np.cumsum(x, axis=-1)
    k = np.arange(1, n - 1)
    v1 = c1[..., k - 1] / k - (c0[..., k - 1] / k) ** 2
    n2 = n - k
    v2 = (c1[..., -1:] - c1[..., k - 1]) / n2 - ((c0[..., -1:] - c0[..., k - 1]) / n2) ** 2
    return k * np.log(np.maximum(v1, 1e-30)) + (n2 - 1) * np.log(np.maximum(v2, 1e-30))


def refine_indices(
    data: np.ndarray,
    valid: np.ndarray | None,
    idx: np.ndarray,
    phase: str,
    params: RefineParams = RefineParams(),
    fs: float = FS_HZ,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Refine pick sample indices ``idx`` (float, one phase) on ``data`` (3, n: Z, N, E).

    Returns ``(new_idx, accepted, contrast)``: the refined float indices (the input where not
    accepted), a bool mask of accepted refinements and the onset contrast (after/before RMS
    ratio at the AIC minimum; NaN where the window was incomplete or in a gap)."""
    idx = np.asarray(idx, np.float64)
    out = idx.copy()
    m = len(idx)
    acc = np.zeros(m, bool)
    contrast = np.full(m, np.nan)
    if m == 0:
        return out, acc, contrast
    if phase not in ("P", "S"):
        raise ValueError(f"refine_indices: phase must be 'P' or 'S', got {phase!r}")
    n = data.shape[-1]
    nb, na = int(round(params.before_s * fs)), int(round(params.after_s * fs))
    nc = max(int(round(params.contrast_s * fs)), 2)
    ne = max(int(round(params.edge_s * fs)), 3)
    w = nb + na
    i0 = np.round(idx).astype(np.int64) - nb  # window starts
    # the contrast needs nc samples on both sides of any candidate in the window
    ok = (i0 - nc >= 0) & (i0 + w + nc <= n)
    span = np.arange(-nc, w + nc)
    if valid is not None and ok.any() and not np.all(valid):  # the whole extended window must hold data (no gap)
        valid = np.asarray(valid, bool)
        cand = np.flatnonzero(ok)
        for c0 in range(0, len(cand), REFINE_CHUNK):
            part = cand[c0 : c0 + REFINE_CHUNK]
            ok[part] = valid[i0[part, None] + span[None, :]].all(axis=1)
    sel = np.flatnonzero(ok)
    if not len(sel):
        return out, acc, contrast
    comps = (0,) if phase == "P" else (1, 2)
    k = np.empty(len(sel), np.int64)
    con = np.empty(len(sel))
    compiled = _compiled(data)  # each pick's samples read in place: no (picks x samples) copies
    for c0 in range(0, len(sel), REFINE_CHUNK):  # row-wise arithmetic: chunks change no bit, only the memory
        part, rows = sel[c0 : c0 + REFINE_CHUNK], slice(c0, c0 + REFINE_CHUNK)
        if compiled:
            pick_kernels.onsets(data, np.array(comps, np.int64), i0[part], w, nc, ne, k[rows], con[rows])
        else:
            k[rows], con[rows] = _onsets(data, i0[part], span, comps, w, nc, ne)
    new = (i0[sel] + k).astype(np.float64)
    good = (con >= params.min_contrast) & (np.abs(new - idx[sel]) <= params.max_shift_s * fs)
    contrast[sel] = con
    acc[sel] = good
    out[sel[good]] = new[good]
    return out, acc, contrast


def _compiled(data) -> bool:
    """Whether :func:`.pick_kernels.onsets` serves ``data`` (a C-ordered float32/float64 (3, n))."""
    return pick_kernels.takes(data, 2, (np.float32, np.float64), rows=3)


SCREEN_PART = 2048  # picks per task of screen_arrays on the CPU pool
REFINE_CHUNK = 2048  # picks per pass: a dense day's ~15,000 picks of a phase held ~0.3 GB of float64 rows at once


def _onsets(data: np.ndarray, i0: np.ndarray, span: np.ndarray, comps, w: int, nc: int, ne: int):
    """AIC onset (index in the window) and after/before RMS contrast there, per window start ``i0``."""
    rows = i0[:, None] + span[None, :]  # (s, w + 2 nc) sample indices
    aic = np.zeros((len(i0), w - 2))
    energy = np.zeros(rows.shape)
    for c in comps:
        seg = data[c][rows].astype(np.float64)  # only the picks' windows, never the whole day
        aic += aic_curves(seg[:, nc : nc + w])
        energy += seg * seg
    aic[:, : ne - 1] = np.inf  # edges of the window: never a reliable variance
    aic[:, w - 2 - ne + 1 :] = np.inf
    k = np.argmin(aic, axis=1) + 1  # onset = first sample of the second segment, in the window
    ce = np.concatenate([np.zeros((len(i0), 1)), np.cumsum(energy, axis=1)], axis=1)
    j = k + nc  # position in the extended rows
    r = np.arange(len(i0))
    after = (ce[r, j + nc] - ce[r, j]) / nc
    before = (ce[r, j] - ce[r, j - nc]) / nc
    return k, np.sqrt(after / np.maximum(before, 1e-30))


def screen_and_refine(
    data: np.ndarray, valid: np.ndarray | None, picks: list, params, fs: float = FS_HZ
) -> tuple[list, dict]:
    """The post-network pick policy of the CERP runner (``params``: a ``DetectSection``).

    For every merged pick the AIC onset and its contrast are measured (:func:`refine_indices`);
    then

    1. a pick is kept when its peak probability reaches ``min_prob_p`` / ``min_prob_s``, or,
       below that, when its waveform onset is sharp (contrast >= ``keep_sharp_onset_contrast``;
       the network is less sure on real data than on its synthetic training data, yet a sharp
       onset is no coda wiggle);
    2. P onset check: a kept P pick below ``onset_check_max_prob`` is dropped when the waveform
       shows no onset near it (contrast < ``onset_min_contrast``; 0 disables the check) -- at
       low SNR such picks sit on noise or coda and carry the large errors;
    3. the onsets of ``refine_phases`` move to the AIC onset where it is well defined (contrast
       >= ``refine_min_contrast``, shift <= ``refine_max_shift_s``).

    Returns ``(picks, counts)`` with counts of dropped/refined picks (:func:`screen_arrays` on
    the list's arrays)."""
    if not picks:
        return picks, {"n_below_min_prob": 0, "n_no_onset": 0, "n_refined": 0}
    ph = np.array([p[0] for p in picks])
    idx = np.array([p[1] for p in picks], np.float64)
    prob = np.array([p[2] for p in picks], np.float64)
    keep, idx, counts = screen_arrays(data, valid, ph, idx, prob, params, fs)
    return [(p[0], float(i), p[2]) for p, i, k in zip(picks, idx, keep) if k], counts


def screen_arrays(
    data: np.ndarray,
    valid: np.ndarray | None,
    ph: np.ndarray,
    idx: np.ndarray,
    prob: np.ndarray,
    params,
    fs: float = FS_HZ,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """:func:`screen_and_refine` of picks as arrays (phases, float sample indices, peak
    probabilities) -> (kept: bool mask, the indices with the refined onsets moved, counts)."""
    counts = {"n_below_min_prob": 0, "n_no_onset": 0, "n_refined": 0}
    idx = np.array(idx, np.float64)
    if not len(idx):
        return np.zeros(0, bool), idx, counts
    rp = RefineParams(max_shift_s=params.refine_max_shift_s, min_contrast=params.refine_min_contrast)
    minp = np.where(ph == "P", params.min_prob_p, params.min_prob_s)
    new_idx, accepted, contrast = idx.copy(), np.zeros(len(idx), bool), np.full(len(idx), np.nan)

    if valid is not None and np.all(valid):
        valid = None  # asked once here, not by every part
    # parts of each phase's picks on the CPU pool (an S pick costs two components, a P pick one:
    # parts, not the two phases, keep both threads busy); each writes its own picks' entries
    parts = []
    for phase in ("P", "S"):
        s = np.flatnonzero(ph == phase)
        parts += [(phase, s[k : k + SCREEN_PART]) for k in range(0, len(s), SCREEN_PART)]

    def refine(part) -> None:
        phase, s = part
        new_idx[s], accepted[s], contrast[s] = refine_indices(data, valid, idx[s], phase, rp, fs)

    pick_kernels.available()  # compiled (or loaded) here, not on the pool's threads at once
    tmap(refine, parts)
    sharp = contrast >= params.keep_sharp_onset_contrast  # NaN (gap, data edge): False
    keep = (prob >= minp) | sharp
    counts["n_below_min_prob"] = int((~keep).sum())
    if params.onset_min_contrast > 0:
        weak = keep & (ph == "P") & (prob < params.onset_check_max_prob) & (contrast < params.onset_min_contrast)
        keep &= ~weak
        counts["n_no_onset"] = int(weak.sum())
    move = keep & accepted & np.isin(ph, list(params.refine_phases))
    idx[move] = new_idx[move]
    counts["n_refined"] = int(move.sum())
    return keep, idx, counts
