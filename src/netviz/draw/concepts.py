"""`netviz concepts`' files: a card per concept, the class table, every concept at a glance, the
record and the dictionary itself."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from netviz.draw.common import minmax, pyplot, rgb, save_figure
from netviz.draw.sheet import as_uint8, grid, margin, save_sheet, stack, text_block
from netviz.files import Artifact, atomic_write, write_json

if TYPE_CHECKING:
    import numpy as np

    from netviz.concepts import Concept, ConceptSet, ConceptsOptions


def _classes_of(result: ConceptSet, concept: Concept, most: int = 3) -> str:
    """The classes a concept weighs most in, as "7 (2.1), 1 (0.4)"."""
    ranked = sorted(zip(result.classes, concept.importance, strict=True), key=lambda p: -p[1])[:most]
    return ", ".join(f"{result.class_names[c]} ({v:.2g})" for c, v in ranked if v == v)


def plot_card(result: ConceptSet, concept: Concept, path: str | os.PathLike) -> Path:
    """Its top images with its code over each and the box of the strongest position; under each,
    that box cut out and enlarged."""
    import numpy as np
    from matplotlib.patches import Rectangle

    plt = pyplot()
    m = len(concept.pixels)
    first = 1 if concept.dream is not None else 0  # the dream's column
    fig, axes = plt.subplots(2, max(m + first, 1), figsize=(1.6 * max(m + first, 1), 3.7), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    if concept.dream is not None:
        axes[0, 0].imshow(np.clip(rgb(concept.dream), 0, 1), interpolation="nearest")
        axes[0, 0].set_title(f"its dream\n<A, w> {concept.dream_value:.3g}", fontsize=7)
    h, w = concept.pixels.shape[2:] if m else (1, 1)
    for j in range(m):
        top = concept.top[j]
        y0, x0, y1, x1 = top["box"]
        image = rgb(concept.pixels[j].float() / 255.0)
        ax = axes[0, j + first]
        ax.imshow(image, interpolation="nearest")
        ax.imshow(minmax(concept.codes[j].numpy()), cmap="inferno", alpha=0.5,
                  extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="bilinear")
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="#00e5ff", lw=1.2))
        ax.set_title(f"#{top['index']}\ncode {top['value']:.3g}", fontsize=7)
        axes[1, j + first].imshow(image[y0:y1, x0:x1], interpolation="nearest")
    dreamt = "its dream, and " if concept.dream is not None else ""
    fig.suptitle(f"{result.layer} concept {concept.index}: {dreamt}the {m} images of {result.data} where it is "
                 f"strongest (its code over each; the box is what its strongest position sees, enlarged below)\n"
                 f"weighs most in: {_classes_of(result, concept) or '-'}", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_classes(result: ConceptSet, path: str | os.PathLike) -> Path:
    """The classes x concepts table of importance, the three largest of each class written in."""
    import numpy as np

    plt = pyplot()
    table = result.importance().numpy()
    n, k = table.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.42 * k + 2), max(2.5, 0.36 * n + 1.6)))
    limit = float(np.nanmax(np.abs(table))) or 1.0
    im = ax.imshow(table, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    for row in range(n):
        for col in np.argsort(-np.nan_to_num(table[row], nan=-np.inf))[:3]:
            dark = abs(table[row, col]) > 0.6 * limit  # white on the deep reds and blues, black elsewhere
            ax.text(col, row, f"{table[row, col]:.2g}", ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
    ax.set_xticks(range(k), [str(c) for c in range(k)], fontsize=7)
    ax.set_yticks(range(n), [result.class_names[c] for c in result.classes], fontsize=7)
    ax.set_xlabel("concept")
    ax.set_ylabel("class")
    fig.colorbar(im, ax=ax, label="mean contribution to the class's logit")
    ax.set_title(f"Which concepts of {result.layer} carry each class (gradient x code, "
                 f"mean over up to {result.per_class} images of the class)", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def concepts_sheet(result: ConceptSet, path: str | os.PathLike, per_row: int = 6) -> Path:
    """Every concept on one page: a row each, its dream then its strongest regions enlarged."""
    import numpy as np

    rows = []
    for concept in result.concepts:
        crops = []
        for j in range(min(per_row, len(concept.pixels))):
            y0, x0, y1, x1 = concept.top[j]["box"]
            crops.append(_enlarged(rgb(concept.pixels[j].float() / 255.0)[y0:y1, x0:x1], 56))
        label = text_block([f"concept {concept.index}", _classes_of(result, concept, 2)], size=11, width=150)
        if concept.dream is not None:
            crops.insert(0, _enlarged(np.clip(rgb(concept.dream), 0, 1), 56))
        body = grid(crops, cols=per_row + 1, gap=4) if crops else text_block(["never active"], size=11)
        rows.append(stack([label, body], gap=8, axis=1))
    title = text_block([f"{result.model} {result.layer}: {len(result.concepts)} concepts over {result.data}, each "
                        "by the regions where it is strongest"], size=13)
    return save_sheet(margin(stack([title, *rows], gap=6, align="left")), path)


def _enlarged(image: np.ndarray, side: int) -> np.ndarray:
    """An (h, w, 3) float image as uint8, nearest-neighbour scaled to ``side`` pixels high."""
    import numpy as np
    from PIL import Image

    im = Image.fromarray(as_uint8(image))
    scale = side / max(1, im.height)
    return np.asarray(im.resize((max(1, round(im.width * scale)), side), Image.NEAREST))


def write_dictionary(result: ConceptSet, path: Path) -> Path:
    """``components`` (K x C float32) in a safetensors file, with what it was fitted on."""
    from safetensors.torch import save_file

    tensors = {"components": result.dictionary.components.float().contiguous()}
    if result.dictionary.encoder is not None:  # the SAE's own codes, for those who want them
        tensors.update(result.dictionary.encoder.tensors())
    meta = {"model": result.model, "layer": result.layer, "method": result.dictionary.method,
            "channels": str(result.shape[0]), "data": result.data}
    return atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta))


def draw(result: ConceptSet, folder: Path, options: ConceptsOptions) -> list[Artifact]:
    """concepts.json, dictionary.safetensors, concept-<k>.png per concept, classes.png, concepts.png."""
    written = [Artifact(write_json(folder / "concepts.json", result.record()),
                        "the dictionary's numbers (r2, sparsity, dead, faithfulness, stability), per concept its "
                        "top regions and importance per class, per class its top concepts"),
               Artifact(write_dictionary(result, folder / "dictionary.safetensors"),
                        f"the {result.dictionary.size} concepts as rows of `components` "
                        f"({result.dictionary.size} x {result.shape[0]} channels of {result.layer})"),
               Artifact(_kept(result, folder / "concepts.png", concepts_sheet),
                        "every concept by the regions where it is strongest")]
    if result.classes:  # none where the data set has none of the model's classes
        written.append(Artifact(_kept(result, folder / "classes.png", plot_classes),
                                "which concepts carry each class: mean gradient x code"))
    for concept in result.carded(options.cards):
        card = _kept(result, folder / f"concept-{concept.index}.png", lambda r, p, c=concept: plot_card(r, c, p))
        written.append(Artifact(card, f"concept {concept.index}: its top images with its code over each; "
                                      f"weighs most in {_classes_of(result, concept) or '-'}"))
    return written


def _kept(result: ConceptSet, path: Path, plot: Callable[[ConceptSet, Path], Path]) -> Path:
    """``plot(result, path)``, or its copy from the run's cache when the result came from there (the
    figures of a result are the same each time); a figure drawn is kept there for the next time."""
    import contextlib
    import shutil

    from netviz.errors import NetvizError

    kept = result.cache / path.name if result.cache is not None else None
    if kept is not None and kept.is_file():
        return atomic_write(path, lambda tmp: shutil.copyfile(kept, tmp))
    plot(result, path)
    if kept is not None:
        with contextlib.suppress(NetvizError, OSError):  # a read-only run folder: drawn again next time
            atomic_write(kept, lambda tmp: shutil.copyfile(path, tmp))
    return path
