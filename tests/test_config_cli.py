"""Config template and validation, and the CLI verbs of the foundation."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from quakescale.config import TEMPLATE, ConfigError, load_config, parse_config

QS = [sys.executable, "-m", "quakescale.cli"]


def run(*args, check=True):
    p = subprocess.run([*QS, *map(str, args)], capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"quakescale {args} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def test_template_has_seed_defaults():
    cfg = parse_config(yaml.safe_load(TEMPLATE))
    assert (cfg.detect.window_s, cfg.detect.stride_s, cfg.detect.freqmin_hz, cfg.detect.freqmax_hz) == (30, 15, 1, 20)
    assert (cfg.associate.max_residual_s, cfg.associate.min_stations) == (1.0, 4)  # issue 14: 2.0 s let noise picks in
    locate = cfg.locate
    assert (locate.residual_full_s, locate.residual_cutoff_factor) == (0.3, 3.0)
    assert (locate.dist_full_km, locate.dist_zero_km) == ("auto", "auto")  # 40/120 on a dense network
    assert (cfg.relocate.max_station_km, cfg.relocate.max_sep_km, cfg.relocate.min_obs) == ("auto", 6, 8)  # 150 dense
    assert cfg.relocate.cc.p_window_s == (0.5, 3.5) and cfg.relocate.cc.s_window_s == (0.3, 4.5)

    # every field of the model appears in the template (the template documents everything)
    def keys(d, prefix=""):
        for k, v in d.items():
            yield prefix + k
            if isinstance(v, dict) and k not in ("gpu_pool", "cpu_pool"):
                yield from keys(v, prefix + k + ".")

    assert set(keys(cfg.to_dict())) == set(keys(yaml.safe_load(TEMPLATE)))


@pytest.mark.parametrize(
    "path,value,message",
    [
        (("detect", "device"), "tpu", "detect.device: got 'tpu'; allowed values: 'auto', 'cpu' or 'cuda'"),
        (
            ("compute", "backend"),
            "kubernetes",
            "compute.backend: got 'kubernetes'; allowed values: 'local', 'slurm' or 'array'",
        ),
        (("associate", "min_stations"), 0, "associate.min_stations"),
        (("detect", "freqmax_hz"), 60.0, "Nyquist"),
        (("archive", "stations"), ["XL_L01"], "must be NET.STA"),
        (("locate", "bogus"), 1, "locate.bogus: unknown field"),
        (("compute", "gpu_pool"), {"gpus": 2}, "compute: Value error, gpu_pool.gpus is 2: a GPU job runs one worker"),
    ],
)
def test_bad_config_names_field(tmp_path, path, value, message):
    d = yaml.safe_load(TEMPLATE)
    d[path[0]][path[1]] = value
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError) as e:
        load_config(f, check_paths=False)
    assert message in str(e.value) and str(f) in str(e.value)


def test_missing_inputs_fail_at_start(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(TEMPLATE)
    with pytest.raises(ConfigError, match="archive.sds_root: directory not found"):
        load_config(f)
    p = run("plan", f, check=False)
    assert p.returncode == 1 and "archive.sds_root: directory not found" in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 2  # the error + the --debug hint
    dbg = run("plan", f, "--debug", check=False)
    assert dbg.returncode == 1 and "Traceback" in dbg.stderr and "ConfigError" in dbg.stderr
    missing = run("plan", tmp_path / "nope.yaml", check=False)
    assert missing.returncode == 1 and "nope.yaml" in missing.stderr and "Traceback" not in missing.stderr


def test_help_on_every_command():
    import typer

    from quakescale.cli import app

    verbs = sorted(typer.main.get_command(app).commands)
    assert {"init", "synth", "plan", "demo", "run", "status"} <= set(verbs)
    assert all(v in run("--help").stdout for v in verbs)
    for v in verbs:
        h = run(v, "--help")
        assert "Usage" in h.stdout and v in h.stdout
    assert run("--version").stdout.startswith("quakescale ")


def test_init_synth_plan_cli(tmp_path):
    run("init", tmp_path / "q.yaml")
    assert load_config(tmp_path / "q.yaml", check_paths=False).run.name == "my-project"
    assert run("init", tmp_path / "q.yaml", check=False).returncode == 2  # no silent overwrite
    w = tmp_path / "w"
    out = run("synth", w, "--stations", 4, "--events", 4, "--seed", 11, "--hours-per-day", 0.25).stdout
    assert "4 stations x 1 day(s), 4 events" in out
    plan = run("plan", w / "config.yaml").stdout
    assert "4 station-days" in plan and "corrupt 1" in plan and "to do 4" in plan
