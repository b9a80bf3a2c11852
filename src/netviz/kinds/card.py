"""A model card: a TOML file naming a model and what netviz should know about it
(:func:`netviz.sources.load_card` reads it)."""

from __future__ import annotations

from typing import Any

from netviz.kinds import Kind


def _matches(ref: Any) -> bool:
    return isinstance(ref, str) and ref.endswith(".toml")


KIND = Kind("card", order=1, form="path/to/card.toml",
            meaning="a model card: model, weights, input_shape, mean, std, classes, layers, dataset, model_args, "
                    "output, activation, region, reshape (paths relative to the card)",
            matches=_matches, holds_source=True)
