"""The passes over the data behind `netviz concepts`: the rows the dictionary is fitted on, every
image's strongest position per concept, and, for a few images per class, the gradient that gives
each concept's importance and the layer replaced to measure faithfulness.

Every position of the layer is one row of C values (a token or channels-last layer is read as a
map first, as everywhere). Passes (1) and (2) are shared out under torchrun as the audit's is.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netviz.concepts.factor import Dictionary
from netviz.errors import NetvizError

if TYPE_CHECKING:
    import torch

    from netviz.data import TensorData
    from netviz.runs import Run

MOST_VALUES = 2**26  # rows x channels kept for the fit: 256 MB of float32 at most


@dataclass
class Strongest:
    """Per image of the split and per concept: its largest code and where (a position index)."""

    value: torch.Tensor  # (N, K) float32
    where: torch.Tensor  # (N, K) int64, y * w + x


def layer_maps(run: Run, x: torch.Tensor, layer: str) -> torch.Tensor:
    """``layer``'s output for the normalised batch ``x`` as (N, C, h, w) float32; one line when the
    layer has no positions."""
    from netviz.layers import forward_to

    a = forward_to(run.model, x, [layer])[layer].float()
    if a.ndim != 4:
        raise NetvizError(f"layer {layer} gives {tuple(a.shape[1:])} per image, no positions: concepts need a "
                          "layer with channels x height x width, or tokens (see `netviz layers`, and --reshape)")
    return a


def rows_of(a: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N * h * w, C): one row per position."""
    return a.permute(0, 2, 3, 1).reshape(-1, a.shape[1])


@contextlib.contextmanager
def inference(run: Run) -> Iterator[Any]:
    """Eval mode, no gradient, and the model in the memory format that is faster for it on its
    device (channels_last on most CPUs: a quarter of the time of a small CNN's pass); yields that
    format, for the inputs."""
    import torch

    from netviz.attribute import fast_format
    from netviz.device import memory_layout
    from netviz.layers import eval_mode

    layout = fast_format(run.model, torch.zeros(1, *run.spec.input_shape))
    with eval_mode(run.model), torch.no_grad(), memory_layout(run.model, layout):
        yield layout


def batches(run: Run, data: TensorData, indices: range, batch_size: int | None, quiet: bool, desc: str,
            layout: Any = None):
    """(the data-set indices, the normalised images on the model's device, in ``layout``) per batch
    (``batch_size`` images, or as many as :mod:`netviz.batching` measures fastest)."""
    from netviz import batching
    from netviz.data import conform, normalise
    from netviz.device import model_device
    from netviz.progress import progress

    dev = model_device(run.model)
    passes = batching.batches(len(indices), run.model, run.spec.input_shape, "concepts", batch_size,
                              gradients=False)
    with progress(total=len(indices), quiet=quiet, desc=desc, unit="image") as bar:
        for which in passes:
            start, stop = indices.start + which.start, indices.start + which.stop
            pixels, _ = conform(data.images[start:stop], run.spec)
            x = normalise(pixels, run.spec, dev)
            yield range(start, stop), x.contiguous(memory_format=layout) if layout is not None else x
            bar.update(stop - start)


def _keys(indices: range, positions: int, seed: int) -> torch.Tensor:
    """(n, positions) pseudo-random keys from (seed, image index, position) alone (a Lehmer
    generator's two steps over a mix of the three): which positions of an image are sampled does
    not depend on the batch size or the number of processes."""
    import torch

    idx = torch.arange(indices.start, indices.stop, dtype=torch.int64)[:, None]
    pos = torch.arange(positions, dtype=torch.int64)[None, :]
    state = (idx * 1_000_003 + pos * 7_919 + seed * 104_729 + 1) % 2_147_483_647
    for _ in range(2):
        state = state * 48_271 % 2_147_483_647
    return state


def sample_rows(run: Run, data: TensorData, layer: str, most_rows: int, batch_size: int | None, seed: int,
                quiet: bool) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """(1) Rows to fit on: the same number of random positions from every image of this rank's
    share, at most ``most_rows`` (and :data:`MOST_VALUES` values) in all; and the layer's (C, h, w).
    Each image's positions come from a generator seeded by (seed, its index): the rows do not depend
    on the batch size or the number of processes."""
    import torch

    from netviz import distributed

    share = distributed.shard(len(data))
    kept, shape = [], None
    with inference(run) as layout:
        for which, x in batches(run, data, share, batch_size, quiet, "concepts: reading", layout):
            a = layer_maps(run, x, layer).cpu()
            if shape is None:
                shape = tuple(a.shape[1:])
                limit = min(most_rows, MOST_VALUES // shape[0])
                per_image = max(1, min(shape[1] * shape[2], math.ceil(limit / len(data))))
                share_kept = min(1.0, limit / len(data))  # of the images, when there are more than rows
            rows = a.permute(0, 2, 3, 1).reshape(a.shape[0], -1, a.shape[1])
            keys = _keys(which, rows.shape[1], seed)
            picked = keys.argsort(1)[:, :per_image]
            chosen = rows.gather(1, picked[:, :, None].expand(-1, -1, rows.shape[2]))
            if share_kept < 1:
                chosen = chosen[keys[:, 0] < share_kept * 2_147_483_647]
            kept.append(chosen.reshape(-1, rows.shape[2]))
    parts = distributed.gather((torch.cat(kept) if kept else torch.zeros(0, 0), shape))
    if parts is None:
        return torch.zeros(0, 0), (0, 0, 0)
    shape = next(s for _, s in parts if s is not None)
    rows = torch.cat([r for r, _ in parts if r.numel()])
    limit = min(most_rows, MOST_VALUES // shape[0])
    if len(rows) > limit:  # whole positions per image overshoot: a seeded share of them
        rows = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))[:limit].sort().values]
    return rows, shape


def strongest(run: Run, data: TensorData, layer: str, dictionary: Dictionary, batch_size: int | None, quiet: bool
              ) -> Strongest | None:
    """(2) Every image's largest code per concept and its position (this rank's share; rank 0 gets
    them all, the others None)."""
    import torch

    from netviz import distributed

    share = distributed.shard(len(data))
    values, where = [], []
    with inference(run) as layout:
        for _, x in batches(run, data, share, batch_size, quiet, "concepts: coding", layout):
            a = layer_maps(run, x, layer)
            n, _, h, wd = a.shape
            codes = dictionary.encode(rows_of(a)).view(n, h * wd, -1)
            best, at = codes.max(1)
            values.append(best.float().cpu())
            where.append(at.cpu())
    parts = distributed.gather(Strongest(torch.cat(values), torch.cat(where)) if values else None)
    if parts is None:
        return None
    present = [p for p in parts if p is not None]
    return Strongest(torch.cat([p.value for p in present]), torch.cat([p.where for p in present]))


def code_maps(run: Run, x: torch.Tensor, layer: str, dictionary: Dictionary) -> torch.Tensor:
    """The codes of the images ``x`` as maps: (N, K, h, w)."""
    with inference(run) as layout:
        a = layer_maps(run, x.contiguous(memory_format=layout), layer)
    n, _, h, wd = a.shape
    return dictionary.encode(rows_of(a)).view(n, h, wd, -1).permute(0, 3, 1, 2).cpu()


def receptive_box(run: Run, x: torch.Tensor, layer: str, shape: tuple[int, int, int]) -> Any:
    """A function (y, x) -> [y0, x0, y1, x1] in input pixels: the part of the input that position
    (y, x) of ``layer`` sees. Measured once, at the centre position, as the pixels whose gradient is
    non-zero for any of the images ``x``; other positions are that box moved by the layer's stride."""
    import torch

    from netviz.layers import eval_mode, layer_grid, layer_tapped

    _, h, w = shape
    height, width = run.spec.input_shape[1:]
    cy, cx = h // 2, w // 2
    x = x.detach().clone().requires_grad_(True)
    with eval_mode(run.model), torch.enable_grad(), layer_tapped(run.model, layer) as tap:
        run.model(x)
        out = tap["output"]
        grid = layer_grid(run.model, out.shape[1:], (height, width))
        if grid is None or grid.layout != "nchw":  # tokens see the whole image: the cell is the place
            raise _NoBox
        (g,) = torch.autograd.grad(out[:, :, cy, cx].abs().sum(), x)
    seen = g.abs().sum((0, 1)) > 0
    if not seen.any():
        raise _NoBox
    ys, xs = torch.nonzero(seen, as_tuple=True)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    sy, sx = height / h, width / w

    def box(y: int, x_: int) -> list[int]:
        dy, dx = round((y - cy) * sy), round((x_ - cx) * sx)
        return [max(0, y0 + dy), max(0, x0 + dx), min(height, y1 + dy), min(width, x1 + dx)]

    return box


class _NoBox(Exception):
    """The layer is not a plain map, or the gradient does not reach the input."""


def position_box(run: Run, x: torch.Tensor, layer: str, shape: tuple[int, int, int]) -> Any:
    """:func:`receptive_box`, or where that cannot be measured, the position's cell of the input."""
    _, h, w = shape
    height, width = run.spec.input_shape[1:]
    try:
        return receptive_box(run, x, layer, shape)
    except _NoBox:
        def cell(y: int, x_: int) -> list[int]:
            return [math.floor(y * height / h), math.floor(x_ * width / w),
                    math.ceil((y + 1) * height / h), math.ceil((x_ + 1) * width / w)]

        return cell
