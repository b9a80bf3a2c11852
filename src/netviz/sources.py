"""Where a model comes from: any model a user can name, opened the same way for every command.

A model reference (``--model``) is one of:

- a registry name (``mnist``, ``allconv``, ``mnist-fast``, a name an installed package registers
  through the ``netviz.models`` entry points) or any torchvision classifier (``resnet18``);
- ``path/to/file.py:NAME``: a class or a function in a Python file that returns an ``nn.Module``;
- ``package.module:NAME``: the same in an importable module (e.g. with ``PYTHONPATH``);
- ``timm:NAME``: a timm model (``pip install 'netviz[timm]'``);
- ``path/to/card.toml``: a model card holding the reference and everything below.

:class:`ModelSource` holds the reference with what the user says besides (``--model-arg``,
``--weights``, ``--input-shape``, ``--mean``, ``--std``, ``--classes``); :func:`open_model` builds
the module, infers what was not said (and says what it assumed) and loads the weights.
:meth:`ModelSource.record` is what a run's ``config.toml`` keeps, so the run reopens alone.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz.errors import NetvizError, first_line
from netviz.heads import Head, OutputError, check_activation, parse_output, parse_region
from netviz.kinds import Kind, kind_of, other_ways
from netviz.options import CommandOptions, option
from netviz.tokens import check_reshape

if TYPE_CHECKING:
    from torch import nn

    from netviz.registry import ModelSpec

HEAD_KEYS = ("output", "activation", "region", "reshape")  # how the model's output and layers are read
CARD_KEYS = ("model", "weights", "input_shape", "mean", "std", "classes", "layers", "dataset",
             "model_args", "description", *HEAD_KEYS)
SIZES_TRIED = (28, 32, 64, 96, 128, 224)  # square input sizes tried when none is given


# -- parsing what users type ----------------------------------------------------------------------

def parse_model_args(items: Sequence[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``["depth=18", "widths=[8, 16]", "act=relu"]`` -> kwargs; values are TOML literals (a bare
    word that is not one stays a string)."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise NetvizError(f"cannot read --model-arg '{item}': use key=value, e.g. depth=18 or "
                              "widths=[16,32]")
        text = value.strip()
        try:
            out[key] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError as exc:
            if not text or any(c in text for c in "[]{}\"',=#"):  # meant as a list, table or string: say so
                raise NetvizError(f"cannot read --model-arg '{item}': {text or 'nothing'} is not a TOML value "
                                  f"({exc}); write a list as [16,32], a string as \"relu\", a number as 18") from None
            out[key] = text  # a bare word: a string
    return out


def parse_shape(text: str | Sequence[int] | None) -> tuple[int, int, int] | None:
    """``"3,64,64"`` (or a sequence) -> (C, H, W) of positive whole numbers."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    try:
        shape = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1 or any(isinstance(p, float) and p != int(p) for p in parts):
        raise NetvizError(f"cannot read --input-shape '{text if isinstance(text, str) else list(text)}': "
                          "use C,H,W with three positive whole numbers, e.g. 3,64,64")
    return shape  # type: ignore[return-value]


def parse_floats(text: str | Sequence[float] | None, what: str) -> tuple[float, ...] | None:
    """``"0.5,0.5,0.5"`` (or a sequence) -> floats, one per channel."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    try:
        values = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        raise NetvizError(f"cannot read {what} '{text}': use one number per channel, e.g. "
                          "0.485,0.456,0.406") from None
    if not values:
        raise NetvizError(f"{what} is empty: give one number per channel")
    return values


def parse_class_names(text: str | Sequence[str] | None, base: Path | None = None) -> tuple[str, ...] | None:
    """``"cat,dog"``, a file (one name a line, or a JSON list), or a sequence -> class names."""
    if text is None:
        return None
    if not isinstance(text, str):
        return tuple(str(c) for c in text)
    path = Path(text).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    if path.is_file():
        try:
            body = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise NetvizError(f"cannot read class names from {path}: {exc}") from exc
        if body.lstrip().startswith("["):
            try:
                names = json.loads(body)
            except ValueError as exc:
                raise NetvizError(f"{path} is not a JSON list of class names: {exc}") from exc
            if not isinstance(names, list):
                raise NetvizError(f"{path} is not a JSON list of class names")
            return tuple(str(n) for n in names)
        return tuple(line.strip() for line in body.splitlines() if line.strip())
    if "," not in text and (text.endswith((".txt", ".json")) or "/" in text):
        raise NetvizError(f"class-name file {path} does not exist")
    return tuple(c.strip() for c in text.split(",") if c.strip())


def head_options(output: Any = None, activation: Any = None, region: Any = None, reshape: Any = None
                 ) -> dict[str, Any]:
    """:data:`HEAD_KEYS` as typed (options, a card, a run's config), parsed and checked."""
    return {"output": parse_output(output),
            "activation": None if activation is None else check_activation(activation),
            "region": parse_region(region), "reshape": None if reshape is None else check_reshape(reshape)}


# -- the source ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelOptions(CommandOptions):
    """How a model is described besides its name (``--model``): the same options for `train` and
    every other command, declared once (the CLI makes its options from these fields)."""

    model_args: tuple[str, ...] = option((), "A keyword argument of the model's constructor (a TOML value: 18, 0.5, "
                                         "[16,32], \"relu\"); repeatable.", flags=("--model-arg",), multiple=True,
                                         metavar="KEY=VALUE")
    weights: str | None = option(None, "With --model: none (fresh), default (pretrained: torchvision, timm) or a "
                                 "weights file (.pt/.pth/.ckpt/.safetensors; Lightning, DataParallel and "
                                 "torch.compile layouts are read; never runs code).")
    input_shape: str | None = option(None, "The input the model takes, e.g. 3,64,64 (inferred and said when not "
                                     "given).", metavar="C,H,W")
    mean: str | None = option(None, "Normalisation mean per channel, e.g. 0.485,0.456,0.406.")
    std: str | None = option(None, "Normalisation std per channel, e.g. 0.229,0.224,0.225.")
    class_names: str | None = option(None, "Class names: a,b,c, or a file with one name a line (or a JSON list).",
                                     flags=("--classes",))
    output: str | None = option(None, "Which of the forward's outputs holds the class scores, when it returns a "
                                "tuple, dict or dataclass (e.g. 2, or logits).", metavar="INDEX|KEY")
    activation: str | None = option(None, "How the scores are read as probabilities: softmax (default; one class "
                                    "per image), sigmoid (multi-label) or none (already probabilities or a value).",
                                    metavar="softmax|sigmoid|none")
    region: str | None = option(None, "For a model answering with a map (N, classes, H, W): a class's score is its "
                                "logit summed over the pixels predicted as it (pred, the default) or over a box in "
                                "input pixels.", metavar="pred|Y0,X0,Y1,X1")
    reshape: str | None = option(None, "How a layer of tokens (N, T, C: ViT, DeiT) or a channels-last map (N, H, W, "
                                 "C: Swin) is read as channels x height x width (default: auto, guessed and said).",
                                 metavar="auto|nchw|nhwc|tokens")

    def head(self) -> dict[str, Any]:
        """How the output is read: what a run folder takes besides its own model."""
        return {"output": self.output, "activation": self.activation, "region": self.region, "reshape": self.reshape}

    def source(self, model: str | None) -> ModelSource:
        """The model ``model`` (None: the config's, for `train`) so described, parsed and checked."""
        return ModelSource.from_options(model, model_args=self.model_args or None, weights=self.weights,
                                        input_shape=self.input_shape, mean=self.mean, std=self.std,
                                        classes=self.class_names, **self.head())


@dataclass
class ModelSource:
    """A model as the user named it, with what they said about it; :func:`open_model` opens it."""

    ref: str | nn.Module | None = "mnist"  # None: not named (train takes its config's model)
    model_args: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None  # None/"none", "default" (pretrained) or a file
    input_shape: tuple[int, int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    classes: tuple[str, ...] | None = None
    layers: tuple[str, ...] | None = None
    dataset: str | None = None
    description: str = ""
    output: str | int | None = None  # which of the forward's outputs holds the class scores
    activation: str | None = None  # softmax (None), sigmoid or none: see netviz.heads
    region: str | tuple[int, int, int, int] | None = None  # dense outputs: pred or a box
    reshape: str | None = None  # token and channels-last layers: auto (None), nchw, nhwc, tokens

    @property
    def head(self) -> Head:
        """How the model's output is read as class scores (see :mod:`netviz.heads`)."""
        return Head(self.output, self.activation or "softmax", self.region, self.reshape or "auto")

    @classmethod
    def from_options(cls, ref: str | nn.Module | None, *, model_args: Sequence[str] | Mapping[str, Any] | None = None,
                     weights: str | os.PathLike | None = None, input_shape: Any = None, mean: Any = None,
                     std: Any = None, classes: Any = None, layers: Any = None,
                     dataset: str | None = None, output: str | int | None = None,
                     activation: str | None = None, region: Any = None, reshape: str | None = None
                     ) -> ModelSource:
        """Options as the CLI or ``load_run`` take them, parsed and checked here, once; a card fills
        what they leave out. ``ref`` None: no model named (``netviz train`` then takes its config's)."""
        weights = None if weights is None or str(weights).lower() in ("none", "") else str(weights)
        given = cls(ref=ref, model_args=parse_model_args(model_args),
                    weights=weights, input_shape=parse_shape(input_shape),
                    mean=parse_floats(mean, "--mean"), std=parse_floats(std, "--std"),
                    classes=parse_class_names(classes),
                    layers=tuple(layers.split(",")) if isinstance(layers, str) else
                    (tuple(layers) if layers is not None else None),
                    dataset=dataset, **head_options(output, activation, region, reshape))
        return given.over(load_card(str(given.ref))) if given.kind.holds_source else given

    def config_values(self) -> dict[str, Any]:
        """What the user said about the model, as :class:`netviz.training.TrainConfig` values."""
        values = {"model_args": dict(self.model_args) or None, "weights": self.weights,
                  "input_shape": self.input_shape, "mean": self.mean, "std": self.std, "classes": self.classes,
                  "output": self.output, "activation": self.activation, "reshape": self.reshape,
                  "dataset": self.dataset}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items() if v is not None}

    def over(self, card: ModelSource) -> ModelSource:
        """This source's own values where it has them, the card's elsewhere (options win)."""
        return replace(
            card, model_args={**card.model_args, **self.model_args},
            **{k: getattr(self, k) for k in ("weights", "input_shape", "mean", "std", "classes",
                                              "layers", "dataset", *HEAD_KEYS) if getattr(self, k) is not None})

    @property
    def kind(self) -> Kind:
        """How the reference names the model (:mod:`netviz.kinds`)."""
        return kind_of(self.ref)

    @property
    def name(self) -> str:
        """A short name for titles, checkpoints and folders: ``mnist``, ``net.py:Net``, ``timm:resnet18``."""
        return self.kind.short_name(self.ref)

    def record(self) -> dict[str, Any]:
        """What ``config.toml`` keeps so that a run reopens from any folder (absolute paths)."""
        if not self.kind.recordable:
            raise NetvizError("a model instance cannot be recorded in a run: train a model named "
                              "by file.py:NAME, module:NAME, timm:NAME or a registry name")
        ref = self.kind.absolute(str(self.ref), Path.cwd())
        out: dict[str, Any] = {"model": ref}
        if self.model_args:
            out["model_args"] = dict(self.model_args)
        for key in ("input_shape", "mean", "std", "classes"):
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value)
        return {**out, **self.head.record()}


def load_card(path: str | os.PathLike) -> ModelSource:
    """A model card: TOML with the keys of :data:`CARD_KEYS`; relative paths are the card's."""
    from netviz.files import read_toml

    path = Path(path).expanduser()
    if not path.is_file():
        raise NetvizError(f"model card {path} does not exist")
    card = read_toml(path)
    unknown = sorted(set(card) - set(CARD_KEYS))
    if unknown:
        raise NetvizError(f"model card {path}: unknown key(s) {', '.join(unknown)}; known keys are "
                          f"{', '.join(CARD_KEYS)}")
    if "model" not in card:
        raise NetvizError(f"model card {path} has no 'model' key: name the model, e.g. "
                          'model = "net.py:Net"')
    base = path.parent.resolve()

    def here(value: str) -> str:
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else (base / path).resolve())

    ref = kind_of(str(card["model"])).absolute(str(card["model"]), base)  # its paths are the card's
    weights = card.get("weights")
    if weights is not None and str(weights).lower() not in ("none", "default", ""):
        weights = here(str(weights))
    dataset = card.get("dataset")
    if isinstance(dataset, str) and dataset.startswith("imagefolder:"):
        dataset = "imagefolder:" + here(dataset.split(":", 1)[1])
    layers = card.get("layers")
    return ModelSource(
        ref=ref, model_args=parse_model_args(card.get("model_args", {})), weights=weights,
        input_shape=parse_shape(card.get("input_shape")), mean=parse_floats(card.get("mean"), "mean"),
        std=parse_floats(card.get("std"), "std"), classes=parse_class_names(card.get("classes"), base),
        layers=tuple(layers) if layers is not None else None, dataset=dataset,
        description=str(card.get("description", "")),
        **head_options(*(card.get(key) for key in HEAD_KEYS)))


def source_from_config(config: Mapping[str, Any]) -> ModelSource:
    """The source a run's ``config.toml`` recorded (see :meth:`ModelSource.record`)."""
    return ModelSource(
        ref=str(config.get("model") or "mnist"), model_args=dict(config.get("model_args") or {}),
        input_shape=parse_shape(config.get("input_shape")), mean=parse_floats(config.get("mean"), "mean"),
        std=parse_floats(config.get("std"), "std"), classes=parse_class_names(config.get("classes")),
        **head_options(*(config.get(key) for key in HEAD_KEYS)))


# -- building ----------------------------------------------------------------------------------------

def build_module(source: ModelSource, num_classes: int | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The module a source names, freshly initialised (or pretrained for ``weights="default"``), and
    what its kind knows about its input (timm's pretrained_cfg). ``num_classes``: passed to a
    constructor that takes it (train fits the model to its data)."""
    build = source.kind.build
    if build is None:
        raise NetvizError(f"{source.ref} names no model by itself: open it with --model")
    return build(source, num_classes)


# -- what the model expects ------------------------------------------------------------------------

def _first_input_channels(model: nn.Module) -> int | None:
    for m in model.modules():
        c = getattr(m, "in_channels", None)
        if isinstance(c, int):
            return c
    return None


def _output_width(model: nn.Module, shape: tuple[int, int, int], notes: list[str] | None = None,
                  classes: int | None = None) -> int:
    """The number of classes: the output width for one zero image; a clear error if it fails. A
    detector (boxes, scores and labels per image) gets its head here
    (:class:`netviz.detection.DetectorHead`): its width is its number of classes."""
    import torch

    from netviz import detection
    from netviz.device import model_device
    from netviz.heads import attach, head_of, raw_outputs
    from netviz.layers import eval_mode

    head = head_of(model)
    try:
        with eval_mode(model), torch.no_grad(), raw_outputs(model):
            raw = model(torch.zeros(1, *shape, device=model_device(model)))
    except Exception as exc:
        raise NetvizError(f"the model's forward pass fails on input {'x'.join(map(str, shape))}: "
                          f"{type(exc).__name__}: {first_line(exc)} (pass --input-shape C,H,W)") from exc
    if detection.holds_detections(raw):  # (again after another probe: the class names may be given now)
        said = notes if notes is not None else []
        head = detection.DetectorHead(classes=detection.class_count(model, raw, said, classes))
        attach(model, head)
    out = head.scores(raw, shape[-2:])  # the head's error: the output cannot be read as class scores as asked
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise NetvizError(f"the model returns {got} for one image; netviz needs class scores of "
                          "shape (N, classes)")
    return int(out.shape[1])


def _infer_shape(model: nn.Module) -> tuple[tuple[int, int, int], str]:
    """A shape the model accepts, from its first convolution's channels and common sizes."""
    channels = _first_input_channels(model) or 3
    for size in SIZES_TRIED:
        shape = (channels, size, size)
        try:
            _output_width(model, shape)
        except OutputError:
            raise
        except NetvizError:
            continue
        return shape, (f"assumed input {channels}x{size}x{size} (the first convolution takes "
                       f"{channels} channel(s), {size}x{size} is the first size tried that the model "
                       "accepts); pass --input-shape C,H,W to say")
    raise NetvizError(f"cannot tell the model's input size: it accepts none of {channels}x"
                      f"{{{','.join(map(str, SIZES_TRIED))}}} squared; pass --input-shape C,H,W")


def describe(source: ModelSource, model: nn.Module, timm_cfg: Mapping[str, Any] | None = None,
             notes: list[str] | None = None) -> ModelSpec:
    """The :class:`~netviz.registry.ModelSpec` of a built user model: what was given, else what can
    be read off the model (each assumption appended to ``notes``)."""
    from netviz.registry import IMAGENET_CLASSES_SOURCE, ModelSpec, imagenet_classes

    notes = notes if notes is not None else []
    cfg = dict(timm_cfg or {})
    shape = source.input_shape
    if shape is None and cfg.get("input_size"):
        shape = tuple(int(v) for v in cfg["input_size"])  # type: ignore[assignment]
    if shape is None:
        shape, note = _infer_shape(model)
        notes.append(note)
    width = _output_width(model, shape, notes, len(source.classes) if source.classes is not None else None)
    c = shape[0]
    mean, std = source.mean, source.std
    if mean is None and cfg.get("mean"):
        mean, std = tuple(cfg["mean"]), tuple(cfg.get("std") or (1.0,) * c)
    if mean is None or std is None:
        notes.append(f"assumed mean {'0' if mean is None else mean} and std {'1' if std is None else std}"
                     " (pixels in [0, 1], not normalised); pass --mean and --std to say")
        mean = mean if mean is not None else (0.0,) * c
        std = std if std is not None else (1.0,) * c
    for what, values in (("--mean", mean), ("--std", std)):
        if len(values) not in (1, c):
            raise NetvizError(f"{what} has {len(values)} values but the input has {c} channels: "
                              "give one per channel")
    mean = tuple(mean) * (c if len(mean) == 1 and c > 1 else 1)
    std = tuple(std) * (c if len(std) == 1 and c > 1 else 1)
    if any(s <= 0 for s in std):
        raise NetvizError(f"--std must be positive, not {','.join(map(str, std))}")
    classes = source.classes
    if classes is None and cfg.get("classes") is not None and len(cfg["classes"]) == width:
        classes = cfg["classes"]
        notes.append(f"class names: {cfg.get('classes_from', 'the model')}")
    if classes is None and width == 1000 and source.kind.pretrained:
        classes = imagenet_classes()
        notes.append(f"class names: ImageNet's ({IMAGENET_CLASSES_SOURCE})")
    if classes is not None and len(classes) != width:
        raise NetvizError(f"{len(classes)} class names given but the model has {width} outputs: "
                          "give one name per output")
    return ModelSpec(
        name=source.name, factory=lambda weights, **kw: build_module(source)[0],
        input_shape=shape, num_classes=width, mean=mean, std=std,
        class_names=tuple(classes) if classes is not None else tuple(str(k) for k in range(width)),
        default_dataset=source.dataset, default_layers=tuple(source.layers or ()),
        has_pretrained=source.kind.pretrained, description=source.description or f"{source.name}",
        extra={"source": source},
    )


def open_model(source: ModelSource, num_classes: int | None = None,
               notes: list[str] | None = None) -> tuple[ModelSpec, nn.Module]:
    """Build the model of ``source`` and describe it; load ``source.weights`` when it is a file.

    Registry and torchvision models keep their registered spec (with any option applied on top);
    user models are described by :func:`describe`.
    """
    from netviz.heads import attach, check_region
    from netviz.registry import get_spec
    from netviz.weights import load_weights_file

    notes = notes if notes is not None else []
    model, cfg = build_module(source, num_classes)
    attach(model, source.head)
    if source.kind.registry:
        spec = get_spec(str(source.ref))
        spec = _with_options(spec, source, model)
        if spec.extra.get("detector"):
            _output_width(model, spec.input_shape, notes)  # puts the detector's head on
    else:
        spec = describe(source, model, cfg, notes)
    check_region(source.head, spec.input_shape)
    if source.kind.note is not None:
        notes.append(source.kind.note(str(source.ref), model, spec.input_shape))
    if source.weights not in (None, "default"):
        try:
            load_weights_file(model, source.weights)
        except NetvizError as exc:
            if source.kind.weights_hint and "pickled objects" in str(exc):
                raise NetvizError(f"{exc}: {source.kind.weights_hint}") from exc
            raise
    return spec, model.eval()


def _with_options(spec: ModelSpec, source: ModelSource, model: nn.Module) -> ModelSpec:
    """A registry spec with the options the user gave applied (e.g. other class names)."""
    changes: dict[str, Any] = {}
    if source.input_shape is not None:
        changes["input_shape"] = source.input_shape
    if source.mean is not None:
        changes["mean"] = source.mean
    if source.std is not None:
        changes["std"] = source.std
    if source.layers is not None:
        changes["default_layers"] = source.layers
    if source.dataset is not None:
        changes["default_dataset"] = source.dataset
    width = spec.num_classes
    if source.model_args or source.input_shape is not None:
        width = _output_width(model, changes.get("input_shape", spec.input_shape))
        changes["num_classes"] = width
    if source.classes is not None:
        if len(source.classes) != width:
            raise NetvizError(f"{len(source.classes)} class names given but '{spec.name}' has {width} "
                              "outputs: give one name per output")
        changes["class_names"] = source.classes
    elif width != spec.num_classes:
        changes["class_names"] = tuple(str(k) for k in range(width))
    if not changes and not source.model_args:
        return spec
    return replace(spec, **changes, extra={**spec.extra, "source": source})


# -- what can be named ------------------------------------------------------------------------------

OUTPUT_WAYS = (
    ("--output INDEX|KEY", "the class scores among several outputs (a tuple, dict, namedtuple or "
                           "dataclass); without it such a model is refused in one line listing them"),
    ("--activation sigmoid", "a multi-label model (each class its own probability; --target 3,5); "
                             "none: the output already is a probability or a value"),
    ("--region pred|Y0,X0,Y1,X1", "a segmentation model (N, classes, H, W): a class's score sums its "
                                  "logit over the pixels predicted as it, or over a box"),
    ("--reshape auto|nhwc|tokens", "how token (ViT, DeiT) and channels-last (Swin) layers read as maps "
                                   "(auto: guessed and said)"),
)


def catalogue() -> dict[str, Any]:
    """What `netviz models` lists: registry models, installed packages' models, other ways."""
    from netviz.registry import entry_point_models, registered_specs

    registry = [{"name": spec.name, "input_shape": list(spec.input_shape), "classes": spec.num_classes,
                 "dataset": spec.default_dataset, "description": spec.description}
                for spec in registered_specs() if "origin" not in spec.extra]
    installed = [{"name": name, "provider": ep.value} for name, ep in sorted(entry_point_models().items())]
    import importlib.util

    timm_installed = importlib.util.find_spec("timm") is not None  # without importing it: 5 s
    return {"registry": registry, "installed": installed, "timm_installed": timm_installed,
            "other": [{"form": form, "meaning": meaning} for form, meaning in other_ways()],
            "outputs": [{"option": form, "meaning": meaning} for form, meaning in OUTPUT_WAYS]}
