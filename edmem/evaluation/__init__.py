"""Scoring: the original exact_match / entity_linking_eval outputs plus hits@k and MRR. No torch.

Public API (import the submodules; this package imports nothing so that ``normalize`` stays light):

* ``edmem.evaluation.api.score_predictions(predictions, gold, **options) -> dict`` — every figure,
  the ``--json`` document; ``api.evaluate(...)`` returns the typed :class:`api.Evaluation`.
* ``edmem.evaluation.loaders``: ``load_gold``, ``load_predictions``, ``load_answer_links``,
  ``load_entity_vocab``, ``GoldSet.from_records``, ``check_same_ids``.
* ``edmem.evaluation.normalize``: ``normalize_answer``, ``exact_match``, ``strip_parenthetical``,
  ``is_pure_entity``.
* ``edmem.evaluation.metrics``: ``mean_percent``, ``ranking_metrics``, ``first_rank``.
* command lines: ``python -m edmem.evaluation.exact_match``, ``python -m
  edmem.evaluation.entity_linking_eval``, ``edmem evaluate {exact_match,entity_linking,all}``.

See docs/evaluation.md.
"""
