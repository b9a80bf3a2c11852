"""A detector trained here (:mod:`digit_detector`: real MNIST digits on 64 x 64 canvases) finds the
digits, and the maps of its detections point inside their boxes (the pointing game), far more
often than a random map; `netviz attribute` explains its detections as a user runs it, from its
file and a weights file, and refuses bad detection targets in one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import digit_detector as dd
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import assert_one_line_error

from netviz import detection
from netviz.attribute import attribute_detections
from netviz.cli import cli
from netviz.data import load_split

HERE = Path(__file__).resolve().parent
LAYER = "body.13"  # the body's last ReLU, 8 x 8


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """(detector, weights file, held-out canvases, their boxes, their labels); trained once (kept with
    NETVIZ_TEST_CACHE)."""
    from safetensors.torch import load_file, save_file

    cache = os.environ.get("NETVIZ_TEST_CACHE")
    folder = Path(cache) / "detector" if cache else tmp_path_factory.mktemp("detector")
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "digit_detector.safetensors"
    digits = load_split("mnist", "test")
    if not weights.is_file():
        images, boxes, classes = dd.canvases(digits.images[:8000, 0], digits.labels[:8000], 6000, seed=0)
        net = dd.train(images, boxes, classes, epochs=8)
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    net = dd.DigitDetector()
    net.load_state_dict(load_file(str(weights)))
    held = dd.canvases(digits.images[8000:, 0], digits.labels[8000:], 200, seed=1)
    return net.eval(), weights, *held


def test_the_detector_finds_the_digits(trained):
    from torchvision.ops import box_iou

    net, _, images, boxes, classes = trained
    found, total = 0, 0
    for f, b, c in zip(detection.find(net, images), boxes, classes, strict=True):
        total += len(b)
        if len(f):
            iou = box_iou(b, f.boxes)
            best = iou.argmax(1)
            found += int(((iou.max(1).values > 0.5) & (f.labels[best] == c)).sum())
    assert found / total > 0.85


def pointing(maps: torch.Tensor, boxes: torch.Tensor) -> float:
    """The pointing game: the share of maps whose highest pixel lies inside the detection's box."""
    hits = 0
    for m, b in zip(maps.sum(1), boxes, strict=True):
        y, x = divmod(int(m.flatten().argmax()), m.shape[1])
        hits += int(b[0] <= x + 0.5 <= b[2] and b[1] <= y + 0.5 <= b[3])
    return hits / len(maps)


@pytest.mark.parametrize(("method", "options", "least"), [
    ("gradcam", {"layer": LAYER}, 0.6),
    ("drise", {"masks": 300}, 0.8),
    ("occlusion", {"window": 8, "stride": 4}, 0.6),
    ("integrated", {"steps": 16}, 0.6),
    ("random", {}, None),
])
def test_maps_of_a_detection_point_inside_its_box(trained, method, options, least):
    net, _, images, _, _ = trained
    result, chosen = attribute_detections(net, images[:30], method, detection=0, **options)
    score = pointing(result.attributions, chosen.boxes)
    if least is None:  # a random map hits a box as often as boxes cover the canvas
        assert score < 0.3
    else:
        assert score >= least


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def canvases_on_disk(trained, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from PIL import Image

    folder = tmp_path_factory.mktemp("canvases")
    paths = []
    for i in range(2):
        path = folder / f"canvas{i}.png"
        Image.fromarray((trained[2][i, 0].numpy() * 255).round().astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def model_args(trained) -> list[object]:
    return ["--model", f"{HERE / 'digit_detector.py'}:DigitDetector", "--weights", trained[1], "--input-shape",
            "1,64,64", "--mean", "0", "--std", "1"]


def test_attribute_explains_detections_from_the_command_line(trained, canvases_on_disk, tmp_path):
    out = tmp_path / "out"
    result = run("attribute", "--method", "gradcam", *model_args(trained), "--image", canvases_on_disk[0],
                 "--image", canvases_on_disk[1], "--detection", "0", "--layer", LAYER, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "attribute.json").read_text())
    found = detection.find(trained[0], trained[2][:2])
    assert [item["name"] for item in record["images"]] == ["canvas0.png, detection 0", "canvas1.png, detection 0"]
    for item, f in zip(record["images"], found, strict=True):
        assert item["detection"]["box"] == pytest.approx(f.boxes[0].tolist(), abs=0.6)  # 8-bit pixels
        assert item["detection"]["label"] == int(f.labels[0])
    assert "box score" in record["score_meaning"]
    from safetensors.torch import load_file

    maps = load_file(str(out / "maps.safetensors"))
    assert maps["attributions"].shape == (2, 1, 64, 64) and maps["boxes"].shape == (2, 4)
    from PIL import Image

    panel = np.asarray(Image.open(out / "gradcam_canvas0_det0.png").convert("RGB")).astype(int)
    yellow = (panel[..., 0] > 230) & (panel[..., 1] > 190) & (panel[..., 1] < 235) & (panel[..., 2] < 40)
    assert yellow.sum() > 100  # the box explained is drawn


@pytest.mark.parametrize(("args", "message"), [
    (["--detection", "9"], "detection 9 is out of range"),
    (["--box", "0,0,80,20", "--target", "3"], "--box 0,0,80,20 is not a box inside the 64x64 image"),
    (["--target", "3"], "a detector's --target needs --box"),
    (["--box", "0,0,20,20"], "--box needs --target CLASS"),
])
def test_bad_detection_targets_are_one_line_on_the_command_line(trained, canvases_on_disk, tmp_path, args,
                                                                  message):
    result = run("attribute", "--method", "saliency", *model_args(trained), "--image", canvases_on_disk[0], *args,
                 "--out", tmp_path / "out")
    assert_one_line_error(result, message)


def test_detection_options_on_a_classifier_are_one_line(tmp_path):
    result = run("attribute", "--method", "saliency", "--model", "mnist", "--weights", "none", "--index", "0",
                 "--detection", "0", "--out", tmp_path / "out")
    assert_one_line_error(result, "--detection and --box are for detectors")


def test_the_other_commands_read_a_detector_as_its_backbone(trained, canvases_on_disk, tmp_path):
    for command, extra in (("layers", []), ("activations", ["--image", canvases_on_disk[0], "--layer", LAYER]),
                           ("kernels", []), ("histogram", [])):
        result = run(command, *model_args(trained), *extra, *(["--out", tmp_path / command] if command != "layers"
                                                              else []), "--quiet")
        assert result.exit_code == 0, (command, result.output)


def test_the_readme_detector_command_runs_as_written(tmp_path, monkeypatch):
    import shlex

    readme = (HERE.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Detectors: explain a box", 1)[1].split("\n### ", 1)[0]
    command = next(line for line in section.splitlines() if line.startswith("netviz attribute") and "docs/" in line)
    monkeypatch.chdir(HERE.parent)
    args = shlex.split(command)[1:]
    args[args.index("--out") + 1] = str(tmp_path / "det")
    result = run(*args, "--quiet")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "det" / "attribute.json").read_text())
    assert [item["detection"]["chosen"] for item in record["images"]] == ["detection 0", "detection 1"]
    assert record["layer"].startswith("backbone.")


def test_evaluate_scores_detection_maps_by_their_box_score(trained, canvases_on_disk, tmp_path):
    out = tmp_path / "ev"
    result = run("evaluate", *model_args(trained), "--image", canvases_on_disk[0], "--image", canvases_on_disk[1],
                 "--methods", "gradcam,drise,random", "--layer", LAYER, "--masks", "200", "--detection", "0",
                 "--no-sanity", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "evaluate.json").read_text())
    assert record["settings"]["score"].startswith("the box score")
    names = [item["name"] for item in record["methods"]["random"]["per_image"]]
    assert names == ["canvas0.png, detection 0", "canvas1.png, detection 0"]
    random = record["methods"]["random"]
    for method in ("gradcam", "drise"):  # the box score falls faster as their pixels go, rises faster as they come
        m = record["methods"][method]
        assert m["deletion_auc"] < random["deletion_auc"] and m["insertion_auc"] > random["insertion_auc"]
    insertion = record["methods"]["random"]["per_image"][0]["insertion"]
    assert insertion[-1] == pytest.approx(float(detection.find(trained[0], trained[2][:1])[0].scores[0]) + 1,
                                          abs=0.02)  # the whole image: IoU 1 plus its score
