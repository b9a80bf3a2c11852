"""`netviz activations`: captured outputs vs a manual forward pass, channel/index choices,
top images, the files written, and one-line errors. Real data, trained runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageSequence

from netviz.activations import image_activations, select_channels, top_activating
from netviz.cli import cli
from netviz.data import load_image, load_split, normalise
from netviz.draw.activations import layer_tiles
from netviz.draw.common import upscale
from netviz.errors import NetvizError
from netviz.layers import has_hooks
from netviz.selection import parse_indices


def manual_forward(model: torch.nn.Module, x: torch.Tensor, upto: str) -> torch.Tensor:
    """The output of ``upto`` by calling the Sequential's children by hand (no hooks)."""
    with torch.no_grad():
        for name, module in model.named_children():
            x = module(x)
            if name == upto:
                return x
    raise AssertionError(f"{upto} not found")


def invoke(*args: str):
    result = CliRunner().invoke(cli, ["activations", *args])
    return result


def test_select_channels_and_indices() -> None:
    assert select_channels(None, 128, "conv3") == (list(range(27)), None)
    # the default is no request: a narrower layer shows all its channels without a note
    assert select_channels(None, 16, "conv1") == (list(range(16)), None)
    assert select_channels("5", 128, "conv3") == ([5], None)  # a number is a channel, as in --channel, --index
    assert select_channels("0-4", 128, "conv3") == ([0, 1, 2, 3, 4], None)
    assert select_channels("all", 10, "conv9") == (list(range(10)), None)
    assert select_channels("3,1,5-7", 128, "conv3") == ([3, 1, 5, 6, 7], None)
    shown, note = select_channels("0-26", 10, "conv9")
    assert shown == list(range(10)) and "conv9 has 10 channels" in note
    shown, note = select_channels("8-12", 10, "conv9")
    assert shown == [8, 9] and "left out channel(s) 10, 11, 12" in note
    with pytest.raises(NetvizError, match=r"layer conv9 has only 10 channels \(0-9\)"):
        select_channels("20-30", 10, "conv9")
    with pytest.raises(NetvizError, match="malformed --channels"):
        select_channels("a-b", 10, "conv9")
    assert select_channels(0, 10, "conv9") == ([0], None)
    with pytest.raises(NetvizError, match="a number is a channel, a range 0-9 the first ones"):
        select_channels(27, 10, "conv9")
    assert parse_indices("0-2,7", 10, "index", "the data set d", "images") == [0, 1, 2, 7]
    assert parse_indices(0, 10, "index", "the data set d", "images") == [0]
    with pytest.raises(NetvizError, match=r"index 10 is out of range: the data set d has 10 images \(0\.\.9\)"):
        parse_indices("8-10", 10, "index", "the data set d", "images")


def test_captured_equals_manual_forward_mnist(mnist_run) -> None:
    data = mnist_run.eval_data()
    model, spec = mnist_run.model, mnist_run.spec
    layers = ["relu1", "pool", "fc1", "fc2"]
    act = image_activations(model, spec, data.images[5:6], layers, channels="0-7",
                            label=int(data.labels[5]), class_names=data.classes)
    x = normalise(data.images[5:6], spec)
    for layer in act.layers:
        expected = manual_forward(model, x, layer.name)[0]
        torch.testing.assert_close(layer.output, expected)
        assert layer.channels == list(range(8))
        assert layer.channel_means() == pytest.approx(expected.reshape(expected.shape[0], -1)
                                                      .mean(1).tolist(), abs=1e-6)
    assert [ly.output.shape for ly in act.layers] == [(32, 26, 26), (64, 12, 12), (128,), (10,)]
    assert [ly.index for ly in act.layers] == [None, None, 3, 4]  # layer numbers: weights only
    logits = manual_forward(model, x, "fc2")[0]
    assert act.predicted == int(logits.argmax()) == int(data.labels[5])
    assert act.probability == pytest.approx(float(logits.softmax(0).max()), abs=1e-6)
    tiles, labels, scale = layer_tiles(act.layers[0], "grey")
    assert len(tiles) == 8 and labels[7] == "ch 7" and scale is None
    assert all(t.min() == 0.0 and t.max() == 1.0 for t in tiles if np.ptp(t) > 0)
    assert not has_hooks(model)


def test_top_activating_matches_brute_force(mnist_run) -> None:
    data = load_split("mnist", "test[8000:8300]")
    model, spec = mnist_run.model, mnist_run.spec
    top = top_activating(model, spec, data, {"relu2": [0, 5, 9], "fc1": [3]}, k=4, batch_size=64)
    x = normalise(data.images, spec)
    means = manual_forward(model, x, "relu2").mean(dim=(2, 3))
    for row, channel in enumerate([0, 5, 9]):
        expected = torch.sort(means[:, channel], descending=True, stable=True)
        assert top["relu2"].indices[row].tolist() == expected.indices[:4].tolist()
        torch.testing.assert_close(top["relu2"].scores[row], expected.values[:4])
    fc1 = manual_forward(model, x, "fc1")[:, 3]
    assert top["fc1"].indices[0].tolist() == fc1.argsort(descending=True, stable=True)[:4].tolist()
    assert not has_hooks(model)


def test_cli_mnist_index_top_images(mnist_run, tmp_path: Path) -> None:
    out = tmp_path / "act"
    result = invoke(str(mnist_run.path), "--index", "3", "--layers", "relu1,pool,3",
                    "--channels", "0-7", "--top-images", "3", "--out", str(out), "--device", "cpu")
    assert result.exit_code == 0, result.output
    paths = [Path(p) for p in result.stdout.split()]
    names = sorted(p.name for p in paths)
    assert names == sorted(["activations.png", "layer-relu1.png", "layer-pool.png", "layer-fc1.png",
                            "activations.gif", "top-relu1.png", "top-pool.png", "top-fc1.png",
                            "activations.json", "manifest.json"])
    assert all(p.is_file() and p.stat().st_size > 0 and p.parent == out for p in paths)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [f["path"] for f in manifest["files"]] == [p.name for p in paths[:-1]]
    assert manifest["summary"]["images"][0]["predicted"] == "7"
    assert "mnist:test[8000:] #3 (true 7): predicted 7" in result.stderr

    record = json.loads((out / "activations.json").read_text())
    data = mnist_run.eval_data()
    x = normalise(data.images[3:4], mnist_run.spec)
    logits = manual_forward(mnist_run.model, x, "fc2")[0]
    assert record["label"] == 7 and record["predicted"] == int(logits.argmax()) == 7
    assert [ly["name"] for ly in record["layers"]] == ["relu1", "pool", "fc1"]
    pool = record["layers"][1]
    assert pool["shown_channels"] == list(range(8)) and pool["tiles"] == "grey"
    expected = manual_forward(mnist_run.model, x, "pool")[0]
    assert pool["channel_mean"] == pytest.approx(expected.mean(dim=(1, 2)).tolist(), abs=1e-5)
    assert pool["channel_max"] == pytest.approx(expected.amax(dim=(1, 2)).tolist(), abs=1e-5)
    fc1 = record["layers"][2]
    assert fc1["tiles"] == "bars" and len(fc1["channel_mean"]) == 128
    top = pool["top_images"]["channels"]["2"]
    assert len(top["indices"]) == 3 and top["scores"] == sorted(top["scores"], reverse=True)

    gif = Image.open(out / "activations.gif")
    frames = [np.asarray(f.convert("L"), dtype=float) for f in ImageSequence.Iterator(gif)]
    assert len(frames) == 4  # input, then one frame per layer
    # the first frame is the input, upscaled with nearest neighbour, under a caption band
    big = upscale(data.images[3, 0].numpy().astype(float), 320)
    h, w = frames[0].shape
    y, x0 = 24 + (h - 24 - big.shape[0]) // 2, (w - big.shape[1]) // 2
    assert np.abs(frames[0][y:y + big.shape[0], x0:x0 + big.shape[1]] - big).mean() < 3
    assert not has_hooks(mnist_run.model)


def test_cli_allconv_image_rgb(allconv_run, cifar_cat: Path, tmp_path: Path) -> None:
    result = invoke(str(allconv_run.path), "--image", str(cifar_cat), "--mode", "rgb",
                    "--out", str(tmp_path / "o"), "--device", "cpu")
    assert result.exit_code == 0, result.output
    out = tmp_path / "o"
    assert {p.name for p in out.iterdir()} == {
        "activations.png", "layer-conv3.png", "layer-conv6.png", "layer-conv9.png",
        "activations.gif", "activations.json", "manifest.json"}
    record = json.loads((out / "activations.json").read_text())
    assert [(ly["name"], ly["tiles"], len(ly["shown_channels"])) for ly in record["layers"]] == [
        ("conv3", "rgb", 27), ("conv6", "rgb", 27), ("conv9", "grey", 10)]
    assert "conv9 has 10 channels" not in result.stderr  # the default 27 is no request to complain of
    assert "not a multiple of 3, drawn as grey" in result.stderr
    pixels, note = load_image(cifar_cat, allconv_run.spec)
    assert note is None
    act = image_activations(allconv_run.model, allconv_run.spec, pixels, ["conv3", "conv9"],
                            channels="0-26")
    x = normalise(pixels, allconv_run.spec)
    for layer in act.layers:
        expected = manual_forward(allconv_run.model, x, layer.name)[0]
        torch.testing.assert_close(layer.output, expected)
    assert len(layer_tiles(act.layers[0], "rgb")[0]) == 9  # 27 channels, 3 per colour tile
    assert len(layer_tiles(act.layers[1], "rgb")[0]) == 10  # 10 channels stay grey
    frames = list(ImageSequence.Iterator(Image.open(out / "activations.gif")))
    assert len(frames) == 4
    assert not has_hooks(allconv_run.model)


def test_cli_several_indices_and_reproducible(allconv_run, tmp_path: Path) -> None:
    args = [str(allconv_run.path), "--index", "0,7", "--layers", "conv9", "--channels", "all",
            "--top-images", "2", "--device", "cpu", "--seed", "3"]
    first = invoke(*args, "--out", str(tmp_path / "a"))
    assert first.exit_code == 0, first.output
    assert {p.name for p in (tmp_path / "a").iterdir()} == {"index-0", "index-7", "manifest.json"}
    assert len(first.stdout.split()) == 2 * 5 + 1
    second = invoke(*args, "--out", str(tmp_path / "b"))
    assert second.exit_code == 0, second.output
    for sub in ("index-0", "index-7"):
        a = json.loads((tmp_path / "a" / sub / "activations.json").read_text())
        b = json.loads((tmp_path / "b" / sub / "activations.json").read_text())
        assert a == b and a["index"] == int(sub.split("-")[1])
        assert len(a["layers"][0]["top_images"]["channels"]) == 10


def test_cli_image_converted_for_mnist(mnist_run, cifar_cat: Path, tmp_path: Path) -> None:
    result = invoke(str(mnist_run.path), "--image", str(cifar_cat), "--layers", "-1", "--out",
                    str(tmp_path), "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "converted to 1 channel(s); resized from 32x32 to 28x28 (height x width)" in result.stderr
    record = json.loads((tmp_path / "activations.json").read_text())
    assert record["input_note"].startswith("converted to 1 channel") and record["label"] is None
    assert record["layers"][0]["name"] == "fc2"


@pytest.mark.parametrize(("args", "message"), [
    (["--layers", "12"], "layer index 12 is out of range: layer numbers are 1..4"),
    (["--layers", "conv3"], "unknown layer 'conv3'; did you mean: conv2, conv1?"),
    (["--index", "2000"], "index 2000 is out of range: the eval set mnist:test[8000:] has 2000 images (0..1999)"),
    (["--channels", "40-50"], "layer relu1 has only 32 channels (0-31)"),
    (["--index", "1", "--image", "x.png"], "pass either --image or --index, not both"),
    (["--mode", "rgb", "--colorbar"], "--colorbar shows raw values on a grey scale"),
    (["--image", "NOT_AN_IMAGE"], "is not an image file netviz can read"),
    (["--image", "missing.png"], "image file missing.png does not exist"),
])
def test_cli_errors_are_one_line(mnist_run, tmp_path: Path, args: list[str],
                                 message: str) -> None:
    bad = tmp_path / "notes.png"
    bad.write_text("this is text, not a PNG")
    args = [str(bad) if a == "NOT_AN_IMAGE" else a for a in args]
    result = invoke(str(mnist_run.path), *args, "--out", str(tmp_path / "o"), "--device", "cpu")
    assert result.exit_code == 2
    assert result.stderr.startswith("netviz: error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr
    assert result.stdout == ""
    assert not has_hooks(mnist_run.model)


def test_drawn_text_has_glyphs_for_non_ascii_class_names() -> None:
    # PIL's default font draws "ï" as the missing-glyph box; netviz's one font (DejaVu Sans) does not.
    import numpy as np

    from netviz.draw.activations import _frame

    picture = np.zeros((40, 40, 3), dtype=np.uint8)

    def caption(text: str) -> np.ndarray:
        return _frame(picture, text, (40, 320), band=24)[:24]

    missing = caption("b\U0010fffdrd")  # a code point no font has: the box
    for name in ("bïrd", "Ωμέγα", "кошка"):
        assert not np.array_equal(caption(name), missing), name
    assert not np.array_equal(caption("bïrd"), caption("bird"))  # the diaeresis is drawn


def test_gif_frames_keep_a_margin(mnist_run) -> None:
    from netviz.activations import image_activations
    from netviz.draw.activations import gif_frames

    data = mnist_run.eval_data()
    act = image_activations(mnist_run.model, mnist_run.spec, data.images[:1], ["relu1", "fc1"], None)
    for frame in gif_frames(act):
        body = frame[24:]  # under the caption band
        assert body[:, :4].max() == 0 and body[:, -4:].max() == 0 and body[-4:].max() == 0
