"""The images a command looks at: image files, or samples of the run's evaluation data by index.

One place for `attribute`, `evaluate` (and the sharding of `torchrun`): :func:`select_inputs`
returns them as uint8 tensors with their names, data-set indices and true labels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from netviz.errors import NetvizError
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


def label_from_folder(path: Path, spec: ModelSpec) -> int | None:
    """The class of an image kept in a folder named after it (``cat/001.png``), if there is one."""
    names = list(spec.class_names)
    return names.index(path.parent.name) if path.parent.name in names else None


def select_inputs(run: Run, images: Sequence[str | os.PathLike] = (),
                  indices: str | int | Sequence[int] | None = None, data_dir: str | os.PathLike | None = None,
                  default: str = "0-7", shard: bool = False, split: str | None = None,
                  data: TensorData | None = None) -> Inputs:
    """Image files, or eval-data samples (``indices``, default ``default``, of ``split`` or of the
    already loaded ``data``); never both.

    ``shard``: under torchrun, only this rank's contiguous share (every rank checks the whole
    selection; each loads and reports on its own files).
    """
    import torch

    from netviz import distributed
    from netviz.data import conform, load_image

    spec = run.spec
    if images and indices is not None:
        raise NetvizError("pass --image or --index, not both")
    if images:
        share = distributed.shard(len(images)) if shard else range(len(images))
        files = [images[k] for k in share]
        loaded, notes = [], []
        for p in files:
            pixels, note = load_image(p, spec)
            if note:
                notes.append(f"{Path(p).name}: {note}")
            loaded.append(pixels)
        empty = torch.zeros(0, *spec.input_shape, dtype=torch.uint8)
        return Inputs(torch.cat(loaded) if loaded else empty, [Path(p).name for p in files], [None] * len(files),
                      [label_from_folder(Path(p), spec) for p in files], notes, share.start)
    data = data if data is not None else run.eval_data(data_dir, split)
    chosen = parse_indices(default if indices is None else indices, len(data), "index",
                           f"the eval set {data.name}", "images")
    share = distributed.shard(len(chosen)) if shard else range(len(chosen))
    chosen = [chosen[k] for k in share]
    pixels, note = conform(data.images[chosen], spec)
    return Inputs(pixels, [f"index {i}" for i in chosen], list(chosen),
                  [int(data.labels[i]) for i in chosen], [n for n in (data.note, note) if n], share.start)


def merge_inputs(parts: Sequence[Inputs | None]) -> Inputs | None:
    """The ranks' shares put back together in rank (= data) order; notes said once."""
    from netviz.distributed import concat

    merged = concat(parts)
    if merged is not None:
        merged.notes = list(dict.fromkeys(merged.notes))
    return merged
