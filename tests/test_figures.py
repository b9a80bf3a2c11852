"""Figures people look at: no legend lies over what it explains, the report names the run's
folder in words, and every manifest says how to read its files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
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
