"""Convolution kernels as images: the first layer's filters, or any conv layer's per-channel grid.

Pure numbers: :func:`kernels_run` picks the layer and the snapshots (before/after training) and
returns the raw kernel values, capped to what a figure can show; ``netviz.draw.kernels`` turns
them into sign-preserving images.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from netviz.errors import NetvizError, close_matches
from netviz.options import CommandOptions, option

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from netviz.runs import Run

MODES = ("rgb", "grey", "channels")
SCALES = ("kernel", "layer")


@dataclass(frozen=True)
class KernelsOptions(CommandOptions):
    """`netviz kernels`: which layer, how its kernels are scaled, how many are drawn."""

    layer: str | int | None = option(None, "A conv layer (layer number or dotted name; default: the first "
                                     "convolution). Layers with other than 1 or 3 input channels are drawn as an "
                                     "output x input channel grid.")
    scale: str = option("kernel", "kernel: each kernel scaled by its own max |w|; layer: one scale for the layer "
                        "and all snapshots (shows growth).", "choice", choices=SCALES)
    max_kernels: int = option(256, "Most kernels drawn for a layer with 1 or 3 input channels.", "count")
    max_out: int = option(32, "Most output channels (rows) in the channel grid.", "count")
    max_in: int = option(32, "Most input channels (columns) in the channel grid.", "count")

    def check(self) -> None:
        if self.scale not in SCALES:
            raise NetvizError(f"unknown scale '{self.scale}': use one of {', '.join(SCALES)}")


@dataclass
class KernelSet:
    """The kernels of one conv layer in each snapshot.

    ``kernels[key]`` is a float array (shown_out, shown_in, kh, kw) of raw weights. ``mode``:
    ``rgb`` (3 input channels: one colour tile per output channel), ``grey`` (1 input channel:
    one grey tile per output channel) or ``channels`` (one grey tile per output x input channel).
    """

    layer: str
    weight_shape: tuple[int, ...]  # (out, in, kh, kw)
    mode: str
    snapshots: dict[str, str]  # key -> label, in time order
    kernels: dict[str, np.ndarray] = field(default_factory=dict)
    note: str | None = None  # set when capped
    model_name: str = ""  # for the figure's title
    run_name: str | None = None  # the training run, named in the title

    @property
    def label(self) -> str:
        """What the output folder is named after."""
        return self.layer

    def lines(self) -> list[str]:
        return [self.note] if self.note else []

    @property
    def shown_out(self) -> int:
        return next(iter(self.kernels.values())).shape[0]

    @property
    def shown_in(self) -> int:
        return next(iter(self.kernels.values())).shape[1]

    def summary(self) -> dict[str, Any]:
        """Key numbers: the layer, the largest |weight| per snapshot, the relative change."""
        import numpy as np

        return {"layer": self.layer,
                "max_abs": {label: _finite_or_none(float(np.abs(self.kernels[key]).max()))
                            for key, label in self.snapshots.items()},
                "relative_change": self.relative_change()}

    def record(self) -> dict[str, Any]:
        """What kernels-<layer>.json holds."""
        import numpy as np

        snaps: dict[str, Any] = {}
        for key, label in self.snapshots.items():
            w = self.kernels[key].astype(np.float64)
            finite = w[np.isfinite(w)]
            snaps[key] = {
                "label": label,
                "max_abs": float(np.abs(finite).max()) if finite.size else None,
                "mean": float(finite.mean()) if finite.size else None,
                "std": float(finite.std()) if finite.size else None,
                "nonfinite": int(w.size - finite.size),
                # L2 norm of each shown output channel's kernel: which filters grew or shrank
                "kernel_norms": [_finite_or_none(v) for v in
                                 np.sqrt((w ** 2).reshape(w.shape[0], -1).sum(1))],
            }
        out = {"layer": self.layer, "weight_shape": list(self.weight_shape), "mode": self.mode,
               "shown_out": self.shown_out, "shown_in": self.shown_in, "note": self.note,
               "snapshots": snaps}
        change = self.relative_change()
        if change is not None:
            out["relative_change"] = change
        return out

    def relative_change(self) -> float | None:
        """||last - first|| / ||first|| over the shown kernels, when there are two snapshots."""
        import numpy as np

        if len(self.kernels) < 2:
            return None
        keys = list(self.snapshots)
        a = self.kernels[keys[0]].astype(np.float64)
        b = self.kernels[keys[-1]].astype(np.float64)
        base = float(np.linalg.norm(a))
        return _finite_or_none(float(np.linalg.norm(b - a)) / base) if base > 0 else None


def _finite_or_none(v: float) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def conv_layers(model: nn.Module) -> list[str]:
    """Dotted names of the modules with a 4-D ``weight`` (2-D convolutions), in model order."""
    import torch

    return [name for name, m in model.named_modules()
            if name and isinstance(getattr(m, "weight", None), torch.Tensor)
            and m.weight.dim() == 4]


def pick_layer(model: nn.Module, layer: str | int | None = None) -> str:
    """``layer`` resolved as everywhere (name or index); the first convolution by default."""
    from netviz.layers import resolve_layer

    convs = conv_layers(model)
    if layer is None or str(layer).strip() == "":
        if not convs:
            raise NetvizError("the model has no 2-D convolution layer whose kernels could be drawn")
        return convs[0]
    name = resolve_layer(model, layer)
    if name not in convs:
        kind = type(model.get_submodule(name)).__name__
        listed = ", ".join(convs[:8]) + (", ..." if len(convs) > 8 else "")
        raise NetvizError(
            f"layer '{name}' is a {kind}, not a 2-D convolution: pick one of {listed or 'none'}"
            f"{close_matches(name, convs)}"
        )
    return name


def layer_kernels(model: nn.Module, snapshots: Mapping[str, Mapping[str, torch.Tensor]],
                  labels: Mapping[str, str] | None = None, *, layer: str | int | None = None,
                  max_kernels: int = 256, max_out: int = 32, max_in: int = 32) -> KernelSet:
    """The kernels of conv ``layer`` (default: the first) in each snapshot (key -> state dict).

    Layers with 1 or 3 input channels give one tile per output channel (at most
    ``max_kernels``); others a grid of output x input channels (at most max_out x max_in).
    """
    limits = ((max_kernels, "--max-kernels"), (max_out, "--max-out"), (max_in, "--max-in"))
    for value, flag in limits:
        if value < 1:
            raise NetvizError(f"{flag} must be at least 1, not {value}")
    if not snapshots:
        raise NetvizError("no weights to draw")
    name = pick_layer(model, layer)
    param = f"{name}.weight"
    shape = tuple(model.get_submodule(name).weight.shape)
    cout, cin = shape[0], shape[1]
    mode = "rgb" if cin == 3 else "grey" if cin == 1 else "channels"
    n_out = min(cout, max_kernels) if mode != "channels" else min(cout, max_out)
    n_in = cin if mode != "channels" else min(cin, max_in)
    note = None
    if mode != "channels" and n_out < cout:
        note = f"showing the first {n_out} of {cout} kernels (--max-kernels to change)"
    elif mode == "channels" and (n_out < cout or n_in < cin):
        note = (f"showing output channels 0-{n_out - 1} of {cout} x input channels 0-{n_in - 1} "
                f"of {cin} (--max-out / --max-in to change)")
    labels = dict(labels or {})
    result = KernelSet(layer=name, weight_shape=shape, mode=mode,
                       snapshots={k: labels.get(k, k) for k in snapshots}, note=note)
    for key, state in snapshots.items():
        if param not in state:
            raise NetvizError(f"snapshot '{key}' has no tensor '{param}': it is for another model")
        w = state[param].detach().float().cpu()
        result.kernels[key] = w[:n_out, :n_in].numpy().copy()
    return result


def kernels_run(run: Run, *, layer: str | int | None = None, max_kernels: int = KernelsOptions.max_kernels,
                max_out: int = KernelsOptions.max_out, max_in: int = KernelsOptions.max_in,
                model_label: str | None = None) -> KernelSet:
    """Kernels of ``layer`` before (``init``) and after training, or of the single snapshot."""
    from netviz.histogram import run_snapshots

    snapshots, labels, _notes = run_snapshots(run, model_label)
    return layer_kernels(run.model, snapshots, labels, layer=layer, max_kernels=max_kernels,
                         max_out=max_out, max_in=max_in)


def compute(run: Run, options: KernelsOptions, quiet: bool = False) -> KernelSet:
    """`netviz kernels`'s numbers: the layer's kernels in each snapshot of the run."""
    ks = kernels_run(run, layer=options.layer, max_kernels=options.max_kernels, max_out=options.max_out,
                     max_in=options.max_in)
    ks.model_name, ks.run_name = run.spec.name, run.name if run.is_training_run else None
    return ks
