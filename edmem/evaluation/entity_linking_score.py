"""Entity-id accuracy as the original ``evaluation/openqa/entity_linking_eval.py`` computes it,
plus hits@k / MRR and per-category counts, as a library (:func:`compute_entity_linking`). The
command line is :mod:`edmem.evaluation.entity_linking_eval`.

Only the top-1 id counts for the original figures: a question is right iff it is linkable (the gold
line has ``answer_entity``) and its top-1 id is one of the gold ids. Non-linkable questions count
as wrong in the overall figure and are left out of the linkable one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from edmem.evaluation.metrics import DEFAULT_KS, Tally, format_figure, ranking_metrics
from edmem.evaluation.predictions import topk_ids


@dataclass(frozen=True)
class EntityLinkingResult:
    """The original's two figures plus the counts behind them and the ranking extras."""

    overall: Tally                  # over all questions (non-linkable = wrong)
    linkable: Tally                 # over linkable questions only
    non_linkable: int
    linkable_single_gold: int       # linkable questions with one gold entity
    linkable_multi_gold: int        # ... with several (any of them counts)
    ranking: dict[str, Any]         # hits@k, MRR over linkable questions (metrics.ranking_metrics)

    @property
    def em(self) -> float:
        return self.overall.em

    def lines(self) -> list[str]:
        return [f"Exact Match:  {format_figure(self.overall.em)}",
                f"Linkable EM:  {format_figure(self.linkable.em)}"]

    def extra_lines(self) -> list[str]:
        """Our additions (not printed by the original's command)."""
        r = self.ranking
        out = [f"Questions: {self.overall.count} (linkable {self.linkable.count}: "
               f"{self.linkable_single_gold} with one gold entity, {self.linkable_multi_gold} with "
               f"several; non-linkable {self.non_linkable}); top-1 correct: {self.overall.correct}"]
        for key, value in r.items():
            if key.startswith("hits@"):
                percent = "nan" if value["percent"] is None else format_figure(value["percent"])
                out.append(f"{key}:  {percent} ({value['hits']}/{r['questions']})")
        out.append(f"MRR:  {'nan' if r['mrr'] is None else format(r['mrr'], '.4f')}")
        if r["list_length"] is not None:
            length = r["list_length"]
            out.append(f"Top-k lists hold {length['min']}" +
                       (f" to {length['max']}" if length["max"] != length["min"] else "") +
                       " ids; hits@k for a larger k counts only those.")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.overall.as_dict(),
            "linkable": self.linkable.as_dict(),
            "non_linkable": {"count": self.non_linkable},
            "linkable_single_gold": self.linkable_single_gold,
            "linkable_multi_gold": self.linkable_multi_gold,
            "ranking": self.ranking,
        }


def compute_entity_linking(predictions: Mapping[str, Any],
                           gold_entity_ids: Mapping[str, Sequence[int] | None],
                           ks: Sequence[int] = DEFAULT_KS,
                           pred_path: str | None = None) -> EntityLinkingResult:
    """Score ``{id: [name, [ids]]}`` against ``{id: gold entity ids or None (non-linkable)}``.

    Ids must already match (``loaders.check_same_ids``); prediction shapes are validated here.
    """
    topk = {qid: topk_ids(qid, value, pred_path) for qid, value in predictions.items()}
    overall, linkable = [], []
    single = multi = 0
    for qid, ids in topk.items():
        gold = gold_entity_ids[qid]
        if gold is None:
            overall.append(False)
            continue
        correct = ids[0] in set(gold)
        overall.append(correct)
        linkable.append(correct)
        if len(gold) == 1:
            single += 1
        else:
            multi += 1
    linkable_gold = {qid: gold for qid, gold in gold_entity_ids.items() if gold is not None}
    return EntityLinkingResult(Tally.of(overall), Tally.of(linkable),
                               non_linkable=len(overall) - len(linkable),
                               linkable_single_gold=single, linkable_multi_gold=multi,
                               ranking=ranking_metrics(topk, linkable_gold, ks))
