"""What a new user hit, each reproduced as it happened and then fixed: evaluate's ranking of a
method that fails its sanity check, a method that cannot run, a diverged training, a run name
that escapes the runs folder, an option large enough to exhaust memory, a report written over
another command's results, and the notebook road (a model object, tensors, pictures)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import assert_one_line_error
from test_train import invoke

from netviz.evaluate import SANITY_LIMIT, Evaluation, MethodScores
from netviz.files import read_json, write_json

AWKWARD = Path(__file__).with_name("awkward_nets.py")
SMALL = ["--train-split", "test[:512]", "--eval-split", "test[512:768]", "--epochs", "1", "--device", "cpu"]


# -- evaluate: sanity and methods that cannot run --------------------------------------------------

def _scores(name: str, deletion: float, insertion: float, sanity: float) -> MethodScores:
    n = 4
    return MethodScores(name, torch.zeros(n, 2), torch.zeros(n, 2), torch.full((n,), deletion),
                        torch.full((n,), insertion), torch.full((n,), sanity, dtype=torch.float64), 1.0)


def test_a_method_that_fails_the_sanity_check_is_never_ranked_above_one_that_passes() -> None:
    # integrated gradients ranked first with a sanity correlation of 0.993: the README reads that
    # as "the map hardly depends on the model"
    from netviz.inputs import Inputs

    methods = {"integrated": _scores("integrated", 0.10, 0.90, 0.993),
               "gradcam": _scores("gradcam", 0.25, 0.65, 0.10),
               "random": _scores("random", 0.40, 0.45, 1.0)}
    inputs = Inputs(torch.zeros(4, 1, 2, 2), [f"{i}" for i in range(4)], list(range(4)), [None] * 4)
    ev = Evaluation(methods, torch.tensor([0.0, 1.0]), inputs, torch.zeros(4, dtype=torch.long), spec=None)
    assert ev.ranked() == ["gradcam", "integrated", "random"]
    summary = {row["method"]: row for row in ev.summary()["ranking"]}
    assert summary["integrated"]["sanity_passed"] is False and summary["gradcam"]["sanity_passed"] is True
    assert 0.10 < SANITY_LIMIT <= 0.993


def test_evaluate_keeps_the_methods_that_ran_when_one_cannot(cifar_cat, tmp_path: Path) -> None:
    # LRP cannot follow this net's functional mean: it is reported, the others are scored
    out = tmp_path / "ev"
    result = invoke("evaluate", "--model", f"{AWKWARD}:ModuleRelu", "--input-shape", "3,20,24",
                    "--image", str(cifar_cat), "--methods", "saliency,lrp-epsilon,random", "--sanity-layers", "1",
                    "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "evaluate.json").read_text())
    assert record["ranking"] == ["saliency", "random"] or record["ranking"] == ["random", "saliency"]
    assert "a mean written as a function" in record["failed"]["lrp-epsilon"]
    assert "not run: lrp-epsilon:" in result.stdout
    assert record["methods"]["random"]["sanity_passed"] is False  # the control's map ignores the model


# -- training that diverges -----------------------------------------------------------------------

def test_a_diverging_training_stops_with_one_line(tmp_path: Path) -> None:
    result = invoke("train", "--model", "mnist-fast", *SMALL, "--lr", "1e9", "--runs-dir", str(tmp_path / "runs"),
                    "--name", "div", "--quiet")
    assert_one_line_error(result, "training diverged: the loss is nan at epoch 1, step")
    assert not (tmp_path / "runs" / "div" / "checkpoints" / "final.pt").exists()


def test_a_diverged_run_told_to_go_on_writes_valid_json_and_commands_refuse_it(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    result = invoke("train", "--model", "mnist-fast", *SMALL, "--lr", "1e9", "--runs-dir", str(runs),
                    "--name", "div", "--on-nonfinite", "continue", "--quiet")
    assert result.exit_code == 0, result.output
    assert "warning: the training loss is nan" in result.stderr  # said under --quiet too
    text = (runs / "div" / "metrics.json").read_text()
    assert "NaN" not in text and json.loads(text)[0]["train_loss"] is None  # strict JSON: null
    attr = invoke("attribute", str(runs / "div"), "--index", "0")
    assert_one_line_error(attr, "weights are not finite (NaN or infinite): its training diverged")


def test_every_json_netviz_writes_is_strict(tmp_path: Path) -> None:
    path = write_json(tmp_path / "x.json", {"a": float("nan"), "b": [float("inf"), 1.5], "c": (-math.inf,)})
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}")) == \
        {"a": None, "b": [None, 1.5], "c": [None]}
    assert read_json(path)["b"] == [None, 1.5]


# -- names, sizes and folders ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../escape", "a/b", "..", "~x"])
def test_a_run_name_stays_inside_the_runs_folder(name: str, tmp_path: Path) -> None:
    runs = tmp_path / "inner" / "runs"
    result = invoke("train", "--model", "mnist-fast", *SMALL, "--runs-dir", str(runs), "--name", name)
    assert_one_line_error(result, "a run's name is one folder name")
    assert not (tmp_path / "escape").exists() and not runs.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["histogram", "--model", "mnist", "--bins", "1000000000"], "--bins 1000000000: use at most 10,000"),
    (["histogram", "--model", "mnist", "--per-panel", "1000"], "--per-panel 1000: use at most 64"),
    (["kernels", "--model", "mnist", "--max-out", "100000000"], "--max-out 100000000: use at most 1,000,000"),
    (["explain", "--model", "mnist", "--top", "1000"], "--top 1000: use at most 64"),
    (["dream", "--model", "mnist", "--steps", "0"], "--steps 0: use 1 or more"),
    (["attribute", "--model", "mnist", "--batch-size", "99999999999"], "use at most 1,000,000"),
    (["train", "--epochs", "0"], "--epochs 0: use 1 or more"),
    (["histogram", "--model", "mnist", "--seed", str(2**40)], "use at most 4,294,967,295")])
def test_every_size_like_option_has_a_bound(args: list[str], message: str) -> None:
    assert_one_line_error(invoke(*args), message)


def test_report_out_follows_the_out_rule(mnist_run, tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    assert invoke("kernels", str(mnist_run.path), "--out", str(taken), "--quiet").exit_code == 0
    before = sorted(p.name for p in taken.iterdir())
    result = invoke("report", str(mnist_run.path), "--out", str(taken), "--quiet")
    assert_one_line_error(result, "already holds the results of `netviz kernels`")
    assert sorted(p.name for p in taken.iterdir()) == before
    page = tmp_path / "page"
    first = invoke("report", str(mnist_run.path), "--out", str(page), "--quiet")
    assert first.exit_code == 0, first.output
    assert (page / "index.html").is_file() and read_json(page / "manifest.json")["command"] == "report"
    again = invoke("report", str(mnist_run.path), "--out", str(page), "--quiet")
    assert_one_line_error(again, "already holds the results of `netviz report`")
    assert invoke("report", str(mnist_run.path), "--out", str(page), "--overwrite", "--quiet").exit_code == 0
