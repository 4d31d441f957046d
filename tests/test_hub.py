"""Hub names fail within seconds when the hub cannot be reached (edmem.runtime.hub)."""

from __future__ import annotations

import time

import pytest

from edmem.runtime import hub


def test_a_local_directory_is_used_as_is(tmp_path):
    assert hub.resolve_model_name(str(tmp_path)) == str(tmp_path)


def test_a_path_that_is_not_there_is_not_a_hub_name(tmp_path):
    with pytest.raises(hub.HubUnavailableError, match="directory not found"):
        hub.resolve_model_name(str(tmp_path / "missing" / "model"))


def test_offline_by_environment_without_cache(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "cached_copy", lambda name: None)
    monkeypatch.setattr(hub, "hub_reachable", lambda: pytest.fail("must not probe when offline"))
    with pytest.raises(hub.HubUnavailableError) as exc:
        hub.resolve_model_name("facebook/bart-large")
    message = str(exc.value)
    assert message.startswith("--model_name facebook/bart-large: not a local directory, and "
                              "HF_HUB_OFFLINE is set with no cached copy")
    assert "config.json + vocab.json + merges.txt" in message


def test_unreachable_hub_uses_a_cached_copy(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    monkeypatch.setattr(hub, "cached_copy", lambda name: str(tmp_path))
    assert hub.resolve_model_name("facebook/bart-large") == str(tmp_path)


def test_probe_of_a_closed_port_answers_quickly(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    start = time.monotonic()
    assert hub.hub_reachable(timeout=2.0) is False
    assert time.monotonic() - start < 3.0
