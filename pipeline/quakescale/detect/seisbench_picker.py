"""``detect.method: seisbench``: any SeisBench picker in the station-day runner.

``detect.model`` names the weights:

- ``NAME:WEIGHTS`` -- a SeisBench model class and pretrained weight name, e.g. ``EQTransformer:original``,
  ``PhaseNet:original``, ``GPD:original``, ``PhaseNet:stead``.  Looked up first under
  :func:`quakescale.detect.model_install.models_dir` (what ``quakescale models install`` converted
  from the published files, offline), then through ``seisbench.models.NAME.from_pretrained``
  (SeisBench's cache, which ``models install`` also fills, then SeisBench's download where online);
- ``NAME:PATH`` or ``PATH`` -- local weights: ``PATH.pt`` + ``PATH.json`` as SeisBench's ``save``
  writes them (``PATH`` alone needs the json's ``quakescale.model_class``), or a bare state dict
  ``.pt`` with ``NAME`` given (the class's default arguments).

The picker sees the raw 3-component stream (channels ``1``/``2`` read as ``N``/``E``) and does its
own preprocessing (resampling, the filter and normalisation its weights were published with),
windowing (overlapping windows, stacked) and batching (``detect.batch_size``) on ``detect.device``
(auto / cpu / cuda, chosen at run time); its picks (peak time, peak probability) come back as
[(phase, sample on the runner's 100 Hz grid, probability)], and the runner adds SNR and the
Wood-Anderson amplitudes exactly as for CERP picks.  Thresholds: ``detect.seisbench_p_threshold`` /
``seisbench_s_threshold``, or the weights' own defaults (the published tools' settings for the
converted weights).  Needs the ``seisbench`` extra; without it a clear error, never an import error
at package import.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import QuakeScaleError


class SeisBenchError(QuakeScaleError):
    """A SeisBench picker could not be loaded or run as configured."""


@dataclass
class SeisBenchPicker:
    model: object  # seisbench.models.WaveformModel
    label: str  # e.g. "EQTransformer:original"
    device: str
    source: str  # where the weights came from

    @property
    def sampling_rate(self) -> float:
        return float(getattr(self.model, "sampling_rate", 100.0) or 100.0)


def _sbm():
    try:
        import seisbench.models as sbm
    except ImportError as exc:
        raise SeisBenchError(
            f"detect.method seisbench needs the 'seisbench' extra: pip install 'quakescale[seisbench]' ({exc})"
        ) from exc
    return sbm


def _model_class(name: str):
    sbm = _sbm()
    cls = getattr(sbm, name, None)
    if cls is None or not isinstance(cls, type):
        lower = {k.lower(): k for k in dir(sbm) if isinstance(getattr(sbm, k), type)}
        if name.lower() in lower:
            return getattr(sbm, lower[name.lower()])
        raise SeisBenchError(f"detect.model: {name!r} is not a SeisBench model (e.g. EQTransformer, PhaseNet, GPD)")
    return cls


def parse_spec(spec: str) -> tuple[str | None, str, bool]:
    """``detect.model`` -> (class name or None, weights name or path, is_path)."""
    spec = str(spec).strip()
    name, sep, rest = spec.partition(":")
    looks_path = lambda s: "/" in s or s.endswith((".pt", ".json")) or s.startswith(("~", "."))  # noqa: E731
    if sep and name and name.replace("_", "").isalnum() and not looks_path(name):
        return name, rest, looks_path(rest) or Path(rest).expanduser().exists()
    return None, spec, True


def _resolve_device(device: str) -> str:
    """CERP's :func:`~.models.pick_device` (``auto``; IEEE float32 on a GPU, not TF32: the CPU's
    picks up to float32 rounding), its error as this module's one-line error."""
    from .models import pick_device

    try:
        return str(pick_device(device))
    except RuntimeError as exc:
        raise SeisBenchError(str(exc)) from exc


def _load_files(cls, base: Path):
    """SeisBench ``save`` layout: ``base.json`` + ``base.pt``."""
    return cls.load(str(base))


def load(spec: str, device: str = "auto") -> SeisBenchPicker:
    """Load the picker named by ``detect.model`` (see the module docstring)."""
    from .model_install import models_dir

    name, ref, is_path = parse_spec(spec)
    if is_path:
        p = Path(ref).expanduser()
        base = p.with_suffix("") if p.suffix in (".pt", ".json") else p
        meta_file = base.with_name(base.name + ".json")
        pt_file = base.with_name(base.name + ".pt")
        if not pt_file.is_file():
            raise SeisBenchError(f"detect.model: {pt_file}: no such weights file")
        if meta_file.is_file():
            try:
                meta = json.loads(meta_file.read_text())
            except ValueError as exc:
                raise SeisBenchError(f"detect.model: {meta_file}: not JSON ({exc})") from exc
            name = name or meta.get("quakescale", {}).get("model_class")
            if not name:
                raise SeisBenchError(f"detect.model: {meta_file} does not say its model class: write NAME:{ref}")
            model, src = _load_files(_model_class(name), base), str(pt_file)
        else:
            if not name:
                raise SeisBenchError(
                    f"detect.model: {pt_file} has no {meta_file.name}: write NAME:{ref} (e.g. PhaseNet:{ref})"
                )
            import torch

            model = _model_class(name)()
            try:
                model.load_state_dict(torch.load(pt_file, map_location="cpu", weights_only=True))
            except (RuntimeError, KeyError, ValueError) as exc:
                raise SeisBenchError(
                    f"detect.model: {pt_file} is not a {name} state dict ({str(exc).splitlines()[0]})"
                ) from exc
            src = str(pt_file)
        label = f"{name}:{base.name}"
    else:
        cls = _model_class(name)
        local = models_dir() / cls.__name__.lower() / ref
        if local.with_name(ref + ".pt").is_file() and local.with_name(ref + ".json").is_file():
            model, src = _load_files(cls, local), str(local) + ".pt"
        else:
            try:
                model = cls.from_pretrained(ref)
            except Exception as exc:  # offline, unknown weight name, ...: one clear line
                raise SeisBenchError(
                    f"detect.model {spec}: not in {models_dir()} and SeisBench could not provide it "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                    f"offline, run `quakescale models install` (EQTransformer, PhaseNet, GPD :original)"
                ) from exc
            src = f"seisbench:{cls.__name__}/{ref}"
        label = f"{cls.__name__}:{ref}"
    dev = _resolve_device(device)
    model.to(dev)
    model.eval()
    return SeisBenchPicker(model, label, dev, src)


_CACHE: dict = {}
_LOCK = threading.Lock()


def get_picker(spec: str, device: str = "auto") -> SeisBenchPicker:
    """:func:`load` once per process and (spec, device)."""
    key = (str(spec), device)
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = load(spec, device)
        return _CACHE[key]


def prepare_stream(stream):
    """A copy of ``stream`` as SeisBench wants it: contiguous traces (gaps split), float, ``1``/``2``
    read as ``N``/``E`` (SeisBench's models name their inputs Z, N, E)."""
    st = stream.copy().split()
    for tr in st:
        c = tr.stats.channel
        if c[-1:] in ("1", "2"):
            tr.stats.channel = c[:-1] + ("N" if c[-1] == "1" else "E")
        if tr.data.dtype.kind != "f":
            tr.data = tr.data.astype(np.float32)
    return st


def seisbench_picks(stream, t0_ns: int, fs: float, picker: SeisBenchPicker, params) -> tuple[list, dict]:
    """Picks of ``picker`` on ``stream`` as [(phase, sample on the grid (t0_ns, fs), probability)].

    ``params``: the detect section (batch_size, seisbench_p_threshold / _s_threshold)."""
    import torch

    st = prepare_stream(stream)
    kw = {"batch_size": int(params.batch_size)}
    if params.seisbench_p_threshold is not None:
        kw["P_threshold"] = float(params.seisbench_p_threshold)
    if params.seisbench_s_threshold is not None:
        kw["S_threshold"] = float(params.seisbench_s_threshold)
    with torch.inference_mode():
        out = picker.model.classify(st, **kw)
    picks = getattr(out, "picks", out)
    res = []
    for pk in picks:
        ph = str(getattr(pk, "phase", "") or "").upper()
        if ph not in ("P", "S") or pk.peak_time is None:
            continue
        idx = (pk.peak_time.ns - t0_ns) * fs / 1e9
        res.append((ph, float(idx), float(pk.peak_value if pk.peak_value is not None else np.nan)))
    res.sort(key=lambda x: x[1])
    n_s = sum(tr.stats.npts / tr.stats.sampling_rate for tr in st if tr.stats.channel[-1:] == "Z")
    in_s = getattr(picker.model, "in_samples", 0) / picker.sampling_rate
    return res, {"n_windows": int(n_s // in_s) if in_s else 0, "n_detected": 0, "n_raw_picks": len(res)}
