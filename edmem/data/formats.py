"""Readers and validation for the EL / open-QA jsonl files and the SLING answer-link files.

Pure Python on purpose (no torch / transformers / numpy): the evaluation package imports these
readers and must start fast. Every rule that rejects, repairs or skips a line is listed in
``docs/data.md``; nothing is dropped without being counted in a :class:`LoadReport`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

from edmem.constants import NIL_ENTITY
from edmem.data.jsonio import iter_jsonl, read_json
from edmem.errors import DataError

logger = logging.getLogger(__name__)

LINK_FIELDS = ("link_offset", "link_length", "link_target")
MAX_REPORTED_LINES = 5


class Mention(NamedTuple):
    """A character span of the question/passage and the entity id it links to."""

    offset: int
    length: int
    target: int

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True)
class ELExample:
    """One question of an EL / open-QA file (validated; ``line`` is the 1-based source line)."""

    id: str
    question: str
    answers: list[str]
    mentions: list[Mention]
    answer_entities: list[tuple[int, str]] | None
    line: int


@dataclass
class LoadReport:
    """What a loader did with each line: kept, repaired (kept after a fix) or skipped, with reasons.

    ``repaired`` and ``skipped`` map a reason to its count; ``lines`` keeps the first few line
    numbers per reason so a user can look at them.
    """

    path: str
    kept: int = 0
    repaired: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    lines: dict[str, list[int]] = field(default_factory=dict)

    def _note(self, table: dict[str, int], reason: str, line: int) -> None:
        table[reason] = table.get(reason, 0) + 1
        seen = self.lines.setdefault(reason, [])
        if len(seen) < MAX_REPORTED_LINES:
            seen.append(line)

    def repair(self, reason: str, line: int) -> None:
        self._note(self.repaired, reason, line)

    def skip(self, reason: str, line: int) -> None:
        self._note(self.skipped, reason, line)

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    @property
    def n_repaired_lines(self) -> int:
        """Number of repairs (one line can count under several reasons)."""
        return sum(self.repaired.values())

    def summary(self) -> str:
        parts = [f"{self.path}: kept {self.kept}"]
        for title, table in (("repaired", self.repaired), ("skipped", self.skipped)):
            for reason, count in sorted(table.items()):
                first = ", ".join(map(str, self.lines.get(reason, [])))
                parts.append(f"{title} {count} ({reason}; first lines {first})")
        return "; ".join(parts)

    def log(self, log: logging.Logger = logger) -> None:
        level = logging.WARNING if (self.skipped or self.repaired) else logging.INFO
        log.log(level, self.summary())


def el_split_path(data_dir: str | Path, task: str, datafile_prefix: str, split: str) -> Path:
    """``<data_dir>/<task>/<datafile_prefix><task>-<split>.jsonl`` (the original's path rule)."""
    return Path(data_dir) / task / f"{datafile_prefix}{task}-{split}.jsonl"


EntityCheck = Callable[[int], bool]


def entity_check(entity_vocab_size: int | None = None,
                 is_entity: EntityCheck | None = None) -> EntityCheck | None:
    """Combine a memory size and/or a membership predicate into one id check (None = no check)."""
    if entity_vocab_size is None and is_entity is None:
        return None

    def check(entity_id: int) -> bool:
        if entity_vocab_size is not None and not 0 <= entity_id < entity_vocab_size:
            return False
        return is_entity is None or bool(is_entity(entity_id))

    return check


def _int_value(value: Any) -> int | None:
    """An int from an int or a decimal string (link_target is stored as strings); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def parse_mentions(obj: dict[str, Any], text: str, path: Path | str, line: int,
                   check: EntityCheck | None, report: LoadReport,
                   fields: tuple[str, str, str] = LINK_FIELDS) -> list[Mention]:
    """Validate the three parallel link lists of ``obj`` and return sorted, disjoint mentions.

    Errors: partial/mistyped/unequal lists, spans outside ``text``, NIL or out-of-memory targets.
    Repairs (counted in ``report``): unsorted spans are sorted, an exact duplicate span keeps its
    first occurrence, a span overlapping an earlier kept span is dropped (fixes docs/quirks.md Q13, where
    the original silently lost every later mention).
    """
    present = [name for name in fields if name in obj]
    if not present:
        return []
    if len(present) != len(fields):
        missing = next(name for name in fields if name not in obj)
        raise DataError(f"'{missing}' is missing while {present} are present", path, line, missing)
    lists = [obj[name] for name in fields]
    for name, value in zip(fields, lists):
        if not isinstance(value, list):
            raise DataError(f"expected a list, got {type(value).__name__}", path, line, name)
    if len({len(value) for value in lists}) != 1:
        sizes = ", ".join(f"{name}={len(value)}" for name, value in zip(fields, lists))
        raise DataError(f"link lists have different lengths ({sizes})", path, line, fields[0])
    mentions = []
    for k, (off, length, target) in enumerate(zip(*lists)):
        values = []
        for name, raw in zip(fields, (off, length, target)):
            value = _int_value(raw) if name == fields[2] else (
                raw if isinstance(raw, int) and not isinstance(raw, bool) else None)
            if value is None:
                raise DataError(f"entry {k} is {raw!r}, expected an integer", path, line, name)
            values.append(value)
        off, length, target = values
        if off < 0 or length <= 0 or off + length > len(text):
            raise DataError(f"span {k} [{off}, {off + length}) lies outside the text "
                            f"(length {len(text)})", path, line, fields[0])
        if target <= NIL_ENTITY:
            raise DataError(f"entry {k} links to {target}: the NIL entity 0 or a negative id",
                            path, line, fields[2])
        if check is not None and not check(target):
            raise DataError(f"entry {k}: entity id {target} is not in the entity memory",
                            path, line, fields[2])
        mentions.append(Mention(off, length, target))
    return _repair_spans(mentions, line, report)


def _repair_spans(mentions: list[Mention], line: int, report: LoadReport) -> list[Mention]:
    ordered = sorted(mentions, key=lambda m: (m.offset, -m.length))  # stable: first listed wins
    if ordered != mentions:
        report.repair("unsorted_spans", line)
    kept: list[Mention] = []
    for mention in ordered:
        if kept and (mention.offset, mention.length) == (kept[-1].offset, kept[-1].length):
            report.repair("duplicate_span", line)
        elif kept and mention.offset < kept[-1].end:
            report.repair("overlapping_span", line)
        else:
            kept.append(mention)
    return kept


def _answer_entities(obj: dict[str, Any], path: Path, line: int,
                     check: EntityCheck | None) -> list[tuple[int, str]] | None:
    raw = obj.get("answer_entity")
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise DataError(f"expected a list of [id, name], got {type(raw).__name__}",
                        path, line, "answer_entity")
    result = []
    for k, entry in enumerate(raw):
        ok = (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], str))
        entity_id = _int_value(entry[0]) if ok else None
        if entity_id is None:
            raise DataError(f"entry {k} is {entry!r}, expected [entity_id, name]",
                            path, line, "answer_entity")
        if entity_id <= NIL_ENTITY or (check is not None and not check(entity_id)):
            raise DataError(f"entry {k}: entity id {entity_id} is not in the entity memory",
                            path, line, "answer_entity")
        result.append((entity_id, entry[1]))
    return result or None


def _string_field(obj: dict[str, Any], name: str, path: Path, line: int) -> str:
    if name not in obj:
        raise DataError("missing field", path, line, name)
    value = obj[name]
    if name == "id" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # numeric ids are accepted; predictions are keyed by the string
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"expected a non-empty string, got {value!r}", path, line, name)
    return value


def load_el_examples(path: str | Path, *, is_training: bool,
                     entity_vocab_size: int | None = None,
                     is_entity: EntityCheck | None = None,
                     log: logging.Logger | None = logger) -> tuple[list[ELExample], LoadReport]:
    """Read and validate one EL / open-QA jsonl split.

    ``is_training``: lines without a (non-empty) ``answer_entity`` are skipped and counted, as
    the EL loss needs a gold answer entity. ``entity_vocab_size`` / ``is_entity`` reject entity
    ids that do not fit the memory. Raises :class:`DataError` (file, line, field) on bad data.
    """
    path = Path(path)
    check = entity_check(entity_vocab_size, is_entity)
    report = LoadReport(str(path))
    examples: list[ELExample] = []
    first_line: dict[str, int] = {}
    for line, obj in iter_jsonl(path):
        qid = _string_field(obj, "id", path, line)
        question = _string_field(obj, "question", path, line)
        answers = obj.get("answer")
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise DataError(f"expected a list of strings, got {answers!r}", path, line, "answer")
        if qid in first_line:
            raise DataError(f"duplicate id {qid!r} (first seen on line {first_line[qid]})",
                            path, line, "id")
        first_line[qid] = line
        mentions = parse_mentions(obj, question, path, line, check, report)
        answer_entities = _answer_entities(obj, path, line, check)
        if is_training and answer_entities is None:
            report.skip("no_answer_entity", line)
            continue
        examples.append(ELExample(qid, question, list(answers), mentions, answer_entities, line))
        report.kept += 1
    if log is not None:
        report.log(log)
    return examples, report


def load_el_split(data_dir: str | Path, task: str, datafile_prefix: str, split: str,
                  **kwargs: Any) -> tuple[list[ELExample], LoadReport]:
    """:func:`load_el_examples` on the original path; ``is_training`` defaults to split == train."""
    kwargs.setdefault("is_training", split == "train")
    return load_el_examples(el_split_path(data_dir, task, datafile_prefix, split), **kwargs)


class AnswerLink(NamedTuple):
    """One SLING-linked answer string: Wikidata QID, entity name, entity id (memory row)."""

    wikidata_id: str
    name: str
    entity_id: int


def load_answer_links(path: str | Path) -> dict[str, dict[str, AnswerLink] | None]:
    """SLING file ``{id: null | {answer: [qid, name, id_str]}}``; None marks a non-linkable question."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"expected a JSON object keyed by question id, got {type(data).__name__}",
                        path)
    result: dict[str, dict[str, AnswerLink] | None] = {}
    for qid, links in data.items():
        if links is None:
            result[qid] = None
            continue
        if not isinstance(links, dict):
            raise DataError(f"question {qid!r}: expected null or an object", path, field=qid)
        parsed = {}
        for answer, value in links.items():
            entity_id = (_int_value(value[2]) if isinstance(value, list) and len(value) == 3
                         else None)
            if entity_id is None or not isinstance(value[1], str):
                raise DataError(f"question {qid!r}, answer {answer!r}: expected "
                                f"[wikidata_id, name, entity_id], got {value!r}", path, field=qid)
            parsed[answer] = AnswerLink(str(value[0]), value[1], entity_id)
        result[qid] = parsed
    return result


def answer_entities_from_links(links: dict[str, AnswerLink] | None) -> list[tuple[int, str]] | None:
    """The EL files' ``answer_entity`` derived from a SLING entry (file order, duplicates kept)."""
    if not links:
        return None
    return [(link.entity_id, link.name) for link in links.values()]


def iter_examples_by_id(examples: Iterable[ELExample]) -> dict[str, ELExample]:
    """Index examples by id (ids are unique per split; the loader enforces it)."""
    return {example.id: example for example in examples}
