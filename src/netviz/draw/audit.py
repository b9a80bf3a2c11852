"""`netviz audit` figures: per-class mean maps, each flagged cluster, the confident mistakes, the
confusion matrix."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz.draw.common import minmax, pyplot, rgb, save_figure
from netviz.files import Artifact, file_stem, write_json

if TYPE_CHECKING:
    from netviz.audit import Audit, ClassAudit, Cluster
    from netviz.concepts import ConceptSet

EXEMPLARS = 8
COLS = 5


def _finish(fig: Any, path: str | os.PathLike) -> Path:
    """Lay the panels out below the figure's title, then save."""
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()), h_pad=1.2)
    return save_figure(fig, path)


def _pixels(audit: Audit, index: int) -> Any:
    from netviz.data import conform

    return conform(audit.data.images[index:index + 1], audit.spec)[0][0].float() / 255.0


def _map_over(ax: Any, pixels: Any, amap: Any) -> None:
    """The image with the (h, w) map over it, stretched to the image."""
    h, w = pixels.shape[1:]
    ax.imshow(rgb(pixels), interpolation="nearest")
    ax.imshow(minmax(amap.float().numpy()), cmap="inferno", alpha=0.5, extent=(-0.5, w - 0.5, h - 0.5, -0.5),
              interpolation="bilinear")
    ax.axis("off")


def plot_classes(audit: Audit, path: str | os.PathLike) -> Path:
    """Each class's mean image with its mean attribution map; flagged classes titled in red."""
    plt = pyplot()
    n = len(audit.classes)
    cols = min(COLS, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.4 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, k in zip(axes.flat, audit.classes, strict=False):
        _map_over(ax, k.mean_image, k.mean_map)
        ax.set_title(f"{k.name[:14]}: {k.n} images\naccuracy {k.accuracy:.1%}" + (" FLAGGED" if k.flagged else ""),
                     fontsize=7, color="#b00020" if k.flagged else "black")
    fig.suptitle(f"{audit.spec.name} on {audit.data.name}: each class's mean image and mean |attribution| "
                 f"({audit.method})", fontsize=8)
    return _finish(fig, path)


def plot_cluster(audit: Audit, klass: ClassAudit, cluster: Cluster, path: str | os.PathLike) -> Path:
    """A flagged cluster: its mean map, then exemplars with the region boxed."""
    from matplotlib.patches import Rectangle

    plt = pyplot()
    shown = cluster.members[:EXEMPLARS].tolist()
    fig, axes = plt.subplots(1, len(shown) + 1, figsize=(1.6 * (len(shown) + 1), 2.6), squeeze=False)
    axes = axes[0]
    y0, x0, y1, x1 = cluster.evidence.region
    _map_over(axes[0], klass.mean_image, cluster.mean_map)
    axes[0].set_title(f"mean map\n{cluster.share:.0%} of class", fontsize=7)
    for ax, index in zip(axes[1:], shown, strict=True):
        _map_over(ax, _pixels(audit, index), audit.collected.maps[index])
        ax.set_title(f"#{index}", fontsize=7)
    for ax in axes:
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="#00e5ff", linewidth=1.2))
    e = cluster.evidence
    fig.suptitle(f"class {klass.name}: {len(cluster.members)} images share a pattern in the box; pasted onto other "
                 f"classes it makes {e.transfer_rate:.0%} of them {klass.name}; blacked out, "
                 f"p({klass.name}) falls by {e.masked_drop:.2f}", fontsize=8)
    return _finish(fig, path)


def plot_features(audit: Audit, klass: ClassAudit, cluster: Cluster, path: str | os.PathLike) -> Path:
    """A flagged cluster's top channels: per channel its contribution, its dream and its top images."""
    import numpy as np

    plt = pyplot()
    cards = cluster.cards
    k = max(len(c.top_indices) for c in cards)
    fig, axes = plt.subplots(len(cards), k + 1, figsize=(1.6 * (k + 1), 1.9 * len(cards) + 0.4), squeeze=False)
    contribution = dict(cluster.channels)
    for row, card in zip(axes, cards, strict=True):
        for ax in row:
            ax.axis("off")
        row[0].imshow(np.clip(rgb(card.dream), 0, 1), interpolation="nearest")
        row[0].set_title(f"channel {card.channel}\n{contribution[card.channel]:+.3g}: its dream", fontsize=7)
        h, w = card.top_images.shape[2:]
        for j in range(len(card.top_indices)):
            row[j + 1].imshow(rgb(card.top_images[j].float() / 255.0), interpolation="nearest")
            row[j + 1].imshow(minmax(card.top_maps[j].numpy()), cmap="inferno", alpha=0.5,
                              extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="bilinear")
            row[j + 1].set_title(f"#{card.top_indices[j]} {card.top_labels[j][:10]}", fontsize=7)
    fig.suptitle(f"class {klass.name}, the flagged cluster: the channels of {cluster.feature_layer} that carry its "
                 "decisions most (grad-x-act),\nwith their dreams and the images of the data that excite them most",
                 fontsize=8)
    return _finish(fig, path)


def plot_mistakes(audit: Audit, path: str | os.PathLike) -> Path:
    """The most confident mistakes of every class, with their maps."""
    plt = pyplot()
    rows = [k for k in audit.classes if k.mistakes]
    cols = max((len(k.mistakes) for k in rows), default=1)
    n = max(1, len(rows))
    fig, axes = plt.subplots(n, cols, figsize=(1.7 * cols, 2.0 * n + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    c = audit.collected
    for r, k in enumerate(rows):
        for j, index in enumerate(k.mistakes):
            ax = axes[r, j]
            _map_over(ax, _pixels(audit, index), c.maps[index])
            ax.set_title(f"#{index} {k.name[:8]} -> {audit.spec.class_name(int(c.preds[index]))[:8]}\n"
                         f"p = {float(c.confidence[index]):.2f}", fontsize=7)
    fig.suptitle("the most confident mistakes of each class (true -> predicted),\nwith the map of the true class",
                 fontsize=8)
    return _finish(fig, path)


CONFUSION_CLASSES = 30  # the most a confusion matrix shows


def plot_confusion(audit: Audit, path: str | os.PathLike) -> Path:
    import numpy as np

    plt = pyplot()
    full = audit.confusion.numpy()
    # the classes that occur (as a label or a prediction), the most frequent CONFUSION_CLASSES of them
    # when there are more (a 1,000-class model on a 10-class folder)
    count = full.sum(0) + full.sum(1)
    seen = np.flatnonzero(count)
    shown = seen[np.argsort(-count[seen], kind="stable")][:CONFUSION_CLASSES]
    shown = np.sort(shown)
    m = full[np.ix_(shown, shown)]
    k = len(m)
    cell, text = (0.62, 9) if k <= 12 else (0.45, 7)  # counts readable at 100 %: 9 pt in a 10-class matrix
    fig, ax = plt.subplots(figsize=(1.4 + cell * k, 1.2 + cell * k))
    rates = m / np.maximum(full[shown].sum(1, keepdims=True), 1)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    names = [audit.spec.class_name(int(i))[:10] for i in shown]
    ax.set_xticks(range(k), names, rotation=90, fontsize=text - 1)
    ax.set_yticks(range(k), names, fontsize=text - 1)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if m[i, j]:
                    ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=text,
                            color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted", fontsize=text)
    ax.set_ylabel("true", fontsize=text)
    left_out = len(seen) - k
    ax.set_title(f"confusion on {audit.data.name}" + (f" ({k} most frequent of {len(seen)} classes seen)"
                                                     if left_out else ""), fontsize=text)
    return _finish(fig, path)


def _fitted_concepts(concepts: ConceptSet, folder: Path) -> list[Artifact]:
    """A flagged class's concepts, as `netviz concepts` writes them, in a folder of the audit's."""
    from netviz.concepts import ConceptsOptions
    from netviz.draw.concepts import draw

    return [Artifact(a.path, f"{folder.name}: {a.caption}") for a in draw(concepts, folder, ConceptsOptions())]


def write_audit(audit: Audit, out_dir: str | os.PathLike) -> list[Artifact]:
    """audit.json, classes.png, cluster-<class>-<k>.png per flagged cluster, mistakes.png, confusion.png."""
    out = Path(out_dir)
    written = [Artifact(plot_classes(audit, out / "classes.png"), "each class's mean image and mean attribution")]
    for k in audit.classes:
        for j, cl in enumerate(k.clusters):
            if cl.evidence.flagged:
                stem = f"cluster-{file_stem(k.name)}-{j}"
                written.append(Artifact(plot_cluster(audit, k, cl, out / f"{stem}.png"),
                                        f"class {k.name}, flagged cluster {j}: {cl.evidence.reason}"))
                if cl.cards:
                    written.append(Artifact(plot_features(audit, k, cl, out / f"{stem}-features.png"),
                                            f"class {k.name}, flagged cluster {j}: the channels its decisions use, "
                                            "with their cards"))
    for folder, concepts in audit.fitted.items():
        written.extend(_fitted_concepts(concepts, out / folder))
    written.append(Artifact(plot_mistakes(audit, out / "mistakes.png"), "the most confident mistakes per class"))
    written.append(Artifact(plot_confusion(audit, out / "confusion.png"), "true vs predicted class"))
    written.append(Artifact(write_json(out / "audit.json", audit.record()),
                            "per class: accuracy, clusters (members, region, evidence, flagged and why), mistakes"))
    return written
