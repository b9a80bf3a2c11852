"""Image folders: the two layouts users have, and their images decoded when they are read.

Layouts: ``PATH/<class>/*`` (one set of images, the split ``all``), or torchvision's
``PATH/train/<class>/*`` with ``PATH/val/<class>/*`` (or ``test/``) as the ``train`` and ``test``
splits (``all``: both). Images come in a fixed interleaved order, class by class, so that any slice
mixes classes.

A folder whose decoded images fit in :data:`IN_MEMORY_BYTES` is decoded at once into one tensor (by
a pool of threads: Pillow decodes without the GIL). A larger one is a :class:`FolderImages`: it
indexes like the uint8 (N, 3, H, W) tensor and decodes the images asked for when they are asked
for, the next contiguous slice in the background while the model works on this one, so that a pass
over the data holds a batch or two of images, whatever the folder's size. Every image is fitted to
the first image's size (as the in-memory tensor is; `conform` fits them to the model later).
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz.errors import NetvizError

if TYPE_CHECKING:
    import numpy as np
    import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# decoded images up to this many bytes are held in memory, a larger folder is read as it is used
# ($NETVIZ_IN_MEMORY_BYTES sets another bound: 0 reads every folder lazily)
IN_MEMORY_BYTES = int(os.environ.get("NETVIZ_IN_MEMORY_BYTES", 2**30))
TEST_FOLDERS = ("val", "test")  # beside train/, the test split's folder (the first there)


def workers() -> int:
    """Decoding threads: ``$NETVIZ_WORKERS``, else the cores this process may use."""
    given = os.environ.get("NETVIZ_WORKERS", "").strip()
    if given:
        if not given.isdigit() or int(given) < 1:
            raise NetvizError(f"NETVIZ_WORKERS={given}: give the number of threads that decode images, 1 or more")
        return int(given)
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def has_splits(folder: Path) -> bool:
    """Whether ``folder`` has torchvision's layout: ``train/<class>/`` beside ``val/`` or ``test/``."""
    return (folder / "train").is_dir() and any((folder / name).is_dir() for name in TEST_FOLDERS) \
        and any(d.is_dir() for d in (folder / "train").iterdir())


def files(folder: Path, base: str) -> tuple[list[Path], list[int], tuple[str, ...]]:
    """(image paths in order, their class indices, the class names) of split ``base``."""
    if not folder.is_dir():
        raise NetvizError(f"image folder {folder} does not exist")
    if has_splits(folder):
        roots = {"train": [folder / "train"], "test": [_test_folder(folder)],
                 "all": [folder / "train", _test_folder(folder)]}
        if base not in roots:
            raise NetvizError(f"{folder} has the splits train and test ({_test_folder(folder).name}/), and all "
                              f"(both), not '{base}'")
        classes = sorted({d.name for root in (folder / "train", _test_folder(folder)) for d in root.iterdir()
                          if d.is_dir()})
        chosen = roots[base]
    else:
        if base not in ("all", "train", "test"):
            raise NetvizError(f"an image folder has one split, 'all', not '{base}' (or train/ and val/ sub-folders "
                              "for two)")
        classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
        chosen = [folder]
    paths: list[Path] = []
    labels: list[int] = []
    for root in chosen:
        per_class = [sorted((p for p in (root / c).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                            key=lambda p: (len(p.stem), p.stem)) if (root / c).is_dir() else [] for c in classes]
        for i in range(max((len(f) for f in per_class), default=0)):
            for k, found in enumerate(per_class):
                if i < len(found):
                    paths.append(found[i])
                    labels.append(k)
    if not paths:
        where = " or ".join(str(r) for r in chosen)
        raise NetvizError(f"{where} holds no images in class sub-folders (expected {chosen[0]}/<class>/*.png, or "
                          f"{folder}/train/<class>/ and {folder}/val/<class>/)")
    return paths, labels, tuple(classes)


def _test_folder(folder: Path) -> Path:
    return next(folder / name for name in TEST_FOLDERS if (folder / name).is_dir())


def read(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """One image as uint8 (H, W, 3), resized to ``size`` (width, height) when it has another."""
    import numpy as np
    from PIL import Image

    from netviz.images import decode

    im = Image.fromarray(decode(path).pixels).convert("RGB")
    if size is not None and im.size != size:
        im = im.resize(size, Image.BILINEAR)
    return np.array(im)  # writable: torch reads it without a warning


def load(paths: list[Path]) -> torch.Tensor | FolderImages:
    """The images of ``paths``: one tensor when they fit in :data:`IN_MEMORY_BYTES`, else a
    :class:`FolderImages`."""
    first = read(paths[0], None)
    size = (first.shape[1], first.shape[0])
    images = FolderImages(paths, size)
    if len(paths) * first.size <= IN_MEMORY_BYTES:
        return images[:]
    return images


class FolderImages:
    """Image files read as a uint8 (N, 3, H, W) tensor would be: ``images[i]``, ``images[a:b]``,
    ``images[[i, j]]`` decode those files (by a pool of threads); :meth:`take` narrows the set
    without reading it. :meth:`ahead` decodes images in the background for the read that asks for
    exactly them; after a contiguous slice, the next one of the same length is read ahead so."""

    def __init__(self, paths: list[Path], size: tuple[int, int]) -> None:
        self.paths = paths
        self.size = size  # (width, height)
        self._ahead: tuple[list[int], Future] | None = None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), 3, self.size[1], self.size[0])

    @property
    def dtype(self) -> Any:
        import torch

        return torch.uint8

    ndim = 4

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, indices: Any) -> FolderImages:
        """The images at ``indices`` (a range, slice, list or tensor), still unread."""
        return FolderImages([self.paths[i] for i in _positions(indices, len(self))], self.size)

    def ahead(self, positions: list[int]) -> None:
        """Start decoding the images at ``positions`` in the background (one read ahead at a time)."""
        self._ahead = (positions, _pool().submit(self._decode, positions)) if positions else None

    def __getitem__(self, index: Any) -> torch.Tensor:
        if isinstance(index, int):
            return self._read([index])[0]
        positions = _positions(index, len(self))
        out = self._read(positions)
        if isinstance(index, slice) and _step(index) == 1 and positions:  # a pass: read its next slice
            stop = positions[-1] + 1
            self.ahead(list(range(stop, min(len(self), stop + len(positions)))))
        return out

    def _read(self, positions: list[int]) -> torch.Tensor:
        """The images at ``positions``: those read ahead when they are these, else decoded now."""
        if self._ahead is not None and self._ahead[0] == positions:
            future, self._ahead = self._ahead[1], None
            return future.result()
        return self._decode(positions)

    def _decode(self, positions: list[int]) -> torch.Tensor:
        import torch

        out = torch.empty((len(positions), *self.shape[1:]), dtype=torch.uint8)

        def one(k: int) -> None:  # straight into its row: no second copy of the whole set
            out[k] = torch.from_numpy(read(self.paths[positions[k]], self.size)).permute(2, 0, 1)

        list(_decoders().map(one, range(len(positions))))
        return out


def _positions(index: Any, n: int) -> list[int]:
    if isinstance(index, slice):
        return list(range(n)[index])
    if isinstance(index, range):
        return list(index)
    if hasattr(index, "tolist"):
        index = index.tolist()
    return [int(i) for i in index]


def _step(index: slice) -> int:
    return 1 if index.step is None else int(index.step)


_POOLS: dict[str, ThreadPoolExecutor] = {}


def _decoders() -> ThreadPoolExecutor:
    """The threads that decode a batch's images."""
    if "decode" not in _POOLS:
        _POOLS["decode"] = ThreadPoolExecutor(workers(), thread_name_prefix="netviz-decode")
    return _POOLS["decode"]


def _pool() -> ThreadPoolExecutor:
    """The one thread that reads the next batch ahead (it hands the files to the decoders)."""
    if "ahead" not in _POOLS:
        _POOLS["ahead"] = ThreadPoolExecutor(1, thread_name_prefix="netviz-ahead")
    return _POOLS["ahead"]
