"""A class, or a function returning an nn.Module, in an importable module: ``package.module:NAME``."""

from __future__ import annotations

from typing import Any

from netviz.kinds import Kind
from netviz.kinds.code import build_from, constructor, import_module, looks_like_file


def _matches(ref: Any) -> bool:
    return isinstance(ref, str) and ":" in ref and not looks_like_file(ref.rsplit(":", 1)[0])


def _build(source: Any, num_classes: int | None) -> tuple[Any, dict[str, Any]]:
    where, obj = str(source.ref).rsplit(":", 1)
    return build_from(constructor(import_module(where), where, obj), f"{where}:{obj}", source, num_classes)


KIND = Kind("module", order=5, form="package.module:NAME",
            meaning="the same in an importable module (e.g. on PYTHONPATH)", matches=_matches, build=_build)
