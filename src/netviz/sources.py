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

import copy
import hashlib
import importlib
import inspect
import json
import os
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz.errors import NetvizError, close_matches, first_line
from netviz.heads import Head, OutputError, check_activation, parse_output, parse_region
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
        if isinstance(given.ref, str) and given.ref.endswith(".toml"):
            return given.over(load_card(given.ref))
        return given

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
    def kind(self) -> str:
        """instance, timm, onnx, file, module or name (registry, entry point or torchvision)."""
        ref = self.ref
        if not isinstance(ref, str):
            return "instance"
        if ref.startswith("timm:"):
            return "timm"
        if ref.lower().endswith(".onnx"):
            return "onnx"
        if ":" in ref:
            left = ref.rsplit(":", 1)[0]
            return "file" if left.endswith(".py") or "/" in left or os.sep in left else "module"
        return "name"

    @property
    def name(self) -> str:
        """A short name for titles, checkpoints and folders: ``mnist``, ``net.py:Net``, ``timm:resnet18``."""
        if self.kind == "instance":
            return type(self.ref).__name__
        if self.kind == "onnx":
            return Path(str(self.ref)).name
        if self.kind == "file":
            path, obj = str(self.ref).rsplit(":", 1)
            return f"{Path(path).name}:{obj}"
        return str(self.ref)

    def record(self) -> dict[str, Any]:
        """What ``config.toml`` keeps so that a run reopens from any folder (absolute paths)."""
        if self.kind == "instance":
            raise NetvizError("a model instance cannot be recorded in a run: train a model named "
                              "by file.py:NAME, module:NAME, timm:NAME or a registry name")
        ref = str(self.ref)
        if self.kind == "file":
            path, obj = ref.rsplit(":", 1)
            ref = f"{Path(path).expanduser().resolve()}:{obj}"
        if self.kind == "onnx":
            ref = str(Path(ref).expanduser().resolve())
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

    ref = str(card["model"])
    if ":" in ref and not ref.startswith("timm:"):
        left, obj = ref.rsplit(":", 1)
        if left.endswith(".py") or "/" in left:
            ref = f"{here(left)}:{obj}"
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

def _import_file(path: Path) -> Any:
    """Import a Python file as a module of its own (its folder on sys.path while it imports)."""
    import importlib.util

    if not path.is_file():
        raise NetvizError(f"model file {path} does not exist")
    name = "netviz_user_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise NetvizError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[name]
        raise NetvizError(f"cannot import {path}: syntax error at line {exc.lineno}: {exc.msg}") from exc
    except Exception as exc:
        del sys.modules[name]
        raise NetvizError(f"cannot import {path}: {type(exc).__name__}: {first_line(exc)}") from exc
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    return module


def _import_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise NetvizError(f"cannot import module '{name}': {exc.msg} (is it installed, or on "
                          "PYTHONPATH?)") from exc
    except Exception as exc:
        raise NetvizError(f"cannot import module '{name}': {type(exc).__name__}: {first_line(exc)}") from exc


def _constructor(source: ModelSource) -> tuple[Callable[..., Any], str]:
    """The class or function a file/module reference names, and where it came from."""
    ref = str(source.ref)
    where, obj = ref.rsplit(":", 1)
    module = _import_file(Path(where).expanduser()) if source.kind == "file" else _import_module(where)
    if not obj or not hasattr(module, obj):
        defined = sorted(n for n, v in vars(module).items()
                         if not n.startswith("_") and callable(v) and getattr(v, "__module__", None)
                         == module.__name__)
        raise NetvizError(f"{where} has no '{obj}'{close_matches(obj, defined)} (it defines: "
                          f"{', '.join(defined) or 'no classes or functions'})")
    target = getattr(module, obj)
    if not callable(target):
        raise NetvizError(f"{where}:{obj} is a {type(target).__name__}, not a class or a function "
                          "returning an nn.Module")
    return target, f"{where}:{obj}"


def accepts(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` takes a keyword ``name`` (or any keyword)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _call(fn: Callable[..., Any], what: str, kwargs: dict[str, Any]) -> nn.Module:
    from torch import nn

    try:
        module = fn(**kwargs)
    except NetvizError:
        raise
    except Exception as exc:
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise NetvizError(f"building {what}({args}) failed: {type(exc).__name__}: {first_line(exc)}") from exc
    if not isinstance(module, nn.Module):
        raise NetvizError(f"{what} returned a {type(module).__name__}, not an nn.Module")
    return module


def _timm(source: ModelSource, num_classes: int | None) -> tuple[nn.Module, dict[str, Any]]:
    """A timm model; pretrained weights only from the local cache (never a download)."""
    if source.weights == "default":
        from netviz.network import hub_offline

        hub_offline()  # before timm imports the hub: its cache only, no minute of retries
    try:
        import timm
    except ImportError as exc:
        raise NetvizError("timm models need timm: pip install 'netviz[timm]'") from exc
    name = str(source.ref)[len("timm:"):]
    if not timm.is_model(name):
        # 1,300 names: only a close match helps (not_a_model is not nest_base)
        raise NetvizError(f"timm has no model '{name}'{close_matches(name, timm.list_models(), cutoff=0.75)}; "
                          "list them with timm.list_models('PATTERN*')")
    kwargs = dict(source.model_args)
    if num_classes is not None:
        kwargs.setdefault("num_classes", num_classes)
    pretrained = source.weights == "default"
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except Exception as exc:
        if pretrained:
            from huggingface_hub.constants import HF_HUB_CACHE

            raise NetvizError(f"no pretrained weights for timm:{name} in the Hugging Face cache {HF_HUB_CACHE} "
                              f"({type(exc).__name__}): download them once with timm on a machine with "
                              "internet (timm.create_model(name, pretrained=True)), or pass --weights FILE") from exc
        raise NetvizError(f"building timm:{name} failed: {type(exc).__name__}: {first_line(exc)}") from exc
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    return model, cfg


def build_module(source: ModelSource, num_classes: int | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The module a source names, freshly initialised (or pretrained for ``weights="default"``).

    ``num_classes``: passed to a constructor that takes it (train fits the model to its data).
    Returns the module and what the source knows about its input (timm's pretrained_cfg).
    """
    from netviz.registry import build_model, get_spec

    kind = source.kind
    if kind == "instance":  # the user's module is never changed: a view, or a copy to load weights into
        from netviz.heads import headless_view

        view = headless_view(source.ref)  # type: ignore[arg-type]
        return (copy.deepcopy(view) if source.weights not in (None, "default") else view), {}
    if kind == "timm":
        return _timm(source, num_classes)
    if kind == "onnx":
        from netviz.onnx_models import convert, input_shape, load_onnx

        proto = load_onnx(str(source.ref))  # read and checked once
        shape = input_shape(proto)
        return convert(proto, str(source.ref)), {"input_size": shape} if shape is not None else {}
    if kind in ("file", "module"):
        fn, what = _constructor(source)
        kwargs = dict(source.model_args)
        if num_classes is not None and "num_classes" not in kwargs and accepts(fn, "num_classes"):
            kwargs["num_classes"] = num_classes
        return _call(fn, what, kwargs), {}
    spec = get_spec(str(source.ref))
    kwargs = dict(source.model_args)
    weights = "default" if source.weights == "default" else None
    if num_classes is not None and num_classes != spec.num_classes and "num_classes" not in kwargs:
        try:
            return build_model(spec, weights, num_classes=num_classes, **kwargs), {}
        except NetvizError:
            pass  # it takes no num_classes: the caller compares the output width with the data
    return build_model(spec, weights, **kwargs), {}


# -- what the model expects ------------------------------------------------------------------------

def _first_input_channels(model: nn.Module) -> int | None:
    for m in model.modules():
        c = getattr(m, "in_channels", None)
        if isinstance(c, int):
            return c
    return None


def _output_width(model: nn.Module, shape: tuple[int, int, int]) -> int:
    """The number of classes: the output width for one zero image; a clear error if it fails."""
    import torch

    from netviz.device import model_device
    from netviz.layers import eval_mode

    try:
        with eval_mode(model), torch.no_grad():
            out = model(torch.zeros(1, *shape, device=model_device(model)))
    except NetvizError:
        raise  # the head's: the output cannot be read as class scores as asked
    except Exception as exc:
        raise NetvizError(f"the model's forward pass fails on input {'x'.join(map(str, shape))}: "
                          f"{type(exc).__name__}: {first_line(exc)} (pass --input-shape C,H,W)") from exc
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
    width = _output_width(model, shape)
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
    if classes is None and width == 1000 and source.kind == "timm":
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
        has_pretrained=source.kind == "timm", description=source.description or f"{source.name}",
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
    if source.kind == "name":
        spec = get_spec(str(source.ref))
        spec = _with_options(spec, source, model)
    else:
        spec = describe(source, model, cfg, notes)
    check_region(source.head, spec.input_shape)
    if source.kind == "onnx":
        notes.append(_onnx_note(str(source.ref), model, spec.input_shape))
    if source.weights not in (None, "default"):
        load_weights_file(model, source.weights)
    return spec, model.eval()


def _onnx_note(path: str, model: nn.Module, shape: Sequence[int]) -> str:
    """How far the converted model is from onnxruntime on one seeded random input."""
    import torch

    from netviz.onnx_models import runtime_difference

    x = torch.rand((1, *shape), generator=torch.Generator().manual_seed(0))
    diff = runtime_difference(path, model, x)
    if diff != diff:  # NaN
        return f"{Path(path).name}: converted by onnx2torch (onnxruntime could not check it)"
    return (f"{Path(path).name}: converted by onnx2torch; its largest difference to onnxruntime on one "
            f"random input is {diff:.2g}")


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

OTHER_WAYS = (
    ("resnet18, vit_b_16, ...", "any torchvision classifier by its name (--weights default: pretrained)"),
    ("timm:NAME", "a timm model, e.g. timm:resnet18 (pip install 'netviz[timm]'; pretrained weights "
                  "only from the local cache)"),
    ("path/to/file.py:NAME", "a class, or a function returning an nn.Module, in your Python file"),
    ("package.module:NAME", "the same in an importable module (e.g. on PYTHONPATH)"),
    ("path/to/model.onnx", "an ONNX file, converted by onnx2torch and checked against onnxruntime "
                           "(pip install 'netviz[onnx]')"),
    ("path/to/card.toml", "a model card: model, weights, input_shape, mean, std, classes, layers, "
                          "dataset, model_args, output, activation, region, reshape (paths relative to the card)"),
)


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
            "other": [{"form": form, "meaning": meaning} for form, meaning in OTHER_WAYS],
            "outputs": [{"option": form, "meaning": meaning} for form, meaning in OUTPUT_WAYS]}
