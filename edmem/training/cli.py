"""``edmem train``: fine-tune for entity linking with the run_QA.py flags, grouped, with examples
(``edmem train --help``). ``--do_train`` and ``--generate_target entity_linking`` are implied."""

from __future__ import annotations

from edmem.training.runner import main_with_errors


def main(argv: list[str] | None = None) -> int:
    return main_with_errors(argv, mode="train", prog="edmem train")


if __name__ == "__main__":
    raise SystemExit(main())
