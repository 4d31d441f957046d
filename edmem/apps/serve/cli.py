"""``edmem serve --model DIR``: answer questions over HTTP (JSON API and a web page).

Bad flags or a model directory that cannot be loaded end with one ``edmem serve: error: ...`` line
and exit status 1, before anything listens.
"""

from __future__ import annotations

import argparse
import socket
import sys
from dataclasses import fields
from pathlib import Path

from edmem.apps.serve.settings import ServeSettings

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
    "default_top_k": "'top_k' when a request gives none",
    "max_pending": "most questions waiting or running at once (more: 503, try again)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve an edmem model directory over HTTP: a JSON API with micro-batching of "
                    "concurrent requests, and a web page at /.")
    parser.add_argument("--model", type=Path, required=True, metavar="DIR",
                        help="a model directory (written by training, the demo or 'edmem convert')")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s, this machine only; "
                             "0.0.0.0 exposes the server to the network)")
    parser.add_argument("--port", type=int, default=8000,
                        help="port (default: %(default)s; 0 picks a free one and prints it)")
    parser.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    parser.add_argument("--num_threads", type=int, default=0,
                        help="torch CPU threads (default: 0 = torch's default)")
    defaults = ServeSettings()
    limits = parser.add_argument_group("batching and limits")
    for f in fields(ServeSettings):
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
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = ServeSettings(**{f.name: getattr(args, f.name) for f in fields(ServeSettings)})
    except ValueError as exc:
        parser.error(str(exc))
    from edmem.errors import EDMemError

    try:
        sock = bind(args.host, args.port)
        linker = load_linker(args.model, device=args.device, num_threads=args.num_threads,
                             top_k=settings.default_top_k)
    except (EDMemError, OSError, ValueError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
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


def load_linker(model_dir: Path, *, device: str, num_threads: int, top_k: int):
    """The model, loaded once before the server starts (errors end the command, not a request)."""
    if num_threads > 0:
        import torch

        torch.set_num_threads(num_threads)
    from edmem.inference.linker import EntityLinker

    return EntityLinker.from_pretrained(model_dir, device=device, top_k=top_k)


if __name__ == "__main__":
    raise SystemExit(main())
