"""An ONNX file, converted by onnx2torch and checked against onnxruntime: ``path/to/model.onnx``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from netviz.kinds import Kind, absolute_path


def _matches(ref: Any) -> bool:
    return isinstance(ref, str) and ref.lower().endswith(".onnx")


def _build(source: Any, num_classes: int | None) -> tuple[Any, dict[str, Any]]:
    from netviz.onnx_models import convert, input_shape, load_onnx

    proto = load_onnx(str(source.ref))  # read and checked once
    shape = input_shape(proto)
    return convert(proto, str(source.ref)), {"input_size": shape} if shape is not None else {}


def _note(path: str, model: Any, shape: Sequence[int]) -> str:
    """How far the converted model is from onnxruntime on one seeded random input."""
    import torch

    from netviz.onnx_models import runtime_difference

    x = torch.rand((1, *shape), generator=torch.Generator().manual_seed(0))
    diff = runtime_difference(path, model, x)
    if diff != diff:  # NaN
        return f"{Path(path).name}: converted by onnx2torch (onnxruntime could not check it)"
    return (f"{Path(path).name}: converted by onnx2torch; its largest difference to onnxruntime on one "
            f"random input is {diff:.2g}")


KIND = Kind("onnx", order=3, form="path/to/model.onnx",
            meaning="an ONNX file, converted by onnx2torch and checked against onnxruntime (pip install "
                    "'netviz[onnx]')",
            matches=_matches, build=_build, short_name=lambda ref: Path(str(ref)).name, absolute=absolute_path,
            note=_note)
