"""Layer addressing and activation capture: the one way every command names a layer.

A layer is addressed by its dotted module name (``conv3``, ``features.3``, ``layer2.0.conv1``) or
by its layer number: the modules that hold weights (convolutions, linear layers, norms) are
numbered from 1 in model order, as papers and the 2018 post count them ("layers 3, 6 and 9" of
the all-conv net are ``conv3``, ``conv6``, ``conv9``); negative numbers count from the end. Modules
without weights (ReLU, pooling, containers) are addressed by name. ``netviz layers`` prints both.
A number that is itself a module name (children of a plain ``nn.Sequential``) means that module.
Hooks only ever live inside the context managers here, and are removed on exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netviz.errors import NetvizError, close_matches

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.tokens import Grid


@dataclass(frozen=True)
class LayerInfo:
    index: int | None  # the layer number (1-based, weight layers only), None for other modules
    name: str
    type: str
    output_shape: tuple[int, ...] | None  # without the batch dimension; None if never called
    params: int  # parameters of the module and its children


def _named_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if name]


def own_weights(module: nn.Module) -> list[torch.Tensor]:
    """A module's own parameters; for a module with none, its floating-point buffers (an ONNX
    conversion keeps some weights as buffers). BatchNorm's running statistics are not weights."""
    from torch.nn.modules.batchnorm import _NormBase

    params = list(module.parameters(recurse=False))
    if params or isinstance(module, _NormBase):
        return params
    return [b for b in module.buffers(recurse=False) if b.is_floating_point()]


def _holds_weights(module: nn.Module) -> bool:
    return bool(own_weights(module))


def weight_layers(model: nn.Module) -> list[str]:
    """Names of the numbered layers: layer number k is ``weight_layers(model)[k - 1]``."""
    return [name for name, m in _named_layers(model) if _holds_weights(m)]


def _first_tensor(output: object) -> torch.Tensor | None:
    import torch

    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    # torchvision's GoogLeNetOutputs / InceptionOutputs are namedtuples, handled above
    return None


def list_layers(model: nn.Module, input_shape: Sequence[int] | None = None) -> list[LayerInfo]:
    """Every addressable module in order, with its output shape from one dummy forward pass."""
    import torch

    named = _named_layers(model)
    shapes: dict[str, tuple[int, ...]] = {}
    if input_shape is not None:
        from netviz.device import model_device

        x = torch.zeros(1, *input_shape, device=model_device(model))
        with capture_activations(model, [n for n, _ in named], maps=False) as acts, torch.no_grad():
            model(x)
        shapes = {n: tuple(t.shape[1:]) for n, t in acts.items()}
    numbers = {name: k for k, name in enumerate(weight_layers(model), start=1)}
    return [
        LayerInfo(numbers.get(name), name, type(m).__name__, shapes.get(name),
                  sum(w.numel() for sub in m.modules() for w in own_weights(sub)))
        for name, m in named
    ]


def resolve_layer(model: nn.Module, ref: str | int) -> str:
    """The dotted name of layer ``ref``: a module name, or a layer number as ``netviz layers`` prints."""
    names = [n for n, _ in _named_layers(model)]
    if not names:
        raise NetvizError("the model has no layers to address")
    text = str(ref).strip()
    if text in names:
        return text
    try:
        number = int(text)
    except ValueError:
        raise NetvizError(
            f"unknown layer '{text}'{close_matches(text, names)} (run `netviz layers` to list them)"
        ) from None
    numbered = weight_layers(model)
    n = len(numbered)
    if number == 0 or not -n <= number <= n:
        raise NetvizError(
            f"layer index {number} is out of range: layer numbers are 1..{n} (or -{n}..-1), "
            "counting the layers that hold weights; other modules go by name "
            "(run `netviz layers` to see both)"
        )
    return numbered[number - 1 if number > 0 else number]


def resolve_layers(model: nn.Module, refs: str | Sequence[str | int]) -> list[str]:
    """Resolve a comma-separated string or a list of refs, keeping order and dropping repeats."""
    items = [r for r in refs.split(",") if r.strip()] if isinstance(refs, str) else list(refs)
    out: list[str] = []
    for ref in items:
        name = resolve_layer(model, ref)
        if name not in out:
            out.append(name)
    return out


class _StopForward(Exception):
    """Raised by a hook to end a forward pass once the last wanted layer has run."""


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the block (dropout off), then every module's own mode back as it was."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def layer_grid(model: nn.Module, shape: Sequence[int], input_hw: Sequence[int]) -> Grid | None:
    """How a layer output of ``shape`` (without the batch) reads as channels x height x width
    under the model's ``--reshape`` (see :mod:`netviz.tokens`); None: it is not a map."""
    from netviz.heads import head_of
    from netviz.tokens import grid_of

    return grid_of(shape, input_hw, head_of(model).reshape)


@contextlib.contextmanager
def capture_activations(
    model: nn.Module, layers: Sequence[str], detach: bool = True, maps: bool = True
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of ``layers`` (dotted names) during forward passes inside the block.

    Yields a dict that each forward pass fills (name -> output tensor). With ``detach=False`` the
    tensors stay in the autograd graph, for objectives on inner activations. With ``maps`` a
    transformer's tokens or a channels-last output is recorded as (N, C, H, W) (a view of it).
    """
    store: dict[str, torch.Tensor] = {}
    handles = []
    input_hw: list[tuple[int, ...]] = [()]

    def see_input(module: nn.Module, args: tuple) -> None:
        if args and hasattr(args[0], "shape") and args[0].ndim == 4:
            input_hw[0] = tuple(args[0].shape[-2:])

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            tensor = _first_tensor(output)
            if tensor is not None:
                # clone: a later in-place op (ReLU(inplace=True) after a BatchNorm in
                # torchvision models) would otherwise overwrite the recorded output
                tensor = tensor.detach().clone() if detach else tensor
                grid = layer_grid(model, tensor.shape[1:], input_hw[0]) if maps and input_hw[0] else None
                store[name] = grid.to_map(tensor) if grid is not None else tensor

        return hook

    try:
        if maps:
            handles.append(model.register_forward_pre_hook(see_input))
        for name in layers:
            handles.append(model.get_submodule(name).register_forward_hook(make_hook(name)))
        yield store
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def outputs_replaced(model: nn.Module, types: tuple[type, ...],
                     replace: Callable[[nn.Module, torch.Tensor], torch.Tensor]) -> Iterator[int]:
    """Inside the block every module of exactly one of ``types`` returns ``replace(module, z)``, ``z``
    being its input; yields how many modules. For activations whose forward value stays the same
    but whose backward is swapped (guided backprop, Lucid's redirected ReLU). Modules only: a
    functional ``F.relu`` in a forward is left as it is."""
    inputs: dict[int, list] = {}
    handles = []

    def pre_hook(module: nn.Module, args: tuple) -> None:
        z = args[0]
        # an in-place activation overwrites its input: keep the pre-activation
        inputs.setdefault(id(module), []).append(z.clone() if getattr(module, "inplace", False) else z)

    def hook(module: nn.Module, args: tuple, output: object) -> object:
        return replace(module, inputs[id(module)].pop())

    try:
        for m in model.modules():
            if type(m) in types:
                handles.append(m.register_forward_pre_hook(pre_hook))
                handles.append(m.register_forward_hook(hook))
        yield len(handles) // 2
    finally:
        for h in handles:
            h.remove()


PLAIN_RELU_NODES = ("ReluBackward", "ThresholdBackward", "Relu6Backward", "HardtanhBackward")


def plain_relus(model: nn.Module, sample: torch.Tensor) -> int:
    """How many ReLUs one forward pass of ``sample`` still back-propagates the plain way: inside
    :func:`outputs_replaced` these are the ReLUs no module swap reached (``F.relu``,
    ``torch.relu``, ``x.clamp``-free ReLU ops in the forward), read off the autograd graph."""
    import torch

    from netviz.device import model_device

    x = sample[:1].detach().to(model_device(model)).requires_grad_(True)
    with torch.enable_grad():
        out = model(x)
    seen, stack, count = set(), [out.grad_fn], 0
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        count += node.name().startswith(PLAIN_RELU_NODES)
        stack.extend(next_fn for next_fn, _ in node.next_functions)
    return count


@contextlib.contextmanager
def layer_tapped(model: nn.Module, name: str,
                 replace: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """Inside the block each forward pass puts layer ``name``'s output, in the autograd graph, in
    the yielded dict under ``"output"`` (gradients can be taken with respect to it); with
    ``replace`` the layer returns ``replace(output)`` instead, and that is what is kept. The rest of
    the model gets a copy, so a later in-place op (``ReLU(inplace=True)``) cannot change it."""
    store: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, inputs: object, output: object) -> object:
        import torch

        if not isinstance(output, torch.Tensor):
            raise NetvizError(f"layer {name} returns {type(output).__name__}, not a tensor: pick another layer")
        store["output"] = replace(output) if replace is not None else output
        return store["output"].clone()

    handle = model.get_submodule(name).register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def forward_to(model: nn.Module, x: torch.Tensor, layers: Sequence[str], detach: bool = True,
               maps: bool = True) -> dict[str, torch.Tensor]:
    """Run ``model`` on ``x`` only as far as needed to get the outputs of ``layers`` (``maps``: a
    token or channels-last output as (N, C, H, W), as :func:`capture_activations`)."""
    wanted = set(layers)

    with capture_activations(model, layers, detach=detach, maps=maps) as store:
        stop_handles = []

        def stop_hook(module: nn.Module, inputs: object, output: object) -> None:
            if wanted.issubset(store):
                raise _StopForward

        try:
            for name in layers:
                stop_handles.append(model.get_submodule(name).register_forward_hook(stop_hook))
            with contextlib.suppress(_StopForward):
                model(x)
        finally:
            for handle in stop_handles:
                handle.remove()
    missing = wanted.difference(store)
    if missing:
        raise NetvizError(f"layer(s) {', '.join(sorted(missing))} produced no tensor output")
    return {name: store[name] for name in layers}


def has_hooks(model: nn.Module) -> bool:
    """True if any module still carries a forward/backward hook (tests use this); the model's
    head (:func:`netviz.heads.attach`) is part of the model as netviz opens it, not counted."""
    from netviz.heads import is_head_hook

    return any(
        any(not is_head_hook(h) for h in m._forward_hooks.values()) or m._forward_pre_hooks or m._backward_hooks
        or getattr(m, "_backward_pre_hooks", None)
        for m in model.modules()
    )


def format_layer_table(infos: Sequence[LayerInfo]) -> str:
    """The text table `netviz layers` prints: index, name, type, output shape, parameters."""
    rows = [("layer", "name", "type", "output shape", "params")]
    for i in infos:
        shape = "x".join(map(str, i.output_shape)) if i.output_shape is not None else "-"
        rows.append((str(i.index) if i.index is not None else "", i.name, i.type, shape, f"{i.params:,}"))
    widths = [max(len(r[k]) for r in rows) for k in range(5)]
    lines = []
    for r in rows:
        left = "  ".join(r[k].ljust(widths[k]) for k in (1, 2, 3))
        lines.append(f"{r[0].rjust(widths[0])}  {left}  {r[4].rjust(widths[4])}".rstrip())
    return "\n".join(lines)


NO_OP_TYPES = ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "Identity")


def execution_order(model: nn.Module, input_shape: Sequence[int], tensors_only: bool = False
                    ) -> list[tuple[str, tuple[int, ...]]]:
    """(name, output shape without the batch) of every module, in the order their forward passes
    end on one zero input (a module called twice is listed at its last call); ``tensors_only``:
    only modules that return one tensor of the one image (not MultiheadAttention's tuple, nor a
    detector's pooled regions, N x C x 7 x 7 for N proposals)."""
    import torch

    from netviz.device import model_device

    names = [n for n, _ in _named_layers(model)]
    order: dict[str, tuple[int, ...]] = {}
    handles = []

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            single = output if isinstance(output, torch.Tensor) else None
            tensor = single if tensors_only else _first_tensor(output)
            if tensor is not None and not (tensors_only and (tensor.ndim == 0 or tensor.shape[0] != 1)):
                order.pop(name, None)
                order[name] = tuple(tensor.shape[1:])
        return hook

    with eval_mode(model):
        try:
            for name in names:
                handles.append(model.get_submodule(name).register_forward_hook(make_hook(name)))
            with torch.no_grad():
                model(torch.zeros(1, *input_shape, device=model_device(model)))
        finally:
            for handle in handles:
                handle.remove()
    return list(order.items())


def grid_notes(model: nn.Module, layers: Sequence[str], input_shape: Sequence[int]) -> dict[str, str]:
    """How each of ``layers`` whose output is tokens or channels-last is read as maps, in words."""
    shapes = dict(execution_order(model, input_shape))
    grids = [(name, layer_grid(model, shapes[name], input_shape[-2:])) for name in layers if name in shapes]
    return {name: note for name, grid in grids if grid is not None and (note := grid.note(name))}


def last_spatial_layer(model: nn.Module, input_shape: Sequence[int], notes: list[str] | None = None,
                       within: str = "", maps_only: bool = False) -> str:
    """The last layer to run whose output is a map (channels x height x width, more than one
    position): where class-activation maps are usually read (pytorch-grad-cam's advice).

    In a transformer (token outputs) the last blocks' patch tokens no longer reach the class token:
    the default is then the last layer of the residual stream's width whose patch tokens still
    carry a gradient (ViT's ``blocks.11.norm1``, as pytorch-grad-cam advises), said in ``notes``.
    ``within``: only layers whose name starts so (a detector's ``backbone.``); ``maps_only``: only
    maps no larger than the input (a detector's anchors, 4 x 8400, are no image grid)."""
    order = execution_order(model, input_shape, tensors_only=True)  # a tuple cannot be tapped
    grids = {name: layer_grid(model, shape, input_shape[-2:]) for name, shape in order}
    spatial = [name for name, _ in order if grids[name] is not None
               and grids[name].height * grids[name].width > 1
               and type(model.get_submodule(name)).__name__ not in NO_OP_TYPES and name.startswith(within)
               and not (maps_only and (grids[name].layout == "tokens" or grids[name].height > input_shape[-2]
                                       or grids[name].width > input_shape[-1]))]
    if not spatial:
        raise NetvizError("the model has no layer with a spatial output (channels x height x width): "
                          "class-activation maps need one")
    tokens = [name for name in spatial if grids[name].layout == "tokens"]
    if not tokens or tokens[-1] != spatial[-1]:
        return spatial[-1]
    name = _last_token_layer_with_gradient(model, input_shape, tokens, dict(order))
    if notes is not None:
        notes.append(f"layer {name}: the last layer of the token stream whose patch tokens reach the "
                     "class score (later ones only feed the class token); pass --layer to choose")
    return name


def _last_token_layer_with_gradient(model: nn.Module, input_shape: Sequence[int], names: list[str],
                                    shapes: dict[str, tuple[int, ...]]) -> str:
    import collections

    import torch

    from netviz.device import model_device

    width = collections.Counter(shapes[n][-1] for n in names).most_common(1)[0][0]  # the residual stream's
    candidates = [n for n in names if shapes[n][-1] == width]
    # a seeded input of its own: the global random state (a command's --seed) is left untouched
    x = torch.randn(1, *input_shape, generator=torch.Generator().manual_seed(0)).to(model_device(model))
    with eval_mode(model), torch.enable_grad(), capture_activations(model, candidates, detach=False,
                                                                    maps=False) as store:
        out = model(x)
        grads = torch.autograd.grad(out[:, 0].sum(), [store[n] for n in candidates], allow_unused=True)
    for name, grad in zip(reversed(candidates), reversed(grads), strict=True):
        grid = layer_grid(model, shapes[name], input_shape[-2:])
        if grad is not None and grid is not None and bool(grid.to_map(grad).abs().sum() > 0):
            return name
    return candidates[-1]
