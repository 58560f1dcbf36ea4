"""VELEST files: the 1-D model (``.mod``), station list (``.sta``) and catalog (``new.cat``).

``.mod`` (VELEST 3.x): a title line; then for P a line starting with the number of layers
``N`` followed by ``N`` lines ``vel top_km vdamp [comment]`` (format f5.2,5x,f7.2,2x,f7.3), then
the same block for S.  Layer depths are the tops of the layers in km (may be negative: above
sea level).  When the S block is missing, Vs = Vp / ``vpvs``.

``.sta``: a Fortran format line, then ``STATlat.laatN lon.lonnE elev_m model icc ptcor stcor``
(``(a4,f7.4,a1,1x,f8.4,a1,1x,i4,1x,i1,1x,i3,1x,f5.2,2x,f5.2)``); blank line ends it.

``new.cat`` (as written by VELEST's ``cnv`` conversion in the REAL demo):
``yymmdd hh mm ss.ss lat lon depth mag gap rms``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import QuakeScaleError
from ..velocity import LayeredModel
from ._text import leading_floats, token_lines

__all__ = ["read_velest_mod", "write_velest_mod", "read_velest_sta", "read_velest_cat"]


class VelestFormatError(QuakeScaleError, ValueError):
    pass


def read_velest_mod(path, vpvs: float = 1.73) -> LayeredModel:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"VELEST model file not found: {path}")
    lines = path.read_text().splitlines()
    blocks: list[list[tuple[float, float]]] = []
    i = 1  # skip the title
    while i < len(lines):
        vals = leading_floats(lines[i])
        if not vals:
            i += 1
            continue
        if len(vals) == 1 and float(vals[0]).is_integer():
            n = int(vals[0])
            layers = []
            for j in range(1, n + 1):
                if i + j >= len(lines):
                    raise VelestFormatError(f"{path}:{i + 1}: block announces {n} layers, file ends after {j - 1}")
                lv = leading_floats(lines[i + j])
                if len(lv) < 2:
                    raise VelestFormatError(f"{path}:{i + j + 1}: expected 'vel depth vdamp', got {lines[i + j]!r}")
                layers.append((lv[0], lv[1]))
            blocks.append(layers)
            i += n + 1
        else:
            raise VelestFormatError(f"{path}:{i + 1}: expected the number of layers, got {lines[i]!r}")
        if len(blocks) == 2:
            break
    if not blocks:
        raise VelestFormatError(f"{path}: no layer block found")
    top = [t for _, t in blocks[0]]
    vp = [v for v, _ in blocks[0]]
    if len(blocks) > 1:
        stop = [t for _, t in blocks[1]]
        if len(stop) != len(top) or not np.allclose(stop, top):
            raise VelestFormatError(f"{path}: S layer tops {stop} differ from P tops {top}")
        vs = [v for v, _ in blocks[1]]
    else:
        vs = [v / vpvs for v in vp]
    return LayeredModel(tuple(top), tuple(vp), tuple(vs), name=path.stem)


def write_velest_mod(model: LayeredModel, path, title: str | None = None) -> None:
    out = [f" {title or model.name}"]
    for k, (label, v) in enumerate((("P-VELOCITY MODEL", model.vp_kms), ("S-VELOCITY MODEL", model.vs_kms))):
        out.append(f" {len(v)}" + ("        vel,depth,vdamp,phase (f5.2,5x,f7.2,2x,f7.3,3x,a1)" if k == 0 else ""))
        for j, (vel, top) in enumerate(zip(v, model.top_km)):
            out.append(f"{vel:5.2f}     {top:7.2f}  {1.0:7.3f}" + (f"            {label}" if j == 0 else ""))
    Path(path).write_text("\n".join(out) + "\n")


def read_velest_sta(path) -> pd.DataFrame:
    """Station id (4 letters), latitude, longitude, elevation_m, p/s corrections (s)."""
    path = Path(path)
    rows = []
    for n, line in enumerate(path.read_text().splitlines()[1:], 2):
        if not line.strip():
            break
        try:
            lat = float(line[4:11]) * (-1 if line[11] == "S" else 1)
            lon = float(line[13:21]) * (-1 if line[21] == "W" else 1)
            elev = float(line[23:27])
            pcor = float(line[34:39]) if line[34:39].strip() else 0.0
            scor = float(line[41:46]) if line[41:46].strip() else 0.0
        except (ValueError, IndexError) as exc:
            raise VelestFormatError(f"{path}:{n}: cannot parse station line {line!r}: {exc}") from None
        rows.append(
            dict(station=line[:4].strip(), latitude=lat, longitude=lon, elevation_m=elev, p_cor_s=pcor, s_cor_s=scor)
        )
    return pd.DataFrame(rows)


def read_velest_cat(path, century: int = 2000) -> pd.DataFrame:
    """``new.cat``-style catalog: time (UTC), latitude, longitude, depth_km, magnitude, gap_deg, rms_s."""
    path = Path(path)
    rows = []
    for _n, _line, tok in token_lines(path, 10, VelestFormatError, "'yymmdd hh mm ss lat lon dep mag gap rms'"):
        ymd = tok[0].zfill(6)
        t = pd.Timestamp(
            year=century + int(ymd[:2]),
            month=int(ymd[2:4]),
            day=int(ymd[4:6]),
            hour=int(tok[1]),
            minute=int(tok[2]),
            tz="UTC",
        ) + pd.to_timedelta(float(tok[3]), unit="s")
        rows.append(
            dict(
                time=t,
                latitude=float(tok[4]),
                longitude=float(tok[5]),
                depth_km=float(tok[6]),
                magnitude=float(tok[7]),
                gap_deg=float(tok[8]),
                rms_s=float(tok[9]),
            )
        )
    return pd.DataFrame(rows)
