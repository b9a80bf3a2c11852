"""`netviz train --resume` after a real Ctrl-C: the resumed run ends with the weights of a run that
was never interrupted, bit for bit, wherever the signal lands; a finished run is not resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_train import invoke

from netviz.runs import load_checkpoint

# 2 epochs of 20 steps each: long enough to be cut in mid-step, at an epoch's end and in the second.
ARGS = ["--model", "mnist", "--train-split", "test[:1280]", "--eval-split", "test[6000:6500]", "--epochs", "2",
        "--seed", "5", "--device", "cpu", "--quiet"]


def _netviz(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "netviz", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / "final.pt")["model"]


def _interrupt_after(run: Path, delay: float, proc: subprocess.Popen) -> int:
    """SIGINT ``delay`` seconds after training started (its first last.pt is written); the exit code."""
    deadline = time.time() + 120
    while not (run / "checkpoints" / "last.pt").is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    return proc.returncode


def test_a_real_ctrl_c_then_resume_is_bitwise_identical(tmp_path: Path) -> None:
    whole = _netviz("train", *ARGS, "--runs-dir", str(tmp_path), "--name", "whole")
    assert whole.wait(timeout=300) == 0, whole.stderr.read()
    reference = _weights(tmp_path / "whole")
    interrupted = 0
    for delay in (0.2, 1.1, 2.0):  # mid-step at several points of both epochs
        name = f"cut-{delay}"
        proc = _netviz("train", *ARGS, "--runs-dir", str(tmp_path), "--name", name)
        code = _interrupt_after(tmp_path / name, delay, proc)
        if code == 0:
            continue  # the run finished before the signal: nothing to resume
        assert code == 130, proc.stderr
        interrupted += 1
        assert not (tmp_path / name / "checkpoints" / "final.pt").exists()
        resumed = _netviz("train", "--resume", str(tmp_path / name), "--quiet")
        _, err = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, err
        got = _weights(tmp_path / name)
        for key, value in reference.items():
            assert torch.equal(value, got[key]), f"interrupted after {delay} s: {key} differs"
    assert interrupted >= 1  # the machine was not so fast that no signal landed in training


def test_resume_of_a_finished_run_changes_nothing(mnist_run, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "done"
    shutil.copytree(mnist_run.path, run)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    result = invoke("train", "--resume", str(run))
    assert result.exit_code == 2, result.output
    assert "finished" in result.stderr and "nothing to resume" in result.stderr
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("kind", ["twice"])
def test_a_second_ctrl_c_stops_at_once_without_saving(tmp_path: Path, kind: str) -> None:
    from netviz.training.loop import Interrupt

    interrupt = Interrupt()
    interrupt.handle(signal.SIGINT, None)  # the first is only noted
    assert interrupt.requested and not interrupt.forced
    with pytest.raises(KeyboardInterrupt):
        interrupt.handle(signal.SIGINT, None)  # the second stops now
    assert interrupt.forced
