"""Benchmark: `netviz audit` of the 60,000-image MNIST train split beside one mnist-fast training epoch.

The issue's target: auditing the train split with the defaults takes at most 2x the mnist-fast
recipe's one training epoch on the same machine. Both run here, side by side, each in a process of
its own (its peak memory is its own), alternating ``--repeats`` times:

- ``train``: ``netviz train --config configs/mnist-fast.toml`` on the full MNIST (one epoch); the
  epoch's time is metrics.json's ``seconds`` (the training loop, without data loading);
- ``audit``: ``netviz audit RUN --split train`` of that run with the defaults; its time is
  audit.json's ``seconds`` (the pass, the clusters and the evidence, without loading the run and
  the data) and the whole command's wall time.

    NETVIZ_DATA=../shared/data python scripts/bench_audit.py [--repeats 3]
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


def child(args) -> None:
    """Run one step in this process and print its figures as JSON."""
    from netviz import commands
    from netviz.runs import load_run

    started = time.perf_counter()
    if args.child == "train":
        run = commands.train(config=str(ROOT / "configs" / "mnist-fast.toml"), seed=args.seed, runs_dir=args.runs,
                             name=f"fast-{args.seed}", data_dir=args.data_dir, quiet=True)
        seconds = json.loads((run.path / "metrics.json").read_text())[-1]["seconds"]
        out = {"step": "train", "seconds": seconds, "run": str(run.path)}
    else:
        run = load_run(args.run, device="cpu")
        paths, _ = commands.audit(run, split="train", data_dir=args.data_dir, out=args.out, quiet=True)
        record = json.loads(Path(args.out, "audit.json").read_text())
        out = {"step": "audit", "seconds": record["seconds"], "flagged": [c["index"] for c in record["classes"]
                                                                           if c["flagged"]]}
    out["wall"] = time.perf_counter() - started
    out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def step(*argv: str) -> dict:
    result = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data-dir", default=os.environ.get("NETVIZ_DATA"))
    p.add_argument("--child", choices=["train", "audit"])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--runs")
    p.add_argument("--run")
    p.add_argument("--out")
    args = p.parse_args()
    if args.child:
        child(args)
        return

    import platform

    import torch

    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print("| repeat | train epoch s | train peak MiB | audit s (audit.json) | audit command s | audit peak MiB "
          "| ratio audit / epoch | flagged |")
    print("|---|---|---|---|---|---|---|---|")
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            data = ["--data-dir", args.data_dir] if args.data_dir else []
            t = step("--child", "train", "--seed", str(r + 1), "--runs", f"{tmp}/runs", *data)
            a = step("--child", "audit", "--run", t["run"], "--out", f"{tmp}/audit-{r}", *data)
            ratios.append(a["seconds"] / t["seconds"])
            print(f"| {r + 1} | {t['seconds']:.1f} | {t['peak_mib']:.0f} | {a['seconds']:.1f} | {a['wall']:.1f} | "
                  f"{a['peak_mib']:.0f} | {ratios[-1]:.2f}x | {a['flagged'] or 'none'} |", flush=True)
    ratios.sort()
    print(f"\nmedian ratio {ratios[len(ratios) // 2]:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
