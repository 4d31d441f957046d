"""Applications: thin modules that wire the layers below into a command (run_QA = fine-tune and
predict, pretrain; next the server). Nothing below this floor imports it; see
docs/architecture.md."""
