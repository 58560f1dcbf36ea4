"""The pipeline's relocation stage as a HypoDD 1.x project: export, run, read back.

:func:`export_hypodd_project` writes what ``hypoDD`` reads -- ``event.dat`` (the located
events), ``station.dat``, ``dt.ct`` (catalog differential times from
:func:`~quakescale.relocate.pairs.catalog_pairs` with the config's ph2dt parameters), ``dt.cc``
(when cross-correlation times are given) and ``hypoDD.inp`` set up exactly as
:func:`quakescale.relocate.dd.relocate` sets up the builtin solver: the weighting sets of
:func:`~quakescale.relocate.dd.default_iteration_sets` from ``iterations``/``damping``, IDAT 2 (3
with cc), IPHA 3, DIST = max_station_km + 50, OBSCT (and OBSCC with cc) = min_links, ISTART 2,
ISOLV from ``solver``, the layers of the LayeredModel.  :func:`read_hypodd_results` turns
``hypoDD.reloc`` (+ ``hypoDD.res``) into the table :func:`dd.relocate` returns, and
:func:`relocate_with_backend` is the stage's one call.

Codes and limits of the format: station codes are at most 7 characters (``STA`` of ``NET.STA``
when unique, else ``NETSTA``, else a ``Q``-alias; ``station_codes.csv``); event ids must be 1 ..
999 999 999 (else renumbered 1..N; ``event_ids.csv``); HypoDD 1.x has one Vp/Vs ratio (the
median of the model's when it varies, with a warning) and a limit of 12 layers; ``event.dat``
carries 1e-4 degree and 10 ms.  Relocated origin times are read back as shifts applied to the
exact input times.  The cc weight column is ``cc**2`` (as the builtin uses) unless the dtcc table
has a ``weight`` column; cc times below ``cc.min_cc`` are left out (as the builtin does).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..formats import hypodd as H
from ..geo import LocalProjection
from ..velocity import LayeredModel
from .dd import DDError, RelocateParams, relocate
from .hypodd_backend import HypoDDNotFound, find_hypodd, run_hypodd
from .pairs import catalog_pairs, resolve_max_station_km

__all__ = ["export_hypodd_project", "read_hypodd_results", "relocate_with_backend", "hypodd_codes", "HypoDDNotFound"]

log = logging.getLogger("quakescale.relocate")

CODES_FILE = "station_codes.csv"
IDS_FILE = "event_ids.csv"
MAX_EVENT_ID = 999_999_999


def hypodd_codes(station_ids) -> pd.DataFrame:
    """``station_id -> code`` of at most 7 characters, unique: STA when it fits and is unique,
    else NETSTA when it fits, else ``Q`` + a base-36 number."""
    ids = list(dict.fromkeys(str(s) for s in station_ids))
    sta = [s.split(".", 1)[-1] for s in ids]
    counts = pd.Series(sta).value_counts()
    used, out, pending = set(), {}, []
    for sid, s in zip(ids, sta):
        if 0 < len(s) <= 7 and counts[s] == 1 and " " not in s and s not in used:
            out[sid] = s
            used.add(s)
        else:
            pending.append(sid)
    n = 0
    for sid in pending:
        c = sid.replace(".", "")
        if not (0 < len(c) <= 7) or c in used or " " in c:
            while True:
                n += 1
                c = "Q" + np.base_repr(n, 36).rjust(5, "0")
                if c not in used:
                    break
        out[sid] = c
        used.add(c)
    return pd.DataFrame({"station_id": list(out), "code": list(out.values())})


def _event_ids(ev: pd.DataFrame, out: Path) -> pd.Series:
    eid = ev["event_id"].astype(np.int64).to_numpy()
    remap = bool(len(eid)) and (eid.min() < 1 or eid.max() > MAX_EVENT_ID)
    did = np.arange(1, len(eid) + 1, dtype=np.int64) if remap else eid
    if remap:
        pd.DataFrame({"event_id": eid, "hypodd_id": did}).to_csv(out / IDS_FILE, index=False)
    elif (out / IDS_FILE).exists():
        (out / IDS_FILE).unlink()
    return pd.Series(did, index=eid)


def export_hypodd_project(
    events: pd.DataFrame,
    picks: pd.DataFrame,
    stations: pd.DataFrame,
    model: LayeredModel,
    dtcc: pd.DataFrame | None = None,
    params=None,
    out_dir=".",
) -> Path:
    """Write a HypoDD 1.x project into ``out_dir`` and return the path of its ``hypoDD.inp``.

    ``events``: event_id, time, latitude, longitude, depth_km[, magnitude, erh_km, erz_km, rms_s]
    (located events); ``picks``: event_id, station_id, phase, time[, weight]; ``stations``:
    station_id, latitude, longitude[, elevation_m]; ``dtcc``: the DTCC table (event_id_1,
    event_id_2, station_id, phase, dt_s, cc[, otc_s, weight]) or None; ``params``: the config
    ``RelocateSection``, a :class:`~quakescale.relocate.dd.RelocateParams`, a dict of its fields or None
    (the config's defaults).  Raises :class:`DDError` ("nothing to relocate") when no pair
    of events has differential times."""
    p = RelocateParams.from_config(params)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for df, cols, what in (
        (events, ("event_id", "time", "latitude", "longitude", "depth_km"), "events"),
        (picks, ("event_id", "station_id", "phase", "time"), "picks"),
        (stations, ("station_id", "latitude", "longitude"), "stations"),
    ):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise DDError(f"export_hypodd_project: {what} table lacks column(s) {missing}; has {list(df.columns)}")
    ev = events.reset_index(drop=True)
    if ev["event_id"].duplicated().any():
        raise DDError(
            f"export_hypodd_project: duplicate event_id(s) {ev.loc[ev.event_id.duplicated(), 'event_id'].tolist()[:5]}"
        )
    nan = ev[["latitude", "longitude", "depth_km"]].isna().any(axis=1)
    if nan.any():
        raise DDError(
            "export_hypodd_project: event(s) without a location (lat/lon/depth NaN): "
            f"{ev.loc[nan, 'event_id'].tolist()[:10]}"
        )
    sta = stations.drop_duplicates("station_id").reset_index(drop=True)
    id_map = _event_ids(ev, out)

    # catalog differential times, as dd.relocate forms them
    max_station_km = resolve_max_station_km(p.max_station_km, sta)  # "auto": from the station spacing
    dtct = catalog_pairs(ev, picks, sta, p, max_station_km=max_station_km)
    cc = None
    if dtcc is not None and len(dtcc):
        cc = dtcc[
            (dtcc["cc"] >= p.min_cc) & dtcc["event_id_1"].isin(id_map.index) & dtcc["event_id_2"].isin(id_map.index)
        ]
        scol = "station_id" if "station_id" in cc else "station"
        cc = cc[cc[scol].astype(str).isin(set(sta["station_id"].astype(str)))]
        if not len(cc):
            cc = None
    with_cc = cc is not None
    if not len(dtct) and not with_cc:
        raise DDError(f"no event pair has differential times (of {len(ev)} events); nothing to relocate")

    used_sta = set(dtct["station"].astype(str)) | (set(cc[scol].astype(str)) if with_cc else set())
    st = sta[sta["station_id"].astype(str).isin(used_sta)].reset_index(drop=True)
    codes = hypodd_codes(st["station_id"])
    codes.to_csv(out / CODES_FILE, index=False)
    cmap = codes.set_index("station_id")["code"]

    # files
    H.write_station_dat(
        pd.DataFrame(
            {
                "station": st["station_id"].astype(str).map(cmap),
                "latitude": st["latitude"].astype(float),
                "longitude": st["longitude"].astype(float),
            }
        ),
        out / "station.dat",
    )
    ev_out = pd.DataFrame(
        {
            "event_id": ev["event_id"].astype(np.int64).map(id_map).to_numpy(),
            "time": pd.to_datetime(ev["time"], utc=True),
            "latitude": ev["latitude"].astype(float),
            "longitude": ev["longitude"].astype(float),
            "depth_km": ev["depth_km"].astype(float),
            "magnitude": ev["magnitude"].astype(float).fillna(0.0) if "magnitude" in ev else 0.0,
            "eh_km": ev["erh_km"].astype(float).fillna(0.0) if "erh_km" in ev else 0.0,
            "ez_km": ev["erz_km"].astype(float).fillna(0.0) if "erz_km" in ev else 0.0,
            "rms_s": ev["rms_s"].astype(float).fillna(0.0) if "rms_s" in ev else 0.0,
        }
    )
    H.write_event_dat(ev_out, out / "event.dat")
    dt_out = dtct.assign(
        event_id_1=dtct["event_id_1"].map(id_map).to_numpy(),
        event_id_2=dtct["event_id_2"].map(id_map).to_numpy(),
        station=dtct["station"].astype(str).map(cmap).to_numpy(),
    )
    H.write_dtct(dt_out, out / "dt.ct")
    if with_cc:
        w = cc["weight"].astype(float) if "weight" in cc else cc["cc"].astype(float) ** 2
        cc_out = pd.DataFrame(
            {
                "event_id_1": cc["event_id_1"].astype(np.int64).map(id_map).to_numpy(),
                "event_id_2": cc["event_id_2"].astype(np.int64).map(id_map).to_numpy(),
                "station": cc[scol].astype(str).map(cmap).to_numpy(),
                "dt_s": cc["dt_s"].astype(float).to_numpy(),
                "cc": w.to_numpy(),
                "phase": cc["phase"].astype(str).str.upper().str[0].to_numpy(),
            }
        )
        if "otc_s" in cc:
            cc_out["otc_s"] = cc["otc_s"].astype(float).to_numpy()
        H.write_dtcc(cc_out, out / "dt.cc")
    elif (out / "dt.cc").exists():
        (out / "dt.cc").unlink()

    # control file
    vp = np.asarray(model.vp_kms, float)
    ratio = vp / np.asarray(model.vs_kms, float)
    vpvs = float(ratio[0]) if np.ptp(ratio) < 1e-6 else float(np.median(ratio))
    if np.ptp(ratio) >= 1e-6:
        log.warning(
            "hypoDD export %s: Vp/Vs varies by layer (%.3f-%.3f); HypoDD 1.x takes one ratio, %.4f written",
            out,
            ratio.min(),
            ratio.max(),
            vpvs,
        )
    if len(vp) > 12:
        log.warning("hypoDD export %s: %d layers; HypoDD 1.x allows at most 12", out, len(vp))
    inp = H.HypoDDInp(
        path=out / "hypoDD.inp",
        fn_cc="dt.cc" if with_cc else "",
        fn_ct="dt.ct",
        idat=3 if with_cc else 2,
        ipha=3,
        maxdist_km=float(max_station_km) + 50.0,
        minobs_cc=int(p.min_links) if with_cc else 0,
        minobs_ct=int(p.min_links),
        istart=2,
        isolv=1 if p.solver == "svd" else 2,
        sets=p.iteration_sets(with_cc),
        vpvs=vpvs,
        top_km=[float(t) for t in model.top_km],
        vp_kms=[float(v) for v in vp],
        cid=0,
        ids=[],
    )
    return H.write_hypodd_inp(inp, out / "hypoDD.inp")


def _read_res(path: Path) -> pd.DataFrame | None:
    """hypoDD.res (header line, then STA DT C1 C2 IDX QUAL RES WT OFFS) -> event_id_1, event_id_2, wt."""
    if not path.exists():
        return None
    rows = []
    for line in path.read_text().splitlines()[1:]:
        tok = line.split()
        if len(tok) >= 8:
            try:
                rows.append((int(tok[2]), int(tok[3]), float(tok[7])))
            except ValueError:
                continue
    return pd.DataFrame(rows, columns=["event_id_1", "event_id_2", "wt"])


def read_hypodd_results(project_dir, events: pd.DataFrame, reloc_path=None) -> pd.DataFrame:
    """``hypoDD.reloc`` of an exported project -> the table :func:`dd.relocate` returns: the rows
    of ``events`` that were relocated, latitude/longitude/depth_km/time updated (time = the
    input's exact time + HypoDD's origin-time shift), dx_m, dy_m, dz_m (shift east, north,
    down), ex_m, ey_m, ez_m, cluster, n_links (event pairs with data in hypoDD.res, when present),
    n_ct_p/s, n_cc_p/s, rms_ct_s, rms_cc_s, stage='relocate'.  ``reloc_path`` defaults to
    ``project_dir/hypoDD.reloc``; renumbered event ids are undone."""
    project_dir = Path(project_dir)
    reloc_path = Path(reloc_path) if reloc_path is not None else project_dir / "hypoDD.reloc"
    if not reloc_path.exists():
        raise FileNotFoundError(f"{reloc_path}: no relocations (did hypoDD run? see hypoDD.log beside it)")
    r = H.read_reloc(reloc_path)
    ev_dat = H.read_event_dat(project_dir / "event.dat").set_index("event_id")
    res = _read_res(reloc_path.parent / "hypoDD.res")
    ids_file = project_dir / IDS_FILE
    back = pd.read_csv(ids_file).set_index("hypodd_id")["event_id"] if ids_file.exists() else None
    shift_s = (r["time"] - pd.to_datetime(r["event_id"].map(ev_dat["time"]), utc=True)).dt.total_seconds()
    if back is not None:
        r["event_id"] = r["event_id"].map(back)
        if res is not None:
            res["event_id_1"] = res["event_id_1"].map(back)
            res["event_id_2"] = res["event_id_2"].map(back)
    r = r.assign(shift_s=shift_s.to_numpy()).set_index("event_id")
    out = events[events["event_id"].isin(r.index)].copy().reset_index(drop=True)
    idx = out["event_id"]
    if len(out):
        proj = LocalProjection(float(out["latitude"].mean()), float(out["longitude"].mean()))
        x0, y0 = proj.to_xy(out["latitude"].to_numpy(float), out["longitude"].to_numpy(float))
        lat, lon = idx.map(r["latitude"]).to_numpy(float), idx.map(r["longitude"]).to_numpy(float)
        x1, y1 = proj.to_xy(lat, lon)
        dep = idx.map(r["depth_km"]).to_numpy(float)
        out["dx_m"] = (np.asarray(x1) - np.asarray(x0)) * 1000.0
        out["dy_m"] = (np.asarray(y1) - np.asarray(y0)) * 1000.0
        out["dz_m"] = (dep - out["depth_km"].to_numpy(float)) * 1000.0
        out["latitude"], out["longitude"], out["depth_km"] = lat, lon, dep
        if "time" in out:
            out["time"] = pd.to_datetime(out["time"], utc=True) + pd.to_timedelta(
                np.round(idx.map(r["shift_s"]).to_numpy(float) * 1e9).astype(np.int64), unit="ns"
            )
    else:
        for c in ("dx_m", "dy_m", "dz_m"):
            out[c] = np.zeros(0)
    for col in ("ex_m", "ey_m", "ez_m", "cluster", "n_ct_p", "n_ct_s", "n_cc_p", "n_cc_s", "rms_ct_s", "rms_cc_s"):
        out[col] = idx.map(r[col]).to_numpy()
    if res is not None and len(res):
        u = res[res["wt"] > 0][["event_id_1", "event_id_2"]].drop_duplicates()
        both = pd.concat(
            [
                u.rename(columns={"event_id_1": "a", "event_id_2": "b"}),
                u.rename(columns={"event_id_1": "b", "event_id_2": "a"}),
            ]
        ).drop_duplicates()
        out["n_links"] = idx.map(both.groupby("a").size()).fillna(0).astype(np.int64).to_numpy()
    else:
        out["n_links"] = -1
    out["stage"] = "relocate"
    return out


def relocate_with_backend(
    events: pd.DataFrame,
    picks: pd.DataFrame,
    stations: pd.DataFrame,
    model: LayeredModel,
    dtcc: pd.DataFrame | None = None,
    params=None,
    work_dir=None,
    backend: str = "builtin",
    exe: str | None = None,
    timeout_s: float | None = None,
) -> pd.DataFrame:
    """Relocate ``events`` with the configured backend; returns the relocated events (the columns
    :func:`dd.relocate` returns; ``out.attrs['relocate_log']`` holds the log lines).

    ``builtin``: :func:`dd.relocate` in memory.  ``hypodd``: the project is exported into
    ``work_dir`` (e.g. ``RUN/relocate-hypodd/``), the executable ``exe`` (config
    ``relocate.hypodd_exe``) runs on it, and ``hypoDD.reloc`` is read back."""
    if backend == "builtin":
        return relocate(events, picks, stations, model, dtcc=dtcc, params=params)
    if backend != "hypodd":
        raise ValueError(f"relocate.backend must be 'builtin' or 'hypodd', got {backend!r}")
    name = exe or "hypoDD"
    if find_hypodd(name) is None:
        raise HypoDDNotFound(
            f"relocate.backend is 'hypodd' but the executable {name!r} (config relocate.hypodd_exe) is not on "
            "PATH; install HypoDD (Waldhauser), set relocate.hypodd_exe to its name or path, or use "
            "relocate.backend: builtin"
        )
    if work_dir is None:
        raise ValueError("relocate_with_backend: backend 'hypodd' needs a work_dir for the project files")
    work = Path(work_dir)
    inp = export_hypodd_project(events, picks, stations, model, dtcc, params, work)
    out_dir = work / "out"
    for f in ("hypoDD.reloc", "hypoDD.res", "hypoDD.loc", "hypoDD.sta", "hypoDD.log"):
        if (out_dir / f).exists():
            (out_dir / f).unlink()
    run_hypodd(inp, out_dir, exe=name, timeout_s=timeout_s)
    out = read_hypodd_results(work, events, reloc_path=out_dir / "hypoDD.reloc")
    logs = []
    for f in ("hypoDD.log", "hypoDD.stdout"):
        if (out_dir / f).exists():
            logs += (out_dir / f).read_text(errors="replace").splitlines()
    out.attrs["relocate_log"] = logs
    return out
