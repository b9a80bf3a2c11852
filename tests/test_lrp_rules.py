"""LRP reaches every layer of a model by a rule, or refuses in one line: never silently wrong.

The oracle: LRP-epsilon with a tiny epsilon equals input x gradient on a ReLU network whose
BatchNorms are merged into their layers (Ancona et al. 2018), biases, max-pools and residual
sums included. It holds on every registry model and on torchvision's ResNet; a model that LRP
cannot follow (a mean written as a function, an interpolation, a BatchNorm that cannot merge)
gets one line instead of a map. The BatchNorms carry random statistics: with the defaults
(mean 0, var 1, scale 1) an unmerged BatchNorm would be the identity and the test could not fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import assert_one_line_error
from torch import nn

from netviz.attribute import input_x_gradient, lrp_epsilon
from netviz.cli import cli
from netviz.errors import NetvizError
from netviz.runs import load_run

AWKWARD = Path(__file__).with_name("awkward_nets.py")


def randomise_batchnorms(model: nn.Module, seed: int = 0, negative: bool = False) -> nn.Module:
    """Running statistics and affine parameters as a trained net has them (scales > 0 unless
    ``negative``, then some scales < 0)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                if negative:
                    m.weight[::2] *= -1
                m.bias.copy_(torch.randn(m.bias.shape, generator=g))
    return model


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten().double(), b.flatten().double()]))[0, 1])


@pytest.mark.parametrize(("model", "shape", "tolerance"), [
    ("mnist", None, 1e-3), ("mnist-fast", None, 1e-3), ("allconv", None, 1e-3),
    # 20 layers of float32 with denominators near 0 here and there: the deep net's rounding
    ("resnet18", (3, 64, 64), 5e-2)])
def test_lrp_epsilon_is_input_x_gradient_on_every_registry_model(model, shape, tolerance) -> None:
    run = load_run(model=model, input_shape=shape, device="cpu")
    randomise_batchnorms(run.model)
    x = torch.randn(3, *run.spec.input_shape, generator=torch.Generator().manual_seed(1))
    lrp = lrp_epsilon(run.model, x, None, epsilon=1e-9, spec=run.spec).attributions
    ixg = input_x_gradient(run.model, x, None).attributions
    assert (lrp - ixg).abs().max() <= tolerance * ixg.abs().max()
    assert correlation(lrp, ixg) > 0.999
    # the weights are as they were: every merge undone
    again = lrp_epsilon(run.model, x, None, epsilon=1e-9, spec=run.spec).attributions
    assert torch.equal(lrp, again)


def test_a_batchnorm_behind_a_max_pool_is_merged_across_it() -> None:
    # mnist-fast's own shape, conv -> max-pool -> bn -> relu: the probe found no pair and the map was
    # 2000x off input x gradient (correlation 0.07)
    net = randomise_batchnorms(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.MaxPool2d(2), nn.BatchNorm2d(4),
                                             nn.ReLU(), nn.Flatten(), nn.Linear(4 * 7 * 7, 3))).eval()
    x = torch.randn(4, 1, 14, 14, generator=torch.Generator().manual_seed(2))
    lrp = lrp_epsilon(net, x, 1, epsilon=1e-9).attributions
    ixg = input_x_gradient(net, x, 1).attributions
    assert (lrp - ixg).abs().max() <= 1e-4 * ixg.abs().max()


@pytest.mark.parametrize(("net", "message"), [
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(576, 3)),
     "BatchNorm 2: its input does not come straight from a convolution or linear layer"),
    (nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.MaxPool2d(2), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                   nn.Linear(4 * 7 * 7, 3)), "some of its scales are negative")])
def test_a_batchnorm_that_cannot_merge_is_refused(net, message) -> None:
    randomise_batchnorms(net, negative="negative" in message).eval()
    with pytest.raises(NetvizError, match=message):
        lrp_epsilon(net, torch.randn(2, 1, 14, 14))


@pytest.mark.parametrize(("name", "args", "what"), [
    ("ThreeHeads", ["--output", "2"], "a mean written as a function"),
    ("MultiLabel", ["--activation", "sigmoid"], "a mean written as a function"),
    ("Seg", [], "an interpolation"),
    ("FunctionalRelu", [], "a mean written as a function"),
    ("ModuleRelu", [], "a mean written as a function")])
def test_every_awkward_net_is_refused_in_one_line_where_lrp_cannot_follow(name, args, what, cifar_cat,
                                                                         tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["attribute", "--model", f"{AWKWARD}:{name}", "--input-shape", "3,20,24",
                                      "--image", str(cifar_cat), *args, "--method", "lrp-epsilon",
                                      "--out", str(tmp_path / "o"), "--quiet"])
    assert_one_line_error(result, f"lrp-epsilon cannot share relevance by contribution through {what}")
    assert not (tmp_path / "o").exists()


def test_a_residual_addition_outside_torchvision_blocks_is_refused() -> None:
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
            self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.conv1(x))
            return self.fc(self.pool(torch.relu(self.conv2(h)) + h).flatten(1))

    with pytest.raises(NetvizError, match="an addition of two branches"):
        lrp_epsilon(Residual().eval(), torch.randn(2, 1, 8, 8))


@pytest.mark.parametrize("method", ["lrp-epsilon", "lrp-epsilon-plus", "lrp-epsilon-gamma-box"])
def test_lrp_on_mnist_fast_from_the_cli(method, tmp_path: Path) -> None:
    # `netviz attribute --method lrp-* --index 0-3` ended in "The size of tensor a (16) must match the
    # size of tensor b (32)": the probe paired conv1 with bn2 through a freed tensor's reused id
    run = load_run(model="mnist-fast", device="cpu")
    randomise_batchnorms(run.model)
    weights = tmp_path / "w.pt"
    torch.save(run.model.state_dict(), weights)
    result = CliRunner().invoke(cli, ["attribute", "--model", "mnist-fast", "--weights", str(weights),
                                      "--method", method, "--index", "0-3", "--out", str(tmp_path / "o"),
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "attribute.json").is_file()
