"""The images a command looks at: image files, or samples of the run's evaluation data by index.

One place for `attribute`, `evaluate` (and the sharding of `torchrun`): :func:`select_inputs`
returns them as uint8 tensors with their names, data-set indices and true labels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz.errors import NetvizError
from netviz.options import CommandOptions
from netviz.selection import parse_indices

if TYPE_CHECKING:
    import torch

    from netviz.data import TensorData
    from netviz.registry import ModelSpec
    from netviz.runs import Run


@dataclass
class Inputs:
    """``images`` uint8 (N, C, H, W) fitted to the model; per image its name, index, label."""

    images: torch.Tensor
    names: list[str]  # "index 12" or the file name
    indices: list[int | None]  # index in the eval data, None for a file
    labels: list[int | None]  # the true class when known
    notes: list[str] = field(default_factory=list)
    offset: int = 0  # where these images start in the whole selection (this rank's share)

    def __len__(self) -> int:
        return len(self.names)

    def rows(self, image: torch.Tensor, what: Sequence[str]) -> Inputs:
        """One row per entry of ``image`` (an index into these images), named with ``what`` beside
        the image's name ("index 3, detection 0"): several maps of one image."""
        at = [int(i) for i in image]
        return Inputs(self.images[image], [f"{self.names[i]}, {w}" for i, w in zip(at, what, strict=True)],
                      [self.indices[i] for i in at], [self.labels[i] for i in at], self.notes, self.offset)


def label_from_folder(path: Path, spec: ModelSpec) -> int | None:
    """The class of an image kept in a folder named after it (``cat/001.png``), if there is one."""
    names = list(spec.class_names)
    return names.index(path.parent.name) if path.parent.name in names else None


def image_items(images: Any) -> list[Any]:
    """``images`` as a list of single images: paths, PIL images or (C, H, W) tensors. Takes one
    path, a PIL image, a tensor (N, C, H, W) or (C, H, W), or a sequence of any of them."""
    import torch

    def split(t: torch.Tensor) -> list[torch.Tensor]:
        if t.ndim == 2:
            return [t.unsqueeze(0)]
        if t.ndim == 3:
            return [t]
        if t.ndim == 4:
            return list(t)
        raise NetvizError(f"an image tensor is (N, C, H, W), (C, H, W) or (H, W), not {tuple(t.shape)}")

    if images is None:
        return []
    if isinstance(images, (str, os.PathLike)) or _is_pil(images):
        return [images]
    if isinstance(images, torch.Tensor):
        return split(images)
    items: list[Any] = []
    for item in images:
        if isinstance(item, torch.Tensor):
            items += split(item)
        elif isinstance(item, (str, os.PathLike)) or _is_pil(item):
            items.append(item)
        else:
            raise NetvizError(f"an image is a file path, a PIL image or a tensor, not a {type(item).__name__}")
    return items


def _is_pil(value: Any) -> bool:
    return type(value).__module__.startswith("PIL.")


def item_name(item: Any, k: int) -> str:
    """How an image is named in figures and records: its file name, or its place in the list."""
    if isinstance(item, (str, os.PathLike)):
        return Path(item).name
    return f"{'tensor' if hasattr(item, 'shape') else 'image'} {k}"


def load_item(item: Any, spec: ModelSpec) -> tuple[torch.Tensor, str | None]:
    """One image (path, PIL image or tensor) as uint8 (1, C, H, W) fitted to the model, and a note."""
    from netviz.data import load_image, tensor_pixels

    return tensor_pixels(item, spec) if hasattr(item, "shape") else load_image(item, spec)


def describe_images(images: Any) -> list[str]:
    """What a manifest records of the images a command was given: paths as given, others by name."""
    items = image_items(images)
    return [str(p) if isinstance(p, (str, os.PathLike)) else item_name(p, k) for k, p in enumerate(items)]


@dataclass(frozen=True)
class ImageOptions(CommandOptions):
    """Options of a command that takes images (``image``/``images``): a manifest records files by
    their paths and images given as tensors or PIL images by name (:func:`describe_images`)."""

    def recorded(self, name: str, value: Any) -> Any:
        if name == "images":
            return describe_images(value)
        if name == "image":
            return describe_images(value)[0] if value is not None else None
        return super().recorded(name, value)


def select_inputs(run: Run, images: Any = (),
                  indices: str | int | Sequence[int] | None = None, data_dir: str | os.PathLike | None = None,
                  default: str = "0-7", shard: bool = False, split: str | None = None,
                  data: TensorData | None = None) -> Inputs:
    """Images (files, PIL images or tensors: :func:`image_items`), or eval-data samples
    (``indices``, default ``default``, of ``split`` or of the already loaded ``data``); never both.

    ``shard``: under torchrun, only this rank's contiguous share (every rank checks the whole
    selection; each loads and reports on its own files).
    """
    import torch

    from netviz import distributed
    from netviz.data import conform

    spec = run.spec
    items = image_items(images)
    if items and indices is not None:
        raise NetvizError("pass --image or --index, not both")
    if items:
        share = distributed.shard(len(items)) if shard else range(len(items))
        names = [item_name(items[k], k) for k in share]
        loaded, notes = [], []
        for k, name in zip(share, names, strict=True):
            pixels, note = load_item(items[k], spec)
            if note:
                notes.append(f"{name}: {note}")
            loaded.append(pixels)
        empty = torch.zeros(0, *spec.input_shape, dtype=torch.uint8)
        labels = [label_from_folder(Path(items[k]), spec) if isinstance(items[k], (str, os.PathLike)) else None
                  for k in share]
        return Inputs(torch.cat(loaded) if loaded else empty, names, [None] * len(names), labels, notes, share.start)
    data = data if data is not None else run.eval_data(data_dir, split)
    chosen = parse_indices(default if indices is None else indices, len(data), "index",
                           f"the eval set {data.name}", "images")
    share = distributed.shard(len(chosen)) if shard else range(len(chosen))
    chosen = [chosen[k] for k in share]
    pixels, note = conform(data.images[chosen], spec)
    labels, other = model_labels([int(data.labels[i]) for i in chosen], data.classes, spec, data.name)
    return Inputs(pixels, [f"index {i}" for i in chosen], list(chosen), labels,
                  [n for n in (data.note, note, other) if n], share.start)


def model_labels(labels: list[int], classes: Sequence[str], spec: ModelSpec, where: str
                 ) -> tuple[list[int | None], str | None]:
    """Data-set labels as the model's classes, and a note when they are other classes altogether
    (an ImageNet model over a folder of 10 classes): then, as for an image file in a folder named
    after its class, an image's class is the model's class of that name, None where it has none."""
    ours, theirs = tuple(spec.class_names), tuple(classes)
    if not theirs or len(theirs) == len(ours) or not spec.names_its_classes:
        return list(labels), None  # the model's classes (a same-sized set is named by the model's names)
    index = {name: k for k, name in enumerate(ours)}
    mapped: list[int | None] = [index.get(theirs[k]) if 0 <= k < len(theirs) else None for k in labels]
    return mapped, (f"{where} has {len(theirs)} classes and the model {len(ours)}: an image's true class is "
                    "shown where the model has a class of its name")


def merge_inputs(parts: Sequence[Inputs | None]) -> Inputs | None:
    """The ranks' shares put back together in rank (= data) order; notes said once."""
    from netviz.distributed import concat

    merged = concat(parts)
    if merged is not None:
        merged.notes = list(dict.fromkeys(merged.notes))
    return merged
