"""Every `netviz` command as a plain function: options in, compute, draw, publish the folder.

This is the layer between the CLI and the techniques. The CLI only parses options, opens the Run
(:func:`netviz.runs.load_run`) and prints what these return; a notebook user calls them the same
way::

    import netviz
    from netviz import commands
    run = netviz.load_run()
    commands.histogram(run, layout="grid")
    commands.attribute(run, "integrated", indices="0-15", tolerance=0.01)

Each function follows one contract: check its options, call the technique's compute module
(a result dataclass that writes its own record), have the matching ``netviz.draw`` module draw
it into a folder of its own (:func:`netviz.outputs.open_output`: ``<run>/<command>/NNN-<what>/``
or ``out``), then publish that folder with its ``manifest.json``; it returns the paths written.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz.activations import ActivationsOptions
from netviz.attribute import AttributeOptions
from netviz.audit.run import AuditOptions
from netviz.catalog import COMMANDS, Command, how_to_read, load
from netviz.dream.recipes import DreamOptions
from netviz.errors import NetvizError
from netviz.evaluate import EvaluateOptions
from netviz.explain.run import ExplainOptions
from netviz.neurons import NeuronsOptions
from netviz.options import takes

if TYPE_CHECKING:
    from netviz.layers import LayerInfo
    from netviz.registry import ModelSpec
    from netviz.runs import Run


def train(model: str | None = None, **options: Any) -> Run:
    """`netviz train`: train a model and write its run folder; ``options`` are those of
    :func:`netviz.training.train` (config, resume, epochs, train_split, seed, ...)."""
    from netviz.training import train as train_model

    return train_model(model, **options)


def layers(run: Run) -> list[LayerInfo]:
    """`netviz layers`: every addressable layer of the model (number, dotted name, type, output
    shape, parameters), the names and numbers every ``layer``/``layers`` option accepts."""
    from netviz.layers import list_layers

    return list_layers(run.model, run.spec.input_shape)


def report(run: Run, out: str | os.PathLike | None = None, *, run_all: bool = False,
           neurons: str | None = None, open_page: bool = False, quiet: bool = False, overwrite: bool = False) -> Path:
    """`netviz report`: one self-contained HTML page of everything the run has (with ``run_all``,
    first the analyses it is missing, with the options of :data:`netviz.catalog.COMMANDS`;
    ``neurons``, ``relu2:0-7``, makes those cards if the run has none of them); returns the page's
    path."""
    from netviz.report import write_report

    def before() -> list[str]:
        if neurons:
            _ensure_neurons(run, neurons, quiet)
        return _run_missing(run, neurons, quiet) if run_all else []

    return write_report(run, out, before=before, options=dict(run_all=run_all, neurons=neurons),
                        open_page=open_page, quiet=quiet, overwrite=overwrite)


def _report_analyses(run: Run, neurons: str | None) -> dict[str, tuple[list[str] | None, Callable[[], Any]]]:
    """What `report --all` runs where the run has no result of a command: per command, the command
    line its manifest keeps and the call, with the options of its catalog entry (and the classes
    and channels that depend on the model)."""
    from netviz.neurons import parse_neurons

    layer, channels = parse_neurons(neurons)
    given = {"dream": {"classes": "all" if run.spec.num_classes <= 10 else "0-9"},
             "neurons": {"layer": layer, "channels": channels}}
    analyses = {}
    for c in COMMANDS.values():
        if c.report_options is None:
            continue
        options = {**given.get(c.name, {}), **c.report_options}
        # a bare model's manifests keep the Python call instead of a command line
        argv = [c.name, str(run.path), *command_words(FUNCTIONS[c.name], options)] if run.is_training_run else None
        analyses[c.name] = (argv, functools.partial(FUNCTIONS[c.name], run, quiet=True, **options))
    return analyses


def command_words(function: Callable[..., Any], options: dict[str, Any]) -> list[str]:
    """The command-line words that give a command ``function`` these keyword ``options``: each
    field's flag from its options dataclass (None: left out, the default)."""
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(function.options_type)}
    words: list[str] = []
    for name, value in options.items():
        if value is None:
            continue
        meta = fields[name].metadata
        flag = (meta["flags"] or (f"--{name.replace('_', '-')}",))[0]
        if meta["kind"] == "flag":
            words += [flag] if value else []
        elif meta["kind"] == "switch":
            words.append(flag if value else f"--no-{flag[2:]}")
        else:
            words += [flag, str(value)]
    return words


def _run_missing(run: Run, neurons: str | None = None, quiet: bool = True) -> list[str]:
    """Run every analysis of :func:`_report_analyses` whose command has no output yet; returns
    notes about what could not run (e.g. a model without a data set)."""
    from netviz.outputs import command_line_of, manifests, results_root, set_command_line
    from netviz.progress import progress, say

    done = {m.get("command") for _, m in manifests(results_root(run))}
    notes = []
    todo = {k: v for k, v in _report_analyses(run, neurons).items() if k not in done}
    outer = command_line_of()
    try:
        for command, (argv, analysis) in progress(list(todo.items()), quiet=quiet, desc="analyses", unit="command"):
            say(f"report --all: running {command}", quiet)
            set_command_line(argv)
            try:
                analysis()
            except NetvizError as exc:
                notes.append(f"{command} could not run with its defaults: {exc}")
    finally:
        set_command_line(outer, joined=True)
    return notes


def _ensure_neurons(run: Run, neurons: str, quiet: bool) -> None:
    """Make the cards ``neurons`` asks for, unless the run already has exactly those."""
    from netviz.neurons import parse_neurons
    from netviz.outputs import manifests, results_root

    layer, channels = parse_neurons(neurons)
    for _, m in manifests(results_root(run)):
        opts = m.get("options", {})
        if m.get("command") == "neurons" and opts.get("layer") == layer and opts.get("channels") == channels:
            return
    FUNCTIONS["neurons"](run, layer=layer, channels=channels, quiet=quiet)


@takes(ActivationsOptions)
def activations(run: Run, out: str | os.PathLike | None = None, *, options: ActivationsOptions, quiet: bool = False,
                overwrite: bool = False) -> list[Path]:
    """`netviz activations`: what ``layers`` output for an image (a file, a PIL image or a tensor,
    see :func:`netviz.inputs.image_items`) or eval-set samples.

    One image writes into its output folder directly; several ``indices`` write one
    sub-folder ``index-<N>/`` each. Images are computed and drawn one at a time, so only one
    image's activations are held in memory.
    """
    from netviz.activations import default_layers, image_activations, top_activating
    from netviz.data import conform
    from netviz.distributed import is_main
    from netviz.draw.activations import MOST_TOP_DRAWN, check_mode, write_activation_set
    from netviz.layers import resolve_layers
    from netviz.outputs import open_output
    from netviz.progress import progress

    started = time.time()
    o = options
    run = run.with_dataset(o.dataset)
    image, indices, channels, colorbar, top_images = o.image, o.indices, o.channels, o.colorbar, o.top_images
    # 1. the request: mode, layers, the images
    mode = check_mode(o.mode, colorbar)
    model, spec = run.model, run.spec
    names = resolve_layers(model, o.layers) if o.layers else default_layers(model, spec)
    if not names:
        raise NetvizError("no layers given: pass --layers, e.g. --layers 3,conv6 "
                          "(see `netviz layers`)")
    data = run.eval_data(o.data_dir, o.split) if image is None or top_images else None
    class_names = data.classes if data is not None else spec.class_names
    inputs = _activation_inputs(run, image, indices, data)
    notes = _NoteOnce(quiet)
    notes(data.note if data is not None else None)

    def activations_of(inp: dict[str, Any]):
        act = image_activations(model, spec, inp["image"], names, channels, label=inp["label"],
                                class_names=class_names, source=inp["source"], index=inp["index"],
                                note=inp["note"])
        act.weights = run.caption_weights
        return act

    # 2. the first image decides which channels each layer shows; the data set's top images for
    #    them (under torchrun every rank scores its share of the data set)
    first = activations_of(inputs[0])
    top = top_pixels = None
    if top_images:
        if top_images > len(data):
            notes(f"--top-images {top_images}: {data.name} has only {len(data)} images")
        top = top_activating(model, spec, data, {ly.name: ly.channels for ly in first.layers},
                             k=min(top_images, len(data)), batch_size=o.batch_size, quiet=quiet)
        top_pixels = conform(data.images, spec)[0]
        if min(top_images, len(data)) > MOST_TOP_DRAWN:
            notes(f"--top-images {top_images}: the figure shows the first {MOST_TOP_DRAWN} per channel "
                  "(activations.json lists them all)")
    if not is_main():
        return []  # rank 0 draws and writes
    # 3. each image: compute, say, draw (one image's activations in memory at a time)
    label = "image" if image is not None else "index-" + "-".join(str(i["index"]) for i in inputs[:4])
    with open_output(run, "activations", out, label, overwrite, started) as output:
        written = []
        several = len(inputs) > 1
        summary: dict[str, Any] = {"layers": names, "images": []}
        for n, inp in enumerate(progress(inputs, quiet=quiet or not several, desc="images")):
            act = first if n == 0 else activations_of(inp)
            _say_activations(act, inp, mode, spec, notes, quiet)
            summary["images"].append({"source": act.source, "label": act.label_name, "predicted": act.predicted_name,
                                      "probability": round(act.probability, 4)})
            folder = output.path / f"index-{act.index}" if several else output.path
            written += write_activation_set(act, folder, mode=mode, colorbar=colorbar, top=top,
                                            top_data_images=top_pixels, run=run)
        return output.publish(written, run=run, options=o.record(), summary=summary,
                              how_to_read=how_to_read("activations"))


class _NoteOnce:
    """Says each note once (``note: ...`` on stderr), however many images repeat it."""

    def __init__(self, quiet: bool) -> None:
        self.quiet, self.said = quiet, set()

    def __call__(self, text: str | None) -> None:
        from netviz.progress import say

        if text and text not in self.said:
            self.said.add(text)
            say(f"note: {text}", self.quiet)


def _activation_inputs(run: Run, image: Any, indices: str | int | Sequence[int] | None,
                       data: Any) -> list[dict[str, Any]]:
    """The image file, or the chosen eval-set samples (:func:`netviz.inputs.select_inputs`), one
    entry per image, fitted to the model."""
    from netviz.inputs import select_inputs

    chosen = select_inputs(run, [image] if image is not None else (), indices, default="0", data=data)
    note = "; ".join(n.split(": ", 1)[-1] if image is not None else n for n in chosen.notes) or None
    return [{"image": chosen.images[k:k + 1], "label": chosen.labels[k],
             "source": (str(image) if isinstance(image, (str, os.PathLike)) else chosen.names[k])
             if image is not None else f"{data.name} #{i}", "index": i, "note": note}
            for k, i in enumerate(chosen.indices)]


def _say_activations(act: Any, inp: dict[str, Any], mode: str, spec: ModelSpec, notes: _NoteOnce,
                     quiet: bool) -> None:
    """The image's notes (once each) and its prediction."""
    from netviz.activations import uses_rgb
    from netviz.progress import say

    if inp["note"]:
        notes(f"{inp['source']}: {inp['note']} (to fit {spec.name})")
    for layer in act.layers:
        notes(layer.note)
        if mode == "rgb" and layer.spatial and not uses_rgb(layer, mode):
            notes(f"{layer.name}: {len(layer.channels)} channels is not a multiple of 3, drawn as grey tiles")
    truth = f" (true {act.label_name})" if act.label_name is not None else ""
    say(f"{act.source}{truth}: {act.prediction_text}", quiet)


@takes(AttributeOptions)
def attribute(run: Run, out: str | os.PathLike | None = None, *, options: AttributeOptions, quiet: bool = False,
              overwrite: bool = False, **method_options: Any) -> list[Path]:
    """`netviz attribute`: attributions of ``method`` for images (``indices`` of the eval set, or
    ``images``: files, PIL images or tensors, see :func:`netviz.inputs.image_items`).
    ``method_options`` are the method's own (``steps=64``, ``window=8``, ``layer="conv2"``...: the
    fields of its :class:`netviz.attribute.Options` dataclass; those of other methods are said to be
    ignored, so one set of options serves any method). Writes attribute.json and the method's figures
    (see the README).
    """
    from netviz.attribute import METHODS, attribute_run, check_method_options, get_method, ignored_options
    from netviz.draw.attribute import write_attribution
    from netviz.outputs import open_output
    from netviz.progress import say

    started = time.time()
    o = options
    run = run.with_dataset(o.dataset)
    m = get_method(o.method)
    check_method_options(method_options)
    ignored = ignored_options(m, method_options, METHODS.values())
    if ignored:
        say(f"note: {ignored}", quiet)
    chosen = m.make_options({**method_options, "seed": o.seed})
    result = attribute_run(run, o.method, chosen, images=o.images, indices=o.indices, target=o.target,
                           sanity=o.sanity, detection=o.detection, box=o.box, data_dir=o.data_dir, seed=o.seed,
                           quiet=quiet)
    if result is None:
        return []  # under torchrun, another rank than 0: its share is in rank 0's result
    for line in result.lines():
        say(line, quiet)
    with open_output(run, "attribute", out, o.method, overwrite, started) as output:
        written = write_attribution(result, output.path, o.style, o.percentile)
        return output.publish(written, run=run, options={**o.record(), **method_options}, summary=result.summary(),
                              how_to_read=how_to_read("attribute"))


@takes(EvaluateOptions)
def evaluate(run: Run, out: str | os.PathLike | None = None, *, options: EvaluateOptions, quiet: bool = False,
             overwrite: bool = False, **method_options: Any) -> tuple[list[Path], str]:
    """`netviz evaluate`: deletion/insertion AUCs, sanity and speed of ``methods`` on the same images
    (see :func:`netviz.evaluate.evaluate_run`); ``method_options`` are the methods' own. Returns the
    paths written (evaluate.json, curves.png, the manifest) and the ranked table."""
    from netviz.draw.evaluate import table, write_evaluation
    from netviz.evaluate import evaluate_run
    from netviz.outputs import open_output

    started = time.time()
    o = options
    run = run.with_dataset(o.dataset)
    given = {k: v for k, v in o.values().items() if k not in ("methods", "dataset")}
    ev = evaluate_run(run, o.methods, quiet=quiet, **given, **method_options)  # checks the methods before any work
    if ev is None:
        return [], ""  # under torchrun, another rank than 0
    names = ev.settings["methods"]
    with open_output(run, "evaluate", out, f"{len(names)}-methods", overwrite, started) as output:
        written = write_evaluation(ev, output.path)
        paths = output.publish(written, run=run, options={**o.record(), "methods": names, **method_options},
                               summary=ev.summary(), how_to_read=how_to_read("evaluate"))
        return paths, table(ev)


@takes(DreamOptions)
def dream(run: Run, out: str | os.PathLike | None = None, *, options: DreamOptions, quiet: bool = False,
          overwrite: bool = False) -> list[Path]:
    """`netviz dream`: maximise classes (default: all), or channels / a neuron of ``layer``.

    The recipe's settings (steps, lr, optimizer, param, init, jitter, rotate, tv, l2, blur_every,
    until, max_steps, ...; see :func:`netviz.dream.dream_classes`) are overridden by those given.
    Writes the images, grid.png, dream.json (measured on the saved PNGs) and, with ``gif``,
    dream.gif.
    """
    from netviz.draw.dream import write_dream
    from netviz.dream import dream_channels, dream_classes, parse_neuron, parse_scale, recipe_settings
    from netviz.outputs import open_output
    from netviz.progress import say

    started = time.time()
    o = options
    classes, layer, channels, recipe, gif = o.classes, o.layer, o.channels, o.recipe, o.gif
    settings = o.settings()
    compute = dict(seed=o.seed, quiet=quiet, batch_size=o.batch_size, scale=parse_scale(o.scale),
                   gif_every=o.gif_every if o.gif_every is not None else (-1 if gif else None), **settings)
    # bad settings are one line before any work
    recipe_settings(recipe or ("paper" if layer is None else "deepdream"), run.spec.input_shape,
                    scale=compute["scale"], gif_every=compute["gif_every"], **settings)
    say(f"dream: {run.name} on {run.device}", quiet)
    if layer is None:
        result = dream_classes(run, classes or "all", recipe=recipe or "paper", **compute)
        label = f"class-{classes or 'all'}"
    elif o.neuron is not None:
        picked, position = parse_neuron(o.neuron)
        result = dream_channels(run, layer, picked, position=position,
                                recipe=recipe or "deepdream", **compute)
        label = f"{result.targets[0].layer}-neuron-{picked}" if result else ""
    else:
        result = dream_channels(run, layer, channels or "0", recipe=recipe or "deepdream", **compute)
        label = f"{result.targets[0].layer}-channel-{channels or '0'}" if result else ""
    if result is None:
        return []  # under torchrun, another rank than 0: its images are in rank 0's result
    s = result.settings
    for target, stopped in zip(result.targets, result.stopped_at, strict=True):
        if s.until is not None and stopped is None:
            say(f"class {target.label} did not reach p >= {s.until:g} within {s.budget} steps "
                "(dream.json has its probability; raise --max-steps)", quiet)
    with open_output(run, "dream", out, label, overwrite, started) as output:
        written = write_dream(result, run, output.path, gif=gif or bool(o.gif_every))
        return output.publish(written, run=run, options=o.record(), summary=result.summary(),
                              how_to_read=how_to_read("dream"))


@takes(NeuronsOptions)
def neurons(run: Run, out: str | os.PathLike | None = None, *, options: NeuronsOptions, quiet: bool = False,
            overwrite: bool = False) -> list[Path]:
    """`netviz neurons`: a card per channel of ``layer`` (default: the model's middle default layer):
    its dream beside the ``top`` data-set images that excite it most, with where it fires."""
    from netviz.draw.neurons import write_neurons
    from netviz.neurons import neurons_run
    from netviz.outputs import open_output

    started = time.time()
    o = options
    run = run.with_dataset(o.dataset)
    cards = neurons_run(run, o.layer, o.channels, top=o.top, recipe=o.recipe, steps=o.steps, data_dir=o.data_dir,
                        split=o.split, batch_size=o.batch_size, seed=o.seed, quiet=quiet)
    if cards is None:
        return []  # under torchrun, another rank than 0
    with open_output(run, "neurons", out, f"{cards.layer}-{o.channels or 'default'}", overwrite, started) as output:
        written = write_neurons(cards, output.path)
        return output.publish(written, run=run, options=o.record(), summary=cards.summary(),
                              how_to_read=how_to_read("neurons"))


@takes(ExplainOptions)
def explain(run: Run, out: str | os.PathLike | None = None, *, options: ExplainOptions, quiet: bool = False,
            overwrite: bool = False, **method_options: Any) -> list[Path]:
    """`netviz explain`: which channels of ``layer`` carried each image's decision, with ``method``
    (grad-x-act, layer-integrated or lrp; ``method_options`` are its own: steps, baseline, rule...), and
    the neuron card of each top channel. Writes explain-<image>.png per image and explain.json."""
    from netviz.draw.explain import write_explanation
    from netviz.explain import explain_run
    from netviz.outputs import open_output
    from netviz.progress import say

    started = time.time()
    o = options
    run = run.with_dataset(o.dataset)
    ex = explain_run(run, o.method, images=o.images, indices=o.indices, layer=o.layer, top=o.top, target=o.target,
                     cards=o.cards, card_images=o.card_images, recipe=o.recipe, dream_steps=o.dream_steps,
                     concepts=o.concepts, data_dir=o.data_dir, split=o.split, seed=o.seed, quiet=quiet,
                     **method_options)
    if ex is None:
        return []  # under torchrun, another rank than 0
    for line in ex.lines():
        say(line, quiet)
    with open_output(run, "explain", out, f"{ex.layer}-{o.method}", overwrite, started) as output:
        written = write_explanation(ex, output.path)
        return output.publish(written, run=run, options={**o.record(), **method_options}, summary=ex.summary(),
                              how_to_read=how_to_read("explain"))


@takes(AuditOptions)
def audit(run: Run, out: str | os.PathLike | None = None, *, options: AuditOptions, quiet: bool = False,
          overwrite: bool = False, **method_options: Any) -> tuple[list[Path], str]:
    """`netviz audit`: the model over a whole split (default: its training split): per class its
    clusters and whether one relies on a shortcut; ``method_options`` are ``method``'s own. Returns
    the paths written (audit.json and the figures) and the table of flagged classes."""
    from netviz.audit import audit_run
    from netviz.draw.audit import write_audit
    from netviz.outputs import open_output

    started = time.time()
    o = options
    result = audit_run(run, dataset=o.dataset, split=o.split, data_dir=o.data_dir, method=o.method, layer=o.layer,
                       limit=o.limit, cards=o.cards, concepts=o.concepts, fit_concepts=o.fit_concepts,
                       seed=o.seed, quiet=quiet,
                       **method_options)
    if result is None:
        return [], ""  # under torchrun, another rank than 0
    with open_output(run, "audit", out, result.data.name.replace(":", "-"), overwrite, started) as output:
        written = write_audit(result, output.path)
        return output.publish(written, run=run, options={**o.record(), **method_options}, summary=result.summary(),
                              how_to_read=how_to_read("audit")), result.table()


def standard(entry: Command) -> Callable[..., Any]:
    """The Python function of a command that follows the standard outline, from its catalog entry:
    options in (checked before any work), its ``compute``, the result's lines said, its ``draw``
    into a folder of its own, that folder published with its manifest; returns the paths written
    (those ``draw`` wrote outside the folder, such as TensorBoard's event files, last)."""
    compute, draw = load(entry.compute), load(entry.draw)

    @takes(load(entry.options))
    def command(run: Run, out: str | os.PathLike | None = None, *, options: Any, quiet: bool = False,
                overwrite: bool = False) -> list[Path]:
        from netviz.files import Artifact
        from netviz.outputs import open_output
        from netviz.progress import say

        started = time.time()
        result = compute(run, options, quiet=quiet)
        if result is None:
            return []  # under torchrun, another rank than 0: rank 0 writes
        for line in result.lines():
            say(line, quiet)
        with open_output(run, entry.name, out, result.label, overwrite, started) as output:
            written = draw(result, output.path, options)
            inside = [a for a in written if isinstance(a, Artifact)]
            elsewhere = [a for a in written if not isinstance(a, Artifact)]
            paths = output.publish(inside, run=run, options=options.record(), summary=result.summary(),
                                   how_to_read=entry.how_to_read)
            paths.extend(elsewhere)
            return paths

    command.__name__ = command.__qualname__ = entry.name
    command.__doc__ = f"`netviz {entry.name}`: {entry.help}"
    return command


# the commands that follow the standard outline, made from their catalog entries
for _entry in COMMANDS.values():
    if _entry.standard:
        globals()[_entry.name] = standard(_entry)

# the command functions by name, for `report --all` and the CLI
FUNCTIONS: dict[str, Callable[..., Any]] = {c.name: globals()[c.name] for c in COMMANDS.values()
                                            if hasattr(globals().get(c.name), "options_type")}
