"""The FastAPI app: ``POST /v1/link``, ``GET /v1/health``, ``GET /v1/model`` and the web page at
``GET /``. Every error, including 404/405 and unexpected exceptions, is answered as JSON
``{"error": {"status", "code", "message", "field"}}``; an exception while answering one request
never stops the server (``docs/server.md``)."""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from dataclasses import replace
from importlib import resources
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from edmem import __version__
from edmem.apps.serve.batcher import MicroBatcher, Overloaded, Stopped
from edmem.apps.serve.settings import ServeSettings
from edmem.apps.serve.validation import ApiError, parse_link_request, read_limited

log = logging.getLogger(__name__)


def page_html() -> str:
    """The self-contained web page (inline CSS and JS, no external URL)."""
    return resources.files("edmem.apps.serve").joinpath("page.html").read_text(encoding="utf-8")


def _error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse(ApiError(status, code, message, field).body(), status_code=status)


def fit_to_model(settings: ServeSettings, linker: Any) -> ServeSettings:
    """Lower ``max_top_k`` (and ``default_top_k``) to the candidates the model returns
    (``linker.max_k``), so a too large ``top_k`` is a 422 naming the real limit."""
    max_k = getattr(linker, "max_k", None)
    if not isinstance(max_k, int) or max_k >= settings.max_top_k:
        return settings
    return replace(settings, max_top_k=max_k, default_top_k=min(settings.default_top_k, max_k))


def create_app(linker: Any, settings: ServeSettings | None = None) -> FastAPI:
    """An app serving ``linker`` (an :class:`edmem.EntityLinker`, or anything with the same
    ``batch`` and ``info`` methods). The worker thread starts and stops with the app's lifespan."""
    settings = fit_to_model(settings or ServeSettings(), linker)
    if hasattr(linker, "max_question_chars"):  # the server's limit is the one that applies
        linker.max_question_chars = settings.max_question_chars
    batcher = MicroBatcher(linker, max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms,
                           max_pending=settings.max_pending)
    model_info = dict(linker.info())  # read once, on this thread: the worker owns the model after
    page = page_html()
    started = time.time()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            batcher.stop()

    # /docs and /redoc would load their scripts from a CDN; the page at / is the offline UI.
    app = FastAPI(title="edmem", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None)
    app.state.batcher = batcher
    app.state.settings = settings

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = {404: f"no such endpoint: {request.url.path} (the endpoints are GET /, POST "
                        "/v1/link, GET /v1/health, GET /v1/model; see docs/server.md)",
                   405: f"{request.method} is not allowed on {request.url.path}"
                        + (" (use POST)" if request.url.path == "/v1/link" else "")
                   }.get(exc.status_code, str(exc.detail))
        return _error(exc.status_code, code, message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_request", str(exc.errors()))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return _error(500, "internal_error", f"{type(exc).__name__}: {exc}")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/v1/health")
    async def health() -> JSONResponse:
        ok = batcher.running
        return JSONResponse({"status": "ok" if ok else "stopped", "pending_questions": batcher.pending,
                             "uptime_s": round(time.time() - started, 1),
                             "stats": batcher.stats.to_dict()}, status_code=200 if ok else 503)

    @app.get("/v1/model")
    async def model() -> dict:
        return {"model": model_info, "limits": settings.to_dict(), "edmem_version": __version__}

    @app.post("/v1/link")
    async def link(request: Request) -> JSONResponse:
        """``{"questions": [str | {"question": str, ...}], "top_k": int}`` ->
        ``{"results": [LinkResult.to_dict(), ...]}`` in the order of the questions."""
        body = await read_limited(request.stream(), request.headers.get("content-length"),
                                  settings.max_body_bytes)
        parsed = parse_link_request(body, settings)
        try:
            results = await batcher.link(parsed.questions, parsed.top_k)
        except Overloaded as exc:
            return JSONResponse(ApiError(503, "overloaded", str(exc)).body(), status_code=503,
                                headers={"Retry-After": "1"})
        except Stopped as exc:
            return _error(503, "shutting_down", str(exc))
        except ValueError as exc:  # the linker refused a question (e.g. spans outside the text)
            return _error(422, "invalid_question", str(exc), field="questions")
        except Exception as exc:  # this request only; the worker and the server go on
            log.exception("linking failed")
            return _error(500, "internal_error", f"linking failed: {type(exc).__name__}: {exc}")
        return JSONResponse({"results": [result.to_dict() for result in results]})

    return app
