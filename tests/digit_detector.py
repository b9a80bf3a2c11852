"""A small object detector the detection tests train and explain: real MNIST digits pasted on
64 x 64 canvases, one or two a canvas, each boxed by its ink. The net is a conv body with BatchNorm
and a one-cell-per-8-pixels head (objectness, 10 classes, the box's four distances from the
cell's centre); it answers as torchvision's detectors do, a dict of boxes, scores and labels per
image after non-maximum suppression. Usable as a ``--model`` file: ``digit_detector.py:DigitDetector``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SIZE, CELL, CLASSES = 64, 8, 10
SCORE_THRESHOLD, NMS_IOU = 0.3, 0.4


class DigitDetector(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.num_classes = CLASSES

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]

        self.body = nn.Sequential(*block(1, 16), *block(16, 32), *block(32, 64),
                                  nn.Conv2d(64, 64, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(64, 1 + CLASSES + 4, 1)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 15, 8, 8): per cell the objectness logit, 10 class logits, 4 box distances / 32."""
        return self.head(self.body(x))

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        out = self.raw(x)
        n, _, gh, gw = out.shape
        ys, xs = torch.meshgrid(torch.arange(gh, device=x.device), torch.arange(gw, device=x.device), indexing="ij")
        centres = torch.stack([xs, ys, xs, ys], 0).reshape(4, -1).float() * CELL + CELL / 2  # (4, cells)
        answers = []
        for o in out.flatten(2):  # (15, cells) per image
            probs = torch.sigmoid(o[0]) * torch.softmax(o[1:1 + CLASSES], 0)
            scores, labels = probs.max(0)
            d = F.softplus(o[1 + CLASSES:]) * 16
            boxes = (centres + torch.stack([-d[0], -d[1], d[2], d[3]])).t().clamp(0, SIZE)
            keep = scores > SCORE_THRESHOLD
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            from torchvision.ops import batched_nms

            kept = batched_nms(boxes.detach(), scores.detach(), labels, NMS_IOU)
            answers.append({"boxes": boxes[kept], "scores": scores[kept], "labels": labels[kept]})
        return answers


def canvases(digits: torch.Tensor, labels: torch.Tensor, count: int, seed: int
             ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """``count`` canvases (N, 1, 64, 64, floats in [0, 1]) with one or two of the 28 x 28 ``digits``
    each, apart; per canvas the boxes of their ink (x0, y0, x1, y1) and their labels."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(count, 1, SIZE, SIZE)
    boxes, classes = [], []
    for i in range(count):
        placed, own = [], []
        for _ in range(1 + int(torch.randint(0, 2, (1,), generator=g))):
            for _try in range(20):
                y, x = (int(v) for v in torch.randint(0, SIZE - 28 + 1, (2,), generator=g))
                if all(abs(y - py) >= 24 or abs(x - px) >= 24 for py, px in placed):
                    break
            else:
                continue
            k = int(torch.randint(0, len(digits), (1,), generator=g))
            digit = digits[k].float() / 255
            images[i, 0, y:y + 28, x:x + 28] = torch.maximum(images[i, 0, y:y + 28, x:x + 28], digit)
            rows, cols = torch.nonzero(digit > 0.2, as_tuple=True)
            placed.append((y, x))
            own.append([x + int(cols.min()), y + int(rows.min()), x + int(cols.max()) + 1, y + int(rows.max()) + 1])
            own[-1].append(int(labels[k]))
        t = torch.tensor(own, dtype=torch.float32).reshape(-1, 5)
        boxes.append(t[:, :4])
        classes.append(t[:, 4].long())
    return images, boxes, classes


def targets(boxes: list[torch.Tensor], classes: list[torch.Tensor]) -> torch.Tensor:
    """(N, 6, 8, 8) training targets: objectness, class, the four distances / 16 at each box's
    centre cell (-1 class elsewhere)."""
    t = torch.zeros(len(boxes), 6, SIZE // CELL, SIZE // CELL)
    t[:, 1] = -1
    for i, (b, c) in enumerate(zip(boxes, classes, strict=True)):
        for box, label in zip(b.tolist(), c.tolist(), strict=True):
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            gx, gy = min(int(cx // CELL), SIZE // CELL - 1), min(int(cy // CELL), SIZE // CELL - 1)
            ox, oy = gx * CELL + CELL / 2, gy * CELL + CELL / 2
            t[i, :, gy, gx] = torch.tensor([1, label, (ox - box[0]) / 16, (oy - box[1]) / 16, (box[2] - ox) / 16,
                                            (box[3] - oy) / 16])
    return t


def train(images: torch.Tensor, boxes: list[torch.Tensor], classes: list[torch.Tensor], epochs: int = 12,
          seed: int = 0) -> DigitDetector:
    """The detector trained on the canvases (Adam, batches of 64): objectness by BCE everywhere,
    the class by cross-entropy and the distances by L1 at the boxes' cells."""
    torch.manual_seed(seed)
    net = DigitDetector()
    goal = targets(boxes, classes)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(images), generator=g).split(64):
            out, t = net.raw(images[idx]), goal[idx]
            pos = t[:, 0] > 0
            loss = F.binary_cross_entropy_with_logits(out[:, 0], t[:, 0], pos_weight=torch.tensor(4.0))
            if pos.any():
                logits = out[:, 1:1 + CLASSES].permute(0, 2, 3, 1)[pos]
                loss = loss + F.cross_entropy(logits, t[:, 1].long()[pos])
                dist = out[:, 1 + CLASSES:].permute(0, 2, 3, 1)[pos]
                loss = loss + F.l1_loss(F.softplus(dist), t[:, 2:].permute(0, 2, 3, 1)[pos])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()
