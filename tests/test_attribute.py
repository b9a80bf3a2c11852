"""netviz.attribute on the trained MNIST net: Captum as the oracle, completeness, adaptive steps,
interior gradients, baselines, bad input, the sanity check, and the drawing helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import netviz.attribute as A
from netviz.data import denormalise, normalise
from netviz.errors import NetvizError
from netviz.layers import has_hooks

CAPTUM_METHOD = {"riemann-left": "riemann_left", "riemann-right": "riemann_right",
                 "riemann-middle": "riemann_middle", "trapezoid": "riemann_trapezoid",
                 "gauss-legendre": "gausslegendre"}


def rel_diff(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """Max abs difference relative to the attribution's scale (its max magnitude)."""
    ours, ref = ours.detach(), ref.detach()
    return float((ours - ref).abs().max() / ref.abs().max())


@pytest.fixture(scope="module")
def mnist(mnist_run):
    data = mnist_run.eval_data()
    return mnist_run, data, normalise(data.images[:100], mnist_run.spec)


@pytest.fixture(scope="module")
def few(mnist):
    run, data, x = mnist
    x6 = x[:6]
    with torch.no_grad():
        target = run.model(x6).argmax(1)
    return run, x6, target


# -- Captum as the oracle -------------------------------------------------------------------

@pytest.mark.parametrize("quadrature", A.QUADRATURES)
def test_integrated_matches_captum(few, quadrature):
    from captum.attr import IntegratedGradients

    run, x, target = few
    n = 20
    ours = A.integrated_gradients(run.model, x, target, steps=n, quadrature=quadrature,
                                  spec=run.spec, batch_size=37)  # 37: batches cut across images
    black = A.make_baseline(x, "black", spec=run.spec)
    ref = IntegratedGradients(run.model).attribute(x, black, target=target, n_steps=n,
                                                   method=CAPTUM_METHOD[quadrature])
    if quadrature == "trapezoid":
        # Captum's trapezoid weights are 1/n (ends halved), summing to (n-1)/n; ours are the true
        # trapezoid's 1/(n-1): the same alphas and gradients, scaled by n/(n-1).
        ref = ref * n / (n - 1)
    assert ours.attributions.shape == x.shape
    assert rel_diff(ours.attributions, ref) <= 1e-5
    assert ours.steps.tolist() == [n] * len(x)
    assert not has_hooks(run.model)


def test_saliency_and_input_x_gradient_match_captum(few):
    from captum.attr import InputXGradient, Saliency

    run, x, target = few
    sal = A.saliency(run.model, x, target, batch_size=4)
    assert rel_diff(sal.attributions, Saliency(run.model).attribute(x, target=target)) <= 1e-5
    ixg = A.input_x_gradient(run.model, x, target)
    assert rel_diff(ixg.attributions, InputXGradient(run.model).attribute(x, target=target)) <= 1e-5
    assert (sal.attributions >= 0).all() and (ixg.attributions < 0).any()


@pytest.mark.parametrize("absolute", [False, True])
def test_smoothgrad_matches_captum_with_fixed_noise_seed(few, absolute):
    from captum.attr import NoiseTunnel, Saliency

    run, x, target = few
    samples, noise, seed = 12, 0.2, 3
    ours = A.smoothgrad(run.model, x, target, samples=samples, noise=noise, seed=seed,
                        absolute=absolute, spec=run.spec, batch_size=25).attributions
    torch.manual_seed(seed)  # Captum draws from the global generator, image after image here
    tunnel = NoiseTunnel(Saliency(run.model))
    ref = torch.cat([tunnel.attribute(x[i:i + 1], nt_type="smoothgrad", nt_samples=samples,
                                      stdevs=noise / run.spec.std[0], target=int(target[i]),
                                      abs=absolute) for i in range(len(x))])
    assert rel_diff(ours, ref) <= 1e-5
    plain = A.saliency(run.model, x, target).attributions
    assert rel_diff(ours.abs(), plain) > 0.05  # the noise does change the map
    if not absolute:
        assert (ours < 0).any()


# -- completeness and adaptive steps ----------------------------------------------------------

def test_gauss_legendre_64_steps_is_complete_on_100_images(mnist):
    run, data, x = mnist
    res = A.integrated_gradients(run.model, x, steps=64, spec=run.spec, batch_size=512)
    assert res.completeness_error.shape == (100,)
    # How well 64 points integrate a ReLU net's piecewise-smooth path depends on the trained net:
    # max 0.3-0.65 %, median <= 0.09 % on nets trained with five seeds and two instruction sets.
    # The paper asks for 5 %; 2 % and a 0.5 % median still catch a wrong rule or weight.
    assert float(res.completeness_error.max()) <= 0.02
    assert float(res.completeness_error.median()) <= 0.005
    # The reported error is the real one: recompute F(x) - F(black) with the model.
    black = A.make_baseline(x, "black", spec=run.spec)
    with torch.no_grad():
        logits_x, logits_b = run.model(x), run.model(black)
    target = logits_x.argmax(1)
    assert torch.equal(res.target, target)
    delta = (logits_x.gather(1, target[:, None]) - logits_b.gather(1, target[:, None])).squeeze(1)
    total = res.attributions.flatten(1).double().sum(1)
    expected = (total - delta.double()).abs() / delta.double().abs()
    assert torch.allclose(res.completeness_error, expected, rtol=1e-4, atol=1e-7)
    assert float(delta.abs().min()) > 1.0  # the MNIST logits are far from the black baseline's


def test_adaptive_steps_redo_only_the_images_over_tolerance(mnist):
    run, data, x = mnist
    x = x[:40]
    # 4 points leave 15-31 of these 40 images above 1 % on five trained nets (8 points left only
    # 1 on one of them): both kinds of image are there on any net.
    fixed = A.integrated_gradients(run.model, x, steps=4, spec=run.spec)
    adaptive = A.integrated_gradients(run.model, x, steps=4, tolerance=0.01, spec=run.spec)
    over = fixed.completeness_error > 0.01
    assert 0 < int(over.sum()) < len(x)  # the case is interesting: some images need more steps
    assert torch.equal(adaptive.steps > 4, over)
    assert float(adaptive.completeness_error.max()) <= 0.01
    assert torch.equal(adaptive.attributions[~over], fixed.attributions[~over])
    assert adaptive.settings["schedule"][:3] == [4, 8, 16]


def test_batch_size_bounds_memory_without_changing_the_result(few):
    run, x, target = few
    small = A.integrated_gradients(run.model, x[:3], target[:3], steps=16, spec=run.spec,
                                   batch_size=5)
    large = A.integrated_gradients(run.model, x[:3], target[:3], steps=16, spec=run.spec,
                                   batch_size=1000)
    assert rel_diff(small.attributions, large.attributions) <= 1e-5


def test_scores_logprob_and_prob(few):
    run, x, target = few
    for score, fn in (("logprob", lambda z: torch.log_softmax(z, 1)),
                      ("prob", lambda z: torch.softmax(z, 1))):
        res = A.integrated_gradients(run.model, x[:2], 3, steps=32, score=score, spec=run.spec)
        with torch.no_grad():
            expected = fn(run.model(x[:2]))[:, 3].double()
        assert res.score == score
        assert torch.allclose(res.score_input, expected, rtol=1e-5)
        assert res.target.tolist() == [3, 3]


# -- interior gradients -----------------------------------------------------------------------

def test_interior_trapezoid_average_times_input_is_integrated(few):
    run, x, target = few
    alphas = np.linspace(0.0, 1.0, 41)
    interior = A.interior_gradients(run.model, x[:3], target[:3], alphas=alphas, spec=run.spec,
                                    batch_size=50)
    avg = torch.from_numpy(np.trapezoid(interior.gradients.double().numpy(), alphas, axis=1))
    black = A.make_baseline(x[:3], "black", spec=run.spec)
    ig = A.integrated_gradients(run.model, x[:3], target[:3], steps=41, quadrature="trapezoid",
                                spec=run.spec)
    assert rel_diff((avg * (x[:3] - black)).float(), ig.attributions) <= 1e-5


def test_interior_scales_pixels_from_black(few):
    run, x, target = few
    res = A.interior_gradients(run.model, x[:2], spec=run.spec)
    assert res.alphas == (0.01, 0.02, 0.03, 0.04, 0.1, 0.5, 0.6, 0.7, 0.8, 1.0)
    assert res.gradients.shape == (2, 10, 1, 28, 28)
    pixels = denormalise(x[:2], run.spec)
    scaled = denormalise(res.scaled_inputs().flatten(0, 1), run.spec).view(2, 10, 1, 28, 28)
    for k, a in enumerate(res.alphas):  # alpha * x in pixel space, though black is -0.42 here
        assert torch.allclose(scaled[:, k], a * pixels, atol=1e-5)
    assert torch.allclose(res.gradients[:, -1], A.gradient(run.model, x[:2], res.target)
                          .attributions, atol=1e-6)
    with torch.no_grad():
        f_image = run.model(x[:2]).gather(1, res.target[:, None]).squeeze(1)
    assert torch.allclose(res.scores[:, -1].float(), f_image, rtol=1e-5)
    assert (res.scores[:, 0] < res.scores[:, -1]).all()


# -- baselines and bad input -----------------------------------------------------------------

def test_baselines(few):
    run, x, _ = few
    black = A.make_baseline(x, "black", spec=run.spec)
    assert torch.allclose(black, torch.full_like(x, -0.1307 / 0.3081))
    assert torch.allclose(A.make_baseline(x, "white", spec=run.spec),
                          torch.full_like(x, (1 - 0.1307) / 0.3081))
    assert torch.equal(A.make_baseline(x, None), torch.zeros_like(x))  # no spec: 0 is black
    noise = A.make_baseline(x, "noise", spec=run.spec, seed=5)
    assert torch.equal(noise, A.make_baseline(x, "noise", spec=run.spec, seed=5))
    pix = denormalise(noise, run.spec)
    assert 0.4 < float(pix.mean()) < 0.6 and float(pix.std()) > 0.25
    blur = A.make_baseline(x, "blur", spec=run.spec)
    assert blur.shape == x.shape
    assert abs(float(blur.mean() - x.mean())) < 0.1  # blurring keeps the mean brightness
    # little high-frequency energy left
    assert float(blur.diff(dim=3).pow(2).mean()) < 0.1 * float(x.diff(dim=3).pow(2).mean())
    mean = A.mean_baseline(run.eval_data().images, run.spec)
    assert mean.shape == (1, 1, 28, 28)
    with pytest.raises(NetvizError, match="baseline has shape"):
        A.make_baseline(x, torch.zeros(1, 1, 32, 32))
    with pytest.raises(NetvizError, match="unknown baseline"):
        A.make_baseline(x, "grey")


def test_bad_input_is_one_clear_error(few):
    run, x, _ = few
    with pytest.raises(NetvizError, match=r"target 10 is out of range.*0\.\.9"):
        A.integrated_gradients(run.model, x, 10, steps=4)
    with pytest.raises(NetvizError, match="target -1 is out of range"):
        A.saliency(run.model, x, -1)
    for steps in (0, -3):
        with pytest.raises(NetvizError, match="steps must be a positive"):
            A.integrated_gradients(run.model, x, steps=steps)
    with pytest.raises(NetvizError, match="unknown quadrature 'simpson'"):
        A.integrated_gradients(run.model, x, quadrature="simpson")
    with pytest.raises(NetvizError, match="at least 2 steps"):
        A.integrated_gradients(run.model, x, steps=1, quadrature="trapezoid")
    with pytest.raises(NetvizError, match="unknown method 'lime'.*integrated, interior, saliency"):
        A.attribute(run.model, x, "lime")
    with pytest.raises(NetvizError, match="unknown score"):
        A.saliency(run.model, x, score="loss")
    with pytest.raises(NetvizError, match="alphas must be"):
        A.interior_gradients(run.model, x, alphas="0.5,2")


def test_model_is_left_as_it_was(mnist_run, few):
    _, x, _ = few
    model = mnist_run.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()  # dropout on: attribution must still be deterministic, and the mode kept
    try:
        a = A.integrated_gradients(model, x[:2], steps=8, spec=mnist_run.spec)
        b = A.integrated_gradients(model, x[:2], steps=8, spec=mnist_run.spec)
        assert torch.equal(a.attributions, b.attributions)
        assert model.training and model.dropout1.training
    finally:
        model.eval()
    A.model_randomisation(model, x[:2], A.saliency, layers=["fc2"])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not has_hooks(model)


# -- sanity check ---------------------------------------------------------------------------

def test_spearman_with_ties_against_brute_force():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 200).astype(float)
    b = a + rng.normal(0, 2, 200)

    def ranks(v):  # average rank of ties, by counting
        return np.array([(v < t).sum() + ((v == t).sum() - 1) / 2 for t in v])

    expected = np.corrcoef(ranks(a), ranks(b))[0, 1]
    assert A.spearman(a, b) == pytest.approx(expected, abs=1e-12)
    assert A.spearman(a, a) == pytest.approx(1.0)
    assert A.spearman(a, -a) == pytest.approx(-1.0)
    assert np.isnan(A.spearman(np.zeros(5), a[:5]))


def test_model_randomisation_cascade(mnist_run, few):
    _, x, target = few
    res = A.model_randomisation(mnist_run.model, x[:4], A.saliency, seed=0)
    assert res.layers == ["fc2", "fc1", "conv2", "conv1"]
    assert res.rank_correlation.shape == (4, 4) and res.maps.shape == (5, 4, 28, 28)
    assert torch.equal(res.target, target[:4])
    assert torch.allclose(res.maps[0], A.saliency(mnist_run.model, x[:4], target[:4])
                          .attributions.sum(1))
    # Saliency passes the test: with every layer random, its map no longer ranks pixels alike.
    assert float(res.rank_correlation[-1].mean()) < 0.5
    again = A.model_randomisation(mnist_run.model, x[:4], A.saliency, seed=0)
    assert torch.equal(res.rank_correlation, again.rank_correlation)
    # evaluate's check wants the last step only: the same weights, one map instead of four
    last = A.model_randomisation(mnist_run.model, x[:4], A.saliency, seed=0, last_only=True)
    assert last.layers == ["conv1"] and last.maps.shape == (2, 4, 28, 28)
    assert torch.equal(last.maps[1], res.maps[-1]) and torch.equal(last.rank_correlation[0], res.rank_correlation[-1])


# -- drawing helpers ------------------------------------------------------------------------

def test_overlay_of_an_all_zero_attribution_is_the_grey_image():
    from netviz.draw.attribute import clip_value, heatmap, overlay

    pixels = torch.rand(3, 8, 8)
    zero = torch.zeros(3, 8, 8)
    out = overlay(pixels, zero)
    assert out.shape == (8, 8, 3)
    assert np.allclose(out[..., 0], out[..., 1]) and np.allclose(out[..., 1], out[..., 2])
    assert np.isfinite(heatmap(zero)).all()
    assert clip_value(np.zeros((4, 4))) == 0.0
    amap = np.zeros((10, 10))
    amap[0, 0], amap[0, 1] = 5.0, -1.0
    assert clip_value(amap) == pytest.approx(1.04)  # the 99th percentile of |amap|, not 5
    signed = overlay(torch.zeros(1, 10, 10), torch.from_numpy(amap)[None])
    assert signed[0, 0, 1] > signed[0, 0, 0]  # positive: green
    assert signed[0, 1, 0] > signed[0, 1, 1]  # negative: red
