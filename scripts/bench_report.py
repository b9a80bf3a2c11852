"""`netviz report --all` on a fresh MNIST run: how long, and how heavy the page is.

Trains a fresh run first (configs/mnist-fast.toml on the full MNIST split by default, or
``--run`` to use one), then times ``netviz report RUN --all`` as the whole process a user runs
(start-up included), and reads each analysis's own time from its manifest.

    NETVIZ_DATA=../shared/data python scripts/bench_report.py [--run runs/x] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="a run folder to copy (default: train a fresh one)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        if args.run:
            shutil.copytree(args.run, run)
        else:
            subprocess.run([sys.executable, "-m", "netviz", "train", "--config", str(CONFIGS / "mnist-fast.toml"),
                            "--seed", "1", "--runs-dir", tmp, "--name", "run", "--device", args.device, "--quiet"],
                           check=True, capture_output=True)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "netviz", "report", str(run), "--all", "--device", args.device,
                        "--quiet"], check=True, capture_output=True)
        seconds = time.perf_counter() - start
        size = (run / "report" / "index.html").stat().st_size
        parts = []
        for manifest in sorted(run.glob("*/0*/manifest.json")):
            m = json.loads(manifest.read_text())
            parts.append((m["command"], m["seconds"]))
        model = json.loads((run / "config.toml").read_text().split("\n")[0].split("=")[1]) \
            if (run / "config.toml").is_file() else "?"
    print(f"`netviz report --all` on a fresh {model} run: {seconds:.1f} s (whole process, start-up included); "
          f"page {size / 1e6:.2f} MB")
    for command, secs in parts:
        print(f"  {command:<12} {secs:6.1f} s")


if __name__ == "__main__":
    main()
