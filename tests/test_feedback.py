"""Long work is never silent and quick failures are quick: evaluate says each method as it
finishes (also when piped), a huge --top-images is capped in the figure, `netviz models` and a
missing run answer without importing torch, and a data set that cannot be downloaded leaves no
empty folders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import assert_one_line_error
from PIL import Image
from test_train import invoke


def test_evaluate_says_each_method_as_it_finishes_when_piped(mnist_run, tmp_path: Path) -> None:
    result = invoke("evaluate", str(mnist_run.path), "--methods", "saliency,random", "--index", "0-1",
                    "--no-sanity", "--out", str(tmp_path / "e"))  # CliRunner's stderr is no terminal
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("evaluate: ")]
    assert [line.split()[1] for line in lines] == ["saliency", "random"], result.stderr


def test_a_huge_top_images_is_capped_in_the_figure_and_said(mnist_run, tmp_path: Path) -> None:
    result = invoke("activations", str(mnist_run.path), "--index", "0", "--layers", "relu1", "--channels", "0-1",
                    "--top-images", "100000", "--split", "test[:100]", "--out", str(tmp_path / "a"))
    assert result.exit_code == 0, result.output
    assert "test[:100] has only 100 images" in result.stderr
    assert "the figure shows the first 16 per channel" in result.stderr
    width = Image.open(tmp_path / "a" / "top-relu1.png").size[0]
    assert width < 3000, width
    record = json.loads((tmp_path / "a" / "activations.json").read_text())
    assert len(record["layers"][0]["top_images"]["channels"]["0"]["indices"]) == 100


def _modules_after(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, str]:
    code = ("import sys\nfrom click.testing import CliRunner\nfrom netviz.cli import cli\n"
            f"r = CliRunner().invoke(cli, {list(args)!r})\n"
            "print(r.exit_code, 'torch' in sys.modules, 'timm' in sys.modules)\nprint(r.output)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd)
    return done, done.stdout.splitlines()[0] if done.stdout else done.stderr


def test_models_and_a_missing_run_answer_without_importing_torch(tmp_path: Path) -> None:
    done, first = _modules_after("models", cwd=tmp_path)
    assert first == "0 False False", done.stdout + done.stderr
    assert "mnist-fast" in done.stdout
    done, first = _modules_after("layers", cwd=tmp_path)
    assert first == "2 False False", done.stdout + done.stderr
    assert "no training run found" in done.stdout
    done, first = _modules_after("layers", str(tmp_path / "nope"), cwd=tmp_path)
    assert first == "2 False False" and "does not exist" in done.stdout


def test_an_undownloadable_data_set_leaves_no_empty_folders(tmp_path: Path, monkeypatch) -> None:
    import netviz.network

    monkeypatch.delenv("NETVIZ_OFFLINE")
    monkeypatch.setattr(netviz.network, "reachable", lambda url, timeout=1.5: False)
    data = tmp_path / "nodata"
    result = invoke("train", "--data-dir", str(data), "--runs-dir", str(tmp_path / "runs"))
    assert_one_line_error(result, "MNIST train split not found")
    assert not data.exists() or not any(data.rglob("*")), sorted(data.rglob("*"))
