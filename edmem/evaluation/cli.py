"""``edmem evaluate <metric> ...``: the evaluation commands behind the ``edmem`` dispatcher.

* ``edmem evaluate exact_match -pred P -gold G [-ans_link A] -entity_vocab V [--json OUT]``
* ``edmem evaluate entity_linking -pred P -gold G [--ks K ...] [--json OUT]``
* ``edmem evaluate all -pred P -gold G [-ans_link A] [-entity_vocab V] [--ks K ...] [--json OUT]``

Imports nothing heavy: scoring needs neither torch nor transformers.
"""

from __future__ import annotations

import sys

from edmem.evaluation.commands import (run_all_command, run_entity_linking_command,
                                      run_exact_match_command)
from edmem.runtime.console import command_table

SUBCOMMANDS = {
    "exact_match": (run_exact_match_command, "string exact match (the original exact_match.py)"),
    "entity_linking": (run_entity_linking_command,
                       "top-1 entity-id accuracy (the original entity_linking_eval.py)"),
    "all": (run_all_command, "both, plus counts, hits@k and MRR"),
}
ALIASES = {"entity_linking_eval": "entity_linking", "em": "exact_match"}


def usage() -> str:
    return command_table("edmem evaluate <metric> -pred P -gold G [options]", "metrics",
                         {name: help_ for name, (_, help_) in SUBCOMMANDS.items()},
                         "Run 'edmem evaluate <metric> --help' for the options.")


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a metric; returns the exit status (0 ok, 1 bad input, 2 bad usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name = ALIASES.get(argv[0], argv[0])
    if name not in SUBCOMMANDS:
        print(f"edmem evaluate: error: unknown metric '{argv[0]}' (choose from "
              f"{', '.join(SUBCOMMANDS)})", file=sys.stderr)
        return 2
    return SUBCOMMANDS[name][0](argv[1:], prog=f"edmem evaluate {name}")


if __name__ == "__main__":
    raise SystemExit(main())
