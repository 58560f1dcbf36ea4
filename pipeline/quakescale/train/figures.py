"""Figures of the training workflow (matplotlib, Agg; files only).

- :func:`plot_training_curves`: the seed's Figure 4 from the trainer's ``metrics.csv`` --
  train / validation accuracy per epoch of the detector and the picker, and the picker's pick
  uncertainty (std of the P and S pick errors on the validation split) per epoch.
- :func:`plot_dataset_summary`: the seed's Figure 2 from a sample set's ``index.parquet`` --
  SNR of event and noise samples, epicentral distance, azimuth and travel time vs distance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(metrics_csv, out_png) -> Path:
    """Accuracy (train / validation) and pick uncertainty per epoch -> PNG."""
    plt = _plt()
    mt = pd.read_csv(metrics_csv)
    need = {"model", "epoch", "train_acc", "val_acc"}
    if not need <= set(mt.columns):
        raise ValueError(
            f"{metrics_csv}: not a trainer metrics file (needs columns {sorted(need)}, has {list(mt.columns)})"
        )
    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    for k, nm in enumerate(("detector", "picker")):
        d = mt[mt.model == nm]
        a = ax[k]
        if len(d):
            a.plot(d.epoch, d.train_acc, "o-", label="train")
            a.plot(d.epoch, d.val_acc, "s-", label="validation")
            a.legend()
        else:
            a.text(0.5, 0.5, "no epochs", ha="center", transform=a.transAxes)
        a.set_xlabel("epoch")
        a.set_ylabel("accuracy" + (" (per 0.5 s step)" if nm == "picker" else " (window)"))
        a.set_title(f"{nm}: accuracy")
        a.grid(alpha=0.3)
    p = mt[mt.model == "picker"]
    a = ax[2]
    for col, lab in (("val_p_err_std_s", "P"), ("val_s_err_std_s", "S")):
        if col in p and p[col].notna().any():
            a.plot(p.epoch, p[col], "o-", label=f"{lab} error std")
    if len(p) and a.lines:
        a.legend()
    a.set_xlabel("epoch")
    a.set_ylabel("pick uncertainty (s)")
    a.set_title("picker: validation pick error")
    a.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_dataset_summary(index: pd.DataFrame | str | Path, out_png) -> Path:
    """Histograms of a sample set (``index.parquet`` or its DataFrame) -> PNG (seed Figure 2)."""
    plt = _plt()
    if not isinstance(index, pd.DataFrame):
        p = Path(index)
        index = pd.read_parquet(p / "index.parquet" if p.is_dir() else p)
    ev = index[index["kind"] == "event"]
    no = index[index["kind"] == "noise"]
    fig, ax = plt.subplots(2, 3, figsize=(14, 8))
    bins = np.logspace(-0.3, 3.5, 40)

    def hist(a, x, title, xlabel, **kw):
        x = np.asarray(x, float)
        x = x[np.isfinite(x)]
        if len(x):
            a.hist(x, **kw)
        else:
            a.text(0.5, 0.5, "no data", ha="center", transform=a.transAxes)
        a.set_title(title)
        a.set_xlabel(xlabel)
        a.set_ylabel("samples")

    hist(ax[0, 0], ev.get("snr_p", []), f"(a) event samples: P SNR (n={len(ev)})", "SNR", bins=bins, color="C0")
    ax[0, 0].set_xscale("log")
    hist(ax[0, 1], no.get("snr_p", []), f"(b) noise samples: SNR (n={len(no)})", "SNR", bins=bins, color="C7")
    ax[0, 1].set_xscale("log")
    a = ax[0, 2]
    if "epi_distance_km" in ev and ev["epi_distance_km"].notna().any():
        a.plot(ev["epi_distance_km"], ev["p_travel_s"], ".", ms=3, label="P")
        a.plot(ev["epi_distance_km"], ev["s_travel_s"], ".", ms=3, label="S")
        a.legend()
    a.set_title("(c) travel time vs epicentral distance")
    a.set_xlabel("epicentral distance (km)")
    a.set_ylabel("travel time (s)")
    hist(
        ax[1, 0],
        ev.get("azimuth_deg", []),
        "(d) azimuth (event to station)",
        "azimuth (deg)",
        bins=np.arange(0, 361, 15),
        color="C2",
    )
    hist(ax[1, 1], ev.get("epi_distance_km", []), "(e) epicentral distance", "km", bins=30, color="C3")
    hist(ax[1, 2], ev.get("snr_s", []), "(f) picker samples: S SNR", "SNR", bins=bins, color="C1")
    ax[1, 2].set_xscale("log")
    for a in ax.flat:
        a.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
