"""The two input files of ``edmem memory``: new entities (``NEW.jsonl``) and passages (``TEXT.jsonl``).

Both are validated completely before anything is trained or written (docs/knowledge.md, "Bad
input"): a structural problem is one :class:`~edmem.errors.DataError` naming file, line and field;
a mention whose text is none of its entity's names is a counted warning (the passage is still
used: "the Big Apple" may be a fine mention the alias table just does not list).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection, Iterable, Mapping, Sequence

from edmem.data.formats import LoadReport
from edmem.data.jsonio import iter_jsonl
from edmem.errors import DataError
from edmem.pretraining.corpus import Passage, parse_passage

logger = logging.getLogger(__name__)

RESERVED_IDS = 10  # rows/ids 0-9 are reserved in every memory (edmem.data.entity_rows)
MAX_LOGGED_WARNINGS = 5


@dataclass(frozen=True)
class NewEntity:
    """One line of ``NEW.jsonl``: ``{"id": int, "name": str, "aliases": [str], "type": str?}``."""

    id: int
    name: str
    aliases: tuple[str, ...] = ()
    type: str | None = None

    def names(self) -> list[str]:
        return list(dict.fromkeys([self.name, *self.aliases]))


@dataclass
class PassageSet:
    """Validated passages plus what the checks counted. ``sha256`` hashes the file's bytes."""

    path: Path
    passages: list[Passage]
    sha256: str
    report: LoadReport
    name_mismatches: int = 0
    mismatch_examples: list[str] = field(default_factory=list)

    def linked_ids(self) -> list[int]:
        """Every entity id the passages link, in order of first appearance."""
        return list(dict.fromkeys(m.target for p in self.passages for m in p.mentions))

    def subject_ids(self) -> list[int]:
        """The entity of each passage's first mention (its subject in a statement such as "The
        currency of X is the Y."), in order of first appearance."""
        firsts = (min(p.mentions, key=lambda m: m.offset).target for p in self.passages if p.mentions)
        return list(dict.fromkeys(firsts))

    def statements(self) -> list[tuple[str, list[int]]]:
        """What fact overrides are built from: :func:`passage_statements` of the passages."""
        return passage_statements(self.passages)

    def summary(self) -> dict[str, object]:
        return {"path": str(self.path), "sha256": self.sha256, "passages": len(self.passages),
                "mentions": sum(len(p.mentions) for p in self.passages),
                "name_mismatches": self.name_mismatches, "name_mismatch_examples": self.mismatch_examples,
                "repaired": dict(self.report.repaired)}


def passage_statements(passages: Iterable[Passage]) -> list[tuple[str, list[int]]]:
    """(passage id, linked ids in text order) per passage (``edmem.inference.fact_overrides``:
    the first mention is the subject, the others its objects)."""
    return [(p.id, [m.target for m in sorted(p.mentions, key=lambda m: m.offset)]) for p in passages]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_new_entities(path: str | Path, existing: Callable[[int], bool]) -> list[NewEntity]:
    """Parse ``NEW.jsonl``; ``existing(id)`` says whether the model already has that id (an error:
    adding must never silently replace a row)."""
    path = Path(path)
    out: list[NewEntity] = []
    seen: dict[int, int] = {}
    for line, obj in iter_jsonl(path):
        entity_id, name = obj.get("id"), obj.get("name")
        if not _is_int(entity_id):
            raise DataError(f"expected an integer id, got {entity_id!r:.60}", path, line, "id")
        if entity_id < RESERVED_IDS:
            raise DataError(f"id {entity_id} is reserved (ids 0-{RESERVED_IDS - 1} are not entities)",
                            path, line, "id")
        if existing(entity_id):
            raise DataError(f"entity id {entity_id} is already in the model (use `edmem memory edit` "
                            "to change what its row says)", path, line, "id")
        if entity_id in seen:
            raise DataError(f"entity id {entity_id} appears twice (first on line {seen[entity_id]})",
                            path, line, "id")
        if not isinstance(name, str) or not name.strip():
            raise DataError(f"expected a non-empty string name, got {name!r:.60}", path, line, "name")
        aliases = obj.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
            raise DataError(f"expected a list of non-empty strings, got {aliases!r:.60}", path, line, "aliases")
        kind = obj.get("type")
        if kind is not None and not isinstance(kind, str):
            raise DataError(f"expected a string or null, got {kind!r:.60}", path, line, "type")
        seen[entity_id] = line
        out.append(NewEntity(entity_id, name, tuple(dict.fromkeys(aliases)), kind))
    if not out:
        raise DataError("no entities (the file is empty)", path)
    return out


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_passages(path: str | Path, known: Collection[int],
                  names: Mapping[int, Sequence[str]]) -> PassageSet:
    """Parse and check ``TEXT.jsonl`` (the pretraining passage format, docs/pretraining.md).

    ``known``: the ids a passage may link (the model's entities plus the new ones); any other id is
    an error. ``names``: id -> name and aliases; a mention whose text matches none of them
    (case-insensitively) is counted in ``name_mismatches`` and logged (first few).
    """
    path = Path(path)
    report = LoadReport(str(path))
    passages: list[Passage] = []
    mismatches: list[str] = []
    count = 0
    for line, obj in iter_jsonl(path):
        passage = parse_passage(obj, path, line, report)
        for k, mention in enumerate(passage.mentions):
            if mention.target not in known:
                raise DataError(f"mention {k} links entity id {mention.target}, which is neither in the "
                                "model nor among the new entities", path, line, "hyperlinks.link_target")
            surface = passage.text[mention.offset:mention.offset + mention.length]
            wanted = names.get(mention.target, ())
            if wanted and surface.strip().casefold() not in {n.casefold() for n in wanted}:
                count += 1
                if len(mismatches) < MAX_LOGGED_WARNINGS:
                    mismatches.append(f"line {line}: {surface!r} links {mention.target} "
                                      f"({wanted[0]!r})")
        report.kept += 1
        passages.append(passage)
    if not passages:
        raise DataError("no passages (the file is empty)", path)
    if count:
        logger.warning("%s: %d mention(s) whose text is not their entity's name or an alias "
                       "(used anyway); first: %s", path, count, "; ".join(mismatches))
    if report.repaired:
        logger.warning("%s", report.summary())
    return PassageSet(path, passages, file_sha256(path), report, count, mismatches)
