"""Data sets and splits: split strings, MNIST splits read alone, image folders, normalisation,
augmentation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import CIFAR_SAMPLE, SHARED_DATA, data_without

from netviz import data as D
from netviz.errors import NetvizError
from netviz.registry import get_spec


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
