"""The model registry: one place that maps a model name to how to build it and what it expects.

Every command asks the registry (through :mod:`netviz.sources`) for a :class:`ModelSpec`; nothing
else hard-codes input sizes, class names or normalisation. Names come from here, from installed
packages (the ``netviz.models`` entry-point group: a callable returning a ModelSpec) and from
torchvision. Register your own model with :func:`register_model`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz.errors import NetvizError, close_matches

if TYPE_CHECKING:
    from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_CLASSES_SOURCE = "torchvision's ImageNet-1k categories"
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
ENTRY_POINT_GROUP = "netviz.models"


@dataclass(frozen=True)
class ModelSpec:
    """What netviz needs to know about a model.

    ``factory(weights, **model_args)`` builds the model; ``weights`` is None (fresh init) or, for
    models that have them, ``"DEFAULT"`` for pretrained weights. Models return raw logits.
    """

    name: str
    factory: Callable[..., nn.Module]
    input_shape: tuple[int, int, int]  # (channels, height, width)
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = ()
    default_dataset: str | None = None
    default_layers: tuple[str, ...] = ()  # shown by `netviz activations` when none are given
    has_pretrained: bool = False
    description: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def names_its_classes(self) -> bool:
        """Whether the classes have names to look a data set's class up by (ImageNet's, CIFAR's),
        not only numbers (a user's net, MNIST's digits): then a data set's label k is class k."""
        return bool(self.class_names) and self.class_names != tuple(str(k) for k in range(len(self.class_names)))

    def class_name(self, k: int | list[int]) -> str:
        """A class's name; several classes (a multi-label target) joined with +."""
        if isinstance(k, list):
            return "+".join(self.class_name(c) for c in k)
        return self.class_names[k] if k < len(self.class_names) else str(k)


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add (or replace) a model; returns the spec so it can be used as an expression."""
    _REGISTRY[spec.name] = spec
    return spec


def _mnist(weights: str | None, **kwargs: Any) -> nn.Module:
    from netviz.models.mnist import MnistNet

    return MnistNet(**kwargs)


def _mnist_fast(weights: str | None, **kwargs: Any) -> nn.Module:
    from netviz.models.mnist_fast import MnistFastNet

    return MnistFastNet(**kwargs)


def _allconv(weights: str | None, **kwargs: Any) -> nn.Module:
    from netviz.models.allconv import AllConvNet

    return AllConvNet(**kwargs)


DIGITS = tuple(str(i) for i in range(10))
register_model(ModelSpec(
    name="mnist", factory=_mnist, input_shape=(1, 28, 28), num_classes=10,
    mean=(0.1307,), std=(0.3081,), class_names=DIGITS,
    default_dataset="mnist", default_layers=("relu1", "relu2", "pool"),
    description="PyTorch-examples MNIST net (2 convs, 2 linear), 1x28x28",
))
register_model(ModelSpec(
    name="mnist-fast", factory=_mnist_fast, input_shape=(1, 28, 28), num_classes=10,
    mean=(0.1307,), std=(0.3081,), class_names=DIGITS,
    default_dataset="mnist", default_layers=("relu1", "relu2", "relu3"),
    description="small batch-norm MNIST net (3 conv-pool-bn-relu blocks): 99 % in one epoch",
))
register_model(ModelSpec(
    name="allconv", factory=_allconv, input_shape=(3, 32, 32), num_classes=10,
    # The post fed pixels in [0, 1] with no normalisation; we keep that.
    mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), class_names=CIFAR10_CLASSES,
    default_dataset="cifar10", default_layers=("conv3", "conv6", "conv9"),
    description="CIFAR-10 all-convolutional net (9 convs, ELU, no biases), 3x32x32",
))


def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet class names (shipped with torchvision's weight metadata; no download)."""
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.DEFAULT.meta["categories"])


def _torchvision_detector_spec(name: str) -> ModelSpec | None:
    """A torchvision detector (Faster R-CNN, RetinaNet, FCOS, SSD, ...): it takes pixels in [0, 1]
    at any size (it normalises and resizes them itself) and answers with boxes, scores and labels."""
    from torchvision import models as tvm

    try:
        categories = tuple(tvm.get_model_weights(name).DEFAULT.meta["categories"])
    except Exception:  # a detector without published weights
        categories = ()
    size = 320 if "320" in name else 300 if name.startswith("ssd300") else 512

    def factory(weights: str | None, **kwargs: Any) -> nn.Module:
        if weights is None:  # no pretrained backbone either: nothing to download
            kwargs = {"weights_backbone": None, **kwargs}
        return tvm.get_model(name, weights=weights, **kwargs)

    return ModelSpec(
        name=name, factory=factory, input_shape=(3, size, size), num_classes=len(categories) or 91,
        mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), class_names=categories, default_dataset=None,
        has_pretrained=bool(categories), description=f"torchvision detector {name} (COCO)",
        extra={"origin": "torchvision", "detector": True},
    )


def tvm_detectors() -> list[str]:
    """torchvision's detection models by name."""
    from torchvision import models as tvm

    return tvm.list_models(module=tvm.detection)


def _torchvision_spec(name: str) -> ModelSpec | None:
    from torchvision import models as tvm

    if name in tvm_detectors():
        return _torchvision_detector_spec(name)
    if name not in tvm.list_models(module=tvm):
        return None
    try:
        categories = tuple(tvm.get_model_weights(name).DEFAULT.meta["categories"])
    except Exception:  # a model without published weights
        categories = ()
    size = 299 if name == "inception_v3" else 224

    def factory(weights: str | None, **kwargs: Any) -> nn.Module:
        if name in ("googlenet", "inception_v3") and weights is None:
            kwargs = {"aux_logits": False, "init_weights": True, **kwargs}
        return tvm.get_model(name, weights=weights, **kwargs)

    return ModelSpec(
        name=name, factory=factory, input_shape=(3, size, size), num_classes=1000,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, class_names=categories, default_dataset=None,
        has_pretrained=bool(categories), description=f"torchvision {name} (ImageNet)",
        extra={"origin": "torchvision"},
    )


def entry_point_models() -> dict[str, Any]:
    """Names registered by installed packages (entry-point group ``netviz.models``)."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _entry_point_spec(name: str) -> ModelSpec | None:
    ep = entry_point_models().get(name)
    if ep is None:
        return None
    try:
        spec = ep.load()()
    except Exception as exc:
        raise NetvizError(f"the package registering model '{name}' ({ep.value}) failed: "
                          f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(spec, ModelSpec):
        raise NetvizError(f"entry point '{name}' ({ep.value}) returned a {type(spec).__name__}, "
                          "not a netviz.registry.ModelSpec")
    return replace(spec, name=name, extra={**spec.extra, "origin": "entry point"})


def registered_specs() -> list[ModelSpec]:
    """Every model registered by name (built in, or by :func:`register_model`), sorted by name."""
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def list_models() -> list[str]:
    """The names registered with netviz (any torchvision classifier or detector name works as well;
    those opened in this process are kept in the registry, not listed here)."""
    return sorted(name for name, spec in _REGISTRY.items() if spec.extra.get("origin") != "torchvision")


def get_spec(name: str) -> ModelSpec:
    """The spec for ``name``: a registered model, an installed package's, or a torchvision one."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    spec = _entry_point_spec(name) or _torchvision_spec(name)
    if spec is None:
        from torchvision import models as tvm

        known = list(_REGISTRY) + list(entry_point_models()) + tvm.list_models(module=tvm)
        raise NetvizError(
            f"unknown model '{name}': known models are {', '.join(list_models())} "
            f"or a torchvision classifier such as resnet18{close_matches(name, known)}; a model "
            "of your own is path/to/file.py:NAME, package.module:NAME, timm:NAME or a card .toml"
        )
    return register_model(spec)


def _check_cached(spec: ModelSpec, weights: str) -> None:
    """Pretrained torchvision weights not in the torch cache, and no network to get them: say
    where to put the file now, instead of a download that cannot succeed."""
    if spec.extra.get("origin") != "torchvision":
        return
    import torch.hub
    from torchvision import models as tvm

    from netviz.network import may_download

    try:
        url = tvm.get_model_weights(spec.name)[weights].url
    except (KeyError, ValueError, AttributeError):
        return  # an unknown weights name: torchvision says so below
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    if not cached.is_file() and not may_download(url):
        raise NetvizError(f"no pretrained weights for '{spec.name}' here and no network (or NETVIZ_OFFLINE=1): "
                          f"put {Path(url).name} from {url} into {cached.parent}, or pass --weights FILE")


def build_model(spec: ModelSpec | str, weights: str | None = None, **model_args: Any) -> nn.Module:
    """Build a model in eval mode on the CPU.

    ``weights``: None for a fresh initialisation, ``"default"`` for pretrained weights (torchvision
    models; downloaded into the torch cache, or read from it when already there).
    ``model_args`` go to the model's constructor (e.g. ``num_classes=7``).
    """
    spec = get_spec(spec) if isinstance(spec, str) else spec
    if weights is not None and weights.lower() in ("none", ""):
        weights = None
    if weights is not None:
        if not spec.has_pretrained:
            raise NetvizError(
                f"model '{spec.name}' has no pretrained weights: train it with `netviz train "
                f"--model {spec.name}` or pass --weights none (or --weights FILE)"
            )
        weights = "DEFAULT" if weights.lower() == "default" else weights
        _check_cached(spec, weights)
        try:
            model = spec.factory(weights, **model_args)
        except Exception as exc:  # no network, proxy, corrupt cache ...
            import torch.hub

            cache = f"{torch.hub.get_dir()}/checkpoints"
            raise NetvizError(
                f"could not get pretrained weights for '{spec.name}' ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); download them on a "
                f"machine with internet into {cache}, or pass --weights none"
            ) from exc
    else:
        try:
            model = spec.factory(None, **model_args)
        except TypeError as exc:
            args = ", ".join(f"{k}={v!r}" for k, v in model_args.items())
            raise NetvizError(f"model '{spec.name}' does not take {args}: {exc}") from exc
    return model.eval()
