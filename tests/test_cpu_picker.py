"""The picker's CPU inference path (detect.cpu_picker + the compiled GRU recurrence) against the
torch modules it replaces: the same function up to float32 rounding, on the shipped weights and
on random ones, in parts of any size, at any pool width, and through cerp_picks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from quakescale.detect import cpu_picker
from quakescale.detect.models import Picker, load_model, normalize_windows
from world_fixtures import first_station_day


def _torch_picker(pk: Picker, x: torch.Tensor):
    """The torch modules' forward (what Picker.forward runs off the CPU path)."""
    h = nn.functional.pad(pk.front(x), (pk.step_n // 2, pk.step_n // 2))
    fr = h.unfold(-1, 2 * pk.step_n, pk.step_n)
    b, c, t, w = fr.shape
    g, _ = pk.gru(pk.frame(fr.permute(0, 2, 1, 3).reshape(b, t, c * w)))
    return pk.cls(g), torch.sigmoid(pk.off(g))


def _windows(n: int, seed: int = 0, n_in: int = 3000) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3, n_in)).astype(np.float32)
    x[:, :, n_in // 3 : n_in // 2] *= 8.0  # an "event": the GRU states leave the linear range
    return normalize_windows(torch.from_numpy(x))


@pytest.fixture(scope="module")
def shipped():
    return load_model("builtin:default").picker.eval()


@pytest.mark.parametrize("n", [1, 5, 130])
def test_cpu_path_equals_the_torch_modules(shipped, n):
    x = _windows(n, seed=n)
    with torch.inference_mode():
        assert cpu_picker.usable(shipped, x)
        lo, off = shipped(x)  # the CPU path
        ref_lo, ref_off = _torch_picker(shipped, x)
    assert lo.shape == ref_lo.shape and off.shape == ref_off.shape
    np.testing.assert_allclose(lo.numpy(), ref_lo.numpy(), rtol=0, atol=2e-5)
    np.testing.assert_allclose(off.numpy(), ref_off.numpy(), rtol=0, atol=5e-6)
    assert float(ref_lo.abs().max()) > 1.0  # the logits are not all near zero


@pytest.mark.parametrize("w_scale", [1.0, 6.0])
def test_random_weights_as_accurate_as_torch_against_float64(w_scale):
    """Random weights; x6 recurrent weights saturate the gates (the exponential's clamps) and make
    the recurrence sensitive, so float32 rounding grows: both paths are held to a float64 run."""
    torch.manual_seed(3)
    pk = Picker().eval()
    with torch.no_grad():
        for name, p in pk.gru.named_parameters():
            if "weight_hh" in name:
                p.mul_(w_scale)
    pk64 = Picker().double().eval()
    pk64.load_state_dict(pk.state_dict())
    x = _windows(9, seed=4) * 4.0
    with torch.inference_mode():
        lo, off = pk(x)
        ref_lo, ref_off = _torch_picker(pk, x)
        lo64, off64 = _torch_picker(pk64, x.double())
    err = float((lo.double() - lo64).abs().max())
    err_torch = float((ref_lo.double() - lo64).abs().max())
    assert err <= 3.0 * err_torch + 1e-5, (err, err_torch)  # a wrong gate would be off by ~0.1
    assert float((off.double() - off64).abs().max()) <= 3.0 * float((ref_off.double() - off64).abs().max()) + 1e-5


def test_nan_in_a_window_stays_in_that_window(shipped):
    x = _windows(3, seed=7).clone()
    x[1, 0, 1000] = float("nan")
    with torch.inference_mode():
        lo, _ = shipped(x)
        ref_lo, _ = _torch_picker(shipped, x)
    assert torch.isnan(lo[1]).any() and not torch.isnan(lo[[0, 2]]).any()
    assert torch.equal(torch.isnan(lo), torch.isnan(ref_lo))


def test_training_gpu_and_other_sizes_keep_the_torch_path(shipped):
    x = _windows(2)
    with torch.enable_grad():
        assert not cpu_picker.usable(shipped, x)  # training: autograd needs the torch modules
    other = Picker(hidden=16).eval()
    assert not cpu_picker.supported(other)
    with torch.inference_mode():
        assert cpu_picker.supported(shipped) and not cpu_picker.usable(other, x)
        lo, _ = other(x)  # still runs, on nn.GRU
    assert lo.shape == (2, 60, 3)


def test_pick_windows_equals_normalize_then_torch_at_any_width_and_chunk(shipped, monkeypatch):
    rng = np.random.default_rng(11)
    data = rng.standard_normal((3, 40_000)).astype(np.float32)
    data[:, 12_000:13_000] *= 30.0
    starts = np.sort(rng.choice(40_000 - 3000, size=37, replace=False))
    with torch.inference_mode():
        x = normalize_windows(torch.from_numpy(np.stack([data[:, s : s + 3000] for s in starts])))
        ref_lo, ref_off = _torch_picker(shipped, x)
    ref_pr = torch.softmax(ref_lo, -1).numpy()
    out = {}
    for threads, chunk in [(1, 128), (1, 16), (2, 16), (2, 5)]:
        monkeypatch.setattr(torch, "get_num_threads", lambda n=threads: n)  # the pool's width
        out[threads, chunk] = cpu_picker.pick_windows(shipped, data, starts, 3000, chunk=chunk)
    pr, off = out[1, 128]
    np.testing.assert_allclose(pr, ref_pr, rtol=0, atol=5e-6)
    np.testing.assert_allclose(off, ref_off.numpy(), rtol=0, atol=5e-6)
    # each part is computed alone on one BLAS thread: three parts on two threads give every bit of one
    assert all(np.array_equal(a, b) for a, b in zip(out[1, 16], out[2, 16]))
    np.testing.assert_allclose(out[2, 5][0], pr, rtol=0, atol=1e-6)


def test_cerp_picks_on_the_cpu_path_equal_the_torch_path(small_world, monkeypatch):
    """The runner's CPU path (pick_windows) and its torch path give the same picks on a synthetic
    day, also for a picker whose config names another window length (the runner's windows rule)."""
    from quakescale.detect.runner import cerp_picks

    cfg, model, prep = first_station_day(small_world)
    calls = []
    real = cpu_picker.pick_windows
    monkeypatch.setattr(cpu_picker, "pick_windows", lambda *a, **k: calls.append(1) or real(*a, **k))
    fast, _ = cerp_picks(prep, model, cfg.detect)
    model.picker.config = dict(model.picker.config, n_in=6000)  # the windows stay the runner's 30 s
    fast_other, _ = cerp_picks(prep, model, cfg.detect)
    assert len(calls) == 2
    monkeypatch.setattr(cpu_picker, "_KERNEL_OK", False)
    ref, _ = cerp_picks(prep, model, cfg.detect)
    assert len(calls) == 2 and len(ref) > 20  # the torch path this time
    for got in (fast, fast_other):
        assert [(ph, round(i, 2)) for ph, i, _ in got] == [(ph, round(i, 2)) for ph, i, _ in ref]
        np.testing.assert_allclose([p for *_, p in got], [p for *_, p in ref], rtol=0, atol=1e-5)


def test_blas_limit_is_restored_by_the_last_of_overlapping_callers():
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas():
        return sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})

    with threadpool_limits(2, user_api="blas"):
        before = blas()
        assert before == [2]
        a, b = cpu_picker._one_blas_thread(), cpu_picker._one_blas_thread()
        a.__enter__()
        b.__enter__()
        assert blas() == [1]
        a.__exit__(None, None, None)  # the first out: the second still runs single-threaded
        assert blas() == [1]
        b.__exit__(None, None, None)
        assert blas() == before
        with pytest.raises(RuntimeError):  # an exception inside restores too
            with cpu_picker._one_blas_thread():
                raise RuntimeError("boom")
        assert blas() == before


def test_numpy_normalize_equals_the_torch_one():
    x = _windows(4, seed=2).numpy() * 3.0 + 0.5
    a = cpu_picker.normalize(x.copy())
    b = normalize_windows(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(a, b, rtol=0, atol=2e-6)


def test_without_numba_the_torch_modules_serve(shipped, monkeypatch):
    x = _windows(3, seed=5)
    monkeypatch.setattr(cpu_picker, "_KERNEL_OK", False)  # as when numba does not import
    with torch.inference_mode():
        assert not cpu_picker.supported(shipped) and not cpu_picker.usable(shipped, x)
        lo, off = shipped(x)
        ref_lo, ref_off = _torch_picker(shipped, x)
    assert torch.equal(lo, ref_lo) and torch.equal(off, ref_off)


def test_windows_on_one_grid_share_blocks_and_equal_the_torch_path(shipped):
    """A day's windows (a 15 s stride: half their half-second blocks shared, multiplied once, the
    normalisation applied to the products), one off the grid, a NaN that must stay in its
    windows, an offset of 17 standard deviations that the means must take out: the same as
    normalising each window in float64 and running the torch modules (closer than the torch path
    itself, whose float32 means lose digits on such an offset)."""
    rng = np.random.default_rng(21)
    data = (rng.standard_normal((3, 45_000)) * 30.0 + 500.0).astype(np.float32)
    data[:, 9_000:10_500] *= 25.0
    data[0, 33_333] = np.nan
    starts = np.r_[np.arange(0, 42_001, 1500), 41_977]
    bad = (starts <= 33_333) & (33_333 < starts + 3000)
    w64 = np.stack([data[:, s : s + 3000] for s in starts]).astype(np.float64)
    w64 -= w64.mean(axis=-1, keepdims=True)
    w64 /= w64.reshape(len(w64), -1).std(axis=-1, ddof=1)[:, None, None]
    with torch.inference_mode():
        ref_lo, ref_off = _torch_picker(shipped, torch.from_numpy(w64.astype(np.float32)))
        torch_lo, _ = _torch_picker(
            shipped, normalize_windows(torch.from_numpy(np.stack([data[:, s : s + 3000] for s in starts])))
        )
    ref_pr = torch.softmax(ref_lo, -1).numpy()
    err_torch = float(np.abs(torch.softmax(torch_lo, -1).numpy()[~bad] - ref_pr[~bad]).max())
    for chunk in (128, 6):
        pr, off = cpu_picker.pick_windows(shipped, data, starts, 3000, chunk=chunk)
        assert np.isnan(pr[bad]).any(axis=(1, 2)).all() and np.isfinite(pr[~bad]).all()
        err = float(np.abs(pr[~bad] - ref_pr[~bad]).max())
        assert err < 5e-6 and err < err_torch, (err, err_torch)
        np.testing.assert_allclose(off[~bad], ref_off.numpy()[~bad], rtol=0, atol=5e-6)


def _float64_reference(pk, data, starts):
    w64 = np.stack([data[:, s : s + 3000] for s in starts]).astype(np.float64)
    w64 -= w64.mean(axis=-1, keepdims=True)
    std = w64.reshape(len(w64), -1).std(axis=-1, ddof=1)[:, None, None]
    w64 = np.divide(w64, std, out=np.zeros_like(w64), where=std > 0)  # a constant window: zeros
    with torch.inference_mode():
        lo, off = _torch_picker(pk, torch.from_numpy(w64.astype(np.float32)))
    return torch.softmax(lo, -1).numpy(), off.numpy()


def test_a_quiet_window_after_loud_ones_and_constant_windows(shipped):
    """Each window's mean and std come from its own blocks: a quiet window after windows 10^7
    times louder in the same part keeps its digits; windows of constant counts away from the
    day's offset (a flat-lined stretch) normalise to zeros, as the torch path's do."""
    rng = np.random.default_rng(5)
    data = rng.standard_normal((3, 30_000)).astype(np.float32)
    data[:, 3000:9000] *= 1e7  # an "event" 10^7 times the noise
    data[:, 18_000:24_000] = 3.0  # constant counts, away from the median of the windows' first samples
    starts = np.arange(0, 27_001, 1500)
    ref_pr, ref_off = _float64_reference(shipped, data, starts)
    pr, off = cpu_picker.pick_windows(shipped, data, starts, 3000)
    np.testing.assert_allclose(pr, ref_pr, rtol=0, atol=5e-6)
    np.testing.assert_allclose(off, ref_off, rtol=0, atol=5e-6)
