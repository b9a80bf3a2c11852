"""A class, or a function returning an nn.Module, in the user's Python file: ``path/to/net.py:Net``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netviz.kinds import Kind, absolute_path
from netviz.kinds.code import build_from, constructor, import_file, looks_like_file


def _matches(ref: Any) -> bool:
    return isinstance(ref, str) and ":" in ref and looks_like_file(ref.rsplit(":", 1)[0])


def _build(source: Any, num_classes: int | None) -> tuple[Any, dict[str, Any]]:
    where, obj = str(source.ref).rsplit(":", 1)
    fn = constructor(import_file(Path(where).expanduser()), where, obj)
    return build_from(fn, f"{where}:{obj}", source, num_classes)


def _short(ref: Any) -> str:
    path, obj = str(ref).rsplit(":", 1)
    return f"{Path(path).name}:{obj}"


def _absolute(ref: str, base: Path) -> str:
    path, obj = ref.rsplit(":", 1)
    return f"{absolute_path(path, base)}:{obj}"


KIND = Kind("file", order=4, form="path/to/file.py:NAME",
            meaning="a class, or a function returning an nn.Module, in your Python file",
            matches=_matches, build=_build, short_name=_short, absolute=_absolute)
