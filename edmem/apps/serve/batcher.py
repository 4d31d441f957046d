"""Micro-batching: concurrent requests share model calls.

One worker thread owns the linker (the model is never touched from the event loop, so a long batch
never stalls other connections). Requests wait in a queue; when the worker is free it takes the
oldest request, then keeps adding waiting requests until ``max_batch`` questions are gathered or
``max_wait_ms`` has passed, and answers them all with one :meth:`EntityLinker.batch` call per
distinct ``top_k``. A request is never split; one larger than ``max_batch`` gets a call of its own
(the linker cuts it into ``max_batch``-sized model batches).

If a shared call raises, each request of that call is retried alone, so only the request that
causes the error fails (see ``docs/server.md``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, Sequence

log = logging.getLogger(__name__)


class Linker(Protocol):
    """What the batcher needs of :class:`edmem.EntityLinker`."""

    def batch(self, questions: list, batch_size: int = 32, top_k: int | None = None) -> list: ...


class Overloaded(Exception):
    """More questions are queued than ``max_pending`` allows (the server answers 503)."""


class Stopped(Exception):
    """The batcher is stopped (the server is shutting down; it answers 503)."""


@dataclass
class BatchStats:
    """Counters shown by ``GET /v1/health`` (and used by the tests and ``bench_serve.py``)."""

    requests: int = 0          # requests answered (successfully or not)
    questions: int = 0         # questions answered
    model_calls: int = 0       # EntityLinker.batch calls
    failed_requests: int = 0   # requests whose linker call raised
    largest_call: int = 0      # most questions in one call
    model_seconds: float = 0.0  # time spent inside EntityLinker.batch

    def to_dict(self) -> dict:
        out = asdict(self)
        out["model_seconds"] = round(self.model_seconds, 3)
        out["mean_questions_per_call"] = (round(self.questions / self.model_calls, 2)
                                          if self.model_calls else 0.0)
        return out


@dataclass
class _Job:
    questions: list
    top_k: int
    future: Future = field(default_factory=Future)


class MicroBatcher:
    """A queue of link requests served by one worker thread in shared model calls."""

    def __init__(self, linker: Linker, *, max_batch: int = 32, max_wait_ms: float = 5.0,
                 max_pending: int = 4096):
        self.linker = linker
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_pending = max_pending
        self.stats = BatchStats()
        self._jobs: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._pending = 0  # questions queued or running
        self._stopping = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="edmem-serve-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Answer what is queued, then end the worker thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ submitting
    def submit(self, questions: Sequence[Any], top_k: int) -> Future:
        """Queue ``questions``; the future resolves to one result per question, in order."""
        job = _Job(list(questions), top_k)
        with self._cond:
            if self._stopping or not self.running:
                raise Stopped("the server is shutting down")
            if self._pending + len(job.questions) > self.max_pending:
                raise Overloaded(f"{self._pending} questions are already waiting "
                                 f"(limit {self.max_pending}); try again shortly")
            self._pending += len(job.questions)
            self._jobs.append(job)
            self._cond.notify()
        return job.future

    async def link(self, questions: Sequence[Any], top_k: int) -> list:
        """Awaitable :meth:`submit` for the event loop (a cancelled request leaves the queue)."""
        return await asyncio.wrap_future(self.submit(questions, top_k))

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        while True:
            jobs = self._next_batch()
            if jobs is None:
                return
            try:
                self._answer(jobs)
            except BaseException as exc:  # never let the worker die: fail these jobs instead
                log.exception("worker error")
                for job in jobs:
                    self._finish(job, error=exc)

    def _next_batch(self) -> list[_Job] | None:
        """The oldest waiting job plus those that join within ``max_wait_ms`` (up to
        ``max_batch`` questions); ``None`` once stopped and drained."""
        with self._cond:
            while not self._jobs and not self._stopping:
                self._cond.wait()
            if not self._jobs:
                return None
            batch = [self._jobs.popleft()]
            size = len(batch[0].questions)
            deadline = time.monotonic() + self.max_wait_s
            while size < self.max_batch:
                if self._jobs:
                    if size + len(self._jobs[0].questions) > self.max_batch:
                        break
                    job = self._jobs.popleft()
                    batch.append(job)
                    size += len(job.questions)
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping:
                    break
                self._cond.wait(remaining)
        live = []
        for job in batch:  # a request whose client went away is dropped here
            if job.future.set_running_or_notify_cancel():
                live.append(job)
            else:
                self._release(job)
        return live

    def _answer(self, jobs: list[_Job]) -> None:
        by_top_k: dict[int, list[_Job]] = {}
        for job in jobs:
            by_top_k.setdefault(job.top_k, []).append(job)
        for top_k, group in by_top_k.items():
            try:
                results = self._call(group, top_k)
            except Exception as exc:
                if len(group) == 1:
                    self._finish(group[0], error=exc)
                    continue
                log.warning("a shared call of %d requests failed (%s); retrying each alone",
                            len(group), exc)
                for job in group:
                    try:
                        self._finish(job, results=self._call([job], top_k))
                    except Exception as one_exc:
                        self._finish(job, error=one_exc)
                continue
            start = 0
            for job in group:
                self._finish(job, results=results[start:start + len(job.questions)])
                start += len(job.questions)

    def _call(self, group: list[_Job], top_k: int) -> list:
        questions = [q for job in group for q in job.questions]
        started = time.perf_counter()
        try:
            results = self.linker.batch(questions, batch_size=self.max_batch, top_k=top_k)
        finally:
            self.stats.model_calls += 1
            self.stats.model_seconds += time.perf_counter() - started
            self.stats.largest_call = max(self.stats.largest_call, len(questions))
        if len(results) != len(questions):
            raise RuntimeError(f"the linker returned {len(results)} results for {len(questions)} "
                               "questions")
        return list(results)

    def _finish(self, job: _Job, *, results: list | None = None,
                error: BaseException | None = None) -> None:
        if job.future.done():  # already answered (only after an error inside _answer itself)
            return
        self.stats.requests += 1
        self.stats.questions += len(job.questions)
        if error is not None:
            self.stats.failed_requests += 1
            job.future.set_exception(error)
        else:
            job.future.set_result(results)
        self._release(job)

    def _release(self, job: _Job) -> None:
        with self._cond:
            self._pending -= len(job.questions)
