"""The attribution methods, registered by name: one :class:`Method` object per file of this package.

cli, commands, draw and evaluate read this registry; none of them branches on a method's name.
Adding a method is one file that defines its options (a frozen dataclass, :func:`option` per
field: default, help, kind of value), its function and calls :func:`register`; the CLI makes the
options of `netviz attribute` and `netviz evaluate` from these dataclasses.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace
from typing import Any

from netviz.errors import NetvizError, close_matches
from netviz.options import option


@dataclass(frozen=True)
class Options:
    """What every method takes: which score is explained, and how many inputs go through the
    model at once. A method's own options subclass this (one frozen dataclass per method file)."""

    score: str = option("logit", "What is explained: the target's logit, its log-probability or its "
                        "probability: logit, logprob or prob.")
    batch_size: int | None = option(None, "Inputs per forward/backward pass (default: about a million input "
                                    "values on the CPU, 256 on a GPU).", "count")

    def given(self) -> dict[str, Any]:
        """The options as keyword arguments of the method's function (None: the function's own default)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> Options:
        """These options from a command's ``values`` (other methods' options and None values are
        left out: the defaults stay)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names and v is not None})

    def check(self) -> None:
        """The options every method shares, checked before any work: one line for a bad score or a
        batch size that is not a positive whole number."""
        from netviz.attribute._common import check_batch_size, check_score

        check_score(self.score)
        if self.batch_size is not None:
            check_batch_size(self.batch_size)


@dataclass(frozen=True)
class BaselineOptions(Options):
    baseline: str | None = option("black", "What the image is compared with: black, white, blur, noise, mean "
                                  "(the eval set's mean image) or an image file of the model's size.")


@dataclass(frozen=True)
class SeededOptions(Options):
    """A method that draws random numbers: from --seed, skipping the draws of the ``offset`` images
    before this share (a rank's share under torchrun), so each image gets the numbers it gets alone."""

    seed: int = option(0, "", cli=False)
    offset: int = option(0, "", cli=False)


@dataclass(frozen=True)
class LayerOptions(Options):
    layer: str | int | None = option(None, "CAM methods (gradcam, gradcam++, layercam, scorecam, "
                                     "guided-gradcam): the layer to read, a name or number (default: the "
                                     "last layer with a spatial output).")


@dataclass(frozen=True)
class Method:
    """One attribution method: what it computes, what it takes, how it is drawn.

    ``function(model, x, target, **options)`` returns an ``Attribution`` (``InteriorGradients``
    for interior); ``options`` is the method's :class:`Options` dataclass (what it takes, with
    defaults and help; ``spec`` is always passed too, for baselines and noise in pixel units).
    ``signed``: its map has both signs (drawn green/red) rather than only >= 0. ``figures``: what
    ``netviz attribute`` draws for it, names of ``netviz.draw.attribute.FIGURES``. ``layer``: it
    needs a layer with a spatial output.
    """

    name: str
    function: Callable[..., Any]
    summary: str
    options: type[Options] = Options
    signed: bool = True
    layer: bool = False
    figures: tuple[str, ...] = ("grid", "panels")
    evaluate: bool = True  # can be ranked by `netviz evaluate` (a map per image, shape of x)
    requires: str | None = None  # an optional package it runs on (``zennit``): without it, not a default
    # the map from (x, dF/dx) alone, for a method that is one plain gradient: lets a pass that already
    # has the gradient (the audit) skip the method's own forward and backward passes
    from_gradient: Callable[[Any, Any], Any] | None = None
    # how it scores a detection it explains (netviz.detection.SIMILARITIES): grad-cam's box score,
    # or D-RISE's similarity for a method made for detectors
    detection_similarity: str = "box"

    @property
    def available(self) -> bool:
        """Its optional package is installed (methods without one always are)."""
        import importlib.util

        return self.requires is None or importlib.util.find_spec(self.requires) is not None

    def make_options(self, values: dict[str, Any]) -> Options:
        """This method's options from a command's ``values`` (see :meth:`Options.from_values`)."""
        return self.options.from_values(values)


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method under its name (one call per method file); returns it with its function taking
    the head options (:func:`with_head`), the function its file exports. An option two methods
    share must mean the same (one default, one help text): the CLI makes one ``--name`` of it."""
    known = all_options()
    for f in fields(method.options):
        other = known.get(f.name)
        if other is not None and (other.default, dict(other.metadata)) != (f.default, dict(f.metadata)):
            raise ValueError(f"method {method.name} declares option {f.name} unlike another method")
    method = replace(method, function=with_head(method.function))
    METHODS[method.name] = method
    return method


def with_head(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function(model, x, ...)`` that also takes how the model's output is read, as the CLI does:
    ``output=`` (which of a tuple's or dict's outputs holds the class scores), ``activation=``,
    ``region=``, or a whole ``head=`` (:class:`netviz.heads.Head`). The user's module is not
    changed: the head goes on a view of it (:func:`netviz.heads.headed`)."""

    @functools.wraps(function)
    def run(model: Any, x: Any, *args: Any, head: Any = None, output: str | int | None = None,
            activation: str | None = None, region: Any = None, **kwargs: Any) -> Any:
        from netviz.heads import head_from, headed

        with headed(model, head_from(head, output, activation, region)) as m:
            return function(m, x, *args, **kwargs)

    return run


def all_options() -> dict[str, Any]:
    """Every option of the registered methods (dataclass fields) by name, in first-seen order."""
    return options_of(METHODS.values())


def options_of(methods: Iterable[Any]) -> dict[str, Any]:
    """Every option (dataclass field) of ``methods``' ``options`` by name, in first-seen order."""
    found: dict[str, Any] = {}
    for method in methods:
        for f in fields(method.options):
            found.setdefault(f.name, f)
    return found


def ignored_options(method: Any, values: dict[str, Any], methods: Iterable[Any]) -> str | None:
    """A note naming the options in ``values`` that ``method`` does not take, and whose they are
    (``--window is occlusion's, not integrated's: ignored``); None when it takes them all."""
    own = {f.name for f in fields(method.options)}
    others = [k for k, v in values.items() if k not in own and v is not None]
    if not others:
        return None

    def owners(name: str) -> str:
        return " or ".join(m.name for m in methods if name in {f.name for f in fields(m.options)}) or "no method"

    said = "; ".join(f"--{k.replace('_', '-')} is for {owners(k)}" for k in others)
    return f"{said}, not {method.name}: ignored"


def check_method_options(values: dict[str, Any]) -> None:
    """Every name in ``values`` is an option of some method (a typo is one line, not ignored)."""
    known = all_options()
    for name in values:
        if name not in known:
            raise NetvizError(f"unknown attribution option '{name}': the methods take "
                              f"{', '.join(sorted(known))}{close_matches(name, list(known))}")


def get_method(name: str) -> Method:
    """The method named ``name`` (``--method``), or a clear error listing them."""
    if name not in METHODS:
        names = list(METHODS)
        raise NetvizError(f"unknown method '{name}': use one of {', '.join(names)}"
                          f"{close_matches(name, names)}")
    return METHODS[name]


def method_function(name: str) -> Callable[..., Any]:
    """The function of :mod:`netviz.attribute` behind a ``--method`` name."""
    return get_method(name).function
