"""The README's "In a notebook" example runs as written: as a script, and as a real Jupyter
notebook (nbclient and a kernel) whose cells show pictures inline."""

from __future__ import annotations

from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def notebook_example() -> str:
    section = README.read_text(encoding="utf-8").split("## In a notebook", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_notebook_example_runs_as_written(tmp_path: Path) -> None:
    scope: dict = {}
    exec(compile(notebook_example(), "README.md", "exec"), scope)
    picture = scope["ig"].show(scope["x"])
    assert len(picture.images) == 4 and picture.images[0].size == (256, 256)
    assert picture._repr_png_().startswith(b"\x89PNG")
    shown = scope["written"].show()
    assert "gradcam.png" in shown.captions
    assert float(scope["ig"].completeness_error.max()) < 0.05


def test_the_example_as_a_real_notebook_shows_its_pictures_inline(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    code = notebook_example()
    setup, rest = code.split("\nig = ", 1)
    cells = [setup, "ig = " + rest.split("\nig.show(x)", 1)[0], "ig.show(x)",
             "cam = " + rest.split("\ncam = ", 1)[1].split("\nwritten.show()", 1)[0], "written",
             "assert isinstance(model(x), tuple) and model.training"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [[o for o in cell.outputs if o.output_type == "execute_result"] for cell in nb.cells]
    assert "image/png" in outputs[2][0]["data"]  # the Attribution's picture
    assert "<img src=\"data:image/png;base64," in outputs[4][0]["data"]["text/html"]  # the command's figures
