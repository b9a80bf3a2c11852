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

from netviz import __version__
from netviz.catalog import COMMANDS, Command
from netviz.errors import NetvizError
from netviz.kinds import model_help
from netviz.options import DEFAULT_SEED, cli_fields
from netviz.runs import load_run
from netviz.sources import ModelOptions


class NetvizGroup(click.Group):
    """A click group that turns every error into one stderr line and an exit code, and makes an
    analysis command (:func:`analysis_command`) only when it is asked for: its options come from
    its compute module, which ``netviz --help`` and the other commands need not import."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *ANALYSES})

    def get_command(self, ctx: click.Context | None, name: str) -> click.Command | None:
        if name not in self.commands and name in ANALYSES:
            self.add_command(analysis_command(COMMANDS[name]))
        return self.commands.get(name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The list of commands, an analysis's line from its catalog entry (the same words its
        command would give), so that listing them builds none."""
        from click.utils import make_default_short_help

        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [(name, self.commands[name].get_short_help_str(limit) if name in self.commands
                 else make_default_short_help(COMMANDS[name].help, limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

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
seed_option = click.option("--seed", type=SEED, default=DEFAULT_SEED, show_default=True,
                           help="Random seed; the same seed repeats a command exactly on the CPU.")
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars or status lines.")


def _verbose(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        from netviz.progress import notes

        notes()


verbose_option = click.option("--verbose", "-v", is_flag=True, expose_value=False, callback=_verbose,
                              help="Notes on how the work runs (the batch sizes measured, ...) on stderr.")


def _workers(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
    if value is not None:  # read where an image folder is decoded (netviz.folders.workers)
        os.environ["NETVIZ_WORKERS"] = str(value)


workers_option = click.option("--workers", type=COUNT, default=None, expose_value=False, callback=_workers,
                              help="Threads that decode an image folder read as it is used (default: the "
                                   "cores this process may use; $NETVIZ_WORKERS).")
common_options = _compose(device_option, seed_option, quiet_option, verbose_option, workers_option)

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


def click_type(meta: dict[str, Any]) -> Any:
    """The click type of an option's kind of value (:func:`netviz.options.option`)."""
    kind, most = meta["kind"], meta["most"]
    if kind == "choice":
        return click.Choice(list(meta["choices"]), case_sensitive=meta["case_sensitive"])
    if kind == "path":
        return click.Path(file_okay=False)
    if kind == "file":
        return click.Path()
    numbers = {"count": Number(int, 1, most=most or MOST), "whole": Number(int, 0, most=most or MOST),
               "positive": Number(float, 0, strict=True, most=most), "nonneg": Number(float, 0, most=most),
               "fraction": FRACTION, "seed": SEED, "int": int, "float": float, "str": None}
    return numbers[kind]


def click_option(name: str, f: Any) -> Callable:
    """The click option of one :func:`netviz.options.option` field: its flags, type, default and help."""
    meta = f.metadata
    flags = meta["flags"] or (f"--{name.replace('_', '-')}",)
    help_text = meta["help"]() if callable(meta["help"]) else meta["help"]
    if meta["kind"] == "flag":
        return click.option(*flags, name, is_flag=True, help=help_text)
    if meta["kind"] == "switch":
        word = flags[0][2:]
        return click.option(f"--{word}/--no-{word}", name, default=f.default, show_default=f.default is not None,
                            help=help_text)
    return click.option(*flags, name, type=click_type(meta), default=f.default, multiple=meta["multiple"],
                        show_default=f.default not in (None, ()), metavar=meta["metavar"], help=help_text)


def fields_options(options: dict[str, Any]) -> Callable:
    """One click option per :func:`netviz.options.option` field of ``options`` (name -> field)."""
    return _compose(*(click_option(name, f) for name, f in options.items() if f.metadata["cli"]))


def typed(options: dict[str, Any]) -> dict[str, Any]:
    """Of a command's method options, those the user typed: the others keep the chosen method's own
    defaults, and one typed for another method can be said to be ignored."""
    ctx = click.get_current_context()
    return {k: v for k, v in options.items() if ctx.get_parameter_source(k) is not ParameterSource.DEFAULT}


# How a model is described besides its name: the same options for train and every other command.
MODEL_OPTIONS = cli_fields(ModelOptions)
model_options = fields_options(MODEL_OPTIONS)


@dataclass
class SourceArgs:
    """What a command looks at, as typed: a run or checkpoint, or a model and its description."""

    run: str | None = None
    model: str | None = None
    runs_dir: str | None = None
    described: ModelOptions = ModelOptions()


def described(options: dict[str, Any]) -> ModelOptions:
    """The model options among a command's ``options`` (taken out of them)."""
    return ModelOptions(**{name: options.pop(name) for name in MODEL_OPTIONS})


def source_options(f: Callable) -> Callable:
    """RUN, --model and the model options, handed to the command as one ``source`` argument."""

    @functools.wraps(f)
    def command(*args: Any, run: str | None, model_name: str | None, runs_dir: str | None, **kwargs: Any) -> Any:
        return f(*args, source=SourceArgs(run, model_name, runs_dir, described(kwargs)), **kwargs)

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

    seed_everything(seed)
    # the model's description parsed and checked before any work
    model = None if source.model is None else source.described.source(source.model)
    run = load_run(source.run, model=model, runs_dir=source.runs_dir, device=device,
                   **(source.described.head() if model is None else {}))
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
def train(model: str | None, config_file: str | None, resume: str | None, quiet: bool, **options: Any) -> None:
    """Train a model and write a run folder (default: the MNIST net)."""
    from netviz import commands
    from netviz.runs import RunFolder

    source = described(options).source(model)
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
    from netviz import commands

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


# -- methods ---------------------------------------------------------------------------------

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


# -- report ----------------------------------------------------------------------------------

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
    from netviz import commands

    run = open_source(source, device, seed, quiet)
    print_paths([commands.report(run, out, run_all=run_all, neurons=neurons, open_page=open_page, quiet=quiet,
                                 overwrite=overwrite)])


# -- the analyses: made from the catalog and each command's options dataclass -------------------

ANALYSES = {c.name for c in COMMANDS.values() if c.generated}


def analysis_command(entry: Command, function: Callable[..., Any] | None = None) -> click.Command:
    """`netviz <entry.name>`: RUN or --model, one option per field of the command function's options
    dataclass (and, for a command that takes a method, every option of the registry's methods), --out,
    --device, --seed, --quiet; it calls the function (default: ``commands.<name>``) and prints what it
    wrote."""
    from netviz import commands

    function = function or commands.FUNCTIONS[entry.name]
    options_type = function.options_type
    own = cli_fields(options_type)
    decorators = [source_options, fields_options(own)]
    if entry.methods is not None:
        from netviz.attribute import options_of
        from netviz.catalog import load

        registry = load(entry.methods)
        skip = (*own, *options_type.sets)
        decorators += [list_option(registry),
                       fields_options({k: f for k, f in options_of(registry.values()).items() if k not in skip})]
    takes_seed = "seed" in options_type.__dataclass_fields__

    def command(source: SourceArgs, out: str | None, overwrite: bool, device: str, seed: int, quiet: bool,
                **values: Any) -> None:
        run = open_source(source, device, seed, quiet)
        given = {k: values.pop(k) for k in own}
        result = function(run, out=out, quiet=quiet, overwrite=overwrite, **given,
                          **({"seed": seed} if takes_seed else {}), **typed(values))
        paths, text = result if isinstance(result, tuple) else (result, "")
        if text:
            click.echo(text)
        print_paths(paths)

    command.__name__ = f"{entry.name}_cmd"
    return click.command(entry.name, help=entry.help)(_compose(*decorators, out_option, common_options)(command))

