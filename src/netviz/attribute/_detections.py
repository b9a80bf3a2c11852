"""Attribution of a detector's detections: one map per detection, with any method."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from netviz.attribute._registry import get_method
from netviz.detection import Targets, targets
from netviz.heads import headed

if TYPE_CHECKING:
    from torch import nn

    from netviz.attribute._common import Attribution


def attribute_detections(model: nn.Module, x: torch.Tensor, method: str = "gradcam",
                         detection: str | int | None = None, box: Sequence[float] | str | None = None,
                         label: int | None = None, **options: Any) -> tuple[Attribution, Targets]:
    """Attribute each chosen detection (:func:`netviz.detection.targets`) with ``method``: one map per detection,
    the image repeated for each; the result's ``target`` numbers the detections in ``Targets``."""
    m = get_method(method)
    chosen = targets(model, x, detection, box, label)
    with headed(model, chosen.head(m.detection_similarity)) as detector:
        result = m.function(detector, x[chosen.image], torch.arange(len(chosen.image)), **options)
    return result, chosen
