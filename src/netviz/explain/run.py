"""`netviz explain` as a plain function: the images, the layer, the channel method, the neuron cards.

:func:`explain_run` returns an :class:`Explanation` (it writes its own record, explain.json);
:mod:`netviz.draw.explain` draws it. The cards of the top channels come from
:func:`netviz.neurons.neuron_cards`, cached per run and layer, so explaining another image only
dreams the channels not seen before.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from netviz.attribute import ignored_options
from netviz.dream.recipes import RECIPES
from netviz.errors import NetvizError
from netviz.explain.methods import CHANNEL_METHODS, ChannelAttribution, all_channel_options, get_channel_method
from netviz.files import finite_number
from netviz.heads import target_label, target_name
from netviz.inputs import ImageOptions
from netviz.options import data_dir_option, dataset_option, images_option, option, seed_option
from netviz.selection import target_text

if TYPE_CHECKING:
    import torch

    from netviz.neurons import NeuronCard
    from netviz.registry import ModelSpec
    from netviz.runs import Run

DEFAULT_TOP = 5
DRAWN = 16  # top channels drawn per image (explain.json lists all --top), said in a note
DEFAULT_CARD_IMAGES = 4


@dataclass(frozen=True)
class ExplainOptions(ImageOptions):
    """`netviz explain`: which images, which layer and method, how many channels with which cards; the
    method's own options (steps, baseline, rule) come beside these."""

    positional: ClassVar[tuple[str, ...]] = ("method",)

    method: str = option("grad-x-act", "The method: " + ", ".join(CHANNEL_METHODS)
                         + " (`--list` says what each computes).")
    images: Any = images_option()
    indices: str | int | Sequence[int] | None = option(None, "Eval-set images: 7, 0-3 or 1,5 (default 0).",
                                                       flags=("--index",))
    layer: str | int | None = option(None, "A layer with a spatial output, name or number (default: the last "
                                     "one; see `netviz layers`).")
    top: int = option(DEFAULT_TOP, "Channels drawn per image, with their cards.", "count", most=64)
    target: int | str | None = option(None, "Class to explain, a number or a name (default: each image's "
                                      "predicted class); several at once as 3,5 (their scores are summed).")
    cards: bool = option(True, "Each top channel's neuron card (its dream and top data-set images; cached in "
                         "the run).", "switch")
    card_images: int = option(DEFAULT_CARD_IMAGES, "Data-set images per card.", "count")
    recipe: str = option("deepdream", "How each card's dream is made (see `netviz dream`).", "choice",
                         choices=RECIPES)
    dream_steps: int | None = option(None, "Dream updates (the recipe's by default).", "count")
    split: str | None = option(None, "The data split --index and the cards read (default: the eval split).")
    concepts: str | None = option(None, "Also explain each decision in concepts: the output folder of `netviz "
                                  "concepts` (its dictionary.safetensors; its layer is the default --layer).", "path")
    dataset: str | None = dataset_option()
    data_dir: str | None = data_dir_option()
    seed: int = seed_option()


@dataclass
class ConceptContributions:
    """A decision in a dictionary's concepts: per image each concept's contribution to the target's
    score (gradient x code summed over positions, the concept-level grad x act) and its code map."""

    contributions: torch.Tensor  # (N, K) float64
    codes: torch.Tensor  # (N, K, h, w)
    folder: Path  # the concepts folder: its cards are concept-<k>.png there

    def ranked(self, i: int) -> list[int]:
        return [int(k) for k in self.contributions[i].argsort(descending=True)]

    def record(self, i: int) -> list[dict[str, Any]]:
        return [{"concept": k, "contribution": finite_number(self.contributions[i, k]), "rank": r + 1}
                for r, k in enumerate(self.ranked(i))]


@dataclass
class Explanation:
    """Per image, every channel's contribution to the target's score and the top channels' cards."""

    spec: ModelSpec
    run_path: Path | None
    names: list[str]  # "index 12" or the image file name
    indices: list[int | None]
    labels: list[int | None]
    pixels: torch.Tensor  # (N, C, H, W) in [0, 1]
    result: ChannelAttribution
    top: int
    cards: dict[int, NeuronCard] = field(default_factory=dict)  # channel -> card (the top channels')
    dataset: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    weights: str = ""  # which weights the model has (Run.weights_label)
    concepts: ConceptContributions | None = None  # with explain --concepts

    @property
    def layer(self) -> str:
        return self.result.layer

    def top_channels(self, i: int) -> list[int]:
        return [int(c) for c in self.result.order[i, :self.top]]

    def shares(self, i: int) -> torch.Tensor:
        """Each channel's contribution / the sum of |contributions| of the layer (so |shares| sum to 1)."""
        c = self.result.contributions[i]
        scale = c.abs().sum()
        return c / scale if scale > 0 else c * 0

    def record(self) -> dict[str, Any]:
        """What explain.json holds: every channel of the layer for every image, ranked."""
        res, method = self.result, get_channel_method(self.result.method)
        images = []
        for i, name in enumerate(self.names):
            rank = {int(c): r + 1 for r, c in enumerate(res.order[i])}
            share = self.shares(i)
            item: dict[str, Any] = {"image": name} if self.indices[i] is None else {"index": self.indices[i]}
            item.update({
                "label": self.labels[i], "target": target_label(res.target[i]),
                "target_name": target_name(res.target[i], self.spec),
                "score": finite_number(res.score[i]),
                "score_baseline": finite_number(res.score_baseline[i]) if res.score_baseline is not None else None,
                "completeness_error": (finite_number(res.completeness_error[i])
                                       if res.completeness_error is not None else None),
                "steps": int(res.steps[i]) if res.steps is not None else None,
                "contribution_sum": finite_number(res.contributions[i].sum()),
                "channels": sorted(({"channel": k, "contribution": finite_number(res.contributions[i, k]),
                                     "share": finite_number(share[k]), "rank": rank[k]}
                                    for k in range(res.contributions.shape[1])), key=lambda c: c["rank"]),
            })
            if self.concepts is not None:
                item["concepts"] = self.concepts.record(i)
            images.append(item)
        return {"model": self.spec.name, "weights": self.weights,
                "run": str(self.run_path) if self.run_path is not None else None,
                "layer": self.layer, "method": res.method, "summary": method.summary,
                "completeness_reference": method.reference,
                "share": "contribution / sum of |contribution| over the layer's channels",
                "settings": self.settings, "notes": self.notes, "dataset": self.dataset,
                "cards": {str(k): {"top_indices": c.top_indices, "top_labels": c.top_labels,
                                   "dream_activation": c.dream_activation} for k, c in sorted(self.cards.items())},
                "images": images}

    def lines(self, most: int = 10) -> list[str]:
        """What the terminal shows: per image its target and its top channels with their shares."""
        res = self.result
        out = [f"{self.spec.name} with {self.weights}:"] if self.run_path is None and self.weights else []
        for i, name in enumerate(self.names[:most]):
            truth = f" (true {self.spec.class_name(self.labels[i])})" if self.labels[i] is not None else ""
            share = self.shares(i)
            top = ", ".join(f"{c} ({float(share[c]):+.0%})" for c in self.top_channels(i))
            error = res.completeness_error[i] if res.completeness_error is not None else None
            done = f"; completeness error {float(error):.1%}" if error is not None and not math.isnan(error) else ""
            out.append(f"{name}{truth}: target {target_name(res.target[i], self.spec)}, score "
                       f"{float(res.score[i]):.3g}; top channels of {self.layer}: {top}{done}")
            if self.concepts is not None:
                c = self.concepts.contributions[i]
                out.append("  top concepts: " + ", ".join(f"{k} ({float(c[k]):+.3g})"
                                                           for k in self.concepts.ranked(i)[:self.top]))
        if len(self.names) > most:
            out.append(f"... and {len(self.names) - most} more image(s) in explain.json")
        return out

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"layer": self.layer, "method": self.result.method, "images": len(self.names),
                               "top_channels": {n: self.top_channels(i) for i, n in enumerate(self.names)}}
        if self.result.completeness_error is not None:
            out["completeness_error_max"] = finite_number(self.result.completeness_error.max())
        return out


def explain_layer(run: Run, layer: str | int | None, notes: list[str]) -> str:
    """The layer's dotted name; by default the last layer with a spatial output (said in ``notes``)."""
    from netviz.dream import layer_output_shape
    from netviz.layers import last_spatial_layer, resolve_layer

    if layer is None:
        name = last_spatial_layer(run.model, run.spec.input_shape)
        notes.append(f"explaining layer {name}, the last one with a spatial output (pass --layer to choose another)")
        return name
    name = resolve_layer(run.model, layer)
    shape = layer_output_shape(run.model, run.spec, name)
    if len(shape) != 3:
        raise NetvizError(f"layer {name} gives {tuple(shape)} per image: explain needs a layer with channels x "
                          "height x width (see `netviz layers`)")
    return name


def explain_run(run: Run, method: str = ExplainOptions.method, *, images: Any = (),
                indices: str | int | Sequence[int] | None = None, layer: str | int | None = None,
                top: int = DEFAULT_TOP, target: int | str | None = None, cards: bool = True,
                card_images: int = DEFAULT_CARD_IMAGES, recipe: str = ExplainOptions.recipe,
                dream_steps: int | None = None, concepts: str | os.PathLike | None = None,
                data_dir: str | os.PathLike | None = None, split: str | None = None, seed: int = 0,
                quiet: bool = True, **options: Any) -> Explanation | None:
    """Explain the eval images ``indices`` (default 0) or ``images`` (files, PIL images, tensors) at
    ``layer`` for ``target`` (default: each prediction; a class number or name, or several summed)
    with the channel ``method``; ``options`` are its own (``steps``, ``baseline``, ``rule``, ...). With
    ``cards`` each top channel gets its neuron card (dream and ``card_images`` top images).
    With ``concepts`` (a `netviz concepts` folder) each decision is also told in its dictionary's
    concepts. Under torchrun only rank 0 gets the result (the cards are made by all ranks together)."""
    from netviz import distributed
    from netviz.attribute import load_baseline
    from netviz.data import normalise
    from netviz.device import seed_everything
    from netviz.inputs import select_inputs
    from netviz.progress import say

    # 1. the request, checked before any work
    m = get_channel_method(method)
    if top < 1:
        raise NetvizError(f"--top {top}: ask for at least one channel")
    if card_images < 1:
        raise NetvizError(f"--card-images {card_images}: ask for at least one image per card")
    if top > DRAWN:
        say(f"note: --top {top}: each figure shows the first {DRAWN} channels (explain.json lists {top})", quiet)
    known = all_channel_options()
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise NetvizError(f"explain --method {method} does not take {', '.join(unknown)}")
    ignored = ignored_options(m, options, CHANNEL_METHODS.values())
    if ignored:
        say(f"note: {ignored}", quiet)
    chosen = m.checked(m.make_options({**options, "seed": seed}))
    target = target_text(target, run.spec.class_names, run.spec.num_classes, f"model {run.spec.name}")
    seed_everything(seed)
    notes: list[str] = []
    saved = _dictionary(run, concepts, layer)
    name = explain_layer(run, saved.layer if saved is not None and layer is None else layer,
                         notes if saved is None else [])
    data = _card_data(run, data_dir, split) if cards else None
    inputs = select_inputs(run, images, indices, data_dir, default="0", split=split, data=data)
    notes += inputs.notes
    for note in notes:
        say(f"note: {note}", quiet)
    if "baseline" in chosen.__dataclass_fields__:
        import dataclasses

        chosen = dataclasses.replace(chosen, baseline=load_baseline(chosen.baseline, run, data_dir))
    # 2. every channel's contribution, for every image
    x = normalise(inputs.images, run.spec)
    say(f"explain: {len(inputs)} image(s), layer {name}, {method}", quiet)
    result = m.function(run.model, x, target, name, top, options=chosen, spec=run.spec)
    in_concepts = _in_concepts(run, x, result.target, name, saved) if saved is not None else None
    # 3. the neuron cards of the channels that made the top of any image
    found: dict[int, NeuronCard] = {}
    dataset = None
    if cards:
        from netviz.neurons import neuron_cards

        wanted = sorted({int(c) for c in result.order[:, :top].flatten()})
        made = neuron_cards(run, name, wanted, data, top=card_images, recipe=recipe, steps=dream_steps,
                            seed=seed, quiet=quiet)
        if made is None:
            return None  # another rank than 0
        found, dataset = {c.channel: c for c in made}, data.name
    elif not distributed.is_main():
        return None
    settings = {"method": method, "layer": name, "top": top, "target": target, "cards": cards,
                "card_images": card_images, "recipe": recipe, "dream_steps": dream_steps, "seed": seed,
                "concepts": str(saved.folder) if saved is not None else None,
                **{k: (v if isinstance(v, (str, int, float, bool, type(None))) else "tensor")
                   for k, v in chosen.given().items() if k != "offset"}}
    return Explanation(run.spec, run.path, inputs.names, inputs.indices, inputs.labels,
                       inputs.images.float() / 255.0, result, min(top, result.contributions.shape[1]), found,
                       dataset, settings, notes, weights=run.weights_label, concepts=in_concepts)


def _dictionary(run: Run, concepts: str | os.PathLike | None, layer: str | int | None) -> Any:
    """The dictionary of ``concepts`` (None without), checked against the model and ``layer``."""
    if concepts is None:
        return None
    from netviz.concepts.factor import load_dictionary
    from netviz.layers import resolve_layer

    saved = load_dictionary(concepts, run.spec.name)
    if layer is not None and resolve_layer(run.model, layer) != saved.layer:
        raise NetvizError(f"the dictionary in {concepts} is of layer {saved.layer}, not "
                          f"{resolve_layer(run.model, layer)}: leave out --layer, or make a dictionary of that layer")
    return saved


def _in_concepts(run: Run, x: torch.Tensor, target: torch.Tensor, layer: str, saved: Any) -> ConceptContributions:
    """Each image's decision in the dictionary's concepts (:class:`ConceptContributions`)."""
    from netviz.concepts.measure import read_class
    from netviz.device import model_device

    reading = read_class(run, x.to(model_device(run.model)), target.to(model_device(run.model)), layer,
                         saved.dictionary)
    return ConceptContributions(reading.concept_contributions(saved.components).cpu(), reading.u.cpu(), saved.folder)


def _card_data(run: Run, data_dir: str | os.PathLike | None, split: str | None):
    """The data set the cards' top images come from; one line with a way out when there is none."""
    try:
        return run.eval_data(data_dir, split)
    except NetvizError as exc:
        raise NetvizError(f"{exc} (or pass --no-cards to explain without the neuron cards)") from None
