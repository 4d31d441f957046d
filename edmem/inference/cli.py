"""``edmem predict``: write ``{prefix}predictions.json`` with the best checkpoint of
``--output_dir`` (an edmem checkpoint or one written by the original code)."""

from __future__ import annotations

from edmem.training.runner import main_with_errors


def main(argv: list[str] | None = None) -> int:
    return main_with_errors(argv, mode="predict", prog="edmem predict")


if __name__ == "__main__":
    raise SystemExit(main())
