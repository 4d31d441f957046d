"""The lowest floor: process-level services (atomic file writes, ...). Imports nothing above it."""
