"""The shapes a prediction value may take, and what each metric reads from it.

* answer generation: a string (``"<E_s> jamaican english <E_e>"``), or a dict with ``"output"``
  (beam-search dumps);
* entity linking: ``[entity_name, [k entity ids, best first]]`` (an optional third element, a list
  of k scores, is allowed and ignored).

String exact match accepts all of them (like the original). The id-based metrics need the
entity-linking shape and refuse anything else with a DataError naming the question, where the
original would index into a string and silently score 0.
"""

from __future__ import annotations

from typing import Any, Mapping

from edmem.errors import DataError
from edmem.evaluation.normalize import strip_parenthetical

EL_SHAPE = "[entity_name, [entity ids, best first]]"


def prediction_text(qid: str, value: Any, path: str | None = None) -> str:
    """The text the original compares with the answers, before marker removal.

    Dicts are unwrapped to ``["output"]`` first; list (entity-linking) predictions then give their
    name with a trailing parenthetical removed (greedy ``\\(.+\\)$``, quirk Q2/Q33). Plain strings
    are returned untouched.
    """
    if isinstance(value, dict):
        if "output" not in value:
            raise DataError(f"question '{qid}': a dict prediction needs an 'output' field", path)
        value = value["output"]
    if isinstance(value, list):
        if not value or not isinstance(value[0], str):
            raise DataError(f"question '{qid}': a list prediction must start with the entity name "
                            f"({EL_SHAPE}), got {_short(value)}", path)
        return strip_parenthetical(value[0])
    if not isinstance(value, str):
        raise DataError(f"question '{qid}': expected a string, {{'output': ...}} or {EL_SHAPE}, "
                        f"got {type(value).__name__}", path)
    return value


def topk_ids(qid: str, value: Any, path: str | None = None) -> list[int]:
    """The ranked entity ids of an entity-linking prediction (validated; never empty)."""
    if isinstance(value, str):
        raise DataError(f"question '{qid}': got a string prediction ({_short(value)}); the "
                        f"entity-linking metrics need {EL_SHAPE} (score answer-generation outputs "
                        f"with exact_match)", path)
    if not (isinstance(value, list) and len(value) in (2, 3) and isinstance(value[0], str)
            and isinstance(value[1], list)):
        raise DataError(f"question '{qid}': expected {EL_SHAPE}, got {_short(value)}", path)
    ids = value[1]
    if not ids:
        raise DataError(f"question '{qid}': the list of entity ids is empty", path)
    for entity_id in ids:
        if not isinstance(entity_id, int) or isinstance(entity_id, bool):
            raise DataError(f"question '{qid}': entity ids must be integers, got {entity_id!r}", path)
    return ids


def is_entity_linking_output(predictions: Mapping[str, Any]) -> bool:
    """True when every value is list-shaped (the EL format), False when none is.

    Mixed files are an error: half of them could not be scored by id.
    """
    shapes = {isinstance(v, list) for v in predictions.values()}
    if len(shapes) > 1:
        example = next(qid for qid, v in predictions.items() if not isinstance(v, list))
        raise DataError(f"mixed prediction shapes: some values are {EL_SHAPE} lists, others are "
                        f"not (e.g. question '{example}')")
    return shapes == {True}


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
