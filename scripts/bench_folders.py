"""Benchmark: `netviz audit` of a folder of many JPEGs, read as it is used beside held in memory.

The target: the audit of 50,000 JPEGs of mixed sizes (224 x 224 and above) runs in under 3 GB of
resident memory, at images per second within 10 % of the same audit with the images held decoded
in memory. The folder is made once (``--folder``, kept): the CIFAR sample's 200 images enlarged to
a random size from 224 to 320 pixels a side, as JPEGs, in their 10 class folders. Each audit runs
in a process of its own (its peak memory is its own), lazily ($NETVIZ_IN_MEMORY_BYTES=0) and in
memory (a bound above the decoded size), alternating ``--repeats`` times. The model: a small
convolutional net at 64 x 64 (the reading, not the model, is what is measured).

With ``--train``, one epoch of training on the folder read as used instead, in one process and
under torchrun with 2 processes of one thread each (``--augment 0.5``; the epoch's seconds and images
per second from ``metrics.json``, and the whole process's wall time).

    NETVIZ_DATA=../shared/data python scripts/bench_folders.py [--images 50000] [--repeats 1] [--train]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "scripts" / "small_net.py"


def make_folder(folder: Path, n: int, sample: Path) -> None:
    """``n`` JPEGs of 224 to 320 pixels a side from the sample's images, ``folder/<class>/``."""
    sources = sorted(p for p in sample.rglob("*.png"))
    jobs = [(folder, sources, start, min(n, start + 2000)) for start in range(0, n, 2000)]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_make_part, jobs))


def _make_part(job: tuple[Path, list[Path], int, int]) -> None:
    import random

    from PIL import Image

    folder, sources, start, stop = job
    rng = random.Random(start)
    for i in range(start, stop):
        source = sources[i % len(sources)]
        side = (rng.randint(224, 320), rng.randint(224, 320))
        target = folder / source.parent.name / f"{i:06d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.open(source).convert("RGB").resize(side, Image.BICUBIC).save(target, quality=90)


def audit(folder: Path, lazy: bool, out: Path) -> dict:
    env = {**os.environ, "NETVIZ_IN_MEMORY_BYTES": "0" if lazy else str(2**40)}
    code = ("import json, resource, sys, time\n"
            "from netviz.cli import main\n"
            "started = time.perf_counter()\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(json.dumps({'wall': time.perf_counter() - started,"
            " 'peak_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), file=sys.stderr)\n")
    argv = ["netviz", "audit", "--model", f"{MODEL}:SmallNet", "--input-shape", "3,64,64", "--dataset",
            f"imagefolder:{folder}", "--split", "all", "--no-cards", "--no-fit-concepts", "--out", str(out), "--quiet"]
    done = subprocess.run([sys.executable, "-c", f"import sys; sys.argv = {argv!r}\n{code}"], env=env,
                          capture_output=True, text=True, check=True)
    figures = json.loads(done.stderr.strip().splitlines()[-1])
    record = json.loads((out / "audit.json").read_text())
    return {**figures, "seconds": record["seconds"], "images": record["n_images"],
            "images_per_s": record["n_images"] / figures["wall"]}


def train(folder: Path, out: Path, processes: int) -> dict:
    """One epoch on ``folder`` read as used: in this interpreter, or under torchrun."""
    env = {**os.environ, "NETVIZ_IN_MEMORY_BYTES": "0"}
    launch = [sys.executable, "-m", "netviz"]
    if processes > 1:
        env.update(OMP_NUM_THREADS="1", NETVIZ_WORKERS="1")
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                  "-m", "netviz"]
    argv = ["train", "--model", f"{MODEL}:SmallNet", "--input-shape", "3,64,64", "--dataset",
            f"imagefolder:{folder}", "--train-split", "all", "--eval-split", "all[:500]", "--epochs", "1",
            "--batch-size", "128", "--augment", "0.5", "--seed", "0", "--device", "cpu", "--runs-dir", str(out),
            "--name", "run", "--quiet"]
    started = time.perf_counter()
    subprocess.run(launch + argv, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    metrics = json.loads((out / "run" / "metrics.json").read_text())[0]
    return {"processes": processes, "wall": wall, "epoch_s": metrics["seconds"],
            "images_per_s": metrics["images_per_second"], "train_loss": metrics["train_loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "netviz-bench-jpegs")
    parser.add_argument("--train", action="store_true", help="time one epoch of training instead of the audit")
    args = parser.parse_args()
    sample = Path(os.environ.get("NETVIZ_DATA", ROOT.parent / "shared" / "data")) / "cifar10-sample"
    if len(list(args.folder.rglob("*.jpg"))) != args.images:
        started = time.perf_counter()
        make_folder(args.folder, args.images, sample)
        print(f"made {args.images} JPEGs in {args.folder} in {time.perf_counter() - started:.0f} s")
    if args.train:
        with tempfile.TemporaryDirectory() as tmp:
            trained = [train(args.folder, Path(tmp) / f"{r}-{n}", n) for r in range(args.repeats) for n in (1, 2)]
        print("| processes | epoch s | images/s | wall s | train loss |\n|---|---|---|---|---|")
        for row in trained:
            print(f"| {row['processes']} | {row['epoch_s']:.1f} | {row['images_per_s']:.0f} | {row['wall']:.1f} | "
                  f"{row['train_loss']:.6f} |")
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for lazy in (True, False):
                figures = audit(args.folder, lazy, Path(tmp) / f"{r}-{lazy}")
                rows.append({"read": "as used" if lazy else "in memory", **figures})
                print(json.dumps(rows[-1]))
    print("| read | images | wall s | images/s | peak MiB |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['read']} | {row['images']} | {row['wall']:.1f} | {row['images_per_s']:.0f} | "
              f"{row['peak_mib']:.0f} |")


if __name__ == "__main__":
    main()
