"""The floors of the package, bottom to top: the one definition of what may import what.

A module may import its own package and any package on a LOWER floor; packages on the same floor
are peers and never import each other (so e.g. inference never imports training); nothing imports
upward. ``tests/test_layering.py`` walks ``edmem/`` and fails on any violation, naming the
offending import; docs/architecture.md explains each floor. A new top-level module or package
must be added here.
"""

from __future__ import annotations

FLOORS: tuple[tuple[str, ...], ...] = (
    ("__init__", "errors", "constants", "floors"),   # leaves: no edmem imports
    ("runtime",),                                    # process groups, atomic writes, seeding, logging
    ("config",),                                     # EDMemConfig (pure; no flags)
    ("data",),                                       # files -> examples -> items -> batches
    ("modeling", "evaluation"),                      # the model | scoring (no torch)
    ("training", "inference"),                       # the loop, checkpoints, flags | prediction
    ("pretraining",),                                # corpora, masking, recall@k
    ("apps",),                                       # run_qa, pretrain: wiring of the layers
    ("demo",),                                       # `edmem demo` (uses the apps)
    ("cli", "run_qa"),                               # entry points: `edmem`, `python -m edmem.run_qa`
    ("__main__",),                                   # `python -m edmem` (calls cli)
)


def floor_of(name: str) -> int:
    """The floor of a top-level name under ``edmem`` (``training`` for ``edmem.training.loop``)."""
    for level, names in enumerate(FLOORS):
        if name in names:
            return level
    raise KeyError(name)
