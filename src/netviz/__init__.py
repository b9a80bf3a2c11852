"""netviz: look inside a CNN. Train it, then see its weights, activations, dreams, attributions.

Heavy imports (torch, matplotlib) happen on first use, so ``import netviz`` and ``netviz --help``
stay instant. ``netviz.train`` and ``netviz.load_run`` are functions; no submodule carries their
names, so importing any part of netviz never replaces them (training lives in ``netviz.training``).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_run", "train", "show", "NetvizError"]

from netviz.errors import NetvizError


def __getattr__(name: str) -> Any:
    if name == "load_run":
        from netviz.runs import load_run as found
    elif name == "train":
        from netviz.training import train as found
    elif name == "show":
        from netviz.draw.show import show as found
    else:
        raise AttributeError(f"module 'netviz' has no attribute {name!r}")
    globals()[name] = found  # looked up once
    return found


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
