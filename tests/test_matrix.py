"""Every command of the README's table on every kind of model, at a small size: each ends with its
files or with one line that says why it cannot (exit 2), never an internal error or a traceback.

Models: the registry's (mnist, mnist-fast with BatchNorm statistics as training leaves them,
allconv), a torchvision ResNet and a timm ViT (ImageNet's classes, over a folder named after some
of them), and the awkward nets (several outputs, a dict
output, multi-label, a segmentation map, functional ReLUs) at an odd input size. Options are the
commands' defaults except where a default would take minutes (``--index``, ``--steps``,
``--limit``). Marked ``matrix``: the README's test command leaves it out; ``.ci/run`` runs it
(``pytest -m matrix``, a few minutes on 2 cores).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import CIFAR_SAMPLE

from netviz.cli import cli

pytestmark = pytest.mark.matrix

AWKWARD = Path(__file__).with_name("awkward_nets.py")
FOLDER = f"imagefolder:{CIFAR_SAMPLE}"
IMAGENET_NAMED = "imagefolder:{imagenet_folder}"
ODD = ["--input-shape", "3,20,24", "--dataset", FOLDER]
MODELS = {
    "mnist": ["--model", "mnist", "--dataset", "mnist"],
    "mnist-fast": ["--model", "mnist-fast", "--weights", "{bn_weights}", "--dataset", "mnist"],
    "allconv": ["--model", "allconv", "--dataset", FOLDER],
    "resnet18": ["--model", "resnet18", "--input-shape", "3,64,64", "--dataset", IMAGENET_NAMED],
    "vit": ["--model", "timm:vit_tiny_patch16_224", "--model-arg", "img_size=32", "--model-arg", "patch_size=8",
            "--input-shape", "3,32,32", "--dataset", IMAGENET_NAMED],
    "three-heads": ["--model", f"{AWKWARD}:ThreeHeads", "--output", "2", *ODD],
    "dict-out": ["--model", f"{AWKWARD}:DictOut", "--output", "logits", *ODD],
    "multi-label": ["--model", f"{AWKWARD}:MultiLabel", "--activation", "sigmoid", *ODD],
    "segmentation": ["--model", f"{AWKWARD}:Seg", *ODD],
    "functional-relu": ["--model", f"{AWKWARD}:FunctionalRelu", *ODD],
    "detector": ["--model", f"{AWKWARD}:GridDetector", "--model-arg", "classes=10", *ODD],
}
# each command with its defaults, made small where a default takes minutes
COMMANDS = {
    "layers": [],
    "histogram": [],
    "kernels": [],
    "activations": [],
    "dream": ["--class", "0-1", "--steps", "4"],
    "attribute": ["--index", "0-1"],
    "evaluate": ["--index", "0-1", "--sanity-layers", "1"],
    "neurons": ["--channels", "0-1", "--steps", "4", "--top", "2"],
    "explain": ["--index", "0", "--dream-steps", "4", "--card-images", "2"],
    "audit": ["--limit", "48"],
    "concepts": ["--concepts", "4", "--per-class", "2", "--top", "4"],
    "report": [],
}
DATA = ("activations", "attribute", "evaluate", "neurons", "explain", "audit", "concepts")  # those that read --dataset


@pytest.fixture(scope="module")
def bn_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mnist-fast's weights with BatchNorm statistics away from the identity (as after training)."""
    from netviz.runs import load_run

    run = load_run(model="mnist-fast", device="cpu")
    g = torch.Generator().manual_seed(0)
    for m in run.model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
    path = tmp_path_factory.mktemp("weights") / "mnist-fast-bn.pt"
    torch.save(run.model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def imagenet_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CIFAR sample's images in folders named after three ImageNet classes, and its ships
    (a class ImageNet does not have)."""
    root = tmp_path_factory.mktemp("imagenet-named")
    for name, source in {"airliner": "airplane", "sports car": "automobile", "tabby": "cat", "ship": "ship"}.items():
        shutil.copytree(CIFAR_SAMPLE / source, root / name)
    return root


def _args(model: str, command: str, bn_weights: Path, imagenet_folder: Path) -> list[str]:
    args = [a.replace("{bn_weights}", str(bn_weights)).replace("{imagenet_folder}", str(imagenet_folder))
            for a in MODELS[model]]
    if command not in DATA and "--dataset" in args:
        at = args.index("--dataset")
        args = args[:at] + args[at + 2:]
    small = ["--split", "train[:200]"] if command == "concepts" and "mnist" in args else []  # not all 60,000
    return [command, *args, *COMMANDS[command], *small, "--quiet"]


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("model", list(MODELS))
def test_every_command_on_every_kind_of_model(model: str, command: str, bn_weights: Path, imagenet_folder: Path,
                                              tmp_path: Path) -> None:
    pytest.importorskip("timm")
    result = CliRunner().invoke(cli, _args(model, command, bn_weights, imagenet_folder), catch_exceptions=False)
    assert "internal error" not in result.stderr, result.stderr
    if result.exit_code == 2:  # a refusal: one line that says why
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("netviz: error:"), result.stderr
        return
    assert result.exit_code == 0, result.output
    if command != "layers":  # the files written, printed one a line (after evaluate's table, audit's line)
        written = [Path(line) for line in result.stdout.splitlines() if line.startswith("/")]
        assert written and all(p.is_file() for p in written), result.stdout
