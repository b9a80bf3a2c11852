"""Files that are never half-written: atomic writes (temp file, then rename), JSON and TOML.

A crash, a Ctrl-C or a full disk leaves either the old file or the new one, never part of one;
a write that fails says which file and why, as a :class:`~netviz.errors.NetvizError`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netviz.errors import NetvizError


@dataclass(frozen=True)
class Artifact:
    """A file a command wrote, and one line saying what it shows."""

    path: Path
    caption: str


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp made it 0600: give it the usual mode
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
    """``data`` as strict JSON: a non-finite number is written as null (bare NaN is not JSON, and
    other parsers reject it)."""
    return write_text(path, json.dumps(finite(data), indent=2, allow_nan=False) + "\n")


def finite_number(v: Any) -> float | None:
    """A number (a tensor's one value too) for JSON: None where it is not finite."""
    v = float(v)
    return v if math.isfinite(v) else None


def finite(data: Any) -> Any:
    """``data`` with every NaN or infinite float replaced by None, containers copied."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite(v) for v in data]
    return data


def read_json(path: str | os.PathLike) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NetvizError(f"cannot read {path}: {exc}") from exc


def dump_toml(data: dict[str, Any]) -> str:
    """A dict of str/int/float/bool/list/dict values as TOML, dicts as inline tables (None values
    are left out)."""

    def key(k: Any) -> str:
        k = str(k)
        return k if k and all(c.isalnum() and c.isascii() or c in "_-" for c in k) else json.dumps(k)

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items() if x is not None) + "}"
        return json.dumps(str(v))

    return "".join(f"{key(k)} = {value(v)}\n" for k, v in data.items() if v is not None)


def read_toml(path: str | os.PathLike) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise NetvizError(f"cannot read config {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise NetvizError(f"config {path} is not valid TOML: {exc}") from exc


def slug(text: str, limit: int = 40) -> str:
    """A file-name-safe piece of text: ``"class all"`` -> ``"class-all"``."""
    out = "".join(c if c.isalnum() or c in "._+" else "-" for c in text.strip())
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-.")[:limit].rstrip("-.") or "result"


def file_stem(name: str) -> str:
    """A layer or class name as part of a file name: a user's ``"<b>/x"`` never becomes a path."""
    return slug(name, 80)


def set_latest(run_path: Path) -> None:
    """Point ``<parent>/latest`` at ``run_path``, atomically (a relative symlink, or a text file)."""
    marker = run_path.parent / "latest"
    try:
        fd, tmp_name = tempfile.mkstemp(dir=run_path.parent, prefix=".latest.", suffix=".tmp")
    except OSError as exc:
        raise NetvizError(f"cannot point {marker} at {run_path.name}: {exc.strerror or exc}") from exc
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        os.symlink(run_path.name, tmp)
    except OSError:  # no symlinks (some Windows setups): a file naming the run
        write_text(marker, run_path.name + "\n")
        return
    os.replace(tmp, marker)
