"""Pretrained weights with no network, or with NETVIZ_OFFLINE=1: one line at once, naming where to
put the file; nothing tries the network (no minute of hub retries)."""

from __future__ import annotations

import time

import pytest
from conftest import assert_one_line_error
from test_train import invoke


@pytest.fixture(params=["NETVIZ_OFFLINE=1", "no network"])
def cut_off(request, monkeypatch):
    import netviz.network

    if request.param == "no network":
        monkeypatch.delenv("NETVIZ_OFFLINE", raising=False)
        monkeypatch.setattr(netviz.network, "reachable", lambda url, timeout=1.5: False)
    monkeypatch.setenv("TORCH_HOME", "/nonexistent-torch-home")  # no weights cached
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    return request.param


@pytest.mark.parametrize(("model", "where"), [("resnet18", "resnet18-"), ("timm:resnet18", "Hugging Face cache")])
def test_pretrained_weights_offline_fail_at_once(cut_off, model: str, where: str) -> None:
    pytest.importorskip("timm")
    import timm  # noqa: F401  (imported before the clock starts: what is timed is netviz's own work)

    started = time.perf_counter()
    result = invoke("layers", "--model", model, "--weights", "default")
    seconds = time.perf_counter() - started
    assert_one_line_error(result, where)
    assert "--weights FILE" in result.stderr
    assert seconds < 2.0, f"{seconds:.1f} s before the error"
