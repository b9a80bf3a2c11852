"""Occlusion and Score-CAM, time per image: netviz vs Captum's Occlusion and the grad-cam package.

Same machine, same process, same model, images and targets, each contender timed in turn
(median of --repeats), after a warm-up; the results are checked to agree. Contenders:

- occlusion, window 4 x 4, stride 2 (the MNIST net, 169 windows per image): netviz with its
  defaults (the windows of all images in batches of 64 on a CPU; a window that covers only
  baseline pixels needs no forward pass), Captum ``Occlusion`` with its default
  ``perturbations_per_eval=1`` (one window of all the images per pass) and with 4;
- occlusion on a torchvision ResNet-18 at 224 x 224 (random weights), window 16, stride 8 (729
  windows an image): netviz with its defaults against Captum at several ``perturbations_per_eval``;
- Score-CAM on the MNIST net's ``pool`` (64 channels) and on a torchvision ResNet-18's ``layer4``
  (512 channels, 224 x 224, random weights): netviz with its defaults and the grad-cam
  package's ``ScoreCAM`` with its default batch of 16 and with 64.

    NETVIZ_DATA=../shared/data python scripts/bench_cam.py --run runs/mnist-3ep [--images 64]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch


def paired(contenders: dict[str, Callable[[], torch.Tensor]], repeats: int,
           warm_up: bool = True) -> dict[str, tuple[float, torch.Tensor]]:
    """Median seconds and the result of each contender, run in turn ``repeats`` times (interleaved,
    so a slower minute of a shared machine weighs on all of them alike)."""
    if warm_up:
        for fn in contenders.values():
            fn()  # oneDNN kernels, allocator
    times: dict[str, list[float]] = {name: [] for name in contenders}
    out: dict[str, torch.Tensor] = {}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            out[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(t), out[name]) for name, t in times.items()}


def scaled(maps: torch.Tensor) -> torch.Tensor:
    m = maps.reshape(maps.shape[0], -1)
    m = m - m.min(1, keepdim=True).values
    return m / (1e-7 + m.max(1, keepdim=True).values)


def main() -> None:
    from captum.attr import Occlusion
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    import netviz.attribute as A
    from netviz.data import normalise
    from netviz.registry import build_model
    from netviz.runs import load_run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a trained MNIST run folder")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--resnet-images", type=int, default=1,
                        help="ResNet images (each is 512 forward passes at 224 x 224: minutes on a CPU)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--resnet-ppe", type=int, nargs="+", default=[1, 8, 32],
                        help="Captum's perturbations_per_eval values tried for the ResNet occlusion")
    args = parser.parse_args()
    torch.set_grad_enabled(True)
    run = load_run(args.run, device="cpu")
    model, spec = run.model, run.spec
    x = normalise(run.eval_data().images[:args.images], spec)
    with torch.no_grad():
        target = model(x).argmax(1)
    n = len(x)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; MNIST net, {n} test images")

    rows = []
    black = A.make_baseline(x, "black", spec=spec)

    def captum(ppe: int):
        return lambda: Occlusion(model).attribute(x, sliding_window_shapes=(1, 4, 4), strides=(1, 2, 2),
                                                  baselines=black, target=target, perturbations_per_eval=ppe)

    timed = paired({"netviz": lambda: A.occlusion(model, x, target, window=4, stride=2, spec=spec).attributions,
                    "captum1": captum(1), "captum4": captum(4)}, args.repeats)
    ours_t, ours = timed["netviz"]
    for ppe in (1, 4):
        t, ref = timed[f"captum{ppe}"]
        diff = float((ours - ref).abs().max() / ref.abs().max())
        rows.append(("occlusion 4x4/2, MNIST", f"Captum Occlusion, perturbations_per_eval={ppe}", ours_t / n,
                     t / n, diff))

    def grad_cam_package(net, layer, inputs, t, batch):
        cam = ScoreCAM(model=net, target_layers=[net.get_submodule(layer)])
        cam.batch_size = batch
        import tqdm  # the package prints a bar per image and batch: silence it for the timing
        tqdm_init = tqdm.tqdm.__init__

        def quiet_init(self, *a, **k):
            k["disable"] = True
            tqdm_init(self, *a, **k)

        tqdm.tqdm.__init__ = quiet_init
        try:
            return torch.from_numpy(cam(input_tensor=inputs, targets=[ClassifierOutputTarget(int(k)) for k in t]))
        finally:
            tqdm.tqdm.__init__ = tqdm_init

    cases = [("Score-CAM pool (64 ch), MNIST", model, "pool", x, target, n, args.repeats)]
    torch.manual_seed(0)
    resnet = build_model("resnet18")
    xr = torch.randn(args.resnet_images, 3, 224, 224)
    with torch.no_grad():
        tr = resnet(xr).argmax(1)

    # occlusion at 224 x 224: window 16, stride 8 (27 x 27 = 729 windows an image)
    zero = torch.zeros_like(xr)

    def captum_resnet(ppe: int):
        return lambda: Occlusion(resnet).attribute(xr, sliding_window_shapes=(3, 16, 16), strides=(3, 8, 8),
                                                   baselines=zero, target=tr, perturbations_per_eval=ppe)

    timed = paired({"netviz": lambda: A.occlusion(resnet, xr, tr, window=16, stride=8, baseline=0.0).attributions,
                    **{f"captum{ppe}": captum_resnet(ppe) for ppe in args.resnet_ppe}}, 1, warm_up=False)
    ours_t, ours = timed["netviz"]
    for ppe in args.resnet_ppe:
        t, ref = timed[f"captum{ppe}"]
        diff = float((ours - ref).abs().max() / ref.abs().max())
        rows.append(("occlusion 16x16/8, ResNet-18 224x224", f"Captum Occlusion, perturbations_per_eval={ppe}",
                     ours_t / len(xr), t / len(xr), diff))
    cases.append(("Score-CAM layer4 (512 ch), ResNet-18 224x224", resnet, "layer4", xr, tr, len(xr), 1))
    for label, net, layer, inputs, t, count, repeats in cases:
        timed = paired({
            "netviz": lambda net=net, layer=layer, inputs=inputs, t=t: A.score_cam(net, inputs, t, layer)
            .attributions[:, 0],
            16: lambda net=net, layer=layer, inputs=inputs, t=t: grad_cam_package(net, layer, inputs, t, 16),
            64: lambda net=net, layer=layer, inputs=inputs, t=t: grad_cam_package(net, layer, inputs, t, 64),
        }, repeats, warm_up=repeats > 1)
        ours_t, ours = timed["netviz"]
        for batch in (16, 64):
            ref_t, ref = timed[batch]
            # the package resizes with OpenCV, netviz with torch: compare the [0, 1]-scaled maps
            diff = float((scaled(ours) - scaled(ref)).abs().max())
            rows.append((label, f"grad-cam ScoreCAM, batch_size={batch}", ours_t / count, ref_t / count, diff))

    print(f"{'case':<46} {'peer':<42} {'netviz s/img':>12} {'peer s/img':>11} {'ratio':>6} {'target':>7} "
          f"{'max diff':>9}")
    for case, peer, ours_s, ref_s, diff in rows:
        target = "<= 0.2" if case.startswith("occlusion") else "<= 0.5"  # issue 23's, against the best setting
        print(f"{case:<46} {peer:<42} {ours_s:>12.4f} {ref_s:>11.4f} {ours_s / ref_s:>6.2f} {target:>7} {diff:>9.1e}")


if __name__ == "__main__":
    main()
