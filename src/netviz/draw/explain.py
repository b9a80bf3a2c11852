"""`netviz explain` figures: per image, the decision and the features that carried it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz.draw.attribute import image_stem, overlay
from netviz.draw.common import minmax, pyplot, rgb, save_figure
from netviz.explain.run import DRAWN
from netviz.files import Artifact, write_json
from netviz.heads import target_name

if TYPE_CHECKING:
    import numpy as np

    from netviz.explain import Explanation

BARS = 12  # channels in the contribution bar chart
WIDE = 5  # without cards: the top channels' maps a row of this many


def upsampled(amap: Any, size: tuple[int, int]) -> np.ndarray:
    """A (h, w) map resized bilinearly to the image's (H, W)."""
    import torch
    from torch.nn import functional as F

    t = torch.as_tensor(amap, dtype=torch.float32)[None, None]
    if tuple(t.shape[2:]) != tuple(size):
        t = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
    return t[0, 0].numpy()


def plot_explanation(ex: Explanation, i: int, path: str | os.PathLike) -> Path:
    """[image | attribution | contributions], then one row per top channel: [its map over the image |
    its dream | its top data-set images]."""
    import numpy as np

    plt = pyplot()
    res, spec = ex.result, ex.spec
    channels = ex.top_channels(i)[:DRAWN]
    k = max((len(ex.cards[c].top_indices) for c in channels if c in ex.cards), default=0)
    # with cards a row per channel (map, dream, top images); without, the channels' maps side by side
    cols = 2 + 1 + k if ex.cards else WIDE
    rows = len(channels) if ex.cards else -(-len(channels) // WIDE)
    fig = plt.figure(figsize=(1.55 * cols, 1.75 * (rows + 1) + 0.5))
    grid = fig.add_gridspec(rows + 1, cols)
    pixels = ex.pixels[i]
    size = tuple(pixels.shape[1:])
    # row 0: the image, the layer's total map over it, the channels' contributions
    ax = fig.add_subplot(grid[0, 0])
    ax.imshow(rgb(pixels), interpolation="nearest")
    truth = f"true {spec.class_name(ex.labels[i])}\n" if ex.labels[i] is not None else ""
    ax.set_title(f"{ex.names[i]}\n{truth}target {target_name(res.target[i], spec)}", fontsize=7)
    ax = fig.add_subplot(grid[0, 1])
    ax.imshow(overlay(pixels, upsampled(res.total[i], size)), interpolation="nearest")
    ax.set_title(f"all channels of {ex.layer}\nscore {float(res.score[i]):.3g}", fontsize=7)
    _bars(fig.add_subplot(grid[0, 2:]), ex, i)
    # one row per top channel
    share = ex.shares(i)
    for r, c in enumerate(channels):
        ax = fig.add_subplot(grid[r + 1, 0] if ex.cards else grid[1 + r // WIDE, r % WIDE])
        ax.imshow(overlay(pixels, upsampled(res.maps[i, r], size)), interpolation="nearest")
        ax.set_title(f"#{r + 1} channel {c}\n{float(res.contributions[i, c]):+.3g} ({float(share[c]):+.0%})",
                     fontsize=7)
        card = ex.cards.get(c)
        if card is None:
            continue
        ax = fig.add_subplot(grid[r + 1, 1])
        ax.imshow(np.clip(rgb(card.dream), 0, 1), interpolation="nearest")
        ax.set_title("its dream", fontsize=7)
        h, w = card.top_images.shape[2:]
        for j in range(len(card.top_indices)):
            ax = fig.add_subplot(grid[r + 1, 2 + j])
            ax.imshow(rgb(card.top_images[j].float() / 255.0), interpolation="nearest")
            ax.imshow(minmax(card.top_maps[j].numpy()), cmap="inferno", alpha=0.5,
                      extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="bilinear")
            ax.set_title(f"#{card.top_indices[j]} {card.top_labels[j][:10]}", fontsize=7)
    for ax in fig.axes:
        if ax.get_label() != "bars":
            ax.axis("off")
    weights = f" ({ex.weights})" if ex.weights and ex.run_path is None else ""
    fig.suptitle(f"{spec.name}{weights}: which channels of {ex.layer} carried the decision ({res.method}); green "
                 "raised the score, red lowered it", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def _bars(ax: Any, ex: Explanation, i: int) -> None:
    """The largest contributions of the layer's channels, and the rest summed."""
    res = ex.result
    order = [int(c) for c in res.order[i]]
    shown = order[:BARS]
    values = [float(res.contributions[i, c]) for c in shown]
    rest = float(res.contributions[i].sum()) - sum(values)
    labels = [str(c) for c in shown]
    colors = ["#1b9e4b" if v >= 0 else "#d7263d" for v in values]
    ax.bar(range(len(values)), values, color=colors)
    ax.set_xticks(range(len(values)), labels, fontsize=6, rotation=90)
    ax.tick_params(axis="y", labelsize=6)
    ax.axhline(0, color="black", linewidth=0.5)
    others = f"; the other {len(order) - len(shown)} together: {rest:+.3g}" if len(order) > len(shown) else ""
    ax.set_title(f"contribution per channel{others}", fontsize=7)
    ax.set_label("bars")


def plot_concepts(ex: Explanation, i: int, path: str | os.PathLike) -> Path:
    """One decision in concepts: a row per top concept, where its code is on this image (over the
    image) beside the concept's card from its concepts folder."""
    import numpy as np
    from matplotlib import colormaps
    from PIL import Image

    from netviz.draw.sheet import as_uint8, margin, save_sheet, stack, text_block

    concepts = ex.concepts
    contributions = concepts.contributions[i]
    pixels = rgb(ex.pixels[i])
    size = tuple(ex.pixels.shape[2:])
    side = max(96, 4 * max(size))
    rows = []
    for k in concepts.ranked(i)[:min(ex.top, DRAWN)]:
        code = minmax(upsampled(concepts.codes[i, k], size))
        heat = 0.45 * pixels.mean(2, keepdims=True) + 0.55 * colormaps["inferno"](code)[..., :3]
        tile = as_uint8(np.asarray(Image.fromarray(as_uint8(heat)).resize((side, side), Image.NEAREST)))
        label = text_block([f"concept {k}", f"{float(contributions[k]):+.3g}"], size=12, width=110)
        parts = [label, tile]
        card = concepts.folder / f"concept-{k}.png"
        if card.is_file():
            with Image.open(card) as im:
                im = im.convert("RGB")
                parts.append(np.asarray(im.resize((round(im.width * side / im.height), side))))
        rows.append(stack(parts, gap=10, axis=1))
    target = target_name(ex.result.target[i], ex.spec)
    title = text_block([f"{ex.names[i]}: the decision for {target} in the concepts of {ex.layer} "
                        f"({concepts.folder.name}), each concept's contribution (gradient x code),",
                        "where it is on this image, and its card"], size=13)
    return save_sheet(margin(stack([title, *rows], gap=8, align="left")), path)


def write_explanation(ex: Explanation, out_dir: str | os.PathLike) -> list[Artifact]:
    """explain-<image>.png per image (with --concepts also concepts-<image>.png) and explain.json."""
    out = Path(out_dir)
    written = []
    for i, name in enumerate(ex.names):
        top = ", ".join(str(c) for c in ex.top_channels(i))
        written.append(Artifact(plot_explanation(ex, i, out / f"explain-{image_stem(name)}.png"),
                                f"{name}: the top channels of {ex.layer} ({top}) with their maps, dreams and "
                                "top images"))
        if ex.concepts is not None:
            top = ", ".join(str(k) for k in ex.concepts.ranked(i)[:3])
            written.append(Artifact(plot_concepts(ex, i, out / f"concepts-{image_stem(name)}.png"),
                                    f"{name}: the decision in concepts ({top}, ...) with where each is and its card"))
    written.append(Artifact(write_json(out / "explain.json", ex.record()),
                            f"every channel of {ex.layer} per image: contribution, share and rank"))
    return written
