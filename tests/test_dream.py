"""`netviz dream`: class maximisation and channel visualisation on real trained runs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from netviz.cli import cli
from netviz.data import load_image, normalise
from netviz.dream import dream_channels, dream_classes, image_seed, recipe_settings
from netviz.dream.param import initial_pixels
from netviz.errors import NetvizError
from netviz.layers import forward_to, has_hooks


def invoke(*args: str):
    return CliRunner().invoke(cli, [*args, "--device", "cpu", "--quiet"])


def printed(result) -> list[Path]:
    paths = [Path(line) for line in result.stdout.splitlines()]
    assert paths and all(p.is_file() for p in paths), result.stdout
    return paths


def channel_energy(model: nn.Module, spec, pixels: torch.Tensor, layer: str, channel: int) -> float:
    """Total squared activation of one channel, computed here independently of netviz.dream."""
    with torch.no_grad():
        act = forward_to(model, normalise(pixels, spec), [layer])[layer]
    return float(act[0, channel].double().pow(2).sum())


def test_class_all_paper_recipe_is_read_back_from_the_png(mnist_run, tmp_path: Path) -> None:
    # Acceptance: the 10 images of `--class all` (the post's recipe, run --until 0.99 so that the
    # result does not hang on how many steps one trained net needs), re-loaded from the PNGs, are
    # each classified as their target with probability >= 0.99.
    out = tmp_path / "dream"
    result = invoke("dream", str(mnist_run.path), "--class", "all", "--until", "0.99", "--out", str(out),
                    "--gif")
    assert result.exit_code == 0, result.output
    names = {p.name for p in printed(result)}
    assert names == {f"class_{k}.png" for k in range(10)} | {"dream.json", "grid.png", "dream.gif", "manifest.json"}

    images = torch.cat([load_image(out / f"class_{k}.png", mnist_run.spec)[0] for k in range(10)])
    assert images.shape == (10, 1, 28, 28) and images.dtype == torch.uint8
    with torch.no_grad():
        probs = torch.softmax(mnist_run.model(normalise(images, mnist_run.spec)), dim=1)
    assert probs.argmax(1).tolist() == list(range(10))
    # 0.99 was checked on these very pixels in another batch: 1e-5 covers that rounding
    assert probs.diagonal().min() >= 0.99 - 1e-5
    assert images.float().mean() > 20  # not a black image: the optimiser drew strokes

    record = json.loads((out / "dream.json").read_text())
    settings = record["settings"]
    assert (settings["steps"], settings["optimizer"], settings["init"], settings["lr"]) == (50, "adam", "black", 0.1)
    assert (settings["until"], settings["max_steps"]) == (0.99, 200)  # 4 x the recipe's steps
    for k, entry in enumerate(record["images"]):
        assert entry["target"] == k and entry["file"] == f"class_{k}.png"
        assert entry["probability_after"] == pytest.approx(float(probs[k, k]), abs=1e-5)
        assert entry["top3"][0]["class"] == k and len(entry["top3"]) == 3
        assert entry["reached_until"] and 0 <= entry["stopped_at_step"] <= 200
    # every class starts from the same black image: its probabilities over the targets sum to 1,
    # so at most one class can pass 0.99 before any update; the others needed steps
    assert sum(e["probability_before"] for e in record["images"]) == pytest.approx(1.0, abs=1e-4)
    assert sum(e["stopped_at_step"] > 0 for e in record["images"]) >= 9
    for e in record["images"]:
        if e["stopped_at_step"] > 0:
            assert e["objective_final"] > e["objective_start"]

    with Image.open(out / "dream.gif") as gif:
        last = max(e["stopped_at_step"] for e in record["images"])
        assert gif.n_frames == 1 + -(-last // 8)  # the start, every 8th of 200 steps, the last
    assert Image.open(out / "grid.png").size[0] > 600


def test_until_stops_each_image_and_says_which_never_got_there(mnist_run) -> None:
    # A probability no image reaches in 3 steps: all run the whole budget and say so.
    never = dream_classes(mnist_run, "0-2", until=0.999999, max_steps=3)
    assert never.stopped_at == [None, None, None] and never.history.shape == (3, 3)
    # The bar at the start image's own probability: one class passes at step 0 and is frozen there.
    start = dream_classes(mnist_run, "all", steps=1)
    with torch.no_grad():
        p0 = torch.softmax(mnist_run.model(normalise(start.start, mnist_run.spec)), 1)[0]
    k = int(p0.argmax())
    frozen = dream_classes(mnist_run, [k], until=float(p0[k]) * 0.999, max_steps=5)
    assert frozen.stopped_at == [0] and torch.equal(frozen.images, frozen.start)
    with pytest.raises(NetvizError, match="--until stops class dreams"):
        dream_channels(mnist_run, "conv2", [0], until=0.9, steps=2)
    with pytest.raises(NetvizError, match="--max-steps goes with --until"):
        dream_classes(mnist_run, "1", max_steps=5)


class PerImage(nn.Module):
    """Runs each image alone, so float rounding cannot depend on the batch: any dependence
    left would come from netviz.dream itself (randomness, loss, optimiser)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.net(x[i:i + 1]) for i in range(x.shape[0])])


def test_an_image_does_not_depend_on_its_batch_and_the_seed_repeats_it(mnist_run) -> None:
    # every random part on: multi-scale noise start, jitter, zoom, rotation, blur, penalties
    kw = dict(recipe="deepdream", steps=10, scale=(0.9, 1.1), rotate=10.0, tv=0.01, l2=0.01,
              blur_every=4)
    # Exact on any CPU: with --batch-size 1 every tensor has the same shape whichever targets run,
    # so an image can only differ if its randomness or its updates depended on the others.
    alone = dream_classes(mnist_run, "all", batch_size=1, **kw)
    pair = dream_classes(mnist_run, [7, 3], batch_size=1, **kw)
    assert torch.equal(alone.images[3], pair.images[1]) and torch.equal(alone.images[7], pair.images[0])
    fft = dream_classes(mnist_run, [5, 2], recipe="lucent", steps=6, batch_size=1)
    assert torch.equal(fft.images[0], dream_classes(mnist_run, "5", recipe="lucent", steps=6).images[0])

    # Batched, the CPU kernels may round an image's arithmetic differently for other batch
    # sizes (e.g. a vectorised tail of 16 values on AVX-512); with the model run image by image,
    # what is left is that last-bit rounding, < 1e-4 of a pixel after these few steps. Mixing
    # images (a shared random draw, a step normalised over the batch) moves pixels by a whole
    # step (1/8 for deepdream, > 1e-2 for lucent): 1e-3 tells the two apart on any CPU.
    run = dataclasses.replace(mnist_run, model=PerImage(mnist_run.model).eval())
    batch = dream_classes(run, "all", **kw)
    chunks = dream_classes(run, "all", batch_size=4, **kw)  # 4 + 4 + 2 images
    assert (batch.images - alone.images).abs().max() < 1e-3 and chunks.history.shape == (10, 10)
    assert (chunks.images - alone.images).abs().max() < 1e-3
    fft_batch = dream_classes(run, "all", recipe="lucent", steps=6)
    assert (fft_batch.images[[5, 2]] - fft.images).abs().max() < 1e-3
    assert not has_hooks(mnist_run.model)

    # on the real (batched) model: --seed repeats a run bit for bit, another seed changes it
    again = dream_classes(mnist_run, "all", recipe="lucent", steps=6)
    assert torch.equal(again.images, dream_classes(mnist_run, "all", recipe="lucent", steps=6).images)
    other = dream_classes(mnist_run, "all", recipe="lucent", steps=6, seed=1)
    assert (other.images - again.images).abs().max() > 0.1


def test_allconv_conv3_channel_grows_tenfold(allconv_run, tmp_path: Path) -> None:
    # Acceptance: a layer-3 channel of allconv (the deepdream recipe, 256 steps): the saved
    # image's total squared activation is >= 10x that of the start image.
    out = tmp_path / "conv3"
    result = invoke("dream", str(allconv_run.path), "--layer", "conv3", "--channel", "5", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert {p.name for p in printed(result)} == {"conv3_channel_5.png", "dream.json", "grid.png", "manifest.json"}
    record = json.loads((out / "dream.json").read_text())
    entry = record["images"][0]
    assert record["settings"]["steps"] == 256 and record["settings"]["optimizer"] == "normgrad"

    model, spec = allconv_run.model, allconv_run.spec
    saved, _ = load_image(out / "conv3_channel_5.png", spec)
    assert saved.shape == (1, 3, 32, 32)
    after = channel_energy(model, spec, saved, "conv3", 5)
    # the start image, rebuilt from the seed and target as documented
    gen = torch.Generator().manual_seed(image_seed(0, "channel:conv3:5"))
    before = channel_energy(model, spec, initial_pixels("multiscale", spec, [gen]), "conv3", 5)
    assert entry["activation_after"] == pytest.approx(after, rel=1e-4)
    assert entry["activation_before"] == pytest.approx(before, rel=1e-4)
    assert after >= 10 * before > 0


def test_mnist_conv_channels_grow_severalfold(mnist_run, tmp_path: Path) -> None:
    out = tmp_path / "conv2"
    result = invoke("dream", str(mnist_run.path), "--layer", "conv2", "--channel", "0-3", "--out", str(out))
    assert result.exit_code == 0, result.output
    record = json.loads((out / "dream.json").read_text())
    for c, entry in enumerate(record["images"]):
        assert entry["file"] == f"conv2_channel_{c}.png"
        saved, _ = load_image(out / entry["file"], mnist_run.spec)
        after = channel_energy(mnist_run.model, mnist_run.spec, saved, "conv2", c)
        # dream.json measured a batch of 4, this a single image: 1e-4 covers that rounding
        assert entry["activation_after"] == pytest.approx(after, rel=1e-4)
        # 256 deepdream steps multiply a channel's energy (x11 to x2500 on nets trained with
        # five seeds and two instruction sets); a broken objective or step leaves it near x1.
        assert after >= 3 * entry["activation_before"] > 0


def test_dead_relu_channel_is_revived_by_redirected_gradients(mnist_run) -> None:
    # A relu2 channel that is exactly 0 on the black start image: its squared activation has no
    # gradient. Which channels are dead depends on the trained net, so the test looks for one.
    with torch.no_grad():
        start = forward_to(mnist_run.model, normalise(torch.zeros(1, 1, 28, 28), mnist_run.spec),
                           ["relu2"])["relu2"][0]
    dead = [c for c in range(start.shape[0]) if not start[c].any()]
    assert dead, "no relu2 channel is dead on a black image: the test needs one"
    kw = dict(layer="relu2", channels=dead[:1], steps=48, init="black")
    stuck = dream_channels(mnist_run, redirect_relu=False, **kw)
    assert stuck.objective_start == [0.0] and stuck.objective_final == [0.0]
    revived = dream_channels(mnist_run, **kw)
    # Revived means the channel fires: its squared activation rose from exactly 0 (to 100-460
    # on nets trained with five seeds and two instruction sets; 1 is far below any of them).
    assert revived.objective_start == [0.0] and revived.objective_final[0] > 1.0
    assert not has_hooks(mnist_run.model)


def test_neuron_fft_and_a_224_torchvision_model(mnist_run, tmp_path: Path) -> None:
    out = tmp_path / "neuron"
    result = invoke("dream", str(mnist_run.path), "--layer", "relu2", "--neuron", "3,5,6", "--steps", "40",
                    "--out", str(out))
    assert result.exit_code == 0, result.output
    record = json.loads((out / "dream.json").read_text())
    entry = record["images"][0]
    assert entry["file"] == "relu2_neuron_3_5_6.png" and entry["position"] == [5, 6]
    assert record["settings"]["jitter"] == 0  # a neuron is not jittered away from its place
    # 3 to 18 on nets trained with five seeds and two instruction sets (from a dead start on all
    # of them); a broken step leaves it where it started.
    assert entry["activation_after"] > max(1.0, 2 * entry["activation_before"])

    out = tmp_path / "fft"
    result = invoke("dream", str(mnist_run.path), "--layer", "conv2", "--channel", "1", "--param", "fft",
                    "--steps", "40", "--out", str(out))
    assert result.exit_code == 0, result.output
    entry = json.loads((out / "dream.json").read_text())["images"][0]
    # x3 to x12 in 40 steps on five trained nets; a broken parameterisation stays near x1
    assert entry["activation_after"] > 1.5 * entry["activation_before"] > 0
    with Image.open(out / entry["file"]) as im:
        assert (im.mode, im.size) == ("L", (28, 28))  # 1 channel stays 1 channel, at 28x28

    out = tmp_path / "r18"
    result = invoke("dream", "--model", "resnet18", "--layer", "layer1.0.conv1", "--channel", "7",
                    "--recipe", "lucent", "--steps", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    with Image.open(out / "layer1.0.conv1_channel_7.png") as im:
        assert (im.mode, im.size) == ("RGB", (224, 224))  # the model's own size, no upsampling
    entry = json.loads((out / "dream.json").read_text())["images"][0]
    assert entry["activation_after"] > entry["activation_before"]


def test_allconv_class_by_name(allconv_run, tmp_path: Path) -> None:
    out = tmp_path / "cat"
    result = invoke("dream", str(allconv_run.path), "--class", "cat,ship", "--steps", "20", "--batch-size", "1",
                    "--out", str(out))
    assert result.exit_code == 0, result.output
    record = json.loads((out / "dream.json").read_text())
    assert [(e["target"], e["name"]) for e in record["images"]] == [(3, "cat"), (8, "ship")]
    for e in record["images"]:
        assert e["probability_after"] > e["probability_before"]


@pytest.mark.parametrize(("args", "message"), [
    (["--class", "10"], "class 10 is out of range: model mnist has 10 classes (0..9)"),
    (["--class", "seven"], "unknown class 'seven'"),
    (["--layer", "conv2", "--channel", "64"], "channel 64 is out of range: layer conv2 has 64 channels (0..63)"),
    (["--layer", "conv9"], "unknown layer 'conv9'"),
    (["--steps", "0"], "--steps 0: use 1 or more"),
    (["--layer", "relu2", "--neuron", "0,24,3"], "outside layer relu2's 24x24 map"),
    (["--channel", "3"], "--channel and --neuron need --layer"),
    (["--scale", "big"], "cannot read --scale 'big'"),
    (["--param", "fft", "--blur-every", "4"], "--blur-every works with --param pixel only"),
])
def test_bad_input_is_one_clear_line(mnist_run, args: list[str], message: str) -> None:
    result = invoke("dream", str(mnist_run.path), *args, "--out", "x")
    assert result.exit_code == 2
    assert result.stderr.startswith("netviz: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr


def test_settings_scale_with_the_input_size() -> None:
    assert recipe_settings("deepdream", (1, 28, 28)).jitter == 2
    assert recipe_settings("deepdream", (3, 224, 224)).jitter == 8
    assert recipe_settings("lucent", (3, 224, 224)).param == "fft"
    assert recipe_settings("paper", (1, 28, 28), steps=7, gif_every=-1).gif_every == 1
    with pytest.raises(NetvizError, match="--jitter must be between 0 and 27"):
        recipe_settings("deepdream", (1, 28, 28), jitter=28)


def _post_loop(model: nn.Module, target: int, steps: int = 50, lr: float = 0.1) -> torch.Tensor:
    """The 2019 post's class visualisation, read literally, in plain PyTorch: every iteration turns
    the 8-bit image into a normalised tensor, makes a new Adam over it, takes one step on
    -10 logp[target] + sum(logp), and rounds the image back to 8-bit pixels."""
    mean, std = 0.1307, 0.3081
    image = torch.zeros(28, 28, dtype=torch.uint8)
    for _ in range(steps):
        x = ((image.float() / 255 - mean) / std).view(1, 1, 28, 28).requires_grad_(True)
        opt = torch.optim.Adam([x], lr=lr)
        opt.zero_grad()
        logp = torch.log_softmax(model(x), dim=1)
        loss = -10 * logp[0, target] + logp.sum()
        loss.backward()
        opt.step()
        with torch.no_grad():
            image = torch.round((x * std + mean).clamp(0, 1) * 255).to(torch.uint8).view(28, 28)
    return image


def test_paper_recipe_is_the_posts_loop_pixel_for_pixel(mnist_run, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["dream", str(mnist_run.path), "--class", "all", "--recipe", "paper",
                                      "--batch-size", "1", "--out", str(tmp_path / "d"), "--quiet"])
    assert result.exit_code == 0, result.output
    model = mnist_run.model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    for k in range(10):
        ours = torch.from_numpy(np.array(Image.open(tmp_path / "d" / f"class_{k}.png").convert("L")))
        theirs = _post_loop(model, k)
        assert torch.equal(ours, theirs), f"class {k}: {int((ours != theirs).sum())} pixels differ"
