"""Dev evaluation of pretraining: recall@k of the three memory reads on SSM-masked mentions, and
perplexity (definitions in :mod:`edmem.pretraining.metrics`).

One eval-mode forward per batch with ``labels`` (the model shifts them into the decoder input and
returns ``loss = lm_loss`` plus the top-K rows of every memory read). The three reads see the same
mentions in the same order: the encoder reads the ``<E_s>`` of the masked input, the decoder and
the EL head those of the shifted clean input, and markers are never masked or dropped by the
shift (the dropped last token is ``</s>`` or padding). So one gold/salient vector per batch serves
all three. Under DDP rank r evaluates passages r, r+W, ... (no padding duplicates) and the sums
are all-reduced.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import torch
from torch import nn

from edmem.constants import LABEL_IGNORE
from edmem.inference.predict import rank_batches, unwrap_model
from edmem.pretraining.metrics import RECALL_KS, PretrainMetrics
from edmem.runtime import precision as amp
from edmem.runtime.distributed import DistInfo, all_reduce_sum

logger = logging.getLogger(__name__)

EVAL_INPUTS = ("input_ids", "attention_mask", "labels")


@torch.no_grad()
def evaluate_pretraining(model: nn.Module, dataset: Any, collate: Callable[[list], dict], batch_size: int,
                         dist: DistInfo, entity_start_id: int, ks: tuple[int, ...] = RECALL_KS,
                         progress: bool = False, precision: str = "fp32") -> dict[str, float]:
    """Recall@k per read and perplexity over ``dataset`` (a :class:`PretrainDataset`), all ranks."""
    net = unwrap_model(model)
    was_training = net.training
    net.eval()
    metrics = PretrainMetrics(ks)
    try:
        for indices in rank_batches(len(dataset), batch_size, dist, progress, desc="dev"):
            batch = collate([dataset[i] for i in indices])
            with amp.autocast(dist.device, precision):
                out = net(**{k: batch[k].to(dist.device) for k in EVAL_INPUTS}, return_dict=True)
            metrics.add_lm(float(out.loss), int((batch["labels"] != LABEL_IGNORE).sum()))
            starts_mask = batch["input_ids"] == entity_start_id
            gold = batch["input_entity_link"][starts_mask]
            salient = batch["salient"][starts_mask]
            reads = [ids.cpu() for ids in out.topk_entity]
            if any(r.shape[0] != gold.shape[0] for r in reads):
                raise RuntimeError(f"memory reads returned {[r.shape[0] for r in reads]} rows for "
                                   f"{gold.shape[0]} mentions; recall@k needs one row per <E_s>")
            metrics.add_recall(reads, gold, salient)
    finally:
        net.train(was_training)
    metrics.load_state(all_reduce_sum(metrics.state().to(dist.device)).cpu())
    return metrics.compute()
