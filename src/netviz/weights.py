"""Weights from any common checkpoint file, loaded safely into a model.

A file may hold a bare state dict, or a dict holding it under ``state_dict``, ``model``,
``model_state_dict``, ``net``, ``ema`` or ``module`` (Lightning, timm, netviz, most training
scripts); its keys may carry ``module.`` (DataParallel/DDP), ``model.`` (Lightning) or
``_orig_mod.`` (torch.compile) prefixes, stripped only when that makes them match the model. A
``.safetensors`` file is read with safetensors. Pickles are loaded with ``weights_only=True``:
a checkpoint can never run code. Missing or unexpected keys and shape mismatches are an error
that names them; nothing is ever loaded in part.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz.errors import NetvizError

if TYPE_CHECKING:
    import torch
    from torch import nn

CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "net", "ema", "module")
PREFIXES = ("module.", "model.", "_orig_mod.")
SHOWN = 3  # keys named in an error


def read_checkpoint(path: str | os.PathLike) -> Any:
    """The object in a checkpoint file: safetensors, or a pickle read with ``weights_only=True``."""
    import torch

    path = Path(path).expanduser()
    if path.is_dir():
        raise NetvizError(f"weights {path} is a folder: pass a checkpoint file (.pt, .pth, .ckpt, "
                          ".safetensors)")
    if not path.is_file():
        raise NetvizError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise NetvizError("reading .safetensors needs safetensors: pip install safetensors") from exc
        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:
            raise NetvizError(f"{path} is not a readable safetensors file ({type(exc).__name__})") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" not in str(exc) and "global" not in str(exc):
            raise NetvizError(f"{path} is corrupt or not a PyTorch checkpoint") from exc
        raise NetvizError(
            f"refusing to load {path}: it holds pickled objects other than tensors, which could run "
            "code (netviz only loads weights_only checkpoints; save the state_dict instead)"
        ) from exc
    except Exception as exc:
        raise NetvizError(f"{path} is corrupt or not a PyTorch checkpoint ({type(exc).__name__})") from exc


def _is_state_dict(obj: Any) -> bool:
    import torch

    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(k, str) for k in obj)
            and all(isinstance(v, torch.Tensor) for v in obj.values()))


def find_state_dict(obj: Any, source: str = "the checkpoint") -> dict[str, torch.Tensor]:
    """The state dict inside a loaded checkpoint (bare, or under one of :data:`CONTAINER_KEYS`)."""
    if _is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in CONTAINER_KEYS:
            if key in obj and _is_state_dict(obj[key]):
                return dict(obj[key])
        for key in CONTAINER_KEYS:  # one level deeper, e.g. {"model": {"state_dict": ...}}
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                for sub in CONTAINER_KEYS:
                    if sub in inner and _is_state_dict(inner[sub]):
                        return dict(inner[sub])
        keys = ", ".join(map(str, list(obj)[:6]))
        raise NetvizError(f"found no weights in {source}: it is a dict with keys {keys}, none of which "
                          f"holds a state dict ({', '.join(CONTAINER_KEYS)})")
    raise NetvizError(f"found no weights in {source}: it holds a {type(obj).__name__}, not a state dict")


def match_keys(state: dict[str, torch.Tensor], wanted: set[str]) -> dict[str, torch.Tensor]:
    """``state`` with DataParallel/Lightning/torch.compile prefixes stripped where that makes its
    keys match ``wanted`` (the model's); unchanged when nothing strips to a better match."""
    best, best_hits = state, len(wanted & set(state))
    current = state
    for _ in range(len(PREFIXES) + 1):  # prefixes can stack: model.module._orig_mod.conv.weight
        improved = False
        for prefix in PREFIXES:
            if all(k.startswith(prefix) for k in current):
                candidate = {k[len(prefix):]: v for k, v in current.items()}
                hits = len(wanted & set(candidate))
                if hits > best_hits:
                    best, best_hits = candidate, hits
                current, improved = candidate, True
                break
        if not improved:
            break
    return best


def _shape(t: Any) -> str:
    return "x".join(map(str, tuple(t.shape))) or "scalar"


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model`` exactly: every key, every shape, or a clear error."""
    own = model.state_dict()
    state = match_keys(dict(state), set(own))
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [(k, state[k], own[k]) for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s) ({', '.join(missing[:SHOWN])}"
                        f"{', ...' if len(missing) > SHOWN else ''})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s) ({', '.join(unexpected[:SHOWN])}"
                        f"{', ...' if len(unexpected) > SHOWN else ''})")
    if wrong:
        shown = ", ".join(f"{k}: {_shape(a)} in the file, {_shape(b)} in the model" for k, a, b in wrong[:SHOWN])
        problems.append(f"{len(wrong)} shape mismatch(es) ({shown}{', ...' if len(wrong) > SHOWN else ''})")
    if problems:
        raise NetvizError(f"the weights in {source} do not fit the model: {'; '.join(problems)}")
    model.load_state_dict(state, strict=True)


def load_weights_file(model: nn.Module, path: str | os.PathLike) -> None:
    """Read ``path`` (any layout above) and load it into ``model``, all or nothing."""
    obj = read_checkpoint(path)
    load_state(model, find_state_dict(obj, str(path)), str(path))
