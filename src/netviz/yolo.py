"""An ultralytics YOLO detection model read as torchvision's detectors are: its raw head
(N x (4 + classes) x anchors) decoded as the package decodes it, with its own
``non_max_suppression``, into a dict of ``boxes``, ``scores`` and ``labels`` per image. Layers keep
ultralytics' numbers: ``model.0`` ... ``model.22`` (the Detect head of yolov8). Opened with
``--model yolo:yolov8n.yaml`` (:mod:`netviz.kinds.yolo`).
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn

CONF, IOU, MAX_DET = 0.25, 0.7, 300  # ultralytics' predict defaults


def restore_pil() -> None:
    """Put PIL's own ``Image.open`` back. Importing ultralytics replaces it, process-wide, with one
    that on a file PIL cannot read installs pi-heif with pip and retries; netviz reads images with
    PIL's own, so that a bad file is one line and nothing gets installed."""
    from PIL import Image

    original = getattr(sys.modules.get("ultralytics.utils.patches"), "_image_open", None)
    if original is not None:
        Image.open = original


def package_nms() -> Any:
    """ultralytics' ``non_max_suppression`` (in ``utils.nms`` since 8.3, ``utils.ops`` before)."""
    try:
        from ultralytics.utils.nms import non_max_suppression
    except ImportError:
        from ultralytics.utils.ops import non_max_suppression
    return non_max_suppression


class YoloDetector(nn.Module):
    """An ultralytics ``DetectionModel`` answering as torchvision's detectors do. Its layers are
    this module's ``model`` (so a state dict of the ultralytics model loads as it is), run in the
    package's order: each layer's ``f`` names the earlier outputs it reads (its ``_predict_once``)."""

    def __init__(self, net: nn.Module, conf: float = CONF, iou: float = IOU, max_det: int = MAX_DET) -> None:
        super().__init__()
        self.model = net.model
        self.save = list(net.save)  # the outputs later layers read again
        self.num_classes = int(net.model[-1].nc)  # the Detect head's
        self.conf, self.iou, self.max_det = conf, iou, max_det

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 4 + K, anchors): boxes (centre x, centre y, width, height) and class probabilities."""
        outputs: list[Any] = []
        for m in self.model:
            if m.f != -1:  # it reads earlier outputs, not the last one
                x = outputs[m.f] if isinstance(m.f, int) else [x if j == -1 else outputs[j] for j in m.f]
            x = m(x)
            outputs.append(x if m.i in self.save else None)
        return x[0] if isinstance(x, (tuple, list)) else x

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        non_max_suppression = package_nms()
        answers = []
        for one in self.raw(x).split(1):  # one image a call: the package's time limit is per call
            (found,) = non_max_suppression(one, self.conf, self.iou, max_det=self.max_det, nc=self.num_classes)
            answers.append({"boxes": found[:, :4], "scores": found[:, 4], "labels": found[:, 5].long()})
        return answers

    def _apply(self, fn: Any, recurse: bool = True) -> YoloDetector:
        super()._apply(fn, recurse)
        head = self.model[-1]  # its strides and anchors are plain tensors (the package's _apply moves them too)
        for name in ("stride", "anchors", "strides"):
            if isinstance(getattr(head, name, None), torch.Tensor):
                setattr(head, name, fn(getattr(head, name)))
        return self
