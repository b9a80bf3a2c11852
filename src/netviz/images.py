"""Reading users' image files: any common kind, to 8-bit pixels, with a note for every change.

8- and 16-bit greyscale and RGB PNG, JPEG, TIFF (16-bit by its nominal range, 32-bit integer and
float from the image's own range), palette images, RGBA (composited on a background colour),
CMYK, animated GIF/TIFF (the first frame). A folder, an empty file, a truncated file, a file
that is not an image and a decompression bomb are each one clear error.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz.errors import NetvizError

if TYPE_CHECKING:
    import numpy as np

MAX_PIXELS = 89_478_485  # Pillow's own bomb limit (a 0.25 GB RGB image); larger is refused


@dataclass
class Decoded:
    """An image as uint8 (H, W) or (H, W, 3), and what was done to get there."""

    pixels: np.ndarray
    notes: list[str] = field(default_factory=list)

    @property
    def channels(self) -> int:
        return 1 if self.pixels.ndim == 2 else 3


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise NetvizError(f"{path} is a folder, not an image: pass an image file (PNG, JPEG, TIFF, ...)")
    if not path.is_file():
        raise NetvizError(f"image file {path} does not exist")
    if path.stat().st_size == 0:
        raise NetvizError(f"image file {path} is empty (0 bytes)")


def _scaled(array: np.ndarray, kind: str, notes: list[str]) -> np.ndarray:
    """Pixels of more than 8 bits -> uint8: 16-bit by their nominal range 0..65535, floats in
    [0, 1] as they are, anything else (32-bit) from the image's own range."""
    import numpy as np

    a = np.nan_to_num(array.astype(np.float64))
    if kind == "16-bit":
        notes.append("16-bit pixels reduced to 8 bits")
        return np.round(a / 65535.0 * 255.0).astype(np.uint8)
    lo, hi = float(a.min()), float(a.max())
    if kind == "32-bit float" and lo >= 0.0 and hi <= 1.0:
        notes.append("32-bit float pixels in [0, 1] scaled to 8 bits")
        return np.round(a * 255.0).astype(np.uint8)
    notes.append(f"{kind} pixels scaled from their own range {lo:g}..{hi:g} to 0..255")
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.round((a - lo) / (hi - lo) * 255.0).astype(np.uint8)


def decode(path: str | os.PathLike, background: tuple[float, ...] = (0.0,)) -> Decoded:
    """Read ``path`` into 8-bit grey or RGB pixels.

    ``background``: the colour (in [0, 1], one value or one per RGB channel) that transparent
    pixels are composited on (commands pass the model's mean pixel: a neutral input).
    """
    import numpy as np
    from PIL import Image, ImageSequence, UnidentifiedImageError

    path = Path(path).expanduser()
    _check_file(path)
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise NetvizError(f"{path} is {w}x{h} = {w * h:,} pixels: too large to be an image "
                                      f"netviz opens (a decompression bomb?); the limit is {MAX_PIXELS:,}")
                frames = getattr(im, "n_frames", 1)
                if frames > 1:
                    notes.append(f"it has {frames} frames: using the first")
                    im = next(iter(ImageSequence.Iterator(im)))
                im.load()
                pixels = _to_pixels(im, background, notes)
    except NetvizError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise NetvizError(f"{path} is too large to be an image netviz opens (a decompression bomb?): "
                          f"{exc}") from exc
    except UnidentifiedImageError as exc:
        raise NetvizError(f"{path} is not an image file netviz can read (PNG, JPEG, TIFF, GIF, BMP, "
                          "WebP)") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise NetvizError(f"{path} is truncated or corrupt: {exc}") from exc
    return Decoded(np.ascontiguousarray(pixels), notes)


def decode_pil(im: Any, background: tuple[float, ...] = (0.0,)) -> Decoded:
    """A PIL image already open (a notebook's) into 8-bit grey or RGB pixels, as :func:`decode`."""
    import numpy as np

    notes: list[str] = []
    return Decoded(np.ascontiguousarray(_to_pixels(im, background, notes)), notes)


def _to_pixels(im, background: tuple[float, ...], notes: list[str]) -> np.ndarray:
    """A loaded PIL image -> uint8 (H, W) or (H, W, 3)."""
    import numpy as np

    mode = im.mode
    if mode in ("L", "RGB"):
        return np.asarray(im)
    if mode == "1":
        return np.asarray(im.convert("L"))
    if mode.startswith("I;16") or mode in ("I", "F"):
        array = np.asarray(im)
        if mode == "F":
            kind = "32-bit float"
        elif mode.startswith("I;16") or array.min() >= 0 and array.max() <= 65535:
            kind = "16-bit"  # Pillow reads 16-bit PNGs as I;16 or I
        else:
            kind = "32-bit integer"
        return _scaled(array, kind, notes)
    if mode == "P" and "transparency" in im.info:
        im, mode = im.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = np.asarray(im.convert("RGBA")).astype(np.float64) / 255.0
        alpha = rgba[..., 3:4]
        if (alpha < 1.0).any():
            bg = np.array(background if len(background) == 3 else background * 3, dtype=np.float64)
            notes.append("transparent pixels composited on the model's mean colour "
                         f"({', '.join(f'{v:.2f}' for v in bg)})")
        else:
            bg = np.zeros(3)
        rgb = rgba[..., :3] * alpha + bg * (1.0 - alpha)
        out = np.round(rgb * 255.0).astype(np.uint8)
        return out[..., 0] if mode in ("LA", "La") else out
    if mode == "CMYK":
        notes.append("converted from CMYK to RGB")
    elif mode != "P":
        notes.append(f"converted from {mode} to RGB")
    return np.asarray(im.convert("RGB"))
