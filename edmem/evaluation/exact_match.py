"""``python -m edmem.evaluation.exact_match -pred P -gold G [-ans_link A] -entity_vocab V
[--json OUT]``: the original ``evaluation/openqa/exact_match.py`` with the same arguments, printed
lines and figures. The scoring itself is :func:`edmem.evaluation.exact_match_score.compute_exact_match`.
"""

from __future__ import annotations

from edmem.evaluation.commands import run_exact_match_command


def main(argv: list[str] | None = None) -> int:
    """Command line of the original script (plus ``--json``); returns the exit status."""
    return run_exact_match_command(argv, prog="python -m edmem.evaluation.exact_match")


if __name__ == "__main__":
    raise SystemExit(main())
