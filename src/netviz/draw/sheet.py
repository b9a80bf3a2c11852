"""Figures made of images and text, drawn with PIL alone: no import of matplotlib (a second of a
command's start) and one render instead of matplotlib's layout passes. For grids of pictures
with captions and titles (the attribution grid, activation tiles) and one plain chart (the
completeness of integrated gradients); charts with colour bars stay with matplotlib."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from netviz.draw.common import font, save_png, to_uint8

if TYPE_CHECKING:
    import numpy as np

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
RED = (176, 0, 32)
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127))  # matplotlib's tab10, for the same look


def as_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3), floats in [0, 1] or uint8 -> uint8 (H, W, 3)."""
    import numpy as np

    arr = image if image.dtype == np.uint8 else to_uint8(image)
    return np.repeat(arr[:, :, None], 3, axis=2) if arr.ndim == 2 else arr[:, :, :3]


def text_block(lines: Sequence[str], size: int = 13, width: int | None = None, color: tuple = BLACK,
               align: str = "center", spacing: int = 3) -> np.ndarray:
    """``lines`` as a white uint8 (H, W, 3) block, ``width`` wide (default: the widest line)."""
    import numpy as np
    from PIL import Image, ImageDraw

    f = font(size)
    widths = [int(math.ceil(f.getlength(line))) for line in lines] or [0]
    w = max(width or 0, max(widths) + 4)
    h = len(lines) * (size + spacing) + spacing
    im = Image.new("RGB", (w, h), WHITE)
    draw = ImageDraw.Draw(im)
    for k, line in enumerate(lines):
        x = (w - widths[k]) // 2 if align == "center" else 2
        draw.text((x, spacing + k * (size + spacing)), line, font=f, fill=color)
    return np.asarray(im)


def stack(parts: Sequence[np.ndarray], gap: int = 0, align: str = "center", axis: int = 0) -> np.ndarray:
    """uint8 RGB images one under the other (``axis=0``) or side by side, on white."""
    import numpy as np

    if axis == 1:
        return stack([p.transpose(1, 0, 2) for p in parts], gap, align).transpose(1, 0, 2)
    w = max(p.shape[1] for p in parts)
    out = []
    for k, p in enumerate(parts):
        pad = w - p.shape[1]
        left = pad // 2 if align == "center" else 0
        out.append(np.pad(p, ((0, 0), (left, pad - left), (0, 0)), constant_values=255))
        if gap and k < len(parts) - 1:
            out.append(np.full((gap, w, 3), 255, np.uint8))
    return np.concatenate(out, 0)


def grid(cells: Sequence[np.ndarray], cols: int, gap: int = 12) -> np.ndarray:
    """uint8 RGB cells in rows of ``cols`` (each row's cells top-aligned, centred in their column)."""
    import numpy as np

    w = max(c.shape[1] for c in cells)
    rows = []
    for r in range(0, len(cells), cols):
        row = list(cells[r:r + cols])
        h = max(c.shape[0] for c in row)
        padded = [np.pad(c, ((0, h - c.shape[0]), ((w - c.shape[1]) // 2, w - c.shape[1] - (w - c.shape[1]) // 2),
                             (0, 0)), constant_values=255) for c in row]
        rows.append(stack(padded, gap, axis=1))
    return stack(rows, gap, align="left")


def margin(image: np.ndarray, pixels: int = 10) -> np.ndarray:
    import numpy as np

    return np.pad(image, ((pixels, pixels), (pixels, pixels), (0, 0)), constant_values=255)


def save_sheet(image: np.ndarray, path: str | os.PathLike) -> Path:
    return save_png(margin(image), path)


# -- one chart -----------------------------------------------------------------------------------

def log_scatter(series: Sequence[tuple[str, Sequence[float], Sequence[float]]], *, title: str, xlabel: str,
                ylabel: str, hline: tuple[float, str] | None = None, size: tuple[int, int] = (820, 420)
                ) -> np.ndarray:
    """Points (x, y > 0) of each labelled series on a log y axis with decade ticks, an optional
    dashed horizontal line, a legend and a title, as a uint8 RGB image."""
    import numpy as np
    from PIL import Image, ImageDraw

    w, h = size
    left, right, top, bottom = 78, 16, 34, 46
    ys = np.concatenate([np.asarray(s[2], float) for s in series] + ([np.array([hline[0]])] if hline else []))
    xs = np.concatenate([np.asarray(s[1], float) for s in series])
    # a margin of half a decade each way: nothing (a tolerance line, a point) sits on the frame
    lo = math.floor(math.log10(max(ys.min(), 1e-12)) - 0.5)
    hi = math.ceil(math.log10(max(ys.max(), 1e-12)) + 0.5)
    hi = max(hi, lo + 1)
    x_max = max(1.0, float(xs.max()) if xs.size else 1.0)  # the x axis runs from -0.5 to x_max + 0.5
    im = Image.new("RGB", (w, h), WHITE)
    draw = ImageDraw.Draw(im)
    small, label = font(11), font(12)

    def px(x: float, y: float) -> tuple[float, float]:
        fy = (math.log10(max(y, 10.0 ** lo)) - lo) / (hi - lo)
        return left + (x + 0.5) / (x_max + 1) * (w - left - right), h - bottom - fy * (h - top - bottom)

    for d in range(lo, hi + 1):  # decade grid lines and tick labels
        _, y = px(0, 10.0 ** d)
        draw.line([(left, y), (w - right, y)], fill=(225, 225, 225))
        text = f"{10.0 ** d:g}"
        draw.text((left - 6 - small.getlength(text), y - 6), text, font=small, fill=BLACK)
    step = max(1, 10 ** int(math.log10(x_max)) // (2 if x_max / 10 ** int(math.log10(x_max)) < 3 else 1))
    for k in range(0, int(x_max) + 1, int(step)):
        x, _ = px(k, 10.0 ** lo)
        draw.line([(x, h - bottom), (x, h - bottom + 4)], fill=BLACK)
        draw.text((x - small.getlength(str(k)) / 2, h - bottom + 6), str(k), font=small, fill=BLACK)
    draw.rectangle([left, top, w - right, h - bottom], outline=BLACK)
    if hline is not None:
        _, y = px(0, hline[0])
        for x0 in range(left, w - right, 10):
            draw.line([(x0, y), (min(x0 + 6, w - right), y)], fill=BLACK, width=1)
    entries = []
    for k, (name, sx, sy) in enumerate(series):
        colour = PALETTE[k % len(PALETTE)]
        for x, y in zip(sx, sy, strict=True):
            cx, cy = px(float(x), float(y))
            draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=colour)
        entries.append((name, colour))
    if hline is not None:
        entries.append((hline[1], None))
    lx, ly = w - right - 8 - max(small.getlength(n) for n, _ in entries) - 18, top + 6
    for k, (name, colour) in enumerate(entries):
        y = ly + 15 * k
        if colour is None:
            draw.line([(lx, y + 6), (lx + 10, y + 6)], fill=BLACK)
        else:
            draw.ellipse([lx + 2, y + 3, lx + 8, y + 9], fill=colour)
        draw.text((lx + 16, y), name, font=small, fill=BLACK)
    draw.text(((w - label.getlength(title)) / 2, 8), title, font=label, fill=BLACK)
    draw.text(((w - label.getlength(xlabel)) / 2, h - 20), xlabel, font=label, fill=BLACK)
    axis = Image.new("RGB", (int(label.getlength(ylabel)) + 4, 16), WHITE)
    ImageDraw.Draw(axis).text((2, 0), ylabel, font=label, fill=BLACK)
    axis = axis.rotate(90, expand=True)
    im.paste(axis, (4, int((h - axis.size[1]) / 2)))
    return np.asarray(im)
