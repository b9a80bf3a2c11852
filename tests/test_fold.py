"""Batch norms folded into convolutions for the forward passes of perturbation methods: the same
outputs, the user's model untouched, and every case where the model must run as it is."""

from __future__ import annotations

import torch
from awkward_nets import FunctionalRelu, ThreeHeads
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import netviz.attribute as A
from netviz.attribute._fold import folded
from netviz.heads import Head, attach, head_of
from netviz.registry import build_model


def settled(model: nn.Module) -> nn.Module:
    """Batch norms with running statistics that are not the identity (as a trained net has)."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def snapshot(model: nn.Module) -> list[tuple[str, torch.Tensor, bool]]:
    return [(k, v.clone(), v.is_contiguous()) for k, v in model.state_dict().items()]


def test_a_folded_resnet_gives_the_outputs_and_leaves_the_model_as_it_was() -> None:
    torch.manual_seed(0)
    model = settled(build_model("resnet18"))
    x = torch.randn(3, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    before, modules = snapshot(model), list(model.modules())
    fast = folded(model, x[:1])
    assert fast is not model and not any(isinstance(m, _BatchNorm) for m in fast.modules())
    with torch.no_grad():
        want, got = model(x), fast(x)
    assert float((want - got).abs().max()) <= 1e-5 * float(want.abs().max())
    after = snapshot(model)
    assert list(model.modules()) == modules and not model._forward_hooks
    for (k, v, contiguous), (k2, v2, contiguous2) in zip(before, after, strict=True):
        assert k == k2 and torch.equal(v, v2) and contiguous == contiguous2, k  # values and layout


def test_the_copy_reads_its_output_through_the_models_head() -> None:
    torch.manual_seed(0)
    model = settled(attach(ThreeHeads(), Head(output=2)))
    x = torch.randn(4, 3, 16, 16)
    fast = folded(model, x[:1])
    assert fast is not model and head_of(fast) is head_of(model)
    with torch.no_grad():
        assert fast(x).shape == (4, 10)
        assert torch.allclose(fast(x), model(x), atol=1e-6)


def test_score_cam_through_the_folded_copy_equals_the_model_as_it_is(monkeypatch) -> None:
    from netviz.attribute import _scorecam

    torch.manual_seed(0)
    model = settled(attach(ThreeHeads(), Head(output=2)))
    x = torch.randn(3, 3, 16, 16)
    fast = A.score_cam(model, x, None, "conv1", batch_size=5, quiet=True)
    monkeypatch.setattr(_scorecam, "fast_inference", lambda m, s: (m, torch.contiguous_format))
    plain = A.score_cam(model, x, None, "conv1", batch_size=5, quiet=True)
    assert torch.equal(fast.target, plain.target)
    assert float((fast.maps - plain.maps).abs().max()) <= 1e-5 * float(plain.maps.abs().max())


class ValueControlFlow(nn.Module):
    """Branches on a value: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn(self.conv(x))
        return h.mean((2, 3)) if float(h.mean()) > -1e9 else h.sum((2, 3))


def test_the_model_runs_as_it_is_where_folding_does_not_apply() -> None:
    x = torch.randn(2, 3, 12, 12)
    untraceable = ValueControlFlow().eval()
    assert folded(untraceable, x) is untraceable
    training = settled(ThreeHeads()).train()
    assert folded(training, x) is training  # a batch norm in training mode is no affine map
    no_norms = FunctionalRelu().eval()
    assert folded(no_norms, torch.randn(2, 3, 24, 24)) is no_norms
    hooked = settled(ThreeHeads())
    seen: list[int] = []
    hooked.bn1.register_forward_hook(lambda m, i, o: seen.append(1))
    assert folded(hooked, x) is hooked  # the copy would not call the user's hook


class NormAfterSum(nn.Module):
    """A batch norm after a sum of two convolutions: nothing to fold."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.bn = nn.Conv2d(3, 4, 3), nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.a(x) + self.b(x)).mean((2, 3))


def test_a_model_with_nothing_to_fold_is_not_copied() -> None:
    model = NormAfterSum().eval()
    assert folded(model, torch.randn(1, 3, 10, 10)) is model
