"""The model registry: the built-in nets, torchvision by name, registering your own."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from netviz.errors import NetvizError
from netviz.models.allconv import INIT_STD
from netviz.registry import ModelSpec, build_model, get_spec, list_models, register_model


def test_registry_models_shapes_and_logits() -> None:
    for name, n_params in (("mnist", 1_199_882), ("allconv", 905_856)):
        spec = get_spec(name)
        net = build_model(spec)
        assert sum(p.numel() for p in net.parameters()) == n_params
        out = net(torch.zeros(2, *spec.input_shape))
        assert out.shape == (2, 10)
    # raw logits: the MNIST net does not end in log_softmax
    out = build_model("mnist")(torch.rand(1, 1, 28, 28))
    assert not torch.allclose(out.exp().sum(), torch.tensor(1.0))


def test_allconv_init_std_and_no_bias() -> None:
    torch.manual_seed(0)
    net = build_model("allconv")
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 9 and all(c.bias is None for c in convs)
    for conv, std in zip(convs, INIT_STD, strict=True):
        assert float(conv.weight.detach().std()) == pytest.approx(std, rel=0.05)


def test_torchvision_model_without_weights_and_weight_error() -> None:
    spec = get_spec("resnet18")
    assert spec.input_shape == (3, 224, 224) and spec.num_classes == 1000
    assert spec.class_names[0] == "tench"
    net = build_model(spec, weights=None)
    assert net(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)
    # No internet here: asking for pretrained weights gives one clear error (unless cached).
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    if not any(cache.glob("resnet18-*.pth")):
        with pytest.raises(NetvizError, match="no pretrained weights for 'resnet18' here.*--weights FILE"):
            build_model(spec, weights="default")


def test_unknown_model_lists_known_ones() -> None:
    with pytest.raises(NetvizError, match=r"known models are allconv, mnist.*did you mean: mnist"):
        get_spec("mnsit")


def test_register_your_own_model() -> None:
    spec = register_model(ModelSpec(
        name="tiny", factory=lambda weights: torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 26 * 26, 10)),
        input_shape=(1, 28, 28), num_classes=10, mean=(0.5,), std=(0.5,), default_dataset="mnist"))
    assert "tiny" in list_models() and get_spec("tiny") is spec
    assert build_model("tiny")(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
