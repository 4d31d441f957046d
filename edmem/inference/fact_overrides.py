"""Fact overrides: facts given to ``edmem memory add / edit`` kept as explicit entries that
every predictor applies after the EL head (docs/knowledge.md, "Fact overrides").

Why: on the demo's models the answer to a question about X comes from the network's reading of
X's *name*, not from X's row (docs/knowledge.md, "Where the answers come from"). Re-fitting rows
cannot make a new or corrected fact the answer without moving the answer's row for every other
question too. An override states the fact where no training can blur it: **when a question
mentions subject S and the answer the model ranks first has type T, and (S, T) has an override
O, O becomes the answer.** The model's own ranking says which relation is asked (its top-1's
type: a currency question about Gabon is answered with a currency), the override says which
entity of that type is now true. **Not in the original**; it belongs to the memory-based family
of knowledge editors (a table beside an unchanged model, consulted per question). A model
directory without ``fact_overrides.json`` ranks exactly as before.

Entries come from passages: a passage's subject is its first mention ("The currency of X is the
Y." — X; for ``memory add``, the new entity it names), each other linked entity an object keyed
by its type. Limits (docs/knowledge.md): one
object per (subject, type) — a subject with two relations to the same type (born in / died in a
city) keeps the later fact for both; objects without a type give no override.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from edmem.data.jsonio import read_tagged_json
from edmem.runtime.atomic import atomic_write_text

#: File name in a model directory, and its format tag.
FACT_OVERRIDES = "fact_overrides.json"
FORMAT = "edmem-fact-overrides"


@dataclass(frozen=True)
class FactOverride:
    """(subject, answer type) -> object, and where it was stated (a passage id)."""

    subject: int
    answer_type: str
    object: int
    source: str = ""


@dataclass(frozen=True)
class Applied:
    """What an override did to one question: the entry, and the model's own top-1 it replaced."""

    override: FactOverride
    replaced: int


@dataclass
class OverrideUpdate:
    """What :meth:`FactOverrides.add_statements` did: entries set, and statements that gave none."""

    added: list[FactOverride]
    replaced: int = 0            # an entry for the same (subject, type) existed and was overwritten
    untyped_objects: int = 0     # the object has no type: no key for it
    conflicts: int = 0           # two passages of this call state different objects for one key

    def to_json(self) -> dict[str, Any]:
        return {"added": len(self.added), "replaced": self.replaced,
                "untyped_objects": self.untyped_objects, "conflicts": self.conflicts}


class FactOverrides:
    """The entries of a model directory, keyed by (subject id, answer type)."""

    def __init__(self, entries: Iterable[FactOverride] = ()):
        self.entries: dict[tuple[int, str], FactOverride] = {}
        for entry in entries:
            self.entries[(entry.subject, entry.answer_type)] = entry
        self._index()

    def _index(self) -> None:
        self._subjects = {subject for subject, _ in self.entries}

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self):
        return iter(self.entries.values())

    # ------------------------------------------------------------------ building
    def add_statements(self, statements: Iterable[tuple[str, Sequence[int]]],
                       type_of: Callable[[int], str | None],
                       is_subject: Callable[[int], bool] | None = None) -> OverrideUpdate:
        """Add entries from statements ``(passage id, linked ids in text order)``. A statement's
        subject is its first linked entity, or with ``is_subject`` the first one it accepts
        (``memory add``: a new entity, wherever the passage names it; statements without one
        are skipped); every other linked entity is an object keyed by its type. Within a
        statement the first object of a type wins, across statements the later one."""
        update = OverrideUpdate([])
        stated: dict[tuple[int, str], FactOverride] = {}
        for source, linked in statements:
            ids = list(dict.fromkeys(int(i) for i in linked))
            subject = next((i for i in ids if is_subject is None or is_subject(i)), None)
            if subject is None or len(ids) < 2:
                continue
            here: dict[str, int] = {}
            for obj in ids:
                if obj == subject:
                    continue
                kind = type_of(obj)
                if not kind:
                    update.untyped_objects += 1
                    continue
                if kind in here:
                    update.conflicts += 1
                    continue
                here[kind] = obj
                earlier = stated.get((subject, kind))
                if earlier is not None and earlier.object != obj:
                    update.conflicts += 1
                stated[(subject, kind)] = FactOverride(subject, kind, obj, str(source))
        for key, entry in stated.items():
            if key in self.entries and self.entries[key].object != entry.object:
                update.replaced += 1
            self.entries[key] = entry
            update.added.append(entry)
        self._index()
        return update

    def drop_entities(self, ids: Iterable[int]) -> int:
        """Remove every entry whose subject or object is one of ``ids`` (hidden entities);
        returns how many went."""
        gone = {int(i) for i in ids}
        keep = {k: e for k, e in self.entries.items() if e.subject not in gone and e.object not in gone}
        removed = len(self.entries) - len(keep)
        self.entries = keep
        self._index()
        return removed

    # ------------------------------------------------------------------ applying
    def lookup(self, subjects: Iterable[int], answer_type: str | None) -> FactOverride | None:
        """The entry for the first of ``subjects`` (a question's mentioned entities, in text
        order) that has one for ``answer_type``."""
        if not answer_type or not self._subjects:
            return None
        for subject in subjects:
            if subject in self._subjects:
                entry = self.entries.get((int(subject), answer_type))
                if entry is not None:
                    return entry
        return None

    def apply(self, ids: Sequence[int], scores: Sequence[float], subjects: Iterable[int],
              type_of: Callable[[int], str | None]) -> tuple[list[int], list[float], Applied | None]:
        """The model's ranking ``ids`` (best first) with its ``scores``, after the override for
        its top-1's type, if any: the object moves to rank 1 and takes the top score (it is
        inserted when it was not among the K); the rest keep their order and scores."""
        ids, scores = [int(i) for i in ids], [float(s) for s in scores]
        if not ids:
            return ids, scores, None
        entry = self.lookup(subjects, type_of(ids[0]))
        if entry is None or entry.object == ids[0]:
            return ids, scores, None
        replaced, top = ids[0], (scores[0] if scores else None)
        if entry.object in ids:
            at = ids.index(entry.object)
        else:            # keep K entries: the object displaces the last one
            at = len(ids) - 1
        del ids[at]
        if scores:
            del scores[at]
        return [entry.object, *ids], ([top, *scores] if top is not None else []), Applied(entry, replaced)

    # ------------------------------------------------------------------ files
    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": 1,
                "entries": [asdict(e) for e in sorted(self, key=lambda e: (e.subject, e.answer_type))]}

    def save(self, directory: str | Path) -> Path:
        return atomic_write_text(Path(directory) / FACT_OVERRIDES,
                                 json.dumps(self.to_json(), ensure_ascii=False, indent=1) + "\n")


def load_fact_overrides(directory: str | Path) -> FactOverrides | None:
    """The overrides saved in ``directory``, or None when it has none."""
    return read_tagged_json(Path(directory) / FACT_OVERRIDES, FORMAT, "fact overrides", _overrides_from_json)


def _overrides_from_json(data: dict) -> FactOverrides:
    entries = []
    for n, e in enumerate(data["entries"]):
        if not isinstance(e["subject"], int) or not isinstance(e["object"], int) \
                or not isinstance(e["answer_type"], str) or not e["answer_type"]:
            raise ValueError(f"entries[{n}]: subject/object must be integers and answer_type a string")
        entries.append(FactOverride(e["subject"], e["answer_type"], e["object"], str(e.get("source", ""))))
    return FactOverrides(entries)


def override_predictions(overrides: FactOverrides, topk: dict[str, list[int]], scores: dict[str, list[float]],
                         examples: Iterable[Any], type_of: Callable[[int], str | None]) -> int:
    """Apply ``overrides`` to ``edmem.inference.predict.Predictions``' ``topk``/``scores`` in place,
    by question id; a question's subjects are its mentions' linked entities (the EL file's
    targets). Returns how many predictions changed."""
    changed = 0
    for ex in examples:
        qid = str(ex.id)
        if qid not in topk:
            continue
        ids, new_scores, applied = overrides.apply(topk[qid], scores.get(qid, []),
                                                   [m.target for m in ex.mentions], type_of)
        if applied is not None:
            topk[qid] = ids
            if qid in scores:
                scores[qid] = new_scores
            changed += 1
    return changed
