"""Neuron cards: for each chosen channel, the input it responds to most beside the data that excite it.

What OpenAI Microscope showed for a few ImageNet models, for any model: per channel of a layer,
its feature visualisation (:func:`netviz.dream.dream_channels`), the ``k`` data-set images with
the highest mean activation (:func:`netviz.activations.top_activating`) and, over each, the map
of where in the image the channel fires. Pure compute; ``netviz.draw.neurons`` draws the cards.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz.dream.recipes import RECIPES
from netviz.errors import NetvizError
from netviz.options import CommandOptions, data_dir_option, dataset_option, option, seed_option

if TYPE_CHECKING:
    import torch

    from netviz.data import TensorData
    from netviz.runs import Run

DEFAULT_CHANNELS = "0-7"
DEFAULT_TOP = 6


@dataclass(frozen=True)
class NeuronsOptions(CommandOptions):
    """`netviz neurons`: which channels get a card, how each card's dream is made and searched for."""

    layer: str | int | None = option(None, "A layer with a spatial output (default: the model's middle default "
                                     "layer).")
    channels: str | None = option(None, f"Channels: {DEFAULT_CHANNELS} (the default), 3 or 1,4,9.")
    top: int = option(DEFAULT_TOP, "Data-set images per channel.", "count")
    recipe: str = option("deepdream", "How each channel's dream is made (see `netviz dream`).", "choice",
                         choices=RECIPES)
    steps: int | None = option(None, "Dream updates (the recipe's by default).", "count")
    split: str | None = option(None, "The data split searched (default: the run's eval split).")
    batch_size: int | None = option(None, "Images per forward pass of the search (default: the fastest size, "
                                    "measured).", "count")
    dataset: str | None = dataset_option()
    data_dir: str | None = data_dir_option()
    seed: int = seed_option()


@dataclass
class NeuronCard:
    """One channel: its dream, its top data-set images and where it fires in each."""

    channel: int
    dream: torch.Tensor  # (C, H, W) pixels in [0, 1]
    dream_activation: float  # the channel's total squared activation on the dream
    top_indices: list[int]
    top_scores: list[float]  # the mean activation of each top image
    top_images: torch.Tensor  # uint8 (k, C, H, W)
    top_maps: torch.Tensor  # (k, h, w) the channel's output on each top image
    top_labels: list[str]


@dataclass
class NeuronCards:
    layer: str
    cards: list[NeuronCard]
    dataset: str
    settings: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """What neurons.json holds."""
        return {"layer": self.layer, "dataset": self.dataset, "settings": self.settings,
                "channels": [{"channel": c.channel, "dream_activation": c.dream_activation,
                              "top": [{"index": i, "mean_activation": s, "label": lbl}
                                      for i, s, lbl in zip(c.top_indices, c.top_scores, c.top_labels, strict=True)]}
                             for c in self.cards]}

    def summary(self) -> dict[str, Any]:
        return {"layer": self.layer, "channels": [c.channel for c in self.cards], "dataset": self.dataset,
                "top_labels": {str(c.channel): c.top_labels for c in self.cards}}


def parse_neurons(text: str | None) -> tuple[str | None, str | None]:
    """``"relu2:0-7"`` -> ("relu2", "0-7"); ``"relu2"`` -> ("relu2", None); None -> (None, None)."""
    if text is None or not text.strip():
        return None, None
    layer, _, channels = text.strip().partition(":")
    if not layer:
        raise NetvizError(f"cannot read --neurons '{text}': use LAYER or LAYER:CHANNELS, e.g. relu2:0-7")
    return layer, channels or None


def default_layer(run: Run) -> str:
    """The model's middle default layer (the one `netviz activations` shows in the middle)."""
    from netviz.activations import default_layers

    layers = default_layers(run.model, run.spec)
    return layers[len(layers) // 2]


def neurons_run(run: Run, layer: str | int | None = None, channels: str | None = None, *, top: int = DEFAULT_TOP,
                 recipe: str = NeuronsOptions.recipe, steps: int | None = None,
                 data_dir: str | os.PathLike | None = None, split: str | None = None,
                 batch_size: int | None = NeuronsOptions.batch_size, seed: int = 0,
                 quiet: bool = True) -> NeuronCards | None:
    """Cards for ``channels`` (default the first 8) of ``layer`` (default :func:`default_layer`)."""
    from netviz.dream import recipe_settings
    from netviz.layers import resolve_layer
    from netviz.selection import parse_indices

    if top < 1:
        raise NetvizError(f"--top {top}: ask for at least one image per channel")
    name = resolve_layer(run.model, layer if layer is not None else default_layer(run))
    count = channel_count(run, name)
    wanted = channels or (DEFAULT_CHANNELS if count >= 8 else f"0-{count - 1}")
    picked = parse_indices(wanted, count, "channel", f"layer {name}")
    data = run.eval_data(data_dir, split)
    cards = neuron_cards(run, name, picked, data, top=top, recipe=recipe, steps=steps, batch_size=batch_size,
                         seed=seed, quiet=quiet)
    if cards is None:
        return None  # another rank than 0
    dreamed = recipe_settings(recipe, run.spec.input_shape, steps=steps).steps
    return NeuronCards(name, cards, data.name, {"recipe": recipe, "steps": dreamed, "top": top, "seed": seed,
                                                "channels": picked})


def channel_count(run: Run, name: str) -> int:
    """How many channels layer ``name`` has; one line when it has no channels x height x width."""
    from netviz.dream import layer_output_shape

    shape = layer_output_shape(run.model, run.spec, name)
    if len(shape) != 3:
        raise NetvizError(f"layer {name} gives {tuple(shape)} per image: neuron cards need a layer with "
                          "channels x height x width (see `netviz layers`)")
    return shape[0]


def neuron_cards(run: Run, name: str, picked: list[int], data: TensorData, *, top: int = DEFAULT_TOP,
                 recipe: str = "deepdream", steps: int | None = None, batch_size: int | None = None, seed: int = 0,
                 quiet: bool = True) -> list[NeuronCard] | None:
    """The cards of channels ``picked`` of layer ``name``, in that order. A trained run keeps each
    card in its cache (:meth:`netviz.runs.RunFolder.card_cache`, keyed by every setting, the data
    and the weights), so a channel asked for again (another `netviz explain`) is not dreamed again."""
    cache = run.cache_for("neurons", name, data, top=top, recipe=recipe, steps=steps, seed=seed)
    found = {c: _load_card(cache, c) for c in picked} if cache is not None else {}
    missing = [c for c in picked if found.get(c) is None]
    if missing:
        made = _make_cards(run, name, missing, data, top=top, recipe=recipe, steps=steps, batch_size=batch_size,
                           seed=seed, quiet=quiet)
        if made is None:
            return None  # another rank than 0
        for card in made:
            found[card.channel] = card
            if cache is not None:
                _save_card(cache, card)
    return [found[c] for c in picked]


def _make_cards(run: Run, name: str, picked: list[int], data: TensorData, *, top: int, recipe: str,
                steps: int | None, batch_size: int | None, seed: int, quiet: bool) -> list[NeuronCard] | None:
    """Dream each channel, find its top images and where it fires in them."""
    import torch

    from netviz.activations import top_activating
    from netviz.data import conform, normalise
    from netviz.dream import dream_channels
    from netviz.layers import eval_mode, forward_to

    model, spec = run.model, run.spec
    # both collective under torchrun: every rank dreams and searches its share, rank 0 gets all
    dreams = dream_channels(run, name, picked, recipe=recipe, steps=steps, seed=seed, quiet=quiet)
    found = top_activating(model, spec, data, {name: picked}, k=top, batch_size=batch_size, quiet=quiet)
    if found is None or dreams is None:
        return None  # another rank than 0
    energy = dreams.after.objective  # measured as the saved PNGs hold the dreams
    best = found[name]
    cards = []
    with eval_mode(model), torch.no_grad():
        for row, channel in enumerate(picked):
            idx = best.indices[row].tolist()
            images = conform(data.images[idx], spec)[0]  # only the top images are fitted to the model
            maps = forward_to(model, normalise(images, spec, run.device), [name])[name][:, channel]
            cards.append(NeuronCard(channel, dreams.images[row], float(energy[row]), idx,
                                    [float(v) for v in best.scores[row]], images, maps.float().cpu(),
                                    [data.classes[int(data.labels[i])] if data.classes else str(int(data.labels[i]))
                                     for i in idx]))
    return cards


def _card_file(cache: Path, channel: int) -> Path:
    return cache / f"channel-{channel}.pt"


def _load_card(cache: Path, channel: int) -> NeuronCard | None:
    """A cached card, or None when absent or unreadable (it is then made again)."""
    import torch

    path = _card_file(cache, channel)
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        return NeuronCard(**saved)
    except Exception:  # a card from another netviz version, a truncated file: make it again
        return None


def _save_card(cache: Path, card: NeuronCard) -> None:
    import dataclasses

    import torch

    from netviz.files import atomic_write

    with contextlib.suppress(NetvizError):  # a read-only run folder: the card is made again next time
        atomic_write(_card_file(cache, card.channel), lambda tmp: torch.save(dataclasses.asdict(card), tmp))
