"""Time one epoch of the MNIST net on the real 8k split: netviz vs the PyTorch-example loop.

The reference is the PyTorch MNIST example's input pipeline: a DataLoader over PIL images with
per-sample ToTensor + Normalize, batch 64, Adadelta lr 1.0. netviz holds the split in memory as
one normalised tensor and cuts batches by index. Both train the same net with the same recipe in
this process, alternating, and both are evaluated on test[8000:].

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

from netviz.data import load_split, normalise
from netviz.device import resolve_device
from netviz.registry import build_model, get_spec
from netviz.train import evaluate, train


class PilMnist(Dataset):
    """What torchvision.datasets.MNIST does per item: uint8 -> PIL image -> transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images[:, 0].numpy(), labels.tolist()
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i], mode="L")), self.labels[i]


def reference_epoch(seed: int, device: torch.device) -> tuple[float, float]:
    data = load_split("mnist", "test[:8000]")
    torch.manual_seed(seed)
    model = build_model("mnist").to(device)
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0)
    loader = DataLoader(PilMnist(data.images, data.labels), batch_size=64, shuffle=True)
    start = time.perf_counter()
    model.train()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        opt.zero_grad()
        loss = F.nll_loss(F.log_softmax(model(x), 1), y)
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - start
    ev = load_split("mnist", "test[8000:]")
    _, acc = evaluate(model, normalise(ev.images, get_spec("mnist"), device), ev.labels.to(device))
    return seconds, acc


def netviz_epoch(seed: int, device: torch.device) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as runs:
        run = train("mnist", train_split="test[:8000]", eval_split="test[8000:]", epochs=1, seed=seed,
                    device=str(device), runs_dir=runs, name="bench", quiet=True)
    return run.metrics[0]["seconds"], run.metrics[0]["eval_acc"]


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
        print(f"repeat {r}: reference {ref[-1][0]:.2f} s (acc {ref[-1][1]:.4f})  "
              f"netviz {ours[-1][0]:.2f} s (acc {ours[-1][1]:.4f})  ratio {ours[-1][0] / ref[-1][0]:.2f}")
    ref_t = statistics.median(t for t, _ in ref)
    our_t = statistics.median(t for t, _ in ours)
    print(f"median epoch: reference {ref_t:.2f} s, netviz {our_t:.2f} s, ratio {our_t / ref_t:.2f} "
          f"(target <= 0.8); mean eval acc reference {statistics.mean(a for _, a in ref):.4f}, "
          f"netviz {statistics.mean(a for _, a in ours):.4f}")


if __name__ == "__main__":
    main()
