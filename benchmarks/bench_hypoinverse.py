"""Benchmark: ``quakescale locate hypoinverse`` against hyp1.40 itself on the same project.

    python benchmarks/bench_hypoinverse.py --project DIR [--project DIR ...] [--quick] [--out FILE]
    python benchmarks/bench_hypoinverse.py --locflow LOC-FLOW-CHECKOUT [--out FILE]

Each project is a folder with a Hypoinverse command file (``hyp.command`` or ``*.hyp``) and its
inputs.  The project is copied twice into a scratch folder; ``hyp1.40`` (from PATH or
``containers/bin/``) runs on one copy, our builtin runner on the other, and our summary is scored
against hyp1.40's: epicentre, depth and origin-time differences (median / p90), events located by
one and not the other, and whether our ARC file has hyp1.40's line widths (summary 179 columns,
phase lines 120) so length-selecting converters read it.  Without hyp1.40 the script only runs ours
and reports the layouts.

``--locflow`` rebuilds LOC-FLOW's central Italy 2016 Hypoinverse examples (location/hypoinverse,
60 events, and location/hypoinverse_corr with station delays, 102 events) from a LOC-FLOW checkout:
the phase files are rebuilt from the readings in the committed ``prtOut.prt`` printouts, the CRH
models with LOC-FLOW's ``mk_velmodel.py`` recipe from ``REAL/tt_db/mymodel.nd``, and, for the
delay set, ``P.del``/``S.del`` from the delays printed in ``prtOut.prt`` (the VELEST model of that
run is not committed: the delay set uses the same CRH models).  Nothing of LOC-FLOW is copied
into this repository; the rebuilt projects live in the scratch folder only.

Targets (issue 15): epicentre median <= 0.10 km, depth median <= 0.20 km, origin time median
<= 0.02 s against hyp1.40's own summary, on both sets.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pipeline"))

from quakescale.formats import hypoinverse as hinv  # noqa: E402
from quakescale.geo import epicentral_km  # noqa: E402
from quakescale.locate.hypoinverse_backend import locate_hypoinverse_project  # noqa: E402

TARGETS = {"epi_median_km": 0.10, "depth_median_km": 0.20, "ot_median_s": 0.02}


def find_hyp() -> str | None:
    for cand in (shutil.which("hyp1.40"), ROOT / "containers" / "bin" / "hyp1.40"):
        if cand and Path(cand).exists():
            return str(cand)
    return None


def command_file(project: Path) -> Path:
    for name in ("hyp.command", "locate.hyp"):
        if (project / name).exists():
            return project / name
    hyps = sorted(project.glob("*.hyp"))
    if not hyps:
        raise SystemExit(f"{project}: no hyp.command or *.hyp command file")
    return hyps[0]


# ----------------------------------------------------------------------------- LOC-FLOW rebuild
_MON = {m: i for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), 1)}


def _git_show(repo: Path, path: str) -> str:
    if (repo / path).exists():
        return (repo / path).read_text()
    git_dir = repo if (repo / "HEAD").exists() else repo / ".git"
    return subprocess.run(
        ["git", "--git-dir", str(git_dir), "show", f"HEAD:{path}"], check=True, capture_output=True, text=True
    ).stdout


def parse_prt_readings(text: str):
    """Events of a hyp1.40 printout: (minute, external mag, mag type, readings) with readings
    (site, net, phase, weight code, sec, delay)."""
    events = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"\s+(\d+) (\w{3}) (\d{4}),\s+(\d+):(\d+)\s+SEQUENCE NO", lines[i])
        if not m:
            i += 1
            continue
        day, mon, year, hh, mm = int(m[1]), _MON[m[2]], int(m[3]), int(m[4]), int(m[5])
        ev = {
            "minute": pd.Timestamp(year=year, month=mon, day=day, hour=hh, minute=mm),
            "mag": None,
            "mag_type": "",
            "readings": [],
        }
        i += 1
        while i < len(lines) and not lines[i].startswith(" STA NET COM") and "SEQUENCE NO" not in lines[i]:
            fm = re.match(
                r" (\d{4})-(\d\d)-(\d\d)\s+(\d\d)(\d\d)\s+([\d.]+)\s+(\d+) ([\d.]+)\s+(\d+)(.)([\d.]+)\s+([-\d.]+)",
                lines[i],
            )
            if fm:  # the final hypocentre: written on the header (not used as the trial: H71 x 1 x)
                ev["hypo"] = (float(fm[6]), int(fm[7]), float(fm[8]), int(fm[9]), fm[10], float(fm[11]), float(fm[12]))
            mm_ = re.search(r"EXTERNAL MAG=\s*([-\d.]+).*TYPE=(\w?)", lines[i])
            if mm_:
                ev["mag"], ev["mag_type"] = float(mm_[1]), mm_[2]
            i += 1
        if i >= len(lines) or "SEQUENCE NO" in lines[i]:
            events.append(ev)
            continue
        i += 1
        site = net = None
        while i < len(lines) and lines[i].strip() and not lines[i].startswith(" ###"):
            ln = lines[i]
            if ln[1:6].strip():
                site, net = ln[1:6].strip(), ln[6:8].strip()
            ph = ln[32:33]
            if ph in ("P", "S") and site:
                wc = ln[34:35].strip()
                ev["readings"].append(
                    (site, net, ph, int(wc) if wc.isdigit() else 0, float(ln[36:43]), float(ln[55:60] or 0))
                )
            i += 1
        events.append(ev)
    return events


def _y2000_header(minute: pd.Timestamp, mag, mag_type: str, hypo=None) -> str:
    buf = list(minute.strftime("%Y%m%d%H%M") + "0000".ljust(164 - 12))
    if hypo is not None:
        sec, latd, latm, lond, ew, lonm, dep = hypo
        buf[12:36] = list(
            f"{int(round(sec * 100)):4d}{latd:2d} {int(round(latm * 100)):4d}{lond:3d}{ew if ew == 'E' else ' '}"
            f"{int(round(lonm * 100)):4d}{int(round(dep * 100)):5d}"
        )
    if mag is not None:
        buf[122] = (mag_type or "L")[:1]
        buf[123:126] = list(f"{int(round(max(mag, 0) * 100)):3d}")
    return "".join(buf).rstrip()


def write_phase_file(events, path: Path) -> None:
    """LOC-FLOW mk_inputfile.py layout: one line per station with P and/or S, blank terminator."""
    out = []
    for ev in events:
        out.append(_y2000_header(ev["minute"], ev["mag"], ev["mag_type"], ev.get("hypo")))
        by_sta: dict = {}
        for site, net, ph, wc, sec, _ in ev["readings"]:
            by_sta.setdefault((site, net), {})[ph] = (wc, sec)
        base = ev["minute"].strftime("%Y%m%d%H%M")
        for (site, net), r in by_sta.items():
            buf = [" "] * 50
            buf[0:5] = f"{site:<5s}"
            buf[5:7] = f"{net:2s}"
            buf[9:12] = "001"
            buf[17:29] = base
            if "P" in r:
                buf[14] = "P"
                buf[16] = str(r["P"][0]) if r["P"][0] else " "
                buf[29:34] = f"{int(round(r['P'][1] * 100)):5d}"
            if "S" in r:
                buf[47] = "S"
                buf[49] = str(r["S"][0]) if r["S"][0] else " "
                buf[41:46] = f"{int(round(r['S'][1] * 100)):5d}"
            out.append("".join(buf).rstrip())
        out.append("")
    path.write_text("\n".join(out) + "\n")


def build_locflow(repo: Path, dest: Path) -> list[Path]:
    """The two LOC-FLOW projects rebuilt under ``dest``; returns their folders."""
    nd = _git_show(repo, "REAL/tt_db/mymodel.nd").splitlines()
    p_rows, s_rows, more = [], [], None
    for k, line in enumerate(nd):
        tok = line.split()
        if not tok:
            continue
        if tok[0] == "mantle":
            more = nd[k + 1].split()
            break
        p_rows.append((float(tok[0]), float(tok[1])))
        s_rows.append((float(tok[0]), float(tok[2])))
    z1 = float(more[0]) + 0.1
    p_rows.append((z1, float(more[1])))
    s_rows.append((z1, float(more[2])))
    projects = []
    for name in ("hypoinverse", "hypoinverse_corr"):
        d = dest / ("locflow_italy2016" + ("_delays" if name.endswith("corr") else ""))
        d.mkdir(parents=True, exist_ok=True)
        (d / "hyp.command").write_text(_git_show(repo, f"location/{name}/hyp.command"))
        (d / "station.dat").write_text(_git_show(repo, f"location/{name}/station.dat"))
        (d / "vel_model_P.crh").write_text("MODEL Vp from REAL\n" + "".join(f"{v:4.2f}  {z:5.2f}\n" for z, v in p_rows))
        (d / "vel_model_S.crh").write_text("MODEL Vs from REAL\n" + "".join(f"{v:4.2f}  {z:5.2f}\n" for z, v in s_rows))
        events = parse_prt_readings(_git_show(repo, f"location/{name}/prtOut.prt"))
        write_phase_file(events, d / "hypoinput.arc")
        if name.endswith("corr"):
            for ph, fname in (("P", "P.del"), ("S", "S.del")):
                dl = {}
                for ev in events:
                    for site, net, p, _, _, delay in ev["readings"]:
                        if p == ph:
                            dl[(site, net)] = delay
                (d / fname).write_text("".join(f"{s:5s} {n:2s} {v:5.2f}\n" for (s, n), v in sorted(dl.items())))
        projects.append(d)
    return projects


# ----------------------------------------------------------------------------- comparison
def run_hyp(exe: str, cmd: Path) -> float:
    t = time.perf_counter()
    proc = subprocess.run([exe], stdin=cmd.open(), cwd=cmd.parent, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"hyp1.40 failed on {cmd}: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    return time.perf_counter() - t


def arc_layout(path: Path) -> dict:
    lines = path.read_text().splitlines()
    heads = [ln for ln in lines if hinv.is_summary_line(ln)]
    phases = [
        ln for ln in lines if ln.strip() and not ln.startswith("$") and not hinv.is_summary_line(ln) and ln[:12].strip()
    ]
    return {
        "summary_widths": sorted({len(x) for x in heads}),
        "phase_widths": sorted({len(x) for x in phases}),
        "n_summary": len(heads),
    }


def compare(ref: pd.DataFrame, ours: pd.DataFrame) -> dict:
    ref = ref.reset_index(drop=True)
    ours = ours.reset_index(drop=True)
    n = min(len(ref), len(ours))
    a, b = ref.iloc[:n], ours.iloc[:n]
    epi = epicentral_km(
        a.latitude.to_numpy(float), a.longitude.to_numpy(float), b.latitude.to_numpy(float), b.longitude.to_numpy(float)
    )
    dz = b.depth_km.to_numpy(float) - a.depth_km.to_numpy(float)
    dt = (pd.to_datetime(b.time, utc=True) - pd.to_datetime(a.time, utc=True)).dt.total_seconds().to_numpy()
    ok = np.isfinite(epi) & np.isfinite(dz)
    r = {
        "n_ref": int(len(ref)),
        "n_ours": int(len(ours)),
        "n_compared": int(ok.sum()),
        "epi_median_km": float(np.median(epi[ok])),
        "epi_p90_km": float(np.percentile(epi[ok], 90)),
        "depth_median_km": float(np.median(np.abs(dz[ok]))),
        "depth_p90_km": float(np.percentile(np.abs(dz[ok]), 90)),
        "depth_bias_km": float(np.median(dz[ok])),
        "ot_median_s": float(np.median(np.abs(dt[ok]))),
        "ot_p90_s": float(np.percentile(np.abs(dt[ok]), 90)),
    }
    r["meets_targets"] = all(r[k] <= v for k, v in TARGETS.items())
    return r


def run_converters(repo: Path, arc: Path, work: Path) -> dict:
    """LOC-FLOW's archive converters, unchanged, on ``arc``: events they find (they select summary
    lines of 179 and station lines of 120 columns by length)."""
    out = {}
    conv = work / "convertformat_outputfile.py"
    h2dd = work / "hypoinverse2hypoDD.py"
    conv.write_text(_git_show(repo, "location/hypoinverse/convertformat_outputfile.py"))
    h2dd.write_text(_git_show(repo, "hypoDD_dtct/hypoinverse2hypoDD.py"))
    tag = arc.parent.name
    cat, dele, pha = work / f"{tag}.new.cat", work / f"{tag}.dele.cat", work / f"{tag}.hypoDD.pha"
    r1 = subprocess.run(
        [sys.executable, str(conv), str(arc), str(cat), str(dele), "5", "5", "300", "0.5"],
        capture_output=True,
        text=True,
    )
    r2 = subprocess.run(
        [sys.executable, str(h2dd), str(arc), str(pha), "0.5", "300", "0.5", "30", "5", "5"],
        capture_output=True,
        text=True,
    )
    out["convertformat_ok"] = r1.returncode == 0
    out["convertformat_events"] = (
        len(cat.read_text().splitlines()) + len(dele.read_text().splitlines())
        if r1.returncode == 0
        else r1.stderr[-300:]
    )
    out["hypoinverse2hypoDD_ok"] = r2.returncode == 0
    if r2.returncode == 0:
        lines = pha.read_text().splitlines()
        out["hypoinverse2hypoDD_events"] = sum(ln.startswith("#") for ln in lines)
        out["hypoinverse2hypoDD_picks"] = sum(not ln.startswith("#") for ln in lines)
    else:
        out["hypoinverse2hypoDD_error"] = r2.stderr[-300:]
    return out


def bench_project(project: Path, work: Path, exe: str | None, locflow: Path | None = None) -> dict:
    name = project.name
    out: dict = {"project": str(project)}
    ours_dir = work / f"{name}_ours"
    shutil.copytree(project, ours_dir, dirs_exist_ok=True)
    cmd = command_file(ours_dir)
    t = time.perf_counter()
    ev, _ = locate_hypoinverse_project(cmd)
    out["ours_seconds"] = time.perf_counter() - t
    hc = hinv.read_command_file(cmd)
    out["ours_arc_layout"] = arc_layout(hc.arc) if hc.arc and hc.arc.exists() else None
    if locflow is not None and hc.arc and hc.arc.exists():
        out["converters_on_ours"] = run_converters(locflow, hc.arc, work)
    if exe is None:
        out["hyp1.40"] = "not found (PATH or containers/bin/)"
        return out
    ref_dir = work / f"{name}_hyp140"
    shutil.copytree(project, ref_dir, dirs_exist_ok=True)
    rcmd = command_file(ref_dir)
    out["hyp_seconds"] = run_hyp(exe, rcmd)
    rc = hinv.read_command_file(rcmd)
    ref_ev, _ = hinv.read_arc(rc.arc)
    our_ev, _ = hinv.read_arc(hc.arc)
    out["hyp_arc_layout"] = arc_layout(rc.arc)
    if locflow is not None:
        out["converters_on_hyp140"] = run_converters(locflow, rc.arc, work)
    out.update(compare(ref_ev, our_ev))
    # same bytes where the layouts are concerned: the PRT, SUM exist
    out["sum_widths_ref"] = sorted({len(x) for x in rc.sum.read_text().splitlines()}) if rc.sum else None
    out["sum_widths_ours"] = sorted({len(x) for x in hc.sum.read_text().splitlines()}) if hc.sum else None
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", action="append", default=[], type=Path, help="a Hypoinverse project folder")
    ap.add_argument(
        "--locflow", type=Path, help="a LOC-FLOW checkout (or bare git dir): rebuild its two Italy projects"
    )
    ap.add_argument("--quick", action="store_true", help="first project only")
    ap.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    ap.add_argument("--out", default="bench-out/hypoinverse.json")
    a = ap.parse_args(argv)
    work = a.work or Path(tempfile.mkdtemp(prefix="bench_hinv_"))
    work.mkdir(parents=True, exist_ok=True)
    projects = list(a.project)
    if a.locflow:
        projects += build_locflow(a.locflow, work / "projects")
    if not projects:
        ap.error("give --project DIR and/or --locflow CHECKOUT")
    if a.quick:
        projects = projects[:1]
    exe = find_hyp()
    results = [bench_project(p, work, exe, a.locflow) for p in projects]
    for r in results:
        print(json.dumps(r, indent=1, default=str))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"hyp1.40": exe, "targets": TARGETS, "results": results}, indent=1, default=str))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
