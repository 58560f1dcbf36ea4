"""Cross-correlation differential times: the numpy core, a synthetic station with known
differential times, and FDTCC's reference dt.cc on real Ridgecrest waveforms."""

import numpy as np
import pandas as pd
import pytest

from quakescale.relocate.xcorr import XCorrParams, correlate_windows, event_pairs, station_dtcc
from shared_data import RIDGECREST as FDTCC


def _shifted(x, shift):
    """x delayed by ``shift`` samples (band-limited, FFT phase shift)."""
    n = x.shape[-1]
    f = np.fft.rfftfreq(n)
    return np.fft.irfft(np.fft.rfft(x) * np.exp(-2j * np.pi * f * shift), n)


def _wavelet(n, rng):
    from scipy import signal

    x = rng.normal(size=n)
    sos = signal.butter(4, [0.04, 0.25], btype="band", output="sos")
    x = signal.sosfiltfilt(sos, x)
    x[: n // 4] *= 0.05
    return x


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_core_recovers_fractional_shifts(backend):
    rng = np.random.default_rng(0)
    n, L = 64, 400
    base = np.stack([_wavelet(L, rng) for _ in range(n)])
    true = rng.uniform(-20, 20, n)
    a = np.stack([_shifted(base[i], true[i]) for i in range(n)])  # a = b delayed by true
    lag, cc = correlate_windows(a, base, max_lag=30, backend=backend)
    assert np.max(np.abs(lag - true)) < 0.1
    # the shift is circular: energy wrapped out of the overlap lowers cc for large shifts
    assert cc.min() > 0.7 and np.median(cc) > 0.99
    # integer lags without interpolation, sign convention: a later -> positive lag
    lag0, _ = correlate_windows(a, base, max_lag=30, interp="none", backend=backend)
    assert np.max(np.abs(lag0 - true)) <= 1.0 and np.all(lag0 == np.round(lag0))
    # polarity flip: positive peak is low, |cc| finds it
    _, ccn = correlate_windows(-a, base, max_lag=30, backend=backend)
    _, cca = correlate_windows(-a, base, max_lag=30, absolute=True, backend=backend)
    assert ccn.max() < 0.7 and cca.min() > 0.7 and np.median(cca) > 0.99


def test_core_bank_indices_and_multicomponent():
    rng = np.random.default_rng(1)
    L = 300
    bank = np.stack([np.stack([_wavelet(L, rng), _wavelet(L, rng)]) for _ in range(5)])  # (5, 2, L)
    shifted = np.stack([np.stack([_shifted(c, 3.3) for c in w]) for w in bank])
    allw = np.concatenate([bank, shifted])  # event i+5 = event i delayed by 3.3 samples
    ia = np.array([5, 6, 7])
    ib = np.array([0, 1, 2])
    lag, cc = correlate_windows(allw, allw, max_lag=10, ia=ia, ib=ib)
    assert np.allclose(lag, 3.3, atol=0.1) and (cc > 0.95).all()
    lag, _ = correlate_windows(allw, allw, max_lag=10, ia=ib, ib=ia)
    assert np.allclose(lag, -3.3, atol=0.1)


def synthetic_station(rng, n_events=4, fs=100.0):
    """One station, continuous 3-c data with the same P and S wavelets for every event, picks
    with errors.  Returns stream, picks, events, true differential travel times."""
    import obspy

    t0 = obspy.UTCDateTime("2014-08-03T08:00:00")
    dur = 60.0 * (n_events + 1)
    n = int(dur * fs)
    data = {c: rng.normal(0, 0.02, n) for c in "ZNE"}
    wl = {c: _wavelet(int(3 * fs), rng) for c in "ZNE"}
    events, picks, tts = [], [], {}
    for k in range(n_events):
        ot = 20.0 + 60.0 * k + rng.uniform(0, 0.01)
        tp = 5.0 + rng.uniform(-0.2, 0.2)
        ts = tp * 1.73
        tts[k + 1] = (tp, ts)
        for comp, tt in (("Z", tp), ("N", ts), ("E", ts)):
            arr = (ot + tt) * fs
            i0 = int(np.floor(arr))
            seg = _shifted(np.r_[np.zeros(50), wl[comp], np.zeros(50)], arr - i0)
            data[comp][i0 - 50 - 75 : i0 - 50 - 75 + len(seg)] += seg  # wavelet energy starts ~0.75 s after its head
        events.append(
            dict(
                event_id=k + 1,
                time=pd.Timestamp((t0 + ot).datetime, tz="UTC"),
                latitude=27.1 + 0.001 * k,
                longitude=103.3,
                depth_km=9.0,
            )
        )
        for ph, tt, sig in (("P", tp, 0.03), ("S", ts, 0.05)):
            picks.append(
                dict(
                    event_id=k + 1,
                    station_id="XS.S01",
                    phase=ph,
                    time=pd.Timestamp((t0 + ot + tt + rng.normal(0, sig)).datetime, tz="UTC"),
                )
            )
    st = obspy.Stream(
        [
            obspy.Trace(
                data[c].astype(np.float32),
                header=dict(network="XS", station="S01", channel=f"HH{c}", sampling_rate=fs, starttime=t0),
            )
            for c in "ZNE"
        ]
    )
    return st, pd.DataFrame(picks), pd.DataFrame(events), tts


def test_station_dtcc_recovers_true_differential_times():
    rng = np.random.default_rng(3)
    st, picks, events, tts = synthetic_station(rng)
    prm = XCorrParams(min_cc=0.7)
    df = station_dtcc(st, picks, events, "XS.S01", station_latlon=(27.2, 103.4), params=prm)
    assert len(df) == 2 * 6  # 4 events -> 6 pairs, P and S
    assert list(df.columns[:6]) == ["event_id_1", "event_id_2", "station_id", "phase", "dt_s", "cc"]
    true = np.array(
        [
            tts[a][0 if ph == "P" else 1] - tts[b][0 if ph == "P" else 1]
            for a, b, ph in zip(df.event_id_1, df.event_id_2, df.phase)
        ]
    )
    err = np.abs(df.dt_s.to_numpy() - true)
    assert err.max() < 0.005, err  # picks had 30-50 ms errors
    pk = picks.set_index(["event_id", "phase"]).time
    ev = events.set_index("event_id").time
    pick_dt = np.array(
        [
            ((pk[(a, ph)] - ev[a]) - (pk[(b, ph)] - ev[b])).total_seconds()
            for a, b, ph in zip(df.event_id_1, df.event_id_2, df.phase)
        ]
    )
    assert np.median(np.abs(pick_dt - true)) > 5 * np.median(err)
    assert (df.cc > 0.9).all()
    from quakescale.schema import DTCC, conform

    tab = conform(df, DTCC)  # the Parquet schema of the pipeline
    assert tab.schema.names[:6] == DTCC.names and tab.num_rows == len(df)
    # a far station yields nothing; a high threshold rejects
    assert station_dtcc(st, picks, events, "XS.S01", station_latlon=(30.0, 103.3), params=prm).empty
    assert station_dtcc(st, picks, events, "XS.S01", params=XCorrParams(min_cc=0.999999)).empty


def test_event_pairs_within_distance():
    ev = pd.DataFrame(
        {"latitude": [27.0, 27.0, 27.05], "longitude": [103.0, 103.01, 103.0], "depth_km": [5.0, 5.0, 5.0]}
    )
    pr = event_pairs(ev, 4.0)
    assert pr.tolist() == [[0, 1]]


@pytest.mark.skipif(not FDTCC.exists(), reason=f"reference data {FDTCC} not present")
def test_fdtcc_reference_pair_1_7():
    """FDTCC's parameters (README.txt): -B2/8 -W0.2/1.0/0.3/0.5/1.5/0.5 -D0.01/0.7/1/2, |cc|."""
    import obspy

    from quakescale.formats import hypodd as H

    ev, ph = H.read_pha(FDTCC / "hypoDD.pha")
    picks = ph.merge(ev[["event_id", "time"]], on="event_id")
    picks["time"] = picks["time"] + pd.to_timedelta(picks["travel_time_s"], unit="s")
    prm = XCorrParams(
        p_window_s=(0.2, 1.0),
        s_window_s=(0.5, 1.5),
        p_max_lag_s=0.3,
        s_max_lag_s=0.5,
        freqmin_hz=2.0,
        freqmax_hz=8.0,
        min_cc=0.7,
        min_snr=1.0,
        max_dt_s=2.0,
        absolute=True,
    )
    pairs = pd.DataFrame({"event_id_1": [1], "event_id_2": [7]})
    got = []
    for sta in ("B917", "B918", "B921"):
        st = obspy.Stream()
        for e in (1, 7):
            st += obspy.read(str(FDTCC / "waveforms" / str(e) / f"PB.{sta}.EH?"))
        got.append(station_dtcc(st, picks[picks.station == sta], ev, f"PB.{sta}", params=prm, pairs=pairs))
    got = pd.concat(got, ignore_index=True)
    got["station"] = got.station_id.str.split(".").str[1]
    ref = H.read_dtcc(FDTCC / "dt.cc")
    m = ref.merge(got, on=["station", "phase"], how="outer", indicator=True)
    assert (m._merge == "both").all(), m  # the same 4 accepted, B918 P and B921 S rejected
    assert np.all(np.abs(m.dt_s_x - m.dt_s_y) <= 0.01 + 1e-9), m[["station", "phase", "dt_s_x", "dt_s_y"]]
    assert np.all(np.abs(m.cc_x - m.cc_y) <= 0.03), m[["station", "phase", "cc_x", "cc_y"]]
