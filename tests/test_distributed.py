"""Past one machine: netviz under torchrun with 2 CPU processes (gloo) gives the
single-process answers, writes once, and a rank that fails ends the job with its message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from conftest import SHARED_DATA
from PIL import Image

from netviz.cli import cli


def torchrun(*args: object, nproc: int = 2, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run --standalone --nproc_per_node N -m netviz ARGS` as a user runs it."""
    env = dict(os.environ, NETVIZ_DATA=str(SHARED_DATA), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "netviz", *[str(a) for a in args]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def single(*args: object):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def close(a: float, b: float, rel: float = 1e-5) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)


def test_ddp_training_learns_and_writes_its_run_once(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    done = torchrun("train", "--train-split", "test[:4000]", "--eval-split", "test[4000:6000]", "--epochs", "1",
                    "--seed", "1", "--runs-dir", runs, "--name", "ddp", "--device", "cpu", "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in runs.iterdir()) == ["ddp", "latest"]  # one run folder, one writer
    run = runs / "ddp"
    printed = [line for line in done.stdout.splitlines() if line.strip()]
    assert printed.count(str(run / "config.toml")) == 1  # rank 0 alone prints
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics) == 1 and metrics[0]["eval_acc"] >= 0.9
    config = tomllib.loads((run / "config.toml").read_text())
    assert config["world_size"] == 2 and config["batch_size"] == 64  # the global batch is kept
    assert (run / "checkpoints" / "final.pt").is_file() and (run / "manifest.json").is_file()
    # --resume with another world size: this single process trains the second epoch
    single("train", "--resume", run, "--epochs", "2", "--quiet")
    metrics = json.loads((run / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics] == [1, 2] and metrics[1]["eval_acc"] >= metrics[0]["eval_acc"] - 0.02
    assert "world_size = 1" in (run / "config.toml").read_text()


def test_sharded_attribute_and_top_images_equal_one_process(mnist_run, tmp_path: Path) -> None:
    args = ["attribute", mnist_run.path, "--index", "0-63", "--steps", "16", "--device", "cpu", "--quiet"]
    done = torchrun(*args, "--out", tmp_path / "two")
    assert done.returncode == 0, done.stderr[-3000:]
    single(*args, "--out", tmp_path / "one")
    two = json.loads((tmp_path / "two" / "attribute.json").read_text())["images"]
    one = json.loads((tmp_path / "one" / "attribute.json").read_text())["images"]
    assert [i["index"] for i in two] == [i["index"] for i in one] == list(range(64))
    for a, b in zip(two, one, strict=True):
        assert a["target"] == b["target"] and a["pred"] == b["pred"]
        for key in ("attribution_sum", "attribution_max_abs", "score_input", "completeness_error"):
            # completeness_error is |sum - delta| / |delta| of float32 sums: batches of another size
            # round those sums differently, which moves it by a few float32 eps (1.2e-7) when it is ~0
            assert close(a[key], b[key]) or abs(a[key] - b[key]) < 1e-6, (key, a, b)
    args = ["activations", mnist_run.path, "--index", "5", "--layers", "relu1,fc1", "--channels", "0-5",
            "--top-images", "4", "--device", "cpu", "--quiet"]
    done = torchrun(*args, "--out", tmp_path / "top2")
    assert done.returncode == 0, done.stderr[-3000:]
    single(*args, "--out", tmp_path / "top1")
    for layer_two, layer_one in zip(json.loads((tmp_path / "top2" / "activations.json").read_text())["layers"],
                                    json.loads((tmp_path / "top1" / "activations.json").read_text())["layers"],
                                    strict=True):
        t2, t1 = layer_two["top_images"]["channels"], layer_one["top_images"]["channels"]
        assert list(t2) == list(t1) == [str(c) for c in range(6)]
        for c in t1:
            assert t2[c]["indices"] == t1[c]["indices"]
            assert np.allclose(t2[c]["scores"], t1[c]["scores"], rtol=1e-5, atol=1e-7)


def test_sharded_evaluate_and_dream_equal_one_process(mnist_run, tmp_path: Path) -> None:
    args = ["evaluate", mnist_run.path, "--methods", "saliency,gradcam,random", "--index", "0-8",
            "--steps-frac", "0.25", "--device", "cpu", "--quiet"]
    done = torchrun(*args, "--out", tmp_path / "ev2")
    assert done.returncode == 0, done.stderr[-3000:]
    single(*args, "--out", tmp_path / "ev1")
    two = json.loads((tmp_path / "ev2" / "evaluate.json").read_text())["methods"]
    one = json.loads((tmp_path / "ev1" / "evaluate.json").read_text())["methods"]
    for name in one:
        assert [i["index"] for i in two[name]["per_image"]] == list(range(9))
        for key in ("deletion_auc", "insertion_auc"):
            assert close(two[name][key], one[name][key]), (name, key)
        # a rank correlation jumps when rounding splits a tie (ReLU'd maps hold many exact zeros):
        # 1e-3 still tells a wrong image order or a wrong model copy (differences of 0.1 and more)
        assert abs(two[name]["sanity_spearman"] - one[name]["sanity_spearman"]) < 1e-3, name
    # --batch-size 1 and one thread a process: every image alone with the same kernels in both,
    # so the dreams agree bit for bit
    args = ["dream", mnist_run.path, "--class", "all", "--steps", "10", "--batch-size", "1", "--quiet",
            "--device", "cpu"]
    done = torchrun(*args, "--out", tmp_path / "d2")
    assert done.returncode == 0, done.stderr[-3000:]
    alone = subprocess.run([sys.executable, "-m", "netviz", *map(str, args), "--out", str(tmp_path / "d1")],
                           env=dict(os.environ, NETVIZ_DATA=str(SHARED_DATA), OMP_NUM_THREADS="1"),
                           capture_output=True, text=True, timeout=300)
    assert alone.returncode == 0, alone.stderr
    for k in range(10):
        assert (tmp_path / "d2" / f"class_{k}.png").read_bytes() == (tmp_path / "d1" / f"class_{k}.png").read_bytes()


def test_more_processes_than_images(mnist_run, tmp_path: Path) -> None:
    done = torchrun("attribute", mnist_run.path, "--index", "4", "--method", "saliency", "--out", tmp_path / "a",
                    "--device", "cpu", "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    images = json.loads((tmp_path / "a" / "attribute.json").read_text())["images"]
    assert [i["index"] for i in images] == [4]


def test_a_failing_rank_ends_the_job_with_its_message(mnist_run, tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(good)
    bad = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(bad)
    bad.write_bytes(bad.read_bytes()[:200])  # rank 1's share holds the broken file
    start = time.perf_counter()
    done = torchrun("attribute", mnist_run.path, "--image", good, "--image", bad, "--method", "saliency",
                    "--out", tmp_path / "x", "--device", "cpu", timeout=120)
    assert done.returncode != 0
    assert time.perf_counter() - start < 60  # the other rank is stopped, not left waiting
    assert f"netviz: error: {bad} is truncated or corrupt" in done.stderr
    assert not (tmp_path / "x").exists()


def test_batch_that_does_not_divide_is_one_line(tmp_path: Path) -> None:
    done = torchrun("train", "--train-split", "test[:256]", "--eval-split", "test[256:512]", "--epochs", "1",
                    "--batch-size", "63", "--runs-dir", tmp_path, "--device", "cpu", "--quiet")
    assert done.returncode != 0
    assert "netviz: error: --batch-size 63 does not divide among 2 processes" in done.stderr
    assert not any(tmp_path.iterdir())


def test_sharded_audit_equals_one_process(mnist_run, tmp_path: Path) -> None:
    args = ["audit", mnist_run.path, "--limit", "1024", "--no-cards", "--device", "cpu", "--quiet"]
    done = torchrun(*args, "--out", tmp_path / "two")
    assert done.returncode == 0, done.stderr[-3000:]
    single(*args, "--out", tmp_path / "one")
    two = json.loads((tmp_path / "two" / "audit.json").read_text())
    one = json.loads((tmp_path / "one" / "audit.json").read_text())
    assert two["n_images"] == one["n_images"] == 1024
    assert two["confusion"] == one["confusion"] and two["accuracy"] == one["accuracy"]
    for a, b in zip(two["classes"], one["classes"], strict=True):
        assert (a["index"], a["n"], a["accuracy"]) == (b["index"], b["n"], b["accuracy"])
        assert [cl["size"] for cl in a["clusters"]] == [cl["size"] for cl in b["clusters"]]
        assert [m["index"] for m in a["confident_mistakes"]] == [m["index"] for m in b["confident_mistakes"]]
