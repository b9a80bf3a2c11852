"""Time MNIST training: netviz's loop vs the PyTorch example's, and the fast recipe vs the reference.

Default: one epoch of the MNIST net on the real 8k split, netviz vs the PyTorch-example loop. The
reference is the PyTorch MNIST example's epoch: train() over a DataLoader of PIL images with
per-sample ToTensor + Normalize (batch 64, Adadelta lr 1.0), then test() over the same kind of
loader (batch 1000) on test[8000:]. netviz holds each split in memory as one normalised tensor and
cuts batches by index. Both train the same net with the same recipe in this process, alternating.

``--full``: the reference recipe (configs/mnist.toml, 10 epochs) against configs/mnist-fast.toml
(and configs/mnist-fast-994.toml) on the full 60,000/10,000 split, all through `netviz train` in
this process, one after the other: time to 99.0 % test accuracy (training + evaluation seconds),
its ratio, final accuracy, images per second, with the CPU model and whether it has AVX-512.

    NETVIZ_DATA=../shared/data python scripts/bench_train.py [--repeats 3] [--device cpu]
    NETVIZ_DATA=../shared/data python scripts/bench_train.py --full [--seeds 1,2,3] [--reference-stop-at-99]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from netviz.data import load_split
from netviz.device import resolve_device
from netviz.registry import build_model
from netviz.training import train


class PilMnist(Dataset):
    """What torchvision.datasets.MNIST does per item: uint8 -> PIL image -> transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images[:, 0].numpy(), labels.tolist()
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i], mode="L")), self.labels[i]


def reference_epoch(seed: int, device: torch.device) -> tuple[float, float, float]:
    """(train seconds, train + test seconds, test accuracy) of the PyTorch example's epoch."""
    data = load_split("mnist", "test[:8000]")
    ev = load_split("mnist", "test[8000:]")
    torch.manual_seed(seed)
    model = build_model("mnist").to(device)
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0)
    loader = DataLoader(PilMnist(data.images, data.labels), batch_size=64, shuffle=True)
    test_loader = DataLoader(PilMnist(ev.images, ev.labels), batch_size=1000)
    start = time.perf_counter()
    model.train()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        opt.zero_grad()
        loss = F.nll_loss(F.log_softmax(model(x), 1), y)
        loss.backward()
        opt.step()
    train_seconds = time.perf_counter() - start
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in test_loader:
            x, y = x.to(device), y.to(device)
            correct += int((model(x).argmax(1) == y).sum())
    return train_seconds, time.perf_counter() - start, correct / len(ev)


def netviz_epoch(seed: int, device: torch.device, amp: bool = True) -> tuple[float, float, float]:
    """``amp``: netviz's default (bf16 autocast on CUDA and on CPUs with AMX); False: float32."""
    with tempfile.TemporaryDirectory() as runs:
        run = train("mnist", train_split="test[:8000]", eval_split="test[8000:]", epochs=1, seed=seed,
                    device=str(device), runs_dir=runs, name="bench", quiet=True, amp=amp)
    m = run.metrics[0]
    return m["seconds"], m["seconds"] + m["eval_seconds"], m["eval_acc"]


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def cpu_description() -> str:
    """The CPU model, its core count and whether it has AVX-512 (what oneDNN's kernels depend on)."""
    import os

    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("unknown CPU", "", platform.processor()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    avx = "AVX-512" if "avx512f" in flags else "AVX2, no AVX-512" if "avx2" in flags else "no AVX2"
    return f"{model}, {os.cpu_count()} cores, {avx}"


def recipe_run(config: str, seed: int, device: torch.device, epochs: int | None = None,
               stop_at_99: bool = False) -> dict:
    """Train one config on the full split; return its summary with time to 99 % and final accuracy."""
    import json

    from netviz.training import RECIPES

    with tempfile.TemporaryDirectory() as runs:
        overrides = {"epochs": epochs} if epochs else {}
        if stop_at_99:  # the reference: train epoch by epoch until it passes 99 %, then stop
            name, total = "bench", epochs or RECIPES["mnist"]["epochs"]
            run = train(config=CONFIGS / config, seed=seed, device=str(device), runs_dir=runs,
                        name=name, quiet=True, epochs=1, train_split="train", eval_split="test")
            while run.metrics[-1]["eval_acc"] < 0.99 and len(run.metrics) < total:
                run = train(resume=Path(runs) / name, epochs=len(run.metrics) + 1, quiet=True)
        else:
            run = train(config=CONFIGS / config, seed=seed, device=str(device), runs_dir=runs,
                        name="bench", quiet=True, train_split="train", eval_split="test", **overrides)
        summary = json.loads((run.path / "summary.json").read_text())
    hit = summary["milestones"]["0.99"]
    return {"config": config, "seed": seed, "epochs": summary["epochs"],
            "final_acc": summary["final_eval_acc"], "images_per_second": summary["images_per_second"],
            "seconds": summary["seconds"], "to_99": hit["seconds"] if hit else None,
            "epoch_99": hit["epoch"] if hit else None}


def full(args, device: torch.device) -> None:
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"full MNIST (60,000 train / 10,000 test) on {cpu_description()}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {device}")
    rows = [recipe_run("mnist.toml", seeds[0], device, stop_at_99=args.reference_stop_at_99)]
    for config in ("mnist-fast.toml", "mnist-fast-994.toml"):
        rows += [recipe_run(config, seed, device) for seed in seeds]
    ref = rows[0]["to_99"]
    print(f"{'config':<22} {'seed':>4} {'epochs':>6} {'final acc':>9} {'to 99 %':>10} {'at epoch':>8} {'ratio':>6} "
          f"{'img/s':>8}")
    for r in rows:
        to99 = f"{r['to_99']:.1f} s" if r["to_99"] is not None else "never"
        ratio = f"{r['to_99'] / ref:.3f}" if r["to_99"] is not None and ref else "-"
        print(f"{r['config']:<22} {r['seed']:>4} {r['epochs']:>6} {r['final_acc']:>9.4f} {to99:>10} "
              f"{r['epoch_99'] or '-':>8} {ratio:>6} {r['images_per_second']:>8,.0f}")
    fast = [r for r in rows if r["config"] == "mnist-fast.toml"]
    if ref and all(r["to_99"] for r in fast):
        ratio = statistics.median(r["to_99"] / ref for r in fast)
        print(f"median time-to-99 ratio, mnist-fast / reference: {ratio:.3f} (target <= 0.15); "
              f"every seed >= 99 %: {all(r['final_acc'] >= 0.99 for r in fast)}; slowest seed past 99 % "
              f"after {max(r['to_99'] for r in fast):.1f} s (target < 10 s on every seed)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--full", action="store_true",
                        help="reference vs fast recipes on the full MNIST split (time to 99 %%)")
    parser.add_argument("--seeds", default="1,2,3", help="--full: seeds of the fast recipes")
    parser.add_argument("--reference-stop-at-99", action="store_true",
                        help="--full: stop the reference once it passes 99 %% (no final accuracy)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.full:
        full(args, device)
        return
    from netviz.device import use_amp

    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"netviz's default: {'bf16 autocast' if use_amp(device) else 'float32'}")
    netviz_epoch(0, device)  # warm-up: imports, allocator, oneDNN kernels
    ref: list = []
    ours: dict[str, list] = {"default": [], "float32": []}
    for r in range(args.repeats):
        ref.append(reference_epoch(r, device))
        ours["default"].append(netviz_epoch(r, device))
        ours["float32"].append(netviz_epoch(r, device, amp=False))
        (rt, re, ra), (nt, ne, na) = ref[-1], ours["default"][-1]
        print(f"repeat {r}: train pass: reference {rt:.2f} s, netviz {nt:.2f} s (ratio {nt / rt:.2f}); "
              f"epoch with eval: reference {re:.2f} s, netviz {ne:.2f} s (ratio {ne / re:.2f}); "
              f"acc {ra:.4f} vs {na:.4f} (float32 {ours['float32'][-1][2]:.4f})")
    for kind, runs in ours.items():
        for i, label in ((0, "train pass"), (1, "epoch with eval")):
            ratio = statistics.median(o[i] / f[i] for f, o in zip(ref, runs, strict=True))
            print(f"median {label}, netviz {kind}: reference {statistics.median(f[i] for f in ref):.2f} s, "
                  f"netviz {statistics.median(o[i] for o in runs):.2f} s, ratio {ratio:.2f} (target <= 0.8)")
        print(f"mean eval accuracy: reference {statistics.mean(f[2] for f in ref):.4f}, "
              f"netviz {kind} {statistics.mean(o[2] for o in runs):.4f}")


if __name__ == "__main__":
    main()
