"""Step counts, learning-rate schedule and early stopping (docs/training.md, "The loop").

Kept apart from the loop so each rule is testable with plain numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR


@dataclass(frozen=True)
class StepCounts:
    """What ``calculate_num_steps`` of the original computes (and logs)."""

    data_size: int            # examples per epoch after DistributedSampler padding
    steps_per_epoch: int      # micro-steps per epoch and process
    total_local_steps: int    # micro-steps over all epochs
    total_global_steps: int   # optimizer steps over all epochs
    warmup_steps: int


def calculate_num_steps(num_examples: int, train_batch_size: int, world_size: int,
                        num_train_epochs: int, gradient_accumulation_steps: int,
                        warmup_ratio: float) -> StepCounts:
    """The original formula with ``n`` = the launcher's world size (Q4: not the GPU count).

    ``total_batch = bs·n``, ``data_size = ceil(N/n)·n``, ``local = ceil(data_size/total_batch)·epochs``,
    ``global = ceil(local/GA)``, ``warmup = round(global·ratio)`` (Python's round, like the original).
    """
    n = max(1, world_size)
    total_batch = train_batch_size * n
    data_size = math.ceil(num_examples / n) * n
    steps_per_epoch = math.ceil(data_size / total_batch)
    total_local = steps_per_epoch * num_train_epochs
    total_global = math.ceil(total_local / gradient_accumulation_steps)
    return StepCounts(data_size, steps_per_epoch, total_local, total_global,
                      round(total_global * warmup_ratio))


def linear_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                    last_epoch: int = -1) -> LambdaLR:
    """``get_linear_schedule_with_warmup``: lr·s/warmup, then linear decay to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return LambdaLR(optimizer, factor, last_epoch=last_epoch)


@dataclass
class EarlyStopping:
    """Strict improvement over ``best`` (starts at −1 so the first evaluation always saves);
    ``wait`` counts evaluations since the last improvement; stop when ``wait >= wait_step``."""

    wait_step: int
    best: float = -1.0
    wait: int = 0

    def update(self, score: float) -> bool:
        """Record one evaluation; True when it is a new best (the caller saves a checkpoint)."""
        if score > self.best:
            self.best, self.wait = score, 0
            return True
        self.wait += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.wait >= self.wait_step

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        """Restore ``best`` and ``wait``; ``wait_step`` stays the current command line's."""
        self.best, self.wait = float(state["best"]), int(state["wait"])
