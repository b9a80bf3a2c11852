"""LRP-epsilon-plus (Montavon et al. 2019): z+ in the convolutions (only positive contributions
pass relevance down), epsilon in the dense layers: zennit's ``EpsilonPlus`` composite."""

from __future__ import annotations

from typing import Any

from netviz.attribute._lrp import LrpOptions, lrp_method, zennit


def composite(options: LrpOptions, low: Any, high: Any, canonizers: list) -> Any:
    return zennit().composites.EpsilonPlus(epsilon=options.epsilon, canonizers=canonizers)


lrp_epsilon_plus = lrp_method("lrp-epsilon-plus", composite, "layer-wise relevance propagation, z+ in "
                              "convolutions, epsilon in dense layers (Montavon et al. 2019)")
