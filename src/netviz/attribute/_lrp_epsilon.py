"""LRP-epsilon (Bach et al. 2015): the epsilon rule in every convolution and linear layer.

R_i = sum_j x_i w_ij / (z_j + eps sign(z_j)) R_j. With a small epsilon it equals gradient x input
on a ReLU net; relevance is conserved where the layers have no bias.
"""

from __future__ import annotations

from typing import Any

from netviz.attribute._lrp import LrpOptions, lrp_method, zennit


def composite(options: LrpOptions, low: Any, high: Any, canonizers: list) -> Any:
    z = zennit()
    rule = z.rules.Epsilon(epsilon=options.epsilon)
    return z.composites.LayerMapComposite(
        z.composites.layer_map_base(options.epsilon)
        + [(z.types.Convolution, rule), (z.types.Linear, rule)], canonizers=canonizers)


lrp_epsilon = lrp_method("lrp-epsilon", composite, "layer-wise relevance propagation, epsilon rule everywhere "
                         "(Bach et al. 2015)")
