"""Your own model, your own checkpoint, your own images: every command from the CLI.

A nested model netviz has never seen (ModuleDict, BatchNorm, GroupNorm, residual blocks, a
non-square 3x24x40 input, 7 classes) lives in a file the test writes; it is trained on an image
folder of 7 classes, saved as a Lightning checkpoint, with DataParallel prefixes and as
safetensors, described by a model card, and opened every way a user would.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import assert_one_line_error
from PIL import Image

from netviz.cli import cli
from netviz.runs import load_run

USER_NET = '''
import torch
from torch import nn


class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.GroupNorm(4, c), nn.ReLU(),
                                  nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x):
        return torch.relu(x + self.body(x))


class TinyNet(nn.Module):
    """Nested on purpose: a ModuleDict of residual blocks, batch and group norm."""

    def __init__(self, width: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.ModuleDict({"res1": Residual(width),
                                     "down": nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
                                     "res2": Residual(2 * width)})
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = self.stem(x)
        for name in ("res1", "down", "res2"):
            x = self.blocks[name](x)
        return self.head(x.mean((2, 3)))


class Flat(nn.Module):
    """Needs exactly 3x24x40: its linear layer fixes the input size."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 24 * 40, 7)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def tiny(width: int = 8) -> nn.Module:
    return TinyNet(width=width, num_classes=7)


def ten() -> nn.Module:
    return TinyNet(width=8)
'''
CLASSES = [f"shape{k}" for k in range(7)]
SHAPE = "3,24,40"


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def ok(result) -> list[Path]:
    assert result.exit_code == 0, result.output
    paths = [Path(line) for line in result.stdout.splitlines() if line.strip()]
    assert all(p.exists() for p in paths), result.stdout
    return paths


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The model file, a 7-class image folder of 40x24 images, and a run trained on them."""
    root = tmp_path_factory.mktemp("user")
    (root / "user_net.py").write_text(USER_NET)
    rng = np.random.default_rng(0)
    for k, name in enumerate(CLASSES):
        folder = root / "data" / name
        folder.mkdir(parents=True)
        for i in range(8):  # each class its own colour and stripe: learnable in one epoch
            a = rng.integers(0, 50, (24, 40, 3)).astype(np.uint8)
            a[:, :, k % 3] += np.uint8(80 + 20 * k)
            a[(k * 3) % 24:(k * 3) % 24 + 3] = 255
            Image.fromarray(a).save(folder / f"{i}.png")
    result = invoke("train", "--model", root / "user_net.py:TinyNet", "--model-arg", "width=8",
                    "--dataset", f"imagefolder:{root / 'data'}", "--input-shape", SHAPE,
                    "--mean", "0.3", "--std", "0.3", "--epochs", "2", "--lr", "0.01",
                    "--runs-dir", root / "runs", "--name", "tiny", "--device", "cpu", "--quiet")
    ok(result)
    return {"root": root, "file": root / "user_net.py", "run": root / "runs" / "tiny",
            "data": root / "data"}


@pytest.fixture(scope="module")
def saved(user: dict[str, Path]) -> dict[str, Path]:
    """The trained weights saved the ways other tools save them, and a model card."""
    from safetensors.torch import save_file

    root = user["root"]
    state = torch.load(user["run"] / "checkpoints" / "final.pt", weights_only=True)["model"]
    out = {"state": state}
    out["lightning"] = root / "lightning.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 2,
                "global_step": 40, "pytorch-lightning_version": "2.4.0",
                "hyper_parameters": {"width": 8, "lr": 0.01}, "optimizer_states": [],
                "lr_schedulers": []}, out["lightning"])
    out["dataparallel"] = root / "dp.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, out["dataparallel"])
    out["safetensors"] = root / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(out["safetensors"]))
    card_dir = root / "card"
    card_dir.mkdir()
    (card_dir / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    out["card"] = card_dir / "tiny.toml"
    out["card"].write_text(textwrap.dedent("""\
        # a card and its files can be zipped and sent: paths are relative to the card
        model = "../user_net.py:TinyNet"
        model_args = {width = 8, num_classes = 7}
        weights = "../weights.safetensors"
        input_shape = [3, 24, 40]
        mean = [0.3]
        std = [0.3]
        classes = "classes.txt"
        layers = ["blocks.res1", "blocks.res2.body.1"]
        dataset = "imagefolder:../data"
        """))
    return out


def manual_capture(file: Path, state: dict, x: torch.Tensor, layer: str) -> torch.Tensor:
    """The layer's output with a forward hook on a model built here, independently of netviz."""
    spec = importlib.util.spec_from_file_location("manual_user_net", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TinyNet(width=8, num_classes=7).eval()
    model.load_state_dict(state)
    got = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: got.setdefault("out", o.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return got["out"]


def test_run_records_the_model_and_reopens_from_any_folder(user, tmp_path, monkeypatch) -> None:
    import tomllib

    config = tomllib.loads((user["run"] / "config.toml").read_text())
    assert config["model"] == f"{user['file'].resolve()}:TinyNet"
    assert config["model_args"] == {"width": 8} and config["num_classes"] == 7
    assert config["input_shape"] == [3, 24, 40] and config["mean"] == [0.3] * 3
    assert config["classes"] == CLASSES  # the image folder's class names
    assert config["dataset"] == f"imagefolder:{user['data'].resolve()}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run = load_run(user["run"], device="cpu")
    assert run.spec.input_shape == (3, 24, 40) and run.spec.class_names == tuple(CLASSES)
    assert run.spec.name == "user_net.py:TinyNet" and run.notes == []
    ok(invoke("activations", user["run"], "--index", "0", "--layers", "head", "-q"))


@pytest.mark.parametrize("form", ["lightning", "dataparallel", "safetensors", "card"])
def test_weights_saved_three_ways_and_a_card_give_the_same_model(user, saved, form, tmp_path) -> None:
    x = torch.rand(2, 3, 24, 40)
    if form == "card":
        run = load_run(model=str(saved["card"]), device="cpu")
        assert run.spec.default_layers == ("blocks.res1", "blocks.res2.body.1")
        assert run.spec.default_dataset == f"imagefolder:{user['data'].resolve()}"
    else:
        run = load_run(model=f"{user['file']}:TinyNet", weights=str(saved[form]),
                       model_args={"width": 8, "num_classes": 7}, input_shape=(3, 24, 40),
                       mean=[0.3], std=[0.3], classes=CLASSES, device="cpu")
    trained = load_run(user["run"], device="cpu")
    assert run.spec.class_names == tuple(CLASSES) and run.spec.mean == (0.3, 0.3, 0.3)
    for k, v in trained.model.state_dict().items():
        assert torch.equal(run.model.state_dict()[k], v), k
    with torch.no_grad():
        assert torch.equal(run.model(x), trained.model(x))


def test_every_command_on_the_card_from_the_cli(user, saved, tmp_path) -> None:
    card = str(saved["card"])
    image = next((user["data"] / "shape3").glob("*.png"))
    out = tmp_path / "out"
    layers = invoke("layers", "--model", card)
    assert layers.exit_code == 0, layers.output
    assert "blocks.res2.body.1  GroupNorm    16x12x20" in layers.stdout
    for args in (
        ["histogram", "--model", card, "--out", out / "h"],
        ["kernels", "--model", card, "--out", out / "k"],
        ["activations", "--model", card, "--index", "0-1", "--top-images", "2", "--out", out / "a"],
        ["activations", "--model", card, "--image", image, "--out", out / "ai"],
        ["dream", "--model", card, "--class", "shape2,shape5", "--steps", "8", "--out", out / "d"],
        ["dream", "--model", card, "--layer", "blocks.res2.body.3", "--channel", "0-1", "--steps", "8",
         "--out", out / "dc"],
        ["attribute", "--model", card, "--index", "0-3", "--steps", "8", "--out", out / "ig"],
        ["attribute", "--model", card, "--image", image, "--method", "saliency", "--out", out / "s"],
    ):
        ok(invoke(*args, "-q"))
    record = json.loads((out / "a" / "index-0" / "activations.json").read_text())
    assert [ly["name"] for ly in record["layers"]] == ["blocks.res1", "blocks.res2.body.1"]
    assert record["label_name"] in CLASSES
    dream = json.loads((out / "d" / "dream.json").read_text())
    assert [e["name"] for e in dream["images"]] == ["shape2", "shape5"]
    attribution = json.loads((out / "s" / "attribute.json").read_text())
    assert attribution["images"][0]["label_name"] == "shape3"  # from the image's class folder


def test_nested_layer_activations_equal_a_manual_hook(user, saved) -> None:
    from netviz.activations import image_activations
    from netviz.data import load_split, normalise

    run = load_run(model=str(saved["card"]), device="cpu")
    data = load_split(f"imagefolder:{user['data']}", "all[:4]")
    for i in range(4):
        act = image_activations(run.model, run.spec, data.images[i:i + 1], ["blocks.res2.body.1"])
        x = normalise(data.images[i:i + 1], run.spec)
        expected = manual_capture(user["file"], saved["state"], x, "blocks.res2.body.1")[0]
        torch.testing.assert_close(act.layers[0].output, expected)


def test_module_reference_instance_and_entry_point(user, saved, tmp_path, monkeypatch) -> None:
    from netviz.sources import ModelSource

    monkeypatch.syspath_prepend(str(user["root"]))
    by_module = load_run(model="user_net:tiny", weights=str(saved["safetensors"]), input_shape=SHAPE,
                         mean="0.3", std="0.3", device="cpu")
    assert by_module.spec.num_classes == 7 and ModelSource(ref="user_net:tiny").kind.name == "module"
    instance = load_run(model=by_module.model, input_shape=(3, 24, 40), mean=[0.3], std=[0.3],
                        device="cpu")
    assert instance.spec.input_shape == by_module.spec.input_shape
    assert instance.spec.num_classes == 7 and instance.spec.name == "TinyNet"
    # an installed package registering a model through the netviz.models entry points
    dist = tmp_path / "site" / "netviz_tiny-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: netviz-tiny\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[netviz.models]\ntiny-ep = tiny_plugin:spec\n")
    (tmp_path / "site" / "tiny_plugin.py").write_text(textwrap.dedent("""\
        from netviz.registry import ModelSpec
        from user_net import tiny

        def spec():
            return ModelSpec(name="tiny-ep", factory=lambda weights, **kw: tiny(), input_shape=(3, 24, 40),
                             num_classes=7, mean=(0.3,) * 3, std=(0.3,) * 3, description="a plugin's net")
        """))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    listed = invoke("models")
    assert listed.exit_code == 0 and "tiny-ep" in listed.stdout and "tiny_plugin:spec" in listed.stdout
    for way in ("file.py:NAME", "package.module:NAME", "timm:NAME", "card.toml"):
        assert way in listed.stdout
    layers = invoke("layers", "--model", "tiny-ep")
    assert layers.exit_code == 0 and "tiny-ep (tiny-ep): input 3x24x40" in layers.stdout


def test_shape_and_normalisation_are_inferred_and_said(user) -> None:
    result = invoke("layers", "--model", f"{user['file']}:TinyNet")
    assert result.exit_code == 0, result.output
    assert "assumed input 3x28x28" in result.stderr and "assumed mean 0 and std 1" in result.stderr
    flat = invoke("layers", "--model", f"{user['file']}:Flat")  # accepts no square size
    assert_one_line_error(flat, "cannot tell the model's input size")
    flat = invoke("layers", "--model", f"{user['file']}:Flat", "--input-shape", SHAPE, "--mean", "0.5",
                  "--std", "0.25")
    assert flat.exit_code == 0 and "assumed" not in flat.stderr


def test_train_fits_num_classes_or_says_why_not(user, tmp_path) -> None:
    data = f"imagefolder:{user['data']}"
    args = ["--dataset", data, "--input-shape", SHAPE, "--epochs", "1", "--runs-dir", tmp_path, "-q"]
    fitted = invoke("train", "--model", f"{user['file']}:TinyNet", "--name", "fit", *args)
    ok(fitted)  # TinyNet takes num_classes: train passed 7 (its default is 10)
    assert load_run(tmp_path / "fit", device="cpu").spec.num_classes == 7
    result = invoke("train", "--model", f"{user['file']}:ten", "--dataset", data, "--input-shape", SHAPE,
                    "--runs-dir", tmp_path / "r", "-q")
    assert_one_line_error(result, f"imagefolder:{user['data']} has 7 classes but the model "
                                  "'user_net.py:ten' outputs 10 scores and its constructor takes no num_classes")
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


class _Evil:
    def __reduce__(self):
        import os

        return (os.mkdir, (str(Path.cwd() / "pwned"),))


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "{file}:Nope"], "has no 'Nope'"),
    (["--model", "{root}/missing.py:Net"], "missing.py does not exist"),
    (["--model", "{root}/broken.py:Net"], "syntax error at line 2"),
    (["--model", "{file}:TinyNet", "--model-arg", "width=8", "--weights", "{other}"], "do not fit the model"),
    (["--model", "{file}:TinyNet", "--weights", "{evil}"], "refusing to load"),
    (["--model", "{card}", "--layers", "blocks.res3"], "unknown layer 'blocks.res3'"),
    (["--model", "{file}:TinyNet", "--input-shape", "3,x,40"], "cannot read --input-shape '3,x,40'"),
    (["--model", "{file}:Flat", "--input-shape", "3,32,32"],
     "the model's forward pass fails on input 3x32x32: RuntimeError: mat1 and mat2 shapes cannot be multiplied"),
    (["--model", "timm:resnet1800"], "timm has no model 'resnet1800'"),
    (["--model", "{file}:TinyNet", "--model-arg", "depth"], "cannot read --model-arg 'depth'"),
    (["--model", "{file}:TinyNet", "--model-arg", "depth=3"], "building"),
])
def test_bad_input_is_one_line_and_writes_nothing(user, saved, tmp_path, args, message) -> None:
    (tmp_path / "broken.py").write_text("import torch\ndef Net(:\n")
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pt")
    torch.save({"state_dict": {"x": torch.zeros(1)}, "hook": _Evil()}, tmp_path / "evil.pt")
    values = {"{file}": str(user["file"]), "{root}": str(tmp_path), "{other}": str(tmp_path / "other.pt"),
              "{evil}": str(tmp_path / "evil.pt"), "{card}": str(saved["card"])}
    filled = []
    for a in args:
        for k, v in values.items():
            a = a.replace(k, v)
        filled.append(a)
    out = tmp_path / "out"
    result = invoke("activations", *filled, "--image", next((user["data"] / "shape1").glob("*.png")),
                    "--out", out)
    assert_one_line_error(result, message)
    assert "Traceback" not in result.output and not out.exists()
    assert not (Path.cwd() / "pwned").exists()


def test_timm_resnet18_random_weights(tmp_path, cifar_cat) -> None:
    pytest.importorskip("timm")
    layers = invoke("layers", "--model", "timm:resnet18")
    assert layers.exit_code == 0, layers.output
    assert "layer4.1.conv2" in layers.stdout and "input 3x224x224" in layers.stdout
    base = ["--model", "timm:resnet18", "--device", "cpu", "-q"]
    ok(invoke("activations", *base, "--image", cifar_cat, "--layers", "layer1,layer4", "--out", tmp_path / "a"))
    ok(invoke("attribute", *base, "--image", cifar_cat, "--method", "saliency", "--out", tmp_path / "s"))
    ok(invoke("dream", *base, "--layer", "layer2", "--channel", "3", "--steps", "2", "--recipe", "lucent",
              "--out", tmp_path / "d"))
    record = json.loads((tmp_path / "a" / "activations.json").read_text())
    assert record["input_note"].startswith("resized from 32x32 to 224x224")
    assert record["top_classes"][0]["name"] in load_run(model="timm:resnet18", device="cpu").spec.class_names


def test_model_args_are_toml_values() -> None:
    from netviz.errors import NetvizError
    from netviz.sources import parse_model_args, parse_shape

    assert parse_model_args(["depth=18", "widths=[8, 16]", "act=relu", 'name="x=y"', "p=0.5",
                             "bn=true"]) == {"depth": 18, "widths": [8, 16], "act": "relu",
                                             "name": "x=y", "p": 0.5, "bn": True}
    assert parse_shape("3, 24,40") == (3, 24, 40)
    for bad in ("3,24", "3,0,4", "a,b,c", "3,2.5,4"):
        with pytest.raises(NetvizError, match="cannot read --input-shape"):
            parse_shape(bad)
    sys.modules.pop("manual_user_net", None)


def test_class_names_have_one_source_and_a_note_when_the_data_disagrees(user, saved, tmp_path) -> None:
    # A card that calls class 0 "bird" over an image folder whose folder is "shape0": every command
    # shows the card's name, and says once that the data set calls it otherwise.
    card_dir = saved["card"].parent
    (card_dir / "renamed.txt").write_text("\n".join(["bïrd", *CLASSES[1:]]) + "\n", encoding="utf-8")
    card = card_dir / "renamed.toml"
    card.write_text(saved["card"].read_text().replace('"classes.txt"', '"renamed.txt"'))
    act = invoke("activations", "--model", card, "--index", "0", "--layers", "head", "--out", tmp_path / "a")
    att = invoke("attribute", "--model", card, "--method", "saliency", "--index", "0", "--out", tmp_path / "b")
    for result in (act, att):
        ok(result)
        assert "names its classes otherwise than the model: 'shape0' is 'bïrd'" in result.stderr, result.stderr
    shown = json.loads((tmp_path / "a" / "activations.json").read_text(encoding="utf-8"))
    attributed = json.loads((tmp_path / "b" / "attribute.json").read_text(encoding="utf-8"))
    names = ["bïrd", *CLASSES[1:]]
    label = attributed["images"][0]["label"]
    assert attributed["images"][0]["label_name"] == names[label]
    assert shown["label_name"] == names[label] and shown["predicted_name"] in names
    assert [c["name"] for c in shown["top_classes"]] == [names[c["class"]] for c in shown["top_classes"]]


def test_a_new_kind_of_model_is_one_object(tmp_path, monkeypatch) -> None:
    # what a new module of netviz/kinds defines: the CLI, load_run and `netviz models` take it alone
    from torch import nn

    import netviz.kinds as kinds
    from netviz.runs import load_run

    def build(source, num_classes):
        width = int(str(source.ref).split(":", 1)[1])
        return nn.Sequential(nn.Conv2d(1, width, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(width, 4)), {"input_size": (1, 12, 12)}

    toy = kinds.Kind("toy", order=2, form="toy:WIDTH", meaning="a toy net of WIDTH channels",
                     matches=lambda ref: isinstance(ref, str) and ref.startswith("toy:"), build=build)
    monkeypatch.setattr(kinds, "KINDS", sorted([*kinds.KINDS, toy], key=lambda k: k.order))
    run = load_run(model="toy:6")
    assert run.spec.input_shape == (1, 12, 12) and run.spec.num_classes == 4 and run.spec.name == "toy:6"
    assert "toy:WIDTH" in kinds.model_help()
    listed = CliRunner().invoke(cli, ["models"])
    assert "a toy net of WIDTH channels" in listed.stdout


def test_a_cards_onnx_file_is_the_cards(tmp_path, monkeypatch) -> None:
    # a card naming nets/m.onnx kept that path relative to the working folder, while the card's
    # weights were resolved against the card
    from netviz.sources import load_card

    card = tmp_path / "cards" / "m.toml"
    card.parent.mkdir()
    card.write_text('model = "nets/m.onnx"\nweights = "w.pt"\n')
    monkeypatch.chdir(tmp_path)
    source = load_card(card)
    assert source.ref == str(tmp_path / "cards" / "nets" / "m.onnx")
    assert source.weights == str(tmp_path / "cards" / "w.pt")
