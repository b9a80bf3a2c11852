"""Registry, device manager, data loading and the CLI shell (help speed, errors)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import CIFAR_SAMPLE, SHARED_DATA, data_without

from netviz import data as D
from netviz.cli import cli
from netviz.device import resolve_device
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


def test_device_manager() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(NetvizError, match="unknown device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(NetvizError, match="CUDA is not available"):
            resolve_device("cuda:0")


@pytest.mark.parametrize(("split", "n", "expected"), [
    ("test", 10, range(10)), ("test[:8]", 10, range(8)), ("test[8:]", 10, range(8, 10)),
    ("train[:10%]", 200, range(20)), ("train[50%:]", 10, range(5, 10)), ("test[-3:]", 10, range(7, 10)),
])
def test_split_slicing(split: str, n: int, expected: range) -> None:
    assert list(D.slice_indices(split, n)) == list(expected)


@pytest.mark.parametrize("bad", ["test[:8000", "test[a:b]", "te st", "test[1:2:3]", ""])
def test_malformed_splits(bad: str) -> None:
    with pytest.raises(NetvizError, match="malformed split"):
        D.parse_split(bad)


@pytest.mark.splits
def test_mnist_test_split_loads_without_train_files(tmp_path: Path) -> None:
    only_test = data_without(tmp_path, "train")
    data = D.load_split("mnist", "test[8000:]", only_test)
    assert data.images.shape == (2000, 1, 28, 28) and data.images.dtype == torch.uint8
    full = D.load_split("mnist", "test", only_test)
    assert torch.equal(full.images[8000:], data.images)
    assert torch.bincount(full.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert torch.equal(full.images, D.load_split("mnist", "test", SHARED_DATA).images)


@pytest.mark.splits
def test_mnist_train_split_is_the_real_one(mnist_train_split: Path) -> None:
    # ../shared/data/README.md: the label counts and first labels of the real training set
    data = D.load_split("mnist", "train", mnist_train_split)
    assert data.images.shape == (60000, 1, 28, 28)
    assert torch.bincount(data.labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265,
                                                     5851, 5949]
    assert data.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert D.load_split("mnist", "train[-10%:]", mnist_train_split).images.shape[0] == 6000


def test_imagefolder_is_interleaved_by_class() -> None:
    data = D.load_split(f"imagefolder:{CIFAR_SAMPLE}", "all")
    assert data.images.shape == (200, 3, 32, 32)
    assert data.labels[:10].tolist() == list(range(10))
    assert data.classes[0] == "airplane" and data.classes[-1] == "truck"
    assert set(D.load_split(f"imagefolder:{CIFAR_SAMPLE}", "all[:10%]").labels.tolist()) == set(range(10))


def test_normalise_roundtrip_and_conform() -> None:
    spec = get_spec("mnist")
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    z = D.normalise(x, spec)
    assert float(z.mean()) == pytest.approx(float(((x.float() / 255 - 0.1307) / 0.3081).mean()), rel=1e-5)
    assert torch.allclose(D.denormalise(z, spec), x.float() / 255, atol=1e-6)
    rgb = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    out, note = D.conform(rgb, spec)
    assert out.shape == (2, 1, 28, 28) and "1 channel" in note and "resized" in note


def test_augment_is_a_shifted_or_flipped_copy() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 32, 32)
    y = D.augment(x, g)
    assert y.shape == x.shape
    # interior pixels survive the shift: every output has most of its values from its input
    for i in range(8):
        assert torch.isin(y[i][y[i] != 0], x[i]).all()


def test_help_is_instant_and_does_not_import_torch() -> None:
    code = "import sys; from netviz.cli import cli; assert 'torch' not in sys.modules; " \
           "assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "netviz", "--help"], check=True, capture_output=True)
    assert time.perf_counter() - start < 2.0  # generous for a loaded CI box; ~0.1 s typical


def test_version_and_usage_errors() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and "0.1.0" in result.output
    result = CliRunner().invoke(cli, ["train", "--epochs", "three"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "'three' is not a valid integer" in result.stderr
    result = CliRunner().invoke(cli, ["trian"])
    assert result.exit_code == 2 and "No such command 'trian'" in result.stderr


def test_mixed_precision_policy_is_cuda_only() -> None:
    # The CUDA branch cannot run in CI; its policy can: bf16 autocast + channels_last on CUDA only.
    from netviz.device import autocast, memory_format, use_amp

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert use_amp(cuda) and not use_amp(cuda, enabled=False) and not use_amp(cpu)
    assert memory_format(cuda) == torch.channels_last
    assert memory_format(cpu) == memory_format(cuda, enabled=False) == torch.contiguous_format
    with autocast(cpu):  # a no-op on the CPU: float32 stays float32
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_one_list_grammar_for_indices_channels_and_classes() -> None:
    from netviz.selection import parse_int_list

    assert parse_int_list("0-3,8, 2", "--index") == [0, 1, 2, 3, 8]  # ordered, no repeats
    for bad, message in (("5-2", "runs backwards"), ("1,-4", "malformed --index"), (" , ", "empty --index")):
        with pytest.raises(NetvizError, match=message):
            parse_int_list(bad, "--index")
