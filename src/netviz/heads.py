"""What a model's output means: which of its outputs are the class scores, how scores become
probabilities, and, for a model that answers with a map, which pixels a class's score sums.

A forward pass may return a tensor, a tuple or list, a dict, a namedtuple or a dataclass. A
:class:`Head` names the class scores among them (``--output INDEX|KEY``) and reduces a dense
output (N, K, H, W) to one score per class, the logit summed over a region (``--region``): the
pixels predicted as that class, or a box in input pixels. :func:`attach` puts the head on the
model as its outermost forward hook, so every command sees (N, K) scores and the model's own
modules, names and weights stay exactly as they are. ``--activation`` says how those scores are
read as probabilities: softmax (one class per image), sigmoid (multi-label: each class its own
probability) or none (the output already is a probability, or a regression value).

netviz never guesses: a forward that returns several tensors with none named stops with one line
listing them.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netviz.errors import NetvizError, check_choice, close_matches

if TYPE_CHECKING:
    import torch
    from torch import nn

ACTIVATIONS = ("softmax", "sigmoid", "none")
MULTI_LABEL_THRESHOLD = 0.5  # a sigmoid class counts as present above this probability


class OutputError(NetvizError):
    """What the model returns cannot be read as class scores as asked (never retried at another
    input size: the answer would be the same)."""


def parse_output(value: str | int | None) -> str | int | None:
    """``--output 2`` -> 2, ``--output logits`` -> "logits" (a key); None stays None."""
    if value is None or isinstance(value, int):
        return value
    text = str(value).strip()
    if not text:
        raise NetvizError("--output is empty: give an index (0, 1, ...) or a key of the model's output")
    try:
        return int(text)
    except ValueError:
        return text


def check_activation(value: str | None) -> str:
    return check_choice(value, ACTIVATIONS, "--activation")


def parse_region(value: str | Sequence[int] | None) -> str | tuple[int, int, int, int] | None:
    """``pred`` or ``y0,x0,y1,x1`` (input pixels, the end exclusive) -> "pred" or a box."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() == "pred":
        return "pred"
    parts = [p.strip() for p in value.split(",")] if isinstance(value, str) else list(value)
    try:
        box = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        box = ()
    if len(box) != 4 or min(box) < 0:
        raise NetvizError(f"cannot read --region '{value}': use pred, or y0,x0,y1,x1 in input pixels "
                          "(four whole numbers, e.g. 8,8,24,24)")
    y0, x0, y1, x1 = box
    if y1 <= y0 or x1 <= x0:
        raise NetvizError(f"--region {value} is empty: y1 must exceed y0 and x1 exceed x0")
    return box  # type: ignore[return-value]


@dataclass(frozen=True)
class Head:
    """How to read a model's forward output as class scores (see the module's docstring)."""

    output: str | int | None = None  # which output holds the class scores (None: the only tensor)
    activation: str = "softmax"
    region: str | tuple[int, int, int, int] | None = None  # dense outputs: "pred" (default) or a box
    reshape: str = "auto"  # how token / channels-last layers read as maps (netviz.tokens)

    def record(self) -> dict[str, Any]:
        """What a run's config and a model card keep (defaults left out)."""
        out: dict[str, Any] = {}
        if self.output is not None:
            out["output"] = self.output
        if self.activation != "softmax":
            out["activation"] = self.activation
        if self.reshape != "auto":
            out["reshape"] = self.reshape
        return out

    # -- from the forward's output to (N, K) --------------------------------------------------

    def select(self, raw: Any) -> torch.Tensor:
        """The tensor of class scores among what the forward returned."""
        import torch

        if isinstance(raw, torch.Tensor):
            if self.output is not None and self.output not in (0, -1):
                raise OutputError(f"--output {self.output}: the model returns one tensor "
                                  f"{_shape(raw)}, not several; leave --output out")
            return raw
        entries = output_entries(raw)
        if not entries:
            raise OutputError(f"the model returns a {type(raw).__name__} holding no tensor; netviz "
                              "needs class scores")
        if self.output is None:
            tensors = [(k, v) for k, v in entries if isinstance(v, torch.Tensor)]
            if len(tensors) == 1:
                return tensors[0][1]
            raise OutputError(f"the model returns {len(tensors)} tensors ({describe_entries(entries)}): "
                              "say which holds the class scores with --output INDEX or KEY (output= in Python)")
        return self._named(entries)

    def _named(self, entries: list[tuple[str | int, Any]]) -> torch.Tensor:
        import torch

        keys = [k for k, _ in entries]
        want = self.output
        found = dict(entries)
        if isinstance(want, int) and all(isinstance(k, int) for k in keys):
            if not -len(keys) <= want < len(keys):
                raise OutputError(f"--output {want} is out of range: the model returns {len(keys)} "
                                  f"outputs ({describe_entries(entries)}), use 0..{len(keys) - 1}")
            value = found[keys[want]]
        elif str(want) in {str(k) for k in keys}:
            value = next(v for k, v in entries if str(k) == str(want))
        elif isinstance(want, int) and want < len(keys):  # a position in a dict or dataclass
            value = entries[want][1]
        else:
            names = [str(k) for k in keys]
            raise OutputError(f"the model's output has no '{want}': it returns {describe_entries(entries)}; "
                              f"pass one of them to --output{close_matches(str(want), names)}")
        if not isinstance(value, torch.Tensor):
            raise OutputError(f"--output {want} is a {type(value).__name__}, not a tensor of class scores")
        return value

    def scores(self, raw: Any, input_size: Sequence[int]) -> torch.Tensor:
        """(N, K) class scores: the named output, a dense map summed over the region."""
        out = self.select(raw)
        if out.ndim == 1:
            out = out.unsqueeze(1)  # one value per image: one target
        if out.ndim == 4:
            return self.region_sum(out, input_size)
        if out.ndim != 2:
            raise OutputError(f"the model's class scores have shape {_shape(out)}; netviz needs "
                              "(N, classes) or a map (N, classes, H, W)")
        if self.region is not None:
            raise OutputError(f"--region is for models whose output is a map (N, classes, H, W); this "
                              f"one returns {_shape(out)}: leave --region out")
        return out

    def region_mask(self, dense: torch.Tensor, input_size: Sequence[int]) -> torch.Tensor:
        """(N, K, h, w) weights of each output pixel in each class's score (0 or 1)."""
        import torch

        n, k, h, w = dense.shape
        if self.region is None or self.region == "pred":
            pred = dense.detach().argmax(1)  # the pixels predicted as each class
            return torch.nn.functional.one_hot(pred, k).permute(0, 3, 1, 2).to(dense.dtype)
        y0, x0, y1, x1 = scaled_box(self.region, input_size, (h, w))
        mask = torch.zeros(1, 1, h, w, dtype=dense.dtype, device=dense.device)
        mask[..., y0:y1, x0:x1] = 1
        return mask.expand(n, k, h, w)

    def region_sum(self, dense: torch.Tensor, input_size: Sequence[int]) -> torch.Tensor:
        return (dense * self.region_mask(dense, input_size)).sum((2, 3))

    # -- probabilities ------------------------------------------------------------------------

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """(N, K) probabilities from (N, K) scores."""
        import torch

        if self.activation == "sigmoid":
            return torch.sigmoid(scores)
        if self.activation == "none":
            return scores
        return torch.softmax(scores, dim=1)

    def log_probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        import torch

        if self.activation == "sigmoid":
            return torch.nn.functional.logsigmoid(scores)
        if self.activation == "none":
            return torch.log(scores.clamp_min(1e-30))
        return torch.log_softmax(scores, dim=1)

    def predicted(self, probabilities: torch.Tensor) -> list[int]:
        """One image's predicted classes, most probable first: the top one, or for a multi-label
        model every class above :data:`MULTI_LABEL_THRESHOLD` (the top one when none is)."""
        order = probabilities.argsort(descending=True).tolist()
        if self.activation != "sigmoid":
            return order[:1]
        above = [k for k in order if float(probabilities[k]) > MULTI_LABEL_THRESHOLD]
        return above or order[:1]


def target_label(target: torch.Tensor) -> int | list[int]:
    """One image's target as JSON holds it: a class, or the classes of a multi-label target."""
    return int(target) if target.ndim == 0 else [int(k) for k in target]


def target_name(target: torch.Tensor, spec: Any) -> str:
    """A target's class name (``spec.class_name``), or the names of several summed (``cat + dog``)."""
    label = target_label(target)
    return " + ".join(spec.class_name(k) for k in (label if isinstance(label, list) else [label]))


def scaled_box(box: tuple[int, int, int, int], input_size: Sequence[int], out_size: Sequence[int]
               ) -> tuple[int, int, int, int]:
    """A box in input pixels as output pixels (a map smaller than the input is scaled down;
    every output pixel the box touches counts)."""
    import math

    y0, x0, y1, x1 = box
    sy, sx = out_size[0] / input_size[0], out_size[1] / input_size[1]
    return (int(y0 * sy), int(x0 * sx), max(int(y0 * sy) + 1, math.ceil(y1 * sy)),
            max(int(x0 * sx) + 1, math.ceil(x1 * sx)))


def check_region(head: Head, input_shape: Sequence[int]) -> None:
    """A box must lie inside the image."""
    if isinstance(head.region, tuple):
        y0, x0, y1, x1 = head.region
        h, w = int(input_shape[-2]), int(input_shape[-1])
        if y1 > h or x1 > w:
            raise NetvizError(f"--region {y0},{x0},{y1},{x1} reaches outside the {h}x{w} input: "
                              f"use y in 0..{h} and x in 0..{w}")


def output_entries(raw: Any) -> list[tuple[str | int, Any]]:
    """(index or key, value) for each output of a tuple, list, namedtuple, dict or dataclass."""
    if isinstance(raw, Mapping):
        return [(k, v) for k, v in raw.items()]
    if isinstance(raw, tuple) and hasattr(raw, "_fields"):  # a namedtuple: by name or position
        return list(zip(raw._fields, raw, strict=True))
    if dataclasses.is_dataclass(raw) and not isinstance(raw, type):
        return [(f.name, getattr(raw, f.name)) for f in dataclasses.fields(raw)]
    if isinstance(raw, (tuple, list)):
        return list(enumerate(raw))
    return []


def describe_entries(entries: list[tuple[str | int, Any]]) -> str:
    """``0: 4x..., 1: ...`` for the outputs that are tensors; others by type."""
    import torch

    return ", ".join(f"{k}: {_shape(v) if isinstance(v, torch.Tensor) else type(v).__name__}"
                     for k, v in entries)


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(map(str, t.shape)) + ")"


# -- the head on a model ------------------------------------------------------------------------

def attach(model: nn.Module, head: Head) -> nn.Module:
    """Make ``model`` return (N, K) class scores as ``head`` reads them, with a forward hook on the
    model itself (its modules, names and weights stay as they are); a second call replaces the
    first head. Returns the model."""
    detach(model)

    def read(module: nn.Module, args: tuple, output: Any) -> Any:
        x = args[0] if args else None
        size = tuple(x.shape[-2:]) if x is not None and hasattr(x, "shape") and x.ndim >= 2 else (1, 1)
        return head.scores(output, size)

    read.netviz_head = head  # type: ignore[attr-defined]
    model.netviz_head_handle = model.register_forward_hook(read)  # type: ignore[assignment]
    model.netviz_head = head  # type: ignore[assignment]
    return model


def detach(model: nn.Module) -> None:
    handle = getattr(model, "netviz_head_handle", None)
    if handle is not None:
        handle.remove()
        del model.netviz_head_handle
    if "netviz_head" in vars(model):
        del model.netviz_head


@contextlib.contextmanager
def raw_outputs(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block the model returns what its forward returns, without its head."""
    head = getattr(model, "netviz_head", None)
    detach(model)
    try:
        yield model
    finally:
        if isinstance(head, Head):
            attach(model, head)


def region_masks(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    """(N, H, W) booleans at the input's size: the pixels whose logits made each image's target
    score, for a model answering with a map (None for any other model)."""
    import torch

    from netviz.device import model_device

    head = head_of(model)
    x = x.to(model_device(model))  # the images come from the CPU; the model may be on a GPU
    with raw_outputs(model), torch.no_grad():
        if head.select(model(x[:1])).ndim != 4:  # one image says whether the model answers with a map
            return None
        out = head.select(model(x))
    mask = head.region_mask(out, x.shape[-2:])  # (N, K, h, w)
    t = target.to(mask.device).view(len(x), -1)
    chosen = mask.gather(1, t[:, :, None, None].expand(-1, -1, *mask.shape[2:])).amax(1, keepdim=True)
    up = torch.nn.functional.interpolate(chosen.float(), size=tuple(x.shape[-2:]), mode="nearest")
    return up[:, 0].bool().cpu()


def head_from(head: Head | None = None, output: str | int | None = None, activation: str | None = None,
              region: str | Sequence[int] | None = None) -> Head | None:
    """The head a Python caller asked for: ``head`` itself, or one made of ``output``,
    ``activation`` and ``region`` (None when none of them was given)."""
    if head is not None:
        if not isinstance(head, Head):
            raise NetvizError(f"head= takes a netviz.heads.Head, not a {type(head).__name__}")
        return head
    if output is None and activation is None and region is None:
        return None
    return Head(output=parse_output(output), activation=check_activation(activation), region=parse_region(region))


def headless_view(model: nn.Module) -> nn.Module:
    """A view of ``model`` (:func:`netviz.views.module_view`) without the head netviz may have put
    on it: a head attached to the view then leaves ``model`` as it is."""
    from netviz.views import module_view

    view = module_view(model)
    handle = view.__dict__.pop("netviz_head_handle", None)
    if handle is not None:  # the handle points into the model's hook tables, not the view's
        for table in ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called"):
            getattr(view, table, {}).pop(handle.id, None)
    view.__dict__.pop("netviz_head", None)
    return view


@contextlib.contextmanager
def headed(model: nn.Module, head: Head | None = None) -> Iterator[nn.Module]:
    """``model`` answering with (N, K) class scores: the model itself when it carries a head and
    no other is asked for; otherwise a view of it with ``head`` (default: the only tensor it
    returns) attached, so a tuple output is one clear line and the user's module never changes."""
    current = getattr(model, "netviz_head", None)
    if isinstance(current, Head) and (head is None or head == current):
        yield model
        return
    yield attach(headless_view(model), head or Head())


def head_of(model: nn.Module | None) -> Head:
    """The head attached to ``model`` (the default when none is)."""
    head = getattr(model, "netviz_head", None)
    return head if isinstance(head, Head) else Head()


def is_head_hook(hook: Any) -> bool:
    return getattr(hook, "netviz_head", None) is not None
