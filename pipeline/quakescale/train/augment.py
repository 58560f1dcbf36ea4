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


class ColouredNoise:
    """Add noise of a random spectrum, level and time envelope to a share of the windows (real
    noise is neither white nor stationary: cultural hum, red microseism tails, bursts, glitches).

    A detector trained on one synthetic noise model learns that model's colour; on real data it
    then calls most noise windows events.  Per window (probability ``p_noise`` for noise windows,
    ``p_event`` for event windows): Gaussian noise with a power spectrum ``f**alpha`` (alpha
    uniform in ``alpha``) times 0-2 resonances (1-20 Hz, 0.2-3 Hz wide, up to 30x the power),
    shaped by the input band-pass's magnitude (4-pole Butterworth ``band``), independent on the
    three components with gains 0.5-1.5; with probability ``p_burst`` amplitude-modulated by 1-3
    bursts (0.3-5 s, up to 5x) and with probability ``p_glitch`` carrying 1-3 band-passed
    impulses (10-40x its RMS).  Noise windows get it at 0.5-``max_ratio_noise`` times their own
    standard deviation (the window becomes mostly coloured noise); event windows at up to
    ``max_ratio_event`` times their background level (20th percentile of 1 s RMS) while their
    peak-to-background ratio stays >= ``min_event_snr`` (the event stays visible, its label true).
    """

    def __init__(
        self,
        p_noise: float = 0.8,
        p_event: float = 0.6,
        alpha=(-3.0, 2.0),
        max_ratio_noise: float = 4.0,
        max_ratio_event: float = 3.0,
        min_event_snr: float = 4.0,
        p_burst: float = 0.4,
        p_glitch: float = 0.15,
        fs: float = 100.0,
        band=(1.0, 20.0),
    ):
        self.p_noise, self.p_event = p_noise, p_event
        self.alpha = alpha
        self.max_ratio_noise, self.max_ratio_event = max_ratio_noise, max_ratio_event
        self.min_event_snr = min_event_snr
        self.p_burst, self.p_glitch = p_burst, p_glitch
        self.fs, self.band = fs, band
        self._cache: dict = {}

    def _band(self, n: int):
        if n not in self._cache:
            from scipy import signal

            sos = signal.butter(4, list(self.band), btype="bandpass", fs=self.fs, output="sos")
            f = np.fft.rfftfreq(n, 1.0 / self.fs)
            _, h = signal.sosfreqz(sos, worN=f, fs=self.fs)
            imp = np.zeros(int(2 * self.fs))
            imp[0] = 1.0
            ir = signal.sosfilt(sos, imp)
            self._cache[n] = (f, np.abs(h), (ir / np.abs(ir).max()).astype(np.float32))
        return self._cache[n]

    def _noise(self, k: int, n: int, rng: np.random.Generator) -> np.ndarray:
        f, hmag, ir = self._band(n)
        fr = np.maximum(f, 0.5) / 5.0
        alpha = rng.uniform(*self.alpha, size=(k, 1))
        power = fr[None, :] ** alpha
        for _ in range(2):
            on = rng.random((k, 1)) < 0.5
            fc = rng.uniform(self.band[0], self.band[1], (k, 1))
            w = rng.uniform(0.2, 3.0, (k, 1))
            power = power * (1.0 + on * rng.uniform(1.0, 30.0, (k, 1)) * np.exp(-0.5 * ((f[None] - fc) / w) ** 2))
        amp = np.sqrt(power) * hmag[None, :]
        spec = (rng.standard_normal((k, 3, len(f))) + 1j * rng.standard_normal((k, 3, len(f)))) * amp[:, None, :]
        z = np.fft.irfft(spec, n, axis=-1).astype(np.float32)
        z *= rng.uniform(0.5, 1.5, (k, 3, 1)).astype(np.float32)
        t = np.arange(n, dtype=np.float32) / self.fs
        for i in np.flatnonzero(rng.random(k) < self.p_burst):
            env = np.ones(n, np.float32)
            for _ in range(rng.integers(1, 4)):
                t0, wd = rng.uniform(0, n / self.fs), rng.uniform(0.3, 5.0)
                env += rng.uniform(0.5, 5.0) * np.exp(-0.5 * ((t - t0) / wd) ** 2).astype(np.float32)
            z[i] *= env
        rms = np.sqrt((z.astype(np.float64) ** 2).mean(axis=(1, 2))).astype(np.float32)[:, None, None] + 1e-12
        z /= rms
        for i in np.flatnonzero(rng.random(k) < self.p_glitch):
            for _ in range(rng.integers(1, 4)):
                at = int(rng.integers(0, n))
                m = min(len(ir), n - at)
                z[i, rng.integers(0, 3), at : at + m] += rng.uniform(10.0, 40.0) * rng.choice([-1, 1]) * ir[:m]
        return z

    def __call__(self, batch: dict, rng: np.random.Generator) -> dict:
        x = batch["x"]
        b, _, n = x.shape
        ev = np.asarray(batch["event"], bool)
        on = rng.random(b) < np.where(ev, self.p_event, self.p_noise)
        idx = np.flatnonzero(on)
        if not len(idx):
            return batch
        z = self._noise(len(idx), n, rng)
        xs = x[idx].astype(np.float32)
        sd = xs.reshape(len(idx), -1).std(axis=1)
        seg = n // int(self.fs)
        rms1 = np.sqrt((xs[:, :, : seg * int(self.fs)].reshape(len(idx), 3, seg, -1) ** 2).mean(axis=(1, 3)))
        bg = np.percentile(rms1, 20, axis=1) + 1e-12
        snr = rms1.max(axis=1) / bg
        r_ev = np.minimum(self.max_ratio_event, np.sqrt(np.maximum((snr / self.min_event_snr) ** 2 - 1.0, 0.0)))
        scale = np.where(
            ev[idx],
            rng.uniform(0.0, 1.0, len(idx)) * r_ev * bg,
            rng.uniform(0.5, self.max_ratio_noise, len(idx)) * sd,
        ).astype(np.float32)
        out = x.astype(np.float32, copy=True)
        out[idx] = xs + z * scale[:, None, None]
        return dict(batch, x=out)
