"""Batch augmentations: small callables with their parameters in ``__init__`` (SeisBench style).

Each transform takes and returns a batch dict ``{"x": (B, 3, n) float32, "p": (B, K) int,
"s": (B, K) int, "event": (B,) bool}`` (label indices -1 = none; optional ``"p_ign"`` / ``"s_ign"``
(B, K): unlabelled arrivals, shifted like the labels) and uses the generator passed at
call time, so a pipeline ``[RandomCrop(), WhiteNoise()]`` is reproducible from one seed.
"""

from __future__ import annotations

import numpy as np


class RandomCrop:
    """Cut ``window_n`` samples; event samples start anywhere in ``[0, max_shift_n]`` (P, stored at
    1600, lands 1-16 s into the window: a random shift within 15 s around P), noise anywhere."""

    def __init__(self, window_n: int = 3000, max_shift_n: int = 1500):
        self.window_n = window_n
        self.max_shift_n = max_shift_n

    def __call__(self, batch: dict, rng: np.random.Generator) -> dict:
        x = batch["x"]
        b, c, n = x.shape
        hi = np.where(batch["event"], min(self.max_shift_n, n - self.window_n), n - self.window_n)
        a = (rng.random(b) * (hi + 1)).astype(np.int64)
        idx = a[:, None] + np.arange(self.window_n)[None, :]
        out = np.take_along_axis(x, idx[:, None, :].repeat(c, 1), axis=2)
        res = dict(batch, x=out)
        for k in ("p", "s", "p_ign", "s_ign"):
            if k not in batch:
                continue
            lab = batch[k] - a[:, None]
            lab[(batch[k] < 0) | (lab < 0) | (lab >= self.window_n)] = -1
            res[k] = lab
        return res


class WhiteNoise:
    """Add Gaussian white noise with a standard deviation of 0-``max_fraction`` (default 40 %)
    of each window's own standard deviation."""

    def __init__(self, max_fraction: float = 0.4):
        self.max_fraction = max_fraction

    def __call__(self, batch: dict, rng: np.random.Generator) -> dict:
        x = batch["x"]
        f = rng.random(x.shape[0]).astype(np.float32) * self.max_fraction
        sd = x.reshape(x.shape[0], -1).std(axis=1).astype(np.float32)
        noise = rng.standard_normal(x.shape, dtype=np.float32) * (f * sd)[:, None, None]
        return dict(batch, x=x + noise)


class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, batch: dict, rng: np.random.Generator) -> dict:
        for t in self.transforms:
            batch = t(batch, rng)
        return batch
