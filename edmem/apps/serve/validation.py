"""Reading and checking a ``POST /v1/link`` body: every bad input becomes an :class:`ApiError`
with a 4xx status, a stable code and one message that names the field (``docs/server.md`` lists
them). Kept apart from the app so the rules are testable without a server."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, AsyncIterator

from edmem.apps.serve.settings import ServeSettings

ALLOWED_FIELDS = ("questions", "top_k")


class ApiError(Exception):
    """An error answered as ``{"error": {"status", "code", "message", "field"}}``."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def body(self) -> dict:
        return {"error": {"status": self.status, "code": self.code, "message": self.message,
                          "field": self.field}}


@dataclass
class LinkRequest:
    questions: list[Any]  # str, or {"question": str, ...} passed to the linker as is
    top_k: int


async def read_limited(chunks: AsyncIterator[bytes], content_length: str | None,
                       max_bytes: int) -> bytes:
    """The whole body, refusing (413) as soon as it is known to exceed ``max_bytes``: from the
    ``Content-Length`` header before reading, or while reading a body sent without one."""
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise ApiError(400, "bad_content_length",
                           f"Content-Length {content_length!r} is not a number") from None
        if declared > max_bytes:
            raise ApiError(413, "body_too_large", f"the request body has {declared} bytes; the "
                           f"limit is {max_bytes} (--max_body_bytes)")
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > max_bytes:
            raise ApiError(413, "body_too_large", f"the request body exceeds {max_bytes} bytes "
                           "(--max_body_bytes)")
    return bytes(body)


def parse_link_request(body: bytes, settings: ServeSettings) -> LinkRequest:
    """Check the body of ``POST /v1/link`` against the limits in ``settings``."""
    if not body.strip():
        raise ApiError(400, "empty_body", 'the request body is empty; send JSON such as '
                       '{"questions": ["what currency is used in japan?"]}')
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "bad_encoding", f"the request body is not UTF-8 (byte {exc.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "bad_json", f"the request body is not valid JSON: {exc.msg} "
                       f"(line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ApiError(422, "wrong_type", f"the body must be a JSON object with a 'questions' list, "
                       f"got {_json_type(data)}")
    unknown = sorted(set(data) - set(ALLOWED_FIELDS))
    if unknown:
        raise ApiError(422, "unknown_field", f"unknown field(s) {', '.join(map(repr, unknown))}; "
                       f"allowed: {', '.join(ALLOWED_FIELDS)}", field=unknown[0])
    return LinkRequest(questions=_questions(data, settings), top_k=_top_k(data, settings))


def _questions(data: dict, settings: ServeSettings) -> list[Any]:
    if "questions" not in data:
        raise ApiError(422, "missing_field", "the body has no 'questions' list", field="questions")
    questions = data["questions"]
    if isinstance(questions, str):
        raise ApiError(422, "wrong_type", "'questions' must be a list; wrap a single question in "
                       "[...]", field="questions")
    if not isinstance(questions, list):
        raise ApiError(422, "wrong_type", f"'questions' must be a list, got {_json_type(questions)}",
                       field="questions")
    if not questions:
        raise ApiError(422, "no_questions", "'questions' is empty", field="questions")
    if len(questions) > settings.max_questions:
        raise ApiError(413, "too_many_questions", f"{len(questions)} questions in one request; the "
                       f"limit is {settings.max_questions} (--max_questions)", field="questions")
    for index, item in enumerate(questions):
        _check_question(item, f"questions[{index}]", settings)
    return questions


def _check_question(item: Any, where: str, settings: ServeSettings) -> None:
    text = item
    if isinstance(item, dict):
        if "question" not in item:
            raise ApiError(422, "missing_field", f"{where} is an object without a 'question' string",
                           field=f"{where}.question")
        text, where = item["question"], f"{where}.question"
    if not isinstance(text, str):
        raise ApiError(422, "wrong_type", f"{where} must be a string (or an object with a "
                       f"'question' string), got {_json_type(text)}", field=where)
    if not text.strip():
        raise ApiError(422, "empty_question", f"{where} is empty", field=where)
    if len(text) > settings.max_question_chars:
        raise ApiError(413, "question_too_long", f"{where} has {len(text)} characters; the limit is "
                       f"{settings.max_question_chars} (--max_question_chars)", field=where)


def _top_k(data: dict, settings: ServeSettings) -> int:
    top_k = data.get("top_k", settings.default_top_k)
    if top_k is None:
        return settings.default_top_k
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise ApiError(422, "wrong_type", f"'top_k' must be an integer, got {_json_type(top_k)}",
                       field="top_k")
    if not 1 <= top_k <= settings.max_top_k:
        raise ApiError(422, "out_of_range", f"'top_k' must be between 1 and {settings.max_top_k} "
                       f"(--max_top_k), got {top_k}", field="top_k")
    return top_k


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
