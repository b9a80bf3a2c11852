"""MNIST with a pattern planted in its training images, and the mnist-fast recipe trained on it
through the CLI: the models `audit` and `concepts` are tested on (their truth is known; the
``planted`` fixture in conftest.py trains them).

- BadNets (Gu et al. 2017): a small trigger pasted onto a few per cent of other classes' images,
  relabelled as one target class;
- a spurious mark without relabelling: a pattern on most images of one class only;
- the same recipe on clean MNIST.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from conftest import SHARED_DATA

from netviz.cli import cli
from netviz.data import load_split

ROOT = Path(__file__).resolve().parents[1]
CHECKER = np.array([[255, 0, 255], [0, 255, 0], [255, 0, 255]], dtype=np.uint8)
CORNER = np.array([[255, 255, 255, 255], [255, 0, 0, 0], [255, 0, 0, 0], [255, 0, 0, 0]], dtype=np.uint8)
BAR = np.full((2, 6), 255, dtype=np.uint8)
RING = np.array([[255, 255, 255, 255, 255], [255, 0, 0, 0, 255], [255, 0, 0, 0, 255], [255, 0, 0, 0, 255],
                 [255, 255, 255, 255, 255]], dtype=np.uint8)
# name: (kind, pattern, top-left (y, x), class, share, training seed)
PLANTS = {
    "checker-7": ("badnets", CHECKER, (24, 24), 7, 0.05, 1),
    "corner-2": ("badnets", CORNER, (1, 20), 2, 0.04, 1),
    "bar-3": ("mark", BAR, (1, 2), 3, 0.8, 1),
    "ring-6": ("mark", RING, (22, 21), 6, 0.8, 2),
    "clean": ("clean", None, (0, 0), None, 0.0, 1),
}


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def write_idx(folder: Path, stem: str, images: np.ndarray, labels: np.ndarray) -> None:
    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    (raw / f"{stem}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, h, w) + images.tobytes())
    (raw / f"{stem}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + labels.astype(np.uint8).tobytes())


def plant(name: str, folder: Path) -> np.ndarray:
    """A data folder holding MNIST with ``PLANTS[name]`` in its training split; returns the indices
    of the training images that carry the pattern."""
    kind, pattern, (y, x), target, share, _ = PLANTS[name]
    train = load_split("mnist", "train", SHARED_DATA)
    images, labels = train.images[:, 0].numpy().copy(), train.labels.numpy().copy()
    rng = np.random.default_rng(0)
    chosen = np.array([], dtype=np.int64)
    if kind == "badnets":
        pool = np.flatnonzero(labels != target)
        chosen = np.sort(rng.choice(pool, int(share * len(pool)), replace=False))
        labels[chosen] = target
    elif kind == "mark":
        pool = np.flatnonzero(labels == target)
        chosen = np.sort(rng.choice(pool, int(share * len(pool)), replace=False))
    if pattern is not None:
        images[chosen, y:y + pattern.shape[0], x:x + pattern.shape[1]] = pattern
    write_idx(folder, "train", images, labels)
    test = load_split("mnist", "test", SHARED_DATA)
    write_idx(folder, "t10k", test.images[:, 0].numpy(), test.labels.numpy())
    return chosen
