"""Data layer: original EDMem file formats, validation, tokenisation, markers, items and batches."""
