"""Several processes, on one machine or several: netviz under torchrun, with torch.distributed.

``torchrun --nproc_per_node N -m netviz <command> ...`` (or ``python -m torch.distributed.run``)
starts N copies of the same command line. netviz sees ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``, initialises the process group (NCCL on CUDA, gloo on the CPU), pins each rank to
its local GPU, shards the work (:func:`shard`), gathers the results on rank 0 in their original
order (:func:`gather`) and lets rank 0 alone write and print. The CLI tears the group down on exit
and on errors; a rank that fails ends with its message and torchrun stops the others.
Outside torchrun every function here is a no-op: one process, all the work, rank 0.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, fields, is_dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from netviz.errors import NetvizError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")
TIMEOUT = timedelta(minutes=30)  # a collective that waits longer means a rank is lost


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank among ``world_size`` processes (0 of 1 alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_CONTEXT = [Context()]


def context() -> Context:
    return _CONTEXT[0]


def is_main() -> bool:
    """True in the process that writes and prints (the only one outside torchrun)."""
    return context().is_main


def launched() -> bool:
    """Whether torchrun (or torch.distributed.run) started this process."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def launch_rank() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment (0, 1, 0 without it)."""
    if not launched():
        return 0, 1, 0
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])


def init(device: torch.device) -> Context:
    """Join the process group once (NCCL for CUDA devices, gloo otherwise); idempotent."""
    if context().active or not launched():
        return context()
    import torch
    import torch.distributed as dist

    rank, world, local = launch_rank()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=TIMEOUT)
    _CONTEXT[0] = Context(rank, world, local, backend)
    return context()


def shutdown() -> None:
    """Leave the process group (the CLI calls this on exit and on errors)."""
    if context().active:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    _CONTEXT[0] = Context()


def shard(n: int) -> range:
    """This rank's contiguous share of ``range(n)``: shares differ by at most one, rank order is
    data order, so gathering the shares in rank order restores it. Ranks beyond ``n`` get none."""
    ctx = context()
    base, extra = divmod(n, ctx.world_size)
    start = ctx.rank * base + min(ctx.rank, extra)
    return range(start, start + base + (1 if ctx.rank < extra else 0))


def gather(obj: T) -> list[T] | None:
    """Every rank's ``obj`` on rank 0, in rank order (None on the other ranks); ``[obj]`` alone."""
    ctx = context()
    if not ctx.active:
        return [obj]
    import torch.distributed as dist

    out: list[Any] | None = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(_to_cpu(obj), out, dst=0)
    return out


def broadcast(obj: T) -> T:
    """Rank 0's ``obj`` on every rank."""
    if not context().active:
        return obj
    import torch.distributed as dist

    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sums over the ranks (metrics of a sharded evaluation)."""
    if not context().active:
        return list(values)
    import torch
    import torch.distributed as dist

    device = torch.device("cuda", torch.cuda.current_device()) if context().backend == "nccl" else None
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.cpu().tolist()


def _to_cpu(obj: Any) -> Any:
    """Tensors anywhere in ``obj`` (dataclasses, lists, dicts) moved to the CPU before pickling."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if is_dataclass(obj) and not isinstance(obj, type):
        return replace(obj, **{f.name: _to_cpu(getattr(obj, f.name)) for f in fields(obj) if f.init})
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_cpu(v) for v in obj)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    return obj


def concat(parts: Sequence[T | None], dims: dict[str, int] | None = None, keep: Sequence[str] = ()) -> T | None:
    """One result from the per-rank results of the same dataclass: tensors concatenated along the
    image dimension (0, or ``dims[field]``), lists joined, anything else (and the fields named in
    ``keep``) taken from the first. Ranks that had no share (None) are skipped."""
    import torch

    present = [p for p in parts if p is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    dims = dims or {}
    merged = {}
    for f in fields(present[0]):
        if not f.init:
            continue
        values = [getattr(p, f.name) for p in present]
        if f.name in keep:
            merged[f.name] = values[0]
        elif isinstance(values[0], torch.Tensor):
            merged[f.name] = torch.cat(values, dim=dims.get(f.name, 0))
        elif isinstance(values[0], list):
            merged[f.name] = [v for part in values for v in part]
        else:
            merged[f.name] = values[0]
    return replace(present[0], **merged)


def check_world(batch_size: int) -> int:
    """The per-rank batch of a global ``batch_size``: it must divide by the world size."""
    world = context().world_size
    if batch_size % world:
        raise NetvizError(f"--batch-size {batch_size} does not divide among {world} processes: use a multiple "
                          f"of {world} (each process takes {batch_size // world or 1} or so)")
    return batch_size // world
