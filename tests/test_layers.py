"""`netviz layers` and layer addressing: indices, dotted names, shapes, errors, hooks."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from netviz.cli import cli
from netviz.errors import NetvizError
from netviz.layers import capture_activations, has_hooks, list_layers, resolve_layer, resolve_layers
from netviz.registry import build_model

MNIST_LAYERS = ["conv1", "relu1", "conv2", "relu2", "pool", "dropout1", "flatten", "fc1", "relu3",
                "dropout2", "fc2"]


def test_list_layers_mnist_shapes_and_params() -> None:
    model = build_model("mnist")
    infos = list_layers(model, (1, 28, 28))
    assert [i.name for i in infos] == MNIST_LAYERS
    # layer numbers count the layers that hold weights, from 1 (as the post counts "layer 3")
    assert [i.index for i in infos] == [1, None, 2, None, None, None, None, 3, None, None, 4]
    by_name = {i.name: i for i in infos}
    assert by_name["conv1"].output_shape == (32, 26, 26) and by_name["conv1"].params == 32 * 9 + 32
    assert by_name["pool"].output_shape == (64, 12, 12) and by_name["pool"].params == 0
    assert by_name["flatten"].output_shape == (9216,)
    assert by_name["fc1"].params == 9216 * 128 + 128 and by_name["fc2"].output_shape == (10,)
    assert not has_hooks(model)


def test_resolve_indices_names_and_errors() -> None:
    model = build_model("mnist")
    assert resolve_layer(model, 1) == "conv1"
    assert resolve_layer(model, "-1") == "fc2"
    assert resolve_layer(model, " fc1 ") == "fc1"
    assert resolve_layers(model, "2,pool,2,-2") == ["conv2", "pool", "fc1"]
    for bad in (0, 5, -5):
        with pytest.raises(NetvizError, match=rf"index {bad} is out of range: layer numbers are 1\.\.4"):
            resolve_layer(model, bad)
    allconv = build_model("allconv")
    assert resolve_layers(allconv, "3,6,9") == ["conv3", "conv6", "conv9"]  # the post's layers
    plain = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Conv2d(1, 2, 3))
    assert resolve_layer(plain, "0") == "0" and resolve_layer(plain, 1) == "1"  # names first
    with pytest.raises(NetvizError, match=r"unknown layer 'rleu2'; did you mean: relu2"):
        resolve_layer(model, "rleu2")


def test_nested_torchvision_names_and_inplace_relu() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18")
    infos = {i.name: i for i in list_layers(model, (3, 224, 224))}
    assert infos["layer2.0.conv1"].output_shape == (128, 28, 28)
    assert infos["layer2.0.downsample.0"].type == "Conv2d"
    assert infos["fc"].output_shape == (1000,)
    index = infos["layer2.0.conv1"].index
    assert resolve_layer(model, index) == "layer2.0.conv1"
    x = torch.randn(1, 3, 224, 224)
    with capture_activations(model, ["bn1", "layer2.0.conv1"]) as store, torch.no_grad():
        model(x)
        # bn1 is followed by ReLU(inplace=True): the record must still hold bn1's own output
        bn1 = model.bn1(model.conv1(x))
        stem = model.maxpool(model.relu(bn1.clone()))
        block_in = model.layer1(stem)
        conv = model.layer2[0].conv1(block_in)
    assert (store["bn1"] < 0).any()
    torch.testing.assert_close(store["bn1"], bn1)
    torch.testing.assert_close(store["layer2.0.conv1"], conv)
    assert not has_hooks(model)


def test_cli_layers_table_and_json(mnist_run) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["layers", str(mnist_run.path)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"mnist ({mnist_run.path.name}): input 1x28x28, 1,199,882 parameters, 11 layers"
    assert lines[1].split() == ["layer", "name", "type", "output", "shape", "params"]
    rows = [line.split() for line in lines[2:]]
    assert [r[0] if r[0] in MNIST_LAYERS else r[1] for r in rows] == MNIST_LAYERS
    assert rows[0] == ["1", "conv1", "Conv2d", "32x26x26", "320"]
    assert rows[1] == ["relu1", "ReLU", "32x26x26", "0"]
    assert rows[7] == ["3", "fc1", "Linear", "128", "1,179,776"]

    result = runner.invoke(cli, ["layers", str(mnist_run.path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"] == "mnist" and data["input_shape"] == [1, 28, 28]
    assert data["params"] == sum(p.numel() for p in mnist_run.model.parameters())
    assert data["layers"][7]["index"] == 3 and data["layers"][7]["name"] == "fc1"
    assert data["layers"][4] == {"index": None, "name": "pool", "type": "MaxPool2d",
                                 "output_shape": [64, 12, 12], "params": 0}
    assert not has_hooks(mnist_run.model)


def test_cli_layers_bare_models_and_errors() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["layers", "--model", "allconv", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "conv9  ConvELU        10x8x8" in result.stdout
    result = runner.invoke(cli, ["layers", "--model", "resnet18", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if " layer2.0.conv1 " in line)
    assert row.split() == ["11", "layer2.0.conv1", "Conv2d",
                           "128x28x28", "73,728"]
    result = runner.invoke(cli, ["layers", "--model", "mnsit"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "did you mean: mnist" in result.stderr
    result = runner.invoke(cli, ["layers"])  # no run in the (empty) runs folder
    assert result.exit_code == 2 and "no training run found" in result.stderr
