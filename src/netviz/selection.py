"""Parsing the lists users type for indices, channels and classes: ``5``, ``0-9``, ``1,4,7-9``.

One grammar for every command, so ``--index``, ``--channels``, ``--channel`` and ``--class``
read the same way. Bounds are checked by the caller, which knows what the numbers index.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from netviz.errors import NetvizError, close_matches

RANGE_RE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_int_list(text: str, what: str) -> list[int]:
    """``"3"``, ``"0-9"``, ``"1,4,7"`` or ``"0-3,8"`` -> non-negative ints, in order, no repeats."""
    out: list[int] = []
    parts = [p.strip() for p in str(text).split(",")]
    if not any(parts):
        raise NetvizError(f"empty {what}: use N, N-M or a list like 0,4,7")
    for part in filter(None, parts):
        m = RANGE_RE.match(part)
        if not m:
            raise NetvizError(f"malformed {what} '{text}': use N, N-M or a list like 0,4,7 (no negatives)")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise NetvizError(f"{what} range '{part}' runs backwards: write it low-high, e.g. {hi}-{lo}")
        out.extend(range(lo, hi + 1))
    return list(dict.fromkeys(out))


def parse_indices(text: str | int | Sequence[int], count: int, what: str, owner: str,
                  units: str | None = None) -> list[int]:
    """``"5"``, ``"0-15"``, ``"1,4,7"``, ``"all"`` (or ints) -> indices checked against ``count``:
    the one reading of every list of data-set images, channels and classes. ``owner`` and
    ``units`` make the message: "index 12 is out of range: the eval set has 10 images (0..9)"."""
    if isinstance(text, str) and text.strip().lower() == "all":
        return list(range(count))
    if isinstance(text, str):
        items = parse_int_list(text, what)
    else:
        items = [int(text)] if isinstance(text, int) else [int(i) for i in text]
    if not items:
        raise NetvizError(f"no {what} given")
    for i in items:
        if not 0 <= i < count:
            plural = units or what + ("es" if what.endswith("s") else "s")
            raise NetvizError(f"{what} {i} is out of range: {owner} has {count} {plural} (0..{count - 1})")
    return list(dict.fromkeys(items))


def parse_classes(text: str | int | Sequence[int], names: Sequence[str], count: int, owner: str) -> list[int]:
    """Class numbers from ``"5"``, ``"0-4"``, ``"all"``, class names (``"cat,dog"``) or both
    (``"cat,3"``): the one reading of ``--class`` and ``--target`` in every command."""
    if not isinstance(text, str) or text.strip().lower() == "all":
        return parse_indices(text, count, "class", owner)
    lower = [str(n).lower() for n in names]
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if part.lower() in lower and not RANGE_RE.match(part):
            out.append(lower.index(part.lower()))
        elif RANGE_RE.match(part) or not names:
            out.extend(parse_indices(part, count, "class", owner))
        else:
            raise NetvizError(f"unknown class '{part}' of {owner}: give a class number (0..{count - 1}) or one of "
                              f"its class names{close_matches(part, [str(n) for n in names])}")
    return list(dict.fromkeys(out))


def target_text(target: str | int | Sequence[int] | None, names: Sequence[str], count: int, owner: str
                ) -> str | int | Sequence[int] | None:
    """``--target`` as the attribution functions read it: class names become numbers (``"cat,3"``
    -> ``"3,3"``: one class per image, or several summed for a multi-label model)."""
    if not isinstance(target, str):
        return target
    return ",".join(str(c) for c in parse_classes(target, names, count, owner))
