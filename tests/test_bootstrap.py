"""Bootstrap sample sets from a region's own data (classic picks -> association -> windows),
checked against the synthetic truth that the builder never sees."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from quakescale.train.samples import P_AT_N, STORE_N, SampleSet

FS = 100.0


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from quakescale.synth.world import make_world

    out = tmp_path_factory.mktemp("bootworld")
    make_world(out, n_stations=8, days=1, n_events=40, seed=11, hours_per_day=1.0)
    return out


@pytest.fixture(scope="module")
def built(world, tmp_path_factory):
    from quakescale.config import load_config
    from quakescale.train.bootstrap import build_sample_set

    cfg = load_config(world / "config.yaml")
    out = tmp_path_factory.mktemp("bootset")
    summary = build_sample_set(cfg, out, snr_min=2.0, snr_max=2000.0, log=lambda *a: None)
    return cfg, out, summary


def _truth(world):
    tp = pd.read_parquet(world / "truth" / "picks.parquet")
    return tp.assign(t_ns=tp["time"].astype("int64"))


def test_positive_labels_match_truth(world, built):
    _, out, summary = built
    idx = pd.read_parquet(out / "index.parquet")
    ev = idx[idx.kind == "event"]
    assert summary["n_events_associated"] >= 5 and len(ev) >= 12
    # the corrupt station-day is skipped with its reason, not fatal
    assert any("unreadable" in s["reason"] for s in summary["skipped"])
    tp = _truth(world)
    err = {"P": [], "S": []}
    ign = []
    for r in ev.itertuples():
        g = tp[tp.station_id == r.station_id]
        if r.source == "bootstrap":
            assert P_AT_N in list(r.p_idx)  # the anchor P sits at 16 s
        for ph, lab in (("P", r.p_idx), ("S", r.s_idx)):
            tt = g.loc[g.phase == ph, "t_ns"].to_numpy()
            for i in lab:
                err[ph].append(np.abs(tt - (r.start_ns + i * 1e9 / FS)).min() / 1e9)
        for ph, lab in (("P", r.p_ign), ("S", r.s_ign)):
            for i in lab:
                ign.append((ph, np.abs(g["t_ns"].to_numpy() - (r.start_ns + i * 1e9 / FS)).min() / 1e9))
    p, s = np.array(err["P"]), np.array(err["S"])
    assert len(p) >= 12 and np.mean(p < 0.5) >= 0.9 and np.median(p) < 0.1
    # association-guided S picks complete the few classic S: more S labels, still on the truth
    assert len(s) >= 12 and np.mean(s < 0.5) >= 0.8
    assert summary["n_guided"]["S"] >= 5
    # what the picker's loss ignores is where an arrival is predicted from the associated
    # hypocentres: P predictions land on real arrivals; S ones less often (a few associations
    # are mislocated, and S-P grows with their error)
    ign_p = np.array([d for ph, d in ign if ph == "P"])
    ign_s = np.array([d for ph, d in ign if ph == "S"])
    assert len(ign_p) >= 5 and np.mean(ign_p < 3.0) >= 0.85
    assert len(ign_s) >= 5 and np.mean(ign_s < 3.0) >= 0.4
    # bookkeeping for the Figure 2 summary: distances and travel times are physical
    assert ev.epi_distance_km.between(0, 200).all() and (ev.p_travel_s > 0).all()
    assert ((ev.s_travel_s > ev.p_travel_s) | ev.s_travel_s.isna()).all()
    assert ev[ev.source == "bootstrap"].snr_p.min() >= 2.0
    # weak positives: events associated elsewhere, visible here (P or S onset) but unpicked
    weak = ev[ev.source == "weak"]
    assert summary["n_weak"] == len(weak)
    assert (np.fmax(weak.snr_p.fillna(0), weak.snr_s.fillna(0)) >= 3.0).all()


def test_negatives_hold_no_arrival(world, built):
    _, out, _ = built
    idx = pd.read_parquet(out / "index.parquet")
    no = idx[idx.kind == "noise"]
    assert len(no) >= 15 and all(len(p) == 0 and len(s) == 0 for p, s in zip(no.p_idx, no.s_idx))
    tp = _truth(world)
    tp = tp[tp.recorded & (tp.snr >= 3.0)]
    hit = [
        ((tp.station_id == r.station_id) & (tp.t_ns >= r.start_ns) & (tp.t_ns < r.start_ns + STORE_N * 1e7)).any()
        for r in no.itertuples()
    ]
    # only events no classic picker saw can hide in a negative: a small minority
    assert np.mean(hit) <= 0.15, f"{sum(hit)} of {len(hit)} negatives hold a visible truth arrival"


def test_storage_round_trips_in_batches(built):
    from quakescale.train.samples import iter_batches

    _, out, summary = built
    ds = SampleSet(out)
    assert len(ds) == summary["n_samples"] and ds.is_event.sum() == summary["n_event"]
    wf = np.load(out / "waveforms.npy", mmap_mode="r")
    assert wf.dtype == np.float16 and wf.shape == (len(ds), 3, STORE_N)
    seen = 0
    for rows, x in iter_batches(out, batch_size=16):
        assert x.shape[0] == len(rows) <= 16 and x.dtype == np.float32
        np.testing.assert_array_equal(x, np.asarray(wf[rows["sample"].to_numpy()], np.float32))
        seen += len(rows)
    assert seen == len(ds)
    # a positive's P onset is visible in the stored window, a negative is flat in comparison
    xe = ds.load(np.flatnonzero(ds.is_event)[:10])
    pre = (xe[:, 0, P_AT_N - 300 : P_AT_N - 20] ** 2).mean(axis=1)
    post = (xe[:, 0, P_AT_N : P_AT_N + 200] ** 2).mean(axis=1)
    assert np.median(post / pre) > 3
    assert (out / "summary.png").stat().st_size > 10_000 and (out / "summary.json").exists()


def test_manual_picks_give_picker_samples(world, built, tmp_path):
    from quakescale.formats.picks_io import read_picks
    from quakescale.train.bootstrap import build_sample_set

    cfg, _, _ = built
    tp = _truth(world)
    man = tp[tp.recorded & (tp.snr >= 5) & tp.station_id.isin(["XL.L01", "XL.L02"])][["station_id", "phase", "time"]]
    csv = tmp_path / "manual.csv"
    man.assign(time=man.time.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")).to_csv(csv, index=False)
    assert len(read_picks(csv)) == len(man)
    s = build_sample_set(
        cfg,
        tmp_path / "set",
        station_days=[f"{cfg.archive.start}/XL.L01", f"{cfg.archive.start}/XL.L02"],
        manual_picks=csv,
        summary_png=False,
        log=lambda *a: None,
    )
    idx = pd.read_parquet(tmp_path / "set" / "index.parquet")
    m = idx[idx.source == "manual"]
    assert s["n_manual"] == len(m) >= 5
    for r in m.itertuples():  # the manual P is the anchor, to the sample
        t = r.start_ns + P_AT_N * 1e7
        assert (
            np.abs(man.loc[(man.station_id == r.station_id) & (man.phase == "P"), "time"].astype("int64") - t).min()
            < 1e7
        )


@pytest.mark.slow  # ~65 s (2 shared cores): a training run, then its resumption
def test_train_from_sample_set_resumes_and_plots(built, tmp_path):
    from quakescale.detect.models import load_model
    from quakescale.train.trainer import train_from_sample_set

    _, out, _ = built
    w = tmp_path / "w"
    m1 = train_from_sample_set(
        out, w, epochs=1, device="cpu", init_model=None, version="0.1.0", batch_size=64, log=lambda *a: None
    )
    mt = pd.read_csv(m1)
    assert list(mt.model) == ["detector", "picker"]
    model = load_model(w, device="cpu")
    assert model.label == "cerp-region@0.1.0" and model.card["recipe"]["bootstrap"] is True
    assert (w / "training_curves.png").stat().st_size > 10_000
    # a finished run is not trained again
    before = (w / "cerp.pt").stat().st_mtime_ns
    train_from_sample_set(
        out, w, epochs=1, device="cpu", init_model=None, version="0.1.0", batch_size=64, log=lambda *a: None
    )
    assert (w / "cerp.pt").stat().st_mtime_ns == before
    # an interrupted run (no card) continues from its checkpoints and keeps the earlier epochs
    (w / "card.json").unlink()
    (w / "test_metrics.json").unlink()
    train_from_sample_set(
        out, w, epochs=2, device="cpu", init_model=None, version="0.1.1", batch_size=64, log=lambda *a: None
    )
    mt = pd.read_csv(w / "metrics.csv")
    assert list(zip(mt.model, mt.epoch)) == [("detector", 1), ("picker", 1), ("picker", 2)]
    assert load_model(w, device="cpu").card["recipe"]["resumed_after"] == {"detector": 1, "picker": 1}
    # interrupted again: the epochs count on (the checkpoints hold the run's epoch, not the resumption's)
    (w / "card.json").unlink()
    (w / "test_metrics.json").unlink()
    train_from_sample_set(
        out, w, epochs=3, device="cpu", init_model=None, version="0.1.2", batch_size=64, log=lambda *a: None
    )
    mt = pd.read_csv(w / "metrics.csv")
    assert list(zip(mt.model, mt.epoch)) == [("detector", 1)] + [("picker", e) for e in (1, 2, 3)]
    model = load_model(w, device="cpu")
    assert model.card["recipe"]["resumed_after"] == {"detector": 1, "picker": 2}
    # the shipped networks are the best epochs of the whole run, as their checkpoints say
    for nm, net in (("detector", model.detector), ("picker", model.picker)):
        blob = torch.load(w / "checkpoints" / f"{nm}_best.pt", weights_only=True)
        assert blob["epoch"] == model.card["best_epochs"][nm] and np.isfinite(blob["val_loss"])
        assert all(torch.equal(v, blob[nm][k]) for k, v in net.state_dict().items())


@pytest.mark.slow  # ~30 s: a fine-tuning run of the picker, then its resumption
def test_a_resumed_fine_tuning_masks_with_the_starting_model(built, tmp_path, monkeypatch):
    """The teacher mask is the starting model's picker, also after a resumption (not the
    half-trained picker of the checkpoint): every picker copy the trainer makes (the teacher
    train() masks with, and the one it is handed) holds the starting weights."""
    import copy
    from types import SimpleNamespace

    from quakescale.detect.models import Picker, load_model
    from quakescale.train import trainer

    _, out, _ = built
    w = tmp_path / "w"
    copies = []

    def deepcopy(x, *a):
        y = copy.deepcopy(x, *a)
        if isinstance(x, Picker):
            copies.append(y)
        return y

    monkeypatch.setattr(trainer, "copy", SimpleNamespace(deepcopy=deepcopy))
    kw = dict(epochs_detector=0, device="cpu", init_model="builtin:default", batch_size=64, log=lambda *a: None)
    trainer.train_from_sample_set(out, w, epochs_picker=1, version="0.2.0", **kw)
    (w / "card.json").unlink()
    (w / "test_metrics.json").unlink()
    n_first = len(copies)
    trainer.train_from_sample_set(out, w, epochs_picker=2, version="0.2.1", **kw)
    start = load_model("builtin:default", device="cpu").picker.state_dict()
    half = torch.load(w / "checkpoints" / "picker_last.pt", weights_only=True)
    assert half["epoch"] == 2 and n_first >= 1 and len(copies) > n_first
    for teacher in copies:
        assert all(torch.equal(v, start[k]) for k, v in teacher.state_dict().items())
    assert not all(torch.equal(v, start[k]) for k, v in half["picker"].items())  # training moved it


def test_self_training_adds_model_labels_on_classic_events(world, built, tmp_path):
    """``teacher_model``: the starting model's picks join the classic ones; every event keeps
    classic evidence, and the model's labels sit on the truth arrivals."""
    import yaml

    from quakescale.hpc.training import run_bootstrap

    _, _, base = built
    # through the config, as `quakescale bootstrap` runs it (train.self_training: true)
    raw = yaml.safe_load((world / "config.yaml").read_text())
    raw.setdefault("train", {})["self_training"] = True
    (world / "config_selftrain.yaml").write_text(yaml.safe_dump(raw))
    s = run_bootstrap(world / "config_selftrain.yaml", tmp_path / "st", log=lambda *a: None)
    assert s["params"]["teacher_model"] == "builtin:default"
    picks = pd.read_parquet(tmp_path / "st" / "picks.parquet")
    asg = pd.read_parquet(tmp_path / "st" / "assignments.parquet")
    assert (picks.classic == "model").sum() > 0
    n_classic = picks.classic.to_numpy()[asg.pick_index.to_numpy()] != "model"
    assert pd.Series(n_classic).groupby(asg.event_id.to_numpy()).sum().min() >= 2
    assert s["n_s_labels"] > base["n_s_labels"]
    idx = pd.read_parquet(tmp_path / "st" / "index.parquet")
    tp = _truth(world)
    err = []
    for r in idx[idx.kind == "event"].itertuples():
        tt = tp.loc[(tp.station_id == r.station_id) & (tp.phase == "S"), "t_ns"].to_numpy()
        err += [np.abs(tt - (r.start_ns + i * 1e7)).min() / 1e9 for i in r.s_idx]
    assert np.mean(np.array(err) < 0.5) >= 0.9


def test_teacher_picker_labels_on_truth(world, built, tmp_path):
    """``train.teacher``: a picker of the station-day runner (here the shipped CERP, through
    :func:`quakescale.detect.runner.pick_stream`) replaces the classic picks; its associated picks
    become the labels, which sit on the truth arrivals, with more S labels than the classic teacher."""
    import yaml

    from quakescale.hpc.training import run_bootstrap

    _, _, base = built
    raw = yaml.safe_load((world / "config.yaml").read_text())
    raw.setdefault("train", {})["teacher"] = "cerp"
    (world / "config_teacher.yaml").write_text(yaml.safe_dump(raw))
    s = run_bootstrap(world / "config_teacher.yaml", tmp_path / "t", log=lambda *a: None)
    assert s["params"]["teacher"] == "cerp:builtin:default" and s["params"]["teacher_model"] is None
    picks = pd.read_parquet(tmp_path / "t" / "picks.parquet")
    assert len(picks) and (picks.classic == "teacher").all() and picks.model.str.startswith("teacher:cerp").all()
    assert s["n_events_associated"] >= 5
    assert s["n_s_labels"] > base["n_s_labels"]
    idx = pd.read_parquet(tmp_path / "t" / "index.parquet")
    tp = _truth(world)
    err = {"P": [], "S": []}
    for r in idx[idx.kind == "event"].itertuples():
        for ph, lab in (("P", r.p_idx), ("S", r.s_idx)):
            tt = tp.loc[(tp.station_id == r.station_id) & (tp.phase == ph), "t_ns"].to_numpy()
            err[ph] += [np.abs(tt - (r.start_ns + i * 1e7)).min() / 1e9 for i in lab]
    assert len(err["P"]) >= 12 and np.mean(np.array(err["P"]) < 0.5) >= 0.9
    assert len(err["S"]) >= 12 and np.mean(np.array(err["S"]) < 0.5) >= 0.85  # measured 0.89 (522 S labels)


def test_teacher_spec_is_checked():
    from quakescale.config import ConfigError, DetectSection, TrainSection
    from quakescale.train.bootstrap_picks import teacher_detect_section

    det = DetectSection(sta_s=0.7)
    assert teacher_detect_section(det, "classic") is None and teacher_detect_section(det, None) is None
    t = teacher_detect_section(det, "cerp:/some/weights")
    assert (t.method, t.model, t.sta_s) == ("cerp", "/some/weights", 0.7)  # the rest of detect is kept
    assert teacher_detect_section(det, "stalta").method == "stalta"
    with pytest.raises(ConfigError, match="train.teacher 'nonsense'"):
        teacher_detect_section(det, "nonsense")
    with pytest.raises(ValueError, match="teacher 'phasenet'"):
        TrainSection(teacher="phasenet")
    assert TrainSection().teacher == "classic"


def test_cli_bootstrap_rejects_unknown_teacher(world):
    import os
    import subprocess
    import sys

    qs = [sys.executable, "-m", "quakescale.cli", "bootstrap"]
    p = subprocess.run(
        qs + [str(world / "config.yaml"), "--teacher", "nonsense"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )
    assert p.returncode == 1 and "--teacher" in p.stderr and "nonsense" in p.stderr and "Traceback" not in p.stderr
    h = subprocess.run(qs + ["--help"], capture_output=True, text=True, timeout=120)
    assert "--teacher" in h.stdout and "classic" in h.stdout


def test_teacher_weights_resolve_like_detect_model(tmp_path):
    """``train.teacher: cerp:DIR`` with a relative DIR is read from the config's folder, like ``detect.model``."""
    import yaml

    from quakescale.config import TEMPLATE, load_config

    raw = yaml.safe_load(TEMPLATE)
    (tmp_path / "sub").mkdir()
    raw["train"]["teacher"] = "cerp:other/weights"
    (tmp_path / "sub" / "c.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(tmp_path / "sub" / "c.yaml", check_paths=False)
    assert cfg.train.teacher == f"cerp:{(tmp_path / 'sub' / 'other' / 'weights').resolve()}"
    raw["train"]["teacher"] = "cerp:builtin:default"
    (tmp_path / "sub" / "c.yaml").write_text(yaml.safe_dump(raw))
    assert load_config(tmp_path / "sub" / "c.yaml", check_paths=False).train.teacher == "cerp:builtin:default"


def _truth_pha(world, tp: pd.DataFrame, path):
    """A HypoDD phase file of the truth picks ``tp`` (station codes without network)."""
    from quakescale.formats.hypodd import write_pha

    tev = pd.read_parquet(world / "truth" / "events.parquet")
    tp = tp.merge(tev[["event_id", "time"]].rename(columns={"time": "origin"}), on="event_id")
    ph = pd.DataFrame(
        {
            "event_id": tp.event_id,
            "station": tp.station_id.str.split(".").str[1],
            "travel_time_s": (tp.time - tp.origin).dt.total_seconds(),
            "weight": 1.0,
            "phase": tp.phase,
        }
    )
    return write_pha(tev[tev.event_id.isin(ph.event_id)].assign(magnitude=0.0), ph, path)


def test_manual_hypodd_phase_file_read_by_the_one_dispatcher(world, built, tmp_path):
    """A HypoDD phase file of the truth, through :func:`picks_io.read_picks` (the reader the
    bootstrap and ``associate-external`` share): its codes map to NET.STA through the station
    table and every pick lands on its truth time (the file keeps milliseconds)."""
    from quakescale.archive import load_inventory, stations_table
    from quakescale.formats.picks_io import PickFormatError, read_picks
    from quakescale.train.bootstrap_samples import manual_picks_table

    cfg, _, _ = built
    tp = _truth(world)
    tp = tp[tp.recorded & (tp.snr >= 5) & tp.station_id.isin(["XL.L01", "XL.L02", "XL.L03"])]
    pha = _truth_pha(world, tp, tmp_path / "manual.pha")
    stations = stations_table(load_inventory(cfg.archive.inventory), None)
    got = read_picks(pha, stations=stations)
    assert len(got) == len(tp) and set(got.station_id) == {"XL.L01", "XL.L02", "XL.L03"}
    m = got.merge(tp[["event_id", "station_id", "phase", "t_ns"]], on=["event_id", "station_id", "phase"])
    assert len(m) == len(tp)
    assert np.abs(m.time.astype("int64") - m.t_ns).max() < 2e6  # < 2 ms
    man = manual_picks_table(pha, stations)
    assert list(man.columns) == ["station_id", "phase", "time", "event_id"] and man.time.is_monotonic_increasing
    with pytest.raises(PickFormatError, match="manual.pha: a HypoDD phase file needs the station table"):
        read_picks(pha)
    with pytest.raises(PickFormatError, match="manual.pha: station code 'L03' is unknown"):
        read_picks(pha, stations=stations[stations.station_id != "XL.L03"])
    dropped = read_picks(pha, stations=stations[stations.station_id != "XL.L03"], unknown_codes="drop")
    assert len(dropped) == (tp.station_id != "XL.L03").sum()


def test_associate_external_reads_a_hypodd_phase_file(world, tmp_path):
    """``quakescale associate --picks FILE.pha``: the same dispatcher maps the codes with the
    --stations table; the truth picks give back the truth events."""
    from quakescale.hpc.external import associate_external

    tp = _truth(world)
    pha = _truth_pha(world, tp[tp.recorded & (tp.snr >= 3)], tmp_path / "truth.pha")
    associate_external(pha, world / "stations.xml", world / "velocity.txt", tmp_path / "out")
    ev = pd.read_parquet(tmp_path / "out" / "events.parquet")
    tev = pd.read_parquet(world / "truth" / "events.parquet")
    gap_ns = np.abs(tev.time.astype("int64").to_numpy()[:, None] - ev.time.astype("int64").to_numpy()[None, :])
    dt_s = gap_ns.min(1) / 1e9
    assert len(ev) <= len(tev) and np.mean(dt_s < 1.0) >= 0.9  # measured: 40 of 40 within 0.6 s


def test_params_from_config_and_card(world, built):
    """One parameter record: built from the config's ``train:`` section, checked, and written
    whole into the card; the associator is the config's with the seed's loose acceptance."""
    from quakescale.archive import load_inventory, stations_table
    from quakescale.associate import PALM_SEED
    from quakescale.config import ConfigError
    from quakescale.formats.velmodels import resolve_model
    from quakescale.train.bootstrap import build_sample_set
    from quakescale.train.bootstrap_params import BootstrapParams
    from quakescale.train.bootstrap_picks import bootstrap_associator

    cfg, out, summary = built
    cfg2 = cfg.model_copy(deep=True)
    cfg2.train.snr_min, cfg2.train.self_training, cfg2.train.init_model = 4.0, True, None
    p = BootstrapParams.from_config(cfg2, noise_per_event=2.0)
    assert (p.snr_min, p.noise_per_event, p.teacher, p.teacher_model, p.seed) == (
        4.0,
        2.0,
        "classic",
        "builtin:default",
        cfg.run.seed,
    )
    assert BootstrapParams.from_config(cfg2, teacher="stalta").teacher_model is None  # self-training: classic only
    with pytest.raises(ConfigError, match="unlabelled_arrivals must be 'mask' or 'drop'"):
        BootstrapParams(unlabelled_arrivals="keep")
    with pytest.raises(TypeError, match="unknown parameter"):
        build_sample_set(cfg, out / "never", snr_minimum=3.0)
    card = json.loads((out / "card.json").read_text())["params"]
    fields = BootstrapParams().__dataclass_fields__
    assert set(fields) <= set(card) and card["snr_min"] == 2.0 and card["seed"] == cfg.run.seed
    assert card == summary["params"]
    assert card["max_residual_s"] == PALM_SEED["max_residual_s"]  # what the association used
    cfg2.associate.detect_spacing_km, cfg2.velocity.max_depth_km = 7.0, 20.0
    a = bootstrap_associator(
        cfg2, stations_table(load_inventory(cfg.archive.inventory), None), resolve_model(cfg.velocity.model)
    )
    assert (a.max_residual_s, a.min_score, a.max_outside_km, a.use_probability) == (
        PALM_SEED["max_residual_s"],
        0.0,
        None,
        False,
    )
    assert (a.detect_spacing_km, a.max_depth_km, a.min_stations) == (7.0, 20.0, cfg.associate.min_stations)
