"""``python -m edmem.evaluation.entity_linking_eval -pred P -gold G [--json OUT]``: the original
``evaluation/openqa/entity_linking_eval.py`` with the same printed lines and figures; hits@k / MRR
and per-category counts go to ``--json``. The scoring itself is
:func:`edmem.evaluation.entity_linking_score.compute_entity_linking`.
"""

from __future__ import annotations

from edmem.evaluation.commands import run_entity_linking_command


def main(argv: list[str] | None = None) -> int:
    """Command line of the original script (plus ``--json``); returns the exit status."""
    return run_entity_linking_command(argv, prog="python -m edmem.evaluation.entity_linking_eval")


if __name__ == "__main__":
    raise SystemExit(main())
