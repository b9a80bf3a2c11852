"""A run's hyper-parameters: the recipes, :class:`TrainConfig`, and how a config is resolved from a
model's recipe, a config file, options, or an interrupted run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz.errors import NetvizError

if TYPE_CHECKING:

    from netviz.runs import RunFolder
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
    eval_batch_size: int | None = None  # None: the fastest size, measured (netviz.batching)
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
            (self.eval_batch_size is None or self.eval_batch_size > 0, "eval_batch_size must be at least 1"),
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
    if ModelSource(ref=name).kind.registry:
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


def _fill_defaults(cfg: TrainConfig) -> None:
    from netviz import data as D
    from netviz.registry import get_spec
    from netviz.sources import ModelSource, load_card

    source = ModelSource(ref=cfg.model)
    if source.kind.registry:
        cfg.dataset = cfg.dataset or get_spec(cfg.model).default_dataset
    elif source.kind.holds_source:
        cfg.dataset = cfg.dataset or load_card(cfg.model).dataset
    if cfg.dataset is None:
        raise NetvizError(f"model '{cfg.model}' has no default data set: pass --dataset "
                          "(mnist, cifar10 or imagefolder:PATH)")
    train_split, eval_split = D.default_splits(cfg.dataset)
    cfg.train_split = cfg.train_split or train_split
    cfg.eval_split = cfg.eval_split or eval_split
    D.parse_split(cfg.train_split), D.parse_split(cfg.eval_split)


def configure(model: str | ModelSource | None, config: str | Path | None, resume: str | Path | None,
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
