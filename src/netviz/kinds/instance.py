"""A model object (``load_run(model=net)``): netviz works on a view of it and never changes it."""

from __future__ import annotations

import copy
from typing import Any

from netviz.kinds import Kind


def _is_module(ref: Any) -> bool:
    return not isinstance(ref, str)


def _build(source: Any, num_classes: int | None) -> tuple[Any, dict[str, Any]]:
    from netviz.heads import headless_view

    view = headless_view(source.ref)  # a copy, when weights are loaded into it: the user's stay theirs
    return (copy.deepcopy(view) if source.weights not in (None, "default") else view), {}


KIND = Kind("instance", order=0, form="an nn.Module", meaning="a model object (Python: load_run(model=net))",
            matches=_is_module, build=_build, short_name=lambda ref: type(ref).__name__, recordable=False,
            listed=False)
