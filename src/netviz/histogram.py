"""Weight histograms: what training did to each layer's weights.

Two sources: weight snapshots (the run's ``init`` checkpoint vs the loaded model, or one snapshot
for a bare model), binned on bins shared by all snapshots of a layer; and the per-epoch
statistics ``netviz train`` records (``weight_stats.json``), for the evolution over training.
Everything here is plain numbers in small dataclasses; drawing lives in ``netviz.draw.histogram``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from netviz.errors import NetvizError
from netviz.options import CommandOptions, option
from netviz.stats import PERCENTILES, tensor_stats

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.runs import Run


LAYOUTS = ("panels", "grid")


@dataclass(frozen=True)
class HistogramOptions(CommandOptions):
    """`netviz histogram`: which layers, how they are binned and drawn."""

    layers: str | Sequence[str] | None = option(
        None, "Only these layers (layer numbers or dotted names, e.g. 1,conv2 or features); see `netviz layers`.",
        flags=("--layer", "--layers"))
    layout: str = option("panels", "panels: the 2018 all-convolutional post's figure, one row per snapshot, "
                         "layers grouped in panels; grid: one subplot per layer, before and after overlaid on "
                         "shared bins.", "choice", choices=LAYOUTS)
    per_panel: int | None = option(None, "Layers per panel (3 gives that post's panels 1-3, 4-6, 7-9; default: 3, "
                                   "or more so there are at most 4 panels).", "count", most=64)
    # more bins than a figure has pixels show nothing more
    bins: int = option(60, "Histogram bins.", "count", most=10_000)
    log_y: bool = option(False, "Logarithmic y axis (shows the tails).", "flag")
    include_bias: bool = option(False, "Also 1-D parameters (biases, normalisation scales); default: weights "
                                "only.", "flag")
    evolution: bool = option(True, "Also draw distributions.png and ridgeline.png from the per-epoch statistics "
                             "training recorded.", "switch")
    tensorboard: str | None = option(None, "Also write the per-epoch histograms as TensorBoard summaries into DIR "
                                     "(needs the tensorboard package).", "path")

    def check(self) -> None:
        if self.layout not in LAYOUTS:
            raise NetvizError(f"unknown layout '{self.layout}': use one of {', '.join(LAYOUTS)}")
        if self.per_panel is not None and self.per_panel < 1:
            raise NetvizError(f"--per-panel must be at least 1, not {self.per_panel}")


@dataclass(frozen=True)
class Snapshot:
    """One set of weights: ``key`` names it in the JSON (init/final/...), ``label`` in figures."""

    key: str
    label: str


@dataclass
class LayerHistogram:
    """One parameter tensor across snapshots.

    ``stats[key]`` is ``stats.tensor_stats`` of snapshot ``key`` on its own bins (as training
    records it, so a narrow init bell keeps its resolution); ``shared_edges`` and
    ``shared_counts[key]`` bin every snapshot on one range, for overlays.
    """

    param: str  # state-dict name, e.g. conv1.weight
    label: str  # what legends show: the dotted module name (conv1), or conv1.bias for biases
    shape: tuple[int, ...]
    count: int
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    shared_edges: list[float] = field(default_factory=list)
    shared_counts: dict[str, list[int]] = field(default_factory=dict)

    def nonfinite(self) -> dict[str, tuple[int, int]]:
        """Snapshot key -> (NaN count, Inf count) where there are any."""
        return {k: (s["nan"], s["inf"]) for k, s in self.stats.items() if s["nan"] or s["inf"]}


@dataclass
class WeightHistograms:
    model: str
    bins: int
    snapshots: list[Snapshot]
    layers: list[LayerHistogram]
    notes: list[str] = field(default_factory=list)

    def nonfinite_summary(self) -> str:
        """'' or e.g. 'conv1 after: 3 NaN, 1 Inf' for figure titles."""
        labels = {s.key: s.label for s in self.snapshots}
        parts = []
        for layer in self.layers:
            for key, (nan, inf) in layer.nonfinite().items():
                what = ", ".join(f"{n} {w}" for n, w in ((nan, "NaN"), (inf, "Inf")) if n)
                parts.append(f"{layer.label} {labels[key]}: {what}")
        return "; ".join(parts)

    def summary(self, most: int = 12) -> dict[str, Any]:
        """Key numbers: each layer's weight std in each snapshot (the first ``most`` layers)."""
        return {"std": {layer.label: {s.label: _json_safe(layer.stats[s.key]["std"]) for s in self.snapshots}
                        for layer in self.layers[:most]},
                "layers": len(self.layers)}

    def record(self) -> dict[str, Any]:
        """What histogram.json holds."""
        return {
            "model": self.model, "bins": self.bins, "percentiles": list(PERCENTILES),
            "snapshots": {s.key: s.label for s in self.snapshots},
            "notes": self.notes,
            "layers": {
                layer.param: {
                    "label": layer.label, "shape": list(layer.shape), "count": layer.count,
                    **{k: _json_safe(v) for k, v in layer.stats.items()},
                    "shared_bins": {"edges": layer.shared_edges, "counts": layer.shared_counts},
                }
                for layer in self.layers
            },
        }


@dataclass
class LayerEvolution:
    """Per-epoch statistics of one parameter, as training recorded them (own bins per epoch)."""

    param: str
    label: str
    percentiles: list[list[float]]  # per epoch, values at stats.PERCENTILES
    edges: list[list[float]]  # per epoch
    counts: list[list[int]]  # per epoch
    mean: list[float]
    std: list[float]


@dataclass
class WeightEvolution:
    model: str
    epochs: list[int]
    layers: list[LayerEvolution]


def _json_safe(value: Any) -> Any:
    # Strict JSON has no NaN/Inf: write them as strings a reader can still parse with float().
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def param_label(param: str) -> str:
    """Legend label: ``conv1.weight`` -> ``conv1``; other tensors keep their full name."""
    return param[: -len(".weight")] if param.endswith(".weight") else param


def select_params(model: nn.Module, layers: str | Sequence[str] | None = None,
                  include_bias: bool = False) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of the parameters a histogram shows, in model order.

    Weights of conv/linear layers (ndim > 1) by default; ``include_bias`` adds 1-D parameters
    (biases, normalisation scales). ``layers`` (refs as in ``netviz layers``) keeps only the
    parameters of those modules and their children.
    """
    from netviz.layers import resolve_layers

    params = [(n, tuple(p.shape)) for n, p in model.named_parameters()
              if p.dim() > 1 or (include_bias and p.dim() > 0)]
    if layers is not None and (not isinstance(layers, str) or layers.strip()):
        modules = resolve_layers(model, layers)
        chosen = [(n, s) for n, s in params
                  if any(n.startswith(m + ".") for m in modules)]
        if not chosen:
            hint = "" if include_bias else " (add --include-bias for biases)"
            raise NetvizError(f"layer(s) {', '.join(modules)} have no weights to histogram{hint}")
        return chosen
    if not params:
        raise NetvizError(
            "the model has no weight tensors to histogram (pass --include-bias for 1-D ones)")
    return params


def _shared_range(tensors: Sequence[torch.Tensor]) -> tuple[float, float] | None:
    import torch

    lo, hi = math.inf, -math.inf
    for t in tensors:
        finite = t.detach().float().flatten()
        finite = finite[torch.isfinite(finite)]
        if finite.numel():
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    return (lo, hi) if lo <= hi else None


def weight_histograms(model: nn.Module, snapshots: Mapping[str, Mapping[str, torch.Tensor]],
                      labels: Mapping[str, str] | None = None, *, model_name: str = "model",
                      layers: str | Sequence[str] | None = None, bins: int = 60,
                      include_bias: bool = False, quiet: bool = True) -> WeightHistograms:
    """Histograms of ``model``'s weights in each snapshot (key -> state dict).

    ``model`` only decides which parameters count and their order; the numbers come from the
    snapshots. Each snapshot is binned on its own range and, for overlays, on a range shared by
    all snapshots of the layer.
    """
    if bins < 1:
        raise NetvizError(f"--bins must be at least 1, not {bins}")
    if not snapshots:
        raise NetvizError("no weights to histogram")
    labels = dict(labels or {})
    snaps = [Snapshot(k, labels.get(k, k)) for k in snapshots]
    from netviz.progress import progress

    out: list[LayerHistogram] = []
    params = select_params(model, layers, include_bias)
    for name, shape in progress(params, quiet=quiet, desc="histograms", unit="layer"):
        tensors = {}
        for key, state in snapshots.items():
            if name not in state:
                raise NetvizError(
                    f"snapshot '{key}' has no tensor '{name}': it is for another model")
            tensors[key] = state[name].detach().cpu()
        value_range = _shared_range(list(tensors.values()))
        count = math.prod(shape)
        layer = LayerHistogram(name, param_label(name), shape, count)
        for key, t in tensors.items():
            layer.stats[key] = tensor_stats(t, bins)
            if value_range is not None:
                shared = tensor_stats(t, bins, value_range)
                layer.shared_counts[key] = shared["counts"]
                layer.shared_edges = shared["edges"] or layer.shared_edges
        out.append(layer)
    return WeightHistograms(model=model_name, bins=bins, snapshots=snaps, layers=out)


def run_snapshots(run: Run, model_label: str | None = None
                  ) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, str], list[str]]:
    """(key -> state dict, key -> label, notes) of the weights a run offers, in time order.

    A run folder gives ``init`` (before training) and the loaded checkpoint (after); a checkpoint
    outside a run or a run without ``init.pt`` gives the loaded weights alone; a bare registry
    model gives one snapshot ``model`` labelled ``model_label``.
    """
    after = {k: v.detach().cpu() for k, v in run.model.state_dict().items()}
    if not run.is_training_run and run.checkpoint is None:
        return {"model": after}, {"model": model_label or run.weights_label}, []
    which = run.checkpoint.stem if run.checkpoint is not None else "final"
    init = run.state_dict("init") if run.is_training_run and which != "init" else None
    if init is None:
        notes = [] if which == "init" else [
            "no checkpoints/init.pt: only the loaded weights are shown"]
        return {which: after}, {which: f"{which} weights"}, notes
    after_label = "after training" if which == "final" else f"after training ({which}.pt)"
    return {"init": init, which: after}, {"init": "before training", which: after_label}, []


def histogram_run(run: Run, *, layers: str | Sequence[str] | None = None, bins: int = HistogramOptions.bins,
                   include_bias: bool = False, model_label: str | None = None,
                   quiet: bool = True) -> WeightHistograms:
    """Before (checkpoint ``init``) vs after (the loaded model) for a run; one snapshot otherwise.

    ``model_label`` names the single snapshot of a bare ``--model`` (default: which weights it
    has, ``run.weights_label``).
    """
    snapshots, labels, notes = run_snapshots(run, model_label)
    result = weight_histograms(run.model, snapshots, labels, model_name=run.spec.name,
                               layers=layers, bins=bins, include_bias=include_bias, quiet=quiet)
    result.notes.extend(notes)
    return result


def weight_evolution(stats: Mapping[str, Any], model: nn.Module, *, model_name: str = "model",
                     layers: str | Sequence[str] | None = None,
                     include_bias: bool = False) -> WeightEvolution | None:
    """The per-epoch statistics of ``weight_stats.json`` for the selected parameters.

    None when fewer than two epochs were recorded (nothing evolves yet).
    """
    epochs = list(stats.get("epochs", []))
    if len(epochs) < 2:
        return None
    recorded = stats.get("layers", {})
    out = []
    for name, _shape in select_params(model, layers, include_bias):
        rows = recorded.get(name)
        if rows is None or len(rows) != len(epochs):
            continue
        out.append(LayerEvolution(
            param=name, label=param_label(name),
            percentiles=[[float(v) for v in r["percentiles"]] for r in rows],
            edges=[list(r["edges"]) for r in rows], counts=[list(r["counts"]) for r in rows],
            mean=[float(r["mean"]) for r in rows], std=[float(r["std"]) for r in rows],
        ))
    return WeightEvolution(model=model_name, epochs=epochs, layers=out) if out else None


def evolution_run(run: Run, *, layers: str | Sequence[str] | None = None,
                  include_bias: bool = False) -> WeightEvolution | None:
    """:func:`weight_evolution` of a run's recorded statistics; None without a run folder."""
    stats = run.weight_stats()
    if stats is None:
        return None
    return weight_evolution(stats, run.model, model_name=run.spec.name, layers=layers,
                            include_bias=include_bias)


@dataclass
class HistogramRun:
    """What `netviz histogram` measured: the snapshots' histograms and, when asked for (and the
    run recorded two or more epochs), the per-epoch evolution."""

    histograms: WeightHistograms
    evolution: WeightEvolution | None
    run_name: str | None  # the figures' titles name a training run
    label: str  # what the output folder is named after: the layout
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return self.notes

    def summary(self) -> dict[str, Any]:
        return self.histograms.summary()


def compute(run: Run, options: HistogramOptions, quiet: bool = False) -> HistogramRun:
    """`netviz histogram`'s numbers: the run's snapshots binned, and their evolution for the figures
    or TensorBoard."""
    hists = histogram_run(run, layers=options.layers, bins=options.bins, include_bias=options.include_bias,
                          quiet=quiet)
    notes = list(hists.notes)
    wanted = options.evolution or options.tensorboard is not None
    evo = evolution_run(run, layers=options.layers, include_bias=options.include_bias) if wanted else None
    if options.evolution and evo is None and run.is_training_run:
        notes.append("no per-epoch weight statistics with two or more epochs: skipping the evolution figures")
    return HistogramRun(hists, evo, run.name if run.is_training_run else None, options.layout, notes)
