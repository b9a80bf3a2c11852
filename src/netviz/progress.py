"""Progress bars: tqdm on a terminal, silent when not a TTY or with --quiet."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any


def progress(iterable: Iterable | None = None, *, quiet: bool = False, desc: str | None = None,
             total: int | None = None, leave: bool = False, **kwargs: Any):
    from tqdm.auto import tqdm

    from netviz.distributed import is_main

    disable = quiet or not sys.stderr.isatty() or not is_main()
    return tqdm(iterable, desc=desc, total=total, leave=leave, disable=disable,
                dynamic_ncols=True, **kwargs)


def say(message: str, quiet: bool = False) -> None:
    """A status line on stderr (stdout is kept for the paths a command wrote); rank 0 alone."""
    from netviz.distributed import is_main

    if not quiet and is_main():
        from tqdm.auto import tqdm

        tqdm.write(message, file=sys.stderr)
