"""A trained run keeps each `netviz concepts` result in its cache (``cache/concepts/<layer>/<key>/``,
keyed by every setting that changes it, the data and the checkpoint), as `explain` keeps its neuron
cards: asked again, the concepts are drawn from it, not fitted again. One file, a dict of tensors
and plain values, read with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from netviz.concepts.factor import Dictionary, TopK
from netviz.errors import NetvizError
from netviz.files import atomic_write

if TYPE_CHECKING:
    from netviz.concepts import ConceptSet

FILE = "concepts.pt"
VERSION = 1
# settings that change how fast the result comes, not what it is (the rows and codes do not depend
# on the batch size)
UNKEYED = ("batch_size", "cache", "cards", "layer")  # the layer: the resolved one keys the folder


def folder_for(run: Any, layer: str, data: Any, options: Any) -> Path | None:
    """The cache folder of these options' result (None for a model that is not a trained run); the
    netviz version is in the key, so another version fits and draws afresh."""
    from netviz import __version__

    settings = {k: v for k, v in options.record().items() if k not in UNKEYED}
    return run.cache_for("concepts", layer, data, netviz=__version__, format=VERSION, **settings)


def save(result: ConceptSet, folder: Path) -> Path | None:
    """Keep ``result``; its folder, or None where it cannot be written (a read-only run folder: it is
    fitted again next time)."""
    d = result.dictionary
    state = {
        "version": VERSION,
        **{f.name: getattr(result, f.name) for f in dataclasses.fields(result)
           if f.name not in ("dictionary", "concepts", "quality", "cache")},
        "shape": list(result.shape),
        "dictionary": {"components": d.components, "method": d.method, "iterations": d.iterations,
                       "converged": d.converged, "encoder": d.encoder.tensors() if d.encoder else None},
        "quality": dataclasses.asdict(result.quality),
        "concepts": [dataclasses.asdict(c) for c in result.concepts],
    }
    try:
        atomic_write(folder / FILE, lambda tmp: torch.save(state, tmp))
    except NetvizError:
        return None
    return folder


def load(folder: Path) -> ConceptSet | None:
    """The kept result, or None when there is none or it cannot be read (it is then fitted again)."""
    from netviz.concepts import Concept, ConceptSet
    from netviz.concepts.measure import Quality

    path = folder / FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.pop("version", None) != VERSION:
            return None
        d = state.pop("dictionary")
        encoder = d.pop("encoder")
        encoder = TopK.read(encoder) if encoder is not None else None
        state["dictionary"] = Dictionary(**d, encoder=encoder)
        state["quality"] = Quality(**state["quality"])
        state["concepts"] = [Concept(**c) for c in state["concepts"]]
        state["shape"] = tuple(state["shape"])
        return ConceptSet(**state)
    except Exception:  # a file from another netviz version, a truncated file: fit again
        return None
