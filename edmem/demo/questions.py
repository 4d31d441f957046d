"""Entity-linking question sets (train / dev / test) in the original EL jsonl format, plus SLING files.

One line (extra fields ``relation``, ``subject_entity``, ``group`` and ``frame`` are ignored by
the original reader; ``group``/``frame`` say which held-out group the question belongs to and
which question frame of edmem.demo.phrasing wrote it)::

    {"id": "12", "question": "what country is springfield, illinois in?",
     "answer": ["United States", "United States of America"],
     "link_offset": [16, 29], "link_length": [11, 8], "link_target": ["1073", "276"],
     "surface_name": ["springfield", "illinois"],
     "entity_name": ["Springfield, Illinois", "Illinois"],
     "answer_entity": [[253, "United States"]],
     "relation": "city_country", "subject_entity": [1073, "Springfield, Illinois"],
     "group": "heldout_fact/seen_phrasing", "frame": "city_country/0"}

**Split guarantee.** Facts are grouped by their *unordered entity pair* {subject, object}: a city's
country, the same city as its country's capital and the country's capital fact form one group.
Whole groups go to one split, so a test fact's pair is never the (subject, answer) of a train or
dev question, in either direction. Context qualifiers ("springfield, *illinois*") obey the same
rule: a train/dev question may only mention a qualifier whose pair with the subject is not a test
fact. :func:`check_split_guarantee` asserts this: no train/dev question *contains* (as mentions or
answer) both entities of a test question's fact. Every fact, test facts included, is stated in the
pretraining corpus. A subject may appear in train with another relation (Lyon's country in train,
nothing else about Lyon is asked in test unless it is a different pair).
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from edmem.demo.corpus import Slot, render
from edmem.demo.knowledge_base import Fact, KnowledgeBase, qualifier_of
from edmem.demo.phrasing import RELATION_FRAMES, question_template, split_frames
from edmem.errors import DataError

SPLITS = ("train", "dev", "test")

# The relations asked about; their phrasings come from edmem.demo.phrasing (frames, lexicon).
QUESTION_RELATIONS: tuple[str, ...] = tuple(RELATION_FRAMES)
# Question groups (the ``group`` field): which facts x which phrasings (docs/demo.md, "Splits").
# Train holds only seen_fact/seen_phrasing; dev and test hold the three held-out groups.
SEEN = "seen_fact/seen_phrasing"
HELDOUT_FACT = "heldout_fact/seen_phrasing"
HELDOUT_PHRASING = "seen_fact/heldout_phrasing"
HELDOUT_BOTH = "heldout_fact/heldout_phrasing"
EVAL_GROUPS: tuple[str, ...] = (HELDOUT_FACT, HELDOUT_PHRASING, HELDOUT_BOTH)
# Questions whose answer is a number, not an entity: "non-linkable" like part of WQ dev/test.
UNLINKABLE_TEMPLATES = ("what is the population of {s}?", "how many people live in {s}?")
UNLINKABLE_RELATION = "city_population"
# A bare ambiguous city name in a question refers to its homonym that is this many times larger
# than all others ("what country is paris in?" -> Paris, France), like a Wikipedia primary topic.
PRIMARY_TOPIC_RATIO = 5


@dataclass
class QuestionSets:
    """The three splits (lists of EL-jsonl dicts) and what was skipped, with reasons."""

    splits: dict[str, list[dict]]
    fact_split: dict[Fact, str]
    skipped: Counter = field(default_factory=Counter)

    def sling(self, split: str) -> dict[str, dict | None]:
        """SLING answer-link object: ``{id: {answer_string: [item_id, name, "id"]} or None}``."""
        return {q["id"]: q.get("_sling") for q in self.splits[split]}


def pair_key(fact: Fact) -> frozenset[int]:
    return frozenset((fact.subject, fact.object))


def split_facts(facts: Sequence[Fact], *, seed: int,
                fractions: tuple[float, float, float]) -> dict[Fact, str]:
    """Assign whole {subject, object} groups to splits; test and dev are filled first so their
    sizes follow the fractions (counted in facts), train takes the rest."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    groups: dict[frozenset[int], list[Fact]] = defaultdict(list)
    for f in facts:
        groups[pair_key(f)].append(f)
    keys = sorted(groups, key=lambda k: sorted(k))
    random.Random(f"split-{seed}").shuffle(keys)
    total = len(facts)
    want_test, want_dev = round(fractions[2] * total), round(fractions[1] * total)
    out: dict[Fact, str] = {}
    n_test = n_dev = 0
    for k in keys:
        if n_test < want_test:
            split, n_test = "test", n_test + len(groups[k])
        elif n_dev < want_dev:
            split, n_dev = "dev", n_dev + len(groups[k])
        else:
            split = "train"
        for f in groups[k]:
            out[f] = split
    return out


def _answer_strings(kb: KnowledgeBase, entity_id: int) -> list[str]:
    e = kb.entity(entity_id)
    return list(dict.fromkeys([e.name, e.surface, *e.aliases]))


def _subject_phrase(kb: KnowledgeBase, fact: Fact, rng: random.Random, alias_rate: float,
                    forbidden_pairs: set[frozenset[int]]) -> tuple[str, dict[str, Slot]] | None:
    """``{s}`` or ``{s}, {s_q}`` such that the question has exactly one answer, or None.

    Homonyms of the subject that have the same relation must either share the answer or be told
    apart by the qualifier (US state, else country) — never the answer itself, and never a
    qualifier whose pair with the subject is in ``forbidden_pairs`` (test facts, for train/dev).
    """
    e = kb.entity(fact.subject)
    if e.aliases and rng.random() < alias_rate:
        alias = e.aliases[rng.randrange(len(e.aliases))]
        return "{s}", {"s": Slot(alias.lower(), e.id, _article(kb, e.id, alias))}
    slots = {"s": Slot(e.surface.lower(), e.id, e.article)}
    rivals = [h for h in kb.homonyms(e.id)
              if h != e.id and kb.object_of(h, fact.relation) not in (None, fact.object)]
    if not rivals or _is_primary_topic(kb, e.id, rivals):
        return "{s}", slots
    qual = qualifier_of(kb, e.id)
    if qual is None or qual[0] == fact.relation or frozenset((e.id, qual[1])) in forbidden_pairs:
        return None
    if any(qualifier_of(kb, h) == qual for h in rivals):
        return None
    q = kb.entity(qual[1])
    slots["s_q"] = Slot(q.surface.lower(), q.id, q.article)
    return "{s}, {s_q}", slots


def _is_primary_topic(kb: KnowledgeBase, entity_id: int, rivals: Sequence[int]) -> bool:
    """Whether a bare name means this entity the way "Paris" means the French capital: it has at
    least PRIMARY_TOPIC_RATIO times the population of every rival homonym."""
    pop = kb.entity(entity_id).population or 0
    return all(pop >= PRIMARY_TOPIC_RATIO * (kb.entity(h).population or 0) for h in rivals) and pop > 0


def _article(kb: KnowledgeBase, entity_id: int, surface: str) -> str:
    from edmem.demo.knowledge_base import article_for
    return article_for(kb.entity(entity_id), surface)


def _question_row(kb: KnowledgeBase, template: str, subject_text: str, slots: Mapping[str, Slot],
                  relation: str, subject: int, answer_id: int | None,
                  answer: list[str], group: str | None = None, frame: str | None = None) -> dict:
    r = render(template.replace("{s}", subject_text), slots, transform=str.lower)
    row: dict = {
        "id": "",
        "question": r.text,
        "answer": answer,
        "link_offset": list(r.offsets),
        "link_length": list(r.lengths),
        "link_target": [str(t) for t in r.targets],
        "surface_name": list(r.surfaces),
        "entity_name": [kb.entity(t).name for t in r.targets],
    }
    if answer_id is not None:
        a = kb.entity(answer_id)
        row["answer_entity"] = [[a.id, a.name]]
        row["_sling"] = {a.name: [a.item_id, a.name, str(a.id)]}
    else:
        row["_sling"] = None
    row["relation"] = relation
    row["subject_entity"] = [subject, kb.entity(subject).name]
    if group is not None:
        row["group"] = group
        row["frame"] = frame
    return row


def build_questions(kb: KnowledgeBase, *, seed: int,
                    split_fractions: tuple[float, float, float] = (0.65, 0.10, 0.25),
                    train_questions_per_fact: int = 2, eval_questions_per_fact: int = 1,
                    max_facts_per_relation: int | None = None, alias_rate: float = 0.1,
                    unlinkable_fraction: float = 0.05,
                    phrasing_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> QuestionSets:
    """Generate the three EL splits from the KB (see the module docstring for the split rule).

    Facts *and* question frames (edmem.demo.phrasing) are split. Train asks train facts in train
    frames. Dev and test each hold three groups (the row's ``group``): their own facts in train
    frames (held-out facts), as many train facts in their own frames (held-out phrasings), and
    their own facts in their own frames (both held out).

    ``max_facts_per_relation`` caps how many facts of each relation are asked about (a
    deterministic sample), which balances relations and scales the question count.
    ``unlinkable_fraction`` adds that share of population questions (no answer entity, SLING null)
    to dev and test, as WebQuestions dev/test contain non-linkable questions.
    """
    rng = random.Random(f"questions-{seed}")
    phrasing = split_frames(seed=seed, fractions=phrasing_fractions)
    facts = [f for f in kb.facts if f.relation in QUESTION_RELATIONS]
    if max_facts_per_relation is not None:
        by_rel: dict[str, list[Fact]] = defaultdict(list)
        for f in facts:
            by_rel[f.relation].append(f)
        facts = []
        for rel in QUESTION_RELATIONS:
            pool = by_rel.get(rel, [])
            facts += pool if len(pool) <= max_facts_per_relation else \
                sorted(rng.sample(pool, max_facts_per_relation), key=lambda f: f.subject)
    fact_split = split_facts(facts, seed=seed, fractions=split_fractions)
    test_pairs = {pair_key(f) for f, s in fact_split.items() if s == "test"}
    dev_pairs = {pair_key(f) for f, s in fact_split.items() if s == "dev"}
    forbidden = {"train": test_pairs | dev_pairs, "dev": test_pairs, "test": set()}

    splits: dict[str, list[dict]] = {s: [] for s in SPLITS}
    skipped: Counter = Counter()

    def ask(fact: Fact, split: str, frame_split: str, group: str, n: int) -> None:
        frames = list(phrasing.frames[frame_split][fact.relation])
        rng.shuffle(frames)
        for frame in (frames * n)[:n]:
            phrase = _subject_phrase(kb, fact, rng, alias_rate, forbidden[split])
            if phrase is None:
                skipped[f"{fact.relation}: ambiguous subject, no usable qualifier"] += 1
                continue
            template, keep_article = question_template(frame, rng, phrasing.prefixes[frame_split],
                                                       phrasing.suffixes[frame_split])
            slots = dict(phrase[1])
            if not keep_article:
                slots["s"] = Slot(slots["s"].surface, slots["s"].target, "")
            splits[split].append(_question_row(kb, template, phrase[0], slots, fact.relation, fact.subject,
                                               fact.object, _answer_strings(kb, fact.object),
                                               group=group, frame=frame.key))

    train_facts = [f for f in facts if fact_split[f] == "train"]
    for fact in facts:
        split = fact_split[fact]
        if split == "train":
            ask(fact, "train", "train", SEEN, train_questions_per_fact)
        else:
            ask(fact, split, "train", HELDOUT_FACT, eval_questions_per_fact)
            ask(fact, split, split, HELDOUT_BOTH, eval_questions_per_fact)
    for split in ("dev", "test"):
        # Seen facts in held-out frames: as many facts as the split has, drawn from train.
        n_facts = sum(fact_split[f] == split for f in facts)
        probe_rng = random.Random(f"seen-fact-probes-{seed}-{split}")
        for fact in sorted(probe_rng.sample(train_facts, min(n_facts, len(train_facts))),
                           key=facts.index):
            ask(fact, split, split, HELDOUT_PHRASING, eval_questions_per_fact)

    if unlinkable_fraction > 0:
        cities = [e for e in kb.entities if e.type == "city" and e.population]
        rng.shuffle(cities)
        pool = iter(cities)
        for split in ("dev", "test"):
            k = round(unlinkable_fraction * len(splits[split]) / max(1e-9, 1 - unlinkable_fraction))
            made = 0
            for e in pool:
                if made >= k:
                    break
                slots = {"s": Slot(e.surface.lower(), e.id, e.article)}
                text = "{s}"
                if len(kb.homonyms(e.id)) > 1:
                    # Qualify ambiguous names, but never with a qualifier that is a test fact's pair
                    # (dev) -- the same rule as for linkable questions.
                    qual = qualifier_of(kb, e.id)
                    if qual is None or frozenset((e.id, qual[1])) in forbidden[split]:
                        continue
                    q = kb.entity(qual[1])
                    text, slots["s_q"] = "{s}, {s_q}", Slot(q.surface.lower(), q.id, q.article)
                template = UNLINKABLE_TEMPLATES[rng.randrange(len(UNLINKABLE_TEMPLATES))]
                splits[split].append(_question_row(kb, template, text, slots, UNLINKABLE_RELATION, e.id,
                                                   None, [f"{e.population:,}", str(e.population)],
                                                   group=UNLINKABLE_RELATION, frame=None))
                made += 1

    next_id = 0
    for split in SPLITS:
        rng.shuffle(splits[split])
        for row in splits[split]:
            row["id"] = str(next_id)
            next_id += 1
    return QuestionSets(splits=splits, fact_split=fact_split, skipped=skipped)


def question_entities(row: Mapping) -> set[int]:
    """All entity ids a question exposes: its mentions and its answer entities."""
    ids = {int(t) for t in row["link_target"]}
    ids |= {int(a[0]) for a in row.get("answer_entity", ())}
    return ids


def check_split_guarantee(splits: Mapping[str, Sequence[Mapping]]) -> None:
    """Raise DataError if a dev/test question's {subject, answer} pair is exposed by an earlier split.

    Earlier = train for dev; train and dev for test. "Exposed" = both entities occur in one question
    (as mentions or as the answer), which covers the same fact asked again, its inverse, and a
    qualifier that would give the answer away.
    """
    seen: list[set[int]] = []
    for split in SPLITS:
        rows = splits.get(split, ())
        if split != "train":
            index: dict[int, list[set[int]]] = defaultdict(list)
            for ents in seen:
                for e in ents:
                    index[e].append(ents)
            for row in rows:
                if "answer_entity" not in row or row.get("group") == HELDOUT_PHRASING:
                    continue  # seen-fact probes ask train facts on purpose (held-out phrasing only)
                s = int(row["subject_entity"][0])
                for a in row["answer_entity"]:
                    if any(int(a[0]) in ents for ents in index.get(s, ())):
                        raise DataError(f"{split} question {row['id']} asks a fact ({s}, {row['relation']},"
                                        f" {a[0]}) that an earlier split exposes", field="answer_entity")
        seen += [question_entities(r) for r in rows]


def check_phrasing_split(splits: Mapping[str, Sequence[Mapping]]) -> None:
    """Raise DataError if a held-out-phrasing question of dev/test uses a frame of an earlier
    split (train for dev; train and dev for test), or if its text occurs in train."""
    earlier_frames: set[str] = set()
    earlier_texts: set[str] = set()
    for split in SPLITS:
        rows = splits.get(split, ())
        if split != "train":
            for row in rows:
                if row.get("group") not in (HELDOUT_PHRASING, HELDOUT_BOTH):
                    continue
                if row.get("frame") in earlier_frames or row["question"] in earlier_texts:
                    raise DataError(f"{split} question {row['id']} ({row['question']!r}) uses the frame "
                                    f"{row.get('frame')} of an earlier split", field="frame")
        earlier_frames |= {str(r["frame"]) for r in rows if r.get("frame")}
        if split == "train":
            earlier_texts |= {r["question"] for r in rows}


def public_row(row: Mapping) -> dict:
    """The jsonl line: the row without private keys (those starting with '_')."""
    return {k: v for k, v in row.items() if not k.startswith("_")}


def most_frequent_answer_baseline(train_questions: Iterable[Mapping],
                                  test_questions: Iterable[Mapping]) -> dict:
    """Predict, for each test question, the answer entity most frequent in train for its relation.

    Why: a relation like ``country_continent`` has few possible answers, so a model that ignores
    the subject can still score; this number is the floor the demo's model has to beat. Ties go to
    the smaller entity id; a relation unseen in train falls back to the overall most frequent answer.
    Only linkable test questions (with ``answer_entity``) are scored.

    Returns ``{"accuracy", "correct", "total", "per_relation": {rel: {"answer": [id, name],
    "accuracy", "correct", "total"}}, "predictions": {id: [name, [id]]}}`` — predictions in the
    original format.
    """
    by_rel: dict[str, Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    names: dict[int, str] = {}
    for q in train_questions:
        for a in {int(x[0]): x[1] for x in q.get("answer_entity", ())}.items():
            by_rel[q.get("relation", "")][a[0]] += 1
            overall[a[0]] += 1
            names[a[0]] = a[1]

    def top(counter: Counter) -> int | None:
        return min(counter, key=lambda k: (-counter[k], k)) if counter else None

    fallback = top(overall)
    predictions: dict[str, list] = {}
    per_rel: dict[str, dict] = {}
    correct = total = 0
    for q in test_questions:
        if "answer_entity" not in q:
            continue
        rel = q.get("relation", "")
        guess = top(by_rel[rel]) if by_rel.get(rel) else fallback
        gold = {int(a[0]) for a in q["answer_entity"]}
        hit = guess is not None and guess in gold
        stats = per_rel.setdefault(rel, {"answer": [guess, names.get(guess)] if guess is not None else None,
                                         "correct": 0, "total": 0})
        stats["correct"] += int(hit)
        stats["total"] += 1
        correct += int(hit)
        total += 1
        predictions[str(q["id"])] = [names.get(guess, ""), [guess] if guess is not None else []]
    for stats in per_rel.values():
        stats["accuracy"] = stats["correct"] / stats["total"] if stats["total"] else 0.0
    return {"accuracy": correct / total if total else 0.0, "correct": correct, "total": total,
            "per_relation": dict(sorted(per_rel.items())), "predictions": predictions}


def write_split(rows: Iterable[Mapping], jsonl_path: str | Path, sling_path: str | Path) -> int:
    """Write one split's EL jsonl and its SLING file; return the number of questions."""
    rows = list(rows)
    with Path(jsonl_path).open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(public_row(row), ensure_ascii=False) + "\n")
    sling = {row["id"]: row.get("_sling") for row in rows}
    with Path(sling_path).open("w", encoding="utf-8", newline="\n") as handle:
        json.dump(sling, handle, ensure_ascii=False, indent=4)
        handle.write("\n")
    return len(rows)
