"""Plots for a run: training curves and evaluation figures, saved as PNG with matplotlib."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def training_curves(history: list[dict], path: Path) -> None:
    """Loss, age MAE and gender accuracy per epoch, train against validation."""
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key, title in zip(axes, ("loss", "age_mae", "gender_accuracy"), ("loss", "age MAE (years)", "gender accuracy")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = [h.get(prefix + key) for h in history]
            if any(v is not None for v in values):
                ax.plot(epochs, values, style, marker="o", ms=3, label="validation" if prefix else "train")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluation_plots(m: dict, pred: dict, out: Path, prefix: str = "test_") -> list[Path]:
    """Predicted vs true age, MAE by age band, the gender confusion matrix and per-race bars."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(pred["true_age"], pred["age"], s=4, alpha=0.3)
    ax.plot([0, 100], [0, 100], "k--", lw=1)
    ax.set(xlabel="true age", ylabel="predicted age", title=f"age: MAE {m['age_mae']:.2f} years (n={m['n']})")
    paths.append(_save(fig, out / f"{prefix}age_scatter.png"))

    bands = [b for b, v in m["per_age_band"].items() if v["n"]]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(bands, [m["per_age_band"][b]["age_mae"] for b in bands])
    ax.set(xlabel="age band", ylabel="MAE (years)", title="age MAE by age band")
    paths.append(_save(fig, out / f"{prefix}mae_by_age_band.png"))

    cm = np.array(m["confusion_matrix"]["matrix"])
    fig, ax = plt.subplots(figsize=(3.8, 3.4))
    ax.imshow(cm, cmap="Blues")
    labels = m["confusion_matrix"]["labels"]
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=labels, yticklabels=labels, xlabel="predicted", ylabel="true",
           title=f"gender: accuracy {m['gender_accuracy']:.1%}")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center")
    paths.append(_save(fig, out / f"{prefix}gender_confusion.png"))

    if "per_race" in m:
        races = [r for r, v in m["per_race"].items() if v["n"]]
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        axes[0].bar(races, [m["per_race"][r]["age_mae"] for r in races])
        axes[0].set(title="age MAE by race", ylabel="years")
        axes[1].bar(races, [m["per_race"][r]["gender_accuracy"] for r in races])
        axes[1].set(title="gender accuracy by race", ylim=(0.5, 1))
        paths.append(_save(fig, out / f"{prefix}per_race.png"))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
