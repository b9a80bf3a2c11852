"""The `netviz` command line: parse options, call library functions, print the paths written.

No logic lives here. Every command is a thin wrapper around a plain Python function.
Errors the user can fix become one line on stderr and exit code 2 (130 when interrupted).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from netviz import __version__
from netviz.errors import NetvizError


class NetvizGroup(click.Group):
    """A click group that turns every error into one stderr line and an exit code."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
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
            _fail(str(exc), exc.exit_code)
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


def _fail(message: str, code: int) -> None:
    first, *_ = (message.strip() or "failed").splitlines()
    click.echo(f"netviz: error: {first}", err=True)
    sys.exit(code)


def print_paths(paths: Iterable[str | os.PathLike]) -> None:
    """Every drawing command ends by printing the files it wrote, one per line."""
    for p in paths:
        click.echo(str(p))


# -- options shared by commands ---------------------------------------------------------------

def _compose(*decorators: Callable) -> Callable:
    def apply(f: Callable) -> Callable:
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


device_option = click.option("--device", default="auto", show_default=True,
                             help="auto, cpu, cuda, cuda:N or mps.")
seed_option = click.option("--seed", type=int, default=0, show_default=True,
                           help="Random seed; the same seed repeats a command exactly on the CPU.")
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars or status lines.")
common_options = _compose(device_option, seed_option, quiet_option)

out_option = click.option("--out", type=click.Path(file_okay=False), default=None,
                          help="Output folder (default: <run>/<command>/).")
data_dir_option = click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                               help="Data root (default: $NETVIZ_DATA, else ~/.cache/netviz/data).")
runs_dir_option = click.option("--runs-dir", type=click.Path(file_okay=False), default=None,
                               help="Runs folder (default: $NETVIZ_RUNS, else ./runs).")
# What a command looks at: a run folder or checkpoint (default: the latest run), or a bare model.
source_options = _compose(
    click.argument("run", required=False, type=click.Path()),
    click.option("--model", "model_name", default=None,
                 help="Look at a registry model instead of a run (mnist, allconv, resnet18, ...)."),
    click.option("--weights", default="none", show_default=True,
                 help="With --model: 'default' for pretrained torchvision weights, or 'none'."),
    runs_dir_option,
)


def open_source(run: str | None, model_name: str | None, weights: str, runs_dir: str | None,
                device: str):
    """The Run a command acts on (see :func:`netviz.runs.load_run`)."""
    from netviz.runs import load_run

    return load_run(run, model=model_name, weights=None if run else weights, runs_dir=runs_dir,
                    device=device)


@click.group(cls=NetvizGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="netviz")
def cli() -> None:
    """Look inside a CNN: train it, then see its weights, activations, dreams and attributions.

    Commands without a RUN act on the latest training run (runs/latest).
    """


def main() -> None:
    cli.main(prog_name="netviz")


# -- train -------------------------------------------------------------------------------------

@cli.command()
@click.option("--model", default=None, help="Registry model to train (default: mnist).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="TOML file of hyper-parameters (configs/<model>.toml); options override it.")
@click.option("--dataset", default=None, help="mnist, cifar10 or imagefolder:PATH (default: the model's).")
@data_dir_option
@click.option("--train-split", default=None, help="e.g. train, test[:8000], train[:10%].")
@click.option("--eval-split", default=None, help="e.g. test, test[8000:].")
@click.option("--epochs", type=int, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", type=float, default=None, help="Learning rate.")
@click.option("--optimizer", default=None, help="adadelta, adam, amsgrad, adamw or sgd.")
@click.option("--augment", type=float, default=None,
              help="Fraction of each batch given random crop + flip (0 to 1).")
@click.option("--amp/--no-amp", default=None,
              help="bf16 autocast + channels_last on CUDA (default on).")
@runs_dir_option
@click.option("--name", default=None, help="Run folder name (default: <model>-<timestamp>).")
@click.option("--resume", type=click.Path(), default=None, help="Continue a run folder where it stopped.")
@click.option("--device", default=None, help="auto, cpu, cuda, cuda:N or mps (default: auto).")
@click.option("--seed", type=int, default=None, help="Random seed (default 0).")
@quiet_option
def train(model: str | None, config_file: str | None, resume: str | None, quiet: bool,
          **options: Any) -> None:
    """Train a model and write a run folder (default: the MNIST net)."""
    from netviz.train import train as train_run

    run = train_run(model, config=config_file, resume=resume, quiet=quiet, **options)
    files = [run.path / "config.toml", run.path / "metrics.json", run.path / "weight_stats.json",
             run.path / "curves.png", *sorted((run.path / "checkpoints").glob("*.pt"))]
    print_paths(files)


# -- commands of the introspection techniques are added below, one section each --------------
