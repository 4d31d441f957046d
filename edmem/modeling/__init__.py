"""The EDMem model: lower/upper encoder-decoder blocks, entity memory, checkpoints."""
