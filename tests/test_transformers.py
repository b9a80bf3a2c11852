"""Token models (ViT, DeiT, Swin from timm, random weights), ONNX files, functional ReLUs and
weights held as buffers (issue 18, parts 4-7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import CIFAR_SAMPLE, assert_one_line_error

import netviz.attribute as A
from netviz.cli import cli
from netviz.layers import capture_activations, last_spatial_layer, list_layers
from netviz.runs import load_run
from netviz.tokens import Grid, grid_of, token_grid

NETS = Path(__file__).parent / "awkward_nets.py"
IMAGE = sorted((CIFAR_SAMPLE / "cat").glob("*.png"))[0]


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def files(result) -> list[Path]:
    assert result.exit_code == 0, result.output
    paths = [Path(line) for line in result.stdout.splitlines() if line.strip() and Path(line).is_file()]
    assert any(p.name == "manifest.json" for p in paths), result.output
    return paths


def assert_refused(result, message: str) -> None:
    """Exit 2 and one error line (after any notes on what was assumed), no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("netviz: error:") and message in lines[-1], result.stderr
    assert all(line.startswith("note:") for line in lines[:-1]) and "Traceback" not in result.output


def test_token_grids():
    assert token_grid(197, (224, 224)) == (14, 14, 1)  # ViT-Tiny/16: a class token
    assert token_grid(198, (224, 224)) == (14, 14, 2)  # DeiT distilled: class + distillation
    assert token_grid(196 + 5, (224, 224)) == (14, 14, 5)  # registers
    assert token_grid(24 * 40 // 64, (24, 40)) == (3, 5, 0)  # non-square, patch 8
    assert grid_of((56, 56, 96), (224, 224)) == Grid("nhwc", 56, 56)  # Swin's stages
    assert grid_of((96, 56, 56), (224, 224)) == Grid("nchw", 56, 56)  # ConvNeXt's
    assert grid_of((10,), (28, 28)) is None
    assert grid_of((197, 192), (224, 224), "nchw") is None  # --reshape nchw: tokens are not a map
    t = torch.arange(2 * 197 * 3.0).view(2, 197, 3)
    m = Grid("tokens", 14, 14, 1).to_map(t)
    assert m.shape == (2, 3, 14, 14) and torch.equal(m[1, 2, 0, 1], t[1, 2, 2])  # token 2 = row 0, col 1


@pytest.fixture(scope="module")
def vit():
    pytest.importorskip("timm")
    torch.manual_seed(0)
    return load_run(model="timm:vit_tiny_patch16_224")


def test_vit_gradcam_at_the_token_grid_matches_grad_cam(vit):
    """The default layer is the last block's norm1 (the last whose patch tokens reach the class
    token); the map is 14 x 14 and equals pytorch-grad-cam's with its reshape_transform."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    notes: list[str] = []
    layer = last_spatial_layer(vit.model, vit.spec.input_shape, notes)
    assert layer == "blocks.11.norm1" and "class token" in notes[0]
    x = torch.randn(2, 3, 224, 224)
    ours = A.grad_cam(vit.model, x, 3, layer)
    assert ours.maps.shape == (2, 1, 14, 14)

    def reshape(t):
        return t[:, 1:].reshape(t.shape[0], 14, 14, t.shape[2]).permute(0, 3, 1, 2)

    with GradCAM(vit.model, [vit.model.get_submodule(layer)], reshape_transform=reshape) as cam:
        cam.compute_input_gradient = False
        ref = torch.from_numpy(cam(x, [ClassifierOutputTarget(3)] * 2, aug_smooth=False, eigen_smooth=False))
    # grad-cam normalises each map to [0, 1] after upsampling to the input: compare the same way
    up = ours.attributions[:, 0]
    lo = up.flatten(1).min(1).values[:, None, None]
    hi = up.flatten(1).max(1).values[:, None, None]
    assert ((up - lo) / (hi - lo) - ref).abs().max() <= 1e-4


@pytest.mark.parametrize(("name", "layer", "shape"), [
    ("timm:vit_tiny_patch16_224", "blocks.5", (192, 14, 14)),
    ("timm:deit_tiny_patch16_224", "blocks.11.norm1", (192, 14, 14)),
    ("timm:swin_tiny_patch4_window7_224", "layers.1", (192, 28, 28)),
    ("timm:convnext_atto", "stages.2", (160, 14, 14)),
])
def test_activation_grids_of_token_and_channels_last_layers(tmp_path, name, layer, shape):
    pytest.importorskip("timm")
    result = invoke("activations", "--model", name, "--image", IMAGE, "--layers", layer, "--channels", "0-3")
    data = json.loads(next(p for p in files(result) if p.name == "activations.json").read_text())
    assert tuple(data["layers"][0]["shape"]) == shape
    if "convnext" not in name:
        assert "read as" in result.stderr


@pytest.mark.parametrize("name", ["timm:vit_tiny_patch16_224", "timm:deit_tiny_patch16_224",
                                  "timm:swin_tiny_patch4_window7_224", "timm:convnext_atto"])
def test_every_cam_and_a_dream_on_timm_models(tmp_path, name):
    pytest.importorskip("timm")
    paths = files(invoke("attribute", "--model", name, "--image", IMAGE, "--method", "gradcam"))
    data = json.loads(next(p for p in paths if p.name == "attribute.json").read_text())
    assert data["settings"]["layer"]
    files(invoke("dream", "--model", name, "--class", "1", "--steps", "2"))


def test_reshape_overrides_and_refuses(vit):
    x = torch.randn(1, 3, 224, 224)
    with capture_activations(vit.model, ["blocks.3"]) as store, torch.no_grad():
        vit.model(x)
    assert store["blocks.3"].shape == (1, 192, 14, 14)
    result = invoke("attribute", "--model", "timm:vit_tiny_patch16_224", "--image", IMAGE, "--method",
                    "gradcam", "--layer", "blocks.3", "--reshape", "nchw")
    assert_refused(result, "layer blocks.3 has no spatial output")
    result = invoke("layers", "--model", "timm:vit_tiny_patch16_224", "--reshape", "tokenz")
    assert_refused(result, "unknown --reshape 'tokenz'")


# -- ONNX ---------------------------------------------------------------------------------------

@pytest.fixture
def onnx_file(tmp_path):
    pytest.importorskip("onnx2torch")
    from awkward_nets import ModuleRelu

    torch.manual_seed(0)
    model = ModuleRelu().eval()
    path = tmp_path / "small.onnx"
    torch.onnx.export(model, torch.zeros(1, 3, 32, 32), str(path), input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}}, opset_version=17, dynamo=False)
    return path, model


def test_onnx_predictions_equal_pytorch(onnx_file):
    path, model = onnx_file
    run = load_run(model=str(path))
    assert run.spec.input_shape == (3, 32, 32)
    assert any("largest difference to onnxruntime" in n for n in run.notes)
    x = torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        assert (run.model(x) - model(x)).abs().max() <= 1e-5
    names = [i.name for i in list_layers(run.model)]
    assert any("/" in n for n in names)  # onnx2torch's names, e.g. conv1/Conv


def test_onnx_commands(onnx_file, tmp_path):
    path, _ = onnx_file
    result = invoke("layers", "--model", path)
    assert result.exit_code == 0 and "conv1/Conv" in result.stdout, result.output
    paths = files(invoke("activations", "--model", path, "--image", IMAGE, "--layers", "conv1/Conv"))
    assert any(p.name == "layer-conv1-Conv.png" for p in paths)  # the / never reaches a file name
    paths = files(invoke("attribute", "--model", path, "--image", IMAGE, "--method", "gradcam",
                         "--layer", "conv2/Conv"))
    files(invoke("attribute", "--model", path, "--image", IMAGE, "--method", "integrated"))


def test_onnx_bad_files(tmp_path):
    pytest.importorskip("onnx2torch")
    bad = tmp_path / "bad.onnx"
    bad.write_text("not a model")
    assert_one_line_error(invoke("layers", "--model", bad), "bad.onnx is not an ONNX model")
    assert_one_line_error(invoke("layers", "--model", tmp_path / "none.onnx"), "none.onnx does not exist")


def test_onnx_weights_held_as_buffers_are_layers():
    """onnx2torch keeps a BatchNorm's weights as buffers of an 'initializers' module."""
    pytest.importorskip("onnx2torch")
    from torch import nn

    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("scale", torch.ones(3))
            self.register_buffer("count", torch.zeros(1, dtype=torch.long))
            self.bn = nn.BatchNorm2d(3, affine=False)

    infos = {i.name: i for i in list_layers(nn.Sequential(Holder()))}
    assert infos["0"].params == 3 and infos["0"].index == 1  # the float buffer; not the counter or BN stats
    assert infos["0.bn"].index is None


# -- functional ReLUs ---------------------------------------------------------------------------

def test_guided_backprop_refuses_functional_relus(tmp_path):
    for method, layer in (("guided-backprop", []), ("guided-gradcam", ["--layer", "conv2"])):
        result = invoke("attribute", "--model", f"{NETS}:FunctionalRelu", "--input-shape", "3,32,32",
                        "--mean", "0.5", "--std", "0.25", "--image", IMAGE, "--method", method, *layer)
        assert_one_line_error(result, "also applies 1 ReLU(s) as functions (F.relu / torch.relu)")
    assert not (tmp_path / "netviz-out").exists()
    files(invoke("attribute", "--model", f"{NETS}:ModuleRelu", "--input-shape", "3,32,32", "--mean", "0.5",
                 "--std", "0.25", "--image", IMAGE, "--method", "guided-backprop"))


def test_guided_backprop_on_module_relus_matches_captum():
    from awkward_nets import ModuleRelu
    from captum.attr import GuidedBackprop

    torch.manual_seed(0)
    model = ModuleRelu().eval()
    x = torch.randn(3, 3, 32, 32)
    ours = A.guided_backprop(model, x, 2).attributions
    ref = GuidedBackprop(model).attribute(x, target=2)
    assert (ours - ref).abs().max() <= 1e-6 * ref.abs().max()


def test_dream_says_what_redirect_relu_cannot_reach(tmp_path):
    result = invoke("dream", "--model", f"{NETS}:FunctionalRelu", "--input-shape", "3,32,32", "--class", "1",
                    "--steps", "2", "--redirect-relu")
    assert result.exit_code == 0, result.output
    assert "1 ReLU(s) this model applies as functions (F.relu) keep their plain gradient" in result.stderr


def test_explain_on_vit_tokens_matches_captum(vit):
    """grad-x-act at a token layer: each channel summed over every token (the class token's
    too), equal to Captum's LayerGradientXActivation summed the same way."""
    from captum.attr import LayerGradientXActivation

    from netviz.explain import get_channel_method

    x = torch.randn(2, 3, 224, 224)
    method = get_channel_method("grad-x-act")
    ours = method.function(vit.model, x, torch.tensor([3, 7]), "blocks.11.norm1", 4,
                           options=method.make_options({}), spec=vit.spec)
    ref = LayerGradientXActivation(vit.model, vit.model.get_submodule("blocks.11.norm1")).attribute(
        x, target=torch.tensor([3, 7])).sum(1)
    assert ours.contributions.shape == (2, 192)
    assert (ours.contributions - ref.double()).abs().max() <= 1e-4 * ref.abs().max()
    assert ours.maps.shape == (2, 4, 14, 14)


def test_the_confusion_matrix_of_a_1000_class_model_stays_small(tmp_path):
    """A 1,000-class model audited on a 10-class folder: the matrix shows the classes that occur
    (at most 30), not a 1000 x 1000 figure (it took 24 GB and was killed)."""
    from types import SimpleNamespace

    from PIL import Image

    from netviz.batching import most
    from netviz.draw.audit import plot_confusion

    confusion = torch.zeros(1000, 1000, dtype=torch.long)
    for k in range(10):
        confusion[k, 500 + k % 3] = 4
    audit = SimpleNamespace(confusion=confusion, spec=SimpleNamespace(class_name=str),
                            data=SimpleNamespace(name="folder"))
    with Image.open(plot_confusion(audit, tmp_path / "confusion.png")) as im:
        assert max(im.size) < 2500
    assert most((1, 28, 28)) == 512 and most((3, 224, 224)) == 55  # the most a backward pass takes
