"""Every `netviz` command as a plain function: compute, then draw, then return the paths written.

This is the layer between the CLI and the techniques. The CLI only parses options, opens the Run
(:func:`netviz.runs.load_run`) and prints what these return; a notebook user calls them the same
way::

    import netviz
    from netviz import commands
    run = netviz.load_run()
    commands.histogram(run, layout="grid")
    commands.attribute(run, "integrated", indices="0-15", tolerance=0.01)

Each function checks its options first, calls the technique's compute module (pure functions
returning small dataclasses), then the matching ``netviz.draw`` module, which writes into
``<run>/<command>/`` (or ``out``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz.errors import NetvizError

if TYPE_CHECKING:
    from netviz.runs import Run


def _snapshot_label(run: Run) -> str:
    """What the single snapshot of a bare ``--model`` is: a fresh init, or pretrained weights."""
    return "pretrained weights" if run.path is None and run.weights else "initial weights"


def histogram(run: Run, out: str | os.PathLike | None = None, *,
              layers: str | Sequence[str] | None = None, bins: int = 60, include_bias: bool = False,
              layout: str = "panels", per_panel: int | None = None, log_y: bool = False,
              evolution: bool = True, tensorboard: str | os.PathLike | None = None,
              quiet: bool = False) -> list[Path]:
    """`netviz histogram`: weight histograms before vs after training, and their evolution.

    Writes histogram.json, histogram.png and, when the run recorded two or more epochs,
    distributions.png and ridgeline.png; with ``tensorboard`` also event files in that folder.
    """
    from netviz.draw.histogram import LAYOUTS, write_histograms, write_tensorboard
    from netviz.histogram import run_evolution, run_histograms
    from netviz.progress import say
    from netviz.runs import output_dir

    if layout not in LAYOUTS:  # check options before any work
        raise NetvizError(f"unknown layout '{layout}': use one of {', '.join(LAYOUTS)}")
    if per_panel is not None and per_panel < 1:
        raise NetvizError(f"--per-panel must be at least 1, not {per_panel}")
    hists = run_histograms(run, layers=layers, bins=bins, include_bias=include_bias,
                           model_label=_snapshot_label(run), quiet=quiet)
    for note in hists.notes:
        say(note, quiet)
    want_evo = evolution or tensorboard is not None
    evo = run_evolution(run, layers=layers, include_bias=include_bias) if want_evo else None
    if evolution and evo is None and run.path is not None:
        say("no per-epoch weight statistics with two or more epochs: skipping the evolution "
            "figures", quiet)
    folder = output_dir(run.path, "histogram", out, run.spec.name)
    run_name = run.name if run.path is not None else None
    paths = write_histograms(hists, folder, evolution=evo if evolution else None, layout=layout,
                             per_panel=per_panel, log_y=log_y, run_name=run_name)
    if tensorboard is not None:
        if evo is not None:
            paths += write_tensorboard(tensorboard, evolution=evo)
        else:
            paths += write_tensorboard(tensorboard, histograms=hists)
    return paths


def kernels(run: Run, out: str | os.PathLike | None = None, *, layer: str | int | None = None,
            scale: str = "kernel", max_kernels: int = 256, max_out: int = 32, max_in: int = 32,
            quiet: bool = False) -> list[Path]:
    """`netviz kernels`: a convolution's kernels as images; writes kernels-<layer>.png and .json."""
    from netviz.draw.kernels import SCALES, write_kernels
    from netviz.kernels import run_kernels
    from netviz.progress import say
    from netviz.runs import output_dir

    if scale not in SCALES:
        raise NetvizError(f"unknown scale '{scale}': use one of {', '.join(SCALES)}")
    ks = run_kernels(run, layer=layer, max_kernels=max_kernels, max_out=max_out, max_in=max_in,
                     model_label=_snapshot_label(run))
    if ks.note:
        say(ks.note, quiet)
    folder = output_dir(run.path, "kernels", out, run.spec.name)
    return write_kernels(ks, folder, scale=scale, model_name=run.spec.name,
                         run_name=run.name if run.path is not None else None)


def activations(run: Run, out: str | os.PathLike | None = None, *,
                image: str | os.PathLike | None = None,
                index: str | int | Sequence[int] | None = None,
                layers: str | Sequence[str | int] | None = None,
                channels: str | int | Sequence[int] | None = None, mode: str = "grey",
                colorbar: bool = False, top_images: int = 0,
                data_dir: str | os.PathLike | None = None, split: str | None = None,
                batch_size: int = 256, quiet: bool = False) -> list[Path]:
    """`netviz activations`: what ``layers`` output for an image file or eval-set samples.

    One image writes into ``<run>/activations/`` (or ``out``); several ``index`` values write one
    sub-folder ``index-<N>/`` each. Images are computed and drawn one at a time, so only one
    image's activations are held in memory.
    """
    from netviz.activations import default_layers, image_activations, select_indices, top_activating
    from netviz.data import conform, load_image
    from netviz.draw.activations import check_mode, uses_rgb, write_activation_set
    from netviz.layers import resolve_layers
    from netviz.progress import progress, say
    from netviz.runs import output_dir

    mode = check_mode(mode, colorbar)
    if image is not None and index is not None:
        raise NetvizError("pass either --image or --index, not both")
    if top_images < 0:
        raise NetvizError(f"--top-images {top_images}: use 0 (off) or a positive count")
    model, spec = run.model, run.spec
    names = resolve_layers(model, layers) if layers else default_layers(model, spec)
    if not names:
        raise NetvizError("no layers given: pass --layers, e.g. --layers 3,conv6 "
                          "(see `netviz layers`)")
    data = run.eval_data(data_dir, split) if image is None or top_images else None
    class_names = data.classes if data is not None else spec.class_names

    inputs: list[dict[str, Any]] = []
    if image is not None:
        pixels, note = load_image(image, spec)
        inputs.append({"image": pixels, "label": None, "source": str(image), "index": None,
                       "note": note})
    else:
        for i in select_indices(index, len(data), data.name):
            pixels, note = conform(data.images[i:i + 1], spec)
            inputs.append({"image": pixels, "label": int(data.labels[i]),
                           "source": f"{data.name} #{i}", "index": i, "note": note})
    root = output_dir(run.path, "activations", out, spec.name)
    said: set[str] = set()

    def note_once(text: str | None) -> None:
        if text and text not in said:
            said.add(text)
            say(f"note: {text}", quiet)

    paths: list[Path] = []
    top = None
    top_pixels = None
    several = len(inputs) > 1
    for inp in progress(inputs, quiet=quiet or not several, desc="images"):
        act = image_activations(model, spec, inp["image"], names, channels, label=inp["label"],
                                class_names=class_names, source=inp["source"], index=inp["index"],
                                note=inp["note"])
        if inp["note"]:
            note_once(f"{inp['source']} was {inp['note']} to fit {spec.name}")
        for layer in act.layers:
            note_once(layer.note)
            if mode == "rgb" and layer.spatial and not uses_rgb(layer, mode):
                note_once(f"{layer.name}: {len(layer.channels)} channels is not a multiple of 3, "
                          "drawn as grey tiles")
        if top_images and top is None:
            top = top_activating(model, spec, data, {ly.name: ly.channels for ly in act.layers},
                                 k=top_images, batch_size=batch_size, quiet=quiet)
            top_pixels = conform(data.images, spec)[0]
            if top_images > len(data):
                note_once(f"--top-images {top_images}: {data.name} has only {len(data)} images")
        truth = f" (true {act.label_name})" if act.label_name is not None else ""
        say(f"{act.source}{truth}: predicted {act.predicted_name} ({act.probability:.1%})", quiet)
        folder = root / f"index-{act.index}" if several else root
        paths += write_activation_set(act, folder, mode=mode, colorbar=colorbar, top=top,
                                      top_data_images=top_pixels, run=run)
    return paths


def attribute(run: Run, method: str = "integrated", out: str | os.PathLike | None = None, *,
              style: str = "overlay", percentile: float = 99.0, **options: Any) -> list[Path]:
    """`netviz attribute`: attributions of ``method`` for images; ``options`` are those of
    :func:`netviz.attribute.attribute_run` (images, indices, target, score, baseline, steps, ...).

    Writes attribute.json and the figures (see the README) into ``<run>/attribute/``.
    """
    from netviz.attribute import attribute_run, check_method
    from netviz.draw.attribute import check_drawing, write_attribution
    from netviz.runs import output_dir

    check_method(method)
    check_drawing(style, percentile)
    folder = output_dir(run.path, "attribute", out, run.spec.name)
    report = attribute_run(run, method, **options)
    return write_attribution(report, folder, style, percentile)


def evaluate(run: Run, out: str | os.PathLike | None = None, *, methods: str | Sequence[str] | None = None,
             quiet: bool = False, **options: Any) -> tuple[list[Path], str]:
    """`netviz evaluate`: deletion/insertion AUCs, sanity and speed of ``methods`` on the same images;
    ``options`` are those of :func:`netviz.evaluate.evaluate_run`. Returns the paths written
    (evaluate.json, curves.png) and the ranked table."""
    from netviz.draw.evaluate import table, write_evaluation
    from netviz.evaluate import evaluate_run, parse_methods
    from netviz.runs import output_dir

    parse_methods(methods)  # check before any work
    ev = evaluate_run(run, methods, quiet=quiet, **options)
    folder = output_dir(run.path, "evaluate", out, run.spec.name)
    return write_evaluation(ev, folder), table(ev)


def dream(run: Run, out: str | os.PathLike | None = None, *, classes: str | None = None,
          layer: str | int | None = None, channels: str | None = None, neuron: str | None = None,
          recipe: str | None = None, scale: str | None = None, gif: bool = False,
          gif_every: int | None = None, batch_size: int = 64, seed: int = 0,
          quiet: bool = False, **settings: Any) -> list[Path]:
    """`netviz dream`: maximise classes (default: all), or channels / a neuron of ``layer``.

    ``settings`` override the recipe (steps, lr, optimizer, param, init, jitter, rotate, tv, l2,
    blur_every, ...; see :func:`netviz.dream.dream_classes`). Writes the images, grid.png,
    dream.json (measured on the saved PNGs) and, with ``gif``, dream.gif.
    """
    from netviz.draw.dream import write_dream
    from netviz.dream import dream_channels, dream_classes, parse_neuron, parse_scale
    from netviz.progress import say
    from netviz.runs import output_dir

    if layer is None and (channels is not None or neuron is not None):
        raise NetvizError("--channel and --neuron need --layer NAME (see `netviz layers`)")
    if layer is not None and classes is not None:
        raise NetvizError("use either --class or --layer, not both")
    if channels is not None and neuron is not None:
        raise NetvizError("use either --channel or --neuron, not both")
    options = dict(seed=seed, quiet=quiet, batch_size=batch_size, scale=parse_scale(scale),
                   gif_every=gif_every if gif_every is not None else (-1 if gif else None),
                   **settings)
    say(f"dream: {run.name} on {run.device}", quiet)
    if layer is None:
        result = dream_classes(run, classes or "all", recipe=recipe or "paper", **options)
    elif neuron is not None:
        picked, position = parse_neuron(neuron)
        result = dream_channels(run, layer, picked, position=position,
                                recipe=recipe or "deepdream", **options)
    else:
        result = dream_channels(run, layer, channels or "0", recipe=recipe or "deepdream",
                                **options)
    s = result.settings
    for target, stopped in zip(result.targets, result.stopped_at, strict=True):
        if s.until is not None and stopped is None:
            say(f"class {target.label} did not reach p >= {s.until:g} within {s.budget} steps "
                "(dream.json has its probability; raise --max-steps)", quiet)
    folder = output_dir(run.path, "dream", out, run.spec.name)
    return write_dream(result, run, folder, gif=gif or bool(gif_every))
