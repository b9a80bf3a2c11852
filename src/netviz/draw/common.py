"""Shared drawing helpers: a headless matplotlib, atomic PNG/GIF writing, image tiles."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz.files import atomic_write

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure


class Figures:
    """The few pyplot calls netviz draws with (``subplots``, ``figure``, ``get_cmap``), made on
    matplotlib's object API: figures that no global registry holds and that need no display, and
    no import of pyplot and its backend machinery (0.3-0.5 s of every drawing command's start)."""

    @staticmethod
    def figure(figsize: tuple[float, float] | None = None, layout: str | None = None) -> Figure:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize, layout=layout)
        FigureCanvasAgg(fig)  # the Agg canvas pyplot's Agg backend would give it: renders without a display
        return fig

    @staticmethod
    def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None,
                 layout: str | None = None, **kwargs: Any) -> tuple[Figure, Any]:
        fig = Figures.figure(figsize, layout)
        return fig, fig.subplots(nrows, ncols, **kwargs)

    @staticmethod
    def get_cmap(name: str) -> Any:
        from matplotlib import colormaps

        return colormaps[name]


def pyplot() -> Figures:
    """What the draw modules call ``plt``: see :class:`Figures`."""
    return Figures()


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG atomically (matplotlib's Agg renderer)."""
    return atomic_write(path, lambda p: fig.savefig(p, dpi=dpi, format="png", bbox_inches="tight"))


@functools.cache
def font(size: int):
    """The one font of every text netviz draws with PIL: matplotlib's DejaVu Sans, which covers
    accented, Greek and Cyrillic class names (PIL's default font draws them as boxes)."""
    import importlib.util

    from PIL import ImageFont

    spec = importlib.util.find_spec("matplotlib")  # its bundled font file, without importing it (1 s)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    from matplotlib import font_manager

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] (H, W) or (H, W, C) -> uint8."""
    import numpy as np

    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def minmax(a: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant array becomes all zeros instead of dividing by zero."""
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    lo, hi = np.nanmin(a), np.nanmax(a)
    return np.zeros_like(a) if not np.isfinite(hi - lo) or hi == lo else (a - lo) / (hi - lo)


def rgb(pixels: Any) -> np.ndarray:
    """(C, H, W) pixels (a tensor or an array) -> (H, W, 3) for display."""
    import numpy as np

    p = np.asarray(pixels.cpu().numpy() if hasattr(pixels, "cpu") else pixels, np.float64)
    return np.repeat(p[0][..., None], 3, axis=2) if p.shape[0] == 1 else p[:3].transpose(1, 2, 0)


def upscale(image: np.ndarray, min_size: int = 256) -> np.ndarray:
    """Nearest-neighbour upscaling by an integer factor so the image is at least ``min_size``."""
    import numpy as np

    factor = max(1, -(-min_size // max(image.shape[0], image.shape[1])))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def save_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    """An image array (uint8, or floats in [0, 1]; (H, W) grey or (H, W, 3) RGB) as PNG."""
    import numpy as np
    from PIL import Image

    arr = image if image.dtype == np.uint8 else to_uint8(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return atomic_write(path, lambda p: Image.fromarray(arr).save(p, format="PNG"))


def save_gif(frames: list[np.ndarray], path: str | os.PathLike, duration_ms: int = 600) -> Path:
    """Equal-sized uint8 frames (H, W) or (H, W, 3) as a looping GIF."""
    from PIL import Image

    images = [Image.fromarray(f).convert("RGB") for f in frames]
    return atomic_write(path, lambda p: images[0].save(
        p, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0))


def mosaic(tiles: Sequence[np.ndarray], cols: int, gap: int = 1,
           background: tuple[float, float, float] = (1.0, 1.0, 1.0),
           empty: tuple[float, float, float] | None = None) -> np.ndarray:
    """Equal-sized tiles ((H, W) grey or (H, W, 3)) in a grid, as one RGB float image.

    ``gap`` pixels of ``background`` separate the tiles; ``empty`` (default: the background)
    colours unused slots.
    """
    import numpy as np

    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // cols)
    out = np.empty((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3))
    out[:] = background
    if empty is not None and len(tiles) < rows * cols:
        out[(rows - 1) * (h + gap):, (len(tiles) - (rows - 1) * cols) * (w + gap) - gap:] = empty
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        rgb = tile if tile.ndim == 3 else np.repeat(tile[:, :, None], 3, axis=2)
        out[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = rgb
    return out
