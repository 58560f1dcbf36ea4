"""Station-days for the detection benchmarks (shared by bench_detect.py and gpu_throughput.py).

- ``synthetic_world``: the project's own 24 h synthetic world (4 stations, 150 events, gap-free).
- ``real_noise_day``: a 24 h, 100 Hz, 3-component day of REAL data -- two real hours of station
  CM.URMC from ``shared/data/mesetas2019_dev`` (the M6.0 Mesetas sequence: mainshock, aftershocks,
  real noise) laid end to end twelve times, written as Steim2 MiniSEED in 512-byte records as data
  centres serve it, under the synthetic world's station XL.L01 so that its StationXML (a full
  response) serves the amplitudes. Real data compress worse than synthetic ones and come in
  small records, so this day is the honest read cost. ``gapped=True`` cuts one 1 h gap and
  twenty short ones (5-60 s) into it.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def synthetic_world(path: Path) -> Path:
    """The 24 h benchmark world (cached): 4 stations x 1 day, 150 events, no gaps."""
    if not (path / "config.yaml").exists():
        from quakescale.synth.world import make_world

        t = time.time()
        make_world(path, n_stations=4, days=1, n_events=150, seed=99, hours_per_day=24.0, n_gaps=0, corrupt=False)
        print(f"synthetic world generated in {time.time() - t:.1f} s -> {path}")
    return path


def real_noise_day(
    world: Path | None, out: Path, gapped: bool = False, seed: int = 5, day: str = "2019-12-25"
) -> Path | None:
    """An SDS root holding one real 24 h aftershock-sequence day: as XL.L01 (EH?) on the synthetic ``world``'s
    first day (its StationXML has full responses), or, with ``world=None``, as the real
    CM.URMC.00.HH? on ``day`` (use the Mesetas StationXML).  None when the shared Mesetas data
    are absent."""
    from shared_data import DATA

    src = DATA / "mesetas2019_dev" / "waveforms"
    files = sorted(src.glob("CM.URMC.00.HH?__*.mseed"))
    if len(files) != 3:
        return None
    sds = out / (("sds-gapped" if gapped else "sds") + ("" if world is not None else "-urmc"))
    done = sds / ".complete"
    if done.exists():
        return sds
    import yaml
    from obspy import Stream, Trace, UTCDateTime, read

    from quakescale.detect.runner import contiguous_runs

    if world is not None:
        day = str(yaml.safe_load((world / "config.yaml").read_text())["archive"]["start"])
    day0 = UTCDateTime(day)
    net, sta, loc, band = ("XL", "L01", "", "EH") if world is not None else ("CM", "URMC", "00", "HH")
    rng = np.random.default_rng(seed)
    gaps = [(int(36000 * 100), int(39600 * 100))]  # 10:00-11:00
    for _ in range(20):
        a = int(rng.uniform(0, 86000) * 100)
        gaps.append((a, a + int(rng.uniform(5, 60) * 100)))
    shutil.rmtree(sds, ignore_errors=True)
    for f in files:
        tr = read(str(f))[0]
        two_h = tr.data[:720000].astype(np.int32)
        x = np.tile(two_h, 12)
        comp = tr.stats.channel[-1]
        out_st = Stream()
        if gapped:
            mask = np.zeros(len(x), bool)
            for a, b in gaps:
                mask[a:b] = True
            runs = contiguous_runs(Trace(np.ma.masked_array(x, mask)))
        else:
            runs = [(0, len(x))]
        for a, b in runs:
            t = tr.copy()
            t.data = np.ascontiguousarray(x[a:b])
            t.stats.network, t.stats.station, t.stats.location, t.stats.channel = net, sta, loc, f"{band}{comp}"
            t.stats.starttime = day0 + a / 100.0
            out_st += t
        d = sds / str(day0.year) / net / sta / f"{band}{comp}.D"
        d.mkdir(parents=True, exist_ok=True)
        out_st.write(
            str(d / f"{net}.{sta}.{loc}.{band}{comp}.D.{day0.year}.{day0.julday:03d}"),
            format="MSEED",
            encoding="STEIM2",
            reclen=512,
        )
    done.touch()
    return sds
