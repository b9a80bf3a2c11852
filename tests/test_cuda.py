"""The CUDA paths: bf16 autocast, channels_last, attribution on the GPU. Skipped without a GPU (CI
has none); `scripts/gpu_check.sh` runs them where one is lent (`pytest -m cuda`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import SHARED_DATA

from netviz.cli import cli

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (scripts/gpu_check.sh)")]


def test_bf16_channels_last_training_learns_on_the_gpu(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["train", "--model", "mnist-fast", "--train-split", "test[:8000]",
                                      "--eval-split", "test[8000:]", "--epochs", "2", "--device", "cuda",
                                      "--data-dir", str(SHARED_DATA), "--runs-dir", str(tmp_path), "--name", "gpu",
                                      "--seed", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "gpu" / "metrics.json").read_text())
    assert metrics[-1]["eval_acc"] > 0.95


def test_attribution_on_the_gpu_equals_the_cpu(mnist_run) -> None:
    from netviz.attribute import grad_cam, integrated_gradients
    from netviz.data import normalise

    x = normalise(mnist_run.eval_data().images[:16], mnist_run.spec)
    cpu = integrated_gradients(mnist_run.model, x, None, steps=32, spec=mnist_run.spec)
    cams_cpu = grad_cam(mnist_run.model, x, None, layer="conv2").maps
    model = mnist_run.model.to("cuda")
    try:
        gpu = integrated_gradients(model, x, None, steps=32, spec=mnist_run.spec)
        cams_gpu = grad_cam(model, x, None, layer="conv2").maps
    finally:
        mnist_run.model.to("cpu")
    assert torch.equal(gpu.target, cpu.target)
    # TF32 convolutions on the GPU: agreement to 1e-3 of the map's scale
    assert (gpu.attributions - cpu.attributions).abs().max() <= 1e-3 * cpu.attributions.abs().max()
    assert (cams_gpu - cams_cpu).abs().max() <= 1e-3 * cams_cpu.abs().max()


def test_channels_last_gives_the_same_outputs_on_the_gpu(mnist_run) -> None:
    from netviz.device import memory_layout

    x = torch.randn(32, 1, 28, 28, device="cuda")
    model = mnist_run.model.to("cuda")
    try:
        with torch.no_grad():
            plain = model(x)
            with memory_layout(model, torch.channels_last):
                fast = model(x.contiguous(memory_format=torch.channels_last))
    finally:
        mnist_run.model.to("cpu")
    assert torch.allclose(plain, fast, rtol=1e-3, atol=1e-3)


def test_batches_reach_the_gpu_through_pinned_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    from netviz import device as D
    from netviz.data import normalise
    from netviz.registry import get_spec

    pinned: list[int] = []
    real = torch.Tensor.pin_memory
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda t, *a: pinned.append(t.numel()) or real(t, *a))
    pixels = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    spec = get_spec("mnist")
    on_gpu = normalise(pixels, spec, torch.device("cuda"))
    assert pinned == [pixels.numel()]
    assert torch.allclose(on_gpu.cpu(), normalise(pixels, spec), atol=1e-6)  # the values of the CPU
    monkeypatch.setattr(D, "PINNED_UP_TO", 10)  # a whole data set is copied plainly
    normalise(pixels, spec, torch.device("cuda"))
    assert pinned == [pixels.numel()]
