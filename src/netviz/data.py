"""Data sets as in-memory tensors: names, split strings, loading, normalisation, batches.

Data sets: ``mnist``, ``cifar10`` (torchvision's download into the data root) and
``imagefolder:PATH`` (one sub-folder per class). Splits: ``train``, ``test`` (``all`` for an image
folder), optionally sliced: ``test[:8000]``, ``test[8000:]``, ``train[:10%]``.
The data root is ``--data-dir``, else ``$NETVIZ_DATA``, else ``~/.cache/netviz/data``; missing
files are downloaded there unless ``NETVIZ_OFFLINE=1``.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz.errors import NetvizError
from netviz.network import offline

if TYPE_CHECKING:
    import torch

    from netviz.registry import ModelSpec

DATASETS = ("mnist", "cifar10", "imagefolder:PATH")
_SPLIT_RE = re.compile(r"^(\w+)(?:\[\s*(-?\d+%?)?\s*:\s*(-?\d+%?)?\s*\])?$")
_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass
class TensorData:
    """A labelled image set: ``images`` uint8 (N, C, H, W), in memory or, for a large image folder,
    read when indexed (:class:`netviz.folders.FolderImages`), ``labels`` int64 (N)."""

    images: torch.Tensor  # or FolderImages, which indexes as one
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str  # e.g. "mnist:test[8000:]"
    note: str | None = None  # e.g. that the model names the classes otherwise
    base: str = ""  # the split it was sliced from, e.g. "mnist:test" (one name per set of images)
    positions: range | None = None  # which images of ``base`` it holds

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def first(self, n: int) -> TensorData:
        """Its first ``n`` images (itself when it holds no more)."""
        if n >= len(self):
            return self
        return replace(self, images=take(self.images, slice(0, n)), labels=self.labels[:n], name=f"{self.name}[:{n}]",
                                   positions=self.positions[:n] if self.positions is not None else None)

    def subset(self, indices: torch.Tensor, what: str) -> TensorData:
        """The images at ``indices``, named as this set's ``what`` (e.g. "class 3")."""
        return replace(self, images=take(self.images, indices), labels=self.labels[indices], name=f"{self.name} {what}",
                       positions=None)

    def shared_with(self, other: TensorData) -> int:
        """How many images this and ``other`` both hold (slices of one base split can overlap)."""
        if self.positions is None or other.positions is None or self.base != other.base:
            return 0
        return len(set(self.positions) & set(other.positions))


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get("NETVIZ_DATA"):
        return Path(os.environ["NETVIZ_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "netviz" / "data"


def default_splits(dataset: str) -> tuple[str, str]:
    """(train split, eval split) used when none is given."""
    if dataset.startswith("imagefolder:"):
        from netviz.folders import has_splits

        return ("train", "test") if has_splits(Path(dataset.split(":", 1)[1])) else ("all[:80%]", "all[80%:]")
    return "train", "test"


def parse_split(split: str) -> tuple[str, str | None, str | None]:
    """``'test[:8000]'`` -> ``('test', None, '8000')``; raises a clear error when malformed."""
    m = _SPLIT_RE.match(split.strip())
    if not m:
        raise NetvizError(
            f"malformed split '{split}': use a split name with an optional slice, "
            "e.g. train, test[:8000], test[8000:] or train[:10%]"
        )
    for bound in (m.group(2), m.group(3)):
        if bound is not None and bound.endswith("%") and abs(int(bound[:-1])) > 100:
            raise NetvizError(f"split '{split}': {bound} is more than the whole split; a percentage "
                              "is between 0% and 100%")
    return m.group(1), m.group(2), m.group(3)


def _bound(text: str | None, n: int) -> int | None:
    if text is None:
        return None
    if text.endswith("%"):
        return round(int(text[:-1]) * n / 100)
    return int(text)


def slice_indices(split: str, n: int) -> range:
    _, start, stop = parse_split(split)
    return range(n)[slice(_bound(start, n), _bound(stop, n))]


def check_dataset(dataset: str) -> str:
    if dataset in ("mnist", "cifar10"):
        return dataset
    if dataset.startswith("imagefolder:") and len(dataset) > len("imagefolder:"):
        return "imagefolder"
    raise NetvizError(f"unknown dataset '{dataset}': use one of {', '.join(DATASETS)}")


def load_split(dataset: str, split: str, data_dir: str | os.PathLike | None = None,
               download: bool = True) -> TensorData:
    """Load one (sliced) split into memory. Only the files of that split need to be present."""
    import torch

    kind = check_dataset(dataset)
    base, _, _ = parse_split(split)
    root = data_root(data_dir)
    download = download and not offline()
    if kind == "mnist":
        images, labels, classes = _load_mnist(root, base, download)
    elif kind == "cifar10":
        images, labels, classes = _load_cifar10(root, base, download)
    else:
        images, labels, classes = _load_imagefolder(Path(dataset.split(":", 1)[1]), base)
    idx = slice_indices(split, len(labels))
    if len(idx) == 0:
        raise NetvizError(f"split '{split}' of {dataset} is empty (it has {len(labels)} images)")
    sel = torch.arange(idx.start, idx.stop, idx.step)
    # an image folder's splits (all, train, test) are one set of images
    origin = dataset if kind == "imagefolder" else f"{dataset}:{base}"
    return TensorData(take(images, sel), labels[sel].contiguous(), classes, f"{dataset}:{split}", base=origin,
                      positions=idx)


def _read_idx(path: Path) -> torch.Tensor:
    """Read an MNIST idx file (optionally gzipped) into a uint8 tensor."""
    import numpy as np
    import torch

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise NetvizError(f"cannot read {path}: {exc}; delete it and download it again") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise NetvizError(f"{path} is not an MNIST idx file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise NetvizError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {body.size}")
    return torch.from_numpy(body.reshape(dims).copy())


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    return None


def _load_mnist(root: Path, base: str, download: bool):
    if base not in _MNIST_FILES:
        raise NetvizError(f"mnist has splits 'train' and 'test', not '{base}'")
    raw = root / "MNIST" / "raw"
    stems = _MNIST_FILES[base]
    paths = [_find(raw, s) for s in stems]
    if None in paths and download:
        _download_mnist(raw, stems)
        paths = [_find(raw, s) for s in stems]
    if None in paths:
        other = "test" if base == "train" else "train"
        hint = ""
        if all(_find(raw, s) for s in _MNIST_FILES[other]):
            hint = (f"; only the {other} split is there: carve both from it, e.g. --train-split "
                    f"'{other}[:80%]' --eval-split '{other}[80%:]'")
        raise NetvizError(
            f"MNIST {base} split not found: put {' and '.join(s + '.gz' for s in stems)} into "
            f"{raw} (or set --data-dir / NETVIZ_DATA to a folder holding MNIST/raw/){hint}"
        )
    images = _read_idx(paths[0]).unsqueeze(1)
    labels = _read_idx(paths[1]).long()
    if images.shape[0] != labels.shape[0]:
        raise NetvizError(f"MNIST {base}: {images.shape[0]} images but {labels.shape[0]} labels in {raw}")
    return images, labels, tuple(str(i) for i in range(10))


def _download_mnist(raw: Path, stems: tuple[str, ...]) -> None:
    """Try torchvision's mirrors; stay silent on failure (the caller reports what is missing)."""
    from netviz.network import reachable

    try:
        from torchvision.datasets import MNIST
        from torchvision.datasets.utils import download_url

        mirrors = [m for m in MNIST.mirrors if reachable(m)]  # no network: no minute of retries
        if not mirrors:
            return
        md5 = dict(MNIST.resources)
        made = not raw.exists()
        raw.mkdir(parents=True, exist_ok=True)
        _fetch_mnist(raw, stems, mirrors, md5, download_url)
        if made and not any(raw.iterdir()):  # nothing came: leave no empty folders behind
            for folder in (raw, raw.parent):
                with contextlib.suppress(OSError):
                    folder.rmdir()
    except Exception:
        return


def _fetch_mnist(raw: Path, stems: tuple[str, ...], mirrors: list[str], md5: dict[str, str], download_url) -> None:
    for stem in stems:
        for mirror in mirrors:
            try:
                download_url(f"{mirror}{stem}.gz", str(raw), md5=md5.get(f"{stem}.gz"))
                break
            except Exception:
                continue


def _load_cifar10(root: Path, base: str, download: bool):
    import torch

    if base not in ("train", "test"):
        raise NetvizError(f"cifar10 has splits 'train' and 'test', not '{base}'")
    try:
        from torchvision.datasets import CIFAR10

        from netviz.network import reachable

        present = (root / CIFAR10.base_folder).is_dir()
        ds = CIFAR10(str(root), train=base == "train", download=download and (present or reachable(CIFAR10.url)))
    except Exception as exc:
        raise NetvizError(
            f"CIFAR-10 {base} split not found and could not be downloaded ({type(exc).__name__}): "
            f"put the extracted cifar-10-batches-py/ folder into {root} (or set --data-dir / NETVIZ_DATA)"
        ) from exc
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    return images, torch.tensor(ds.targets, dtype=torch.long), tuple(ds.classes)


def _load_imagefolder(folder: Path, base: str) -> tuple[Any, torch.Tensor, tuple[str, ...]]:
    """The images of split ``base`` of an image folder (see :mod:`netviz.folders`: in memory, or
    read when used for a large folder), their labels and the class names."""
    import torch

    from netviz import folders

    paths, labels, classes = folders.files(folder, base)
    return folders.load(paths), torch.tensor(labels, dtype=torch.long), classes


def chunks(images: Any, size: int = 256) -> Iterator[torch.Tensor]:
    """``images`` (a tensor or a lazy folder's) as consecutive uint8 tensors of ``size`` images."""
    for start in range(0, len(images), size):
        yield images[start:start + size]


def take(images: Any, indices: Any) -> Any:
    """``images[indices]`` as a set of images: a tensor's rows, or a lazy folder's narrowed (unread)."""
    from netviz.folders import FolderImages

    return images.take(indices) if isinstance(images, FolderImages) else images[indices]


def conform(images: torch.Tensor, spec: ModelSpec) -> tuple[torch.Tensor, str | None]:
    """Convert uint8 images (N, C, H, W) to the model's channels and size; say what changed. A lazy
    folder's images are read and converted a slice at a time."""
    import torch
    from torch.nn import functional as F

    if not isinstance(images, torch.Tensor):
        parts = [conform(chunk, spec) for chunk in chunks(images)] or [conform(images[:0], spec)]
        return torch.cat([p[0] for p in parts]), parts[0][1]
    c, h, w = spec.input_shape
    notes = []
    if images.shape[1] != c:
        if c == 1:
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).byte()
        else:
            images = images[:, :1].expand(-1, c, -1, -1).contiguous()
        notes.append(f"converted to {c} channel(s)")
    if tuple(images.shape[2:]) != (h, w):
        ih, iw = images.shape[2:]
        # sizes as every shape netviz writes: height x width (C,H,W for --input-shape)
        resized = f"resized from {ih}x{iw} to {h}x{w} (height x width)"
        if abs(iw / ih - w / h) > 0.01 * w / h:
            resized += f", stretched: its width/height {iw / ih:.2f} became {w / h:.2f}"
        notes.append(resized)
        images = F.interpolate(images.float(), size=(h, w), mode="bilinear", antialias=True,
                               align_corners=False).round().clamp(0, 255).byte()
    return images, ("; ".join(notes) or None)


def load_image(path: str | os.PathLike | Any, spec: ModelSpec) -> tuple[torch.Tensor, str | None]:
    """One image file (or an open PIL image) as a uint8 (1, C, H, W) tensor fitted to the model,
    plus a note if changed.

    Any common kind of file reads (see :mod:`netviz.images`); transparency is composited on the
    model's mean colour, and every conversion is said in the note.
    """
    import torch

    from netviz.images import decode, decode_pil

    if isinstance(path, (str, os.PathLike)):
        decoded = decode(path, background=tuple(spec.mean))
    else:
        decoded = decode_pil(path, background=tuple(spec.mean))
    tensor = torch.from_numpy(decoded.pixels.copy())
    tensor = tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)
    fitted, note = conform(tensor.unsqueeze(0), spec)
    notes = decoded.notes + ([note] if note else [])
    return fitted, "; ".join(notes) or None


def tensor_pixels(image: torch.Tensor, spec: ModelSpec) -> tuple[torch.Tensor, str | None]:
    """One image tensor (C, H, W) as a uint8 (1, C, H, W) tensor fitted to the model: uint8 are
    pixels; floating point is the model's normalised input (what ``model(x)`` takes), kept as
    8-bit pixels as every image netviz draws."""
    import torch

    t = image.detach().cpu()
    if t.dtype == torch.uint8:
        return conform(t.unsqueeze(0), spec)
    if not t.is_floating_point():
        raise NetvizError(f"an image tensor holds uint8 pixels or the model's normalised floats, not {t.dtype}")
    if t.shape[0] != len(spec.mean):
        raise NetvizError(f"a float image tensor is the model's input: {len(spec.mean)} channel(s) for "
                          f"{spec.name}, not {t.shape[0]} (pass uint8 pixels to have them converted)")
    pixels = (denormalise(t.float().unsqueeze(0), spec) * 255).round().byte()
    return conform(pixels, spec)


def normalise(images: torch.Tensor, spec: ModelSpec, device: torch.device | None = None) -> torch.Tensor:
    """uint8 images (or floats in [0, 1]) -> float32 in the model's normalised input space."""
    import torch

    from netviz.device import to_device

    x = to_device(images, torch.device(device) if device is not None else None)
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    mean = torch.tensor(spec.mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def denormalise(x: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """Normalised inputs -> pixels in [0, 1] (clamped)."""
    import torch

    mean = torch.tensor(spec.mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=x.device).view(1, -1, 1, 1)
    return (x * std + mean).clamp(0, 1)


def pixel_bounds(spec: ModelSpec, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised images of pixel 0 and pixel 1, per channel, shaped (1, C, 1, 1)."""
    import torch

    mean = torch.tensor(spec.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=device).view(1, -1, 1, 1)
    return (0 - mean) / std, (1 - mean) / std


def augment(x: torch.Tensor, generator: torch.Generator | None = None, pad: int = 4,
            flip: bool = True) -> torch.Tensor:
    """Random crop with zero padding (a shift of up to ``pad`` pixels) and, with ``flip``, a
    random horizontal flip; batched on the tensor's device. The random draws are the same with
    and without ``flip``, so switching it off changes nothing else."""
    return apply_augment(x, augment_draws(len(x), generator, pad), pad, flip)


def augment_draws(n: int, generator: torch.Generator | None = None, pad: int = 4) -> torch.Tensor:
    """The random draws of :func:`augment` for ``n`` images, (n, 3): row shift, column shift, flip.
    Drawn apart from the pixels so that a process can augment its share of a batch as the whole
    batch would have been (the draws of its rows), without reading the other rows."""
    import torch

    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flipped = (torch.rand(n, generator=generator) < 0.5).long()
    return torch.stack([dy, dx, flipped], 1)


def apply_augment(x: torch.Tensor, draws: torch.Tensor, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """``x`` shifted (and flipped, with ``flip``) as ``draws`` (from :func:`augment_draws`) say, row by row."""
    import torch
    from torch.nn import functional as F

    n, c, h, w = x.shape
    draws = draws.to(x.device)
    dy, dx, flipped = draws[:, 0], draws[:, 1], draws[:, 2].bool() & flip
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None]).view(n, 1, h, 1)
    cols = torch.arange(w, device=x.device)[None].expand(n, w)
    cols = torch.where(flipped[:, None], cols.flip(1), cols)
    cols = (dx[:, None] + cols).view(n, 1, 1, w)
    out = padded.gather(2, rows.expand(n, c, h, w + 2 * pad))
    return out.gather(3, cols.expand(n, c, h, w))
