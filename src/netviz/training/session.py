"""One training session around the loop: the processes, the run folder, the checkpoints, resuming,
and what the end writes (final weights, curves, summary, manifest)."""

from __future__ import annotations

import dataclasses
import shutil
import time
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


from netviz.training.config import TrainConfig
from netviz.training.loop import (
    Interrupt,
    TrainData,
    TrainState,
    build_model,
    build_optimizer,
    eval_accuracy,
    milestone_line,
    prepare_data,
    record_epoch,
    summary_record,
    train_one_epoch,
)


class TrainingInterrupted(NetvizError):
    exit_code = 130


def _new_folder(cfg: TrainConfig) -> RunFolder:
    from netviz.files import slug
    from netviz.runs import create_run_folder, runs_root
    from netviz.sources import ModelSource

    # the model's short name: a card's model is an absolute path by now, never a folder name
    model = slug(ModelSource(ref=cfg.model).name.replace(":", "-"), 60)
    name = cfg.name or f"{model}-{datetime.now():%Y%m%d-%H%M%S}"
    return create_run_folder(runs_root(cfg.runs_dir), name, unique=cfg.name is None)


def say_overlap(cfg: TrainConfig, splits: tuple[TensorData, TensorData]) -> None:
    """Training images that are also evaluation images make the eval accuracy a training one: a
    warning that --quiet does not hide (it changes what the run's numbers mean)."""
    from netviz.progress import say

    shared = splits[0].shared_with(splits[1])
    if shared:
        say(f"warning: the train split {cfg.train_split} and the eval split {cfg.eval_split} share {shared:,} "
            "images: the eval accuracy is partly measured on training images (pass --eval-split with "
            "other images, e.g. the rest of the split)")


def join_processes(cfg: TrainConfig, new_run: bool) -> tuple[torch.device, Any]:
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
    if not source.kind.registry:
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
class Session:
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


def setup(cfg: TrainConfig, source: ModelSource, splits: tuple[TensorData, TensorData], device: torch.device,
           ctx: Any, quiet: bool) -> Session:
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
    return Session(cfg, spec, net, model, data, opt, sched, torch.Generator().manual_seed(cfg.seed),
                    ctx.is_main)


def start_folder(s: Session) -> None:
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


def restore(s: Session, folder: RunFolder, saved: dict[str, Any], quiet: bool) -> None:
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


def run_epoch(s: Session, quiet: bool, interrupt: Interrupt | None = None) -> None:
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


def finish(s: Session, started: float, device: torch.device, quiet: bool) -> Run:
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


def save_interrupted(s: Session, interrupt: Interrupt) -> None:
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
