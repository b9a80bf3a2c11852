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

from netviz.errors import NetvizError
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


# -- the notebook road ----------------------------------------------------------------------------

def _hooks(module: torch.nn.Module) -> list[int]:
    return [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules()]


def test_load_run_leaves_the_users_module_as_it_was() -> None:
    # run.model was the user's object, left in eval mode with a forward hook: m(x) returned a tensor
    from awkward_nets import ThreeHeads

    import netviz
    from netviz import commands

    torch.manual_seed(0)
    m = ThreeHeads().train()
    x = torch.randn(3, 3, 20, 24)
    hooks = _hooks(m)
    run = netviz.load_run(model=m, output=2, input_shape=(3, 20, 24))
    assert run.model is not m
    assert m.training and all(sub.training for sub in m.modules()) and _hooks(m) == hooks
    state = {k: v.clone() for k, v in m.state_dict().items()}
    commands.attribute(run, "gradcam", images=x, quiet=True)
    commands.activations(run, image=x[0], quiet=True)
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in state.items())
    assert isinstance(m(x), tuple) and m.training and _hooks(m) == hooks
    # the view shares the weights: an in-place update of the user's model shows in the run
    with torch.no_grad():
        m.cls.bias.add_(1.0)
    assert torch.equal(run.model.cls.bias, m.cls.bias)


def test_a_view_of_a_batchnorm_net_runs_lrp_and_puts_the_weights_back() -> None:
    import netviz
    from netviz import commands

    m = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.MaxPool2d(2), torch.nn.BatchNorm2d(4),
                            torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 7 * 7, 3))
    state = {k: v.clone() for k, v in m.state_dict().items()}
    run = netviz.load_run(model=m, input_shape=(1, 14, 14))
    commands.attribute(run, "lrp-epsilon", images=torch.randn(2, 1, 14, 14), quiet=True)
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in state.items()) and m.training


@pytest.mark.parametrize("name", ["integrated_gradients", "grad_cam", "saliency", "occlusion", "lrp_epsilon_plus"])
def test_compute_functions_read_a_tuple_output_as_the_cli_does(name: str) -> None:
    # AttributeError: 'tuple' object has no attribute 'argmax'
    from awkward_nets import ModuleRelu, ThreeHeads

    import netviz.attribute as attribution

    fn = getattr(attribution, name)
    torch.manual_seed(0)
    m = ThreeHeads().eval() if name != "lrp_epsilon_plus" else ModuleRelu().eval()
    x = torch.randn(2, 3, 16, 16)
    if name == "lrp_epsilon_plus":  # a net with one output and a functional mean: the one line
        with pytest.raises(NetvizError, match="a mean written as a function"):
            fn(m, x)
        return
    with pytest.raises(NetvizError, match=r"returns 3 tensors .*output= in Python"):
        fn(m, x)
    result = fn(m, x, target=4, output=2)
    assert result.attributions.shape == x.shape and result.target.tolist() == [4, 4]
    same = fn(m, x, target=4, head=netviz_head(output=2))
    assert torch.allclose(same.attributions, result.attributions)
    assert isinstance(m(x), tuple) and not m._forward_hooks


def netviz_head(**kw):
    from netviz.heads import Head

    return Head(**kw)


def test_commands_take_tensors_and_pil_images(mnist_run, tmp_path: Path) -> None:
    from PIL import Image

    from netviz import commands
    from netviz.data import normalise

    data = mnist_run.eval_data()
    pixels = data.images[:2]
    x = normalise(pixels, mnist_run.spec)
    pil = Image.fromarray(pixels[0, 0].numpy())
    a = commands.attribute(mnist_run, "saliency", out=tmp_path / "a", images=x, quiet=True)
    b = commands.attribute(mnist_run, "saliency", out=tmp_path / "b", images=[pil, pixels[1]], quiet=True)
    ra, rb = (json.loads((tmp_path / k / "attribute.json").read_text()) for k in "ab")
    # the float tensor (normalised) and the 8-bit pixels are the same two images: the same maps
    assert [i["pred"] for i in ra["images"]] == [i["pred"] for i in rb["images"]]
    assert [i["attribution_sum"] for i in ra["images"]] == pytest.approx([i["attribution_sum"] for i in rb["images"]],
                                                                          rel=1e-5)
    assert [i["name"] for i in rb["images"]] == ["image 0", "tensor 1"]
    assert read_json(tmp_path / "a" / "manifest.json")["options"]["images"] == ["tensor 0", "tensor 1"]
    assert any(p.suffix == ".png" for p in a) and b.show().images
    paths = commands.activations(mnist_run, out=tmp_path / "c", image=x[0], quiet=True)
    assert any(p.name == "activations.png" for p in paths)
    with pytest.raises(NetvizError, match="a file path, a PIL image or a tensor, not a dict"):
        commands.attribute(mnist_run, "saliency", images=[{}], quiet=True)


# -- friction: which weights, which data, which options ---------------------------------------------

def test_random_weights_and_a_users_file_are_named(tmp_path: Path) -> None:
    result = invoke("activations", "--model", "mnist", "--dataset", "mnist", "--index", "0", "--out",
                    str(tmp_path / "a"))
    assert result.exit_code == 0, result.output
    assert "[random weights (untrained)]" in result.stderr  # beside its prediction
    weights = tmp_path / "awk.pt"
    from netviz.runs import load_run

    torch.save(load_run(model="mnist").model.state_dict(), weights)
    result = invoke("kernels", "--model", "mnist", "--weights", str(weights), "--out", str(tmp_path / "k"), "--quiet")
    assert result.exit_code == 0, result.output
    kernels = next((tmp_path / "k").glob("kernels-*.json"))
    assert json.loads(kernels.read_text())["snapshots"]["model"]["label"] == "weights from awk.pt"


def test_commands_that_read_images_take_a_dataset(tmp_path: Path) -> None:
    # neurons, explain, evaluate and activations had no --dataset; neurons' error suggested --image
    no_data = invoke("neurons", "--model", "resnet18", "--layer", "layer3")
    assert_one_line_error(no_data, "pass --dataset mnist, cifar10 or imagefolder:PATH")
    from conftest import CIFAR_SAMPLE

    result = invoke("neurons", "--model", "resnet18", "--input-shape", "3,64,64", "--layer", "layer3",
                    "--channels", "0", "--steps", "4", "--top", "2", "--dataset", f"imagefolder:{CIFAR_SAMPLE}",
                    "--out", str(tmp_path / "n"), "--quiet")
    assert result.exit_code == 0, result.output
    assert read_json(tmp_path / "n" / "manifest.json")["options"]["dataset"] == f"imagefolder:{CIFAR_SAMPLE}"


def test_an_option_the_method_does_not_take_is_said(mnist_run, tmp_path: Path) -> None:
    result = invoke("attribute", str(mnist_run.path), "--method", "saliency", "--index", "0", "--window", "8",
                    "--layer", "relu1", "--out", str(tmp_path / "a"))
    assert result.exit_code == 0, result.output
    assert "note: --window is for occlusion; --layer is for gradcam" in result.stderr
    assert "not saliency: ignored" in result.stderr
    explained = invoke("explain", str(mnist_run.path), "--index", "0", "--no-cards", "--steps", "16",
                       "--out", str(tmp_path / "e"))
    assert explained.exit_code == 0, explained.output
    assert "--steps is for layer-integrated, not grad-x-act: ignored" in explained.stderr


def test_the_overlap_warning_survives_quiet(tmp_path: Path) -> None:
    result = invoke("train", "--train-split", "test[:96]", "--eval-split", "test[64:128]", "--epochs", "1",
                    "--runs-dir", str(tmp_path / "runs"), "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    assert "warning: the train split test[:96] and the eval split test[64:128] share 32 images" in result.stderr


def test_one_name_for_each_thing(mnist_run, tmp_path: Path) -> None:
    # dream --channels as every other command (--channel kept); explain --target takes names and lists
    dream = invoke("dream", str(mnist_run.path), "--layer", "relu1", "--channels", "0-1", "--steps", "2",
                   "--out", str(tmp_path / "d"), "--quiet")
    assert dream.exit_code == 0, dream.output
    old = invoke("dream", str(mnist_run.path), "--layer", "relu1", "--channel", "0", "--steps", "2",
                 "--out", str(tmp_path / "d2"), "--quiet")
    assert old.exit_code == 0, old.output
    explained = invoke("explain", str(mnist_run.path), "--index", "0", "--no-cards", "--target", "3,5",
                       "--out", str(tmp_path / "e"), "--quiet")
    assert explained.exit_code == 0, explained.output
    image = json.loads((tmp_path / "e" / "explain.json").read_text())["images"][0]
    assert image["target"] == [3, 5] and image["target_name"] == "3 + 5"
    activations = invoke("activations", str(mnist_run.path), "--layer", "relu1", "--index", "0",
                         "--out", str(tmp_path / "a"), "--quiet")  # --layer as well as --layers
    assert activations.exit_code == 0, activations.output


def test_help_says_every_default_and_lists_methods() -> None:
    helped = invoke("train", "--help").stdout
    assert "Passes over the training split" in helped and "Images per training step" in helped
    listed = invoke("attribute", "--list")
    assert listed.exit_code == 0 and listed.stdout.splitlines()[0].startswith("integrated ")
    assert "occlusion" in listed.stdout and "[--baseline --window --stride --incremental]" in listed.stdout
    # --method's help was a 40-line paragraph
    assert len(invoke("attribute", "--help").stdout.split("--method")[1].split("--")[0].splitlines()) <= 8


def test_a_manifest_repeats_its_command_when_the_run_was_implicit(mnist_run, tmp_path: Path, monkeypatch) -> None:
    runs = mnist_run.path.parent
    result = invoke("layers", "--help")  # nothing to do with the run: the manifest below is explain's
    assert result.exit_code == 0
    monkeypatch.setenv("NETVIZ_RUNS", str(runs))
    from netviz.files import set_latest

    set_latest(mnist_run.path)
    done = invoke("explain", "--index", "0", "--no-cards", "--out", str(tmp_path / "e"), "--quiet")
    assert done.exit_code == 0, done.output
    manifest = read_json(tmp_path / "e" / "manifest.json")
    assert manifest["command_line"].startswith("netviz explain --index 0")
    assert str(mnist_run.path) in manifest["reproduce"] and "NETVIZ_DATA=" in manifest["reproduce"]
    assert manifest["environment"]["NETVIZ_DATA"]
    assert all(Path(line).is_absolute() for line in done.stdout.splitlines())


def test_paths_are_absolute_from_train_and_load_run(tmp_path: Path) -> None:
    import netviz

    run = netviz.train(model="mnist-fast", train_split="test[:256]", eval_split="test[256:384]", epochs=1,
                       runs_dir="runs", quiet=True, device="cpu")
    assert run.path.is_absolute() and netviz.load_run("runs/" + run.path.name).path == run.path
    trace = read_json(run.path / "trace.json")
    assert len(trace) >= 2 and trace[-1]["epoch"] == 1.0  # a one-epoch run's curve has points within it


def test_terminal_summaries_say_the_prediction_and_the_top_channels(mnist_run, tmp_path: Path) -> None:
    attributed = invoke("attribute", str(mnist_run.path), "--index", "0", "--out", str(tmp_path / "a"))
    assert attributed.exit_code == 0, attributed.output
    assert "index 0 (true " in attributed.stderr and "completeness error" in attributed.stderr
    explained = invoke("explain", str(mnist_run.path), "--index", "0", "--no-cards", "--out", str(tmp_path / "e"))
    assert explained.exit_code == 0, explained.output
    assert "target " in explained.stderr and "top channels of " in explained.stderr


def test_a_uniform_cam_is_said_not_painted_as_an_answer(tmp_path: Path) -> None:
    from netviz.attribute import attribute_run
    from netviz.runs import load_run

    class Flat(torch.nn.Module):  # a map the same everywhere: a constant layer before the score
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 1)
            self.fc = torch.nn.Linear(2, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.conv(x * 0 + 1)
            return self.fc(h.mean((2, 3)))

    run = load_run(model=Flat(), input_shape=(1, 8, 8))
    report = attribute_run(run, "gradcam", images=torch.rand(2, 1, 8, 8), quiet=True)
    flat = report.uniform
    assert any(flat) == bool(report.result.attributions.abs().sum() > 0)
    if any(flat):
        assert any("points at no region" in line for line in report.lines())


def test_bad_model_args_and_far_timm_names(tmp_path: Path) -> None:
    assert_one_line_error(invoke("layers", "--model", "mnist", "--model-arg", "width=[1,"),
                          "--model-arg 'width=[1,': [1, is not a TOML value")
    pytest.importorskip("timm")
    result = invoke("layers", "--model", "timm:not_a_model")
    assert_one_line_error(result, "timm has no model 'not_a_model'")
    assert "nest_base" not in result.stderr
