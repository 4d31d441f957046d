"""``edmem serve``'s HTTP API end to end with the REAL tiny model directory
(``edmem.testing.build_tiny_model_dir``) and the real ``EntityLinker``, through FastAPI's test
client: every endpoint, every limit, concurrent requests batched together, failures isolated."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from edmem.apps.serve.app import create_app  # noqa: E402
from edmem.apps.serve.settings import ServeSettings  # noqa: E402
from edmem.inference.linker import EntityLinker  # noqa: E402

QUESTION = "what is the capital of france?"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from edmem.testing import build_tiny_model_dir

    return build_tiny_model_dir(tmp_path_factory.mktemp("serve") / "model")


@pytest.fixture(scope="module")
def linker(model_dir):
    return EntityLinker.from_pretrained(model_dir, device="cpu")


def serve(linker, **settings) -> TestClient:
    return TestClient(create_app(linker, ServeSettings(**settings)))


def post(client: TestClient, questions, **extra):
    return client.post("/v1/link", json={"questions": questions, **extra})


# ---------------------------------------------------------------------------- endpoints
def test_link_returns_what_the_python_api_returns(linker):
    questions = [QUESTION, "which city is the capital of japan?",
                 {"question": "paris and rome", "mentions": [{"offset": 10, "length": 4}]}]
    with serve(linker) as client:
        response = post(client, questions, top_k=3)
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        # The worker is idle now: the same call in-process gives the same results.
        expected = [r.to_dict() for r in linker.batch(questions, batch_size=32, top_k=3)]
    assert results == expected
    assert [r["question"] for r in results] == [QUESTION, questions[1], "paris and rome"]
    assert all(len(r["top_k"]) == 3 and r["answer"] == r["top_k"][0] for r in results)
    assert [(m["start"], m["end"], m["text"]) for m in results[0]["mentions"]] == [(23, 29, "france")]
    assert [m["text"] for m in results[2]["mentions"]] == ["rome"]  # given spans skip detection


def test_default_top_k_and_a_question_without_mentions(linker):
    with serve(linker) as client:
        [result] = post(client, ["tell me something"]).json()["results"]
    assert len(result["top_k"]) == 5
    assert result["no_mention"] is True and result["mentions"] == []
    assert result["answer"] is not None  # still answered from the question's words


def test_health_counts_requests_and_model_calls(linker):
    with serve(linker) as client:
        assert post(client, [QUESTION, "which city is the capital of peru?"]).status_code == 200
        health = client.get("/v1/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["pending_questions"] == 0
    assert body["stats"]["requests"] == 1 and body["stats"]["questions"] == 2
    assert body["stats"]["model_calls"] == 1 and body["stats"]["failed_requests"] == 0


def test_after_shutdown_requests_get_503(linker):
    client = serve(linker)
    with client:
        assert client.get("/v1/health").status_code == 200
    health = client.get("/v1/health")  # the lifespan has ended: the worker is stopped
    assert health.status_code == 503 and health.json()["status"] == "stopped"
    refused = post(client, [QUESTION])
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "shutting_down"


def test_model_describes_the_model_and_the_limits(linker):
    with serve(linker, max_questions=7) as client:
        body = client.get("/v1/model").json()
    assert body["model"]["name"] == linker.info()["name"]
    assert body["model"]["num_entities"] == linker.info()["num_entities"] > 0
    assert body["model"]["config"]["inference_nearest_k_entity"] == linker.max_k
    assert body["limits"]["max_questions"] == 7
    assert body["limits"]["max_top_k"] == linker.max_k  # lowered to what the model returns


def test_the_page_is_one_self_contained_html_document(linker):
    with serve(linker) as client:
        response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    for needed in ('id="question"', 'id="ask"', 'id="answer"', 'id="top-k-list"', 'id="mentions"',
                   "<style>", "<script>", 'fetch("v1/link"'):
        assert needed in html
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", html, re.I)  # no external URL
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", html)  # nothing loaded besides it


def test_unknown_endpoints_and_methods_answer_json(linker):
    with serve(linker) as client:
        missing = client.get("/v2/link")
        wrong = client.get("/v1/link")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert wrong.status_code == 405 and "use POST" in wrong.json()["error"]["message"]


# ---------------------------------------------------------------------------- limits
LIMITS = dict(max_question_chars=40, max_questions=3, max_body_bytes=600)


def chunks(data: bytes):  # a body sent without Content-Length (chunked)
    yield data[:100]
    yield data[100:]


CASES = [  # (id, request keyword arguments, status, code, field, words in the message)
    ("question too long", {"json": {"questions": ["ok", "x" * 41]}}, 413, "question_too_long",
     "questions[1]", "41 characters; the limit is 40"),
    ("too many questions", {"json": {"questions": ["a", "b", "c", "d"]}}, 413, "too_many_questions",
     "questions", "4 questions in one request; the limit is 3"),
    ("body too large", {"json": {"questions": ["a" * 30] * 30}}, 413, "body_too_large", None,
     "the limit is 600"),
    ("body too large, chunked", {"content": chunks(b'{"questions": ["' + b"a" * 700 + b'"]}')},
     413, "body_too_large", None, "exceeds 600 bytes"),
    ("bad JSON", {"content": b'{"questions": ["a",]}'}, 400, "bad_json", None, "not valid JSON"),
    ("not UTF-8", {"content": b'{"questions": ["\xff"]}'}, 400, "bad_encoding", None, "not UTF-8"),
    ("empty body", {"content": b""}, 400, "empty_body", None, "empty"),
    ("body not an object", {"json": ["a"]}, 422, "wrong_type", None, "got an array"),
    ("no questions field", {"json": {"question": "a"}}, 422, "unknown_field", "question",
     "allowed: questions, top_k"),
    ("missing questions", {"json": {"top_k": 3}}, 422, "missing_field", "questions", "no 'questions'"),
    ("questions a string", {"json": {"questions": "a"}}, 422, "wrong_type", "questions", "wrap"),
    ("questions an object", {"json": {"questions": {"a": 1}}}, 422, "wrong_type", "questions",
     "got an object"),
    ("no questions", {"json": {"questions": []}}, 422, "no_questions", "questions", "empty"),
    ("question a number", {"json": {"questions": ["a", 3]}}, 422, "wrong_type", "questions[1]",
     "got a number"),
    ("empty question", {"json": {"questions": ["a", "  \n"]}}, 422, "empty_question",
     "questions[1]", "is empty"),
    ("object without question", {"json": {"questions": [{"text": "a"}]}}, 422, "missing_field",
     "questions[0].question", "without a 'question'"),
    ("object question too long", {"json": {"questions": [{"question": "y" * 50}]}}, 413,
     "question_too_long", "questions[0].question", "50 characters"),
    ("top_k a string", {"json": {"questions": ["a"], "top_k": "3"}}, 422, "wrong_type", "top_k",
     "got a string"),
    ("top_k a boolean", {"json": {"questions": ["a"], "top_k": True}}, 422, "wrong_type", "top_k",
     "got a boolean"),
    ("top_k zero", {"json": {"questions": ["a"], "top_k": 0}}, 422, "out_of_range", "top_k",
     "between 1 and"),
    ("top_k above the model's", {"json": {"questions": ["a"], "top_k": 11}}, 422, "out_of_range",
     "top_k", "between 1 and 10"),
    ("spans the linker refuses", {"json": {"questions": [{"question": "paris", "mentions": [
        {"offset": 3, "length": 9}]}]}}, 422, "invalid_question", "questions", "outside the question"),
]


def test_the_question_length_limit_is_the_servers(linker):
    long_question = "what is the capital of france? " + "x" * 1200  # the linker's default is 1,000
    with serve(linker, max_question_chars=1500) as client:
        response = post(client, [long_question])
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["question"] == long_question


@pytest.fixture(scope="module")
def limited_client(linker):
    with serve(linker, **LIMITS) as client:
        yield client


@pytest.mark.parametrize("request_kwargs,status,code,field,words",
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_each_limit_has_a_clear_json_error(limited_client, request_kwargs, status, code, field, words):
    response = limited_client.post("/v1/link", **request_kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["status"], error["code"], error["field"]) == (status, code, field)
    assert words in error["message"]


def test_the_server_answers_normally_after_every_bad_request(limited_client):
    [result] = post(limited_client, [QUESTION]).json()["results"]
    assert result["question"] == QUESTION
    assert limited_client.get("/v1/health").json()["status"] == "ok"


# ---------------------------------------------------------------------------- concurrency
def concurrently(client: TestClient, bodies: list) -> list:
    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(lambda body: client.post("/v1/link", json=body), bodies))


def test_concurrent_requests_are_answered_in_fewer_model_calls(linker):
    questions = [f"what is the capital of {c}?" for c in
                 ("france", "italy", "spain", "peru", "japan", "egypt", "georgia", "texas")]
    # max_batch = the number of requests: the worker waits (up to 10 s) until all have arrived.
    with serve(linker, max_batch=len(questions), max_wait_ms=10_000) as client:
        responses = concurrently(client, [{"questions": [q], "top_k": 3} for q in questions])
        stats = client.get("/v1/health").json()["stats"]
    assert [r.status_code for r in responses] == [200] * len(questions)
    assert [r.json()["results"][0]["question"] for r in responses] == questions
    assert stats["requests"] == len(questions)
    assert stats["model_calls"] < len(questions)  # served together
    assert stats["largest_call"] > 1
    # Batching does not change the answers.
    alone = [linker(q, top_k=3).to_dict() for q in questions]
    assert [[e["id"] for e in r.json()["results"][0]["top_k"]] for r in responses] == \
        [[e["id"] for e in a["top_k"]] for a in alone]


def test_a_bad_question_in_a_shared_call_fails_only_its_own_request(linker):
    bad = {"question": "rome", "mentions": [{"offset": 0, "length": 99}]}
    with serve(linker, max_batch=3, max_wait_ms=10_000) as client:
        responses = concurrently(client, [{"questions": [QUESTION]}, {"questions": [bad]},
                                          {"questions": ["which city is the capital of peru?"]}])
    assert [r.status_code for r in responses] == [200, 422, 200]
    assert responses[1].json()["error"]["code"] == "invalid_question"


def test_an_exception_fails_one_request_and_the_server_goes_on(linker, monkeypatch):
    real_batch = linker.batch

    def exploding_batch(questions, **kwargs):  # an unexpected error inside the model call
        if "explode" in questions:
            raise RuntimeError("the model fell over")
        return real_batch(questions, **kwargs)

    monkeypatch.setattr(linker, "batch", exploding_batch)
    with serve(linker, max_batch=2, max_wait_ms=10_000) as client:
        good, boom = concurrently(client, [{"questions": [QUESTION]}, {"questions": ["explode"]}])
        after = post(client, ["which city is the capital of spain?", "capital of peru?"])  # full
        health = client.get("/v1/health").json()
    assert good.status_code == 200 and good.json()["results"][0]["question"] == QUESTION
    assert boom.status_code == 500
    assert boom.json()["error"] == {"status": 500, "code": "internal_error", "field": None,
                                    "message": "linking failed: RuntimeError: the model fell over"}
    assert after.status_code == 200
    assert health["status"] == "ok" and health["stats"]["failed_requests"] == 1


def test_too_many_waiting_questions_answer_503(linker, monkeypatch):
    real_batch = linker.batch
    release = threading.Event()
    entered = threading.Event()

    def held_batch(questions, **kwargs):  # keeps the worker busy until released
        entered.set()
        release.wait(30)
        return real_batch(questions, **kwargs)

    monkeypatch.setattr(linker, "batch", held_batch)
    with serve(linker, max_questions=2, max_pending=2, max_wait_ms=0) as client:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(post, client, [QUESTION, "which city is the capital of peru?"])
            assert entered.wait(30)
            refused = post(client, ["one more"])
            release.set()
            assert first.result(30).status_code == 200
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "overloaded"
