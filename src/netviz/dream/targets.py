"""What a dream aims at: classes, channels or neurons of a layer (:class:`DreamTarget`), parsed from
what a user types, and each target's own random seed."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netviz.device import model_device
from netviz.errors import NetvizError
from netviz.layers import eval_mode

if TYPE_CHECKING:
    from torch import nn

    from netviz.registry import ModelSpec

@dataclass(frozen=True)
class DreamTarget:
    """What one image of a batch aims at."""

    kind: str  # class | channel | neuron
    index: int  # the class, or the channel
    label: str  # for figures: "5", "cat", "conv3 ch 7"
    stem: str  # file name without .png: class_5, conv3_channel_7, conv3_neuron_7_4_4
    layer: str | None = None
    position: tuple[int, int] | None = None

    @property
    def key(self) -> str:
        """Seeds the image's generator: the same target gets the same randomness in any batch."""
        where = "" if self.position is None else f"@{self.position[0]},{self.position[1]}"
        return f"{self.kind}:{self.layer or ''}:{self.index}{where}"


def parse_classes(text: str | int | Sequence[int], spec: ModelSpec) -> list[int]:
    """Class numbers from ``"5"``, ``"0-4"``, ``"all"``, or class names (``"cat,dog"``)."""
    from netviz.selection import parse_classes as parse

    return parse(text, spec.class_names, spec.num_classes, f"model {spec.name}")


def layer_output_shape(model: nn.Module, spec: ModelSpec, layer: str) -> tuple[int, ...]:
    """The output shape of ``layer`` without the batch dimension, from one zero input."""
    import torch

    from netviz.layers import forward_to

    x = torch.zeros(1, *spec.input_shape, device=model_device(model))
    with eval_mode(model), torch.no_grad():
        out = forward_to(model, x, [layer])[layer]
    return tuple(out.shape[1:])


def parse_neuron(text: str) -> tuple[str, tuple[int, int] | str]:
    """``"K"`` -> (K, centre); ``"K,Y,X"`` -> (K, (Y, X)); K may be a range like ``0-3``."""
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) == 1:
            return parts[0], "center"
        if len(parts) == 3:
            return parts[0], (int(parts[1]), int(parts[2]))
    except ValueError:
        pass
    raise NetvizError(f"cannot read --neuron '{text}': use K (the centre of channel K) or K,Y,X")


def image_seed(seed: int, key: str) -> int:
    """A 63-bit seed from the run seed and a target key, stable across runs and platforms."""
    digest = hashlib.sha256(f"{seed}|{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
