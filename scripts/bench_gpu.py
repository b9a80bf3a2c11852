"""netviz's attribution beside Captum and grad-cam on one device, for `scripts/gpu_check.sh`.

A torchvision ResNet (random weights, fixed seed) at ``--size``; per method the seconds per image of
each contender (median of ``--repeats`` after a warm-up, synchronised on CUDA) and the largest
difference of their maps, printed as markdown table rows:

- integrated gradients, 50 Gauss-Legendre steps, black baseline: netviz (``batch_size`` =
  ``--batch``) vs Captum's ``IntegratedGradients`` (``internal_batch_size`` = ``--batch``);
- Grad-CAM of ``layer4``: netviz vs grad-cam's ``GradCAM``;
- Score-CAM of ``layer4``: netviz vs grad-cam's ``ScoreCAM`` (its ``batch_size`` = ``--batch``), on
  ``--scorecam-images`` images (one forward pass per channel and image).

    python scripts/bench_gpu.py --device cuda --model resnet50 --size 224 --images 256 --batch 256
    python scripts/bench_gpu.py --device cpu --model resnet18 --size 64 --images 4 --batch 16   # the --cpu check
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable


def timed(fn: Callable[[], object], device, repeats: int) -> tuple[float, object]:
    import torch

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    out = fn()  # warm-up: kernels, cuDNN autotuning, allocator
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def scaled(maps) -> object:
    """Each map min-max scaled to [0, 1], as grad-cam returns its CAMs."""
    import torch

    m = torch.as_tensor(maps).float().flatten(1)
    lo, hi = m.min(1, keepdim=True).values, m.max(1, keepdim=True).values
    return (m - lo) / (hi - lo).clamp(min=1e-12)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--model", default="resnet50")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--scorecam-images", type=int, default=8)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    import torch
    import torchvision
    from captum.attr import IntegratedGradients
    from pytorch_grad_cam import GradCAM, ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from netviz.attribute import grad_cam, integrated_gradients, score_cam

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = getattr(torchvision.models, args.model)(weights=None).eval().to(device)
    x = torch.randn(args.images, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        target = torch.cat([model(x[i:i + args.batch].to(device)).argmax(1).cpu()
                            for i in range(0, len(x), args.batch)])
    black = torch.zeros_like(x)
    rows = []

    # integrated gradients
    def ours_ig():
        return integrated_gradients(model, x, target, baseline=black, steps=50, batch_size=args.batch).attributions

    chunk = max(1, args.batch // 50)  # images per Captum call: its 50 steps of them fill one internal batch

    def captum_ig():
        ig = IntegratedGradients(model)
        return torch.cat([ig.attribute(x[i:i + chunk].to(device), baselines=black[i:i + chunk].to(device),
                                       target=target[i:i + chunk].to(device), n_steps=50,
                                       method="gausslegendre", internal_batch_size=args.batch).detach().cpu()
                          for i in range(0, len(x), chunk)])

    t_ours, a = timed(ours_ig, device, args.repeats)
    t_theirs, b = timed(captum_ig, device, args.repeats)
    diff = float((a - b).abs().max() / b.abs().max())
    rows.append(("integrated gradients, 50 steps", "Captum", len(x), t_ours, t_theirs, diff))

    # Grad-CAM and Score-CAM of layer4
    targets = [ClassifierOutputTarget(int(t)) for t in target]

    def ours_gc():
        return grad_cam(model, x, target, layer="layer4", batch_size=args.batch).attributions[:, 0]

    def theirs_gc():
        with GradCAM(model=model, target_layers=[model.layer4]) as cam:
            return torch.cat([torch.as_tensor(cam(input_tensor=x[i:i + args.batch].to(device),
                                                  targets=targets[i:i + args.batch]))
                              for i in range(0, len(x), args.batch)])

    t_ours, a = timed(ours_gc, device, args.repeats)
    t_theirs, b = timed(theirs_gc, device, args.repeats)
    rows.append(("Grad-CAM, layer4", "grad-cam", len(x), t_ours, t_theirs,
                 float((scaled(a) - scaled(b)).abs().max())))

    n = args.scorecam_images
    xs, ts = x[:n], target[:n]

    def ours_sc():
        return score_cam(model, xs, ts, layer="layer4", batch_size=args.batch).attributions[:, 0]

    def theirs_sc():
        with ScoreCAM(model=model, target_layers=[model.layer4]) as cam:
            cam.batch_size = args.batch
            return torch.as_tensor(cam(input_tensor=xs.to(device), targets=targets[:n]))

    t_ours, a = timed(ours_sc, device, 1)
    t_theirs, b = timed(theirs_sc, device, 1)
    rows.append(("Score-CAM, layer4", "grad-cam", n, t_ours, t_theirs, float((scaled(a) - scaled(b)).abs().max())))

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    for method, peer, images, ours, theirs, diff in rows:
        print(f"| {method} ({args.model} {args.size}x{args.size}, {images} images, batch {args.batch}, {name}) | "
              f"{1000 * ours / images:.2f} ms/image | {peer} {1000 * theirs / images:.2f} ms/image | "
              f"{ours / theirs:.2f}x | max difference {diff:.1e} |")


if __name__ == "__main__":
    main()
