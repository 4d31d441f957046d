"""Fine-tuning loop: optimiser groups, schedule, early stopping, DDP, resume, checkpoint I/O."""
