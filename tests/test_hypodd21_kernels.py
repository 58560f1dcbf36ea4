"""The HypoDD 2.1b port's LSQR operator and helpers: scipy's compiled kernels without importing
scipy.sparse, hypoDD's single-precision summation order, and the exact-equivalence rewrites
(chunked column norms, medians by partition) the port relies on for identical results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

PIPELINE = Path(__file__).resolve().parents[1] / "pipeline"

_CHILD = r"""
import json, sys
import numpy as np
from quakescale.relocate import hypodd21 as H
rng = np.random.default_rng(1)
nd, n = 30000, 800
cols = np.sort(rng.integers(0, n, (nd, 8)), axis=1).astype(np.int32)
vals = rng.normal(size=(nd, 8))
fc = np.array([5, 17], np.int64)
fv = np.array([0.5, 2.0], np.float32)
A = H._DDOperator(vals, cols, fv, fc, n)
v = rng.normal(size=n).astype(np.float32)
u = rng.normal(size=nd + 2).astype(np.float32)
out = {
    "kernel": A.kern is not None,
    "scipy_sparse_imported": "scipy.sparse" in sys.modules,
    "matvec": A.matvec_add(v, u).tolist(),
    "rmatvec": A.rmatvec(u).tolist(),
    "index_dtype": str(A.indices.dtype),
}
json.dump(out, open(sys.argv[1], "w"))
"""


def test_lsqr_kernels_load_without_scipy_sparse_and_sum_in_hypodd_order(tmp_path):
    res = tmp_path / "out.json"
    env = dict(os.environ, PYTHONPATH=str(PIPELINE))
    subprocess.run([sys.executable, "-c", _CHILD, str(res)], check=True, env=env, timeout=120)
    r = json.loads(res.read_text())
    assert r["kernel"], "a 240 000-entry system should use the compiled kernels"
    assert not r["scipy_sparse_imported"], "the kernels must load without importing scipy.sparse"
    assert r["index_dtype"] == "int32"
    # the same operator, rebuilt here, and hypoDD's aprod order in single precision
    rng = np.random.default_rng(1)
    nd, n = 30000, 800
    cols = np.sort(rng.integers(0, n, (nd, 8)), axis=1)
    vals = rng.normal(size=(nd, 8)).astype(np.float32)
    fc = np.array([5, 17])
    fv = np.array([0.5, 2.0], np.float32)
    v = rng.normal(size=n).astype(np.float32)
    u = rng.normal(size=nd + 2).astype(np.float32)
    # u + A v: each row's entries added onto u in order, float32
    mv = u.copy()
    for k in range(8):
        mv[:nd] += vals[:, k] * v[cols[:, k]]
    mv[nd:] += fv * v[fc]
    np.testing.assert_array_equal(np.asarray(r["matvec"], np.float32), mv)
    # A^T u: contributions accumulated row by row, in row order, float32 (np.add.at keeps that order)
    rv = np.zeros(n, np.float32)
    np.add.at(rv, cols.ravel(), (vals * u[:nd, None]).ravel())
    np.add.at(rv, fc, fv * u[nd:])
    np.testing.assert_array_equal(np.asarray(r["rmatvec"], np.float32), rv)


def test_chunked_column_norms_equal_bincount_bit_for_bit():
    rng = np.random.default_rng(2)
    nd, n = 70000, 1200
    cols = rng.integers(0, n, (nd, 8)).astype(np.int32)
    vals = rng.normal(size=(nd, 8)) * 10.0 ** rng.integers(-3, 3, (nd, 1))
    wt = rng.random(nd)
    wv = vals * wt[:, None]
    ref = np.bincount(cols.ravel(), weights=(wv**2).ravel(), minlength=n)
    sq = np.zeros(n)
    from quakescale.relocate.hypodd21 import _ROW_CHUNK

    for a in range(0, nd, _ROW_CHUNK):
        w = vals[a : a + _ROW_CHUNK] * wt[a : a + _ROW_CHUNK, None]
        np.add.at(sq, cols[a : a + _ROW_CHUNK].ravel(), (w * w).ravel())
    np.testing.assert_array_equal(sq, ref)


def test_fmedian_by_partition_equals_sorted_median():
    from quakescale.relocate.hypodd21 import _fmedian

    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 10, 11, 1000, 1001):
        x = rng.normal(size=n)
        s = np.sort(x)
        n2 = n // 2
        want = 0.5 * (s[n2 - 1] + s[n2]) if n % 2 == 0 else s[n2]
        assert _fmedian(x) == want
    x = np.r_[rng.normal(size=9), np.nan]
    s = np.sort(x)
    assert _fmedian(x) == 0.5 * (s[4] + s[5])
