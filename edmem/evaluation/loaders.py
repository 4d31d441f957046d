"""Readers for the files the evaluation scripts take: gold answers, predictions, SLING answer links
and the entity-name vocabulary. One reader per format, each validating what the metrics rely on
and raising :class:`edmem.errors.DataError` (file, line, field) instead of crashing later.

``echo`` callbacks reproduce the original scripts' ``Read ...`` / ``Load ...`` lines; the in-process
API passes ``None`` to stay quiet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from edmem.data.jsonio import iter_jsonl, read_json
from edmem.errors import DataError
from edmem.evaluation.normalize import vocabulary_key

Echo = Callable[[str], None] | None
MAX_IDS_SHOWN = 5


@dataclass(frozen=True)
class GoldRecord:
    """One gold question. ``answer_entities`` is None for a non-linkable question (no
    ``answer_entity`` field, or null), else the SLING-linked ``(entity id, name)`` pairs."""

    id: str
    answers: list[str] | str | None
    answer_entities: list[tuple[int, str]] | None
    line: int | None = None

    @property
    def linkable(self) -> bool:
        return self.answer_entities is not None

    @property
    def entity_ids(self) -> list[int]:
        return [entity_id for entity_id, _ in self.answer_entities or []]


@dataclass
class GoldSet:
    """Gold questions keyed by id, in file order."""

    path: str
    records: dict[str, GoldRecord] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    def answers(self) -> dict[str, list[str] | str]:
        """``{id: answer}``, raising DataError at the first record without an ``answer`` field."""
        missing = [r for r in self.records.values() if r.answers is None]
        if missing:
            first = missing[0]
            raise DataError(f"question '{first.id}' has no answer list (exact match needs one; "
                            f"{len(missing)} question(s) lack it)", self.path, first.line, "answer")
        return {qid: record.answers for qid, record in self.records.items()}  # type: ignore[misc]

    def entity_ids(self) -> dict[str, list[int] | None]:
        """``{id: gold entity ids}`` with None for non-linkable questions."""
        return {qid: (r.entity_ids if r.linkable else None) for qid, r in self.records.items()}

    @classmethod
    def from_records(cls, records: Iterable[Any], path: str = "<memory>") -> "GoldSet":
        """Build from already-loaded questions, with the same validation as the file readers.

        Each record is a gold-file dict (``id``, ``answer``, optional ``answer_entity``) or an
        object with ``id``, ``answers`` and ``answer_entities`` attributes (``ELExample``), so the
        training loop can score its dev examples without writing them out.
        """
        gold = cls(path)
        for index, obj in enumerate(records):
            if not isinstance(obj, Mapping) and hasattr(obj, "id"):
                entities = getattr(obj, "answer_entities", None)
                # an example object with no answer entities (None or []) is non-linkable
                obj = {"id": obj.id, "answer": getattr(obj, "answers", None),
                       "answer_entity": [list(p) for p in entities] if entities else None}
            gold._add(obj, line=None, where=f"item {index}")
        return gold

    def _add(self, obj: Any, line: int | None, where: str | None = None) -> None:
        prefix = f"{where}: " if where else ""

        def fail(message: str, field_name: str | None = None) -> DataError:
            return DataError(prefix + message, self.path, line, field_name)

        if not isinstance(obj, Mapping):
            raise fail(f"expected a JSON object, got {type(obj).__name__}")
        qid = obj.get("id")
        if not isinstance(qid, str):
            raise fail("missing or not a string (question ids are strings, like the prediction "
                       "file's keys)", "id")
        if qid in self.records:
            raise fail(f"duplicate question id '{qid}'", "id")
        answers = obj.get("answer")
        if answers is not None and not (isinstance(answers, str) or (
                isinstance(answers, list) and all(isinstance(a, str) for a in answers))):
            raise fail("must be a string or a list of strings", "answer")
        entities = obj.get("answer_entity")
        parsed: list[tuple[int, str]] | None = None
        if entities is not None:
            if not isinstance(entities, list) or not entities:
                raise fail("must be a non-empty list of [entity_id, name] pairs (leave the field "
                           "out for a non-linkable question)", "answer_entity")
            parsed = []
            for pair in entities:
                if not (isinstance(pair, list) and len(pair) == 2 and _is_int(pair[0])
                        and isinstance(pair[1], str)):
                    raise fail(f"expected [int entity_id, str name] pairs, got {pair!r}",
                               "answer_entity")
                parsed.append((pair[0], pair[1]))
        self.records[qid] = GoldRecord(qid, answers, parsed, line)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load_gold(path: str | Path, echo: Echo = None) -> GoldSet:
    """Read a gold file: ``.jsonl`` (one question per line) or ``.json`` (a list of questions).

    Echoes ``Read n data from G`` (jsonl only) and ``Load n ground-truth data from G.``, where the
    path is printed as given, exactly like the original scripts.
    """
    shown = str(path)
    gold = GoldSet(shown)
    if shown.endswith(".jsonl"):
        for line_no, obj in iter_jsonl(path):
            gold._add(obj, line_no)
        if echo:
            echo(f"Read {len(gold)} data from {shown}")
    elif shown.endswith(".json"):
        data = read_json(path)
        if not isinstance(data, list):
            raise DataError(f"a .json gold file must hold a list of questions, got "
                            f"{type(data).__name__}", path)
        for index, obj in enumerate(data):
            gold._add(obj, None, where=f"item {index}")
    else:
        raise DataError("invalid file type of the gold file (expected .jsonl or .json)", path)
    if echo:
        echo(f"Load {len(gold)} ground-truth data from {shown}.")
    return gold


def load_predictions(path: str | Path, echo: Echo = None) -> dict[str, Any]:
    """Read ``predictions.json`` (a JSON object keyed by question id); echo ``Load n predictions``."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"a prediction file must hold a JSON object {{id: prediction}}, got "
                        f"{type(data).__name__}", path)
    if echo:
        echo(f"Load {len(data)} predictions from {path}.")
    return data


def _some(ids: list[str]) -> str:
    shown = ", ".join(repr(i) for i in ids[:MAX_IDS_SHOWN])
    return shown + (", ..." if len(ids) > MAX_IDS_SHOWN else "")


def check_same_ids(predictions: Mapping[str, Any], gold: GoldSet, pred_path: str | None = None) -> None:
    """The original asserts equal sizes and then fails on the first unknown id; we name the ids."""
    missing = [qid for qid in gold.records if qid not in predictions]
    extra = [qid for qid in predictions if qid not in gold.records]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} gold question(s) without a prediction ({_some(missing)})")
        if extra:
            parts.append(f"{len(extra)} prediction(s) for ids not in {gold.path} ({_some(extra)})")
        raise DataError("prediction ids do not match the gold file: " + "; ".join(parts), pred_path)


def load_answer_linkability(path: str | Path, question_ids: Iterable[str]) -> dict[str, bool]:
    """Read a SLING ``sling_invocab-*.json``; return ``{id: linkable}`` for ``question_ids``.

    A question is linkable iff its value is not null. Every question must be present.
    """
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"an answer-link file must hold a JSON object {{id: null | {{answer: "
                        f"[qid, name, entity_id]}}}}, got {type(data).__name__}", path)
    linkable: dict[str, bool] = {}
    missing: list[str] = []
    for qid in question_ids:
        if qid not in data:
            missing.append(qid)
            continue
        value = data[qid]
        if value is not None and not isinstance(value, dict):
            raise DataError(f"question '{qid}': expected null or an object, got "
                            f"{type(value).__name__}", path)
        linkable[qid] = value is not None
    if missing:
        raise DataError(f"{len(missing)} question(s) have no entry ({_some(missing)})", path)
    return linkable


def load_entity_vocab(path: str | Path) -> frozenset[str]:
    """Read the entity-name list (``entity_1m.json``) as the original's set of lowercased,
    parenthesis-stripped names, used only for the "valid entity name" statistics."""
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(f"an entity vocabulary must be a JSON list of names, got "
                        f"{type(data).__name__}", path)
    names = set()
    for index, name in enumerate(data):
        if not isinstance(name, str):
            raise DataError(f"entry {index} is not a string: {name!r}", path)
        names.add(vocabulary_key(name))
    return frozenset(names)
