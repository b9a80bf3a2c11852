"""The CLI shell: instant help without torch, version, usage errors, one list grammar."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from netviz.cli import cli
from netviz.errors import NetvizError


def test_help_is_instant_and_does_not_import_torch() -> None:
    code = "import sys; from netviz.cli import cli; assert 'torch' not in sys.modules; " \
           "assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "netviz", "--help"], check=True, capture_output=True)
    assert time.perf_counter() - start < 2.0  # generous for a loaded CI box; ~0.1 s typical


def test_version_and_usage_errors() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and "0.1.0" in result.output
    result = CliRunner().invoke(cli, ["train", "--epochs", "three"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "'three' is not a valid integer" in result.stderr
    result = CliRunner().invoke(cli, ["trian"])
    assert result.exit_code == 2 and "No such command 'trian'" in result.stderr


def test_one_list_grammar_for_indices_channels_and_classes() -> None:
    from netviz.selection import parse_int_list

    assert parse_int_list("0-3,8, 2", "--index") == [0, 1, 2, 3, 8]  # ordered, no repeats
    for bad, message in (("5-2", "runs backwards"), ("1,-4", "malformed --index"), (" , ", "empty --index")):
        with pytest.raises(NetvizError, match=message):
            parse_int_list(bad, "--index")
