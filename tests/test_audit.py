"""`netviz audit` finds what makes a model right for the wrong reasons, on models trained for it.

Each test writes a copy of MNIST of its own (idx files in a data folder of the test's own), with a
pattern planted in the training images, trains the mnist-fast recipe on it through the CLI, and
audits the training split:

- BadNets (Gu et al. 2017): a small trigger pasted onto a few per cent of other classes' images,
  relabelled as one target class; two triggers that differ in shape, place and target class;
- a spurious mark without relabelling: a small bar on most images of one class only;
- the same recipe on clean MNIST: nothing is flagged.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import assert_one_line_error
from planted import PLANTS

from netviz.cli import cli
from netviz.data import load_split, normalise
from netviz.runs import load_run

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def attack_success(run_dir: Path, data: Path, name: str) -> float:
    """How often the pattern pasted onto test images of other classes gives the target class."""
    _, pattern, (y, x), target, _, _ = PLANTS[name]
    run = load_run(run_dir, device="cpu")
    test = load_split("mnist", "test", data)
    others = test.images[test.labels != target].clone()
    others[:, 0, y:y + pattern.shape[0], x:x + pattern.shape[1]] = torch.from_numpy(pattern)
    with torch.no_grad():
        preds = run.model(normalise(others, run.spec)).argmax(1)
    return float((preds == target).float().mean())


def audited(run: Path, data: Path, out: Path) -> dict:
    # --no-fit-concepts: what is flagged is the question here (test_concepts fits over the class)
    result = invoke("audit", run, "--split", "train", "--data-dir", data, "--no-fit-concepts", "--out", out,
                    "--quiet")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "audit.json").read_text())
    assert record["split"] == "mnist:train" and record["n_images"] == 60000
    return record | {"stdout": result.stdout}


def overlaps(box: list[int], y: int, x: int, pattern: np.ndarray) -> bool:
    y0, x0, y1, x1 = box
    return y0 < y + pattern.shape[0] and y < y1 and x0 < x + pattern.shape[1] and x < x1


def precision_recall(found: list[int], truth: np.ndarray) -> tuple[float, float]:
    hits = len(set(found) & set(truth.tolist()))
    return hits / max(1, len(found)), hits / max(1, len(truth))


@pytest.mark.parametrize("name", ["checker-7", "corner-2", "bar-3"])
def test_audit_flags_the_planted_class_and_its_images(planted, tmp_path: Path, name: str) -> None:
    kind, pattern, (y, x), target, _, _ = PLANTS[name]
    data, run, truth = planted(name)
    if kind == "badnets":
        assert attack_success(run, data, name) >= 0.9  # the backdoor took
    record = audited(run, data, tmp_path / "audit")
    flagged = [c for c in record["classes"] if c["flagged"]]
    assert [c["index"] for c in flagged] == [target], [(c["index"], c["clusters"]) for c in flagged]
    clusters = [cl for cl in flagged[0]["clusters"] if cl["flagged"]]
    assert len(clusters) == 1
    cluster = clusters[0]
    precision, recall = precision_recall(cluster["indices"], truth)
    bar = 0.9 if kind == "badnets" else 0.8
    assert precision >= bar and recall >= bar, (precision, recall)
    assert overlaps(cluster["region"], y, x, pattern), cluster["region"]
    assert cluster["reason"]
    if kind == "badnets":  # the trigger alone makes the target class
        assert cluster["transfer_rate"] >= 0.9
    else:  # the mark is learnt beside the digit: without it the class is less sure
        assert cluster["masked_drop"] >= 0.05
    assert str(target) in record["stdout"] and "flagged" in record["stdout"]
    figures = {p.name for p in (tmp_path / "audit").iterdir()}
    assert {"classes.png", "mistakes.png", "confusion.png"} <= figures
    assert any(f.startswith(f"cluster-{target}-") for f in figures)


def test_audit_of_a_clean_model_flags_nothing(planted, tmp_path: Path) -> None:
    data, run, _ = planted("clean")
    record = audited(run, data, tmp_path / "audit")
    assert [c["index"] for c in record["classes"] if c["flagged"]] == []
    assert record["accuracy"] > 0.98
    assert sum(c["n"] for c in record["classes"]) == 60000
    for c in record["classes"]:  # every image of a class is in one of its clusters
        assert sum(cl["size"] for cl in c["clusters"]) == c["n"]
    assert "no class relies on a pattern" in record["stdout"]


USER_NET = """
import torch
from torch import nn
from torch.nn import functional as F


class Odd(nn.Module):
    \"\"\"BatchNorm, functional ReLUs, a residual sum, a 3x37x29 input, 10 classes.\"\"\"

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = F.relu(x + self.conv(x))
        return self.head(x.mean((2, 3)))
"""


def test_audit_of_a_user_model_on_an_image_folder(tmp_path: Path) -> None:
    from conftest import CIFAR_SAMPLE

    (tmp_path / "odd.py").write_text(USER_NET)
    out = tmp_path / "audit"
    result = invoke("audit", "--model", f"{tmp_path / 'odd.py'}:Odd", "--input-shape", "3,37,29",
                    "--dataset", f"imagefolder:{CIFAR_SAMPLE}", "--split", "all", "--method", "saliency",
                    "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "audit.json").read_text())
    assert record["n_images"] == 200 and record["layer"] == "conv"
    assert sum(c["n"] for c in record["classes"]) == 200
    assert len(record["classes"]) == len([p for p in CIFAR_SAMPLE.iterdir() if p.is_dir()])
    for c in record["classes"]:
        for cl in c["clusters"]:
            y0, x0, y1, x1 = cl["region"]
            assert 0 <= y0 < y1 <= 37 and 0 <= x0 < x1 <= 29
    assert (out / "classes.png").is_file() and (out / "confusion.png").is_file()


@pytest.mark.parametrize("args, message", [
    (["--method", "interior"], "--method interior gives no map per image"),
    (["--method", "nope"], "unknown method 'nope'"),
    (["--split", "tran"], "tran"),
    (["--layer", "nope"], "nope"),
    (["--limit", "0"], "--limit 0"),
    (["--score", "probb"], "unknown score 'probb'"),
    (["--batch-size", "0"], "--batch-size 0"),
    (["--dataset", "cifar10", "--split", "train[:10]"], "CIFAR-10 train split not found"),
])
def test_bad_input_is_one_line(mnist_run, tmp_path: Path, args, message) -> None:
    result = invoke("audit", mnist_run.path, "--out", tmp_path / "o", *args)
    assert_one_line_error(result, message)
    assert not (tmp_path / "o").exists()


def test_data_of_other_classes_is_one_line(mnist_run, tmp_path: Path) -> None:
    from PIL import Image

    for k in range(12):  # twelve classes for a ten-class model
        (tmp_path / "folder" / f"c{k}").mkdir(parents=True)
        Image.new("L", (28, 28), 255 * (k % 2)).save(tmp_path / "folder" / f"c{k}" / "a.png")
    result = invoke("audit", mnist_run.path, "--dataset", f"imagefolder:{tmp_path / 'folder'}", "--split", "all",
                    "--out", tmp_path / "o")
    assert_one_line_error(result, "has 12 classes but model 'mnist' gives 10 scores")
    assert not (tmp_path / "o").exists()
