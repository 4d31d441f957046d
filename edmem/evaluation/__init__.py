"""Scoring: the original exact_match / entity_linking_eval outputs plus hits@k and MRR. No torch."""
