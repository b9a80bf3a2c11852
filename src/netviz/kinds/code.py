"""What the file and module kinds share: importing the user's code and calling its constructor."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netviz.errors import NetvizError, close_matches, first_line


def import_file(path: Path) -> Any:
    """Import a Python file as a module of its own (its folder on sys.path while it imports)."""
    import importlib.util

    if not path.is_file():
        raise NetvizError(f"model file {path} does not exist")
    name = "netviz_user_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise NetvizError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[name]
        raise NetvizError(f"cannot import {path}: syntax error at line {exc.lineno}: {exc.msg}") from exc
    except Exception as exc:
        del sys.modules[name]
        raise NetvizError(f"cannot import {path}: {type(exc).__name__}: {first_line(exc)}") from exc
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    return module


def import_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise NetvizError(f"cannot import module '{name}': {exc.msg} (is it installed, or on "
                          "PYTHONPATH?)") from exc
    except Exception as exc:
        raise NetvizError(f"cannot import module '{name}': {type(exc).__name__}: {first_line(exc)}") from exc


def constructor(module: Any, where: str, obj: str) -> Callable[..., Any]:
    """The class or function ``obj`` of an imported module, or one line naming what it defines."""
    if not obj or not hasattr(module, obj):
        defined = sorted(n for n, v in vars(module).items()
                         if not n.startswith("_") and callable(v) and getattr(v, "__module__", None)
                         == module.__name__)
        raise NetvizError(f"{where} has no '{obj}'{close_matches(obj, defined)} (it defines: "
                          f"{', '.join(defined) or 'no classes or functions'})")
    target = getattr(module, obj)
    if not callable(target):
        raise NetvizError(f"{where}:{obj} is a {type(target).__name__}, not a class or a function "
                          "returning an nn.Module")
    return target


def accepts(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` takes a keyword ``name`` (or any keyword)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def build_from(fn: Callable[..., Any], what: str, source: Any, num_classes: int | None) -> tuple[Any, dict[str, Any]]:
    """Call the user's constructor with the source's arguments (and ``num_classes`` when it takes it)."""
    from torch import nn

    kwargs = dict(source.model_args)
    if num_classes is not None and "num_classes" not in kwargs and accepts(fn, "num_classes"):
        kwargs["num_classes"] = num_classes
    try:
        module = fn(**kwargs)
    except NetvizError:
        raise
    except Exception as exc:
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise NetvizError(f"building {what}({args}) failed: {type(exc).__name__}: {first_line(exc)}") from exc
    if not isinstance(module, nn.Module):
        raise NetvizError(f"{what} returned a {type(module).__name__}, not an nn.Module")
    return module, {}


def looks_like_file(left: str) -> bool:
    """The part before ``:NAME`` names a file (``net.py``, ``dir/net``), not an importable module."""
    import os

    return left.endswith(".py") or "/" in left or os.sep in left
