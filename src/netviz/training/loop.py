"""The training loop: the data on the device, the model and optimiser, one epoch of steps, the
evaluation, and the numbers an epoch leaves (metrics, trace, milestones)."""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from netviz.errors import NetvizError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.data import TensorData
    from netviz.registry import ModelSpec
    from netviz.sources import ModelSource


from netviz.training.config import MILESTONES, TrainConfig


@dataclass
class TrainData:
    """Both splits in memory, normalised once, on the training device; or, for a large image folder
    (:class:`netviz.folders.FolderImages`), read a batch at a time (:class:`Streamed`)."""

    x_train: torch.Tensor | Streamed
    y_train: torch.Tensor
    x_eval: torch.Tensor | Streamed
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
    import torch

    from netviz import data as D

    def prepare(loaded: TensorData):
        if not isinstance(loaded.images, torch.Tensor):  # a large folder: read as it is used
            return Streamed(loaded.images, spec, device, memory_format), loaded.labels.to(device)
        x = D.normalise(D.conform(loaded.images, spec)[0], spec, device)
        return x.contiguous(memory_format=memory_format), loaded.labels.to(device)

    (train_set, eval_set) = splits
    x_train, y_train = prepare(train_set)
    x_eval, y_eval = prepare(eval_set)
    return TrainData(x_train, y_train, x_eval, y_eval, train_set.name, eval_set.name,
                     tuple(train_set.classes))


class Streamed:
    """A split of a large image folder as training reads it: ``x[idx]`` (a tensor of indices or a
    slice) decodes those images, fits them to the model and normalises them on ``device``, as
    :func:`prepare_data` does for a split held in memory (the same values); :meth:`ahead` starts
    reading the next batch while the model works on this one."""

    def __init__(self, images: Any, spec: ModelSpec, device: torch.device, memory_format: torch.memory_format) -> None:
        self.images, self.spec, self.device, self.memory_format = images, spec, device, memory_format

    def __len__(self) -> int:
        return len(self.images)

    def ahead(self, idx: torch.Tensor) -> None:
        self.images.ahead([int(i) for i in idx.tolist()])

    def __getitem__(self, idx: torch.Tensor | slice) -> torch.Tensor:
        from netviz import data as D

        pixels = self.images[idx if isinstance(idx, slice) else [int(i) for i in idx.tolist()]]
        x = D.normalise(D.conform(pixels, self.spec)[0], self.spec, self.device)
        return x.contiguous(memory_format=self.memory_format)


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


class Interrupt:
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
def interrupts() -> Iterator[Interrupt]:
    """Take SIGINT between steps while training (only the main thread can set a handler: a
    notebook's worker thread keeps Python's own, immediate KeyboardInterrupt)."""
    interrupt = Interrupt()
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
                    interrupt: Interrupt | None = None) -> None:
    """Train from ``state.step`` to the end of the epoch; ``state`` follows every batch.

    Under torchrun (``model`` wrapped in DistributedDataParallel) every rank draws the same global
    batch of ``cfg.batch_size`` (the shuffle and the augmentation come from ``generator``, seeded
    from --seed, alike on every rank) and reads, augments and trains on its contiguous part of it
    alone (a streamed folder decodes a rank's share, not the global batch); the loss is weighted
    so that DDP's averaged gradient is the global batch's, whatever the world size. ``state``
    counts this rank's images; :func:`record_epoch` sums them over the ranks.
    """
    import torch
    from torch.nn import functional as F

    from netviz import distributed
    from netviz.data import apply_augment, augment_draws
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
            idx = _global_batch(state.perm, state.step, cfg.batch_size)
            part = _share(len(idx), ctx)  # this rank's rows of the global batch: it reads those alone
            mine = idx[part].to(device)
            xb, yb = data.x_train[mine], data.y_train[mine]
            if isinstance(data.x_train, Streamed):  # the next batch is read while this one trains
                following = _global_batch(state.perm, state.step + 1, cfg.batch_size)
                data.x_train.ahead(following[_share(len(following), ctx)])
            if cfg.augment > 0:  # the global batch's first k rows, each with its own draws
                k = round(cfg.augment * len(idx))
                draws = augment_draws(k, generator, pad=cfg.crop_pad)
                m = int((part < k).sum())
                xb[:m] = apply_augment(xb[:m], draws[part[:m]], pad=cfg.crop_pad, flip=cfg.flip)
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


def _global_batch(perm: torch.Tensor, step: int, batch_size: int) -> torch.Tensor:
    """The indices of the ``step``-th batch of the epoch, over every rank."""
    return perm[step * batch_size:(step + 1) * batch_size]


def _share(n: int, ctx: Any) -> torch.Tensor:
    """The positions in a global batch of ``n`` that this rank trains on: all of them alone, a
    contiguous part under torchrun."""
    import torch

    return torch.tensor_split(torch.arange(n), ctx.world_size)[ctx.rank]


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


def eval_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int | None = None,
             amp: bool = True) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on normalised inputs ``x`` and labels ``y``,
    ``batch_size`` at a time (None: measured, :mod:`netviz.batching`); under torchrun each rank
    evaluates its share and the sums are added over the ranks."""
    import torch
    from torch.nn import functional as F

    from netviz import batching, distributed
    from netviz.device import autocast

    model.eval()
    loss_sum, correct = 0.0, 0
    share = distributed.shard(len(y))
    with torch.no_grad():
        shape = tuple(x.spec.input_shape) if isinstance(x, Streamed) else tuple(x.shape[1:])
        for which in batching.batches(len(share), model, shape, "evaluation", batch_size, gradients=False):
            start, stop = share.start + which.start, share.start + which.stop
            xb, yb = x[start:stop], y[start:stop]  # a large folder's read here, a batch at a time
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
