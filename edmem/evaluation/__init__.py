"""Scoring: the original exact_match / entity_linking_eval outputs plus hits@k and MRR. No torch.

Public API (import the submodules; this package imports nothing so that ``normalize`` stays light):

* ``edmem.evaluation.api``: ``evaluate(predictions, gold, **options) -> ScoreReport``,
  ``score_predictions(...) -> dict`` (the ``--json`` document), ``evaluate_files(pred, gold, ...)``,
  ``selection_scores(predictions, gold)`` (fine-tuning's dev selection).
* score modules: ``exact_match_score.compute_exact_match``,
  ``entity_linking_score.compute_entity_linking``, ``metrics.ranking_metrics`` (hits@k, MRR),
  ``metrics.mean_percent``, ``metrics.first_rank``.
* ``edmem.evaluation.loaders``: ``load_gold``, ``load_predictions``, ``load_answer_linkability``,
  ``load_entity_vocab``, ``GoldSet.from_records``, ``check_same_ids``.
* ``edmem.evaluation.normalize``: ``normalize_answer``, ``exact_match``, ``strip_parenthetical``,
  ``is_pure_entity``.
* command lines (thin wrappers over ``commands``): ``python -m edmem.evaluation.exact_match``,
  ``python -m edmem.evaluation.entity_linking_eval``, ``edmem evaluate {exact_match,entity_linking,all}``.

See docs/evaluation.md.
"""
