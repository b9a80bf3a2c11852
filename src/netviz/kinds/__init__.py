"""The kinds of model reference, one module each: how a reference is recognised, how its model is
built, how it is named and written down, and its line in the help. ``--model`` and a card's
``model`` take any of them; :func:`kind_of` finds the kind of a reference, the first (by
``order``) that matches.

Adding a kind is one new module here that defines ``KIND``: nothing else branches on a kind.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from netviz.sources import ModelSource


def _same(ref: str, base: Path) -> str:
    return ref


def absolute_path(path: str, base: Path) -> str:
    """``path`` as an absolute, resolved path: a relative one is ``base``'s."""
    p = Path(path).expanduser()
    return str((p if p.is_absolute() else base / p).resolve())


@dataclass(frozen=True)
class Kind:
    """One kind of model reference (see the module's docstring)."""

    name: str
    order: int  # tried in this order: the first that matches is the reference's kind
    form: str  # how a user writes it, as `netviz models` lists it: "path/to/model.onnx"
    meaning: str  # what it is, for the help
    matches: Callable[[Any], bool]
    # (module, what the kind knows of its input: timm's pretrained_cfg) for a source, freshly built
    build: Callable[[ModelSource, int | None], tuple[nn.Module, dict[str, Any]]] | None = None
    short_name: Callable[[Any], str] = str  # for titles, checkpoints and folders
    absolute: Callable[[str, Path], str] = _same  # the reference with its paths resolved against a folder
    holds_source: bool = False  # a file holding a whole source, the model's reference with it (a card)
    registry: bool = False  # described by its registered ModelSpec (not read off the model)
    pretrained: bool = False  # its config describes pretrained weights and ImageNet's classes
    note: Callable[[str, nn.Module, tuple[int, ...]], str] | None = None  # said when it is opened
    recordable: bool = True  # a run's config.toml can name it
    listed: bool = True  # has a line in `netviz models` and the --model help
    help_form: str = ""  # how the --model help writes it, when not as ``form``
    weights_hint: str = ""  # added to a refused checkpoint's line: how to save this kind's weights


def _discover() -> list[Kind]:
    kinds = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if isinstance(getattr(module, "KIND", None), Kind):
            kinds.append(module.KIND)
    return sorted(kinds, key=lambda k: k.order)


KINDS: list[Kind] = _discover()


def kind_of(ref: Any) -> Kind:
    """The kind of a model reference (the registry's name, the last, matches any string)."""
    return next(k for k in KINDS if k.matches(ref))


def other_ways() -> list[tuple[str, str]]:
    """(form, meaning) of every kind but the registry's own names, as `netviz models` lists them."""
    return [(k.form, k.meaning) for k in KINDS if k.listed]


def model_help() -> str:
    """The --model help, made from the kinds (the registry's names first)."""
    forms = [k.help_form or k.form for k in sorted(KINDS, key=lambda k: not k.registry) if k.listed]
    return f"A model: {', '.join(forms[:-1])} or {forms[-1]} (`netviz models` says what each form means)."
