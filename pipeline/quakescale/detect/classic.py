"""Classic pickers: recursive STA/LTA and kurtosis (the seed's bootstrap pickers).

Both work on the same preprocessed (1-20 Hz, 100 Hz, Z/N/E) station-day array as the CERP models
and return the same pick list, which :func:`quakescale.detect.runner.pick_stream` turns into the
PICKS table (``method`` = ``"stalta"`` or ``"kurtosis"``).

- P: triggers of the characteristic function on Z -- ObsPy's ``recursive_sta_lta`` with
  ``trigger_onset(on, off)`` (``sta_s``, ``lta_s``, ``trigger_on``, ``trigger_off``), or a sliding
  kurtosis (window ``sta_s``x2) crossing ``kurtosis_on``; the onset is refined by the Akaike
  information criterion (AIC) on Z before the trigger (STA/LTA) or put at the start of the
  kurtosis rise.
- S: after each P, in (P + 0.8 s, P + ``max_sp_s``) and before the next P, the peak of the
  horizontal STA/LTA, then the AIC minimum (or the steepest kurtosis rise) of the horizontal
  envelope in the 2 s before it; kept when the horizontal energy
  after/before it exceeds ``min_s_ratio``.
Quality in [0, 1] goes to the ``probability`` column.
"""

from __future__ import annotations

import numpy as np
from obspy.signal.trigger import recursive_sta_lta, trigger_onset

from .refine import aic_curves

FS_HZ = 100.0


def aic_onset(x: np.ndarray) -> int:
    """Index of the minimum of Maeda's AIC of ``x`` (sample where the variance changes)."""
    n = len(x)
    if n < 8:
        return n // 2
    aic = aic_curves(np.asarray(x, np.float64)[None, :])[0]  # split points k = 1 .. n-2
    # guard the ends (a few samples never make a reliable variance)
    aic[:3] = np.inf
    aic[-3:] = np.inf
    return int(np.argmin(aic)) + 1


def sliding_kurtosis(x: np.ndarray, n_win: int) -> np.ndarray:
    """Kurtosis of the trailing ``n_win`` samples at each sample (3 for Gaussian noise)."""
    x = np.asarray(x, np.float64)
    out = np.full(len(x), 3.0)
    if len(x) <= n_win:
        return out
    cs = [np.concatenate([[0.0], np.cumsum(x**p)]) for p in (1, 2, 3, 4)]
    s = [(c[n_win:] - c[:-n_win]) / n_win for c in cs]
    mu = s[0]
    m2 = s[1] - mu**2
    m4 = s[3] - 4 * mu * s[2] + 6 * mu**2 * s[1] - 3 * mu**4
    k = m4 / np.maximum(m2, 1e-30) ** 2
    k[m2 <= 1e-20 * max(m2.max(), 1e-30)] = 3.0
    out[n_win - 1 :] = k
    return out


def _energy_ratio(e: np.ndarray, i: int, n: int) -> float:
    a = e[max(i - n, 0) : i]
    b = e[i : i + n]
    if len(a) == 0 or len(b) == 0:
        return 0.0
    return float(b.mean() / max(a.mean(), 1e-30))


def classic_picks(
    data: np.ndarray,
    valid: np.ndarray | None,
    method: str,
    params,
    fs: float = FS_HZ,
    max_sp_s: float = 30.0,
    min_s_ratio: float = 2.0,
    kurtosis_on: float = 8.0,
):
    """P and S picks of one station-day array ``data`` (3, n: Z, N, E).

    Returns a list of ``(phase, sample_index_float, quality)``.
    """
    if method not in ("stalta", "kurtosis"):
        raise ValueError(f"classic picker: unknown method {method!r}; allowed: 'stalta', 'kurtosis'")
    z = np.asarray(data[0], np.float64)
    hor_e = np.asarray(data[1], np.float64) ** 2 + np.asarray(data[2], np.float64) ** 2
    n = len(z)
    nsta, nlta = max(int(params.sta_s * fs), 1), max(int(params.lta_s * fs), 2)
    if method == "stalta":
        cf = recursive_sta_lta(z, nsta, nlta)
        cf[:nlta] = 0.0  # LTA warm-up
        if valid is not None:
            cf[~valid] = 0.0
        trig = trigger_onset(cf, params.trigger_on, params.trigger_off)
    else:
        nk = max(int(2 * params.sta_s * fs), 10)
        cf = sliding_kurtosis(z, nk)
        if valid is not None:
            cf[~valid] = 3.0
        trig = trigger_onset(cf, kurtosis_on, 0.5 * (kurtosis_on + 3.0))
    p_idx, p_q = [], []
    for on, off in np.asarray(trig, dtype=np.int64).reshape(-1, 2):
        if method == "stalta":
            a = max(on - int(2.0 * fs), 0)
            b = min(on + int(0.5 * fs), n)
            i = a + aic_onset(z[a:b])
            peak = cf[on : max(off, on + 1)].max()
            q = float(np.clip(1.0 - params.trigger_on / max(peak, 1e-9), 0.0, 1.0))
        else:
            pk = on + int(np.argmax(cf[on : max(off, on + 1)]))
            a = max(pk - int(2 * params.sta_s * fs), 0)
            i = a + int(np.argmin(cf[a : pk + 1]))
            peak = cf[pk]
            q = float(np.clip(1.0 - kurtosis_on / max(peak, 1e-9), 0.0, 1.0))
        if p_idx and i - p_idx[-1] < int(1.0 * fs):
            continue
        p_idx.append(int(i))
        p_q.append(q)
    picks = [("P", float(i), q) for i, q in zip(p_idx, p_q)]
    # S after each P, before the next P: peak of the horizontal STA/LTA, onset by AIC before it
    env = np.sqrt(hor_e)
    hcf = np.maximum(
        recursive_sta_lta(np.asarray(data[1], np.float64), nsta, nlta),
        recursive_sta_lta(np.asarray(data[2], np.float64), nsta, nlta),
    )
    nk_s = max(int(2 * params.sta_s * fs), 10)
    for j, p in enumerate(p_idx):
        a = p + int(0.8 * fs)
        b = min(p + int(max_sp_s * fs), n)
        if j + 1 < len(p_idx):
            b = min(b, p_idx[j + 1] - int(0.3 * fs))
        if b - a < int(1.0 * fs):
            continue
        pk = a + int(np.argmax(hcf[a:b]))
        a2, b2 = max(pk - int(2.0 * fs), a), min(pk + int(0.3 * fs), n)
        if method == "stalta":
            i = a2 + aic_onset(env[a2:b2])
        else:
            seg = env[max(a2 - nk_s, 0) : b2]
            k = sliding_kurtosis(seg, nk_s)[a2 - max(a2 - nk_s, 0) :]
            dk = np.diff(k, prepend=k[0])
            i = a2 + int(np.argmax(dk))
        r = _energy_ratio(hor_e, i, int(1.0 * fs))
        if r >= min_s_ratio:
            picks.append(("S", float(i), float(np.clip(1.0 - 1.0 / r, 0.0, 1.0))))
    return picks
