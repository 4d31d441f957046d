"""``edmem pretrain``: parse the flags, run :func:`edmem.pretraining.runner.pretrain`, report."""

from __future__ import annotations

import sys

from edmem.errors import EDMemError


def main(argv: list[str] | None = None) -> int:
    from edmem.pretraining.args import parse_args
    from edmem.pretraining.runner import pretrain
    from edmem.training.distributed import cleanup

    args = parse_args(argv)
    try:
        result = pretrain(args)
    except EDMemError as exc:  # bad input or settings: one clear line, no traceback
        print(f"edmem pretrain: error: {exc}", file=sys.stderr)
        return 2
    finally:
        cleanup()
    best = result.best_metrics or {}
    shown = f", {result.selection_metric} {best[result.selection_metric]:.4g}" if result.selection_metric in best else ""
    print(f"Pretrained {result.global_step} steps ({result.stopped_by}); best checkpoint from step "
          f"{result.best_step}{shown}: {result.output_dir} (use it as --pretrain_ckpt)")
    return 0
