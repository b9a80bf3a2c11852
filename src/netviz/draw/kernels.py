"""Convolution kernels as tiles: sign-preserving (mid-grey = 0), before vs after side by side."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from netviz.draw.common import mosaic, pyplot, save_figure
from netviz.errors import NetvizError
from netviz.files import Artifact, file_stem, write_json
from netviz.kernels import SCALES

if TYPE_CHECKING:
    import numpy as np

    from netviz.kernels import KernelSet, KernelsOptions



def signed_unit(w: np.ndarray, scale: str, layer_max: float) -> np.ndarray:
    """Map weights to [0, 1] with 0 -> 0.5, symmetric around zero so the sign stays visible.

    ``scale="kernel"``: each output channel's kernel (axis 0) by its own max |w|;
    ``"layer"``: everything by ``layer_max`` (shared by the snapshots, so growth shows).
    Non-finite weights are drawn as zero.
    """
    import numpy as np

    w = np.nan_to_num(w.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if scale == "kernel":
        m = np.abs(w).reshape(w.shape[0], -1).max(axis=1).reshape(-1, *([1] * (w.ndim - 1)))
    else:
        m = np.full((1,) * w.ndim, layer_max)
    m = np.where(m > 0, m, 1.0)
    return 0.5 + 0.5 * w / m


def _grid_cols(n: int) -> int:
    # a power of two near sqrt(n), so 32 kernels -> 8x4, 64 -> 8x8, 128 -> 16x8
    return min(n, 2 ** math.ceil(math.log2(max(1.0, math.sqrt(n)))))


def kernel_images(ks: KernelSet, scale: str = "kernel") -> tuple[dict[str, np.ndarray], int, int]:
    """(snapshot key -> mosaic (H, W, 3) in [0, 1], tile rows, tile columns)."""
    import numpy as np

    if scale not in SCALES:
        raise NetvizError(f"unknown scale '{scale}': use one of {', '.join(SCALES)}")
    finite = [np.abs(k[np.isfinite(k)]).max() for k in ks.kernels.values() if np.isfinite(k).any()]
    layer_max = float(max(finite)) if finite else 1.0
    kh, kw = ks.weight_shape[2], ks.weight_shape[3]
    images, cols = {}, 1
    for key, w in ks.kernels.items():
        unit = signed_unit(w, scale, layer_max)  # (out, in, kh, kw)
        if ks.mode in ("rgb", "grey"):
            tiles = unit.transpose(0, 2, 3, 1)
            tiles = tiles.repeat(3, axis=3) if ks.mode == "grey" else tiles
            cols = _grid_cols(unit.shape[0])
        else:  # one row per output channel, one column per input channel
            tiles = unit.reshape(-1, kh, kw, 1).repeat(3, axis=3)
            cols = unit.shape[1]
        # no gap pixels: the figure draws tile borders as lines, which stay crisp at any scale
        images[key] = mosaic(list(tiles), cols, gap=0)
    rows = -(-(ks.shown_out * (ks.shown_in if ks.mode == "channels" else 1)) // cols)
    return images, rows, cols


def _tile_borders(ax, rows: int, cols: int, kh: int, kw: int, width: float, colour: str) -> None:
    for c in range(1, cols):
        ax.axvline(c * kw - 0.5, color=colour, linewidth=width)
    for r in range(1, rows):
        ax.axhline(r * kh - 0.5, color=colour, linewidth=width)


def _channel_ticks(ax, ks: KernelSet) -> None:
    kh, kw = ks.weight_shape[2], ks.weight_shape[3]
    step_in = max(1, math.ceil(ks.shown_in / 8))
    step_out = max(1, math.ceil(ks.shown_out / 8))
    ax.set_xticks([i * kw + (kw - 1) / 2 for i in range(0, ks.shown_in, step_in)])
    ax.set_xticklabels([str(i) for i in range(0, ks.shown_in, step_in)], fontsize=8)
    ax.set_yticks([o * kh + (kh - 1) / 2 for o in range(0, ks.shown_out, step_out)])
    ax.set_yticklabels([str(o) for o in range(0, ks.shown_out, step_out)], fontsize=8)
    ax.set_xlabel("input channel", fontsize=9)
    ax.set_ylabel("output channel", fontsize=9)
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)


def plot_kernels(ks: KernelSet, path: str | os.PathLike, *, scale: str = "kernel",
                 model_name: str = "", run_name: str | None = None) -> Path:
    """The kernels of every snapshot side by side, one sign-preserving tile per kernel."""
    import numpy as np

    plt = pyplot()
    images, rows, cols = kernel_images(ks, scale)
    kh, kw = ks.weight_shape[2], ks.weight_shape[3]
    # Size the panels so each tile gets ~24 px (~14 px when there are many) at 120 dpi.
    tile_px = 24 if rows * cols <= 256 else 14
    width = max(3.2, cols * tile_px / 120)
    height = width * rows * kh / (cols * kw)
    if height > 9:  # very tall grids (few input channels, many outputs): cap the height
        width, height = width * 9 / height, 9.0
    extra_w, extra_h = (0.8, 0.6) if ks.mode == "channels" else (0.2, 0.0)
    n = len(images)
    fig, axes = plt.subplots(1, n, figsize=((width + extra_w) * n + 0.3, height + extra_h + 1.5),
                             squeeze=False)
    border = 1.2 if rows * cols <= 256 else 0.8
    # grey tiles use white and black for the sign, so their borders are coloured
    border_colour = "white" if ks.mode == "rgb" else "#4a90c8"
    for ax, (key, image) in zip(axes[0], images.items(), strict=True):
        k = ks.kernels[key]
        finite = k[np.isfinite(k)]
        peak = f"max |w| {np.abs(finite).max():.3g}" if finite.size else "no finite weights"
        bad = k.size - finite.size
        ax.imshow(image, interpolation="nearest", vmin=0.0, vmax=1.0)
        _tile_borders(ax, rows, cols, kh, kw, border, border_colour)
        ax.set_title(f"{ks.snapshots[key]}\n{peak}" + (f", {bad} NaN/Inf" if bad else ""),
                     fontsize=9)
        if ks.mode == "channels":
            _channel_ticks(ax, ks)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ("top", "right", "bottom", "left"):
                ax.spines[side].set_visible(False)
    out, cin, _, _ = ks.weight_shape
    head = f"{model_name}{f' ({run_name})' if run_name else ''}: " if model_name else ""
    lines = [f"{head}{ks.layer} kernels ({out}x{cin}x{kh}x{kw})"]
    change = ks.relative_change()
    if change is not None:
        lines[0] += f", relative change {change:.3g}"
    how = ("each kernel scaled by its own max |w|" if scale == "kernel"
           else "all kernels scaled by the layer's max |w|")
    lines.append(f"mid-grey = 0, lighter = positive, darker = negative ({how})"
                 + ("; RGB = the 3 input channels" if ks.mode == "rgb" else ""))
    if ks.note:
        lines.append(ks.note)
    fig.suptitle("\n".join(lines), fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def write_kernels(ks: KernelSet, out_dir: str | os.PathLike, *, scale: str = "kernel",
                  model_name: str = "", run_name: str | None = None) -> list[Artifact]:
    """kernels-<layer>.png and kernels-<layer>.json in ``out_dir``."""
    out = Path(out_dir)
    data = ks.record()
    data["scale"] = scale
    png = plot_kernels(ks, out / f"kernels-{file_stem(ks.layer)}.png", scale=scale, model_name=model_name,
                       run_name=run_name)
    return [Artifact(write_json(out / f"kernels-{file_stem(ks.layer)}.json", data),
                     f"{ks.layer}: per snapshot max |w|, mean, std, per-kernel norms, relative change"),
            Artifact(png, f"{ks.layer}'s kernels as images (mid-grey = 0, lighter = positive), "
                          f"{' vs '.join(ks.snapshots.values())}")]


def draw(ks: KernelSet, folder: Path, options: KernelsOptions) -> list[Artifact]:
    """`netviz kernels`'s figure and record (:func:`write_kernels`)."""
    return write_kernels(ks, folder, scale=options.scale, model_name=ks.model_name, run_name=ks.run_name)
