"""Figures people look at: no legend lies over what it explains, the report names the run's
folder in words, and every manifest says how to read its files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_train import invoke


def _legends_clear_of_their_axes(fig) -> int:
    """Every legend's box is outside the plotting area of every axes; returns the legends seen."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + list(fig.legends)
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            area = ax.get_window_extent(renderer)
            assert not box.overlaps(area), f"a legend lies over {ax.get_title() or 'a plot'}"
    return len(legends)


@pytest.fixture
def checked_figures(monkeypatch):
    """Every figure netviz saves, checked for legends over plots before it is written."""
    import netviz.draw.common as common

    real = common.save_figure
    seen = []

    def save_figure(fig, path, dpi=120):
        seen.append(_legends_clear_of_their_axes(fig))
        return real(fig, path, dpi)

    for module in ("netviz.draw.evaluate", "netviz.draw.histogram"):
        monkeypatch.setattr(f"{module}.save_figure", save_figure)
    return seen


def test_evaluate_and_histogram_legends_lie_outside_the_plots(mnist_run, tmp_path: Path, checked_figures) -> None:
    done = invoke("evaluate", str(mnist_run.path), "--methods", "saliency,gradcam,random", "--index", "0-3",
                  "--no-sanity", "--out", str(tmp_path / "e"), "--quiet")
    assert done.exit_code == 0, done.output
    done = invoke("histogram", "--model", "resnet18", "--out", str(tmp_path / "h"), "--quiet")
    assert done.exit_code == 0, done.output
    assert sum(checked_figures) >= 3  # the two curve panels' legends and the histogram panels'


def test_report_and_train_manifest_read_as_words(mnist_run, tmp_path: Path) -> None:
    manifest = json.loads((mnist_run.path / "manifest.json").read_text())
    assert len(manifest["how_to_read"]) > 40
    done = invoke("report", str(mnist_run.path), "--out", str(tmp_path / "page"), "--quiet")
    assert done.exit_code == 0, done.output
    page = (tmp_path / "page" / "index.html").read_text()
    assert " in .<" not in page and "file(s)" not in page
    assert "files in the run folder" in page


def test_attribute_and_activations_draw_without_matplotlib(mnist_run, tmp_path: Path) -> None:
    """Their default figures are drawn with PIL: the commands never import matplotlib (a second of
    every start), and the figures are there."""
    code = ("import sys; from netviz.cli import main; sys.argv = ['netviz', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
            "assert 'matplotlib' not in sys.modules, 'matplotlib was imported'")
    for args in (["attribute", str(mnist_run.path), "--index", "0-3", "--out", str(tmp_path / "a")],
                 ["attribute", str(mnist_run.path), "--index", "0-1", "--method", "gradcam", "--style", "heatmap",
                  "--out", str(tmp_path / "g")],
                 ["activations", str(mnist_run.path), "--out", str(tmp_path / "b")]):
        subprocess.run([sys.executable, "-c", code, *args, "--quiet"], check=True, capture_output=True)
    for name in ("a/integrated.png", "a/completeness.png", "g/gradcam.png", "b/activations.png", "b/layer-relu1.png"):
        with Image.open(tmp_path / name) as im:
            assert min(im.size) > 200 and im.getextrema() != ((255, 255),) * 3  # not blank


def test_the_heat_map_colours_are_matplotlibs_piyg() -> None:
    from matplotlib import colormaps

    from netviz.draw.attribute import piyg

    v = np.arange(256) / 255  # the points of matplotlib's 256-colour table: between them it rounds
    assert np.abs(piyg(v) - colormaps["PiYG"](v)[:, :3]).max() <= 1e-6


def test_a_wrong_prediction_is_captioned_in_red(mnist_run, tmp_path: Path) -> None:
    from netviz.attribute import attribute_run, get_method
    from netviz.draw.attribute import plot_grid

    report = attribute_run(mnist_run, "saliency", get_method("saliency").make_options({}), indices="0-3", quiet=True)

    def caption_red(labels: list[int]) -> int:
        report.labels = labels
        with Image.open(plot_grid(report, tmp_path / f"grid-{labels[0]}.png")) as im:
            rgb = np.asarray(im.convert("RGB")).reshape(-1, 3).astype(int)
        return int(((rgb[:, 0] == 176) & (rgb[:, 1] == 0) & (rgb[:, 2] == 32)).sum())  # sheet.RED, exactly

    right = list(report.preds)
    wrong = [(right[0] + 1) % 10, *right[1:]]
    assert caption_red(right) == 0 and caption_red(wrong) > 20
