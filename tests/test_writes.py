"""What a command leaves on disk when a write fails (a full disk): its folder complete with its
manifest, or not there at all; and the mode of what it writes (the umask's, not 0600)."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from netviz.cli import cli
from netviz.outputs import MANIFEST

SMALL_TRAIN = ["train", "--train-split", "test[:64]", "--eval-split", "test[64:128]", "--epochs", "1",
               "--device", "cpu", "--quiet"]
# Each command as a user runs it on a run of their own (``{run}``), inside the run or with --out.
COMMANDS = {
    "activations": ["activations", "{run}", "--index", "0", "--layers", "relu1,fc1", "--quiet"],
    "activations-out": ["activations", "{run}", "--index", "0-1", "--layers", "relu1", "--out", "{out}", "--quiet"],
    "kernels": ["kernels", "{run}", "--quiet"],
    "histogram-out": ["histogram", "{run}", "--out", "{out}", "--quiet"],
    "attribute": ["attribute", "{run}", "--method", "saliency", "--index", "0-1", "--quiet"],
    "dream": ["dream", "{run}", "--class", "3", "--steps", "3", "--quiet"],
    "report-out": ["report", "{run}", "--out", "{out}", "--quiet"],
}


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def _fill(args: list[str], run: Path, out: Path) -> list[str]:
    return [a.replace("{run}", str(run)).replace("{out}", str(out)) for a in args]


def _assert_complete_or_absent(run: Path, out: Path) -> None:
    """No folder a command made is left without its manifest, and no working folder is left."""
    for command in ("activations", "kernels", "histogram", "attribute", "dream"):
        root = run / command
        for entry in root.iterdir() if root.is_dir() else []:
            assert not entry.name.startswith("."), f"a working folder was left: {entry}"
            if entry.name != "latest":
                assert (entry / MANIFEST).is_file(), f"{entry} has no manifest"
    if out.exists():
        assert (out / MANIFEST).is_file() or (out / "index.html").is_file(), sorted(out.rglob("*"))
        assert not any(p.name.startswith(".") for p in out.parent.iterdir()), sorted(out.parent.iterdir())


@pytest.fixture
def own_run(mnist_run, tmp_path: Path) -> Path:
    run = tmp_path / "myrun"
    shutil.copytree(mnist_run.path, run, ignore=shutil.ignore_patterns(
        "activations", "kernels", "histogram", "attribute", "dream", "evaluate", "neurons", "report", "latest"))
    return run


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_full_disk_at_every_write_leaves_complete_folders_or_none(own_run: Path, tmp_path: Path,
                                                                   monkeypatch, command: str) -> None:
    real_mkstemp = tempfile.mkstemp
    for k in range(1, 40):  # fail the k-th file a command creates, for every k until it succeeds
        calls = [0]

        def mkstemp(*args, _k=k, _calls=calls, **kwargs):
            _calls[0] += 1
            if _calls[0] == _k:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_mkstemp(*args, **kwargs)

        out = tmp_path / f"out-{command}-{k}" / "result"
        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
        result = invoke(*_fill(COMMANDS[command], own_run, out))
        monkeypatch.setattr(tempfile, "mkstemp", real_mkstemp)
        _assert_complete_or_absent(own_run, out)
        if result.exit_code == 0:
            assert k > 1  # the first write always fails
            return
        assert result.exit_code == 2, result.output
        assert "No space left on device" in result.stderr and result.stderr.count("\n") == 1, result.stderr
    pytest.fail(f"{command} never succeeded")


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_a_training_run_that_cannot_start_leaves_nothing(tmp_path: Path, monkeypatch, k: int) -> None:
    real_mkstemp = tempfile.mkstemp
    calls = [0]

    def mkstemp(*args, **kwargs):
        calls[0] += 1
        if calls[0] == k:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    runs = tmp_path / "runs"
    result = invoke(*SMALL_TRAIN, "--runs-dir", str(runs), "--name", "full")
    assert result.exit_code == 2, result.output
    assert "No space left on device" in result.stderr
    assert not (runs / "full").exists()


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 60 KB file system (tmpfs), where this machine lets the tests mount one."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "60k"):
        pytest.skip("cannot mount a tmpfs here (not root, or no mount permission): the test above "
                    "covers every write with a simulated full disk")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_real_full_disk(own_run: Path, small_disk: Path) -> None:
    for args in (["activations", str(own_run), "--index", "0", "--out", str(small_disk / "full" / "act")],
                 ["report", str(own_run), "--out", str(small_disk / "page")],
                 [*SMALL_TRAIN, "--runs-dir", str(small_disk / "runs"), "--name", "r"]):
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        assert "No space left on device" in result.stderr, result.stderr
    assert not (small_disk / "full" / "act").exists()
    assert not (small_disk / "page").exists()
    assert not (small_disk / "runs" / "r").exists()
    leftovers = [p for p in small_disk.rglob("*") if p.is_file()]
    assert leftovers == [], leftovers


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_files_get_the_mode_the_umask_gives(own_run: Path, tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        runs = tmp_path / "runs"
        results = [invoke(*SMALL_TRAIN, "--runs-dir", str(runs), "--name", "m"),
                   invoke("kernels", str(own_run), "--out", str(tmp_path / "k"), "--quiet"),
                   invoke("kernels", str(own_run), "--out", str(tmp_path / "k"), "--overwrite", "--quiet"),
                   invoke("activations", str(own_run), "--index", "0", "--quiet"),
                   invoke("report", str(own_run), "--quiet")]
    finally:
        os.umask(old)
    for result in results:
        assert result.exit_code == 0, result.output
    written = [*(runs / "m").rglob("*"), *(tmp_path / "k").rglob("*"), tmp_path / "k",
               *(own_run / "activations").rglob("*"), *(own_run / "report").rglob("*")]
    assert len(written) > 15
    for path in written:
        if path.is_symlink():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        want = (0o777 if path.is_dir() else 0o666) & ~umask
        assert mode == want, f"{path}: {oct(mode)}, not {oct(want)}"
