"""Dream outputs: one PNG per image at the model's input size, a labelled grid, dream.json, a GIF.

The numbers in dream.json and on the grid describe the files: the compute measured the images as
the 8-bit PNGs hold them (:func:`netviz.dream.saved_pixels`); nothing here runs the model.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from netviz.draw.common import font, pyplot, save_figure, save_gif, save_png, to_uint8, upscale
from netviz.files import Artifact, write_json

if TYPE_CHECKING:
    import numpy as np
    import torch

    from netviz.dream import DreamResult, Measurement
    from netviz.runs import Run

GRID_MAX = 64  # images shown on grid.png and in the GIF (all are saved as PNGs)


def _hwc(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) floats in [0, 1] -> (H, W) grey or (H, W, 3) RGB numpy."""
    array = image.detach().cpu().float().numpy()
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def _columns(n: int) -> int:
    return n if n <= 5 else 5 if n <= 10 else 8


def _growth(after: float, before: float) -> str:
    """How the objective moved from the start image to the saved one: ``0 -> 12.3``, ``x25``."""
    if before > 0 and after / before < 1e4:
        return f"x{after / before:.3g} ({before:.2g} -> {after:.3g})"
    return f"{before:.2g} -> {after:.3g}"


def _tile_label(result: DreamResult, i: int, after: Measurement, before: Measurement,
                run: Run) -> str:
    t = result.targets[i]
    if t.kind == "class":
        name = t.label if len(t.label) <= 14 else t.label[:13] + "."
        p = float(after.probabilities[i, t.index])
        return f"{name}\n" + (f"p={p:.4f}" if p < 0.99995 else "p>0.9999")
    top_class, top_p = after.top(1)[i][0]
    top = run.spec.class_name(top_class)
    top = top if len(top) <= 10 else top[:9] + "."
    where = "" if t.position is None else f" @{t.position[0]},{t.position[1]}"
    p = f"{top_p:.0%}" if top_p >= 0.01 else f"{top_p:.1e}"
    return (f"channel {t.index}{where}\n{_growth(float(after.objective[i]), float(before.objective[i]))}\n"
            f"model: {top} ({p})")


def plot_grid(result: DreamResult, after: Measurement, before: Measurement, run: Run,
              path: str | os.PathLike) -> Path:
    """All images (up to GRID_MAX) with their label, at a readable size."""
    plt = pyplot()
    n = min(len(result.targets), GRID_MAX)
    cols = _columns(n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.5 * rows + 0.9), squeeze=False,
                             layout="constrained")
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        image = _hwc(result.images[i])
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(_tile_label(result, i, after, before, run), fontsize=8.5)
    t = result.targets[0]
    s = result.settings
    what = ("class maximisation" if t.kind == "class"
            else f"{t.layer}: {'neurons' if t.kind == 'neuron' else 'channels'}")
    shown = "" if n == len(result.targets) else f" (first {n} of {len(result.targets)})"
    steps = (f"until p >= {s.until:g} (at most {s.budget} steps)" if s.until is not None
             else f"{s.steps} steps")
    weights = f" ({run.caption_weights})" if run.caption_weights else ""
    fig.suptitle(f"{run.name}{weights} - {what}{shown}\nrecipe {s.recipe}, {steps}, "
                 f"{s.param} image, seed {result.seed}", fontsize=10)
    note = ("p = probability of the class, re-measured on the saved 8-bit PNG"
            if t.kind == "class" else
            "second line: the objective (total squared activation) of the start image -> of the saved "
            "PNG;\nthird line: the class the model gives the image")
    fig.supxlabel(note, fontsize=7.5, color="0.35")
    return save_figure(fig, path)


def _frame(images: torch.Tensor, step: int, steps: int, cols: int) -> np.ndarray:
    """One GIF frame: images tiled on a dark background, with a header naming the step."""
    import numpy as np
    from PIL import Image, ImageDraw

    tiles = [to_uint8(_hwc(im)) for im in images]
    tiles = [t if t.ndim == 3 else np.repeat(t[:, :, None], 3, axis=2) for t in tiles]
    tiles = [upscale(t, 96) for t in tiles]
    h, w = tiles[0].shape[:2]
    rows = math.ceil(len(tiles) / cols)
    gap, header = 4, 18
    canvas = np.full((header + rows * (h + gap) + gap, cols * (w + gap) + gap, 3), 40, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        y, x = header + gap + r * (h + gap), gap + c * (w + gap)
        canvas[y:y + h, x:x + w] = tile
    image = Image.fromarray(canvas)
    ImageDraw.Draw(image).text((gap, 3), f"step {step}/{steps}", fill=(235, 235, 235), font=font(12))
    return np.asarray(image)


def write_gif(result: DreamResult, path: str | os.PathLike) -> Path:
    n = min(len(result.targets), GRID_MAX)
    cols = _columns(n)
    frames = [_frame(f[:n], step, result.settings.budget, cols)
              for f, step in zip(result.frames, result.frame_steps, strict=True)]
    frames += [frames[-1]] * 3  # hold the result before looping
    return save_gif(frames, path, duration_ms=120)


def write_dream(result: DreamResult, run: Run, out_dir: str | os.PathLike,
                gif: bool = False) -> list[Artifact]:
    """Write the PNGs, dream.json (the numbers measured on the pixels as saved, by the compute),
    grid.png (and dream.gif)."""
    out = Path(out_dir)
    files = [save_png(_hwc(image), out / f"{t.stem}.png")
             for t, image in zip(result.targets, result.images, strict=True)]
    after, before = result.after, result.before
    # the overview first: it is what the report shows and what a reader opens
    written = [Artifact(plot_grid(result, after, before, run, out / "grid.png"),
                        f"all {len(result.targets)} image(s) with their labels")]
    written += [Artifact(p, f"{t.label}: {_tile_label(result, i, after, before, run).replace(chr(10), ', ')}")
                for i, (t, p) in enumerate(zip(result.targets, files, strict=True))]
    written.append(Artifact(write_json(out / "dream.json", result.record(run, [p.name for p in files])),
                            "per image the target, the objective and the class probabilities, measured "
                            "on the saved PNG"))
    if gif and result.frames:
        written.append(Artifact(write_gif(result, out / "dream.gif"), "the optimisation, step by step"))
    return written
