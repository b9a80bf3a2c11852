"""`netviz explain` and the LRP attribution methods, against independent oracles.

- layer-integrated equals Captum's ``LayerIntegratedGradients`` summed over positions, and adds up
  to F(x) - F(baseline) within the completeness error it reports;
- grad-x-act equals a forward/backward-hook computation written here;
- lrp-epsilon equals Captum's ``LRP`` (epsilon rule) and conserves relevance on a bias-free net;
  BatchNorm is merged into its convolution before (equal to LRP of the merged net);
- the ranking is faithful: zeroing the top-5 channels of conv2 lowers the score more than zeroing
  5 random ones, on >= 90 % of 100 test images, for every method;
- the CLI on the MNIST run and on awkward user models (BatchNorm, functional ReLUs, a residual,
  odd sizes, attention), the card cache, bad input.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import assert_one_line_error
from PIL import Image
from torch import nn

from netviz.attribute import lrp_epsilon
from netviz.attribute._common import make_baseline
from netviz.attribute._integrated import IntegratedOptions
from netviz.attribute._registry import Options
from netviz.cli import cli
from netviz.data import normalise
from netviz.errors import NetvizError
from netviz.explain import grad_x_act, layer_integrated, lrp_channels
from netviz.explain.methods import ChannelLrpOptions

captum_attr = pytest.importorskip("captum.attr")


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def mnist_batch(mnist_run):
    """Eval images 0-99 of the trained MNIST run, normalised."""
    data = mnist_run.eval_data()
    return normalise(data.images[:100], mnist_run.spec)


class PlainNet(nn.Module):
    """Conv, ReLU and linear modules only (what Captum's LRP takes), ReLUs as modules."""

    def __init__(self, bias: bool = True) -> None:
        super().__init__()
        self.c1, self.r1 = nn.Conv2d(1, 8, 3, bias=bias), nn.ReLU()
        self.c2, self.r2 = nn.Conv2d(8, 16, 3, bias=bias), nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.l1, self.r3 = nn.Linear(16 * 5 * 5, 32, bias=bias), nn.ReLU()
        self.l2 = nn.Linear(32, 10, bias=bias)

    def forward(self, x):
        x = self.pool(self.r2(self.c2(self.r1(self.c1(x)))))
        return self.l2(self.r3(self.l1(x.flatten(1))))


def _plain(bias: bool = True, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = PlainNet(bias).eval()
    with torch.no_grad():  # positive-leaning first layer: the ReLUs fire on plenty of units
        net.c1.bias.add_(0.1) if bias else None
    return net


# -- oracles -----------------------------------------------------------------------------------

def test_layer_integrated_equals_captum_and_adds_up(mnist_run, mnist_batch) -> None:
    model, spec = mnist_run.model, mnist_run.spec
    x = mnist_batch[:12]
    ours = layer_integrated(model, x, None, "conv2", 5, options=IntegratedOptions(steps=50), spec=spec)
    baseline = make_baseline(x, "black", spec=spec)
    theirs = captum_attr.LayerIntegratedGradients(model, model.conv2).attribute(
        x, baselines=baseline, target=ours.target, n_steps=50, method="gausslegendre").sum((2, 3)).double()
    scale = theirs.abs().max()
    assert (ours.contributions - theirs).abs().max() <= 1e-4 * scale
    gap = ours.score - ours.score_baseline
    err = (ours.contributions.sum(1) - gap).abs() / gap.abs()
    assert torch.allclose(err, ours.completeness_error, rtol=1e-6, atol=1e-9)
    assert float(ours.completeness_error.max()) < 0.01  # 50 Gauss-Legendre steps on this net
    # adaptive: every image ends within its tolerance, with no more steps than it needed
    adaptive = layer_integrated(model, x, None, "conv2", 5, spec=spec,
                                options=IntegratedOptions(tolerance=0.002, max_steps=256))
    assert float(adaptive.completeness_error.max()) <= 0.002
    assert int(adaptive.steps.min()) >= 8 and int(adaptive.steps.max()) <= 256


def test_grad_x_act_equals_manual_hooks(mnist_run, mnist_batch) -> None:
    model = mnist_run.model
    x = mnist_batch[:16]
    ours = grad_x_act(model, x, None, "conv2", 5, options=Options())
    kept: dict[str, torch.Tensor] = {}

    def keep(module, args, output):
        output.register_hook(lambda g: kept.__setitem__("grad", g))
        kept["act"] = output

    handle = model.conv2.register_forward_hook(keep)
    try:
        x_in = x.clone().requires_grad_(True)
        logits = model(x_in)
        logits.gather(1, logits.argmax(1, keepdim=True)).sum().backward()
    finally:
        handle.remove()
    manual = (kept["act"] * kept["grad"]).sum((2, 3)).double().detach()
    assert torch.equal(ours.target, logits.argmax(1))
    assert torch.allclose(ours.contributions, manual, rtol=1e-5, atol=1e-6 * float(manual.abs().max()))
    # the top channel of each image is the largest contribution, and its map is that channel's A*G
    top = manual.argmax(1)
    assert torch.equal(ours.order[:, 0], top)
    assert torch.allclose(ours.maps[:, 0].double().sum((1, 2)), manual.gather(1, top[:, None])[:, 0].detach(),
                          rtol=1e-4, atol=1e-6)


def test_lrp_epsilon_equals_captum() -> None:
    net = _plain()
    x = torch.randn(6, 1, 14, 14, generator=torch.Generator().manual_seed(1))
    ours = lrp_epsilon(net, x, 3, epsilon=1e-9)
    theirs = captum_attr.LRP(net).attribute(x.clone().requires_grad_(True), target=3).detach()
    assert (ours.attributions - theirs).abs().max() <= 1e-4 * theirs.abs().max()
    assert not torch.equal(ours.attributions, torch.zeros_like(ours.attributions))


def test_lrp_epsilon_conserves_relevance_without_bias() -> None:
    net = _plain(bias=False)
    x = torch.rand(6, 1, 14, 14, generator=torch.Generator().manual_seed(2))
    res = lrp_epsilon(net, x, None, epsilon=1e-9)
    totals = res.attributions.flatten(1).double().sum(1)
    assert torch.allclose(totals, res.score_input, rtol=1e-4, atol=1e-4 * float(res.score_input.abs().max()))
    # and so do the channel relevances at a layer inside it
    ch = lrp_channels(net, x, None, "c2", 3, options=ChannelLrpOptions(rule="lrp-epsilon", epsilon=1e-9))
    assert float(ch.completeness_error.max()) < 1e-4


def test_lrp_merges_batchnorm_into_its_convolution() -> None:
    torch.manual_seed(3)
    with_bn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 12 * 12, 5))
    bn = with_bn[1]
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_()
        bn.bias.normal_()
    with_bn.eval()
    merged = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 12 * 12, 5)).eval()
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    with torch.no_grad():
        merged[0].weight.copy_(with_bn[0].weight * scale.view(-1, 1, 1, 1))
        merged[0].bias.copy_((with_bn[0].bias - bn.running_mean) * scale + bn.bias)
        merged[3].load_state_dict(with_bn[4].state_dict())
    x = torch.randn(4, 1, 14, 14, generator=torch.Generator().manual_seed(4))
    a, b = lrp_epsilon(with_bn, x, 1), lrp_epsilon(merged, x, 1)
    assert (a.attributions - b.attributions).abs().max() <= 1e-5 * b.attributions.abs().max()
    assert bn.weight.requires_grad and torch.equal(with_bn[0].weight, with_bn[0].weight)  # weights put back
    assert torch.allclose(with_bn(x), merged(x), atol=1e-5)


def test_lrp_refuses_a_layer_it_has_no_rule_for() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LayerNorm(4 * 12 * 12), nn.Linear(4 * 12 * 12, 3))
    with pytest.raises(NetvizError, match=r"through layer 2 \(LayerNorm\)"):
        lrp_epsilon(net, torch.randn(2, 1, 14, 14))


# -- faithfulness --------------------------------------------------------------------------------

def score_with_channels_zeroed(model: nn.Module, x: torch.Tensor, target: torch.Tensor, channels: torch.Tensor
                               ) -> torch.Tensor:
    """The target's logit with ``channels[i]`` of conv2's output set to 0 for image i."""
    mask = torch.ones(x.shape[0], model.conv2.out_channels, 1, 1)
    mask.scatter_(1, channels[:, :, None, None], 0.0)
    handle = model.conv2.register_forward_hook(lambda m, a, out: out * mask)
    try:
        with torch.no_grad():
            return model(x).gather(1, target[:, None])[:, 0]
    finally:
        handle.remove()


@pytest.mark.parametrize("method", ["grad-x-act", "layer-integrated", "lrp"])
def test_zeroing_the_top_channels_lowers_the_score_more_than_random_ones(mnist_run, mnist_batch, method) -> None:
    from netviz.explain import get_channel_method

    model, spec = mnist_run.model, mnist_run.spec
    m = get_channel_method(method)
    res = m.function(model, mnist_batch, None, "conv2", 5, options=m.make_options({}), spec=spec)
    g = torch.Generator().manual_seed(0)
    random = torch.stack([torch.randperm(64, generator=g)[:5] for _ in range(len(mnist_batch))])
    top = score_with_channels_zeroed(model, mnist_batch, res.target, res.order[:, :5])
    rand = score_with_channels_zeroed(model, mnist_batch, res.target, random)
    assert float((top < rand).double().mean()) >= 0.9


# -- the command -----------------------------------------------------------------------------------

@pytest.fixture
def run_copy(mnist_run, tmp_path: Path) -> Path:
    """A copy of the trained run: explain keeps its cards in the run's cache."""
    dest = tmp_path / "mnist"
    shutil.copytree(mnist_run.path, dest, ignore=shutil.ignore_patterns("cache"))
    return dest


def test_explain_writes_every_channel_and_reuses_the_cards(run_copy: Path, tmp_path: Path, monkeypatch) -> None:
    import netviz.neurons as neurons

    made: list[list[int]] = []
    real = neurons._make_cards
    monkeypatch.setattr(neurons, "_make_cards", lambda run, name, picked, *a, **k: made.append(picked)
                        or real(run, name, picked, *a, **k))
    args = ["--layer", "conv2", "--top", "3", "--card-images", "2", "--dream-steps", "8", "--quiet"]
    result = invoke("explain", run_copy, "--index", "0,1", "--out", tmp_path / "a", *args)
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "a" / "explain.json").read_text())
    assert record["layer"] == "conv2" and record["method"] == "grad-x-act"
    assert [img["index"] for img in record["images"]] == [0, 1]
    for img in record["images"]:
        channels = img["channels"]
        assert sorted(c["channel"] for c in channels) == list(range(64))  # every channel, not only the top
        assert [c["rank"] for c in channels] == list(range(1, 65))
        contributions = [c["contribution"] for c in channels]
        assert contributions == sorted(contributions, reverse=True)
        assert sum(abs(c["share"]) for c in channels) == pytest.approx(1.0, abs=1e-9)
        assert img["completeness_error"] is None and img["target"] == img["label"]
    tops = {c["channel"] for img in record["images"] for c in img["channels"][:3]}
    assert made == [sorted(tops)] and set(record["cards"]) == {str(c) for c in tops}
    for name in ("explain-0000.png", "explain-0001.png"):
        with Image.open(tmp_path / "a" / name) as im:
            assert im.size[0] > 600 and im.size[1] > 600
    # another image: only the channels not seen before are dreamed
    made.clear()
    result = invoke("explain", run_copy, "--index", "2", "--out", tmp_path / "b", *args)
    assert result.exit_code == 0, result.output
    again = json.loads((tmp_path / "b" / "explain.json").read_text())
    new = {c["channel"] for c in again["images"][0]["channels"][:3]} - tops
    assert made == ([sorted(new)] if new else [])


def test_explain_layer_integrated_and_lrp_from_the_cli(run_copy: Path, tmp_path: Path) -> None:
    for method, extra in (("layer-integrated", ["--steps", "32"]), ("lrp", ["--rule", "lrp-epsilon"])):
        out = tmp_path / method
        result = invoke("explain", run_copy, "--index", "3", "--layer", "conv2", "--method", method, "--no-cards",
                        "--out", out, "--quiet", *extra)
        assert result.exit_code == 0, result.output
        img = json.loads((out / "explain.json").read_text())["images"][0]
        total = sum(c["contribution"] for c in img["channels"])
        reference = img["score"] - (img["score_baseline"] or 0.0)
        assert img["completeness_error"] == pytest.approx(abs(total - reference) / abs(reference), rel=1e-6)
        # integrated gradients at 32 steps is within 1 %; LRP's dense layers give some relevance to their biases
        assert img["completeness_error"] < (0.01 if method == "layer-integrated" else 0.1)


AWKWARD = '''
import torch
from torch import nn
from torch.nn import functional as F


class Odd(nn.Module):
    """BatchNorm, functional ReLUs, a residual sum, a 3x37x29 input, 5 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = F.relu(x + self.conv(x))
        return self.head(x.mean((2, 3)))


class Attending(nn.Module):
    """A conv stem, then self-attention over its positions (a tiny vision transformer)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 4, stride=4)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        t = self.stem(x).flatten(2).transpose(1, 2)
        t = t + self.attn(t, t, t, need_weights=False)[0]
        return self.head(t.mean(1))
'''


@pytest.fixture
def awkward(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "odd.py").write_text(textwrap.dedent(AWKWARD))
    rng = np.random.default_rng(0)
    image = tmp_path / "odd.png"
    Image.fromarray(rng.integers(0, 256, (37, 29, 3), dtype=np.uint8)).save(image)
    return tmp_path / "odd.py", image


@pytest.mark.parametrize("method", ["grad-x-act", "layer-integrated", "lrp"])
def test_explain_an_awkward_user_model(awkward, tmp_path: Path, method: str) -> None:
    net, image = awkward
    out = tmp_path / f"out-{method}"
    result = invoke("explain", "--model", f"{net}:Odd", "--input-shape", "3,37,29", "--image", image,
                    "--method", method, "--no-cards", "--top", "3", "--out", out, "--quiet")
    # its residual sum and its functional mean have no LRP rule: relevance would be shared by the
    # gradient, silently wrong, so LRP is refused in one line and the gradient methods explain it
    residual = "cannot share relevance by contribution through an addition of two branches"
    if method == "lrp":
        assert_one_line_error(result, residual)
        assert not out.exists()
        return
    assert result.exit_code == 0, result.output
    record = json.loads((out / "explain.json").read_text())
    assert record["layer"] == "conv" and len(record["images"][0]["channels"]) == 8
    assert record["images"][0]["image"] == "odd.png"
    assert (out / "explain-odd.png").is_file()
    attr = invoke("attribute", "--model", f"{net}:Odd", "--input-shape", "3,37,29", "--image", image,
                  "--method", "lrp-epsilon-plus", "--out", tmp_path / f"attr-{method}", "--quiet")
    assert_one_line_error(attr, residual)


def test_a_transformer_explains_by_gradients_and_refuses_lrp_in_one_line(awkward, tmp_path: Path) -> None:
    net, image = awkward
    common = ["--model", f"{net}:Attending", "--input-shape", "3,32,32", "--image", image, "--no-cards", "--quiet"]
    result = invoke("explain", *common, "--out", tmp_path / "a")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "a" / "explain.json").read_text())["layer"] == "stem"
    result = invoke("explain", *common, "--method", "lrp", "--out", tmp_path / "b")
    assert_one_line_error(result, "cannot propagate relevance through layer attn (MultiheadAttention)")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("args, message", [
    (["--method", "grad-x-actt"], "unknown explain method 'grad-x-actt'"),
    (["--layer", "fc1"], "layer fc1 gives (128,) per image: explain needs a layer with channels x height x width"),
    (["--layer", "nope"], "nope"),
    (["--index", "0", "--image", "x.png"], "not both"),
    (["--top", "0"], "--top 0"),
    (["--method", "lrp", "--rule", "lrp-epsilonn"], "unknown LRP rule 'lrp-epsilonn'"),
    (["--method", "layer-integrated", "--steps", "0"], "steps"),
    (["--index", "10000"], "out of range"),
])
def test_bad_input_is_one_line(run_copy: Path, tmp_path: Path, args, message) -> None:
    result = invoke("explain", run_copy, "--no-cards", "--out", tmp_path / "o", *args)
    assert_one_line_error(result, message)
    assert not (tmp_path / "o").exists()


def test_lrp_epsilon_is_gradient_x_input_on_the_trained_relu_net(mnist_run, mnist_batch) -> None:
    # LRP-0 equals gradient x input on a ReLU network (Ancona et al. 2018): an oracle on a real net,
    # biases and max-pooling included
    from netviz.attribute import input_x_gradient

    x = mnist_batch[:16]
    lrp = lrp_epsilon(mnist_run.model, x, None, epsilon=1e-9, spec=mnist_run.spec).attributions
    ixg = input_x_gradient(mnist_run.model, x, None).attributions
    assert (lrp - ixg).abs().max() <= 1e-4 * ixg.abs().max()


def test_evaluate_ranks_the_lrp_methods_with_the_rest(mnist_run, tmp_path: Path) -> None:
    methods = "lrp-epsilon,lrp-epsilon-plus,lrp-epsilon-gamma-box,random"
    result = invoke("evaluate", mnist_run.path, "--methods", methods, "--index", "0-7", "--no-sanity",
                    "--out", tmp_path / "ev", "--quiet")
    assert result.exit_code == 0, result.output
    scored = json.loads((tmp_path / "ev" / "evaluate.json").read_text())
    assert set(methods.split(",")) <= set(json.dumps(scored).replace('"', " ").split())
    ranked = [line.split()[1] for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert ranked[-1] == "random" and sorted(ranked) == sorted(methods.split(","))
