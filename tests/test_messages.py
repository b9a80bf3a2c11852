"""Bad values get one line that says what was wrong and what to do, before any work: numbers out
of range, splits past 100 %, overlapping splits, wrong config types, missing baseline files."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import assert_one_line_error
from test_train import invoke


@pytest.mark.parametrize(("args", "message"), [
    (["attribute", "{run}", "--index", "0", "--batch-size", "-5"], "--batch-size -5: use 1 or more"),
    (["attribute", "{run}", "--index", "0", "--batch-size", "0"], "--batch-size 0: use 1 or more"),
    (["attribute", "{run}", "--index", "0", "--steps", "100000"], "use at most 4096 steps"),
    (["attribute", "{run}", "--method", "occlusion", "--index", "0", "--window", "0"], "--window 0: use 1 or more"),
    (["activations", "{run}", "--top-images", "-1"], "--top-images -1: use 0 or more"),
    (["dream", "{run}", "--class", "3", "--until", "1.5"], "--until is a probability between 0 and 1"),
    (["evaluate", "{run}", "--methods", "saliency", "--index", "0", "--sanity-layers", "99"],
     "--sanity-layers 99: mnist has 4 layers with weights, so use 1 to 4"),
    (["attribute", "{run}", "--index", "0", "--baseline", "nosuch.png"],
     "baseline image nosuch.png does not exist"),
    (["activations", "{run}", "--channels", "40", "--layers", "relu1"],
     "--channels 40: layer relu1 has only 32 channels (0-31); a number is a channel, a range 0-26 the first ones"),
    (["train", "--train-split", "test[:150%]"], "150% is more than the whole split"),
])
def test_bad_values_are_one_line(mnist_run, args: list[str], message: str) -> None:
    result = invoke(*[a.replace("{run}", str(mnist_run.path)) for a in args])
    assert_one_line_error(result, message)


def test_python_callers_get_the_same_checks(mnist_run) -> None:
    from netviz import NetvizError, commands

    with pytest.raises(NetvizError, match="batch size must be a positive number"):
        commands.attribute(mnist_run, "saliency", indices=0, batch_size=-5, quiet=True)


def test_a_config_value_of_the_wrong_type_names_its_key(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('epochs = "three"\n')
    assert_one_line_error(invoke("train", "--config", str(config)),
                          "config key 'epochs' must be a whole number, not 'three'")


def test_overlapping_train_and_eval_splits_are_said(tmp_path: Path) -> None:
    result = invoke("train", "--train-split", "test[:96]", "--eval-split", "test[64:128]", "--epochs", "1",
                    "--runs-dir", str(tmp_path / "runs"), "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "share 32 images: the eval accuracy is partly measured on training images" in result.stderr


def test_a_model_without_data_says_what_to_do_in_any_command(tmp_path: Path) -> None:
    result = invoke("neurons", "--model", "resnet18", "--layer", "layer3")
    assert_one_line_error(result, "has no data set to take images from")
    assert "instead of --index" not in result.stderr
