"""Training: the loop, per-epoch metrics and weight statistics, resumable checkpoints.

``train(model="mnist", train_split="test[:8000]", eval_split="test[8000:]", epochs=3, seed=1)``
returns a :class:`netviz.runs.Run`. Everything it writes lands in the run folder (see runs.py).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz.errors import NetvizError

if TYPE_CHECKING:
    import torch

    from netviz.runs import Run

OPTIMIZERS = ("adadelta", "adam", "amsgrad", "adamw", "sgd")
SCHEDULERS = ("none", "step", "onecycle")

# Reference recipes from techniques.md; configs/<model>.toml hold the same values (a test checks).
RECIPES: dict[str, dict[str, Any]] = {
    "mnist": {"dataset": "mnist", "epochs": 10, "batch_size": 64, "lr": 1.0,
              "optimizer": "adadelta", "scheduler": "step", "gamma": 0.7, "augment": 0.0},
    "allconv": {"dataset": "cifar10", "epochs": 8, "batch_size": 50, "lr": 5e-4,
                "optimizer": "amsgrad", "scheduler": "none", "augment": 0.5},
}


@dataclass
class TrainConfig:
    """Every hyper-parameter of a run; written to ``config.toml`` as resolved."""

    model: str = "mnist"
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
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0
    augment: float = 0.0  # fraction of each batch given random crop + flip
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 autocast + channels_last on CUDA
    hist_bins: int = 60
    runs_dir: str | None = None
    name: str | None = None

    def validate(self) -> TrainConfig:
        checks = [
            (self.epochs > 0, f"--epochs must be at least 1, not {self.epochs}"),
            (self.batch_size > 0, f"--batch-size must be at least 1, not {self.batch_size}"),
            (self.eval_batch_size > 0, "eval_batch_size must be at least 1"),
            (self.lr > 0, f"--lr must be positive, not {self.lr}"),
            (self.optimizer in OPTIMIZERS, f"unknown optimizer '{self.optimizer}': use one of {', '.join(OPTIMIZERS)}"),
            (self.scheduler in SCHEDULERS, f"unknown scheduler '{self.scheduler}': use one of {', '.join(SCHEDULERS)}"),
            (0.0 <= self.augment <= 1.0, f"augment must be a fraction in [0, 1], not {self.augment}"),
            (self.hist_bins > 0, "hist_bins must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise NetvizError(message)
        return self


def resolve_config(model: str | None = None, config_file: str | Path | None = None,
                   **overrides: Any) -> TrainConfig:
    """Defaults < the model's recipe < the config file < explicit overrides (None = not given)."""
    from netviz.registry import get_spec
    from netviz.runs import read_toml

    values: dict[str, Any] = {}
    file_values = read_toml(config_file) if config_file else {}
    name = model or file_values.get("model") or "mnist"
    get_spec(name)  # unknown model -> clear error before anything else
    values.update(RECIPES.get(name, {}))
    values.update(file_values)
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["model"] = name
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise NetvizError(f"unknown config key(s) {', '.join(unknown)}: known keys are {', '.join(sorted(fields))}")
    try:
        return TrainConfig(**values).validate()
    except TypeError as exc:
        raise NetvizError(f"bad config value: {exc}") from exc


def _make_optimizer(cfg: TrainConfig, params, steps_per_epoch: int):
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
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, epochs=cfg.epochs,
                                                    steps_per_epoch=steps_per_epoch)
    return opt, sched


def _check_writable(root: Path) -> None:
    import os

    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NetvizError(f"cannot create runs folder {root}: {exc.strerror or exc}; pass --runs-dir DIR") from exc
    if not os.access(root, os.W_OK | os.X_OK):
        raise NetvizError(f"runs folder {root} is not writable: pass --runs-dir DIR")


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000,
             amp: bool = True) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on normalised inputs ``x`` and labels ``y``."""
    import torch
    from torch.nn import functional as F

    from netviz.device import autocast

    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(y), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            with autocast(xb.device, amp):
                logits = model(xb)
            loss_sum += float(F.cross_entropy(logits.float(), yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
    return loss_sum / len(y), correct / len(y)


class TrainingInterrupted(NetvizError):
    exit_code = 130


def train(model: str | None = None, *, config: str | Path | None = None, resume: str | Path | None = None,
          quiet: bool = False, _interrupt_at_step: int | None = None, **overrides: Any) -> Run:
    """Train a registry model and write a run folder; returns the loaded :class:`Run`.

    Keyword overrides are :class:`TrainConfig` fields (``epochs=3``, ``train_split="test[:8000]"`` ...).
    ``resume`` continues the run folder (or its ``last.pt``) exactly where it stopped.
    """
    import torch
    from torch.nn import functional as F

    from netviz import data as D
    from netviz.device import autocast, memory_format, resolve_device, seed_everything
    from netviz.progress import progress, say
    from netviz.registry import build_model, get_spec
    from netviz.runs import (
        Run,
        dump_toml,
        load_checkpoint,
        load_weights,
        read_json,
        read_toml,
        runs_root,
        save_checkpoint,
        set_latest,
        write_json,
        write_text,
    )
    from netviz.stats import state_stats

    state: dict[str, Any] | None = None
    if resume is not None:
        resume = Path(resume)
        run_dir = resume.parent.parent if resume.is_file() else resume
        if not (run_dir / "config.toml").is_file():
            raise NetvizError(f"cannot resume {resume}: not a netviz run folder (no config.toml)")
        saved = read_toml(run_dir / "config.toml")
        if model is not None and model != saved.get("model"):
            raise NetvizError(f"cannot resume {run_dir}: it trains '{saved.get('model')}', not '{model}'")
        allowed = {"epochs", "device", "data_dir", "eval_batch_size"}
        saved.update({k: v for k, v in overrides.items() if v is not None and k in allowed})
        cfg = resolve_config(saved.pop("model", None), None, **saved)
        last = resume if resume.is_file() else run_dir / "checkpoints" / "last.pt"
        state = load_checkpoint(last, cfg.model)
        if "optimizer" not in state:
            raise NetvizError(f"{last} is not resumable (no optimizer state): resume from checkpoints/last.pt")
    else:
        cfg = resolve_config(model, config, **overrides)
        run_dir = None
    spec = get_spec(cfg.model)
    dataset = cfg.dataset or spec.default_dataset
    if dataset is None:
        raise NetvizError(f"model '{cfg.model}' has no default data set: pass --dataset")
    cfg.dataset = dataset
    train_split, eval_split = D.default_splits(dataset)
    cfg.train_split = cfg.train_split or train_split
    cfg.eval_split = cfg.eval_split or eval_split
    D.parse_split(cfg.train_split), D.parse_split(cfg.eval_split)
    device = resolve_device(cfg.device)
    root = runs_root(cfg.runs_dir)
    if run_dir is None:
        _check_writable(root)
        name = cfg.name or f"{cfg.model}-{datetime.now():%Y%m%d-%H%M%S}"
        run_dir = root / name
        if run_dir.exists():
            raise NetvizError(f"run {run_dir} already exists: pass another --name, or --resume {run_dir}")

    # Data: whole splits in memory, normalised once on the device.
    train_data = D.load_split(dataset, cfg.train_split, cfg.data_dir)
    eval_data = D.load_split(dataset, cfg.eval_split, cfg.data_dir)
    fmt = memory_format(device, cfg.amp)
    x_train = D.normalise(D.conform(train_data.images, spec)[0], spec, device).contiguous(memory_format=fmt)
    x_eval = D.normalise(D.conform(eval_data.images, spec)[0], spec, device).contiguous(memory_format=fmt)
    y_train, y_eval = train_data.labels.to(device), eval_data.labels.to(device)
    if int(y_train.max()) >= spec.num_classes:
        raise NetvizError(
            f"{dataset} has {len(train_data.classes)} classes but '{cfg.model}' predicts {spec.num_classes}"
        )

    seed_everything(cfg.seed)
    net = build_model(spec).to(device, memory_format=fmt)
    steps_per_epoch = -(-len(y_train) // cfg.batch_size)
    opt, sched = _make_optimizer(cfg, net.parameters(), steps_per_epoch)
    gen = torch.Generator().manual_seed(cfg.seed)
    metrics: list[dict[str, Any]] = []
    epoch, step, perm = 0, 0, None
    acc = {"loss": 0.0, "correct": 0, "count": 0, "seconds": 0.0}
    ckpt_dir = run_dir / "checkpoints"

    if state is not None:
        load_weights(net, state["model"], ckpt_dir / "last.pt")
        opt.load_state_dict(state["optimizer"])
        if sched is not None and state.get("scheduler"):
            sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["rng"])
        epoch, step, perm = state["epoch"], state["step"], state.get("perm")
        acc = dict(state["accum"])
        metrics = read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else []
        metrics = [m for m in metrics if m["epoch"] <= epoch]
        stats = read_json(run_dir / "weight_stats.json")
        say(f"resuming {run_dir} at epoch {epoch + 1}, step {step}", quiet)
    else:
        write_text(run_dir / "config.toml", dump_toml(dataclasses.asdict(cfg)))
        save_checkpoint(ckpt_dir / "init.pt", cfg.model, {"model": net.state_dict(), "epoch": 0})
        stats = {"bins": cfg.hist_bins, "epochs": [0], "layers": {
            k: [v] for k, v in state_stats(net.state_dict(), cfg.hist_bins).items()}}
        write_json(run_dir / "weight_stats.json", stats)
        set_latest(run_dir)

    def snapshot() -> dict[str, Any]:
        return {"model": net.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict() if sched is not None else {},
                "generator": gen.get_state(), "rng": torch.get_rng_state(),
                "epoch": epoch, "step": step, "perm": perm, "accum": dict(acc)}

    if state is None:
        save_checkpoint(ckpt_dir / "last.pt", cfg.model, snapshot())
    global_step = epoch * steps_per_epoch + step
    try:
        while epoch < cfg.epochs:
            if perm is None:
                perm = torch.randperm(len(y_train), generator=gen)
            net.train()
            start_time = time.perf_counter()
            bar = progress(total=steps_per_epoch, initial=step, quiet=quiet,
                           desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch")
            while step < steps_per_epoch:
                if _interrupt_at_step is not None and global_step == _interrupt_at_step:
                    raise KeyboardInterrupt
                idx = perm[step * cfg.batch_size:(step + 1) * cfg.batch_size].to(device)
                xb, yb = x_train[idx], y_train[idx]
                if cfg.augment > 0:
                    k = round(cfg.augment * len(idx))
                    xb[:k] = D.augment(xb[:k], gen)
                with autocast(device, cfg.amp):
                    logits = net(xb)
                    loss = F.cross_entropy(logits.float(), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None and cfg.scheduler == "onecycle":
                    sched.step()
                acc["loss"] += float(loss.detach()) * len(idx)
                acc["correct"] += int((logits.argmax(1) == yb).sum())
                acc["count"] += len(idx)
                step += 1
                global_step += 1
                bar.update(1)
            bar.close()
            acc["seconds"] += time.perf_counter() - start_time
            if sched is not None and cfg.scheduler == "step":
                sched.step()
            eval_start = time.perf_counter()
            eval_loss, eval_acc = evaluate(net, x_eval, y_eval, cfg.eval_batch_size, cfg.amp)
            epoch += 1
            row = {"epoch": epoch, "train_loss": acc["loss"] / acc["count"],
                   "train_acc": acc["correct"] / acc["count"], "eval_loss": eval_loss,
                   "eval_acc": eval_acc, "seconds": round(acc["seconds"], 3),
                   "eval_seconds": round(time.perf_counter() - eval_start, 3),
                   "lr": opt.param_groups[0]["lr"]}
            metrics.append(row)
            say(f"epoch {epoch}/{cfg.epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}"
                f"  |  eval loss {eval_loss:.4f} acc {eval_acc:.4f}  |  {row['seconds']:.1f} s", quiet)
            stats["epochs"].append(epoch)
            for k, v in state_stats(net.state_dict(), stats["bins"]).items():
                stats["layers"].setdefault(k, []).append(v)
            step, perm = 0, None
            acc = {"loss": 0.0, "correct": 0, "count": 0, "seconds": 0.0}
            write_json(run_dir / "metrics.json", metrics)
            write_json(run_dir / "weight_stats.json", stats)
            save_checkpoint(ckpt_dir / "last.pt", cfg.model, snapshot())
    except KeyboardInterrupt:
        save_checkpoint(ckpt_dir / "last.pt", cfg.model, snapshot())
        raise TrainingInterrupted(
            f"interrupted at epoch {epoch + 1}, step {step}: saved {ckpt_dir / 'last.pt'}; "
            f"continue with `netviz train --resume {run_dir}`"
        ) from None

    save_checkpoint(ckpt_dir / "final.pt", cfg.model, {"model": net.state_dict(), "epoch": epoch})
    from netviz.draw.curves import plot_curves

    plot_curves(metrics, run_dir / "curves.png",
                title=f"{cfg.model}: train {train_data.name}, eval {eval_data.name}")
    return Run(spec=spec, model=net.eval(), device=device, path=run_dir,
               checkpoint=ckpt_dir / "final.pt", config=dataclasses.asdict(cfg), metrics=metrics)
