"""The pipeline's location stage as a Hypoinverse-2000 project: export, run, read back.

:func:`export_hypoinverse_project` writes what ``hyp1.40`` reads -- a station file (``.sta``,
HINV Y2000 station format), the phase archive (``input.arc``, Y2000, with the associator's
initial locations on the summary lines), CRH P (and S) models and a command file (``locate.hyp``)
whose STA/CRH/POS|SAL/DIS/RMS/ERR/WET/ZTR/MIN/PHS/ARC/SUM commands carry the config's
``LocateSection``.  :func:`read_hypoinverse_results` reads the SUM/ARC outputs back into our
EVENTS columns (event ids kept) and a residual table like :func:`~quakescale.locate.locator.
locate_events` returns.  :func:`locate_with_backend` is the stage's one call: the builtin locator
in memory, or export -> real Hypoinverse -> read back.

Mapping of the config onto the commands (the inverse of ``HypCommands.locate_params``):

- ``trial_depth_km`` -> ``ZTR z F``; ``min_picks`` (4) -> ``MIN``; ``read_error_s`` -> ``ERR``;
  ``quality_weights`` -> ``WET`` (pick weight codes 0-3; code 4 is weight 0); ``s_weight`` -> ``SWT``;
  ``max_iter`` -> ``CON``; the associator's locations are the trial hypocentres (``H71 1 3 3``);
- ``dist_full_km``/``dist_zero_km`` -> ``DIS 4 dist_full 1 dist_zero/dist_full``;
- ``residual_full_s``/``residual_cutoff_factor`` -> ``RMS 4 residual_full 1 cutoff_factor``;
- the model: ``CRH 1`` P layers and, when Vp/Vs is one constant, ``POS vp/vs`` (exact); else
  ``CRH 2`` S layers and ``SAL 1 2`` (CRH velocities carry two decimals).

Not expressible as Hypoinverse commands (written as ``*`` comments in the command file and
named in the export's log): ``min_depth_km``/``max_depth_km``, ``damping``,
``min_picks_free_depth``, ``station_delays`` and ``use_elevation`` (CRH models put every station
at the model top, in hyp1.40 and in the builtin runner alike).

Codes: Hypoinverse has 5-character sites and 2-character networks.  Stations whose codes do not
fit (or collide) get short aliases; the mapping is written to ``station_codes.csv`` and undone
on reading.  Event ids that do not fit I10 (0 .. 9 999 999 999) are renumbered 1..N the same way
(``event_ids.csv``).  Pick weights become weight codes (nearest ``quality_weights`` value) unless
the picks have a ``weight_code`` column.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..formats import hypoinverse as hinv
from ..velocity import LayeredModel
from .hypoinverse_backend import EXE_NAMES, HypoinverseNotFound, find_hypoinverse, run_hypoinverse
from .locator import LocateParams, locate_events

__all__ = [
    "export_hypoinverse_project",
    "read_hypoinverse_results",
    "locate_with_backend",
    "hypoinverse_codes",
    "weight_codes",
    "HypoinverseNotFound",
]

log = logging.getLogger("quakescale.locate")

COMMAND_FILE = "locate.hyp"
STATION_FILE = "stations.sta"
PHASE_FILE = "input.arc"
P_MODEL_FILE = "model_P.crh"
S_MODEL_FILE = "model_S.crh"
OUT_ARC = "output.arc"
OUT_SUM = "output.sum"
OUT_PRT = "output.prt"
CODES_FILE = "station_codes.csv"
IDS_FILE = "event_ids.csv"
MAX_EVENT_ID = 9_999_999_999

_UNMAPPED = ("min_depth_km", "max_depth_km", "damping", "min_picks_free_depth", "use_elevation", "station_delays")


# ---------------------------------------------------------------------------------- codes
def _split_id(station_id: str) -> tuple[str, str]:
    s = str(station_id)
    return tuple(s.split(".", 1)) if "." in s else ("", s)  # type: ignore[return-value]


def hypoinverse_codes(stations: pd.DataFrame) -> pd.DataFrame:
    """``station_id -> (hinv_net, hinv_site)``: the network and site codes as they are when they
    fit Hypoinverse's 2 + 5 characters and are unique, else short unique aliases (``Q`` + base 36
    number for the site, the network cut to 2 characters)."""
    ids = list(dict.fromkeys(str(s) for s in stations["station_id"]))
    rows, used = [], set()
    pending = []
    for sid in ids:
        net, sta = _split_id(sid)
        if len(net) <= 2 and 0 < len(sta) <= 5 and (net, sta) not in used and sta.isascii() and " " not in sta:
            used.add((net, sta))
            rows.append((sid, net, sta))
        else:
            pending.append(sid)
    n = 0
    for sid in pending:
        net = _split_id(sid)[0][:2]
        while True:
            n += 1
            alias = "Q" + np.base_repr(n, 36).rjust(4, "0")
            if (net, alias) not in used:
                break
        used.add((net, alias))
        rows.append((sid, net, alias))
    return pd.DataFrame(rows, columns=["station_id", "hinv_net", "hinv_site"])


def weight_codes(picks: pd.DataFrame, quality_weights=(1.0, 0.5, 0.2, 0.1, 0.0)) -> np.ndarray:
    """Hypoinverse weight codes (0-4) of ``picks``: the ``weight_code`` column when there is one,
    else the code whose ``quality_weights`` value is nearest the ``weight`` column (1 -> 0), else 0."""
    if "weight_code" in picks.columns:
        c = pd.to_numeric(picks["weight_code"], errors="coerce").fillna(0).clip(0, 4)
        return c.to_numpy(int)
    if "weight" in picks.columns:
        w = pd.to_numeric(picks["weight"], errors="coerce").fillna(1.0).to_numpy(float)
        qw = np.asarray(quality_weights, float)[:5]
        codes = np.argmin(np.abs(w[:, None] - qw[None, :]), axis=1)
        dev = np.abs(w - qw[codes])
        if len(dev) and dev.max() > 1e-6:
            log.info("hypoinverse export: pick weights rounded to weight codes (largest change %.3f)", float(dev.max()))
        return codes.astype(int)
    return np.zeros(len(picks), int)


# ---------------------------------------------------------------------------------- export
def _params(params) -> LocateParams:
    return params if isinstance(params, LocateParams) else LocateParams.from_any(params)


def _model_lines(model: LayeredModel, out_dir: Path) -> tuple[list[str], list[str]]:
    """Write the CRH files; return the command lines and notes."""
    top = np.asarray(model.top_km, float)
    vp = np.asarray(model.vp_kms, float)
    vs = np.asarray(model.vs_kms, float)
    title = (model.name or "model")[:24]
    hinv.write_crh(top, vp, out_dir / P_MODEL_FILE, title=f"{title} P")
    hinv.write_crh(top, vs, out_dir / S_MODEL_FILE, title=f"{title} S")
    ratio = vp / vs
    constant_ratio = np.ptp(ratio) < 1e-6
    notes = []
    for what, v in (("Vp", vp), ("Vs", vs), ("top", top)):
        if what == "Vs" and constant_ratio:
            continue  # S comes from POS, exactly
        if np.abs(np.round(v, 2) - v).max() > 5e-4:
            notes.append(
                f"{what} rounded to 0.01 in the CRH file (largest change {np.abs(np.round(v, 2) - v).max():.4f})"
            )
    if len(top) > 12:
        notes.append(f"{len(top)} layers; Hypoinverse CRH models allow at most 12")
    lines = [f"CRH 1 '{P_MODEL_FILE}'"]
    if constant_ratio:
        lines += [
            f"POS {ratio[0]:.6f}",
            f"*CRH 2 '{S_MODEL_FILE}'   / Vs = Vp / POS exactly; the S file is for reference",
        ]
    else:
        lines += [f"CRH 2 '{S_MODEL_FILE}'", "SAL 1 2", f"POS {float(np.median(ratio)):.6f}"]
    return lines, notes


def export_hypoinverse_project(
    events: pd.DataFrame, picks: pd.DataFrame, stations: pd.DataFrame, model: LayeredModel, params=None, out_dir="."
) -> Path:
    """Write a Hypoinverse project for ``events`` (event_id, time, latitude, longitude[, depth_km]:
    initial locations; NaN epicentres are left blank so Hypoinverse starts near the first
    station), their ``picks`` (event_id, station_id, phase P/S, time[, weight_code | weight]) and
    ``stations`` (station_id, latitude, longitude[, elevation_m]) into ``out_dir``; ``params`` is
    the config ``LocateSection``, a dict or a :class:`LocateParams`.  Returns the command file."""
    p = _params(params)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for df, cols, what in (
        (events, ("event_id", "time", "latitude", "longitude"), "events"),
        (picks, ("event_id", "station_id", "phase", "time"), "picks"),
        (stations, ("station_id", "latitude", "longitude"), "stations"),
    ):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ValueError(
                f"export_hypoinverse_project: {what} table lacks column(s) {missing}; has {list(df.columns)}"
            )
    ev = events.reset_index(drop=True)
    if ev["event_id"].duplicated().any():
        raise ValueError(
            "export_hypoinverse_project: duplicate event_id(s) "
            f"{ev.loc[ev.event_id.duplicated(), 'event_id'].tolist()[:5]}"
        )
    ph = picks[picks["event_id"].isin(ev["event_id"])].reset_index(drop=True)
    phase = ph["phase"].astype(str).str.upper().str[:1]
    bad = ~phase.isin(["P", "S"])
    if bad.any():
        raise ValueError(
            f"export_hypoinverse_project: picks with phase other than P/S: {sorted(set(ph['phase'][bad]))[:5]}"
        )
    sta = stations.drop_duplicates("station_id").reset_index(drop=True)
    unknown = sorted(set(ph["station_id"].astype(str)) - set(sta["station_id"].astype(str)))
    if unknown:
        raise ValueError(
            f"export_hypoinverse_project: picks refer to station(s) not in the station table: {unknown[:10]}"
        )

    # ids and codes
    eid = ev["event_id"].astype(np.int64).to_numpy()
    remap = bool(len(eid)) and (eid.min() < 0 or eid.max() > MAX_EVENT_ID)
    hid = np.arange(1, len(eid) + 1, dtype=np.int64) if remap else eid
    if remap:
        pd.DataFrame({"event_id": eid, "hinv_id": hid}).to_csv(out / IDS_FILE, index=False)
    elif (out / IDS_FILE).exists():
        (out / IDS_FILE).unlink()
    id_map = pd.Series(hid, index=eid)
    codes = hypoinverse_codes(sta)
    codes.to_csv(out / CODES_FILE, index=False)
    cmap = codes.set_index("station_id")

    # station file: one line per station, blank component/channel (phase lines carry none either)
    st = sta.merge(codes, on="station_id")
    st_out = pd.DataFrame(
        {
            "station_id": st["station_id"],
            "network": st["hinv_net"],
            "station": st["hinv_site"],
            "latitude": st["latitude"].astype(float),
            "longitude": st["longitude"].astype(float),
            "elevation_m": st["elevation_m"].fillna(0.0).astype(float) if "elevation_m" in st else 0.0,
        }
    )
    hinv.write_sta(st_out, out / STATION_FILE, channels=[""])

    # phase archive with the initial locations
    ev_out = pd.DataFrame(
        {
            "event_id": hid,
            "time": pd.to_datetime(ev["time"], utc=True),
            "latitude": ev["latitude"].astype(float),
            "longitude": ev["longitude"].astype(float),
            "depth_km": ev["depth_km"].astype(float) if "depth_km" in ev else np.nan,
        }
    )
    sid = ph["station_id"].astype(str)
    ph_out = pd.DataFrame(
        {
            "event_id": ph["event_id"].astype(np.int64).map(id_map).to_numpy(),
            "station": sid.map(cmap["hinv_site"]).to_numpy(),
            "network": sid.map(cmap["hinv_net"]).to_numpy(),
            "component": "",
            "channel": "",
            "phase": phase.to_numpy(),
            "time": pd.to_datetime(ph["time"], utc=True),
            "weight_code": weight_codes(ph, p.quality_weights),
        }
    )
    hinv.write_arc(ev_out, ph_out, out / PHASE_FILE, shadows=False)

    # models and commands
    mlines, notes = _model_lines(model, out)
    ratio_zero = p.dist_zero_km / p.dist_full_km
    defaults = LocateParams()
    unmapped = [f"{k}={getattr(p, k)!r}" for k in _UNMAPPED if getattr(p, k) != getattr(defaults, k)]
    wet = " ".join(f"{w:g}" for w in list(p.quality_weights)[:4])
    lines = [
        "* Hypoinverse-2000 project written by QuakeScale (locate stage export)",
        f"* {len(ev)} events, {len(ph)} picks, {len(sta)} stations; run: hyp1.40 < '@{COMMAND_FILE}'",
        "200 T 2000 0                  / Y2000 formats",
        "H71 1 3 3                     / Y2000 summary; trial hypocentre from the header; station format #2",
        "LET 5 2 0                     / match stations on site and network",
        "ERF T",
        "TOP F",
        f"STA '{STATION_FILE}'",
        *mlines,
        f"DIS 4 {p.dist_full_km:g} 1 {ratio_zero:g}          / full weight to {p.dist_full_km:g} km, zero at "
        f"{p.dist_zero_km:g} km",
        f"RMS {int(p.residual_weighting_iter) + 1} {p.residual_full_s:g} 1 {p.residual_cutoff_factor:g}"
        f"          / full weight to {p.residual_full_s:g} s, zero at "
        f"{p.residual_full_s * p.residual_cutoff_factor:g} s",
        f"ERR {p.read_error_s:g}",
        f"WET {wet}",
        f"SWT {p.s_weight:g}",
        f"ZTR {p.trial_depth_km:g} F",
        f"CON {int(p.max_iter)} .04 .001",
        f"MIN {int(p.min_picks)}",
    ]
    for k in _UNMAPPED:
        lines.append(f"* not a Hypoinverse command: {k} = {getattr(p, k)!r}")
    for n in notes:
        lines.append(f"* note: {n}")
    lines += [
        f"PHS '{PHASE_FILE}'",
        "FIL",
        f"ARC '{OUT_ARC}'",
        f"PRT '{OUT_PRT}'",
        f"SUM '{OUT_SUM}'",
        "LOC",
        "STO",
    ]
    cmd_path = out / COMMAND_FILE
    cmd_path.write_text("\n".join(lines) + "\n")
    for n in notes:
        log.warning("hypoinverse export %s: %s", out, n)
    if unmapped:
        log.warning(
            "hypoinverse export %s: config values Hypoinverse cannot take (its own behaviour applies): %s",
            out,
            ", ".join(unmapped),
        )
    return cmd_path


# ---------------------------------------------------------------------------------- read back
def read_hypoinverse_results(command_file) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the SUM and ARC outputs named by ``command_file`` back into pipeline tables.

    Returns ``(events, residuals)``: events in our EVENTS columns (event_id, time, latitude,
    longitude, depth_km, magnitude, mag_type, n_stations, n_p, n_s, rms_s, stage='locate') plus
    gap_deg, dmin_km, erh_km, erz_km, err*_..., depth_fixed, located; residuals with event_id,
    station_id, phase, time, residual_s, weight, travel_time_s, distance_km, azimuth_deg (as
    :func:`locate_events` returns).  Station aliases and renumbered event ids of the export
    (``station_codes.csv``, ``event_ids.csv`` beside the command file) are undone."""
    cmd = hinv.read_command_file(command_file)
    base = Path(command_file).parent
    if cmd.sum is None and cmd.arc is None:
        raise ValueError(f"{command_file}: neither SUM nor ARC command; no outputs to read")
    ph = pd.DataFrame()
    if cmd.arc is not None and Path(cmd.arc).exists():
        ev, ph = hinv.read_arc(cmd.arc)
    elif cmd.sum is not None and Path(cmd.sum).exists():
        ev = hinv.read_sum(cmd.sum)
    else:
        raise FileNotFoundError(f"{command_file}: output files not found ({cmd.arc}, {cmd.sum}); did the location run?")

    ids_file = base / IDS_FILE
    if ids_file.exists():
        m = pd.read_csv(ids_file).set_index("hinv_id")["event_id"]
        ev["event_id"] = ev["event_id"].map(m)
        if ev["event_id"].isna().any():
            raise ValueError(f"{command_file}: output event ids not in {ids_file}")
        if len(ph):
            ph["event_id"] = ph["event_id"].map(m)
    ev["event_id"] = ev["event_id"].astype(np.int64)

    codes_file = base / CODES_FILE
    if len(ph):
        ph = ph[ph["phase"].isin(["P", "S"])].reset_index(drop=True)
        if codes_file.exists():
            codes = pd.read_csv(codes_file, dtype=str, keep_default_na=False)
            key = codes["hinv_net"].str.strip() + "." + codes["hinv_site"].str.strip()
            key = key.where(codes["hinv_net"].str.strip() != "", codes["hinv_site"].str.strip())
            back = pd.Series(codes["station_id"].to_numpy(), index=key.to_numpy())
            ph["station_id"] = ph["station_id"].map(back).fillna(ph["station_id"])

    min_phases = int(cmd.min_phases) if cmd.min_phases is not None else 4
    n_phases = pd.to_numeric(ev["n_phases"], errors="coerce")
    n_s = pd.to_numeric(ev["n_s"], errors="coerce").fillna(0)
    out = pd.DataFrame(
        {
            "event_id": ev["event_id"].to_numpy(np.int64),
            "time": pd.to_datetime(ev["time"], utc=True),
            "latitude": ev["latitude"].astype(float),
            "longitude": ev["longitude"].astype(float),
            "depth_km": ev["depth_km"].astype(float),
            "magnitude": ev["magnitude"].astype(float),
            "mag_type": ev["mag_type"],
        }
    )
    if len(ph):
        used = ph[pd.to_numeric(ph["weight_used"], errors="coerce").fillna(0) > 0]
        n_sta = used.groupby("event_id")["station_id"].nunique()
        out["n_stations"] = out["event_id"].map(n_sta).fillna(0).astype(np.int32)
    else:
        out["n_stations"] = np.zeros(len(out), np.int32)
    out["n_p"] = (n_phases.fillna(0) - n_s).clip(lower=0).astype(np.int32).to_numpy()
    out["n_s"] = n_s.astype(np.int32).to_numpy()
    out["rms_s"] = ev["rms_s"].astype(float).to_numpy()
    for c in (
        "gap_deg",
        "dmin_km",
        "erh_km",
        "erz_km",
        "err1_az_deg",
        "err1_dip_deg",
        "err1_km",
        "err2_az_deg",
        "err2_dip_deg",
        "err2_km",
        "err3_km",
    ):
        out[c] = pd.to_numeric(ev[c], errors="coerce").to_numpy(float)
    out["depth_fixed"] = (ev["program_remark"].fillna("") == "-").to_numpy()
    out["located"] = (np.isfinite(out["rms_s"]) & (n_phases.fillna(0).to_numpy() >= min_phases)).to_numpy()
    out["stage"] = "locate"

    if len(ph):
        ot = out.set_index("event_id")["time"]
        t = pd.to_datetime(ph["time"], utc=True)
        res = pd.to_numeric(ph["residual_s"], errors="coerce")
        tt = (t - pd.to_datetime(ph["event_id"].map(ot), utc=True)).dt.total_seconds() - res.fillna(0.0)
        resid = pd.DataFrame(
            {
                "event_id": ph["event_id"].astype(np.int64).to_numpy(),
                "station_id": ph["station_id"].to_numpy(),
                "phase": ph["phase"].to_numpy(),
                "time": t.to_numpy(),
                "residual_s": res.to_numpy(float),
                "weight": pd.to_numeric(ph["weight_used"], errors="coerce").to_numpy(float),
                "travel_time_s": tt.to_numpy(float),
                "distance_km": pd.to_numeric(ph["distance_km"], errors="coerce").to_numpy(float),
                "azimuth_deg": pd.to_numeric(ph["azimuth_deg"], errors="coerce").to_numpy(float),
            }
        )
        resid["time"] = pd.to_datetime(resid["time"], utc=True)
    else:
        resid = pd.DataFrame(
            columns=[
                "event_id",
                "station_id",
                "phase",
                "time",
                "residual_s",
                "weight",
                "travel_time_s",
                "distance_km",
                "azimuth_deg",
            ]
        )
    return out, resid


# ---------------------------------------------------------------------------------- the stage's call
def locate_with_backend(
    events: pd.DataFrame,
    picks: pd.DataFrame,
    stations: pd.DataFrame,
    model: LayeredModel,
    params=None,
    work_dir=None,
    backend: str = "builtin",
    exe: str | None = None,
    timeout_s: float = 3600.0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Locate ``events`` with the configured backend; returns ``(located, residuals)``.

    ``builtin``: :func:`locate_events` in memory.  ``hypoinverse``: the project is exported into
    ``work_dir`` (e.g. ``RUN/locate-hypoinverse/``), the executable ``exe`` (config
    ``locate.hypoinverse_exe``; the usual names are tried after it) runs on it and its SUM/ARC are
    read back.  Event rows keep the input's extra columns (as ``locate_events`` does)."""
    if backend == "builtin":
        return locate_events(events, picks, stations, model, params)
    if backend != "hypoinverse":
        raise ValueError(f"locate.backend must be 'builtin' or 'hypoinverse', got {backend!r}")
    found = find_hypoinverse(exe)
    if found is None:
        raise HypoinverseNotFound(
            f"locate.backend is 'hypoinverse' but the executable {exe or 'hyp1.40'!r} (config locate.hypoinverse_exe) "
            f"is not on PATH (also tried {', '.join(n for n in EXE_NAMES if n != exe)}); "
            "install Hypoinverse-2000, set locate.hypoinverse_exe to its name or path, or use locate.backend: builtin"
        )
    if work_dir is None:
        raise ValueError("locate_with_backend: backend 'hypoinverse' needs a work_dir for the project files")
    cmd = export_hypoinverse_project(events, picks, stations, model, params, work_dir)
    for name in (OUT_ARC, OUT_SUM, OUT_PRT):  # never read a previous run's outputs
        f = Path(work_dir) / name
        if f.exists():
            f.unlink()
    run_hypoinverse(cmd, exe=found, timeout_s=timeout_s)
    located, residuals = read_hypoinverse_results(cmd)
    extra = [c for c in events.columns if c not in located.columns]
    if extra:
        located = located.merge(events[["event_id"] + extra], on="event_id", how="left")
    return located, residuals
