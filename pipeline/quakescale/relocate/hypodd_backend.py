"""Run the real ``hypoDD`` (and ``ph2dt``) executables when they are on PATH.

The project files named by ``hypoDD.inp`` are copied into a work folder (hypoDD writes its
outputs into the current directory and reads file names relative to it), the program runs there
as an argument list, and the outputs (hypoDD.loc/.reloc/.res/.sta/.log) are copied to
``out_dir`` and the relocations returned as a table (:func:`quakescale.formats.hypodd.read_reloc`).
"""

from __future__ import annotations

from ..errors import QuakeScaleError
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd

from ..formats import hypodd as H

__all__ = ["HypoDDNotFound", "find_executable", "run_hypodd", "run_ph2dt"]


class HypoDDNotFound(QuakeScaleError, RuntimeError):
    pass


def find_executable(name: str = "hypoDD") -> str:
    exe = shutil.which(name)
    if exe is None:
        raise HypoDDNotFound(f"executable {name!r} not found on PATH; install HypoDD (Waldhauser) or use the builtin "
                             "solver (relocate.backend: builtin)")
    return exe


def _stage(inp: H.HypoDDInp, work: Path) -> None:
    for name in (inp.fn_cc, inp.fn_ct, inp.fn_eve, inp.fn_sta, inp.fn_mod1d, inp.fn_mod3d):
        if not name:
            continue
        src = inp.resolve(name)
        if src is None or not src.exists():
            if name in (inp.fn_cc, inp.fn_ct) and ((name == inp.fn_cc and inp.idat == 2) or (name == inp.fn_ct and inp.idat == 1)):
                continue
            raise FileNotFoundError(f"{inp.path}: file {name!r} not found ({src})")
        dst = work / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)


def run_hypodd(inp_path, out_dir, exe: str = "hypoDD", timeout_s: float | None = None) -> pd.DataFrame:
    """Run hypoDD on the project of ``inp_path``; outputs land in ``out_dir``."""
    exe_path = find_executable(exe)
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
            raise RuntimeError(f"{exe_path} failed (exit {proc.returncode}) on {inp_path}; see {out_dir / 'hypoDD.stdout'}")
        for name in (inp.fn_loc, inp.fn_reloc, inp.fn_res, inp.fn_stares, inp.fn_srcpar, "hypoDD.log"):
            if name and (work / name).exists():
                shutil.copy(work / name, out_dir / Path(name).name)
    reloc = out_dir / Path(inp.fn_reloc or "hypoDD.reloc").name
    if not reloc.exists():
        raise RuntimeError(f"{exe_path} wrote no {reloc.name}; see {out_dir / 'hypoDD.log'}")
    return H.read_reloc(reloc)


def run_ph2dt(ph2dt_inp, out_dir, exe: str = "ph2dt", timeout_s: float | None = None) -> pd.DataFrame:
    """Run ph2dt on ``ph2dt.inp`` (station and phase files relative to it); returns dt.ct."""
    exe_path = find_executable(exe)
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
