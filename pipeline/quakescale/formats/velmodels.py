"""Readers for 1-D velocity model files in the formats users have.

- layer table: lines ``top_km vp_kms [vs_kms]`` (``#`` comments; Vp/Vs 1.73 when no Vs);
- TauP ``.nd``: ``depth vp vs [rho qp qs]`` with named discontinuities (``mantle`` ...); the
  gradient-free pairs of lines are collapsed into flat layers;
- HypoDD ``hypoDD.inp``: the ``NLAY RATIO`` / ``TOP`` / ``VEL`` block (HypoDD 1.x/2.x layout,
  the velocity lines after the event-selection block);
- Hypoinverse ``.crh``: a title line, then ``velocity top_km`` lines; S from a sibling file with
  ``S`` in place of ``P`` in its name when present, else Vp/1.73 (Hypoinverse's POS default).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import QuakeScaleError
from ..velocity import BUILTIN_MODELS, LayeredModel
from ._text import leading_floats


class ModelFormatError(QuakeScaleError, ValueError):
    pass


_LAYER_NAMES = {
    "top": ("top_km", "top", "depth_km", "depth", "z_km", "z"),
    "vp": ("vp_km_s", "vp_kms", "vp", "vp_km/s", "p_velocity"),
    "vs": ("vs_km_s", "vs_kms", "vs", "vs_km/s", "s_velocity"),
}


def read_layer_table(path, vpvs: float = 1.73) -> LayeredModel:
    """Lines ``top_km vp_kms [vs_kms]``, separated by blanks or commas; ``#`` comments.  An
    optional header line names the columns (e.g. ``top_km,vp_km_s,vs_km_s``; also ``depth``,
    ``vp``, ``vs``, in any order).  Vs = Vp / ``vpvs`` when there is no Vs column."""
    path = Path(path)
    rows = []
    cols = None  # (i_top, i_vp, i_vs or None) from a header
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        tok = [t.strip() for t in re.split(r"[,;\s]+", line) if t.strip()]
        vals = leading_floats(" ".join(tok))  # leading numbers (trailing labels are allowed, as before)
        if not vals:
            if rows or cols is not None:
                raise ModelFormatError(f"{path}:{n}: expected numbers 'top_km vp_kms [vs_kms]', got {line!r}")
            names = [t.lower() for t in tok]
            idx = {}
            for key, aliases in _LAYER_NAMES.items():
                hit = [i for i, nm in enumerate(names) if nm in aliases]
                if hit:
                    idx[key] = hit[0]
            if "top" not in idx or "vp" not in idx:
                raise ModelFormatError(
                    f"{path}:{n}: header {line!r} must name a top/depth column (top_km) and a "
                    "Vp column (vp_km_s); Vs (vs_km_s) optional"
                )
            cols = (idx["top"], idx["vp"], idx.get("vs"))
            continue
        if cols is not None:
            if len(vals) <= max(c for c in cols if c is not None):
                raise ModelFormatError(f"{path}:{n}: {len(vals)} values, the header names more columns: {line!r}")
            row = [vals[cols[0]], vals[cols[1]]] + ([vals[cols[2]]] if cols[2] is not None else [])
        else:
            if len(vals) < 2:
                raise ModelFormatError(f"{path}:{n}: expected 'top_km vp_kms [vs_kms]', got {line!r}")
            row = vals[:3]
        if any(not np.isfinite(v) for v in row) or row[1] <= 0 or (len(row) > 2 and row[2] <= 0):
            raise ModelFormatError(f"{path}:{n}: velocities must be positive numbers, got {line!r}")
        if rows and row[0] <= rows[-1][0]:
            raise ModelFormatError(f"{path}:{n}: layer tops must increase ({row[0]} after {rows[-1][0]})")
        rows.append(row)
    if not rows:
        raise ModelFormatError(f"{path}: no layers found")
    tops = [r[0] for r in rows]
    vp = [r[1] for r in rows]
    vs = [r[2] if len(r) > 2 else r[1] / vpvs for r in rows]
    return LayeredModel(tuple(tops), tuple(vp), tuple(vs), name=path.stem)


def read_taup_nd(path, max_depth_km: float | None = None, gradient_step_km: float = 0.5) -> LayeredModel:
    path = Path(path)
    pts = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        s = line.strip()
        if not s or s[0].isalpha():
            continue
        vals = leading_floats(s)
        if len(vals) < 3:
            raise ModelFormatError(f"{path}:{n}: expected 'depth vp vs ...', got {s!r}")
        pts.append(vals[:3])
    if not pts:
        raise ModelFormatError(f"{path}: no model lines found")
    # TauP interpolates linearly between successive points; a repeated depth is a
    # discontinuity.  Flat layers: constant segments stay one layer, gradient segments are
    # split into sublayers of at most ``gradient_step_km`` with their mean velocity.
    tops, vp, vs = [], [], []
    for (d0, a0, b0), (d1, a1, b1) in zip(pts[:-1], pts[1:]):
        if max_depth_km is not None and d0 >= max_depth_km:
            break
        if d1 - d0 < 1e-9:
            continue
        n = 1 if (abs(a1 - a0) < 1e-9 and abs(b1 - b0) < 1e-9) else max(1, int(np.ceil((d1 - d0) / gradient_step_km)))
        for i in range(n):
            za, zb = d0 + (d1 - d0) * i / n, d0 + (d1 - d0) * (i + 1) / n
            fa, fb = (za - d0) / (d1 - d0), (zb - d0) / (d1 - d0)
            va = a0 + (a1 - a0) * 0.5 * (fa + fb)
            vb = b0 + (b1 - b0) * 0.5 * (fa + fb)
            if vp and abs(va - vp[-1]) < 1e-9 and abs(vb - vs[-1]) < 1e-9:
                continue
            tops.append(za)
            vp.append(va)
            vs.append(vb)
    last = pts[-1]
    if (
        not tops
        or (max_depth_km is None or last[0] < max_depth_km)
        and (abs(last[1] - vp[-1]) > 1e-9 or abs(last[2] - vs[-1]) > 1e-9)
    ):
        tops.append(last[0])
        vp.append(last[1])
        vs.append(last[2])
    return LayeredModel(tuple(tops), tuple(vp), tuple(vs), name=path.stem)


def read_hypodd_inp(path) -> LayeredModel:
    path = Path(path)
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("*")]
    # hypoDD.inp (2.x) data lines: fn..., then control lines; the model block is the line with
    # two numbers "NLAY RATIO" followed by TOP and VEL lines.  Search for a consistent triple.
    for i in range(len(lines) - 2):
        a = leading_floats(lines[i])
        if len(a) == 2 and float(a[0]).is_integer() and 1 <= a[0] <= 50 and 1.3 < a[1] < 2.5:
            nlay = int(a[0])
            top = leading_floats(lines[i + 1])
            vel = leading_floats(lines[i + 2])
            if len(top) == nlay and len(vel) == nlay:
                return LayeredModel.from_vpvs(top, vel, vpvs=a[1], name=path.stem)
    raise ModelFormatError(f"{path}: no 'NLAY RATIO' / TOP / VEL velocity block found (HypoDD 2.x layout)")


def _read_crh_file(path: Path):
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    if len(lines) < 2:
        raise ModelFormatError(f"{path}: a CRH model needs a title line and at least one 'velocity top' line")
    vel, top = [], []
    for n, line in enumerate(lines[1:], 2):
        vals = leading_floats(line)
        if len(vals) < 2:
            raise ModelFormatError(f"{path}:{n}: expected 'velocity_kms top_km', got {line!r}")
        vel.append(vals[0])
        top.append(vals[1])
    return top, vel, lines[0].strip()


def read_crh(path, s_path=None, vpvs: float = 1.73) -> LayeredModel:
    path = Path(path)
    top, vp, _title = _read_crh_file(path)
    if s_path is None:
        cand = path.with_name(re.sub(r"P(?=[^P]*$)", "S", path.name))
        s_path = cand if cand != path and cand.exists() else None
    if s_path is not None:
        stop, vs, _ = _read_crh_file(Path(s_path))
        if len(stop) != len(top) or not np.allclose(stop, top):
            raise ModelFormatError(f"{s_path}: S layer tops {stop} differ from P tops {top} in {path}")
    else:
        vs = [v / vpvs for v in vp]
    return LayeredModel(tuple(top), tuple(vp), tuple(vs), name=path.stem)


def read_model(path) -> LayeredModel:
    """Read a velocity model, choosing the reader by file name:
    ``*.nd`` TauP, ``*.crh`` Hypoinverse (P; an ``_S.crh`` beside it gives S), ``hypoDD.inp``
    (or ``*.inp``) HypoDD layers, anything else a layer table (``top_km vp_kms [vs_kms]``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"velocity model file not found: {path}")
    name = path.name.lower()
    if name.endswith(".nd"):
        return read_taup_nd(path, max_depth_km=100.0)
    if name.endswith(".crh"):
        return read_crh(path)
    if name.endswith(".inp"):
        return read_hypodd_inp(path)
    return read_layer_table(path)


def resolve_model(spec: str) -> LayeredModel:
    """``builtin:NAME`` (:data:`quakescale.velocity.BUILTIN_MODELS`) or a model file path."""
    if spec.startswith("builtin:"):
        name = spec.split(":", 1)[1]
        try:
            return BUILTIN_MODELS[name]()
        except KeyError:
            raise ValueError(f"unknown builtin velocity model {name!r}; known: {sorted(BUILTIN_MODELS)}") from None
    return read_model(spec)


def write_layer_table(model: LayeredModel, path) -> None:
    lines = [f"# {model.name}: top_km vp_kms vs_kms"]
    for t, a, b in zip(model.top_km, model.vp_kms, model.vs_kms):
        lines.append(f"{t:8.3f} {a:7.3f} {b:7.3f}")
    Path(path).write_text("\n".join(lines) + "\n")
