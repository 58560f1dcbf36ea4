"""One renderer for batch job scripts: sbatch array/single-stage scripts and the Dask worker jobs.

Shaped like dask-jobqueue's ``core.py``/``slurm.py``: a generic :class:`JobScript` renders a
script from a template (``jobs/*.sbatch.tmpl`` of the repository: shebang, header of directives,
prologue, environment, command); :class:`SlurmJobScript` only adds how SLURM directives are
written (``#SBATCH --key=value``).  The Dask mode (``cluster.py``) takes its job-script prologue
and its placement directives (partition, account, qos, gres, extras) from the same functions here,
so an sbatch array task and a dask-jobqueue worker job of one pool ask SLURM for the same things.

Quoting: every value that comes from the configuration is quoted where it lands.
- in a directive, values that are not plain words are written ``"..."`` with ``\\`` escapes, which
  is what sbatch's own ``#SBATCH`` line parser understands (spaces and ``#`` survive);
- in the shell body, commands are argument lists joined with :func:`shlex.join`;
- control characters (a newline could start a new shell line) are refused with the field named.
Prologue lines (``compute.prologue``: ``module load ...``) are shell code by design and are copied
verbatim; they are the only unquoted config text, and must be one line each.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Iterable, Mapping, Sequence

from ..errors import QuakeScaleError
from ..rundir import write_text

__all__ = [
    "JobScriptError",
    "JobScript",
    "SlurmJobScript",
    "templates_dir",
    "load_template",
    "render_template",
    "check_value",
    "directive_quote",
    "memory_mb",
    "check_walltime",
    "prologue_lines",
    "placement_directives",
    "size_directives",
    "pool_directives",
]


class JobScriptError(QuakeScaleError, ValueError):
    """A value that cannot be written safely into a job script (the field is named)."""


# -- templates -----------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def templates_dir() -> Path:
    """The directory of ``*.sbatch.tmpl``: ``$QUAKESCALE_JOBS_DIR``, else the repository's ``jobs/``."""
    env = os.environ.get("QUAKESCALE_JOBS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "jobs"


_TEMPLATE_CACHE: dict[Path, str] = {}


def load_template(name: str) -> str:
    path = templates_dir() / name
    if path not in _TEMPLATE_CACHE:
        if not path.is_file():
            raise JobScriptError(
                f"job-script template not found: {path} (set QUAKESCALE_JOBS_DIR to the directory holding {name})"
            )
        _TEMPLATE_CACHE[path] = path.read_text()
    return _TEMPLATE_CACHE[path]


def render_template(text: str, values: Mapping[str, str], name: str = "<template>") -> str:
    """Replace ``{{ key }}`` placeholders; an unknown placeholder is an error (shell ``$VAR`` and
    ``${VAR}`` are left alone, so templates are plain bash)."""

    def sub(m):
        key = m.group(1)
        if key not in values:
            raise JobScriptError(f"template {name}: no value for placeholder {{{{{key}}}}} (known: {sorted(values)})")
        return str(values[key])

    return _PLACEHOLDER.sub(sub, text)


# -- values --------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PLAIN = re.compile(r"^[A-Za-z0-9_.,:=%@+/\-\[\]]+$")


def check_value(value, field: str) -> str:
    """``value`` as a string, refusing control characters (newlines would start shell lines)."""
    s = str(value)
    if _CONTROL.search(s):
        raise JobScriptError(
            f"{field}: value {s!r} contains a control character (newline, tab, ...); not allowed in a job script"
        )
    return s


def directive_quote(value, field: str) -> str:
    """Quote a directive value the way sbatch parses ``#SBATCH`` lines: plain words as they are,
    anything else in double quotes with ``\\`` and ``"`` escaped."""
    s = check_value(value, field)
    if s and _PLAIN.match(s):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


_WALLTIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$|^\d+-\d+$")


def check_walltime(value: str, field: str = "walltime") -> str:
    s = check_value(value, field).strip()
    if not _WALLTIME.match(s):
        raise JobScriptError(f"{field}: {value!r} is not a SLURM time (MM, HH:MM:SS, D-HH:MM:SS, ...)")
    return s


_UNITS = {
    "": 1,
    "b": 1,
    "k": 1e3,
    "kb": 1e3,
    "m": 1e6,
    "mb": 1e6,
    "g": 1e9,
    "gb": 1e9,
    "t": 1e12,
    "tb": 1e12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def memory_mb(value: str, field: str = "memory") -> int:
    """``"16GB"``, ``"16 GiB"``, ``"500MB"`` -> whole MiB for ``--mem`` (rounded up)."""
    s = check_value(value, field).strip().lower().replace(" ", "")
    m = re.match(r"^(\d+(?:\.\d+)?)([a-z]*)$", s)
    if not m or m.group(2) not in _UNITS:
        raise JobScriptError(f"{field}: {value!r} is not a memory size like 16GB, 500MB, 4GiB")
    return max(1, math.ceil(float(m.group(1)) * _UNITS[m.group(2)] / 2**20))


# -- pieces shared by the array mode and the Dask mode ---------------------------------------


def prologue_lines(prologue: Iterable[str], field: str = "compute.prologue") -> list[str]:
    """The user's prologue lines (``module load cuda``), one shell line each, verbatim."""
    out = []
    for i, line in enumerate(prologue):
        s = str(line)
        if re.search(r"[\x00-\x08\x0a-\x1f\x7f]", s):
            raise JobScriptError(f"{field}[{i}]: {s!r} must be a single line without control characters")
        out.append(s)
    return out


def placement_directives(pool, field: str = "pool") -> list[str]:
    """Where a job of ``pool`` runs and what it may use beyond cores/memory/time: partition,
    account, qos, ``--gres=gpu:N`` and the pool's extra directives.  Quoted."""
    out = []
    if pool.partition:
        out.append(f"--partition={directive_quote(pool.partition, field + '.partition')}")
    if pool.account:
        out.append(f"--account={directive_quote(pool.account, field + '.account')}")
    if pool.qos:
        out.append(f"--qos={directive_quote(pool.qos, field + '.qos')}")
    if pool.gpus:
        out.append(f"--gres=gpu:{int(pool.gpus)}")
    for i, d in enumerate(pool.job_extra_directives):
        out.append(_extra_directive(d, f"{field}.job_extra_directives[{i}]"))
    return out


def _extra_directive(d: str, field: str) -> str:
    """A user directive ``--key=value`` / ``--flag`` / ``-k value``: the key checked, the value quoted."""
    s = check_value(d, field).strip()
    if s.startswith("#SBATCH"):
        s = s[len("#SBATCH") :].strip()
    m = re.match(r"^(--[A-Za-z][A-Za-z0-9\-]*)(?:=(.*))?$", s) or re.match(r"^(-[A-Za-z])(?:\s+(.*))?$", s)
    if not m:
        raise JobScriptError(f"{field}: {d!r} is not an sbatch option (--key=value, --flag or -k value)")
    key, val = m.group(1), m.group(2)
    if val is None:
        return key
    sep = "=" if key.startswith("--") else " "
    return f"{key}{sep}{directive_quote(val, field)}"


def size_directives(pool, field: str = "pool") -> list[str]:
    """How big a job of ``pool`` is: one task with ``cores`` CPUs, ``memory`` and ``walltime``."""
    return [
        "--ntasks=1",
        f"--cpus-per-task={int(pool.cores)}",
        f"--mem={memory_mb(pool.memory, field + '.memory')}M",
        f"--time={check_walltime(pool.walltime, field + '.walltime')}",
    ]


def pool_directives(pool, field: str = "pool") -> list[str]:
    """Everything an sbatch job of ``pool`` asks for (array scripts use this whole list; the Dask
    mode passes :func:`placement_directives` and lets dask-jobqueue write the size)."""
    return placement_directives(pool, field) + size_directives(pool, field)


# -- the generic job script and its SLURM flavour --------------------------------------------


@dataclass
class JobScript:
    """A job script rendered from a template.

    ``command`` is an argument list (quoted with :func:`shlex.join`), or ``command_text`` a shell
    line already quoted by the caller (dask-jobqueue's worker command); ``directives`` are option
    strings written one per header line with :attr:`directive_prefix`; ``env`` values are quoted;
    ``extra`` fills further ``{{placeholders}}`` of the template (values used verbatim: callers
    pass integers or already-quoted text).
    """

    name: str
    command: Sequence[str]
    directives: Sequence[str] = ()
    prologue: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    template: str = "stage.sbatch.tmpl"
    extra: Mapping[str, object] = field(default_factory=dict)
    shebang: str = "#!/usr/bin/env bash"
    command_text: str | None = None

    directive_prefix: ClassVar[str] = "#"

    def header(self) -> str:
        return "\n".join(f"{self.directive_prefix} {d}" for d in self.directives)

    def env_lines(self) -> str:
        lines = []
        for k, v in self.env.items():
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k):
                raise JobScriptError(f"environment variable name {k!r} is not valid")
            lines.append(f"export {k}={shlex.quote(check_value(v, 'env ' + k))}")
        return "\n".join(lines)

    def command_line(self) -> str:
        if self.command_text is not None:
            return check_value(self.command_text, f"job {self.name} command")
        if not self.command:
            raise JobScriptError(f"job {self.name}: empty command")
        return shlex.join(check_value(a, f"job {self.name} command") for a in self.command)

    def values(self) -> dict[str, object]:
        return {
            "shebang": self.shebang,
            "header": self.header(),
            "name": check_value(self.name, "job name"),
            "prologue": "\n".join(prologue_lines(self.prologue)),
            "env": self.env_lines(),
            "command": self.command_line(),
            **self.extra,
        }

    def render(self) -> str:
        text = render_template(load_template(self.template), self.values(), self.template)
        return re.sub(r"\n{3,}", "\n\n", text)

    def write(self, path) -> Path:
        path = write_text(self.render(), path)
        os.chmod(path, 0o755)
        return path


@dataclass
class SlurmJobScript(JobScript):
    """A :class:`JobScript` with ``#SBATCH`` directives, built from a pool of the config."""

    directive_prefix: ClassVar[str] = "#SBATCH"

    @classmethod
    def for_pool(
        cls,
        pool,
        *,
        name: str,
        command: Sequence[str],
        prologue: Sequence[str] = (),
        output: str | os.PathLike | None = None,
        chdir: str | os.PathLike | None = None,
        array: str | None = None,
        env: Mapping[str, str] | None = None,
        template: str = "stage.sbatch.tmpl",
        extra: Mapping[str, object] | None = None,
        pool_field: str = "pool",
    ) -> "SlurmJobScript":
        d = [f"--job-name={directive_quote(name, 'job name')}"]
        if chdir is not None:
            d.append(f"--chdir={directive_quote(chdir, 'chdir')}")
        if output is not None:
            d.append(f"--output={directive_quote(output, 'output')}")
        if array is not None:
            d.append(f"--array={check_value(array, 'array')}")
        d += pool_directives(pool, pool_field)
        return cls(
            name=name,
            command=list(command),
            directives=d,
            prologue=list(prologue),
            env=dict(env or {}),
            template=template,
            extra=dict(extra or {}),
        )
