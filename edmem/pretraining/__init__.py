"""Pretraining the entity memory: MLM + salient-span masking + entity-linking losses."""
