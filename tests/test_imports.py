"""Import hygiene: no import cycles in the package, and the light entries stay light
(``quakescale --help`` without numpy/pandas/torch, ``quakescale relocate hypodd`` with numpy only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PIPELINE = Path(__file__).resolve().parents[1] / "pipeline"
ENV = dict(os.environ, PYTHONPATH=str(PIPELINE))

# every module of the package imported first, on its own: our modules are dropped from sys.modules
# before each one (third-party modules stay loaded, so this takes seconds), so a cycle that only
# works in one import order fails here with its ImportError
_EACH_ALONE = r"""
import importlib, json, pkgutil, sys, traceback
import quakescale
names = sorted(m.name for m in pkgutil.walk_packages(quakescale.__path__, "quakescale."))
failed = {}
for name in names:
    for k in [k for k in sys.modules if k == "quakescale" or k.startswith("quakescale.")]:
        del sys.modules[k]
    try:
        importlib.import_module(name)
    except Exception:
        failed[name] = traceback.format_exc(limit=3)
print(json.dumps({"n": len(names), "failed": failed}))
"""

_ENTRY = r"""
import json, sys
sys.argv = ["quakescale"] + sys.argv[1:]
from quakescale._entry import main
try:
    main()
except SystemExit:
    pass
print("\n" + json.dumps(sorted(m for m in ("numpy", "pandas", "pyarrow", "scipy", "torch", "obspy", "dask",
                                           "matplotlib", "typer") if m in sys.modules)))
"""


def _last_json(cmd: list[str]):
    out = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert out.stdout.strip(), out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_module_imports_alone_without_cycles():
    r = _last_json([sys.executable, "-c", _EACH_ALONE])
    assert r["n"] > 60  # the walk found the package's modules
    assert not r["failed"], "\n".join(f"{k}:\n{v}" for k, v in r["failed"].items())


def test_help_loads_no_numpy_and_relocate_hypodd_no_pandas(tmp_path):
    help_mods = _last_json([sys.executable, "-c", _ENTRY, "--help"])
    assert "typer" in help_mods  # the CLI itself did load
    assert not {"numpy", "pandas", "torch", "obspy", "dask", "matplotlib"} & set(help_mods), help_mods
    dd_mods = _last_json([sys.executable, "-c", _ENTRY, "relocate", "hypodd", str(tmp_path / "none" / "hypoDD.inp")])
    assert "numpy" in dd_mods and not {"pandas", "scipy", "torch", "typer"} & set(dd_mods), dd_mods


_TASK = r"""
import json, sys
sys.argv = ["quakescale"] + sys.argv[1:]
from quakescale._entry import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
watch = ("torch", "dask", "distributed", "dask_jobqueue", "quakescale.hpc.pipeline", "quakescale.hpc.cluster",
         "quakescale.catalog.report", "quakescale.relocate.xcorr", "quakescale.associate", "quakescale.locate.locator")
print("\n" + json.dumps({"code": code, "mods": sorted(m for m in watch if m in sys.modules)}))
"""


def test_a_detect_array_task_loads_neither_dask_nor_the_later_stages(tmp_path):
    """``quakescale detect CONFIG --chunk K`` (an sbatch array task) picks its station-days
    without importing Dask, the cluster code or the later stages' modules (report, cross-
    correlation, association, location): ~1 s less start-up per task, and none of their memory."""
    from quakescale.synth.world import make_world

    make_world(tmp_path / "w", n_stations=4, days=1, n_events=3, seed=5, hours_per_day=0.1, n_gaps=0, corrupt=False)
    cfg = tmp_path / "w" / "config.yaml"
    r = _last_json([sys.executable, "-c", _TASK, "detect", str(cfg), "--chunk", "0"])
    assert r["code"] in (0, None) and "torch" in r["mods"], r  # it did detect
    assert r["mods"] == ["torch"], r
    assert list((tmp_path / "w" / "run" / "picks").rglob("*.parquet")), "no picks written"
