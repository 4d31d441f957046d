"""In-process scoring: what the training loop, ``edmem predict`` and the demo call.

``score_predictions(predictions, gold)`` returns the same dict that ``--json`` writes, so a number
seen in a log, a JSON file or the printed lines is always the same number. No torch, no files
needed (``gold`` may be a loaded :class:`GoldSet` or the examples themselves).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from edmem.errors import DataError
from edmem.evaluation.entity_linking_eval import EntityLinkingResult, compute_entity_linking
from edmem.evaluation.exact_match import ExactMatchResult, compute_exact_match
from edmem.evaluation.loaders import GoldSet, check_same_ids
from edmem.evaluation.metrics import DEFAULT_KS
from edmem.evaluation.predictions import is_entity_linking_output

SCHEMA = "edmem.evaluation/1"
NO_EL_NOTE = ("entity-linking metrics skipped: the predictions are answer strings, not "
              "[entity_name, [entity ids]] lists")
NO_GOLD_ENTITIES_NOTE = ("no gold question has 'answer_entity': every question counts as "
                         "non-linkable for the entity-id metrics")


@dataclass
class Evaluation:
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


def evaluate(predictions: Mapping[str, Any], gold: GoldSet | Iterable[Any], *,
             answer_links: Mapping[str, bool] | None = None,
             entity_vocab: frozenset[str] | None = None,
             exact_match: bool = True,
             entity_linking: str = "auto",
             ks: Sequence[int] = DEFAULT_KS,
             pred_path: str | None = None) -> Evaluation:
    """Score predictions against gold questions.

    ``answer_links``: ``{id: linkable}`` (``loaders.load_answer_links``) for the linkable split of
    exact match; ``entity_vocab``: ``loaders.load_entity_vocab`` for the "valid name" lines.
    ``entity_linking``: ``"auto"`` (when the predictions are ``[name, [ids]]`` lists),
    ``"required"`` (error on any other shape) or ``"off"``.
    Raises DataError when ids differ from the gold ids or a value has the wrong shape.
    """
    if entity_linking not in ("auto", "required", "off"):
        raise ValueError(f"entity_linking must be 'auto', 'required' or 'off', not {entity_linking!r}")
    if not isinstance(gold, GoldSet):
        gold = GoldSet.from_records(gold)
    if not isinstance(predictions, Mapping):
        raise DataError(f"predictions must be a mapping {{id: prediction}}, got "
                        f"{type(predictions).__name__}", pred_path)
    check_same_ids(predictions, gold, pred_path)
    result = Evaluation(questions=len(gold))
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


def _entity_linking_shaped(predictions: Mapping[str, Any], pred_path: str | None) -> bool:
    try:
        return is_entity_linking_output(predictions)
    except DataError as exc:
        raise DataError(exc.reason, pred_path) from None


def score_predictions(predictions: Mapping[str, Any], gold: GoldSet | Iterable[Any],
                      **options: Any) -> dict[str, Any]:
    """``evaluate(...).as_dict()``: every figure as plain JSON-ready data (``None`` for nan).

    Typical use (dev evaluation inside training)::

        scores = score_predictions({"0": ["Jamaican English", [326560, ...]]}, dev_examples)
        scores["exact_match"]["em"], scores["entity_linking"]["linkable"]["em"],
        scores["entity_linking"]["ranking"]["hits@10"]["percent"]
    """
    return evaluate(predictions, gold, **options).as_dict()
