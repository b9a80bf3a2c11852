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



def notes() -> None:
    """Say netviz's notes (its ``logging`` INFO records, as the batch sizes measured) on stderr as
    "note: ..." lines, for ``--verbose``; a notebook user calls it, or configures logging."""
    import logging

    class Notes(logging.Handler):
        netviz_notes = True

        def emit(self, record: logging.LogRecord) -> None:
            say(f"note: {record.getMessage()}")

    log = logging.getLogger("netviz")
    if not any(getattr(h, "netviz_notes", False) for h in log.handlers):
        log.addHandler(Notes())
    log.setLevel(logging.INFO)
