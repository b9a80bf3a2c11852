"""Small models whose output is not one logits tensor, for tests/test_outputs.py (imported there
and named by the CLI as tests/awkward_nets.py:NAME). Functional ReLUs and BatchNorm on purpose."""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

Detections = namedtuple("Detections", ["box", "landmarks", "logits"])


class ThreeHeads(nn.Module):
    """A face-detector-like model: box (4), landmarks (10), class logits (10), in that order."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.box = nn.Linear(16, 4)
        self.landmarks = nn.Linear(16, 10)
        self.cls = nn.Linear(16, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.conv2(F.max_pool2d(h, 2))).mean((2, 3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.box(h), self.landmarks(h), self.cls(h)


class DictOut(ThreeHeads):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        box, _, logits = super().forward(x)
        return {"boxes": box, "logits": logits}


class NamedOut(ThreeHeads):
    def forward(self, x: torch.Tensor) -> Detections:
        return Detections(*super().forward(x))


@dataclass
class Output:
    logits: torch.Tensor
    embedding: torch.Tensor


class DataclassOut(ThreeHeads):
    def forward(self, x: torch.Tensor) -> Output:
        h = self.features(x)
        return Output(self.cls(h), h)


class TrainOnlyAux(ThreeHeads):
    """Inception-like: auxiliary logits only in train mode."""

    def forward(self, x: torch.Tensor):
        h = self.features(x)
        return (self.cls(h), self.box(h)) if self.training else self.cls(h)


class MultiLabel(nn.Module):
    """Five independent labels (sigmoid), BatchNorm, functional ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 12, 3, stride=2, padding=1)
        self.fc = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn(self.conv1(x)))
        return self.fc(torch.relu(self.conv2(h)).mean((2, 3)))


class Seg(nn.Module):
    """Fully convolutional: a (N, 4, H, W) map of class logits at the input's size."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        self.head = nn.Conv2d(16, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x))
        h = F.relu(self.conv2(h))
        return F.interpolate(self.head(h), size=x.shape[-2:], mode="bilinear", align_corners=False)


class FunctionalRelu(nn.Module):
    """One ReLU module, and a functional ReLU guided backprop cannot see."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv1(x))
        return self.fc(F.relu(self.conv2(h)).mean((2, 3)))


class ModuleRelu(nn.Module):
    """The same with ReLU modules only (guided backprop sees every one)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.act2 = nn.ReLU()
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act2(self.conv2(self.act1(self.conv1(x)))).mean((2, 3)))


class GridDetector(nn.Module):
    """A small detector whose boxes, scores and labels all depend on the input, with no threshold
    (every image has 16 detections): a conv body with BatchNorm and functional ReLUs, and for each
    cell of a 4 x 4 grid one box (the cell moved by a predicted offset) and its class probabilities;
    it answers as torchvision's detectors do, a dict per image."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.num_classes = classes
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Conv2d(16, 4 + classes, 1)

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        out = F.adaptive_avg_pool2d(self.head(F.relu(self.body(x))), 4)  # (N, 4 + classes, 4, 4)
        cell_h, cell_w = x.shape[-2] / 4, x.shape[-1] / 4
        ys, xs = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
        scale = torch.tensor([cell_w, cell_h, cell_w, cell_h])
        corners = torch.stack([xs, ys, xs + 1, ys + 1], -1).reshape(16, 4) * scale
        limit = torch.tensor([x.shape[-1], x.shape[-2]] * 2, dtype=torch.float32)
        answers = []
        for o in out.flatten(2).transpose(1, 2):  # (16, 4 + classes) per image
            boxes = torch.minimum((corners + 0.3 * scale * torch.tanh(o[:, :4])).clamp_min(0), limit)
            scores, labels = torch.softmax(o[:, 4:] * 4, 1).max(1)
            answers.append({"boxes": boxes, "scores": scores, "labels": labels})
        return answers
