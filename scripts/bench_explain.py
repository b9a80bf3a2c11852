"""Benchmark: is `netviz explain`'s ranking faithful, and what do the LRP methods cost?

1. Faithfulness, per channel method (grad-x-act, layer-integrated, lrp): on ``--images`` test
   images, zero the top-5 channels of ``--layer`` (as ``explain`` ranks them) and, separately, 5
   random channels (seeded); the share of images whose target logit drops more for the top-5, and
   the mean drops. The seconds per image of each method (zennit imported before timing).
2. The three LRP attribution methods in `netviz evaluate` beside saliency, input x gradient and
   integrated gradients on ``--eval-images`` test images: deletion/insertion AUCs, sanity and
   seconds per image (LRP should cost about one backward pass, as saliency).

    python scripts/bench_explain.py --run /tmp/netviz-test-cache/mnist-3ep-seed1
"""

from __future__ import annotations

import argparse
import time


def zeroed_scores(model, x, layer: str, target, channels, count: int):
    """The target's logit with ``channels[i]`` of ``layer``'s ``count`` channels set to 0 for image i."""
    import torch

    mask = torch.ones(x.shape[0], count, 1, 1)
    mask.scatter_(1, channels[:, :, None, None], 0.0)
    handle = model.get_submodule(layer).register_forward_hook(lambda m, a, out: out * mask)
    try:
        with torch.no_grad():
            return model(x).gather(1, target[:, None])[:, 0].double()
    finally:
        handle.remove()


def faithfulness(run, x, layer: str) -> list[dict]:
    import torch

    from netviz.attribute._lrp import zennit
    from netviz.explain import CHANNEL_METHODS

    zennit()
    model = run.model
    rows = []
    with torch.no_grad():
        full = model(x)
    for name, m in CHANNEL_METHODS.items():
        started = time.perf_counter()
        res = m.function(model, x, None, layer, 5, options=m.make_options({}), spec=run.spec)
        seconds = time.perf_counter() - started
        k = res.contributions.shape[1]
        g = torch.Generator().manual_seed(0)
        random = torch.stack([torch.randperm(k, generator=g)[:5] for _ in range(len(x))])
        f = full.gather(1, res.target[:, None])[:, 0].double()
        top = zeroed_scores(model, x, layer, res.target, res.order[:, :5], k)
        rand = zeroed_scores(model, x, layer, res.target, random, k)
        rows.append({"method": name, "top_beats_random": float((top < rand).double().mean()),
                     "drop_top": float((f - top).mean()), "drop_random": float((f - rand).mean()),
                     "s_per_image": seconds / len(x),
                     "completeness_max": None if res.completeness_error is None
                     else float(res.completeness_error.max())})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--layer", default="conv2")
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--eval-images", type=int, default=200)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()

    import platform

    import torch

    from netviz.data import normalise
    from netviz.draw.evaluate import table
    from netviz.evaluate import evaluate_run
    from netviz.runs import load_run

    if args.threads:
        torch.set_num_threads(args.threads)
    run = load_run(args.run, device="cpu")
    data = run.eval_data(args.data_dir)
    x = normalise(data.images[:args.images], run.spec)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {run.name}, layer {args.layer}, {len(x)} test images")
    print("\n| method | top-5 zeroed drops the score more than 5 random | mean drop, top-5 | mean drop, random-5 "
          "| completeness error (max) | s/image |")
    print("|---|---|---|---|---|---|")
    for r in faithfulness(run, x, args.layer):
        err = "-" if r["completeness_max"] is None else f"{100 * r['completeness_max']:.2f} %"
        print(f"| {r['method']} | {100 * r['top_beats_random']:.0f} % | {r['drop_top']:.2f} | "
              f"{r['drop_random']:.2f} | {err} | {r['s_per_image']:.4f} |")
    methods = "lrp-epsilon,lrp-epsilon-plus,lrp-epsilon-gamma-box,saliency,inputxgrad,integrated,random"
    ev = evaluate_run(run, methods, indices=f"0-{args.eval_images - 1}", data_dir=args.data_dir, quiet=True)
    print(f"\n`netviz evaluate` on {args.eval_images} test images:\n")
    print(table(ev))


if __name__ == "__main__":
    main()
