"""One batch-size policy for every command that runs a model over many inputs.

Memory bounds a pass (:func:`most`); within that bound the size is *measured*, not assumed: the
first batches of the work itself run at a few sizes (each twice: the first pass at a new shape
builds oneDNN's kernels), their inputs per second are timed, and the smallest size within
:data:`TOLERANCE` of the fastest is kept for the rest (a smaller batch degrades least when another
process shares the caches). The choice is remembered for the process, per model, input shape,
device and kind of work, and said in a ``--verbose`` note. A size the user gives always wins, and
the results do not depend on the size beyond float rounding; ``--batch-size`` with the size a run
recorded repeats it bit for bit.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import weakref
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("netviz")

TOLERANCE = 0.05  # a size within 5 % of the fastest rate is as fast
SMALLEST = 4  # the smallest size tried
# a size this much slower than a smaller one ends the trials (a shared machine's passes vary by
# 10-20 % from one to the next, so a smaller drop is noise, not the cache's edge)
SLOWER = 0.25
# input values a pass with a backward may hold (activations scale with them: 55 images at 224 x 224,
# a ViT's backward fits); a forward pass alone keeps none of them: twice as many
VALUES = {"cpu": 2**23, "cuda": 2**27}
MOST = {"cpu": 512, "cuda": 4096}

_chosen: weakref.WeakKeyDictionary[Any, dict[tuple, int]] = weakref.WeakKeyDictionary()


def most(item_shape: tuple[int, ...], device: Any = "cpu", *, gradients: bool = True) -> int:
    """The most inputs of ``item_shape`` a pass may take on ``device``."""
    kind = getattr(device, "type", str(device)).split(":")[0]
    kind = kind if kind in VALUES else "cuda"
    budget = VALUES[kind] * (1 if gradients else 2)
    return max(1, min(MOST[kind], budget // max(1, math.prod(item_shape))))


def batches(total: int, model: Any, item_shape: tuple[int, ...], work: str, requested: int | None = None, *,
            gradients: bool = True) -> Batches:
    """:class:`Batches` of ``total`` inputs of ``item_shape`` through ``model`` for ``work`` (what
    the measurement is remembered under, with the shape and the model's device)."""
    from netviz.device import model_device

    dev = model_device(model)
    return Batches(total, most(item_shape, dev, gradients=gradients), requested, owner=model,
                   key=key_of(model, item_shape, work), what=work)


def key_of(model: Any, item_shape: tuple[int, ...], work: str) -> tuple:
    """What a measurement is remembered under, beside the model: the work, the shape, the device."""
    from netviz.device import model_device

    return (work, tuple(item_shape), str(model_device(model)))


def trials(bound: int) -> list[int]:
    """The sizes a calibration tries: powers of two from :data:`SMALLEST`, and the bound."""
    sizes = [2**k for k in range(SMALLEST.bit_length() - 1, bound.bit_length()) if 2**k < bound]
    return [*sizes, bound]


def remembered(owner: Any, key: tuple) -> int | None:
    try:
        return _chosen.get(owner, {}).get(key)
    except TypeError:  # an owner that cannot be weakly referenced
        return None


def remember(owner: Any, key: tuple, size: int) -> None:
    with contextlib.suppress(TypeError):  # an owner that cannot be weakly referenced
        _chosen.setdefault(owner, {})[key] = size


def fastest(rates: dict[int, float]) -> int:
    """The smallest size within :data:`TOLERANCE` of the best rate."""
    best = max(rates.values())
    return min(size for size, rate in rates.items() if rate >= best * (1 - TOLERANCE))


class Batches:
    """Slices of ``total`` inputs, one a pass: ``requested`` inputs at a time when given, else the
    size remembered for (``owner``, ``key``), else calibrated on the first slices (the caller runs
    each slice before asking for the next, so the time between two is the slice's work).

    ``size`` is the size used for the rest of the work once known."""

    def __init__(self, total: int, bound: int, requested: int | None = None, *, owner: Any = None,
                 key: tuple = (), what: str = "") -> None:
        self.total, self.bound, self.owner, self.key, self.what = total, max(1, bound), owner, key, what
        self.size = requested or remembered(owner, key)
        self.rates: dict[int, float] = {}

    def __iter__(self) -> Iterator[slice]:
        start = 0
        if self.size is None:
            start = yield from self._calibrate()
        size = self.size or self.bound
        for begin in range(start, self.total, size):
            yield slice(begin, min(begin + size, self.total))

    def _calibrate(self) -> Iterator[slice]:
        start, sizes = 0, trials(self.bound)
        if self.total < sum(2 * s for s in sizes[:2]):  # too little work to measure: one bound a pass
            self.size = self.bound
            return start
        for size in sizes:
            for _ in range(2):
                if start + size > self.total:
                    return self._settle(start, partial=True)
                began = time.perf_counter()
                yield slice(start, start + size)
                rate = size / max(time.perf_counter() - began, 1e-9)
                self.rates[size] = max(self.rates.get(size, 0.0), rate)
                start += size
            if self.rates[size] < max(self.rates.values()) * (1 - SLOWER):
                break  # clearly slower than a smaller size: larger ones will not win
        return self._settle(start, partial=False)

    def _settle(self, start: int, partial: bool) -> int:
        self.size = fastest(self.rates) if self.rates else self.bound
        if not partial:
            remember(self.owner, self.key, self.size)
        rates = ", ".join(f"{s}: {r:.0f}" for s, r in sorted(self.rates.items()))
        (log.debug if partial else log.info)("batch size %d for %s (inputs/s by size: %s)", self.size,
                                             self.what or "the passes", rates)
        return start
