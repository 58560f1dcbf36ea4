"""The stages on projects that came from elsewhere (no run directory): picks from another
picker, a Hypoinverse project, a HypoDD project.  Thin glue used by the CLI."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def associate_external(picks_path, stations_path, model_path, out_dir, max_residual_s: float = 2.0, min_stations: int = 4, **kw) -> str:
    """Associate a pick file (our Parquet, REAL pick folder/zip, or CSV) with stations
    (StationXML, REAL station.dat or a table) and a velocity model file; write
    events/assignments/unassociated as Parquet and CSV in ``out_dir``."""
    from ..associate import Associator, associate_partitioned, unassociated
    from ..formats import picks_io
    from ..rundir import write_table
    from ..formats.velmodels import resolve_model

    picks_path = Path(picks_path)
    if picks_path.suffix == ".parquet":
        picks = picks_io.picks_frame(pd.read_parquet(picks_path))
    elif picks_path.suffix == ".zip" or picks_path.is_dir():
        picks = picks_io.read_real_picks(picks_path)
    else:
        picks = picks_io.read_csv_picks(picks_path)
    stations = picks_io.read_stations(stations_path)
    model = resolve_model(str(model_path))
    assoc = Associator(stations, model, max_residual_s=max_residual_s, min_stations=min_stations, **kw)
    picks = picks.sort_values("time", kind="stable").reset_index(drop=True)
    events, asg = associate_partitioned(picks, assoc)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_table(events, out / "events.parquet")
    write_table(asg, out / "assignments.parquet")
    un = unassociated(picks, asg)
    write_table(un, out / "unassociated.parquet")
    events.to_csv(out / "events.csv", index=False)
    asg.to_csv(out / "assignments.csv", index=False)
    return f"{len(events)} events from {len(picks)} picks ({len(un)} unassociated) -> {out}"


def locate_hypoinverse_project(command_file, backend: str = "builtin") -> str:
    from ..locate.hypoinverse_backend import locate_hypoinverse_project as run

    events, phases = run(command_file, backend=backend)
    return f"located {len(events)} events ({len(phases)} phases) from {command_file}"


def relocate_hypodd_project(inp_path, out_dir=None) -> str:
    from ..relocate.dd import run_hypodd_project

    res = run_hypodd_project(inp_path, out_dir=out_dir)
    return f"relocated {len(res.events)} events from {inp_path}; outputs beside it (hypoDD.reloc, .loc, .res, .sta, hypoDD.log)"
