"""Catalog writers: the files a user takes away from a run (``RUN/catalogs/``).

:func:`write_catalogs` writes, for one events table and its picks:

=============== ==============================================================================
events.parquet  EVENTS schema + extra columns; Arrow metadata ``quakescale.manifest``
picks.parquet   PICKS schema + ``event_id`` (+ ``residual_s``); same metadata
events.csv      one row per event, ISO-8601 UTC times; first line ``# ... manifest: REF``
catalog.xml     QuakeML 1.2 (ObsPy): Event/Origin/Magnitude/Pick/Arrival, resource ids
                ``smi:quakescale/...``; the manifest in the catalog's comment + creation info
hypoDD.reloc    HypoDD reloc columns ``ID LAT LON DEPTH X Y Z EX EY EZ YR MO DY HR MI SC MAG
                NCCP NCCS NCTP NCTS RCC RCT CID`` after one ``#`` header line naming the manifest
                (X/Y/Z/EX/EY/EZ in metres; X/Y/Z relative to the catalog's centroid)
catalog.arc     Hypoinverse Y2000 archive (hyp1.40 layout) through the ``arc_writer`` hook; the
                pipeline passes :func:`quakescale.formats.hypoinverse.write_arc_catalog`
=============== ==============================================================================

Every file is written atomically (temporary name, then rename).  Events columns:
``event_id, time, latitude, longitude, depth_km, magnitude, mag_type, n_stations, n_p, n_s,
rms_s, stage`` and optionally ``erh_km, erz_km, gap_deg, x_km, y_km, cluster_id`` (and, for
hypoDD, ``n_ccp, n_ccs, n_ctp, n_cts, rms_cc_s, rms_ct_s``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .. import __version__
from .. import schema as S
from ..errors import QuakeScaleError
from ..geo import LocalProjection, azimuth_deg, epicentral_km
from ..rundir import atomic_path

log = logging.getLogger(__name__)

ALL_FORMATS = ("parquet", "csv", "quakeml", "hypodd", "arc")
SMI = "smi:quakescale"
MANIFEST_KEY = "quakescale.manifest"

FILE_NAMES = {
    "events_parquet": "events.parquet",
    "picks_parquet": "picks.parquet",
    "csv": "events.csv",
    "quakeml": "catalog.xml",
    "hypodd": "hypoDD.reloc",
    "arc": "catalog.arc",
}

# arc_writer(events, picks, stations, out_path, manifest_ref) -> path written
ArcWriter = Callable[[pd.DataFrame, pd.DataFrame, pd.DataFrame, Path, str], object]


class CatalogWriteError(QuakeScaleError, ValueError):
    pass


# --------------------------------------------------------------------------- tables


def _utc_ns(s: pd.Series, where: str) -> pd.Series:
    try:
        t = pd.to_datetime(s, utc=True)
    except (ValueError, TypeError) as exc:
        raise CatalogWriteError(f"{where}: column 'time' is not a time: {exc}") from exc
    return t.astype("datetime64[ns, UTC]")


def prepare_events(events: pd.DataFrame) -> pd.DataFrame:
    """Check and complete an events table: required columns present, optional ones filled."""
    need = ["event_id", "time", "latitude", "longitude", "depth_km"]
    miss = [c for c in need if c not in events.columns]
    if miss:
        raise CatalogWriteError(f"events table: missing column(s) {miss}; have {list(events.columns)}")
    ev = events.copy()
    ev["time"] = _utc_ns(ev["time"], "events table")
    defaults = {
        "magnitude": np.nan,
        "mag_type": "ML",
        "n_stations": 0,
        "n_p": 0,
        "n_s": 0,
        "rms_s": np.nan,
        "stage": "",
    }
    for c, v in defaults.items():
        if c not in ev.columns:
            ev[c] = v
    if ev["event_id"].duplicated().any():
        dup = ev.loc[ev["event_id"].duplicated(), "event_id"].iloc[0]
        raise CatalogWriteError(f"events table: event_id {dup} appears more than once")
    bad = ev[["latitude", "longitude", "depth_km"]].isna().any(axis=1)
    if bad.any():
        raise CatalogWriteError(
            f"events table: event_id {ev.loc[bad, 'event_id'].iloc[0]} has no latitude/longitude/depth_km"
        )
    return ev.sort_values(["time", "event_id"], kind="stable").reset_index(drop=True)


def prepare_picks(picks: pd.DataFrame | None) -> pd.DataFrame:
    """Picks table for the catalog: PICKS schema columns + ``event_id`` (+ ``residual_s``).

    Only ``event_id, station_id, phase, time`` are required; other PICKS columns are filled
    (network/station from ``station_id``, nulls elsewhere)."""
    cols = list(S.PICKS.names) + ["event_id"]
    if picks is None or len(picks) == 0:
        out = pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
        out["time"] = pd.Series([], dtype="datetime64[ns, UTC]")
        out["event_id"] = pd.Series([], dtype="int64")
        return out
    need = ["event_id", "station_id", "phase", "time"]
    miss = [c for c in need if c not in picks.columns]
    if miss:
        raise CatalogWriteError(f"picks table: missing column(s) {miss}; have {list(picks.columns)}")
    pk = picks.copy()
    pk["time"] = _utc_ns(pk["time"], "picks table")
    sid = pk["station_id"].astype(str)
    if "network" not in pk:
        pk["network"] = sid.str.split(".").str[0]
    if "station" not in pk:
        pk["station"] = sid.str.split(".").str[-1]
    for c, v in {
        "location": "",
        "channel": "",
        "probability": np.nan,
        "snr": np.nan,
        "amp_wa_mm": np.nan,
        "method": "",
        "model": "",
    }.items():
        if c not in pk:
            pk[c] = v
    return pk.sort_values(["event_id", "time"], kind="stable").reset_index(drop=True)


def _with_manifest(table: pa.Table, manifest_ref: str) -> pa.Table:
    md = dict(table.schema.metadata or {})
    md[MANIFEST_KEY.encode()] = str(manifest_ref).encode()
    md[b"quakescale.version"] = __version__.encode()
    return table.replace_schema_metadata(md)


def _write_parquet(table: pa.Table, path: Path) -> Path:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path


def write_events_parquet(ev: pd.DataFrame, path, manifest_ref: str) -> Path:
    t = S.conform(ev, S.EVENTS, where=f"events table for {path}")
    return _write_parquet(_with_manifest(t, manifest_ref), Path(path))


def write_picks_parquet(pk: pd.DataFrame, path, manifest_ref: str) -> Path:
    t = S.conform(pk, S.PICKS, where=f"picks table for {path}")
    return _write_parquet(_with_manifest(t, manifest_ref), Path(path))


def _header(kind: str, manifest_ref: str) -> str:
    return f"# QuakeScale {__version__} {kind}; manifest: {manifest_ref}\n"


def write_events_csv(ev: pd.DataFrame, path, manifest_ref: str) -> Path:
    out = ev.copy()
    out["time"] = out["time"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            fh.write(_header("events catalog (CSV, UTC times)", manifest_ref))
            out.to_csv(fh, index=False, float_format="%.9g")
    return path


# --------------------------------------------------------------------------- hypoDD


def _split_time(t: pd.Series):
    """Times rounded to ms -> (yr, mo, dy, hr, mi, sec) arrays (no 60.000 seconds)."""
    tr = t.dt.round("ms")
    sec = tr.dt.second + tr.dt.microsecond / 1e6
    return tr.dt.year, tr.dt.month, tr.dt.day, tr.dt.hour, tr.dt.minute, sec


def _col(ev: pd.DataFrame, name: str, default, scale: float = 1.0) -> np.ndarray:
    if name in ev.columns:
        return pd.to_numeric(ev[name], errors="coerce").fillna(default).to_numpy(float) * scale
    return np.full(len(ev), float(default))


def hypodd_reloc_text(ev: pd.DataFrame, manifest_ref: str) -> str:
    """HypoDD ``hypoDD.reloc`` text for an events table (see module docstring)."""
    n = len(ev)
    lines = [
        _header(
            "events catalog (hypoDD.reloc columns ID LAT LON DEPTH X Y Z EX EY EZ YR MO DY HR MI SC MAG "
            "NCCP NCCS NCTP NCTS RCC RCT CID; X..EZ in m)",
            manifest_ref,
        )
    ]
    if n == 0:
        return "".join(lines)
    lat = ev["latitude"].to_numpy(float)
    lon = ev["longitude"].to_numpy(float)
    dep = ev["depth_km"].to_numpy(float)
    if "x_km" in ev.columns and "y_km" in ev.columns and ev[["x_km", "y_km"]].notna().all().all():
        x = ev["x_km"].to_numpy(float)
        y = ev["y_km"].to_numpy(float)
    else:
        x, y = LocalProjection(float(np.mean(lat)), float(np.mean(lon))).to_xy(lat, lon)
    x = (x - x.mean()) * 1000.0
    y = (y - y.mean()) * 1000.0
    z = (dep - dep.mean()) * 1000.0
    # EX/EY/EZ from ex_km/ey_km/ez_km; else erh_km on both horizontal axes and erz_km
    ex = _col(ev, "ex_km", np.nan, 1000.0)
    ey = _col(ev, "ey_km", np.nan, 1000.0)
    erh = _col(ev, "erh_km", 0.0, 1000.0)
    ex = np.where(np.isnan(ex), erh, ex)
    ey = np.where(np.isnan(ey), erh, ey)
    ez = _col(ev, "ez_km", np.nan, 1000.0)
    ez = np.where(np.isnan(ez), _col(ev, "erz_km", 0.0, 1000.0), ez)
    mag = _col(ev, "magnitude", 0.0)
    nccp, nccs, nctp, ncts = (_col(ev, c, 0).astype(int) for c in ("n_ccp", "n_ccs", "n_ctp", "n_cts"))
    rcc = _col(ev, "rms_cc_s", -9.0)  # -9: hypoDD's own "no data" value
    rct = _col(ev, "rms_ct_s", -9.0)
    cid = _col(ev, "cluster_id", 0).astype(int)
    yr, mo, dy, hr, mi, sc = (np.asarray(a) for a in _split_time(ev["time"]))
    eid = ev["event_id"].to_numpy(np.int64)
    fmt = (
        "{:9d} {:10.6f} {:11.6f} {:9.3f} {:10.1f} {:10.1f} {:10.1f} {:8.1f} {:8.1f} {:8.1f} "
        "{:4d} {:2d} {:2d} {:2d} {:2d} {:6.3f} {:4.1f} {:5d} {:5d} {:5d} {:5d} {:6.3f} {:6.3f} {:3d}\n"
    )
    for i in range(n):
        lines.append(
            fmt.format(
                int(eid[i]),
                lat[i],
                lon[i],
                dep[i],
                x[i],
                y[i],
                z[i],
                ex[i],
                ey[i],
                ez[i],
                int(yr[i]),
                int(mo[i]),
                int(dy[i]),
                int(hr[i]),
                int(mi[i]),
                sc[i],
                mag[i],
                int(nccp[i]),
                int(nccs[i]),
                int(nctp[i]),
                int(ncts[i]),
                rcc[i],
                rct[i],
                int(cid[i]),
            )
        )
    return "".join(lines)


def write_hypodd_reloc(ev: pd.DataFrame, path, manifest_ref: str) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(hypodd_reloc_text(ev, manifest_ref))
    return path


# --------------------------------------------------------------------------- QuakeML


def build_obspy_catalog(ev: pd.DataFrame, pk: pd.DataFrame, stations: pd.DataFrame | None, manifest_ref: str):
    """An ObsPy ``Catalog`` of the events, with their picks and arrivals."""
    from obspy import UTCDateTime
    from obspy.core.event import (
        Arrival,
        Catalog,
        Comment,
        CreationInfo,
        Event,
        EventDescription,
        Magnitude,
        Origin,
        OriginQuality,
        OriginUncertainty,
        Pick,
        QuantityError,
        ResourceIdentifier,
        WaveformStreamID,
    )

    now = UTCDateTime()
    ci = CreationInfo(
        agency_id="QuakeScale", author=f"QuakeScale {__version__}", creation_time=now, version=__version__
    )
    manifest_note = f"manifest: {manifest_ref}"
    cat = Catalog(
        resource_id=ResourceIdentifier(f"{SMI}/catalog"),
        creation_info=ci,
        description=f"QuakeScale catalog ({manifest_note})",
        comments=[Comment(text=manifest_note, resource_id=ResourceIdentifier(f"{SMI}/catalog/comment/manifest"))],
    )

    sta = {}
    if stations is not None and len(stations):
        for r in stations.itertuples(index=False):
            sta[str(r.station_id)] = (float(r.latitude), float(r.longitude))

    groups = {}
    if len(pk):
        for eid, g in pk.groupby("event_id", sort=False):
            groups[int(eid)] = g

    has = {c: c in ev.columns for c in ("erh_km", "erz_km", "gap_deg")}
    for r in ev.itertuples(index=False):
        eid = int(r.event_id)
        t = UTCDateTime(ns=int(pd.Timestamp(r.time).value))
        o_id = f"{SMI}/origin/{eid}"
        q = OriginQuality(
            used_station_count=int(r.n_stations) if pd.notna(r.n_stations) else None,
            associated_phase_count=int((r.n_p or 0) + (r.n_s or 0)) if pd.notna(r.n_p) and pd.notna(r.n_s) else None,
            standard_error=float(r.rms_s) if pd.notna(r.rms_s) else None,
            azimuthal_gap=float(r.gap_deg) if has["gap_deg"] and pd.notna(r.gap_deg) else None,
        )
        org = Origin(
            resource_id=ResourceIdentifier(o_id),
            time=t,
            latitude=float(r.latitude),
            longitude=float(r.longitude),
            depth=float(r.depth_km) * 1000.0,
            depth_type="from location",
            quality=q,
            evaluation_mode="automatic",
            creation_info=CreationInfo(author=f"QuakeScale {__version__}", creation_time=now),
            comments=[Comment(text=f"stage: {r.stage}")] if str(r.stage) else [],
        )
        if has["erz_km"] and pd.notna(r.erz_km):
            org.depth_errors = QuantityError(uncertainty=float(r.erz_km) * 1000.0)
        if has["erh_km"] and pd.notna(r.erh_km):
            org.origin_uncertainty = OriginUncertainty(
                horizontal_uncertainty=float(r.erh_km) * 1000.0, preferred_description="horizontal uncertainty"
            )
        e = Event(
            resource_id=ResourceIdentifier(f"{SMI}/event/{eid}"),
            event_type="earthquake",
            creation_info=CreationInfo(author=f"QuakeScale {__version__}", creation_time=now),
            descriptions=[EventDescription(text=f"QuakeScale event {eid}", type="earthquake name")],
        )
        e.origins.append(org)
        e.preferred_origin_id = org.resource_id
        if pd.notna(r.magnitude):
            m = Magnitude(
                resource_id=ResourceIdentifier(f"{SMI}/magnitude/{eid}"),
                mag=float(r.magnitude),
                magnitude_type=str(r.mag_type or "ML"),
                origin_id=org.resource_id,
                station_count=int(r.n_stations) if pd.notna(r.n_stations) else None,
            )
            e.magnitudes.append(m)
            e.preferred_magnitude_id = m.resource_id
        g = groups.get(eid)
        if g is not None:
            has_res = "residual_s" in g.columns
            for j, p in enumerate(g.itertuples(index=False)):
                net = str(p.network or "")
                stn = str(p.station or "")
                loc = "" if pd.isna(p.location) else str(p.location)
                cha = "" if pd.isna(p.channel) else str(p.channel)
                p_id = ResourceIdentifier(f"{SMI}/pick/{eid}/{j}")
                e.picks.append(
                    Pick(
                        resource_id=p_id,
                        time=UTCDateTime(ns=int(pd.Timestamp(p.time).value)),
                        waveform_id=WaveformStreamID(
                            network_code=net, station_code=stn, location_code=loc, channel_code=cha or None
                        ),
                        phase_hint=str(p.phase),
                        evaluation_mode="automatic",
                        method_id=ResourceIdentifier(f"{SMI}/method/{p.method}") if str(p.method or "") else None,
                    )
                )
                arr = Arrival(
                    resource_id=ResourceIdentifier(f"{SMI}/arrival/{eid}/{j}"), pick_id=p_id, phase=str(p.phase)
                )
                if has_res and pd.notna(p.residual_s):
                    arr.time_residual = float(p.residual_s)
                ll = sta.get(str(p.station_id))
                if ll is not None:
                    arr.distance = float(epicentral_km(r.latitude, r.longitude, ll[0], ll[1])) / 111.19492664455873
                    arr.azimuth = float(azimuth_deg(r.latitude, r.longitude, ll[0], ll[1]))
                org.arrivals.append(arr)
        cat.events.append(e)
    return cat


def write_quakeml(ev: pd.DataFrame, pk: pd.DataFrame, stations, path, manifest_ref: str) -> Path:
    cat = build_obspy_catalog(ev, pk, stations, manifest_ref)
    path = Path(path)
    with atomic_path(path) as tmp:
        cat.write(str(tmp), format="QUAKEML")
    return path


# --------------------------------------------------------------------------- all


def write_catalogs(
    events: pd.DataFrame,
    picks: pd.DataFrame | None,
    stations: pd.DataFrame | None,
    out_dir,
    manifest_ref: str,
    formats: Iterable[str] = ALL_FORMATS,
    arc_writer: ArcWriter | None = None,
) -> dict[str, Path]:
    """Write the catalog in ``formats`` under ``out_dir``; return ``{kind: path}``.

    ``manifest_ref`` names the run manifest the catalog came from (e.g. the path of
    ``RUN/manifest.json`` or its hash); every file records it.  ``"arc"`` is written only when
    ``arc_writer`` is given, called as ``arc_writer(events, picks, stations, path, manifest_ref)``.
    Keys of the result: ``events_parquet, picks_parquet, csv, quakeml, hypodd, arc``.
    """
    formats = tuple(formats)
    unknown = sorted(set(formats) - set(ALL_FORMATS))
    if unknown:
        raise CatalogWriteError(f"unknown catalog format(s) {unknown}; known: {list(ALL_FORMATS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ev = prepare_events(events)
    pk = prepare_picks(picks)
    if len(pk):
        orphans = set(pk["event_id"].astype("int64")) - set(ev["event_id"].astype("int64"))
        if orphans:
            raise CatalogWriteError(f"picks table: event_id(s) {sorted(orphans)[:5]} not in the events table")
    done: dict[str, Path] = {}
    if "parquet" in formats:
        done["events_parquet"] = write_events_parquet(ev, out_dir / FILE_NAMES["events_parquet"], manifest_ref)
        done["picks_parquet"] = write_picks_parquet(pk, out_dir / FILE_NAMES["picks_parquet"], manifest_ref)
    if "csv" in formats:
        done["csv"] = write_events_csv(ev, out_dir / FILE_NAMES["csv"], manifest_ref)
    if "quakeml" in formats:
        done["quakeml"] = write_quakeml(ev, pk, stations, out_dir / FILE_NAMES["quakeml"], manifest_ref)
    if "hypodd" in formats:
        done["hypodd"] = write_hypodd_reloc(ev, out_dir / FILE_NAMES["hypodd"], manifest_ref)
    if "arc" in formats:
        if arc_writer is None:
            log.info("catalog.arc not written: no arc_writer given")
        else:
            path = out_dir / FILE_NAMES["arc"]
            res = arc_writer(ev, pk, stations, path, manifest_ref)
            done["arc"] = Path(res) if isinstance(res, (str, Path)) else path
    return done


def read_manifest_ref(path) -> str | None:
    """The manifest reference recorded in a catalog file written by :func:`write_catalogs`."""
    path = Path(path)
    if path.suffix == ".parquet":
        md = pq.read_schema(path).metadata or {}
        v = md.get(MANIFEST_KEY.encode())
        return v.decode() if v is not None else None
    if path.suffix == ".xml":
        from obspy import read_events

        cat = read_events(str(path))
        for c in cat.comments:
            if c.text.startswith("manifest: "):
                return c.text[len("manifest: ") :]
        return None
    with open(path) as fh:
        first = fh.readline()
    if first.startswith("#") and "manifest: " in first:
        return first.split("manifest: ", 1)[1].strip()
    return None
