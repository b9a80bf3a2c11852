"""A model by name: the registry's (``mnist``, ``mnist-fast``, ``allconv``, `netviz models`), an
installed package's entry point, or any torchvision classifier (``resnet18``)."""

from __future__ import annotations

from typing import Any

from netviz.errors import NetvizError
from netviz.kinds import Kind


def _matches(ref: Any) -> bool:
    return isinstance(ref, str)


def _build(source: Any, num_classes: int | None) -> tuple[Any, dict[str, Any]]:
    from netviz.registry import build_model, get_spec

    spec = get_spec(str(source.ref))
    kwargs = dict(source.model_args)
    weights = "default" if source.weights == "default" else None
    if num_classes is not None and num_classes != spec.num_classes and "num_classes" not in kwargs:
        try:
            return build_model(spec, weights, num_classes=num_classes, **kwargs), {}
        except NetvizError:
            pass  # it takes no num_classes: the caller compares the output width with the data
    return build_model(spec, weights, **kwargs), {}


KIND = Kind("name", order=9, form="resnet18, vit_b_16, ...",
            meaning="any torchvision classifier by its name (--weights default: pretrained)",
            help_form="a registry name (mnist, mnist-fast, allconv) or a torchvision classifier (resnet18)",
            matches=_matches, build=_build, registry=True)
