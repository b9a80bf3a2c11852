"""What every attribution method shares: targets, the score, baselines, batched input gradients, and
the opening every method starts with (:func:`opening`: checks, eval mode, the target, the batches).

All tensors are in the model's *normalised* input space. Functions that need to know what "black"
or "white" is there take ``spec`` (a ModelSpec) or ``mean``/``std``; with neither, pixel 0 is
taken to be 0 and pixel 1 to be 1 (an unnormalised model).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from netviz.device import model_device
from netviz.errors import NetvizError, close_matches
from netviz.files import finite_number
from netviz.layers import eval_mode

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.batching import Batches
    from netviz.registry import ModelSpec

SCORES = ("logit", "logprob", "prob")
BASELINES = ("black", "white", "blur", "noise", "mean")


@dataclass
class Attribution:
    """The result of one attribution method on a batch of N images.

    ``attributions`` has the shape of the input (N, C, H, W), on the CPU. For integrated gradients
    ``completeness_error`` is |sum(attributions) - (F(x) - F(baseline))| / |F(x) - F(baseline)|
    per image and ``steps`` the number of steps each image used; other methods leave them None.
    Class-activation maps (Grad-CAM and kin) also keep ``maps`` at the layer's resolution and the
    ``layer``; their ``attributions`` are those maps upsampled bilinearly, the same in every channel.
    """

    attributions: torch.Tensor
    method: str
    target: torch.Tensor  # (N,) the class differentiated for each image
    score: str  # "logit", "logprob" or "prob": what F is
    completeness_error: torch.Tensor | None = None
    steps: torch.Tensor | None = None
    score_input: torch.Tensor | None = None  # F(x), (N,)
    score_baseline: torch.Tensor | None = None  # F(baseline), (N,)
    settings: dict[str, Any] = field(default_factory=dict)
    maps: torch.Tensor | None = None  # class-activation maps at the layer's resolution (N, 1, h, w)
    layer: str | None = None  # the layer a CAM method read

    def show(self, images: torch.Tensor | None = None, spec: ModelSpec | None = None, style: str = "overlay"
             ) -> Any:
        """The maps as pictures (a :class:`netviz.draw.show.Picture`, drawn inline in Jupyter): on
        ``images`` (the tensor explained, with ``spec``'s normalisation), else as heat maps."""
        from netviz.draw.show import show

        return show(self, images, spec=spec, style=style)

    def _repr_png_(self) -> bytes:
        return self.show()._repr_png_()

    def image_record(self, i: int) -> dict[str, Any]:
        """What attribute.json keeps of image ``i``: what its map adds up to, its largest value, F(x)."""
        out = {"attribution_sum": finite_number(self.attributions[i].double().sum()),
               "attribution_max_abs": finite_number(self.attributions[i].abs().max())}
        if self.score_input is not None:
            out["score_input"] = finite_number(self.score_input[i])
        return out

    @property
    def delta(self) -> torch.Tensor | None:
        """sum(attributions) - (F(x) - F(baseline)) per image (Captum's convergence delta)."""
        if self.score_input is None or self.score_baseline is None:
            return None
        total = self.attributions.flatten(1).double().sum(1)
        return total - (self.score_input - self.score_baseline)


# -- normalisation ---------------------------------------------------------------------------

def norm_params(spec: ModelSpec | None = None, mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel: from ``spec``, else the arguments, else (0,) / (1,)."""
    if spec is not None:
        return tuple(spec.mean), tuple(spec.std)
    return tuple(mean) if mean is not None else (0.0,), tuple(std) if std is not None else (1.0,)


def _pixel(value: float, x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
           ) -> torch.Tensor:
    """The normalised image of a constant pixel ``value``, shaped (1, C, 1, 1) like ``x``."""
    import torch

    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    if m.shape[1] not in (1, x.shape[1]) or s.shape[1] not in (1, x.shape[1]):
        raise NetvizError(f"mean/std have {m.shape[1]} channels but the input has {x.shape[1]}")
    return ((value - m) / s).expand(1, x.shape[1], 1, 1)


def pixel_range(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Normalised (pixel 1 - pixel 0) per channel, (1, C, 1, 1): the span of valid inputs."""
    return _pixel(1.0, x, mean, std) - _pixel(0.0, x, mean, std)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    import torch
    from torch.nn import functional as F

    radius = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    # Reflect padding needs pad < size; small images fall back to replicate.
    mode = "reflect" if radius < min(x.shape[2:]) else "replicate"
    y = F.pad(x, (radius, radius, 0, 0), mode=mode)
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.pad(y, (0, 0, radius, radius), mode=mode)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def seeded_uniform(shape: Sequence[int], seed: int, offset: int = 0, dtype: torch.dtype | None = None
                   ) -> torch.Tensor:
    """Uniform [0, 1) noise of ``shape`` (N, ...) from a generator seeded with ``seed``, after the
    draws of ``offset`` images before these (another rank's share): each image gets the numbers it
    gets when the whole selection is drawn in one process."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.rand((offset + shape[0], *shape[1:]), generator=g, dtype=dtype)[offset:]


def make_baseline(x: torch.Tensor, baseline: str | float | torch.Tensor | None = None, *,
                  spec: ModelSpec | None = None, mean: Sequence[float] | None = None,
                  std: Sequence[float] | None = None, seed: int = 0, offset: int = 0) -> torch.Tensor:
    """The baseline for the batch ``x`` (normalised), broadcast to x's shape.

    ``None``/``"black"``: pixel 0; ``"white"``: pixel 1; ``"blur"``: x blurred with a Gaussian of
    sigma = size/8; ``"noise"``: uniform random pixels (seeded); a number: that constant in the
    normalised space; a tensor of shape (C,H,W), (1,C,H,W) or (N,C,H,W): used as given (already
    normalised). ``"mean"`` (the data-set mean image) needs the data: pass
    :func:`mean_baseline` (a tensor) instead.
    """
    import torch

    m, s = norm_params(spec, mean, std)
    if baseline is None:
        baseline = "black"
    if isinstance(baseline, torch.Tensor):
        b = baseline.to(device=x.device, dtype=x.dtype)
        if b.ndim == 3:
            b = b.unsqueeze(0)
        if b.ndim != 4 or b.shape[1:] != x.shape[1:] or b.shape[0] not in (1, x.shape[0]):
            raise NetvizError(
                f"baseline has shape {tuple(b.shape)} but the input is {tuple(x.shape)}: "
                f"give a baseline of shape {tuple(x.shape[1:])}"
            )
        return b.expand_as(x)
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(x, float(baseline))
    name = str(baseline).lower()
    if name == "black":
        return _pixel(0.0, x, m, s).expand_as(x)
    if name == "white":
        return _pixel(1.0, x, m, s).expand_as(x)
    if name == "blur":
        return _gaussian_blur(x, max(x.shape[2:]) / 8.0)
    if name == "noise":
        u = seeded_uniform(x.shape, seed, offset, x.dtype).to(x.device)
        return _pixel(0.0, x, m, s) + u * pixel_range(x, m, s)
    if name == "mean":
        raise NetvizError(
            "baseline 'mean' needs the data set: pass mean_baseline(images, spec) as the "
            "baseline tensor"
        )
    raise NetvizError(
        f"unknown baseline '{baseline}': use one of {', '.join(BASELINES)}, an image file, "
        f"or a tensor{close_matches(name, BASELINES)}"
    )


def mean_baseline(images: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """The data set's mean image (uint8 images N,C,H,W in, a tensor or a lazy folder's) normalised for
    ``spec``: (1, C, H, W)."""
    from netviz.data import chunks, normalise

    total = sum(chunk.double().sum(0, keepdim=True) for chunk in chunks(images))
    return normalise(total / (len(images) * 255.0), spec)


# -- targets and scores -------------------------------------------------------------------------

def check_score(score: str) -> str:
    if score not in SCORES:
        raise NetvizError(
            f"unknown score '{score}': use one of {', '.join(SCORES)}{close_matches(score, SCORES)}"
        )
    return score


def read_scores(logits: torch.Tensor, score: str, activation: str = "softmax") -> torch.Tensor:
    """(N, K) logits as the chosen score of every class: the logits, or with ``prob`` and
    ``logprob`` read with ``activation`` (softmax, sigmoid for multi-label models, none)."""
    from netviz.heads import Head

    if logits.ndim != 2:
        raise NetvizError(f"the model returns shape {tuple(logits.shape)}; attribution needs "
                          "(N, classes)")
    head = Head(activation=activation)
    if score == "logprob":
        return head.log_probabilities(logits)
    if score == "prob":
        return head.probabilities(logits)
    return logits


def as_columns(target: torch.Tensor) -> torch.Tensor:
    """Targets as (N, T) class numbers: one per image, or several (a multi-label target)."""
    return target.view(-1, 1) if target.ndim < 2 else target


def score_of(logits: torch.Tensor, target: torch.Tensor, score: str, activation: str = "softmax"
             ) -> torch.Tensor:
    """F: the chosen score (:func:`read_scores`) of class ``target[i]`` for each row of ``logits``
    -> (N,). A target of shape (N, T) names several classes per image: F is the sum of their scores."""
    scores = read_scores(logits, score, activation)
    return scores.gather(1, as_columns(target.to(scores.device))).sum(1)


def model_score(model: nn.Module, x: torch.Tensor, target: torch.Tensor, score: str) -> torch.Tensor:
    """F(x) per image: :func:`score_of` the model's output, read with the model's head."""
    from netviz.heads import head_of

    return score_of(model(x), target, score, head_of(model).activation)


def forward_scores(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None, score: str,
                   batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(F(x) per image, predicted class per image), without gradients, in batches (``batch_size``,
    or measured: :mod:`netviz.batching`). CPU tensors."""
    import torch

    from netviz.heads import head_of

    dev = model_device(model)
    activation = head_of(model).activation
    scores, preds = [], []
    with torch.no_grad():
        for which in passes(model, x, x.shape[0], "forward", batch_size, gradients=False):
            logits = model(x[which].to(dev))
            pred = logits.argmax(1)
            t = pred if target is None else target[which]
            scores.append(score_of(logits, t, score, activation).double().cpu())
            preds.append(pred.cpu())
    return torch.cat(scores), torch.cat(preds)


def used_batch_size(model: nn.Module, x: torch.Tensor, work: str, batch_size: int | None) -> int | None:
    """The size ``work`` ran at: the user's, else the one measured for it (for the record)."""
    from netviz import batching

    return batch_size or batching.remembered(model, batching.key_of(model, tuple(x.shape[1:]), work))


def passes(model: nn.Module, x: torch.Tensor, total: int, work: str, batch_size: int | None = None, *,
           gradients: bool = True) -> Batches:
    """The slices of ``total`` inputs shaped as ``x``'s images, one a pass of ``work`` through
    ``model``: ``batch_size`` at a time, or the size :mod:`netviz.batching` measures fastest."""
    from netviz import batching

    return batching.batches(total, model, tuple(x.shape[1:]), work, batch_size, gradients=gradients)


def resolve_target(model: nn.Module, x: torch.Tensor,
                   target: int | str | Sequence[int] | torch.Tensor | None, score: str = "logit",
                   batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(target per image, F(x) per image). ``None`` picks each image's predicted class; a string
    ``"3,5"`` names several classes for every image (F sums their scores): targets (N, T)."""
    import torch

    from netviz.selection import parse_classes

    n = x.shape[0]
    if target is None:
        scores, preds = forward_scores(model, x, None, score, batch_size)
        return preds, scores
    if isinstance(target, str):  # numbers here; commands turn class names into numbers first
        classes = parse_classes(target, (), _num_classes(model, x), "the model")
        t = torch.tensor(classes).view(1, -1).expand(n, -1).clone() if len(classes) > 1 else \
            torch.full((n,), classes[0], dtype=torch.long)
    else:
        t = torch.as_tensor(target).long().cpu()
        t = t if t.ndim == 2 else t.flatten()
        if t.ndim == 1 and t.numel() == 1:
            t = t.expand(n).clone()
    if t.shape[0] != n:
        raise NetvizError(f"{t.shape[0]} targets for {n} images: give one target, or one per image")
    num_classes = _num_classes(model, x)
    bad = t[(t < 0) | (t >= num_classes)]
    if bad.numel():
        raise NetvizError(
            f"target {int(bad[0])} is out of range: the model has {num_classes} classes, "
            f"use 0..{num_classes - 1}"
        )
    scores, _ = forward_scores(model, x, t, score, batch_size)
    return t, scores


def _num_classes(model: nn.Module, x: torch.Tensor) -> int:
    import torch

    with torch.no_grad():
        return int(model(x[:1].to(model_device(model))).shape[1])


def check_batch_size(batch_size: int | None) -> int | None:
    """``batch_size`` checked; None: measured (:mod:`netviz.batching`)."""
    if batch_size is None:
        return None
    if int(batch_size) <= 0:
        raise NetvizError(f"batch size must be a positive number, not {batch_size}")
    return int(batch_size)


CHANNELS_LAST_FROM = 128 * 128  # pixels an image: below this, channels_last ran slower on the CPU


def fast_format(model: nn.Module, sample: torch.Tensor) -> torch.memory_format:
    """channels_last for the many forward passes of a perturbation method when the model takes it
    and the images are large enough to gain, else the default layout. A ResNet-18 on the CPU
    measured (BENCHMARKS.md) ran 1.2-1.4x faster so at 160 and 224 pixels a side and up to 2x
    slower at 64; the rule is the image size, not a timing, so that a run repeats bit for bit. A
    model that calls ``.view`` on its input's channels cannot take it."""
    import torch

    if sample.ndim != 4:
        return torch.contiguous_format
    device = model_device(model)
    if device.type == "cpu" and sample.shape[-2] * sample.shape[-1] < CHANNELS_LAST_FROM:
        return torch.contiguous_format
    try:
        with torch.no_grad():
            model(sample[:1].to(device).contiguous(memory_format=torch.channels_last))
    except RuntimeError:
        return torch.contiguous_format
    return torch.channels_last


def fast_inference(model: nn.Module, sample: torch.Tensor) -> tuple[nn.Module, torch.memory_format]:
    """(the model as a perturbation method's many forward passes run it, their layout): its batch
    norms folded into the convolutions before them where it traces (:mod:`._fold`), and
    :func:`fast_format`'s layout. Batch sizes are still measured and remembered on ``model``."""
    from netviz.attribute._fold import folded

    layout = fast_format(model, sample)
    return folded(model, sample[:1].to(model_device(model)).contiguous(memory_format=layout)), layout


def check_input(x: torch.Tensor) -> torch.Tensor:
    import torch

    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise NetvizError("x must be a batch of images (N, C, H, W) in the model's normalised "
                          f"space, not {shape}")
    return x.detach().float().cpu()


def input_gradients(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor, score: str
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(dF/dinput, F) for a batch on the model's device; only the input gets a gradient."""
    import torch

    inputs = inputs.detach().requires_grad_(True)
    with torch.enable_grad():
        f = model_score(model, inputs, target, score)
        (grad,) = torch.autograd.grad(f.sum(), inputs)
    return grad, f.detach()


@dataclass
class Opening:
    """Where every method starts: ``x`` checked (N, C, H, W on the CPU), the score and the batch size
    checked, the model in eval mode, the ``target`` of every image resolved with its score ``score_input``
    F(x). A method supplies its computation per batch (:meth:`each`) or walks :meth:`batches` or
    :meth:`passes` itself. ``batch_size``: the user's, or None (measured: :mod:`netviz.batching`)."""

    model: nn.Module
    x: torch.Tensor
    target: torch.Tensor
    score_input: torch.Tensor
    score: str
    batch_size: int | None
    device: torch.device

    def passes(self, total: int, work: str, gradients: bool = True) -> Batches:
        """Slices of ``total`` inputs shaped as the images, one a pass of ``work``."""
        return passes(self.model, self.x, total, work, self.batch_size, gradients=gradients)

    def batches(self, quiet: bool = True, desc: str = "", unit: str = "image"
                ) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor]]:
        """(which images, their inputs, their targets) on the model's device, a pass at a time, with
        a progress bar."""
        from netviz.progress import progress

        n = self.x.shape[0]
        with progress(total=n, quiet=quiet, desc=desc, unit=unit) as bar:
            for which in self.passes(n, desc or "gradients"):
                yield which, self.x[which].to(self.device), self.target[which].to(self.device)
                bar.update(which.stop - which.start)

    def each(self, step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], quiet: bool = True,
             desc: str = "", unit: str = "image") -> torch.Tensor:
        """``step(inputs, targets)`` of every batch, one row per image, concatenated on the CPU."""
        import torch

        out = [step(xb, tb).cpu() for _, xb, tb in self.batches(quiet, desc, unit)]
        return torch.cat(out) if out else torch.empty(0)


@contextlib.contextmanager
def opening(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None,
            score: str = "logit", batch_size: int | None = None) -> Iterator[Opening]:
    """The opening of every method (:class:`Opening`): the checks, eval mode (the model's own mode is
    restored after), the target and F(x)."""
    x = check_input(x)
    check_score(score)
    batch_size = check_batch_size(batch_size)
    with eval_mode(model):
        t, f_x = resolve_target(model, x, target, score, batch_size)
        yield Opening(model, x, t, f_x, score, batch_size, model_device(model))


def plain_gradients(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None,
                    score: str, batch_size: int | None, quiet: bool, desc: str = "gradients"
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x on the CPU, dF/dx, target, F(x)) in eval mode, ``batch_size`` images at a time."""
    with opening(model, x, target, score, batch_size) as o:
        grad = o.each(lambda xb, tb: input_gradients(model, xb, tb, score)[0], quiet, desc)
    return o.x, grad, o.target, o.score_input
