"""Applications: thin modules that wire the layers below into a command (run_QA = fine-tune and
predict, pretrain, ask / link / convert, and the ``edmem serve`` server in ``edmem.apps.serve``).
Nothing below this floor imports it; see docs/architecture.md."""
