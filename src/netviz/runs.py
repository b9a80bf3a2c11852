"""The run folder: its layout (:class:`RunFolder`), the latest run, loading, atomic writes and safe
checkpoints.

A run is ``<runs-dir>/<name>/``; :class:`RunFolder` is the one place that knows what lies in it.
``<runs-dir>/latest`` names the newest run. Checkpoints are plain dicts of tensors and numbers,
loaded with ``weights_only=True``.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from netviz.errors import NetvizError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.data import TensorData
    from netviz.registry import ModelSpec

CHECKPOINT_FORMAT = "netviz-checkpoint-v1"


@dataclass(frozen=True)
class RunFolder:
    """The layout of a run folder: every file name lives here and nowhere else.

    ``config.toml`` (the resolved config), ``metrics.json`` (one row per epoch), ``summary.json``
    (final and best accuracy, milestones, throughput), ``weight_stats.json`` (per-layer statistics
    per epoch), ``curves.png`` and ``checkpoints/{init,last,final}.pt``; each command writes into
    ``<command>/`` beside them.
    """

    path: Path

    CHECKPOINTS: ClassVar[tuple[str, ...]] = ("init", "last", "final")

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> Path:
        return self.path / "config.toml"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def weight_stats(self) -> Path:
        return self.path / "weight_stats.json"

    @property
    def curves(self) -> Path:
        return self.path / "curves.png"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint(self, which: str) -> Path:
        """``init``, ``last`` or ``final``."""
        if which not in self.CHECKPOINTS:
            raise ValueError(f"unknown checkpoint {which!r}")
        return self.checkpoints / f"{which}.pt"

    def output(self, command: str) -> Path:
        """Where ``netviz <command>`` writes for this run."""
        return self.path / command

    def is_run(self) -> bool:
        return self.config.is_file()

    def is_finished(self) -> bool:
        return self.checkpoint("final").is_file()

    def files(self) -> list[Path]:
        """What training wrote, in a fixed order (the paths `netviz train` prints)."""
        main = [self.config, self.metrics, self.summary, self.weight_stats, self.curves]
        ckpts = [self.checkpoint(w) for w in self.CHECKPOINTS]
        return [p for p in main + ckpts if p.is_file()]


def create_run_folder(root: Path, name: str, unique: bool) -> RunFolder:
    """Create ``root/name`` exclusively (mkdir is atomic: two processes never share a folder).

    ``unique``: when the name is taken, try ``name-2``, ``name-3``, ... (timestamped default names,
    e.g. a sweep started in parallel); otherwise a taken name is an error.
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NetvizError(f"cannot create runs folder {root}: {exc.strerror or exc}; pass --runs-dir DIR") from exc
    if not os.access(root, os.W_OK | os.X_OK):
        raise NetvizError(f"runs folder {root} is not writable: pass --runs-dir DIR")
    for k in range(1, 1000):
        path = root / (name if k == 1 else f"{name}-{k}")
        try:
            path.mkdir()
        except FileExistsError:
            if not unique:
                raise NetvizError(f"run {path} already exists: pass another --name, or --resume {path}") from None
            continue
        except OSError as exc:
            raise NetvizError(f"cannot create run folder {path}: {exc.strerror or exc}") from exc
        return RunFolder(path)
    raise NetvizError(f"could not find a free run name like {root / name}: pass --name")


def runs_root(runs_dir: str | os.PathLike | None = None) -> Path:
    """``--runs-dir``, else ``$NETVIZ_RUNS``, else ``./runs``."""
    return Path(runs_dir or os.environ.get("NETVIZ_RUNS") or "runs").expanduser()


# -- atomic writes -------------------------------------------------------------------------

def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    A crash or Ctrl-C leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise NetvizError(f"cannot write to {path.parent}: {exc.strerror or exc}") from exc
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except OSError as exc:  # a full disk, a quota, a folder removed under us: say which file
        Path(tmp).unlink(missing_ok=True)
        raise NetvizError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, allow_nan=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NetvizError(f"cannot read {path}: {exc}") from exc


def dump_toml(data: dict[str, Any]) -> str:
    """A flat dict of str/int/float/bool/list values as TOML (None values are left out)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))

    return "".join(f"{k} = {value(v)}\n" for k, v in data.items() if v is not None)


def read_toml(path: str | os.PathLike) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise NetvizError(f"cannot read config {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise NetvizError(f"config {path} is not valid TOML: {exc}") from exc


def output_dir(run_path: Path | None, command: str, out: str | os.PathLike | None,
               model_name: str | None = None) -> Path:
    """Where a command writes: ``--out``, else ``<run>/<command>/``, else ``netviz-out/<model>/<command>/``."""
    if out:
        path = Path(out)
    elif run_path is not None:
        path = run_path / command
    else:
        path = Path("netviz-out") / (model_name or "model") / command
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NetvizError(f"cannot create output folder {path}: {exc.strerror or exc}") from exc
    if not os.access(path, os.W_OK):
        raise NetvizError(f"output folder {path} is not writable: pass --out DIR")
    return path


# -- checkpoints -----------------------------------------------------------------------------

def save_checkpoint(path: str | os.PathLike, model_name: str, state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors, numbers, strings, nested dicts/lists only) atomically."""
    import torch

    payload = {"format": CHECKPOINT_FORMAT, "model_name": model_name, **state}
    # Serialise in memory first: torch.save reports a full disk as an opaque RuntimeError, a
    # plain write says "No space left on device" (and atomic_write names the file).
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    return atomic_write(path, lambda p: p.write_bytes(data))


def load_checkpoint(path: str | os.PathLike, model_name: str | None = None) -> dict[str, Any]:
    """Load a netviz checkpoint safely (``weights_only=True``: a checkpoint can never run code)."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise NetvizError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" not in str(exc):  # not a refused class or function: just bad bytes
            raise NetvizError(f"checkpoint {path} is corrupt or not a PyTorch file") from exc
        raise NetvizError(
            f"refusing to load {path}: it holds pickled objects other than tensors, which could "
            "run code (netviz only loads weights_only checkpoints)"
        ) from exc
    except Exception as exc:
        raise NetvizError(f"checkpoint {path} is corrupt or not a PyTorch file ({type(exc).__name__})") from exc
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise NetvizError(f"{path} is not a netviz checkpoint (no 'model' state dict in it)")
    if model_name is not None and ckpt.get("model_name") not in (None, model_name):
        raise NetvizError(
            f"checkpoint {path} is for model '{ckpt.get('model_name')}', not '{model_name}'"
        )
    return ckpt


def load_weights(model: nn.Module, state_dict: dict[str, Any], source: str | os.PathLike) -> None:
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise NetvizError(f"weights in {source} do not fit the model: {first}") from exc


# -- runs ------------------------------------------------------------------------------------

@dataclass
class Run:
    """A model to look at: a trained run, a checkpoint file, or a registry model by name.

    ``model`` is in eval mode on ``device``. ``path`` is None for a bare registry model.
    """

    spec: ModelSpec
    model: nn.Module
    device: torch.device
    path: Path | None = None
    checkpoint: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    weights: str | None = None  # a bare registry model's pretrained weights ("default"), or None

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else self.spec.name

    def checkpoint_path(self, which: str) -> Path | None:
        """``init``, ``final`` or ``last``: the file if this run has it."""
        if self.path is None:
            return None
        path = self.path / "checkpoints" / f"{which}.pt"
        return path if path.is_file() else None

    def state_dict(self, which: str) -> dict[str, torch.Tensor] | None:
        """Weights of checkpoint ``which`` (``init``/``final``/``last``), or None if absent."""
        path = self.checkpoint_path(which)
        return None if path is None else load_checkpoint(path, self.spec.name)["model"]

    def weight_stats(self) -> dict[str, Any] | None:
        """Per-epoch weight statistics recorded by training, or None (see ``train.weight_stats``)."""
        if self.path is None or not (self.path / "weight_stats.json").is_file():
            return None
        return read_json(self.path / "weight_stats.json")

    def eval_data(self, data_dir: str | os.PathLike | None = None, split: str | None = None) -> TensorData:
        """The run's evaluation split (or ``split``), as configured at training time."""
        from netviz.data import default_splits, load_split

        dataset = self.config.get("dataset") or self.spec.default_dataset
        if dataset is None:
            raise NetvizError(
                f"model '{self.spec.name}' has no data set: pass --image PATH instead of --index"
            )
        split = split or self.config.get("eval_split") or default_splits(dataset)[1]
        return load_split(dataset, split, data_dir or self.config.get("data_dir"))


def latest_run(runs_dir: str | os.PathLike | None = None) -> Path:
    root = runs_root(runs_dir)
    marker = root / "latest"
    if marker.is_symlink() or marker.is_dir():
        target = marker.resolve()
    elif marker.is_file():
        target = root / marker.read_text(encoding="utf-8").strip()
    else:
        raise NetvizError(
            f"no training run found in {root}: run `netviz train` first, or pass a run folder "
            "or --model NAME"
        )
    if not target.is_dir():
        raise NetvizError(f"{marker} points at {target}, which no longer exists: pass a run folder")
    return target


def set_latest(run_path: Path) -> None:
    """Point ``<runs-dir>/latest`` at ``run_path`` (a relative symlink, or a text file)."""
    marker = run_path.parent / "latest"
    tmp = run_path.parent / f".latest.{os.getpid()}.tmp"
    try:
        tmp.unlink(missing_ok=True)
        os.symlink(run_path.name, tmp)
    except OSError:  # no symlinks (some Windows setups): a file naming the run
        write_text(marker, run_path.name + "\n")
        return
    os.replace(tmp, marker)


def _find_run_dir(path: Path) -> tuple[Path | None, Path | None]:
    """(run folder, checkpoint file) for a run folder or a checkpoint path."""
    if path.is_dir():
        if path.name == "latest" or (path / "latest").exists() and not (path / "config.toml").exists():
            path = latest_run(path.parent if path.name == "latest" else path)
        if not (path / "config.toml").is_file():
            raise NetvizError(f"{path} is not a netviz run folder (no config.toml)")
        for which in ("final", "last"):
            ckpt = path / "checkpoints" / f"{which}.pt"
            if ckpt.is_file():
                return path, ckpt
        raise NetvizError(f"run {path} has no checkpoints (checkpoints/final.pt or last.pt): train it first")
    if path.is_file():
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
        if run_dir is not None and not (run_dir / "config.toml").is_file():
            run_dir = None
        return run_dir, path
    raise NetvizError(f"{path} does not exist: pass a run folder, a checkpoint file, or --model NAME")


def load_run(path: str | os.PathLike | None = None, *, model: str | None = None,
             weights: str | None = None, runs_dir: str | os.PathLike | None = None,
             device: str | torch.device = "auto") -> Run:
    """Open what a command looks at.

    - ``load_run()``: the latest run in the runs folder;
    - ``load_run("runs/x")`` or a checkpoint file ``.../final.pt``;
    - ``load_run(model="allconv")``: a fresh registry model (``weights="default"`` for pretrained).
    """
    import torch

    from netviz.device import resolve_device
    from netviz.registry import build_model, get_spec

    dev = device if isinstance(device, torch.device) else resolve_device(device)
    if path is None and model is not None:
        spec = get_spec(model)
        weights = None if weights is None or weights.lower() in ("none", "") else weights
        net = build_model(spec, weights).to(dev).eval()
        return Run(spec=spec, model=net, device=dev, weights=weights)
    run_dir, ckpt_path = _find_run_dir(Path(path) if path is not None else latest_run(runs_dir))
    config = read_toml(run_dir / "config.toml") if run_dir is not None else {}
    ckpt = load_checkpoint(ckpt_path)
    name = model or ckpt.get("model_name") or config.get("model")
    if not name:
        raise NetvizError(f"{ckpt_path} does not say which model it is for: pass --model NAME")
    spec = get_spec(name)
    net = build_model(spec)
    load_weights(net, ckpt["model"], ckpt_path)
    metrics = []
    if run_dir is not None and (run_dir / "metrics.json").is_file():
        metrics = read_json(run_dir / "metrics.json")
    return Run(spec=spec, model=net.to(dev).eval(), device=dev, path=run_dir,
               checkpoint=ckpt_path, config=config, metrics=metrics)
