"""`netviz explain`: which of a layer's learned features carried a decision, shown as pictures.

:mod:`netviz.explain.methods` ranks a layer's channels by their contribution to a target's score
(grad-x-act, layer-integrated, lrp); :func:`explain_run` adds each top channel's neuron card.
"""

from netviz.explain.methods import (
    CHANNEL_METHODS,
    ChannelAttribution,
    ChannelLrpOptions,
    ChannelMethod,
    all_channel_options,
    get_channel_method,
    grad_x_act,
    layer_integrated,
    lrp_channels,
)
from netviz.explain.run import Explanation, explain_layer, explain_run

__all__ = ["CHANNEL_METHODS", "ChannelAttribution", "ChannelLrpOptions", "ChannelMethod", "Explanation",
           "all_channel_options", "explain_layer", "explain_run", "get_channel_method", "grad_x_act",
           "layer_integrated", "lrp_channels"]
