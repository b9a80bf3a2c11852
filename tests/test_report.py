"""`netviz report` and the output folders behind it: manifests, one folder per
invocation, the page in real headless Chromium, user names as text, runs made in parallel, a full
disk."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ROOT, SHARED_DATA, assert_one_line_error

from netviz.cli import cli

SECTION_IDS = ["train", "histogram", "kernels", "activations", "dream", "neurons", "explain", "audit", "concepts",
               "attribute", "evaluate"]
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def ok(result) -> list[Path]:
    assert result.exit_code == 0, result.output
    return [Path(line) for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def reported(mnist_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the trained MNIST run with every analysis (`report --all`) and its page."""
    run = tmp_path_factory.mktemp("report") / "mnist"
    shutil.copytree(mnist_run.path, run)
    page = ok(invoke("report", run, "--all", "--device", "cpu", "--quiet"))
    assert page == [run / "report" / "index.html"]
    return run


def chromium() -> str:
    pytest.importorskip("playwright.sync_api")
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    return path


def test_every_analysis_has_a_manifest_and_a_folder_of_its_own(reported: Path) -> None:
    for command in SECTION_IDS[1:]:
        folders = [p for p in (reported / command).iterdir() if p.is_dir() and not p.is_symlink()]
        assert len(folders) == 1 and re.fullmatch(r"001-.+", folders[0].name), folders
        assert (reported / command / "latest").resolve() == folders[0].resolve()
        manifest = json.loads((folders[0] / "manifest.json").read_text())
        assert manifest["command"] == command and manifest["netviz"]
        # made in-process by `report --all`: the manifest gives the command line that repeats it
        assert manifest["command_line"].startswith(f"netviz {command} {reported}")
        assert manifest["files"] and all((folders[0] / f["path"]).is_file() and f["caption"]
                                         for f in manifest["files"])
        assert manifest["how_to_read"] and isinstance(manifest["summary"], dict)
    run_manifest = json.loads((reported / "manifest.json").read_text())
    assert run_manifest["command"] == "train"


def test_page_in_headless_chromium(reported: Path) -> None:
    from playwright.sync_api import sync_playwright

    page_file = reported / "report" / "index.html"
    assert page_file.stat().st_size < 5_000_000
    html = page_file.read_text()
    assert "<script" not in html.lower() and "http://" not in html and "https://" not in html
    shots = ROOT / "test-artifacts"
    shots.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            requests, errors = [], []
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_file.as_uri())
            page.wait_for_load_state("load")
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.complete, e.naturalWidth, e.getAttribute('alt')])")
            assert len(images) >= 15
            assert all(done and width > 0 for done, width, _ in images), [a for d, w, a in images if not w]
            assert errors == []
            outside = [u for u in requests if not u.startswith(("file://", "data:"))]
            assert outside == []
            for sid in SECTION_IDS:
                assert page.locator(f"section#{sid}").count() == 1
                assert page.locator(f"section#{sid} article").count() >= 1, sid
                assert page.locator(f"nav a[href='#{sid}']").count() == 1
            assert page.locator("section#neurons figure img").count() == 8  # 8 neuron cards
            assert page.locator("section#explain figure img").count() == 1  # eval image 0, explained
            assert page.locator("section#audit figure img").count() >= 3  # classes, mistakes, confusion
            page.screenshot(path=str(shots / "report.png"), full_page=True)
            # readable with JavaScript off: the same sections and images
            quiet = browser.new_context(java_script_enabled=False).new_page()
            quiet.goto(page_file.as_uri())
            assert quiet.locator("section").count() == len(SECTION_IDS)
            assert quiet.locator("img").count() == len(images)
        finally:
            browser.close()
    assert (shots / "report.png").stat().st_size > 50_000


def test_two_dreams_keep_both_results(mnist_run, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(mnist_run.path, run)
    first = ok(invoke("dream", run, "--class", "all", "--until", "0.99", "--quiet"))
    second = ok(invoke("dream", run, "--layer", "relu2", "--channel", "0-3", "--steps", "16", "--quiet"))
    assert first[0].parent.name == "001-class-all" and second[0].parent.name == "002-relu2-channel-0-3"
    assert (run / "dream" / "001-class-all" / "class_7.png").is_file()
    assert (run / "dream" / "002-relu2-channel-0-3" / "relu2_channel_3.png").is_file()
    assert (run / "dream" / "latest").resolve() == (run / "dream" / "002-relu2-channel-0-3").resolve()
    manifest = json.loads((run / "dream" / "001-class-all" / "manifest.json").read_text())
    assert manifest["command_line"] == f"netviz dream {run} --class all --until 0.99 --quiet"
    page = ok(invoke("report", run, "--quiet"))[0]
    html = page.read_text()
    dream = html[html.index('<section id="dream">'):html.index('<section id="neurons">')]
    assert dream.count("<article") == 2 and "001-class-all" in dream and "002-relu2-channel-0-3" in dream


def test_out_is_never_overwritten_silently(mnist_run, tmp_path: Path) -> None:
    out = tmp_path / "k"
    ok(invoke("kernels", mnist_run.path, "--out", out, "-q"))
    before = (out / "kernels-conv1.png").read_bytes()
    again = invoke("kernels", mnist_run.path, "--out", out, "--layer", "conv2", "-q")
    assert_one_line_error(again, f"--out {out} already holds the results of `netviz kernels`")
    assert (out / "kernels-conv1.png").read_bytes() == before
    ok(invoke("kernels", mnist_run.path, "--out", out, "--layer", "conv2", "--overwrite", "-q"))
    assert (out / "kernels-conv2.png").is_file() and not (out / "kernels-conv1.png").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    other = tmp_path / "busy"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert_one_line_error(invoke("kernels", mnist_run.path, "--out", other, "-q"), "holds other files")


def test_names_from_a_users_model_are_text(tmp_path: Path, cifar_cat: Path) -> None:
    from playwright.sync_api import sync_playwright

    evil = '<script>alert("x")</script>'
    (tmp_path / "xss.py").write_text(textwrap.dedent(f"""\
        from torch import nn

        class XssNet(nn.Module):
            def __init__(self):
                super().__init__()
                self.add_module({evil!r}, nn.Conv2d(3, 4, 3, padding=1))
                self.head = nn.Linear(4, 3)

            def forward(self, x):
                return self.head(self._modules[{evil!r}](x).relu().mean((2, 3)))
        """))
    (tmp_path / "classes.json").write_text(json.dumps([f"{evil}'cat\"", "<b>dog</b>", "&bird;"]))
    model = ["--model", "xss.py:XssNet", "--input-shape", "3,32,32", "--classes", "classes.json", "--quiet"]
    ok(invoke("activations", *model, "--image", cifar_cat, "--layers", evil))
    ok(invoke("kernels", *model))
    ok(invoke("dream", *model, "--class", "all", "--steps", "3"))
    ok(invoke("attribute", *model, "--image", cifar_cat, "--method", "gradcam", "--layer", evil))
    page = ok(invoke("report", *model))[0]
    html = page.read_text()
    assert "<script" not in html.lower() and "<b>dog" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html and "&amp;bird;" in html
    assert not list(Path("netviz-out").rglob("*script>*"))  # a name never becomes a path either
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True, args=CHROMIUM_FLAGS)
        try:
            tab = browser.new_page()
            dialogs = []
            tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            tab.goto(page.resolve().as_uri())
            assert dialogs == [] and tab.locator("script").count() == 0
            assert evil in tab.inner_text("body")  # shown as the text it is
        finally:
            browser.close()


def test_runs_started_together_each_get_a_complete_folder(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    args = [sys.executable, "-m", "netviz", "train", "--train-split", "test[:256]", "--eval-split",
            "test[256:512]", "--epochs", "1", "--runs-dir", str(runs), "--device", "cpu", "--quiet"]
    env = dict(os.environ, NETVIZ_DATA=str(SHARED_DATA))
    procs = [subprocess.Popen(args + ["--seed", str(k)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env) for k in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1].decode() for o in outs]
    folders = sorted(p for p in runs.iterdir() if p.is_dir() and not p.is_symlink())
    assert len(folders) == 3
    for folder in folders:
        assert (folder / "checkpoints" / "final.pt").is_file() and (folder / "manifest.json").is_file()
        assert json.loads((folder / "config.toml").read_text().split("seed = ")[1].split("\n")[0]) in (0, 1, 2)
    assert (runs / "latest").resolve() in [f.resolve() for f in folders]


def test_a_taken_name_gets_a_suffix_and_an_explicit_one_is_refused(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from netviz.errors import NetvizError
    from netviz.runs import create_run_folder

    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: create_run_folder(tmp_path, "mnist-20261126-120000", True).path,
                             range(8)))
    assert sorted(p.name for p in made) == sorted(["mnist-20261126-120000"] +
                                                  [f"mnist-20261126-120000-{k}" for k in range(2, 9)])
    with pytest.raises(NetvizError, match="already exists: pass another --name"):
        create_run_folder(tmp_path, "mnist-20261126-120000", False)


def test_a_full_disk_names_the_file_and_leaves_nothing_half_written(tmp_path: Path, monkeypatch) -> None:
    from netviz import files

    real_replace = os.replace

    def full(src, dst):  # the disk fills up as the first checkpoint lands
        if str(dst).endswith("init.pt"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", full)
    runs = tmp_path / "runs"
    result = invoke("train", "--train-split", "test[:64]", "--eval-split", "test[64:128]", "--epochs", "1",
                    "--runs-dir", runs, "--name", "full", "--quiet")
    assert_one_line_error(result, f"cannot write {runs / 'full' / 'checkpoints' / 'init.pt'}: "
                                  "No space left on device")
    leftovers = [p.name for p in (runs / "full").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    assert not (runs / "full").exists()  # a run that could not start leaves nothing


def test_a_real_full_disk(tmp_path: Path) -> None:
    # A 1 MB tmpfs in a user namespace of its own: the first checkpoint (4.8 MB) cannot fit.
    if shutil.which("unshare") is None:
        pytest.skip("no unshare here to mount a small file system")
    mnt = tmp_path / "small"
    mnt.mkdir()
    script = (f"mount -t tmpfs -o size=1m tmpfs {mnt} && cd {mnt} && NETVIZ_DATA={SHARED_DATA} "
              f"{sys.executable} -m netviz train --train-split 'test[:64]' --eval-split 'test[64:128]' "
              f"--epochs 1 --runs-dir {mnt}/runs --name full --quiet; echo exit=$?; ls -a {mnt}/runs/full "
              f"{mnt}/runs/full/checkpoints")
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {mnt}"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.decode().strip()}")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert "exit=2" in done.stdout, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("netviz:")]
    assert lines and "No space left on device" in lines[0] and "init.pt" in lines[0], done.stderr
    assert ".tmp" not in done.stdout  # no temporary file left behind
