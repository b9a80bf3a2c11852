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


def test_mixed_precision_policy(monkeypatch) -> None:
    # bf16 autocast in training on CUDA and on CPUs that multiply bf16 in hardware (AMX), float32 on
    # other CPUs; channels_last by default on CUDA only. Both CPU cases are checked on any machine.
    import netviz.device as D

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert D.use_amp(cuda) and not D.use_amp(cuda, enabled=False)
    assert D.memory_format(cuda) == torch.channels_last
    assert D.memory_format(cpu) == D.memory_format(cuda, enabled=False) == torch.contiguous_format
    monkeypatch.setattr(D, "native_bf16_cpu", lambda: False)
    assert not D.use_amp(cpu)
    with D.autocast(cpu):  # a no-op on such a CPU: float32 stays float32
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    monkeypatch.setattr(D, "native_bf16_cpu", lambda: True)
    assert D.use_amp(cpu) and not D.use_amp(cpu, enabled=False)
    with D.autocast(cpu):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with D.autocast(cpu, enabled=False):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_to_device_leaves_a_tensor_where_it_is() -> None:
    import torch

    from netviz.device import to_device

    t = torch.arange(6.0)
    assert to_device(t, None) is t and to_device(t, torch.device("cpu")) is t
