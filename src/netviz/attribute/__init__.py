"""Attribution: which input pixels made the model give its score for a class.

Every function takes a model and a batch ``x`` in the model's *normalised* input space and returns
a small result object; none imports click or matplotlib (draw with :mod:`netviz.draw.attribute`).

- :func:`integrated_gradients` (completeness error and steps per image, adaptive steps)
- :func:`interior_gradients` (gradients at scaled inputs alpha * x)
- :func:`saliency`, :func:`input_x_gradient`, :func:`smoothgrad`, :func:`gradient`
- :func:`model_randomisation` (the cascading model-randomisation sanity check)
- :func:`attribute` (any method by its ``--method`` name), :func:`attribute_run` (the command)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from netviz.attribute._common import (
    BASELINES,
    SCORES,
    Attribution,
    make_baseline,
    mean_baseline,
    score_of,
)
from netviz.attribute._gradients import gradient, input_x_gradient, saliency, smoothgrad
from netviz.attribute._integrated import QUADRATURES, integrated_gradients, quadrature_rule
from netviz.attribute._interior import DEFAULT_ALPHAS, InteriorGradients, interior_gradients
from netviz.attribute._run import (
    METHODS,
    AttributeReport,
    attribute_run,
    check_method,
    method_function,
    parse_indices,
)
from netviz.attribute._sanity import SanityResult, model_randomisation, parameter_layers, spearman

if TYPE_CHECKING:
    import torch
    from torch import nn


def attribute(model: nn.Module, x: torch.Tensor, method: str = "integrated",
              target: Any = None, **kwargs: Any) -> Attribution | InteriorGradients:
    """Run the method named ``method`` (one of :data:`METHODS`) with its own keyword arguments."""
    return method_function(method)(model, x, target, **kwargs)


__all__ = [
    "BASELINES", "DEFAULT_ALPHAS", "METHODS", "QUADRATURES", "SCORES",
    "AttributeReport", "Attribution", "InteriorGradients", "SanityResult",
    "attribute", "attribute_run", "check_method", "gradient", "input_x_gradient",
    "integrated_gradients", "interior_gradients", "make_baseline", "mean_baseline",
    "method_function", "model_randomisation", "parameter_layers", "parse_indices",
    "quadrature_rule", "saliency", "score_of", "smoothgrad", "spearman",
]
