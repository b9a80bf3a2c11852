"""Object detectors: a detection as an attribution target. Grad-CAM of a box of a torchvision
Faster R-CNN against pytorch-grad-cam's GradCAM with FasterRCNNBoxScoreTarget, integrated
gradients' completeness on the box score, and the one-line errors."""

from __future__ import annotations

import pytest
import torch
from awkward_nets import GridDetector
from torch import nn

from netviz import detection
from netviz.attribute import attribute_detections
from netviz.errors import NetvizError

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
    model, x = detector
    result, chosen = attribute_detections(model, x, "gradcam", detection="0-1", layer=LAYER)
    assert chosen.image.tolist() == [0, 0, 1, 1] and (chosen.scores > 0).all()
    theirs = grad_cams_maps(model, LAYER, x, chosen, result.maps.shape[2:])
    assert (to_unit(result.maps[:, 0]) - theirs).abs().max() < 1e-3


def test_integrated_gradients_of_a_box_meet_completeness(detector):
    model, x = detector
    result, chosen = attribute_detections(model, x[:1], "integrated", detection=0, steps=32)
    assert result.completeness_error.max() < 0.05 and result.score_input[0] == pytest.approx(float(chosen.scores[0]),
                                                                                              rel=1e-4)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"detection": 16}, "detection 16 is out of range"),
    ({"box": "0,0,200,20", "label": 1}, "--box 0,0,200,20 is not a box inside the 64x64 image"),
    ({"box": None, "label": 1}, "a detector's --target needs --box"),
    ({"box": "0,0,20,20"}, "--box needs --target CLASS"),
    ({"box": "0,0,20,20", "label": 1, "detection": 0}, "pass --detection or --box, not both"),
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


# -- a torchvision Faster R-CNN: the oracle ---------------------------------------------------

@pytest.fixture(scope="module")
def faster_rcnn():
    """torchvision's FasterRCNN on a small conv body (random weights; no threshold, so every image
    has detections whose scores and boxes depend on the input)."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
                         nn.Conv2d(32, 32, 3, 1, 1), nn.ReLU())
    body.out_channels = 32
    model = FasterRCNN(body, num_classes=4, min_size=128, max_size=128,
                       rpn_anchor_generator=AnchorGenerator(((16, 32),), ((1.0,),)),
                       box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2), box_score_thresh=0.0,
                       box_detections_per_img=6).eval()
    return model, torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))


def grad_cams_maps(model, layer, x, chosen, size, method=None):
    """pytorch-grad-cam's map of each chosen detection at ``layer`` (at the layer's resolution)."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget

    h, w = size

    class AtLayer(method or pytorch_grad_cam.GradCAM):
        def get_target_width_height(self, input_tensor):  # noqa: ANN001, ANN202
            return (w, h)

    out = []
    with AtLayer(model=model, target_layers=[model.get_submodule(layer)]) as cam:
        for j, i in enumerate(chosen.image.tolist()):
            target = FasterRCNNBoxScoreTarget([int(chosen.labels[j])], [chosen.boxes[j].numpy()])
            out.append(torch.from_numpy(cam(input_tensor=x[i:i + 1], targets=[target]))[0])
    return torch.stack(out)


def to_unit(maps: torch.Tensor) -> torch.Tensor:
    """Maps shifted to a minimum of 0 and scaled to a maximum of 1 (as grad-cam shows them)."""
    maps = maps - maps.flatten(1).min(1).values[:, None, None]
    return maps / maps.flatten(1).max(1).values[:, None, None]


def test_grad_cam_of_a_faster_rcnn_detection_equals_grad_cams_package(faster_rcnn):
    model, x = faster_rcnn
    result, chosen = attribute_detections(model, x, "gradcam", detection="0-1", layer="backbone.4")
    assert len(chosen.image) == 4 and (chosen.scores > 1).all()  # IoU 1 with itself plus its score
    theirs = grad_cams_maps(model, "backbone.4", x, chosen, result.maps.shape[2:])
    assert (to_unit(result.maps[:, 0]) - theirs).abs().max() < 1e-3


def test_eigencam_equals_grad_cams_projection(faster_rcnn):
    """netviz's EigenCAM is ReLU of pytorch-grad-cam's get_2d_projection of the layer's output, up to
    the principal component's sign (arbitrary: grad-cam keeps LAPACK's, netviz the one that follows the
    layer's mean activation)."""
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    model, x = faster_rcnn
    result, chosen = attribute_detections(model, x, "eigencam", detection=0, layer="backbone.4")
    seen = []
    handle = model.get_submodule("backbone.4").register_forward_hook(lambda m, a, out: seen.append(out.detach()))
    with torch.no_grad():
        model(x[chosen.image])
    handle.remove()
    projection = torch.from_numpy(get_2d_projection(seen[0].numpy()))
    ours = to_unit(result.maps[:, 0])
    for i in range(len(ours)):
        errors = [float((ours[i] - to_unit(torch.relu(sign * projection[i:i + 1]))[0]).abs().max()) for sign in (1, -1)]
        assert min(errors) < 1e-4
        mean = seen[0][i].mean(0).flatten()
        chosen_sign = 1 if errors[0] < errors[1] else -1
        assert float(torch.corrcoef(torch.stack([chosen_sign * projection[i].flatten(), mean]))[0, 1]) > 0


# -- D-RISE ------------------------------------------------------------------------------------------

def test_drise_masks_are_smooth_random_grids():
    from netviz.attribute._drise import random_masks

    a = random_masks(200, 40, 50, 8, 0.5, torch.Generator().manual_seed(3))
    b = random_masks(200, 40, 50, 8, 0.5, torch.Generator().manual_seed(3))
    assert a.shape == (200, 1, 40, 50) and torch.equal(a, b)
    assert float(a.min()) >= 0 and float(a.max()) <= 1 and abs(float(a.mean()) - 0.5) < 0.05
    assert ((a > 0.01) & (a < 0.99)).float().mean() > 0.2  # bilinear edges, not a hard grid
    with pytest.raises(NetvizError, match="--cells 60 does not fit"):
        random_masks(1, 40, 50, 60, 0.5, torch.Generator())


def test_drise_rows_of_one_image_share_their_masks_and_passes():
    # three targets of one image: one set of masks and passes, each row's map the map of that
    # target alone with the same masks (the first row's seed)
    from netviz.attribute import drise

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                          nn.Linear(16, 5)).eval()
    image = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(2))
    calls: list[int] = []
    model.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    shared = drise(model, image.expand(3, -1, -1, -1), torch.tensor([0, 3, 4]), masks=40, cells=4, batch_size=20,
                   seed=5)
    assert calls.count(20) == 2 and sum(calls) < 50  # the 40 masks once in passes of 20, not three times
    for k, t in enumerate((0, 3, 4)):
        alone = drise(model, image, torch.tensor([t]), masks=40, cells=4, batch_size=20, seed=5)
        assert torch.allclose(shared.attributions[k], alone.attributions[0], atol=1e-6)
    assert not torch.allclose(shared.attributions[0], shared.attributions[1], atol=1e-3)


def test_drise_of_several_detections_costs_the_passes_of_one(detector):
    model, x = detector
    calls: list[int] = []
    handle = model.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    try:
        result, chosen = attribute_detections(model, x[:1], "drise", detection="0-3", masks=48, cells=8,
                                              batch_size=16)
    finally:
        handle.remove()
    assert len(chosen.image) == 4 and result.attributions.shape[0] == 4
    masked = [c for c in calls if c == 16]
    assert len(masked) == 3  # 48 masks in passes of 16, shared by the four detections
    assert len({float(a.abs().sum()) for a in result.attributions}) == 4  # four maps, not one
