"""`netviz train`: accuracy on real MNIST, the run folder, exact resume, allconv, bad input."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import CIFAR_SAMPLE, ROOT, SHARED_DATA

from netviz.cli import cli
from netviz.runs import load_checkpoint, load_run
from netviz.train import RECIPES, resolve_config, train

SMALL = {"model": "mnist", "train_split": "test[:640]", "eval_split": "test[9000:9200]",
         "epochs": 2, "seed": 3, "device": "cpu", "quiet": True, "data_dir": str(SHARED_DATA)}


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_mnist_reaches_98_percent_on_real_data(mnist_run) -> None:
    # Acceptance: `netviz train --model mnist --train-split test[:8000] --eval-split test[8000:]
    # --epochs 3 --seed 1` on the CPU (the session fixture ran exactly that command).
    metrics = mnist_run.metrics
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert metrics[-1]["eval_acc"] >= 0.98
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    assert set(metrics[0]) >= {"epoch", "train_loss", "train_acc", "eval_loss", "eval_acc", "seconds"}


def test_run_folder_contents(mnist_run) -> None:
    path = mnist_run.path
    config = tomllib.loads((path / "config.toml").read_text())
    assert config["model"] == "mnist" and config["epochs"] == 3 and config["optimizer"] == "adadelta"
    assert config["train_split"] == "test[:8000]" and config["eval_split"] == "test[8000:]"
    for name in ("init", "final", "last"):
        assert load_checkpoint(path / "checkpoints" / f"{name}.pt", "mnist")["model"]
    assert (path / "curves.png").stat().st_size > 10_000
    stats = json.loads((path / "weight_stats.json").read_text())
    assert stats["epochs"] == [0, 1, 2, 3]
    n_params = dict(mnist_run.model.named_parameters())
    for name, per_epoch in stats["layers"].items():
        assert len(per_epoch) == 4
        for s in per_epoch:
            assert sum(s["counts"]) + s["nan"] + s["inf"] == n_params[name].numel() == s["count"]
    # training moved the weights: the std of fc1 grows from its init
    fc1 = stats["layers"]["fc1.weight"]
    assert fc1[-1]["std"] != pytest.approx(fc1[0]["std"], rel=1e-3)


def test_resume_after_interrupt_is_bitwise_identical(tmp_path: Path) -> None:
    whole = train(runs_dir=str(tmp_path), name="whole", **SMALL)
    with pytest.raises(Exception, match="interrupted"):
        train(runs_dir=str(tmp_path), name="cut", _interrupt_at_step=13, **SMALL)
    assert not (tmp_path / "cut" / "checkpoints" / "final.pt").exists()
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["step"] == 3
    result = invoke("train", "--resume", str(tmp_path / "cut"), "--quiet")
    assert result.exit_code == 0, result.output
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "final.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "checkpoints" / "final.pt")["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    metrics = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert [m["eval_acc"] for m in metrics] == [m["eval_acc"] for m in whole.metrics]


def test_same_seed_same_weights(tmp_path: Path) -> None:
    one = dict(SMALL, epochs=1)
    train(runs_dir=str(tmp_path), name="a", **one)
    train(runs_dir=str(tmp_path), name="b", **one)
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "final.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "final.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "latest").resolve() == (tmp_path / "b").resolve()
    run = load_run(runs_dir=tmp_path, device="cpu")  # what every command uses without a RUN
    assert run.path == tmp_path / "b" and not run.model.training and len(run.metrics) == 1


def test_allconv_imagefolder_end_to_end(allconv_run) -> None:
    # `netviz train --model allconv --dataset imagefolder:.../cifar10-sample --epochs 1`
    assert allconv_run.spec.name == "allconv"
    assert len(allconv_run.metrics) == 1
    assert allconv_run.config["train_split"] == "all[:80%]"
    assert (allconv_run.path / "curves.png").is_file()


def test_allconv_loss_falls_when_overfitting_one_batch() -> None:
    from netviz.data import load_split, normalise
    from netviz.registry import build_model, get_spec

    torch.manual_seed(0)
    spec = get_spec("allconv")
    data = load_split(f"imagefolder:{CIFAR_SAMPLE}", "all[:10]")
    x, y = normalise(data.images, spec), data.labels
    net = build_model(spec).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, amsgrad=True)
    losses = []
    for _ in range(25):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses


def test_configs_match_builtin_recipes() -> None:
    for name, recipe in RECIPES.items():
        config = tomllib.loads((ROOT / "configs" / f"{name}.toml").read_text())
        assert config.pop("model") == name
        assert config == recipe


def test_config_file_and_overrides(tmp_path: Path) -> None:
    cfg = resolve_config(None, ROOT / "configs" / "allconv.toml", epochs=2)
    assert (cfg.model, cfg.optimizer, cfg.lr, cfg.epochs, cfg.augment) == ("allconv", "amsgrad", 5e-4, 2, 0.5)


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")} if root.exists() else set()


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "lenet9"], "unknown model 'lenet9': known models are allconv, mnist"),
    (["--dataset", "svhn"], "unknown dataset 'svhn'"),
    (["--train-split", "test[:8000"], "malformed split 'test[:8000'"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--train-split", "train"], "MNIST train split not found: put train-images-idx3-ubyte.gz"),
    (["--train-split", "train"], "only the test split is there: carve both from it, e.g. --train-split"),
    (["--optimizer", "lion"], "unknown optimizer 'lion'"),
    (["--device", "tpu"], "unknown device 'tpu'"),
])
def test_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    runs = tmp_path / "runs"
    result = invoke("train", "--runs-dir", str(runs), "--eval-split", "test[9000:]", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("netviz: error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert not list(runs.glob("*/")) if runs.exists() else True


def test_missing_data_names_folder_and_files(tmp_path: Path) -> None:
    result = invoke("train", "--data-dir", str(tmp_path / "nodata"), "--runs-dir", str(tmp_path / "r"))
    assert result.exit_code == 2
    assert str(tmp_path / "nodata" / "MNIST" / "raw") in result.stderr
    assert "train-images-idx3-ubyte.gz" in result.stderr
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_unwritable_runs_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = invoke("train", "--runs-dir", str(blocker / "runs"), "--train-split", "test[:64]",
                    "--eval-split", "test[64:128]")
    assert result.exit_code == 2 and "cannot create runs folder" in result.stderr


def test_resume_refuses_bad_checkpoints(tmp_path: Path, mnist_run) -> None:
    result = invoke("train", "--resume", str(tmp_path / "missing"))
    assert result.exit_code == 2 and "not a netviz run folder" in result.stderr

    corrupt = tmp_path / "corrupt"
    (corrupt / "checkpoints").mkdir(parents=True)
    (corrupt / "config.toml").write_text((mnist_run.path / "config.toml").read_text())
    (corrupt / "checkpoints" / "last.pt").write_bytes(b"\x00not a torch file" * 10)
    result = invoke("train", "--resume", str(corrupt))
    assert result.exit_code == 2 and "corrupt or not a PyTorch file" in result.stderr

    result = invoke("train", "--model", "allconv", "--resume", str(mnist_run.path))
    assert result.exit_code == 2 and "it trains 'mnist', not 'allconv'" in result.stderr


class _Evil:
    def __reduce__(self):
        import os

        return (os.mkdir, (str(Path.cwd() / "pwned"),))


def test_pickled_code_in_checkpoint_is_refused(tmp_path: Path, mnist_run) -> None:
    evil = tmp_path / "evil"
    (evil / "checkpoints").mkdir(parents=True)
    (evil / "config.toml").write_text((mnist_run.path / "config.toml").read_text())
    torch.save({"model": {}, "optimizer": _Evil()}, evil / "checkpoints" / "last.pt")
    for args in (["train", "--resume", str(evil)], ["train", "--resume", str(evil / "checkpoints" / "last.pt")]):
        result = invoke(*args)
        assert result.exit_code == 2 and "refusing to load" in result.stderr
    assert not (Path.cwd() / "pwned").exists()
    with pytest.raises(Exception, match="could run code"):
        load_run(evil / "checkpoints" / "last.pt", device="cpu")
    assert not (Path.cwd() / "pwned").exists()
