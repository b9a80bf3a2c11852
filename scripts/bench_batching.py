"""Occlusion at 224 x 224 against Captum, on a quiet machine and with a second process busy.

A torchvision ResNet-18 (random weights, eval), one image, window 16, stride 8 (729 windows), as
issue 32 measured it. Contenders, each timed in turn in this one process (median of --repeats):

- netviz as a user runs it: incremental occlusion, the batch size measured (the measurement is
  forgotten before each call, as a new process would start);
- netviz with whole passes (``incremental=False``), the batch size measured;
- netviz with whole passes at fixed batches of 32 and 64 (the sizes the issue timed);
- Captum ``Occlusion`` at ``perturbations_per_eval`` 8 and 32 (32 was its best).

"busy": another process multiplies 1024 x 1024 matrices on one thread the whole time (a notebook
beside a training run). Every map is checked against Captum's, to 1e-4 of its scale.

    python scripts/bench_batching.py [--repeats 3] [--conditions quiet busy]
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import torch

BUSY = "import torch\ntorch.set_num_threads(1)\na = torch.randn(1024, 1024)\nwhile True:\n    a @ a\n"


@contextlib.contextmanager
def condition(name: str) -> Iterator[None]:
    if name == "quiet":
        yield
        return
    busy = subprocess.Popen([sys.executable, "-c", BUSY])
    time.sleep(2.0)  # its torch imported and spinning
    try:
        yield
    finally:
        busy.kill()
        busy.wait()


def cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main() -> None:
    import torchvision
    from captum.attr import Occlusion

    import netviz.attribute as A
    from netviz import batching

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--conditions", nargs="+", default=["quiet", "busy"], choices=["quiet", "busy"])
    args = parser.parse_args()

    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 224, 224)
    target = int(model(x).argmax())
    sizes: dict[str, list[int]] = {}

    def ours(**kw) -> Callable[[], torch.Tensor]:  # noqa: ANN003
        def run() -> torch.Tensor:
            batching._chosen.clear()  # measured afresh, as in a new process
            result = A.occlusion(model, x, target, window=16, stride=8, **kw)
            sizes.setdefault(name_of(kw), []).append(result.settings["batch_size"])
            return result.attributions
        return run

    def captum(ppe: int) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with torch.no_grad():
                return Occlusion(model).attribute(x, sliding_window_shapes=(3, 16, 16), strides=(3, 8, 8),
                                                  target=target, perturbations_per_eval=ppe)
        return run

    def name_of(kw: dict) -> str:
        if kw.get("incremental", True):
            return "netviz (incremental, measured batch)"
        return f"netviz whole passes, batch {kw.get('batch_size') or 'measured'}"

    contenders = {name_of({}): ours(), name_of({"incremental": False}): ours(incremental=False),
                  name_of({"incremental": False, "batch_size": 32}): ours(incremental=False, batch_size=32),
                  name_of({"incremental": False, "batch_size": 64}): ours(incremental=False, batch_size=64),
                  "Captum, perturbations_per_eval=8": captum(8), "Captum, perturbations_per_eval=32": captum(32)}
    print(f"# {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    for cond in args.conditions:
        with condition(cond):
            for fn in contenders.values():
                fn()  # warm-up: oneDNN kernels, the allocator
            sizes.clear()
            times: dict[str, list[float]] = {name: [] for name in contenders}
            maps: dict[str, torch.Tensor] = {}
            for _ in range(args.repeats):
                for name, fn in contenders.items():
                    start = time.perf_counter()
                    maps[name] = fn()
                    times[name].append(time.perf_counter() - start)
        ref_name = min((n for n in contenders if n.startswith("Captum")), key=lambda n: statistics.median(times[n]))
        ref, best = maps[ref_name], statistics.median(times[ref_name])
        print(f"\n## {cond}: Captum's best is {ref_name.split(', ')[1]}\n")
        print("| contender | median s (min-max) | x Captum's best | batch sizes | max diff / scale |")
        print("|---|---|---|---|---|")
        for name in contenders:
            t = times[name]
            diff = float((maps[name] - ref).abs().max() / ref.abs().max())
            used = ", ".join(map(str, sizes.get(name, []))) or "-"
            print(f"| {name} | {statistics.median(t):.2f} ({min(t):.2f}-{max(t):.2f}) | "
                  f"{statistics.median(t) / best:.2f} | {used} | {diff:.1e} |")


if __name__ == "__main__":
    main()
