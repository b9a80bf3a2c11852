"""Parsing the lists users type for indices, channels and classes: ``5``, ``0-9``, ``1,4,7-9``.

One grammar for every command, so ``--index``, ``--channels``, ``--channel`` and ``--class``
read the same way. Bounds are checked by the caller, which knows what the numbers index.
"""

from __future__ import annotations

import re

from netviz.errors import NetvizError

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
