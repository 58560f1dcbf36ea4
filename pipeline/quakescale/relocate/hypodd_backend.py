"""Run a HypoDD project: with the builtin solver, or with the real ``hypoDD`` (and ``ph2dt``)
executables when they are on PATH.

:func:`run_hypodd_project` runs :func:`quakescale.relocate.dd.relocate_dd` on a project's files and
writes hypoDD's outputs.  :func:`run_hypodd`: the project files named by ``hypoDD.inp`` are copied
into a work folder (hypoDD writes its outputs into the current directory and reads file names
relative to it), the program runs there as an argument list, and the outputs
(hypoDD.loc/.reloc/.res/.sta/.log) are copied to ``out_dir`` and the relocations returned as a
table (:func:`quakescale.formats.hypodd.read_reloc`).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd

from ..errors import QuakeScaleError
from ..formats import hypodd as H
from .dd import DDData, DDResult, relocate_dd

__all__ = ["HypoDDNotFound", "find_hypodd", "run_hypodd", "run_hypodd_project", "run_ph2dt"]


class HypoDDNotFound(QuakeScaleError, RuntimeError):
    pass


def find_hypodd(exe: str | None = None) -> str | None:
    """Path of the HypoDD executable ``exe`` (default ``hypoDD``; also ``ph2dt``) on PATH, or None."""
    return shutil.which(exe or "hypoDD")


def _require(exe: str) -> str:
    path = find_hypodd(exe)
    if path is None:
        raise HypoDDNotFound(
            f"executable {exe!r} not found on PATH; install HypoDD (Waldhauser) or use the builtin "
            "solver (relocate.backend: builtin)"
        )
    return path


def _stage(inp: H.HypoDDInp, work: Path) -> None:
    for name in (inp.fn_cc, inp.fn_ct, inp.fn_eve, inp.fn_sta, inp.fn_mod1d, inp.fn_mod3d):
        if not name:
            continue
        src = inp.resolve(name)
        if src is None or not src.exists():
            if name in (inp.fn_cc, inp.fn_ct) and (
                (name == inp.fn_cc and inp.idat == 2) or (name == inp.fn_ct and inp.idat == 1)
            ):
                continue
            raise FileNotFoundError(f"{inp.path}: file {name!r} not found ({src})")
        dst = work / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)


def run_hypodd(inp_path, out_dir, exe: str = "hypoDD", timeout_s: float | None = None) -> pd.DataFrame:
    """Run hypoDD on the project of ``inp_path``; outputs land in ``out_dir``."""
    exe_path = _require(exe)
    inp = H.read_hypodd_inp(inp_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hypodd_") as tmp:
        work = Path(tmp)
        _stage(inp, work)
        shutil.copy(inp_path, work / "hypoDD.inp")
        proc = subprocess.run([exe_path, "hypoDD.inp"], cwd=work, capture_output=True, text=True, timeout=timeout_s)
        (out_dir / "hypoDD.stdout").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise RuntimeError(
                f"{exe_path} failed (exit {proc.returncode}) on {inp_path}; see {out_dir / 'hypoDD.stdout'}"
            )
        for name in (inp.fn_loc, inp.fn_reloc, inp.fn_res, inp.fn_stares, inp.fn_srcpar, "hypoDD.log"):
            if name and (work / name).exists():
                shutil.copy(work / name, out_dir / Path(name).name)
    reloc = out_dir / Path(inp.fn_reloc or "hypoDD.reloc").name
    if not reloc.exists():
        raise RuntimeError(f"{exe_path} wrote no {reloc.name}; see {out_dir / 'hypoDD.log'}")
    return H.read_reloc(reloc)


def run_ph2dt(ph2dt_inp, out_dir, exe: str = "ph2dt", timeout_s: float | None = None) -> pd.DataFrame:
    """Run ph2dt on ``ph2dt.inp`` (station and phase files relative to it); returns dt.ct."""
    exe_path = _require(exe)
    ph2dt_inp = Path(ph2dt_inp)
    lines = [ln for ln in ph2dt_inp.read_text().splitlines() if ln[:1] != "*" and ln[1:2] != "*"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ph2dt_") as tmp:
        work = Path(tmp)
        for name in (lines[0].strip(), lines[1].strip()):
            src = ph2dt_inp.parent / name
            if not src.exists():
                raise FileNotFoundError(f"{ph2dt_inp}: file {name!r} not found ({src})")
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, work / name)
        shutil.copy(ph2dt_inp, work / "ph2dt.inp")
        proc = subprocess.run([exe_path, "ph2dt.inp"], cwd=work, capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0:
            raise RuntimeError(f"{exe_path} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        for name in ("dt.ct", "event.dat", "event.sel", "station.sel", "ph2dt.log"):
            if (work / name).exists():
                shutil.copy(work / name, out_dir / name)
    return H.read_dtct(out_dir / "dt.ct")


def run_hypodd_project(inp_path, out_dir=None, solver: str | None = None) -> DDResult:
    """Run a HypoDD 1.x project with the builtin solver: read ``hypoDD.inp`` and the files it
    names (paths relative to the .inp), write hypoDD.loc/.reloc/.res/.sta (names from the .inp)
    into ``out_dir`` (default: the .inp's folder) and return the :class:`DDResult`."""
    inp = H.read_hypodd_inp(inp_path)
    out_dir = Path(out_dir) if out_dir is not None else Path(inp_path).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    fe = inp.resolve(inp.fn_eve)
    fs = inp.resolve(inp.fn_sta)
    for what, f in (("event file", fe), ("station file", fs)):
        if f is None or not f.exists():
            raise FileNotFoundError(f"{inp.path}: {what} {f} not found")
    ev = H.read_event_dat(fe)
    if inp.ids:
        ev = ev[ev["event_id"].isin(set(inp.ids))]
    st = H.read_station_dat(fs)
    dtct = dtcc = None
    if inp.idat in (2, 3):
        f = inp.resolve(inp.fn_ct)
        if f is None or not f.exists():
            raise FileNotFoundError(f"{inp.path}: IDAT={inp.idat} needs the catalog file {inp.fn_ct!r} ({f})")
        dtct = H.read_dtct(f)
    if inp.idat in (1, 3):
        f = inp.resolve(inp.fn_cc)
        if f is None or not f.exists():
            raise FileNotFoundError(f"{inp.path}: IDAT={inp.idat} needs the cross-correlation file {inp.fn_cc!r} ({f})")
        dtcc = H.read_dtcc(f)
        dtcc = dtcc.assign(weight=dtcc["cc"])  # hypoDD uses the dt.cc weight column as given
    data = DDData.from_tables(dtct, dtcc)
    res = relocate_dd(
        ev,
        st,
        data,
        inp.model(),
        inp.sets,
        solver=solver or ("svd" if inp.isolv == 1 else "lsqr"),
        idat=inp.idat,
        ipha=inp.ipha,
        maxdist_km=inp.maxdist_km,
        minobs_ct=inp.minobs_ct,
        minobs_cc=inp.minobs_cc,
        cluster=inp.cid,
    )
    if not res.initial.empty:
        loc = res.initial.assign(
            ex_m=lambda d: d["eh_km"] * 1000 if "eh_km" in d else 0.0,
            ey_m=lambda d: d["eh_km"] * 1000 if "eh_km" in d else 0.0,
            ez_m=lambda d: d["ez_km"] * 1000 if "ez_km" in d else 0.0,
        )
        H.write_loc(loc, out_dir / (inp.fn_loc or "hypoDD.loc"))
    if not res.events.empty:
        H.write_reloc(res.events, out_dir / (inp.fn_reloc or "hypoDD.reloc"))
        if inp.fn_res:
            H.write_res(res.residuals, out_dir / inp.fn_res)
        if inp.fn_stares:
            H.write_sta(res.stations, out_dir / inp.fn_stares)
    (out_dir / "hypoDD.log").write_text("\n".join(res.log) + "\n")
    return res
