"""Inputs the network likes most: class maximisation and channel / neuron visualisation.

The model's weights stay frozen; an image (see :mod:`netviz.dream.param`) is optimised so that
an objective (:mod:`netviz.dream.objectives`) grows, with random transforms and regularisers
(:mod:`netviz.dream.transforms`). Several targets are optimised as one batch: the loss is a sum
over images, Adam and the normalised-gradient step are per element / per image, and all
randomness comes from one generator per image seeded from (seed, target), so an image does not
depend on which other images share its batch (up to float rounding, see :func:`optimise`).

Recipes (:data:`RECIPES`): ``paper`` (the 2019 MNIST post), ``deepdream`` (the Wolfram feature
visualisation example) and ``lucent`` (FFT parameterisation and transforms, as Lucid/Lucent).
"""
from netviz.dream.loop import DreamResult, dream_channels, dream_classes, dream_directions, optimise
from netviz.dream.measure import Measurement, measure, measure_result, saved_pixels, saved_probability
from netviz.dream.objectives import OUTPUT, Objective, activations, channel, class_logit, class_logprob, neuron
from netviz.dream.recipes import OPTIMIZERS, RECIPES, DreamSettings, parse_scale, recipe_settings
from netviz.dream.targets import DreamTarget, image_seed, layer_output_shape, parse_classes, parse_neuron
from netviz.selection import parse_indices

__all__ = [
    "OPTIMIZERS", "OUTPUT", "RECIPES", "DreamResult", "DreamSettings", "DreamTarget", "Measurement", "Objective",
    "activations", "channel", "class_logit", "class_logprob", "dream_channels", "dream_classes", "dream_directions",
    "image_seed",
    "layer_output_shape", "measure", "measure_result", "neuron", "optimise", "parse_classes", "parse_indices",
    "parse_neuron", "parse_scale", "recipe_settings", "saved_pixels", "saved_probability",
]
