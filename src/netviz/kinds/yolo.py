"""An ultralytics YOLO detector built from its yaml (``yolo:yolov8n.yaml``, or ``yolo:path/to/model.yaml``),
answering as torchvision's detectors do (:class:`netviz.yolo.YoloDetector`). Weights come from
``--weights``: a state dict (``YOLO("yolov8n.pt").model.state_dict()`` saved with ``torch.save``,
or safetensors). An ultralytics ``.pt`` checkpoint holds pickled objects that could run code, and
stays refused, with how to export its weights (:data:`EXPORT`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netviz.errors import NetvizError, first_line
from netviz.kinds import Kind

EXPORT = ("export its weights with python -c \"import torch; from ultralytics import YOLO; "
          "torch.save(YOLO('yolov8n.pt').model.float().state_dict(), 'yolov8n-weights.pt')\" and pass "
          "--weights yolov8n-weights.pt, or export an ONNX file (YOLO('yolov8n.pt').export(format='onnx'))")


def _matches(ref: Any) -> bool:
    return isinstance(ref, str) and ref.startswith("yolo:")


def _build(source: Any, num_classes: int | None) -> tuple[Any, dict[str, Any]]:
    try:
        from ultralytics.nn.tasks import DetectionModel
    except ImportError as exc:
        raise NetvizError("YOLO models need ultralytics: pip install 'netviz[yolo]'") from exc
    from netviz.yolo import restore_pil

    restore_pil()
    cfg = str(source.ref)[len("yolo:"):]
    if Path(cfg).suffix not in (".yaml", ".yml"):
        raise NetvizError(f"yolo:{cfg} is not a model yaml: use yolo:yolov8n.yaml (the package's) or "
                          "yolo:path/to/model.yaml; the weights come with --weights (a state dict)")
    kwargs = dict(source.model_args)
    options = {k: kwargs.pop(k) for k in ("conf", "iou", "max_det") if k in kwargs}
    if num_classes is not None:
        kwargs.setdefault("nc", num_classes)
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel("WARNING")  # its info lines ("Overriding model.yaml nc=80 with nc=3") are not netviz's output
    try:
        net = DetectionModel(cfg, verbose=False, **kwargs)
    except Exception as exc:
        raise NetvizError(f"building the YOLO model {cfg} failed: {type(exc).__name__}: {first_line(exc)}") from exc
    finally:
        LOGGER.setLevel(level)
    info: dict[str, Any] = {"input_size": (3, 640, 640), "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
    if int(net.model[-1].nc) == 80:
        info["classes"], info["classes_from"] = _coco_names(), "COCO's (ultralytics' coco.yaml)"
    from netviz.yolo import YoloDetector

    return YoloDetector(net, **options).eval(), info


def _coco_names() -> tuple[str, ...]:
    from ultralytics.utils.checks import check_yaml

    try:
        from ultralytics.utils import YAML

        names = YAML.load(check_yaml("coco.yaml"))["names"]
    except ImportError:  # before 8.3.100
        from ultralytics.utils import yaml_load

        names = yaml_load(check_yaml("coco.yaml"))["names"]
    return tuple(names[k] for k in sorted(names))


def _short(ref: Any) -> str:
    return Path(str(ref)[len("yolo:"):]).stem


KIND = Kind("yolo", order=2, form="yolo:yolov8n.yaml",
            meaning="an ultralytics YOLO detector built from its yaml (pip install 'netviz[yolo]'; --weights a "
                    "state dict)",
            matches=_matches, build=_build, short_name=_short, weights_hint=EXPORT)
