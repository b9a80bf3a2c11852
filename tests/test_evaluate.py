"""`netviz evaluate`: deletion and insertion curves, AUCs, the sanity check, the ranking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import assert_one_line_error

from netviz.cli import cli
from netviz.data import normalise
from netviz.evaluate import auc, fraction_steps, perturbation_curves


def test_random_ranks_last_on_deletion_and_insertion(mnist_run, tmp_path: Path) -> None:
    # Acceptance: on the trained MNIST net, 50 test images, the random map is last on both curves.
    out = tmp_path / "ev"
    result = CliRunner().invoke(cli, ["evaluate", str(mnist_run.path), "--methods",
                                      "integrated,saliency,gradcam,random", "--index", "0-49",
                                      "--out", str(out), "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "evaluate.json").read_text())
    methods = record["methods"]
    assert set(methods) == {"integrated", "saliency", "gradcam", "random"}
    others = [m for m in methods if m != "random"]
    assert all(methods["random"]["deletion_auc"] > methods[m]["deletion_auc"] for m in others)
    assert all(methods["random"]["insertion_auc"] < methods[m]["insertion_auc"] for m in others)
    assert record["ranking"][-1] == "random"
    # the random map does not depend on the model: randomising layers leaves it as it was
    assert methods["random"]["sanity_spearman"] == pytest.approx(1.0)
    assert methods["saliency"]["sanity_spearman"] < 0.9
    for m in methods.values():
        assert len(m["per_image"]) == 50 and m["seconds_per_image"] > 0
    # the table: a header, one row per method in ranking order, a legend; then the paths
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["rank", "method", "deletion"]
    assert [line.split()[1] for line in lines[1:5]] == record["ranking"]
    assert lines[-3:] == [str(out / "evaluate.json"), str(out / "curves.png"), str(out / "manifest.json")]
    assert (out / "curves.png").stat().st_size > 20_000


def test_curves_are_what_the_model_says_and_the_aucs_their_areas(mnist_run, tmp_path: Path) -> None:
    out = tmp_path / "ev"
    result = CliRunner().invoke(cli, ["evaluate", str(mnist_run.path), "--methods", "saliency", "--index",
                                      "3,7", "--steps-frac", "0.25", "--no-sanity", "--batch-size", "3",
                                      "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "evaluate.json").read_text())
    assert record["fractions"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    data = mnist_run.eval_data()
    x = normalise(data.images[[3, 7]], mnist_run.spec)
    black = normalise(torch.zeros(2, 1, 28, 28), mnist_run.spec)
    with torch.no_grad():
        p_image = torch.softmax(mnist_run.model(x), 1)
        p_black = torch.softmax(mnist_run.model(black), 1)
    for i, image in enumerate(record["methods"]["saliency"]["per_image"]):
        t = image["target"]
        assert t == int(p_image[i].argmax())
        # step 0 of deletion is the image itself; the last step (and insertion's first) is all baseline
        assert image["deletion"][0] == pytest.approx(float(p_image[i, t]), abs=1e-5)
        assert image["deletion"][-1] == pytest.approx(float(p_black[i, t]), abs=1e-5)
        assert image["insertion"][0] == pytest.approx(float(p_black[i, t]), abs=1e-5)
        assert image["insertion"][-1] == pytest.approx(float(p_image[i, t]), abs=1e-5)
        f = record["fractions"]
        area = sum((f[k + 1] - f[k]) * (image["deletion"][k] + image["deletion"][k + 1]) / 2 for k in range(4))
        assert image["deletion_auc"] == pytest.approx(area, abs=1e-5)
        assert image["sanity_spearman"] is None


def test_perturbation_order_follows_the_map() -> None:
    # A toy model whose score is the sum of 4 pixel values: deleting the largest first drops fastest.
    class Sum(torch.nn.Module):
        def forward(self, x):
            s = x.flatten(1).sum(1, keepdim=True)
            return torch.cat([s, -s], 1)

    x = torch.tensor([[[[4.0, 3.0], [2.0, 1.0]]]])
    fractions = fraction_steps(0.25, 4)
    good, _ = perturbation_curves(Sum(), x, torch.zeros_like(x), torch.tensor([0]), x, fractions, 2)
    bad, _ = perturbation_curves(Sum(), x, torch.zeros_like(x), torch.tensor([0]), -x, fractions, 2)
    logits = torch.tensor([10.0, 6.0, 3.0, 1.0, 0.0])  # 4+3+2+1, then 3+2+1, 2+1, 1, 0
    expected = torch.softmax(torch.stack([logits, -logits], 1), 1)[:, 0]
    assert torch.allclose(good[0], expected.float(), atol=1e-6)
    assert auc(good, fractions) < auc(bad, fractions)


@pytest.mark.parametrize(("args", "message"), [
    (["--methods", ""], "--methods is empty"),
    (["--methods", " , "], "--methods is empty"),
    (["--methods", "saliency,lime"], "unknown method 'lime'"),
    (["--methods", "interior"], "method interior gives no single map per image"),
    (["--steps-frac", "0"], "--steps-frac must be a fraction in (0, 1]"),
    (["--methods", "gradcam", "--layer", "fc1"], "layer fc1 has no spatial output"),
])
def test_bad_input_is_one_line(mnist_run, tmp_path: Path, args, message) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["evaluate", str(mnist_run.path), "--index", "0-1", *args, "--out", str(out)])
    assert_one_line_error(result, message)
    assert not out.exists()
