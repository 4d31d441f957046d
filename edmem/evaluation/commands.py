"""The evaluation commands (``python -m edmem.evaluation.exact_match``, ``... entity_linking_eval``,
``edmem evaluate ...``) on top of :func:`edmem.evaluation.api.evaluate_files`: argument parsing in the original
single-dash style, loading, printing, ``--json`` output and turning bad input into one clear line
on stderr (exit 1; usage errors exit 2) instead of a traceback."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from edmem.errors import EDMemError, UsageError
from edmem.evaluation.api import ScoreReport, evaluate_files
from edmem.evaluation.metrics import DEFAULT_KS


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _parser(prog: str, description: str, *, ans_link: bool, entity_vocab: str | None,
            ks: bool) -> argparse.ArgumentParser:
    """``entity_vocab``: None (no such option), "required" or "optional"."""
    parser = _Parser(prog=prog, description=description)
    parser.add_argument("-pred", "--pred", required=True, metavar="P",
                        help="predictions.json: {id: prediction}")
    parser.add_argument("-gold", "--gold", required=True, metavar="G",
                        help="gold questions, .jsonl (one per line) or .json (a list)")
    if ans_link:
        parser.add_argument("-ans_link", "--ans_link", default=None, metavar="A",
                            help="SLING answer links (sling_invocab-<split>.json): adds the "
                                 "linkable / non-linkable breakdown")
    if entity_vocab is not None:
        parser.add_argument("-entity_vocab", "--entity_vocab", metavar="V",
                            required=entity_vocab == "required", default=None,
                            help="entity names, a JSON list (entity_1m.json); only the 'valid "
                                 "entity name' lines depend on it")
    if ks:
        parser.add_argument("--ks", type=int, nargs="+", default=list(DEFAULT_KS), metavar="K",
                            help="cut-offs for hits@k (default: %(default)s)")
    parser.add_argument("--json", dest="json_out", default=None, metavar="OUT",
                        help="also write every figure to this JSON file")
    return parser


def _run(prog: str, parser: argparse.ArgumentParser, argv: Sequence[str] | None,
         body: Callable[[argparse.Namespace], dict[str, Any]]) -> int:
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except UsageError as exc:
        print(f"{prog}: error: {exc} (see --help)", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    try:
        document = body(args)
        if args.json_out:
            _write_json(args.json_out, document)
    except EDMemError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except UnicodeDecodeError as exc:
        print(f"{prog}: error: an input file is not UTF-8 text ({exc.reason} at byte {exc.start})",
              file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{prog}: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def _write_json(path: str, document: dict[str, Any]) -> None:
    target = Path(path)
    with target.open("w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, ensure_ascii=False, allow_nan=False)
        handle.write("\n")


def _evaluate(args: argparse.Namespace, **options: Any) -> ScoreReport:
    """Load the files the flags name (echoing the original's Read/Load lines) and score them."""
    return evaluate_files(args.pred, args.gold, ans_link=getattr(args, "ans_link", None),
                          entity_vocab=getattr(args, "entity_vocab", None), echo=print, **options)


def run_exact_match_command(argv: Sequence[str] | None, prog: str) -> int:
    """The original ``exact_match.py``: same options (``-entity_vocab`` required), same lines."""
    parser = _parser(prog, "String exact match of predictions against gold answers (the original "
                     "exact_match.py, same printed lines).", ans_link=True,
                     entity_vocab="required", ks=False)

    def body(args: argparse.Namespace) -> dict[str, Any]:
        result = _evaluate(args, entity_linking="off")
        print("\n".join(result.exact_match.lines()))
        return {**result.as_dict(), "command": "exact_match"}

    return _run(prog, parser, argv, body)


def run_entity_linking_command(argv: Sequence[str] | None, prog: str) -> int:
    """The original ``entity_linking_eval.py``: same lines; hits@k / MRR go to ``--json``."""
    parser = _parser(prog, "Top-1 entity-id accuracy against the gold answer entities (the "
                     "original entity_linking_eval.py, same printed lines); hits@k and MRR in "
                     "--json.", ans_link=False, entity_vocab=None, ks=True)

    def body(args: argparse.Namespace) -> dict[str, Any]:
        result = _evaluate(args, exact_match=False, entity_linking="required", ks=args.ks)
        print("\n".join(result.entity_linking.lines()))
        return {**result.as_dict(), "command": "entity_linking"}

    return _run(prog, parser, argv, body)


def run_all_command(argv: Sequence[str] | None, prog: str) -> int:
    """Both original reports plus the extras (counts, hits@k, MRR), one load of each file."""
    parser = _parser(prog, "Exact match, entity-id accuracy, hits@k and MRR in one run.",
                     ans_link=True, entity_vocab="optional", ks=True)

    def body(args: argparse.Namespace) -> dict[str, Any]:
        result = _evaluate(args, entity_linking="auto", ks=args.ks)
        print("\n".join(result.all_lines()))
        return {**result.as_dict(), "command": "all"}

    return _run(prog, parser, argv, body)
