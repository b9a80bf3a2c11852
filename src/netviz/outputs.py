"""Where a command writes: a folder of its own per invocation, published with a manifest.

``<run>/<command>/NNN-<what>/`` (``netviz-out/<model>/<command>/...`` for a model that is not a
run), created exclusively, so two invocations never share a folder even when they run at the same
time; ``<run>/<command>/latest`` points at the newest. ``--out DIR`` writes into DIR when it is
new or empty; a DIR that already holds results is refused, or replaced as a whole with
``--overwrite`` (the new results are written beside it, then swapped in).

Every folder ends with ``manifest.json``, written last: the command line that reproduces it,
netviz's version, the options, every file with a one-line caption, key numbers and how to read
them. The report reads manifests; a folder without one did not finish.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz.errors import NetvizError
from netviz.files import Artifact, current_umask, read_json, set_latest, slug, write_json

if TYPE_CHECKING:
    from netviz.runs import Run

MANIFEST = "manifest.json"
_COMMAND_LINE: list[str | None] = [None]  # set by the CLI for the invocation it runs


def set_command_line(argv: Sequence[str] | str | None, joined: bool = False) -> None:
    """The CLI records the command line it runs (``netviz dream ...``) for the manifests
    (``joined``: ``argv`` is a whole line already, as :func:`command_line_of` returns it)."""
    if argv is None or joined:
        _COMMAND_LINE[0] = argv  # type: ignore[assignment]
    else:
        _COMMAND_LINE[0] = shlex.join(["netviz", *argv])


def command_line_of() -> str | None:
    """The command line recorded now (None: a Python caller)."""
    return _COMMAND_LINE[0]


def command_line(command: str, options: dict[str, Any]) -> str:
    """The CLI's command line, or the Python call that a notebook made."""
    if _COMMAND_LINE[0] is not None:
        return _COMMAND_LINE[0]
    args = ", ".join(f"{k}={v!r}" for k, v in options.items() if v is not None)
    return f"netviz.commands.{command}(run{', ' if args else ''}{args})"


def results_root(run: Run) -> Path:
    """Where a run's command folders live: the run folder, or for a model that is not a run
    ``netviz-out/<model>/`` ("net.py:Net" -> ``netviz-out/net.py-Net/``)."""
    return run.path if run.is_training_run else Path("netviz-out").resolve() / slug(run.spec.name, 80)


def _reserve(root: Path, label: str) -> Path:
    """``root/NNN-label`` with the next free number, made with an exclusive mkdir."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NetvizError(f"cannot create output folder {root}: {exc.strerror or exc}") from exc
    taken = [int(p.name[:3]) for p in root.iterdir() if p.name[:3].isdigit()]
    number = max(taken, default=0) + 1
    for k in range(number, number + 1000):
        path = root / f"{k:03d}-{slug(label)}"
        try:
            path.mkdir()
        except FileExistsError:
            continue  # another invocation took it a moment ago
        except OSError as exc:
            raise NetvizError(f"cannot create output folder {path}: {exc.strerror or exc}") from exc
        return path
    raise NetvizError(f"no free output folder name in {root}")


@dataclass
class Output:
    """One invocation's folder. Write into ``path`` (a hidden working folder beside ``final``);
    :meth:`publish` writes the manifest and renames it into place. Used as a context manager, a
    command that fails leaves nothing: the working folder and the reserved name are removed."""

    path: Path  # where the files go now
    command: str
    final: Path  # where they are once published (an empty folder reserved for them, or replaced)
    latest: bool = False  # point <command>/latest at it
    started: float = field(default_factory=time.time)
    replace: bool = False  # --overwrite: ``final`` holds older results, swapped out on publish
    published: bool = False

    def __enter__(self) -> Output:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: Any) -> None:
        if kind is not None and not self.published:
            self.discard()

    def discard(self) -> None:
        """Remove what this invocation wrote (an earlier run's results in ``final`` stay)."""
        shutil.rmtree(self.path, ignore_errors=True)
        if not self.replace:
            with contextlib.suppress(OSError):
                self.final.rmdir()  # the reserved name, empty again

    def publish(self, artifacts: Sequence[Artifact], *, run: Run | None, options: dict[str, Any],
                summary: dict[str, Any] | None = None, how_to_read: str = "") -> list[Path]:
        """Write manifest.json last, move the folder into place, update ``latest``; return the paths."""
        files = write_manifest(self.path, self.command, artifacts, run_path=run.path if run else None,
                               model=run.spec.name if run else None, options=options, summary=summary,
                               how_to_read=how_to_read, started=self.started)
        if self.replace:
            _swap_in(self.path, self.final)
        else:
            os.replace(self.path, self.final)  # onto the empty reserved folder: atomic on POSIX
        self.published = True
        if self.latest:
            set_latest(self.final)
        return Written([self.final / f for f in files] + [self.final / MANIFEST])


class Written(list):
    """The paths a command wrote (a list of :class:`~pathlib.Path`); in a notebook, the last value
    of a cell shows its pictures inline, and :meth:`show` returns them as PIL images."""

    def show(self) -> Any:
        """The pictures among these files (:class:`netviz.draw.show.Picture`)."""
        from netviz.draw.show import show

        return show(list(self))

    def _repr_html_(self) -> str:
        import html

        try:
            pictures = self.show()._repr_html_()
        except NetvizError:
            pictures = ""
        return pictures + "<pre>" + html.escape("\n".join(str(p) for p in self)) + "</pre>"


def write_manifest(folder: Path, command: str, artifacts: Sequence[Artifact], *, run_path: Path | None,
                   model: str | None, options: dict[str, Any], summary: dict[str, Any] | None = None,
                   how_to_read: str = "", started: float | None = None) -> list[str]:
    """``folder/manifest.json`` (atomically, last); returns the files' paths relative to ``folder``."""
    from netviz import __version__

    started = started if started is not None else time.time()
    files = []
    for a in artifacts:
        rel = Path(a.path).resolve().relative_to(folder.resolve())
        files.append({"path": rel.as_posix(), "caption": a.caption})
    line, env = command_line(command, options), environment()
    write_json(folder / MANIFEST, {
        "netviz": __version__, "command": command, "command_line": line,
        "reproduce": reproducible(line, command, run_path, env), "environment": env,
        "options": _jsonable(options), "run": str(run_path.resolve()) if run_path else None, "model": model,
        "started": datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 3), "how_to_read": how_to_read,
        "summary": _jsonable(summary or {}), "files": files,
    })
    return [f["path"] for f in files]


ENVIRONMENT = ("NETVIZ_DATA", "NETVIZ_RUNS", "NETVIZ_OFFLINE")


def environment() -> dict[str, str]:
    """The variables that change what a command reads, as they were set."""
    return {k: os.environ[k] for k in ENVIRONMENT if k in os.environ}


def reproducible(line: str, command: str, run_path: Path | None, env: dict[str, str]) -> str:
    """The command line that repeats this result later: the run named even where it was implicit
    (``runs/latest`` moves), the data folder given as it was read (``env``: :func:`environment`)."""
    if not line.startswith("netviz ") or run_path is None:
        return line
    words = shlex.split(line)
    named = any(_names_run(w, run_path) for w in words[2:])
    if not named and command in words:
        at = words.index(command) + 1
        words = [*words[:at], str(run_path.resolve()), *words[at:]]
    assigned = [f"{k}={shlex.quote(v)}" for k, v in env.items() if k != "NETVIZ_RUNS"]
    return " ".join([*assigned, shlex.join(words)])


def _names_run(word: str, run_path: Path) -> bool:
    try:
        target = Path(word).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    run = run_path.resolve()
    return target == run or run in target.parents


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value) if not hasattr(value, "shape") else "tensor"


def make_dir(parent: Path, prefix: str) -> Path:
    """A new hidden folder in ``parent`` with the mode the umask gives (mkdtemp's is 0700)."""
    path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    os.chmod(path, 0o777 & ~current_umask())
    return path


def _working_folder(final: Path) -> Path:
    try:
        return make_dir(final.parent, f".{final.name}.partial.")
    except OSError as exc:
        raise NetvizError(f"cannot create output folder in {final.parent}: {exc.strerror or exc}") from exc


def _swap_in(new: Path, dest: Path) -> None:
    """Replace the folder ``dest`` by ``new`` (siblings): the old results go only once the new are in."""
    old = make_dir(dest.parent, f".{dest.name}.old.")
    os.replace(dest, old / dest.name)
    os.replace(new, dest)
    shutil.rmtree(old, ignore_errors=True)


def open_output(run: Run, command: str, out: str | os.PathLike | None = None, label: str = "",
                overwrite: bool = False, started: float | None = None) -> Output:
    """The folder this invocation of ``command`` writes into (see the module's docstring);
    ``started``: when the command began (its manifest says how long it took)."""
    output = _open(run, command, out, label, overwrite)
    if started is not None:
        output.started = started
    return output


def _open(run: Run, command: str, out: str | os.PathLike | None, label: str, overwrite: bool) -> Output:
    if out:
        return _given_folder(Path(out), command, overwrite)
    path = _reserve(results_root(run) / command, label or command)
    if not os.access(path, os.W_OK):
        path.rmdir()
        raise NetvizError(f"output folder {path} is not writable: pass --out DIR")
    return _reserved(path, command, latest=True)


def _reserved(final: Path, command: str, latest: bool = False) -> Output:
    """An Output that writes beside the empty folder ``final`` (removed again if that fails)."""
    try:
        work = _working_folder(final)
    except NetvizError:
        final.rmdir()
        raise
    return Output(work, command, final, latest=latest)


def _given_folder(dest: Path, command: str, overwrite: bool) -> Output:
    if dest.exists() and not dest.is_dir():
        raise NetvizError(f"--out {dest} is a file: pass a folder")
    if dest.is_dir() and (dest / MANIFEST).is_file():
        if not overwrite:
            held = read_json(dest / MANIFEST).get("command", "netviz")
            raise NetvizError(f"--out {dest} already holds the results of `netviz {held}`: pass another "
                              "--out, or --overwrite to replace them")
        return Output(_working_folder(dest), command, dest, replace=True)
    if dest.is_dir() and any(dest.iterdir()):
        raise NetvizError(f"--out {dest} holds other files: pass a new or empty folder")
    if dest.is_dir():
        if not os.access(dest, os.W_OK) or not os.access(dest.parent, os.W_OK):
            raise NetvizError(f"output folder {dest} is not writable: pass another --out")
        return Output(_working_folder(dest), command, dest, replace=True)  # an empty folder of the user's
    try:
        dest.mkdir(parents=True)
    except OSError as exc:
        raise NetvizError(f"cannot create output folder {dest}: {exc.strerror or exc}") from exc
    return _reserved(dest, command)


def manifests(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every finished output folder under ``root`` (one level of command folders), oldest first."""
    found, seen = [], set()
    for manifest in sorted(root.glob(f"*/*/{MANIFEST}")) + sorted(root.glob(f"*/{MANIFEST}")):
        folder = manifest.parent
        if folder.is_symlink() or folder.resolve() in seen:  # <command>/latest is one of the others
            continue
        seen.add(folder.resolve())
        try:
            found.append((folder, read_json(manifest)))
        except NetvizError:
            continue  # a manifest that cannot be read is a folder that did not finish
    return sorted(found, key=lambda pair: (pair[1].get("started", ""), str(pair[0])))
