"""The attribution methods, registered by name: one :class:`Method` object per file of this package.

cli, commands, draw and evaluate read this registry; none of them branches on a method's name.
Adding a method is one file that defines its function and calls :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netviz.errors import NetvizError, close_matches

# The options `netviz attribute` and `netviz evaluate` know; a method declares which it takes.
OPTIONS = ("score", "batch_size", "baseline", "steps", "quadrature", "tolerance", "max_steps", "alphas",
           "samples", "noise", "layer", "window", "stride", "seed", "offset")
# offset: where x starts in the whole selection (a rank's share under torchrun): a method that
# draws random numbers per image skips the draws of the images before it, so each image gets
# the numbers it gets alone.


@dataclass(frozen=True)
class Method:
    """One attribution method: what it computes, what it takes, how it is drawn.

    ``function(model, x, target, **options)`` returns an ``Attribution`` (``InteriorGradients``
    for interior); ``options`` are the names of :data:`OPTIONS` it accepts (``spec`` is always
    passed, for baselines and noise in pixel units). ``signed``: its map has both signs (drawn
    green/red) rather than only >= 0. ``figures``: what ``netviz attribute`` draws for it, names
    of ``netviz.draw.attribute.FIGURES``. ``layer``: it needs a layer with a spatial output.
    """

    name: str
    function: Callable[..., Any]
    summary: str
    options: frozenset[str]
    signed: bool = True
    layer: bool = False
    figures: tuple[str, ...] = ("grid", "panels")
    evaluate: bool = True  # can be ranked by `netviz evaluate` (a map per image, shape of x)

    def kwargs(self, options: dict[str, Any]) -> dict[str, Any]:
        """The subset of ``options`` this method takes (None values left out)."""
        return {k: v for k, v in options.items() if k in self.options and v is not None}


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method under its name (one call per method file); the options it declares must be
    ones the commands know."""
    unknown = set(method.options) - set(OPTIONS)
    if unknown:
        raise ValueError(f"method {method.name} declares unknown options {sorted(unknown)}")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    """The method named ``name`` (``--method``), or a clear error listing them."""
    if name not in METHODS:
        names = list(METHODS)
        raise NetvizError(f"unknown method '{name}': use one of {', '.join(names)}"
                          f"{close_matches(name, names)}")
    return METHODS[name]


def check_method(name: str) -> str:
    get_method(name)
    return name


def method_function(name: str) -> Callable[..., Any]:
    """The function of :mod:`netviz.attribute` behind a ``--method`` name."""
    return get_method(name).function
