"""FAKE linker for the micro-batching mechanics tests ONLY (test_serve_batcher.py).

It answers without a model so the tests can count calls, hold the worker busy and inject failures
precisely. Everything the server does with a real model is tested against the real tiny model
directory (``edmem.testing.build_tiny_model_dir``) in test_serve_api.py and test_serve_cli.py.
"""

from __future__ import annotations

import threading
import time


class FakeResult:
    def __init__(self, question, top_k: int):
        self.question = question
        self.top_k = top_k

    def to_dict(self) -> dict:
        return {"question": self.question, "top_k": self.top_k}


class FakeLinker:
    """Records each ``batch`` call; ``delay`` seconds per call; raises ``RuntimeError`` for a call
    that contains ``fail_on``; ``gate`` (an Event), when set up, blocks calls until it is set."""

    def __init__(self, delay: float = 0.0, fail_on: str | None = None):
        self.calls: list[tuple[list, int, int]] = []  # (questions, batch_size, top_k)
        self.delay = delay
        self.fail_on = fail_on
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def batch(self, questions, batch_size=32, top_k=None):
        self.calls.append((list(questions), batch_size, top_k))
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in questions:
            raise RuntimeError(f"cannot link {self.fail_on!r}")
        return [FakeResult(q, top_k) for q in questions]

    def info(self) -> dict:
        return {"name": "fake", "num_entities": 3}
