"""Write docs/img/server.png: the web page of ``edmem serve`` after a question, rendered by a real
headless Chromium (Debian ``chromium`` + the ``playwright`` package; see docs/server.md).

Model: ``--model DIR``, or ``runs/demo/model`` when ``make demo`` has written it, else the tiny
test model trained for a few steps on its "capital of <country>" questions. Prints one JSON line:
the model, the question and what the page showed.

    .venv/bin/python benchmarks/screenshot_serve.py [--model DIR] [--question "..."] [--out PNG]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO_MODEL = REPO / "runs" / "demo" / "model"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--question", default=None,
                        help="default: 'what currency is used in japan?' (demo), else a tiny-model question")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "server.png")
    parser.add_argument("--top_k", type=int, default=5)
    args = parser.parse_args(argv)

    from edmem.apps.serve.browser import ask_in_browser
    from edmem.apps.serve.process import ServerProcess

    with tempfile.TemporaryDirectory() as tmp:
        model, question = args.model, args.question
        if model is None and DEMO_MODEL.is_dir():
            model = DEMO_MODEL
        if model is None:
            from edmem.testing import build_tiny_model_dir

            model = build_tiny_model_dir(Path(tmp) / "tiny", train_steps=150)
            question = question or "which city is the capital of japan?"
        question = question or "what currency is used in japan?"
        with ServerProcess(model, "--quiet", "--num_threads", "1") as server:
            view = ask_in_browser(server.url, question, top_k=args.top_k, screenshot=args.out)
    print(json.dumps({"model": str(model), "question": question, "out": str(args.out),
                      "page": asdict(view)}, ensure_ascii=False))
    return 0 if view.error is None else 1


if __name__ == "__main__":
    raise SystemExit(main())
