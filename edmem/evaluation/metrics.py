"""Aggregate figures: the original's ``round(mean * 100, 2)`` and the ranking extras (hits@k, MRR).

The percentages are computed with numpy exactly as the original scripts do (``np.mean`` then the
builtin ``round`` on a numpy float, i.e. numpy's round-half-even-after-scaling), so the printed
figures match to the last digit. An empty list gives ``nan`` like ``np.mean([])`` but without the
numpy RuntimeWarning (see docs/evaluation.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 100)


def mean_percent(outcomes: Sequence[bool | int]) -> float:
    """``round(np.mean(outcomes) * 100, 2)`` as a Python float; ``nan`` for an empty list."""
    if len(outcomes) == 0:
        return math.nan
    return float(round(np.mean(np.asarray(outcomes, dtype=np.float64)) * 100, 2))


def format_figure(value: float) -> str:
    """How ``print`` shows the original's numpy floats: ``41.09``, ``0.0``, ``nan``."""
    return "nan" if math.isnan(value) else repr(float(value))


@dataclass(frozen=True)
class Tally:
    """A subset of questions: how many, how many right, and the original's percentage."""

    count: int
    correct: int
    em: float

    @classmethod
    def of(cls, outcomes: Sequence[bool]) -> "Tally":
        return cls(len(outcomes), int(sum(bool(x) for x in outcomes)), mean_percent(outcomes))

    def as_dict(self) -> dict[str, object]:
        return {"count": self.count, "correct": self.correct, "em": json_number(self.em)}


def json_number(value: float) -> float | None:
    """JSON has no NaN: undefined means (empty subsets) are written as ``null``."""
    return None if math.isnan(value) else value


def first_rank(topk: Sequence[int], gold_ids: Iterable[int]) -> int | None:
    """1-based position of the first id in ``topk`` that is a gold id, or None if none is."""
    gold = set(gold_ids)
    for rank, entity_id in enumerate(topk, start=1):
        if entity_id in gold:
            return rank
    return None


def ranking_metrics(topk_by_id: Mapping[str, Sequence[int]],
                    gold_ids_by_id: Mapping[str, Sequence[int]],
                    ks: Sequence[int] = DEFAULT_KS) -> dict[str, object]:
    """hits@k and MRR over the questions in ``gold_ids_by_id`` (the linkable ones), keyed by id.

    A hit at k: any gold id among the first k predicted ids. MRR: mean of 1/rank of the first gold
    id in the list, 0 when absent. When the lists are shorter than k, hits@k counts what is there
    (``list_length`` in the result says how long the lists were). Every id in ``gold_ids_by_id``
    must have a prediction (callers check ids against the gold file first).
    """
    ranks = [first_rank(topk_by_id[qid], gold) for qid, gold in gold_ids_by_id.items()]
    lengths = [len(topk_by_id[qid]) for qid in gold_ids_by_id]
    hits = {}
    if any(k < 1 for k in ks):
        raise ValueError(f"hits@k cut-offs must be at least 1, got {list(ks)}")
    for k in ks:
        tally = Tally.of([r is not None and r <= k for r in ranks])
        hits[f"hits@{k}"] = {"hits": tally.correct, "percent": json_number(tally.em)}
    reciprocal = [0.0 if r is None else 1.0 / r for r in ranks]
    mrr = float(np.mean(reciprocal)) if reciprocal else math.nan
    return {
        "questions": len(ranks),
        "found_in_list": sum(r is not None for r in ranks),
        "list_length": {"min": min(lengths), "max": max(lengths)} if lengths else None,
        **hits,
        "mrr": json_number(mrr),
    }
