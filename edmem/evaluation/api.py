"""In-process scoring: what dev selection, ``edmem predict``, the demo, the benchmarks and the
evaluation commands all call, so a number seen in a log, a JSON file or the printed lines is
always the same number. No torch.

* :func:`evaluate` / :func:`score_predictions`: every figure of predictions already in memory
  (``gold`` may be a loaded :class:`GoldSet` or the examples themselves);
* :func:`evaluate_files`: the same from the files the commands take (echoing the original's
  ``Read``/``Load`` lines when asked);
* :func:`selection_scores`: fine-tuning's model-selection figures (docs/evaluation.md).

The figures themselves are computed by the score modules: :mod:`exact_match_score`,
:mod:`entity_linking_score` and :mod:`metrics` (hits@k, MRR).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from edmem.errors import DataError
from edmem.evaluation.entity_linking_score import EntityLinkingResult, compute_entity_linking
from edmem.evaluation.exact_match_score import ExactMatchResult, compute_exact_match
from edmem.evaluation.loaders import (Echo, GoldSet, check_same_ids, load_answer_linkability,
                                      load_entity_vocab, load_gold, load_predictions)
from edmem.evaluation.metrics import DEFAULT_KS
from edmem.evaluation.predictions import is_entity_linking_output

SCHEMA = "edmem.evaluation/1"
NO_EL_NOTE = ("entity-linking metrics skipped: the predictions are answer strings, not "
              "[entity_name, [entity ids]] lists")
NO_GOLD_ENTITIES_NOTE = ("no gold question has 'answer_entity': every question counts as "
                         "non-linkable for the entity-id metrics")


@dataclass
class ScoreReport:
    """Everything one scoring run computed; ``as_dict`` is the ``--json`` document."""

    questions: int
    exact_match: ExactMatchResult | None = None
    entity_linking: EntityLinkingResult | None = None
    notes: list[str] = field(default_factory=list)
    inputs: dict[str, str | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "inputs": self.inputs,
            "questions": self.questions,
            "exact_match": None if self.exact_match is None else self.exact_match.as_dict(),
            "entity_linking": None if self.entity_linking is None else self.entity_linking.as_dict(),
            "notes": self.notes,
        }

    def all_lines(self) -> list[str]:
        """What ``edmem evaluate all`` prints after loading: both original reports, then the
        extras (counts, hits@k, MRR) and the notes."""
        lines = ["==== exact_match"]
        if self.exact_match is not None:
            lines += self.exact_match.lines()
        if self.entity_linking is not None:
            lines += ["==== entity_linking_eval", *self.entity_linking.lines(),
                      "==== entity ids: counts, hits@k, MRR (linkable questions)",
                      *self.entity_linking.extra_lines()]
        lines += [f"Note: {note}" for note in self.notes]
        return lines


def evaluate(predictions: Mapping[str, Any], gold: GoldSet | Iterable[Any], *,
             answer_links: Mapping[str, bool] | None = None,
             entity_vocab: frozenset[str] | None = None,
             exact_match: bool = True,
             entity_linking: str = "auto",
             ks: Sequence[int] = DEFAULT_KS,
             pred_path: str | None = None) -> ScoreReport:
    """Score predictions against gold questions.

    ``answer_links``: ``{id: linkable}`` (``loaders.load_answer_linkability``) for the linkable
    split of exact match; ``entity_vocab``: ``loaders.load_entity_vocab`` for the "valid name"
    lines. ``entity_linking``: ``"auto"`` (when the predictions are ``[name, [ids]]`` lists),
    ``"required"`` (error on any other shape) or ``"off"``.
    Raises DataError when ids differ from the gold ids or a value has the wrong shape.
    """
    if entity_linking not in ("auto", "required", "off"):
        raise ValueError(f"entity_linking must be 'auto', 'required' or 'off', not {entity_linking!r}")
    gold = as_gold_set(gold)
    if not isinstance(predictions, Mapping):
        raise DataError(f"predictions must be a mapping {{id: prediction}}, got "
                        f"{type(predictions).__name__}", pred_path)
    check_same_ids(predictions, gold, pred_path)
    result = ScoreReport(questions=len(gold))
    if exact_match:
        result.exact_match = compute_exact_match(predictions, gold.answers(), answer_links,
                                                 entity_vocab, pred_path)
    if entity_linking == "off":
        return result
    if entity_linking == "auto" and not _entity_linking_shaped(predictions, pred_path):
        result.notes.append(NO_EL_NOTE)
        return result
    entity_ids = gold.entity_ids()
    if predictions and all(ids is None for ids in entity_ids.values()):
        result.notes.append(NO_GOLD_ENTITIES_NOTE)
    result.entity_linking = compute_entity_linking(predictions, entity_ids, ks, pred_path)
    return result


def as_gold_set(gold: GoldSet | Iterable[Any]) -> GoldSet:
    """``gold`` as a :class:`GoldSet` (examples and gold-file dicts are validated on the way)."""
    return gold if isinstance(gold, GoldSet) else GoldSet.from_records(gold)


def _entity_linking_shaped(predictions: Mapping[str, Any], pred_path: str | None) -> bool:
    try:
        return is_entity_linking_output(predictions)
    except DataError as exc:
        raise DataError(exc.reason, pred_path) from None


def score_predictions(predictions: Mapping[str, Any], gold: GoldSet | Iterable[Any],
                      **options: Any) -> dict[str, Any]:
    """``evaluate(...).as_dict()``: every figure as plain JSON-ready data (``None`` for nan).

    Typical use::

        scores = score_predictions({"0": ["Jamaican English", [326560, ...]]}, dev_examples)
        scores["exact_match"]["em"], scores["entity_linking"]["linkable"]["em"],
        scores["entity_linking"]["ranking"]["hits@10"]["percent"]
    """
    return evaluate(predictions, gold, **options).as_dict()


def evaluate_files(pred: str | Path, gold: str | Path, *, ans_link: str | Path | None = None,
                   entity_vocab: str | Path | None = None, echo: Echo = None,
                   **options: Any) -> ScoreReport:
    """Load the files (the original scripts' ``Read``/``Load`` lines go to ``echo``) and
    :func:`evaluate` them; ``options`` as there. The report's ``inputs`` name the files."""
    vocab = load_entity_vocab(entity_vocab) if entity_vocab is not None else None
    gold_set = load_gold(gold, echo=echo)
    predictions = load_predictions(pred, echo=echo)
    check_same_ids(predictions, gold_set, str(pred))
    links = load_answer_linkability(ans_link, predictions.keys()) if ans_link is not None else None
    report = evaluate(predictions, gold_set, answer_links=links, entity_vocab=vocab,
                      pred_path=str(pred), **options)
    report.inputs = {"pred": _shown(pred), "gold": _shown(gold), "ans_link": _shown(ans_link),
                     "entity_vocab": _shown(entity_vocab)}
    return report


def _shown(path: str | Path | None) -> str | None:
    return None if path is None else str(path)


@dataclass(frozen=True)
class SelectionScores:
    """Fine-tuning's dev figures, fractions in [0, 1] over all ``count`` questions.

    ``em``: the selection metric, string EM of the raw top-1 entity name against the answers
    (no parenthetical stripping, unlike ``exact_match.py``: docs/quirks.md Q2).
    ``id_accuracy``: top-1 id among the gold answer entities (non-linkable questions count as
    wrong), ``entity_linking_eval.py``'s first line."""

    em: float
    id_accuracy: float
    count: int


def selection_scores(predictions: Mapping[str, Any], gold: GoldSet | Iterable[Any]) -> SelectionScores:
    """:class:`SelectionScores` of entity-linking predictions ``{id: [name, [ids, best first]]}``."""
    gold = as_gold_set(gold)
    check_same_ids(predictions, gold)
    names = {qid: value[0] for qid, value in predictions.items()}  # plain strings: not stripped
    em = compute_exact_match(names, gold.answers()).overall
    linked = compute_entity_linking(predictions, gold.entity_ids(), ks=(1,)).overall
    count = len(gold)
    return SelectionScores(em=em.correct / max(1, count), id_accuracy=linked.correct / max(1, count),
                           count=count)
