"""The batch-size policy (netviz.batching): sizes are measured on the work itself, the smallest
within a few percent of the fastest is kept, a user's size wins, and the choice is remembered per
model; on models whose time per pass the test controls."""

from __future__ import annotations

import logging
import time

import torch
from click.testing import CliRunner
from torch import nn

import netviz.attribute as A
from netviz import batching


class Timed(nn.Module):
    """A linear model whose pass takes ``cost(n)`` seconds for n inputs; it records each n."""

    def __init__(self, cost) -> None:  # noqa: ANN001
        super().__init__()
        self.fc = nn.Linear(12, 3)
        self.cost, self.sizes = cost, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        time.sleep(self.cost(x.shape[0]))
        return self.fc(x.flatten(1))


def cache_cliff(n: int) -> float:
    """5 ms a pass and 1 ms an input up to 16 inputs, 4 ms an input above: 16 is the fastest."""
    return 0.005 + (0.001 if n <= 16 else 0.004) * n


def overhead(n: int) -> float:
    """A pass costs 20 ms whatever its size: the largest is the fastest."""
    return 0.02 + 0.00001 * n


def test_picks_the_smaller_batch_when_a_larger_one_is_slower():
    model = Timed(cache_cliff)
    x = torch.randn(400, 1, 3, 4)
    A.forward_scores(model, x, None, "logit")
    # the trials: each size twice (the first at a new size builds kernels), up to the first slower size
    assert model.sizes[:8] == [4, 4, 8, 8, 16, 16, 32, 32]
    assert set(model.sizes[8:-1]) == {16} and sum(model.sizes) == 400
    key = ("forward", (1, 3, 4), "cpu")
    assert batching.remembered(model, key) == 16
    model.sizes.clear()
    A.forward_scores(model, x[:100], None, "logit")  # remembered: no trials
    assert model.sizes == [16] * 6 + [4]


def test_picks_the_largest_when_passes_cost_the_same():
    model = Timed(overhead)
    x = torch.randn(3000, 12)[:, None, None, :]
    A.forward_scores(model, x, None, "logit")
    bound = batching.most((1, 1, 12), "cpu", gradients=False)
    assert bound == 512 and model.sizes[-2] == bound


def test_the_smallest_of_sizes_within_the_tolerance():
    assert batching.fastest({4: 100.0, 8: 196.0, 16: 200.0, 32: 199.0}) == 8
    assert batching.fastest({4: 100.0, 8: 150.0, 16: 200.0}) == 16


def test_a_given_batch_size_wins_and_too_little_work_is_not_measured():
    model = Timed(cache_cliff)
    A.forward_scores(model, torch.randn(100, 1, 3, 4), None, "logit", batch_size=48)
    assert model.sizes == [48, 48, 4]
    model = Timed(cache_cliff)
    A.forward_scores(model, torch.randn(20, 1, 3, 4), None, "logit")
    assert model.sizes == [20]


def test_results_do_not_depend_on_the_size_measured():
    model = Timed(cache_cliff)
    x = torch.randn(300, 1, 3, 4, generator=torch.Generator().manual_seed(0))
    measured, _ = A.forward_scores(model, x, None, "logit")
    assert len(set(model.sizes)) > 1
    given, _ = A.forward_scores(model, x, None, "logit", batch_size=300)
    assert torch.allclose(measured, given, rtol=1e-6, atol=1e-7)


def test_verbose_says_the_size_measured(tmp_path, mnist_run):
    from netviz.cli import cli

    result = CliRunner().invoke(cli, ["attribute", str(mnist_run.path), "--method", "occlusion", "--index", "0-63",
                                      "--out", str(tmp_path / "a"), "--quiet", "--verbose"])
    assert result.exit_code == 0, result.output
    assert "note: batch size " in result.stderr and "for occlusion-incremental (inputs/s by size: 4: " in result.stderr
    logging.getLogger("netviz").setLevel(logging.WARNING)
    quiet = CliRunner().invoke(cli, ["attribute", str(mnist_run.path), "--method", "occlusion", "--index", "0-3",
                                     "--out", str(tmp_path / "b"), "--quiet"])
    assert quiet.exit_code == 0 and "note: batch size" not in quiet.stderr



def test_the_memory_layout_follows_the_image_size_not_a_timing():
    # channels_last ran up to 2x slower at 64 x 64 on a CPU and 1.2-1.4x faster at 160 and 224
    # (BENCHMARKS.md); a rule of size keeps runs repeating bit for bit, a timed one did not
    from netviz.attribute import fast_format

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    assert fast_format(net, torch.zeros(2, 3, 64, 64)) == torch.contiguous_format
    assert fast_format(net, torch.zeros(2, 3, 224, 224)) == torch.channels_last
    assert fast_format(net, torch.zeros(2, 3, 128, 128)) == torch.channels_last  # the threshold: 128 x 128

    class Views(torch.nn.Module):  # flattens its input with .view: cannot take channels_last
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.view(x.shape[0], -1)

    assert fast_format(Views(), torch.zeros(1, 3, 224, 224)) == torch.contiguous_format
