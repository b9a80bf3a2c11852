"""Pictures for a notebook: any result as PIL images, shown inline by Jupyter.

:func:`show` takes what a command returned (the paths it wrote) or a compute function's result
(an :class:`~netviz.attribute.Attribution`, with the images it explained) and returns a
:class:`Picture`: its PIL images (``.images``), drawn inline as the last value of a Jupyter
cell (``_repr_html_``/``_repr_png_``), saved with ``.save(path)``.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz.errors import NetvizError

if TYPE_CHECKING:
    from PIL import Image

    from netviz.registry import ModelSpec

SHOWN = (".png", ".gif")


@dataclass
class Picture:
    """One or more images with a caption each."""

    images: list[Image.Image]
    captions: list[str] = field(default_factory=list)

    def _repr_png_(self) -> bytes:
        return _png(self.images[0]) if self.images else b""

    def _repr_html_(self) -> str:
        parts = []
        for k, image in enumerate(self.images):
            caption = html.escape(self.captions[k]) if k < len(self.captions) else ""
            data = base64.b64encode(_png(image)).decode("ascii")
            parts.append(f'<figure style="margin:0 0 12px 0"><img src="data:image/png;base64,{data}" '
                         f'style="max-width:100%"><figcaption style="font:12px sans-serif">{caption}'
                         "</figcaption></figure>")
        return "\n".join(parts)

    def save(self, path: str | os.PathLike) -> Path:
        """The first image as a PNG at ``path`` (written whole or not at all)."""
        from netviz.files import atomic_write

        return atomic_write(path, lambda p: self.images[0].save(p, format="PNG"))


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def show(result: Any, images: Any = None, *, spec: ModelSpec | None = None, style: str = "overlay",
         percentile: float = 99.0) -> Picture:
    """The picture of ``result``:

    - what a command returned (its paths), one path, or a folder: the PNGs and GIFs in it;
    - an :class:`~netviz.attribute.Attribution`: each image's map, as an overlay on ``images``
      (the tensor it explained, normalised as the model takes it, with ``spec`` for the
      normalisation) or as a heat map without them.
    """
    if hasattr(result, "attributions") and hasattr(result, "target"):  # an Attribution (or its kin)
        return _attribution(result, images, spec, style, percentile)
    if isinstance(result, (str, os.PathLike)):
        result = [result]
    if isinstance(result, Sequence) and all(isinstance(p, (str, os.PathLike)) for p in result):
        return _files([Path(p) for p in result])
    raise NetvizError(f"netviz.show takes what a command returned (its paths) or an Attribution, not a "
                      f"{type(result).__name__}")


def _files(paths: list[Path]) -> Picture:
    from PIL import Image

    found = []
    for p in paths:
        found += sorted(q for q in p.iterdir() if q.suffix in SHOWN) if p.is_dir() else [p]
    shown = [p for p in found if p.suffix in SHOWN and p.is_file()]
    if not shown:
        raise NetvizError(f"no picture among {', '.join(str(p) for p in paths[:3])}: a command's PNG or GIF files")
    pictures = []
    for p in shown:
        with Image.open(p) as im:
            pictures.append(im.convert("RGB"))  # a GIF's first frame
    return Picture(pictures, [p.name for p in shown])


def _attribution(result: Any, images: Any, spec: ModelSpec | None, style: str, percentile: float) -> Picture:
    from PIL import Image

    from netviz.data import denormalise
    from netviz.draw.attribute import render
    from netviz.draw.common import to_uint8, upscale
    from netviz.heads import target_label
    from netviz.styles import check_drawing

    check_drawing(style, percentile)
    attr = result.attributions
    pixels = None
    if images is not None:
        x = images.detach().cpu().float()
        if tuple(x.shape) != tuple(attr.shape):
            raise NetvizError(f"the images {tuple(x.shape)} are not those explained {tuple(attr.shape)}")
        pixels = denormalise(x, spec) if spec is not None else x.clamp(0, 1)  # no spec: pixels in [0, 1]
    drawn = "heatmap" if pixels is None else style
    pictures, captions = [], []
    for i in range(attr.shape[0]):
        p = pixels[i] if pixels is not None else attr[i] * 0
        pictures.append(Image.fromarray(upscale(to_uint8(render(p, attr[i], drawn, percentile)))))
        captions.append(f"{result.method}, image {i}, target {target_label(result.target[i])}")
    return Picture(pictures, captions)
