"""Travel times of the layered model: exact checks by hand and against ObsPy TauP."""

from __future__ import annotations

import numpy as np
import pytest

from quakescale.formats import velmodels
from quakescale.formats.velmodels import resolve_model
from quakescale.velocity import LayeredModel, TravelTimeTable, default_model, first_arrivals
from shared_data import DATA


def test_vertical_and_head_wave_by_hand():
    m = LayeredModel.from_vpvs((0.0, 10.0), (5.0, 8.0), 1.75)
    # vertical ray from 5 km depth
    t, p, q = first_arrivals(m, "P", np.array([0.0]), 5.0)
    assert t[0] == pytest.approx(1.0, abs=1e-6)
    # at 200 km the head wave along the 10 km interface wins: T = X/8 + (10+5) * sqrt(1/25 - 1/64)
    t, p, q = first_arrivals(m, "P", np.array([200.0]), 5.0)
    assert t[0] == pytest.approx(200 / 8 + 15 * np.sqrt(1 / 25 - 1 / 64), abs=1e-6)
    assert p[0] == pytest.approx(1 / 8)
    assert q[0] < 0  # a deeper source is closer to the refractor
    # direct wave in a half-space: straight line
    h = LayeredModel.from_vpvs((0.0,), (6.0,), 1.73)
    t, p, q = first_arrivals(h, "P", np.array([30.0]), 40.0)
    assert t[0] == pytest.approx(50.0 / 6.0, rel=1e-5)


def test_table_build_equals_first_arrivals_depth_by_depth():
    """The table's batched build (all depths at once, head waves cut at their crossover) gives
    exactly the values of first_arrivals depth by depth -- including a low-velocity zone, a
    datum above sea level and an unsorted distance list (the fallback)."""
    from quakescale.velocity import _first_arrivals_many

    lvz = LayeredModel.from_vpvs((-2.0, 1.0, 5.0, 9.0, 30.0), (4.0, 6.0, 5.5, 6.5, 8.0), 1.75)
    for m in (default_model(), lvz):
        for dist in (np.arange(0.0, 250.0, 0.5), np.array([80.0, 3.0, 200.0, 0.0])):
            depth = np.arange(m.top_km[0], 45.0, 0.7)
            for ph in ("P", "S"):
                ref = [np.stack([first_arrivals(m, ph, dist, float(z))[i] for z in depth], 1) for i in range(3)]
                new = _first_arrivals_many(m, ph, dist, depth)
                for a, b in zip(ref, new):
                    assert np.array_equal(a, b)
                    assert a.shape == b.shape == (len(dist), len(depth))


def test_table_interpolation_and_derivatives():
    m = default_model()
    tt = TravelTimeTable(m, max_dist_km=120, max_depth_km=30)
    d = np.random.default_rng(0).uniform(0, 110, 300)
    z = np.random.default_rng(1).uniform(1, 25, 300)
    exact = np.array([first_arrivals(m, "P", np.array([a]), b)[0][0] for a, b in zip(d, z)])
    t, dtdd, dtdz = tt.time("P", d, z)
    assert np.abs(t - exact).max() < 2e-3
    # derivatives vs finite differences
    h = 0.05
    fd_d = (tt("P", d + h, z) - tt("P", d - h, z)) / (2 * h)
    fd_z = (tt("P", d, z + h) - tt("P", d, z - h)) / (2 * h)
    assert np.median(np.abs(fd_d - dtdd)) < 2e-3
    assert np.median(np.abs(fd_z - dtdz)) < 5e-3
    # station elevation adds time through the top layer
    t_hi = tt("P", 0.0, 10.0, elev_km=1.0)
    assert float(t_hi - tt("P", 0.0, 10.0)) == pytest.approx(1.0 / m.vp_kms[0], rel=1e-3)


def test_against_obspy_taup(tmp_path):
    """A step model written as TauP .nd (discontinuities repeated) must agree with TauP."""
    taup = pytest.importorskip("obspy.taup")
    from obspy.taup.taup_create import build_taup_model

    nd = tmp_path / "steps.nd"
    lines = []
    tops = [0.0, 4.0, 12.0, 22.0, 40.0]
    vp = [5.2, 5.9, 6.25, 6.7, 7.9]
    for i, (t, v) in enumerate(zip(tops, vp)):
        bot = tops[i + 1] if i + 1 < len(tops) else 200.0
        lines.append(f"{t:.3f} {v:.3f} {v / 1.73:.4f} 2.7")
        lines.append(f"{bot:.3f} {v:.3f} {v / 1.73:.4f} 2.7")
        if bot == 40.0:
            lines.append("mantle")
    # TauP needs a core; add one deep below
    lines += [
        "2891.0 13.7 7.2 5.5",
        "outer-core",
        "2891.0 8.0 0.0 9.9",
        "5149.5 10.3 0.0 12.2",
        "inner-core",
        "5149.5 11.0 3.5 12.8",
        "6371.0 11.3 3.7 13.1",
    ]
    nd.write_text("\n".join(lines) + "\n")
    build_taup_model(str(nd), output_folder=str(tmp_path))
    model = taup.TauPyModel(str(tmp_path / "steps.npz"))
    ours = velmodels.read_taup_nd(nd, max_depth_km=100)
    assert ours.top_km[:5] == tuple(tops)
    tt = TravelTimeTable(ours, max_dist_km=150, max_depth_km=30)
    diffs = []
    for z in (3.0, 9.0, 15.0):
        for dist in (2.0, 10.0, 30.0, 60.0, 100.0):
            for ph in ("P", "S"):
                arr = model.get_travel_times(
                    source_depth_in_km=z, distance_in_degree=dist / 111.195, phase_list=[ph, ph.lower(), ph + "n"]
                )
                ref = min(a.time for a in arr)
                diffs.append(float(tt(ph, dist, z)) - ref)
    diffs = np.abs(diffs)
    # TauP uses a spherical Earth; at local distances the flat-layer times agree within ~0.1 s
    assert np.median(diffs) < 0.03, diffs
    assert diffs.max() < 0.15, diffs


@pytest.mark.skipif(not DATA.exists(), reason="shared/data not present")
def test_model_readers_on_real_files():
    m = resolve_model(str(DATA / "real_demo_italy2016" / "hypoDD" / "hypoDD.inp"))
    assert m.top_km == (0.0, 1.0, 5.0, 9.0, 13.0, 21.0, 31.0)
    assert m.vp_kms[-1] == 7.5 and m.vs_kms[0] == pytest.approx(5.65 / 1.82)
    c = resolve_model(str(DATA / "real_demo_italy2016" / "hypoinverse" / "vel_model_P.crh"))
    assert c.top_km == (0.0, 1.0, 5.0, 21.0, 31.0)
    assert c.vs_kms[0] == pytest.approx(2.75)  # from vel_model_S.crh beside it
    n = resolve_model(str(DATA / "real_demo_italy2016" / "REAL" / "tt_db" / "itvel.nd"))
    # TauP interpolates between points: the gradient 0-1 km becomes sublayers
    assert n.vp_kms[0] == pytest.approx(5.3 + 0.35 * 0.25, abs=1e-6)
    assert n.velocity_at(7.0) == pytest.approx(6.2)


def test_bad_models_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="increase strictly"):
        LayeredModel((0.0, 5.0, 5.0), (5, 6, 7), (3, 3.5, 4))
    bad = tmp_path / "bad.txt"
    bad.write_text("0 5.5\nten 6.0\n")
    with pytest.raises(velmodels.ModelFormatError, match="bad.txt:2"):
        velmodels.read_layer_table(bad)
    with pytest.raises(ValueError, match="unknown builtin"):
        resolve_model("builtin:nope")
