"""Object detectors: one detection as the target of any attribution method.

A detector answers, per image, with boxes, their scores and their labels, as many as it found.
:func:`detections` reads that answer (torchvision's list of dicts, or a dict, tuple or dataclass
holding the three). A detection becomes a target through :class:`BoxScores`, a head that turns
the detector's answer into one number per reference detection, the score pytorch-grad-cam's
``FasterRCNNBoxScoreTarget`` defines: the best-matching detection's IoU with the reference box
plus its class score, 0 when that IoU is at most :data:`IOU_THRESHOLD` or its label changed. So
every method that explains a class score (integrated gradients, saliency, the CAM family,
occlusion, ...) explains a box: :func:`attribute_detections`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from netviz.errors import NetvizError
from netviz.heads import Head, headed, output_entries, raw_outputs
from netviz.selection import parse_indices

if TYPE_CHECKING:
    from torch import nn

    from netviz.attribute import Attribution

IOU_THRESHOLD = 0.5
FIELDS = ("boxes", "scores", "labels")


@dataclass(frozen=True)
class Found:
    """One image's detections, by score (highest first): ``boxes`` (M, 4) as x0, y0, x1, y1 in
    input pixels, ``scores`` (M,), ``labels`` (M,)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def detections(raw: Any, n: int | None = None) -> list[Found]:
    """Each image's :class:`Found` in what a detector returned; one line when it holds no boxes,
    scores and labels."""
    images = raw if isinstance(raw, (list, tuple)) and raw and all(_holds_boxes(r) for r in raw) else None
    if images is None and _holds_boxes(raw):  # one structure with a batch of each field
        fields = _fields(raw)
        count = len(fields["boxes"]) if isinstance(fields["boxes"], (list, tuple)) else fields["boxes"].shape[0]
        images = [{k: fields[k][i] for k in FIELDS} for i in range(count)]
    if images is None:
        raise NetvizError("the model's output holds no boxes, scores and labels: a detector returns, per image, "
                          "'boxes' (M x 4), 'scores' and 'labels' (a list of dicts, as torchvision's)")
    found = []
    for image in images:
        f = _fields(image)
        boxes, scores, labels = (torch.as_tensor(f[k]) for k in FIELDS)
        order = torch.argsort(scores.detach(), descending=True, stable=True)
        found.append(Found(boxes.reshape(-1, 4)[order], scores[order], labels[order].long()))
    if n is not None and len(found) != n:
        raise NetvizError(f"the detector answered for {len(found)} images, not {n}")
    return found


def _fields(item: Any) -> dict[str, Any]:
    return {str(k): v for k, v in output_entries(item)} if not isinstance(item, dict) else item


def _holds_boxes(item: Any) -> bool:
    try:
        return set(FIELDS) <= set(_fields(item))
    except (TypeError, NetvizError):
        return False


def box_score(found: Found, boxes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(D,) the score of each reference detection (``boxes`` D x 4, ``labels`` D) in ``found``:
    the IoU of the detection that overlaps it most plus that detection's score, 0 when the IoU is
    at most :data:`IOU_THRESHOLD` or the label differs (pytorch-grad-cam's definition)."""
    from torchvision.ops import box_iou

    out = torch.zeros(len(boxes), dtype=found.scores.dtype, device=found.scores.device)
    if len(found) == 0:
        return out
    ious = box_iou(boxes.to(found.boxes), found.boxes)  # (D, M)
    best, index = ious.max(1)
    keep = (best > IOU_THRESHOLD) & (found.labels[index] == labels.to(found.labels.device))
    return torch.where(keep, best + found.scores[index], out)


@dataclass(frozen=True)
class BoxScores(Head):
    """A head that reads a detector's answer as one score per reference detection (D columns):
    column d is :func:`box_score` of reference d, so target d explains detection d."""

    boxes: tuple[tuple[float, float, float, float], ...] = ()
    labels: tuple[int, ...] = ()
    activation: str = "none"

    def scores(self, raw: Any, input_size: Sequence[int]) -> torch.Tensor:
        found = detections(raw)
        boxes, labels = torch.tensor(self.boxes, dtype=torch.float32), torch.tensor(self.labels)
        return torch.stack([box_score(f, boxes, labels) for f in found])


@dataclass(frozen=True)
class Targets:
    """The detections explained: for each, its image (index into the images), box, label and score."""

    image: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor
    found: list[Found]

    def head(self) -> BoxScores:
        return BoxScores(boxes=tuple(tuple(float(v) for v in b) for b in self.boxes.tolist()),
                         labels=tuple(int(v) for v in self.labels.tolist()))


def find(model: nn.Module, x: torch.Tensor) -> list[Found]:
    """The detections of every image of ``x`` (no gradients)."""
    from netviz.device import model_device
    from netviz.layers import eval_mode

    with eval_mode(model), raw_outputs(model), torch.no_grad():
        return detections(model(x.to(model_device(model))), len(x))


def targets(model: nn.Module, x: torch.Tensor, detection: str | int | None = 0,
            box: Sequence[float] | str | None = None, label: int | None = None) -> Targets:
    """The detections to explain: each image's ``detection`` (an index by score, or a range
    ``0-4``), or the one that matches ``box`` (x0, y0, x1, y1 in input pixels) with ``label``."""
    found = find(model, x)
    height, width = x.shape[-2:]
    if box is not None:
        if label is None:
            raise NetvizError("--box needs --target CLASS: the class of the object in the box")
        ref = _read_box(box, width, height)
        rows = [(i, ref, int(label)) for i in range(len(found))]
    elif label is not None:
        raise NetvizError("a detector's --target needs --box x0,y0,x1,y1: the box of the object of that class")
    else:
        rows = []
        for i, f in enumerate(found):
            if len(f) == 0:
                raise NetvizError(f"image {i} has no detection: nothing to explain (try another image, or --box "
                                  "with --target)")
            for k in parse_indices(str(detection), len(f), "detection", f"image {i} (its {len(f)} detections)"):
                rows.append((i, f.boxes[k].detach().cpu().tolist(), int(f.labels[k])))
    image = torch.tensor([r[0] for r in rows], dtype=torch.long)
    boxes = torch.tensor([r[1] for r in rows], dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor([r[2] for r in rows], dtype=torch.long)
    scores = torch.stack([box_score(found[int(i)], boxes[j:j + 1], labels[j:j + 1])[0].detach().cpu()
                          for j, i in enumerate(image)]) if rows else torch.zeros(0)
    return Targets(image, boxes, labels, scores, found)


def _read_box(box: Sequence[float] | str, width: int, height: int) -> list[float]:
    parts = [p.strip() for p in box.split(",")] if isinstance(box, str) else list(box)
    try:
        x0, y0, x1, y1 = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise NetvizError(f"cannot read --box '{box}': use x0,y0,x1,y1 in input pixels (e.g. 10,20,60,90)") from None
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise NetvizError(f"--box {x0:g},{y0:g},{x1:g},{y1:g} is not a box inside the {width}x{height} image: "
                          "use 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height")
    return [x0, y0, x1, y1]


def attribute_detections(model: nn.Module, x: torch.Tensor, method: str = "gradcam",
                         detection: str | int | None = 0, box: Sequence[float] | str | None = None,
                         label: int | None = None, **options: Any) -> tuple[Attribution, Targets]:
    """Attribute each chosen detection (:func:`targets`) with ``method``: one map per detection,
    the image repeated for each; the result's ``target`` numbers the detections in ``Targets``."""
    from netviz.attribute import attribute

    chosen = targets(model, x, detection, box, label)
    with headed(model, chosen.head()) as detector:
        result = attribute(detector, x[chosen.image], method, torch.arange(len(chosen.image)), **options)
    return result, chosen
