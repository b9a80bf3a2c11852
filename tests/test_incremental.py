"""Incremental occlusion (Krypton): only what a window changes is recomputed, and the maps are those
of whole forward passes, on networks written to be awkward for it: dilation, groups, a strided 1x1
shortcut whose box skips rows, residual sums of boxes of other sizes, functional pooling, padding
that average pooling counts, odd sizes with clipped windows, BatchNorm, a transformer, and a model
that does not trace."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import netviz.attribute as A
from netviz.attribute import _occlusion


def rel_diff(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).abs().max() / ref.abs().max())


class Awkward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 5, stride=2, padding=2)
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2)
        self.down = nn.Conv2d(8, 16, 1, stride=2)
        self.c3 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.avg = nn.AvgPool2d(3, 2, 1)
        self.c4 = nn.Conv2d(16, 16, (1, 3), padding=(0, 1))
        self.fc = nn.Linear(16, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn(self.c1(x)))
        y = y + torch.sigmoid(self.c2(y)) * 0.5
        z = self.c3(y).relu() + self.down(y)
        z = F.max_pool2d(z, 2, 2)
        z = 2.0 * self.c4(self.avg(z)) - z.size(1)
        return self.fc(z.mean((2, 3)))


class TinyVit(nn.Module):
    """Patches by a strided conv, then attention over the tokens: bounded up to the flatten only."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.GELU())
        self.patches = nn.Conv2d(16, 32, 8, stride=8)
        self.attention = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
        self.head = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patches(self.stem(x)).flatten(2).transpose(1, 2)
        return self.head(self.attention(tokens).mean(1))


class Untraceable(nn.Module):
    """Control flow on a value: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.mean() > 0:
            y = -y
        return self.fc(y.amax((2, 3)))


def settled(model: nn.Module) -> nn.Module:
    """Eval mode, with BatchNorm statistics that are not the identity."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def both(model: nn.Module, x: torch.Tensor, **kw) -> tuple[A.Attribution, A.Attribution]:
    whole = A.occlusion(model, x, incremental=False, **kw)
    return whole, A.occlusion(model, x, **kw)


def test_awkward_net_equals_whole_passes():
    model = settled(Awkward())
    x = torch.randn(2, 3, 37, 45, generator=torch.Generator().manual_seed(1))  # (45 - 7) / 3: clipped
    whole, inc = both(model, x, window=7, stride=3, batch_size=19)
    assert inc.settings["incremental"] and inc.settings["whole_from"] == ["mean (mean)"]
    assert (whole.settings["incremental"], whole.settings["why_whole"]) == (False, "--no-incremental")
    # a drop is F(x) - F(occluded): float32 rounding of F (about 17 here) is what may differ, a few
    # units in the last place of F, whichever kernels oneDNN picks for a box and for the whole map
    ulp = torch.finfo(torch.float32).eps * float(whole.score_input.abs().max())
    assert float((inc.attributions - whole.attributions).abs().max()) <= 4 * ulp
    assert inc.attributions.abs().amax((1, 2, 3)).min() > 0  # every image has a real map


def test_resnet_equals_whole_passes_in_groups_of_one_image(monkeypatch):
    import torchvision

    model = settled(torchvision.models.resnet18(num_classes=10))
    x = torch.randn(2, 3, 64, 72, generator=torch.Generator().manual_seed(2))
    whole = A.occlusion(model, x, window=12, stride=5, incremental=False)
    monkeypatch.setattr(_occlusion, "CLEAN_BYTES", 1)  # one image's clean outputs at a time
    inc = A.occlusion(model, x, window=12, stride=5, batch_size=16)
    assert inc.settings["whole_from"] == ["avgpool (AdaptiveAvgPool2d)"]
    assert rel_diff(inc.attributions, whole.attributions) < 1e-4


def test_transformer_is_whole_from_its_flatten():
    model = settled(TinyVit())
    x = torch.randn(1, 3, 32, 40, generator=torch.Generator().manual_seed(3))
    whole, inc = both(model, x, window=6, stride=4)
    assert inc.settings["whole_from"] == ["flatten (flatten)"]
    assert rel_diff(inc.attributions, whole.attributions) < 1e-5


def test_a_model_that_does_not_trace_runs_whole_passes():
    model = settled(Untraceable())
    x = torch.randn(1, 3, 12, 12, generator=torch.Generator().manual_seed(4))
    whole, inc = both(model, x, window=3, stride=2)
    assert not inc.settings["incremental"]
    assert inc.settings["why_whole"] == "the model does not trace with torch.fx (TraceError)"
    assert torch.equal(inc.attributions, whole.attributions)


def test_recomputes_only_the_box_a_window_reaches(monkeypatch):
    """On the MNIST net a 4x4 window at the image's corner changes a 6x6 box of conv1's output,
    an 8x8 one of conv2's and 5x5 of the pool's (the most an 8-row box can reach at any offset),
not the 26x26, 24x24 and 12x12 maps."""
    from netviz.attribute import _incremental
    from netviz.models.mnist import MnistNet

    model = MnistNet().eval()
    engine = _incremental.Incremental(model)
    x = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    boxes = {}
    original = _incremental.windowed

    def seen(v, out, *args):  # noqa: ANN001, ANN202
        result = original(v, out, *args)
        boxes[tuple(out.value.shape[1:])] = tuple(result.patch.shape[2:])
        return result

    monkeypatch.setattr(_incremental, "windowed", seen)
    zero = torch.zeros(1, dtype=torch.long)
    first = _incremental.Patched(_incremental.Clean(x), zero, zero, zero, torch.zeros(1, 1, 4, 4))
    with torch.no_grad():
        out = engine.run(engine.clean(x), first)
        occluded = x.clone()
        occluded[..., :4, :4] = 0
        assert torch.allclose(out, model(occluded), atol=1e-5)
    assert boxes == {(32, 26, 26): (6, 6), (64, 24, 24): (8, 8), (64, 12, 12): (5, 5)}
