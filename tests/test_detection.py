"""Object detectors: a detection as an attribution target. Grad-CAM of a box of a torchvision
Faster R-CNN against pytorch-grad-cam's GradCAM with FasterRCNNBoxScoreTarget, integrated
gradients' completeness on the box score, and the one-line errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from netviz import detection
from netviz.errors import NetvizError


class GridDetector(nn.Module):
    """A small detector whose boxes, scores and labels all depend on the input: a conv body, and
    for each cell of a 4 x 4 grid one box (the cell moved by a predicted offset) and its class
    probabilities; it answers as torchvision's detectors do, a dict per image."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1),
                                  nn.ReLU())
        self.head = nn.Conv2d(16, 4 + 3, 1)

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        out = F.adaptive_avg_pool2d(self.head(self.body(x)), 4)  # (N, 7, 4, 4)
        cell = x.shape[-1] / 4
        ys, xs = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
        corners = torch.stack([xs, ys, xs + 1, ys + 1], -1).reshape(16, 4) * cell
        answers = []
        for o in out.flatten(2).transpose(1, 2):  # (16, 7) per image
            boxes = (corners + 0.3 * cell * torch.tanh(o[:, :4])).clamp(0, x.shape[-1])
            scores, labels = torch.softmax(o[:, 4:] * 4, 1).max(1)
            answers.append({"boxes": boxes, "scores": scores, "labels": labels})
        return answers


LAYER = "body.2"


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    return GridDetector().eval(), x


def test_box_score_is_grad_cams_definition():
    from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget

    found = {"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40], [22, 18, 41, 40]]),
             "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([1, 2, 3])}
    refs = torch.tensor([[1.0, 0, 10, 10], [21, 20, 40, 40], [50, 50, 60, 60], [20, 20, 40, 40]])
    labels = torch.tensor([1, 2, 1, 3])
    ours = detection.box_score(detection.detections([found])[0], refs, labels)
    theirs = [float(FasterRCNNBoxScoreTarget([int(lab)], [ref.numpy()])(found)) for ref, lab in zip(refs, labels,
                                                                                                     strict=True)]
    assert ours.tolist() == pytest.approx(theirs) and ours[2] == 0 and ours[3] == 0  # no overlap; label changed


def test_grad_cam_of_a_box_equals_grad_cams_package(detector):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget

    model, x = detector
    result, chosen = detection.attribute_detections(model, x, "gradcam", detection="0-1", layer=LAYER)
    assert chosen.image.tolist() == [0, 0, 1, 1] and (chosen.scores > 0).all()
    h, w = result.maps.shape[2:]

    class AtLayer(pytorch_grad_cam.GradCAM):
        def get_target_width_height(self, input_tensor):  # noqa: ANN001, ANN202
            return (w, h)

    theirs = []
    with AtLayer(model=model, target_layers=[model.get_submodule(LAYER)]) as cam:
        for j, i in enumerate(chosen.image.tolist()):
            target = FasterRCNNBoxScoreTarget([int(chosen.labels[j])], [chosen.boxes[j].numpy()])
            theirs.append(torch.from_numpy(cam(input_tensor=x[i:i + 1], targets=[target]))[0])
    ours = result.maps[:, 0]
    ours = ours - ours.flatten(1).min(1).values[:, None, None]
    ours = ours / (1e-7 + ours.flatten(1).max(1).values[:, None, None])
    assert (ours - torch.stack(theirs)).abs().max() < 1e-3


def test_integrated_gradients_of_a_box_meet_completeness(detector):
    model, x = detector
    result, chosen = detection.attribute_detections(model, x[:1], "integrated", detection=0, steps=32)
    assert result.completeness_error.max() < 0.05 and result.score_input[0] == pytest.approx(float(chosen.scores[0]),
                                                                                              rel=1e-4)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"detection": 16}, "detection 16 is out of range"),
    ({"box": "0,0,200,20", "label": 1}, "--box 0,0,200,20 is not a box inside the 64x64 image"),
    ({"box": None, "label": 1}, "a detector's --target needs --box"),
    ({"box": "0,0,20,20"}, "--box needs --target CLASS"),
])
def test_bad_detection_targets_are_one_line(detector, kwargs, message):
    model, x = detector
    with pytest.raises(NetvizError, match=message):
        detection.targets(model, x[:1], **kwargs)


def test_an_image_without_detections_is_one_line():
    class Nothing(nn.Module):
        def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
            return [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
                    for _ in x]

    with pytest.raises(NetvizError, match="image 0 has no detection"):
        detection.targets(Nothing(), torch.rand(1, 3, 16, 16))
