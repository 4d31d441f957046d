"""Micro-batching mechanics of ``edmem serve`` (edmem.apps.serve.batcher), with a FAKE linker that
counts calls (tests/serve_fake.py). The same behaviour with the real model is tested through HTTP
in test_serve_api.py."""

from __future__ import annotations

import threading

import pytest

from edmem.apps.serve.batcher import MicroBatcher, Overloaded, Stopped
from serve_fake import FakeLinker


@pytest.fixture
def make_batcher():
    started: list[MicroBatcher] = []

    def make(linker, **kwargs) -> MicroBatcher:
        batcher = MicroBatcher(linker, **kwargs)
        batcher.start()
        started.append(batcher)
        return batcher

    yield make
    for batcher in started:
        if batcher.linker.gate is not None:
            batcher.linker.gate.set()
        batcher.stop()


def answers(future) -> list:
    return [r.question for r in future.result(timeout=10)]


def test_concurrent_requests_share_one_model_call(make_batcher):
    linker = FakeLinker()
    batcher = make_batcher(linker, max_batch=8, max_wait_ms=5000)
    futures = [batcher.submit([f"q{i}"], top_k=5) for i in range(8)]
    assert [answers(f) for f in futures] == [[f"q{i}"] for i in range(8)]
    # The 8th question fills the batch: one call, without waiting out the 5 s.
    assert [len(call[0]) for call in linker.calls] == [1 * 8]
    assert batcher.stats.model_calls == 1 and batcher.stats.requests == 8
    assert batcher.stats.to_dict()["mean_questions_per_call"] == 8.0


def test_requests_waiting_behind_a_busy_worker_are_merged_up_to_max_batch(make_batcher):
    linker = FakeLinker()
    linker.gate = threading.Event()
    batcher = make_batcher(linker, max_batch=4, max_wait_ms=0)
    first = batcher.submit(["first"], top_k=5)
    assert linker.entered.wait(10)
    rest = [batcher.submit([f"q{i}"], top_k=5) for i in range(10)]
    linker.gate.set()
    assert answers(first) == ["first"]
    assert [answers(f) for f in rest] == [[f"q{i}"] for i in range(10)]
    assert [call[0] for call in linker.calls] == [
        ["first"], ["q0", "q1", "q2", "q3"], ["q4", "q5", "q6", "q7"], ["q8", "q9"]]
    assert batcher.stats.largest_call == 4


def test_a_request_larger_than_max_batch_is_not_split(make_batcher):
    linker = FakeLinker()
    batcher = make_batcher(linker, max_batch=4, max_wait_ms=0)
    questions = [f"q{i}" for i in range(10)]
    assert answers(batcher.submit(questions, top_k=5)) == questions
    assert linker.calls == [(questions, 4, 5)]  # the linker cuts it into batches of 4 itself


def test_different_top_k_get_separate_calls_and_results_keep_their_order(make_batcher):
    linker = FakeLinker()
    batcher = make_batcher(linker, max_batch=4, max_wait_ms=5000)
    futures = [batcher.submit([f"a{i}"], top_k=3 if i % 2 else 5) for i in range(4)]
    for i, future in enumerate(futures):
        [result] = future.result(timeout=10)
        assert (result.question, result.top_k) == (f"a{i}", 3 if i % 2 else 5)
    assert sorted((call[2], call[0]) for call in linker.calls) == [(3, ["a1", "a3"]), (5, ["a0", "a2"])]


def test_an_error_fails_only_the_request_that_causes_it(make_batcher):
    linker = FakeLinker(fail_on="bad")
    batcher = make_batcher(linker, max_batch=3, max_wait_ms=5000)
    good1, bad, good2 = (batcher.submit([q], top_k=5) for q in ("a", "bad", "c"))
    assert answers(good1) == ["a"] and answers(good2) == ["c"]
    with pytest.raises(RuntimeError, match="cannot link 'bad'"):
        bad.result(timeout=10)
    # One shared call failed, then each request was retried alone.
    assert [call[0] for call in linker.calls] == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]
    assert batcher.stats.failed_requests == 1 and batcher.running
    after = ["after1", "after2", "after3"]  # a full batch: no wait
    assert answers(batcher.submit(after, top_k=5)) == after  # the worker lives on
    assert batcher.pending == 0


def test_too_many_waiting_questions_are_refused(make_batcher):
    linker = FakeLinker()
    linker.gate = threading.Event()
    batcher = make_batcher(linker, max_batch=2, max_wait_ms=0, max_pending=4)
    running = batcher.submit(["x", "y"], top_k=5)
    assert linker.entered.wait(10)
    queued = batcher.submit(["z", "w"], top_k=5)
    with pytest.raises(Overloaded, match="4 questions are already waiting"):
        batcher.submit(["one more"], top_k=5)
    linker.gate.set()
    assert answers(running) == ["x", "y"] and answers(queued) == ["z", "w"]
    assert batcher.pending == 0


def test_a_cancelled_request_never_reaches_the_model(make_batcher):
    linker = FakeLinker()
    linker.gate = threading.Event()
    batcher = make_batcher(linker, max_batch=1, max_wait_ms=0)
    first = batcher.submit(["first"], top_k=5)
    assert linker.entered.wait(10)
    gone = batcher.submit(["gone"], top_k=5)
    assert gone.cancel()  # the client disconnected
    linker.gate.set()
    assert answers(first) == ["first"]
    assert answers(batcher.submit(["last"], top_k=5)) == ["last"]
    assert [call[0] for call in linker.calls] == [["first"], ["last"]]
    assert batcher.pending == 0


def test_stop_answers_what_is_queued_then_refuses(make_batcher):
    linker = FakeLinker(delay=0.05)
    batcher = make_batcher(linker, max_batch=1, max_wait_ms=0)
    futures = [batcher.submit([f"q{i}"], top_k=5) for i in range(3)]
    batcher.stop()
    assert [answers(f) for f in futures] == [["q0"], ["q1"], ["q2"]]
    assert not batcher.running
    with pytest.raises(Stopped):
        batcher.submit(["late"], top_k=5)
