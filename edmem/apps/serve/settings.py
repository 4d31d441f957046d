"""The server's limits and batching knobs, in one place so the CLI, the app, ``GET /v1/model`` and
the docs agree (``docs/server.md`` lists them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ServeSettings:
    """Limits and micro-batching parameters (the ``edmem serve`` flags of the same names)."""

    max_batch: int = 32              # questions per model call; a request is never split across calls
    max_wait_ms: float = 5.0         # how long an idle worker waits for more requests to join a batch
    max_question_chars: int = 1000   # longer questions -> 413
    max_questions: int = 256         # questions per request -> 413 beyond
    max_body_bytes: int = 1_048_576  # request body size -> 413 beyond
    max_top_k: int = 100             # "top_k" must be in 1..max_top_k -> 422 otherwise
    default_top_k: int = 5           # when the request has no "top_k"
    max_pending: int = 4096          # questions queued or running; beyond -> 503 (try again later)

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_question_chars", "max_questions", "max_body_bytes",
                     "max_top_k", "default_top_k", "max_pending"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.default_top_k > self.max_top_k:
            raise ValueError(f"default_top_k ({self.default_top_k}) > max_top_k ({self.max_top_k})")
        if self.max_pending < self.max_questions:
            raise ValueError(f"max_pending ({self.max_pending}) < max_questions ({self.max_questions}):"
                             " a full request could never be accepted")

    def to_dict(self) -> dict:
        return asdict(self)
