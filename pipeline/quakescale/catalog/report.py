"""The run report: one self-contained HTML page with the seed paper's figures for a user's run.

:func:`make_report` writes ``RUN/catalogs/report.html`` (PNG figures embedded as base64, no
scripts, no network) with:

- a table of catalog counts (events, picks, time span, Mc, b) and, when ``RUN/summary.json``
  exists, its scalar entries;
- a map of epicentres coloured by depth with the stations and the two profile lines;
- two depth cross-sections, along and across the main trend (first principal axis of the
  epicentres), like the seed's Figure 7;
- the frequency-magnitude distribution (cumulative and non-cumulative; Mc by maximum curvature
  + 0.2, Aki-Utsu b with its Shi-Bolt error), like Figure 6;
- magnitude-time and the seismicity rate per hour, like Figure 8;
- the pick residual histogram (when picks have ``residual_s``);
- location errors against a known truth (when ``truth_events`` is given).

Figures are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas, so the global
pyplot backend is never touched.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .. import __version__
from ..geo import LocalProjection
from ..rundir import write_text
from .compare import compare_summary, match_catalogs
from .fmd import fmd_counts, fmd_summary

log = logging.getLogger(__name__)

DPI = 110


# --------------------------------------------------------------------------- helpers


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _naive_utc(t: pd.Series) -> pd.Series:
    return pd.Series(pd.to_datetime(t, utc=True)).dt.tz_localize(None)


def principal_axes(lat, lon):
    """Centre (lat0, lon0), strike azimuth (deg from north of the main trend), and the along-
    and across-trend coordinates (km) of the epicentres, from a PCA of local x/y."""
    lat = np.asarray(lat, float)
    lon = np.asarray(lon, float)
    lat0, lon0 = float(np.median(lat)), float(np.median(lon))
    proj = LocalProjection(lat0, lon0)
    x, y = proj.to_xy(lat, lon)
    xy = np.column_stack([x - np.mean(x), y - np.mean(y)])
    if len(lat) >= 3 and np.ptp(xy, axis=0).max() > 0:
        w, v = np.linalg.eigh(np.cov(xy.T))
        u = v[:, np.argmax(w)]
    else:
        u = np.array([0.0, 1.0])
    if u[0] < 0 or (u[0] == 0 and u[1] < 0):  # point the axis eastward: azimuth in [0, 180)
        u = -u
    az = float(np.degrees(np.arctan2(u[0], u[1])) % 360.0)
    perp = np.array([u[1], -u[0]])  # 90 deg clockwise from the trend
    cx, cy = float(np.mean(x)), float(np.mean(y))
    along = (np.column_stack([x, y]) - [cx, cy]) @ u
    across = (np.column_stack([x, y]) - [cx, cy]) @ perp
    clat, clon = proj.to_latlon(cx, cy)
    return {
        "lat0": float(clat),
        "lon0": float(clon),
        "proj": proj,
        "cx": cx,
        "cy": cy,
        "u": u,
        "perp": perp,
        "azimuth_deg": az,
        "along_km": along,
        "across_km": across,
    }


def _flatten(d, prefix="") -> list[tuple[str, object]]:
    rows = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            rows.extend(_flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            if len(v) <= 8 and all(not isinstance(x, (dict, list)) for x in v):
                rows.append((key, ", ".join(str(x) for x in v)))
            else:
                rows.append((key, f"[{len(v)} items]"))
        else:
            rows.append((key, v))
    return rows


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if not np.isfinite(v):
            return "–"
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.6g}"
    return str(v)


def _table(rows, head=("quantity", "value")) -> str:
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


# --------------------------------------------------------------------------- figures


def fig_map(ev: pd.DataFrame, stations: pd.DataFrame | None, pca: dict) -> Figure:
    fig = Figure(figsize=(7.5, 6.5))
    ax = fig.add_subplot(111)
    order = np.argsort(ev["magnitude"].fillna(-9).to_numpy()) if "magnitude" in ev else np.arange(len(ev))
    e = ev.iloc[order]
    mag = e["magnitude"].fillna(e["magnitude"].min() if e["magnitude"].notna().any() else 0).to_numpy(float)
    size = 4 + 6 * np.clip(mag - np.nanmin(mag), 0, 6) ** 1.6 if len(mag) else 4
    sc = ax.scatter(
        e["longitude"],
        e["latitude"],
        c=e["depth_km"],
        s=size,
        cmap="viridis_r",
        edgecolors="k",
        linewidths=0.2,
        alpha=0.85,
        rasterized=len(e) > 2000,
        zorder=2,
    )
    fig.colorbar(sc, ax=ax, label="depth (km)", shrink=0.8)
    if stations is not None and len(stations):
        ax.scatter(
            stations["longitude"],
            stations["latitude"],
            marker="^",
            s=70,
            c="tab:red",
            edgecolors="k",
            linewidths=0.6,
            zorder=3,
            label="stations",
        )
        if len(stations) <= 60:
            for r in stations.itertuples(index=False):
                ax.annotate(
                    str(r.station_id).split(".")[-1],
                    (r.longitude, r.latitude),
                    xytext=(3, 3),
                    textcoords="offset points",
                    fontsize=7,
                    zorder=4,
                )
    # profile lines through the centre, spanning the seismicity
    proj = pca["proj"]
    half_a = 1.1 * max(float(np.max(np.abs(pca["along_km"]))) if len(ev) else 1.0, 1.0)
    half_c = 1.1 * max(float(np.max(np.abs(pca["across_km"]))) if len(ev) else 1.0, 1.0)
    for vec, half, name in ((pca["u"], half_a, "A"), (pca["perp"], half_c, "B")):
        xs = pca["cx"] + np.array([-half, half]) * vec[0]
        ys = pca["cy"] + np.array([-half, half]) * vec[1]
        la, lo = proj.to_latlon(xs, ys)
        ax.plot(lo, la, "k--", lw=1.3, zorder=3)
        box = {"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8}
        ax.annotate(name, (lo[0], la[0]), fontsize=10, weight="bold", ha="center", va="center", bbox=box, zorder=5)
        ax.annotate(
            name + "'", (lo[1], la[1]), fontsize=10, weight="bold", ha="center", va="center", bbox=box, zorder=5
        )
    ax.set_aspect(1.0 / np.cos(np.radians(pca["lat0"])))
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.set_title(f"Epicentres ({len(ev)} events), coloured by depth")
    if stations is not None and len(stations):
        ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def fig_sections(ev: pd.DataFrame, pca: dict) -> Figure:
    fig = Figure(figsize=(10, 4.2))
    t = _naive_utc(ev["time"])
    t_h = ((t - t.min()).dt.total_seconds() / 3600.0).to_numpy()
    dep = ev["depth_km"].to_numpy(float)
    zmax = max(float(np.nanmax(dep)) * 1.05, 1.0)
    zmin = min(float(np.nanmin(dep)) - 0.5, 0.0)
    axes = []
    for k, (coord, name, az) in enumerate(
        (
            (pca["along_km"], "A–A' (along trend)", pca["azimuth_deg"]),
            (pca["across_km"], "B–B' (across trend)", (pca["azimuth_deg"] + 90.0) % 360.0),
        )
    ):
        ax = fig.add_subplot(1, 2, k + 1, sharey=axes[0] if axes else None)
        sc = ax.scatter(coord, dep, c=t_h, s=6, cmap="plasma", alpha=0.8, rasterized=len(ev) > 2000)
        ax.set_ylim(zmax, zmin)
        ax.set_xlabel(f"distance along azimuth {az:.0f}° (km)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        axes.append(ax)
    axes[0].set_ylabel("depth (km)")
    fig.colorbar(sc, ax=axes, label="hours since first event", shrink=0.9)
    return fig


def fig_fmd(mags: np.ndarray, fs: dict) -> Figure:
    fig = Figure(figsize=(6.5, 4.8))
    ax = fig.add_subplot(111)
    c, non, cum = fmd_counts(mags, fs["dm"])
    ax.semilogy(c[cum > 0], cum[cum > 0], "o", color="tab:red", ms=5, label="cumulative N(≥M)")
    ax.semilogy(c[non > 0], non[non > 0], "^", color="tab:blue", ms=5, mfc="none", label="non-cumulative")
    title = f"Frequency–magnitude distribution (N = {fs['n']})"
    if fs["mc"] is not None:
        ax.axvline(
            fs["mc"], color="gray", ls="--", lw=1, label=f"Mc = {fs['mc']:.1f} (MAXC + {fs['mc_correction']:.1f})"
        )
    if fs["b"] is not None:
        mm = np.linspace(fs["mc"], c.max(), 20)
        ax.semilogy(
            mm,
            10 ** (fs["a"] - fs["b"] * mm),
            "k-",
            lw=1.2,
            label=f"b = {fs['b']:.2f} ± {fs['b_err']:.2f} (Aki-Utsu ML)",
        )
    ax.set_xlabel("magnitude")
    ax.set_ylabel("number of events")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return fig


def fig_time(ev: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(10, 5.5))
    ax1 = fig.add_subplot(211)
    ax2 = fig.add_subplot(212, sharex=ax1)
    t = _naive_utc(ev["time"])
    if ev["magnitude"].notna().any():
        ax1.scatter(t, ev["magnitude"], s=5, c="tab:blue", alpha=0.7, rasterized=len(ev) > 2000)
        ax1.set_ylabel("magnitude")
    else:
        ax1.text(0.5, 0.5, "no magnitudes", transform=ax1.transAxes, ha="center")
    ax1.set_title("Magnitude–time")
    ax1.grid(alpha=0.3)
    hours = t.dt.floor("h")
    counts = hours.value_counts().sort_index()
    rng = pd.date_range(hours.min(), hours.max() + pd.Timedelta(hours=1), freq="h")
    counts = counts.reindex(rng, fill_value=0)
    ax2.step(counts.index, counts.to_numpy(), where="post", color="k", lw=1)
    ax2.fill_between(counts.index, counts.to_numpy(), step="post", color="tab:orange", alpha=0.5)
    ax2.set_ylabel("events per hour")
    ax2.set_xlabel("time (UTC)")
    ax2.set_title("Seismicity rate")
    ax2.grid(alpha=0.3)
    fig.autofmt_xdate()
    return fig


def fig_residuals(picks: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.add_subplot(111)
    r = picks["residual_s"].to_numpy(float)
    ok = np.isfinite(r)
    lim = max(float(np.quantile(np.abs(r[ok]), 0.99)), 0.1) if ok.any() else 1.0
    bins = np.linspace(-lim, lim, 41)
    for ph, col in (("P", "tab:blue"), ("S", "tab:red")):
        x = r[ok & (picks["phase"].astype(str).str.upper().str.startswith(ph)).to_numpy()]
        if len(x):
            ax.hist(
                np.clip(x, -lim, lim),
                bins=bins,
                histtype="stepfilled",
                alpha=0.45,
                color=col,
                label=f"{ph}: n={len(x)}, rms={np.sqrt(np.mean(x**2)):.3f} s, median={np.median(x):+.3f} s",
            )
    ax.set_xlabel("travel-time residual (s), observed − computed")
    ax.set_ylabel("picks")
    ax.set_title("Pick residuals of located events")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def fig_truth(m: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(11, 3.8))
    specs = (
        ("dh_km", "epicentral error (km)", False),
        ("dz_km", "depth error, cat − truth (km)", True),
        ("dt_s", "origin-time error, cat − truth (s)", True),
    )
    for k, (col, label, signed) in enumerate(specs):
        ax = fig.add_subplot(1, 3, k + 1)
        x = m[col].to_numpy(float)
        x = x[np.isfinite(x)]
        if len(x):
            ax.hist(x, bins=30, color="tab:green", alpha=0.7, edgecolor="k", linewidth=0.3)
            med = np.median(np.abs(x))
            ax.set_title(f"median |·| = {med:.3g}" + (f", mean = {np.mean(x):+.3g}" if signed else ""), fontsize=9)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    fig.axes[0].set_ylabel("matched events")
    fig.suptitle(f"Location errors against the truth ({len(m)} matched events)")
    return fig


# --------------------------------------------------------------------------- report


HEADINGS = {
    "map": "Map",
    "sections": "Depth cross-sections",
    "fmd": "Frequency–magnitude distribution",
    "time": "Seismicity in time",
    "residuals": "Pick residuals",
    "truth": "Location errors against the truth",
}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1150px;\
color:#222;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.2em;\
border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
.meta{color:#666;font-size:.9em}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0} \
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f3f3f3} td:nth-child(2){font-variant-numeric:tabular-nums}
figure{margin:1em 0} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.9em;margin-top:.3em}
.cols{display:flex;flex-wrap:wrap;gap:2em} .cols>div{flex:1 1 420px}
.note{color:#a15c00}
"""


def _overview_rows(ev: pd.DataFrame, picks: pd.DataFrame | None, fs: dict | None, pca: dict | None) -> list:
    rows = [("events", len(ev))]
    if picks is not None:
        rows.append(("picks of these events", len(picks)))
        if len(picks) and "phase" in picks:
            ph = picks["phase"].astype(str).str.upper().str[0].value_counts()
            rows.append(("P / S picks", f"{int(ph.get('P', 0))} / {int(ph.get('S', 0))}"))
    if len(ev):
        t = pd.to_datetime(ev["time"], utc=True)
        rows += [
            ("first event (UTC)", t.min().strftime("%Y-%m-%d %H:%M:%S")),
            ("last event (UTC)", t.max().strftime("%Y-%m-%d %H:%M:%S")),
            ("latitude range (°)", f"{ev['latitude'].min():.4f} – {ev['latitude'].max():.4f}"),
            ("longitude range (°)", f"{ev['longitude'].min():.4f} – {ev['longitude'].max():.4f}"),
            ("depth range (km)", f"{ev['depth_km'].min():.2f} – {ev['depth_km'].max():.2f}"),
            ("median depth (km)", float(ev["depth_km"].median())),
        ]
        if "stage" in ev and ev["stage"].notna().any():
            rows.append(("stage", ", ".join(f"{k}: {v}" for k, v in ev["stage"].value_counts().items())))
        if "rms_s" in ev and ev["rms_s"].notna().any():
            rows.append(("median event rms (s)", float(ev["rms_s"].median())))
        if ev["magnitude"].notna().any():
            rows.append(("magnitude range", f"{ev['magnitude'].min():.2f} – {ev['magnitude'].max():.2f}"))
    if fs is not None:
        rows.append(("Mc (maximum curvature + 0.2)", fs["mc"]))
        rows.append(
            ("b-value (Aki-Utsu) ± Shi-Bolt", f"{fs['b']:.3f} ± {fs['b_err']:.3f}" if fs["b"] is not None else None)
        )
        rows.append(("events with M ≥ Mc", fs["n_above_mc"]))
    if pca is not None:
        rows.append(("main trend azimuth (°, PCA)", pca["azimuth_deg"]))
    return rows


def make_report(
    run_dir,
    events: pd.DataFrame,
    picks: pd.DataFrame | None = None,
    stations: pd.DataFrame | None = None,
    truth_events: pd.DataFrame | None = None,
    out=None,
    title: str | None = None,
    max_dt_s: float = 1.5,
    max_dist_km: float = 5.0,
) -> Path:
    """Write the HTML run report and return its path (default ``run_dir/catalogs/report.html``).

    ``events`` needs ``time, latitude, longitude, depth_km`` (``magnitude`` optional);
    ``picks`` may carry ``residual_s``; ``stations`` needs ``station_id, latitude, longitude``;
    ``truth_events`` (same columns as events) is matched with ``max_dt_s``/``max_dist_km``."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "catalogs" / "report.html"
    miss = [c for c in ("time", "latitude", "longitude", "depth_km") if c not in events.columns]
    if miss:
        raise ValueError(f"make_report: events table lacks column(s) {miss}")
    ev = events.copy()
    if "magnitude" not in ev:
        ev["magnitude"] = np.nan
    ev["time"] = pd.to_datetime(ev["time"], utc=True)
    ev = ev.sort_values("time", kind="stable").reset_index(drop=True)

    figures: list[tuple[str, str, str]] = []  # (id, caption, base64 png)
    notes: list[str] = []
    fs = pca = None
    if len(ev):
        pca = principal_axes(ev["latitude"], ev["longitude"])
        figures.append(
            (
                "map",
                "Map of epicentres coloured by depth (symbol size grows with magnitude); red triangles: "
                "stations; dashed lines: the profiles A–A' (main trend, first principal axis of the epicentres) "
                "and B–B' (across it).",
                _png(fig_map(ev, stations, pca)),
            )
        )
        figures.append(
            (
                "sections",
                "Depth cross-sections along (A–A') and across (B–B') the main trend; all events "
                "projected, coloured by time.",
                _png(fig_sections(ev, pca)),
            )
        )
        mags = ev["magnitude"].to_numpy(float)
        if np.isfinite(mags).sum() >= 2:
            fs = fmd_summary(mags)
            figures.append(
                (
                    "fmd",
                    "Frequency–magnitude distribution: circles cumulative, triangles non-cumulative; "
                    "Mc by maximum curvature + 0.2; b by Aki-Utsu maximum likelihood with the Shi-Bolt error.",
                    _png(fig_fmd(mags, fs)),
                )
            )
        else:
            notes.append("No magnitudes: frequency–magnitude distribution not drawn.")
        figures.append(
            ("time", "Magnitude–time (top) and seismicity rate, events per hour (bottom).", _png(fig_time(ev)))
        )
    else:
        notes.append("The catalog has no events: no figures.")
    if picks is not None and len(picks) and "residual_s" in picks and picks["residual_s"].notna().any():
        figures.append(
            ("residuals", "Travel-time residuals of the picks of located events, by phase.", _png(fig_residuals(picks)))
        )
    truth_rows = None
    if truth_events is not None and len(ev):
        m = match_catalogs(ev, truth_events, max_dt_s=max_dt_s, max_dist_km=max_dist_km)
        summ = compare_summary(ev, truth_events, m, max_dt_s=max_dt_s, max_dist_km=max_dist_km)
        truth_rows = [(k, v) for k, v in summ.items()]
        if len(m):
            figures.append(
                (
                    "truth",
                    f"Errors of the matched events against the truth (one-to-one, |dt| ≤ {max_dt_s} s, "
                    f"epicentres ≤ {max_dist_km} km apart).",
                    _png(fig_truth(m)),
                )
            )

    summary_rows = None
    sj = run_dir / "summary.json"
    if sj.exists():
        try:
            summary_rows = _flatten(json.loads(sj.read_text()))
        except (json.JSONDecodeError, OSError) as exc:
            notes.append(f"{sj} could not be read: {exc}")

    title = title or f"QuakeScale run report: {run_dir.name}"
    now = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">Run directory {html.escape(str(run_dir))} · generated {now} by QuakeScale {__version__}</p>',
    ]
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in notes]
    parts.append('<div class="cols"><div><h2>Catalog</h2>' + _table(_overview_rows(ev, picks, fs, pca)) + "</div>")
    if truth_rows is not None:
        parts.append("<div><h2>Against the truth</h2>" + _table(truth_rows) + "</div>")
    parts.append("</div>")
    if summary_rows is not None:
        parts.append("<h2>Run summary (summary.json)</h2>" + _table(summary_rows, head=("key", "value")))
    for fid, cap, b64 in figures:
        parts.append(f"<h2>{html.escape(HEADINGS.get(fid, fid))}</h2>")
        parts.append(
            f'<figure id="fig-{fid}"><img alt="{html.escape(fid)}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{html.escape(cap)}</figcaption></figure>"
        )
    parts.append("</body></html>")
    return write_text("\n".join(p for p in parts if p), out)
