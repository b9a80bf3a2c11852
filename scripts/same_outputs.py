"""Do two versions of netviz write the same bytes? A refactoring must not change what users get.

Runs every command that writes files (`histogram`, `kernels`, `activations`, `dream --batch-size 1`,
`attribute`, `evaluate`, `neurons`, `explain`, `audit`, at small sizes) of each version (git
revisions, checked out into temporary worktrees) on one run folder, and compares every file they
write byte for byte; a JSON file is compared without its clock fields at any depth (`started`,
`seconds`, `seconds_per_image`) and a manifest without its command lines. Exits 1 and names the
files that differ.

    NETVIZ_DATA=../shared/data python scripts/same_outputs.py RUN [--before REV] [--after REV]

RUN: a trained MNIST run folder. ``--before`` defaults to HEAD~1, ``--after`` to the working tree.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "histogram": ["histogram", "{run}"],
    "kernels": ["kernels", "{run}"],
    "activations": ["activations", "{run}", "--index", "0-1"],
    "dream": ["dream", "{run}", "--class", "all", "--batch-size", "1"],
    "attribute": ["attribute", "{run}", "--index", "0-3"],
    "evaluate": ["evaluate", "{run}", "--methods", "integrated,gradcam,saliency,random", "--index", "0-3",
                 "--sanity-layers", "1"],
    "neurons": ["neurons", "{run}", "--channels", "0-1", "--steps", "8", "--top", "3"],
    "explain": ["explain", "{run}", "--index", "0", "--dream-steps", "8", "--card-images", "2"],
    "audit": ["audit", "{run}", "--limit", "256"],
}
UNSTABLE = ("started", "seconds", "seconds_per_image", "command_line", "reproduce")


def _stable(data: object) -> object:
    """``data`` without its clock fields, at any depth."""
    if isinstance(data, dict):
        return {k: _stable(v) for k, v in data.items() if k not in UNSTABLE}
    if isinstance(data, list):
        return [_stable(v) for v in data]
    return data


def source_of(rev: str | None, tmp: Path) -> Path:
    """The ``src`` folder of ``rev`` (a worktree of it), or of the working tree for None."""
    if rev is None:
        return ROOT / "src"
    tree = tmp / f"tree-{rev.replace('/', '_').replace('~', '-')}"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True,
                   capture_output=True)
    return tree / "src"


def digest(path: Path) -> str | dict:
    """A file's content hash; a JSON file's stable content itself, so a difference can be named."""
    if path.suffix == ".json":
        return _stable(json.loads(path.read_text()))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def what_differs(a: object, b: object, where: str = "") -> list[str]:
    """The keys (dotted, to the first level that is not a dict) where two JSON values differ."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return [where or "(the whole file)"] if a != b else []
    found = []
    for k in sorted(a.keys() | b.keys()):
        if k not in a or k not in b:
            found.append(f"{where}{k} ({'added' if k not in a else 'removed'})")
        else:
            found += what_differs(a[k], b[k], f"{where}{k}.")
    return found


def outputs(src: Path, run: Path, out: Path) -> dict[str, str | dict]:
    env = {**os.environ, "PYTHONPATH": str(src), "CUDA_VISIBLE_DEVICES": ""}
    found = {}
    for name, args in COMMANDS.items():
        folder = out / name
        argv = [a.replace("{run}", str(run)) for a in args] + ["--device", "cpu", "--quiet", "--out", str(folder)]
        subprocess.run([sys.executable, "-m", "netviz", *argv], env=env, check=True, capture_output=True)
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                found[f"{name}/{f.relative_to(folder)}"] = digest(f)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--before", default="HEAD~1")
    parser.add_argument("--after", default=None, help="a revision (default: the working tree)")
    args = parser.parse_args()
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            before = outputs(source_of(args.before, tmp), args.run.resolve(), tmp / "before")
            after = outputs(source_of(args.after, tmp), args.run.resolve(), tmp / "after")
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], check=False)  # the trees are gone
    differ = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    print(f"{len(before)} files before, {len(after)} after; {len(differ)} differ")
    for name in differ:
        a, b = before.get(name), after.get(name)
        keys = what_differs(a, b) if isinstance(a, dict) and isinstance(b, dict) else []
        print(f"  differs: {name}" + (f": {', '.join(keys)}" if keys else ""))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
