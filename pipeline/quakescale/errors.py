"""One family for the errors a user can cause (bad file, bad config, missing input).

``quakescale`` prints such an error as one line naming the file, field or station and exits 1;
``--debug`` shows the traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class QuakeScaleError(Exception):
    """An expected failure: its message alone tells the user what to fix."""


class UpstreamMissing(QuakeScaleError):
    """A stage's input is missing because an upstream stage failed or has not run."""


class DeviceLost(QuakeScaleError):
    """A unit hit a fatal GPU error (an illegal address, a failed kernel launch, a device-side
    assert, an ECC error): every later CUDA call of this process fails the same way, so the task
    stops there; its status holds what ran, and the units after it are left for a fresh process."""


#: Built-in errors that are expected too when they name a path (a missing or unreadable file).
EXPECTED_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def one_line(exc: BaseException) -> str:
    """The message of an expected error on one line (OSError: 'path: reason')."""
    if isinstance(exc, OSError) and getattr(exc, "filename", None) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    msg = str(exc).strip() or type(exc).__name__
    return " ".join(msg.split("\n")) if len(msg.splitlines()) <= 3 else msg.splitlines()[0]
