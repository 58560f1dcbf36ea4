"""Labelled sample sets for the CERP models, cut from a world's continuous data.

A sample set is a directory::

    waveforms.npy    (N, 3, 4500) float16 numpy array (opened as a memmap), Z/N/E, preprocessed
                     exactly like the detection runner (:func:`quakescale.detect.runner.preprocess`),
                     each scaled to a peak of 1
    index.parquet    one row per sample: sample, kind ("event" | "noise"), station_id, event_id,
                     snr_p, p_idx / s_idx (lists: every labelled arrival's sample index inside
                     the 45 s stored window), source; optionally p_ign / s_ign (lists:
                     arrivals known to be in the window but not labelled, e.g. predicted from an
                     associated hypocentre where no classic picker fired -- the picker's loss
                     ignores the steps around them instead of teaching them as noise)
    card.json        how it was made

Event samples store 45 s with the sample's P at 16 s, so :class:`~quakescale.train.augment.RandomCrop`
can cut 30 s windows with P anywhere from 1 to 16 s (a random shift within 15 s).  Noise samples
are 45 s with no arrival from 40 s before to the end.  Labels list all arrivals in the window
whose truth SNR >= ``min_label_snr`` (invisible arrivals are not taught as picks).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from ..archive import ArchiveError, read_station_day
from ..rundir import write_json, write_table

STORE_N = 4500
P_AT_N = 1600
FS = 100.0


def to_float16(x: np.ndarray) -> np.ndarray:
    """Scale to a peak of 1 (the models normalise every window anyway) and store as float16."""
    m = float(np.abs(x).max())
    return (x / m if m > 0 else x).astype(np.float16)


def _day_list(picks: pd.DataFrame) -> list[dt.date]:
    return sorted({t.date() for t in picks["time"]})


def samples_from_world(
    world_dir,
    out_dir,
    min_snr_p: float = 2.0,
    min_label_snr: float = 1.5,
    noise_per_event: float = 1.0,
    max_events: int | None = None,
    seed: int = 0,
    params=None,
    channels=("HH?", "EH?"),
) -> Path:
    """Cut event and noise samples from a synthetic world (SDS + truth/picks.parquet)."""
    from ..detect.runner import preprocess  # torch: only where samples are cut

    world = Path(world_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tp = pd.read_parquet(world / "truth" / "picks.parquet")
    if "recorded" in tp.columns:
        tp = tp[tp["recorded"].astype(bool)]
    tp = tp.copy()
    tp["t_ns"] = tp["time"].astype("int64")
    rows, chunks = [], []
    for sid, g in tp.groupby("station_id"):
        for day in _day_list(g):
            try:
                st = read_station_day(world / "sds", sid, day, channels=list(channels))
                prep = preprocess(st, params)
            except (ArchiveError, ValueError) as exc:
                print(f"samples: skip {day}/{sid}: {exc}")
                continue
            n = prep.data.shape[1]
            idx = ((g["t_ns"].to_numpy() - prep.t0_ns) / 1e7).round().astype(np.int64)
            ph = g["phase"].to_numpy()
            snr = g["snr"].to_numpy()
            lab = snr >= min_label_snr
            p_all, s_all = np.sort(idx[(ph == "P") & lab]), np.sort(idx[(ph == "S") & lab])
            arr_all = np.sort(idx)
            cv = np.concatenate([[0], np.cumsum(~prep.valid)])
            ev = g[(g["phase"] == "P") & (g["snr"] >= min_snr_p)]
            if max_events is not None and len(ev) > max_events:
                ev = ev.sample(max_events, random_state=int(rng.integers(1 << 30)))
            n_ev = 0
            for _, r in ev.iterrows():
                pi = int(round((r["t_ns"] - prep.t0_ns) / 1e7))
                a = pi - P_AT_N
                if a < 0 or a + STORE_N > n or cv[a + STORE_N] - cv[a] > 0:
                    continue
                chunks.append(to_float16(prep.data[:, a : a + STORE_N]))
                rows.append(
                    dict(
                        kind="event",
                        station_id=sid,
                        event_id=int(r["event_id"]),
                        snr_p=float(r["snr"]),
                        start_ns=int(prep.time_ns(a)),
                        p_idx=(p_all[(p_all >= a) & (p_all < a + STORE_N)] - a).tolist(),
                        s_idx=(s_all[(s_all >= a) & (s_all < a + STORE_N)] - a).tolist(),
                        source=str(world),
                    )
                )
                n_ev += 1
            n_noise, tries = int(round(noise_per_event * max(n_ev, 1))), 0
            while n_noise > 0 and tries < 50 * n_noise + 100:
                tries += 1
                a = int(rng.integers(0, max(n - STORE_N, 1)))
                if a + STORE_N > n or cv[a + STORE_N] - cv[a] > 0:
                    continue
                j = np.searchsorted(arr_all, a - 4000)
                if j < len(arr_all) and arr_all[j] < a + STORE_N:
                    continue
                chunks.append(to_float16(prep.data[:, a : a + STORE_N]))
                rows.append(
                    dict(
                        kind="noise",
                        station_id=sid,
                        event_id=-1,
                        snr_p=0.0,
                        start_ns=int(prep.time_ns(a)),
                        p_idx=[],
                        s_idx=[],
                        source=str(world),
                    )
                )
                n_noise -= 1
            del prep, st
    if not rows:
        raise ValueError(f"samples_from_world: no samples could be cut from {world}")
    wf = np.lib.format.open_memmap(out / "waveforms.npy", mode="w+", dtype=np.float16, shape=(len(chunks), 3, STORE_N))
    for i, c in enumerate(chunks):
        wf[i] = c
    wf.flush()
    del wf
    idx_df = pd.DataFrame(rows)
    idx_df.insert(0, "sample", np.arange(len(idx_df), dtype=np.int64))
    write_table(idx_df, out / "index.parquet")
    write_json(
        {
            "world": str(world),
            "n_event": int((idx_df.kind == "event").sum()),
            "n_noise": int((idx_df.kind == "noise").sum()),
            "store_n": STORE_N,
            "p_at_n": P_AT_N,
            "min_snr_p": min_snr_p,
            "min_label_snr": min_label_snr,
            "seed": seed,
        },
        out / "card.json",
    )
    return out


class SampleSet:
    """One or more sample-set directories as arrays: ``x`` (N, 3, 4500) float16 memmaps,
    ``is_event`` (N,), ``p`` / ``s`` (N, K) label indices padded with -1, ``p_ign`` / ``s_ign``
    (N, K) unlabelled arrivals the picker's loss ignores (-1 padded; all -1 for sets without them)."""

    def __init__(self, dirs, max_labels: int = 8):
        dirs = [Path(d) for d in ([dirs] if isinstance(dirs, (str, Path)) else dirs)]
        xs, idxs = [], []
        for d in dirs:
            if not (d / "waveforms.npy").exists() or not (d / "index.parquet").exists():
                raise FileNotFoundError(
                    f"sample set {d}: needs waveforms.npy and index.parquet (make it with samples_from_world)"
                )
            xs.append(np.load(d / "waveforms.npy", mmap_mode="r"))
            idxs.append(pd.read_parquet(d / "index.parquet"))
        self.parts = xs
        self.index = pd.concat(idxs, ignore_index=True)
        self.offsets = np.cumsum([0] + [len(x) for x in xs])
        n = len(self.index)
        self.is_event = (self.index["kind"] == "event").to_numpy()
        for key, col in (("p", "p_idx"), ("s", "s_idx"), ("p_ign", "p_ign"), ("s_ign", "s_ign")):
            a = np.full((n, max_labels), -1, np.int64)
            if col in self.index.columns:
                for i, lab in enumerate(self.index[col]):
                    lab = [] if lab is None or (np.isscalar(lab) and pd.isna(lab)) else list(lab)[:max_labels]
                    a[i, : len(lab)] = lab
            setattr(self, key, a)

    def __len__(self) -> int:
        return len(self.index)

    def load(self, rows: np.ndarray) -> np.ndarray:
        """float32 (len(rows), 3, 4500) for global row numbers."""
        rows = np.asarray(rows)
        out = np.empty((len(rows), 3, STORE_N), np.float32)
        part = np.searchsorted(self.offsets, rows, side="right") - 1
        for k in np.unique(part):
            m = part == k
            loc = rows[m] - self.offsets[k]
            order = np.argsort(loc)
            buf = np.asarray(self.parts[k][np.sort(loc)], np.float32)
            out[np.flatnonzero(m)[order]] = buf
        return out

    def materialize(self) -> "SampleSet":
        """Read everything into memory (float16) for fast epochs."""
        self.parts = [np.asarray(x) for x in self.parts]
        return self


def iter_batches(sample_dirs, batch_size: int = 512, kind: str | None = None, shuffle: bool = False, seed: int = 0):
    """Yield ``(index_rows DataFrame, x float32 (b, 3, 4500))`` batches from one or more sample
    sets without loading the waveforms (memmap reads of ``batch_size`` rows at a time)."""
    ds = SampleSet(sample_dirs)
    rows = np.arange(len(ds))
    if kind is not None:
        rows = rows[(ds.index["kind"] == kind).to_numpy()]
    if shuffle:
        rows = np.random.default_rng(seed).permutation(rows)
    for i in range(0, len(rows), batch_size):
        r = rows[i : i + batch_size]
        yield ds.index.iloc[r], ds.load(r)
