"""`netviz report`: one self-contained HTML page of everything netviz knows about a run.

The page is built from the run folder (training) and the manifests of every command's output
folder (:mod:`netviz.outputs`): nothing is guessed from file names. Images are embedded as data
URIs, the CSS is inline, there is no script and no font or file from outside, so the page opens
offline in any browser, with JavaScript off. It is rendered by a Jinja2 template with
autoescaping: a class, file or layer name from a user's model is text, never markup.
``--all`` first runs, in-process and with their defaults, the analyses the run does not have.
"""

from __future__ import annotations

import base64
import contextlib
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz.catalog import COMMANDS
from netviz.outputs import MANIFEST, manifests, results_root

if TYPE_CHECKING:
    from netviz.runs import Run

IMAGE_TYPES = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
MAX_IMAGE_BYTES = 1_500_000  # larger files are listed, not embedded: the page stays small


@dataclass
class Figure:
    caption: str
    uri: str  # a data: URI
    name: str


@dataclass
class Table:
    """Key numbers: ``columns`` heads (empty for a key/value table) and ``rows`` of cells."""

    columns: list[str]
    rows: list[list[str]]
    title: str = ""


@dataclass
class Block:
    """One invocation of a command (one output folder), or the training run itself."""

    title: str
    folder: str
    command_line: str
    when: str
    tables: list[Table]
    figures: list[Figure]
    files: list[tuple[str, str]]  # (relative path, caption) of everything in the folder
    how_to_read: str = ""
    more: list[Table] = field(default_factory=list)  # shown folded (e.g. the whole config)


@dataclass
class Section:
    id: str
    title: str
    how_to_read: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Report:
    title: str
    model: str
    run: str
    created: str
    version: str
    sections: list[Section]
    notes: list[str] = field(default_factory=list)


# -- reading ---------------------------------------------------------------------------------------

def data_uri(path: Path) -> str | None:
    kind = IMAGE_TYPES.get(path.suffix.lower())
    if kind is None or not path.is_file() or path.stat().st_size > MAX_IMAGE_BYTES:
        return None
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.4g}"
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value[:12]) + (", ..." if len(value) > 12 else "")
    return str(value)


def tables(summary: dict[str, Any], most: int = 24) -> list[Table]:
    """A manifest's key numbers as tables: scalars as key/value rows, a dict of dicts or a list of
    dicts as a table with one row each."""
    plain = Table([], [])
    out = [plain]
    for key, value in summary.items():
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            columns = list(dict.fromkeys(k for v in value.values() for k in v))
            rows = [[str(name)] + [_cell(v.get(c)) for c in columns] for name, v in list(value.items())[:most]]
            out.append(Table(["", *columns], rows, key))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            columns = list(dict.fromkeys(k for v in value for k in v))
            out.append(Table(columns, [[_cell(v.get(c)) for c in columns] for v in value[:most]], key))
        elif isinstance(value, dict):
            plain.rows += [[f"{key} / {k}", _cell(v)] for k, v in list(value.items())[:most]]
        else:
            plain.rows.append([key, _cell(value)])
    return [t for t in out if t.rows]


def block_from_manifest(folder: Path, manifest: dict[str, Any], root: Path) -> Block:
    command = manifest.get("command", "?")
    shown = COMMANDS[command].figures if command in COMMANDS else 4
    figures, files = [], []
    for entry in manifest.get("files", []):
        files.append((entry["path"], entry.get("caption", "")))
        if len(figures) < shown:
            uri = data_uri(folder / entry["path"])
            if uri is not None:
                figures.append(Figure(entry.get("caption", ""), uri, entry["path"]))
    try:
        rel = folder.relative_to(root).as_posix()
    except ValueError:
        rel = str(folder)
    return Block(title=rel, folder=rel, command_line=manifest.get("command_line", ""),
                 when=f"{manifest.get('started', '')}, {manifest.get('seconds', 0):.1f} s",
                 tables=tables(manifest.get("summary", {})), figures=figures, files=files,
                 how_to_read=manifest.get("how_to_read", ""))


def train_block(run: Run) -> Block | None:
    """The training run: curves, final numbers, milestones and the resolved config."""
    from netviz.files import read_json
    from netviz.runs import RunFolder

    if not run.is_training_run:
        return None
    folder = RunFolder(run.path)
    manifest = read_json(run.path / MANIFEST) if (run.path / MANIFEST).is_file() else {}
    summary = read_json(folder.summary) if folder.summary.is_file() else {}
    numbers = {k: summary[k] for k in ("train", "eval", "epochs", "final_eval_acc", "best_eval_acc",
                                       "seconds", "images_per_second") if k in summary}
    if "milestones" in summary:
        numbers["milestones"] = {k: (f"epoch {v['epoch']}, {v['seconds']:.1f} s" if v else "not reached")
                                 for k, v in summary["milestones"].items()}
    config = {k: v for k, v in run.config.items() if v is not None and k not in ("runs_dir", "name")}
    figures = []
    uri = data_uri(folder.curves)
    if uri:
        figures.append(Figure("loss and accuracy per epoch, train vs eval", uri, folder.curves.name))
    files = [(p.relative_to(run.path).as_posix(), "") for p in folder.files()]
    metrics = [{k: m.get(k) for k in ("epoch", "train_loss", "train_acc", "eval_loss", "eval_acc", "seconds")}
               for m in run.metrics]
    command = manifest.get("command_line") or _train_command(run.config)
    return Block(title=run.name, folder=".", command_line=command, when=manifest.get("started", ""),
                 tables=tables({**numbers, "metrics": metrics}), figures=figures, files=files,
                 how_to_read=COMMANDS["train"].how_to_read,
                 more=[Table([], [[k, _cell(v)] for k, v in config.items()], "config")])


def _train_command(config: dict[str, Any]) -> str:
    """A command line that repeats a run trained before manifests existed."""
    import shlex

    keys = ("model", "dataset", "train_split", "eval_split", "epochs", "batch_size", "lr", "optimizer", "seed")
    args = ["netviz", "train"]
    for k in keys:
        if config.get(k) is not None:
            args += [f"--{k.replace('_', '-')}", str(config[k])]
    return shlex.join(args)


def collect(run: Run, root: Path | None = None) -> Report:
    """Every section of the page, from the run folder and the manifests under ``root``."""
    from netviz import __version__

    root = root or results_root(run)
    sections = {c.name: Section(c.name, c.title, c.how_to_read) for c in COMMANDS.values()}
    block = train_block(run)
    if block is not None:
        sections["train"].blocks.append(block)
    for folder, manifest in manifests(root):
        command = manifest.get("command")
        if command in sections and command != "train":
            sections[command].blocks.append(block_from_manifest(folder, manifest, root))
    return Report(title=f"netviz report: {run.name}", model=run.spec.name,
                  run=str(run.path.resolve()) if run.path else "(no run: a model by name)",
                  created=datetime.now().isoformat(timespec="seconds"), version=__version__,
                  sections=list(sections.values()))


# -- writing ---------------------------------------------------------------------------------------

def render(report: Report) -> str:
    """The page's HTML, from the package's Jinja2 template, autoescaped."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("netviz", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    return env.get_template("report.html.j2").render(r=report)


def write_report(run: Run, out: str | os.PathLike | None = None, *,
                 before: Callable[[], list[str]] | None = None, options: dict[str, Any] | None = None,
                 open_page: bool = False, quiet: bool = True, overwrite: bool = False) -> Path:
    """Write ``index.html`` into ``out`` (default ``<run>/report/``, the run's page, made anew each
    time); ``before`` (`report --all`: the analyses the run is missing) runs once ``out`` is known
    to be usable and returns notes for the page. A given ``out`` follows every command's rule: a
    new or empty folder, or one holding an earlier report with ``overwrite``. Returns the page's path."""
    from netviz.files import Artifact, write_text
    from netviz.outputs import open_output
    from netviz.progress import say

    output = open_output(run, "report", out, overwrite=overwrite) if out else None  # refused before any work
    with output or contextlib.nullcontext():
        notes = before() if before is not None else []
        report = collect(run)
        report.notes = notes
        if output is not None:
            page = write_text(output.path / "index.html", render(report))
            output.publish([Artifact(page, "the report: one self-contained HTML page")], run=run,
                           options=options or {})
            page = output.final / "index.html"
        else:
            folder = results_root(run) / "report"
            made = not folder.exists()
            try:
                page = write_text(folder / "index.html", render(report))
            except BaseException:
                if made:  # a folder this call created holds the page or is not there
                    shutil.rmtree(folder, ignore_errors=True)
                raise
    size = page.stat().st_size
    say(f"report: {page} ({size / 1e6:.2f} MB, {sum(len(s.blocks) for s in report.sections)} result(s))", quiet)
    if open_page:
        import webbrowser

        webbrowser.open(page.resolve().as_uri())
    return page
