"""Train the CERP detector and picker from labelled sample sets (``quakescale train``).

Recipe (seed): Adam, learning rate 1e-3, batch 512, samples split 7:2:1 (train / validation /
test) with a fixed seed.  Every epoch appends one row per model to ``metrics.csv``: train and
validation loss and accuracy (detector: window event/noise; picker: per-0.5 s-step noise/P/S),
and for the picker the validation pick error (std and median |error| of P and S in seconds,
after sub-step refinement) and pick recall.  Checkpoints (``checkpoints/last.pt``) are written
every epoch and the epoch with the lowest validation loss is kept (``*_best.pt``); the final weights
go to ``OUT/cerp.pt`` + ``card.json`` (+ the test-split metrics), loadable with ``detect.model: OUT``.

Losses: detector binary cross-entropy; picker class-weighted cross-entropy over steps plus an L1
loss on the onset offsets of the steps next to each labelled arrival (in step units).
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..detect.models import (
    N_STEPS,
    STEP_N,
    WINDOW_N,
    CerpModel,
    load_model,
    new_model,
    normalize_windows,
    pick_device,
    save_model,
)
from ..detect.runner import decode_steps
from .augment import ColouredNoise, Compose, RandomCrop, WhiteNoise
from .figures import plot_training_curves
from .samples import SampleSet

CLASS_WEIGHTS = (1.0, 20.0, 20.0)  # ~58 noise steps per P or S step
OFFSET_LOSS_WEIGHT = 2.0


def split_indices(n: int, seed: int = 0, fractions=(0.7, 0.2, 0.1)):
    """7:2:1 train/validation/test split of ``range(n)``."""
    perm = np.random.default_rng(seed).permutation(n)
    a = int(round(fractions[0] * n))
    b = a + int(round(fractions[1] * n))
    return np.sort(perm[:a]), np.sort(perm[a:b]), np.sort(perm[b:])


def step_targets(
    p: np.ndarray, s: np.ndarray, n_steps: int = N_STEPS, step_n: int = STEP_N, ignore=(), ignore_n: int = 150
):
    """Class per step (0 noise, 1 P, 2 S), offsets (B, T, 2) and their mask (arrival step ± 1),
    and a per-step loss weight (B, T): 0 within ``ignore_n`` samples of an unlabelled arrival
    (arrays of ``ignore``, -1 padded) unless the step carries a label, else 1."""
    b = p.shape[0]
    weight = np.ones((b, n_steps), np.float32)
    centre = (np.arange(n_steps) + 0.5) * step_n
    for ign in ignore:
        rows, cols = np.nonzero(ign >= 0)
        if len(rows):
            near = np.abs(centre[None, :] - ign[rows, cols][:, None]) <= ignore_n
            np.minimum.at(weight, rows, np.where(near, 0.0, 1.0).astype(np.float32))
    cls = np.zeros((b, n_steps), np.int64)
    off = np.zeros((b, n_steps, 2), np.float32)
    mask = np.zeros((b, n_steps, 2), np.float32)
    for c, lab in ((0, p), (1, s)):
        rows, cols = np.nonzero(lab >= 0)
        a = lab[rows, cols]
        k = a // step_n
        ok = k < n_steps
        rows, a, k = rows[ok], a[ok], k[ok]
        cls[rows, k] = c + 1
        for d in (-1, 0, 1):
            j = k + d
            m = (j >= 0) & (j < n_steps)
            off[rows[m], j[m], c] = (a[m] - j[m] * step_n) / step_n
            mask[rows[m], j[m], c] = 1.0
    weight[cls > 0] = 1.0
    return cls, off, mask, weight


def _batches(idx: np.ndarray, bs: int, rng: np.random.Generator | None):
    idx = rng.permutation(idx) if rng is not None else idx
    for i in range(0, len(idx), bs):
        yield np.sort(idx[i : i + bs])


def _make_batch(ds: SampleSet, rows, aug, rng):
    batch = {
        "x": ds.load(rows),
        "p": ds.p[rows].copy(),
        "s": ds.s[rows].copy(),
        "p_ign": ds.p_ign[rows].copy(),
        "s_ign": ds.s_ign[rows].copy(),
        "event": ds.is_event[rows],
    }
    return aug(batch, rng)


def pick_errors(
    probs: np.ndarray, offsets: np.ndarray, p: np.ndarray, s: np.ndarray, threshold: float = 0.5, tol_s: float = 1.0
):
    """Errors (s) of decoded picks vs labels; returns dict of arrays for P and S + recall counts."""
    res = {"P": [], "S": [], "nP": 0, "nS": 0, "false": 0}
    for j in range(len(probs)):
        picks = decode_steps(probs[j], offsets[j], threshold)
        for ph, lab in (("P", p[j]), ("S", s[j])):
            truth = lab[lab >= 0]
            res["n" + ph] += len(truth)
            mine = np.array([x[1] for x in picks if x[0] == ph])
            used = np.zeros(len(mine), bool)
            for t in truth:
                if not len(mine):
                    break
                d = np.abs(mine - t)
                k = int(np.argmin(d))
                if d[k] <= tol_s * 100 and not used[k]:
                    used[k] = True
                    res[ph].append((mine[k] - t) / 100.0)
            res["false"] += int((~used).sum())
    return res


def _pick_summary(res) -> dict:
    out = {}
    for ph in ("P", "S"):
        e = np.asarray(res[ph])
        out[f"{ph.lower()}_err_std_s"] = float(e.std()) if len(e) else float("nan")
        out[f"{ph.lower()}_err_med_abs_s"] = float(np.median(np.abs(e))) if len(e) else float("nan")
        out[f"{ph.lower()}_recall"] = float(len(e) / res["n" + ph]) if res["n" + ph] else float("nan")
    out["false_picks"] = res["false"]
    return out


def _cpu(state: dict) -> dict:
    """A state dict's tensors on the CPU: checkpoints written on a GPU load on any node."""
    return {k: v.detach().cpu() for k, v in state.items()}


def _save_best(out: Path, nm: str, best: tuple) -> None:
    """``checkpoints/{nm}_best.pt``: the best epoch so far (state, epoch, validation loss)."""
    torch.save({nm: _cpu(best[1]), "epoch": best[2], "val_loss": float(best[0])}, out / "checkpoints" / f"{nm}_best.pt")


def train(
    sample_dirs,
    out_dir,
    epochs_detector: int = 10,
    epochs_picker: int = 20,
    lr: float = 1e-3,
    batch_size: int = 512,
    seed: int = 0,
    device: str = "auto",
    name: str = "cerp",
    version: str = "0.0.0",
    max_minutes: float | None = None,
    model: CerpModel | None = None,
    recipe: dict | None = None,
    picker_noise_fraction: float = 0.3,
    detector_time_share: float = 0.4,
    teacher_mask: float | None = None,
    teacher_mask_phases=("P",),
    coloured_noise: bool = False,
    log=print,
    teacher: nn.Module | None = None,
    resumed: dict | None = None,
) -> CerpModel:
    """Train detector then picker; write metrics.csv, checkpoints/, cerp.pt + card.json to ``out_dir``.

    ``teacher_mask`` (fine-tuning on incompletely labelled windows, e.g. bootstrap sets): in
    event windows, steps labelled noise where the starting model's picker gives a phase of
    ``teacher_mask_phases`` at least this probability are left out of the picker's loss -- a P
    the labels missed (a small event nobody associated) is not taught as noise.  Pick-free
    noise windows are unaffected.  P only by default: masking S too keeps the starting model's
    false S picks in codas (measured: S precision 0.73 -> 0.64 on region B of
    ``benchmarks/bench_retrain.py``).

    ``teacher``: the starting model's picker for ``teacher_mask`` (default: ``model``'s picker as
    training starts; a resumed run passes the one it started from).  ``resumed``: per network
    (``detector``, ``picker``) the epochs already done and the best epoch so far ``(val loss,
    state, epoch)`` or None, from an interrupted run's checkpoints: epochs are numbered on from
    there (metrics, checkpoints) and the best epoch is that of the whole run.

    ``coloured_noise``: the detector's windows (training and validation) also get
    :class:`~quakescale.train.augment.ColouredNoise` (noise of random spectrum, level and
    envelope): for weights trained on synthetic worlds and used on real data.  The picker's
    augmentation is the seed's either way."""
    out = Path(out_dir)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    dev = pick_device(device, ieee=False)  # training: TF32 as set before any inference here turned it off
    ds = SampleSet(sample_dirs).materialize()
    tr_idx, va_idx, te_idx = split_indices(len(ds), seed)
    # the picker sees event windows and a share of noise windows (it only runs on detections)
    keep = ds.is_event | (np.random.default_rng(seed + 3).random(len(ds)) < picker_noise_fraction)
    ptr_idx, pva_idx, pte_idx = tr_idx[keep[tr_idx]], va_idx[keep[va_idx]], te_idx[keep[te_idx]]
    m = model or new_model(seed)
    m.to(dev)
    if teacher_mask is None:
        teacher = None
    else:
        teacher = copy.deepcopy(teacher if teacher is not None else m.picker).to(dev).eval()
        teacher.gru.flatten_parameters()  # a copy's GRU weights are not cuDNN's one chunk: re-packed once
        teacher_cls = [{"P": 1, "S": 2}[ph] for ph in teacher_mask_phases]
    aug_train = Compose([RandomCrop(WINDOW_N, 1500), WhiteNoise(0.4)])
    aug_eval = Compose([RandomCrop(WINDOW_N, 1500)])
    det_train, det_eval = aug_train, aug_eval
    if coloured_noise:
        det_train = Compose([RandomCrop(WINDOW_N, 1500), WhiteNoise(0.4), ColouredNoise()])
        det_eval = Compose([RandomCrop(WINDOW_N, 1500), ColouredNoise()])
    metrics_path = out / "metrics.csv"
    fields = [
        "model",
        "epoch",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "val_p_err_std_s",
        "val_s_err_std_s",
        "val_p_err_med_abs_s",
        "val_s_err_med_abs_s",
        "val_p_recall",
        "val_s_recall",
        "seconds",
    ]
    fh = open(metrics_path, "w", newline="")
    wr = csv.DictWriter(fh, fieldnames=fields)
    wr.writeheader()
    t_start = time.time()
    deadline = t_start + 60 * max_minutes if max_minutes else None
    cw = torch.tensor(CLASS_WEIGHTS, device=dev)
    ce = nn.CrossEntropyLoss(weight=cw, reduction="none")
    bce = nn.BCEWithLogitsLoss()

    def det_pass(idx, train_mode, rng, aug):
        m.detector.train(train_mode)
        tot, correct, n = 0.0, 0, 0
        for rows in _batches(idx, batch_size, rng if train_mode else None):
            b = _make_batch(ds, rows, aug, rng)
            x = normalize_windows(torch.from_numpy(b["x"]).to(dev))
            y = torch.from_numpy(b["event"].astype(np.float32)).to(dev)
            with torch.set_grad_enabled(train_mode):
                logit = m.detector(x)
                loss = bce(logit, y)
            if train_mode:
                opt_d.zero_grad()
                loss.backward()
                opt_d.step()
            tot += float(loss.detach()) * len(rows)
            correct += int(((logit > 0).float() == y).sum())
            n += len(rows)
        return tot / max(n, 1), correct / max(n, 1)

    def pick_pass(idx, train_mode, rng, aug, collect=False):
        m.picker.train(train_mode)
        tot, correct, n = 0.0, 0, 0
        res = {"P": [], "S": [], "nP": 0, "nS": 0, "false": 0}
        for rows in _batches(idx, batch_size, rng if train_mode else None):
            b = _make_batch(ds, rows, aug, rng)
            cls, off, mask, wstep = step_targets(b["p"], b["s"], ignore=(b["p_ign"], b["s_ign"]))
            x = normalize_windows(torch.from_numpy(b["x"]).to(dev))
            cls_t, off_t, mask_t, w_t = (torch.from_numpy(a).to(dev) for a in (cls, off, mask, wstep))
            if teacher is not None:
                with torch.no_grad():
                    tp = torch.softmax(teacher(x)[0], -1)
                doubt = (
                    (tp[..., teacher_cls].max(-1).values >= teacher_mask)
                    & (cls_t == 0)
                    & torch.from_numpy(b["event"]).to(dev)[:, None]
                )
                w_t = w_t * (~doubt).float()
            with torch.set_grad_enabled(train_mode):
                logits, o = m.picker(x)
                # class-weighted mean over the steps the loss counts (steps near unlabelled arrivals not)
                per = ce(logits.reshape(-1, 3), cls_t.reshape(-1)) * w_t.reshape(-1)
                loss = per.sum() / (cw[cls_t.reshape(-1)] * w_t.reshape(-1)).sum().clamp(min=1e-6)
                loss = loss + OFFSET_LOSS_WEIGHT * (torch.abs(o - off_t) * mask_t).sum() / mask_t.sum().clamp(min=1)
            if train_mode:
                opt_p.zero_grad()
                loss.backward()
                opt_p.step()
            tot += float(loss.detach()) * len(rows)
            correct += int((logits.argmax(-1) == cls_t).sum())
            n += cls.size
            if collect:
                r = pick_errors(
                    torch.softmax(logits, -1).detach().cpu().numpy(), o.detach().cpu().numpy(), b["p"], b["s"]
                )
                for k in res:
                    res[k] = res[k] + r[k]
        return tot / max(len(idx), 1), correct / max(n, 1), res

    opt_d = torch.optim.Adam(m.detector.parameters(), lr=lr)
    opt_p = torch.optim.Adam(m.picker.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    final = {}
    resumed = resumed or {}
    e0_d, e0_p = (resumed.get(nm, (0, None))[0] for nm in ("detector", "picker"))
    # (val loss, state, epoch): the best epoch is kept, on disk too (an interrupted run resumes with it)
    best_d, best_p = (resumed.get(nm, (0, None))[1] or (np.inf, None, 0) for nm in ("detector", "picker"))
    for ep in range(e0_d + 1, e0_d + epochs_detector + 1):
        t = time.time()
        tl, ta = det_pass(tr_idx, True, rng, det_train)
        vl, va = det_pass(va_idx, False, np.random.default_rng(seed + 1), det_eval)
        wr.writerow(
            {
                "model": "detector",
                "epoch": ep,
                "train_loss": tl,
                "train_acc": ta,
                "val_loss": vl,
                "val_acc": va,
                "seconds": time.time() - t,
            }
        )
        fh.flush()
        log(
            f"detector epoch {ep}: loss {tl:.4f} acc {ta:.4f} | val loss {vl:.4f} acc {va:.4f} "
            f"({time.time() - t:.1f} s)"
        )
        torch.save({"detector": _cpu(m.detector.state_dict()), "epoch": ep}, out / "checkpoints" / "detector_last.pt")
        if vl < best_d[0]:
            best_d = (vl, {k: v.detach().clone() for k, v in m.detector.state_dict().items()}, ep)
            _save_best(out, "detector", best_d)
        if deadline and time.time() > t_start + detector_time_share * (deadline - t_start):
            log("detector: time budget reached")
            break
    for ep in range(e0_p + 1, e0_p + epochs_picker + 1):
        t = time.time()
        tl, ta, _ = pick_pass(ptr_idx, True, rng, aug_train)
        vl, va, res = pick_pass(pva_idx, False, np.random.default_rng(seed + 1), aug_eval, collect=True)
        sm = _pick_summary(res)
        wr.writerow(
            {
                "model": "picker",
                "epoch": ep,
                "train_loss": tl,
                "train_acc": ta,
                "val_loss": vl,
                "val_acc": va,
                **{f"val_{k}": v for k, v in sm.items() if f"val_{k}" in fields},
                "seconds": time.time() - t,
            }
        )
        fh.flush()
        log(
            f"picker epoch {ep}: loss {tl:.4f} acc {ta:.4f} | val loss {vl:.4f} acc {va:.4f} P err "
            f"{sm['p_err_std_s']:.3f} s S err {sm['s_err_std_s']:.3f} s recall "
            f"{sm['p_recall']:.3f}/{sm['s_recall']:.3f} ({time.time() - t:.1f} s)"
        )
        torch.save({"picker": _cpu(m.picker.state_dict()), "epoch": ep}, out / "checkpoints" / "picker_last.pt")
        if vl < best_p[0]:
            best_p = (vl, {k: v.detach().clone() for k, v in m.picker.state_dict().items()}, ep)
            _save_best(out, "picker", best_p)
        if deadline and time.time() > deadline:
            log("picker: time budget reached")
            break
    fh.close()
    for net, best in ((m.detector, best_d), (m.picker, best_p)):
        if best[1] is not None:
            net.load_state_dict(best[1])
    # held-out test split
    with torch.no_grad():
        _, dacc = det_pass(te_idx, False, np.random.default_rng(seed + 2), aug_eval)
        _, pacc, res = pick_pass(pte_idx, False, np.random.default_rng(seed + 2), aug_eval, collect=True)
    final = {
        "test_detector_acc": dacc,
        "test_picker_step_acc": pacc,
        **{f"test_{k}": v for k, v in _pick_summary(res).items()},
    }
    m.card = {
        "trained": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "training_seconds": round(time.time() - t_start, 1),
        "samples": [str(d) for d in ([sample_dirs] if isinstance(sample_dirs, (str, Path)) else sample_dirs)],
        "n_samples": {
            "train": len(tr_idx),
            "validation": len(va_idx),
            "test": len(te_idx),
            "event": int(ds.is_event.sum()),
            "noise": int((~ds.is_event).sum()),
        },
        "recipe": {
            "optimizer": "Adam",
            "lr": lr,
            "batch_size": batch_size,
            "split": "7:2:1",
            "seed": seed,
            "epochs_detector": epochs_detector,
            "epochs_picker": epochs_picker,
            "augmentation": "RandomCrop(P 1-16 s), WhiteNoise(0-40 %)"
            + (" + detector: ColouredNoise" if coloured_noise else ""),
            "picker_noise_fraction": picker_noise_fraction,
            **(recipe or {}),
        },
        "metrics": final,
        "best_epochs": {"detector": best_d[2], "picker": best_p[2]},
    }
    save_model(m, out, name=name, version=version)
    (out / "test_metrics.json").write_text(json.dumps(final, indent=2) + "\n")
    m.to(dev)
    return m


# ----------------------------------------------------------------------------- bootstrap sample sets
def _metrics_rows(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.exists() and path.stat().st_size else pd.DataFrame()


def train_from_sample_set(
    sample_dir,
    out_weights_dir,
    epochs: int | None = None,
    device: str = "auto",
    resume: bool = True,
    epochs_detector: int | None = None,
    epochs_picker: int | None = None,
    init_model: str | None = "builtin:default",
    name: str = "cerp-region",
    version: str | None = None,
    lr: float = 1e-3,
    batch_size: int = 512,
    seed: int = 0,
    max_minutes: float | None = None,
    teacher_mask: float | None = 0.3,
    log=print,
) -> Path:
    """Train (or fine-tune) the CERP models on bootstrap sample set(s); returns ``metrics.csv``.

    Calls :func:`train` (Adam ``lr``, ``batch_size``, 7:2:1, the shift + white-noise
    augmentation).  ``epochs`` sets both ``epochs_detector`` and
    ``epochs_picker`` unless given apart.  ``init_model`` (``builtin:NAME`` / a weights dir /
    None) is the starting point: the seed retrains the shipped model on the region's samples;
    None trains from scratch.  ``resume``: a finished run in ``out_weights_dir`` (card + test
    metrics) is returned as is; an interrupted one continues from ``checkpoints/*_last.pt``
    for the epochs left, appending to ``metrics.csv``.  Also writes ``training_curves.png``.
    The weights directory is loadable with ``detect.model: OUT``; every pick made with it
    carries ``NAME@VERSION`` in its ``model`` column (``version``: VERSION, default a date stamp plus
    the sample set's short hash).  ``sample_dir``: one sample-set directory or a list;
    ``out_weights_dir``: the weights directory; ``device``: ``auto`` / ``cpu`` / ``cuda``;
    ``name``: the model's name; ``lr``, ``batch_size``, ``seed``: of the training;
    ``max_minutes``: stop (and save) after this long; ``log``: progress lines.
    ``teacher_mask``: when fine-tuning, steps where the starting model
    sees a P with at least this probability and the (incomplete) bootstrap labels have none are
    left out of the picker's loss (:func:`train`); None: off."""
    out = Path(out_weights_dir)
    dirs = [Path(d) for d in ([sample_dir] if isinstance(sample_dir, (str, Path)) else sample_dir)]
    ep_d = epochs_detector if epochs_detector is not None else (epochs if epochs is not None else 10)
    ep_p = epochs_picker if epochs_picker is not None else (epochs if epochs is not None else 20)
    metrics = out / "metrics.csv"
    if resume and (out / "card.json").exists() and (out / "test_metrics.json").exists() and metrics.exists():
        log(f"train: {out} is complete (card.json + test_metrics.json); nothing to do (resume)")
        plot_training_curves(metrics, out / "training_curves.png")
        return metrics
    if version is None:
        h = hashlib.sha256()
        for d in dirs:
            h.update((d / "index.parquet").read_bytes())
        version = time.strftime("%Y.%m.%d", time.gmtime()) + "+" + h.hexdigest()[:8]
    model = load_model(init_model, device="cpu") if init_model else new_model(seed)
    mask = teacher_mask if init_model else None
    teacher = copy.deepcopy(model.picker) if mask is not None else None  # the starting model's, resumed or not
    done = {"detector": 0, "picker": 0}
    best: dict = {}
    prev = pd.DataFrame()
    ck = out / "checkpoints"
    if resume and ck.exists() and ((ck / "detector_last.pt").exists() or (ck / "picker_last.pt").exists()):
        for nm, net in (("detector", model.detector), ("picker", model.picker)):
            f = ck / f"{nm}_last.pt"
            if f.exists():
                blob = torch.load(f, map_location="cpu", weights_only=True)
                net.load_state_dict(blob[nm])
                done[nm] = int(blob.get("epoch", 0))
            fb = ck / f"{nm}_best.pt"
            if f.exists() and fb.exists():
                blob = torch.load(fb, map_location="cpu", weights_only=True)
                if "val_loss" in blob and int(blob.get("epoch", 0)) <= done[nm]:
                    best[nm] = (float(blob["val_loss"]), blob[nm], int(blob["epoch"]))
        prev = _metrics_rows(metrics)
        log(f"train: resuming {out} after detector epoch {done['detector']}, picker epoch {done['picker']}")
    done_d, done_p = done["detector"], done["picker"]
    init_label = model.label if init_model else "scratch"
    recipe = {
        "init_model": init_label,
        "bootstrap": True,
        "teacher_mask": mask,
        "resumed_after": {"detector": done_d, "picker": done_p},
        "epochs_detector": ep_d,
        "epochs_picker": ep_p,
    }
    train(
        dirs,
        out,
        epochs_detector=0 if done_p else max(ep_d - done_d, 0),
        epochs_picker=max(ep_p - done_p, 0),
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        device=device,
        name=name,
        version=version,
        max_minutes=max_minutes,
        model=model,
        teacher_mask=mask,
        recipe=recipe,
        log=log,
        teacher=teacher,
        resumed={nm: (done[nm], best.get(nm)) for nm in done},
    )
    if len(prev):  # train() numbered the new rows on from the epochs done
        new = _metrics_rows(metrics)
        kept = ((prev["model"] == "detector") & (prev["epoch"] <= done_d)) | (
            (prev["model"] == "picker") & (prev["epoch"] <= done_p)
        )
        prev = prev[kept]
        pd.concat([prev, new], ignore_index=True).to_csv(metrics, index=False)
    plot_training_curves(metrics, out / "training_curves.png")
    return metrics
