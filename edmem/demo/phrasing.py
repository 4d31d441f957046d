"""Question paraphrase generator: a relation lexicon, question frames, fillers and light noise.

Why: a handful of fixed templates per relation teaches the model its own templates, not the
relations (docs/demo.md, "Phrasing"). People use other words for the relation (money, cash,
tongue, seat of government, part of the world), other question words (which, what kind of, name
the, tell me), possessives, keyword queries, politeness and filler, and drop the ``?``.

A **frame** is one sentence shape of a relation: its words and word order, with ``[a|b|...]``
alternatives (one is drawn; ``[|x]`` makes ``x`` optional) and ``<KEY>`` slots filled from the
relation's lexicon (:data:`LEXICON`). Alternatives inside one frame differ in a word or two; two
frames differ in their structure. :func:`split_frames` deals whole frames (and the filler
phrases) to train / dev / test, so a held-out question's shape never occurs in EL training
(docs/demo.md, "Held-out phrasings"). The relation lexicon itself is shared by every split: the
words for a relation are what the model must learn, the shape is what it must not depend on.

Everything is deterministic given a ``random.Random``; :func:`phrasing_counts` gives the sizes
that docs/demo.md quotes.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

# Relation words. N = the relation's noun, NS = its plural (questions asked in the plural, as
# people do: "what languages are spoken in ..."), WH = question words that fit before N.
_WH_ANY = ["what", "which", "what kind of", "what type of"]
_WH_PLACE = ["what", "which"]
LEXICON: dict[str, dict[str, list[str]]] = {
    "country_currency": {"N": ["currency", "money", "cash", "monetary unit", "legal tender",
                               "official currency", "national currency"],
                         "NS": ["currencies", "kinds of money", "types of currency"], "WH": _WH_ANY},
    "country_language": {"N": ["language", "tongue", "official language", "main language",
                               "national language", "spoken language"],
                         "NS": ["languages", "tongues"], "WH": _WH_ANY},
    "country_capital": {"N": ["capital", "capital city", "seat of government", "national capital"],
                        "NS": ["capitals"], "WH": _WH_PLACE},
    "capital_country": {"N": ["country", "nation", "sovereign state"], "NS": ["countries"],
                        "WH": _WH_PLACE, "CAP": ["capital", "capital city", "seat of government"]},
    "country_continent": {"N": ["continent", "part of the world", "region of the world"],
                          "NS": ["continents"], "WH": _WH_PLACE},
    "city_country": {"N": ["country", "nation"], "NS": ["countries"], "WH": _WH_PLACE},
    "city_state": {"N": ["state", "u.s. state", "us state", "province"], "NS": ["states"],
                   "WH": _WH_PLACE},
}

# Frames every relation has (built from its noun): "of" forms, possessives, keyword queries.
GENERIC_FRAMES: tuple[str, ...] = (
    "[what is|what's|tell me|name|give me] the <N> of {s}",
    "[what is|what's|name|tell me] {s}'s <N>",
    "{s}'s <N> is [what|which one|called what]",
    "[|the ]<N> [of|in|for] {s}",
    "{s} <N>",
    "the <N> of {s} is [what|which one|called what]",
    "for {s}, [what|which] is the <N>",
    "[do you know|can you tell me|could you tell me] the <N> of {s}",
)

# Frames of one relation: its verbs and prepositions.
RELATION_FRAMES: dict[str, tuple[str, ...]] = {
    "country_currency": (
        "<WH> <N> [does|do] {s} use",
        "<WH> <N> is used in {s}",
        "<WH> <N> do [they|people|you] [use|spend|pay with] in {s}",
        "in {s}, <WH> <N> do people pay with",
        "if i [go|travel] to {s}, <WH> <N> [do|will] i need",
        "{s} uses <WH> <N>",
        "what do [they|people|you] pay with in {s}",
        "<WH> <NS> are [used|accepted] in {s}",
        "<WH> <N> [should i|do i] [take|bring] to {s}",
    ),
    "country_language": (
        "<WH> <N> [do|does] [they|people|the people|most people] [speak|talk] in {s}",
        "<WH> <N> is spoken in {s}",
        "<WH> <N> does {s} speak",
        "in {s}, <WH> <N> do people speak",
        "what do [they|people|you] speak in {s}",
        "<WH> <NS> are spoken in {s}",
        "if i [go|travel] to {s}, <WH> <N> should i learn",
        "people from {s} speak <WH> <N>",
        "<WH> <N> [is used|do they use] in {s}",
    ),
    "country_capital": (
        "<WH> city is the <N> of {s}",
        "where is the <N> of {s}",
        "{s} is governed from <WH> city",
        "<WH> city is {s}'s <N>",
        "the government of {s} [sits|is] in <WH> city",
        "{s} has <WH> city as its <N>",
        "<WH> city serves as the <N> of {s}",
        "in <WH> city is the government of {s}",
    ),
    "capital_country": (
        "{s} is the <CAP> of <WH> <N>",
        "<WH> <N> has {s} as its <CAP>",
        "<WH> <N> is {s} the <CAP> of",
        "<WH> <N> is governed from {s}",
        "{s} is the <CAP> of what",
        "<WH> <N> is {s} in",
        "of <WH> <N> is {s} the <CAP>",
        "<WH> <N> [does|do] {s} serve as <CAP> [of|for]",
    ),
    "country_continent": (
        "<WH> <N> is {s} [in|on|part of]",
        "{s} is [in|on] <WH> <N>",
        "on <WH> <N> is {s}",
        "where in the world is {s}",
        "{s} lies [in|on] <WH> <N>",
        "<WH> <N> does {s} belong to",
        "<WH> <N> [is|can] {s} [located|found] [in|on]",
        "[in|on] <WH> <N> [can i find|would i find|do you find] {s}",
    ),
    "city_country": (
        "<WH> <N> is {s} in",
        "{s} is in <WH> <N>",
        "<WH> <N> is {s} [located|situated] in",
        "in <WH> <N> is [the city of |]{s}",
        "where is {s} [located|situated]",
        "{s} is a city in <WH> <N>",
        "<WH> <N> [does|do] {s} belong to",
        "<WH> <N> [has|contains] [the city of |]{s}",
        "{s} belongs to <WH> <N>",
    ),
    "city_state": (
        "<WH> <N> is {s} in",
        "{s} is in <WH> <N>",
        "<WH> <N> is {s} [located|situated] in",
        "in <WH> <N> is [the city of |]{s}",
        "{s} is a city in <WH> <N>",
        "<WH> <N> [does|do] {s} belong to",
        "<WH> <N> [has|contains] [the city of |]{s}",
        "the city of {s} is in <WH> <N>",
    ),
}

# Politeness and filler around a question; split like frames (held-out ones stay held out).
PREFIXES: tuple[str, ...] = ("please tell me", "can you tell me", "could you tell me", "do you know",
                             "i'd like to know", "i wonder", "hey,", "quick question:", "so", "ok so")
SUFFIXES: tuple[str, ...] = ("please", "thanks", "if you know", "by any chance")

ASK_PROBABILITY = 0.25    # share of questions with a prefix
SUFFIX_PROBABILITY = 0.1
NO_MARK_PROBABILITY = 0.25    # the "?" left out
NO_ARTICLE_PROBABILITY = 0.3  # "united states" for "the united states"


# Frames that already open with a request take no politeness prefix ("can you tell me tell me").
_ASKING = ("tell me", "name", "give me", "do you know", "can you", "could you")


@dataclass(frozen=True)
class Frame:
    """One question shape: ``relation/index`` names it across files and splits."""

    relation: str
    index: int
    text: str

    @property
    def key(self) -> str:
        return f"{self.relation}/{self.index}"


@dataclass(frozen=True)
class PhrasingSplit:
    """Frames and fillers per split: ``frames[split][relation]``, ``prefixes[split]``, ``suffixes[split]``."""

    frames: dict[str, dict[str, list[Frame]]]
    prefixes: dict[str, list[str]]
    suffixes: dict[str, list[str]]


def frames_of(relation: str) -> list[Frame]:
    """Every frame of ``relation`` (its own, then the generic ones), numbered."""
    texts = list(RELATION_FRAMES[relation]) + list(GENERIC_FRAMES)
    return [Frame(relation, i, t) for i, t in enumerate(texts)]


def _deal(items: Sequence, rng: random.Random, fractions: tuple[float, float, float]) -> dict[str, list]:
    """Shuffle and cut into train / dev / test; dev and test get at least one item each."""
    items = list(items)
    rng.shuffle(items)
    n_dev = max(1, round(fractions[1] * len(items)))
    n_test = max(1, round(fractions[2] * len(items)))
    return {"test": items[:n_test], "dev": items[n_test:n_test + n_dev], "train": items[n_test + n_dev:]}


def split_frames(*, seed: int, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> PhrasingSplit:
    """Deal each relation's frames, and the fillers, to train / dev / test (seeded).

    A frame text shared by several relations (the generic ones, "<WH> <N> is {s} in" of cities
    and capitals) goes to one split for all of them, since "the country of lima" reads the same
    whichever relation asks it. Each relation's other frames fill its splits towards
    ``fractions`` (dev and test get at least one frame each).
    """
    rng = random.Random(f"frames-{seed}")
    split_of: dict[str, str] = {}
    frames: dict[str, dict[str, list[Frame]]] = {s: {} for s in ("train", "dev", "test")}
    for relation in RELATION_FRAMES:
        mine = frames_of(relation)
        have = Counter(split_of[f.text] for f in mine if f.text in split_of)
        free = [f for f in mine if f.text not in split_of]
        rng.shuffle(free)
        want = {"dev": max(1.0, fractions[1] * len(mine)), "test": max(1.0, fractions[2] * len(mine)),
                "train": fractions[0] * len(mine)}
        for f in free:
            split = max(("test", "dev", "train"), key=lambda s: want[s] - have[s])
            split_of[f.text] = split
            have[split] += 1
        for split in frames:
            frames[split][relation] = [f for f in mine if split_of[f.text] == split]
    return PhrasingSplit(frames=frames, prefixes=_deal(PREFIXES, rng, fractions),
                         suffixes=_deal(SUFFIXES, rng, fractions))


_ALT = re.compile(r"\[([^\[\]]*)\]")
_KEY = re.compile(r"<([A-Z]+)>")


def _with_lexicon(frame: Frame) -> str:
    """The frame text with each ``<KEY>`` turned into an alternative of the relation's words."""
    words = LEXICON[frame.relation]
    return _KEY.sub(lambda m: "[" + "|".join(words[m.group(1)]) + "]", frame.text)


def realise(frame: Frame, rng: random.Random) -> str:
    """One question template from ``frame`` (``{s}`` left for the subject), no filler or mark."""
    text = _with_lexicon(frame)
    while True:
        m = _ALT.search(text)
        if m is None:
            return text
        options = m.group(1).split("|")
        text = text[:m.start()] + options[rng.randrange(len(options))] + text[m.end():]


def count_realisations(frame: Frame) -> int:
    """How many distinct texts :func:`realise` can give for ``frame`` (alternatives are flat)."""
    return math.prod(len(m.group(1).split("|")) for m in _ALT.finditer(_with_lexicon(frame)))


def question_template(frame: Frame, rng: random.Random, prefixes: Sequence[str],
                      suffixes: Sequence[str]) -> tuple[str, bool]:
    """A full question template: optional prefix + frame + optional suffix + optional ``?``.

    Returns ``(template, keep_article)``; ``keep_article`` False asks the caller to drop the
    subject's article ("what currency does united states use") — light noise, as people type.
    """
    text = realise(frame, rng)
    if prefixes and rng.random() < ASK_PROBABILITY and not text.startswith(_ASKING):
        text = f"{prefixes[rng.randrange(len(prefixes))]} {text}"
    if suffixes and rng.random() < SUFFIX_PROBABILITY:
        text = f"{text}, {suffixes[rng.randrange(len(suffixes))]}"
    if rng.random() >= NO_MARK_PROBABILITY:
        text += "?"
    return text, rng.random() >= NO_ARTICLE_PROBABILITY


def phrasing_counts(split: PhrasingSplit) -> dict[str, dict]:
    """Per relation and split: frames and distinct frame texts (before fillers/noise); fillers."""
    out: dict[str, dict] = {}
    for s, by_rel in split.frames.items():
        out[s] = {rel: {"frames": len(frames), "texts": sum(count_realisations(f) for f in frames)}
                  for rel, frames in by_rel.items()}
        out[s]["prefixes"] = len(split.prefixes[s])
        out[s]["suffixes"] = len(split.suffixes[s])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edmem.demo.phrasing [--seed N] [--examples K]``: the counts docs/demo.md quotes
    (JSON) and K sample questions per split (frames realised with fillers and noise)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m edmem.demo.phrasing", description=main.__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--examples", type=int, default=0)
    args = parser.parse_args(argv)
    split = split_frames(seed=args.seed)
    counts = phrasing_counts(split)
    totals = {s: {"frames": sum(v["frames"] for k, v in c.items() if isinstance(v, dict)),
                  "texts": sum(v["texts"] for k, v in c.items() if isinstance(v, dict))}
              for s, c in counts.items()}
    print(json.dumps({"lexicon_words": {r: sum(len(w) for w in lex.values()) for r, lex in LEXICON.items()},
                      "frames_per_relation": {r: len(frames_of(r)) for r in RELATION_FRAMES},
                      "totals": totals, "per_split": counts}, indent=1))
    rng = random.Random(args.seed)
    for s, by_rel in split.frames.items():
        frames = [f for fs in by_rel.values() for f in fs]
        for _ in range(args.examples):
            frame = frames[rng.randrange(len(frames))]
            text, _ = question_template(frame, rng, split.prefixes[s], split.suffixes[s])
            print(f"{s:<5} {frame.key:<22} {text.replace('{s}', 'X')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
