"""Options declared once: a frozen dataclass per command (and per attribution method), one
:func:`option` per field with its default, its help and its kind of value.

From that one declaration come the command's click options (``netviz.cli`` reads the fields), the
Python function's keywords and defaults (:func:`takes` gives the function that signature), and
what its manifest records (:meth:`CommandOptions.record`). A leaf: it imports nothing of netviz,
so compute modules declare their options without reaching upwards.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


def option(default: Any, help: str, kind: str = "str", *, cli: bool = True, flags: Sequence[str] = (),
           choices: Sequence[str] | None = None, most: float | None = None, multiple: bool = False,
           case_sensitive: bool = True, metavar: str | None = None) -> Any:
    """One option: its default, its help and its kind of value, read by the CLI to make ``--name``.

    ``kind``: ``str``, ``path`` (a folder), ``file`` (a path), ``flag`` (``--name`` turns it on),
    ``switch`` (``--name/--no-name``), ``choice`` (one of ``choices``), or a number: ``count``
    (a whole number >= 1), ``whole`` (>= 0), ``int``, ``float``, ``positive``, ``nonneg`` (a
    float >= 0), ``fraction`` (0 to 1), ``seed``; ``most`` bounds a number from above. ``flags``:
    the option's names on the command line when they are not ``--name`` (the first is the one a
    manifest's command line uses). ``cli=False``: set by the command itself, not an option of its
    own. ``multiple``: repeatable, a tuple of values.
    """
    metadata = {"help": help, "kind": kind, "cli": cli, "flags": tuple(flags), "choices": choices, "most": most,
                "multiple": multiple, "case_sensitive": case_sensitive, "metavar": metavar}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class CommandOptions:
    """What a command takes besides the model: a frozen dataclass of :func:`option` fields.

    ``positional``: fields the Python function also takes by position after ``run`` (a method's
    name: ``attribute(run, "occlusion")``).
    """

    positional: ClassVar[tuple[str, ...]] = ()
    # options of the methods it takes that the command sets itself (not options of its own)
    sets: ClassVar[tuple[str, ...]] = ()

    def check(self) -> None:
        """Options that cannot go together, checked before any work (one line each)."""

    def values(self) -> dict[str, Any]:
        """Every field as it is, by name (the keywords of the function these options came to)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def record(self) -> dict[str, Any]:
        """What the manifest records: every field, as JSON can hold it."""
        return {name: self.recorded(name, value) for name, value in self.values().items()}

    def recorded(self, name: str, value: Any) -> Any:
        """How one field's value is recorded (a subclass describes images given as tensors)."""
        return list(value) if isinstance(value, tuple) else value


def takes(options_type: type[CommandOptions]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A command function ``f(run, out=None, *, options, quiet=False, overwrite=False[, **more])``
    as its users call it: ``f(run, [positional fields,] out=None, *, every field=its default, quiet,
    overwrite[, **more])``. The call builds ``options_type`` from the keywords (a name it does not
    know is a ``TypeError``, as for any Python function), checks it and hands it to ``f``."""

    def wrap(function: Callable[..., Any]) -> Callable[..., Any]:
        own = inspect.signature(function).parameters
        more = next((p for p in own.values() if p.kind is p.VAR_KEYWORD), None)
        names = [f.name for f in fields(options_type)]
        public = signature_of(options_type, own, more)

        @functools.wraps(function)
        def command(*args: Any, **kwargs: Any) -> Any:
            bound = public.bind(*args, **kwargs)
            bound.apply_defaults()
            given = dict(bound.arguments)
            rest = given.pop(more.name, {}) if more is not None else {}
            options = options_type(**{n: given.pop(n) for n in names})
            options.check()
            return function(**given, options=options, **rest)

        command.__signature__ = public  # type: ignore[attr-defined]
        command.options_type = options_type  # type: ignore[attr-defined]
        return command

    return wrap


def signature_of(options_type: type[CommandOptions], own: Any, more: inspect.Parameter | None) -> inspect.Signature:
    """The public signature: ``run``, the positional fields, ``out``, then every field by keyword,
    the function's other keywords and its ``**more``."""
    P = inspect.Parameter
    declared = {f.name: f for f in fields(options_type)}
    params = [own["run"].replace()]
    params += [P(n, P.POSITIONAL_OR_KEYWORD, default=declared[n].default, annotation=declared[n].type)
               for n in options_type.positional]
    if "out" in own:
        params.append(own["out"].replace(kind=P.POSITIONAL_OR_KEYWORD))
    params += [P(n, P.KEYWORD_ONLY, default=f.default, annotation=f.type) for n, f in declared.items()
               if n not in options_type.positional]
    params += [p for n, p in own.items() if n not in ("run", "out", "options") and p.kind is P.KEYWORD_ONLY]
    if more is not None:
        params.append(more)
    return inspect.Signature(params)


def cli_fields(options_type: type[Any], exclude: Sequence[str] = ()) -> dict[str, Any]:
    """The fields of ``options_type`` that are command-line options, by name."""
    return {f.name: f for f in fields(options_type) if f.metadata.get("cli", True) and f.name not in exclude}


# options many commands share, written once
def dataset_option(help: str = "The data set the images come from: mnist, cifar10 or imagefolder:PATH "
                               "(default: the run's, or the model card's).") -> Any:
    return option(None, help)


def detection_option() -> Any:
    return option(None, "A detector's detections to explain, by score in each image: 0 (the best, default), 2 or "
                  "0-4 (one map each).")


def box_option() -> Any:
    return option(None, "A detector's object to explain: its box x0,y0,x1,y1 in input pixels, with --target CLASS; "
                  "the map explains the detection that matches it best.")


def data_dir_option() -> Any:
    return option(None, "Data root (default: $NETVIZ_DATA, else ~/.cache/netviz/data).", "path")


DEFAULT_SEED = 0


def seed_option() -> Any:
    """The command's seed: the CLI's common ``--seed`` sets it."""
    return option(DEFAULT_SEED, "Random seed; the same seed repeats a command exactly on the CPU.", "seed", cli=False)


def images_option() -> Any:
    return option((), "An image file; repeat for several (default: --index of the eval set).", "file",
                  flags=("--image",), multiple=True)
