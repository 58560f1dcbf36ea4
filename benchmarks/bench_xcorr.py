"""Benchmark: waveform cross-correlation, pair-phase measurements per second.

    python benchmarks/bench_xcorr.py [--quick] [--out bench-out/xcorr.json]

Core: :func:`quakescale.relocate.xcorr.correlate_windows` on banks of band-limited windows
(P: 4 s at 100 Hz on Z, S: 4.8 s on N+E, lags +-0.5 s), each window transformed once and shared
by its pairs, as a station task does.  Baseline in the same run: the same correlations one pair at
a time in the time domain (``np.correlate`` over the lag range), on a subset; reported as a ratio.
Also: the torch backend (CPU here, GPU when present) and the end-to-end station function (cutting,
filtering, correlating) on a synthetic station.
Target (issue 6): >= 1e5 pair-phase measurements/s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from scipy import signal

from quakescale.relocate.xcorr import correlate_windows


def _bank(rng, n, comps, L):
    x = rng.normal(size=(n, comps, L)).astype(np.float32)
    sos = signal.butter(4, [0.04, 0.3], btype="band", output="sos")
    return signal.sosfiltfilt(sos, x, axis=-1).astype(np.float32)


def _baseline(a, b, ia, ib, max_lag):
    out = np.zeros(len(ia))
    for k, (i, j) in enumerate(zip(ia, ib)):
        acc = 0.0
        for c in range(a.shape[1]):
            x, y = a[i, c], b[j, c]
            full = np.correlate(np.pad(x, max_lag), y, mode="valid")  # lags -max_lag..max_lag
            acc = acc + full / np.sqrt((x * x).sum() * (y * y).sum())
        out[k] = np.argmax(acc / a.shape[1])
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="bench-out/xcorr.json")
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    fs = 100.0
    n_ev = 2000 if a.quick else 5000
    n_pairs = 40000 if a.quick else 200000
    max_lag = int(0.5 * fs)
    banks = {"P": _bank(rng, n_ev, 1, int(4.0 * fs) + 1), "S": _bank(rng, n_ev, 2, int(4.8 * fs) + 1)}
    ia = rng.integers(0, n_ev, n_pairs)
    ib = (ia + rng.integers(1, 50, n_pairs)) % n_ev
    res = {"n_pairs_per_phase": n_pairs, "n_events": n_ev, "cpu_count": os.cpu_count()}
    t = time.perf_counter()
    for bank in banks.values():
        correlate_windows(bank, bank, max_lag, ia=ia, ib=ib)
    dt = time.perf_counter() - t
    res["numpy_seconds"] = dt
    res["numpy_measurements_per_s"] = 2 * n_pairs / dt
    # torch backend
    try:
        import torch

        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
        correlate_windows(banks["P"][:10], banks["P"][:10], max_lag, backend="torch")  # warm-up
        t = time.perf_counter()
        for bank in banks.values():
            correlate_windows(bank, bank, max_lag, ia=ia, ib=ib, backend="torch")
        dt = time.perf_counter() - t
        res["torch_device"] = "cuda" if torch.cuda.is_available() else "cpu"
        res["torch_measurements_per_s"] = 2 * n_pairs / dt
    except ImportError:
        res["torch_device"] = None
    # baseline: time domain, one pair at a time
    nb = 300 if a.quick else 1000
    t = time.perf_counter()
    for bank in banks.values():
        _baseline(bank, bank, ia[:nb], ib[:nb], max_lag)
    dt = time.perf_counter() - t
    res["baseline_time_domain_measurements_per_s"] = 2 * nb / dt
    res["speedup_vs_baseline"] = res["numpy_measurements_per_s"] / res["baseline_time_domain_measurements_per_s"]
    # consistency of the integer peak with the baseline
    lag, _ = correlate_windows(banks["S"], banks["S"], max_lag, ia=ia[:nb], ib=ib[:nb], interp="none")
    res["baseline_agreement"] = float(
        np.mean(lag + max_lag == _baseline(banks["S"], banks["S"], ia[:nb], ib[:nb], max_lag))
    )
    # end to end: one synthetic station (cut + filter + correlate), events within 4 km
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from quakescale.relocate.xcorr import XCorrParams, station_dtcc
    from test_xcorr import synthetic_station  # noqa: E402

    st, picks, events, _ = synthetic_station(np.random.default_rng(1), n_events=60 if a.quick else 150)
    t = time.perf_counter()
    df = station_dtcc(st, picks, events, "XS.S01", params=XCorrParams(min_cc=0.0))
    dt = time.perf_counter() - t
    res["station_end_to_end_measurements"] = int(len(df))
    res["station_end_to_end_measurements_per_s"] = len(df) / dt
    res["target_measurements_per_s"] = 1e5
    res["meets_target"] = bool(res["numpy_measurements_per_s"] >= 1e5)
    for k, v in res.items():
        print(f"{k:42s} {v:.4g}" if isinstance(v, float) else f"{k:42s} {v}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
