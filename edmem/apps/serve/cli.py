"""``edmem serve --model DIR``: answer questions over HTTP (JSON API and a web page).

Bad flags, a busy port or a model directory that cannot be loaded end with one
``edmem serve: error: ...`` line and exit status 1, before any request is accepted.
"""

from __future__ import annotations

import argparse
import socket
import sys
from dataclasses import fields

from edmem.apps.linker_cli import add_linker_flags, guarded, load_linker
from edmem.apps.serve.settings import ServeSettings
from edmem.errors import EDMemError

PROG = "edmem serve"
EPILOG = """\
endpoints:
  GET  /            a web page: type a question, see the answer, the top k and the mentions
  POST /v1/link     {"questions": ["what currency is used in japan?"], "top_k": 5}
                    -> {"results": [{"answer": ..., "top_k": [...], "mentions": [...], ...}]}
  GET  /v1/health   status, queue and batching counters
  GET  /v1/model    the model's description and these limits

Size limits answer 413, malformed requests 400/422, each as {"error": {"code", "message", ...}}.
See docs/server.md.
"""

HELP = {
    "max_batch": "most questions answered by one model call (concurrent requests are merged up to this)",
    "max_wait_ms": "how long an idle worker waits for more requests to join a batch, in ms",
    "max_question_chars": "longest question accepted, in characters (longer: 413)",
    "max_questions": "most questions in one request (more: 413)",
    "max_body_bytes": "largest request body, in bytes (larger: 413)",
    "max_top_k": "largest 'top_k' a request may ask for (larger: 422)",
    "max_pending": "most questions waiting or running at once (more: 503, try again)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve an edmem model directory over HTTP: a JSON API with micro-batching of "
                    "concurrent requests, and a web page at /.")
    add_linker_flags(parser)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s, this machine only; "
                             "0.0.0.0 exposes the server to the network)")
    parser.add_argument("--port", type=int, default=8000,
                        help="port (default: %(default)s; 0 picks a free one and prints it)")
    defaults = ServeSettings()
    limits = parser.add_argument_group("batching and limits")
    for f in fields(ServeSettings):
        if f.name == "default_top_k":  # that is --top_k
            continue
        default = getattr(defaults, f.name)
        limits.add_argument(f"--{f.name}", type=type(default), default=default,
                            help=f"{HELP[f.name]} (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true",
                        help="log warnings only (no line per request)")
    return parser


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, bound before the model loads so a busy port fails fast, and so
    ``--port 0`` can print the port it got."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise EDMemError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = ServeSettings(default_top_k=args.top_k, **{
            f.name: getattr(args, f.name) for f in fields(ServeSettings) if f.name != "default_top_k"})
    except ValueError as exc:
        parser.error(str(exc))
    return guarded(PROG, lambda: serve(args, settings))


def serve(args: argparse.Namespace, settings: ServeSettings) -> int:
    """Bind, load the model, then serve until Ctrl-C (or SIGTERM)."""
    sock = bind(args.host, args.port)
    try:
        linker = load_linker(args)
        import uvicorn

        from edmem.apps.serve.app import create_app

        app = create_app(linker, settings)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"{PROG}: listening on http://{shown}:{port}/ (model {args.model}); Ctrl-C stops",
              flush=True)
        config = uvicorn.Config(app, log_level="warning" if args.quiet else "info",
                                access_log=not args.quiet)
        try:
            uvicorn.Server(config).run(sockets=[sock])
        except KeyboardInterrupt:
            pass
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
