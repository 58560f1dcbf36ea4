"""Where the real reference data lives: ``shared/data`` beside the repository (as in CI and in
a developer's checkout), else ``$QUAKESCALE_SHARED_DATA``, else ``/work/shared/data``."""

from __future__ import annotations

import os
from pathlib import Path

_CANDIDATES = [
    Path(__file__).resolve().parents[2] / "shared" / "data",
    Path(os.environ.get("QUAKESCALE_SHARED_DATA", "/nonexistent")),
    Path("/work/shared/data"),
]

DATA = next((p for p in _CANDIDATES if p.is_dir()), _CANDIDATES[0])
ITALY = DATA / "real_demo_italy2016"
RIDGECREST = DATA / "fdtcc_ridgecrest2019"
