"""Pretraining passages: every KB fact stated in several paraphrases, every entity mention linked.

Output format is the original pretraining passage format (docs/pretraining.md)::

    {"id": "geo-17", "text": "Springfield is a city in the state of Illinois.",
     "hyperlinks": {"link_offset": [0, 38], "link_length": [11, 8], "link_target": [1073, 276]}}

Why the care about ambiguity: the entity memory must learn to resolve a surface form ("Springfield")
from context. A sentence is only useful for that if its context *does* determine the entity, so a
mention whose bare surface would also fit a homonym that is related to the other entity of the
sentence is written with its qualifier ("Springfield, Illinois is located in the United States";
both are linked).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

from edmem.demo.knowledge_base import KnowledgeBase, article_for, qualifier_of

# Several paraphrases per relation with different word orders; {s} = subject, {o} = object.
CORPUS_TEMPLATES: dict[str, tuple[str, ...]] = {
    "city_country": (
        "{s} is a city in {o}.",
        "{s} is located in {o}.",
        "The city of {s} is in {o}.",
        "Located in {o}, {s} is one of the country's cities.",
        "One of the cities of {o} is {s}.",
        "{o}'s city of {s} is home to many people.",
    ),
    "city_state": (
        "{s} is a city in the state of {o}.",
        "{s} is located in {o}.",
        "The state of {o} is home to the city of {s}.",
        "Among the cities of {o} is {s}.",
        "Located in {o}, {s} is one of the state's cities.",
    ),
    "country_capital": (
        "The capital of {s} is {o}.",
        "{o} is the capital city of {s}.",
        "{s}'s capital is {o}.",
        "{s} has its seat of government in {o}.",
        "As the capital of {s}, {o} hosts its government.",
    ),
    "capital_country": (
        "{s} is the capital of {o}.",
        "{s} serves as the capital city of {o}.",
        "The city of {s} is the capital of {o}.",
        "{o} is governed from its capital, {s}.",
    ),
    "country_continent": (
        "{s} is a country in {o}.",
        "{s} is located in {o}.",
        "{s} lies on the continent of {o}.",
        "Among the countries of {o} is {s}.",
        "{o} is the continent where {s} lies.",
    ),
    "country_currency": (
        "The currency of {s} is the {o}.",
        "{s} uses the {o} as its currency.",
        "The {o} is the currency used in {s}.",
        "In {s}, people pay with the {o}.",
    ),
    "country_language": (
        "The main language of {s} is {o}.",
        "{o} is the principal language spoken in {s}.",
        "In {s}, people mainly speak {o}.",
        "{s}'s principal language is {o}.",
    ),
    "state_country": (
        "{s} is a state of {o}.",
        "{s} is one of the states of {o}.",
        "The state of {s} is part of {o}.",
    ),
}

# More statements per relation, in the words people use for it (the question lexicon of
# edmem.demo.phrasing: money, tongue, seat of government, part of the world, nation, province):
# drawn together with CORPUS_TEMPLATES when build_corpus(broad_templates=True). Declarative only,
# so no question frame (held out or not) occurs in the pretraining text.
BROAD_CORPUS_TEMPLATES: dict[str, tuple[str, ...]] = {
    "city_country": ("{s} is a city of the nation of {o}.", "People in {s} live in {o}.",
                     "The nation {s} belongs to is {o}."),
    "city_state": ("{s} lies in the province of {o}.", "People in {s} live in the U.S. state of {o}.",
                   "The state {s} belongs to is {o}."),
    "country_capital": ("The seat of government of {s} is {o}.", "{s} is governed from {o}.",
                        "{o} is the national capital of {s}."),
    "capital_country": ("{s} is the seat of government of {o}.", "The nation governed from {s} is {o}.",
                        "{o}'s capital city is {s}."),
    "country_continent": ("{s} is part of the world called {o}.", "The region of the world where {s} lies is {o}.",
                          "{s} belongs to the continent of {o}."),
    "country_currency": ("The money used in {s} is the {o}.", "People in {s} pay in cash with the {o}.",
                         "The official currency of {s} is called the {o}.", "{s}'s monetary unit is the {o}."),
    "country_language": ("People in {s} speak {o}.", "The tongue spoken in {s} is {o}.",
                         "{o} is the official language of {s}.", "Most people in {s} talk in {o}."),
    "state_country": ("{s} is a province of {o}.",),
}

# One descriptive sentence per entity (so every entity is mentioned even without facts).
DESCRIPTION_TEMPLATES: dict[str, tuple[str, ...]] = {
    "city": ("{s}, a city in {q}, has a population of {pop}.",
             "With {pop} inhabitants, {s} is a city in {q}."),
    "country": ("{s} is a country with a population of {pop}.",
                "About {pop} people live in the country of {s}."),
    "continent": ("{s} is one of the continents.",),
    "language": ("{s} is a language.",),
    "currency": ("The {s} is a currency.",),
    "us_state": (),
}


@dataclass(frozen=True)
class Slot:
    """A mention to place in a template: the text written, the linked entity, an optional article."""

    surface: str
    target: int
    article: str = ""


@dataclass(frozen=True)
class Rendered:
    text: str
    offsets: tuple[int, ...]
    lengths: tuple[int, ...]
    targets: tuple[int, ...]
    surfaces: tuple[str, ...]


_SLOT_RE = re.compile(r"\{(\w+)\}")


def render(template: str, slots: Mapping[str, Slot | str], *,
           transform: Callable[[str], str] = lambda t: t) -> Rendered:
    """Fill ``template`` and record the exact character span of every entity slot.

    ``slots`` values are :class:`Slot` (a linked mention) or plain strings (unlinked, e.g. numbers).
    ``transform`` is applied piece by piece (e.g. ``str.lower`` for questions) so that offsets stay
    exact even when a transform changes string lengths. A sentence-initial article is capitalised;
    ``'s`` after a surface ending in "s" becomes ``'``.
    """
    pieces: list[tuple[str, Slot | None]] = []
    pos = 0
    for m in _SLOT_RE.finditer(template):
        if m.start() > pos:
            pieces.append((template[pos:m.start()], None))
        value = slots[m.group(1)]
        if isinstance(value, Slot):
            if value.article:
                pieces.append((value.article + " ", None))
            pieces.append((value.surface, value))
        else:
            pieces.append((value, None))
        pos = m.end()
    if pos < len(template):
        pieces.append((template[pos:], None))

    text = ""
    offsets, lengths, targets, surfaces = [], [], [], []
    for i, (piece, slot) in enumerate(pieces):
        if slot is None and i > 0 and pieces[i - 1][1] is not None and piece.startswith("'s") \
                and pieces[i - 1][0].endswith("s"):
            piece = "'" + piece[2:]
        if not text and slot is None and piece[:1].islower():
            piece = piece[0].upper() + piece[1:]
        piece = transform(piece)
        if slot is not None:
            offsets.append(len(text))
            lengths.append(len(piece))
            targets.append(slot.target)
            surfaces.append(piece)
        text += piece
    return Rendered(text, tuple(offsets), tuple(lengths), tuple(targets), tuple(surfaces))


def related_index(kb: KnowledgeBase) -> dict[int, set[int]]:
    """entity id -> ids it shares any fact with (either direction)."""
    related: dict[int, set[int]] = {e.id: set() for e in kb.entities}
    for f in kb.facts:
        related[f.subject].add(f.object)
        related[f.object].add(f.subject)
    return related


def needs_qualifier(kb: KnowledgeBase, related: Mapping[int, set[int]], entity_id: int,
                    context_ids: Iterable[int]) -> bool:
    """True when a homonym of ``entity_id`` is related to an entity of the context, so the bare
    surface would not identify ``entity_id``."""
    ctx = set(context_ids)
    return any(h != entity_id and (related[h] & ctx or h in ctx) for h in kb.homonyms(entity_id))


def mention_slots(kb: KnowledgeBase, related: Mapping[int, set[int]], entity_id: int, other_id: int,
                  rng: random.Random, alias_rate: float, *, key: str,
                  transform_surface: Callable[[str], str] = lambda t: t) -> tuple[str, dict[str, Slot]]:
    """Template text for one entity mention (``{key}`` or ``{key}, {key_q}``) and its slots.

    Uses an alias with probability ``alias_rate`` (aliases are unique, so no qualifier is needed);
    otherwise the surface, qualified when context alone would not resolve it.
    """
    e = kb.entity(entity_id)
    if e.aliases and rng.random() < alias_rate:
        alias = e.aliases[rng.randrange(len(e.aliases))]
        return "{" + key + "}", {key: Slot(transform_surface(alias), e.id, article_for(e, alias))}
    slots = {key: Slot(transform_surface(e.surface), e.id, e.article)}
    if needs_qualifier(kb, related, entity_id, [other_id]):
        qual = qualifier_of(kb, entity_id)
        if qual is not None and qual[1] != other_id:
            q = kb.entity(qual[1])
            slots[key + "_q"] = Slot(transform_surface(q.surface), q.id, q.article)
            return "{" + key + "}, {" + key + "_q}", slots
    return "{" + key + "}", slots


def _passage_sentence(kb: KnowledgeBase, related, template: str, s: int, o: int,
                      rng: random.Random, alias_rate: float) -> Rendered:
    s_text, slots = mention_slots(kb, related, s, o, rng, alias_rate, key="s")
    o_text, o_slots = mention_slots(kb, related, o, s, rng, alias_rate, key="o")
    slots.update(o_slots)
    return render(template.replace("{s}", s_text).replace("{o}", o_text), slots)


def _description(kb: KnowledgeBase, entity_id: int, rng: random.Random) -> Rendered | None:
    e = kb.entity(entity_id)
    templates = DESCRIPTION_TEMPLATES.get(e.type, ())
    if not templates:
        return None
    template = templates[rng.randrange(len(templates))]
    slots: dict[str, Slot | str] = {"s": Slot(e.surface, e.id, e.article)}
    if "{pop}" in template:
        if not e.population:
            return None
        slots["pop"] = f"{e.population:,}"
    if "{q}" in template:
        qual = qualifier_of(kb, entity_id)
        if qual is None:
            return None
        q = kb.entity(qual[1])
        slots["q"] = Slot(q.surface, q.id, q.article)
    return render(template, slots)


def build_corpus(kb: KnowledgeBase, *, seed: int, paraphrases_per_fact: int = 3,
                 alias_rate: float = 0.1, sentences_per_passage: int = 1,
                 dev_fraction: float = 0.05,
                 dev_excluded_pairs: Iterable[frozenset[int]] = (),
                 broad_templates: bool = False) -> tuple[list[dict], list[dict]]:
    """Return ``(train_passages, dev_passages)``.

    Train holds ``paraphrases_per_fact`` distinct templates for *every* fact (so every question's
    fact is stated in pretraining) plus one description per entity. Dev holds, for a
    ``dev_fraction`` sample of facts, one more paraphrase with a template that fact did not use in
    train: held-out wording of known facts, for pretraining recall@k.

    ``broad_templates`` adds :data:`BROAD_CORPUS_TEMPLATES` to the pool the paraphrases are
    drawn from. ``dev_excluded_pairs`` ({subject, object} pairs, the EL test facts) never enter dev: the
    pretraining checkpoint is chosen on dev, so dev must not score the test facts.
    """
    excluded = set(dev_excluded_pairs)
    rng = random.Random(f"corpus-{seed}")
    related = related_index(kb)
    train: list[Rendered] = []
    dev: list[Rendered] = []
    for fact in kb.facts:
        templates = list(CORPUS_TEMPLATES[fact.relation])
        if broad_templates:
            templates += BROAD_CORPUS_TEMPLATES.get(fact.relation, ())
        rng.shuffle(templates)
        k = min(paraphrases_per_fact, len(templates))
        for template in templates[:k]:
            train.append(_passage_sentence(kb, related, template, fact.subject, fact.object, rng, alias_rate))
        if rng.random() < dev_fraction and k < len(templates) \
                and frozenset((fact.subject, fact.object)) not in excluded:
            dev.append(_passage_sentence(kb, related, templates[k], fact.subject, fact.object, rng, alias_rate))
    for e in kb.entities:
        d = _description(kb, e.id, rng)
        if d is not None:
            train.append(d)
    rng.shuffle(train)
    rng.shuffle(dev)
    return (_pack(train, sentences_per_passage, "geo"), _pack(dev, sentences_per_passage, "geo-dev"))


def _pack(sentences: list[Rendered], per_passage: int, prefix: str) -> list[dict]:
    """Join consecutive sentences into passages, shifting offsets by the text before each."""
    passages = []
    for start in range(0, len(sentences), max(1, per_passage)):
        text, offs, lens, tgts = "", [], [], []
        for r in sentences[start:start + max(1, per_passage)]:
            if text:
                text += " "
            offs += [len(text) + o for o in r.offsets]
            lens += list(r.lengths)
            tgts += list(r.targets)
            text += r.text
        passages.append({"id": f"{prefix}-{len(passages)}", "text": text,
                         "hyperlinks": {"link_offset": offs, "link_length": lens, "link_target": tgts}})
    return passages


def write_jsonl(rows: Iterable[dict], path: str | Path) -> int:
    """Write one JSON object per line (UTF-8, no ASCII escaping, '\\n' endings); return the count."""
    n = 0
    with Path(path).open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n
