"""The device manager: resolution of --device and the CUDA-only mixed-precision policy."""

from __future__ import annotations

import pytest
import torch

from netviz.device import resolve_device
from netviz.errors import NetvizError


def test_device_manager() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(NetvizError, match="unknown device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(NetvizError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_mixed_precision_policy_is_cuda_only() -> None:
    # The CUDA branch cannot run in CI; its policy can: bf16 autocast + channels_last on CUDA only.
    from netviz.device import autocast, memory_format, use_amp

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert use_amp(cuda) and not use_amp(cuda, enabled=False) and not use_amp(cpu)
    assert memory_format(cuda) == torch.channels_last
    assert memory_format(cpu) == memory_format(cuda, enabled=False) == torch.contiguous_format
    with autocast(cpu):  # a no-op on the CPU: float32 stays float32
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
