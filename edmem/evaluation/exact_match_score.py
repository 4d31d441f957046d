"""String exact match as the original ``evaluation/openqa/exact_match.py`` computes it: the
figures behind its printed lines, as a library (:func:`compute_exact_match`). The command line is
:mod:`edmem.evaluation.exact_match`.

Two passes, as in the original (they differ on purpose, docs/quirks.md Q33):

1. every prediction: unwrap (dict ``output``; list -> name without trailing parenthetical), test
   "pure entity" on that text, remove ``<E_s>``/``<E_e>``/``<pad>``, compare with the answers;
2. with answer links: the same unwrapping, but ``<pad>`` is removed *before* the purity test, and
   questions are split into linkable (SLING link not null) and non-linkable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from edmem.evaluation.metrics import Tally, format_figure
from edmem.evaluation.normalize import (exact_match, is_pure_entity, remove_markers,
                                        remove_markers_and_pad, remove_pad)
from edmem.evaluation.predictions import prediction_text


@dataclass(frozen=True)
class AnswerLinkBreakdown:
    """The ``-ans_link`` statistics. ``valid``/``not_valid_but_right`` are None without a vocabulary."""

    linkable: Tally
    non_linkable: Tally
    pure: Tally                      # pure entity outputs among linkable questions
    not_pure_but_right: int          # linkable, not pure, correct
    valid: Tally | None              # pure and in the entity vocabulary
    not_valid_but_right: int | None  # pure, not in the vocabulary, correct

    def lines(self) -> list[str]:
        def figure(t: Tally | None) -> str:
            return "n/a (no -entity_vocab)" if t is None else format_figure(t.em)

        valid_ratio = ("n/a (no -entity_vocab)" if self.valid is None
                       else f"{self.valid.count}/{self.pure.count}")
        not_valid = "n/a (no -entity_vocab)" if self.not_valid_but_right is None else self.not_valid_but_right
        return [
            f"Linkable QA Exact Match:  {format_figure(self.linkable.em)}",
            "Among linkables, the ratio of predictions that are pure entity names: "
            f"{self.pure.count}/{self.linkable.count}",
            f"Pure entity names Exact Match:  {format_figure(self.pure.em)}",
            f"Not predicted as pure entities, but got it right:  {self.not_pure_but_right}",
            "Among pure entity names, the ratio of predictions that are valid entity names: "
            f"{valid_ratio}",
            f"Valid entity names Exact Match:  {figure(self.valid)}",
            f"Not predicted as valid entity names, but got it right:  {not_valid}",
            f"Linkable questions: {self.linkable.count}",
            f"Non-linkable QA Exact Match:  {format_figure(self.non_linkable.em)}",
            f"Non-linkable questions: {self.non_linkable.count}",
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "linkable": self.linkable.as_dict(),
            "non_linkable": self.non_linkable.as_dict(),
            "pure": self.pure.as_dict(),
            "not_pure_but_right": self.not_pure_but_right,
            "valid": None if self.valid is None else self.valid.as_dict(),
            "not_valid_but_right": self.not_valid_but_right,
        }


@dataclass(frozen=True)
class ExactMatchResult:
    """All figures of the original ``exact_match.py``."""

    overall: Tally
    pure: Tally        # first pass: pure entity outputs (purity tested before removing <pad>)
    not_pure: Tally
    answer_link: AnswerLinkBreakdown | None

    @property
    def em(self) -> float:
        return self.overall.em

    def lines(self) -> list[str]:
        out = [
            f"Exact Match:  {format_figure(self.overall.em)}",
            f"{self.pure.count} predictions are pure entities, EM: {format_figure(self.pure.em)}; "
            f"{self.not_pure.count} predictions are not entities, EM: {format_figure(self.not_pure.em)}",
        ]
        if self.answer_link is not None:
            out += self.answer_link.lines()
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.overall.as_dict(),
            "pure": self.pure.as_dict(),
            "not_pure": self.not_pure.as_dict(),
            "answer_link": None if self.answer_link is None else self.answer_link.as_dict(),
        }


def compute_exact_match(predictions: Mapping[str, Any],
                        answers: Mapping[str, Sequence[str] | str],
                        linkable: Mapping[str, bool] | None = None,
                        entity_vocab: frozenset[str] | None = None,
                        pred_path: str | None = None) -> ExactMatchResult:
    """Score ``{id: prediction}`` against ``{id: answers}``; ids must already match (see
    ``loaders.check_same_ids``). ``linkable`` (from ``-ans_link``) enables the breakdown;
    ``entity_vocab`` (from ``loaders.load_entity_vocab``) enables its "valid name" part."""
    overall, pure, not_pure = [], [], []
    texts: dict[str, str] = {}
    for qid, value in predictions.items():
        text = prediction_text(qid, value, pred_path)
        texts[qid] = text
        correct = exact_match(remove_markers_and_pad(text), answers[qid])
        overall.append(correct)
        (pure if is_pure_entity(text) else not_pure).append(correct)
    breakdown = None
    if linkable is not None:
        breakdown = _answer_link_breakdown(texts, answers, linkable, entity_vocab)
    return ExactMatchResult(Tally.of(overall), Tally.of(pure), Tally.of(not_pure), breakdown)


def _answer_link_breakdown(texts: Mapping[str, str], answers: Mapping[str, Sequence[str] | str],
                           linkable: Mapping[str, bool],
                           entity_vocab: frozenset[str] | None) -> AnswerLinkBreakdown:
    link, unlink, pure, valid = [], [], [], []
    not_pure_right = not_valid_right = 0
    for qid, text in texts.items():
        raw = remove_pad(text)          # <pad> goes before the purity test here (Q33)
        prediction = remove_markers(raw)
        correct = exact_match(prediction, answers[qid])
        if not linkable[qid]:
            unlink.append(correct)
            continue
        link.append(correct)
        if not is_pure_entity(raw):
            not_pure_right += correct
            continue
        pure.append(correct)
        if entity_vocab is not None:
            if prediction in entity_vocab:   # not lowercased, like the original
                valid.append(correct)
            else:
                not_valid_right += correct
    has_vocab = entity_vocab is not None
    return AnswerLinkBreakdown(
        linkable=Tally.of(link), non_linkable=Tally.of(unlink), pure=Tally.of(pure),
        not_pure_but_right=not_pure_right,
        valid=Tally.of(valid) if has_vocab else None,
        not_valid_but_right=not_valid_right if has_vocab else None)
