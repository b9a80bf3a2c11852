"""The pointing game on a trained detector: do a method's maps of a detection point inside its box?

The detector is the tests' (``tests/digit_detector.py``): real MNIST digits (the test split's first
8,000) pasted on 64 x 64 canvases, one or two a canvas, trained for 8 epochs. The canvases explained
are made from the other 2,000 digits. Each canvas's best detection is explained by every method;
per method:

- pointing: the share of maps whose highest pixel lies inside the detection's box (Zhang et al.);
- energy: the share of the map's positive mass inside the box (a map with a floor, as D-RISE's,
  has its minimum taken off first);
- ms/map: the time per detection.

A random map scores about the box's share of the canvas (roughly 10 %).

    python scripts/bench_detection.py [--canvases 100] [--weights FILE]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import digit_detector as dd  # noqa: E402

from netviz import detection  # noqa: E402
from netviz.attribute import attribute_detections  # noqa: E402
from netviz.data import load_split  # noqa: E402

LAYER = "body.13"
METHODS = [("gradcam", {"layer": LAYER}), ("gradcam++", {"layer": LAYER}), ("layercam", {"layer": LAYER}),
           ("scorecam", {"layer": LAYER}), ("eigencam", {"layer": LAYER}), ("drise", {"masks": 500}),
           ("occlusion", {"window": 8, "stride": 4}), ("integrated", {"steps": 32}), ("saliency", {}),
           ("inputxgrad", {}), ("smoothgrad", {"samples": 16}), ("guided-backprop", {}), ("random", {})]


def detector(weights: Path | None) -> dd.DigitDetector:
    from safetensors.torch import load_file, save_file

    net = dd.DigitDetector()
    if weights is not None and weights.is_file():
        net.load_state_dict(load_file(str(weights)))
        return net.eval()
    digits = load_split("mnist", "test")
    images, boxes, classes = dd.canvases(digits.images[:8000, 0], digits.labels[:8000], 6000, seed=0)
    net = dd.train(images, boxes, classes, epochs=8)
    if weights is not None:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    return net


def scores(maps: torch.Tensor, boxes: torch.Tensor) -> tuple[float, float]:
    hits, energy = 0, 0.0
    for m, b in zip(maps.sum(1), boxes, strict=True):
        y, x = divmod(int(m.flatten().argmax()), m.shape[1])
        hits += int(b[0] <= x + 0.5 <= b[2] and b[1] <= y + 0.5 <= b[3])
        m = (m - m.min().clamp_min(0)).clamp_min(0)
        inside = torch.zeros_like(m, dtype=torch.bool)
        x0, y0, x1, y1 = (int(round(float(v))) for v in b)
        inside[y0:y1, x0:x1] = True
        energy += float(m[inside].sum() / m.sum().clamp_min(1e-12))
    return hits / len(maps), energy / len(maps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--canvases", type=int, default=100)
    parser.add_argument("--weights", type=Path, default=None,
                        help="a safetensors file: read, or written after training")
    args = parser.parse_args()
    torch.manual_seed(0)
    net = detector(args.weights)
    digits = load_split("mnist", "test")
    images, _, _ = dd.canvases(digits.images[8000:, 0], digits.labels[8000:], args.canvases, seed=1)
    found = detection.find(net, images)
    images = images[[i for i, f in enumerate(found) if len(f)]]  # a canvas the detector missed explains nothing
    print(f"{len(images)} of {args.canvases} canvases with a detection")
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| method | pointing | energy in box | ms / map |")
    print("|---|---|---|---|")
    for method, options in METHODS:
        start = time.perf_counter()
        result, chosen = attribute_detections(net, images, method, detection=0, **options)
        elapsed = time.perf_counter() - start
        pointing, energy = scores(result.attributions, chosen.boxes)
        print(f"| {method} | {pointing:.2f} | {energy:.2f} | {1000 * elapsed / len(chosen.image):.1f} |", flush=True)


if __name__ == "__main__":
    main()
