"""Training curves: loss and accuracy per epoch, train vs eval."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from netviz.draw.common import pyplot, save_figure


def plot_curves(metrics: list[dict[str, Any]], path: str | os.PathLike, title: str = "",
                trace: list[dict[str, Any]] | None = None) -> Path:
    """Loss and accuracy against epochs: the training values within each epoch as a line (from
    ``trace``; a one-epoch run is a curve, not two dots), the eval values at each epoch's end."""
    plt = pyplot()
    epochs = [m["epoch"] for m in metrics]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((ax_loss, "loss", "cross-entropy loss"), (ax_acc, "acc", "accuracy")):
        if trace:
            ax.plot([t["epoch"] for t in trace], [t[f"train_{key}"] for t in trace], "-", lw=1.4,
                    label="train (within epochs)")
        else:
            ax.plot(epochs, [m[f"train_{key}"] for m in metrics], "o-", label="train")
        ax.plot(epochs, [m[f"eval_{key}"] for m in metrics], "s-", label="eval (end of epoch)")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
        if len(epochs) <= 20:
            ax.set_xticks([0, *epochs] if trace else epochs)
    best = max(metrics, key=lambda m: m["eval_acc"])
    ax_acc.set_title(f"best eval accuracy {best['eval_acc']:.4f} (epoch {best['epoch']})")
    ax_loss.set_title("loss")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
