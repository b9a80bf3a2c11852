"""ultralytics YOLO detectors (``--model yolo:yolov8n.yaml``): the raw head decoded exactly as the
package decodes it, detections explained from the command line, a state dict read as weights,
and a pickled ultralytics checkpoint refused in one line that says how to export its weights."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from click.testing import CliRunner
from conftest import assert_one_line_error

from netviz.cli import cli

# not imported at collection: importing ultralytics patches PIL's Image.open for the whole process
pytestmark = pytest.mark.skipif(importlib.util.find_spec("ultralytics") is None, reason="needs ultralytics")


@pytest.fixture(scope="module", autouse=True)
def _pil_as_it_was():
    yield
    from netviz.yolo import restore_pil

    restore_pil()  # the tests after these read images with PIL's own Image.open

# random weights: the class scores start near 1e-4 (the head's prior), so no threshold
ARGS = ["--model", "yolo:yolov8n.yaml", "--model-arg", "nc=3", "--model-arg", "conf=0", "--input-shape", "3,64,64"]


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def package_model():
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    return DetectionModel("yolov8n.yaml", nc=3, verbose=False).eval()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory):
    from PIL import Image

    path = tmp_path_factory.mktemp("yolo") / "noise.png"
    pixels = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(2))
    Image.fromarray((pixels * 255).byte().numpy()).save(path)
    return path


def test_the_head_is_decoded_as_the_package_decodes_it(package_model):
    from netviz.yolo import YoloDetector, package_nms

    x = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    ours = YoloDetector(package_model, conf=0.0, iou=0.7, max_det=50).eval()(x)
    with torch.no_grad():
        theirs = package_nms()(package_model(x), 0.0, 0.7, max_det=50, nc=3)
    for mine, rows in zip(ours, theirs, strict=True):
        assert 10 < len(rows) <= 50
        assert torch.allclose(mine["boxes"], rows[:, :4], atol=1e-5)
        assert torch.allclose(mine["scores"], rows[:, 4]) and torch.equal(mine["labels"], rows[:, 5].long())


def test_attribute_explains_a_yolo_detection(image, tmp_path):
    for method in ("gradcam", "eigencam"):
        out = tmp_path / method
        result = run("attribute", *ARGS, "--image", image, "--method", method, "--detection", "0-1", "--out", out,
                     "--quiet")
        assert result.exit_code == 0, result.output
        record = json.loads((out / "attribute.json").read_text())
        assert [item["detection"]["chosen"] for item in record["images"]] == ["detection 0", "detection 1"]
        assert record["layer"].startswith("model.22.")  # the Detect head's last map, not its anchors


def test_a_state_dict_is_read_as_weights(package_model, image, tmp_path):
    path = tmp_path / "yolov8n-weights.pt"
    torch.save(package_model.state_dict(), path)  # keys as ultralytics names them: model.0.conv.weight
    out = tmp_path / "layers"
    result = run("kernels", *ARGS, "--weights", path, "--layer", "model.0.conv", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    snapshot = json.loads((out / "kernels-model.0.conv.json").read_text())["snapshots"]["model"]
    weights = package_model.model[0].conv.weight.detach().double()
    assert snapshot["label"] == "weights from yolov8n-weights.pt"
    assert snapshot["mean"] == pytest.approx(float(weights.mean()), rel=1e-6)
    assert snapshot["max_abs"] == pytest.approx(float(weights.abs().max()), rel=1e-6)


def test_a_pickled_ultralytics_checkpoint_is_refused_with_how_to_export(package_model, tmp_path):
    path = tmp_path / "yolov8n.pt"
    torch.save({"model": package_model, "epoch": -1}, path)  # how ultralytics saves: objects, not tensors
    result = run("layers", *ARGS, "--weights", path)
    assert_one_line_error(result, "refusing to load")
    assert "export its weights" in result.stderr and "state_dict()" in result.stderr


def test_opening_a_yolo_model_leaves_image_reading_as_it_was(tmp_path):
    from PIL import Image

    before = Image.open
    result = run("layers", *ARGS)
    assert result.exit_code == 0, result.output
    assert Image.open is before or Image.open.__module__ == "PIL.Image"
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    result = run("activations", "--model", "mnist", "--image", text, "--out", tmp_path / "out")
    assert_one_line_error(result, "is not an image file netviz can read")
