"""Time `netviz dream`: all classes in one batch vs one class, and vs a loop over the classes.

Target: `--class all` (10 classes, one forward/backward per step) takes at most 2x the
time of a single class on the CPU. Also times channel visualisation of allconv conv3 (1 channel
vs 8 batched). Only the optimisation is timed (no model loading, no file writing); each number
is the median of --repeats runs.

    python scripts/bench_dream.py [RUN] [--repeats 3] [--device cpu] [--threads N]

RUN defaults to the latest run (falls back to an untrained MNIST net: the timing is the same).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from netviz.dream import dream_channels, dream_classes
from netviz.errors import NetvizError
from netviz.runs import load_run


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: first-call allocations and kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default=None, help="MNIST run folder (default: the latest run)")
    parser.add_argument("--allconv-run", default=None, help="allconv run (default: a fresh allconv net)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        mnist = load_run(args.run, device=args.device)
    except NetvizError:
        mnist = load_run(model="mnist", device=args.device)
    allconv = load_run(args.allconv_run, device=args.device) if args.allconv_run else \
        load_run(model="allconv", device=args.device)
    print(f"device {mnist.device}, torch threads {torch.get_num_threads()}, repeats {args.repeats}")
    print(f"mnist model: {mnist.path or 'untrained mnist'}; allconv: {allconv.path or 'untrained allconv'}")

    one = median_seconds(lambda: dream_classes(mnist, "5"), args.repeats)
    batch = median_seconds(lambda: dream_classes(mnist, "all"), args.repeats)
    loop = median_seconds(lambda: [dream_classes(mnist, str(k)) for k in range(10)], args.repeats)
    print("\nclass maximisation, mnist, recipe paper (50 Adam steps)")
    print(f"  1 class                      {one:7.3f} s")
    print(f"  --class all (10, one batch)  {batch:7.3f} s   = {batch / one:.2f}x one class "
          f"({'meets' if batch <= 2 * one else 'MISSES'} the <= 2x target)")
    print(f"  10 classes one by one        {loop:7.3f} s   = {loop / batch:.1f}x the batch")

    steps = 64
    ch1 = median_seconds(lambda: dream_channels(allconv, "conv3", "0", steps=steps), args.repeats)
    ch8 = median_seconds(lambda: dream_channels(allconv, "conv3", "0-7", steps=steps), args.repeats)
    print(f"\nchannel visualisation, allconv conv3, recipe deepdream ({steps} steps)")
    print(f"  1 channel                    {ch1:7.3f} s")
    print(f"  8 channels (one batch)       {ch8:7.3f} s   = {ch8 / ch1:.2f}x one channel")


if __name__ == "__main__":
    main()
