"""CERP models: a CNN event detector and a BiGRU phase picker (after Zhou et al. 2019, the seed).

Both take the same input: a ``(B, 3, 3000)`` float32 tensor, a 30 s 3-component (Z, N, E) window
at 100 Hz, band-passed 1-20 Hz, each window scaled by its own standard deviation
(:func:`normalize_windows`).

- :class:`Detector`: eight Conv1d(kernel 3) + ReLU + MaxPool(2) blocks (3000 -> 11 samples), a
  fully connected head, one event/noise logit per window.
- :class:`Picker`: the window cut into 60 steps of 0.5 s (each step sees 1 s of waveform around
  it through two dense layers), two bidirectional GRU layers over the steps, and
  per step (a) noise/P/S class logits and (b) the sub-step onset offset of P and S in [0, 1) of
  the step, so a pick is ``(step + offset) * 0.5 s`` -- resolution well below the step.
  Inference on a CPU runs in :mod:`.cpu_picker` (numpy + a compiled GRU recurrence; the same
  function up to float32 rounding); training and GPUs use these torch modules.

Trained weights are a directory with ``cerp.pt`` (both state dicts + configs) and ``card.json``
(name, version, sha256 of the weights file, sizes, training recipe, metrics).  Shipped weights
live in the package as ``weights/NAME.pt`` + ``weights/NAME.json`` + the human model card
``weights/NAME.md``; :func:`load_model` reads ``builtin:NAME`` (offline), a directory or a card.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import cpu_picker
from .model_install import sha256_file

FS_HZ = 100.0
WINDOW_N = 3000
STEP_N = 50  # 0.5 s
N_STEPS = WINDOW_N // STEP_N
CLASSES = ("noise", "P", "S")
WEIGHTS_DIR = Path(__file__).parent / "weights"


def pick_device(device: str = "auto", ieee: bool = True) -> torch.device:
    """``auto``: cuda when available, else cpu.  On a GPU, float32 stays IEEE float32
    (:func:`ieee_float32`) unless ``ieee`` is False: training keeps torch's TF32 settings (faster
    convolutions on Ampere and later, and its results are weights, not picks to reproduce), as
    they were before this process turned them off for inference (:func:`restore_float32`: a
    bootstrap's teacher and the training that follows run in one process)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("detect.device is 'cuda' but torch sees no CUDA device (use 'auto' or 'cpu')")
    dev = torch.device(device)
    if dev.type == "cuda":
        ieee_float32() if ieee else restore_float32()
    return dev


_FLOAT32_BEFORE: tuple | None = None  # the settings ieee_float32 found: (legacy flags, per-op precisions)


def _float32_settings() -> tuple:
    """(cuDNN's and cuBLAS's legacy ``allow_tf32`` flags, or None where torch refuses to read them
    (legacy and per-op settings that disagree); the per-op ``fp32_precision`` settings of cuDNN's
    convolutions and RNNs and of matrix products, or None before torch 2.9)."""
    cudnn, mm = torch.backends.cudnn, torch.backends.cuda.matmul
    try:
        legacy = (bool(cudnn.allow_tf32), bool(mm.allow_tf32))
    except RuntimeError:
        legacy = None
    ops = None
    if hasattr(getattr(cudnn, "conv", None), "fp32_precision"):  # torch >= 2.9
        ops = (cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision, mm.fp32_precision)
    return legacy, ops


def ieee_float32() -> None:
    """Turn off TF32 for cuDNN's convolutions and GRUs and for matrix products (process-wide).

    torch lets cuDNN run float32 convolutions and RNNs in TF32 on Ampere and later GPUs by
    default (10-bit mantissas): emulated on two real hours of Mesetas data, the detector's
    probabilities moved by up to 7e-4 and the picker's by 1.3e-3, and a pick appeared.  With
    IEEE float32 a GPU gives the CPU's picks up to float32 rounding, as the models promise.  The
    legacy flags are set first, then (torch >= 2.9) the per-op settings: in that order torch
    still reads the legacy flags (False) and ``torch.backends.cudnn.flags()`` works; the per-op
    settings alone would make both raise for the rest of the process.  What was set before is
    kept for :func:`restore_float32`."""
    global _FLOAT32_BEFORE
    if _FLOAT32_BEFORE is None:
        _FLOAT32_BEFORE = _float32_settings()
    cudnn, mm = torch.backends.cudnn, torch.backends.cuda.matmul
    cudnn.allow_tf32 = False
    mm.allow_tf32 = False
    if _FLOAT32_BEFORE[1] is not None:
        cudnn.conv.fp32_precision = cudnn.rnn.fp32_precision = mm.fp32_precision = "ieee"


def restore_float32() -> None:
    """The float32 settings as :func:`ieee_float32` found them (nothing when it has not run)."""
    global _FLOAT32_BEFORE
    if _FLOAT32_BEFORE is None:
        return
    (legacy, ops), _FLOAT32_BEFORE = _FLOAT32_BEFORE, None
    cudnn, mm = torch.backends.cudnn, torch.backends.cuda.matmul
    if legacy is not None:
        cudnn.allow_tf32, mm.allow_tf32 = legacy
    if ops is not None:
        cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision, mm.fp32_precision = ops


def normalize_windows(x: np.ndarray | torch.Tensor, eps: float = 1e-10):
    """Scale each window (…, 3, n) by the standard deviation of its 3 components, demeaned."""
    if isinstance(x, np.ndarray):
        x = x - x.mean(axis=-1, keepdims=True)
        s = x.reshape(*x.shape[:-2], -1).std(axis=-1)[..., None, None]
        return (x / (s + eps)).astype(np.float32, copy=False)
    # the std of the demeaned, flattened window (unbiased, as Tensor.std) from the components'
    # means and norms: sum((x - m)^2) = |x|^2 - n m^2 per component (band-passed windows have
    # m << std, so no cancellation); two cheap reductions (torch.var_mean is ~30x slower on CPU)
    n = x.shape[-1]
    mean = x.mean(dim=-1, keepdim=True)
    acc = torch.float32 if x.device.type == "mps" else torch.float64  # (B, C, 1) sums: float64 where there is one
    q = torch.linalg.vector_norm(x, dim=-1, keepdim=True).to(acc)
    ss = (q * q - n * mean.to(acc).square()).sum(dim=-2, keepdim=True).clamp_min(0.0)
    inv = (1.0 / (torch.sqrt(ss / (x.shape[-2] * n - 1)) + eps)).to(x.dtype)
    return torch.addcmul(-mean * inv, x, inv)


class Detector(nn.Module):
    """8 x [Conv1d k=3 + ReLU + MaxPool 2] -> FC -> 1 logit (event vs noise) (pooled before the ReLU: same function)."""

    def __init__(
        self, channels: tuple[int, ...] = (8, 8, 8, 16, 16, 16, 32, 32), hidden: int = 32, n_in: int = WINDOW_N
    ):
        super().__init__()
        if len(channels) != 8:
            raise ValueError(f"Detector needs 8 convolutional layers, got channels={channels}")
        layers, c_in, n = [], 3, n_in
        for c in channels:
            # pool before ReLU: the same function (ReLU is monotonic, so it commutes with max) at
            # half the ReLU work; the conv layers keep their indices (state dicts unchanged)
            layers += [nn.Conv1d(c_in, c, 3, padding=1), nn.MaxPool1d(2), nn.ReLU(inplace=True)]
            c_in, n = c, n // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(c_in * n, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1)
        )
        self.config = {"channels": list(channels), "hidden": hidden, "n_in": n_in}

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, n) -> (B,)
        """The same function as ``head(features(x))``, with each block's convolution and max-pool
        fused (:func:`conv_pool`) and the activations channels-last (``(B, C, 1, n)`` stored as
        NHWC): oneDNN's kernels for the detector's few channels vectorise over the channels
        there, not over time.  Logits within float rounding of the layer stack (1e-6 on a
        30 s window; the summation order of the taps differs) at about a third of its CPU time."""
        return self.from_block(x.unsqueeze(2).contiguous(memory_format=torch.channels_last), 0)

    def from_block(self, h: torch.Tensor, k: int) -> torch.Tensor:
        """The network from block ``k`` on: ``h`` (B, C, 1, n), the input of block ``k`` (best
        channels-last) -> (B,) logits.  :func:`~.cpu_detector.detect_windows` computes block 0
        itself and hands the rest here."""
        for conv in self.features[3 * k :: 3]:
            h = conv_pool(h, conv.weight, conv.bias).clamp_min_(0.0)
        return self.head(h.squeeze(2)).squeeze(-1)


def conv_pool(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``max_pool1d(conv1d(x, weight, bias, padding=1), 2)`` for a kernel of 3 on ``x`` of shape
    ``(B, C, 1, n)`` (a 1-D signal as a 2-D image of height 1, best channels-last), computed as
    ONE stride-2 convolution: output ``p`` of the pool is the larger of the convolution at ``2p``
    (taps on samples 2p-1..2p+1) and at ``2p+1`` (2p..2p+2), i.e. of the two halves of a
    kernel-4, stride-2 convolution whose ``2C`` filters are ``[w, 0]`` and ``[0, w]`` (the added
    taps are exact zeros).  Half the outputs of the plain convolution and no pooling pass.
    A day's 5,760 windows, 2 threads, the eight layers: plain conv + pool 0.44 s channels-last,
    fused 0.80 s channels-first (one slow moment of the host), fused channels-last 0.23-0.27 s."""
    c = weight.shape[0]
    w2 = torch.cat([nn.functional.pad(weight, (0, 1)), nn.functional.pad(weight, (1, 0))]).unsqueeze(2)
    y = nn.functional.conv2d(
        x, w2.contiguous(memory_format=torch.channels_last), torch.cat([bias, bias]), stride=(1, 2), padding=(0, 1)
    )
    return torch.maximum(y[:, :c], y[:, c:])


class Picker(nn.Module):
    """(Optional conv front end) -> 0.5 s steps (1 s context each) -> 2 BiGRU layers -> per-step class + offset."""

    def __init__(
        self, conv: int = 0, frame_features: int = 64, hidden: int = 32, n_in: int = WINDOW_N, step_n: int = STEP_N
    ):
        super().__init__()
        self.step_n = step_n
        if conv:
            self.front = nn.Sequential(
                nn.Conv1d(3, conv, 7, padding=3),
                nn.ReLU(inplace=True),
                nn.Conv1d(conv, conv, 7, padding=3),
                nn.ReLU(inplace=True),
            )
        else:  # raw samples straight into the step frames (cheapest; the frame layer learns the filters)
            self.front = nn.Identity()
        c_front = conv or 3
        self.frame = nn.Sequential(
            nn.Linear(c_front * 2 * step_n, frame_features),
            nn.ReLU(inplace=True),
            nn.Linear(frame_features, frame_features),
            nn.ReLU(inplace=True),
        )
        self.gru = nn.GRU(frame_features, hidden, num_layers=2, batch_first=True, bidirectional=True)
        self.cls = nn.Linear(2 * hidden, len(CLASSES))
        self.off = nn.Linear(2 * hidden, 2)
        self.config = {"conv": conv, "frame_features": frame_features, "hidden": hidden, "n_in": n_in, "step_n": step_n}

    def forward(self, x: torch.Tensor):  # (B, 3, n) -> logits (B, T, 3), offsets (B, T, 2) in [0, 1)
        h = self.front(x)
        if cpu_picker.usable(self, h):  # inference on a CPU: numpy + a compiled GRU recurrence
            return cpu_picker.forward(self, h)
        pad = self.step_n // 2
        h = nn.functional.pad(h, (pad, pad))
        fr = h.unfold(-1, 2 * self.step_n, self.step_n)  # (B, C, T, 2*step)
        b, c, t, w = fr.shape
        fr = fr.permute(0, 2, 1, 3).reshape(b, t, c * w)
        g, _ = self.gru(self.frame(fr))
        return self.cls(g), torch.sigmoid(self.off(g))


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@dataclass
class CerpModel:
    """Detector + picker + their card (name, version, sha256, recipe)."""

    detector: Detector
    picker: Picker
    card: dict = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def label(self) -> str:
        return f"{self.card.get('name', 'cerp')}@{self.card.get('version', '0')}"

    def to(self, device) -> "CerpModel":
        self.device = torch.device(device)
        self.detector.to(self.device).eval()
        self.picker.to(self.device).eval()
        return self


def save_model(
    model: CerpModel, out_dir, name: str = "cerp", version: str = "0.0.0", extra: dict | None = None
) -> Path:
    """Write ``cerp.pt`` (both state dicts + configs) and ``card.json`` with its sha256."""
    from ..rundir import atomic_path, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    blob = {
        "detector": {k: v.detach().cpu() for k, v in model.detector.state_dict().items()},
        "picker": {k: v.detach().cpu() for k, v in model.picker.state_dict().items()},
        "detector_config": model.detector.config,
        "picker_config": model.picker.config,
    }
    wpath = out / "cerp.pt"
    with atomic_path(wpath) as tmp:
        torch.save(blob, tmp)
    card = dict(model.card)
    card.update(extra or {})
    card.update(
        name=name,
        version=version,
        weights="cerp.pt",
        sha256=sha256_file(wpath),
        detector_params=n_params(model.detector),
        picker_params=n_params(model.picker),
        detector_config=model.detector.config,
        picker_config=model.picker.config,
        input={
            "sampling_rate_hz": FS_HZ,
            "window_n": WINDOW_N,
            "step_n": STEP_N,
            "band_hz": [1.0, 20.0],
            "channels": "Z,N,E",
            "normalize": "per-window std",
        },
    )
    write_json(card, out / "card.json")
    model.card = card
    return out


def resolve_weights(spec: str | Path) -> Path:
    """Path of the card (JSON) for ``builtin:NAME`` (``weights/NAME.json`` in the package), a
    weights directory (``DIR/card.json``) or a card file."""
    s = str(spec)
    if s.startswith("builtin:"):
        name = s.split(":", 1)[1]
        card = WEIGHTS_DIR / f"{name}.json"
        if not card.exists():
            known = sorted(p.stem for p in WEIGHTS_DIR.glob("*.json")) if WEIGHTS_DIR.exists() else []
            raise FileNotFoundError(
                f"detect.model: unknown builtin weights {s!r} (no {card}); known: {['builtin:' + k for k in known]}"
            )
        return card
    d = Path(s)
    if d.is_file() and d.suffix == ".json":
        return d
    if not (d / "card.json").exists():
        raise FileNotFoundError(
            f"detect.model: {d} is not a weights directory (no card.json); run `quakescale train` to make one"
        )
    return d / "card.json"


def load_model(spec: str | Path = "builtin:default", device: str = "auto", verify: bool = True) -> CerpModel:
    """Load detector + picker from ``builtin:NAME``, a weights directory or a card file (offline)."""
    cpath = resolve_weights(spec)
    card = json.loads(cpath.read_text())
    wpath = cpath.parent / card.get("weights", "cerp.pt")
    if verify and card.get("sha256") and sha256_file(wpath) != card["sha256"]:
        raise ValueError(f"weights {wpath}: sha256 does not match {cpath} (corrupt or replaced file)")
    blob = torch.load(wpath, map_location="cpu", weights_only=True)
    det = Detector(**{k: tuple(v) if isinstance(v, list) else v for k, v in blob["detector_config"].items()})
    pk = Picker(**blob["picker_config"])
    det.load_state_dict(blob["detector"])
    pk.load_state_dict(blob["picker"])
    return CerpModel(det, pk, card).to(pick_device(device))


def install_builtin(src_dir, name: str = "default", dest_dir: Path = WEIGHTS_DIR) -> Path:
    """Copy trained weights (``DIR/cerp.pt`` + ``card.json``) into the package as
    ``weights/NAME.pt`` + ``weights/NAME.json`` (the sha256 stays that of the same bytes)."""
    import shutil

    src = Path(src_dir)
    card = json.loads((src / "card.json").read_text())
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / card.get("weights", "cerp.pt"), dest_dir / f"{name}.pt")
    card["weights"] = f"{name}.pt"
    if sha256_file(dest_dir / f"{name}.pt") != card["sha256"]:
        raise ValueError(f"install_builtin: copied weights do not match the sha256 of {src / 'card.json'}")
    (dest_dir / f"{name}.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return dest_dir / f"{name}.json"


def new_model(seed: int = 0, detector_kw: dict | None = None, picker_kw: dict | None = None) -> CerpModel:
    torch.manual_seed(seed)
    return CerpModel(Detector(**(detector_kw or {})), Picker(**(picker_kw or {})), {"name": "cerp", "version": "0.0.0"})
