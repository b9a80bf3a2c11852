"""The run folder: its layout (:class:`RunFolder`), the latest run, loading, atomic writes and safe
checkpoints.

A run is ``<runs-dir>/<name>/``; :class:`RunFolder` is the one place that knows what lies in it.
``<runs-dir>/latest`` names the newest run. Checkpoints are plain dicts of tensors and numbers,
loaded with ``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from netviz.errors import NetvizError
from netviz.files import atomic_write, read_json, read_toml

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.data import TensorData
    from netviz.files import Artifact
    from netviz.registry import ModelSpec
    from netviz.sources import ModelSource

CHECKPOINT_FORMAT = "netviz-checkpoint-v1"


@dataclass(frozen=True)
class RunFolder:
    """The layout of a run folder: every file name lives here and nowhere else.

    ``config.toml`` (the resolved config), ``metrics.json`` (one row per epoch), ``trace.json``
    (the training loss and accuracy about 25 times an epoch), ``summary.json``
    (final and best accuracy, milestones, throughput), ``weight_stats.json`` (per-layer statistics
    per epoch), ``curves.png`` and ``checkpoints/{init,last,final}.pt``; each command writes into
    ``<command>/`` beside them.
    """

    path: Path

    CHECKPOINTS: ClassVar[tuple[str, ...]] = ("init", "last", "final")

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> Path:
        return self.path / "config.toml"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def trace(self) -> Path:
        return self.path / "trace.json"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def weight_stats(self) -> Path:
        return self.path / "weight_stats.json"

    @property
    def curves(self) -> Path:
        return self.path / "curves.png"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint(self, which: str) -> Path:
        """``init``, ``last`` or ``final``."""
        if which not in self.CHECKPOINTS:
            raise ValueError(f"unknown checkpoint {which!r}")
        return self.checkpoints / f"{which}.pt"

    def card_cache(self, layer: str, key: str, kind: str = "neurons") -> Path:
        """Where what ``kind`` made of ``layer`` with the settings hashed to ``key`` is kept, to be
        reused by a later command (``cache/<kind>/<layer>/<key>/``): neuron cards for `netviz
        explain` and `netviz neurons`, a whole result for `netviz concepts`."""
        from netviz.files import file_stem

        return self.path / "cache" / kind / file_stem(layer) / key

    def is_run(self) -> bool:
        return self.config.is_file()

    def is_finished(self) -> bool:
        return self.checkpoint("final").is_file()

    def files(self) -> list[Path]:
        """What training wrote, in a fixed order (the paths `netviz train` prints)."""
        main = [self.config, self.metrics, self.trace, self.summary, self.weight_stats, self.curves]
        ckpts = [self.checkpoint(w) for w in self.CHECKPOINTS]
        return [p for p in main + ckpts if p.is_file()]


RUN_CAPTIONS = {
    "config.toml": "every hyper-parameter of the run, as resolved",
    "metrics.json": "one row per epoch: losses, accuracies, seconds, images per second",
    "trace.json": "the training loss and accuracy within each epoch, about 25 points an epoch",
    "summary.json": "final and best accuracy, and when the eval accuracy passed 98 %, 99 % and 99.5 %",
    "weight_stats.json": "per-layer weight statistics and histograms per epoch (0 = initialisation)",
    "curves.png": "loss and accuracy per epoch, train vs eval",
    "init.pt": "the weights before training", "last.pt": "the latest state, to resume from",
    "final.pt": "the trained weights",
}


def run_artifacts(folder: RunFolder) -> list[Artifact]:
    """What a run folder holds, with a caption each (its manifest)."""
    from netviz.files import Artifact

    return [Artifact(p, RUN_CAPTIONS.get(p.name, "")) for p in folder.files()]


def create_run_folder(root: Path, name: str, unique: bool) -> RunFolder:
    """Create ``root/name`` exclusively (mkdir is atomic: two processes never share a folder).

    ``unique``: when the name is taken, try ``name-2``, ``name-3``, ... (timestamped default names,
    e.g. a sweep started in parallel); otherwise a taken name is an error.
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NetvizError(f"cannot create runs folder {root}: {exc.strerror or exc}; pass --runs-dir DIR") from exc
    if not os.access(root, os.W_OK | os.X_OK):
        raise NetvizError(f"runs folder {root} is not writable: pass --runs-dir DIR")
    for k in range(1, 1000):
        path = root / (name if k == 1 else f"{name}-{k}")
        try:
            path.mkdir()
        except FileExistsError:
            if not unique:
                raise NetvizError(f"run {path} already exists: pass another --name, or --resume {path}") from None
            continue
        except OSError as exc:
            raise NetvizError(f"cannot create run folder {path}: {exc.strerror or exc}") from exc
        return RunFolder(path)
    raise NetvizError(f"could not find a free run name like {root / name}: pass --name")


def runs_root(runs_dir: str | os.PathLike | None = None) -> Path:
    """``--runs-dir``, else ``$NETVIZ_RUNS``, else ``./runs``."""
    return Path(runs_dir or os.environ.get("NETVIZ_RUNS") or "runs").expanduser()


# -- checkpoints -----------------------------------------------------------------------------

def save_checkpoint(path: str | os.PathLike, model_name: str, state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors, numbers, strings, nested dicts/lists only) atomically."""
    import torch

    payload = {"format": CHECKPOINT_FORMAT, "model_name": model_name, **state}
    # Serialise in memory first: torch.save reports a full disk as an opaque RuntimeError, a
    # plain write says "No space left on device" (and atomic_write names the file).
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    return atomic_write(path, lambda p: p.write_bytes(data))


def load_checkpoint(path: str | os.PathLike, model_name: str | None = None) -> dict[str, Any]:
    """A netviz checkpoint, read safely (:func:`netviz.weights.read_checkpoint`: ``weights_only``,
    a checkpoint can never run code)."""
    from netviz.weights import read_checkpoint

    path = Path(path)
    if not path.is_file():
        raise NetvizError(f"checkpoint {path} does not exist")
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise NetvizError(f"{path} is not a netviz checkpoint (no 'model' state dict in it)")
    if model_name is not None and ckpt.get("model_name") not in (None, model_name):
        raise NetvizError(
            f"checkpoint {path} is for model '{ckpt.get('model_name')}', not '{model_name}'"
        )
    return ckpt


def load_weights(model: nn.Module, state_dict: dict[str, Any], source: str | os.PathLike) -> None:
    """Load a state dict exactly (every key, every shape) or say what does not fit."""
    from netviz.weights import load_state

    load_state(model, state_dict, str(source))


# -- runs ------------------------------------------------------------------------------------

@dataclass
class Run:
    """A model to look at: a trained run, a checkpoint or weights file, or a model by name.

    ``model`` is in eval mode on ``device``. ``path`` is None for a model that is not a run.
    ``source`` says how the model was named (see :mod:`netviz.sources`); ``notes`` what netviz
    assumed while opening it (printed by the CLI).
    """

    spec: ModelSpec
    model: nn.Module
    device: torch.device
    path: Path | None = None
    checkpoint: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    weights: str | None = None  # a bare model's weights: "default" (pretrained), a file, or None
    source: ModelSource | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def is_training_run(self) -> bool:
        """A run folder `netviz train` wrote (as opposed to a model by name or a weights file)."""
        return self.path is not None

    @property
    def name(self) -> str:
        return self.path.name if self.is_training_run else self.spec.name

    @property
    def weights_label(self) -> str:
        """Which weights the model has, in words every caption and note uses."""
        if self.is_training_run or self.checkpoint is not None:
            return f"trained weights ({(self.checkpoint or self.path).name})"  # type: ignore[union-attr]
        if self.weights == "default":
            return "pretrained weights"
        if self.weights:
            return f"weights from {Path(self.weights).name}"
        if self.source is not None and not self.source.kind.recordable:  # a model object
            return "your module's weights"
        return "random weights (untrained)"

    @property
    def caption_weights(self) -> str:
        """The weights a caption or a prediction names: a training run's go without saying."""
        return "" if self.is_training_run else self.weights_label

    @property
    def folder(self) -> RunFolder | None:
        return RunFolder(self.path) if self.is_training_run else None

    def checkpoint_path(self, which: str) -> Path | None:
        """``init``, ``final`` or ``last``: the file if this run has it."""
        if not self.is_training_run:
            return None
        path = RunFolder(self.path).checkpoint(which)
        return path if path.is_file() else None

    def state_dict(self, which: str) -> dict[str, torch.Tensor] | None:
        """Weights of checkpoint ``which`` (``init``/``final``/``last``), or None if absent."""
        path = self.checkpoint_path(which)
        return None if path is None else load_checkpoint(path, self.spec.name)["model"]

    def weight_stats(self) -> dict[str, Any] | None:
        """Per-epoch weight statistics recorded by training, or None (see ``train.weight_stats``)."""
        if not self.is_training_run or not RunFolder(self.path).weight_stats.is_file():
            return None
        return read_json(RunFolder(self.path).weight_stats)

    def eval_data(self, data_dir: str | os.PathLike | None = None, split: str | None = None) -> TensorData:
        """The run's evaluation split (or ``split``), as configured at training time."""
        from netviz.data import default_splits, load_split

        dataset = self.config.get("dataset") or self.spec.default_dataset
        if dataset is None:
            raise NetvizError(
                f"model '{self.spec.name}' has no data set to take images from: pass --dataset mnist, cifar10 "
                "or imagefolder:PATH (dataset = in a model card), or image files where the command takes "
                "them (--image)"
            )
        split = split or self.config.get("eval_split") or default_splits(dataset)[1]
        data = load_split(dataset, split, data_dir or self.config.get("data_dir"))
        return self.named_by_model(data)

    def cache_for(self, kind: str, layer: str, data: TensorData, /, **settings: Any) -> Path | None:
        """The cache folder of what ``kind`` makes of ``layer`` over ``data`` with ``settings``
        (keyed by them, the data and the checkpoint's file), or None for a model that is not a
        trained run (its weights may be a fresh random draw each time)."""
        import hashlib
        import json

        checkpoint = self.checkpoint
        if self.folder is None or checkpoint is None or not Path(checkpoint).is_file():
            return None
        stat = Path(checkpoint).stat()
        key = json.dumps({"layer": layer, "data": data.name, "n": len(data), "checkpoint": [
            str(checkpoint), stat.st_size, stat.st_mtime_ns], **settings}, sort_keys=True, default=str)
        return self.folder.card_cache(layer, hashlib.sha256(key.encode()).hexdigest()[:16], kind)

    def train_data(self, dataset: str | None = None, split: str | None = None,
                   data_dir: str | os.PathLike | None = None) -> TensorData:
        """The run's training split (or ``split``) of its data set (or ``dataset``): what `audit` and
        `concepts` read by default, where what the model learnt from lives."""
        from netviz.data import default_splits, load_split

        dataset = dataset or self.config.get("dataset") or self.spec.default_dataset
        if dataset is None:
            raise NetvizError(f"model '{self.spec.name}' has no data set to read: pass --dataset imagefolder:PATH")
        split = split or self.config.get("train_split") or default_splits(dataset)[0]
        data = load_split(dataset, split, data_dir or self.config.get("data_dir"))
        if len(data) and int(data.labels.max()) >= self.spec.num_classes:
            raise NetvizError(f"{data.name} has {len(data.classes)} classes but model '{self.spec.name}' gives "
                              f"{self.spec.num_classes} scores: use data of its own classes")
        return self.named_by_model(data)

    def with_dataset(self, dataset: str | None) -> Run:
        """This run reading its images from ``dataset`` (mnist, cifar10, imagefolder:PATH) with that
        data set's splits; itself when ``dataset`` is None."""
        if dataset is None:
            return self
        from netviz.data import check_dataset

        check_dataset(dataset)
        config = {k: v for k, v in self.config.items() if k not in ("train_split", "eval_split")}
        return dataclasses.replace(self, config={**config, "dataset": dataset})

    def named_by_model(self, data: TensorData) -> TensorData:
        """The data with the model's class names: one source of names for every command, and a
        note where the data set calls them otherwise (a card's "bird" over a folder "bïrd")."""
        ours, theirs = tuple(self.spec.class_names), tuple(data.classes)
        if len(ours) != len(theirs) and theirs and set(theirs) <= set(ours):
            return self._as_model_classes(data)
        if len(ours) != len(theirs) or ours == theirs:
            return data  # the same names, or other classes altogether (labels name the data's)
        said = _some([f"{b!r} is {a!r}" for a, b in zip(ours, theirs, strict=True) if a != b])
        note = f"{data.name} names its classes otherwise than the model: {said}; showing the model's names"
        return dataclasses.replace(data, classes=ours, note=note)

    def _model_index(self, data: TensorData) -> torch.Tensor:
        """Each of the data set's classes as the model's class of that name, -1 where it has none."""
        import torch

        index = {name: k for k, name in enumerate(self.spec.class_names)}
        return torch.tensor([index.get(name, -1) for name in data.classes], dtype=data.labels.dtype)

    def _as_model_classes(self, data: TensorData) -> TensorData:
        """A data set whose every class is one of the model's (a folder of ``goldfish/`` and
        ``tabby/`` under an ImageNet model): its labels as the model's class indices."""
        index = self._model_index(data)
        named = _some([f"{name!r} is class {int(k)}" for name, k in zip(data.classes, index, strict=True)])
        note = f"{data.name}'s {len(data.classes)} classes are among the model's {len(self.spec.class_names)}: {named}"
        return dataclasses.replace(data, labels=index[data.labels], classes=tuple(self.spec.class_names), note=note)

    def of_model_classes(self, data: TensorData) -> TensorData:
        """The images of ``data`` (read by :meth:`train_data`) whose class the model has, labelled
        by the model's classes, with a note on those left out (none at all: no images, and the note
        says so). What reads an image's class as the model's reads this (an audit, concepts' class
        table): an ImageNet model must not read a folder's airplanes as its class 0, tench."""
        import torch

        ours, theirs = tuple(self.spec.class_names), tuple(data.classes)
        if not len(data) or not theirs or theirs == ours or not self.spec.names_its_classes:
            return data  # the model's classes, or classes it numbers only: label k is class k
        index = self._model_index(data)
        kept = torch.nonzero(index[data.labels] >= 0).flatten()
        left = [name for name, k in zip(theirs, index.tolist(), strict=True) if k < 0]
        if not len(kept):
            note = (f"{data.name}: none of its {len(theirs)} classes ({_some(list(map(repr, theirs)))}) is among "
                    f"the {len(ours)} of model '{self.spec.name}' ({_some(list(map(repr, ours)))})")
        else:
            note = "; ".join(n for n in (data.note, f"{data.name}: the {len(data) - len(kept)} images of its "
                             f"{len(left)} class{'es' if len(left) > 1 else ''} the model does not have "
                             f"({_some(list(map(repr, left)))}) are left out") if n)
        mine = data.subset(kept, "of the model's classes")
        return dataclasses.replace(mine, labels=index[mine.labels], classes=ours, note=note)


def _some(items: Sequence[str]) -> str:
    """The first three of ``items``, and "..." where there are more."""
    return ", ".join(items[:3]) + (" ..." if len(items) > 3 else "")


def latest_run(runs_dir: str | os.PathLike | None = None) -> Path:
    root = runs_root(runs_dir)
    marker = root / "latest"
    if marker.is_symlink() or marker.is_dir():
        target = marker.resolve()
    elif marker.is_file():
        target = root / marker.read_text(encoding="utf-8").strip()
    else:
        raise NetvizError(
            f"no training run found in {root}: run `netviz train` first, or pass a run folder "
            "or --model NAME"
        )
    if not target.is_dir():
        raise NetvizError(f"{marker} points at {target}, which no longer exists: pass a run folder")
    return target


def find_run(path: str | os.PathLike | None = None, runs_dir: str | os.PathLike | None = None) -> Path:
    """The run folder or checkpoint a command names (default: the latest run), or one line saying
    it is not there: no torch needed, so the CLI asks before importing it."""
    found = Path(path) if path is not None else latest_run(runs_dir)
    if not found.exists():
        raise NetvizError(f"{found} does not exist: pass a run folder, a checkpoint file, or --model NAME")
    return found


def _find_run_dir(path: Path, notes: list[str]) -> tuple[Path | None, Path | None]:
    """(run folder, checkpoint file) for a run folder or a checkpoint path."""
    if path.is_dir():
        if path.name == "latest" or (path / "latest").exists() and not (path / "config.toml").exists():
            path = latest_run(path.parent if path.name == "latest" else path)
        folder = RunFolder(path)
        if not folder.is_run():
            raise NetvizError(f"{path} is not a netviz run folder (no config.toml)")
        if folder.is_finished():
            return path, folder.checkpoint("final")
        if folder.checkpoint("last").is_file():
            notes.append(f"run {path} never finished training (no checkpoints/final.pt): showing its "
                         f"last checkpoint; `netviz train --resume {path}` continues it")
            return path, folder.checkpoint("last")
        raise NetvizError(f"run {path} never finished and holds no checkpoint (checkpoints/final.pt "
                          "or last.pt): train it again")
    if path.is_file():
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
        if run_dir is not None and not (run_dir / "config.toml").is_file():
            run_dir = None
        return run_dir, path
    raise NetvizError(f"{path} is neither a run folder nor a checkpoint file: pass one, or --model NAME")


def load_run(path: str | os.PathLike | None = None, *, model: str | nn.Module | ModelSource | None = None,
             weights: str | os.PathLike | None = None, model_args: Any = None,
             input_shape: Any = None, mean: Any = None, std: Any = None, classes: Any = None,
             layers: Any = None, dataset: str | None = None, output: str | int | None = None,
             activation: str | None = None, region: Any = None, reshape: str | None = None,
             runs_dir: str | os.PathLike | None = None, device: str | torch.device = "auto") -> Run:
    """Open what a command looks at.

    - ``load_run()``: the latest run in the runs folder; ``load_run("runs/x")``, or a checkpoint
      file ``.../final.pt``;
    - ``load_run(model="allconv")``: a fresh registry model (``weights="default"`` for pretrained);
    - ``load_run(model="file.py:Net", weights="ckpt.pt", input_shape=(3, 64, 64), mean=...,
      std=..., classes=[...])``: your own model (also ``"package.module:Net"``, ``"timm:resnet18"``,
      a model card ``"card.toml"``, or an ``nn.Module`` instance); see :mod:`netviz.sources`;
    or a :class:`~netviz.sources.ModelSource` already made of them (what the CLI hands over).
    """
    import torch

    from netviz.device import resolve_device
    from netviz.distributed import init
    from netviz.sources import ModelSource, open_model, source_from_config

    if isinstance(model, torch.nn.Module) and device == "auto":
        from netviz.device import model_device

        dev = model_device(model)  # a module object stays on its own device
    else:
        dev = device if isinstance(device, torch.device) else resolve_device(device)
    init(dev)  # under torchrun: join the process group (NCCL on CUDA, gloo on the CPU)
    notes: list[str] = []
    options = dict(model_args=model_args, input_shape=input_shape, mean=mean, std=std,
                   classes=classes, layers=layers, dataset=dataset, output=output,
                   activation=activation, region=region, reshape=reshape)
    given = model if isinstance(model, ModelSource) else None
    if model is not None and (path is None or Path(path).is_file() and not _is_netviz_checkpoint(path)):
        # a model by name, with --weights (or a plain weights file given where a run goes)
        if given is not None:
            source = given if path is None else dataclasses.replace(given, weights=str(path))
        else:
            source = ModelSource.from_options(model, weights=path if path is not None else weights, **options)
        spec, net = open_model(source, notes=notes)
        if source.weights not in (None, "default"):
            check_finite(net, str(source.weights))
        if not source.kind.recordable:  # a model object: a view of it, on its own device
            net = _on_device(net, dev, notes)
        return Run(spec=spec, model=net.to(dev).eval(), device=dev, weights=source.weights,
                   source=source, notes=notes)
    run_dir, ckpt_path = _find_run_dir(find_run(path, runs_dir), notes)
    config = read_toml(RunFolder(run_dir).config) if run_dir is not None else {}
    ckpt = load_checkpoint(ckpt_path)
    if model is not None:
        source = given or ModelSource.from_options(model, **options)
    elif config.get("model"):
        source = source_from_config(config)
    elif ckpt.get("model_name"):
        source = ModelSource(ref=str(ckpt["model_name"]))
    else:
        raise NetvizError(f"{ckpt_path} does not say which model it is for: pass --model NAME")
    if model is None:  # what was said now about the run's output wins over what it recorded
        said = ModelSource.from_options(None, output=output, activation=activation, region=region,
                                        reshape=reshape)
        source = said.over(source)
    spec, net = open_model(source, num_classes=_trained_classes(config), notes=notes)
    load_weights(net, ckpt["model"], ckpt_path)
    check_finite(net, str(run_dir or ckpt_path))
    metrics = []
    if run_dir is not None and RunFolder(run_dir).metrics.is_file():
        metrics = read_json(RunFolder(run_dir).metrics)
    return Run(spec=spec, model=net.to(dev).eval(), device=dev, path=run_dir.resolve() if run_dir else None,
               checkpoint=ckpt_path.resolve(), config=config, metrics=metrics, source=source, notes=notes)


def _on_device(view: nn.Module, dev: torch.device, notes: list[str]) -> nn.Module:
    """A view of the user's module on ``dev``: moving the view would move the user's own tensors,
    so a view bound for another device is a copy there (said in a note)."""
    import copy

    from netviz.device import model_device

    here = model_device(view)
    if here == dev:
        return view
    notes.append(f"your module is on {here}: netviz works on a copy of it on {dev} (pass device={str(here)!r} "
                 "to share its weights instead)")
    return copy.deepcopy(view)


def check_finite(model: nn.Module, what: str) -> None:
    """One line when weights are NaN or infinite (a diverged training): every map, score and
    picture made from them would be meaningless, or end in an error far from the cause."""
    import torch

    bad = total = 0
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            total += t.numel()
            bad += int((~torch.isfinite(t.detach())).sum())
    if bad:
        raise NetvizError(f"{what}: {bad:,} of its {total:,} weights are not finite (NaN or infinite): its "
                          "training diverged; train it again with a lower --lr")


def _trained_classes(config: dict[str, Any]) -> int | None:
    """The class count a run trained its model with (None: the model's own)."""
    value = config.get("num_classes")
    return int(value) if value is not None else None


def _is_netviz_checkpoint(path: str | os.PathLike) -> bool:
    """A .pt written by netviz (its own format marker), as opposed to any other weights file."""
    path = Path(path)
    if path.suffix == ".safetensors" or not path.is_file():
        return False
    try:
        import zipfile

        with zipfile.ZipFile(path) as z:  # torch.save's format is a zip; the marker is a string in it
            return any(n.endswith("data.pkl") and CHECKPOINT_FORMAT.encode() in z.read(n)
                       for n in z.namelist())
    except (OSError, zipfile.BadZipFile, KeyError):
        return False
