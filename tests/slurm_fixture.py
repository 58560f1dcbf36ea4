"""The single-node SLURM of ``slurm/local/start.sh`` as a session fixture.

Use it from ``tests/conftest.py``::

    from slurm_fixture import slurm_local  # noqa: F401

and in tests::

    @pytest.mark.slurm
    def test_something(slurm_local):
        ...  # sbatch, squeue, dask-jobqueue work here; partitions "cpu" (default) and "gpu"

The fixture starts SLURM (installing the Debian packages on a fresh machine) when it can: as root
on Debian.  Elsewhere the tests skip with the reason -- except in CI (``CI=true``), where they
fail, so that CI never passes by skipping.  At the end of the session it runs ``stop.sh`` when it
was this session that started the daemons (``QS_SLURM_KEEP=1`` keeps them running).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
START = REPO / "slurm" / "local" / "start.sh"
STOP = REPO / "slurm" / "local" / "stop.sh"


@dataclass(frozen=True)
class LocalSlurm:
    node: str
    partitions: tuple[str, ...] = ("cpu", "gpu")
    started_here: bool = False


def unavailable_reason() -> str | None:
    """Why the local SLURM cannot be started here (None when it can)."""
    if not START.exists():
        return f"{START} is missing"
    if os.name != "posix" or os.geteuid() != 0:
        return "the local SLURM needs root (slurm/local/start.sh installs packages and starts daemons)"
    if not Path("/etc/debian_version").exists():
        return "the local SLURM needs a Debian system (apt-get install slurmctld slurmd slurm-client munge)"
    return None


def _running() -> bool:
    """Both SLURM daemons alive (by their pid files; asking sinfo would wait ~10 s for a dead slurmctld)."""
    for pidfile in ("/run/slurm/slurmctld.pid", "/run/slurm/slurmd.pid"):
        try:
            os.kill(int(Path(pidfile).read_text().strip()), 0)
        except (OSError, ValueError):
            return False
    return True


@pytest.fixture(scope="session")
def slurm_local():
    reason = unavailable_reason()
    if reason:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but the local SLURM cannot run: {reason}")
        pytest.skip(reason)
    was_running = _running()
    # capture_output: the daemons must not keep our pipes open (start.sh detaches them)
    r = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        pytest.fail(f"slurm/local/start.sh failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
    info = LocalSlurm(node=socket.gethostname().split(".")[0], started_here=not was_running)
    yield info
    if info.started_here and not os.environ.get("QS_SLURM_KEEP"):
        subprocess.run(["bash", str(STOP)], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def wait_gone(job_ids, timeout_s: float = 600):
    """Wait until none of ``job_ids`` (or their array tasks) is in squeue any more."""
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        out = subprocess.run(
            ["squeue", "-h", "-o", "%F", "-j", ",".join(job_ids)], capture_output=True, text=True
        ).stdout
        if not out.strip():
            return
        time.sleep(1.0)
    raise AssertionError(f"jobs {job_ids} still queued after {timeout_s} s")
