"""Which training examples each process sees, batch by batch, in each epoch.

A pure function of ``(seed, epoch, rank, world_size)``: the order of epoch ``e`` is
``randperm(n)`` from a generator seeded with ``seed + e`` — ``DistributedSampler`` semantics with
``set_epoch(e)`` called every epoch (fix of Q3: the original never called it, so every DDP epoch
repeated the same order). The list is padded to a multiple of the world size by repeating its
head and rank ``r`` takes positions ``r, r+W, …``, as ``DistributedSampler`` does.

Because the order is a function rather than a stream, resuming at batch ``b`` of epoch ``e`` is
just slicing — no sampler state to save, and the global RNGs (dropout, answer draws) are never
touched by the sampler.
"""

from __future__ import annotations

import math

import torch


def epoch_indices(num_examples: int, epoch: int, seed: int, rank: int = 0, world_size: int = 1,
                  shuffle: bool = True) -> list[int]:
    """This rank's example indices for ``epoch`` (0-based), ``ceil(n/W)`` of them."""
    if shuffle:
        generator = torch.Generator()
        generator.manual_seed(seed + epoch)
        order = torch.randperm(num_examples, generator=generator).tolist()
    else:
        order = list(range(num_examples))
    total = math.ceil(num_examples / world_size) * world_size
    padding = total - len(order)
    if padding:
        order += (order * math.ceil(padding / len(order)))[:padding]
    return order[rank:total:world_size]


def epoch_batches(num_examples: int, batch_size: int, epoch: int, seed: int, rank: int = 0,
                  world_size: int = 1, shuffle: bool = True) -> list[list[int]]:
    """:func:`epoch_indices` cut into batches of ``batch_size`` (the last one may be smaller)."""
    indices = epoch_indices(num_examples, epoch, seed, rank, world_size, shuffle)
    return [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
