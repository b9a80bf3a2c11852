"""Training, in the steps of a training script (pytorch/examples' MNIST, nanoGPT's train.py).

:func:`train` reads top to bottom: resolve the config, open the run folder, load the data, build
the model and optimiser, then per epoch :func:`train_one_epoch`, :func:`eval_accuracy`, record the
metrics and checkpoint; at the end the final checkpoint, the curves and ``summary.json``.
``train(model="mnist", train_split="test[:8000]", eval_split="test[8000:]", epochs=3, seed=1)``
returns a :class:`netviz.runs.Run`. The run folder's layout is :class:`netviz.runs.RunFolder`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz.errors import NetvizError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.data import TensorData
    from netviz.registry import ModelSpec
    from netviz.runs import Run, RunFolder
    from netviz.sources import ModelSource

OPTIMIZERS = ("adadelta", "adam", "amsgrad", "adamw", "sgd")
SCHEDULERS = ("none", "step", "onecycle")
MILESTONES = (0.98, 0.99, 0.995)  # eval accuracies whose first crossing is timed

# Reference recipes (docs/techniques.md §1) and the fast MNIST recipe; configs/<model>.toml hold the same
# values (a test checks).
RECIPES: dict[str, dict[str, Any]] = {
    "mnist": {"dataset": "mnist", "epochs": 10, "batch_size": 64, "lr": 1.0,
              "optimizer": "adadelta", "scheduler": "step", "gamma": 0.7, "augment": 0.0},
    "allconv": {"dataset": "cifar10", "epochs": 8, "batch_size": 50, "lr": 5e-4,
                "optimizer": "amsgrad", "scheduler": "none", "augment": 0.5},
    "mnist-fast": {"dataset": "mnist", "epochs": 1, "batch_size": 128, "lr": 0.2,
                   "optimizer": "sgd", "scheduler": "onecycle", "weight_decay": 5e-4,
                   "label_smoothing": 0.1, "channels_last": True},
}


NONFINITE = ("stop", "continue")


def is_plain_name(name: str) -> bool:
    """A name that stays one folder inside the runs folder."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0") \
        and not name.startswith("~")


@dataclass
class TrainConfig:
    """Every hyper-parameter of a run; written to ``config.toml`` as resolved."""

    model: str = "mnist"  # a registry name, file.py:NAME, module:NAME, timm:NAME or a card .toml
    model_args: dict[str, Any] = field(default_factory=dict)  # keyword arguments of its constructor
    weights: str | None = None  # start from these weights (a file, or "default" for pretrained)
    input_shape: list[int] | None = None  # C, H, W (user models; inferred when not given)
    mean: list[float] | None = None
    std: list[float] | None = None
    classes: list[str] | None = None
    num_classes: int | None = None  # set by train when it fits the model's output to the data
    output: int | str | None = None  # which of the forward's outputs holds the class scores
    activation: str | None = None  # how scores read as probabilities (training: softmax only)
    reshape: str | None = None  # how token / channels-last layers read as maps (netviz.tokens)
    dataset: str | None = None  # None: the model's default data set
    data_dir: str | None = None
    train_split: str | None = None  # None: the data set's default
    eval_split: str | None = None
    epochs: int = 10
    batch_size: int = 64
    eval_batch_size: int = 1000
    lr: float = 1e-3
    optimizer: str = "adam"
    scheduler: str = "none"
    gamma: float = 0.7  # StepLR decay per epoch
    pct_start: float = 0.25  # one-cycle: fraction of the steps spent warming up
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    augment: float = 0.0  # fraction of each batch given a random shift (and flip)
    crop_pad: int = 4  # augmentation: random shifts of up to this many pixels
    flip: bool = True  # augmentation: random horizontal flips (off for digits)
    channels_last: bool | None = None  # None: on CUDA with amp; True also helps BN nets on CPUs
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 autocast: on CUDA (+ channels_last) and on CPUs with AMX
    world_size: int = 1  # processes under torchrun (recorded; the global batch stays batch_size)
    hist_bins: int = 60
    on_nonfinite: str = "stop"  # a NaN or infinite training loss stops the run (continue: train on)
    runs_dir: str | None = None
    name: str | None = None

    def validate(self) -> TrainConfig:
        checks = [
            (self.epochs > 0, f"--epochs must be at least 1, not {self.epochs}"),
            (self.activation in (None, "softmax"),
             f"--activation {self.activation}: netviz train fits one class per image with cross-entropy "
             "(softmax); a multi-label or regression model is trained elsewhere and opened with --model"),
            (self.batch_size > 0, f"--batch-size must be at least 1, not {self.batch_size}"),
            (self.eval_batch_size > 0, "eval_batch_size must be at least 1"),
            (self.lr > 0, f"--lr must be positive, not {self.lr}"),
            (self.optimizer in OPTIMIZERS, f"unknown optimizer '{self.optimizer}': use one of {', '.join(OPTIMIZERS)}"),
            (self.scheduler in SCHEDULERS, f"unknown scheduler '{self.scheduler}': use one of {', '.join(SCHEDULERS)}"),
            (0.0 < self.pct_start < 1.0, f"pct_start must be a fraction in (0, 1), not {self.pct_start}"),
            (0.0 <= self.label_smoothing < 1.0, f"label_smoothing must be in [0, 1), not {self.label_smoothing}"),
            (0.0 <= self.augment <= 1.0, f"augment must be a fraction in [0, 1], not {self.augment}"),
            (self.crop_pad >= 0, f"crop_pad must be >= 0, not {self.crop_pad}"),
            (self.hist_bins > 0, "hist_bins must be at least 1"),
            (self.name is None or is_plain_name(self.name),
             f"--name {self.name!r}: a run's name is one folder name (no '/', '\\' or '..'), e.g. mnist-lr0.1"),
            (self.on_nonfinite in NONFINITE, f"unknown --on-nonfinite '{self.on_nonfinite}': use one of "
                                             f"{', '.join(NONFINITE)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise NetvizError(message)
        return self


def resolve_config(model: str | None = None, config_file: str | Path | None = None,
                   **overrides: Any) -> TrainConfig:
    """Defaults < the model's recipe < the config file < explicit overrides (None = not given)."""
    from netviz.files import read_toml
    from netviz.registry import get_spec
    from netviz.sources import ModelSource

    values: dict[str, Any] = {}
    file_values = read_toml(config_file) if config_file else {}
    name = model or file_values.get("model") or "mnist"
    if ModelSource(ref=name).kind == "name":
        get_spec(name)  # unknown model -> clear error before anything else
    values.update(RECIPES.get(name, {}))
    values.update(file_values)
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["model"] = name
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise NetvizError(f"unknown config key(s) {', '.join(unknown)}: known keys are {', '.join(sorted(fields))}")
    _check_types(values)
    return TrainConfig(**values).validate()


_KINDS = {int: ("a whole number", (int,)), float: ("a number", (int, float)), str: ("a string", (str,)),
          bool: ("true or false", (bool,))}


def _check_types(values: dict[str, Any]) -> None:
    """Each config value of the type its field wants: ``epochs = "three"`` names the key."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for key, value in values.items():
        kind = type(defaults.get(key))
        if kind not in _KINDS or value is None:
            continue  # lists, dicts and optional fields are checked where they are used
        wanted, accepted = _KINDS[kind]
        if not isinstance(value, accepted) or (kind is not bool and isinstance(value, bool)):
            raise NetvizError(f"config key '{key}' must be {wanted}, not {value!r}")


# -- the steps ---------------------------------------------------------------------------------

@dataclass
class TrainData:
    """Both splits in memory, normalised once, on the training device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_eval: torch.Tensor
    y_eval: torch.Tensor
    train_name: str
    eval_name: str
    classes: tuple[str, ...] = ()


def load_splits(cfg: TrainConfig) -> tuple[TensorData, TensorData]:
    """The training and evaluation splits as uint8 images, before the model is known."""
    from netviz import data as D

    return D.load_split(cfg.dataset, cfg.train_split, cfg.data_dir), \
        D.load_split(cfg.dataset, cfg.eval_split, cfg.data_dir)


def prepare_data(splits: tuple[TensorData, TensorData], spec: ModelSpec, device: torch.device,
                 memory_format: torch.memory_format) -> TrainData:
    """Fit both splits to the model's input, normalise them once on ``device``."""
    from netviz import data as D

    def prepare(loaded: TensorData):
        x = D.normalise(D.conform(loaded.images, spec)[0], spec, device)
        return x.contiguous(memory_format=memory_format), loaded.labels.to(device)

    (train_set, eval_set) = splits
    x_train, y_train = prepare(train_set)
    x_eval, y_eval = prepare(eval_set)
    return TrainData(x_train, y_train, x_eval, y_eval, train_set.name, eval_set.name,
                     tuple(train_set.classes))


def build_model(cfg: TrainConfig, source: ModelSource, classes: int, notes: list[str]) -> tuple[ModelSpec, nn.Module]:
    """The model ``source`` names with one output per class of the data: the constructor is given
    ``num_classes`` when it takes it, otherwise its output width must already match."""
    from netviz.sources import open_model

    spec, net = open_model(source, num_classes=classes, notes=notes)
    if spec.num_classes != classes:
        raise NetvizError(
            f"{cfg.dataset} has {classes} classes but the model '{spec.name}' outputs "
            f"{spec.num_classes} scores and its constructor takes no num_classes: give it "
            f"{classes} outputs (e.g. --model-arg num_classes={classes} if it has such an argument)"
        )
    return spec, net


def build_optimizer(cfg: TrainConfig, params, steps_per_epoch: int):
    """(optimiser, scheduler or None) of the recipe; one-cycle steps per batch, StepLR per epoch."""
    import torch

    opt: torch.optim.Optimizer
    if cfg.optimizer == "adadelta":
        opt = torch.optim.Adadelta(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    elif cfg.optimizer in ("adam", "amsgrad"):
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                               amsgrad=cfg.optimizer == "amsgrad")
    elif cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                              weight_decay=cfg.weight_decay)
    sched = None
    if cfg.scheduler == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=cfg.gamma)
    elif cfg.scheduler == "onecycle":
        # OneCycleLR divides by each phase's length less one: a run of a few batches gets phases that
        # are not empty (a long run keeps pct_start as it is)
        total = cfg.epochs * steps_per_epoch
        pct = min(max(cfg.pct_start, 1.5 / total), 1 - 0.5 / total)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, epochs=cfg.epochs,
                                                    steps_per_epoch=steps_per_epoch, pct_start=pct)
    return opt, sched


@dataclass
class TrainState:
    """Where training stands: enough to resume bit for bit after a Ctrl-C in mid-epoch."""

    epoch: int = 0  # epochs finished
    step: int = 0  # batches finished in the current epoch
    perm: torch.Tensor | None = None  # the current epoch's shuffled order
    loss: float = 0.0  # sums over the current epoch so far
    correct: int = 0
    count: int = 0
    seconds: float = 0.0  # training seconds of the current epoch so far
    elapsed: float = 0.0  # training + evaluation seconds of all finished epochs
    metrics: list[dict[str, Any]] = field(default_factory=list)
    milestones: dict[str, dict[str, Any]] = field(default_factory=dict)
    nonfinite: str | None = None  # where the loss first stopped being finite (on_nonfinite = "continue")
    # the training loss and accuracy within epochs (rank 0's part of each batch under torchrun):
    # [{"epoch": 0.04, "train_loss": ..., "train_acc": ...}, ...], since the last point
    trace: list[dict[str, float]] = field(default_factory=list)
    since: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # loss sum, correct, count

    def accum(self) -> dict[str, Any]:
        return {"loss": self.loss, "correct": self.correct, "count": self.count,
                "seconds": self.seconds, "elapsed": self.elapsed}

    def next_epoch(self) -> None:
        self.epoch += 1
        self.step, self.perm = 0, None
        self.loss, self.correct, self.count, self.seconds = 0.0, 0, 0, 0.0


class _Interrupt:
    """Ctrl-C (SIGINT) during training, taken between two steps.

    A signal can land anywhere in a step: after the optimiser changed the weights but before the
    step was counted, or halfway through the update itself. The first Ctrl-C is only noted, and
    :func:`train_one_epoch` stops before its next step, so the checkpoint it leaves is a state
    the uninterrupted run went through (weights, optimiser, data order, random states), and
    ``--resume`` goes on bit for bit. A second Ctrl-C stops at once, without saving.
    """

    def __init__(self) -> None:
        self.requested = False  # a Ctrl-C waits for the end of the step
        self.forced = False  # a second one stopped mid-step: the state in memory is not saved

    def handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            self.forced = True
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


@contextlib.contextmanager
def _interrupts() -> Iterator[_Interrupt]:
    """Take SIGINT between steps while training (only the main thread can set a handler: a
    notebook's worker thread keeps Python's own, immediate KeyboardInterrupt)."""
    interrupt = _Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield interrupt
        return
    previous = signal.signal(signal.SIGINT, interrupt.handle)
    try:
        yield interrupt
    finally:
        signal.signal(signal.SIGINT, previous)


def _before_step(state: TrainState, steps_per_epoch: int) -> None:
    """Called before every training step (a test raises KeyboardInterrupt here at a known step)."""


def train_one_epoch(model: nn.Module, data: TrainData, cfg: TrainConfig, opt, sched,
                    state: TrainState, generator: torch.Generator, *, quiet: bool = False,
                    interrupt: _Interrupt | None = None) -> None:
    """Train from ``state.step`` to the end of the epoch; ``state`` follows every batch.

    Under torchrun (``model`` wrapped in DistributedDataParallel) every rank draws the same global
    batch of ``cfg.batch_size`` (the shuffle and the augmentation come from ``generator``, seeded
    from --seed, alike on every rank) and trains on its contiguous part of it; the loss is weighted
    so that DDP's averaged gradient is the global batch's, whatever the world size. ``state``
    counts this rank's images; :func:`record_epoch` sums them over the ranks.
    """
    import torch
    from torch.nn import functional as F

    from netviz import distributed
    from netviz.data import augment
    from netviz.device import autocast
    from netviz.progress import progress

    ctx = distributed.context()

    device = data.x_train.device
    n = len(data.y_train)
    steps = -(-n // cfg.batch_size)
    if state.perm is None:
        state.perm = torch.randperm(n, generator=generator)
    model.train()
    start = time.perf_counter()
    done = min(state.step * cfg.batch_size, n)
    bar = progress(total=n, initial=done, quiet=quiet, desc=f"epoch {state.epoch + 1}/{cfg.epochs}",
                   unit="img", unit_scale=True)
    try:
        while state.step < steps:
            if interrupt is not None:
                interrupt.check()  # a Ctrl-C since the last step stops here, between two steps
            _before_step(state, steps)
            idx = state.perm[state.step * cfg.batch_size:(state.step + 1) * cfg.batch_size].to(device)
            xb, yb = data.x_train[idx], data.y_train[idx]
            if cfg.augment > 0:
                k = round(cfg.augment * len(idx))
                xb[:k] = augment(xb[:k], generator, pad=cfg.crop_pad, flip=cfg.flip)
            part = torch.tensor_split(torch.arange(len(idx), device=device), ctx.world_size)[ctx.rank]
            xb, yb = (xb[part], yb[part]) if ctx.active else (xb, yb)
            with autocast(device, cfg.amp):
                logits = model(xb)
                loss = F.cross_entropy(logits.float(), yb, label_smoothing=cfg.label_smoothing)
            # DDP averages the ranks' gradients: weight each part by its share of the global batch
            weighted = loss * (len(yb) * ctx.world_size / len(idx)) if ctx.active else loss
            opt.zero_grad(set_to_none=True)
            weighted.backward()
            opt.step()
            if sched is not None and cfg.scheduler == "onecycle":
                sched.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                _diverged(cfg, state, value, opt.param_groups[0]["lr"])
            right = int((logits.argmax(1) == yb).sum())
            state.loss += value * len(yb)
            state.correct += right
            state.count += len(yb)
            state.step += 1
            _trace(state, value * len(yb), right, len(yb), steps)
            bar.update(len(idx))
            if state.step % 20 == 0:
                bar.set_postfix(loss=f"{state.loss / state.count:.4f}", refresh=False)
    finally:
        state.seconds += time.perf_counter() - start
        bar.close()
    if sched is not None and cfg.scheduler == "step":
        sched.step()


TRACE_POINTS = 25  # points of trace.json per epoch


def _trace(state: TrainState, loss: float, correct: int, count: int, steps: int) -> None:
    """Add a batch to the running sums; every 1/TRACE_POINTS of an epoch, a point of trace.json."""
    since = state.since
    since[0] += loss
    since[1] += correct
    since[2] += count
    every = max(1, steps // TRACE_POINTS)
    if (state.step % every == 0 or state.step == steps) and since[2]:
        state.trace.append({"epoch": round(state.epoch + state.step / steps, 4), "train_loss": since[0] / since[2],
                            "train_acc": since[1] / since[2]})
        state.since = [0.0, 0.0, 0.0]


class TrainingDiverged(NetvizError):
    """The training loss stopped being finite (NaN or infinite)."""


def _diverged(cfg: TrainConfig, state: TrainState, value: float, lr: float) -> None:
    """Stop at the first non-finite loss; with ``on_nonfinite = "continue"``, say it once and go on."""
    from netviz.progress import say

    where = f"epoch {state.epoch + 1}, step {state.step + 1}"
    if cfg.on_nonfinite == "stop":
        raise TrainingDiverged(f"training diverged: the loss is {value} at {where} (lr {lr:.3g}); the run "
                               "stopped: lower --lr, or pass --on-nonfinite continue to train on")
    if state.nonfinite is None:
        state.nonfinite = where
        say(f"warning: the training loss is {value} from {where} on (lr {lr:.3g}): training diverged; "
            "commands will refuse these weights", False)  # a warning --quiet does not hide


def eval_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000,
             amp: bool = True) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on normalised inputs ``x`` and labels ``y``;
    under torchrun each rank evaluates its share and the sums are added over the ranks."""
    import torch
    from torch.nn import functional as F

    from netviz import distributed
    from netviz.device import autocast

    model.eval()
    loss_sum, correct = 0.0, 0
    share = distributed.shard(len(y))
    x, y_part = x[share.start:share.stop], y[share.start:share.stop]
    with torch.no_grad():
        for start in range(0, len(y_part), batch_size):
            xb, yb = x[start:start + batch_size], y_part[start:start + batch_size]
            with autocast(xb.device, amp):
                logits = model(xb)
            loss_sum += float(F.cross_entropy(logits.float(), yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
    loss_sum, correct = distributed.all_sum([loss_sum, correct])
    return loss_sum / len(y), correct / len(y)


def record_epoch(state: TrainState, eval_loss: float, eval_acc: float, eval_seconds: float,
                 lr: float, images: int) -> dict[str, Any]:
    """Close the epoch in ``state``: its metrics row, and any milestone it passed first (the
    training sums added over the ranks under torchrun)."""
    from netviz import distributed

    state.loss, state.correct, state.count = distributed.all_sum([state.loss, state.correct, state.count])
    state.elapsed += state.seconds + eval_seconds
    row = {"epoch": state.epoch + 1, "train_loss": state.loss / state.count,
           "train_acc": state.correct / state.count, "eval_loss": eval_loss, "eval_acc": eval_acc,
           "seconds": round(state.seconds, 3), "eval_seconds": round(eval_seconds, 3),
           "elapsed": round(state.elapsed, 3), "images_per_second": round(images / state.seconds, 1),
           "lr": lr}
    state.metrics.append(row)
    for level in MILESTONES:
        key = f"{level:g}"
        if eval_acc >= level and key not in state.milestones:
            state.milestones[key] = {"epoch": row["epoch"], "seconds": row["elapsed"],
                                     "eval_acc": eval_acc}
    return row


def summary_record(cfg: TrainConfig, state: TrainState, data: TrainData) -> dict[str, Any]:
    """The contents of ``summary.json``: how the run ended and when it passed each milestone."""
    best = max(state.metrics, key=lambda m: m["eval_acc"])
    train_seconds = sum(m["seconds"] for m in state.metrics)
    return {
        "model": cfg.model, "train": data.train_name, "eval": data.eval_name,
        "epochs": state.epoch, "final_eval_acc": state.metrics[-1]["eval_acc"],
        "best_eval_acc": best["eval_acc"], "best_epoch": best["epoch"],
        "seconds": round(state.elapsed, 3),
        "images_per_second": round(state.epoch * len(data.y_train) / train_seconds, 1),
        "time_means": "training + evaluation seconds from the start, without netviz's "
                      "checkpoints and weight statistics",
        "milestones": {f"{level:g}": state.milestones.get(f"{level:g}") for level in MILESTONES},
    }


def milestone_line(milestones: dict[str, dict[str, Any] | None]) -> str:
    """"eval accuracy 0.98 at epoch 1 (9.8 s), 0.99 at epoch 1 (9.8 s), 0.995 not reached"."""
    parts = []
    for key, hit in milestones.items():
        parts.append(f"{key} not reached" if hit is None
                     else f"{key} at epoch {hit['epoch']} ({hit['seconds']:.1f} s)")
    return "eval accuracy " + ", ".join(parts)


# -- the run folder ------------------------------------------------------------------------------

class TrainingInterrupted(NetvizError):
    exit_code = 130


def _resume_config(resume: str | Path, model: str | None, overrides: dict[str, Any]
                   ) -> tuple[TrainConfig, RunFolder, dict[str, Any]]:
    from netviz.files import read_toml
    from netviz.runs import RunFolder, load_checkpoint

    resume = Path(resume)
    folder = RunFolder(resume.parent.parent if resume.is_file() else resume)
    if not folder.is_run():
        raise NetvizError(f"cannot resume {resume}: not a netviz run folder (no config.toml)")
    saved = read_toml(folder.config)
    if model is not None and model != saved.get("model"):
        raise NetvizError(f"cannot resume {folder.path}: it trains '{saved.get('model')}', not '{model}'")
    allowed = {"epochs", "device", "data_dir", "eval_batch_size"}
    saved.update({k: v for k, v in overrides.items() if v is not None and k in allowed})
    cfg = resolve_config(saved.pop("model", None), None, **saved)
    last = resume if resume.is_file() else folder.checkpoint("last")
    state = load_checkpoint(last)
    if folder.is_finished() and state.get("epoch", 0) >= cfg.epochs:
        raise NetvizError(f"run {folder.path} finished all {cfg.epochs} epoch(s): nothing to resume "
                          f"(--epochs {cfg.epochs + 1} or more trains it further)")
    if "optimizer" not in state:
        raise NetvizError(f"{last} is not resumable (no optimizer state): resume from checkpoints/last.pt")
    return cfg, folder, state


def _new_folder(cfg: TrainConfig) -> RunFolder:
    from netviz.files import slug
    from netviz.runs import create_run_folder, runs_root
    from netviz.sources import ModelSource

    # the model's short name: a card's model is an absolute path by now, never a folder name
    model = slug(ModelSource(ref=cfg.model).name.replace(":", "-"), 60)
    name = cfg.name or f"{model}-{datetime.now():%Y%m%d-%H%M%S}"
    return create_run_folder(runs_root(cfg.runs_dir), name, unique=cfg.name is None)


def _fill_defaults(cfg: TrainConfig) -> None:
    from netviz import data as D
    from netviz.registry import get_spec
    from netviz.sources import ModelSource, load_card

    source = ModelSource(ref=cfg.model)
    if source.kind == "name":
        cfg.dataset = cfg.dataset or get_spec(cfg.model).default_dataset
    elif cfg.model.endswith(".toml"):
        cfg.dataset = cfg.dataset or load_card(cfg.model).dataset
    if cfg.dataset is None:
        raise NetvizError(f"model '{cfg.model}' has no default data set: pass --dataset "
                          "(mnist, cifar10 or imagefolder:PATH)")
    train_split, eval_split = D.default_splits(cfg.dataset)
    cfg.train_split = cfg.train_split or train_split
    cfg.eval_split = cfg.eval_split or eval_split
    D.parse_split(cfg.train_split), D.parse_split(cfg.eval_split)


def _say_overlap(cfg: TrainConfig, splits: tuple[TensorData, TensorData]) -> None:
    """Training images that are also evaluation images make the eval accuracy a training one: a
    warning that --quiet does not hide (it changes what the run's numbers mean)."""
    from netviz.progress import say

    shared = splits[0].shared_with(splits[1])
    if shared:
        say(f"warning: the train split {cfg.train_split} and the eval split {cfg.eval_split} share {shared:,} "
            "images: the eval accuracy is partly measured on training images (pass --eval-split with "
            "other images, e.g. the rest of the split)")


def _configure(model: str | ModelSource | None, config: str | Path | None, resume: str | Path | None,
               overrides: dict[str, Any]
               ) -> tuple[TrainConfig, RunFolder | None, dict[str, Any] | None, ModelSource]:
    """The recipe, a config file and options; or the interrupted run's own config, folder and
    last checkpoint. And the model's source: the one given, or built here once from the config."""
    from netviz.sources import ModelSource

    given = model if isinstance(model, ModelSource) else None
    name = given.ref if given is not None else model
    if given is not None and given.region is not None:
        raise NetvizError("--region reads a segmentation map's scores; netviz train fits one class per "
                          "image: train without it")
    if given is not None:
        # what the user said about the model (a card's data set too), unless an option says otherwise
        overrides = {**given.config_values(), **{k: v for k, v in overrides.items() if v is not None}}
    if resume is not None:
        cfg, folder, saved = _resume_config(resume, name, overrides)
    else:
        cfg, folder, saved = resolve_config(name, config, **overrides), None, None
    _fill_defaults(cfg)
    if given is not None and given.ref is not None and resume is None:
        return cfg, folder, saved, given  # the model the user named, as the CLI parsed it
    # a model named by the config file, the recipe or the interrupted run: what the config says
    # (the user's own options are in it as overrides)
    return cfg, folder, saved, ModelSource.from_options(
        cfg.model, model_args=cfg.model_args, weights=cfg.weights, input_shape=cfg.input_shape,
        mean=cfg.mean, std=cfg.std, classes=cfg.classes, output=cfg.output, activation=cfg.activation,
        reshape=cfg.reshape)


def _join(cfg: TrainConfig, new_run: bool) -> tuple[torch.device, Any]:
    """The device, and under torchrun the process group (one GPU per rank); every rank checks
    what would stop the run, so none is left waiting for the others."""
    from netviz import distributed
    from netviz.device import resolve_device
    from netviz.runs import runs_root

    device = resolve_device(cfg.device)
    ctx = distributed.init(device)
    cfg.world_size = ctx.world_size
    distributed.check_world(cfg.batch_size)  # the global batch must split evenly among the ranks
    taken = runs_root(cfg.runs_dir) / cfg.name if new_run and cfg.name else None
    if taken is not None and taken.exists():
        raise NetvizError(f"run {taken} already exists: pass another --name, or --resume {taken}")
    return device, ctx


def _record_model(cfg: TrainConfig, spec: ModelSpec, source: ModelSource) -> None:
    """Write into ``cfg`` what the model is, as it was resolved, so the run reopens alone from any
    folder with the same output width."""
    if source.kind != "name":
        cfg.model, cfg.model_args = source.record()["model"], dict(source.model_args)
        cfg.input_shape, cfg.mean, cfg.std = list(spec.input_shape), list(spec.mean), list(spec.std)
        cfg.classes = list(spec.class_names)
    if source.weights not in (None, "default"):
        cfg.weights = str(Path(source.weights).expanduser().resolve())
    cfg.num_classes = spec.num_classes
    cfg.output, cfg.activation, cfg.reshape = source.output, source.activation, source.reshape
    if cfg.dataset.startswith("imagefolder:"):
        cfg.dataset = "imagefolder:" + str(Path(cfg.dataset.split(":", 1)[1]).expanduser().resolve())
    if cfg.data_dir is not None:
        cfg.data_dir = str(Path(cfg.data_dir).expanduser().resolve())


@dataclass
class _Session:
    """What the steps of one training session share."""

    cfg: TrainConfig
    spec: ModelSpec
    net: nn.Module  # the model itself: its weights are what is saved
    model: nn.Module  # what trains: ``net``, or DistributedDataParallel around it
    data: TrainData
    opt: Any
    sched: Any
    gen: torch.Generator
    main: bool  # rank 0, the one process that writes
    state: TrainState = field(default_factory=TrainState)
    folder: RunFolder | None = None
    stats: dict[str, Any] = field(default_factory=dict)  # weight_stats.json

    def checkpoint(self, which: str) -> None:
        import torch

        from netviz.runs import save_checkpoint

        if not self.main:
            return  # the weights are the same on every rank
        st = self.state
        payload = {"model": self.net.state_dict(), "epoch": st.epoch}
        if which == "last":
            payload.update(optimizer=self.opt.state_dict(), step=st.step, perm=st.perm,
                           scheduler=self.sched.state_dict() if self.sched is not None else {},
                           generator=self.gen.get_state(), rng=torch.get_rng_state(),
                           accum=st.accum(), milestones=st.milestones, trace=st.trace, since=st.since)
        save_checkpoint(self.folder.checkpoint(which), self.spec.name, payload)

    def write_config(self) -> None:
        from netviz.files import dump_toml, write_text

        if self.main:
            write_text(self.folder.config, dump_toml(dataclasses.asdict(self.cfg)))


def _setup(cfg: TrainConfig, source: ModelSource, splits: tuple[TensorData, TensorData], device: torch.device,
           ctx: Any, quiet: bool) -> _Session:
    """The model (one output per class of the data), the data fitted to it, the optimiser."""
    import torch

    from netviz.device import memory_format, seed_everything
    from netviz.progress import say

    seed_everything(cfg.seed)
    notes: list[str] = []
    spec, net = build_model(cfg, source, len(splits[0].classes), notes)
    for note in notes:
        say(f"note: {note}", quiet)
    if source.classes is None and tuple(splits[0].classes) != spec.class_names:
        spec = dataclasses.replace(spec, class_names=tuple(splits[0].classes))  # the data's names
        cfg.classes = list(spec.class_names)
    _record_model(cfg, spec, source)
    fmt = memory_format(device, cfg.amp, cfg.channels_last)
    net = net.to(device, memory_format=fmt)
    model = net
    if ctx.active:
        from torch.nn.parallel import DistributedDataParallel

        torch.manual_seed(cfg.seed + 1000 * ctx.rank)  # dropout differs per rank; the weights do not
        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    data = prepare_data(splits, spec, device, fmt)
    opt, sched = build_optimizer(cfg, net.parameters(), -(-len(data.y_train) // cfg.batch_size))
    return _Session(cfg, spec, net, model, data, opt, sched, torch.Generator().manual_seed(cfg.seed),
                    ctx.is_main)


def _start_folder(s: _Session) -> None:
    """A new run folder (made by rank 0, its name sent to the others) with the config, the
    initial weights and their statistics."""
    from netviz import distributed
    from netviz.files import set_latest, write_json
    from netviz.runs import RunFolder
    from netviz.stats import state_stats

    s.folder = RunFolder(Path(distributed.broadcast(str(_new_folder(s.cfg).path) if s.main else None)))
    s.stats = {"bins": s.cfg.hist_bins, "epochs": [0], "layers": {
        k: [v] for k, v in state_stats(s.net.state_dict(), s.cfg.hist_bins).items()}}
    if not s.main:
        return
    try:
        s.write_config()
        s.checkpoint("init")
        write_json(s.folder.weight_stats, s.stats)
        s.checkpoint("last")
    except BaseException:  # a run that could not start (a full disk, Ctrl-C) leaves nothing behind
        shutil.rmtree(s.folder.path, ignore_errors=True)
        raise
    set_latest(s.folder.path)


def _restore(s: _Session, folder: RunFolder, saved: dict[str, Any], quiet: bool) -> None:
    """The interrupted run's weights, optimiser, schedule, random state and partial epoch."""
    import torch

    from netviz.files import read_json
    from netviz.progress import say
    from netviz.runs import load_weights

    s.folder = folder
    load_weights(s.net, saved["model"], folder.checkpoint("last"))
    s.opt.load_state_dict(saved["optimizer"])
    if s.sched is not None and saved.get("scheduler"):
        s.sched.load_state_dict(saved["scheduler"])
    s.gen.set_state(saved["generator"])
    torch.set_rng_state(saved["rng"])
    accum = saved["accum"]
    s.state = TrainState(epoch=saved["epoch"], step=saved["step"], perm=saved.get("perm"),
                         loss=accum["loss"], correct=accum["correct"], count=accum["count"],
                         seconds=accum["seconds"], elapsed=accum.get("elapsed", 0.0),
                         milestones=dict(saved.get("milestones", {})), trace=list(saved.get("trace", [])),
                         since=list(saved.get("since", [0.0, 0.0, 0.0])))
    if folder.metrics.is_file():
        s.state.metrics = [m for m in read_json(folder.metrics) if m["epoch"] <= s.state.epoch]
    s.stats = read_json(folder.weight_stats)
    say(f"resuming {folder.path} at epoch {s.state.epoch + 1}, step {s.state.step}", quiet)


def _epoch(s: _Session, quiet: bool, interrupt: _Interrupt | None = None) -> None:
    """One epoch: train, evaluate, say and record the metrics and weight statistics, checkpoint."""
    from netviz.files import write_json
    from netviz.progress import say
    from netviz.stats import state_stats

    cfg, state = s.cfg, s.state
    train_one_epoch(s.model, s.data, cfg, s.opt, s.sched, state, s.gen, quiet=quiet, interrupt=interrupt)
    eval_start = time.perf_counter()
    eval_loss, eval_acc = eval_accuracy(s.net, s.data.x_eval, s.data.y_eval, cfg.eval_batch_size, cfg.amp)
    passed = set(state.milestones)
    row = record_epoch(state, eval_loss, eval_acc, time.perf_counter() - eval_start,
                       s.opt.param_groups[0]["lr"], len(s.data.y_train))
    say(f"epoch {row['epoch']}/{cfg.epochs}  train loss {row['train_loss']:.4f} "
        f"acc {row['train_acc']:.4f}  |  eval loss {eval_loss:.4f} acc {eval_acc:.4f}  |  "
        f"{row['seconds']:.1f} s, {row['images_per_second']:,.0f} img/s", quiet)
    for key in sorted(set(state.milestones) - passed):
        say(f"eval accuracy passed {key} after {row['elapsed']:.1f} s (epoch {row['epoch']})", quiet)
    s.stats["epochs"].append(row["epoch"])
    for k, v in state_stats(s.net.state_dict(), s.stats["bins"]).items():
        s.stats["layers"].setdefault(k, []).append(v)
    state.next_epoch()
    if s.main:
        write_json(s.folder.metrics, state.metrics)
        write_json(s.folder.trace, state.trace)
        write_json(s.folder.weight_stats, s.stats)
    s.checkpoint("last")


def _finish(s: _Session, started: float, device: torch.device, quiet: bool) -> Run:
    """The final weights, the config as this session ran it (a resume may have used another
    number of processes), the curves, ``summary.json`` and the run's manifest."""
    from netviz.catalog import how_to_read
    from netviz.draw.curves import plot_curves
    from netviz.files import write_json
    from netviz.outputs import write_manifest
    from netviz.progress import say
    from netviz.runs import Run, run_artifacts

    cfg, folder = s.cfg, s.folder
    s.checkpoint("final")
    summary = summary_record(cfg, s.state, s.data)
    if s.main:
        s.write_config()
        smoothing = f" (train loss with label smoothing {cfg.label_smoothing:g})" if cfg.label_smoothing else ""
        plot_curves(s.state.metrics, folder.curves, title=f"{cfg.model}: train {s.data.train_name}, eval "
                    f"{s.data.eval_name}{smoothing}", trace=s.state.trace)
        write_json(folder.summary, summary)
        write_manifest(folder.path, "train", run_artifacts(folder), run_path=folder.path, model=s.spec.name,
                       options={k: v for k, v in dataclasses.asdict(cfg).items() if v is not None},
                       summary={k: summary[k] for k in ("final_eval_acc", "best_eval_acc", "epochs", "seconds")},
                       how_to_read=how_to_read("train"), started=started)
    say(milestone_line(summary["milestones"]), quiet)
    return Run(spec=s.spec, model=s.net.eval(), device=device, path=folder.path.resolve(),
               checkpoint=folder.checkpoint("final").resolve(), config=dataclasses.asdict(cfg), metrics=s.state.metrics)


def train(model: str | ModelSource | None = None, *, config: str | Path | None = None, resume: str | Path | None = None,
          quiet: bool = False, **overrides: Any) -> Run:
    """Train a model and write a run folder; returns the loaded :class:`Run`.

    Keyword overrides are :class:`TrainConfig` fields (``epochs=3``, ``train_split="test[:8000]"`` ...).
    ``resume`` continues the run folder (or its ``last.pt``) exactly where it stopped, with this
    or another number of processes. Under torchrun the model is wrapped in
    DistributedDataParallel (see :func:`train_one_epoch`) and rank 0 alone writes the run folder.
    """
    started = time.time()
    # 1. config and processes
    cfg, folder, saved, source = _configure(model, config, resume, overrides)
    device, ctx = _join(cfg, new_run=saved is None)
    # 2. data, before the run folder exists: a missing data set leaves nothing behind
    splits = load_splits(cfg)
    _say_overlap(cfg, splits)
    # 3. model, data on its device, optimiser
    s = _setup(cfg, source, splits, device, ctx, quiet)
    # 4. the run folder: a new one, or the interrupted one with its state restored
    if saved is None:
        _start_folder(s)
    else:
        _restore(s, folder, saved, quiet)
    # 5. epochs; Ctrl-C keeps a resumable checkpoint, taken between two steps
    with _interrupts() as interrupt:
        try:
            while s.state.epoch < cfg.epochs:
                _epoch(s, quiet, interrupt)
        except KeyboardInterrupt:
            _save_interrupted(s, interrupt)
    # 6. final weights, curves, summary
    return _finish(s, started, device, quiet)


def _save_interrupted(s: _Session, interrupt: _Interrupt) -> None:
    """Keep a resumable checkpoint of where training stopped and say how to go on."""
    if interrupt.forced:  # stopped mid-step: last.pt still holds the end of the previous epoch
        raise TrainingInterrupted(
            f"interrupted twice: stopped at once, without saving; `netviz train --resume "
            f"{s.folder.path}` continues from {s.folder.checkpoint('last')}") from None
    s.checkpoint("last")
    raise TrainingInterrupted(
            f"interrupted at epoch {s.state.epoch + 1}, step {s.state.step}: saved "
            f"{s.folder.checkpoint('last')}; continue with `netviz train --resume {s.folder.path}`"
        ) from None
