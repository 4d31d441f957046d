"""``edmem serve``: an HTTP server (FastAPI + uvicorn) over :class:`edmem.EntityLinker`, with
micro-batching of concurrent requests and a self-contained web page. See ``docs/server.md``.

Import :func:`edmem.apps.serve.app.create_app` to embed the app in your own ASGI server."""
