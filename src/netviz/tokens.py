"""Layers whose output is not channels x height x width: a transformer's tokens (N, T, C), with a
class token and possibly register tokens before the patches, or a channels-last map (N, H, W, C)
as Swin's stages and ConvNeXt's blocks give. :func:`grid_of` says how such an output becomes
(N, C, H, W), for class-activation maps, activation grids, neuron cards and top images; the grid
comes from the input size and the patch size (the one that makes the token count). ``--reshape``
overrides the guess: ``nchw`` (leave it), ``nhwc``, or ``tokens``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netviz.errors import check_choice

if TYPE_CHECKING:
    import torch

RESHAPES = ("auto", "nchw", "nhwc", "tokens")
MAX_PREFIX_TOKENS = 8  # a class token, a distillation token, registers


def check_reshape(value: str | None) -> str:
    return check_choice(value, RESHAPES, "--reshape")


@dataclass(frozen=True)
class Grid:
    """How one layer's output (without the batch) is read as channels x height x width."""

    layout: str  # "nchw" (as it is), "nhwc" or "tokens"
    height: int
    width: int
    prefix: int = 0  # tokens before the patch tokens (class, distillation, register tokens)

    def to_map(self, t: torch.Tensor) -> torch.Tensor:
        """(N, ...) -> (N, C, H, W); a view where the layout allows one."""
        if self.layout == "nhwc":
            return t.permute(0, 3, 1, 2)
        if self.layout == "tokens":
            patches = t[:, self.prefix:]
            return patches.reshape(t.shape[0], self.height, self.width, t.shape[-1]).permute(0, 3, 1, 2)
        return t

    def from_map(self, m: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) back to the layer's own layout, ``like`` giving what a map leaves out (the
        leading tokens)."""
        if self.layout == "nhwc":
            return m.permute(0, 2, 3, 1)
        if self.layout == "tokens":
            out = like.clone()
            out[:, self.prefix:] = m.flatten(2).transpose(1, 2).to(out.dtype)
            return out
        return m.to(like.dtype)

    def channel_sums(self, t: torch.Tensor) -> torch.Tensor:
        """(N, C): each channel summed over every position, leading tokens included."""
        if self.layout == "nhwc":
            return t.sum((1, 2))
        if self.layout == "tokens":
            return t.sum(1)
        return t.sum((2, 3))

    def note(self, layer: str) -> str | None:
        if self.layout == "nhwc":
            return f"{layer}: channels-last output (H, W, C) read as {self.height}x{self.width} maps"
        if self.layout == "tokens":
            extra = f" after {self.prefix} leading token(s) (class/register)" if self.prefix else ""
            return (f"{layer}: {self.height * self.width} patch tokens{extra} read as a {self.height}x"
                    f"{self.width} grid (from the input size and patch size); --reshape overrides")
        return None


def _ratio_fits(h: int, w: int, input_hw: Sequence[int]) -> bool:
    return h >= 1 and w >= 1 and abs(h / w - input_hw[0] / input_hw[1]) < 1e-6


def token_grid(tokens: int, input_hw: Sequence[int]) -> tuple[int, int, int] | None:
    """(height, width, prefix) of a token sequence: the patch size p dividing the input, with
    (H/p) * (W/p) patches after at most :data:`MAX_PREFIX_TOKENS` leading tokens (fewest first)."""
    big_h, big_w = int(input_hw[0]), int(input_hw[1])
    for prefix in range(MAX_PREFIX_TOKENS + 1):
        patches = tokens - prefix
        for p in range(1, min(big_h, big_w) + 1):
            if big_h % p == 0 and big_w % p == 0 and (big_h // p) * (big_w // p) == patches:
                return big_h // p, big_w // p, prefix
    return None


def grid_of(shape: Sequence[int], input_hw: Sequence[int], reshape: str = "auto") -> Grid | None:
    """How an output of ``shape`` (without the batch) is a map, or None when it is not one."""
    if reshape == "nchw" or (reshape == "auto" and len(shape) == 3 and _ratio_fits(shape[1], shape[2], input_hw)):
        return Grid("nchw", shape[1], shape[2]) if len(shape) == 3 else None
    if len(shape) == 3 and (reshape == "nhwc" or _ratio_fits(shape[0], shape[1], input_hw)):
        return Grid("nhwc", shape[0], shape[1])
    if len(shape) == 2 and reshape in ("auto", "tokens"):
        found = token_grid(shape[0], input_hw)
        if found is not None and found[0] * found[1] > 1:
            return Grid("tokens", *found)
    if len(shape) == 3 and reshape == "auto":
        return Grid("nchw", shape[1], shape[2])  # a map of another aspect ratio (valid convolutions)
    return None
