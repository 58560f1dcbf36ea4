"""The synthetic world read back with ObsPy: SDS archive, StationXML, truth alignment, plan."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from obspy import UTCDateTime, read_inventory
from obspy.clients.filesystem.sds import Client

from quakescale import ml
from quakescale.archive import ArchiveError, load_inventory, plan_station_days, read_station_day, stations_table


def test_world_layout_and_truth(small_world):
    meta = json.loads((small_world / "world.json").read_text())
    ev = pd.read_parquet(small_world / "truth" / "events.parquet")
    pk = pd.read_parquet(small_world / "truth" / "picks.parquet")
    st = pd.read_parquet(small_world / "truth" / "stations.parquet")
    assert len(ev) == 40 and meta["n_events"] == 40
    assert set(st.kind) == {"campaign", "permanent"} and (st.kind == "campaign").sum() == 4
    assert ev.depth_km.between(5, 15).all()
    assert set(ev.fault) == {"NW", "NE"}
    # every event recorded at every station, P before S
    assert len(pk) == 2 * 40 * 8
    w = pk.pivot_table(index=["event_id", "station_id"], columns="phase", values="time", aggfunc="first")
    assert (w["S"] > w["P"]).all()
    # near-field campaign stations within ~30 km of the sequence, permanent ones farther
    assert pk[pk.station_id.str.startswith("XL")].epi_distance_km.max() < 50
    assert pk[pk.station_id.str.startswith("YN")].epi_distance_km.min() > 20
    # Gutenberg-Richter: more small than large events
    assert (ev.magnitude < 2).sum() > (ev.magnitude >= 2).sum()


def test_sds_and_stationxml_read_back(small_world):
    inv = read_inventory(str(small_world / "stations.xml"))
    assert len(inv.get_contents()["channels"]) == 8 * 3
    resp = inv.get_response("XL.L01..EHZ", UTCDateTime("2014-08-03T01:00:00"))
    assert resp.instrument_sensitivity.value == pytest.approx(2.5e8, rel=1e-3)
    c = Client(str(small_world / "sds"))
    stream = c.get_waveforms(
        "XL", "L01", "", "EH?", UTCDateTime("2014-08-03T00:10:00"), UTCDateTime("2014-08-03T00:11:00")
    )
    assert len(stream) == 3 and stream[0].stats.sampling_rate == 100.0
    assert stream[0].stats.mseed.encoding == "STEIM2"


def _envelope_ratio(tr, t, pre=(1.0, 0.1), post=(0.0, 0.6)):
    a = tr.slice(t - pre[0], t - pre[1]).data.astype(float)
    b = tr.slice(t + post[0], t + post[1]).data.astype(float)
    return np.sqrt(np.mean(b**2)) / np.sqrt(np.mean(a**2))


def test_truth_picks_line_up_with_onsets(small_world):
    """High-SNR truth arrivals: energy jumps right after the truth time, not before it."""
    pk = pd.read_parquet(small_world / "truth" / "picks.parquet")
    good = pk[(pk.snr > 20) & pk.recorded].sort_values("snr", ascending=False).groupby("phase").head(12)
    assert len(good) >= 20
    ratios_at, ratios_early = [], []
    for r in good.itertuples():
        t = UTCDateTime(r.time.to_pydatetime())
        st = read_station_day(small_world / "sds", r.station_id, "2014-08-03")
        st = st.slice(t - 20, t + 20).split().detrend("demean").taper(0.05).filter("bandpass", freqmin=1, freqmax=20)
        tr = st.select(component="Z")[0] if r.phase == "P" else st.select(component="N")[0]
        ratios_at.append(_envelope_ratio(tr, t))
        ratios_early.append(_envelope_ratio(tr, t - 1.0))
    assert np.median(ratios_at) > 5, ratios_at
    assert np.median(ratios_early) < 2, ratios_early


def test_wood_anderson_amplitudes_match_truth(small_world):
    """Instrument-corrected, WA-simulated S amplitudes recover the truth amp_wa_mm (so the
    response in StationXML is the one in the data, and ML is consistent)."""
    inv = read_inventory(str(small_world / "stations.xml"))
    pk = pd.read_parquet(small_world / "truth" / "picks.parquet")
    s = pk[(pk.phase == "S") & pk.recorded & (pk.snr > 30)].sort_values("snr", ascending=False).head(10)
    p = pk[pk.phase == "P"].set_index(["event_id", "station_id"]).time
    ratios = []
    for r in s.itertuples():
        ts = UTCDateTime(r.time.to_pydatetime())
        tp = UTCDateTime(p.loc[(r.event_id, r.station_id)].to_pydatetime())
        st = read_station_day(small_world / "sds", r.station_id, "2014-08-03").slice(tp - 30, ts + 40).split()
        st.detrend("demean").taper(0.05)
        st.remove_response(inventory=inv, output="DISP", pre_filt=(0.2, 0.4, 35, 45))
        st.simulate(paz_simulate=ml.WA_PAZ)
        amp = max(np.abs(tr.slice(tp - 1, ts + 5).data).max() for tr in st if tr.stats.channel[-1] in "NE") * 1000.0
        ratios.append(amp / r.amp_wa_mm)
    ratios = np.array(ratios)
    assert np.median(np.abs(np.log10(ratios))) < 0.08, ratios  # within ~20 %


def test_plan_reports_gaps_and_corrupt_file(small_world):
    meta = json.loads((small_world / "world.json").read_text())
    inv = load_inventory(small_world / "stations.xml")
    ids = list(stations_table(inv).station_id)
    import datetime as dt

    plan = plan_station_days(small_world / "sds", ids, [dt.date(2014, 8, 3), dt.date(2014, 8, 4)], ["HH?", "EH?"])
    assert len(plan) == 16
    day1 = plan[plan.day == "2014-08-03"]
    assert (plan[plan.day == "2014-08-04"].state == "no_data").all()
    corrupt = day1[day1.state == "corrupt"]
    assert len(corrupt) == 1 and meta["corrupt_file"].split("/")[-1] in corrupt.reason.iloc[0]
    gappy = set(day1[day1.state == "gappy"].station_id)
    assert gappy == {g["station_id"] for g in meta["gaps"]}
    g = meta["gaps"][0]
    row = day1[day1.station_id == g["station_id"]].iloc[0]
    assert row.gap_s == pytest.approx(g["end_s"] - g["start_s"], abs=0.05)
    # reading: the corrupt day raises a clear error naming the file, gaps stay masked
    sid = corrupt.station_id.iloc[0]
    with pytest.raises(ArchiveError, match="unreadable MiniSEED file .*HHN"):
        read_station_day(small_world / "sds", sid, "2014-08-03")
    st = read_station_day(small_world / "sds", g["station_id"], "2014-08-03")
    assert np.ma.is_masked(st[0].data)


def test_same_seed_same_bytes(tmp_path):
    from quakescale.synth.world import make_world

    digests = []
    for k in range(2):
        out = tmp_path / f"w{k}"
        make_world(out, n_stations=4, days=1, n_events=5, seed=3, hours_per_day=0.25, n_gaps=1)
        h = hashlib.sha256()
        for f in sorted((out / "sds").rglob("*.D.*")):
            h.update(f.read_bytes())
        digests.append(h.hexdigest())
    assert digests[0] == digests[1]


def test_sensitivity_only_inventory_keeps_amplitudes(small_world):
    """The same world with its StationXML stripped to channel sensitivities (what FDSN serves at
    channel level): WA amplitudes from the sensitivity match the full-response ones for the
    broadband (flat) sensors within 5 %, are flagged ``sensitivity``, and a channel without any
    response gives NaN with its reason -- never an exception."""
    import copy

    from quakescale.detect.amplitude import WAMeter

    inv = read_inventory(str(small_world / "stations.xml"))
    bare = copy.deepcopy(inv)
    for net in bare:
        for sta in net:
            for cha in sta:
                cha.response.response_stages = []
    pk = pd.read_parquet(small_world / "truth" / "picks.parquet")
    s = pk[(pk.phase == "S") & pk.recorded & (pk.snr > 10) & pk.station_id.str.startswith("YN.")].head(8)
    p = pk[pk.phase == "P"].set_index(["event_id", "station_id"]).time
    assert len(s) >= 4
    for r in s.itertuples():
        st = read_station_day(small_world / "sds", r.station_id, "2014-08-03")
        ts, tp = UTCDateTime(r.time.to_pydatetime()), UTCDateTime(p.loc[(r.event_id, r.station_id)].to_pydatetime())
        full, sens = WAMeter(st, inv).measure(tp - 1, ts + 5), WAMeter(st, bare).measure(tp - 1, ts + 5)
        assert (full.source, sens.source) == ("response", "sensitivity")
        assert abs(sens.amp_mm / full.amp_mm - 1) < 0.05, (full, sens)
        none = WAMeter(st, bare.select(station="NOPE")).measure(tp - 1, ts + 5)
        assert np.isnan(none.amp_mm) and none.source == "none" and "no response" in none.note


def test_read_ahead_reads_the_next_station_day_on_one_thread(small_world, monkeypatch):
    """ReadAhead gives each station-day's stream as read_station_day does (or its ArchiveError,
    at that station-day), reads the next one on its thread while one is processed, keeps no
    skipped ones, and serves a station-day outside its order."""
    import threading
    from pathlib import Path

    from quakescale import archive
    from quakescale.config import load_config

    cfg = load_config(small_world / "config.yaml")
    world = json.loads((small_world / "world.json").read_text())
    bad = ".".join(Path(world["corrupt_file"]).name.split(".")[:2])
    day, root, ch = cfg.archive.start, cfg.archive.sds_root, list(cfg.archive.channels)
    order = [("XL.L01", day), (bad, day), ("XL.L02", day), ("YN.Y01", day), ("YN.Y02", day)]
    threads, real = [], archive.read_station_day

    def spy(*a, **k):
        threads.append(threading.current_thread().name)
        return real(*a, **k)

    monkeypatch.setattr(archive, "read_station_day", spy)
    with archive.ReadAhead(root, order, ch, pad_s=30.0, ahead=1) as ra:
        st = ra.get("XL.L01", day)
        assert list(ra._futures) == [1]  # the next one is being read
        ref = real(root, "XL.L01", day, channels=ch, pad_s=30.0)
        assert [tr.id for tr in st] == [tr.id for tr in ref]
        assert all(np.array_equal(a.data, b.data) and a.stats.starttime == b.stats.starttime for a, b in zip(st, ref))
        with pytest.raises(ArchiveError, match=bad):
            ra.get(bad, day)
        assert len(ra.get("YN.Y01", day)) == 3  # XL.L02 skipped: not kept
        assert list(ra._futures) == [4]
        assert len(ra.get("XL.L03", day)) == 3  # outside the order: read there and then
    n = len(threads)
    order = [("XL.L01", day), ("XL.L02", day), ("XL.L01", day), ("YN.Y01", day)]
    with archive.ReadAhead(root, order, ch, pad_s=30.0, ahead=1) as ra:  # a station-day twice
        for i, (sid, d) in enumerate(order):
            assert len(ra.get(sid, d)) == 3
            assert list(ra._futures) == ([i + 1] if i + 1 < len(order) else [])
    assert len(threads) - n == len(order)  # each read once, all ahead of their turn but the first
    assert len(threads) >= 5 and all(t.startswith("quakescale-read") for t in threads), threads
    from quakescale.hpc.stages import read_ahead

    cfg.detect.device = "cpu"
    assert cfg.detect.read_ahead is None and read_ahead(cfg) == 0  # default: only with the networks on a GPU
    cfg.detect.read_ahead = 2
    assert read_ahead(cfg) == 2
