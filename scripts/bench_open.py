"""Does opening a user's model cost more than opening a registry one? `netviz layers`, both ways.

The same network (netviz's MNIST net) is opened four ways, each as a whole `netviz layers`
process, alternating, several times: by registry name, from a Python file (``file.py:NAME``),
from a model card, and from the file with a safetensors weights file. Printed: the median wall
time of each and its ratio to the registry name.

    python scripts/bench_open.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "netviz", "layers", *args], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        import torch
        from safetensors.torch import save_file

        from netviz.models import mnist
        from netviz.registry import build_model

        # the registry's MNIST net, as a user would keep it in a file of their own
        (folder / "net.py").write_text(Path(mnist.__file__).read_text())

        torch.manual_seed(0)
        save_file(build_model("mnist").state_dict(), str(folder / "net.safetensors"))
        (folder / "card.toml").write_text('model = "net.py:MnistNet"\nweights = "net.safetensors"\n'
                                          'input_shape = [1, 28, 28]\nmean = [0.1307]\nstd = [0.3081]\n')
        ways = {
            "registry name (--model mnist)": ["--model", "mnist"],
            "file (--model net.py:MnistNet)": ["--model", str(folder / "net.py:MnistNet"), "--input-shape", "1,28,28",
                                          "--mean", "0.1307", "--std", "0.3081"],
            "file + safetensors weights": ["--model", str(folder / "net.py:MnistNet"), "--input-shape", "1,28,28",
                                           "--mean", "0.1307", "--std", "0.3081", "--weights",
                                           str(folder / "net.safetensors")],
            "model card (--model card.toml)": ["--model", str(folder / "card.toml")],
        }
        for way in ways.values():  # warm the file system cache and Python's bytecode cache
            timed(way)
        times: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(args.repeats):
            for name, way in ways.items():
                times[name].append(timed(way))
    base = statistics.median(times["registry name (--model mnist)"])
    print(f"`netviz layers`, whole process, median of {args.repeats} alternating runs:")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<34} {median:6.3f} s  (min {min(values):.3f}, max {max(values):.3f})  "
              f"ratio {median / base:.2f}")


if __name__ == "__main__":
    main()
