"""The Python API as a notebook user meets it: ``netviz.train`` stays a function whatever was
imported or looked at before, every command is a function in ``netviz.commands``, and an int is
one index."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import SHARED_DATA


def test_netviz_train_stays_callable_after_anything_is_imported() -> None:
    code = (
        "import netviz, netviz.runs, netviz.training, netviz.commands\n"
        "print(type(netviz.train))\n"  # what tab completion or a curious user does
        "netviz.load_run\n"
        "assert callable(netviz.train), type(netviz.train)\n"
        "assert callable(netviz.load_run)\n"
        "assert 'train' in dir(netviz)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_every_command_is_a_function_in_commands(mnist_run, tmp_path: Path) -> None:
    from netviz import commands

    infos = commands.layers(mnist_run)
    assert [i.name for i in infos][:2] == ["conv1", "relu1"]
    paths = commands.attribute(mnist_run, "saliency", indices=5, out=tmp_path / "a", quiet=True)
    record = json.loads((tmp_path / "a" / "attribute.json").read_text())
    assert [i["index"] for i in record["images"]] == [5] and any(p.name == "attribute.json" for p in paths)
    page = commands.report(mnist_run, tmp_path / "page", quiet=True)
    assert page.name == "index.html" and page.stat().st_size > 10_000
    run = commands.train(model="mnist", train_split="test[:64]", eval_split="test[64:128]", epochs=1,
                         runs_dir=str(tmp_path / "runs"), name="api", data_dir=str(SHARED_DATA), device="cpu",
                         quiet=True)
    assert (run.path / "checkpoints" / "final.pt").is_file()
