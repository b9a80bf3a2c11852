"""The command functions a notebook calls (`netviz.commands`), and seeding of bare models."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from netviz import commands
from netviz.cli import cli
from netviz.layers import has_hooks
from netviz.runs import load_run


def test_notebook_flow_writes_what_the_cli_writes(mnist_run, tmp_path: Path) -> None:
    run = load_run(mnist_run.path, device="cpu")
    kernels = commands.kernels(run, tmp_path / "k", quiet=True)
    assert sorted(p.name for p in kernels) == ["kernels-conv1.json", "kernels-conv1.png", "manifest.json"]
    manifest = json.loads((tmp_path / "k" / "manifest.json").read_text())
    assert manifest["command_line"] == "netviz.commands.kernels(run, scale='kernel', max_kernels=256, " \
                                       "max_out=32, max_in=32)"
    paths = commands.attribute(run, "saliency", tmp_path / "a", indices="0-1", quiet=True)
    record = json.loads((tmp_path / "a" / "attribute.json").read_text())
    assert len(record["images"]) == 2 and all(p.is_file() for p in paths)
    assert not has_hooks(run.model)


def test_seed_fixes_a_bare_models_initialisation(tmp_path: Path) -> None:
    def stds(seed: int, out: str) -> list[float]:
        result = CliRunner().invoke(cli, ["histogram", "--model", "mnist", "--seed", str(seed),
                                          "--out", str(tmp_path / out), "--quiet"])
        assert result.exit_code == 0, result.output
        data = json.loads((tmp_path / out / "histogram.json").read_text())
        return [layer["model"]["std"] for layer in data["layers"].values()]

    a, b, c = stds(3, "a"), stds(3, "b"), stds(4, "c")
    assert a == b and a != c


def test_dream_batch_size_one_makes_each_class_independent(mnist_run, tmp_path: Path) -> None:
    run = load_run(mnist_run.path, device="cpu")
    commands.dream(run, tmp_path / "one", classes="6", quiet=True)
    commands.dream(run, tmp_path / "all", classes="all", batch_size=1, quiet=True)
    assert (tmp_path / "one" / "class_6.png").read_bytes() == (tmp_path / "all" / "class_6.png").read_bytes()
