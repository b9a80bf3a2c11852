"""LRP-epsilon-gamma-box (Montavon et al. 2019): the box rule at the input (bounded by the normalised
pixel 0 and 1), gamma in the other convolutions, epsilon in dense layers: zennit's
``EpsilonGammaBox`` composite."""

from __future__ import annotations

from typing import Any

from netviz.attribute._lrp import LrpOptions, lrp_method, zennit


def composite(options: LrpOptions, low: Any, high: Any, canonizers: list) -> Any:
    return zennit().composites.EpsilonGammaBox(low=low, high=high, epsilon=options.epsilon,
                                               gamma=options.gamma, canonizers=canonizers)


lrp_epsilon_gamma_box = lrp_method("lrp-epsilon-gamma-box", composite, "layer-wise relevance propagation, "
                                   "box rule at the input, gamma in convolutions, epsilon in dense layers "
                                   "(Montavon et al. 2019)")
