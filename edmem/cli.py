"""``edmem <command> ...``: a thin dispatcher. Each command lives in its own module and is imported
lazily, so ``edmem evaluate`` starts fast and never imports torch."""

from __future__ import annotations

import importlib
import sys

# command -> (module, one-line help). Each module exposes ``main(argv: list[str] | None) -> int``.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("edmem.training.cli", "fine-tune an entity-linking model (run_QA.py flags, friendlier help)"),
    "predict": ("edmem.inference.cli", "write predictions.json with a trained model"),
    "evaluate": ("edmem.evaluation.cli", "score predictions (exact_match / entity_linking_eval / hits@k)"),
    "pretrain": ("edmem.pretraining.cli", "pretrain the entity memory on entity-annotated passages"),
    "demo": ("edmem.demo.cli", "build the geographic knowledge base, pretrain, fine-tune, predict, evaluate"),
    "memory": ("edmem.knowledge.cli", "add entities, edit facts, hide entities in a model directory's memory"),
    "export-trie": ("edmem.data.tries", "convert a prefix-trie pickle to JSON (restricted unpickler)"),
    "run_qa": ("edmem.run_qa", "the original run_QA.py command line (same flags)"),
}


def command_table(synopsis: str, heading: str, commands: dict[str, str], footer: str) -> str:
    """The usage text of a command with sub-commands (shared by ``edmem`` and ``edmem evaluate``)."""
    width = max(map(len, commands)) + 2
    lines = [f"usage: {synopsis}", "", f"{heading}:"]
    lines += [f"  {name:<{width}}{help_}" for name, help_ in commands.items()]
    lines += ["", footer]
    return "\n".join(lines)


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
        from edmem import __version__
        print(f"edmem {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"edmem: unknown command '{command}'\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
