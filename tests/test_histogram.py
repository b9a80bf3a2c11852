"""`netviz histogram`: weight histograms before/after training, evolution, TensorBoard export."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import assert_one_line_error
from torch import nn

from netviz.cli import cli
from netviz.draw.histogram import auto_per_panel, group_sizes, write_histograms, write_tensorboard
from netviz.errors import NetvizError
from netviz.histogram import evolution_run, histogram_run, weight_histograms
from netviz.layers import has_hooks
from netviz.models.allconv import INIT_STD
from netviz.runs import load_run
from netviz.stats import PERCENTILES


def _invoke(*args: str):
    return CliRunner().invoke(cli, ["histogram", *args, "--device", "cpu", "-q"])


def _strict_json(path: Path) -> dict:
    # histogram.json must be strict JSON (no bare NaN/Infinity) so any reader can parse it
    def refuse(token: str) -> None:
        raise AssertionError(f"non-strict JSON constant {token} in {path}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_mnist_counts_equal_params_and_training_changed_weights(mnist_run) -> None:
    h = histogram_run(mnist_run)
    assert [s.key for s in h.snapshots] == ["init", "final"]
    params = dict(mnist_run.model.named_parameters())
    assert [layer.param for layer in h.layers] == ["conv1.weight", "conv2.weight", "fc1.weight",
                                                   "fc2.weight"]
    for layer in h.layers:
        assert layer.count == params[layer.param].numel()
        for key in ("init", "final"):
            s = layer.stats[key]
            assert s["count"] == layer.count
            assert sum(s["counts"]) + s["nan"] + s["inf"] == layer.count
            assert sum(layer.shared_counts[key]) == layer.count
            assert len(s["edges"]) == len(s["counts"]) + 1 == h.bins + 1
        # training moved every layer: the weights spread out
        assert layer.stats["final"]["std"] > 1.1 * layer.stats["init"]["std"], layer.param
        assert layer.stats["final"]["max"] != layer.stats["init"]["max"]
    # the same numbers training recorded in weight_stats.json (same function, same bins)
    recorded = mnist_run.weight_stats()["layers"]
    for layer in h.layers:
        for key, epoch in (("init", 0), ("final", -1)):
            rec = recorded[layer.param][epoch]
            assert layer.stats[key]["counts"] == rec["counts"]
            assert layer.stats[key]["std"] == pytest.approx(rec["std"], rel=1e-9)
    assert not has_hooks(mnist_run.model)


def test_mnist_evolution_percentiles(mnist_run) -> None:
    evo = evolution_run(mnist_run)
    assert evo is not None and evo.epochs == [0, 1, 2, 3]
    assert [layer.label for layer in evo.layers] == ["conv1", "conv2", "fc1", "fc2"]
    for layer in evo.layers:
        assert len(layer.percentiles) == 4
        for row in layer.percentiles:
            assert len(row) == len(PERCENTILES)
            assert row == sorted(row)  # min <= 7 % <= ... <= max
    fc1 = evo.layers[2]
    assert fc1.percentiles[-1][-1] - fc1.percentiles[-1][0] > 2 * (fc1.percentiles[0][-1]
                                                                  - fc1.percentiles[0][0])


def test_untrained_allconv_init_std_matches_registry() -> None:
    from netviz.device import seed_everything

    seed_everything(0)
    run = load_run(model="allconv", device="cpu")
    h = histogram_run(run)
    assert [s.label for s in h.snapshots] == ["random weights (untrained)"]
    assert [layer.label for layer in h.layers] == [f"conv{i}" for i in range(1, 10)]
    for layer, std in zip(h.layers, INIT_STD, strict=True):
        assert layer.stats["model"]["std"] == pytest.approx(std, rel=0.05), layer.label
        assert abs(layer.stats["model"]["mean"]) < 0.2 * std


def test_cli_mnist_run_writes_every_file(mnist_run, tmp_path: Path) -> None:
    out = tmp_path / "hist"
    result = _invoke(str(mnist_run.path), "--out", str(out))
    assert result.exit_code == 0, result.output
    names = ["histogram.json", "histogram.png", "distributions.png", "ridgeline.png", "manifest.json"]
    assert result.stdout.split() == [str(out / n) for n in names]
    for name in names[1:-1]:
        assert (out / name).stat().st_size > 20_000
    data = _strict_json(out / "histogram.json")
    assert data["snapshots"] == {"init": "before training", "final": "after training"}
    assert data["epochs"] == [0, 1, 2, 3]
    for param, entry in data["layers"].items():
        numel = dict(mnist_run.model.named_parameters())[param].numel()
        assert entry["count"] == numel
        assert sum(entry["init"]["counts"]) == sum(entry["final"]["counts"]) == numel
        assert sum(entry["shared_bins"]["counts"]["final"]) == numel
        assert entry["init"]["std"] != entry["final"]["std"]
    assert not has_hooks(mnist_run.model)


def test_cli_allconv_grid_layers_and_bias(allconv_run, tmp_path: Path) -> None:
    out = tmp_path / "grid"
    result = _invoke(str(allconv_run.path), "--out", str(out), "--layout", "grid", "--log-y",
                     "--bins", "30", "--no-evolution")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(out / n) for n in ("histogram.json", "histogram.png", "manifest.json")]
    data = _strict_json(out / "histogram.json")
    assert list(data["layers"]) == [f"conv{i}.weight" for i in range(1, 10)]
    assert all(len(e["final"]["counts"]) == 30 for e in data["layers"].values())
    # one training epoch on 200 images still moves the weights, a little
    conv1 = data["layers"]["conv1.weight"]
    assert conv1["final"]["std"] != conv1["init"]["std"]

    # --layer filtering (a layer number and a name), one layer per panel
    sub = tmp_path / "sub"
    result = _invoke(str(allconv_run.path), "--out", str(sub), "--layer", "1,conv9",
                     "--per-panel", "1")
    assert result.exit_code == 0, result.output
    assert list(_strict_json(sub / "histogram.json")["layers"]) == ["conv1.weight", "conv9.weight"]


def test_include_bias_adds_1d_params(mnist_run) -> None:
    h = histogram_run(mnist_run, include_bias=True, layers="conv1,fc2")
    assert [layer.param for layer in h.layers] == ["conv1.weight", "conv1.bias", "fc2.weight",
                                                   "fc2.bias"]
    assert [layer.label for layer in h.layers] == ["conv1", "conv1.bias", "fc2", "fc2.bias"]
    assert h.layers[1].count == 32


def test_tensorboard_export_reads_back(mnist_run, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = tmp_path / "tb"
    result = _invoke(str(mnist_run.path), "--out", str(tmp_path / "o"), "--layer", "conv1,fc2",
                     "--tensorboard", str(tb), "--no-evolution")
    assert result.exit_code == 0, result.output
    events = list(tb.glob("events.out.tfevents.*"))
    assert [str(p) for p in events] == result.stdout.split()[-1:]
    acc = EventAccumulator(str(tb), size_guidance={"histograms": 0})
    acc.Reload()
    assert sorted(acc.Tags()["histograms"]) == ["weights/conv1.weight", "weights/fc2.weight"]
    recorded = mnist_run.weight_stats()["layers"]["conv1.weight"]
    values = acc.Histograms("weights/conv1.weight")
    assert [v.step for v in values] == [0, 1, 2, 3]
    for v, rec in zip(values, recorded, strict=True):
        assert v.histogram_value.num == 288
        assert list(v.histogram_value.bucket)[1:] == rec["counts"]
        assert v.histogram_value.min == pytest.approx(rec["min"])


def test_tensorboard_missing_is_one_clear_error(monkeypatch, mnist_run, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now fails
    h = histogram_run(mnist_run, layers="conv1")
    with pytest.raises(NetvizError, match=r"pip install 'netviz\[tensorboard\]'"):
        write_tensorboard(tmp_path / "tb", histograms=h)


def test_single_layer_zero_variance_and_nonfinite(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 3))
    flat = torch.full((3, 4), 0.25)
    bad = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    bad[0, 0], bad[1, 1], bad[2, 2] = math.nan, math.inf, -math.inf
    nan_only = torch.full((3, 4), math.nan)
    snaps = {"init": {"0.weight": flat}, "final": {"0.weight": bad}}
    h = weight_histograms(model, snaps, {"init": "before", "final": "after"}, bins=10)
    (layer,) = h.layers
    assert layer.label == "0" and layer.count == 12
    assert layer.stats["init"]["std"] == 0.0 and sum(layer.stats["init"]["counts"]) == 12
    assert layer.stats["final"]["nan"] == 1 and layer.stats["final"]["inf"] == 2
    assert sum(layer.stats["final"]["counts"]) == 9
    assert sum(layer.shared_counts["init"]) == 12 and sum(layer.shared_counts["final"]) == 9
    assert "0 after: 1 NaN, 2 Inf" in h.nonfinite_summary()
    for layout in ("panels", "grid"):
        written = write_histograms(h, tmp_path / layout, layout=layout, log_y=True)
        assert all(a.path.stat().st_size > 0 and a.caption for a in written)
        data = _strict_json(tmp_path / layout / "histogram.json")
        assert data["layers"]["0.weight"]["final"]["nan"] == 1
    # a tensor with no finite value at all still draws (nothing to bin)
    h = weight_histograms(model, {"model": {"0.weight": nan_only}}, bins=5)
    assert h.layers[0].stats["model"]["counts"] == [] and h.layers[0].stats["model"]["nan"] == 12
    write_histograms(h, tmp_path / "nan", layout="panels")
    assert _strict_json(tmp_path / "nan" / "histogram.json")["layers"]["0.weight"]["model"][
        "mean"] == "nan"


def test_panel_grouping() -> None:
    assert group_sizes(9, 3) == [3, 3, 3]
    assert group_sizes(4, 3) == [2, 2]
    assert group_sizes(1, 3) == [1]
    assert group_sizes(5, 1) == [1] * 5
    assert auto_per_panel(9) == 3 and auto_per_panel(4) == 3 and auto_per_panel(21) == 6


def test_bare_model_is_seeded(tmp_path: Path) -> None:
    def run(seed: str, out: str) -> dict:
        result = _invoke("--model", "mnist", "--layer", "conv1", "--seed", seed, "--out",
                         str(tmp_path / out))
        assert result.exit_code == 0, result.output
        return _strict_json(tmp_path / out / "histogram.json")

    a, b, c = run("3", "a"), run("3", "b"), run("4", "c")
    assert a == b
    counts = [d["layers"]["conv1.weight"]["model"]["counts"] for d in (a, c)]
    assert counts[0] != counts[1]
    assert a["snapshots"] == {"model": "random weights (untrained)"}
    assert not (tmp_path / "a" / "distributions.png").exists()


def test_run_without_init_checkpoint_draws_one_snapshot(mnist_run, tmp_path: Path) -> None:
    run_dir = tmp_path / "noinit"
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(mnist_run.path / "config.toml", run_dir / "config.toml")
    shutil.copy(mnist_run.path / "checkpoints" / "final.pt", run_dir / "checkpoints" / "final.pt")
    result = CliRunner().invoke(cli, ["histogram", str(run_dir), "--device", "cpu",
                                      "--layer", "fc2"])
    assert result.exit_code == 0, result.output
    assert "no checkpoints/init.pt" in result.stderr
    data = _strict_json(run_dir / "histogram" / "latest" / "histogram.json")
    assert list(data["snapshots"]) == ["final"]


@pytest.mark.parametrize(("args", "message"), [
    (["{empty}"], "never finished and holds no checkpoint"),
    (["{missing}"], "does not exist"),
    (["{mnist}", "--layer", "conv7"], "unknown layer 'conv7'; did you mean: conv2, conv1"),
    (["{mnist}", "--layer", "relu1"], "have no weights to histogram"),
    (["{mnist}", "--per-panel", "0"], "--per-panel 0: use 1 or more"),
    (["{mnist}", "--bins", "0"], "--bins 0: use 1 or more"),
])
def test_bad_input_is_one_line(bad_sources, tmp_path: Path, args: list[str], message: str) -> None:
    result = _invoke(*[bad_sources.get(a, a) for a in args], "--out", str(tmp_path / "o"))
    assert_one_line_error(result, message)
