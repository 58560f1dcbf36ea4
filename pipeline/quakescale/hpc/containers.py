"""Apptainer command lines: ``apptainer exec [--nv] --bind a,b IMAGE cmd...``.

Everything is built as an argument list (for ``subprocess``) and, where a shell line is needed (an
sbatch script, dask-jobqueue's ``python``), joined with :func:`shlex.join` -- so paths with spaces
or quotes stay one argument and nothing from the config is interpreted by a shell.

The GPU pool runs ``apptainer exec --nv`` (the host's NVIDIA driver libraries are bound in);
the CPU pool runs without ``--nv``.  Binds: the run directory and every input path of the config
(archive, inventory, truth, velocity model, detector weights, station delays) plus
``compute.binds``; Apptainer splits ``--bind`` on commas, so a path containing a comma is refused.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import QuakeScaleError

__all__ = [
    "ContainerError",
    "POOLS",
    "bind_list",
    "bind_path",
    "apptainer_exec",
    "shell_line",
    "image_for",
    "config_binds",
    "wrap",
    "python_argv",
    "quakescale_argv",
]

POOLS = ("gpu", "cpu")


class ContainerError(QuakeScaleError, ValueError):
    """A container setting that cannot be turned into a safe command line (field named)."""


def _check_pool(pool: str) -> str:
    if pool not in POOLS:
        raise ContainerError(f"pool {pool!r}: allowed values: {list(POOLS)}")
    return pool


def bind_list(binds: Iterable, field: str = "compute.binds") -> list[str]:
    """Validated, de-duplicated bind specs (``src``, ``src:dst`` or ``src:dst:opts``), order kept."""
    out: list[str] = []
    for i, b in enumerate(binds):
        s = str(b)
        if not s or "," in s or "\n" in s or "\x00" in s:
            raise ContainerError(
                f"{field}[{i}]: bind {s!r} is empty or contains a comma/newline (apptainer splits --bind on commas)"
            )
        if s not in out:
            out.append(s)
    return out


def apptainer_exec(
    image,
    command: Sequence[str],
    *,
    gpu: bool = False,
    binds: Iterable = (),
    apptainer: str = "apptainer",
    extra_args: Sequence[str] = (),
) -> list[str]:
    """``[apptainer, exec, (--nv), (--bind, "a,b"), *extra_args, IMAGE, *command]``."""
    if not command:
        raise ContainerError("apptainer exec needs a command")
    args = [apptainer, "exec"]
    if gpu:
        args.append("--nv")
    b = bind_list(binds)
    if b:
        args += ["--bind", ",".join(b)]
    args += [str(a) for a in extra_args]
    args.append(str(image))
    args += [str(c) for c in command]
    return args


def shell_line(args: Sequence) -> str:
    """One shell line that runs exactly ``args``."""
    return shlex.join(str(a) for a in args)


def image_for(compute, pool: str) -> Path | None:
    """The Apptainer image configured for ``pool`` (``compute.image_gpu`` / ``image_cpu``), or None."""
    _check_pool(pool)
    return compute.image_gpu if pool == "gpu" else compute.image_cpu


def bind_path(p, field: str) -> str:
    """``p`` as an Apptainer bind path; a path with ``,`` or ``:`` (the bind list's separators)
    raises :class:`ContainerError` naming ``field`` (the config field or role it came from)."""
    s = str(Path(p))
    if "," in s or ":" in s:
        raise ContainerError(
            f"{field}: path {s!r} contains ',' or ':' and cannot be bound into the container; move it or bind a "
            "parent through compute.binds"
        )
    return s


def config_binds(cfg, run_dir=None) -> list[str]:
    """Host paths a container of this run needs: the run directory, the config's input paths
    (directories as they are, files by their directory) and ``compute.binds``."""
    items: list[tuple[object, str]] = []
    if run_dir is not None:
        items.append((Path(run_dir), "run directory"))
    a = cfg.archive
    items.append((a.sds_root, "archive.sds_root"))
    items.append((a.inventory, "archive.inventory"))
    if a.truth is not None:
        items.append((a.truth, "archive.truth"))
    if not cfg.velocity.model.startswith("builtin:"):
        items.append((Path(cfg.velocity.model), "velocity.model"))
    if not cfg.detect.model.startswith("builtin:"):
        items.append((Path(cfg.detect.model), "detect.model"))
    if cfg.locate.station_delays is not None:
        items.append((cfg.locate.station_delays, "locate.station_delays"))
    out: list[str] = []
    for p, field in items:
        p = Path(p)
        if p.suffix and not p.is_dir():  # a file: bind its directory
            p = p.parent
        out.append(bind_path(p, field))
    extra = bind_list([str(b) for b in cfg.compute.binds], "compute.binds")
    return bind_list(out + extra, "binds")


def wrap(compute, pool: str, command: Sequence[str], binds: Iterable = ()) -> list[str]:
    """``command`` run inside the pool's image when one is configured, as it is otherwise."""
    image = image_for(compute, pool)
    if image is None:
        return [str(c) for c in command]
    return apptainer_exec(image, command, gpu=(pool == "gpu"), binds=binds)


def python_argv(compute, pool: str, binds: Iterable = ()) -> list[str]:
    """The Python interpreter of a pool's workers: ``compute.python`` (default: this interpreter
    on the host, ``python`` inside an image), wrapped by apptainer when an image is configured."""
    image = image_for(compute, pool)
    py = compute.python or ("python" if image is not None else sys.executable)
    return wrap(compute, pool, [py], binds)


def quakescale_argv(compute, pool: str, args: Sequence[str], binds: Iterable = ()) -> list[str]:
    """The ``quakescale ARGS...`` command of a batch job: the image's ``quakescale`` inside a
    container, ``PYTHON -m quakescale`` on the host."""
    image = image_for(compute, pool)
    if image is not None:
        return apptainer_exec(image, ["quakescale", *map(str, args)], gpu=(pool == "gpu"), binds=binds)
    py = compute.python or sys.executable
    return [py, "-m", "quakescale", *map(str, args)]
