"""Any model, any output (issue 18): tuple, dict, namedtuple and dataclass outputs named with
--output; multi-label models read with --activation sigmoid; segmentation maps scored over a
--region, checked against Captum on a forward function that sums the target's logits there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import CIFAR_SAMPLE, assert_one_line_error

import netviz.attribute as A
from netviz.cli import cli
from netviz.heads import Head
from netviz.runs import load_run

NETS = Path(__file__).parent / "awkward_nets.py"
# every command, as a user runs it on a model with a data set (a card names the folder)
COMMANDS = {
    "layers": ["layers"],
    "histogram": ["histogram"],
    "kernels": ["kernels"],
    "activations": ["activations", "--index", "3"],
    "dream": ["dream", "--class", "1", "--steps", "4"],
    "attribute": ["attribute", "--method", "gradcam", "--index", "0-3"],
    "evaluate": ["evaluate", "--methods", "saliency,random", "--index", "0-3", "--steps", "4"],
    "neurons": ["neurons", "--layer", "conv2", "--channels", "0-1", "--steps", "4"],
    "explain": ["explain", "--index", "0", "--top", "2", "--no-cards"],
    "audit": ["audit", "--split", "all", "--method", "saliency"],
}


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def card(tmp_path: Path, name: str, **extra: object) -> Path:
    lines = [f'model = "{NETS}:{name}"', "input_shape = [3, 32, 32]",
             f'dataset = "imagefolder:{CIFAR_SAMPLE}"', "mean = [0.5]", "std = [0.25]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    path = tmp_path / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def out_of(result) -> list[Path]:
    assert result.exit_code == 0, result.output
    paths = [Path(line) for line in result.stdout.splitlines() if line.strip() and Path(line).is_file()]
    assert any(p.name == "manifest.json" for p in paths), result.output  # a finished output folder
    return paths


@pytest.mark.parametrize("command", list(COMMANDS))
def test_three_outputs_need_output_then_every_command_runs(tmp_path, command):
    args = COMMANDS[command]
    three = card(tmp_path, "ThreeHeads")
    result = invoke(*args, "--model", three)
    assert_one_line_error(result, "the model returns 3 tensors (0: (1, 4), 1: (1, 10), 2: (1, 10))")
    assert "--output" in result.stderr
    assert not (tmp_path / "netviz-out").exists()  # nothing written
    result = invoke(*args, "--model", three, "--output", "2")
    if command == "layers":  # a table, not files
        assert result.exit_code == 0 and "landmarks  Linear       10" in result.stdout, result.output
    else:
        out_of(result)


@pytest.mark.parametrize("command", [["report"], ["train", "--epochs", "1"]])
def test_report_and_train_refuse_three_outputs_without_output(tmp_path, command):
    result = invoke(*command, "--model", card(tmp_path, "ThreeHeads"))
    assert_one_line_error(result, "the model returns 3 tensors")
    assert not (tmp_path / "netviz-out").exists() and not (tmp_path / "runs").exists()


def test_three_outputs_read_the_named_output(tmp_path):
    """The class scores are output 2, not the box offsets: the prediction and a dream's class
    probability are read from it."""
    from awkward_nets import ThreeHeads

    from netviz.device import seed_everything

    seed_everything(0)  # the weights the CLI's --seed 0 gives
    run = load_run(model=str(card(tmp_path, "ThreeHeads", output=2)))
    raw = ThreeHeads()
    raw.load_state_dict(run.model.state_dict())
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(run.model(x), raw.eval()(x)[2])
    import numpy as np
    from PIL import Image

    from netviz.data import normalise

    path = sorted((CIFAR_SAMPLE / "cat").glob("*.png"))[0]
    result = invoke("activations", "--model", card(tmp_path, "ThreeHeads", output=2), "--image", path)
    data = json.loads(next(p for p in out_of(result) if p.name == "activations.json").read_text())
    image = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None]
    with torch.no_grad():
        want = torch.softmax(raw(normalise(image, run.spec))[2], 1)[0]
    assert data["predicted"] == int(want.argmax())
    assert data["probability"] == pytest.approx(float(want.max()), abs=1e-5)


@pytest.mark.parametrize(("name", "output"), [("DictOut", "logits"), ("NamedOut", "logits"),
                                              ("NamedOut", "2"), ("DataclassOut", "logits")])
def test_dict_namedtuple_and_dataclass_outputs(tmp_path, name, output):
    import awkward_nets

    run = load_run(model=str(card(tmp_path, name)), output=output)
    raw = getattr(awkward_nets, name)()
    raw.load_state_dict(run.model.state_dict())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        got = raw.eval()(x)
        want = got["logits"] if isinstance(got, dict) else got.logits
        assert torch.equal(run.model(x), want)
    out_of(invoke("attribute", "--model", card(tmp_path, name), "--output", output, "--method", "saliency",
                  "--index", "0-1"))


def test_train_only_outputs_are_not_ambiguous(tmp_path):
    run = load_run(model=str(card(tmp_path, "TrainOnlyAux")))
    assert run.spec.num_classes == 10


@pytest.mark.parametrize(("args", "message"), [
    (["--output", "scores"], "the model's output has no 'scores': it returns boxes: (1, 4), logits: (1, 10)"),
    (["--output", "logit"], "did you mean: logits"),
    (["--output", "5"], "the model's output has no '5'"),
    (["--activation", "sigmoidd"], "unknown --activation 'sigmoidd': use one of softmax, sigmoid, none"),
    (["--output", "logits", "--region", "0,0,8,8"], "--region is for models whose output is a map"),
])
def test_bad_output_options_are_one_line(tmp_path, args, message):
    model = card(tmp_path, "DictOut")
    result = invoke("attribute", "--model", model, "--index", "0", *args)
    assert_one_line_error(result, message)
    assert not (tmp_path / "netviz-out").exists()


def test_output_index_out_of_range(tmp_path):
    result = invoke("activations", "--model", card(tmp_path, "ThreeHeads"), "--output", "3")
    assert_one_line_error(result, "--output 3 is out of range: the model returns 3 outputs")


def test_trained_run_records_its_output(tmp_path):
    """train --output 2 fits the class logits; the run reopens with them, no option needed."""
    result = invoke("train", "--model", card(tmp_path, "ThreeHeads"), "--output", "2", "--epochs", "1",
                    "--batch-size", "50", "--quiet")
    assert result.exit_code == 0, result.output
    run = load_run(tmp_path / "runs" / "latest")
    assert run.config["output"] == 2 and run.source.head == Head(output=2)
    out_of(invoke("attribute", tmp_path / "runs" / "latest", "--method", "gradcam", "--index", "0-1"))
    result = invoke("train", "--model", card(tmp_path, "MultiLabel"), "--activation", "sigmoid", "--epochs", "1")
    assert_one_line_error(result, "--activation sigmoid: netviz train fits one class per image")


# -- multi-label --------------------------------------------------------------------------------

@pytest.fixture
def multilabel(tmp_path):
    torch.manual_seed(0)
    run = load_run(model=str(card(tmp_path, "MultiLabel")), activation="sigmoid")
    with torch.no_grad():  # biases that make classes 1 and 3 present and the others absent
        run.model.fc.bias.copy_(torch.tensor([-4.0, 4.0, -4.0, 3.0, -4.0]))
    return run


def test_multilabel_probabilities_are_per_class_sigmoids(multilabel, tmp_path):
    from netviz.activations import image_activations
    from netviz.data import load_split, normalise

    image = load_split(f"imagefolder:{CIFAR_SAMPLE}", "all").images[:1]
    act = image_activations(multilabel.model, multilabel.spec, image, ["conv2"])
    with torch.no_grad():
        logits = multilabel.model(normalise(image, multilabel.spec))
    assert torch.allclose(act.probabilities, torch.sigmoid(logits[0]), atol=1e-6)
    assert act.present == [1, 3]
    assert "predicted 1 (" in act.prediction_text and ", 3 (" in act.prediction_text


def test_multilabel_two_targets_at_once_match_captum(multilabel):
    """--target 1,3 with --score prob: F = sigmoid(z1) + sigmoid(z3), as Captum sees it."""
    from captum.attr import InputXGradient

    x = torch.rand(3, 3, 32, 32)
    ours = A.input_x_gradient(multilabel.model, x, "1,3", score="prob")
    ref = InputXGradient(lambda v: torch.sigmoid(multilabel.model(v))[:, [1, 3]].sum(1)).attribute(x)
    assert (ours.attributions - ref).abs().max() <= 1e-5 * ref.abs().max()
    assert ours.target.tolist() == [[1, 3]] * 3
    one = A.input_x_gradient(multilabel.model, x, 1, score="logit").attributions
    three = A.input_x_gradient(multilabel.model, x, 3, score="logit").attributions
    both = A.input_x_gradient(multilabel.model, x, "1,3", score="logit").attributions
    assert (both - one - three).abs().max() <= 1e-5 * both.abs().max()  # the logits' sum is linear


def test_multilabel_cli(tmp_path):
    model = card(tmp_path, "MultiLabel", activation="sigmoid")
    paths = out_of(invoke("attribute", "--model", model, "--method", "integrated", "--target", "1,3",
                          "--index", "0-1"))
    data = json.loads(next(p for p in paths if p.name == "attribute.json").read_text())
    assert [im["target"] for im in data["images"]] == [[1, 3], [1, 3]]
    result = invoke("attribute", "--model", model, "--target", "1,9", "--index", "0")
    assert_one_line_error(result, "class 9 is out of range: model awkward_nets.py:MultiLabel has 5 classes (0..4)")
    result = invoke("attribute", "--model", model, "--target", "one", "--index", "0")
    assert_one_line_error(result, "unknown class 'one' of model awkward_nets.py:MultiLabel: give a class number (0..4)")


# -- segmentation -------------------------------------------------------------------------------

@pytest.fixture
def seg(tmp_path):
    from awkward_nets import Seg

    torch.manual_seed(0)
    run = load_run(model=str(card(tmp_path, "Seg")))
    raw = Seg()
    raw.load_state_dict(run.model.state_dict())
    return run, raw.eval()


def test_segmentation_is_opened_without_an_input_size(tmp_path):
    """A fully convolutional model accepts every size; its map counts as class scores."""
    run = load_run(model=f"{NETS}:Seg")
    assert run.spec.num_classes == 4 and run.spec.input_shape == (3, 28, 28)


def test_segmentation_gradcam_on_predicted_pixels_matches_captum(seg):
    from captum.attr import LayerGradCam

    run, raw = seg
    x = torch.rand(4, 3, 32, 32)
    target = 2
    ours = A.grad_cam(run.model, x, target, "conv2")

    def region_sum(v):
        out = raw(v)
        mask = torch.nn.functional.one_hot(out.detach().argmax(1), 4).permute(0, 3, 1, 2)
        return (out * mask)[:, target].sum((1, 2))

    ref = LayerGradCam(region_sum, raw.conv2).attribute(x, relu_attributions=True)
    assert (ours.maps - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_segmentation_integrated_gradients_on_a_box_match_captum(seg):
    from captum.attr import IntegratedGradients

    run, raw = seg
    from netviz.heads import attach

    attach(run.model, Head(region=(4, 8, 20, 30)))
    x = torch.rand(2, 3, 32, 32)
    ours = A.integrated_gradients(run.model, x, 1, steps=16, quadrature="gauss-legendre", spec=run.spec)
    black = A.make_baseline(x, "black", spec=run.spec)
    ref = IntegratedGradients(lambda v: raw(v)[:, 1, 4:20, 8:30].sum((1, 2))).attribute(
        x, black, n_steps=16, method="gausslegendre")
    assert (ours.attributions - ref).abs().max() <= 1e-5 * ref.abs().max()


@pytest.mark.parametrize("method", ["gradcam", "integrated", "occlusion", "scorecam", "saliency"])
def test_segmentation_cli(tmp_path, method):
    model = card(tmp_path, "Seg")
    out_of(invoke("attribute", "--model", model, "--method", method, "--index", "0-1", "--region", "4,4,20,20"))


def test_segmentation_every_other_command(tmp_path):
    model = card(tmp_path, "Seg")
    for command in ("activations", "dream", "evaluate"):
        out_of(invoke(*COMMANDS[command], "--model", model))


@pytest.mark.parametrize(("region", "message"), [
    ("4,4,40,20", "--region 4,4,40,20 reaches outside the 32x32 input"),
    ("4,4,4,20", "--region 4,4,4,20 is empty"),
    ("a,b", "cannot read --region 'a,b'"),
])
def test_bad_regions(tmp_path, region, message):
    result = invoke("attribute", "--model", card(tmp_path, "Seg"), "--index", "0", "--region", region)
    assert_one_line_error(result, message)
    assert not (tmp_path / "netviz-out").exists()
