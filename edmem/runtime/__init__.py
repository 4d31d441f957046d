"""The runtime floor: devices, process groups, file writes, seeding, logging (docs/architecture.md).
Modules here import nothing else from edmem."""
