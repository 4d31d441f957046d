"""``edmem link --model DIR --input FILE --output FILE``: link every question of a file.

Input: plain text (one question per line; its id is the line number) or JSONL (objects with
``question``, optional ``id`` (default: the line number) and optional own spans: ``mentions``
``[{"offset", "length", "target"?}]`` or the original ``link_offset``/``link_length``/
``link_target`` fields; ``--detect`` ignores given spans). Output: JSONL, one line per question,
``{"id", "question", "answer", "top_k", "mentions", "no_mention", "fact_override"}`` (the last is
null unless a fact override of ``edmem memory add/edit`` chose the answer).

Files of any size: the input is streamed in chunks, each chunk is run in batches of similar
length, and the results are appended as whole lines (one write each). A re-run skips the ids
already in the output (a line cut off by a kill is removed first), so an interrupted run
continues where it stopped. Bad input stops the run with one line naming file, line and field;
what was written stays.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator

from edmem.apps.linker_cli import add_linker_flags, guarded, load_linker
from edmem.errors import DataError
from edmem.inference.textio import MAX_LINE_BYTES, iter_lines, parse_json_object

PROG = "edmem link"
CHUNK_BATCHES = 32   # batches read ahead and sorted by length together


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Link every question of a text or JSONL file (streaming, batched "
        "by length, resumable).",
        epilog="examples:\n  edmem link --model runs/demo/model --input questions.txt --output linked.jsonl\n"
               "  edmem link --model runs/demo/model --input el_geo-test.jsonl --output out.jsonl --detect",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_linker_flags(parser)
    parser.add_argument("--input", required=True, help="text (one question per line) or JSONL file")
    parser.add_argument("--output", required=True, help="JSONL results; appended to when it exists")
    parser.add_argument("--format", choices=("auto", "text", "jsonl"), default="auto",
                        help="input format (auto: .jsonl/.json name or a first line starting with '{')")
    parser.add_argument("--batch_size", type=int, default=32, help="questions per forward pass")
    parser.add_argument("--detect", action="store_true",
                        help="detect mentions even in questions that come with their own spans")
    parser.add_argument("--max_line_bytes", type=int, default=MAX_LINE_BYTES,
                        help=f"longest input line accepted (default {MAX_LINE_BYTES})")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(PROG, lambda: run(args))


def run(args: argparse.Namespace) -> int:
    source, target = Path(args.input), Path(args.output)
    if not source.is_file():
        raise DataError("file not found", source, field="--input")
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be at least 1 (got {args.batch_size})")
    if target.resolve() == source.resolve():
        raise ValueError("--output must not be the --input file")
    jsonl = input_is_jsonl(source, args.format)
    done = completed_ids(target)
    linker = load_linker(args)
    counts = {"linked": 0, "skipped_done": 0, "blank": 0}
    target.parent.mkdir(parents=True, exist_ok=True)
    progress = _progress(source, disabled=args.no_progress)
    with target.open("a", encoding="utf-8", newline="\n") as out:
        chunk: list[tuple[str, Any]] = []
        try:
            for qid, prepared in read_questions(source, jsonl, linker, args, counts, progress, done):
                chunk.append((qid, prepared))
                if len(chunk) >= args.batch_size * CHUNK_BATCHES:
                    counts["linked"] += write_chunk(out, linker, chunk, args)
                    chunk = []
        finally:  # bad input stops the run, but what was read before it is still written
            if chunk:
                counts["linked"] += write_chunk(out, linker, chunk, args)
            progress.close()
    print(f"{PROG}: {counts['linked']} questions linked, {counts['skipped_done']} already in "
          f"{target} (skipped), {counts['blank']} blank lines skipped", file=sys.stderr)
    return 0


def input_is_jsonl(path: Path, fmt: str) -> bool:
    if fmt != "auto":
        return fmt == "jsonl"
    if path.suffix in (".jsonl", ".json"):
        return True
    with path.open("rb") as handle:
        for raw in handle:
            if raw.strip():
                return raw.lstrip().startswith(b"{")
    return False


def completed_ids(path: Path) -> set[str]:
    """Ids already in the output; a last line without its newline (a killed writer) is cut off."""
    if not path.is_file():
        return set()
    with path.open("rb+") as handle:
        data_end = handle.seek(0, os.SEEK_END)
        if data_end:
            handle.seek(max(0, data_end - 1))
            if handle.read(1) != b"\n":
                handle.seek(0)
                content = handle.read()
                keep = content.rfind(b"\n") + 1
                handle.truncate(keep)
    ids: set[str] = set()
    for line_no, text in iter_lines(path, max_line_bytes=1 << 26):
        if not text.strip():
            continue
        try:
            ids.add(str(json.loads(text)["id"]))
        except (ValueError, KeyError, TypeError):
            raise DataError("not a result line of edmem link (choose another --output)", path,
                            line_no) from None
    return ids


def read_questions(path: Path, jsonl: bool, linker: Any, args: argparse.Namespace,
                   counts: dict[str, int], progress: Any, done: set[str]) -> Iterator[tuple[str, Any]]:
    """(id, prepared question) per input line not in ``done``, checked and encoded (bad input
    -> DataError naming the line)."""
    seen: set[str] = set()
    for line_no, text in iter_lines(path, args.max_line_bytes):
        progress.update(len(text.encode("utf-8")) + 1)
        if not text.strip():
            counts["blank"] += 1
            continue
        qid, question = str(line_no), text
        if jsonl:
            qid, question = _from_json(path, line_no, text, args.detect)
        if qid in seen:
            raise DataError(f"id {qid!r} appears twice (ids must be unique to resume)", path,
                            line_no, "id")
        seen.add(qid)
        if qid in done:
            counts["skipped_done"] += 1
            continue
        try:
            prepared = linker.prepare(question)
        except ValueError as exc:
            raise DataError(str(exc), path, line_no, "question" if jsonl else None) from None
        yield qid, prepared


def _from_json(path: Path, line_no: int, text: str, detect: bool) -> tuple[str, Any]:
    obj = parse_json_object(text, path, line_no)
    question = obj.get("question")
    if not isinstance(question, str):
        raise DataError(f"expected a string, got {question!r:.60}", path, line_no, "question")
    qid = obj.get("id", line_no)
    if not isinstance(qid, (str, int)) or isinstance(qid, bool):
        raise DataError(f"expected a string or integer id, got {qid!r:.60}", path, line_no, "id")
    mentions = None if detect else obj.get("mentions")
    if mentions is None and not detect and "link_offset" in obj:
        try:
            mentions = [{"offset": int(o), "length": int(n), "target": int(t)} for o, n, t in
                        zip(obj["link_offset"], obj["link_length"], obj["link_target"], strict=True)]
        except (ValueError, TypeError, KeyError):
            raise DataError("link_offset / link_length / link_target must be integer lists of "
                            "equal length", path, line_no, "link_offset") from None
    if mentions is None:
        return str(qid), question
    return str(qid), {"question": question, "mentions": mentions}


def write_chunk(out: Any, linker: Any, chunk: list[tuple[str, Any]], args: argparse.Namespace) -> int:
    results = linker.run_prepared([p for _, p in chunk], batch_size=args.batch_size)
    for (qid, _), result in zip(chunk, results):
        out.write(json.dumps({"id": qid, **result.to_dict()}, ensure_ascii=False) + "\n")
    out.flush()
    return len(results)


def _progress(path: Path, disabled: bool) -> Any:
    from tqdm.auto import tqdm
    return tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc="link",
                disable=True if disabled else None, file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
