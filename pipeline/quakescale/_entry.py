"""The ``quakescale`` console entry: verbs that need no config, no typer and no torch/Dask start
light here; everything else goes to :func:`quakescale.cli.main`.

``quakescale relocate hypodd hypoDD.inp`` imports numpy only (the HypoDD 2.1b port), so a
16-event project starts in a fraction of a second.  Errors follow the CLI's rule: expected
errors print one line and exit 1, ``--debug`` shows the traceback.
"""

from __future__ import annotations

import os
import sys

from .errors import EXPECTED_OS_ERRORS, QuakeScaleError, one_line


def _relocate_hypodd(args: list[str]) -> int:
    # one BLAS thread unless the user says otherwise: the per-iteration SVD/LSQR products are small,
    # and threaded BLAS on a busy machine is 10-30x slower for them
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")

    debug = "--debug" in args
    rest = [a for a in args if a != "--debug"]
    try:
        from .relocate.hypodd21 import project_summary, run_project  # numpy, after the BLAS threads are set

        res = run_project(rest[0])
    except (QuakeScaleError, *EXPECTED_OS_ERRORS) as exc:
        if debug:
            raise
        print(f"error: {one_line(exc)}\n(run with --debug for the traceback)", file=sys.stderr)
        return 1
    print(project_summary(res, rest[0]))
    return 0


def main():
    args = sys.argv[1:]
    plain = [a for a in args if a != "--debug"]
    if len(plain) == 3 and plain[:2] == ["relocate", "hypodd"] and not plain[2].startswith("-"):
        sys.exit(_relocate_hypodd(args[args.index("hypodd") + 1 :] if "hypodd" in args else plain[2:]))
    from .cli import main as cli_main  # typer, pydantic: only for the other verbs

    cli_main()


if __name__ == "__main__":
    main()
