"""The device manager: the only place that chooses devices, mixed precision and seeds."""

from __future__ import annotations

import contextlib
import random
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from netviz.errors import NetvizError

if TYPE_CHECKING:
    import torch
    from torch import nn

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` are checked.

    Under torchrun, ``auto`` and ``cuda`` mean this process's own GPU, ``cuda:LOCAL_RANK``.
    """
    import torch

    from netviz.distributed import launch_rank

    name = (name or "auto").strip().lower()
    if not _DEVICE_RE.match(name):
        raise NetvizError(f"unknown device '{name}': use auto, cpu, cuda, cuda:N or mps")
    local_rank = launch_rank()[2]
    if name == "cuda" and local_rank:
        name = f"cuda:{local_rank}"
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise NetvizError(f"device '{name}' asked for, but CUDA is not available here: use --device cpu")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise NetvizError(
                f"device '{name}' does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    if name == "mps" and not torch.backends.mps.is_available():
        raise NetvizError("device 'mps' asked for, but MPS is not available here: use --device cpu")
    return torch.device(name)


def model_device(model: torch.nn.Module) -> torch.device:
    """Where a model lives: the device of its first parameter (or buffer); CPU for an empty one."""
    import torch

    p = next(model.parameters(), None)
    if p is None:
        p = next(model.buffers(), None)
    return p.device if p is not None else torch.device("cpu")


def seed_everything(seed: int | None) -> None:
    """Seed Python and torch (CPU and CUDA) so a command repeats exactly on the CPU."""
    if seed is None:
        return
    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # numpy is a dependency, but seeding must never be the thing that fails
        pass


PINNED_UP_TO = 2**28  # bytes: a batch this size or smaller goes to a GPU through pinned memory


def to_device(t: torch.Tensor, device: torch.device | None) -> torch.Tensor:
    """``t`` on ``device``. A batch from the CPU to a GPU goes through page-locked (pinned) memory,
    an asynchronous copy the next kernel waits for, as DataLoader's ``pin_memory`` does; a whole
    data set held in memory (above :data:`PINNED_UP_TO`) is copied plainly rather than locked."""
    if device is None or t.device == device:
        return t
    if device.type == "cuda" and t.device.type == "cpu" and t.numel() * t.element_size() <= PINNED_UP_TO:
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (Intel AMX): there bf16 autocast
    trains the MNIST nets 1.4x faster at the same accuracy; elsewhere it would be emulated, slower."""
    import os

    import torch

    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").strip().upper()
    if isa not in ("ALL", "DEFAULT", "") and "AMX" not in isa:
        return False  # oneDNN is told to stay below AMX: bf16 would be emulated
    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # an older torch, or no way to ask
        return False


def use_amp(device: torch.device, enabled: bool = True) -> bool:
    """Mixed precision (bf16 autocast) in training: on CUDA, and on CPUs with AMX, unless switched
    off (``--no-amp``)."""
    return enabled and (device.type == "cuda" or (device.type == "cpu" and native_bf16_cpu()))


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """bf16 autocast where :func:`use_amp` says; a no-op elsewhere."""
    import torch

    if use_amp(device, enabled):
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


def memory_format(device: torch.device, enabled: bool = True,
                  channels_last: bool | None = None) -> torch.memory_format:
    """channels_last on CUDA with amp (tensor cores), contiguous elsewhere; ``channels_last``
    True/False overrides that (batch-norm nets train faster channels_last on CPUs as well)."""
    import torch

    use = (enabled and device.type == "cuda") if channels_last is None else channels_last
    return torch.channels_last if use else torch.contiguous_format


@contextlib.contextmanager
def memory_layout(model: nn.Module, fmt: torch.memory_format) -> Iterator[nn.Module]:
    """Inside the block the model's 4-D weights are laid out as ``fmt`` (channels_last: oneDNN's
    fast convolutions and pooling, 2x the MNIST nets' forward and backward on the CPUs measured);
    after it, each as it was. The values never change."""
    import itertools

    import torch

    tensors = [t for t in itertools.chain(model.parameters(), model.buffers()) if t.ndim == 4]
    plain = [t.is_contiguous() for t in tensors]
    model.to(memory_format=fmt)
    try:
        yield model
    finally:
        for t, was in zip(tensors, plain, strict=True):
            if was and not t.is_contiguous():
                t.data = t.data.contiguous(memory_format=torch.contiguous_format)
