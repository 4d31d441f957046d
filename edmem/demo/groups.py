"""hits@k per question group (held-out facts x held-out phrasings), from original-format predictions.

Why a separate scorer: ``edmem evaluate all`` scores a whole gold file; the demo's dev and test
files each mix three groups (docs/demo.md, "Splits"), and the goal is stated per group. The
figures here use the same definition as the evaluation package's hits@k: the gold answer entity
among the first k predicted ids, over the linkable questions (those with ``answer_entity``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Mapping, Sequence

from edmem.demo.questions import EVAL_GROUPS

GROUP_KS = (1, 5, 10)


def group_hits(predictions: Mapping[str, Sequence], gold: Iterable[Mapping], *,
               ks: Sequence[int] = GROUP_KS) -> dict[str, dict[str, float | int]]:
    """``{group: {"hits@k": fraction, ..., "questions": n}}`` for each group of :data:`EVAL_GROUPS`
    present in ``gold``. ``predictions`` is ``{id: [answer_name, [entity ids, best first]]}``; a
    question without a prediction counts as a miss."""
    hits: dict[str, dict[int, int]] = defaultdict(lambda: dict.fromkeys(ks, 0))
    totals: dict[str, int] = defaultdict(int)
    for row in gold:
        group = row.get("group")
        if group not in EVAL_GROUPS or "answer_entity" not in row:
            continue
        answers = {int(a[0]) for a in row["answer_entity"]}
        ranked = [int(i) for i in (predictions.get(str(row["id"])) or ["", []])[1]]
        totals[group] += 1
        for k in ks:
            hits[group][k] += bool(answers & set(ranked[:k]))
    return {g: {**{f"hits@{k}": hits[g][k] / totals[g] for k in ks}, "questions": totals[g]}
            for g in EVAL_GROUPS if totals.get(g)}
