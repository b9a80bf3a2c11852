"""The `netviz` command line: parse options, call library functions, print the paths written.

No logic lives here. Every command is a thin wrapper around a plain Python function.
Errors the user can fix become one line on stderr and exit code 2 (130 when interrupted).
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import click
from click.core import ParameterSource

from netviz import __version__, commands
from netviz.attribute import METHODS, all_options, get_method
from netviz.errors import NetvizError
from netviz.evaluate import evaluate_run
from netviz.explain.methods import CHANNEL_METHODS, all_channel_options
from netviz.kinds import model_help
from netviz.runs import load_run


class NetvizGroup(click.Group):
    """A click group that turns every error into one stderr line and an exit code."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        from netviz import distributed
        from netviz.outputs import set_command_line

        set_command_line(list(args) if args is not None else sys.argv[1:])  # for the manifests
        try:
            return self._run(args, prog_name, complete_var, standalone_mode, **extra)
        finally:
            set_command_line(None)
            distributed.shutdown()  # under torchrun: leave the process group, on errors too

    def _run(self, args: Any, prog_name: str | None, complete_var: str | None, standalone_mode: bool,
             **extra: Any) -> Any:
        try:
            rv = super().main(args=args, prog_name=prog_name or "netviz", complete_var=complete_var,
                              standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            cmd = exc.ctx.command_path if exc.ctx is not None else "netviz"
            _fail(f"{exc.format_message()} (see `{cmd} --help`)", exc.exit_code)
        except click.exceptions.Abort:
            _fail("interrupted", 130)
        except NetvizError as exc:
            # an interrupted run is not an error: it says where it stopped and how to go on
            _fail(str(exc), exc.exit_code, "" if exc.exit_code == 130 else "error: ")
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except Exception as exc:
            if os.environ.get("NETVIZ_DEBUG"):
                raise
            if type(exc).__name__ == "OutOfMemoryError":
                _fail("out of device memory: lower --batch-size, or use --device cpu", 1)
            _fail(f"internal error: {type(exc).__name__}: {exc} (set NETVIZ_DEBUG=1 for the "
                  "traceback and please report it)", 1)
        if isinstance(rv, int) and standalone_mode:
            sys.exit(rv)
        return rv


def _fail(message: str, code: int, prefix: str = "error: ") -> None:
    first, *_ = (message.strip() or "failed").splitlines()
    click.echo(f"netviz: {prefix}{first}", err=True)
    sys.exit(code)


def print_paths(paths: Iterable[str | os.PathLike]) -> None:
    """Every drawing command ends by printing the files it wrote, one per line (under torchrun,
    rank 0 alone: the others wrote nothing)."""
    from netviz.distributed import is_main

    if is_main():
        for p in paths:
            click.echo(str(p))


# -- options shared by commands ---------------------------------------------------------------

class Number(click.ParamType):
    """A number checked where it is parsed, against the least value it may take: ``--batch-size -5``
    is one line naming the option, never an internal error later."""

    def __init__(self, kind: type, least: float, strict: bool = False, most: float | None = None) -> None:
        self.kind, self.least, self.strict, self.most = kind, least, strict, most
        self.name = "integer" if kind is int else "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.INT.convert(value, param, ctx) if self.kind is int else click.FLOAT.convert(value, param, ctx)
        low = number <= self.least if self.strict else number < self.least
        if low or (self.most is not None and number > self.most):
            option = param.opts[0] if param is not None and param.opts else "the value"
            raise NetvizError(f"{option} {number}: {self.wanted(low)}")
        return number

    def wanted(self, low: bool = True) -> str:
        if self.kind is int and self.most is not None:
            return f"use {self.least + int(self.strict)} or more" if low else f"use at most {self.most:,}"
        if self.most is not None:
            return f"use a value between {self.least:g} and {self.most:g}"
        if self.kind is int:
            return f"use {self.least + int(self.strict)} or more"
        return f"use a number {'above' if self.strict else 'of at least'} {self.least:g}"


# Every size-like option has a most, so a slip of the keyboard (--bins 1000000000) is one line,
# never an hour of work or the out-of-memory killer.
MOST = 1_000_000
COUNT = Number(int, 1, most=MOST)
NONNEG = Number(int, 0, most=MOST)
SEED = Number(int, 0, most=2**32 - 1)
BINS = Number(int, 1, most=10_000)  # more bins than a figure has pixels show nothing more
PER_PANEL = Number(int, 1, most=64)
TOP = Number(int, 1, most=64)  # channels drawn per image, each with its card
POSITIVE = Number(float, 0, strict=True)
NONNEG_FLOAT = Number(float, 0)
FRACTION = Number(float, 0, most=1)


def default_of(function: Callable[..., Any], name: str) -> Any:
    """The default of ``function``'s keyword ``name``: a command's defaults are written once, in its
    Python function (or the compute function it hands its options to), and the options here read
    them (a test holds every default to that)."""
    return inspect.signature(function).parameters[name].default


def _compose(*decorators: Callable) -> Callable:
    def apply(f: Callable) -> Callable:
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


device_option = click.option("--device", default=default_of(load_run, "device"), show_default=True,
                             help="auto, cpu, cuda, cuda:N or mps.")
seed_option = click.option("--seed", type=SEED, default=default_of(commands.attribute, "seed"), show_default=True,
                           help="Random seed; the same seed repeats a command exactly on the CPU.")
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars or status lines.")
common_options = _compose(device_option, seed_option, quiet_option)

out_option = _compose(
    click.option("--out", type=click.Path(file_okay=False), default=None,
                 help="Output folder (default: a new <run>/<command>/NNN-<what>/, with "
                      "<run>/<command>/latest pointing at it)."),
    click.option("--overwrite", is_flag=True,
                 help="Replace the results already in --out (otherwise a folder holding results "
                      "is refused)."),
)
data_dir_option = click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                               help="Data root (default: $NETVIZ_DATA, else ~/.cache/netviz/data).")
dataset_option = click.option("--dataset", default=None,
                              help="The data set the images come from: mnist, cifar10 or imagefolder:PATH "
                                   "(default: the run's, or the model card's).")
runs_dir_option = click.option("--runs-dir", type=click.Path(file_okay=False), default=None,
                               help="Runs folder (default: $NETVIZ_RUNS, else ./runs).")
MODEL_HELP = model_help()
# How a model is described besides its name: the same options for train and every other command.
model_options = _compose(
    click.option("--model-arg", "model_args", multiple=True, metavar="KEY=VALUE",
                 help="A keyword argument of the model's constructor (a TOML value: 18, 0.5, "
                      "[16,32], \"relu\"); repeatable."),
    click.option("--weights", default=None,
                 help="With --model: none (fresh), default (pretrained: torchvision, timm) or a "
                      "weights file (.pt/.pth/.ckpt/.safetensors; Lightning, DataParallel and "
                      "torch.compile layouts are read; never runs code)."),
    click.option("--input-shape", default=None, metavar="C,H,W",
                 help="The input the model takes, e.g. 3,64,64 (inferred and said when not given)."),
    click.option("--mean", default=None, help="Normalisation mean per channel, e.g. 0.485,0.456,0.406."),
    click.option("--std", default=None, help="Normalisation std per channel, e.g. 0.229,0.224,0.225."),
    click.option("--classes", "class_names", default=None,
                 help="Class names: a,b,c, or a file with one name a line (or a JSON list)."),
    click.option("--output", "output", default=None, metavar="INDEX|KEY",
                 help="Which of the forward's outputs holds the class scores, when it returns a "
                      "tuple, dict or dataclass (e.g. 2, or logits)."),
    click.option("--activation", default=None, metavar="softmax|sigmoid|none",
                 help="How the scores are read as probabilities: softmax (default; one class per "
                      "image), sigmoid (multi-label) or none (already probabilities or a value)."),
    click.option("--region", default=None, metavar="pred|Y0,X0,Y1,X1",
                 help="For a model answering with a map (N, classes, H, W): a class's score is its "
                      "logit summed over the pixels predicted as it (pred, the default) or over a "
                      "box in input pixels."),
    click.option("--reshape", default=None, metavar="auto|nchw|nhwc|tokens",
                 help="How a layer of tokens (N, T, C: ViT, DeiT) or a channels-last map (N, H, W, C: "
                      "Swin) is read as channels x height x width (default: auto, guessed and said)."),
)


KINDS: dict[str, Any] = {"str": str, "int": int, "float": float, "count": COUNT, "positive": POSITIVE,
                        "nonneg": NONNEG_FLOAT}


def attribution_options(exclude: tuple[str, ...] = ()) -> Callable:
    """One ``--name`` per option the registered attribution methods declare (their Options
    dataclasses: default, help, kind of value), so a method's new option needs no change here."""
    return method_options(all_options(), exclude)


def typed(options: dict[str, Any]) -> dict[str, Any]:
    """Of a command's method options, those the user typed: the others keep the chosen method's own
    defaults, and one typed for another method can be said to be ignored."""
    ctx = click.get_current_context()
    return {k: v for k, v in options.items() if ctx.get_parameter_source(k) is not ParameterSource.DEFAULT}


def method_options(options: dict[str, Any], exclude: tuple[str, ...] = ()) -> Callable:
    """One ``--name`` per dataclass field of ``options`` (a registry's :func:`option` fields)."""
    decorators = []
    for name, f in options.items():
        if f.metadata["cli"] and name not in exclude:
            decorators.append(click.option(f"--{name.replace('_', '-')}", name, type=KINDS[f.metadata["kind"]],
                                           default=f.default, show_default=f.default is not None,
                                           help=f.metadata["help"]))
    return _compose(*decorators)


@dataclass
class SourceArgs:
    """What a command looks at, as typed: a run or checkpoint, or a model and its description."""

    run: str | None = None
    model: str | None = None
    model_args: tuple[str, ...] = ()
    weights: str | None = None
    input_shape: str | None = None
    mean: str | None = None
    std: str | None = None
    classes: str | None = None
    runs_dir: str | None = None
    output: str | None = None
    activation: str | None = None
    region: str | None = None
    reshape: str | None = None


def source_options(f: Callable) -> Callable:
    """RUN, --model and the model options, handed to the command as one ``source`` argument."""

    @functools.wraps(f)
    def command(*args: Any, run: str | None, model_name: str | None, model_args: tuple[str, ...],
                weights: str | None, input_shape: str | None, mean: str | None, std: str | None,
                class_names: str | None, runs_dir: str | None, output: str | None,
                activation: str | None, region: str | None, reshape: str | None, **kwargs: Any) -> Any:
        source = SourceArgs(run, model_name, model_args, weights, input_shape, mean, std, class_names,
                            runs_dir, output, activation, region, reshape)
        return f(*args, source=source, **kwargs)

    return _compose(
        click.argument("run", required=False, type=click.Path()),
        click.option("--model", "model_name", default=None,
                     help=MODEL_HELP + " Instead of a run, or with a weights file as RUN."),
        model_options,
        runs_dir_option,
    )(command)


def open_source(source: SourceArgs, device: str, seed: int | None = None, quiet: bool = False):
    """The Run a command acts on (see :func:`netviz.runs.load_run`), after seeding; says what
    netviz assumed about the model.

    Seeding comes first because a bare ``--model`` is freshly initialised: the seed fixes it. A
    run that is not there is said before torch is imported (a second, not five).
    """
    from netviz.runs import find_run

    if source.model is None:
        find_run(source.run, source.runs_dir)

    from netviz.device import seed_everything
    from netviz.progress import say
    from netviz.runs import load_run
    from netviz.sources import ModelSource

    seed_everything(seed)
    head = dict(output=source.output, activation=source.activation, region=source.region,
                reshape=source.reshape)
    model = None if source.model is None else ModelSource.from_options(
        source.model, model_args=source.model_args or None, weights=source.weights, input_shape=source.input_shape,
        mean=source.mean, std=source.std, classes=source.classes, **head)  # parsed and checked before any work
    run = load_run(source.run, model=model, runs_dir=source.runs_dir, device=device,
                   **(head if model is None else {}))
    for note in run.notes:
        say(f"note: {note}", quiet)
    return run


@click.group(cls=NetvizGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="netviz")
def cli() -> None:
    """Look inside a CNN: train it, then see its weights, activations, dreams and attributions.

    Commands without a RUN act on the latest training run (runs/latest). Any model opens with
    --model: a registry name (netviz models), a torchvision classifier (resnet18), your own
    path/to/file.py:NAME or package.module:NAME, timm:NAME, or a model card path/to/card.toml;
    --weights FILE loads a checkpoint into it.
    """


def main() -> None:
    cli.main(prog_name="netviz")


# -- train -------------------------------------------------------------------------------------

@cli.command()
@click.option("--model", default=None, help=MODEL_HELP + " Default: mnist.")
@model_options
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="TOML file of hyper-parameters (configs/<model>.toml); options override it.")
@click.option("--dataset", default=None, help="mnist, cifar10 or imagefolder:PATH (default: the model's).")
@data_dir_option
@click.option("--train-split", default=None,
              help="e.g. train, test[:8000], train[:10%] (default: the data set's train split).")
@click.option("--eval-split", default=None, help="e.g. test, test[8000:] (default: the data set's test split).")
@click.option("--epochs", type=COUNT, default=None, help="Passes over the training split (default: the "
              "model's recipe, 10 for mnist; configs/*.toml).")
@click.option("--batch-size", type=COUNT, default=None, help="Images per training step (default: the "
              "model's recipe, 64 for mnist).")
@click.option("--lr", type=POSITIVE, default=None, help="Learning rate (default: the model's recipe, 1.0 for mnist).")
@click.option("--optimizer", default=None, help="adadelta, adam, amsgrad, adamw or sgd (default: the model's recipe).")
@click.option("--augment", type=FRACTION, default=None,
              help="Fraction of each batch given random crop + flip, 0 to 1 (default: the model's recipe).")
@click.option("--on-nonfinite", type=click.Choice(["stop", "continue"]), default=None,
              help="When the training loss becomes NaN or infinite: stop (default) or continue.")
@click.option("--amp/--no-amp", default=None,
              help="bf16 autocast in training: on CUDA (with channels_last) and on CPUs with AMX (default on).")
@runs_dir_option
@click.option("--name", default=None, help="Run folder name (default: <model>-<timestamp>).")
@click.option("--resume", type=click.Path(), default=None, help="Continue a run folder where it stopped.")
@click.option("--device", default=None, help="auto, cpu, cuda, cuda:N or mps (default: auto).")
@click.option("--seed", type=SEED, default=None, help="Random seed (default 0).")
@quiet_option
def train(model: str | None, config_file: str | None, resume: str | None, quiet: bool,
          model_args: tuple[str, ...], weights: str | None, input_shape: str | None, mean: str | None,
          std: str | None, class_names: str | None, output: str | None, activation: str | None,
          region: str | None, reshape: str | None, **options: Any) -> None:
    """Train a model and write a run folder (default: the MNIST net)."""
    from netviz.runs import RunFolder
    from netviz.sources import ModelSource

    source = ModelSource.from_options(model, model_args=model_args or None, weights=weights,
                                      input_shape=input_shape, mean=mean, std=std, classes=class_names,
                                      output=output, activation=activation, region=region,
                                      reshape=reshape)
    run = commands.train(source, config=config_file, resume=resume, quiet=quiet, **options)
    print_paths(RunFolder(run.path).files())


@cli.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models_cmd(as_json: bool) -> None:
    """List the models netviz knows by name, and every other way to name one with --model."""
    import json

    from netviz.sources import catalogue

    cat = catalogue()
    if as_json:
        click.echo(json.dumps(cat, indent=2))
        return
    click.echo("registry models:")
    for m in cat["registry"]:
        shape = "x".join(map(str, m["input_shape"]))
        click.echo(f"  {m['name']:<12} {shape:<9} {m['classes']:>4} classes  {m['description']}")
    click.echo("installed packages (entry points netviz.models):")
    for m in cat["installed"] or [{"name": "(none)", "provider": ""}]:
        click.echo(f"  {m['name']:<12} {m['provider']}")
    click.echo("any other model, with --model:")
    for way in cat["other"]:
        click.echo(f"  {way['form']:<24} {way['meaning']}")
    click.echo("what its output means (every command; a card's output, activation, region, reshape):")
    for way in cat["outputs"]:
        click.echo(f"  {way['option']:<28} {way['meaning']}")
    if not cat["timm_installed"]:
        click.echo("(timm is not installed here: pip install 'netviz[timm]')")


# -- commands of the introspection techniques are added below, one section each --------------


# -- layers, activations -----------------------------------------------------------------------

@cli.command("layers")
@source_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@device_option
@quiet_option
def layers_cmd(source: SourceArgs, as_json: bool, device: str, quiet: bool) -> None:
    """List every addressable layer: number, dotted name, type, output shape, parameters.

    Every --layer/--layers option takes a dotted name (conv3, features.3, layer2.0.conv1) or a
    layer number: the layers that hold weights are numbered from 1, as the 2018 all-convolutional post
    counts them (negative numbers count from the end); modules without weights go by name.
    """
    import dataclasses
    import json

    from netviz.layers import format_layer_table, own_weights

    run = open_source(source, device, quiet=quiet)
    infos = commands.layers(run)
    total = sum(w.numel() for m in run.model.modules() for w in own_weights(m))
    shape = "x".join(map(str, run.spec.input_shape))
    if as_json:
        click.echo(json.dumps({
            "model": run.spec.name, "run": str(run.path) if run.path else None,
            "input_shape": list(run.spec.input_shape), "params": total,
            "layers": [dataclasses.asdict(i) for i in infos]}, indent=2))
        return
    click.echo(f"{run.spec.name} ({run.name}): input {shape}, {total:,} parameters, "
               f"{len(infos)} layers")
    click.echo(format_layer_table(infos))


@cli.command("activations")
@source_options
@click.option("--image", type=click.Path(), default=None,
              help="An image file (PNG, JPEG, ...), fitted to the model's channels and size.")
@click.option("--index", default=None,
              help="Sample(s) of the run's eval data: 5, 0-9 or 1,4,7 (default 0).")
@click.option("--split", default=None,
              help="Split for --index and --top-images, e.g. test[:1000] (default: the run's).")
@click.option("--layers", "--layer", "layers", default=None,
              help="Layer numbers or names, e.g. 3,conv6,layer2.0.conv1 (default: the model's "
                   "choice, e.g. conv3,conv6,conv9 for allconv). See `netviz layers`.")
@click.option("--channels", default=None,
              help="Channels, as every list: 5 (channel 5), 0-9, 3,5,7 or all (default: "
                   "the first 27).")
@click.option("--mode", type=click.Choice(["grey", "gray", "rgb"], case_sensitive=False),
              default=default_of(commands.activations, "mode"), show_default=True,
              help="grey: one tile per channel; rgb: three consecutive channels per colour tile.")
@click.option("--colorbar", is_flag=True,
              help="One raw-value scale per layer with a colour bar, instead of min-max per tile.")
@click.option("--top-images", type=NONNEG, default=default_of(commands.activations, "top_images"), show_default=True,
              help="Also find the K eval images with the highest mean activation per channel.")
@click.option("--batch-size", type=COUNT, default=default_of(commands.activations, "batch_size"), show_default=True,
              help="Batch size of the --top-images pass over the eval data.")
@dataset_option
@data_dir_option
@out_option
@common_options
def activations_cmd(source: SourceArgs, image: str | None, index: str | None, split: str | None, layers: str | None,
                    channels: str, mode: str, colorbar: bool, top_images: int, batch_size: int,
                    dataset: str | None, data_dir: str | None, out: str | None, overwrite: bool, device: str, seed: int,
                    quiet: bool) -> None:
    """Draw what chosen layers output for an image: a tile per channel, a GIF, the numbers.

    Writes activations.png (input + one row per layer), layer-<name>.png per layer,
    activations.gif (input -> each layer), activations.json (per-channel mean/max and the
    prediction) and, with --top-images, top-<name>.png. Several --index values write one
    sub-folder index-<N>/ each.
    """
    run = open_source(source, device, seed, quiet)
    print_paths(commands.activations(
        run, out, image=image, indices=index, layers=layers, channels=channels, mode=mode,
        colorbar=colorbar, top_images=top_images, data_dir=data_dir, split=split, dataset=dataset,
        batch_size=batch_size, quiet=quiet, overwrite=overwrite))


# -- histogram, kernels ------------------------------------------------------------------------

@cli.command("histogram")
@source_options
@click.option("--layer", "--layers", "layers", default=None,
              help="Only these layers (layer numbers or dotted names, e.g. 1,conv2 or features); "
                   "see `netviz layers`.")
@click.option("--layout", type=click.Choice(["panels", "grid"]), default=default_of(commands.histogram, "layout"),
              show_default=True,
              help="panels: the 2018 all-convolutional post's figure, one row per snapshot, layers grouped in panels; "
                   "grid: one subplot per layer, before and after overlaid on shared bins.")
@click.option("--per-panel", type=PER_PANEL, default=None,
              help="Layers per panel (3 gives that post's panels 1-3, 4-6, 7-9; default: 3, or "
                   "more so there are at most 4 panels).")
@click.option("--bins", type=BINS,
              default=default_of(commands.histogram, "bins"), show_default=True, help="Histogram bins.")
@click.option("--log-y", is_flag=True, help="Logarithmic y axis (shows the tails).")
@click.option("--include-bias", is_flag=True,
              help="Also 1-D parameters (biases, normalisation scales); default: weights only.")
@click.option("--evolution/--no-evolution", default=default_of(commands.histogram, "evolution"), show_default=True,
              help="Also draw distributions.png and ridgeline.png from the per-epoch statistics "
                   "training recorded.")
@click.option("--tensorboard", type=click.Path(file_okay=False), default=None,
              help="Also write the per-epoch histograms as TensorBoard summaries into DIR "
                   "(needs the tensorboard package).")
@out_option
@common_options
def histogram_cmd(source: SourceArgs, layers: str | None, layout: str, per_panel: int | None, bins: int, log_y: bool,
                  include_bias: bool, evolution: bool, tensorboard: str | None, out: str | None, overwrite: bool,
                  device: str, seed: int, quiet: bool) -> None:
    """Per-layer weight histograms before vs after training, and their evolution per epoch.

    Writes histogram.png, histogram.json (per layer and snapshot: count, mean, std, min, max,
    percentiles, bin edges and counts) and, for a run with two or more recorded epochs,
    distributions.png (percentile bands) and ridgeline.png (one histogram per epoch).
    With --model NAME alone there is one snapshot: the model's initial (or pretrained) weights.
    """
    run = open_source(source, device, seed, quiet)
    print_paths(commands.histogram(
        run, out, layers=layers, bins=bins, include_bias=include_bias, layout=layout,
        per_panel=per_panel, log_y=log_y, evolution=evolution, tensorboard=tensorboard,
        quiet=quiet, overwrite=overwrite))


@cli.command("kernels")
@source_options
@click.option("--layer", default=None,
              help="A conv layer (layer number or dotted name; default: the first convolution). "
                   "Layers with other than 1 or 3 input channels are drawn as an output x input "
                   "channel grid.")
@click.option("--scale", type=click.Choice(["kernel", "layer"]), default=default_of(commands.kernels, "scale"),
              show_default=True,
              help="kernel: each kernel scaled by its own max |w|; layer: one scale for the "
                   "layer and all snapshots (shows growth).")
@click.option("--max-kernels", type=COUNT, default=default_of(commands.kernels, "max_kernels"), show_default=True,
              help="Most kernels drawn for a layer with 1 or 3 input channels.")
@click.option("--max-out", type=COUNT, default=default_of(commands.kernels, "max_out"), show_default=True,
              help="Most output channels (rows) in the channel grid.")
@click.option("--max-in", type=COUNT, default=default_of(commands.kernels, "max_in"), show_default=True,
              help="Most input channels (columns) in the channel grid.")
@out_option
@common_options
def kernels_cmd(source: SourceArgs, layer: str | None, scale: str, max_kernels: int, max_out: int, max_in: int,
                out: str | None, overwrite: bool, device: str, seed: int, quiet: bool) -> None:
    """Draw a convolution layer's kernels as small images, before vs after training.

    Each kernel is scaled symmetrically around zero (mid-grey = 0) so its sign shows; RGB tiles
    when the layer has 3 input channels. Writes kernels-<layer>.png and kernels-<layer>.json
    (per snapshot: max |w|, mean, std, per-kernel L2 norms; the relative change).
    """
    run = open_source(source, device, seed, quiet)
    print_paths(commands.kernels(
        run, out, layer=layer, scale=scale, max_kernels=max_kernels, max_out=max_out,
        max_in=max_in, quiet=quiet, overwrite=overwrite))


# -- attribute ---------------------------------------------------------------------------------

def list_option(registry: dict[str, Any]) -> Callable:
    """``--list``: the methods of ``registry``, what each computes and the options it takes, then exit."""

    def show(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if not value or ctx.resilient_parsing:
            return
        from dataclasses import fields

        width = max(len(name) for name in registry)
        for name, m in registry.items():
            own = [f"--{f.name.replace('_', '-')}" for f in fields(m.options)
                   if f.metadata.get("cli", True) and f.name not in ("score", "batch_size")]
            click.echo(f"{name.ljust(width)}  {m.summary}" + (f" [{' '.join(own)}]" if own else ""))
        ctx.exit()

    return click.option("--list", "list_methods", is_flag=True, is_eager=True, expose_value=False, callback=show,
                        help="List the methods, what each computes and its options, and exit.")


@cli.command("attribute")
@source_options
@click.option("--method", default=default_of(commands.attribute, "method"), show_default=True,
              help="The method: " + ", ".join(METHODS) + " (`--list` says what each computes).")
@list_option(METHODS)
@click.option("--image", "images", multiple=True, type=click.Path(),
              help="An image file; repeat for several (default: --index of the eval set).")
@click.option("--index", default=None,
              help="Eval-set images: 7, 0-99 or 1,5,10-12 (default 0-7).")
@click.option("--target", default=None,
              help="Class to explain, a number or a name (default: each image's predicted class); "
                   "several at once as 3,5 for a multi-label model (their scores are summed).")
@attribution_options()
@click.option("--sanity", is_flag=True,
              help="Also run the cascading model-randomisation test (sanity.json, sanity.png).")
@click.option("--style", type=click.Choice(["overlay", "heatmap"]), default=default_of(commands.attribute, "style"),
              show_default=True, help="Grid panels: green/red on a grey image, or a heat map.")
@click.option("--clip", "percentile", type=float,
              default=default_of(commands.attribute, "percentile"), show_default=True,
              help="Percentile of |attribution| drawn at full colour.")
@dataset_option
@data_dir_option
@out_option
@common_options
def attribute_cmd(source: SourceArgs, method: str, images: tuple[str, ...], index: str | None, target: str | None,
                  sanity: bool, style: str, percentile: float, dataset: str | None, data_dir: str | None,
                  out: str | None, overwrite: bool, device: str, seed: int, quiet: bool, **options: Any) -> None:
    """Which pixels made the model's score: gradients, paths, class-activation maps, occlusion.

    Writes attribute.json (targets, scores, and for integrated the completeness error and steps
    of every image), <method>.png (a grid with true and predicted labels), <method>_<image>.png
    (image | overlay | heat map) and completeness.png; for interior, interior_<image>.png/.gif
    and interior_scores.png; with --sanity, sanity.json and sanity.png. Each method takes the
    options its help names; the others are ignored.
    """
    run = open_source(source, device, seed, quiet)
    print_paths(commands.attribute(
        run, method, out, images=images, indices=index, target=target, sanity=sanity, data_dir=data_dir,
        dataset=dataset, style=style, percentile=percentile, seed=seed, quiet=quiet, overwrite=overwrite,
        **typed(options)))


# -- evaluate ----------------------------------------------------------------------------------

@cli.command("evaluate")
@source_options
@click.option("--methods", default=None,
              help="Methods to score, e.g. integrated,gradcam,saliency,random (default: every "
                   "method with one map per image; random is the control).")
@click.option("--image", "images", multiple=True, type=click.Path(),
              help="An image file; repeat for several (default: --index of the eval set).")
@click.option("--index", default=None, help="Eval-set images: 0-49 (the default), 7 or 1,5,10-12.")
@click.option("--steps-frac", type=float, default=default_of(evaluate_run, "steps_frac"), show_default=True,
              help="The fraction of the pixels removed or inserted per step of the curves.")
@click.option("--baseline", type=click.Choice(["black", "blur", "mean"]), default=default_of(evaluate_run, "baseline"),
              show_default=True,
              help="What deleted pixels become and insertion starts from (and the methods' own baseline).")
@click.option("--layer", default=None, help="The layer of the CAM methods (default: the last spatial one).")
@click.option("--batch-size", type=COUNT, default=None,
              help="Images per forward pass of the curves and of the methods (default as for "
                   "`netviz attribute`).")
@click.option("--sanity/--no-sanity", default=default_of(evaluate_run, "sanity"), show_default=True,
              help="Also the randomisation check (one more map per method).")
@attribution_options(exclude=("score", "baseline", "layer", "batch_size"))
@click.option("--sanity-layers", type=COUNT, default=None,
              help="How many layers, from the top, the check re-initialises (default: half).")
@dataset_option
@data_dir_option
@out_option
@common_options
def evaluate_cmd(source: SourceArgs, methods: str | None, images: tuple[str, ...], index: str | None,
                 steps_frac: float, baseline: str, layer: str | None, batch_size: int | None, sanity: bool,
                 sanity_layers: int | None, dataset: str | None, data_dir: str | None, out: str | None, overwrite: bool,
                 device: str, seed: int, quiet: bool, **options: Any) -> None:
    """Which attribution method to trust: deletion and insertion curves (RISE), a randomisation
    check and the time per image, for every method on the same images, ranked.

    Writes evaluate.json (per method: deletion_auc, insertion_auc, sanity_spearman,
    seconds_per_image and per-image curves) and curves.png, and prints the ranked table.
    """
    run = open_source(source, device, seed, quiet)
    paths, text = commands.evaluate(
        run, out, methods=methods, images=images, indices=index, steps_frac=steps_frac, baseline=baseline,
        layer=layer, batch_size=batch_size, sanity=sanity, sanity_layers=sanity_layers, dataset=dataset,
        data_dir=data_dir, seed=seed, quiet=quiet, overwrite=overwrite, **options)
    if text:
        click.echo(text)
    print_paths(paths)


# -- audit -----------------------------------------------------------------------------------

@cli.command("audit")
@source_options
@click.option("--split", default=None,
              help="The split audited: train[:20000], test... (default: the run's training split).")
@click.option("--dataset", default=None, help="Another data set: mnist, cifar10 or imagefolder:PATH "
              "(default: the run's own).")
@click.option("--method", default=default_of(commands.audit, "method"), show_default=True,
              help="The attribution method of the maps (any one with a map per image; see `netviz attribute`).")
@click.option("--layer", default=None, help="The layer whose activations are clustered (default: the one before "
              "the classifier).")
@click.option("--limit", type=COUNT, default=None,
              help="Audit only the first N images of the split (default: all of them).")
@click.option("--cards/--no-cards", default=default_of(commands.audit, "cards"), show_default=True,
              help="Each flagged cluster's top channels with their neuron cards (dream and top images).")
@attribution_options(exclude=("layer",))
@data_dir_option
@out_option
@common_options
def audit_cmd(source: SourceArgs, split: str | None, dataset: str | None, method: str, layer: str | None,
              limit: int | None, cards: bool, data_dir: str | None, out: str | None, overwrite: bool, device: str,
              seed: int, quiet: bool, **options: Any) -> None:
    """Is the model right for the right reasons, over a whole data set: per class, clusters of its
    images by activations and attribution maps, and whether a cluster relies on a pattern other
    than the class (a backdoor trigger, a watermark, a spurious mark); confident mistakes; confusion.

    Writes audit.json, classes.png, cluster-<class>-<k>.png per flagged cluster, mistakes.png and
    confusion.png, and prints the flagged classes and why.
    """
    run = open_source(source, device, seed, quiet)
    given = {k: v for k, v in options.items() if k in get_method(method).options.__dataclass_fields__}
    paths, table = commands.audit(run, out, dataset=dataset, split=split, data_dir=data_dir, method=method,
                                  layer=layer, limit=limit, cards=cards, seed=seed, quiet=quiet, overwrite=overwrite,
                                  **given)
    if table:
        click.echo(table)
    print_paths(paths)


# -- explain ---------------------------------------------------------------------------------

@cli.command("explain")
@source_options
@click.option("--image", "images", multiple=True, type=click.Path(),
              help="An image file; repeat for several (default: --index of the eval set).")
@click.option("--index", default=None, help="Eval-set images: 7, 0-3 or 1,5 (default 0).")
@click.option("--layer", default=None,
              help="A layer with a spatial output, name or number (default: the last one; see `netviz layers`).")
@click.option("--method", default=default_of(commands.explain, "method"), show_default=True,
              help="The method: " + ", ".join(CHANNEL_METHODS) + " (`--list` says what each computes).")
@list_option(CHANNEL_METHODS)
@click.option("--top", type=TOP,
              default=default_of(commands.explain, "top"), show_default=True,
              help="Channels drawn per image, with their cards.")
@click.option("--target", default=None,
              help="Class to explain, a number or a name (default: each image's predicted class); several "
                   "at once as 3,5 (their scores are summed).")
@method_options(all_channel_options())
@click.option("--cards/--no-cards", default=default_of(commands.explain, "cards"), show_default=True,
              help="Each top channel's neuron card (its dream and top data-set images; cached in the run).")
@click.option("--card-images", type=COUNT,
              default=default_of(commands.explain, "card_images"), show_default=True, help="Data-set images per card.")
@click.option("--recipe", type=click.Choice(["deepdream", "lucent", "paper"]),
              default=default_of(commands.explain, "recipe"),
              show_default=True, help="How each card's dream is made (see `netviz dream`).")
@click.option("--dream-steps", type=COUNT, default=None, help="Dream updates (the recipe's by default).")
@click.option("--split", default=None, help="The data split --index and the cards read (default: the eval split).")
@dataset_option
@data_dir_option
@out_option
@common_options
def explain_cmd(source: SourceArgs, images: tuple[str, ...], index: str | None, layer: str | None, method: str,
                top: int, target: str | None, cards: bool, card_images: int, recipe: str, dream_steps: int | None,
                split: str | None, dataset: str | None, data_dir: str | None, out: str | None, overwrite: bool,
                device: str, seed: int, quiet: bool, **options: Any) -> None:
    """Which learned features carried a decision: a layer's channels ranked by their contribution
    to the target's score, each top channel shown by where it fired, its dream and its top images.

    Writes explain-<image>.png per image and explain.json (every channel: contribution, share,
    rank). Each method takes the options its help names; the others are ignored.
    """
    run = open_source(source, device, seed, quiet)
    given = typed(options)
    print_paths(commands.explain(
        run, method, out, images=images, indices=index, layer=layer, top=top, target=target, cards=cards,
        card_images=card_images, recipe=recipe, dream_steps=dream_steps, data_dir=data_dir, split=split,
        dataset=dataset, seed=seed, quiet=quiet, overwrite=overwrite, **given))


# -- neurons, report ---------------------------------------------------------------------------

@cli.command("neurons")
@source_options
@click.option("--layer", default=None,
              help="A layer with a spatial output (default: the model's middle default layer).")
@click.option("--channels", default=None, help="Channels: 0-7 (the default), 3 or 1,4,9.")
@click.option("--top", type=COUNT,
              default=default_of(commands.neurons, "top"), show_default=True, help="Data-set images per channel.")
@click.option("--recipe", type=click.Choice(["deepdream", "lucent", "paper"]),
              default=default_of(commands.neurons, "recipe"),
              show_default=True, help="How each channel's dream is made (see `netviz dream`).")
@click.option("--steps", type=COUNT, default=None, help="Dream updates (the recipe's by default).")
@click.option("--split", default=None, help="The data split searched (default: the run's eval split).")
@click.option("--batch-size", type=COUNT, default=default_of(commands.neurons, "batch_size"), show_default=True,
              help="Images per forward pass of the search.")
@dataset_option
@data_dir_option
@out_option
@common_options
def neurons_cmd(source: SourceArgs, layer: str | None, channels: str | None, top: int, recipe: str,
                steps: int | None, split: str | None, batch_size: int, dataset: str | None, data_dir: str | None,
                out: str | None, overwrite: bool, device: str, seed: int, quiet: bool) -> None:
    """Neuron cards: per channel, the input it responds to most beside the data-set images that
    excite it most, with where in each it fires (OpenAI Microscope, for any model, offline).

    Writes card-<layer>-<channel>.png per channel and neurons.json.
    """
    run = open_source(source, device, seed, quiet)
    print_paths(commands.neurons(
        run, out, layer=layer, channels=channels, top=top, recipe=recipe, steps=steps, data_dir=data_dir,
        split=split, dataset=dataset, batch_size=batch_size, seed=seed, quiet=quiet, overwrite=overwrite))


@cli.command("report")
@source_options
@click.option("--all", "run_all", is_flag=True,
              help="First run, with their defaults, the analyses the run does not have yet.")
@click.option("--neurons", default=None, metavar="LAYER[:CHANNELS]",
              help="Neuron cards for these channels, e.g. relu2:0-7 (made when missing; with --all "
                   "the default is 8 channels of the model's middle default layer).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder of index.html, new or empty (default: <run>/report/, the run's page, made anew).")
@click.option("--overwrite", is_flag=True, help="Replace the report already in --out.")
@click.option("--open", "open_page", is_flag=True, help="Open the page in the default browser.")
@common_options
def report_cmd(source: SourceArgs, run_all: bool, neurons: str | None, out: str | None, overwrite: bool,
               open_page: bool, device: str, seed: int, quiet: bool) -> None:
    """One self-contained HTML page of everything netviz knows about a run: training, weights,
    kernels, activations, dreams, neuron cards, attributions and their evaluation.

    Every image is embedded, the CSS is inline, nothing is fetched from outside: the page opens
    offline in any browser, with JavaScript off. Writes <run>/report/index.html.
    """
    run = open_source(source, device, seed, quiet)
    print_paths([commands.report(run, out, run_all=run_all, neurons=neurons, open_page=open_page, quiet=quiet,
                                 overwrite=overwrite)])


# -- dream -------------------------------------------------------------------------------------

@cli.command("dream")
@source_options
@click.option("--class", "classes", default=None,
              help="Class(es) to maximise: 5, 0-4, 3,7, a class name, or all (the default "
                   "without --layer). All are optimised in one batch.")
@click.option("--layer", default=None,
              help="Visualise channels of this layer instead: a name (conv3, layer2.0.conv1) or "
                   "a layer number (see `netviz layers`).")
@click.option("--channels", "--channel", "channels", default=None,
              help="With --layer: channel(s) 3, 0-15, 1,4,7 or all (default 0).")
@click.option("--neuron", default=None,
              help="With --layer: one position of a channel, K,Y,X (or K for the centre); K may "
                   "be a range such as 0-7.")
@click.option("--recipe", type=click.Choice(["paper", "deepdream", "lucent"]), default=None,
              help="paper: the MNIST post (black start, Adam, 50 steps; default for --class); "
                   "deepdream: multi-scale noise, gradient steps of 1/8, jitter, 256 steps "
                   "(default for --layer); lucent: FFT image, jitter/scale/rotate, Adam.")
@click.option("--steps", type=COUNT, default=None, help="Number of updates (recipe default).")
@click.option("--until", type=float, default=None,
              help="Class dreams: stop each image once its target probability, measured on the "
                   "saved 8-bit PNG, reaches P (e.g. 0.99); the others go on up to --max-steps.")
@click.option("--max-steps", type=COUNT, default=None,
              help="With --until: the most updates an image gets (default 4 x the recipe's steps).")
@click.option("--lr", type=POSITIVE, default=None,
              help="Adam learning rate, or the normgrad step (largest pixel change per step) (default: the recipe's).")
@click.option("--optimizer", type=click.Choice(["adam", "normgrad"]), default=None,
              help="adam, or normgrad (gradient scaled so its largest coefficient is --lr) (default: the recipe's).")
@click.option("--param", type=click.Choice(["pixel", "fft"]), default=None,
              help="Image parameterisation: pixel (clamped to valid pixels) or fft (decorrelated "
                   "Fourier image, as Lucid/Lucent) (default: the recipe's).")
@click.option("--init", type=click.Choice(["black", "grey", "noise", "multiscale"]), default=None,
              help="Start image of --param pixel; noise/multiscale are centred on the model's "
                   "mean pixel (default: the recipe's).")
@click.option("--jitter", type=NONNEG, default=None,
              help="Random shift of up to N pixels every step (default: ~side/28 for "
                   "deepdream and lucent, 0 for paper).")
@click.option("--scale", default=None,
              help="Random zoom range every step, e.g. 0.95,1.05 (1 = off) (default: the recipe's).")
@click.option("--rotate", type=NONNEG_FLOAT, default=None,
              help="Random rotation of up to +-DEG degrees every step (default: the recipe's).")
@click.option("--tv", type=NONNEG_FLOAT, default=None,
              help="Weight of a total-variation penalty (default: the recipe's).")
@click.option("--l2", type=NONNEG_FLOAT, default=None,
              help="Weight of an L2 penalty (distance from grey) (default: the recipe's).")
@click.option("--blur-every", type=NONNEG, default=None,
              help="Blur the image every N steps (--param pixel; 0 = never).")
@click.option("--blur-sigma", type=POSITIVE, default=None,
              help="Blur radius in pixels (default: 0.5, or side/224).")
@click.option("--decorrelate/--no-decorrelate", default=None,
              help="fft: decorrelate the colours of 3-channel images (default on).")
@click.option("--redirect-relu/--no-redirect-relu", default=None,
              help="Let gradients reach dead ReLUs, as Lucid does (default on, off for paper).")
@click.option("--gif", is_flag=True, help="Also write dream.gif of the optimisation.")
@click.option("--gif-every", type=COUNT, default=None,
              help="GIF: one frame every K steps (default: steps/25).")
@click.option("--batch-size", type=COUNT, default=default_of(commands.dream, "batch_size"), show_default=True,
              help="Images per forward/backward. An image's random draws and updates do not depend "
                   "on its batch; 1 also makes the CPU rounding identical to a one-target run.")
@out_option
@common_options
def dream_cmd(source: SourceArgs, classes: str | None, layer: str | None, channels: str | None, neuron: str | None,
              recipe: str | None, scale: str | None, gif: bool, gif_every: int | None,
              batch_size: int, out: str | None, overwrite: bool, device: str, seed: int, quiet: bool,
              **settings: Any) -> None:
    """Inputs the network likes most: maximise a class, or a channel/neuron of a layer.

    Writes class_<k>.png or <layer>_channel_<k>.png (at the model's input size), grid.png
    (labelled), dream.json (target, objective, probability or activation before/after and the
    top-3 classes, all measured on the saved 8-bit PNGs) and, with --gif, dream.gif.
    """
    run = open_source(source, device, seed, quiet)
    print_paths(commands.dream(
        run, out, classes=classes, layer=layer, channels=channels, neuron=neuron, recipe=recipe,
        scale=scale, gif=gif, gif_every=gif_every, batch_size=batch_size, seed=seed, quiet=quiet,
        overwrite=overwrite,
        **settings))
