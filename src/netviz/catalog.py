"""The commands as the report and the manifests see them: one entry a command, in the report's
order, with its section title, how to read what it wrote, how many of its figures the report shows,
and the options `netviz report --all` runs it with (as command-line words and as the Python call's
keywords). A leaf: it imports nothing of netviz, so every module may read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Command:
    name: str
    title: str  # its section of the report
    how_to_read: str  # one line on how to read what it wrote (its manifests, the report)
    figures: int = 4  # images the report embeds per result (the rest are listed by name)
    # `report --all` runs it when the run has no result of it, with these options (None: it does not)
    report_args: tuple[str, ...] | None = None
    report_options: dict[str, Any] = field(default_factory=dict)


EVALUATED = "integrated,saliency,gradcam,occlusion,random"  # the methods `report --all` evaluates

COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command('train', 'Training',
            'Loss and accuracy per epoch: eval accuracy that stops rising while train accuracy climbs '
            'is overfitting; summary.json says when the eval accuracy passed 98 %, 99 % and 99.5 %.',
            figures=1),
    Command('histogram', 'Weight histograms',
            "Each layer's weights before and after training: training usually widens the first "
            "layers' bells; a layer whose histogram did not move did not learn.",
            figures=4,
            report_args=()),
    Command('kernels', 'Kernels',
            'Each first-layer kernel as an image, mid-grey = 0, lighter = positive: trained kernels '
            'look like edge and blob detectors, untrained ones like noise.',
            figures=2,
            report_args=()),
    Command('activations', 'Activations',
            "Each tile is one channel's output for the input; bright = strong response. Deeper layers "
            'are coarser and respond to larger, more abstract patterns.',
            figures=4,
            report_args=('--index', '0'), report_options={'indices': '0'}),
    Command('dream', 'Dreams',
            'The input each class or channel responds to most, optimised from a start image and '
            'measured on the saved PNG: what the network looks for, not what the data looks like.',
            figures=1,
            report_args=('--until', '0.99'), report_options={'until': 0.99}),
    Command('neurons', 'Neuron cards',
            'For each channel: the input it responds to most (its dream) beside the data-set images '
            'that excite it most, with where in each image it fires.',
            figures=16,
            report_args=()),
    Command('explain', 'Which features carried a decision',
            "The layer's channels ranked by how much each raised the target's score; per top channel, "
            'where it fired in this image, its dream and the data-set images it responds to most: the '
            'features the decision used.',
            figures=2,
            report_args=('--index', '0'), report_options={'indices': '0'}),
    Command('audit', 'Right for the right reasons: the audit',
            'Per class, clusters of its images and whether one relies on something other than the '
            'class: a flagged cluster shares a pattern in a small region that the rest of the data '
            'lacks and that alone turns other images into this class (a backdoor trigger, a '
            'watermark, a spurious mark).',
            figures=6,
            report_args=()),
    Command('attribute', 'Attribution',
            'Green pixels raised the class score, red ones lowered it (non-negative maps: greener is '
            'more); the completeness error says how exactly integrated gradients add up.',
            figures=5,
            report_args=('--index', '0-7'), report_options={'indices': '0-7'}),
    Command('evaluate', 'Which attribution to trust',
            'Deletion AUC low and insertion AUC high mean the map found what the model uses; a method '
            'no better than random explains nothing; sanity rho low means it depends on the model.',
            figures=1,
            report_args=("--methods", EVALUATED, "--index", "0-19", "--sanity-layers", "1"),
            report_options={"methods": EVALUATED, "indices": "0-19", "sanity_layers": 1}),
)}



def how_to_read(command: str) -> str:
    """The line on how to read what ``command`` wrote."""
    return COMMANDS[command].how_to_read
