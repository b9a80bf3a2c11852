"""Activations: what chosen layers output for one image, and which images excite a channel most.

Pure compute over a model and tensors (no click, no matplotlib). A notebook user can do::

    from netviz.runs import load_run
    from netviz.activations import image_activations
    run = load_run("runs/mnist-3ep")
    data = run.eval_data()
    act = image_activations(run.model, run.spec, data.images[:1], ["relu1", "pool"], channels="0-7")
    act.layers[0].output.shape, act.predicted

The hooks live only inside :func:`netviz.layers.capture_activations` / ``forward_to`` and only the
requested layers are recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from netviz.errors import NetvizError
from netviz.heads import head_of
from netviz.inputs import ImageOptions
from netviz.options import data_dir_option, dataset_option, option
from netviz.selection import parse_int_list

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.data import TensorData
    from netviz.layers import LayerInfo
    from netviz.registry import ModelSpec
    from netviz.runs import Run

DEFAULT_CHANNELS = 27  # the 2018 all-convolutional post's choice: 27 grey tiles or 9 RGB tiles


@dataclass(frozen=True)
class ActivationsOptions(ImageOptions):
    """`netviz activations`: which image, which layers and channels, how they are drawn."""

    image: Any = option(None, "An image file (PNG, JPEG, ...), fitted to the model's channels and size.", "file")
    indices: str | int | Sequence[int] | None = option(None, "Sample(s) of the run's eval data: 5, 0-9 or 1,4,7 "
                                                       "(default 0).", flags=("--index",))
    split: str | None = option(None, "Split for --index and --top-images, e.g. test[:1000] (default: the run's).")
    layers: str | Sequence[str | int] | None = option(
        None, "Layer numbers or names, e.g. 3,conv6,layer2.0.conv1 (default: the model's choice, e.g. "
        "conv3,conv6,conv9 for allconv). See `netviz layers`.", flags=("--layers", "--layer"))
    channels: str | int | Sequence[int] | None = option(
        None, "Channels, as every list: 5 (channel 5), 0-9, 3,5,7 or all (default: the first 27).")
    mode: str = option("grey", "grey: one tile per channel; rgb: three consecutive channels per colour tile.",
                       "choice", choices=("grey", "gray", "rgb"), case_sensitive=False)
    colorbar: bool = option(False, "One raw-value scale per layer with a colour bar, instead of min-max per "
                            "tile.", "flag")
    top_images: int = option(0, "Also find the K eval images with the highest mean activation per channel.",
                             "whole")
    batch_size: int | None = option(None, "Batch size of the --top-images pass over the eval data (default: the "
                                    "fastest size, measured).", "count")
    dataset: str | None = dataset_option()
    data_dir: str | None = data_dir_option()

    def check(self) -> None:
        if self.image is not None and self.indices is not None:
            raise NetvizError("pass either --image or --index, not both")
        if self.top_images < 0:
            raise NetvizError(f"--top-images {self.top_images}: use 0 (off) or a positive count")


@dataclass
class LayerActivation:
    """One layer's output for one image (float32, CPU, no batch dimension)."""

    name: str
    index: int | None  # the layer number `netviz layers` prints; None without weights
    type: str
    output: torch.Tensor  # (C, H, W) for a spatial layer, (C,) for a vector (Linear) layer
    channels: list[int]  # the channels chosen for display
    note: str | None = None  # set when the requested channels had to be clipped

    @property
    def spatial(self) -> bool:
        return self.output.ndim == 3

    @property
    def num_channels(self) -> int:
        return int(self.output.shape[0])

    def channel_means(self) -> list[float]:
        return _per_channel(self.output).mean(dim=1).tolist()

    def channel_maxes(self) -> list[float]:
        return _per_channel(self.output).amax(dim=1).tolist()


@dataclass
class ImageActivations:
    """The inputs, prediction and chosen layer outputs of one image."""

    image: torch.Tensor  # uint8 (C, H, W), as fed to the model (after fitting to its input)
    source: str  # "mnist:test[8000:] #5" or the image file
    index: int | None  # index into the data set, None for an image file
    label: int | None  # true label, when known
    label_name: str | None
    predicted: int
    predicted_name: str
    probabilities: torch.Tensor  # softmax of the logits, (num_classes,)
    layers: list[LayerActivation]
    note: str | None = None  # how an image file was converted, if it was
    class_names: tuple[str, ...] = ()
    present: list[int] = field(default_factory=list)  # every predicted class (multi-label: above 0.5)
    weights: str = ""  # which weights predicted, said beside the prediction ("" for a trained run)

    def class_name(self, k: int) -> str:
        return str(self.class_names[k]) if k < len(self.class_names) else str(k)

    @property
    def probability(self) -> float:
        return float(self.probabilities[self.predicted])

    @property
    def prediction_text(self) -> str:
        """``predicted 7 (98.1%)``; a multi-label model's every present class."""
        shown = self.present or [self.predicted]
        said = f" [{self.weights}]" if self.weights else ""
        return "predicted " + ", ".join(f"{self.class_name(k)} ({float(self.probabilities[k]):.1%})"
                                        for k in shown) + said

    def top_classes(self, k: int = 5) -> list[tuple[int, float]]:
        p, i = self.probabilities.topk(min(k, self.probabilities.numel()))
        return list(zip(i.tolist(), p.tolist(), strict=True))

    def record(self, run: Run | None = None, mode: str = "grey",
               top: dict[str, TopImages] | None = None) -> dict[str, Any]:
        """What activations.json holds: the prediction, per-channel mean/max of every layer (and with
        ``top`` the data set's top images per channel); ``mode`` says how the tiles were drawn."""
        act = self
        def r(v: float) -> float:
            return round(float(v), 6)

        layers = []
        for layer in act.layers:
            entry: dict[str, Any] = {
                "name": layer.name, "index": layer.index, "type": layer.type,
                "shape": list(layer.output.shape), "shown_channels": list(layer.channels),
                "tiles": "bars" if not layer.spatial else "rgb" if uses_rgb(layer, mode) else "grey",
                "channel_mean": [r(v) for v in layer.channel_means()],
                "channel_max": [r(v) for v in layer.channel_maxes()],
            }
            if layer.note:
                entry["note"] = layer.note
            if top and layer.name in top:
                t = top[layer.name]
                entry["top_images"] = {
                    "dataset": t.dataset, "score": "mean activation",
                    "channels": {str(c): {"indices": t.indices[i].tolist(),
                                          "scores": [r(v) for v in t.scores[i].tolist()]}
                                 for i, c in enumerate(t.channels)},
                }
            layers.append(entry)
        return {
            "model": run.spec.name if run is not None else None,
            "run": str(run.path) if run is not None and run.is_training_run else None,
            "source": act.source, "index": act.index, "input_note": act.note,
            "label": act.label, "label_name": act.label_name,
            "predicted": act.predicted, "predicted_name": act.predicted_name,
            "probability": r(act.probability),
            "present": [{"class": k, "name": act.class_name(k), "probability": r(act.probabilities[k])}
                        for k in act.present],
            "top_classes": [{"class": k, "name": act.class_name(k), "probability": r(p)}
                            for k, p in act.top_classes(5)],
            "layers": layers,
        }


@dataclass
class TopImages:
    """For each channel of one layer, the data-set images with the highest mean activation."""

    layer: str
    channels: list[int]
    indices: torch.Tensor  # int64 (len(channels), K): data-set indices, strongest first
    scores: torch.Tensor  # float32 (len(channels), K): the mean activation of each
    dataset: str


def _per_channel(t: torch.Tensor) -> torch.Tensor:
    """(C, ...) -> (C, N) with every value of a channel in one row."""
    return t.reshape(t.shape[0], -1).float()


def as_chw(output: torch.Tensor, name: str) -> torch.Tensor:
    """One image's layer output as (C, H, W) or (C,); sequences (C, L) become (C, 1, L)."""
    if output.ndim == 1 or output.ndim == 3:
        return output
    if output.ndim == 2:
        return output.unsqueeze(1)
    raise NetvizError(
        f"layer {name} outputs shape {tuple(output.shape)} per image, which netviz cannot draw: "
        "pick a convolutional or linear layer (see `netviz layers`)"
    )


# -- parsing user choices ----------------------------------------------------------------------

def select_channels(asked: str | int | Sequence[int] | None, num_channels: int, layer: str
                    ) -> tuple[list[int], str | None]:
    """The channels to show and a note when they had to be clipped to the layer.

    ``asked``: None (the first 27), ``"all"``, or channel numbers in the grammar of every list
    (:mod:`netviz.selection`): ``5`` is channel 5, ``"0-26"`` the first 27, ``"3,5,7"`` those three.
    """
    if asked is None:  # the default is no request: a layer with fewer channels shows them all, unsaid
        return list(range(min(DEFAULT_CHANNELS, num_channels))), None
    if isinstance(asked, str) and asked.strip().lower() == "all":
        return list(range(num_channels)), None
    if isinstance(asked, str):
        wanted = parse_int_list(asked, "--channels")
    else:
        wanted = [int(asked)] if isinstance(asked, int) else list(dict.fromkeys(int(c) for c in asked))
    kept = [c for c in wanted if 0 <= c < num_channels]
    if not kept:
        raise NetvizError(
            f"--channels {asked}: layer {layer} has only {num_channels} channels "
            f"(0-{num_channels - 1}); a number is a channel, a range 0-{min(num_channels, DEFAULT_CHANNELS) - 1} "
            "the first ones, or 'all'")
    note = None
    if len(kept) < len(wanted):
        dropped = [c for c in wanted if c not in kept]
        shown = ", ".join(map(str, dropped[:5])) + (", ..." if len(dropped) > 5 else "")
        note = (f"{layer} has {num_channels} channels (0-{num_channels - 1}): "
                f"left out channel(s) {shown}")
    return kept, note


def layer_index(model: nn.Module, name: str) -> int | None:
    """The layer number `netviz layers` prints for ``name`` (None for a module without weights)."""
    from netviz.layers import weight_layers

    numbered = weight_layers(model)
    return numbered.index(name) + 1 if name in numbered else None


def uses_rgb(layer: LayerActivation, mode: str) -> bool:
    """rgb groups three consecutive channels; a layer whose shown count is not a multiple of 3
    (the 2018 all-convolutional post's layer 9: 10 channels) stays grey, as it drew it (docs/techniques.md §1)."""
    return mode == "rgb" and layer.spatial and len(layer.channels) % 3 == 0


def default_layers(model: nn.Module, spec: ModelSpec, count: int = 3) -> list[str]:
    """The spec's default layers, else ``count`` layers from shallow to deep: the last
    convolution at each spatial resolution (the end of each stage), evenly spread."""
    if spec.default_layers:
        return list(spec.default_layers)
    from netviz.layers import list_layers

    infos = list_layers(model, spec.input_shape)
    blocks = _transformer_blocks(model, infos, spec.input_shape[1:])
    if blocks:  # a transformer: its blocks' outputs, from shallow to deep
        return [blocks[max(0, round(k * len(blocks) / count) - 1)] for k in range(1, count + 1)]
    leaves = {n for n, m in model.named_modules() if n and not any(True for _ in m.children())}
    spatial = [i for i in infos if i.name in leaves and i.output_shape is not None
               and len(i.output_shape) == 3]
    convs = [i for i in spatial if "conv" in i.type.lower()] or spatial
    if not convs:
        named = [i for i in infos if i.output_shape is not None]
        if not named:
            raise NetvizError(f"model '{spec.name}' has no layer with an output: pass --layers")
        return [named[-1].name]
    last_at: dict[tuple[int, ...], str] = {}  # resolution -> last conv there, in first-seen order
    for info in convs:
        last_at[info.output_shape[1:]] = info.name
    stages = list(last_at.values())
    picks = sorted({max(0, round(k * len(stages) / count) - 1) for k in range(1, count + 1)})
    return [stages[p] for p in picks]


def _transformer_blocks(model: nn.Module, infos: Sequence[LayerInfo], input_hw: Sequence[int]) -> list[str]:
    """The blocks of a transformer (children of a ModuleList or Sequential whose outputs are
    tokens or channels-last maps: ViT's ``blocks.N``, Swin's ``layers.N``), in order."""
    from torch import nn

    from netviz.layers import layer_grid

    containers = {n for n, m in model.named_modules() if isinstance(m, (nn.ModuleList, nn.Sequential))}
    found = []
    for info in infos:
        parent = info.name.rpartition(".")[0]
        grid = layer_grid(model, info.output_shape, input_hw) if info.output_shape else None
        if parent in containers and grid is not None and grid.layout != "nchw":
            found.append(info.name)
    return list(dict.fromkeys(found))


# -- compute -----------------------------------------------------------------------------------

def image_activations(model: nn.Module, spec: ModelSpec, image: torch.Tensor, layers: Sequence[str],
                      channels: str | int | Sequence[int] | None = None, *,
                      label: int | None = None, class_names: Sequence[str] | None = None,
                      source: str = "", index: int | None = None, note: str | None = None
                      ) -> ImageActivations:
    """Run one image (uint8 (1, C, H, W) or (C, H, W), fitted to the model) and record ``layers``.

    ``layers`` are dotted names (see :func:`netviz.layers.resolve_layers`); ``channels`` picks
    the channels to show, as :func:`select_channels`. Only these layers are kept in memory.
    """
    import torch

    from netviz.data import normalise
    from netviz.layers import capture_activations, layer_grid

    if image.ndim == 3:
        image = image.unsqueeze(0)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    names = tuple(class_names if class_names and len(class_names) >= spec.num_classes
                  else spec.class_names)
    x = normalise(image, spec, device)
    with capture_activations(model, list(layers), maps=False) as store, torch.no_grad():
        logits = model(x)[0].float().cpu()
    missing = [n for n in layers if n not in store]
    if missing:
        raise NetvizError(f"layer(s) {', '.join(missing)} produced no tensor output for this model")
    results = []
    for name in layers:
        raw = store[name]  # read as maps here, so the note on how comes from the same grid
        grid = layer_grid(model, raw.shape[1:], x.shape[-2:])
        out = as_chw((grid.to_map(raw) if grid is not None else raw)[0].float().cpu(), name)
        shown, clip_note = select_channels(channels, int(out.shape[0]), name)
        module = model.get_submodule(name)
        said = "; ".join(n for n in (grid.note(name) if grid else None, clip_note) if n) or None
        results.append(LayerActivation(name, layer_index(model, name), type(module).__name__, out,
                                       shown, said))
    head = head_of(model)
    probs = head.probabilities(logits[None])[0]
    present = head.predicted(probs)
    pred = present[0]

    act = ImageActivations(
        image=image[0].cpu(), source=source, index=index, label=label, label_name=None,
        predicted=pred, predicted_name="", probabilities=probs, layers=results, note=note,
        class_names=names, present=present,
    )
    # the true label is named by the data set (another data set's classes are not the model's)
    label_names = tuple(class_names) if class_names else names
    act.label_name = None if label is None else str(label_names[label]) if label < len(label_names) else str(label)
    act.predicted_name = act.class_name(pred)
    return act


def top_activating(model: nn.Module, spec: ModelSpec, data: TensorData,
                   channels: dict[str, list[int]], k: int = 5, batch_size: int | None = None,
                   quiet: bool = True) -> dict[str, TopImages] | None:
    """For each layer and each of its ``channels``, the ``k`` images of ``data`` with the highest
    mean activation (mean over the channel's spatial positions), in one batched pass.

    The forward pass stops after the deepest wanted layer; only per-channel means are kept.
    Ties keep data-set order (a stable sort), so the result is reproducible. Under torchrun every
    rank scores its share of the data and rank 0 gets the result (the other ranks None).
    """
    import torch

    from netviz import batching, distributed
    from netviz.data import conform, normalise
    from netviz.layers import forward_to
    from netviz.progress import progress

    if k < 1:
        raise NetvizError(f"--top-images {k}: ask for at least 1 image")
    if batch_size is not None and batch_size < 1:
        raise NetvizError(f"--batch-size {batch_size}: use a positive batch size")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    layers = list(channels)
    share = distributed.shard(len(data))  # under torchrun each rank scores its share of the data
    scores: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    passes = batching.batches(len(share), model, spec.input_shape, "top-images", batch_size, gradients=False)
    with torch.no_grad(), progress(total=len(share), quiet=quiet, desc="top images", unit="image") as bar:
        for which in passes:
            # fitted a batch at a time: a large image folder is read as it is used
            x = normalise(conform(data.images[share.start + which.start:share.start + which.stop], spec)[0], spec,
                          device)
            bar.update(x.shape[0])
            outs = forward_to(model, x, layers)
            for name in layers:
                out = outs[name].float()
                if out.ndim == 3:  # (N, C, L) sequences, drawn as (C, 1, L)
                    out = out.unsqueeze(2)
                out = out[:, channels[name]]
                means = out.flatten(2).mean(2) if out.ndim > 2 else out
                scores[name].append(means.cpu())
    shares = distributed.gather({name: torch.cat(v) if v else None for name, v in scores.items()})
    if shares is None:
        return None  # another rank than 0: rank 0 ranks the whole data set
    k = min(k, len(data))
    result = {}
    for name in layers:
        s = torch.cat([share[name] for share in shares if share[name] is not None]).T  # (channels, N)
        order = torch.sort(s, dim=1, descending=True, stable=True).indices[:, :k]
        result[name] = TopImages(name, list(channels[name]), order, s.gather(1, order), data.name)
    return result
