"""The HTML run report: built from a synthetic catalog, then opened in a real headless browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quakescale.catalog.report import make_report, principal_axes
from quakescale.geo import LocalProjection

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium) for the browser check",
)

LOAD_PROBE = (
    "<script>window.addEventListener('load',function(){var im=document.images,n=0;"
    "for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0)n++;}"
    "document.title='IMAGES_OK '+n+' of '+im.length;});</script></body>"
)


def synthetic_run(tmp_path, n=500, seed=0, azimuth_deg=120.0):
    """A fault-like sequence along ``azimuth_deg`` with GR magnitudes, picks and a noisy truth."""
    rng = np.random.default_rng(seed)
    lat0, lon0 = 27.1, 103.35
    a = rng.uniform(-10, 10, n)
    b = rng.normal(0, 0.8, n)
    az = np.radians(azimuth_deg)
    x = a * np.sin(az) + b * np.cos(az)
    y = a * np.cos(az) - b * np.sin(az)
    lat, lon = LocalProjection(lat0, lon0).to_latlon(x, y)
    ev = pd.DataFrame(
        {
            "event_id": np.arange(1, n + 1),
            "time": pd.Timestamp("2014-08-03T08:30:00Z")
            + pd.to_timedelta(np.sort(rng.exponential(20 * 3600, n)), unit="s"),
            "latitude": lat,
            "longitude": lon,
            "depth_km": np.clip(9 + 2.5 * rng.normal(size=n) - 0.3 * np.abs(a), 0.5, 20),
            "magnitude": np.round(rng.exponential(1 / np.log(10), n) + 0.25, 1),
            "mag_type": "ML",
            "stage": "relocate",
            "rms_s": rng.uniform(0.05, 0.2, n),
        }
    )
    st = pd.DataFrame(
        {
            "station_id": [f"XL.L{i:02d}" for i in range(8)],
            "latitude": lat0 + rng.normal(0, 0.12, 8),
            "longitude": lon0 + rng.normal(0, 0.12, 8),
        }
    )
    pk = pd.DataFrame(
        {
            "event_id": np.repeat(ev.event_id, 6),
            "station_id": "XL.L01",
            "phase": np.tile(list("PPPSSS"), n),
            "time": np.repeat(ev.time, 6),
            "residual_s": rng.normal(0, 0.12, 6 * n),
        }
    )
    truth = ev.copy()
    truth["latitude"] = truth["latitude"] + rng.normal(0, 0.003, n)
    truth["depth_km"] = truth["depth_km"] + rng.normal(0, 0.5, n)
    truth["time"] = truth["time"] + pd.to_timedelta(rng.normal(0, 0.05, n), unit="s")
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(
        json.dumps(
            {"counts": {"picks": 12345, "events": n}, "seconds": {"detect": 12.5}, "errors": {"median_dh_km": 0.21}}
        )
    )
    return run, ev, pk, st, truth


def test_principal_axes_find_the_trend():
    for az in (30.0, 120.0, 175.0):
        lat0, lon0 = 27.0, 103.0
        a = np.linspace(-10, 10, 200)
        x, y = a * np.sin(np.radians(az)), a * np.cos(np.radians(az))
        lat, lon = LocalProjection(lat0, lon0).to_latlon(x, y)
        p = principal_axes(lat, lon)
        assert p["azimuth_deg"] == pytest.approx(az, abs=0.5)
        assert np.allclose(p["along_km"], a, atol=0.05)  # along increases toward the azimuth
        assert np.abs(p["across_km"]).max() < 0.05


def test_report_contents(tmp_path):
    run, ev, pk, st, truth = synthetic_run(tmp_path)
    out = make_report(run, ev, pk, st, truth_events=truth)
    assert out == run / "catalogs" / "report.html"
    text = out.read_text()
    imgs = re.findall(r'<img alt="([a-z]+)" src="data:image/png;base64,', text)
    assert imgs == ["map", "sections", "fmd", "time", "residuals", "truth"]
    assert "http://" not in text and "https://" not in text  # self-contained
    assert "counts.picks" in text and "12345" in text and "errors.median_dh_km" in text  # summary.json table
    m = re.search(r"b-value \(Aki-Utsu\) ± Shi-Bolt</td><td>([\d.]+) ± ([\d.]+)<", text)
    assert m and 0.8 < float(m.group(1)) < 1.25 and 0 < float(m.group(2)) < 0.15
    az = float(re.search(r"main trend azimuth \(°, PCA\)</td><td>([\d.]+)<", text).group(1))
    assert az == pytest.approx(120.0, abs=3.0)
    assert re.search(r"<td>recall</td><td>1</td>", text)  # every event matched to its truth


def test_report_degrades_without_magnitudes_or_events(tmp_path):
    run, ev, pk, st, truth = synthetic_run(tmp_path, n=50)
    out = make_report(run, ev.drop(columns="magnitude"), None, None, out=tmp_path / "a.html")
    text = out.read_text()
    assert re.findall(r'<img alt="([a-z]+)"', text) == ["map", "sections", "time"]
    assert "No magnitudes" in text
    out = make_report(run, ev.iloc[:0], pk.iloc[:0], st, out=tmp_path / "b.html")
    text = out.read_text()
    assert "<img" not in text and "no events" in text
    one = make_report(run, ev.iloc[:1], None, st, out=tmp_path / "c.html").read_text()
    assert one.count("<img") == 3  # a single event still draws map, sections, time
    with pytest.raises(ValueError, match="depth_km"):
        make_report(run, ev.drop(columns="depth_km"))


def _chromium(args, tmp_path, timeout=90):
    base = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ]
    return subprocess.run(base + args, capture_output=True, text=True, timeout=timeout, check=False)


@needs_chromium
def test_report_renders_in_headless_chromium(tmp_path):
    run, ev, pk, st, truth = synthetic_run(tmp_path)
    report = make_report(run, ev, pk, st, truth_events=truth)
    # a copy with a load probe: the title counts the images the browser decoded
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", LOAD_PROBE))
    r = _chromium(["--dump-dom", probe.as_uri()], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    m = re.search(r"<title>IMAGES_OK (\d+) of (\d+)</title>", r.stdout)
    assert m, f"load probe did not run; DOM head: {r.stdout[:500]!r}"
    assert int(m.group(1)) == int(m.group(2)) == 6

    shot = tmp_path / "report.png"
    r = _chromium([f"--screenshot={shot}", "--window-size=1280,2000", "--hide-scrollbars", report.as_uri()], tmp_path)
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    from matplotlib.image import imread

    img = imread(str(shot))[..., :3]
    assert img.shape[:2] == (2000, 1280)
    gray = img.mean(axis=2)
    assert gray.std() > 0.08  # not a blank page
    assert (gray < 0.9).mean() > 0.05  # plenty of drawn (non-white) pixels
    # colour from the figures (depth colour map, red stations, orange rate) - text alone is grey
    sat = img.max(axis=2) - img.min(axis=2)
    assert (sat > 0.3).mean() > 0.005
    shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)
