"""`netviz kernels`: conv kernels as sign-preserving tiles, before vs after training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import assert_one_line_error
from PIL import Image
from torch import nn

from netviz.cli import cli
from netviz.draw.kernels import kernel_images, signed_unit, write_kernels
from netviz.errors import NetvizError
from netviz.kernels import conv_layers, kernels_run, layer_kernels
from netviz.layers import has_hooks


def _invoke(*args: str):
    return CliRunner().invoke(cli, ["kernels", *args, "--device", "cpu", "-q"])


def test_cli_mnist_first_layer_before_after(mnist_run, tmp_path: Path) -> None:
    out = tmp_path / "k"
    result = _invoke(str(mnist_run.path), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(out / name) for name in ("kernels-conv1.json", "kernels-conv1.png",
                                                                   "manifest.json")]
    data = json.loads((out / "kernels-conv1.json").read_text())
    assert data["layer"] == "conv1" and data["mode"] == "grey"
    assert data["weight_shape"] == [32, 1, 3, 3] and data["shown_out"] == 32
    assert list(data["snapshots"]) == ["init", "final"]
    init, final = data["snapshots"]["init"], data["snapshots"]["final"]
    w0 = mnist_run.state_dict("init")["conv1.weight"]
    w1 = mnist_run.model.conv1.weight.detach()
    assert init["max_abs"] == pytest.approx(float(w0.abs().max()), rel=1e-6)
    assert final["max_abs"] == pytest.approx(float(w1.abs().max()), rel=1e-6)
    assert final["kernel_norms"][5] == pytest.approx(float(w1[5].norm()), rel=1e-5)
    expected = float((w1 - w0).norm() / w0.norm())
    assert data["relative_change"] == pytest.approx(expected, rel=1e-5)
    assert data["relative_change"] > 0.1  # 3 epochs really changed the first layer
    with Image.open(out / "kernels-conv1.png") as im:
        assert im.width > 500 and im.height > 200
    assert not has_hooks(mnist_run.model)


def test_cli_allconv_rgb_and_deeper_layer(allconv_run, tmp_path: Path) -> None:
    result = _invoke(str(allconv_run.path), "--out", str(tmp_path / "a"))
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "a" / "kernels-conv1.json").read_text())
    assert data["mode"] == "rgb" and data["weight_shape"] == [128, 3, 3, 3]
    assert data["shown_out"] == 128 and data["note"] is None
    assert 0 < data["relative_change"] < 0.5

    result = _invoke(str(allconv_run.path), "--out", str(tmp_path / "b"), "--layer", "conv8",
                     "--max-out", "16", "--scale", "layer")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "b" / "kernels-conv8.json").read_text())
    assert data["mode"] == "channels" and data["weight_shape"] == [128, 128, 1, 1]
    assert (data["shown_out"], data["shown_in"]) == (16, 32)
    assert "0-15 of 128" in data["note"] and data["scale"] == "layer"
    assert len(data["snapshots"]["final"]["kernel_norms"]) == 16


def test_deeper_layer_grid_is_capped(mnist_run) -> None:
    ks = kernels_run(mnist_run, layer="conv2", max_out=8, max_in=4)
    assert ks.mode == "channels" and ks.weight_shape == (64, 32, 3, 3)
    assert ks.kernels["final"].shape == (8, 4, 3, 3)
    expected = mnist_run.model.conv2.weight[:8, :4].detach().numpy()
    assert np.array_equal(ks.kernels["final"], expected)
    assert "of 64" in ks.note and "of 32" in ks.note
    images, rows, cols = kernel_images(ks)
    assert (rows, cols) == (8, 4)
    assert images["init"].shape == (8 * 3, 4 * 3, 3)
    assert kernels_run(mnist_run, layer=2).layer == "conv2"  # layer number 2, as `netviz layers`


def test_signed_unit_keeps_sign_and_zero() -> None:
    w = np.array([[[[-2.0, 0.0, 1.0]]], [[[0.5, 0.25, 0.0]]]])  # 2 kernels
    u = signed_unit(w, "kernel", layer_max=0.0)
    assert u[0, 0, 0].tolist() == [0.0, 0.5, 0.75]  # scaled by its own max |w| = 2
    assert u[1, 0, 0].tolist() == [1.0, 0.75, 0.5]
    u = signed_unit(w, "layer", layer_max=4.0)
    assert u[1, 0, 0].tolist() == [0.5625, 0.53125, 0.5]
    zero = signed_unit(np.zeros((1, 1, 2, 2)), "kernel", 0.0)
    assert np.all(zero == 0.5)  # an all-zero kernel is mid-grey, no division by zero


def test_bare_model_single_snapshot(tmp_path: Path) -> None:
    result = _invoke("--model", "mnist", "--out", str(tmp_path / "m"), "--seed", "1")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "m" / "kernels-conv1.json").read_text())
    assert list(data["snapshots"]) == ["model"]
    assert data["snapshots"]["model"]["label"] == "random weights (untrained)"
    assert "relative_change" not in data


def test_other_input_channels_and_nonfinite(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(2, 4, 5), nn.ReLU(), nn.Conv2d(4, 3, 3))
    assert conv_layers(model) == ["0", "2"]
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state["0.weight"][1, 0, 2, 2] = math.nan
    ks = layer_kernels(model, {"model": state})
    assert ks.layer == "0" and ks.mode == "channels" and ks.kernels["model"].shape == (4, 2, 5, 5)
    paths = [a.path for a in write_kernels(ks, tmp_path, model_name="tiny")]
    data = json.loads(paths[0].read_text())
    assert data["snapshots"]["model"]["nonfinite"] == 1
    assert data["snapshots"]["model"]["kernel_norms"][1] is None
    assert paths[1].stat().st_size > 1000


def test_first_layer_cap() -> None:
    model = nn.Sequential(nn.Conv2d(3, 300, 3))
    ks = layer_kernels(model, {"m": model.state_dict()}, max_kernels=100)
    assert ks.kernels["m"].shape == (100, 3, 3, 3)
    assert ks.note == "showing the first 100 of 300 kernels (--max-kernels to change)"
    with pytest.raises(NetvizError, match="no 2-D convolution"):
        layer_kernels(nn.Sequential(nn.Linear(3, 2)), {"m": {}})
    with pytest.raises(NetvizError, match="--max-in must be at least 1"):
        layer_kernels(model, {"m": model.state_dict()}, max_in=0)


@pytest.mark.parametrize(("args", "message"), [
    (["{empty}"], "never finished and holds no checkpoint"),
    (["{missing}"], "does not exist"),
    (["{mnist}", "--layer", "conv3"], "unknown layer 'conv3'; did you mean: conv"),
    (["{mnist}", "--layer", "fc1"], "layer 'fc1' is a Linear, not a 2-D convolution: pick one of "
                                    "conv1, conv2"),
    (["{mnist}", "--layer", "99"], "layer index 99 is out of range"),
])
def test_bad_input_is_one_line(bad_sources, tmp_path: Path, args: list[str], message: str) -> None:
    result = _invoke(*[bad_sources.get(a, a) for a in args], "--out", str(tmp_path / "o"))
    assert_one_line_error(result, message)


def test_checkpoint_file_source(mnist_run, tmp_path: Path) -> None:
    # a checkpoint path inside a run folder still finds init.pt for the "before" side
    ckpt = mnist_run.path / "checkpoints" / "final.pt"
    result = _invoke(str(ckpt), "--out", str(tmp_path / "c"))
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "c" / "kernels-conv1.json").read_text())
    assert list(data["snapshots"]) == ["init", "final"]
    assert torch.isfinite(torch.tensor(data["relative_change"]))
