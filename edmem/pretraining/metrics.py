"""Pretraining metrics: recall@k of the entity memory on SSM-masked mentions, and perplexity.

Recall@k of one memory access (encoder memory, lower-decoder memory, final EL head) = the share of
salient mentions whose gold entity row is among that access's top-k rows. Only SSM-masked mentions
count: there the mention's own tokens are hidden in the encoder input, so a hit means the memory
recalled the entity from context, which is what pretraining is meant to teach. Mentions whose gold
is NIL (0: an entity outside a compact memory) are ignored, like the NLL losses ignore them.

Perplexity = exp(token-weighted mean LM cross-entropy) over all non-pad label tokens.

Accumulators keep integer/float *sums*, so per-rank values can be all-reduced and then divided once.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch

from edmem.constants import NIL_ENTITY

RECALL_KS: tuple[int, ...] = (1, 5, 10, 20, 100)
ACCESSES: tuple[str, ...] = ("encoder", "decoder", "final")
PERPLEXITY = "perplexity"


def selection_score(metrics: dict[str, float], name: str) -> float:
    """The checkpoint-selection score of metric ``name``, higher is better: recall values as they
    are, perplexity negated."""
    return -metrics[PERPLEXITY] if name == PERPLEXITY else metrics[name]


def recall_hits(topk: torch.Tensor, gold: torch.Tensor, ks: Sequence[int] = RECALL_KS) -> dict[int, int]:
    """Number of rows whose ``gold`` id is within the first k columns of ``topk`` (M, K), per k.

    For k > K the whole list is used: if K covers every memory row that is exact; otherwise the
    caller must ask the model for at least max(ks) candidates (see ``evaluation_topk``).
    """
    if topk.shape[0] != gold.shape[0]:
        raise ValueError(f"topk has {topk.shape[0]} rows but gold has {gold.shape[0]}")
    match = topk == gold.view(-1, 1).to(topk.device)
    return {k: int(match[:, :k].any(dim=1).sum()) for k in ks}


class PretrainMetrics:
    """Sums for recall@k (per access) and perplexity; ``state()`` is a flat tensor for all-reduce."""

    def __init__(self, ks: Sequence[int] = RECALL_KS, accesses: Sequence[str] = ACCESSES):
        self.ks = tuple(ks)
        self.accesses = tuple(accesses)
        self.hits = {a: {k: 0 for k in self.ks} for a in self.accesses}
        self.mentions = 0
        self.nll_sum = 0.0
        self.tokens = 0

    def add_recall(self, topk: Iterable[torch.Tensor], gold: torch.Tensor, salient: torch.Tensor) -> None:
        """``topk`` = one (M, K) tensor per access, rows in mention order; ``gold``/``salient`` (M,)."""
        keep = salient.bool() & (gold != NIL_ENTITY)
        self.mentions += int(keep.sum())
        for access, rows in zip(self.accesses, topk):
            for k, n in recall_hits(rows[keep.to(rows.device)], gold[keep], self.ks).items():
                self.hits[access][k] += n

    def add_lm(self, mean_nll: float, num_tokens: int) -> None:
        self.nll_sum += float(mean_nll) * num_tokens
        self.tokens += int(num_tokens)

    # -- distributed reduction ------------------------------------------------------------------
    def state(self) -> torch.Tensor:
        values = [self.hits[a][k] for a in self.accesses for k in self.ks]
        return torch.tensor(values + [self.mentions, self.nll_sum, self.tokens], dtype=torch.float64)

    def load_state(self, state: torch.Tensor) -> None:
        values = state.tolist()
        for i, (a, k) in enumerate((a, k) for a in self.accesses for k in self.ks):
            self.hits[a][k] = int(round(values[i]))
        self.mentions, self.nll_sum, self.tokens = int(round(values[-3])), values[-2], int(round(values[-1]))

    # -- results ----------------------------------------------------------------------------------
    def compute(self) -> dict[str, float]:
        """``{"{access}_recall@{k}": %, ..., "perplexity", "lm_loss", "salient_mentions"}``."""
        out: dict[str, float] = {}
        for a in self.accesses:
            for k in self.ks:
                out[f"{a}_recall@{k}"] = 100.0 * self.hits[a][k] / self.mentions if self.mentions else 0.0
        lm_loss = self.nll_sum / self.tokens if self.tokens else float("nan")
        out["lm_loss"] = lm_loss
        out["perplexity"] = math.exp(min(lm_loss, 700.0)) if self.tokens else float("nan")
        out["salient_mentions"] = float(self.mentions)
        return out


def format_metrics(metrics: dict[str, float], ks: Sequence[int] = RECALL_KS) -> str:
    """One log line: ``ppl 12.3 | encoder R@1/5/10/20/100 1.0/... | decoder ... | final ...``."""
    parts = [f"ppl {metrics.get('perplexity', float('nan')):.2f}"]
    for a in ACCESSES:
        if f"{a}_recall@{ks[0]}" in metrics:
            ks_txt = "/".join(str(k) for k in ks)
            vals = "/".join(f"{metrics[f'{a}_recall@{k}']:.1f}" for k in ks)
            parts.append(f"{a} R@{ks_txt} {vals}")
    parts.append(f"{int(metrics.get('salient_mentions', 0))} salient mentions")
    return " | ".join(parts)
