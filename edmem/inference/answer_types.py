"""Answer-type prior: which type of entity a question asks for, read from its words.

Why: on the demo a good share of the EL head's rank-1 errors name an entity of the wrong type (a
country for "seat of government of Mozambique"), and the model is confident of that type too —
its own softmax mass per type changes nothing. A second, independent view of the question — its
words with the mentions blanked, so the subject's name cannot pull — recovers most of what a
perfect type filter would (docs/demo.md, "Answer types"). **Not in the original**; a model
directory without ``answer_types.json`` ranks exactly as before.

The view is a Bernoulli naive-Bayes model fitted on the EL training questions and the types of
their answers (types from the entity vocabulary's ``type`` field). Reranking the model's top K:
``score(e) = log p(e) + weight · log Q(type(e) | question)``, ``p`` the softmax over the K scores;
an entity whose type the prior never saw gets ``log(1 / number of types)`` (no information).
The reranked scores are those combined log-probabilities, renormalised over the K.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from edmem.data.jsonio import read_tagged_json
from edmem.errors import DataError
from edmem.runtime.atomic import atomic_write_text

#: File name in a model directory (and in a training ``--output_dir``), and its format tag.
ANSWER_TYPES = "answer_types.json"
FORMAT = "edmem-answer-types"
#: Additive smoothing of the per-type word frequencies (and its denominator's share).
SMOOTHING = 0.1
#: The word every blanked mention becomes ("what is the currency of <mention>").
MENTION_WORD = "<mention>"
_WORD = re.compile(r"\w+(?:'\w+)?")

Span = tuple[int, int]


def question_words(text: str, spans: Iterable[Span]) -> set[str]:
    """The lowercased words of ``text`` outside the character ``spans`` (start, end), plus
    :data:`MENTION_WORD` when there is a span."""
    pieces, last, blanked = [], 0, False
    for start, end in sorted(spans):
        pieces.append(text[last:start])
        last, blanked = max(last, end), True
    pieces.append(text[last:])
    words = set(_WORD.findall(" ".join(pieces).lower()))
    if blanked:
        words.add(MENTION_WORD)
    return words


@dataclass
class AnswerTypePrior:
    """Counts of a fitted prior and the weight it is multiplied in with."""

    weight: float
    questions: dict[str, int]                      # type -> training questions it answers
    words: dict[str, dict[str, int]]               # type -> word -> those questions containing it
    _base: dict[str, float] = field(init=False, repr=False)
    _delta: dict[str, dict[str, float]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.questions:
            raise ValueError("an answer-type prior needs at least one typed training question")
        if not (self.weight >= 0 and math.isfinite(self.weight)):
            raise ValueError(f"answer-type weight must be a finite number >= 0, got {self.weight}")
        # log Q(t | words) = log n_t + sum over the vocabulary of log P(word present or absent | t);
        # precomputed as a base (every word absent) plus a delta per present word.
        vocab = sorted(set().union(*self.words.values()))   # a fixed order: the same sums in every process
        self._base, self._delta = {}, {}
        for t, n in self.questions.items():
            counts = self.words.get(t, {})
            present = {w: (counts.get(w, 0) + SMOOTHING) / (n + 2 * SMOOTHING) for w in vocab}
            self._base[t] = math.log(n) + sum(math.log(1.0 - p) for p in present.values())
            self._delta[t] = {w: math.log(p) - math.log(1.0 - p) for w, p in present.items()}

    @classmethod
    def fit(cls, questions: Iterable[tuple[str, Sequence[Span], str]], weight: float) -> "AnswerTypePrior":
        """From ``(question, mention spans, answer type)`` triples."""
        counts: dict[str, int] = {}
        words: dict[str, dict[str, int]] = {}
        for text, spans, answer_type in questions:
            counts[answer_type] = counts.get(answer_type, 0) + 1
            bucket = words.setdefault(answer_type, {})
            for w in question_words(text, spans):
                bucket[w] = bucket.get(w, 0) + 1
        return cls(weight, counts, words)

    @property
    def types(self) -> list[str]:
        return sorted(self.questions)

    def log_probs(self, text: str, spans: Iterable[Span]) -> dict[str, float]:
        """log Q(type | question), normalised over the types seen in training."""
        present = question_words(text, spans)
        raw = {t: self._base[t] + sum(self._delta[t].get(w, 0.0) for w in sorted(present)) for t in self.questions}
        return dict(zip(raw, log_softmax(list(raw.values()))))

    def rerank(self, ids: Sequence[int], scores: Sequence[float], type_of: Callable[[int], str | None],
               text: str, spans: Iterable[Span]) -> tuple[list[int], list[float]]:
        """``ids`` (the model's top K, best first) and their raw ``scores``, reranked; returns the
        new order and its combined log-probabilities (renormalised over the K)."""
        if not ids:
            return [], []
        log_q = self.log_probs(text, spans)
        unknown = -math.log(len(log_q))
        log_p = log_softmax(scores)
        combined = [lp + self.weight * log_q.get(type_of(int(e)) or "", unknown) for e, lp in zip(ids, log_p)]
        order = sorted(range(len(ids)), key=lambda i: -combined[i])   # stable: ties keep the model's order
        renormalised = log_softmax([combined[i] for i in order])
        return [int(ids[i]) for i in order], renormalised

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": 1, "weight": self.weight,
                "questions": self.questions, "words": self.words}

    def save(self, directory: str | Path) -> Path:
        return atomic_write_text(Path(directory) / ANSWER_TYPES,
                                 json.dumps(self.to_json(), ensure_ascii=False, sort_keys=True) + "\n")


def load_answer_types(directory: str | Path) -> AnswerTypePrior | None:
    """The prior saved in ``directory``, or None when it has none."""
    return read_tagged_json(Path(directory) / ANSWER_TYPES, FORMAT, "answer-type prior", _prior_from_json)


def _prior_from_json(data: dict) -> AnswerTypePrior:
    return AnswerTypePrior(float(data["weight"]), {str(k): int(v) for k, v in data["questions"].items()},
                           {str(t): {str(w): int(n) for w, n in ws.items()} for t, ws in data["words"].items()})


def fit_from_examples(examples: Iterable[Any], types: Mapping[int, str | None], weight: float,
                      source: str) -> AnswerTypePrior:
    """Fit on EL examples (``edmem.data.formats.ELExample``): each question with a typed first
    answer entity counts; the others are counted and named in the error if none is left."""
    triples, untyped = [], 0
    for ex in examples:
        answer_type = types.get(int(ex.answer_entities[0][0])) if ex.answer_entities else None
        if not answer_type:
            untyped += 1
            continue
        triples.append((ex.question, mention_spans(ex), answer_type))
    if not triples:
        raise DataError(f"no training question has an answer entity with a \"type\" ({untyped} without): "
                        "the answer-type prior needs typed entities", source)
    return AnswerTypePrior.fit(triples, weight)


def rerank_predictions(prior: AnswerTypePrior, topk: dict[str, list[int]], scores: dict[str, list[float]],
                       examples: Iterable[Any], type_of: Callable[[int], str | None]) -> None:
    """Rerank ``edmem.inference.predict.Predictions``' ``topk``/``scores`` in place, by question id."""
    for ex in examples:
        qid = str(ex.id)
        if qid in topk and scores.get(qid):
            topk[qid], scores[qid] = prior.rerank(topk[qid], scores[qid], type_of, ex.question, mention_spans(ex))


def mention_spans(example: Any) -> list[Span]:
    """(start, end) character spans of an ``ELExample``'s mentions."""
    return [(m.offset, m.end) for m in example.mentions]


def log_softmax(values: Sequence[float]) -> list[float]:
    """log of the softmax of ``values`` (max-shifted)."""
    top = max(values)
    log_z = top + math.log(sum(math.exp(v - top) for v in values))
    return [v - log_z for v in values]
