"""Activation grids: one PNG per layer, a combined figure, a GIF input -> layers, and the JSON.

:func:`write_activation_set` draws one :class:`~netviz.activations.ImageActivations` into a
folder; `netviz activations` (:func:`netviz.commands.activations`) calls it once per image.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz.activations import uses_rgb
from netviz.draw import sheet
from netviz.draw.common import font, minmax, mosaic, pyplot, save_figure, save_gif, to_uint8, upscale
from netviz.errors import NetvizError
from netviz.files import file_stem

if TYPE_CHECKING:
    import numpy as np

    from netviz.activations import ImageActivations, LayerActivation, TopImages
    from netviz.files import Artifact
    from netviz.runs import Run

MODES = ("grey", "rgb")
_GAP_FIGURE = (1.0, 1.0, 1.0)  # white lines between tiles on the white figure
_GAP_GIF = (0.25, 0.25, 0.25)  # grey lines between tiles on the black GIF canvas


def check_mode(mode: str, colorbar: bool = False) -> str:
    mode = "grey" if mode.lower() == "gray" else mode.lower()
    if mode not in MODES:
        raise NetvizError(f"unknown --mode '{mode}': use grey or rgb")
    if mode == "rgb" and colorbar:
        raise NetvizError("--colorbar shows raw values on a grey scale: use it with --mode grey")
    return mode


# -- tiles -------------------------------------------------------------------------------------

def channel_span(channels: Sequence[int]) -> str:
    """``[0..26]`` -> ``"0-26"``; anything else a short comma list."""
    if len(channels) > 1 and list(channels) == list(range(channels[0], channels[-1] + 1)):
        return f"{channels[0]}-{channels[-1]}"
    text = ", ".join(map(str, channels[:8]))
    return text + (", ..." if len(channels) > 8 else "")


def layer_tiles(layer: LayerActivation, mode: str = "grey", colorbar: bool = False
                ) -> tuple[list[np.ndarray], list[str], tuple[float, float] | None]:
    """The tiles of a spatial layer in [0, 1], their labels, and the raw (vmin, vmax) with colorbar.

    Each tile is min-max normalised on its own (an RGB tile over its three channels together);
    with ``colorbar`` all tiles of the layer share one raw scale instead.
    """
    import numpy as np

    values = layer.output[layer.channels].numpy().astype(np.float64)  # (n, H, W)
    if uses_rgb(layer, mode):
        groups = values.reshape(-1, 3, *values.shape[1:]).transpose(0, 2, 3, 1)
        first = layer.channels[0::3]
        labels = [f"ch {c}-{layer.channels[3 * i + 2]}" for i, c in enumerate(first)]
        return [minmax(g) for g in groups], labels, None
    labels = [f"ch {c}" for c in layer.channels]
    if colorbar:
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        span = hi - lo if hi > lo else 1.0
        return [np.clip((v - lo) / span, 0, 1) for v in values], labels, (lo, hi)
    return [minmax(v) for v in values], labels, None


def grid_shape(n: int, max_cols: int | None = None) -> tuple[int, int]:
    """(rows, cols): near square, or rows of at most ``max_cols`` balanced in length."""
    if max_cols is None:
        cols = math.ceil(math.sqrt(n))
        return math.ceil(n / cols), cols
    rows = math.ceil(n / max_cols)
    return rows, math.ceil(n / rows)


def input_array(image: Any) -> np.ndarray:
    """uint8 (C, H, W) tensor -> float (H, W) grey or (H, W, 3) in [0, 1]."""
    import numpy as np

    arr = image.numpy().astype(np.float64) / 255.0
    return arr[0] if arr.shape[0] == 1 else arr[:3].transpose(1, 2, 0)


def _show_input(ax: Any, image: Any) -> None:
    arr = input_array(image)
    ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _describe(act: ImageActivations, with_source: bool = False) -> str:
    truth = f"true {act.label_name}, " if act.label_name is not None else ""
    where = f"{act.source}: " if with_source and act.source else ""
    return f"{where}{truth}{act.prediction_text}"


def _layer_title(layer: LayerActivation, mode: str, colorbar: bool) -> str:
    shape = "x".join(map(str, layer.output.shape))
    how = "raw values" if colorbar else "min-max per tile"
    if uses_rgb(layer, mode):
        how = "3 channels per RGB tile, min-max per tile"
    if not layer.spatial:
        how = "values"
    number = f"layer {layer.index}, " if layer.index is not None else ""
    return f"{layer.name} ({number}{layer.type}) {shape}; channels " \
           f"{channel_span(layer.channels)}; {how}"


def _bars(ax: Any, layer: LayerActivation) -> None:
    import numpy as np

    values = layer.output[layer.channels].numpy()
    x = np.arange(len(values))
    ax.bar(x, values, color=np.where(values >= 0, "#3b6fb6", "#c0504d"), width=0.8)
    ax.axhline(0, color="black", linewidth=0.6)
    step = max(1, math.ceil(len(x) / 16))
    ax.set_xticks(x[::step])
    ax.set_xticklabels([str(layer.channels[i]) for i in x[::step]], fontsize=8)
    ax.set_xlabel("channel", fontsize=8)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="y", alpha=0.3)


# -- figures -----------------------------------------------------------------------------------

LAYER_TILE = 72  # pixels: a tile's side at least in layer-<name>.png
COMBINED_WIDTH = 1000  # pixels: how wide activations.png's rows are drawn at most


def _layer_sheet(act: ImageActivations, layer: LayerActivation, mode: str) -> np.ndarray:
    """A spatial layer's tiles, each labelled with its channel, under the title (PIL)."""
    tiles, labels, _ = layer_tiles(layer, mode)
    _, cols = grid_shape(len(tiles))
    cells = [sheet.stack([sheet.text_block([label], 11), upscale(sheet.as_uint8(tile), LAYER_TILE)])
             for tile, label in zip(tiles, labels, strict=True)]
    title = [_layer_title(layer, mode, False), _describe(act, with_source=True)]
    return sheet.stack([sheet.text_block(title, 13), sheet.grid(cells, cols, gap=6)], gap=8)


def _combined_sheet(act: ImageActivations, mode: str) -> np.ndarray:
    """The input and what the model said, then per layer its title and tiles (PIL)."""
    lines = [act.source, _describe(act)] if act.source else [_describe(act)]
    if act.note:
        lines.append(f"input {act.note}")
    lines.append("top classes: " + ", ".join(f"{act.class_name(k)} {p:.1%}" for k, p in act.top_classes(3)))
    picture = sheet.stack([sheet.text_block(["input"], 12), upscale(sheet.as_uint8(input_array(act.image)),
                                                                            120)])
    parts = [sheet.stack([picture, sheet.text_block(lines, 14, align="left")], gap=24, axis=1)]
    for layer in act.layers:
        tiles, _, _ = layer_tiles(layer, mode)
        _, cols = grid_shape(len(tiles), max_cols=16)
        image = sheet.as_uint8(mosaic(tiles, cols, gap=max(1, tiles[0].shape[1] // 16)))
        factor = max(1, COMBINED_WIDTH // image.shape[1])
        parts.append(sheet.stack([sheet.text_block([_layer_title(layer, mode, False)], 13, align="left"),
                                  upscale(image, max(image.shape[:2]) * factor)], align="left"))
    return sheet.stack(parts, gap=14, align="left")


def plot_layer(act: ImageActivations, layer: LayerActivation, path: str | os.PathLike,
               mode: str = "grey", colorbar: bool = False) -> Path:
    """One layer's tiles (or its bar chart for a vector layer), titled with channel numbers. Tiles
    without a colour bar are drawn with PIL; a bar chart or a colour bar with matplotlib."""
    if layer.spatial and not colorbar:
        return sheet.save_sheet(_layer_sheet(act, layer, mode), path)
    plt = pyplot()
    title = f"{_layer_title(layer, mode, colorbar)}\n{_describe(act, with_source=True)}"
    if not layer.spatial:
        fig, ax = plt.subplots(figsize=(max(6.0, 0.3 * len(layer.channels) + 2), 3.2))
        _bars(ax, layer)
        ax.set_ylabel("activation", fontsize=8)
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        return save_figure(fig, path)
    tiles, labels, scale = layer_tiles(layer, mode, colorbar)
    rows, cols = grid_shape(len(tiles))
    h, w = tiles[0].shape[:2]
    size = 1.25 if w >= h else 1.25 * w / h
    # at least 7 inches wide so that the two title lines fit
    fig, ax = plt.subplots(figsize=(max(7.0, cols * size + (1.0 if scale else 0.2)), rows * size * h / w + 0.9))
    # one image of all the tiles, each with its label above it: a single axes draws and saves in a
    # tenth of the time of an axes per tile (64 channels: 0.3 s instead of 2.5 s)
    canvas, corners = _tile_canvas(tiles, cols, scale)
    if scale is not None:  # raw values: the tile holds (v - lo) / span
        image = ax.imshow(canvas, cmap=_grey_on_white(), vmin=scale[0], vmax=scale[1], interpolation="nearest")
        bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
        bar.set_label("activation", fontsize=9)
        bar.ax.tick_params(labelsize=8)
    else:
        ax.imshow(canvas, cmap=_grey_on_white(), vmin=0, vmax=1, interpolation="nearest")
    for (y, x), label in zip(corners, labels, strict=True):
        ax.text(x + w / 2 - 0.5, y - 0.9, label, ha="center", va="bottom", fontsize=8)
    ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    if scale is None:
        fig.tight_layout(rect=(0, 0, 1, 0.97))
    return save_figure(fig, path)


def _grey_on_white():
    """The grey colour map, with NaN (the space between tiles) drawn white."""
    from matplotlib import colormaps

    return colormaps["gray"].with_extremes(bad="white")


def _tile_canvas(tiles: list[np.ndarray], cols: int, scale: tuple[float, float] | None
                 ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The tiles in a grid with white space between them and room for a label above each: grey
    tiles as one (H, W) array with NaN between them (raw values with ``scale``), RGB tiles as an
    (H, W, 3) array on white; and each tile's top-left corner."""
    import numpy as np

    h, w = tiles[0].shape[:2]
    gap_x, gap_y = max(1, round(w * 0.12)), max(2, round(h * 0.32))  # the label sits in gap_y
    rows = -(-len(tiles) // cols)
    rgb = tiles[0].ndim == 3
    shape = (rows * (h + gap_y), cols * w + (cols - 1) * gap_x)
    canvas = np.ones((*shape, 3)) if rgb else np.full(shape, np.nan)
    corners = []
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        y, x = r * (h + gap_y) + gap_y, c * (w + gap_x)
        values = scale[0] + tile * (scale[1] - scale[0]) if scale is not None else tile
        canvas[y:y + h, x:x + w] = values
        corners.append((y, x))
    return canvas, corners


def plot_combined(act: ImageActivations, path: str | os.PathLike, mode: str = "grey",
                  colorbar: bool = False) -> Path:
    """The input, then one row per layer (its tiles side by side, at most 16 per line). With PIL
    when every layer is a map and no colour bar is asked for; else with matplotlib."""
    if not colorbar and all(layer.spatial for layer in act.layers):
        return sheet.save_sheet(_combined_sheet(act, mode), path)
    import matplotlib.cm as cm
    from matplotlib.colors import Normalize

    plt = pyplot()
    width = 10.0
    panels, heights = [], [1.8]
    for layer in act.layers:
        if layer.spatial:
            tiles, _, scale = layer_tiles(layer, mode, colorbar)
            _, cols = grid_shape(len(tiles), max_cols=16)
            image = mosaic(tiles, cols, gap=max(1, tiles[0].shape[1] // 16))
            panels.append((layer, image, scale))
            aspect = image.shape[0] / image.shape[1]
            heights.append(min(7.0, max(0.8, (width - 1.2) * aspect)) + 0.35)
        else:
            panels.append((layer, None, None))
            heights.append(1.9)
    fig = plt.figure(figsize=(width, sum(heights) + 0.3))
    grid = fig.add_gridspec(len(heights), 1, height_ratios=heights, hspace=0.45)
    top = grid[0].subgridspec(1, 2, width_ratios=[1, 4])
    ax = fig.add_subplot(top[0])
    _show_input(ax, act.image)
    ax.set_title("input", fontsize=9)
    text_ax = fig.add_subplot(top[1])
    text_ax.set_axis_off()
    lines = [act.source, _describe(act)] if act.source else [_describe(act)]
    if act.note:
        lines.append(f"input {act.note}")
    lines.append("top classes: " + ", ".join(
        f"{act.class_name(k)} {p:.1%}" for k, p in act.top_classes(3)))
    text_ax.text(0.0, 0.5, "\n".join(lines), fontsize=10, va="center", ha="left", wrap=True)
    for row, (layer, image, scale) in enumerate(panels, start=1):
        ax = fig.add_subplot(grid[row])
        if image is None:
            _bars(ax, layer)
        else:
            ax.imshow(image, interpolation="nearest")
            ax.set_axis_off()
            if scale is not None:
                sm = cm.ScalarMappable(norm=Normalize(*scale), cmap="gray")
                fig.colorbar(sm, ax=ax, fraction=0.03, pad=0.01).ax.tick_params(labelsize=8)
        ax.set_title(_layer_title(layer, mode, colorbar), fontsize=9, loc="left")
    return save_figure(fig, path)


def _fit(tile: np.ndarray, h: int, w: int) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W) or (H, W, 3) float image to (h, w), as RGB."""
    import numpy as np

    rows = (np.arange(h) * tile.shape[0] // h)[:, None]
    cols = (np.arange(w) * tile.shape[1] // w)[None, :]
    out = tile[rows, cols]
    return out if out.ndim == 3 else np.repeat(out[:, :, None], 3, axis=2)


MOST_TOP_DRAWN = 16  # images per channel in top-<layer>.png: a figure stays a figure, not 37,000 px wide


def plot_top_images(act: ImageActivations, layer: LayerActivation, top: TopImages,
                    images: Any, path: str | os.PathLike) -> Path:
    """Per shown channel: its tile for this image, then the K data-set images exciting it most.

    Drawn as one composed image (blocks of up to 10 channels side by side) with text labels:
    one matplotlib axes instead of channels x (K + 1), which keeps it fast.
    """
    import numpy as np

    plt = pyplot()
    n, k = len(top.channels), min(int(top.indices.shape[1]), MOST_TOP_DRAWN)
    h, w = images.shape[-2:]
    s = max(h, w)
    blocks = 1 if n <= 10 else min(3, math.ceil(n / 10))
    per_block = math.ceil(n / blocks)
    gap, band, block_gap = max(1, s // 14), max(6, s * 2 // 5), s // 2
    cell_w, cell_h = w + gap, h + band
    block_w = (k + 1) * cell_w + block_gap
    canvas = np.ones((per_block * cell_h, blocks * block_w - block_gap, 3))
    labels = []  # (x, y, text)
    for j, channel in enumerate(top.channels):
        b, r = divmod(j, per_block)
        x0, y0 = b * block_w, r * cell_h + band
        if layer.spatial:
            canvas[y0:y0 + h, x0:x0 + w] = _fit(minmax(layer.output[channel].numpy()), h, w)
            labels.append((x0 + w / 2, y0 - band / 2, f"ch {channel}: here"))
        else:
            labels.append((x0 + w / 2, y0 + h / 2, f"{float(layer.output[channel]):.3g}"))
            labels.append((x0 + w / 2, y0 - band / 2, f"ch {channel}: here"))
        for col in range(k):
            i = int(top.indices[j, col])
            x = x0 + (col + 1) * cell_w
            canvas[y0:y0 + h, x:x + w] = _fit(input_array(images[i]), h, w)
            labels.append((x + w / 2, y0 - band / 2, f"#{i} {float(top.scores[j, col]):.3g}"))
    inch = 1.15 / s  # inches per canvas pixel: one cell is about 1.15 inches
    fig = plt.figure(figsize=(canvas.shape[1] * inch, canvas.shape[0] * inch + 0.7))
    ax = fig.add_axes((0, 0, 1, canvas.shape[0] * inch / (canvas.shape[0] * inch + 0.7)))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    for x, y, text in labels:
        ax.text(x, y, text, ha="center", va="center", fontsize=7)
    fig.suptitle(f"{layer.name}: per channel, this image's tile, then the {k} images of "
                 f"{top.dataset} with the highest mean activation (#index mean)",
                 fontsize=9, y=1 - 0.25 / (canvas.shape[0] * inch + 0.7))
    return save_figure(fig, path, dpi=100)


# -- GIF ---------------------------------------------------------------------------------------

_MARGIN_GIF = 8  # black pixels around every frame's picture: the largest one touches no edge


def _frame(image: np.ndarray, caption: str, size: tuple[int, int], band: int) -> np.ndarray:
    """``image`` (uint8 RGB) centred on a black canvas of ``size`` plus a margin, under a caption band."""
    import numpy as np
    from PIL import Image, ImageDraw

    h, w = size
    m = _MARGIN_GIF
    canvas = np.zeros((band + h + 2 * m, w + 2 * m, 3), dtype=np.uint8)
    y, x = band + m + (h - image.shape[0]) // 2, m + (w - image.shape[1]) // 2
    canvas[y:y + image.shape[0], x:x + image.shape[1]] = image
    pil = Image.fromarray(canvas)
    ImageDraw.Draw(pil).text((6 + m, 4), caption, fill=(235, 235, 235), font=font(band - 8))
    return np.asarray(pil)


def gif_frames(act: ImageActivations, mode: str = "grey", min_size: int = 320) -> list[np.ndarray]:
    """Input upscaled, then each layer's channel grid as one image (nearest-neighbour upscaled)."""
    import numpy as np

    pictures = []
    arr = input_array(act.image)
    arr = np.repeat(arr[:, :, None], 3, axis=2) if arr.ndim == 2 else arr
    pictures.append((to_uint8(upscale(arr, min_size)), f"input: {_describe(act)}"))
    for layer in act.layers:
        if layer.spatial:
            tiles, _, _ = layer_tiles(layer, mode)
            _, cols = grid_shape(len(tiles))
            image = mosaic(tiles, cols, background=_GAP_GIF, empty=(0.0, 0.0, 0.0))
        else:  # a vector layer: one cell per value, wrapped at 16 per line
            values = minmax(layer.output[layer.channels].numpy())
            rows, cols = grid_shape(len(values), max_cols=16)
            image = mosaic([np.full((8, 8), v) for v in values], cols, background=_GAP_GIF,
                           empty=(0.0, 0.0, 0.0))
        small = max(image.shape[:2]) <= 1024
        image = to_uint8(upscale(image, min_size) if small else image)
        number = f" (layer {layer.index})" if layer.index is not None else ""
        caption = f"{layer.name}{number}: channels {channel_span(layer.channels)}"
        pictures.append((image, caption))
    h = max(p.shape[0] for p, _ in pictures)
    w = max(max(p.shape[1] for p, _ in pictures), 320)
    return [_frame(p, caption, (h, w), band=24) for p, caption in pictures]


# -- JSON --------------------------------------------------------------------------------------

def write_activation_set(act: ImageActivations, folder: str | os.PathLike, *, mode: str = "grey",
                         colorbar: bool = False, top: dict[str, TopImages] | None = None,
                         top_data_images: Any = None, run: Run | None = None) -> list[Artifact]:
    """activations.png, layer-<name>.png per layer, activations.gif, top-<name>.png (with
    ``top``) and activations.json for one image, into ``folder``."""
    from netviz.files import Artifact, write_json

    mode = check_mode(mode, colorbar)
    folder = Path(folder)
    what = f"{act.source}: {act.prediction_text}"
    written = [Artifact(plot_combined(act, folder / "activations.png", mode, colorbar),
                        f"{what}; the input and one row of channel tiles per layer")]
    for layer in act.layers:
        written.append(Artifact(plot_layer(act, layer, folder / f"layer-{file_stem(layer.name)}.png", mode, colorbar),
                                f"{layer.name}: {len(layer.channels)} channel(s) for {act.source}"))
    written.append(Artifact(save_gif(gif_frames(act, mode), folder / "activations.gif", duration_ms=900),
                            f"{act.source} passing through the layers, one frame each"))
    if top:
        for layer in act.layers:
            if layer.name in top:
                path = folder / f"top-{file_stem(layer.name)}.png"
                written.append(Artifact(plot_top_images(act, layer, top[layer.name], top_data_images, path),
                                        f"{layer.name}: the data-set images each channel responds to most"))
    written.append(Artifact(write_json(folder / "activations.json", act.record(run, mode, top)),
                            f"{what}; per-channel mean and max of every layer"))
    return written
