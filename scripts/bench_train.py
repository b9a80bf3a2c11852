"""Time one epoch of the MNIST net on the real 8k split: netviz vs the PyTorch-example loop.

The reference is the PyTorch MNIST example's epoch: train() over a DataLoader of PIL images with
per-sample ToTensor + Normalize (batch 64, Adadelta lr 1.0), then test() over the same kind of
loader (batch 1000) on test[8000:]. netviz holds each split in memory as one normalised tensor and
cuts batches by index. Both train the same net with the same recipe in this process, alternating.
Printed: the training pass alone, and the whole epoch (training + evaluation), each as a ratio.

    NETVIZ_DATA=../shared/data python scripts/bench_train.py [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from PIL import Image
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from netviz.data import load_split
from netviz.device import resolve_device
from netviz.registry import build_model
from netviz.train import train


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


def netviz_epoch(seed: int, device: torch.device) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as runs:
        run = train("mnist", train_split="test[:8000]", eval_split="test[8000:]", epochs=1, seed=seed,
                    device=str(device), runs_dir=runs, name="bench", quiet=True)
    m = run.metrics[0]
    return m["seconds"], m["seconds"] + m["eval_seconds"], m["eval_acc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    netviz_epoch(0, device)  # warm-up: imports, allocator, oneDNN kernels
    ref, ours = [], []
    for r in range(args.repeats):
        ref.append(reference_epoch(r, device))
        ours.append(netviz_epoch(r, device))
        (rt, re, ra), (nt, ne, na) = ref[-1], ours[-1]
        print(f"repeat {r}: train pass: reference {rt:.2f} s, netviz {nt:.2f} s (ratio {nt / rt:.2f}); "
              f"epoch with eval: reference {re:.2f} s, netviz {ne:.2f} s (ratio {ne / re:.2f}); "
              f"acc {ra:.4f} vs {na:.4f}")
    for i, label in ((0, "train pass"), (1, "epoch with eval")):
        ratio = statistics.median(o[i] / f[i] for f, o in zip(ref, ours, strict=True))
        print(f"median {label}: reference {statistics.median(f[i] for f in ref):.2f} s, "
              f"netviz {statistics.median(o[i] for o in ours):.2f} s, ratio {ratio:.2f} (target <= 0.8)")
    print(f"mean eval accuracy: reference {statistics.mean(f[2] for f in ref):.4f}, "
          f"netviz {statistics.mean(o[2] for o in ours):.4f}")


if __name__ == "__main__":
    main()
