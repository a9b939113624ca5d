"""The serving process's collector settings (kanvaro.gc_tuning): what a server loads is frozen
and collections are spaced out; every uvicorn configuration of ours applies them on load."""

from __future__ import annotations

import gc

import pytest

from kanvaro import gc_tuning
from kanvaro.crypto import tls


@pytest.fixture
def restored_gc():
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_settling_freezes_the_heap_and_spaces_collections(restored_gc) -> None:
    gc.unfreeze()
    loaded = [object() for _ in range(10)] + [[i] for i in range(1000)]  # startup's objects
    gc_tuning.settle_heap()
    assert gc.get_freeze_count() >= len(loaded)
    assert gc.get_threshold() == gc_tuning.THRESHOLDS
    assert gc.get_threshold()[0] > 700  # CPython's default ran a collection every few requests


def test_every_served_app_settles_the_heap_once_loaded(monkeypatch, restored_gc) -> None:
    calls: list[str] = []
    monkeypatch.setattr(tls, "settle_heap", lambda: calls.append("settled"))

    async def app(scope, receive, send):  # pragma: no cover - never called
        raise AssertionError

    config = tls._TLSConfig(app, host="127.0.0.1", port=0, log_config=None)
    config.load()
    assert calls == ["settled"]
