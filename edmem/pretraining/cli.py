"""``edmem pretrain``: parse the flags, run :func:`edmem.pretraining.runner.pretrain`, report.

Bad input or settings end with one ``edmem pretrain: error: ...`` line and exit status 1, like
``edmem train``.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    from edmem.errors import USER_ERRORS
    from edmem.pretraining.args import parse_args
    from edmem.pretraining.runner import pretrain
    from edmem.training.runner import report_error

    args = parse_args(argv)
    try:
        result = pretrain(args)
    except (*USER_ERRORS, OSError) as exc:
        return report_error("edmem pretrain", exc)
    except KeyboardInterrupt:
        print("edmem pretrain: interrupted (continue with --resume)", file=sys.stderr)
        return 130
    if int(os.environ.get("RANK", "0")) != 0:  # one summary per job, not per process
        return 0
    best = result.best_metrics or {}
    shown = (f", {result.selection_metric} {best[result.selection_metric]:.4g}"
             if result.selection_metric in best else "")
    print(f"Pretrained {result.global_step} steps ({result.stopped_by}); best checkpoint from step "
          f"{result.best_step}{shown}: {result.output_dir} (use it as --pretrain_ckpt)")
    return 0
