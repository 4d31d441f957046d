"""The bottom floor: process-level plumbing every other layer may use (process groups and
gathering, atomic file writes, seeding, logging setup, allocator tuning, console output of
commands). Imports nothing of edmem but ``edmem.errors``/``edmem.constants``; see
docs/architecture.md."""
