"""The bottom floor: process-level plumbing every other layer may use (devices, process groups
and gathering, mixed precision, atomic file writes, seeding, logging setup, allocator tuning,
console output of commands). Imports nothing of edmem but ``edmem.errors``/``edmem.constants``;
see docs/architecture.md."""
