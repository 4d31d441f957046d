"""Batched entity-linking prediction (docs/training.md). Scoring the result (dev selection
included) is the evaluation layer's job: ``edmem.evaluation.api.selection_scores``.

One forward pass per batch in eval mode; the EL head's top-k rows (``topk_entity[2]``) are mapped
back to original entity ids. Under DDP every rank predicts the examples ``rank, rank+W, …``
(no padding, so no duplicated example is ever predicted — fix of Q5) and the per-example results,
keyed by id, are gathered on every rank; the merged result is in dataset order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from edmem.data.entity_rows import EntityRows
from edmem.inference.answer_types import AnswerTypePrior, rerank_predictions
from edmem.inference.fact_overrides import FactOverrides, override_predictions
from edmem.runtime import precision as amp
from edmem.runtime.distributed import DistInfo, gather_objects
from edmem.runtime.logging_setup import get_logger

logger = get_logger()

INFERENCE_INPUTS = ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask")


@dataclass
class Predictions:
    """Top-k original entity ids (best first) and their scores, per example id, dataset order."""

    topk: dict[str, list[int]]
    scores: dict[str, list[float]]


def apply_rankers(predictions: Predictions, examples: Sequence[Any], type_of: Callable[[int], str | None] | None,
                  prior: AnswerTypePrior | None = None, overrides: FactOverrides | None = None) -> int:
    """What a model directory adds after the EL head, in place and in the product's order: the
    answer-type prior reranks each question's top K, then the fact overrides apply
    (``EntityLinker._answers`` does the same per question). Returns how many predictions an
    override changed."""
    if prior is not None:
        rerank_predictions(prior, predictions.topk, predictions.scores, examples, type_of)
    if not overrides:
        return 0
    return override_predictions(overrides, predictions.topk, predictions.scores, examples, type_of)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model: eval never goes through DDP (its forward would sync buffers across ranks
    that may run different numbers of batches)."""
    return model.module if hasattr(model, "module") else model


def rank_batches(num_items: int, batch_size: int, dist: DistInfo, progress: bool = False,
                 desc: str = "predict",
                 lengths: Mapping[int, int] | Sequence[int] | None = None) -> Iterator[list[int]]:
    """This rank's share of an evaluation in batches: items ``rank, rank+W, …`` (no padding, so
    no item is scored twice — Q5); a tqdm bar on rank 0 with ``progress``.

    With ``lengths`` the share is batched in order of length, so a batch pads little (results
    are keyed by id, so the order does not matter; it saves ~20% of EL prediction time on WQ).
    """
    indices = list(range(dist.rank, num_items, dist.world_size))
    if lengths is not None:
        indices.sort(key=lambda i: lengths[i])
    starts: Any = range(0, len(indices), batch_size)
    if progress and dist.is_main:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc=desc, unit="batch", leave=False, disable=None)
    for first in starts:
        yield indices[first:first + batch_size]


@torch.no_grad()
def predict_entities(model: nn.Module, dataset: Any, collate: Callable[[list], dict],
                     batch_size: int, dist: DistInfo, rows: EntityRows,
                     progress: bool = False, precision: str = "fp32") -> Predictions:
    """Predict every example of ``dataset`` (an eval-mode ``ELDataset``) across all ranks;
    ``precision`` "bf16"/"fp16" runs the forward under autocast (docs/training.md)."""
    net = unwrap_model(model)
    was_training = net.training
    net.eval()
    start = time.time()
    local: dict[str, tuple[list[int], list[float]]] = {}
    items = {i: dataset[i] for i in range(dist.rank, len(dataset), dist.world_size)}  # this rank's
    lengths = {i: len(item["input_ids"]) for i, item in items.items()}
    for indices in rank_batches(len(dataset), batch_size, dist, progress, lengths=lengths):
        batch = collate([items[i] for i in indices])
        inputs = {k: batch[k].to(dist.device) for k in INFERENCE_INPUTS}
        with amp.autocast(dist.device, precision):
            out = net(**inputs, return_dict=True)
        top_rows = out.topk_entity[2].cpu()
        top_scores = _final_scores(out, top_rows)
        top_ids = rows.rows_to_ids(top_rows.numpy())
        for qid, ids, scores in zip(batch["id"], top_ids, top_scores):
            local[qid] = (ids.tolist(), scores)
    merged: dict[str, tuple[list[int], list[float]]] = {}
    for part in gather_objects(local):
        merged.update(part)
    order = [example.id for example in dataset.examples]
    missing = [qid for qid in order if qid not in merged]
    if missing:
        raise RuntimeError(f"{len(missing)} examples were not predicted (first: {missing[0]})")
    logger.info("Eval duration: %.3fs", time.time() - start)
    if was_training:
        net.train()
    return Predictions({qid: merged[qid][0] for qid in order},
                       {qid: merged[qid][1] for qid in order})


def _final_scores(out: Any, top_rows: torch.Tensor) -> list[list[float]]:
    scores = getattr(out, "topk_scores", None)
    if scores is None:
        return [[] for _ in range(top_rows.shape[0])]
    return scores[2].float().cpu().tolist()
