"""Benchmark: netviz integrated gradients (adaptive steps) vs Captum's IntegratedGradients.

Same machine, same trained MNIST run, the same eval images and targets (the predicted class),
goal: relative completeness error <= 1 %. Each contender runs in its own subprocess so its peak
memory (ru_maxrss, or torch.cuda.max_memory_allocated on CUDA) is its own; the time excludes
loading. Contenders:

- ``netviz-adaptive``: ``integrated_gradients(..., tolerance=0.01)`` (gauss-legendre, 8, 16, ...)
- ``captum``: ``IntegratedGradients`` with its defaults (gausslegendre, 50 steps), called on
  chunks of batch_size // 50 images with ``internal_batch_size=batch_size`` and
  ``return_convergence_delta=True`` (so both compute the completeness check)
- ``netviz-50``: netviz with Captum's fixed 50 steps (the same work as Captum)
- ``netviz-measured``: ``netviz-adaptive`` as a user runs it, the batch size measured
  (:mod:`netviz.batching`) instead of ``--batch-size``

    python scripts/bench_attribute.py --run /tmp/netviz-test-cache/mnist-3ep --images 1000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _load(args):
    import torch

    from netviz.data import normalise
    from netviz.runs import load_run

    torch.set_num_threads(args.threads)
    run = load_run(args.run, device=args.device)
    data = run.eval_data(args.data_dir)
    x = normalise(data.images[: args.images], run.spec)
    with torch.no_grad():
        logits = torch.cat([run.model(x[i:i + 500].to(run.device)).cpu()
                            for i in range(0, len(x), 500)])
    return run, x, logits.argmax(1)


def _errors(run, x, target, attributions):
    """Relative completeness error per image, recomputed the same way for both contenders."""
    import torch

    from netviz.attribute import make_baseline

    black = make_baseline(x, "black", spec=run.spec)
    with torch.no_grad():
        fx = run.model(x.to(run.device)).cpu().gather(1, target[:, None]).squeeze(1).double()
        fb = run.model(black.to(run.device)).cpu().gather(1, target[:, None]).squeeze(1).double()
    delta = fx - fb
    return ((attributions.flatten(1).double().sum(1) - delta).abs() / delta.abs()).numpy()


def worker(args) -> dict:
    import torch

    run, x, target = _load(args)
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cuda = run.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    steps = None
    t0 = time.perf_counter()
    if args.worker == "captum":
        from captum.attr import IntegratedGradients

        from netviz.attribute import make_baseline

        ig = IntegratedGradients(run.model)
        chunk = max(1, args.batch_size // 50)
        parts = []
        for i in range(0, len(x), chunk):
            xs = x[i:i + chunk].to(run.device)
            attr, _ = ig.attribute(xs, make_baseline(xs, "black", spec=run.spec),
                                   target=target[i:i + chunk].to(run.device),
                                   internal_batch_size=args.batch_size,
                                   return_convergence_delta=True)
            parts.append(attr.detach().cpu())
        attributions = torch.cat(parts)
    else:
        from netviz.attribute import integrated_gradients

        fixed = args.worker == "netviz-50"
        res = integrated_gradients(run.model, x, target, steps=50 if fixed else None,
                                   tolerance=None if fixed else args.tolerance,
                                   batch_size=None if args.worker == "netviz-measured" else args.batch_size,
                                   spec=run.spec)
        attributions, steps = res.attributions, res.steps
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    err = _errors(run, x, target, attributions)
    out = {
        "contender": args.worker, "seconds": seconds, "images": len(x),
        "threads": args.threads, "device": str(run.device), "batch_size": args.batch_size,
        "max_error": float(err.max()), "mean_error": float(err.mean()),
        "over_1_percent": int((err > 0.01).sum()),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_after_load_mib": rss_loaded,
    }
    if cuda:
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    if steps is not None:
        out["mean_steps"] = float(steps.double().mean())
        out["steps_histogram"] = {int(s): int((steps == s).sum()) for s in steps.unique()}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default=os.environ.get("NETVIZ_BENCH_RUN",
                                                   "/tmp/netviz-test-cache/mnist-3ep"),
                   help="A trained MNIST run folder.")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--tolerance", type=float, default=0.01)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--contenders", default="netviz-adaptive,netviz-measured,captum,netviz-50")
    p.add_argument("--json", default=None, help="Also write the results here.")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    results = []
    for name in args.contenders.split(","):
        cmd = [sys.executable, __file__, "--worker", name, "--run", args.run,
               "--images", str(args.images), "--batch-size", str(args.batch_size),
               "--tolerance", str(args.tolerance), "--threads", str(args.threads),
               "--device", args.device] + (["--data-dir", args.data_dir] if args.data_dir else [])
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            sys.exit(f"{name} failed:\n{done.stderr}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(f"{name:16s} {r['seconds']:8.1f} s  max err {100 * r['max_error']:.3f}%  "
              f"mean err {100 * r['mean_error']:.3f}%  >1%: {r['over_1_percent']:4d}  "
              f"peak RSS {r['peak_rss_mib']:.0f} MiB (after load {r['rss_after_load_mib']:.0f})"
              + (f"  CUDA peak {r['cuda_peak_mib']:.0f} MiB" if "cuda_peak_mib" in r else "")
              + (f"  mean steps {r['mean_steps']:.1f}" if "mean_steps" in r else ""),
              flush=True)
    by = {r["contender"]: r for r in results}
    if "netviz-adaptive" in by and "captum" in by:
        ratio = by["netviz-adaptive"]["seconds"] / by["captum"]["seconds"]
        print(f"netviz-adaptive / captum time: {ratio:.2f}x (target <= 0.15x)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
