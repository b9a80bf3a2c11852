"""A view of a user's module: netviz's own copy of the module tree that shares the weights.

A notebook user hands netviz their model object and keeps using it. netviz puts a head (a forward
hook) on the model, switches it to eval mode and registers hooks on its layers; done on the
user's object, ``m(x)`` would then return other values and ``m.training`` would be False. A view
is a shallow copy of every module in the tree: its own hooks, training flags and submodule
tables, the same parameter and buffer tensors (no memory, and later in-place updates of the
user's weights show). Whatever netviz changes on the view stays on the view.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


def module_view(module: nn.Module) -> nn.Module:
    """A copy of ``module``'s tree sharing its parameters and buffers (a module used twice in the
    tree is one view, used twice)."""
    views: dict[int, nn.Module] = {}

    def view(m: nn.Module) -> nn.Module:
        if id(m) in views:
            return views[id(m)]
        v = copy.copy(m)  # a new __dict__ holding the same values
        views[id(m)] = v
        for key, value in vars(m).items():
            # hook tables, parameter and buffer tables: containers of its own, the same entries
            if isinstance(value, (dict, set)):
                v.__dict__[key] = copy.copy(value)
        v.__dict__["_modules"] = {name: None if child is None else view(child)
                                  for name, child in m._modules.items()}
        return v

    return view(module)

