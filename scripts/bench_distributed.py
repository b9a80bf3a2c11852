"""Throughput with 1 vs N processes under torchrun: integrated gradients over 1,000 MNIST test
images, and one training epoch of the MNIST net, each as the whole command a user runs.

Each measurement is one whole `netviz` process (or `torchrun --nproc_per_node N` of them), start-up
included, run one after the other on this machine. On the CPU each process gets
``cores / N`` threads (OMP_NUM_THREADS), so 2 processes on 2 cores do the same arithmetic as 1; on
GPUs (``--device cuda``) N is the number of GPUs used.

    NETVIZ_DATA=../shared/data python scripts/bench_distributed.py --run runs/mnist-3ep [--procs 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def command(procs: int, args: list[str], threads: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if procs == 1:
        cmd = [sys.executable, "-m", "netviz", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
               "-m", "netviz", *args]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a trained MNIST run folder")
    parser.add_argument("--procs", default="1,2")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for procs in [int(p) for p in args.procs.split(",")]:
            threads = max(1, cores // procs) if args.device == "cpu" else 1
            out = Path(tmp) / f"ig{procs}"
            seconds = command(procs, ["attribute", args.run, "--index", f"0-{args.images - 1}", "--steps", "32",
                                      "--device", args.device, "--out", str(out), "--quiet"], threads)
            err = max(i["completeness_error"] for i in json.loads((out / "attribute.json").read_text())["images"])
            rows.append(("integrated gradients, 32 steps", procs, threads, args.images, seconds, f"max err {err:.4f}"))
            runs = Path(tmp) / f"runs{procs}"
            seconds = command(procs, ["train", "--train-split", "test[:8000]", "--eval-split", "test[8000:]",
                                      "--epochs", "1", "--seed", "1", "--runs-dir", str(runs), "--name", "e",
                                      "--device", args.device, "--quiet"], threads)
            acc = json.loads((runs / "e" / "metrics.json").read_text())[0]["eval_acc"]
            rows.append(("one epoch, MNIST net, test[:8000]", procs, threads, 8000, seconds, f"eval acc {acc:.4f}"))
    print(f"{cores} cores; whole commands, start-up included; device {args.device}")
    print(f"{'work':<36} {'procs':>5} {'threads':>7} {'seconds':>8} {'images/s':>9}  check")
    for work, procs, threads, images, seconds, check in rows:
        print(f"{work:<36} {procs:>5} {threads:>7} {seconds:>8.1f} {images / seconds:>9.1f}  {check}")


if __name__ == "__main__":
    main()
