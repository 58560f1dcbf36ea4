"""GPU check (< 5 minutes): station-days per hour for each picker on one GPU.

    python benchmarks/gpu_throughput.py [--device cuda] [--repeats 3] [--out bench-out/gpu_throughput.json]

One 24 h, 100 Hz, 3-component day of real noise and real earthquakes (two hours of CM.URMC from
``shared/data/mesetas2019_dev`` laid end to end, Steim2 in 512-byte records; ``_days.py``) is
picked ``--repeats`` times per picker after one warm-up, each time from the archive (read +
preprocess + networks + refinement + amplitudes), and the seconds per station-day are turned into
station-days per hour for one worker process on one GPU.  Pickers: CERP (shipped weights) and, when
seisbench is importable, PhaseNet, EQTransformer and GPD through ``detect.method: seisbench``
(converted published weights if ``quakescale models install`` ran; otherwise SeisBench's
untrained networks of the same size, labelled ``random weights``: same arithmetic, same speed).

On a lent GPU machine the packages it lacks (obspy, pydantic, seisbench, ...) travel as wheels
(see the device notes); then ``python3 benchmarks/gpu_throughput.py``.  It prints one line per
picker and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _days import real_noise_day  # noqa: E402

DAY = "2019-12-25"


def time_picker(label, run_once, repeats) -> dict:
    run_once()  # warm-up: model load, CUDA context, cuDNN autotune
    ts, n = [], 0
    for _ in range(repeats):
        t = time.perf_counter()
        n = run_once()
        ts.append(time.perf_counter() - t)
    med = statistics.median(ts)
    res = {"s_per_station_day": med, "min": min(ts), "max": max(ts), "station_days_per_hour": 3600.0 / med, "picks": n}
    print(
        f"{label:<34} {med:7.2f} s per station-day [{min(ts):.2f}-{max(ts):.2f}]  {3600 / med:8.0f} "
        f"station-days/hour  {n} picks"
    )
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu", "auto"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=4, help="torch CPU threads (preprocessing, host side)")
    ap.add_argument("--pickers", default="cerp,PhaseNet,EQTransformer,GPD", help="comma-separated subset")
    ap.add_argument("--work", default="bench-out/realday")
    ap.add_argument("--out", default="bench-out/gpu_throughput.json")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    from quakescale.archive import load_inventory, read_station_day
    from quakescale.config import DetectSection
    from quakescale.detect.runner import get_model, pick_stream
    from shared_data import DATA

    sds = real_noise_day(None, Path(a.work), day=DAY)
    if sds is None:
        sys.exit("shared/data/mesetas2019_dev is absent: nothing to pick")
    inv = load_inventory(DATA / "mesetas2019_dev" / "stations.xml")
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    name = torch.cuda.get_device_name(0) if dev == "cuda" else "cpu"
    print(f"device {dev} ({name}), torch {torch.__version__}, {a.threads} host threads")
    res = {"device": dev, "device_name": name, "torch": torch.__version__, "pickers": {}}

    def station_day(params, model=None):
        st = read_station_day(sds, "CM.URMC", DAY, channels=["HH?"], pad_s=0)
        return len(pick_stream(st, inv, params, model))

    wanted = set(a.pickers.split(","))
    cerp = DetectSection(device=dev)
    model = get_model(cerp.model, dev)
    if "cerp" in wanted:
        res["pickers"]["cerp"] = time_picker(f"CERP {model.label}", lambda: station_day(cerp, model), a.repeats)
    try:
        import seisbench.models as sbm
    except ImportError:
        sbm = None
        print("seisbench not importable: SeisBench pickers skipped")
    if sbm is not None:
        from quakescale.detect.seisbench_picker import SeisBenchError

        for net in [n for n in ("PhaseNet", "EQTransformer", "GPD") if n in wanted]:
            params = DetectSection(method="seisbench", model=f"{net}:original", device=dev)
            try:
                station_day(params)
                label = f"SeisBench {net}:original"
                fn = lambda params=params: station_day(params)  # noqa: E731
            except SeisBenchError as exc:  # weights not installed here (not a CUDA error): same network, untrained
                print(f"{net}:original unavailable ({exc}); timing an untrained {net} (same arithmetic)")
                m = getattr(sbm, net)().eval().to(dev)
                label = f"SeisBench {net} (random weights)"

                def fn(m=m):
                    st = read_station_day(sds, "CM.URMC", DAY, channels=["HH?"], pad_s=0)
                    return len(m.classify(st).picks)

            res["pickers"][label] = time_picker(label, fn, a.repeats)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
