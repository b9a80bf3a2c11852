"""Grad-CAM family, occlusion and guided backprop, against independent oracles:
Captum's LayerGradCam, Occlusion, GuidedBackprop and GuidedGradCam, and the grad-cam package
(pytorch-grad-cam) for Grad-CAM++, LayerCAM and Score-CAM, on the trained MNIST net and on a
torchvision ResNet; then the registry and the one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import assert_one_line_error

import netviz.attribute as A
from netviz.cli import cli
from netviz.data import normalise
from netviz.errors import NetvizError
from netviz.layers import forward_to, has_hooks
from netviz.registry import build_model


def rel_diff(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """Max abs difference relative to the reference map's scale (its max magnitude)."""
    return float((ours.detach() - ref.detach()).abs().max() / ref.detach().abs().max())


def scaled(maps: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's own normalisation (scale_cam_image): minus the min, over 1e-7 + the max."""
    m = maps[:, 0] if maps.ndim == 4 else maps
    m = m - m.flatten(1).min(1).values[:, None, None]
    return m / (1e-7 + m.flatten(1).max(1).values[:, None, None])


def grad_cam_package(cls_name: str, model, layer: str, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The grad-cam package's map at the layer's own resolution (its resize becomes the identity)."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with torch.no_grad():
        h, w = forward_to(model, x[:1], [layer])[layer].shape[2:]

    class AtLayer(getattr(pytorch_grad_cam, cls_name)):
        def get_target_width_height(self, input_tensor):
            return (w, h)

    with AtLayer(model=model, target_layers=[model.get_submodule(layer)]) as cam:
        cam.batch_size = 64
        out = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(k)) for k in target])
    return torch.from_numpy(out)


@pytest.fixture(scope="module")
def mnist(mnist_run):
    data = mnist_run.eval_data()
    x = normalise(data.images[:6], mnist_run.spec)
    with torch.no_grad():
        target = mnist_run.model(x).argmax(1)
    return mnist_run, x, target


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = build_model("resnet18")  # random weights; 64x64 inputs keep Score-CAM's 128 passes short
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        target = model(x).argmax(1)
    return model, x, target


@pytest.mark.parametrize("layer", ["conv2", "relu2", "pool"])
def test_grad_cam_matches_captum(mnist, layer):
    from captum.attr import LayerGradCam

    run, x, target = mnist
    ours = A.grad_cam(run.model, x, target, layer, batch_size=4)  # 4: batches cut across the images
    ref = LayerGradCam(run.model, run.model.get_submodule(layer)).attribute(x, target=target,
                                                                            relu_attributions=True)
    assert ours.maps.shape == ref.shape == (6, 1, *forward_to(run.model, x[:1], [layer])[layer].shape[2:])
    assert rel_diff(ours.maps, ref) <= 1e-5
    assert ours.attributions.shape == x.shape and ours.layer == layer
    up = torch.nn.functional.interpolate(ref, size=(28, 28), mode="bilinear", align_corners=False)
    assert rel_diff(ours.attributions, up) <= 1e-5  # bilinear to the input, as the issue defines
    assert not has_hooks(run.model)


@pytest.mark.parametrize(("window", "stride"), [(4, 2), (5, 3), (28, 28)])
def test_occlusion_matches_captum(mnist, window, stride):
    from captum.attr import Occlusion

    run, x, target = mnist
    black = A.make_baseline(x, "black", spec=run.spec)
    ours = A.occlusion(run.model, x, target, window=window, stride=stride, spec=run.spec, batch_size=37)
    ref = Occlusion(run.model).attribute(x, sliding_window_shapes=(1, window, window),
                                         strides=(1, stride, stride), baselines=black, target=target)
    assert ours.attributions.shape == x.shape
    assert rel_diff(ours.attributions, ref) <= 1e-5


def test_guided_backprop_and_guided_grad_cam_match_captum(mnist):
    from captum.attr import GuidedBackprop, GuidedGradCam

    run, x, target = mnist
    guided = A.guided_backprop(run.model, x, target)
    assert rel_diff(guided.attributions, GuidedBackprop(run.model).attribute(x, target=target)) <= 1e-5
    ours = A.guided_grad_cam(run.model, x, target, "pool")
    ref = GuidedGradCam(run.model, run.model.pool).attribute(x, target=target, interpolate_mode="bilinear")
    assert rel_diff(ours.attributions, ref) <= 1e-5
    plain = A.gradient(run.model, x, target).attributions
    assert rel_diff(guided.attributions, plain) > 0.05  # the guided rule does change the gradient
    assert not has_hooks(run.model)


@pytest.mark.parametrize("method", ["GradCAMPlusPlus", "LayerCAM", "ScoreCAM", "GradCAM"])
def test_cam_family_matches_the_grad_cam_package(mnist, resnet, method):
    ours_fn = {"GradCAMPlusPlus": A.grad_cam_plus_plus, "LayerCAM": A.layer_cam, "ScoreCAM": A.score_cam,
               "GradCAM": A.grad_cam}[method]
    run, x, target = mnist
    for model, inputs, t, layer in ((run.model, x, target, "relu2"), (run.model, x, target, "pool"),
                                    (resnet[0], resnet[1], resnet[2], "layer2")):
        ours = ours_fn(model, inputs, t, layer, batch_size=50)
        ref = grad_cam_package(method, model, layer, inputs, t)
        # both maps scaled to [0, 1] the package's way; float32 rounding of two independent sums
        assert float((scaled(ours.maps) - ref).abs().max()) <= 1e-4, (method, layer)
        assert not has_hooks(model)


def test_score_cam_batches_its_masked_passes(mnist):
    run, x, target = mnist
    calls = []
    handle = run.model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        small = A.score_cam(run.model, x[:2], target[:2], "pool", batch_size=48)
    finally:
        handle.remove()
    # 2 images x 64 channels = 128 masked inputs in passes of at most 48, besides the plain ones;
    # a channel constant over the map (all zero after the ReLU) masks the image to 0: no pass of its own
    act = forward_to(run.model, x[:2], ["pool"])["pool"].flatten(2)
    varying = int((act.amax(2) > act.amin(2)).sum())
    masked = [n for n in calls if n not in (1, 2)]
    assert masked == [48] * (varying // 48) + ([varying % 48] if varying % 48 else []) and varying > 100
    large = A.score_cam(run.model, x[:2], target[:2], "pool", batch_size=1000)
    assert rel_diff(small.maps, large.maps) <= 1e-5


def test_registry_drives_every_method(mnist):
    run, x, target = mnist
    assert list(A.METHODS) == ["integrated", "interior", "saliency", "inputxgrad", "smoothgrad",
                               "guided-backprop", "gradcam", "gradcam++", "layercam", "scorecam", "eigencam",
                               "guided-gradcam", "occlusion", "drise", "random", "lrp-epsilon", "lrp-epsilon-plus",
                               "lrp-epsilon-gamma-box"]
    for name, method in A.METHODS.items():
        options = method.make_options({"steps": 4, "samples": 2, "alphas": "0.5,1", "score": "logit"}).given()
        result = A.attribute(run.model, x[:2], name, target[:2], spec=run.spec, **options)
        assert torch.equal(result.target, target[:2])
        if method.evaluate:
            assert result.attributions.shape == x[:2].shape, name
            assert method.signed or (result.attributions >= 0).all(), name
    with pytest.raises(NetvizError, match="unknown method 'lime': use one of integrated, interior"):
        A.get_method("lime")


def test_default_cam_layer_is_said(mnist_run, tmp_path):
    out = tmp_path / "cam"
    result = CliRunner().invoke(cli, ["attribute", str(mnist_run.path), "--method", "gradcam++",
                                      "--index", "0-3", "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "gradcam++ reads layer pool, the last one with a spatial output" in result.stderr
    record = json.loads((out / "attribute.json").read_text())
    assert record["layer"] == "pool" and record["settings"]["layer"] == "pool"
    assert {p.name for p in out.iterdir()} >= {"gradcam++.png", "gradcam++_0000.png"}


@pytest.mark.parametrize(("args", "message"), [
    (["--method", "gradcam", "--layer", "fc1"], "layer fc1 has no spatial output"),
    (["--method", "scorecam", "--layer", "flatten"], "layer flatten has no spatial output"),
    (["--method", "occlusion", "--window", "40"], "--window 40 does not fit the 28x28 image"),
    (["--method", "occlusion", "--stride", "0"], "--stride must be at least 1 pixel, not 0"),
    (["--method", "occlusion", "--stride", "6"], "--stride 6 is larger than --window 4"),
    (["--method", "lime"], "unknown method 'lime'"),
    (["--method", "gradcam", "--layer", "conv9"], "unknown layer 'conv9'"),
])
def test_bad_input_is_one_line(mnist_run, tmp_path: Path, args, message):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["attribute", str(mnist_run.path), "--index", "0", "--out", str(out),
                                      *args])
    assert_one_line_error(result, message)
    assert not out.exists() or not any(out.iterdir())
