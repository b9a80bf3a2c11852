"""`netviz attribute` end to end on the trained MNIST run and real CIFAR-10 images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from netviz.cli import cli
from netviz.layers import has_hooks


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def written(result) -> list[Path]:
    paths = [Path(line) for line in result.stdout.splitlines() if line.strip()]
    assert paths and all(p.is_file() for p in paths), result.stdout
    return paths


def test_integrated_adaptive_end_to_end(mnist_run, tmp_path):
    out = tmp_path / "ig"
    result = invoke("attribute", mnist_run.path, "--index", "0-5", "--tolerance", "0.01",
                    "--out", out, "--quiet", "--device", "cpu")
    assert result.exit_code == 0, result.output
    names = {p.name for p in written(result)}
    assert {"attribute.json", "integrated.png", "integrated_0000.png", "integrated_0005.png",
            "completeness.png"} <= names
    data = json.loads((out / "attribute.json").read_text())
    assert data["method"] == "integrated" and data["score"] == "logit"
    assert "logit" in data["score_meaning"]
    assert data["settings"]["schedule"][:2] == [8, 16]
    images = data["images"]
    assert [im["index"] for im in images] == list(range(6))
    labels = mnist_run.eval_data().labels[:6].tolist()
    assert [im["label"] for im in images] == labels
    for im in images:
        assert im["completeness_error"] <= 0.01 and im["steps"] in (8, 16, 32, 64)
        assert im["target"] == im["pred"]
        delta = im["score_input"] - im["score_baseline"]
        assert im["attribution_sum"] == pytest.approx(delta, rel=0.011)
    assert sum(im["pred"] == im["label"] for im in images) >= 5  # the trained net is right
    assert data["completeness"]["max"] <= 0.01
    assert not has_hooks(mnist_run.model)
    with Image.open(out / "integrated_0000.png") as im:
        assert im.size[0] >= 3 * (im.size[1] - 24) > 0  # image | overlay | heat map, + a caption band


def test_the_raw_maps_are_written_for_users_to_analyse(mnist_run, tmp_path):
    # maps.safetensors holds what the Python API returns: the same maps, value for value
    import torch
    from safetensors import safe_open

    from netviz.attribute import attribute

    out = tmp_path / "sal"
    result = invoke("attribute", mnist_run.path, "--method", "gradcam", "--index", "2-4", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert out / "maps.safetensors" in written(result)
    with safe_open(str(out / "maps.safetensors"), framework="pt") as f:
        meta, maps = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    assert meta["model"] == "mnist" and meta["method"] == "gradcam" and json.loads(meta["indices"]) == [2, 3, 4]
    assert maps["attributions"].shape == (3, 1, 28, 28) and maps["attributions"].dtype == torch.float32
    assert maps["maps"].shape[:2] == (3, 1) and maps["targets"].dtype == torch.int64
    images = mnist_run.eval_data().images[2:5]
    from netviz.data import normalise

    mine = attribute(mnist_run.model, normalise(images, mnist_run.spec), method="gradcam")
    assert torch.allclose(mine.attributions, maps["attributions"], rtol=1e-5, atol=1e-6)
    assert torch.equal(mine.target, maps["targets"])
    record = json.loads((out / "attribute.json").read_text())
    assert [im["target"] for im in record["images"]] == maps["targets"].tolist()


def test_interior_writes_strips_and_gifs_from_black(mnist_run, tmp_path):
    out = tmp_path / "interior"
    result = invoke("attribute", mnist_run.path, "--method", "interior", "--index", "3",
                    "--alphas", "0,0.25,0.5,1", "--score", "prob", "--out", out, "-q")
    assert result.exit_code == 0, result.output
    names = {p.name for p in written(result)}
    assert {"attribute.json", "interior_0003.png", "interior_0003.gif",
            "interior_scores.png", "maps.safetensors"} <= names
    data = json.loads((out / "attribute.json").read_text())
    image = data["images"][0]
    assert image["alphas"] == [0, 0.25, 0.5, 1]
    assert data["score"] == "prob" and 0 <= image["scores"][0] < image["scores"][-1] <= 1
    with Image.open(out / "interior_0003.gif") as gif:
        assert gif.n_frames == 4
        gif.seek(0)
        first = np.asarray(gif.convert("L"))
    left = first[: first.shape[0] * 9 // 10, : first.shape[1] // 3]
    assert left.max() < 10  # alpha = 0: the black image


def test_smoothgrad_with_sanity_on_a_cifar_image(allconv_run, tmp_path, shared_data):
    cat = sorted((shared_data / "cifar10-sample" / "cat").glob("*.png"))[0]
    out = tmp_path / "sg"
    args = ["attribute", allconv_run.path, "--method", "smoothgrad", "--image", cat,
            "--samples", "4", "--sanity", "--style", "heatmap", "--seed", "7", "-q"]
    result = invoke(*args, "--out", out)
    assert result.exit_code == 0, result.output
    names = {p.name for p in written(result)}
    assert {"smoothgrad.png", f"smoothgrad_{cat.stem}.png", "sanity.json", "sanity.png"} <= names
    data = json.loads((out / "attribute.json").read_text())
    assert data["images"][0]["label_name"] == "cat"  # from the class folder
    sanity = json.loads((out / "sanity.json").read_text())
    assert [layer["randomised_up_to"] for layer in sanity["layers"]] == [
        f"conv{i}" for i in range(9, 0, -1)]
    assert all(-1 <= layer["abs_mean"] <= 1 for layer in sanity["layers"])
    # --seed repeats the command exactly
    again = invoke(*args, "--out", tmp_path / "sg2")
    assert again.exit_code == 0, again.output
    assert (tmp_path / "sg2" / "attribute.json").read_text() == (out / "attribute.json").read_text()
    assert not has_hooks(allconv_run.model)


def test_mean_baseline_and_baseline_file(mnist_run, tmp_path):
    Image.fromarray(np.full((28, 28), 40, np.uint8)).save(tmp_path / "grey28.png")
    for baseline in ("mean", tmp_path / "grey28.png"):
        result = invoke("attribute", mnist_run.path, "--index", "1", "--steps", "16",
                        "--baseline", baseline, "--out", tmp_path / Path(baseline).stem, "-q")
        assert result.exit_code == 0, result.output
        image = json.loads((tmp_path / Path(baseline).stem / "attribute.json").read_text())["images"][0]
        assert image["completeness_error"] < 0.05


@pytest.mark.parametrize("args, message", [
    (["--target", "10"], "class 10 is out of range: model mnist has 10 classes"),
    (["--steps", "0"], "steps must be a positive"),
    (["--method", "lime"], "unknown method 'lime': use one of integrated, interior, saliency"),
    (["--baseline", "grey"], "unknown baseline 'grey'"),
    (["--baseline", "{big}"], "is 32x32 but model 'mnist' takes 28x28"),
    (["--index", "5000"], "index 5000 is out of range"),
    (["--quadrature", "simpson"], "unknown quadrature"),
    (["--image", "{big}"], "pass --image or --index, not both"),
])
def test_bad_input_is_one_line_and_non_zero_exit(mnist_run, tmp_path, args, message):
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(big)
    args = [a.replace("{big}", str(big)) for a in args]
    result = invoke("attribute", mnist_run.path, "--index", "0", "--out", tmp_path, *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.output
