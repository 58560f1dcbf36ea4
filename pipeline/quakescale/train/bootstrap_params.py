"""The parameters of a bootstrap sample set: one record, built from the run config and written
into the set's ``card.json`` (see :mod:`quakescale.train.bootstrap` for the recipe)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError

FS = 100.0  # Hz: the preprocessed data, the picks' sample indices and the stored windows


@dataclass(frozen=True)
class BootstrapParams:
    """Everything that decides a bootstrap sample set besides the data and the config's
    ``detect:`` / ``associate:`` / ``velocity:`` sections.

    Samples kept:

    - ``snr_min`` / ``snr_max``: a positive whose P SNR (:func:`~quakescale.train.bootstrap_samples.sample_snr`)
      falls outside is excluded (``excluded.snr_low`` / ``snr_high`` of the summary).
    - ``noise_per_event``: negatives cut per positive of each station-day (at least one positive
      is assumed, so a quiet station-day still gives negatives).

    Classic picks (``teacher`` "classic"):

    - ``merge_s``: STA/LTA and kurtosis picks of one phase within this many seconds are one pick.
    - ``kurtosis_on``: the kurtosis picker's trigger threshold.
    - ``require_agree``: keep only the P picks both classic pickers found (and the S paired with them).
    - ``zh_threshold``: the polarisation check of
      :func:`~quakescale.train.bootstrap_picks.phase_check` (log10 vertical / horizontal energy); None: off.
    - ``stalta_only_p``: a P only the STA/LTA found is ``"ignore"``-d (association evidence,
      left unlabelled: it is emergent and loosely timed) or a ``"label"``.

    Teacher and self-training:

    - ``teacher``: whose picks, associated, become the labels: ``"classic"`` (the seed's STA/LTA +
      kurtosis, merged) or a picker of the station-day runner (``cerp[:WEIGHTS]``, ``stalta``,
      ``kurtosis``, ``seisbench:NAME:WEIGHTS`` ..., see
      :func:`~quakescale.train.bootstrap_picks.teacher_detect_section`).
    - ``teacher_model``: self-training -- this model's picks (``builtin:NAME`` or a weights
      directory) join the classic ones before association; None: off.  Applies to the classic
      teacher only (set to None for any other teacher).
    - ``min_classic_picks``: with self-training, an event needs this many classic picks.
    - ``model_label_phases``, ``model_min_probability``, ``model_max_residual_s``: a model pick
      becomes a label only for these phases, with at least this probability and within this
      residual (s) of its event's prediction; other model picks are left unlabelled.

    Completing the labels:

    - ``label_tol_s``: a predicted arrival with a label within this many seconds counts as labelled.
    - ``guided_contrast``, ``guided_window_s``, ``guided_phases``: association-guided picks -- an
      arrival of these phases predicted with no label near it is searched within
      ``guided_window_s`` of the prediction (AIC onset; Z for P, N+E for S) and labelled where its
      onset contrast reaches ``guided_contrast`` (None: off).
    - ``unlabelled_arrivals``: a positive holding an arrival still unlabelled is kept with the
      arrival in ``p_ign`` / ``s_ign`` (``"mask"``: the picker's loss ignores it) or excluded
      (``"drop"``).
    - ``mask_raw_triggers``: raw classic triggers no event claimed are unlabelled arrivals too.
    - ``weak_snr_min``, ``weak_search_s``: an associated event no picker found at a station is a
      detector positive there (``source`` weak) when the SNR within ``weak_search_s`` of its
      predicted P (Z) or S (horizontals) reaches ``weak_snr_min`` (None: no weak positives).

    Negatives:

    - ``exclusion_before_s``, ``coda_factor``: a negative window holds no raw or manual pick and
      no predicted arrival from ``exclusion_before_s`` before its start to its end; an event
      excludes from 2 s before its P to ``coda_factor`` x (S - P) + 10 s after its S.
    - ``noise_max_stalta``: negatives also keep the Z STA/LTA (``detect.sta_s`` / ``lta_s``) below
      this (weak events under the trigger stay out of them); None: off.

    Inputs:

    - ``manual_picks``: a pick file (any format :func:`quakescale.formats.picks_io.read_picks`
      reads: HypoDD ``.pha``, Hypoinverse ``.arc``, CSV ...) giving picker samples anchored on
      each manual P, labelled with the manual picks; None: none.
    - ``seed``: of the negatives' random windows; None: ``run.seed`` of the config.
    """

    snr_min: float = 2.0
    snr_max: float = 2000.0
    noise_per_event: float = 1.0
    merge_s: float = 0.6
    kurtosis_on: float = 8.0
    require_agree: bool = False
    zh_threshold: float | None = -0.6
    unlabelled_arrivals: str = "mask"
    weak_snr_min: float | None = 3.0
    weak_search_s: float = 1.0
    guided_contrast: float | None = 3.0
    guided_window_s: float = 1.5
    guided_phases: tuple[str, ...] = ("S",)
    mask_raw_triggers: bool = False
    stalta_only_p: str = "ignore"
    teacher_model: str | None = None
    teacher: str = "classic"
    min_classic_picks: int = 2
    model_max_residual_s: float = 0.3
    model_label_phases: tuple[str, ...] = ("S",)
    model_min_probability: float = 0.95
    label_tol_s: float = 1.5
    noise_max_stalta: float | None = 2.5
    exclusion_before_s: float = 40.0
    coda_factor: float = 1.5
    seed: int | None = None
    manual_picks: str | Path | None = None

    def __post_init__(self):
        if self.stalta_only_p not in ("ignore", "label"):
            raise ConfigError(f"bootstrap: stalta_only_p must be 'ignore' or 'label', not {self.stalta_only_p!r}")
        if self.unlabelled_arrivals not in ("mask", "drop"):
            raise ConfigError(
                f"bootstrap: unlabelled_arrivals must be 'mask' or 'drop', not {self.unlabelled_arrivals!r}"
            )
        teacher = "classic" if self.teacher is None else str(self.teacher).strip()
        object.__setattr__(self, "teacher", teacher)
        object.__setattr__(self, "guided_phases", tuple(self.guided_phases))
        object.__setattr__(self, "model_label_phases", tuple(self.model_label_phases))
        if teacher != "classic" or not self.teacher_model:
            object.__setattr__(self, "teacher_model", None)  # self-training completes the classic teacher only

    @classmethod
    def from_config(cls, cfg, **overrides) -> BootstrapParams:
        """The parameters of ``quakescale bootstrap`` for a run config: ``train.snr_min``,
        ``snr_max``, ``noise_per_event``, ``teacher``, ``manual_picks``, self-training from
        ``train.self_training`` with ``train.init_model`` (``builtin:default`` when null) and
        ``run.seed``; the rest at their defaults.  ``overrides``: field values that win."""
        t = cfg.train
        args = dict(
            snr_min=t.snr_min,
            snr_max=t.snr_max,
            noise_per_event=t.noise_per_event,
            teacher=t.teacher,
            teacher_model=(t.init_model or "builtin:default") if t.self_training else None,
            manual_picks=t.manual_picks,
            seed=cfg.run.seed,
        )
        args.update(overrides)
        return cls(**args)

    def replace(self, **changes) -> BootstrapParams:
        """A copy with ``changes`` (field names; an unknown one raises naming it)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"bootstrap: unknown parameter(s) {unknown}")
        return dataclasses.replace(self, **changes)

    def card(self, cfg, teacher_label: str, associator) -> dict:
        """The ``params`` of the sample set's ``card.json`` (and ``summary.json``): every field
        (phase tuples as lists, ``teacher`` as run: ``classic`` or ``METHOD:MODEL``), the classic
        pickers' ``detect:`` parameters, the acceptance of the associator used (its
        ``max_residual_s`` is the seed's 2 s, not ``associate.max_residual_s``) and the velocity model."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "manual_picks"}
        out.update(
            guided_phases=list(self.guided_phases),
            model_label_phases=list(self.model_label_phases),
            teacher=teacher_label,
        )
        det = cfg.detect
        out.update(
            sta_s=det.sta_s,
            lta_s=det.lta_s,
            trigger_on=det.trigger_on,
            trigger_off=det.trigger_off,
            max_residual_s=associator.max_residual_s,
            min_stations=associator.min_stations,
            velocity_model=str(cfg.velocity.model),
            manual_picks=str(self.manual_picks) if self.manual_picks is not None else None,
        )
        return out
