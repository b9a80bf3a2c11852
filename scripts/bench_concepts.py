"""Benchmark: the `netviz concepts` process over the 60,000 MNIST training images at mnist-fast's
relu2 beside the mnist-fast training process (one epoch), whole process against whole process,
and the numbers of the dictionary it finds.

The issue's target: the concepts process takes at most 2x the training process. Both run here as
the commands a user types, alternating ``--repeats`` times, each its own process (wall time from
start to exit, its peak memory its own):

- ``train``: ``netviz train --config configs/mnist-fast.toml`` (one epoch over the full split);
- ``concepts``: ``netviz concepts RUN --layer relu2 --concepts 16`` of that run, and once more with
  ``--compare-seed 1`` for the stability (not timed against training: it fits twice).

    NETVIZ_DATA=../shared/data python scripts/bench_concepts.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NETVIZ = [sys.executable, "-m", "netviz"]


def timed(*argv: str) -> tuple[float, float]:
    """(wall seconds, peak MiB) of one netviz process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run([*NETVIZ, *argv, "--quiet"], check=True, capture_output=True)
    wall = time.perf_counter() - started
    return wall, max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    import platform

    import torch

    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, NETVIZ_DATA={os.environ.get('NETVIZ_DATA')}")
    print("| repeat | train process s | concepts process s | ratio | concepts.json seconds | r2 | sparsity |")
    print("|---|---|---|---|---|---|---|")
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp, "runs", "fast")
        for r in range(args.repeats):
            if run.exists():
                subprocess.run(["rm", "-rf", str(run)], check=True)
            train, _ = timed("train", "--config", str(ROOT / "configs" / "mnist-fast.toml"), "--runs-dir",
                             str(run.parent), "--name", run.name, "--device", "cpu")
            out = Path(tmp, f"concepts-{r}")
            concepts, _ = timed("concepts", str(run), "--layer", "relu2", "--concepts", "16", "--out", str(out),
                                "--device", "cpu")
            record = json.loads((out / "concepts.json").read_text())
            ratios.append(concepts / train)
            print(f"| {r + 1} | {train:.1f} | {concepts:.1f} | {ratios[-1]:.2f}x | {record['seconds']:.1f} | "
                  f"{record['r2']:.3f} | {record['sparsity']:.1f} |", flush=True)
        out = Path(tmp, "stability")
        timed("concepts", str(run), "--layer", "relu2", "--concepts", "16", "--compare-seed", "1", "--out", str(out),
              "--device", "cpu")
        record = json.loads((out / "concepts.json").read_text())
    ratios.sort()
    print(f"\nmedian ratio {ratios[len(ratios) // 2]:.2f}x (target <= 2x)")
    f = record["faithfulness"]
    print(f"dictionary: r2 {record['r2']}, sparsity {record['sparsity']}, dead {record['dead']}, stability "
          f"(seeds 0, 1) {record['stability']}; top {f['k']} concepts out beat {f['k']} random on "
          f"{f['beats_random']:.0%} and the top {f['k']} channels on {f['beats_channels']:.0%} of {f['images']} images")


if __name__ == "__main__":
    main()
