"""Benchmark: CERP detect + pick per station-day against the I/O floor, step by step.

    python benchmarks/bench_detect.py [--quick] [--threads 2] [--repeats 5] [--device cpu|cuda|auto]
                                      [--days 200] [--world DIR] [--no-seisbench] [--out bench-out/detect.json]

The floor is what ANY picker must pay: ``read_station_day`` (Steim decode by ``steim.read_steim`` or
ObsPy, + merge) + split + demean + 1-20 Hz band-pass (ObsPy), exactly as ``bench_io.py`` times it.  Three 24 h, 100 Hz,
3-component station-days (``benchmarks/_days.py``):

- synthetic, gap-free (the project's benchmark world: cheap to read, 150 events);
- real aftershocks, gap-free (the first two real hours of the 2019 Mw 6.0 Mesetas sequence at one
  station, laid end to end: the honest read cost, 512-byte Steim2 records; 65 % of its 30 s
  windows hold a PhaseNet pick, so the picker runs on nearly every window: the costliest kind of
  day, not a typical one);
- real aftershocks, gapped (the same with a 1 h gap and 20 short ones).

For each day, warm, in one process: ``--repeats`` alternated rounds of floor then full
``run_station_day`` (read + preprocess + detector + picker + refinement + SNR/amplitudes) + the
Parquet write; median and spread (min-max); the full run split into its steps (without a reader
each component is band-passed while the next one is read, and the second component's file is
decoded on the CPU pool while the first is decoded on the main thread: ``preprocess`` is what is
left after the read); the floor as the issue defines it reads the files one after the other, so
each round also times the floor read as the run reads (two files decoded at once) and prints the
run against both; the CPU seconds of both (all threads: what a station-day costs a cluster's cores), and
the networks' arithmetic (GFLOP of the detector on every window and the picker on the detected
ones) against this host's float32 matrix-product rate measured in the same run (numpy's BLAS on
``--threads`` threads): how long the networks alone would take at that rate.  SeisBench's
PhaseNet ``annotate`` (random weights: the same arithmetic as trained ones) runs on every day, and
EQTransformer's on the real gap-free day, in the same process when seisbench is installed.  Then the
peak RSS of a fresh one-station-day worker process (and its private part: what each further
worker on a node adds); 8 consecutive station-days as a detect task runs them, with and without
reading the next one ahead on a thread (``detect.read_ahead``: the read overlaps the networks),
alternated, and 6 consecutive aftershock days the same way (what a dense station-day costs in a
detect task); and ``--days`` consecutive station-days in one process (RSS must stay flat).
``--device cuda`` runs the networks on the GPU (batches of >= 4096 windows, pinned station-day
copy, one transfer of detector output).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _days import real_noise_day, synthetic_world  # noqa: E402

STEPS = ("t_read_s", "t_preprocess_s", "t_detector_s", "t_picker_s", "t_refine_s", "t_table_s", "t_write_s")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def floor_once(sds, sid, day, channels, decode_on=None) -> float:
    """read + split + demean + 1-20 Hz band-pass, as bench_io.py (``decode_on``: the second
    component's file decoded there, as ``run_station_day`` reads with a CPU pool)."""
    from quakescale.archive import read_station_day

    t = time.perf_counter()
    st = read_station_day(sds, sid, day, channels=channels, decode_on=decode_on)
    st.split().detrend("demean").filter("bandpass", freqmin=1.0, freqmax=20.0, corners=4, zerophase=False)
    return time.perf_counter() - t


def spread(xs) -> dict:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def worker_peak_rss_mb(world: Path, sid: str, device: str, sds_root=None) -> dict:
    """Peak memory of a fresh process that imports QuakeScale and runs one station-day (of the
    world, or under ``sds_root``): ``rss`` the child's own VmHWM (ru_maxrss of a child would also
    count the parent's pages it was forked from); ``anon`` the largest private (anonymous) RSS,
    sampled every 5 ms: what each further worker on a node adds, since the file-backed rest
    (``file``, at that moment: the shared libraries' pages) is shared between them.  MB."""
    code = (
        "import sys, threading, time, torch; torch.set_num_threads(2)\n"
        "def rss():\n"
        "    d = dict(l.split(':') for l in open('/proc/self/status') if l.startswith(('RssAnon', 'RssFile')))\n"
        "    return int(d['RssAnon'].split()[0]), int(d['RssFile'].split()[0])\n"
        "top = [(0, 0)]\n"
        "def sample():\n"
        "    while True:\n"
        "        top[0] = max(top[0], rss()); time.sleep(0.005)\n"
        "threading.Thread(target=sample, daemon=True).start()\n"
        "from quakescale.config import load_config\n"
        "from quakescale.detect.runner import run_station_day\n"
        f"cfg = load_config({str(world / 'config.yaml')!r}); cfg.detect.device = {device!r}\n"
        + (f"cfg.archive.sds_root = {str(sds_root)!r}\n" if sds_root else "")
        + f"run_station_day(cfg, {sid!r}, cfg.archive.start)\n"
        "top[0] = max(top[0], rss())\n"
        "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print(hwm, *top[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    hwm, anon, file = (int(v) / 1024 for v in out.strip().splitlines()[-1].split())
    return {"rss": hwm, "anon": anon, "file": file}


def network_gflop(model, n_windows: int, n_detected: int) -> dict:
    """The networks' arithmetic for one station-day (multiply-adds x 2, as a torch forward pass does
    it): the detector on every window, the picker on the detected ones.  The CPU picker's shared
    first frame layer does about a fifth less; the element-wise work (ReLU, pooling, the GRU's
    gates) is not counted."""
    from torch import nn

    det, pk = model.detector, model.picker
    n = det.config["n_in"]
    f_det = 0
    for conv in det.features:
        if isinstance(conv, nn.Conv1d):
            f_det += 2 * (n // 2) * conv.in_channels * conv.out_channels * conv.kernel_size[0] * 2
            n //= 2
    f_det += sum(2 * m.in_features * m.out_features for m in det.head if isinstance(m, nn.Linear))
    steps = pk.config["n_in"] // pk.config["step_n"]
    f_pk = sum(2 * m.in_features * m.out_features for m in pk.frame if isinstance(m, nn.Linear)) * steps
    if isinstance(pk.front, nn.Sequential):
        f_pk += sum(
            2 * pk.config["n_in"] * m.in_channels * m.out_channels * m.kernel_size[0]
            for m in pk.front
            if isinstance(m, nn.Conv1d)
        )
    g, dirs = pk.gru, 2 if pk.gru.bidirectional else 1
    for layer in range(g.num_layers):
        d_in = g.input_size if layer == 0 else dirs * g.hidden_size
        f_pk += dirs * steps * 2 * 3 * g.hidden_size * (d_in + g.hidden_size)
    f_pk += steps * 2 * (pk.cls.in_features * pk.cls.out_features + pk.off.in_features * pk.off.out_features)
    return {"detector": f_det * n_windows / 1e9, "picker": f_pk * n_detected / 1e9}


def sgemm_gflops(threads: int, n: int = 1024, repeats: int = 7) -> float:
    """This host's float32 matrix-product rate on ``threads`` threads (numpy's BLAS, n x n, best
    of ``repeats``): the most the networks' arithmetic could run at here."""
    import numpy as np

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the BLAS's own thread count
        import contextlib

        threadpool_limits = lambda limits: contextlib.nullcontext()  # noqa: E731
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    best = float("inf")
    with threadpool_limits(limits=threads):
        a @ a
        for _ in range(repeats):
            t = time.perf_counter()
            a @ a
            best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


_SB_MODELS: dict = {}


def seisbench_times(cfg, sid, repeats: int, device: str, names=("PhaseNet", "EQTransformer")) -> dict:
    try:
        import seisbench.models as sbm
    except ImportError:
        return {}
    import torch

    from quakescale.archive import read_station_day

    out = {}
    for name in names:
        if name not in _SB_MODELS:
            _SB_MODELS[name] = getattr(sbm, name)().eval()
        model = _SB_MODELS[name]
        if device != "cpu" and torch.cuda.is_available():
            model.cuda()
        ts = []
        for _ in range(repeats + 1):  # first call warms
            t = time.perf_counter()
            st = read_station_day(cfg.archive.sds_root, sid, cfg.archive.start, channels=list(cfg.archive.channels))
            model.annotate(st)
            ts.append(time.perf_counter() - t)
        out[name] = spread(ts[1:])
        print(
            f"  SeisBench {name} annotate (read + annotate): {out[name]['median']:.2f} s "
            f"[{out[name]['min']:.2f}-{out[name]['max']:.2f}]"
        )
    return out


def read_ahead_loop(cfg, sids, model, rounds: int, copies: int = 2, label: str = "") -> dict:
    """Seconds per station-day over a task's consecutive station-days (``sids``' day, ``copies``
    times), with and without reading the next one ahead (``detect.read_ahead``), alternated."""
    from quakescale.archive import ReadAhead
    from quakescale.detect.runner import PAD_DAY_S, run_station_day

    order = [(s, cfg.archive.start) for s in sids * copies]
    ts: dict = {0: [], 1: []}
    floors = []
    for _ in range(rounds):
        floors.append(floor_once(cfg.archive.sds_root, sids[0], cfg.archive.start, list(cfg.archive.channels)))
        for ahead in (0, 1):
            t = time.perf_counter()
            with ReadAhead(cfg.archive.sds_root, order, list(cfg.archive.channels), PAD_DAY_S, ahead) as r:
                for s, d in order:
                    run_station_day(cfg, s, d, model=model, reader=r)
            ts[ahead].append((time.perf_counter() - t) / len(order))
    out = {"off": spread(ts[0]), "on": spread(ts[1]), "floor_s": spread(floors)}  # the floor in the same rounds
    print(
        f"{len(order)} consecutive station-days{label}: {out['off']['median']:.2f} s each without reading ahead, "
        f"{out['on']['median']:.2f} s with (read_ahead 1)"
    )
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 repeats, 8 days of memory loop, SeisBench once")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=None, help="warm rounds per day (default 5; 3 with --quick)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    ap.add_argument(
        "--days",
        type=int,
        default=None,
        help="consecutive station-days for the memory check (default 200; 8 with --quick)",
    )
    ap.add_argument("--world", default="bench-out/world-bench")
    ap.add_argument("--no-seisbench", action="store_true", help="skip the SeisBench pickers")
    ap.add_argument("--out", default="bench-out/detect.json")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    from quakescale import schema as S
    from quakescale.archive import ReadAhead
    from quakescale.config import load_config
    from quakescale.detect.models import load_model
    from quakescale.detect.runner import PAD_DAY_S, run_station_day, tune_malloc
    from quakescale.detect.threads import submit
    from quakescale.hpc.stages import read_ahead
    from quakescale.rundir import write_table

    world = synthetic_world(Path(a.world))
    base = load_config(world / "config.yaml")
    base.detect.device = a.device
    tune_malloc()
    model = load_model(base.detect.model, device=a.device)
    sid = "XL.L01"
    days = [("synthetic gap-free", base)]
    for gapped in (False, True):
        sds = real_noise_day(world, Path(a.world).parent / "realday", gapped=gapped)
        if sds is not None:
            cfg = base.model_copy(deep=True)
            cfg.archive.sds_root = sds
            days.append((f"real aftershocks {'gapped' if gapped else 'gap-free'}", cfg))
    reps = a.repeats or (3 if a.quick else 5)
    channels = list(base.archive.channels)
    res = {"threads": a.threads, "device": str(model.device), "model": model.label, "repeats": reps, "days": {}}
    if a.device == "cpu":
        res["sgemm_gflops"] = sgemm_gflops(a.threads)
        print(f"this host's float32 matrix products: {res['sgemm_gflops']:.0f} GFLOP/s on {a.threads} threads")
    tmp = Path(tempfile.mkdtemp(prefix="bench-detect-"))
    print(
        f"{'day':<27} {'floor s':>8} {'full s':>8} {'ratio':>6}   "
        + " ".join(f"{s[2:-2]:>9}" for s in STEPS)
        + "   picks"
    )
    for name, cfg in days:
        run_station_day(cfg, sid, cfg.archive.start, model=model)  # warm (inventory cache, allocator)
        floors, fulls, steps, n_picks = [], [], {s: [] for s in STEPS}, []
        cpu_floor, cpu_full, floors2 = [], [], []
        for _ in range(reps):
            c = time.process_time()
            floors.append(floor_once(cfg.archive.sds_root, sid, cfg.archive.start, channels))
            cpu_floor.append(time.process_time() - c)
            floors2.append(floor_once(cfg.archive.sds_root, sid, cfg.archive.start, channels, submit))
            info: dict = {}
            t, c = time.perf_counter(), time.process_time()
            df = run_station_day(cfg, sid, cfg.archive.start, model=model, info=info)
            tw = time.perf_counter()
            write_table(df, tmp / "picks.parquet", S.PICKS)
            info["t_write_s"] = time.perf_counter() - tw
            fulls.append(time.perf_counter() - t)
            cpu_full.append(time.process_time() - c)
            for s in STEPS:
                steps[s].append(info.get(s, 0.0))
            n_picks.append(len(df))
        fl, fu = statistics.median(floors), statistics.median(fulls)
        med = {s: statistics.median(v) for s, v in steps.items()}
        res["days"][name] = {
            "floor_s": spread(floors),
            "detect_pick_s": spread(fulls),
            "ratio_to_floor": fu / fl,
            # the floor read as the run reads (two component files decoded at once on the pool)
            "floor_two_decodes_s": spread(floors2),
            "ratio_to_floor_two_decodes": fu / statistics.median(floors2),
            "steps_s": med,
            "picks": statistics.median(n_picks),
            # CPU seconds (all threads): what a station-day costs a cluster's cores, whatever the wall
            "cpu_s": {"floor": statistics.median(cpu_floor), "detect_pick": statistics.median(cpu_full)},
            "networks_gflop": network_gflop(model, info.get("n_windows", 0), info.get("n_detected", 0)),
        }
        print(
            f"{name:<27} {fl:8.2f} {fu:8.2f} {fu / fl:6.2f}   "
            + " ".join(f"{med[s]:9.3f}" for s in STEPS)
            + f"   {statistics.median(n_picks):.0f}"
        )
        print(f"{'':<27} [{min(floors):.2f}-{max(floors):.2f}] [{min(fulls):.2f}-{max(fulls):.2f}]")
        print(
            f"{'':<27} floor with two component files decoded at once, as the run reads: "
            f"{statistics.median(floors2):.2f} s (the run {res['days'][name]['ratio_to_floor_two_decodes']:.2f}x it)"
        )
        d, gf = res["days"][name], res["days"][name]["networks_gflop"]
        line = (
            f"{'':<27} CPU s (all threads): floor {d['cpu_s']['floor']:.2f}, full {d['cpu_s']['detect_pick']:.2f}; "
            f"networks {gf['detector']:.1f} + {gf['picker']:.1f} GFLOP"
        )
        if "sgemm_gflops" in res:  # what the networks alone need at this host's matrix-product rate
            d["networks_at_sgemm_rate_s"] = (gf["detector"] + gf["picker"]) / res["sgemm_gflops"]
            line += f" = {d['networks_at_sgemm_rate_s']:.2f} s at the host's matrix-product rate"
        print(line)
    if not a.no_seisbench:  # PhaseNet on every day (the "same day" of the issue), EQTransformer on the real one
        res["seisbench"] = {}
        for i, (name, cfg) in enumerate(days):
            print(f"{name}:")
            names = ("PhaseNet", "EQTransformer") if i == 1 or len(days) == 1 else ("PhaseNet",)
            sb = seisbench_times(cfg, sid, 1 if a.quick else reps, a.device, names)
            if not sb:
                break
            cerp = res["days"][name]["detect_pick_s"]["median"]
            res["seisbench"][name] = {k: {**v, "cerp_speedup": v["median"] / cerp} for k, v in sb.items()}
            for k, v in res["seisbench"][name].items():
                print(f"  CERP is {v['cerp_speedup']:.1f}x faster than SeisBench {k} on this day")

    def worker_line(key: str, what: str, sds_root=None) -> None:
        m = worker_peak_rss_mb(world, sid, a.device, sds_root)
        res[key], res[key.replace("rss", "anon")] = m["rss"], m["anon"]
        print(
            f"fresh worker, {what}: peak RSS {m['rss']:.0f} MB, of which private {m['anon']:.0f} MB "
            f"(each further worker on a node; the {m['file']:.0f} MB of shared libraries are shared)"
        )

    worker_line("worker_peak_rss_mb", "one station-day (synthetic)")
    if len(days) > 1:  # the dense real day holds the most (7,700 picks, the picker on nearly every window)
        worker_line("worker_peak_rss_mb_aftershock_day", "aftershock day", days[1][1].archive.sds_root)
    n_days = a.days if a.days is not None else (8 if a.quick else 200)
    sids = ["XL.L01", "XL.L02", "YN.Y01", "YN.Y02"]
    res["read_ahead"] = read_ahead_loop(base, sids, model, 3 if a.quick else reps)
    if len(days) > 1:  # a task of dense days: what a station-day costs in a detect task there
        aft = days[1][1]
        res["read_ahead_aftershock_day"] = read_ahead_loop(aft, [sid], model, 3, copies=6, label=" (aftershock day)")
        fl = res["read_ahead_aftershock_day"]["floor_s"]["median"]  # measured in the same rounds
        for k in ("off", "on"):
            res["read_ahead_aftershock_day"][k]["ratio_to_floor"] = res["read_ahead_aftershock_day"][k]["median"] / fl
        print(
            "  = {:.2f}x / {:.2f}x that day's floor of {:.2f} s in the same rounds".format(
                *(res["read_ahead_aftershock_day"][k]["ratio_to_floor"] for k in ("off", "on")), fl
            )
        )
    rss = []
    t = time.perf_counter()
    order = [(sids[i % len(sids)], base.archive.start) for i in range(n_days)]
    with ReadAhead(base.archive.sds_root, order, channels, PAD_DAY_S, read_ahead(base)) as reader:
        for sid_i, day in order:  # as a detect task runs its station-days
            run_station_day(base, sid_i, day, model=model, reader=reader)
            rss.append(rss_mb())
    k = max(1, n_days // 10)
    res.update(
        memory_station_days=n_days,
        memory_loop_s=time.perf_counter() - t,
        rss_first_mb=statistics.mean(rss[:k]),
        rss_last_mb=statistics.mean(rss[-k:]),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    print(
        f"memory over {n_days} consecutive station-days: RSS {res['rss_first_mb']:.0f} MB (first) -> "
        f"{res['rss_last_mb']:.0f} MB (last); this process's peak {res['peak_rss_mb']:.0f} MB"
    )
    per_year = {f"CERP {k}": v["detect_pick_s"]["median"] * 365 / 3600 for k, v in res["days"].items()}
    per_year.update(
        {
            f"SeisBench {k} {day}": v["median"] * 365 / 3600
            for day, sb in res.get("seisbench", {}).items()
            for k, v in sb.items()
        }
    )
    res["cpu_hours_per_station_year"] = per_year  # wall hours of one process with --threads threads
    for k, v in per_year.items():
        print(f"  {k}: {v:.2f} h per station-year ({a.threads} threads)")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")
    return res


if __name__ == "__main__":
    main()
