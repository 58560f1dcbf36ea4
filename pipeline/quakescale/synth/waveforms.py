"""Synthetic 3-component seismograms of one station-day, in counts.

Each event-station arrival pair is synthesised in a window in the frequency domain:
- a causal Brune (omega-squared) source pulse with a magnitude-dependent corner frequency
  (stress drop 3 MPa) for P and S;
- causal anelastic attenuation (t* = T/Q, Q_P 250, Q_S 150, plus kappa 0.02 s) and 1/R spreading
  through the magnitude calibration below;
- P polarised along the ray (mostly vertical), S on the horizontals (SH/SV split), random
  radiation factors, S/P displacement ratio ~ 0.6 (Vp/Vs)^3;
- coda: scattered waves with the direct wave's spectrum under an exponentially decaying envelope;
- amplitude calibrated so that the Wood-Anderson amplitude of the S wave on the horizontals obeys
  ML (Hutton & Boore 1987) at the hypocentral distance, with 0.1 magnitude units of station-event
  scatter: the truth magnitude is what a correct ML measurement should recover;
- the station's instrument response (the same one written to StationXML) converts ground
  velocity to counts.
Noise: band-limited ambient noise (1-20 Hz level per instrument class, stronger microseism
below 0.5 Hz, some high-frequency cultural noise) with a day/night level cycle (local time
UTC+8, up to 2.5x louder by day).
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from ..ml import amplitude_from_ml, wa_response_disp

FS = 100.0
RHO_VPVS = 1.73
Q_P, Q_S, KAPPA = 250.0, 150.0, 0.02
PRE_S = 0.5  # window starts this long before P
UTC_OFFSET_H = 8.0


def day_noise_factor(t_s: np.ndarray) -> np.ndarray:
    """Noise level multiplier vs seconds of the UTC day (local day = UTC+8)."""
    hour = (np.asarray(t_s) / 3600.0 + UTC_OFFSET_H) % 24.0
    return 1.0 + 1.5 * np.exp(-0.5 * ((hour - 13.5) / 3.5) ** 2)


_SOS_BAND = signal.butter(2, [1.0, 30.0], btype="bandpass", fs=FS, output="sos")
_SOS_MICRO = signal.butter(2, [0.1, 0.4], btype="bandpass", fs=2.0, output="sos")


def make_noise(n: int, t0_s: float, band_rms_counts: float, rng: np.random.Generator) -> np.ndarray:
    """(3, n) float32 noise in counts whose 1-20 Hz RMS is ~``band_rms_counts`` at night.

    Broadband 1-30 Hz ambient noise (day/night modulated) plus a stronger 0.1-0.4 Hz microseism
    synthesised at 2 Hz and interpolated (what the 1-20 Hz band-pass must remove)."""
    out = np.empty((3, n), np.float32)
    env = day_noise_factor(t0_s + np.arange(0, n, 100) / FS)
    env = np.repeat(env, 100)[:n]
    m = n // 50 + 2
    tm = np.arange(m) * 50.0
    for c in range(3):
        band = signal.sosfilt(_SOS_BAND, rng.standard_normal(n))
        band *= band_rms_counts / max(band[: min(n, 200000)].std(), 1e-30)
        micro = signal.sosfilt(_SOS_MICRO, rng.standard_normal(m))
        micro *= 8.0 * band_rms_counts / max(micro.std(), 1e-30)
        out[c] = band * env + np.interp(np.arange(n), tm, micro)
    return out


def _nfft(n: int) -> int:
    return int(2 ** np.ceil(np.log2(n)))


def brune_corner_hz(mag: float, beta_kms: float = 3.5, stress_drop_mpa: float = 3.0) -> float:
    m0 = 10 ** (1.5 * mag + 9.1)  # N m
    return 0.4906 * beta_kms * 1000.0 * (stress_drop_mpa * 1e6 / m0) ** (1 / 3)


def synth_arrival_pair(
    *,
    rng: np.random.Generator,
    mag: float,
    t_p_s: float,
    t_s_s: float,
    tt_p_s: float,
    tt_s_s: float,
    r_hypo_km: float,
    baz_deg: float,
    inc_p_deg: float,
    resp: callable,
    ml_scatter: float = 0.1,
    coda_base: dict | None = None,
    sh_fraction: float | None = None,
    coda_own: float = 0.35,
):
    """Synthesise P and S of one event at one station.

    ``t_p_s``/``t_s_s`` are arrival times in seconds since the day start; ``resp(freqs)`` returns
    the complex instrument response (counts per m/s).  ``coda_base`` ({"P"|"S": (3, N) white
    noise}) is the station's scattering signature: coda = sqrt(1 - a^2) * base + a * own noise
    (a = ``coda_own``), so neighbouring events share their coda as real ones do (what waveform
    cross-correlation exploits); ``sh_fraction`` fixes the S polarisation (a shared mechanism).
    Returns (i0, data (3, n) counts float64 ordered Z, N, E, info) where i0 is the day sample of
    data[:, 0] and info holds the WA amplitude (mm), and the 1-20 Hz peak amplitudes of P (Z) and S
    (horizontals) in counts.
    """
    sp = t_s_s - t_p_s
    tau_s = 1.0 + 0.35 * tt_s_s  # coda decay time
    n_need = int((PRE_S + sp + 6 * tau_s + 6.0) * FS)
    n = max(_nfft(n_need), 2048)
    i0 = int(np.floor((t_p_s - PRE_S) * FS))
    f = np.fft.rfftfreq(n, 1 / FS)
    s_ = 2j * np.pi * f
    t = np.arange(n) / FS

    comps = {}
    for ph, t_arr, tt, q, fc_mult in (("P", t_p_s, tt_p_s, Q_P, 1.5), ("S", t_s_s, tt_s_s, Q_S, 1.0)):
        delay = t_arr - i0 / FS
        fc = brune_corner_hz(mag) * fc_mult
        tstar = tt / q + KAPPA
        fa = 1.0 / (np.pi * tstar)
        disp = 1.0 / (1 + 1j * f / fc) ** 2 / (1 + 1j * f / fa) ** 2 * np.exp(-2j * np.pi * f * delay)
        vel_spec = s_ * disp
        direct = np.fft.irfft(vel_spec, n)
        direct /= np.abs(direct).max() + 1e-30
        # coda: scattered energy with the direct spectrum, decaying envelope, smooth rise
        tau = (1.0 + 0.35 * tt) * (1.0 if ph == "S" else 0.6)
        rel = t - delay
        env = np.where(rel > 0, (1 - np.exp(-rel / 0.4)) * np.exp(-rel / tau), 0.0)
        coda = np.zeros((3, n))
        amp_spec = np.abs(vel_spec)
        shift = int(round(delay * FS))
        for c in range(3):
            white = rng.standard_normal(n)
            if coda_base is not None:
                base = np.roll(coda_base[ph][c][:n], shift)
                white = np.sqrt(1 - coda_own**2) * base + coda_own * white
            w = np.fft.rfft(white)
            cn = np.fft.irfft(w * amp_spec, n)
            cn /= cn.std() + 1e-30
            coda[c] = cn * env
        coda_level = 0.22 if ph == "S" else 0.12
        baz = np.radians(baz_deg)
        if ph == "P":
            inc = np.radians(inc_p_deg)
            z, rr, tr = np.cos(inc), np.sin(inc), 0.0
            rad = rng.uniform(0.4, 1.0)
        else:
            sh = sh_fraction if sh_fraction is not None else rng.uniform(0.5, 1.0)
            z, rr, tr = 0.25 * rng.uniform(-1, 1), np.sqrt(max(1 - sh**2, 0.05)), sh
            rad = rng.uniform(0.4, 1.0) * 0.6 * RHO_VPVS**3
        # radial points away from the source: -baz direction; N,E of radial/transverse
        n_r, e_r = -np.cos(baz), -np.sin(baz)
        n_t, e_t = np.sin(baz), -np.cos(baz)
        pol = np.array([z, rr * n_r + tr * n_t, rr * e_r + tr * e_t])
        # scattered energy: P coda strongest on the vertical, S coda on the horizontals
        cw = np.array([1.0, 0.6, 0.6]) if ph == "P" else np.array([0.45, 1.0, 1.0])
        comps[ph] = rad * (pol[:, None] * direct[None, :] + coda_level * cw[:, None] * coda)

    # Wood-Anderson calibration on the S horizontals (velocity -> displacement -> WA mm)
    def wa_peak(x):
        spec = np.fft.rfft(x, axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(f > 0, spec / s_, 0)
        wa = np.fft.irfft(d * wa_response_disp(f), n, axis=-1) * 1000.0
        return np.abs(wa).max()

    total = comps["P"] + comps["S"]
    a_raw = wa_peak(total[1:3])
    ml_here = mag + rng.normal(0, ml_scatter)
    a_target = float(amplitude_from_ml(ml_here, r_hypo_km))
    k = a_target / (a_raw + 1e-300)
    total *= k

    # taper the window end, then the instrument: m/s -> counts
    taper = np.ones(n)
    nt = int(2 * FS)
    taper[-nt:] = 0.5 * (1 + np.cos(np.linspace(0, np.pi, nt)))
    total *= taper
    H = resp(f)
    spec = np.fft.rfft(total, axis=-1) * H[None, :]
    counts = np.fft.irfft(spec, n, axis=-1)

    band = (f >= 1.0) & (f <= 20.0)
    pz = np.fft.irfft(np.fft.rfft(comps["P"][0] * k * taper) * H * band, n)
    sh_ = np.fft.irfft(np.fft.rfft(comps["S"][1:3] * k * taper, axis=-1) * (H * band)[None, :], n, axis=-1)
    info = {
        "amp_wa_mm": a_target,
        "ml_station": ml_here,
        "peak_p_counts": float(np.abs(pz).max()),
        "peak_s_counts": float(np.abs(sh_).max()),
    }
    return i0, counts, info
