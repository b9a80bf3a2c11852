"""A timm model (``timm:NAME``); pretrained weights only from the local cache, never a download."""

from __future__ import annotations

from typing import Any

from netviz.errors import NetvizError, close_matches, first_line
from netviz.kinds import Kind


def _matches(ref: Any) -> bool:
    return isinstance(ref, str) and ref.startswith("timm:")


def _build(source: Any, num_classes: int | None) -> tuple[Any, dict[str, Any]]:
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
    return model, dict(getattr(model, "pretrained_cfg", None) or {})


KIND = Kind("timm", order=2, form="timm:NAME",
            meaning="a timm model, e.g. timm:resnet18 (pip install 'netviz[timm]'; pretrained weights only "
                    "from the local cache)",
            matches=_matches, build=_build, pretrained=True)
