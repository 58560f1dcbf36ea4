"""Onset refinement (AIC) and the post-network pick policy, on synthetic onsets of known time."""

from __future__ import annotations

import numpy as np
import pytest

from quakescale.config import DetectSection
from quakescale.detect.refine import RefineParams, aic_curves, refine_indices, screen_and_refine

FS = 100.0


def _trace(onset: int, amp: float, n: int = 3000, seed: int = 0, horizontal: bool = False) -> np.ndarray:
    """(3, n) unit-variance noise plus a decaying 8 Hz wavelet starting at ``onset`` (on Z, or on
    N and E for an S-like onset)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, n))
    t = np.arange(n - onset) / FS
    w = amp * np.sin(2 * np.pi * 8 * t) * np.exp(-t / 0.5)
    for c in (1, 2) if horizontal else (0,):
        x[c, onset:] += w
    return x.astype(np.float32)


def test_aic_curve_minimum_at_variance_change():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.standard_normal(300), 8 * rng.standard_normal(200)])
    k = int(np.argmin(aic_curves(x[None])[0])) + 1
    assert abs(k - 300) <= 2


@pytest.mark.parametrize("seed", range(5))
def test_refine_recovers_known_onset(seed):
    onset = 1500
    data = _trace(onset, amp=20.0, seed=seed)
    # the network's picks: 0.2 s late and 0.15 s early
    new, acc, con = refine_indices(data, None, np.array([onset + 20.0, onset - 15.0]), "P")
    assert acc.all() and (con > 4).all()
    assert np.all(np.abs(new - onset) <= 2), new


def test_pairwise_sum_is_numpys():
    """The kernels' float64 sums add in numpy's pairwise order: the same bits as np.add.reduce."""
    from quakescale.detect.pick_kernels import _pairwise

    rng = np.random.default_rng(2)
    for n in [*range(0, 140), 255, 256, 480, 1000, 4097, 70_001]:
        a = rng.standard_normal(n + 3) * 10.0 ** rng.uniform(-3, 6)
        assert _pairwise(a, 3, n) == np.add.reduce(a[3 : 3 + n]), n


@pytest.mark.parametrize("phase", ["P", "S"])
def test_compiled_onsets_equal_numpys(phase, monkeypatch):
    """The compiled AIC onsets and contrasts are the numpy rows' numbers, on noise, sharp onsets
    and near-silent samples (the variance floor), with gaps (windows refused alike)."""
    from quakescale.detect import pick_kernels

    rng = np.random.default_rng(9)
    data = rng.standard_normal((3, 40_000)).astype(np.float32) * rng.uniform(0.5, 5, (3, 1)).astype(np.float32)
    for at in range(2000, 38_000, 1500):
        data[:, at : at + 400] += (rng.uniform(2, 60) * rng.standard_normal((3, 400))).astype(np.float32)
    data[:, 10_000:10_300] = 0.0  # silence: variances at the 1e-30 floor
    valid = np.ones(40_000, bool)
    valid[25_000:25_100] = False
    idx = np.r_[rng.uniform(0, 40_000, 3000), [10_150.0, 10_000.0, 25_050.0, 3.0, 39_990.0]]
    assert pick_kernels.available()
    got = refine_indices(data, valid, idx, phase)
    monkeypatch.setattr(pick_kernels, "_OK", False)
    want = refine_indices(data, valid, idx, phase)
    for g, w in zip(got, want):
        assert np.array_equal(g, w, equal_nan=True)
    assert got[1].sum() > 50 and np.isnan(got[2]).sum() >= 3


def test_refine_s_on_horizontals():
    onset = 1200
    data = _trace(onset, amp=15.0, seed=3, horizontal=True)
    new, acc, _ = refine_indices(data, None, np.array([onset + 18.0]), "S")
    assert acc[0] and abs(new[0] - onset) <= 2
    # the vertical has no onset: a P refinement there is rejected and leaves the pick alone
    newp, accp, conp = refine_indices(data, None, np.array([onset + 18.0]), "P")
    assert not accp[0] and newp[0] == onset + 18.0 and conp[0] < 2


def test_refine_keeps_pick_on_noise_and_in_gaps():
    data = _trace(0, amp=0.0, seed=4)  # noise only
    idx = np.array([500.0, 1500.0, 2500.0])
    new, acc, con = refine_indices(data, None, idx, "P")
    assert not acc.any() and np.array_equal(new, idx) and (con < 3).all()  # noise: below the 3.5 / 4 thresholds
    valid = np.ones(data.shape[1], bool)
    valid[1400:1600] = False
    new, acc, con = refine_indices(data, valid, idx, "P")
    assert np.isnan(con[1]) and not acc[1] and new[1] == 1500.0
    # too close to the data's edge for a window: unchanged, NaN contrast
    new, acc, con = refine_indices(data, None, np.array([10.0]), "P")
    assert new[0] == 10.0 and np.isnan(con[0])
    with pytest.raises(ValueError, match="phase"):
        refine_indices(data, None, idx, "X")


def test_refine_shift_limit():
    onset = 1500
    data = _trace(onset, amp=20.0, seed=5)
    new, acc, _ = refine_indices(data, None, np.array([onset + 40.0]), "P", RefineParams(max_shift_s=0.2, before_s=0.6))
    assert not acc[0] and new[0] == onset + 40.0
    new, acc, _ = refine_indices(data, None, np.array([onset + 40.0]), "P", RefineParams(max_shift_s=0.5, before_s=0.6))
    assert acc[0] and abs(new[0] - onset) <= 2


def test_screen_and_refine_policy():
    onset = 1500
    data = _trace(onset, amp=20.0, seed=6)
    noise_pick = ("P", 600.0, 0.9)  # confident but no onset in the waveform: dropped
    sure_noise = ("P", 2400.0, 0.99)  # the network very sure: kept (not refined)
    weak = ("S", 900.0, 0.6)  # below min_prob_s, no onset: dropped
    sharp = ("P", onset + 20.0, 0.6)  # below min_prob_p but a sharp onset: kept and refined
    p = DetectSection()
    out, counts = screen_and_refine(data, None, [noise_pick, sure_noise, weak, sharp], p)
    assert [o[0] for o in out] == ["P", "P"]
    assert out[0][1] == 2400.0 and abs(out[1][1] - onset) <= 2 and out[1][2] == 0.6
    assert counts == {"n_below_min_prob": 1, "n_no_onset": 1, "n_refined": 1}
    # switches: no onset check, no refinement, everything above 0.5 kept -> the network's picks
    off = DetectSection(min_prob_p=0.5, min_prob_s=0.5, onset_min_contrast=0.0, refine_phases=[])
    out, counts = screen_and_refine(data, None, [noise_pick, sure_noise, weak, sharp], off)
    assert out == [noise_pick, sure_noise, weak, sharp] and counts["n_refined"] == 0
    assert screen_and_refine(data, None, [], p) == ([], {"n_below_min_prob": 0, "n_no_onset": 0, "n_refined": 0})
