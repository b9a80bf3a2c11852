"""netviz: look inside a CNN. Train it, then see its weights, activations, dreams, attributions.

Heavy imports (torch, matplotlib) happen on first use, so ``import netviz`` and ``netviz --help``
stay instant.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_run", "train", "NetvizError"]

from netviz.errors import NetvizError


def __getattr__(name: str) -> Any:
    if name == "load_run":
        from netviz.runs import load_run

        return load_run
    if name == "train":
        from netviz.train import train

        return train
    raise AttributeError(f"module 'netviz' has no attribute {name!r}")
