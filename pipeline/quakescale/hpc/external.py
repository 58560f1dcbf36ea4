"""The stages on projects that came from elsewhere (no run directory): picks from another
picker, a Hypoinverse project, a HypoDD project.  Thin glue used by the CLI."""

from __future__ import annotations

from pathlib import Path

from ..associate import Associator, associate_partitioned, unassociated
from ..config import AssociateSection
from ..formats import picks_io
from ..formats.velmodels import resolve_model
from ..locate import hypoinverse_backend
from ..relocate.hypodd21 import project_summary, run_project
from ..rundir import write_table


def associate_external(
    picks_path, stations_path, model_path, out_dir, section=None, amp_unit: str | None = None
) -> str:
    """Associate a pick file (any format :func:`quakescale.formats.picks_io.read_picks` reads: our
    Parquet, REAL pick folder/zip, PhaseNet ``picks.csv``, HypoDD ``.pha``, Hypoinverse ``.arc``,
    a CSV) with stations (StationXML, REAL station.dat or a table) and a velocity model file;
    write events/assignments/unassociated as Parquet and CSV in ``out_dir``.  ``section``: the
    ``associate:`` parameters (:class:`~quakescale.config.AssociateSection`; defaults when
    None); ``amp_unit``: the unit of an amplitude column of a CSV (``wa_mm`` or ``raw``)."""
    section = section or AssociateSection()
    stations = picks_io.read_stations(stations_path)
    picks = picks_io.read_picks(
        picks_path, amp_unit=amp_unit, stations=stations, unknown_codes=section.unknown_stations
    )
    model = resolve_model(str(model_path))
    assoc = Associator.from_section(stations, model, section)
    picks = picks.sort_values("time", kind="stable").reset_index(drop=True)
    events, asg = associate_partitioned(picks, assoc, partition_s=section.partition_s, overlap_s=section.overlap_s)
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
    events, phases = hypoinverse_backend.locate_hypoinverse_project(command_file, backend=backend)
    return f"located {len(events)} events ({len(phases)} phases) from {command_file}"


def relocate_hypodd_project(inp_path, out_dir=None) -> str:
    return project_summary(run_project(inp_path, out_dir=out_dir), inp_path)
