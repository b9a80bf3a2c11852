"""Figures of weight histograms: before/after panels or grid, and the evolution over training."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz.draw.common import pyplot, save_figure
from netviz.errors import NetvizError
from netviz.files import Artifact, write_json

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from netviz.histogram import HistogramOptions, HistogramRun, LayerHistogram, WeightEvolution, WeightHistograms

# TensorBoard's distribution bands: outer to inner pairs of percentile indices into PERCENTILES.
_BANDS = ((0, 8), (1, 7), (2, 6), (3, 5))


def _colours(n: int) -> list:
    plt = pyplot()
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def group_sizes(n: int, per_panel: int) -> list[int]:
    """Split ``n`` layers into ceil(n / per_panel) panels of near-equal size (at most per_panel)."""
    panels = max(1, -(-n // max(1, per_panel)))
    base, extra = divmod(n, panels)
    return [base + (1 if i < extra else 0) for i in range(panels)]


def auto_per_panel(n: int) -> int:
    # 3 per panel reproduces the 2018 all-convolutional post's figure for 9 layers (docs/techniques.md
    # §2); big models get at most 4 panels per row.
    return max(3, -(-n // 4))


def _density(stats: dict[str, Any]) -> tuple[list[float], list[float]]:
    """(edges, density) so that layers with very different sizes share one y axis."""
    edges, counts = stats["edges"], stats["counts"]
    total = sum(counts)
    if not counts or total == 0:
        return [], []
    width = (edges[-1] - edges[0]) / len(counts)
    return edges, [c / (total * width) for c in counts]


def _legend_label(layer: LayerHistogram, note: str = "") -> str:
    """``fc (5,760 weights)``: says what is counted (`netviz layers` counts the bias too)."""
    what = "weights" if layer.param.endswith(".weight") else "values"
    return f"{layer.label} ({layer.count:,} {what}){note}"


def _title(h: WeightHistograms, what: str, run_name: str | None) -> str:
    title = f"{h.model}{f' ({run_name})' if run_name else ''}: {what}"
    bad = h.nonfinite_summary()
    return f"{title}\nnon-finite weights (not binned): {bad}" if bad else title


def _finish_axes(ax: Axes, log_y: bool) -> None:
    if log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.25)
    ax.tick_params(labelsize=8)


def plot_panels(h: WeightHistograms, path: str | os.PathLike, *, per_panel: int | None = None,
                log_y: bool = False, run_name: str | None = None) -> Path:
    """The 2018 all-convolutional post's figure: one row per snapshot, one panel per group of layers,
    step histograms."""
    plt = pyplot()
    sizes = group_sizes(len(h.layers), per_panel or auto_per_panel(len(h.layers)))
    rows, cols = len(h.snapshots), len(sizes)
    # colours restart in each panel: distinct within a panel, the same layer alike in every row
    colours = _colours(max(sizes))
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols + 0.6, 3.3 * rows + 0.6),
                             squeeze=False)
    start = 0
    for c, size in enumerate(sizes):
        group = list(enumerate(h.layers))[start:start + size]
        start += size
        for r, snap in enumerate(h.snapshots):
            ax = axes[r][c]
            for i, layer in group:
                edges, dens = _density(layer.stats[snap.key])
                colour = colours[(i - group[0][0]) % len(colours)]
                if edges:
                    ax.stairs(dens, edges, color=colour, linewidth=1.4, label=_legend_label(layer))
                else:
                    ax.plot([], [], color=colour, label=_legend_label(layer, ", no finite"))
            _finish_axes(ax, log_y)
            if r == len(h.snapshots) - 1:  # one legend per panel, under it: never over a histogram
                ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False)
            if c == 0:
                ax.set_ylabel(f"{snap.label}\ndensity{' (log)' if log_y else ''}", fontsize=9)
            if r == rows - 1:
                ax.set_xlabel("weight value", fontsize=9)
            if r == 0 and cols > 1:
                first, last = group[0][1].label, group[-1][1].label
                ax.set_title(first if first == last else f"{first} .. {last}", fontsize=9)
    fig.suptitle(_title(h, "weight histograms" + (
        " before vs after training" if rows == 2 else ""), run_name), fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_grid(h: WeightHistograms, path: str | os.PathLike, *, log_y: bool = False,
              run_name: str | None = None) -> Path:
    """One subplot per layer with every snapshot overlaid on the layer's shared bins."""
    fig, axes = _layer_grid(len(h.layers), 2.9, 1.0)
    snap_colours = ["#7f7f7f", "#d62728", "#1f77b4", "#2ca02c"]
    overlay = len(h.snapshots) > 1
    for ax, layer in zip(axes, h.layers, strict=True):
        for s, snap in enumerate(h.snapshots):
            counts = layer.shared_counts.get(snap.key)
            if counts:
                # the first snapshot filled grey, later ones as outlines on top of it
                ax.stairs(counts, layer.shared_edges, color=snap_colours[s % 4], linewidth=1.4,
                          fill=s == 0 and overlay, alpha=0.35 if s == 0 and overlay else 0.95,
                          label=snap.label)
        stds = " -> ".join(f"{layer.stats[snap.key]['std']:.3g}" for snap in h.snapshots)
        ax.set_title(f"{_legend_label(layer)}  std {stds}", fontsize=9)
        _finish_axes(ax, log_y)
    _label_edges(axes, "weight value", f"count{' (log)' if log_y else ''}")
    handles, labels = axes[0].get_legend_handles_labels()
    # the legend sits on its own line under the title, so a long title cannot run into it
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.955))
    fig.suptitle(_title(h, "weight histograms (shared bins per layer)", run_name), fontsize=11, y=0.995)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return save_figure(fig, path)


def _grid_shape(n: int) -> tuple[int, int]:
    """(columns, rows) of a one-subplot-per-layer grid: 2x2 for 4 layers, 3 wide up to 9, then 4."""
    cols = n if n <= 3 else 2 if n == 4 else 3 if n <= 9 else 4
    return cols, -(-n // cols)


def _layer_grid(n: int, row_height: float, extra_height: float = 0.9) -> tuple[Any, list[Any]]:
    """A figure with one subplot per layer (unused cells hidden): (figure, the n axes in order)."""
    plt = pyplot()
    cols, rows = _grid_shape(n)
    fig, axes = plt.subplots(rows, cols, figsize=(3.9 * cols + 0.4, row_height * rows + extra_height),
                             squeeze=False)
    flat = [axes[i // cols][i % cols] for i in range(rows * cols)]
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def _label_edges(axes: list[Any], xlabel: str, ylabel: str) -> None:
    """Axis labels only on the left column and the bottom subplot of each column."""
    cols = _grid_shape(len(axes))[0]
    for idx, ax in enumerate(axes):
        if idx % cols == 0:
            ax.set_ylabel(ylabel, fontsize=9)
        if idx + cols >= len(axes):
            ax.set_xlabel(xlabel, fontsize=9)


def plot_distributions(evo: WeightEvolution, path: str | os.PathLike,
                       run_name: str | None = None) -> Path:
    """TensorBoard's "distributions": percentile bands (min/7/16/31/50/69/84/93/max) per epoch."""
    import numpy as np

    fig, axes = _layer_grid(len(evo.layers), 2.7)
    x = np.asarray(evo.epochs)
    shades = ["#c6dbef", "#9ecae1", "#6baed6", "#3182bd"]
    for ax, layer in zip(axes, evo.layers, strict=True):
        q = np.asarray(layer.percentiles, dtype=float)
        names = ("min-max", "7-93 %", "16-84 %", "31-69 %")
        for (lo, hi), shade, name in zip(_BANDS, shades, names, strict=True):
            ax.fill_between(x, q[:, lo], q[:, hi], color=shade, linewidth=0, label=name)
        ax.plot(x, q[:, 4], color="#08306b", linewidth=1.5, label="median")
        ax.set_title(layer.label, fontsize=9)
        ax.set_xticks(x if len(x) <= 12 else x[:: -(-len(x) // 12)])
        ax.grid(alpha=0.25)
        ax.tick_params(labelsize=8)
    _label_edges(axes, "epoch", "weight value")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=5, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.955))
    fig.suptitle(f"{evo.model}{f' ({run_name})' if run_name else ''}: weight distributions "
                 "over training", fontsize=11, y=0.995)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return save_figure(fig, path)


def plot_ridgeline(evo: WeightEvolution, path: str | os.PathLike,
                   run_name: str | None = None) -> Path:
    """TensorBoard's "histograms" offset view: one curve per epoch, earliest at the back (top)."""
    import numpy as np

    fig, axes = _layer_grid(len(evo.layers), 3.0)
    cmap = pyplot().get_cmap("viridis")
    n_ep = len(evo.epochs)
    step = 0.55  # vertical offset between epochs, in units of each curve's own peak height
    for ax, layer in zip(axes, evo.layers, strict=True):
        for e in range(n_ep):
            edges, counts = np.asarray(layer.edges[e]), np.asarray(layer.counts[e], dtype=float)
            if counts.size == 0 or counts.max() <= 0:
                continue
            # close each curve on its baseline at the outer bin edges
            centres = np.concatenate([edges[:1], (edges[:-1] + edges[1:]) / 2, edges[-1:]])
            y0 = (n_ep - 1 - e) * step
            y = y0 + np.concatenate([[0.0], counts / counts.max(), [0.0]])
            colour = cmap(e / max(1, n_ep - 1) * 0.9)
            ax.fill_between(centres, y0, y, color="white", zorder=2 * e + 1)
            ax.plot(centres, y, color=colour, linewidth=1.2, zorder=2 * e + 2)
        ax.set_yticks([(n_ep - 1 - e) * step for e in range(n_ep)][:: max(1, -(-n_ep // 8))])
        ax.set_yticklabels([str(ep) for ep in evo.epochs][:: max(1, -(-n_ep // 8))])
        ax.set_title(layer.label, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", alpha=0.25)
    _label_edges(axes, "weight value", "epoch")
    fig.suptitle(f"{evo.model}{f' ({run_name})' if run_name else ''}: weight histograms per epoch "
                 "(each scaled to its peak)", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def write_tensorboard(logdir: str | os.PathLike, *, evolution: WeightEvolution | None = None,
                      histograms: WeightHistograms | None = None,
                      steps: Sequence[int] | None = None) -> list[Path]:
    """Per-epoch weight histograms as TensorBoard summaries (tag ``weights/<param>``).

    From ``evolution`` (one step per recorded epoch) when given, else one step per snapshot of
    ``histograms`` (``steps`` numbers them; default 0, 1, ...). Returns the event files written.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise NetvizError(
            "--tensorboard needs the tensorboard package: pip install 'netviz[tensorboard]'"
        ) from exc

    logdir = Path(logdir)
    before = set(logdir.glob("events.out.tfevents.*")) if logdir.is_dir() else set()
    try:
        writer = SummaryWriter(log_dir=str(logdir))
    except OSError as exc:
        raise NetvizError(
            f"cannot write TensorBoard logs to {logdir}: {exc.strerror or exc}") from exc
    try:
        if evolution is not None:
            for layer in evolution.layers:
                for e, epoch in enumerate(evolution.epochs):
                    _add_raw(writer, layer.param, epoch, layer.edges[e], layer.counts[e],
                             layer.mean[e], layer.std[e])
        elif histograms is not None:
            numbers = list(steps) if steps is not None else list(range(len(histograms.snapshots)))
            for layer in histograms.layers:
                for snap, step in zip(histograms.snapshots, numbers, strict=True):
                    s = layer.stats[snap.key]
                    _add_raw(writer, layer.param, step, s["edges"], s["counts"], s["mean"],
                             s["std"])
    finally:
        writer.close()
    return sorted(set(logdir.glob("events.out.tfevents.*")) - before)


def _add_raw(writer: Any, param: str, step: int, edges: list[float], counts: list[int],
             mean: float, std: float) -> None:
    n = sum(counts)
    if n == 0 or not math.isfinite(mean) or not math.isfinite(std):
        return  # nothing finite to show
    # TensorBoard buckets carry right limits only: a leading empty bucket holds the left edge.
    writer.add_histogram_raw(
        f"weights/{param}", min=edges[0], max=edges[-1], num=n, sum=mean * n,
        sum_squares=n * (std * std + mean * mean), bucket_limits=list(edges),
        bucket_counts=[0, *counts], global_step=step)


def write_histograms(h: WeightHistograms, out_dir: str | os.PathLike, *,
                     evolution: WeightEvolution | None = None, layout: str = "panels",
                     per_panel: int | None = None, log_y: bool = False,
                     run_name: str | None = None) -> list[Artifact]:
    """histogram.json + histogram.png (+ distributions.png, ridgeline.png from the evolution);
    ``layout`` and ``per_panel`` were checked by the command (:func:`netviz.commands.histogram`)."""
    out = Path(out_dir)
    data = h.record()
    if evolution is not None:
        data["epochs"] = evolution.epochs
    snapshots = " vs ".join(s.label for s in h.snapshots)
    written = [Artifact(write_json(out / "histogram.json", data),
                        "per layer and snapshot: count, mean, std, min, max, percentiles, bins")]
    if layout == "panels":
        written.append(Artifact(plot_panels(h, out / "histogram.png", per_panel=per_panel, log_y=log_y,
                                            run_name=run_name), f"weight histograms per layer: {snapshots}"))
    else:
        written.append(Artifact(plot_grid(h, out / "histogram.png", log_y=log_y, run_name=run_name),
                                f"one panel per layer, {snapshots} overlaid on shared bins"))
    if evolution is not None:
        written.append(Artifact(plot_distributions(evolution, out / "distributions.png", run_name=run_name),
                                "each layer's weight percentiles (min/7/16/31/50/69/84/93/max) per epoch"))
        written.append(Artifact(plot_ridgeline(evolution, out / "ridgeline.png", run_name=run_name),
                                "each layer's weight histogram per epoch, stacked"))
    return written


def draw(result: HistogramRun, folder: Path, options: HistogramOptions) -> list[Artifact | Path]:
    """`netviz histogram`'s figures and record (:func:`write_histograms`) and, with
    ``options.tensorboard``, the event files there (paths outside ``folder``)."""
    evo = result.evolution
    written: list[Artifact | Path] = list(write_histograms(
        result.histograms, folder, evolution=evo if options.evolution else None, layout=options.layout,
        per_panel=options.per_panel, log_y=options.log_y, run_name=result.run_name))
    if options.tensorboard is not None:
        written += write_tensorboard(options.tensorboard,
                                     **({"evolution": evo} if evo is not None else {"histograms": result.histograms}))
    return written
