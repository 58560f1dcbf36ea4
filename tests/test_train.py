"""Sample sets, augmentation and a tiny training run (seconds) on the tests' world."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from quakescale.detect.models import STEP_N, load_model
from quakescale.train.augment import ColouredNoise, Compose, RandomCrop, WhiteNoise
from quakescale.train.samples import P_AT_N, STORE_N, SampleSet, samples_from_world
from quakescale.train.trainer import split_indices, step_targets, train


@pytest.fixture(scope="module")
def sample_set(small_world, tmp_path_factory):
    return samples_from_world(small_world, tmp_path_factory.mktemp("samples"), seed=0)


def test_samples_are_labelled_from_truth(sample_set):
    ds = SampleSet(sample_set)
    assert ds.is_event.sum() > 20 and (~ds.is_event).sum() > 20
    assert np.all(ds.p[ds.is_event, :].max(axis=1) >= P_AT_N - 1)  # the sample's own P is labelled
    assert np.all(ds.p[~ds.is_event] == -1) and np.all(ds.s[~ds.is_event] == -1)
    x = ds.load(np.flatnonzero(ds.is_event)[:20])
    assert x.shape == (20, 3, STORE_N) and np.isfinite(x).all()
    # the P onset is visible: energy after the labelled P exceeds the energy before it
    pre = (x[:, 0, P_AT_N - 300 : P_AT_N - 20] ** 2).mean(axis=1)
    post = (x[:, 0, P_AT_N : P_AT_N + 280] ** 2).mean(axis=1)
    assert np.median(post / pre) > 1.5 and np.percentile(post / pre, 75) > 3  # ~1 if labels were misplaced


def test_augmentations_move_labels_with_the_window():
    rng = np.random.default_rng(0)
    x = np.zeros((4, 3, STORE_N), np.float32)
    x[:, :, P_AT_N] = 1.0
    p = np.full((4, 2), -1)
    p[:, 0] = P_AT_N
    ign = np.full((4, 2), -1)
    ign[:, 0] = P_AT_N + 700
    b = Compose([RandomCrop(3000, 1500), WhiteNoise(0.0)])(
        {"x": x, "p": p, "s": p.copy(), "p_ign": ign, "event": np.ones(4, bool)}, rng
    )
    assert b["x"].shape == (4, 3, 3000)
    for i in range(4):
        assert 100 <= b["p"][i, 0] <= 1600 and b["x"][i, 0, b["p"][i, 0]] == 1.0
        assert b["p_ign"][i, 0] == b["p"][i, 0] + 700  # unlabelled arrivals move with the window
    n = WhiteNoise(0.4)({"x": np.ones((64, 3, 100), np.float32) * np.arange(100), "event": np.ones(64, bool)}, rng)["x"]
    assert 0 < np.std(n - np.arange(100)) < 0.4 * np.std(np.arange(100))


def test_coloured_noise_varies_the_spectrum_and_keeps_events_visible():
    """Noise windows become mostly noise of varied colour (the low/high band power ratio spreads over
    orders of magnitude); event windows keep peak/background >= min_event_snr (their label stays
    true); the same generator seed gives the same batch; labels are untouched."""
    rng = np.random.default_rng(1)
    b, n = 256, 3000
    x = rng.standard_normal((b, 3, n)).astype(np.float32)
    ev = np.arange(b) % 2 == 0
    x[ev, :, 1500:1600] += 40.0 * np.sin(np.arange(100) / 3.0).astype(np.float32)  # a strong burst: SNR ~ 25
    p = np.where(ev[:, None], 1500, -1) * np.ones((b, 2), int)
    cn = ColouredNoise(p_noise=1.0, p_event=1.0)
    out = cn({"x": x, "p": p, "event": ev}, np.random.default_rng(5))
    again = cn({"x": x, "p": p, "event": ev}, np.random.default_rng(5))
    assert np.array_equal(out["x"], again["x"]) and out["p"] is p and np.isfinite(out["x"]).all()
    spec = np.abs(np.fft.rfft(out["x"][~ev].astype(np.float64), axis=-1)) ** 2
    f = np.fft.rfftfreq(n, 0.01)
    ratio = spec[..., (f > 1) & (f < 4)].mean(axis=(1, 2)) / spec[..., (f > 10) & (f < 20)].mean(axis=(1, 2))
    white = np.abs(np.fft.rfft(x[~ev].astype(np.float64), axis=-1)) ** 2
    white_ratio = white[..., (f > 1) & (f < 4)].mean(axis=(1, 2)) / white[..., (f > 10) & (f < 20)].mean(axis=(1, 2))
    assert np.ptp(np.log10(white_ratio)) < 0.3 and np.ptp(np.log10(ratio)) > 1.5
    assert np.median(out["x"][~ev].std(axis=(1, 2)) / x[~ev].std(axis=(1, 2))) > 1.5  # mostly the new noise
    rms1 = np.sqrt((out["x"][ev].reshape(-1, 3, 30, 100) ** 2).mean(axis=(1, 3)))
    snr = rms1.max(axis=1) / np.percentile(rms1, 20, axis=1)
    assert snr.min() >= 0.9 * cn.min_event_snr
    assert (out["x"][ev] != x[ev]).any(axis=(1, 2)).mean() > 0.5  # most event windows did get noise


def test_split_and_step_targets():
    a, b, c = split_indices(1000, 0)
    assert (len(a), len(b), len(c)) == (700, 200, 100) and not set(a) & set(b)
    cls, off, mask, w = step_targets(np.array([[525, -1]]), np.array([[1310, -1]]))
    assert cls[0, 10] == 1 and cls[0, 26] == 2 and cls.sum() == 3
    assert off[0, 10, 0] == pytest.approx(25 / STEP_N) and off[0, 11, 0] == pytest.approx(-25 / STEP_N)
    assert mask[0, :, 0].sum() == 3 and (w == 1).all()
    # an unlabelled arrival at sample 2000 (step 40): the loss ignores the steps within 1.5 s of it,
    # a labelled step inside that span still counts
    cls, _, _, w = step_targets(np.array([[1950, -1]]), np.array([[-1, -1]]), ignore=(np.array([[2000, -1]]),))
    assert cls[0, 39] == 1 and w[0, 39] == 1
    zero = set(np.flatnonzero(w[0] == 0))
    assert zero == set(range(37, 43)) - {39}, zero


def test_tiny_training_run(sample_set, tmp_path):
    """One epoch each, fine-tuned from the shipped weights (what ``quakescale train`` does): the
    update reaches the saved weights and the held-out split of the tests' world is still detected
    and picked on time (a broken update -- wrong targets, wrong sign, a scrambled save -- is not)."""
    start = load_model("builtin:default", device="cpu")
    before = {k: v.clone() for k, v in start.picker.state_dict().items()}
    train(
        [sample_set],
        tmp_path / "w",
        epochs_detector=1,
        epochs_picker=1,
        batch_size=64,
        seed=0,
        device="cpu",
        version="0.0.1",
        model=start,
        log=lambda *a: None,
    )
    mt = pd.read_csv(tmp_path / "w" / "metrics.csv")
    assert list(mt.model) == ["detector", "picker"] and list(mt.epoch) == [1, 1]
    assert {"train_acc", "val_acc", "val_p_err_std_s", "val_s_err_std_s"} <= set(mt.columns)
    test = json.loads((tmp_path / "w" / "test_metrics.json").read_text())
    assert test["test_detector_acc"] >= 0.95, test  # event vs noise windows of the held-out split
    assert test["test_p_recall"] >= 0.9 and test["test_s_recall"] >= 0.9, test
    assert test["test_p_err_med_abs_s"] < 0.1 and test["test_s_err_med_abs_s"] < 0.1, test
    m2 = load_model(tmp_path / "w", device="cpu")
    assert any(not torch.equal(before[k], v) for k, v in m2.picker.state_dict().items())  # trained, not copied
    assert (
        m2.card["version"] == "0.0.1"
        and m2.card["recipe"]["batch_size"] == 64
        and m2.card["recipe"]["split"] == "7:2:1"
    )
    assert m2.card["metrics"] == pytest.approx(test)
    assert (tmp_path / "w" / "checkpoints" / "picker_last.pt").exists()
