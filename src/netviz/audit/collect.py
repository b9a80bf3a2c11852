"""One pass over a data set: per image its label, prediction, confidence, a compact attribution map
and the activations of one layer, batch by batch, sharded under torchrun.

Kept compact so that 60,000 images fit in memory: the map is the |attribution| summed over
channels, average-pooled to at most 32 x 32, float16; the activations are the layer's output
averaged over positions (a map layer) or as they are (a vector), float16.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netviz.errors import NetvizError
from netviz.heads import head_of

if TYPE_CHECKING:
    import torch

    from netviz.attribute import Method, Options
    from netviz.data import TensorData
    from netviz.runs import Run

MAP_SIDE = 32  # the largest side a kept map has


@dataclass
class Collected:
    """Per image of the audited split (in its order): CPU tensors."""

    labels: torch.Tensor  # (N,) int64
    preds: torch.Tensor  # (N,) int64
    confidence: torch.Tensor  # (N,) float32, the softmax probability of the prediction
    label_prob: torch.Tensor  # (N,) float32, the probability of the label
    maps: torch.Tensor  # (N, h, w) float16, |attribution| of the label summed over channels
    activations: torch.Tensor  # (N, D) float16


def feature_layer(run: Run, notes: list[str] | None = None) -> str:
    """The layer before the classifier: the last module to run before the last linear layer that
    changes what it gets (dropout and identities skipped). A model without a linear classifier
    (all-convolutional, a segmentation net) is read at its last spatial layer, said in ``notes``."""
    from torch import nn

    from netviz.layers import NO_OP_TYPES, execution_order, last_spatial_layer

    order = execution_order(run.model, run.spec.input_shape)
    last_linear = max((i for i, (name, _) in enumerate(order)
                       if isinstance(run.model.get_submodule(name), nn.Linear)), default=None)
    if last_linear is None:
        name = last_spatial_layer(run.model, run.spec.input_shape)
        if notes is not None:
            notes.append(f"the model has no linear classifier: its activations are read at {name}, the last "
                         "layer with a spatial output (pass --layer to choose another)")
        return name
    before = [name for name, _ in order[:last_linear]
              if type(run.model.get_submodule(name)).__name__ not in NO_OP_TYPES
              and not any(other.startswith(name + ".") for other, _ in order[:last_linear])]
    if not before:
        raise NetvizError("nothing runs before the model's classifier: pass --layer (see `netviz layers`)")
    return before[-1]


def collect_split(run: Run, data: TensorData, method: Method, options: Options, layer: str, *,
            quiet: bool = True) -> Collected | None:
    """The pass over ``data`` (this rank's share under torchrun; rank 0 gets every share, the
    others None). A method that is one plain gradient (``Method.from_gradient``) gets its map from
    the same forward and backward pass that reads the prediction and the activations."""
    import torch

    from netviz import batching, distributed
    from netviz.attribute import fast_format, method_kwargs
    from netviz.data import conform
    from netviz.device import memory_layout, model_device
    from netviz.layers import eval_mode
    from netviz.progress import progress

    model, spec = run.model, run.spec
    kwargs = method_kwargs(method, run, options, None, [])
    share = distributed.shard(len(data))
    dev = model_device(model)
    layout = fast_format(model, torch.zeros(1, *spec.input_shape))
    n = len(share)
    kept: Collected | None = None  # filled in place: no growing lists, no copy at the end
    passes = batching.batches(n, model, spec.input_shape, f"audit-{method.name}")
    with eval_mode(model), memory_layout(model, layout), progress(total=n, quiet=quiet, desc="audit",
                                                                  unit="image") as bar:
        for which in passes:
            start = share.start + which.start
            pixels, _ = conform(data.images[start:share.start + which.stop], spec)
            labels = data.labels[start:start + len(pixels)].long()
            probs, act, attr = _read(model, spec, pixels, labels, layer, method, kwargs, dev, layout)
            amap = _compact(attr, spec)
            if kept is None:
                kept = Collected(torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long), torch.zeros(n),
                                 torch.zeros(n), torch.zeros(n, *amap.shape[1:], dtype=torch.float16),
                                 torch.zeros(n, act.shape[1], dtype=torch.float16))
            rows = slice(start - share.start, start - share.start + len(pixels))
            conf, pred = probs.max(1)
            kept.labels[rows], kept.preds[rows], kept.confidence[rows] = labels, pred, conf
            kept.label_prob[rows] = probs.gather(1, labels[:, None])[:, 0]
            kept.maps[rows], kept.activations[rows] = amap, act
            bar.update(len(pixels))
    shares = distributed.gather(kept)
    if shares is None:
        return None  # another rank than 0
    present = [p for p in shares if p is not None]
    return present[0] if len(present) == 1 else distributed.concat(present)


def _read(model: Any, spec: Any, pixels: torch.Tensor, labels: torch.Tensor, layer: str, method: Method,
          kwargs: dict[str, Any], dev: Any, layout: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(probabilities, the layer's activations per image, the attribution) for one batch."""
    import torch

    from netviz.attribute import score_of
    from netviz.data import normalise
    from netviz.layers import capture_activations

    x = normalise(pixels, spec, dev).contiguous(memory_format=layout)
    gradient = method.from_gradient is not None
    x.requires_grad_(gradient)
    with torch.set_grad_enabled(gradient), capture_activations(model, [layer]) as store:
        logits = model(x)
        if gradient:
            f = score_of(logits, labels.to(dev), kwargs.get("score", "logit"), head_of(model).activation)
            (grad,) = torch.autograd.grad(f.sum(), x)
    act = store[layer].float()
    act = (act.flatten(2).mean(2) if act.ndim > 2 else act).half().cpu()
    if gradient:
        attr = method.from_gradient(x.detach(), grad).cpu()
    else:
        attr = method.function(model, normalise(pixels, spec), labels, quiet=True, **kwargs).attributions
    return torch.softmax(logits.detach().float(), 1).cpu(), act, attr


def _compact(attr: torch.Tensor, spec: Any) -> torch.Tensor:
    """|attribution| summed over channels, average-pooled to at most MAP_SIDE, float16."""
    from torch.nn import functional as F

    side = min(MAP_SIDE, spec.input_shape[1]), min(MAP_SIDE, spec.input_shape[2])
    return F.adaptive_avg_pool2d(attr.abs().sum(1, keepdim=True).float(), side)[:, 0].half()
