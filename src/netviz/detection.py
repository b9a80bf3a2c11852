"""Object detectors: one detection as the target of any attribution method.

A detector answers, per image, with boxes, their scores and their labels, as many as it found.
:func:`detections` reads that answer (torchvision's list of dicts, or a dict, tuple or dataclass
holding the three). A detection becomes a target through :class:`BoxScores`, a head that turns
the detector's answer into one number per reference detection, the score pytorch-grad-cam's
``FasterRCNNBoxScoreTarget`` defines: the best-matching detection's IoU with the reference box
plus its class score, 0 when that IoU is at most :data:`IOU_THRESHOLD` or its label changed. So
every method that explains a class score (integrated gradients, saliency, the CAM family,
occlusion, ...) explains a box: :func:`netviz.attribute.attribute_detections`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from netviz.errors import NetvizError
from netviz.heads import Head, output_entries, raw_outputs
from netviz.selection import parse_indices

if TYPE_CHECKING:
    from torch import nn


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


def holds_detections(raw: Any) -> bool:
    """Whether a forward's output is a detector's answer (boxes, scores and labels per image)."""
    try:
        detections(raw)
    except (NetvizError, TypeError, ValueError, RuntimeError, IndexError):
        return False
    return True


def class_count(model: nn.Module, raw: Any, notes: list[str], given: int | None = None) -> int:
    """How many classes a detector tells apart: torchvision's box predictor or classification head,
    any ``num_classes`` the model or one of its modules holds, else ``given`` (the class names'
    count), else one more than the largest label it answered (said in ``notes``)."""
    predictor = getattr(getattr(model, "roi_heads", None), "box_predictor", None)
    if predictor is not None and hasattr(predictor, "cls_score"):
        return int(predictor.cls_score.out_features)
    for m in model.modules():  # the model itself first
        for holder in (m, getattr(m, "classification_head", None)):
            if isinstance(getattr(holder, "num_classes", None), int):
                return int(holder.num_classes)
    if given is not None:
        return given
    largest = max((int(f.labels.max()) for f in detections(raw) if len(f)), default=0)
    notes.append(f"assumed {largest + 1} classes (the largest label the detector answered, plus one); pass "
                 "--classes NAMES to say")
    return largest + 1


@dataclass(frozen=True)
class DetectorHead(Head):
    """A detector read as a classifier, for every command that looks at class scores (predictions,
    activations, layers): an image's score for a class is its best detection of that class (0 when
    it has none). ``--detection`` and ``--box`` explain one detection instead (:class:`BoxScores`)."""

    classes: int = 1
    activation: str = "none"

    def scores(self, raw: Any, input_size: Sequence[int]) -> torch.Tensor:
        rows = []
        for f in detections(raw):
            if len(f) and int(f.labels.max()) >= self.classes:
                raise NetvizError(f"the detector answered label {int(f.labels.max())}, but netviz read it as having "
                                  f"{self.classes} classes: pass --classes with a name for each")
            zero = _unmatched(f, self.classes)  # a class without a detection scores 0
            rows.append(zero.scatter_reduce(0, f.labels.to(zero.device), f.scores, "amax"))
        return torch.stack(rows)

    def record(self) -> dict[str, Any]:
        return {}  # known again from the model when it is opened


def is_detector(model: nn.Module | None) -> bool:
    """Whether netviz reads ``model`` as a detector (it carries a :class:`DetectorHead`)."""
    from netviz.heads import head_of

    return isinstance(head_of(model), DetectorHead)


def _unmatched(found: Found, count: int) -> torch.Tensor:
    """(count,) zeros still on the graph of ``found``'s scores: a path of inputs with no detection
    (integrated gradients from black) has gradient 0 there, not no gradient at all."""
    return torch.zeros(count, dtype=found.scores.dtype, device=found.scores.device) + 0 * found.scores.sum()


def best_match(found: Found, boxes: torch.Tensor, labels: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(IoU, index, matched), each (D,): the detection in ``found`` that overlaps each reference box
    most, and whether it matches (IoU above :data:`IOU_THRESHOLD`, the same label). ``found`` holds
    one detection at least."""
    from torchvision.ops import box_iou

    best, index = box_iou(boxes.to(found.boxes), found.boxes).max(1)
    return best, index, (best > IOU_THRESHOLD) & (found.labels[index] == labels.to(found.labels.device))


def box_score(found: Found, boxes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(D,) the score of each reference detection (``boxes`` D x 4, ``labels`` D) in ``found``:
    the IoU of the detection that overlaps it most plus that detection's score, 0 when the IoU is
    at most :data:`IOU_THRESHOLD` or the label differs (pytorch-grad-cam's definition)."""
    out = _unmatched(found, len(boxes))
    if len(found) == 0:
        return out
    best, index, matched = best_match(found, boxes, labels)
    return torch.where(matched, best + found.scores[index], out)


def drise_similarity(found: Found, boxes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(D,) D-RISE's similarity of each reference detection to the best detection in ``found``
    (Petsiuk et al. 2021): IoU x cosine of the class vectors x objectness. A detector that answers a
    label and a score per box has one-hot class vectors: the cosine is 1 for the same label, else 0,
    and the score stands for the objectness."""
    from torchvision.ops import box_iou

    if len(found) == 0:
        return _unmatched(found, len(boxes))
    ious = box_iou(boxes.to(found.boxes), found.boxes)  # (D, M)
    same = labels.to(found.labels.device)[:, None] == found.labels[None, :]
    return (ious * same * found.scores[None, :]).amax(1)


class Similarity(NamedTuple):
    """How a detection is scored against a reference, and what that score is called."""

    score: Callable[[Found, torch.Tensor, torch.Tensor], torch.Tensor]
    name: str  # in a figure's title
    meaning: str  # in the records


SIMILARITIES = {
    "box": Similarity(box_score, "the detection's box score",
                      "the box score of the detection (pytorch-grad-cam's FasterRCNNBoxScoreTarget): the IoU of the "
                      "best-matching detection with its box plus that detection's class score, 0 when the IoU is at "
                      "most 0.5 or the class changed"),
    "drise": Similarity(drise_similarity, "D-RISE's similarity to the detection",
                        "D-RISE's similarity to the detection: IoU x same class x the detection's score, of the best "
                        "match"),
}


@dataclass(frozen=True)
class BoxScores(Head):
    """A head that reads a detector's answer as one score per reference detection (D columns):
    column d is :func:`box_score` of reference d, so target d explains detection d."""

    boxes: tuple[tuple[float, float, float, float], ...] = ()
    labels: tuple[int, ...] = ()
    activation: str = "none"
    similarity: str = "box"  # how a detection is scored against a reference: SIMILARITIES

    def scores(self, raw: Any, input_size: Sequence[int]) -> torch.Tensor:
        found = detections(raw)
        boxes, labels = torch.tensor(self.boxes, dtype=torch.float32), torch.tensor(self.labels)
        score = SIMILARITIES[self.similarity].score
        return torch.stack([score(f, boxes, labels) for f in found])


@dataclass
class Explained:
    """Per map of an attribution of detections, what it explains (and what its figure draws): the
    detection's box (x0, y0, x1, y1 in input pixels), label, the detector's score for it, the box
    score at the input, how it was chosen ("detection 0", "box"), its image's other boxes, and how
    the method scored it (a key of :data:`SIMILARITIES`)."""

    boxes: torch.Tensor  # (D, 4)
    labels: torch.Tensor  # (D,)
    confidence: torch.Tensor  # (D,) the detector's score of the detection (of the best match, for --box)
    box_score: torch.Tensor  # (D,) at the input: IoU with the box + the class score
    chosen: list[str]
    others: list[torch.Tensor]  # per map, (M, 4)
    similarity: str = "box"

    @property
    def scored_by(self) -> Similarity:
        return SIMILARITIES[self.similarity]

    def record(self, j: int, class_name: Any) -> dict[str, Any]:
        """What attribute.json says of map ``j``'s detection."""
        return {"chosen": self.chosen[j], "box": [round(float(v), 2) for v in self.boxes[j]],
                "label": int(self.labels[j]), "label_name": class_name(int(self.labels[j])),
                "confidence": float(self.confidence[j]), "box_score": float(self.box_score[j])}


@dataclass(frozen=True)
class Targets:
    """The detections explained: for each, its image (index into the images), box, label and score."""

    image: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor  # the box score of each, at the input
    confidence: torch.Tensor  # the detector's score of each (of the best match, for --box; 0 when none)
    found: list[Found]
    chosen: tuple[str, ...] = ()  # per target: "detection 0", or "box" for --box

    def explained(self, similarity: str = "box") -> Explained:
        """What each map explains, for the record and the figures."""
        return Explained(self.boxes.clone(), self.labels.clone(), self.confidence.clone(), self.scores.clone(),
                         list(self.chosen), [self.others(j) for j in range(len(self.image))], similarity)

    def head(self, similarity: str = "box") -> BoxScores:
        """The head whose column d scores detection d (by ``similarity``, see :data:`SIMILARITIES`)."""
        return BoxScores(boxes=tuple(tuple(float(v) for v in b) for b in self.boxes.tolist()),
                         labels=tuple(int(v) for v in self.labels.tolist()), similarity=similarity)

    def others(self, j: int) -> torch.Tensor:
        """(M, 4) the boxes of target ``j``'s image other than its own (drawn thin beside it)."""
        found = self.found[int(self.image[j])]
        if len(found) == 0:
            return torch.zeros(0, 4)
        boxes = found.boxes.detach().cpu().float()
        same = (boxes - self.boxes[j]).abs().amax(1) < 1e-4
        return boxes[~same]


def find(model: nn.Module, x: torch.Tensor) -> list[Found]:
    """The detections of every image of ``x`` (no gradients)."""
    from netviz.device import model_device
    from netviz.layers import eval_mode

    with eval_mode(model), raw_outputs(model), torch.no_grad():
        return detections(model(x.to(model_device(model))), len(x))


def targets(model: nn.Module, x: torch.Tensor, detection: str | int | None = None,
            box: Sequence[float] | str | None = None, label: int | str | None = None) -> Targets:
    """The detections to explain: each image's ``detection`` (an index by score, or a range
    ``0-4``; default 0), or the one that matches ``box`` (x0, y0, x1, y1 in input pixels) with
    ``label``."""
    if box is not None and detection is not None:
        raise NetvizError("pass --detection or --box, not both: --box explains the detection that matches it")
    found = find(model, x)
    height, width = x.shape[-2:]
    if box is not None:
        if label is None:
            raise NetvizError("--box needs --target CLASS: the class of the object in the box")
        ref = _read_box(box, width, height)
        if not str(label).strip().isdigit():
            raise NetvizError(f"--box takes one --target class, not {label}")
        rows = [(i, ref, int(label), "box") for i in range(len(found))]
    elif label is not None:
        raise NetvizError("a detector's --target needs --box x0,y0,x1,y1: the box of the object of that class")
    else:
        rows = []
        for i, f in enumerate(found):
            if len(f) == 0:
                raise NetvizError(f"image {i} has no detection: nothing to explain (try another image, or --box "
                                  "with --target)")
            for k in _wanted(detection, len(f), i):
                rows.append((i, f.boxes[k].detach().cpu().tolist(), int(f.labels[k]), f"detection {k}"))
    image = torch.tensor([r[0] for r in rows], dtype=torch.long)
    boxes = torch.tensor([r[1] for r in rows], dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor([r[2] for r in rows], dtype=torch.long)
    scores, confidence = torch.zeros(len(rows)), torch.zeros(len(rows))
    for j, i in enumerate(image.tolist()):
        f = found[i]
        if len(f):
            best, index, matched = (t[0] for t in best_match(f, boxes[j:j + 1], labels[j:j + 1]))
            if matched:
                scores[j], confidence[j] = float(best + f.scores[index]), float(f.scores[index])
    return Targets(image, boxes, labels, scores, confidence, found, tuple(r[3] for r in rows))


def _wanted(detection: str | int | None, count: int, image: int) -> list[int]:
    """The detections of an image with ``count`` to explain: one index must exist; a range or list
    (``0-4``: the best five) takes those the image has, one at least."""
    text = str(0 if detection is None else detection)
    if text.strip().lstrip("-").isdigit():
        return parse_indices(text, count, "detection", f"image {image}")
    wanted = parse_indices(text, max(count, 10**6), "detection", f"image {image}")
    kept = [k for k in wanted if k < count]
    return kept or parse_indices(str(wanted[0]), count, "detection", f"image {image}")


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
