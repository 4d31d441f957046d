"""Batched entity-linking prediction and predictions.json writing."""
