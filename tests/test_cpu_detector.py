"""The detector's CPU path (detect.cpu_detector: the compiled first block reading the windows from
the day, the rest in torch on the pool's threads) against the torch modules: the same
probabilities up to float32 rounding, at any batch size and pool width, with every thread's torch
thread count left as it was, NaN kept in its own windows, windows outside the data refused, and
the torch modules serving without numba."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from quakescale.detect import cpu_detector, cpu_picker
from quakescale.detect.models import Detector, load_model, normalize_windows
from world_fixtures import first_station_day


def _day(n: int = 60_000, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = (rng.standard_normal((3, n)) * 50.0 + 7.0).astype(np.float32)  # an offset: the means matter
    data[:, 20_000:23_000] *= 40.0  # an "event"
    data[1, 40_000:41_000] = 0.0  # a dead stretch on one component
    return data


def _torch_probs(det: Detector, data: np.ndarray, starts: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        x = normalize_windows(torch.from_numpy(np.stack([data[:, s : s + 3000] for s in starts])))
        return torch.sigmoid(det(x)).numpy()


@pytest.fixture(scope="module")
def shipped():
    return load_model("builtin:default").detector.eval()


@pytest.fixture()
def two_threads():
    n0 = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(n0)


def test_cpu_detector_equals_the_torch_modules_at_any_batch(shipped, two_threads):
    data = _day()
    starts = np.r_[np.arange(0, 57_001, 1500), 1234, 56_999]  # the day's grid and two off it
    assert cpu_detector.fits(shipped, 3000, 3)
    ref = _torch_probs(shipped, data, starts)
    assert ((ref > 0.5).sum() > 0) and ((ref < 0.5).sum() > 0)  # both kinds of window
    for batch in (256, 7, 1):
        got = cpu_detector.detect_windows(shipped, data, starts, 3000, batch)
        np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6)
    torch.set_num_threads(1)  # no pool: one thread does it all, the same numbers
    np.testing.assert_allclose(cpu_detector.detect_windows(shipped, data, starts, 3000, 16), ref, rtol=0, atol=2e-6)


def test_random_weights_and_a_nan_stays_in_its_windows(two_threads):
    torch.manual_seed(3)
    det = Detector().eval()
    data = _day(seed=9)
    data[2, 30_500] = np.nan
    starts = np.arange(0, 57_001, 1500)
    ref = _torch_probs(det, data, starts)
    got = cpu_detector.detect_windows(det, data, starts, 3000, 8)
    bad = (starts <= 30_500) & (30_500 < starts + 3000)
    assert np.isnan(got[bad]).all() and np.isfinite(got[~bad]).all()
    assert np.array_equal(np.isnan(ref), np.isnan(got))
    np.testing.assert_allclose(got[~bad], ref[~bad], rtol=0, atol=2e-6)


def test_torch_threads_left_as_they_were_with_overlapping_callers(shipped, two_threads):
    """Torch's thread count is each thread's own (OpenMP): three callers at once, each with its
    own count, find it unchanged after their calls, and a thread that starts afterwards gets the
    count the main thread set."""
    data = _day()
    starts = np.arange(0, 57_001, 1500)
    seen: dict = {}
    errors: list = []

    def call(k: int):
        try:
            torch.set_num_threads(2)
            for _ in range(3):
                cpu_detector.detect_windows(shipped, data, starts, 3000, 4)
            seen[k] = torch.get_num_threads()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and seen == {0: 2, 1: 2, 2: 2}
    assert torch.get_num_threads() == 2
    later: list = []
    t = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert later == [2]


def test_windows_outside_the_data_are_refused(shipped):
    data = _day(6000)
    with pytest.raises(ValueError, match="outside the data"):
        cpu_detector.detect_windows(shipped, data, np.array([0, 3001]), 3000, 8)
    with pytest.raises(ValueError, match="outside the data"):
        cpu_detector.detect_windows(shipped, data, np.array([-1]), 3000, 8)


def test_other_first_layers_and_no_numba_keep_the_torch_path(shipped, monkeypatch):
    assert not cpu_detector.fits(shipped, 3001, 3)  # odd windows
    assert not cpu_detector.fits(shipped, 3000, 4)  # four channels
    other = Detector()
    other.features[0] = torch.nn.Conv1d(3, 8, 5, padding=2)
    assert not cpu_detector.fits(other, 3000, 3)
    monkeypatch.setattr(cpu_picker, "_KERNEL_OK", False)  # as when numba does not import
    assert not cpu_detector.fits(shipped, 3000, 3)


def test_cerp_picks_with_and_without_the_compiled_detector(small_world, monkeypatch):
    """The runner's picks on a synthetic day: the same with the compiled first block as with the
    torch detector (the picker on its CPU path in both)."""
    from quakescale.detect.runner import cerp_picks

    cfg, model, prep = first_station_day(small_world)
    calls = []
    real = cpu_detector.detect_windows
    monkeypatch.setattr(cpu_detector, "detect_windows", lambda *a, **k: calls.append(1) or real(*a, **k))
    fast, n_fast = cerp_picks(prep, model, cfg.detect)
    monkeypatch.setattr(cpu_detector, "fits", lambda *a, **k: False)
    ref, n_ref = cerp_picks(prep, model, cfg.detect)
    assert len(calls) == 1 and len(ref) > 20
    assert n_fast["n_detected"] == n_ref["n_detected"] > 0
    assert [(ph, round(i, 2)) for ph, i, _ in fast] == [(ph, round(i, 2)) for ph, i, _ in ref]
    np.testing.assert_allclose([p for *_, p in fast], [p for *_, p in ref], rtol=0, atol=1e-5)
