"""Make a synthetic aftershock world: SDS archive + StationXML + truth + a run config.

``make_world(out, n_stations=12, days=1, n_events=150, seed=0)`` writes::

    out/sds/...                      Steim2 MiniSEED in counts (SDS layout)
    out/stations.xml                 StationXML with instrument responses
    out/velocity.txt                 the layered model used (layer table)
    out/truth/events.parquet         origin, location, magnitude, fault
    out/truth/picks.parquet          station, phase, arrival time, WA amplitude, SNR, recorded
    out/truth/stations.parquet
    out/world.json                   parameters, gaps, the corrupt file
    out/config.yaml                  a run config for this world (run dir: out/run)

Generation streams one station-day at a time (memory bounded by one day of 3-c data), so it
scales to months; ``hours_per_day`` < 24 records only the first hours of every day (small worlds
for tests).  Everything is seeded: the same seed gives byte-identical waveforms.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from obspy import UTCDateTime

from .. import __version__
from ..config import TEMPLATE
from ..formats.velmodels import write_layer_table
from ..geo import LocalProjection, azimuth_deg
from ..rundir import write_json, write_table, write_text
from ..schema import STATIONS, TRUTH_EVENTS, TRUTH_PICKS
from ..velocity import TravelTimeTable, default_model
from .network import CENTER_LAT, CENTER_LON, INSTRUMENTS, make_network
from .sequence import SequenceParams, make_sequence
from .waveforms import FS, day_noise_factor, make_noise, synth_arrival_pair
from .writers import make_inventory, response_function, sds_path, write_station_day


def _rng(*keys) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in keys])


def make_world(
    out,
    n_stations: int = 12,
    days: int = 1,
    n_events: int = 150,
    seed: int = 0,
    hours_per_day: float = 24.0,
    start: str = "2014-08-03",
    n_gaps: int = 3,
    corrupt: bool = True,
    sequence: SequenceParams = SequenceParams(),
    progress=None,
    model=None,
    noise_scale: float = 1.0,
    noise_fn=None,
) -> dict:
    """Write a world (see the module doc).  ``model``: the layered velocity model (default: the
    Ludian-like :func:`quakescale.velocity.default_model`); ``noise_scale`` multiplies every
    instrument's ambient-noise level; ``noise_fn(n, t0_s, band_rms_counts, rng) -> (3, n)``
    replaces the ambient-noise generator (other regions, e.g. with machinery hum)."""
    t_begin = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not (0 < hours_per_day <= 24):
        raise ValueError(f"hours_per_day must be in (0, 24], got {hours_per_day}")
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    rng = _rng(seed, 0)
    proj = LocalProjection(CENTER_LAT, CENTER_LON)
    stations = make_network(n_stations, rng)
    model = model if model is not None else default_model()
    noise_fn = noise_fn or make_noise
    max_epi = float(np.hypot(stations.x_km, stations.y_km).max()) + 30.0
    tt = TravelTimeTable(model, max_dist_km=max_epi, max_depth_km=20.0, min_depth_km=0.0)
    day0 = UTCDateTime(start)
    block_s = hours_per_day * 3600.0
    recorded_s = days * block_s
    n_ev = int(n_events)
    ev = make_sequence(n_ev, recorded_s, _rng(seed, 1), proj, sequence)
    # place recorded time on the calendar; keep every event's S + coda inside its block
    day_idx = np.minimum((ev.t_rec_s // block_s).astype(int), days - 1)
    off = ev.t_rec_s - day_idx * block_s
    off = np.clip(off, 30.0, block_s - 75.0)
    ev["day_idx"] = day_idx
    ev["t_day_s"] = off
    ev["time"] = [pd.Timestamp((day0 + int(d) * 86400 + float(o)).datetime, tz="UTC") for d, o in zip(day_idx, off)]
    ev = ev.sort_values("time", kind="stable").reset_index(drop=True)

    # --- arrivals of every event at every station
    sx, sy = stations.x_km.to_numpy(), stations.y_km.to_numpy()
    selev = stations.elevation_m.to_numpy() / 1000.0
    epi = np.hypot(ev.x_km.to_numpy()[:, None] - sx[None, :], ev.y_km.to_numpy()[:, None] - sy[None, :])
    dep = np.broadcast_to(ev.depth_km.to_numpy()[:, None], epi.shape)
    el = np.broadcast_to(selev[None, :], epi.shape)
    tp, pp, _ = tt.time("P", epi, dep, el)
    ts, _, _ = tt.time("S", epi, dep, el)
    tp = tp + stations.p_delay_s.to_numpy()[None, :]
    ts = ts + stations.s_delay_s.to_numpy()[None, :]
    hypo = np.sqrt(epi**2 + (dep + el) ** 2)
    baz = azimuth_deg(
        stations.latitude.to_numpy()[None, :],
        stations.longitude.to_numpy()[None, :],
        ev.latitude.to_numpy()[:, None],
        ev.longitude.to_numpy()[:, None],
    )
    v0 = model.vp_kms[0]
    inc = np.degrees(np.arcsin(np.clip(pp * v0, 0, 1)))

    # --- gaps and the corrupt file
    nsd = n_stations * days
    grng = _rng(seed, 2)
    gap_sd = grng.choice(nsd, size=min(n_gaps, nsd), replace=False) if n_gaps else []
    gaps = {}
    n_day = int(round(block_s * FS))
    for k in gap_sd:
        length = int(grng.uniform(180, 900) * FS)
        a = int(grng.uniform(0.1, 0.8) * n_day)
        gaps[(int(k) % n_stations, int(k) // n_stations)] = [(a, min(a + length, n_day))]
    corrupt_sd = None
    if corrupt and nsd > 1:
        cands = [k for k in range(nsd) if (k % n_stations, k // n_stations) not in gaps and k % n_stations != 0]
        k = int(grng.choice(cands))
        corrupt_sd = (k % n_stations, k // n_stations)

    fault_index = {f[0]: k for k, f in enumerate(sequence.faults)}
    # --- waveforms, one station-day at a time
    info_rows = []
    files = 0
    for d in range(days):
        day = day0 + d * 86400
        evd = np.flatnonzero(ev.day_idx.to_numpy() == d)
        for si, st in enumerate(stations.itertuples()):
            inst = INSTRUMENTS[st.kind]
            resp = response_function(inst)
            drng = _rng(seed, 3, d, si)
            noise_rms = inst.noise_rms_ms * inst.sensitivity * noise_scale
            data = np.asarray(noise_fn(n_day, 0.0, noise_rms, drng), dtype=np.float64)
            crng = _rng(seed, 6, si)
            coda_base = {ph: crng.standard_normal((3, 1 << 15)) for ph in ("P", "S")}
            for e in evd:
                row = ev.iloc[e]
                t_p = row.t_day_s + tp[e, si]
                t_s = row.t_day_s + ts[e, si]
                i0, w, info = synth_arrival_pair(
                    rng=_rng(seed, 4, int(row.event_id), si),
                    mag=float(row.magnitude),
                    t_p_s=t_p,
                    t_s_s=t_s,
                    tt_p_s=tp[e, si],
                    tt_s_s=ts[e, si],
                    r_hypo_km=float(hypo[e, si]),
                    baz_deg=float(baz[e, si]),
                    inc_p_deg=float(inc[e, si]),
                    resp=resp,
                    coda_base=coda_base,
                    sh_fraction=float(_rng(seed, 7, fault_index[row.fault], si).uniform(0.5, 1.0)),
                )
                a, b = max(i0, 0), min(i0 + w.shape[1], n_day)
                if b > a:
                    data[:, a:b] += w[:, a - i0 : b - i0]
                nf_p = noise_rms * float(day_noise_factor(np.array([t_p]))[0])
                nf_s = noise_rms * float(day_noise_factor(np.array([t_s]))[0])
                info_rows.append(
                    (
                        int(row.event_id),
                        si,
                        d,
                        t_p,
                        t_s,
                        info["amp_wa_mm"],
                        info["peak_p_counts"] / nf_p,
                        info["peak_s_counts"] / nf_s,
                    )
                )
            g = gaps.get((si, d), [])
            write_station_day(out / "sds", st.network, st.station, st.band, day, data, FS, gaps=g)
            files += 3
            if progress:
                progress(d * n_stations + si + 1, nsd)
    # corrupt one component file of one station-day: garbage where MiniSEED should be
    corrupt_file = None
    if corrupt_sd is not None:
        si, d = corrupt_sd
        st = stations.iloc[si]
        p = sds_path(out / "sds", st.network, st.station, "", f"{st.band}N", day0 + d * 86400)
        size = p.stat().st_size
        p.write_bytes(_rng(seed, 5).integers(0, 256, size=min(size, 65536), dtype=np.uint8).tobytes())
        corrupt_file = str(p.relative_to(out))

    # --- truth tables
    inf = pd.DataFrame(info_rows, columns=["event_id", "si", "d", "t_p", "t_s", "amp_wa_mm", "snr_p", "snr_s"])
    recs = []
    for r in inf.itertuples():
        st = stations.iloc[r.si]
        e = int(np.flatnonzero(ev.event_id.to_numpy() == r.event_id)[0])
        day = day0 + r.d * 86400
        for ph, t_arr, snr, amp, trav in (
            ("P", r.t_p, r.snr_p, np.nan, tp[e, r.si]),
            ("S", r.t_s, r.snr_s, r.amp_wa_mm, ts[e, r.si]),
        ):
            isamp = int(round(t_arr * FS))
            recorded = (
                not any(a <= isamp < b for a, b in gaps.get((r.si, r.d), []))
                and (r.si, r.d) != corrupt_sd
                and t_arr < block_s
            )
            recs.append(
                dict(
                    event_id=r.event_id,
                    station_id=st.station_id,
                    network=st.network,
                    station=st.station,
                    phase=ph,
                    time=pd.Timestamp((day + float(t_arr)).datetime, tz="UTC"),
                    travel_time_s=float(trav),
                    distance_km=float(hypo[e, r.si]),
                    epi_distance_km=float(epi[e, r.si]),
                    amp_wa_mm=float(amp),
                    snr=float(snr),
                    recorded=bool(recorded),
                )
            )
    truth_picks = pd.DataFrame(recs).sort_values(["time", "station_id"], kind="stable").reset_index(drop=True)
    (out / "truth").mkdir(exist_ok=True)
    truth_events = ev[["event_id", "time", "latitude", "longitude", "depth_km", "x_km", "y_km", "magnitude", "fault"]]
    write_table(truth_events, out / "truth" / "events.parquet", TRUTH_EVENTS)
    write_table(truth_picks, out / "truth" / "picks.parquet", TRUTH_PICKS)
    write_table(stations, out / "truth" / "stations.parquet", STATIONS)
    inv = make_inventory(stations, day0)
    inv.write(str(out / "stations.xml"), format="STATIONXML")
    write_layer_table(model, out / "velocity.txt")

    meta = dict(
        quakescale_version=__version__,
        seed=seed,
        n_stations=n_stations,
        days=days,
        n_events=len(ev),
        hours_per_day=hours_per_day,
        start=str(day0.date),
        center=[CENTER_LAT, CENTER_LON],
        velocity_model=model.to_dict(),
        sequence=asdict(sequence),
        noise_scale=noise_scale,
        noise_fn=getattr(noise_fn, "__qualname__", str(noise_fn)),
        gaps=[
            dict(station_id=stations.station_id[s], day=str((day0 + d * 86400).date), start_s=a / FS, end_s=b / FS)
            for (s, d), g in gaps.items()
            for a, b in g
        ],
        corrupt_file=corrupt_file,
        files=files,
        seconds=round(time.time() - t_begin, 2),
    )
    write_json(meta, out / "world.json")
    write_world_config(out, start=str(day0.date), end=str((day0 + (days - 1) * 86400).date), seed=seed)
    return meta


def write_world_config(world: Path, start: str, end: str, seed: int = 0, out_dir: str = "run") -> Path:
    cfg = yaml.safe_load(TEMPLATE)
    cfg["run"].update(name=f"synthetic-world-seed{seed}", out_dir=out_dir, seed=seed)
    cfg["archive"].update(sds_root="sds", inventory="stations.xml", start=start, end=end, truth="truth")
    cfg["velocity"]["model"] = "velocity.txt"
    # synthetic worlds are picked by the shipped CERP weights, trained on worlds like them
    cfg["detect"].update(method="cerp", model="builtin:default", seisbench_p_threshold=None, seisbench_s_threshold=None)
    text = "# QuakeScale run config for a synthetic world (written by `quakescale synth`).\n" + yaml.safe_dump(
        cfg, sort_keys=False
    )
    return write_text(text, Path(world) / "config.yaml")
