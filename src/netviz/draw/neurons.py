"""Neuron cards: one PNG per channel, its dream beside its top data-set images with their maps."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from netviz.draw.common import minmax, pyplot, rgb, save_figure
from netviz.files import Artifact, file_stem, write_json

if TYPE_CHECKING:
    from netviz.neurons import NeuronCard, NeuronCards


def plot_card(cards: NeuronCards, card: NeuronCard, path: str | os.PathLike) -> Path:
    """[dream | top image 1 | ... | top image k], each top image with the channel's map over it."""
    import numpy as np

    plt = pyplot()
    k = len(card.top_indices)
    fig, axes = plt.subplots(1, k + 1, figsize=(1.7 * (k + 1), 2.2), squeeze=False)
    axes = axes[0]
    axes[0].imshow(np.clip(rgb(card.dream), 0, 1), interpolation="nearest")
    axes[0].set_title(f"dream\nenergy {card.dream_activation:.3g}", fontsize=7)
    h, w = card.top_images.shape[2:]
    for j in range(k):
        ax = axes[j + 1]
        ax.imshow(rgb(card.top_images[j].float() / 255.0), interpolation="nearest")  # uint8 images
        ax.imshow(minmax(card.top_maps[j].numpy()), cmap="inferno", alpha=0.55,
                  extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="bilinear")
        ax.set_title(f"#{card.top_indices[j]} {card.top_labels[j][:10]}\nmean {card.top_scores[j]:.3g}",
                     fontsize=7)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"{cards.layer} channel {card.channel}: its dream, and the {k} images of {cards.dataset} "
                 "it responds to most (where it fires, over each)", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def write_neurons(cards: NeuronCards, out_dir: str | os.PathLike) -> list[Artifact]:
    """card-<layer>-<channel>.png per channel and neurons.json."""
    out = Path(out_dir)
    written = [Artifact(plot_card(cards, c, out / f"card-{file_stem(cards.layer)}-{c.channel}.png"),
                        f"{cards.layer} channel {c.channel}: dream and top {len(c.top_indices)} images "
                        f"({', '.join(c.top_labels[:3])}...)")
               for c in cards.cards]
    written.append(Artifact(write_json(out / "neurons.json", cards.record()),
                            "per channel: the dream's activation and the top images with their mean activation"))
    return written
