"""Attribution: which input pixels made the model give its score for a class.

Every function takes a model and a batch ``x`` in the model's *normalised* input space and returns
a small result object; none imports click or matplotlib (draw with :mod:`netviz.draw.attribute`).
Each method is a registered :class:`Method` in a file of its own (:data:`METHODS` by name):

- gradients: :func:`saliency`, :func:`input_x_gradient`, :func:`smoothgrad`, :func:`guided_backprop`
- paths: :func:`integrated_gradients` (completeness error, adaptive steps), :func:`interior_gradients`
- class-activation maps of a layer: :func:`grad_cam`, :func:`grad_cam_plus_plus`, :func:`layer_cam`,
  :func:`score_cam`, :func:`eigen_cam`, :func:`guided_grad_cam` (``.maps`` at the layer,
  ``.attributions`` upsampled)
- perturbation: :func:`occlusion`, :func:`drise` (random masks; D-RISE for detections); a control:
  :func:`random_map`
- relevance (zennit, ``netviz[lrp]``): :func:`lrp_epsilon`, :func:`lrp_epsilon_plus`,
  :func:`lrp_epsilon_gamma_box`
- :func:`model_randomisation` (the cascading sanity check), :func:`attribute` (any method by name),
  :func:`attribute_detections` (a detector's detections), :func:`attribute_run` (the command)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from netviz.attribute._common import (
    BASELINES,
    SCORES,
    Attribution,
    check_batch_size,
    check_score,
    eval_mode,
    fast_format,
    fast_inference,
    forward_scores,
    make_baseline,
    mean_baseline,
    model_score,
    opening,
    passes,
    resolve_target,
    score_of,
)
from netviz.attribute._registry import (
    METHODS,
    BaselineOptions,
    LayerOptions,
    Method,
    Options,
    SeededOptions,
    all_options,
    check_method_options,
    get_method,
    ignored_options,
    method_function,
    option,
    options_of,
    register,
)
from netviz.heads import target_label

# one file per method: importing it registers it (this order is the order `--method` lists them)
from netviz.attribute._integrated import (  # isort: skip
    QUADRATURES, IntegratedOptions, integrated_gradients, quadrature_rule, relative_error, step_schedule)
from netviz.attribute._interior import DEFAULT_ALPHAS, InteriorGradients, interior_gradients  # isort: skip
from netviz.attribute._saliency import gradient, saliency  # isort: skip
from netviz.attribute._inputxgrad import input_x_gradient  # isort: skip
from netviz.attribute._smoothgrad import smoothgrad  # isort: skip
from netviz.attribute._guided import guided_backprop  # isort: skip
from netviz.attribute._gradcam import grad_cam  # isort: skip
from netviz.attribute._gradcampp import grad_cam_plus_plus  # isort: skip
from netviz.attribute._layercam import layer_cam  # isort: skip
from netviz.attribute._scorecam import score_cam  # isort: skip
from netviz.attribute._eigencam import eigen_cam  # isort: skip
from netviz.attribute._guided_gradcam import guided_grad_cam  # isort: skip
from netviz.attribute._occlusion import occlusion  # isort: skip
from netviz.attribute._drise import drise  # isort: skip
from netviz.attribute._random import random_map  # isort: skip
from netviz.attribute._lrp import COMPOSITES, LrpOptions, relevance_rules, seed_relevance, zennit  # isort: skip
from netviz.attribute._lrp_epsilon import lrp_epsilon  # isort: skip
from netviz.attribute._lrp_epsilon_plus import lrp_epsilon_plus  # isort: skip
from netviz.attribute._lrp_epsilon_gamma_box import lrp_epsilon_gamma_box  # isort: skip
from netviz.attribute._run import (  # isort: skip
    AttributeOptions, AttributeResult, attribute_run, for_share, load_baseline, method_kwargs)
from netviz.attribute._sanity import SanityResult, model_randomisation, parameter_layers, spearman  # isort: skip
from netviz.attribute._detections import attribute_detections  # isort: skip
from netviz.selection import parse_indices  # isort: skip

if TYPE_CHECKING:
    import torch
    from torch import nn


def attribute(model: nn.Module, x: torch.Tensor, method: str = "integrated",
              target: Any = None, **kwargs: Any) -> Attribution | InteriorGradients:
    """Run the method named ``method`` (one of :data:`METHODS`) with its own keyword arguments."""
    return method_function(method)(model, x, target, **kwargs)


__all__ = [
    "BASELINES", "COMPOSITES", "DEFAULT_ALPHAS", "METHODS", "QUADRATURES", "SCORES", "IntegratedOptions", "LrpOptions",
    "check_score", "options_of", "relative_error", "relevance_rules", "resolve_target", "seed_relevance",
    "model_score", "opening", "target_label",
    "step_schedule", "zennit",
    "AttributeOptions", "AttributeResult", "Attribution",
    "BaselineOptions", "InteriorGradients", "LayerOptions", "Method", "Options",
    "SanityResult", "SeededOptions", "all_options", "attribute", "attribute_run", "check_batch_size", "passes",
    "attribute_detections", "check_method_options", "drise", "eigen_cam", "eval_mode", "fast_format", "for_share",
    "fast_inference", "forward_scores",
    "get_method", "ignored_options", "load_baseline", "method_kwargs", "option", "grad_cam", "grad_cam_plus_plus",
    "gradient", "guided_backprop", "guided_grad_cam", "input_x_gradient", "integrated_gradients",
    "interior_gradients", "layer_cam",
    "lrp_epsilon", "lrp_epsilon_gamma_box", "lrp_epsilon_plus", "make_baseline", "mean_baseline", "method_function",
    "model_randomisation", "occlusion", "parameter_layers", "parse_indices", "quadrature_rule",
    "random_map", "register", "saliency", "score_cam", "score_of", "smoothgrad", "spearman",
]
