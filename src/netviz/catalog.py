"""The commands as the report and the manifests see them: one entry a command, in the report's
order, with its section title, how to read what it wrote, how many of its figures the report shows,
and the options `netviz report --all` runs it with (the Python call's keywords). A leaf: it imports
nothing of netviz, so every module may read it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Command:
    """One command. Where its code lives is named as ``module:name`` text, so this table imports
    nothing: ``options`` (its :class:`netviz.options.CommandOptions` dataclass), and for a command
    that follows the standard outline (:func:`netviz.commands.standard`) ``compute``
    (``compute(run, options, quiet) -> result``: ``.label``, ``.lines()``, ``.summary()``) and
    ``draw`` (``draw(result, folder, options) -> files``); ``netviz.commands`` and the CLI are made
    from these. ``methods``: the registry (``module:name``) whose methods' options it also takes."""

    name: str
    title: str  # its section of the report
    how_to_read: str  # one line on how to read what it wrote (its manifests, the report)
    figures: int = 4  # images the report embeds per result (the rest are listed by name)
    # `report --all` runs it when the run has no result of it, with these keyword options of its
    # Python function (None: it does not); its manifest's command line is made from them
    report_options: dict[str, Any] | None = None
    help: str = ""  # `netviz <name> --help`: the first line says what it does, the rest what it writes
    options: str | None = None
    compute: str | None = None
    draw: str | None = None
    methods: str | None = None  # the registry of methods it takes, e.g. netviz.attribute:METHODS
    generated: bool = True  # its command line is made from this entry and its options (train's is written out)

    @property
    def standard(self) -> bool:
        """Its Python function is made from ``compute`` and ``draw`` (none written by hand)."""
        return self.compute is not None and self.draw is not None


def load(reference: str) -> Any:
    """The object ``module:name`` names (imported when first asked for)."""
    module, name = reference.split(":")
    return getattr(importlib.import_module(module), name)


EVALUATED = "integrated,saliency,gradcam,occlusion,random"  # the methods `report --all` evaluates

COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command('train', 'Training',
            'Loss and accuracy per epoch: eval accuracy that stops rising while train accuracy climbs '
            'is overfitting; summary.json says when the eval accuracy passed 98 %, 99 % and 99.5 %.',
            figures=1, generated=False),
    Command('histogram', 'Weight histograms',
            "Each layer's weights before and after training: training usually widens the first "
            "layers' bells; a layer whose histogram did not move did not learn.",
            figures=4,
            report_options={},
            help="""Per-layer weight histograms before vs after training, and their evolution per epoch.

    Writes histogram.png, histogram.json (per layer and snapshot: count, mean, std, min, max,
    percentiles, bin edges and counts) and, for a run with two or more recorded epochs,
    distributions.png (percentile bands) and ridgeline.png (one histogram per epoch).
    With --model NAME alone there is one snapshot: the model's initial (or pretrained) weights.
    """,
            options="netviz.histogram:HistogramOptions", compute="netviz.histogram:compute",
            draw="netviz.draw.histogram:draw"),
    Command('kernels', 'Kernels',
            'Each first-layer kernel as an image, mid-grey = 0, lighter = positive: trained kernels '
            'look like edge and blob detectors, untrained ones like noise.',
            figures=2,
            report_options={},
            help="""Draw a convolution layer's kernels as small images, before vs after training.

    Each kernel is scaled symmetrically around zero (mid-grey = 0) so its sign shows; RGB tiles
    when the layer has 3 input channels. Writes kernels-<layer>.png and kernels-<layer>.json
    (per snapshot: max |w|, mean, std, per-kernel L2 norms; the relative change).
    """,
            options="netviz.kernels:KernelsOptions", compute="netviz.kernels:compute",
            draw="netviz.draw.kernels:draw"),
    Command('activations', 'Activations',
            "Each tile is one channel's output for the input; bright = strong response. Deeper layers "
            'are coarser and respond to larger, more abstract patterns.',
            figures=4,
            report_options={'indices': '0'},
            help="""Draw what chosen layers output for an image: a tile per channel, a GIF, the numbers.

    Writes activations.png (input + one row per layer), layer-<name>.png per layer,
    activations.gif (input -> each layer), activations.json (per-channel mean/max and the
    prediction) and, with --top-images, top-<name>.png. Several --index values write one
    sub-folder index-<N>/ each.
    """),
    Command('dream', 'Dreams',
            'The input each class or channel responds to most, optimised from a start image and '
            'measured on the saved PNG: what the network looks for, not what the data looks like.',
            figures=1,
            report_options={'until': 0.99},
            help="""Inputs the network likes most: maximise a class, or a channel/neuron of a layer.

    Writes class_<k>.png or <layer>_channel_<k>.png (at the model's input size), grid.png
    (labelled), dream.json (target, objective, probability or activation before/after and the
    top-3 classes, all measured on the saved 8-bit PNGs) and, with --gif, dream.gif.
    """),
    Command('neurons', 'Neuron cards',
            'For each channel: the input it responds to most (its dream) beside the data-set images '
            'that excite it most, with where in each image it fires.',
            figures=16,
            report_options={},
            help="""Neuron cards: per channel, the input it responds to most beside the data-set images that
    excite it most, with where in each it fires (OpenAI Microscope, for any model, offline).

    Writes card-<layer>-<channel>.png per channel and neurons.json.
    """),
    Command('explain', 'Which features carried a decision',
            "The layer's channels ranked by how much each raised the target's score; per top channel, "
            'where it fired in this image, its dream and the data-set images it responds to most: the '
            'features the decision used.',
            figures=2,
            report_options={'indices': '0'},
            help="""Which learned features carried a decision: a layer's channels ranked by their contribution
    to the target's score, each top channel shown by where it fired, its dream and its top images.

    Writes explain-<image>.png per image and explain.json (every channel: contribution, share,
    rank). Each method takes the options its help names; the others are ignored.
    """, methods="netviz.explain.methods:CHANNEL_METHODS"),
    Command('audit', 'Right for the right reasons: the audit',
            'Per class, clusters of its images and whether one relies on something other than the '
            'class: a flagged cluster shares a pattern in a small region that the rest of the data '
            'lacks and that alone turns other images into this class (a backdoor trigger, a '
            'watermark, a spurious mark).',
            figures=6,
            report_options={},
            help="""Is the model right for the right reasons, over a whole data set: per class, clusters of its
    images by activations and attribution maps, and whether a cluster relies on a pattern other
    than the class (a backdoor trigger, a watermark, a spurious mark); confident mistakes; confusion.

    Writes audit.json, classes.png, cluster-<class>-<k>.png per flagged cluster, mistakes.png and
    confusion.png, and prints the flagged classes and why. Each flagged cluster is named by the
    concepts that carry it: the model's (`netviz concepts`), or a dictionary fitted over its class
    in concepts-<class>/.
    """, methods="netviz.attribute:METHODS"),
    Command('concepts', 'Concepts: what the model learnt, across channels',
            "Each concept is a direction across the layer's channels, learnt over the data set: its card shows "
            "the regions where it is strongest; the class table says how much each concept carries each "
            "class. Trust a dictionary whose r2 is high and whose top concepts, taken out, lower the score "
            "more than random concepts and the top channels do.",
            figures=6,
            report_options={"limit": 10000},
            help="""What the model learnt at a layer, as concepts: directions across its channels found by
    dictionary learning over a data set (CRAFT, Fel et al. 2023), each shown by the image regions
    where it is strongest, with how much each carries each class.

    Writes concepts.json (r2, sparsity, dead concepts, faithfulness, stability; per concept its top
    regions as boxes in input pixels and its importance per class), dictionary.safetensors
    (`components`, K x C), concept-<k>.png per concept, classes.png and concepts.png. A trained
    run keeps the result in its cache: asked again, it is drawn from there.
    """,
            options="netviz.concepts:ConceptsOptions", compute="netviz.concepts:compute",
            draw="netviz.draw.concepts:draw"),
    Command('attribute', 'Attribution',
            'Green pixels raised the class score, red ones lowered it (non-negative maps: greener is '
            'more); the completeness error says how exactly integrated gradients add up.',
            figures=5,
            report_options={'indices': '0-7'},
            help="""Which pixels made the model's score: gradients, paths, class-activation maps, occlusion.

    Writes attribute.json (targets, scores, and for integrated the completeness error and steps
    of every image), <method>.png (a grid with true and predicted labels), <method>_<image>.png
    (image | overlay | heat map) and completeness.png; for interior, interior_<image>.png/.gif
    and interior_scores.png; with --sanity, sanity.json and sanity.png. Each method takes the
    options its help names; the others are ignored.
    """, methods="netviz.attribute:METHODS"),
    Command('evaluate', 'Which attribution to trust',
            'Deletion AUC low and insertion AUC high mean the map found what the model uses; a method '
            'no better than random explains nothing; sanity rho low means it depends on the model.',
            figures=1,
            report_options={"methods": EVALUATED, "indices": "0-19", "sanity_layers": 1},
            help="""Which attribution method to trust: deletion and insertion curves (RISE), a randomisation
    check and the time per image, for every method on the same images, ranked.

    Writes evaluate.json (per method: deletion_auc, insertion_auc, sanity_spearman,
    seconds_per_image and per-image curves) and curves.png, and prints the ranked table.
    """, methods="netviz.attribute:METHODS"),
)}



def how_to_read(command: str) -> str:
    """The line on how to read what ``command`` wrote."""
    return COMMANDS[command].how_to_read
