"""`netviz concepts`: the model's own vocabulary at a layer, learnt over a data set.

A channel is often polysemantic: what a network has learned lives in directions across channels.
Dictionary learning over the layer's activations at every position of every image (CRAFT, Fel et
al. CVPR 2023; Overcomplete, Fel et al. 2025) finds them: A ~= U W, each row of W a concept, U >= 0
how much of it each position holds. Per concept, the image regions where it is strongest; per
class, how much each concept weighs in its score; and the numbers that say whether to trust the
dictionary (r2, sparsity, dead concepts, faithfulness, stability across seeds).

The outline (:func:`compute`): (1) rows from every image, (2) the dictionary, (3) every image's
strongest position per concept, (4) the top regions with their pixels and code maps, (5) per class
the importance and the faithfulness, (6) with ``compare_seed`` a second dictionary to match.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz import batching
from netviz.concepts.factor import METHODS, Dictionary, check, fit, matched_cosine
from netviz.dream.recipes import RECIPES
from netviz.errors import NetvizError
from netviz.files import finite_number
from netviz.options import CommandOptions, data_dir_option, dataset_option, option, seed_option

if TYPE_CHECKING:
    import torch

    from netviz.concepts.measure import Quality
    from netviz.data import TensorData
    from netviz.runs import Run

DRAWN = 8  # top regions a card shows (concepts.json keeps --top of them)


def default_size(channels: int) -> int:
    """Concepts by default: half the channels, at least 8 and at most 32. Fewer directions than
    channels, so that a concept has to combine channels rather than copy one; few enough cards for a
    person to read them all."""
    return max(8, min(32, channels // 2))


@dataclass(frozen=True)
class ConceptsOptions(CommandOptions):
    """`netviz concepts`: the layer and the data, the dictionary, what is measured. ``seed`` draws the
    positions fitted on and the dictionary's start; ``compare_seed`` draws another of each."""

    layer: str | int | None = option(None, "A layer with positions, name or number (default: the one `netviz "
                                     "explain` uses, the last spatial layer; see `netviz layers`).")
    concepts: int | None = option(None, "Concepts in the dictionary (default: half the layer's channels, 8 to "
                                  "32).", "count", most=4096)
    method: str | None = option(None, "nmf (non-negative layers, such as a ReLU's output), semi-nmf (any "
                                "sign: pre-activation layers, transformer tokens) or sae (a TopK sparse "
                                "autoencoder, for many concepts) (default: nmf where the layer is non-negative, "
                                "else semi-nmf).", "choice", choices=METHODS)
    active: int | None = option(None, "sae: the concepts kept at each position (TopK's k; default an eighth of the "
                                "concepts, 4 to 64).", "count")
    split: str | None = option(None, "The split read: train[:20000], test... (default: the run's training "
                               "split).")
    limit: int | None = option(None, "Read only the first N images of the split (default: all of them).",
                               "count")
    classes: str | None = option(None, "Classes of the importance table: 3, 0-4, 3,7, class names or all "
                                 "(default: all, or the first 20).", flags=("--class",))
    per_class: int = option(64, "Images per class for the importance and the faithfulness.", "count")
    top: int = option(20, "Top regions per concept in concepts.json (each from a different image; the card "
                      f"shows {DRAWN}).", "count", most=1000)
    remove: int = option(3, "Faithfulness: how many of a class's top concepts (and, to compare, of random "
                         "concepts and of its top channels) are taken out.", "count")
    rows: int = option(100_000, "The most positions the dictionary is fitted on (at most 64 M values "
                       "in all: 256 MB).", "count", most=10_000_000)
    cards: int = option(64, "Cards drawn (concept-<k>.png): those of the N concepts that weigh most in the "
                        "table's classes; every concept is in concepts.json and concepts.png.", "count", most=4096)
    dream: bool = option(True, "Each concept's feature visualisation: the image that maximises the layer along "
                         "its direction (through `netviz dream`'s recipes).", "switch")
    recipe: str = option("deepdream", "How the dreams are made (see `netviz dream`).", "choice", choices=RECIPES)
    dream_steps: int | None = option(None, "Dream updates (the recipe's by default).", "count")
    compare_seed: int | None = option(None, "Also fit a dictionary from this seed and report how well the two "
                                      "match (mean cosine of the paired concepts).", "seed")
    # fixed, not measured (netviz.batching): the fit amplifies the float rounding a batch size
    # leaves in the activations, and a refit must give the same concepts to the last bit
    batch_size: int | None = option(256, "Images per forward pass.", "count")
    cache: bool = option(True, "Keep the concepts and their figures in a trained run's cache, and take them from "
                         "there when asked again with the same settings, data and weights (--no-cache: fit "
                         "again).", "switch")
    dataset: str | None = dataset_option("Another data set: mnist, cifar10 or imagefolder:PATH (default: the "
                                         "run's own).")
    data_dir: str | None = data_dir_option()
    seed: int = seed_option()

    def check(self) -> None:
        if self.active is not None and self.method != "sae":
            raise NetvizError("--active is the sparse autoencoder's: give it with --method sae")
        if self.compare_seed is not None and self.compare_seed == self.seed:
            raise NetvizError(f"--compare-seed {self.compare_seed} is --seed: compare with another seed")


@dataclass
class Concept:
    """One concept: its direction and where in the data set it is strongest."""

    index: int
    direction: torch.Tensor  # (C,)
    top: list[dict[str, Any]]  # {"index", "box", "value", "position"}, highest first, distinct images
    pixels: torch.Tensor  # (m, C, H, W) uint8: the drawn top images
    codes: torch.Tensor  # (m, h, w): its code over each of them
    importance: list[float] = field(default_factory=list)  # one per class of the table
    dream: torch.Tensor | None = None  # (C, H, W) in [0, 1]: the input that maximises the layer along it
    dream_value: float | None = None  # sum_p <A_p, w> on the dream as saved (8-bit)


@dataclass
class ConceptSet:
    """What `netviz concepts` found: the dictionary, its concepts, the class table and the numbers."""

    model: str
    layer: str
    dictionary: Dictionary
    data: str  # the data set and split
    n_images: int
    shape: tuple[int, int, int]  # the layer's (C, h, w)
    rows: int  # positions fitted on
    concepts: list[Concept]
    classes: list[int]
    class_names: list[str]
    quality: Quality
    faithfulness: dict[str, Any]
    stability: float | None
    seconds: float
    per_class: int  # images per class behind the importance
    notes: list[str] = field(default_factory=list)
    cache: Path | None = None  # the run's cache folder of this result (its figures are kept there too)

    @property
    def label(self) -> str:
        return f"{self.layer}-{self.dictionary.size}"

    def importance(self) -> torch.Tensor:
        """(classes, K): each concept's mean contribution to each class's logit."""
        import torch

        return torch.tensor([c.importance for c in self.concepts], dtype=torch.float64).T

    def carded(self, most: int) -> list[Concept]:
        """The ``most`` concepts that weigh most in any class of the table, in index order."""
        import torch

        weight = self.importance().nan_to_num(-math.inf).max(0).values if self.classes else torch.zeros(
            len(self.concepts))
        kept = sorted(torch.argsort(weight, descending=True, stable=True)[:most].tolist())
        return [self.concepts[k] for k in kept]

    def top_concepts(self, row: int, most: int = 5) -> list[dict[str, Any]]:
        """The class in row ``row`` of the table: its ``most`` most important concepts."""
        importance = self.importance()[row]
        return [{"concept": int(k), "importance": finite_number(importance[k])}
                for k in importance.argsort(descending=True)[:most]]

    def lines(self) -> list[str]:
        q, f = self.quality, self.faithfulness
        out = [*(f"note: {n}" for n in self.notes),
               f"concepts: {self.dictionary.size} {self.dictionary.method} concepts at {self.layer} over "
               f"{self.n_images} images of {self.data} ({self.rows} positions), {self.seconds:.1f} s",
               f"  r2 {q.r2:.3f}, {q.sparsity:.1f} active concepts per position, {len(q.dead)} dead"]
        if f.get("images"):
            out.append(f"  taking out each class's top {f['k']} concepts lowers its logit by {f['drop_concepts']:.3g} "
                       f"(random {f['k']}: {f['drop_random']:.3g}, top {f['k']} channels: {f['drop_channels']:.3g}); "
                       f"beats random on {f['beats_random']:.0%} and the channels on {f['beats_channels']:.0%} "
                       "of the images")
        if self.stability is not None:
            out.append(f"  a second seed's dictionary matches at mean cosine {self.stability:.3f}")
        return out

    def summary(self) -> dict[str, Any]:
        return {"layer": self.layer, "method": self.dictionary.method, "n_concepts": self.dictionary.size,
                **self.quality.record(), "faithfulness": self.faithfulness, "stability": self.stability}

    def record(self) -> dict[str, Any]:
        """What concepts.json holds."""
        return {
            "layer": self.layer, "method": self.dictionary.method, "split": self.data, "n_images": self.n_images,
            "n_concepts": self.dictionary.size, "rows": self.rows, **self.quality.record(),
            "seconds": round(self.seconds, 2), "faithfulness": self.faithfulness, "stability": self.stability,
            "concepts": [{"index": c.index, "top": c.top, "dream_activation": (finite_number(c.dream_value)
                                                                             if c.dream_value is not None else None),
                          "importance": [finite_number(v) for v in c.importance]} for c in self.concepts],
            "classes": [{"index": c, "name": self.class_names[c], "top_concepts": self.top_concepts(row)}
                        for row, c in enumerate(self.classes)],
        }


def compute(run: Run, options: ConceptsOptions, quiet: bool = False) -> ConceptSet | None:
    """`netviz concepts`'s numbers (rank 0's; the other ranks under torchrun get None)."""
    data = run.train_data(options.dataset, options.split, options.data_dir)
    return compute_on(run, data.first(options.limit) if options.limit is not None else data, options, quiet)


def compute_on(run: Run, data: TensorData, options: ConceptsOptions, quiet: bool = False) -> ConceptSet | None:
    """The concepts of ``data`` (``options``' data set, split and limit are not read)."""
    from netviz import distributed
    from netviz.concepts import cache as concepts_cache
    from netviz.concepts.measure import quality
    from netviz.concepts.passes import sample_rows, strongest
    from netviz.device import seed_everything
    from netviz.progress import say

    started = time.perf_counter()
    # 1. the request: layer, data, classes; then the rows
    notes: list[str] = []
    layer = _layer(run, options.layer, notes)
    class_names = _class_names(run, data)
    labelled = run.of_model_classes(data)  # the class table reads the images of the model's classes
    if labelled is not data:  # some or all of its images are of other classes than the model's
        notes.append(f"{'the class table' if len(labelled) else 'no class table'}: {labelled.note}")
    classes = _classes(run, labelled, class_names, options.classes)
    cache = concepts_cache.folder_for(run, layer, data, options) if options.cache else None
    kept = concepts_cache.load(cache) if cache is not None else None
    if kept is not None:
        kept.notes = [*notes, "the run's cache holds these concepts (the same settings, data and weights): "
                      "--no-cache fits them again"]
        kept.cache = cache
        return kept if distributed.is_main() else None
    seed_everything(options.seed)
    rows, shape = sample_rows(run, data, layer, options.rows, options.batch_size, options.seed, quiet)
    other_rows = None  # the second dictionary's own sample, as its own seed draws it
    if options.compare_seed is not None:
        other_rows, _ = sample_rows(run, data, layer, options.rows, options.batch_size, options.compare_seed, quiet)
    # 2. the dictionary (rank 0 fits it, every rank codes its share with it)
    dictionary = None
    if distributed.is_main():
        method = options.method or ("nmf" if float(rows.min()) >= 0 else "semi-nmf")
        k = options.concepts or default_size(shape[0])
        check(rows, k, method)
        if options.active is not None and options.active > k:
            raise NetvizError(f"--active {options.active} is more than the {k} concepts: keep fewer at each position")
        say(f"concepts: fitting {k} {method} concepts on {rows.shape[0]} positions of {layer}", quiet)
        dictionary = fit(rows, k, method, options.seed, options.active)
        if not dictionary.converged:
            notes.append(f"the {method} fit stopped after {dictionary.iterations} iterations before its tolerance "
                         "(r2 says how well the dictionary still explains the layer)")
    dictionary = distributed.broadcast(dictionary)
    dreams = _dreams(run, layer, dictionary.components, options, quiet) if options.dream else None
    # 3. every image's strongest position per concept
    best = strongest(run, data, layer, dictionary, options.batch_size, quiet)
    if best is None:
        return None  # another rank than 0
    # 4. the top regions; 5. per class, importance and faithfulness
    concepts = _top_regions(run, data, layer, dictionary, best, shape, options.top)
    for k, concept in enumerate(concepts if dreams is not None else []):
        concept.dream, concept.dream_value = dreams.images[k], float(dreams.after.objective[k])
    faithfulness = _by_class(run, labelled, layer, dictionary, concepts, classes, options, quiet)
    # 6. the numbers
    stability = None
    if options.compare_seed is not None:
        other = fit(other_rows, dictionary.size, dictionary.method, options.compare_seed, options.active)
        stability = round(matched_cosine(dictionary.components, other.components), 4)
    q = quality(rows, dictionary, best.value)
    result = ConceptSet(run.spec.name, layer, dictionary, data.name, len(data), shape, rows.shape[0], concepts,
                        classes, class_names, q, faithfulness, stability, time.perf_counter() - started,
                        options.per_class, notes)
    if cache is not None:
        result.cache = concepts_cache.save(result, cache)
    return result


def _dreams(run: Run, layer: str, w: torch.Tensor, options: ConceptsOptions, quiet: bool) -> Any:
    """The feature visualisation of every concept (collective under torchrun: rank 0 gets them)."""
    from netviz.dream import dream_directions
    from netviz.progress import say

    say(f"concepts: dreaming {w.shape[0]} concepts ({options.recipe})", quiet)
    return dream_directions(run, layer, w, recipe=options.recipe, seed=options.seed, quiet=quiet,
                            **({"steps": options.dream_steps} if options.dream_steps else {}))


def _layer(run: Run, layer: str | int | None, notes: list[str]) -> str:
    from netviz.layers import last_spatial_layer, resolve_layer

    return resolve_layer(run.model, layer) if layer is not None else last_spatial_layer(
        run.model, run.spec.input_shape, notes)


def _class_names(run: Run, data: TensorData) -> list[str]:
    """A name for each of the model's classes: the model's, else the data set's where they are as many."""
    n = run.spec.num_classes
    for names in (run.spec.class_names, data.classes):
        if names and len(names) == n:
            return [str(c) for c in names]
    return [str(c) for c in range(n)]


def _classes(run: Run, data: TensorData, names: list[str], classes: str | None) -> list[int]:
    """The classes of the table: those asked for, else the model's classes that the data holds
    (the first 20)."""
    from netviz.selection import parse_classes

    if classes is None:
        present = sorted({int(c) for c in data.labels.unique()} & set(range(run.spec.num_classes)))
        return present[:20]
    return parse_classes(classes, names, run.spec.num_classes, run.spec.name)


def _images(run: Run, data: TensorData, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 pixels fitted to the model, the normalised images on its device) of ``indices``."""
    from netviz.data import conform, normalise
    from netviz.device import model_device

    pixels, _ = conform(data.images[indices], run.spec)
    return pixels, normalise(pixels, run.spec, model_device(run.model))


def _top_regions(run: Run, data: TensorData, layer: str, dictionary: Dictionary, best: Any,
                 shape: tuple[int, int, int], top: int) -> list[Concept]:
    """Per concept its ``top`` images by their largest code (so each from a different image), the
    position and its box in input pixels; the first :data:`DRAWN` with pixels and code maps."""
    import torch

    from netviz.concepts.passes import code_maps, position_box

    _, h, wd = shape
    w = dictionary.components
    order = best.value.argsort(0, descending=True)[:top]  # (top, K)
    sample = order[0, : min(8, w.shape[0])].tolist()
    box = position_box(run, _images(run, data, sample)[1], layer, shape)
    concepts = []
    for k in range(w.shape[0]):
        chosen = [int(i) for i in order[:, k] if best.value[int(i), k] > 0]
        places = [divmod(int(best.where[i, k]), wd) for i in chosen]
        entries = [{"index": i, "box": box(y, x), "value": finite_number(best.value[i, k]), "position": [y, x]}
                   for i, (y, x) in zip(chosen, places, strict=True)]
        drawn = chosen[:DRAWN]
        pixels, x = _images(run, data, drawn) if drawn else (data.images[:0], None)
        # a concept active nowhere: no images (data.images may be a folder read as used, not a tensor)
        codes = code_maps(run, x, layer, dictionary)[:, k] if drawn else torch.zeros((0, h, wd))
        concepts.append(Concept(k, w[k], entries, pixels.cpu(), codes))
    return concepts


def _by_class(run: Run, data: TensorData, layer: str, dictionary: Dictionary, concepts: list[Concept],
              classes: list[int], options: ConceptsOptions, quiet: bool) -> dict[str, Any]:
    """Each concept's importance for each class (mean over ``per_class`` of its images, filled into
    ``concepts``) and the faithfulness of the classes' top concepts on those images."""
    import torch

    from netviz.concepts.measure import Faithfulness, read_class
    from netviz.progress import progress

    generator = torch.Generator().manual_seed(options.seed)
    w = dictionary.components
    faith = Faithfulness(min(options.remove, w.shape[0]))
    labels = data.labels.long()
    table = []
    for c in progress(classes, quiet=quiet, desc="concepts: classes", unit="class"):
        indices = torch.nonzero(labels == c).flatten()[: options.per_class].tolist()
        if not indices:
            table.append([math.nan] * w.shape[0])
            continue
        readings = []
        for which in batching.batches(len(indices), run.model, run.spec.input_shape, "concepts-classes",
                                      options.batch_size):
            _, x = _images(run, data, indices[which])
            target = torch.full((x.shape[0],), c, dtype=torch.long, device=x.device)
            readings.append((x, target, read_class(run, x, target, layer, dictionary)))
        contributions = torch.cat([r.concept_contributions(w) for _, _, r in readings]).cpu()
        channels = torch.cat([r.channel_contributions() for _, _, r in readings]).cpu()
        importance = contributions.mean(0)
        table.append(importance.tolist())
        top_concepts = importance.argsort(descending=True)[:faith.k].tolist()
        top_channels = channels.mean(0).argsort(descending=True)[:faith.k].tolist()
        for x, target, reading in readings:
            faith.add(run, x, target, layer, w, reading, top_concepts, top_channels, generator)
    for k, concept in enumerate(concepts):
        concept.importance = [row[k] for row in table]
    return faith.record()
