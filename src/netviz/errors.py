"""The one user-facing error type.

Library code raises :class:`NetvizError` for anything the user can fix (bad option, missing
file, unknown layer). The CLI prints its message as one line on stderr and exits with code 2;
notebook users get an ordinary exception with the same message.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence


class NetvizError(Exception):
    """A problem with the user's input: the message says what was wrong and what to do."""

    exit_code = 2


def check_choice(value: str | None, choices: Sequence[str], option: str) -> str:
    """``value`` (lower-cased; None: the first choice) if it is one of ``choices``, else one line
    naming them: ``unknown --reshape 'x': use one of auto, ...``."""
    name = (value or choices[0]).strip().lower()
    if name not in choices:
        raise NetvizError(f"unknown {option} '{value}': use one of {', '.join(choices)}{close_matches(name, choices)}")
    return name


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, for the one line a user sees."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"


def close_matches(word: str, choices: Iterable[str], n: int = 5, cutoff: float = 0.5) -> str:
    """A short ", did you mean: a, b?" suffix, or "" when nothing is close."""
    matches = difflib.get_close_matches(str(word), [str(c) for c in choices], n=n, cutoff=cutoff)
    return f"; did you mean: {', '.join(matches)}?" if matches else ""
