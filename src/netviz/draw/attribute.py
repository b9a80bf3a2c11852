"""Attribution figures: overlays as in the integrated-gradients write-ups, grids, strips, GIFs.

The overlay: the attribution summed over colour channels, clipped at the 99th percentile of its
magnitude, positive in green and negative in red, blended on a dimmed grey copy of the image.
An all-zero attribution draws the grey image (Captum's helper divides by zero there).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz.draw import sheet
from netviz.draw.common import font, pyplot, rgb, save_figure, save_gif, save_png, to_uint8, upscale
from netviz.files import Artifact, write_json
from netviz.heads import target_label
from netviz.styles import check_drawing

if TYPE_CHECKING:
    import numpy as np

    from netviz.attribute import AttributeResult, InteriorGradients, SanityResult

POSITIVE = (0.0, 0.85, 0.25)  # green: pushes the score up
NEGATIVE = (1.0, 0.1, 0.2)  # red: pushes it down
GRID_MAX = 64  # images in one grid figure
STRIP_MAX = 16  # interior-gradient strips and GIFs written


def channel_sum(attr: Any) -> np.ndarray:
    """(C, H, W) or (H, W) attribution -> (H, W) float64, summed over channels."""
    import numpy as np

    a = np.asarray(attr.detach().cpu().numpy() if hasattr(attr, "detach") else attr, np.float64)
    return a.sum(0) if a.ndim == 3 else a


def clip_value(amap: np.ndarray, percentile: float = 99.0) -> float:
    """The magnitude mapped to full colour: the ``percentile`` of |amap| (its max if that is 0)."""
    import numpy as np

    mag = np.abs(amap[np.isfinite(amap)])
    if mag.size == 0:
        return 0.0
    v = float(np.percentile(mag, percentile))
    return v if v > 0 else float(mag.max())


def grey(pixels: Any) -> np.ndarray:
    """(C, H, W) pixels in [0, 1] -> (H, W) luminance."""
    import numpy as np

    p = np.asarray(pixels.cpu().numpy() if hasattr(pixels, "cpu") else pixels, np.float64)
    if p.ndim == 2:
        return p
    if p.shape[0] == 3:
        return 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
    return p.mean(0)


def overlay(pixels: Any, attr: Any, percentile: float = 99.0) -> np.ndarray:
    """Positive (green) and negative (red) attribution blended on the grey image: (H, W, 3)."""
    import numpy as np

    base = 0.15 + 0.55 * grey(pixels)
    out = np.repeat(base[..., None], 3, axis=2)
    amap = channel_sum(attr)
    scale = clip_value(amap, percentile)
    if scale == 0:
        return out
    v = np.clip(np.nan_to_num(amap / scale), -1.0, 1.0)[..., None]
    pos, neg = np.clip(v, 0, 1), np.clip(-v, 0, 1)
    return out * (1 - pos - neg) + pos * np.array(POSITIVE) + neg * np.array(NEGATIVE)


# ColorBrewer's PiYG, the 11 colours matplotlib's "PiYG" interpolates: the heat map needs no import
# of matplotlib (a second of the command's start)
PIYG = ((0.556862745098, 0.003921568627, 0.321568627451), (0.772549019608, 0.105882352941, 0.490196078431),
        (0.870588235294, 0.466666666667, 0.682352941176), (0.945098039216, 0.713725490196, 0.854901960784),
        (0.992156862745, 0.878431372549, 0.937254901961), (0.968627450980, 0.968627450980, 0.968627450980),
        (0.901960784314, 0.960784313725, 0.815686274510), (0.721568627451, 0.882352941176, 0.525490196078),
        (0.498039215686, 0.737254901961, 0.254901960784), (0.301960784314, 0.572549019608, 0.129411764706),
        (0.152941176471, 0.392156862745, 0.098039215686))


def piyg(v: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> (..., 3) colours of the PiYG map (pink 0, white 0.5, green 1)."""
    import numpy as np

    stops = np.asarray(PIYG)
    grid = np.linspace(0.0, 1.0, len(stops))
    return np.stack([np.interp(v, grid, stops[:, c]) for c in range(3)], axis=-1)


def heatmap(attr: Any, percentile: float = 99.0) -> np.ndarray:
    """The channel-summed attribution in a diverging map (pink negative, green positive)."""
    import numpy as np

    amap = channel_sum(attr)
    scale = clip_value(amap, percentile)
    v = np.zeros_like(amap) if scale == 0 else np.clip(np.nan_to_num(amap / scale), -1, 1)
    return piyg((v + 1) / 2)


def render(pixels: Any, attr: Any, style: str = "overlay", percentile: float = 99.0) -> np.ndarray:
    return heatmap(attr, percentile) if style == "heatmap" else overlay(pixels, attr, percentile)


def image_stem(name: str) -> str:
    """A file-name-safe form of an image name: "index 12" -> "0012", "cat 3.png" -> "cat_3"."""
    m = re.fullmatch(r"(.*), (detection (\d+)|box)", name)  # a detector's map: its image's stem and which
    if m:
        return f"{image_stem(m.group(1))}_{'box' if m.group(3) is None else 'det' + m.group(3)}"
    m = re.fullmatch(r"index (\d+)", name)
    if m:
        return f"{int(m.group(1)):04d}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).stem).strip("_") or "image"


def _caption(report: AttributeResult, i: int) -> tuple[str, bool]:
    spec = report.spec
    label = report.labels[i]
    pred = report.preds[i]
    target = target_label(report.result.target[i])
    parts = [f"pred {spec.class_name(pred)}"]
    if label is not None:
        parts.insert(0, f"true {spec.class_name(label)}")
    lines = [report.names[i], " / ".join(parts)]
    if report.detections is not None:
        lines[1] = report.target_text(i)
    elif target != pred:
        lines.append(f"target {spec.class_name(target)}")
    err = getattr(report.result, "completeness_error", None)
    if err is not None:
        lines.append(f"err {100 * float(err[i]):.2f}%, {int(report.result.steps[i])} steps")
    if report.uniform[i]:
        lines.append("uniform: no region stands out")
    return "\n".join(lines), label is not None and label != pred


GRID_PANEL = 160  # pixels: a grid panel's side at least (MNIST's 28 drawn 6x)


def plot_grid(report: AttributeResult, path: str | os.PathLike, style: str = "overlay",
              percentile: float = 99.0) -> Path:
    """One panel per image (at most GRID_MAX): the attribution with true/predicted labels (red
    when the prediction is wrong), under a title; drawn with PIL."""
    n = min(len(report.names), GRID_MAX)
    lines = max(_caption(report, i)[0].count("\n") + 1 for i in range(n))
    cells = []
    for i in range(n):
        text, wrong = _caption(report, i)
        caption = text.split("\n")
        caption += [""] * (lines - len(caption))  # every caption as tall: the pictures line up
        picture = sheet.as_uint8(outlined(render(report.pixels[i], report.result.attributions[i], style,
                                                 percentile), report, i))
        cells.append(sheet.stack([sheet.text_block(caption, 12, color=sheet.RED if wrong else sheet.BLACK),
                                  upscale(picture, GRID_PANEL)], gap=2))
    weights = f" ({report.weights})" if report.weights and report.run_path is None else ""
    title = f"{report.method}: {report.spec.name}{weights}, score = " + (
        f"class {report.result.score}" if report.detections is None else report.detections.scored_by.name)
    layer = getattr(report.result, "layer", None)
    if layer:
        title += f", layer {layer}"
    if style == "overlay" and not report.spec_method.signed:
        title += " (greener = more)"
    elif style == "overlay":
        title += " (green raises it, red lowers it)"
    if len(report.names) > n:
        title += f" - first {n} of {len(report.names)} images"
    return sheet.save_sheet(sheet.stack([sheet.text_block([title], 14), sheet.grid(cells, min(n, 8))], gap=8), path)


def outlined(picture: np.ndarray, report: AttributeResult, i: int) -> np.ndarray:
    """``picture`` (H, W, 3, floats in [0, 1], as :func:`render` gives) with the outline of image
    ``i``'s region in yellow, for a segmentation model (the pixels its target's score sums), or for
    a detector the box explained in yellow (2 pixels) and the image's other detections in thin
    cyan; unchanged otherwise."""
    import numpy as np

    if report.detections is not None:
        d = report.detections
        out = picture.copy()
        for box in d.others[i].tolist():
            draw_box(out, box, (0.0, 0.8, 1.0), 1)
        return draw_box(out, d.boxes[i].tolist(), (1.0, 0.85, 0.0), max(1, round(out.shape[0] / 160)))
    if report.regions is None or picture.shape[:2] != tuple(report.regions.shape[1:]):
        return picture
    mask = report.regions[i].numpy()
    inner = np.pad(mask, 1, mode="edge")
    inner = inner[:-2, 1:-1] & inner[2:, 1:-1] & inner[1:-1, :-2] & inner[1:-1, 2:]
    out = picture.copy()
    out[mask & ~inner] = (1.0, 0.85, 0.0)
    return out


def draw_box(picture: np.ndarray, box: Sequence[float], color: tuple[float, float, float],
             width: int = 1) -> np.ndarray:
    """``picture`` (H, W, 3) with the outline of ``box`` (x0, y0, x1, y1 in its pixels) drawn in
    ``color``, ``width`` pixels inside the box's edge; drawn in place and returned."""
    h, w = picture.shape[:2]
    x0, y0 = (max(0, min(int(round(v)), n - 1)) for v, n in zip(box[:2], (w, h), strict=True))
    x1, y1 = (max(0, min(int(round(v)), n)) for v, n in zip(box[2:], (w, h), strict=True))
    if x1 <= x0 or y1 <= y0:
        return picture
    t = min(width, x1 - x0, y1 - y0)
    picture[y0:y0 + t, x0:x1] = color
    picture[y1 - t:y1, x0:x1] = color
    picture[y0:y1, x0:x0 + t] = color
    picture[y0:y1, x1 - t:x1] = color
    return picture


def image_panel(pixels: Any, attr: Any, percentile: float = 99.0,
                outline: Callable[[np.ndarray], np.ndarray] = lambda a: a) -> np.ndarray:
    """[image | overlay | heat map] side by side, upscaled, as uint8 (H, 3W + gaps, 3); the
    overlay passes through ``outline`` (a segmentation target's region)."""
    import numpy as np

    parts = [rgb(pixels), outline(overlay(pixels, attr, percentile)), heatmap(attr, percentile)]
    gap = np.ones((parts[0].shape[0], max(1, parts[0].shape[1] // 14), 3))
    row = np.concatenate([parts[0], gap, parts[1], gap, parts[2]], axis=1)
    return to_uint8(upscale(row, min_size=256 * 3))


def plot_completeness(report: AttributeResult, path: str | os.PathLike) -> Path:
    """Relative completeness error per image (log scale), coloured by the steps it used (PIL)."""
    import numpy as np

    res = report.result
    err = np.maximum(res.completeness_error.numpy(), 1e-9) * 100
    steps = res.steps.numpy()
    series = [(f"{s} steps ({int((steps == s).sum())})", np.flatnonzero(steps == s), err[steps == s])
              for s in sorted(set(steps.tolist()))]
    tol = res.settings.get("tolerance")
    chart = sheet.log_scatter(
        series, title=f"completeness of integrated gradients ({res.settings.get('quadrature')}), "
                      f"max {err.max():.3g}%",
        xlabel="image", ylabel="|sum attr - (F(x) - F(b))| / |F(x) - F(b)|  (%)",
        hline=(tol * 100, f"tolerance {tol * 100:g}%") if tol else None)
    return sheet.save_sheet(chart, path)


def plot_interior_strip(report: AttributeResult, i: int, path: str | os.PathLike,
                        percentile: float = 99.0) -> Path:
    """Scaled inputs (top) and their gradients (bottom), one column per alpha."""
    import numpy as np

    plt = pyplot()
    res: InteriorGradients = report.result  # type: ignore[assignment]
    from netviz.data import denormalise

    scaled = denormalise(res.scaled_inputs()[i], report.spec)
    a = len(res.alphas)
    fig, axes = plt.subplots(2, a, figsize=(1.3 * a + 0.4, 3.4), squeeze=False)
    norms = res.gradients[i].flatten(1).norm(dim=1).numpy()
    for k, alpha in enumerate(res.alphas):
        axes[0, k].imshow(np.clip(rgb(scaled[k]), 0, 1), interpolation="nearest")
        axes[0, k].set_title(f"α={alpha:g}\nF={float(res.scores[i, k]):.3g}", fontsize=7)
        axes[1, k].imshow(overlay(scaled[k], res.gradients[i, k], percentile),
                          interpolation="nearest")
        axes[1, k].set_title(f"|grad| {norms[k]:.2g}", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    text, _ = _caption(report, i)
    fig.suptitle(f"interior gradients of the {res.score} of class "
                 f"{report.spec.class_name(target_label(res.target[i]))}: {text.replace(chr(10), ', ')}",
                 fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def interior_frames(report: AttributeResult, i: int, percentile: float = 99.0
                    ) -> list[np.ndarray]:
    """GIF frames from black to the image: [scaled input | its gradient], upscaled."""
    import numpy as np

    from netviz.data import denormalise

    res: InteriorGradients = report.result  # type: ignore[assignment]
    scaled = denormalise(res.scaled_inputs()[i], report.spec)
    frames = []
    for k in range(len(res.alphas)):
        left = np.clip(rgb(scaled[k]), 0, 1)
        gap = np.ones((left.shape[0], max(1, left.shape[1] // 14), 3))
        row = np.concatenate([left, gap, overlay(scaled[k], res.gradients[i, k], percentile)], 1)
        frames.append(_label(to_uint8(upscale(row, min_size=512)), f"alpha = {res.alphas[k]:g}"))
    return frames


def _label(frame: np.ndarray, text: str) -> np.ndarray:
    """A white band with ``text`` under a uint8 (H, W, 3) frame."""
    import numpy as np
    from PIL import Image, ImageDraw

    band = 24
    im = Image.new("RGB", (frame.shape[1], frame.shape[0] + band), "white")
    im.paste(Image.fromarray(frame), (0, 0))
    ImageDraw.Draw(im).text((6, frame.shape[0] + 3), text, fill="black", font=font(16))
    return np.asarray(im)


def plot_interior_scores(report: AttributeResult, path: str | os.PathLike) -> Path:
    """F(alpha x) and the gradient norm against alpha for every image: the saturation."""
    plt = pyplot()
    res: InteriorGradients = report.result  # type: ignore[assignment]
    fig, (ax_f, ax_g) = plt.subplots(1, 2, figsize=(9, 3.6))
    norms = res.gradients.flatten(2).norm(dim=2).numpy()
    for i, name in enumerate(report.names):
        ax_f.plot(res.alphas, res.scores[i].numpy(), "o-", ms=3, lw=1, alpha=0.7, label=name)
        ax_g.plot(res.alphas, norms[i], "o-", ms=3, lw=1, alpha=0.7)
    if len(report.names) <= 10:
        ax_f.legend(fontsize=7)
    ax_f.set_title(f"score F (class {res.score}) at the scaled input", fontsize=9)
    ax_g.set_title("gradient norm at the scaled input", fontsize=9)
    for ax in (ax_f, ax_g):
        ax.set_xlabel("alpha (0 = black, 1 = the image)")
        ax.grid(alpha=0.3)
    ax_g.set_yscale("log")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_sanity(sanity: SanityResult, report: AttributeResult, path: str | os.PathLike,
                percentile: float = 99.0) -> Path:
    """Mean rank correlation per cascade step, and the first image's maps as layers go."""
    import numpy as np

    plt = pyplot()
    L = len(sanity.layers)
    # Deep models have dozens of layers: show at most 12 maps, evenly spread over the cascade.
    shown = sorted({int(round(v)) for v in np.linspace(0, L, min(L + 1, 12))})
    fig = plt.figure(figsize=(max(7.0, 1.25 * len(shown)), 5.6))
    grid = fig.add_gridspec(2, len(shown), height_ratios=[1.5, 1])
    ax = fig.add_subplot(grid[0, :])
    steps = np.arange(L + 1)
    for values, label in ((sanity.rank_correlation, "|attribution|"),
                          (sanity.signed_correlation, "signed attribution")):
        v = values.numpy()
        mean = np.concatenate([[1.0], np.nanmean(v, axis=1)])
        lo = np.concatenate([[1.0], np.nanmin(v, axis=1)])
        hi = np.concatenate([[1.0], np.nanmax(v, axis=1)])
        ax.plot(steps, mean, "o-", label=f"{label} (mean, min-max band)")
        ax.fill_between(steps, lo, hi, alpha=0.15)
    ax.axhline(0, color="k", lw=0.8)
    every = max(1, math.ceil((L + 1) / 24))  # keep the tick labels apart
    ax.set_xticks(steps[::every])
    ax.set_xticklabels((["original"] + [f"+{n}" for n in sanity.layers])[::every], rotation=30,
                       ha="right", fontsize=7)
    ax.set_ylabel("Spearman vs original")
    ax.set_ylim(-1.05, 1.05)
    ax.set_title(f"model randomisation ({report.method}): layers re-initialised from the top, "
                 f"cumulatively; {len(report.names)} image(s)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    for col, j in enumerate(shown):
        sub = fig.add_subplot(grid[1, col])
        sub.imshow(overlay(report.pixels[0], sanity.maps[j, 0], percentile),
                   interpolation="nearest")
        sub.set_title("original" if j == 0 else f"+{sanity.layers[j - 1]}", fontsize=7)
        sub.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)


def _grid_figure(report: AttributeResult, out: Path, style: str, percentile: float) -> list[Artifact]:
    return [Artifact(plot_grid(report, out / f"{report.method}.png", style, percentile),
                     f"{report.method} for {len(report.names)} image(s), with true and predicted labels")]


def _panels(report: AttributeResult, out: Path, style: str, percentile: float) -> list[Artifact]:
    """One [image | overlay | heat map] PNG per image, its caption under it."""
    written = []
    for i, name in enumerate(report.names):
        caption = _caption(report, i)[0].replace("\n", "  |  ")
        panel = image_panel(report.pixels[i], report.result.attributions[i], percentile,
                            outline=lambda a, i=i: outlined(a, report, i))
        written.append(Artifact(save_png(_label(panel, f"{report.method}: {caption}"),
                                         out / f"{report.method}_{image_stem(name)}.png"),
                                f"{report.method}, {caption}: image | overlay | heat map"))
    return written


def _completeness_figure(report: AttributeResult, out: Path, style: str, percentile: float) -> list[Artifact]:
    return [Artifact(plot_completeness(report, out / "completeness.png"),
                     "each image's completeness error |sum - (F(x) - F(b))| / |F(x) - F(b)| and steps")]


def _interior_figures(report: AttributeResult, out: Path, style: str, percentile: float) -> list[Artifact]:
    written = [Artifact(plot_interior_scores(report, out / "interior_scores.png"),
                        "the score and the gradient norm at each scaled input alpha * x")]
    for i in range(min(len(report.names), STRIP_MAX)):
        s = image_stem(report.names[i])
        written.append(Artifact(plot_interior_strip(report, i, out / f"interior_{s}.png", percentile),
                                f"{report.names[i]}: scaled inputs and their gradients, one column per alpha"))
        written.append(Artifact(save_gif(interior_frames(report, i, percentile), out / f"interior_{s}.gif"),
                                f"{report.names[i]}: from black to the image, with the gradient"))
    return written


# What a method's `figures` name: each draws into the folder and returns what it wrote.
FIGURES = {"grid": _grid_figure, "panels": _panels, "completeness": _completeness_figure,
           "interior": _interior_figures}


def write_maps(report: AttributeResult, path: Path) -> Path:
    """The report's tensors (:meth:`AttributeResult.tensors`) as a safetensors file."""
    from safetensors.torch import save_file

    from netviz.files import atomic_write

    tensors, meta = report.tensors()
    return atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta))


def write_attribution(report: AttributeResult, out_dir: str | os.PathLike,
                      style: str = "overlay", percentile: float = 99.0) -> list[Artifact]:
    """Write attribute.json and the figures the report's method asks for."""
    check_drawing(style, percentile)
    out = Path(out_dir)
    written = [Artifact(write_json(out / "attribute.json", report.record()),
                        f"{report.method}: per image the target, scores and attribution totals"),
               Artifact(write_maps(report, out / "maps.safetensors"),
                        "the raw maps (attributions, N x C x H x W float32, and the targets) for your own analysis")]
    for figure in report.spec_method.figures:
        written += FIGURES[figure](report, out, style, percentile)
    if report.sanity is not None:
        written.append(Artifact(write_json(out / "sanity.json", report.sanity_record()),
                                "Spearman correlation with the original map as layers are randomised"))
        written.append(Artifact(plot_sanity(report.sanity, report, out / "sanity.png", percentile),
                                "model randomisation: the maps and their correlation, layer by layer"))
    return written
