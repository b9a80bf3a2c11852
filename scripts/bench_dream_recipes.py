"""Class dreams of the MNIST net by each recipe, judged by a second, independently trained net.

For every recipe (``paper``: the 2019 post's loop, a new Adam and 8-bit rounding every step; the
former ``paper`` loop, one Adam for all 50 steps and no rounding in between; ``lucent``;
``deepdream``) the ten class dreams of the reference net are saved as 8-bit images, then measured:
the reference net's probability of each target class, and how many of the ten an independently
trained ``mnist-fast`` net reads as their class (a dream that only fools the net it was made on
does not count).

    python scripts/bench_dream_recipes.py [--reference RUN] [--judge RUN] [--epochs 10]

Without runs it trains both on the full MNIST train split (``NETVIZ_DATA``): the reference recipe
for ``--epochs`` epochs and the ``mnist-fast`` recipe, into a temporary folder.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from bench_train import cpu_description  # scripts/ is on the path when a script runs

from netviz.dream import dream_classes, saved_pixels
from netviz.runs import load_run
from netviz.training import train

RECIPES = {  # name -> (recipe, settings overrides)
    "paper (the post's loop)": ("paper", {}),
    "former paper (one Adam, no rounding)": ("paper", {"fresh_adam": False, "quantise": False}),
    "lucent": ("lucent", {}),
    "deepdream": ("deepdream", {}),
}


def probabilities(run, images: torch.Tensor) -> torch.Tensor:
    from netviz.data import normalise

    with torch.no_grad():
        return torch.softmax(run.model(normalise(images, run.spec)).float(), dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default=None, help="the MNIST net's run (default: train one)")
    parser.add_argument("--judge", default=None, help="an mnist-fast run (default: train one)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the reference net when trained here")
    args = parser.parse_args()
    runs = tempfile.mkdtemp(prefix="bench-dream-")
    reference = load_run(args.reference, device="cpu") if args.reference else train(
        "mnist", epochs=args.epochs, seed=1, runs_dir=runs, name="reference", device="cpu", quiet=True)
    judge = load_run(args.judge, device="cpu") if args.judge else train(
        "mnist-fast", seed=2, runs_dir=runs, name="judge", device="cpu", quiet=True)
    print(f"CPU: {cpu_description()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"reference: {reference.path} (eval acc {reference.metrics[-1]['eval_acc']:.4f}); "
          f"judge: {judge.path} (eval acc {judge.metrics[-1]['eval_acc']:.4f})\n")
    print("| recipe | reference p(target), classes 0-9 | min | judge reads as the class | seconds |")
    print("|---|---|---|---|---|")
    for name, (recipe, overrides) in RECIPES.items():
        result = dream_classes(reference, "all", recipe=recipe, seed=0, batch_size=1, **overrides)
        images = saved_pixels(result.images)  # as the PNGs hold them
        p_ref = probabilities(reference, images).diagonal()
        read = probabilities(judge, images).argmax(1) == torch.arange(10)
        print(f"| {name} | {' '.join(f'{p:.3f}' for p in p_ref.tolist())} | {float(p_ref.min()):.3f} "
              f"| {int(read.sum())} of 10 | {result.seconds:.1f} |")


if __name__ == "__main__":
    main()
