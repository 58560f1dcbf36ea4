"""Writers of the synthetic world in the formats users have: SDS MiniSEED and StationXML."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from obspy import Stream, Trace, UTCDateTime
from obspy.core.inventory import Channel, Inventory, Network, Site, Station
from obspy.core.inventory.response import Response

from .network import INSTRUMENTS, Instrument


def sds_path(root, net: str, sta: str, loc: str, cha: str, day: UTCDateTime) -> Path:
    """SDS layout: ROOT/YEAR/NET/STA/CHA.D/NET.STA.LOC.CHA.D.YEAR.DOY"""
    return (
        Path(root) / f"{day.year}" / net / sta / f"{cha}.D" / f"{net}.{sta}.{loc}.{cha}.D.{day.year}.{day.julday:03d}"
    )


def instrument_response(inst: Instrument) -> Response:
    s = 2j * np.pi * inst.norm_freq_hz
    h = np.prod([s - z for z in inst.zeros]) / np.prod([s - p for p in inst.poles])
    a0 = float(1.0 / abs(h))
    return Response.from_paz(
        list(inst.zeros),
        list(inst.poles),
        inst.sensitivity,
        stage_gain_frequency=inst.norm_freq_hz,
        input_units="M/S",
        output_units="COUNTS",
        normalization_frequency=inst.norm_freq_hz,
        normalization_factor=a0,
    )


def response_function(inst: Instrument):
    """Complex response (counts per m/s) as a function of frequency, from the same PAZ."""
    resp = instrument_response(inst)

    def f(freqs):
        freqs = np.asarray(freqs, float)
        out = np.zeros(len(freqs), complex)
        nz = freqs > 0
        out[nz] = resp.get_evalresp_response_for_frequencies(freqs[nz], output="VEL")
        return out

    return f


def make_inventory(stations, start: UTCDateTime, sampling_rate: float = 100.0) -> Inventory:
    nets: dict[str, Network] = {}
    for row in stations.itertuples():
        inst = INSTRUMENTS[row.kind]
        net = nets.setdefault(
            row.network, Network(code=row.network, stations=[], description=f"QuakeScale synthetic {row.kind} network")
        )
        chans = []
        for comp, az, dip in (("Z", 0.0, -90.0), ("N", 0.0, 0.0), ("E", 90.0, 0.0)):
            chans.append(
                Channel(
                    code=f"{inst.band}{comp}",
                    location_code="",
                    latitude=row.latitude,
                    longitude=row.longitude,
                    elevation=row.elevation_m,
                    depth=0.0,
                    azimuth=az,
                    dip=dip,
                    sample_rate=sampling_rate,
                    start_date=start,
                    response=instrument_response(inst),
                    description=f"{inst.sensor}; {inst.datalogger}",
                )
            )
        net.stations.append(
            Station(
                code=row.station,
                latitude=row.latitude,
                longitude=row.longitude,
                elevation=row.elevation_m,
                channels=chans,
                site=Site(name=f"synthetic {row.kind} station {row.station}"),
                start_date=start,
            )
        )
    return Inventory(networks=list(nets.values()), source="QuakeScale synth")


def write_station_day(
    root, net: str, sta: str, band: str, day: UTCDateTime, data: np.ndarray, fs: float, gaps=(), loc: str = ""
) -> list[Path]:
    """Write (3, n) counts (Z, N, E) starting at ``day`` as Steim2 MiniSEED.

    ``gaps``: (start_sample, end_sample) ranges with no data (the traces are split there)."""
    paths = []
    ints = np.clip(np.round(data), -(2**31) + 1, 2**31 - 1).astype(np.int32)
    n = ints.shape[1]
    cuts = [0]
    keep = []
    pos = 0
    for a, b in sorted(gaps):
        if a > pos:
            keep.append((pos, a))
        pos = max(pos, b)
    if pos < n:
        keep.append((pos, n))
    del cuts
    for c, comp in enumerate("ZNE"):
        cha = f"{band}{comp}"
        st = Stream()
        for a, b in keep:
            tr = Trace(ints[c, a:b].copy())
            tr.stats.network, tr.stats.station, tr.stats.location, tr.stats.channel = net, sta, loc, cha
            tr.stats.sampling_rate = fs
            tr.stats.starttime = day + a / fs
            st.append(tr)
        p = sds_path(root, net, sta, loc, cha, day)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name("." + p.name + ".tmp")
        st.write(str(tmp), format="MSEED", encoding="STEIM2", reclen=4096)
        tmp.replace(p)
        paths.append(p)
    return paths
