"""ONNX files as models: converted to PyTorch by onnx2torch (``pip install 'netviz[onnx]'``), then
run beside onnxruntime once so the user knows how faithful the conversion is."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from netviz.errors import NetvizError, first_line

if TYPE_CHECKING:
    import torch
    from onnx import ModelProto
    from torch import nn

INSTALL = "pip install 'netviz[onnx]'"


def load_onnx(path: str | Path) -> ModelProto:
    """The ONNX ModelProto in ``path``, or one line saying why not."""
    try:
        import onnx
    except ImportError as exc:
        raise NetvizError(f"ONNX models need onnx, onnx2torch and onnxruntime: {INSTALL}") from exc
    path = Path(path).expanduser()
    if not path.is_file():
        raise NetvizError(f"ONNX file {path} does not exist")
    try:
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise NetvizError(f"{path} is not an ONNX model onnx can read ({type(exc).__name__}: "
                          f"{first_line(exc)[:160]})") from exc
    return proto


def _unconvertible(proto) -> str | None:
    """The first node onnx2torch has no converter for, in words."""
    from onnx2torch.node_converters.registry import get_converter

    opsets = {o.domain: o.version for o in proto.opset_import}
    for node in proto.graph.node:
        try:
            get_converter(operation_type=node.op_type, version=opsets.get(node.domain, 1), domain=node.domain)
        except NotImplementedError:
            return (f"node '{node.name or node.op_type}' ({node.op_type}, opset {opsets.get(node.domain, 1)}) "
                    "has no onnx2torch converter (export with an older opset, e.g. torch.onnx.export(..., "
                    "opset_version=17))")
    return None


def convert(proto: ModelProto, path: str | Path) -> nn.Module:
    """The PyTorch module onnx2torch makes of ``proto``, read from ``path`` (:func:`load_onnx`)."""
    try:
        from onnx2torch import convert as to_torch
    except ImportError as exc:
        raise NetvizError(f"ONNX models need onnx2torch: {INSTALL}") from exc
    missing = _unconvertible(proto)
    if missing:
        raise NetvizError(f"cannot convert {path}: {missing}")
    try:
        return to_torch(proto)
    except Exception as exc:
        raise NetvizError(f"onnx2torch cannot convert {path}: {type(exc).__name__}: {first_line(exc)[:160]}") from exc


def input_shape(proto: ModelProto) -> tuple[int, int, int] | None:
    """(C, H, W) of the graph's first input when the file fixes them."""
    initialisers = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initialisers]
    if not inputs:
        return None
    dims = inputs[0].type.tensor_type.shape.dim
    values = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if len(values) != 4 or any(v is None or v < 1 for v in values[1:]):
        return None
    return tuple(values[1:])  # type: ignore[return-value]


def runtime_difference(path: str | Path, model: nn.Module, x: torch.Tensor) -> float:
    """The largest |difference| between the converted model and onnxruntime on ``x`` (the first
    output of each); NaN when onnxruntime is missing or cannot run the file."""
    import torch

    try:
        import onnxruntime
    except ImportError:
        return float("nan")
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        want = torch.from_numpy(session.run(None, {name: x.cpu().numpy()})[0])
    except Exception:
        return float("nan")
    from netviz.heads import raw_outputs

    with raw_outputs(model), torch.no_grad():  # the converted model's own output, as onnxruntime's
        got = model(x)
    got = got[0] if isinstance(got, (tuple, list)) else got
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        return float("nan")
    return float((got.float().cpu() - want.float()).abs().max())
