"""``edmem <command> ...``: a thin dispatcher. Each command lives in its own module and is imported
lazily, so ``edmem evaluate`` starts fast and never imports torch."""

from __future__ import annotations

import importlib
import sys

from edmem import __version__
from edmem.runtime.console import command_table

# command -> ("module" or "module:function", one-line help). The function (default ``main``) has
# the signature ``(argv: list[str] | None) -> int``.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("edmem.apps.run_qa:train_main", "fine-tune an entity-linking model (run_QA.py flags, friendlier help)"),
    "predict": ("edmem.apps.run_qa:predict_main", "write predictions.json with a trained model"),
    "evaluate": ("edmem.evaluation.cli", "score predictions (exact_match / entity_linking_eval / hits@k)"),
    "pretrain": ("edmem.apps.pretrain", "pretrain the entity memory on entity-annotated passages"),
    "demo": ("edmem.demo.cli", "build the geographic knowledge base, pretrain, fine-tune, predict, evaluate"),
    "export-trie": ("edmem.data.tries", "convert a prefix-trie pickle to JSON (restricted unpickler)"),
    "run_qa": ("edmem.run_qa", "the original run_QA.py command line (same flags)"),
}


def usage() -> str:
    return command_table("edmem <command> [options]", "commands",
                         {name: help_ for name, (_, help_) in COMMANDS.items()},
                         "Run 'edmem <command> --help' for the options of a command.")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"edmem {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"edmem: unknown command '{command}'\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, _, function = COMMANDS[command][0].partition(":")
    entry = getattr(importlib.import_module(module_name), function or "main")
    return int(entry(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
