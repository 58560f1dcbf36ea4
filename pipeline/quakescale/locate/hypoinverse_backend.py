"""Locate a Hypoinverse project: with the builtin locator, or with the real ``hypoinverse``.

``locate_hypoinverse_project(command_file)`` reads a Hypoinverse command file (STA, CRH/SAL/POS,
DIS, RMS, ZTR, MIN, ERR, WET, PHS, ARC, SUM), locates the events of its PHS archive with the
builtin locator and writes the SUM and ARC outputs in Hypoinverse's own Y2000 formats -- the
project runs unchanged.  ``backend="hypoinverse"`` instead runs the executable (``hyp1.40`` by
default; config ``locate.hypoinverse_exe``) on the same command file, as an argument list with the
command file fed on stdin (``@file``), and reads its SUM/ARC back.
"""

from __future__ import annotations

from ..errors import QuakeScaleError
import shutil
import subprocess
from pathlib import Path

import pandas as pd

from ..formats import hypoinverse as hinv
from .locator import LocateParams, locate_events, travel_time_table

__all__ = ["find_hypoinverse", "run_hypoinverse", "locate_hypoinverse_project", "HypoinverseNotFound"]

EXE_NAMES = ("hyp1.40", "hyp2000", "hypoinverse", "hyp1.4")


class HypoinverseNotFound(QuakeScaleError, RuntimeError):
    pass


def find_hypoinverse(exe: str | None = None) -> str | None:
    """Path of the Hypoinverse executable (``exe`` or one of the usual names) on PATH, or None."""
    for name in ([exe] if exe else []) + list(EXE_NAMES):
        found = shutil.which(name) if name else None
        if found:
            return found
    return None


def run_hypoinverse(command_file, exe: str | None = None, timeout_s: float = 3600.0):
    """Run Hypoinverse on ``command_file`` in its directory; returns ``(events, phases)`` read
    from the SUM and ARC files it names (empty phases when there is no ARC)."""
    command_file = Path(command_file).resolve()
    path = find_hypoinverse(exe)
    if path is None:
        raise HypoinverseNotFound(
            f"no Hypoinverse executable ({exe or ' / '.join(EXE_NAMES)}) on PATH; install hyp1.40 or use the builtin backend"
        )
    cmd = hinv.read_command_file(command_file)
    proc = subprocess.run(
        [path], input=f"@{command_file.name}\nSTO\n", text=True, capture_output=True, cwd=command_file.parent,
        timeout=timeout_s, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{path} failed on {command_file} (exit {proc.returncode}): {proc.stderr[-2000:] or proc.stdout[-2000:]}")
    events = hinv.read_sum(cmd.sum) if cmd.sum and cmd.sum.exists() else pd.DataFrame()
    phases = hinv.read_arc(cmd.arc)[1] if cmd.arc and cmd.arc.exists() else pd.DataFrame()
    return events, phases


def locate_hypoinverse_project(command_file, backend: str = "builtin", exe: str | None = None, out_dir=None, **overrides):
    """Locate the project of a Hypoinverse command file and write its SUM / ARC outputs.

    ``out_dir`` redirects the outputs (same file names) instead of the paths in the command file.
    ``overrides`` are :class:`LocateParams` keywords applied on top of the command file's
    settings.  Returns ``(events, phases)`` as written (phases with residuals and used weights).
    """
    if backend == "hypoinverse":
        return run_hypoinverse(command_file, exe=exe)
    if backend != "builtin":
        raise ValueError(f"backend must be 'builtin' or 'hypoinverse', got {backend!r}")
    cmd = hinv.read_command_file(command_file)
    for what, p in (("STA", cmd.sta), ("PHS", cmd.phs)):
        if p is None:
            raise ValueError(f"{cmd.path}: no {what} command; the builtin backend needs it")
        if not Path(p).exists():
            raise FileNotFoundError(f"{cmd.path}: {what} file not found: {p}")
    stations = hinv.read_sta(cmd.sta).drop_duplicates("station_id").reset_index(drop=True)
    model = cmd.model()
    ev_in, ph_in = hinv.read_arc(cmd.phs)
    params = LocateParams.from_any(cmd.locate_params(), **overrides)
    if cmd.ztr_fixed:
        params.min_picks_free_depth = 10**9
    init = ev_in.copy()
    bad = (init["latitude"].abs() < 1e-9) & (init["longitude"].abs() < 1e-9)
    init.loc[bad, ["latitude", "longitude"]] = float("nan")
    picks = ph_in[ph_in["phase"].isin(["P", "S"])].copy()
    picks["weight_code"] = picks["weight_code"].fillna(0)
    tt = travel_time_table(model, 300.0, max(params.max_depth_km + 1.0, 40.0))
    loc, res = locate_events(init, picks, stations, model, params, tt=tt)
    # outputs in Hypoinverse's form
    loc = loc.copy()
    loc["crust_model"] = model.name[:3].upper()
    loc["n_phases"] = loc["n_p"] + loc["n_s"]
    loc["n_valid"] = loc["n_phases"]
    out_ph = picks.reset_index(drop=True).copy()
    out_ph["residual_s"] = res["residual_s"].to_numpy()
    out_ph["weight_used"] = res["weight"].to_numpy()
    out_ph["distance_km"] = res["distance_km"].to_numpy()
    out_ph["azimuth_deg"] = res["azimuth_deg"].to_numpy()
    out_ph = pd.concat([out_ph, ph_in[~ph_in["phase"].isin(["P", "S"])]], ignore_index=True)
    sum_path, arc_path = cmd.sum, cmd.arc
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        sum_path = out_dir / (cmd.sum.name if cmd.sum else "out.sum")
        arc_path = out_dir / (cmd.arc.name if cmd.arc else "out.arc")
    if sum_path is not None:
        hinv.write_sum(sum_path, loc)
    if arc_path is not None:
        hinv.write_arc(arc_path, loc, out_ph)
    return loc, out_ph
