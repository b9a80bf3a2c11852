"""`netviz audit` as a plain function: is the model right for the right reasons, over a whole data set.

:func:`audit_run` makes one pass over the split (:func:`netviz.audit.collect.collect_split`), splits each
class's images into clusters (:mod:`netviz.audit.clusters`), weighs each cluster's evidence
(:mod:`netviz.audit.evidence`) and returns an :class:`Audit` that writes its own record
(audit.json); :mod:`netviz.draw.audit` draws it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz.audit.clusters import split_class
from netviz.audit.collect import Collected, collect_split, feature_layer
from netviz.audit.evidence import Evidence, region, weigh
from netviz.errors import NetvizError
from netviz.options import CommandOptions, data_dir_option, dataset_option, option, seed_option

if TYPE_CHECKING:
    import torch

    from netviz.data import TensorData
    from netviz.registry import ModelSpec
    from netviz.runs import Run

DEFAULT_METHOD = "inputxgrad"


@dataclass(frozen=True)
class AuditOptions(CommandOptions):
    """`netviz audit`: which split, the attribution method of the maps (its own options come beside
    these), the layer clustered, how much of the split."""

    split: str | None = option(None, "The split audited: train[:20000], test... (default: the run's training "
                               "split).")
    dataset: str | None = dataset_option("Another data set: mnist, cifar10 or imagefolder:PATH (default: the "
                                         "run's own).")
    method: str = option(DEFAULT_METHOD, "The attribution method of the maps (any one with a map per image; see "
                         "`netviz attribute`).")
    layer: str | int | None = option(None, "The layer whose activations are clustered (default: the one before "
                                     "the classifier).")
    limit: int | None = option(None, "Audit only the first N images of the split (default: all of them).",
                               "count")
    cards: bool = option(True, "Each flagged cluster's top channels with their neuron cards (dream and top "
                         "images).", "switch")
    concepts: str | None = option(None, "A `netviz concepts` folder of this model: each flagged cluster is also named "
                                  "by the concepts that carry its decisions (default: the run's latest concepts, "
                                  "when it has some).", "path")
    fit_concepts: bool = option(True, "Where the model has no concepts (no --concepts, none among its results): fit "
                                "a dictionary over each flagged class's images (`netviz concepts` of that class, "
                                "in the audit's concepts-<class>/) and name the cluster's concepts from it.",
                                "switch")
    data_dir: str | None = data_dir_option()
    seed: int = seed_option()
MISTAKES = 4  # the most confident mistakes kept per class
OTHERS = 2000  # correctly classified images of other classes the patterns are tested on


@dataclass
class Cluster:
    members: torch.Tensor  # indices into the audited split
    mean_map: torch.Tensor  # (h, w)
    evidence: Evidence
    share: float  # of its class's images
    # a flagged cluster's features: the channels of ``feature_layer`` that carry its decisions most
    # (grad-x-act over its members, as `netviz explain` ranks them), with their neuron cards
    feature_layer: str | None = None
    channels: list[tuple[int, float]] = field(default_factory=list)  # (channel, mean contribution)
    cards: list[Any] = field(default_factory=list)
    # and, with a dictionary of the model (`netviz concepts`), its concepts that carry them most
    # (concept, mean contribution over members, how specific to them it is within the class)
    concepts: list[tuple[int, float, float]] = field(default_factory=list)
    concepts_from: str | None = None  # the concepts folder (a fitted one: relative to the audit's)
    concepts_layer: str | None = None
    concepts_fitted: bool = False  # the dictionary was fitted over the class by this audit

    def record(self) -> dict[str, Any]:
        e = self.evidence
        out = {"size": len(self.members), "share": round(self.share, 4), "indices": self.members.tolist(),
               "region": e.region, "pattern_share": round(e.pattern_share, 4), "elsewhere": round(e.elsewhere, 4),
               "transfer_rate": round(e.transfer_rate, 4), "masked_drop": round(e.masked_drop, 4),
               "flagged": e.flagged, "reason": e.reason}
        if self.channels:
            out["top_channels"] = {"layer": self.feature_layer,
                                   "channels": [{"channel": c, "contribution": round(v, 6)} for c, v in self.channels]}
        if self.concepts:
            out["top_concepts"] = {"folder": self.concepts_from, "layer": self.concepts_layer,
                                   "fitted": self.concepts_fitted,
                                   "concepts": [{"concept": k, "contribution": round(v, 6),
                                                 "specificity": round(d, 4)} for k, v, d in self.concepts]}
        return out


@dataclass
class ClassAudit:
    index: int
    name: str
    n: int
    accuracy: float
    mean_image: torch.Tensor  # (C, H, W) in [0, 1]
    mean_map: torch.Tensor  # (h, w)
    clusters: list[Cluster]
    silhouette: float
    mistakes: list[int]  # indices of its most confident mistakes

    @property
    def flagged(self) -> bool:
        return any(c.evidence.flagged for c in self.clusters)


@dataclass
class Audit:
    spec: ModelSpec
    data: TensorData
    collected: Collected
    classes: list[ClassAudit]
    confusion: torch.Tensor  # (K, K): rows true class, columns prediction
    layer: str
    method: str
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)
    fitted: dict[str, Any] = field(default_factory=dict)  # folder name: ConceptSet fitted over a flagged class

    @property
    def accuracy(self) -> float:
        return float((self.collected.preds == self.collected.labels).float().mean())

    def record(self) -> dict[str, Any]:
        """What audit.json holds; indices are into the audited split, in its order."""
        c = self.collected
        return {"split": self.data.name, "n_images": len(c.labels), "accuracy": round(self.accuracy, 5),
                "seconds": round(self.seconds, 2), "layer": self.layer, "method": self.method,
                "settings": self.settings, "region_format": "[y0, x0, y1, x1] in input pixels, y1 and x1 exclusive",
                "confusion": self.confusion.tolist(),
                "classes": [{"index": k.index, "name": k.name, "n": k.n, "accuracy": round(k.accuracy, 5),
                             "flagged": k.flagged, "silhouette": round(k.silhouette, 4),
                             "clusters": [cl.record() for cl in k.clusters],
                             "confident_mistakes": [{"index": i, "pred": int(c.preds[i]),
                                                     "confidence": round(float(c.confidence[i]), 4)}
                                                    for i in k.mistakes]}
                            for k in self.classes]}

    def summary(self) -> dict[str, Any]:
        return {"split": self.data.name, "n_images": len(self.collected.labels), "accuracy": round(self.accuracy, 5),
                "flagged": ", ".join(k.name for k in self.classes if k.flagged) or "none",
                "seconds": round(self.seconds, 2)}

    def table(self) -> str:
        """The flagged classes and why, for the terminal."""
        flagged = [(k, cl) for k in self.classes for cl in k.clusters if cl.evidence.flagged]
        if not flagged:
            return (f"audit: {len(self.collected.labels)} images of {self.data.name}, accuracy {self.accuracy:.2%}: "
                    "no class relies on a pattern that the evidence flags")
        lines = [f"audit: {len(self.collected.labels)} images of {self.data.name}, accuracy {self.accuracy:.2%}; "
                 "flagged:", f"{'class':<12} {'images':>7} {'region':<16} {'transfer':>8} {'masked':>7}  why"]
        for k, cl in flagged:
            e = cl.evidence
            lines.append(f"{k.name[:12]:<12} {len(cl.members):>7} {str(e.region):<16} {e.transfer_rate:>8.0%} "
                         f"{e.masked_drop:>7.2f}  {e.reason}")
            if cl.concepts:
                lines.append(f"{'':<12} concepts of {cl.concepts_layer} that carry it: "
                             + ", ".join(f"{c} ({v:+.3g})" for c, v, _ in cl.concepts)
                             + (f" (fitted over the class: cards in the audit's {cl.concepts_from}/)"
                                if cl.concepts_fitted else f" (cards in {cl.concepts_from})"))
        return "\n".join(lines)


def audit_data(run: Run, dataset: str | None, split: str | None, data_dir: str | os.PathLike | None) -> TensorData:
    """The split to audit: by default the run's training split (where poisoned or spurious samples
    live), its images of the model's classes."""
    data = run.train_data(dataset, split, data_dir)
    mine = run.of_model_classes(data)
    if len(data) and not len(mine):
        raise NetvizError(f"{mine.note}: an audit compares each image's class with the model's; use folders "
                          "named after the model's classes")
    return mine


def audit_run(run: Run, *, dataset: str | None = None, split: str | None = None,
              data_dir: str | os.PathLike | None = None, method: str = DEFAULT_METHOD, layer: str | int | None = None,
              limit: int | None = None, cards: bool = True, concepts: str | os.PathLike | None = None,
              fit_concepts: bool = AuditOptions.fit_concepts, seed: int = 0, quiet: bool = True,
              **options: Any) -> Audit | None:
    """Audit ``run`` on ``split`` (default: its training split) of ``dataset`` (default: its own):
    the first ``limit`` images, or all. ``method``: the attribution method of the maps (any
    registered one, with its ``options``); ``layer``: the activations clustered (default: the one
    before the classifier). ``cards``: each flagged cluster's top channels get their neuron cards
    (not under torchrun, where only the pass over the data is shared). ``concepts``: a
    dictionary's folder (default: the run's latest); without one, ``fit_concepts`` fits one over
    each flagged class (not under torchrun either). Under torchrun every rank collects its share;
    rank 0 gets the audit."""
    import torch

    from netviz import distributed
    from netviz.attribute import METHODS, check_method_options, get_method, ignored_options
    from netviz.device import seed_everything
    from netviz.layers import resolve_layer
    from netviz.progress import progress, say

    started = time.perf_counter()
    # 1. the request, checked before any work
    m = get_method(method)
    if not m.evaluate:
        raise NetvizError(f"--method {method} gives no map per image: use one that does, e.g. {DEFAULT_METHOD}")
    check_method_options(options)
    ignored = ignored_options(m, options, METHODS.values())
    if ignored:
        say(f"note: {ignored}", quiet)
    if limit is not None and limit < 1:
        raise NetvizError(f"--limit {limit}: audit at least one image")
    chosen = m.make_options({**options, "seed": seed})
    chosen.check()
    saved = _dictionary(run, concepts)
    said: list[str] = []
    name = resolve_layer(run.model, layer) if layer is not None else feature_layer(run, said)
    for note in said:
        say(f"note: {note}", quiet)
    seed_everything(seed)
    data = audit_data(run, dataset, split, data_dir)
    if data.note:
        say(f"note: {data.note}", quiet)
    if limit is not None and limit < len(data):
        data = data.first(limit)
    say(f"audit: {len(data)} images of {data.name}, maps by {method}, activations of {name}", quiet)
    # 2. one pass over the data
    collected = collect_split(run, data, m, chosen, name, quiet=quiet)
    if collected is None:
        return None  # another rank than 0
    # 3. per class: clusters and their evidence
    present = [k for k in range(run.spec.num_classes) if bool((collected.labels == k).any())]
    classes = [_audit_class(run, data, collected, k, seed)
               for k in progress(present, quiet=quiet, desc="clusters", unit="class")]
    flagged = [cl for c in classes for cl in c.clusters if cl.evidence.flagged]
    fitted: dict[int, Any] = {}
    if flagged:
        _shortcut_features(run, data, flagged, cards, seed, quiet)
        if saved is None and fit_concepts and not distributed.context().active:
            fitted = _fit_concepts(run, data, flagged, cards, seed, quiet)
        if saved is not None or fitted:
            _shortcut_concepts(run, data, flagged, lambda klass: (saved, False) if saved else (fitted[klass][1], True))
    k = run.spec.num_classes
    confusion = torch.bincount(collected.labels * k + collected.preds, minlength=k * k).view(k, k)
    settings = {"method": method, "layer": name, "limit": limit, "seed": seed,
                **{key: v for key, v in chosen.given().items() if isinstance(v, (str, int, float, bool))}}
    return Audit(run.spec, data, collected, classes, confusion, name, method, time.perf_counter() - started, settings,
                 {saved.folder.name: result for result, saved in fitted.values()})


def _shortcut_features(run: Run, data: TensorData, flagged: list[Cluster], cards: bool, seed: int,
                       quiet: bool) -> None:
    """Each flagged cluster's top channels at the last spatial layer (mean grad-x-act over up to
    64 members) and, with ``cards``, their neuron cards from the audited data."""
    import torch

    from netviz import distributed
    from netviz.data import conform, normalise
    from netviz.explain import explain_layer, get_channel_method
    from netviz.neurons import neuron_cards

    layer = explain_layer(run, None, [])
    method = get_channel_method("grad-x-act")
    for cluster in flagged:
        members = cluster.members[:64]
        x = normalise(conform(data.images[members], run.spec)[0], run.spec)
        klass = int(data.labels[members[0]])
        res = method.function(run.model, x, torch.full((len(x),), klass), layer, 5, options=method.make_options({}))
        mean = res.contributions.mean(0)
        top = torch.argsort(mean, descending=True, stable=True)[:5]
        cluster.feature_layer = layer
        cluster.channels = [(int(c), float(mean[c])) for c in top]
    if cards and not distributed.context().active:
        wanted = sorted({c for cl in flagged for c, _ in cl.channels})
        made = neuron_cards(run, layer, wanted, data, top=4, seed=seed, quiet=quiet) or []
        by_channel = {card.channel: card for card in made}
        for cluster in flagged:
            cluster.cards = [by_channel[c] for c, _ in cluster.channels if c in by_channel]


def _dictionary(run: Run, concepts: str | os.PathLike | None) -> Any:
    """The dictionary ``concepts`` names, else the run's latest `netviz concepts` result, else None."""
    from netviz.concepts.factor import FILE, load_dictionary
    from netviz.outputs import results_root

    if concepts is None:
        latest = results_root(run) / "concepts" / "latest"
        if not (latest / FILE).is_file():
            return None
        concepts = latest
    return load_dictionary(concepts, run.spec.name)


def _fit_concepts(run: Run, data: TensorData, flagged: list[Cluster], dream: bool, seed: int,
                  quiet: bool) -> dict[int, tuple[Any, Any]]:
    """Per flagged class, `netviz concepts` over its images at the layer of the cluster's channels
    (the result, with its top images' indices into the audited split, and the dictionary as the
    audit's concepts-<class>/ folder will hold it)."""
    import torch

    from netviz.concepts import ConceptsOptions, compute_on
    from netviz.concepts.factor import SavedDictionary
    from netviz.files import file_stem

    fitted = {}
    for klass in sorted({int(data.labels[cl.members[0]]) for cl in flagged}):
        members = torch.nonzero(data.labels == klass).flatten()
        name = run.spec.class_name(klass)  # as the audit names the class (its cluster-<class>-<k>.png)
        options = ConceptsOptions(layer=flagged[0].feature_layer, classes=str(klass), dream=dream, seed=seed)
        result = compute_on(run, data.subset(members, f"class {name}"), options, quiet)
        for concept in result.concepts:
            for top in concept.top:
                top["index"] = int(members[top["index"]])
        folder = Path(f"concepts-{file_stem(name)}")
        fitted[klass] = (result, SavedDictionary(result.dictionary, run.spec.name, result.layer, folder))
    return fitted


def _shortcut_concepts(run: Run, data: TensorData, flagged: list[Cluster], dictionary_of: Any) -> None:
    """Each flagged cluster's top 3 concepts of its class's dictionary (``dictionary_of(class)``:
    the dictionary and whether this audit fitted it): by the mean gradient x code for the class (as
    `netviz concepts` weighs a class) over up to 64 members, times how much more the concept is
    present in them than in up to 64 of the class's other images ((in - out) / (in + out), at least
    0). What carries the cluster's decisions and not the rest of its class's: a concept that every
    image of the class uses (its shape) is not the cluster's. On the planted marks this names the
    mark's concept whether the dictionary is the model's or fitted over the class, at relu2 and
    relu3; the contribution alone, or its lead over the other images, misses it in one of them."""
    import torch

    from netviz.concepts.measure import read_class
    from netviz.data import conform, normalise
    from netviz.device import model_device

    def means(indices: torch.Tensor, klass: int, saved: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean contribution, mean total code) per concept."""
        if not len(indices):
            zeros = torch.zeros(saved.components.shape[0], dtype=torch.float64)
            return zeros, zeros
        x = normalise(conform(data.images[indices], run.spec)[0], run.spec, model_device(run.model))
        target = torch.full((len(x),), klass, device=x.device)
        reading = read_class(run, x, target, saved.layer, saved.dictionary)
        return (reading.concept_contributions(saved.components).mean(0).cpu(),
                reading.u.double().sum((2, 3)).mean(0).cpu())

    for cluster in flagged:
        klass = int(data.labels[cluster.members[0]])
        saved, cluster.concepts_fitted = dictionary_of(klass)
        rest = torch.nonzero(data.labels == klass).flatten()
        rest = rest[~torch.isin(rest, cluster.members)][:64]
        inside, present = means(cluster.members[:64], klass, saved)
        elsewhere = means(rest, klass, saved)[1]
        specific = ((present - elsewhere) / (present + elsewhere).clamp(min=1e-12)).clamp(min=0)
        top = torch.argsort(inside * specific, descending=True, stable=True)[:3]
        cluster.concepts = [(int(k), float(inside[k]), float(specific[k])) for k in top]
        cluster.concepts_from, cluster.concepts_layer = str(saved.folder), saved.layer


def _audit_class(run: Run, data: TensorData, c: Collected, klass: int, seed: int) -> ClassAudit:
    """One class: its accuracy, mean image and map, clusters with their evidence, confident mistakes."""
    import torch

    from netviz.data import conform, take

    spec = run.spec
    mine = torch.nonzero(c.labels == klass)[:, 0]
    maps = c.maps[mine].float()
    assign, score = split_class(c.activations[mine], maps, seed + klass)
    images, _ = conform(take(data.images, mine), spec)  # a large folder's read a slice at a time
    others = _others(data, c, klass, spec, seed)
    g = torch.Generator().manual_seed(seed + 1000 + klass)
    other_maps = c.maps[c.labels != klass].float().mean(0)
    clusters = []
    for j in range(int(assign.max()) + 1):
        inside = assign == j
        reference = maps[~inside].mean(0) if bool((~inside).any()) else other_maps
        mean_map = maps[inside].mean(0)
        box = region(mean_map - reference, tuple(spec.input_shape[1:]))
        evidence = weigh(run.model, spec, klass, images[inside], images, others, box, g)
        members = mine[evidence.carriers] if evidence.flagged else mine[inside]
        clusters.append(Cluster(members, mean_map, evidence, len(members) / len(mine)))
    wrong = torch.nonzero(c.preds[mine] != klass)[:, 0]
    worst = wrong[torch.argsort(c.confidence[mine][wrong], descending=True, stable=True)][:MISTAKES]
    return ClassAudit(klass, spec.class_name(klass), len(mine), float((c.preds[mine] == klass).float().mean()),
                      images.float().mean(0) / 255.0, maps.mean(0), clusters, score, mine[worst].tolist())


def _others(data: TensorData, c: Collected, klass: int, spec: ModelSpec, seed: int) -> torch.Tensor:
    """Up to :data:`OTHERS` correctly classified images of other classes (uint8, fitted to the model)."""
    import torch

    from netviz.data import conform, take

    pool = torch.nonzero((c.labels != klass) & (c.preds == c.labels))[:, 0]
    g = torch.Generator().manual_seed(seed + 2000 + klass)
    return conform(take(data.images, pool[torch.randperm(len(pool), generator=g)[:OTHERS]]), spec)[0]
