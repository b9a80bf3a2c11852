"""Exact incremental inference for occlusion (Krypton: Nakandala et al., SIGMOD 2019).

Hiding a window changes only the part of each layer's output that the window's receptive field
reaches. The model is traced (``torch.fx``) and run once on the clean images, keeping every
layer's output; each occluded copy is then a :class:`Patched` value, the clean output plus a box
that differs, and every convolution and pooling recomputes only the box its input's box reaches
(zero-padded as the layer pads), pointwise layers only the box, and a residual sum the union of
its operands' boxes. Where a layer cannot be bounded (global pooling, flatten, attention, a
layer this module does not know) the copies are made whole there and the rest of the model runs
on them as usual: the maps are those of full passes, within float rounding.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

# layers that act on each position alone (eval mode): the box of their output is their input's
POINTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
                     nn.Hardswish, nn.Hardsigmoid, nn.Mish, nn.Softplus, nn.Identity, nn.Dropout,
                     nn.Dropout2d, nn.BatchNorm2d)
POINTWISE_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, F.hardswish,
                       F.hardsigmoid, F.mish, F.softplus, torch.sigmoid, torch.tanh, F.sigmoid, F.tanh}
POINTWISE_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone"}
BINARY_FUNCTIONS = {operator.add, operator.iadd, operator.mul, operator.imul, operator.sub,
                    operator.truediv, torch.add, torch.mul, torch.sub}
BINARY_METHODS = {"add", "add_", "mul", "mul_", "sub", "sub_"}


class NotTraceable(Exception):
    """The model cannot be traced: occlusion runs full passes."""


@dataclass
class Clean:
    """A layer's output on the clean images (N, C, H, W), and its padded copies."""

    value: torch.Tensor
    padded: dict[tuple[int, int, float], torch.Tensor] = field(default_factory=dict)

    def pad(self, ph: int, pw: int, fill: float) -> torch.Tensor:
        if not (ph or pw):
            return self.value
        key = (ph, pw, fill)
        if key not in self.padded:
            self.padded[key] = F.pad(self.value, (pw, pw, ph, ph), value=fill)
        return self.padded[key]


@dataclass
class Patched:
    """B occluded copies of a layer's output: row b equals ``clean[img[b]]`` except in the box
    ``[top, top + h) x [left, left + w)``, which holds ``patch[b]``."""

    clean: Clean
    img: torch.Tensor
    top: torch.Tensor
    left: torch.Tensor
    patch: torch.Tensor

    def with_patch(self, clean: Clean, patch: torch.Tensor) -> Patched:
        return Patched(clean, self.img, self.top, self.left, patch)

    def box(self, top: torch.Tensor, left: torch.Tensor, h: int, w: int, pad: tuple[int, int] = (0, 0),
            fill: float = 0.0) -> torch.Tensor:
        """The copies over the box at (top, left) of size h x w, in coordinates padded by ``pad``
        with ``fill``: (B, C, h, w), channels-last in memory."""
        ph, pw = self.patch.shape[2:]
        if pad == (0, 0) and (h, w) == (ph, pw) and torch.equal(top, self.top) and torch.equal(left, self.left):
            return self.patch
        dev = self.patch.device
        rows = top[:, None] + torch.arange(h, device=dev)
        cols = left[:, None] + torch.arange(w, device=dev)
        values = self.clean.pad(*pad, fill)[self.img[:, None, None], :, rows[:, :, None], cols[:, None, :]]
        pr, pc = rows - pad[0] - self.top[:, None], cols - pad[1] - self.left[:, None]
        inside = (((pr >= 0) & (pr < ph))[:, :, None] & ((pc >= 0) & (pc < pw))[:, None, :])[..., None]
        b = torch.arange(len(self.img), device=dev)[:, None, None]
        patch = self.patch[b, :, pr.clamp(0, ph - 1)[:, :, None], pc.clamp(0, pw - 1)[:, None, :]]
        return torch.where(inside, patch, values).permute(0, 3, 1, 2)

    def whole(self) -> torch.Tensor:
        h, w = self.clean.value.shape[2:]
        zero = torch.zeros_like(self.top)
        return self.box(zero, zero, h, w)


def gather_box(t: torch.Tensor, index: torch.Tensor, top: torch.Tensor, left: torch.Tensor, h: int, w: int
               ) -> torch.Tensor:
    """``t[index[b], :, top[b]:top[b] + h, left[b]:left[b] + w]`` for every b: (B, C, h, w)."""
    rows = top[:, None] + torch.arange(h, device=t.device)
    cols = left[:, None] + torch.arange(w, device=t.device)
    return t[index[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


@dataclass
class Batched:
    """B whole copies of a value that depends on the input (after a layer that could not be bounded)."""

    value: Any


def _ceil_div(a: torch.Tensor, b: int) -> torch.Tensor:
    return -torch.div(-a, b, rounding_mode="floor")


def _span(start: torch.Tensor, h: int, size: int, k: int, s: int, p: int, d: int
          ) -> tuple[int, torch.Tensor, int]:
    """Along one dimension of a window layer: (output span, its start per copy, input rows it reads).
    The span holds every output whose window meets the input box ``[start, start + h)``; it has
    one size for all copies and is shifted inside the map at its borders."""
    out = (size + 2 * p - d * (k - 1) - 1) // s + 1
    span = min(out, (h - 1 + d * (k - 1)) // s + 1)
    first = _ceil_div(start + p - d * (k - 1), s).clamp(0, out - span)
    return span, first, (span - 1) * s + d * (k - 1) + 1


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def windowed(v: Patched, out: Clean, kernel: Any, stride: Any, padding: Any, dilation: Any, fill: float,
             op: Any) -> Patched:
    """A convolution or pooling over the box its input's box reaches; ``op`` runs it unpadded."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (_pair(kernel), _pair(stride), _pair(padding),
                                              _pair(dilation))
    height, width = v.clean.value.shape[2:]
    bh, bw = v.patch.shape[2:]
    spans_h, first_h, need_h = _span(v.top, bh, height, kh, sh, ph, dh)
    spans_w, first_w, need_w = _span(v.left, bw, width, kw, sw, pw, dw)
    x = v.box(first_h * sh, first_w * sw, need_h, need_w, (ph, pw), fill)
    return Patched(out, v.img, first_h, first_w, op(x))


def union(a: Patched, b: Patched, out: Clean, op: Any) -> Patched:
    """An elementwise op of two patched values over the union of their boxes."""
    height, width = out.value.shape[2:]
    (ah, aw), (bh, bw) = a.patch.shape[2:], b.patch.shape[2:]
    if (ah, aw) == (bh, bw) and torch.equal(a.top, b.top) and torch.equal(a.left, b.left):
        return a.with_patch(out, op(a.patch, b.patch))
    top, left = torch.minimum(a.top, b.top), torch.minimum(a.left, b.left)
    h = min(height, int((torch.maximum(a.top + ah, b.top + bh) - top).max()))
    w = min(width, int((torch.maximum(a.left + aw, b.left + bw) - left).max()))
    top, left = top.clamp(max=height - h), left.clamp(max=width - w)
    return Patched(out, a.img, top, left, op(a.box(top, left, h, w), b.box(top, left, h, w)))


def _per_channel(c: Any) -> bool:
    """A constant that acts on every position alike (a number, or a tensor broadcast over H, W)."""
    if isinstance(c, (int, float, bool)):
        return True
    return (isinstance(c, torch.Tensor) and c.ndim <= 4 and (c.ndim < 2 or c.shape[-2:] == (1, 1))
            and (c.ndim < 4 or c.shape[0] == 1))


class Incremental:
    """A traced model that runs occluded copies of its images by recomputing boxes."""

    def __init__(self, model: nn.Module) -> None:
        from netviz.heads import is_head_hook

        self.heads = [h for h in model._forward_hooks.values() if is_head_hook(h)]
        hooked = [name or "the model" for name, m in model.named_modules()
                  if m._forward_pre_hooks or any(h not in self.heads for h in m._forward_hooks.values())]
        if hooked:  # tracing would leave them out
            raise NotTraceable(f"{hooked[0]} has a forward hook")
        try:
            self.graph = fx.symbolic_trace(model)
        except Exception as e:  # any failure to trace: control flow on values, unsupported calls
            raise NotTraceable(f"the model does not trace with torch.fx ({type(e).__name__})") from e
        self.modules = dict(self.graph.named_modules())
        nodes = list(self.graph.graph.nodes)
        inputs = [n for n in nodes if n.op == "placeholder"]
        if len(inputs) != 1:
            raise NotTraceable(f"the traced model takes {len(inputs)} inputs, not one")
        self.input = inputs[0]
        self.depends: set[fx.Node] = {self.input}
        for n in nodes:
            if any(a in self.depends for a in n.all_input_nodes):
                self.depends.add(n)
        self.nodes = nodes
        self.whole_from: dict[str, None] = {}  # layers where copies were made whole (ordered)

    def clean(self, x: torch.Tensor) -> dict[fx.Node, Any]:
        """Every node's value on the clean images (copies: an in-place layer cannot change them),
        before the head."""
        env: dict[fx.Node, Any] = {}
        for n in self.nodes:
            if n.op == "output":
                break
            value = x if n is self.input else self._call(n, *_resolved(n, env))
            env[n] = value.clone() if isinstance(value, torch.Tensor) else value
        return env

    def run(self, clean: dict[fx.Node, Any], first: Patched) -> Any:
        """The model's output for the occluded copies whose input is ``first``."""
        cleans = {n: Clean(v) for n, v in clean.items() if isinstance(v, torch.Tensor) and v.ndim == 4}
        env: dict[fx.Node, Any] = {}
        for n in self.nodes:
            if n.op == "output":
                out = fx.node.map_aggregate(fx.node.map_arg(n.args[0], env.__getitem__), _unwrap)
                # the head reads the output as the hooked model would, knowing only the input's shape
                size = (len(first.img), *first.clean.value.shape[1:])
                for head in self.heads:
                    out = head(self.graph, (torch.empty(size, device="meta"),), out)
                return out
            if n not in self.depends:
                env[n] = clean[n]
            elif n is self.input:
                env[n] = first
            else:
                env[n] = self._step(n, env, cleans.get(n))
        raise NotTraceable("the traced model has no output")

    def _call(self, n: fx.Node, args: tuple, kwargs: dict) -> Any:
        if n.op == "get_attr":
            return operator.attrgetter(n.target)(self.graph)
        if n.op == "call_module":
            return self.modules[n.target](*args, **kwargs)
        if n.op == "call_function":
            return n.target(*args, **kwargs)
        return getattr(args[0], n.target)(*args[1:], **kwargs)

    def _step(self, n: fx.Node, env: dict[fx.Node, Any], out: Clean | None) -> Any:
        args, kwargs = _resolved(n, env)
        if out is not None:
            done = self._patched(n, args, kwargs, out)
            if done is not None:
                return done
        size = self._size(n, args)
        if size is not None:
            return size
        if any(isinstance(a, Patched) for a in _flat(args, kwargs)):
            self.whole_from.setdefault(_describe(n, self.modules), None)
        value = self._call(n, fx.node.map_aggregate(args, _unwrap), fx.node.map_aggregate(kwargs, _unwrap))
        return fx.node.map_aggregate(value, lambda v: Batched(v) if isinstance(v, torch.Tensor) else v)

    def _patched(self, n: fx.Node, args: tuple, kwargs: dict, out: Clean) -> Patched | None:
        """The node run on patched values, or None when it cannot be bounded."""
        first = args[0] if args else None
        if n.op == "call_module" and isinstance(first, Patched) and len(args) == 1 and not kwargs:
            return _module(self.modules[n.target], first, out)
        if n.op == "call_function":
            if n.target in POINTWISE_FUNCTIONS and isinstance(first, Patched) and _constants(args[1:], kwargs):
                return first.with_patch(out, n.target(first.patch, *args[1:], **kwargs))
            if n.target in POOLS and isinstance(first, Patched) and _constants(args[1:], kwargs):
                return _pool(n.target, first, out, args[1:], kwargs)
            if n.target in BINARY_FUNCTIONS and len(args) == 2:
                return _binary(lambda a, b: n.target(a, b, **kwargs), args[0], args[1], out)
        if n.op == "call_method":
            if n.target in POINTWISE_METHODS and isinstance(first, Patched) and _constants(args[1:], kwargs):
                return first.with_patch(out, getattr(first.patch, n.target)(*args[1:], **kwargs))
            if n.target in BINARY_METHODS and len(args) == 2 and _constants((), kwargs):
                op = n.target.rstrip("_")
                return _binary(lambda a, b: getattr(a, op)(b, **kwargs), args[0], args[1], out)
        return None

    @staticmethod
    def _size(n: fx.Node, args: tuple) -> Any:
        """``x.size()``, ``x.shape`` and ``x.dim()`` of patched copies, without making them whole."""
        first = args[0] if args else None
        if not isinstance(first, Patched):
            return None
        shape = torch.Size((len(first.img), *first.clean.value.shape[1:]))
        if n.op == "call_method" and n.target == "size":
            return shape if len(args) == 1 else shape[args[1]]
        if n.op == "call_method" and n.target == "dim":
            return len(shape)
        if n.op == "call_function" and n.target is getattr and args[1:] == ("shape",):
            return shape
        return None


def _module(m: nn.Module, v: Patched, out: Clean) -> Patched | None:
    if out.value.shape[1:] == v.clean.value.shape[1:] and isinstance(m, POINTWISE_MODULES):
        if isinstance(m, (nn.Dropout, nn.Dropout2d, nn.BatchNorm2d)) and m.training:
            return None
        return v.with_patch(out, m(v.patch))
    if isinstance(m, nn.Conv2d) and m.padding_mode == "zeros" and not isinstance(m.padding, str):
        return windowed(v, out, m.kernel_size, m.stride, m.padding, m.dilation, 0.0,
                        lambda x: F.conv2d(x, m.weight, m.bias, m.stride, 0, m.dilation, m.groups))
    if isinstance(m, nn.MaxPool2d) and not m.ceil_mode and not m.return_indices:
        return windowed(v, out, m.kernel_size, m.stride, m.padding, m.dilation, float("-inf"),
                        lambda x: F.max_pool2d(x, m.kernel_size, m.stride, 0, m.dilation))
    if isinstance(m, nn.AvgPool2d) and not m.ceil_mode and m.count_include_pad:
        return windowed(v, out, m.kernel_size, m.stride, m.padding, 1, 0.0,
                        lambda x: F.avg_pool2d(x, m.kernel_size, m.stride, 0, False, True,
                                               m.divisor_override))
    return None


POOLS = {F.max_pool2d: ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
         F.avg_pool2d: ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")}


def _pool(fn: Any, v: Patched, out: Clean, args: tuple, kwargs: dict) -> Patched | None:
    """``F.max_pool2d`` and ``F.avg_pool2d`` called in a model's forward, as their modules."""
    names = POOLS[fn]
    if len(args) > len(names) or set(kwargs) - set(names):
        return None
    given = {**dict(zip(names, args, strict=False)), **kwargs}
    if fn is F.max_pool2d:
        module: nn.Module = nn.MaxPool2d(**given)
    else:
        module = nn.AvgPool2d(**given)
    return _module(module, v, out)


def _binary(op: Any, a: Any, b: Any, out: Clean) -> Patched | None:
    if isinstance(a, Patched) and isinstance(b, Patched):
        if a.clean.value.shape[1:] == b.clean.value.shape[1:] == out.value.shape[1:]:
            return union(a, b, out, op)
        return None
    if isinstance(a, Patched) and _per_channel(b) and out.value.shape[1:] == a.clean.value.shape[1:]:
        return a.with_patch(out, op(a.patch, b))
    if isinstance(b, Patched) and _per_channel(a) and out.value.shape[1:] == b.clean.value.shape[1:]:
        return b.with_patch(out, op(a, b.patch))
    return None


def _resolved(n: fx.Node, env: dict[fx.Node, Any]) -> tuple[tuple, dict]:
    return fx.node.map_arg(n.args, env.__getitem__), fx.node.map_arg(n.kwargs, env.__getitem__)


def _constants(args: tuple, kwargs: dict) -> bool:
    return not any(isinstance(a, (Patched, Batched)) for a in _flat(args, kwargs))


def _flat(args: Any, kwargs: Any) -> list[Any]:
    found: list[Any] = []
    fx.node.map_aggregate((args, kwargs), lambda v: found.append(v) or v)
    return found


def _unwrap(v: Any) -> Any:
    if isinstance(v, Patched):
        return v.whole()
    if isinstance(v, Batched):
        return v.value
    return v


def _describe(n: fx.Node, modules: dict[str, nn.Module]) -> str:
    if n.op == "call_module":
        return f"{n.target} ({type(modules[n.target]).__name__})"
    name = getattr(n.target, "__name__", str(n.target))
    return f"{n.name} ({name})"
