"""``edmem ask --model DIR "question"``: answer questions in plain words (a table, or JSON).

Without a question argument it reads one question per line from stdin. docs/linking.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Iterator

from edmem.apps.linker_cli import add_linker_flags, error, guarded, load_linker

PROG = "edmem ask"
BAR_WIDTH = 20


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Answer a question in plain words with an edmem model: the answer "
        "entity, the top-k, and the mentions found in the question with the entities the memory "
        "read there.",
        epilog='examples:\n  edmem ask --model runs/demo/model "what currency is used in japan?"\n'
               '  edmem ask --model runs/demo/model --json < questions.txt',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("question", nargs="?", help="the question; omitted: one per line from stdin")
    add_linker_flags(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per question (JSONL)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(PROG, lambda: run(args))


def run(args: argparse.Namespace) -> int:
    linker = load_linker(args)
    status = 0
    for where, question in questions(args):
        if question is None:
            status = error(PROG, where)
            continue
        try:
            result = linker(question)
        except ValueError as exc:
            status = error(PROG, f"{where}{exc}")
            continue
        if args.json:
            print(json.dumps(result.to_dict(), ensure_ascii=False), flush=True)
        else:
            print(render(result), flush=True)
    return status


def questions(args: argparse.Namespace) -> Iterator[tuple[str, str | None]]:
    """(where, question) pairs; question None means ``where`` is an error message."""
    if args.question is not None:
        yield "", args.question
        return
    for line_no, raw in enumerate(sys.stdin.buffer, start=1):
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            yield f"stdin, line {line_no}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})", None
            continue
        if text.strip():
            yield f"stdin, line {line_no}: ", text


def render(result: Any) -> str:
    """A small table: the question, its mentions, the ranked entities with bars."""
    lines = [f"question: {result.question}"]
    if result.no_mention:
        lines.append("mentions: none found (answered from the question alone)")
    for m in result.mentions:
        best = ", ".join(f"{e.name} {e.score:.2f}" for e in m.entities[:3]) or "(cut off by truncation)"
        lines.append(f"mention:  [{m.text}] {m.start}-{m.end} -> {best}")
    answer = result.answer
    lines.append(f"answer:   {answer.name} (id {answer.id}, p={answer.score:.3f})" if answer else "answer: none")
    if result.fact_override:
        o = result.fact_override
        subject = f"{o.get('subject_name') or 'entity'} (id {o['subject']})"
        replaced = f"{o.get('replaced_name') or 'entity'} (id {o['replaced']})"
        lines.append(f"override: the fact override for {subject}, {o['answer_type']}, from passage "
                     f"{o['source'] or '?'}; the model's own answer was {replaced}")
    rows = [(str(i), str(e.id), e.name, e.type or "", f"{e.score:.3f}",
             "#" * max(1, round(e.score * BAR_WIDTH)))
            for i, e in enumerate(result.top_k, start=1)]
    header = ("rank", "id", "name", "type", "score", "")
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    for row in [header, *rows]:
        lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
