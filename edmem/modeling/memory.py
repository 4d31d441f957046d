"""The entity memory: one (d_e, N) table and the modules that read it (docs/model.md).

Memory-access cost dominates EDMem at N = 1,000,010 rows, so this module is written around it:

* training needs the full softmax over all N rows (the retrieved embedding is ``α @ Eᵀ`` and the
  NLL is over all rows). :class:`_SoftmaxNLL` produces the probabilities and the per-mention NLL in
  one pass and keeps ONE M×N tensor for backward (instead of softmax + log-softmax outputs), and
  the NLL is computed as ``logsumexp − score`` (= ``log_softmax``, fixing docs/quirks.md Q9);
* evaluation scores the entities chunk by chunk, keeps a running top-K, and gathers only the K
  winning embeddings per mention (never an M×N softmax @ table).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from edmem.config import EDMemConfig
from edmem.constants import NIL_ENTITY
from edmem.modeling.layers import dropout
from edmem.modeling.topk import DenseRows, fused_topk


class EntityTable(nn.Module):
    """The entity embedding table, ``weight`` of shape (d_e, N): column j = entity j.

    The (d_e, N) layout is the original's (an ``nn.Linear(N → d_e)``), kept so that checkpoints load
    without transposing a 1 GB tensor. The same module object is registered in every memory
    reader, which makes ``*.EntityEmbedding.weight`` aliases of one Parameter (as in the original).
    """

    #: An eval-mode read backend (``edmem.index``: ``search``/``gather``) set by
    #: ``edmem.index.attach_memory_index``; None = the built-in exact read below. Never used in training.
    index = None

    def __init__(self, num_entities: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim, num_entities))

    @property
    def num_entities(self) -> int:
        return self.weight.shape[1]

    def compute_copy(self, dtype: torch.dtype) -> torch.Tensor:
        """A detached ``dtype`` copy of the table for mixed-precision reads, made again only when
        the weight changed (its version counter moves at every in-place optimizer update), so a
        bf16 run casts the table once per optimizer step, not at every read (docs/training.md,
        "Mixed precision"). Gradients never flow through it: the reads add theirs to the fp32
        weight through :class:`TableGrad`."""
        w = self.weight
        key = (w._version, w.data_ptr(), w.device, dtype)
        cached = getattr(self, "_compute_copy", None)
        if cached is None or cached[0] != key:
            cached = (key, w.detach().to(dtype))
            self._compute_copy = cached
        return cached[1]

    def extra_repr(self) -> str:
        return f"entities={self.weight.shape[1]}, dim={self.weight.shape[0]}"


class Projection(nn.Module):
    """``Linear`` followed by dropout; the wrapper exists for the original key names (``*.linear.*``)."""

    def __init__(self, in_features: int, out_features: int, dropout: float):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(self.linear(x), self.dropout.p, self.training)


class _SoftmaxNLL(torch.autograd.Function):
    """``probs = softmax(scores)`` and ``nll = logsumexp(scores) − scores[gold]`` in one pass.

    Saves only ``probs`` for backward (one M×N tensor). Gradient:
    ``d scores = probs ⊙ (g_probs − ⟨g_probs, probs⟩ + g_nll) − g_nll · onehot(gold)``.
    """

    @staticmethod
    def forward(ctx, scores: torch.Tensor, gold: torch.Tensor):  # type: ignore[override]
        probs, nll = softmax_nll_(scores.clone(), gold)  # the copy is the one saved M×N buffer
        ctx.save_for_backward(probs, gold)
        return probs, nll

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_probs: torch.Tensor | None, g_nll: torch.Tensor | None):  # type: ignore[override]
        probs, gold = ctx.saved_tensors
        return softmax_nll_backward_(g_probs, probs, gold, g_nll, inplace=False), None


def softmax_nll_(scores: torch.Tensor, gold: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IN PLACE on ``scores`` (M, N): returns ``(probs, nll)`` with ``probs = softmax(scores)``
    (in the ``scores`` buffer) and ``nll = logsumexp(scores) − scores[gold]`` (M,), the
    ``log_softmax`` NLL (docs/quirks.md Q9). The one place this math is written."""
    probs = scores.sub_(scores.amax(dim=1, keepdim=True))
    gold_shifted = probs.gather(1, gold[:, None]).squeeze(1)
    probs.exp_()
    total = probs.sum(dim=1, keepdim=True)
    nll = total.squeeze(1).log() - gold_shifted
    probs.div_(total)
    return probs, nll


def softmax_nll_backward_(g_probs: torch.Tensor | None, probs: torch.Tensor, gold: torch.Tensor,
                          g_nll: torch.Tensor | None, inplace: bool) -> torch.Tensor:
    """``d scores`` of :func:`softmax_nll_` given ``d probs`` and ``d nll``:
    ``probs ⊙ (g_probs − ⟨g_probs, probs⟩ + g_nll) − g_nll · onehot(gold)``. With ``inplace`` the
    result is computed in the ``g_probs`` buffer (no second M×N tensor)."""
    if g_probs is None:
        grad = torch.zeros_like(probs)
    else:
        dot = torch.bmm(g_probs.unsqueeze(1), probs.unsqueeze(2)).view(-1, 1)
        grad = g_probs.sub_(dot) if inplace else g_probs - dot
    if g_nll is not None:
        grad.add_(g_nll[:, None])
    grad.mul_(probs)
    if g_nll is not None:
        rows = torch.arange(gold.shape[0], device=gold.device)
        grad[rows, gold] -= g_nll
    return grad


class TableGrad:
    """Gradient of the entity table accumulated in ONE (d_e, N) buffer by the training reads.

    Three reads use the table, each twice (scores and retrieval). Left to autograd, every use
    returns its own full (d_e, N) gradient, which the engine adds into a buffer: one table-sized
    transient on top of the buffer at every read (100 MB on the 'small' bench, at the peak of the
    backward pass). Here :class:`_TrainRead` adds its contributions into ``buf`` in place
    (``addmm_``) and :class:`_TableSink` hands ``buf`` to autograd as the table's gradient once all
    reads are done, so ``AccumulateGrad``, DDP hooks and ``grad`` behave as usual.
    """

    def __init__(self) -> None:
        self.buf: torch.Tensor | None = None

    def add(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """``buf += a @ b`` without a table-sized temporary."""
        if self.buf is None:
            self.buf = a @ b
        else:
            self.buf.addmm_(a, b)


class _TableSink(torch.autograd.Function):
    """Identity on the table whose backward returns what the reads put in ``TableGrad.buf``."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, acc: TableGrad):  # type: ignore[override]
        ctx.acc = acc
        ctx.set_materialize_grads(False)
        return table.detach()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor | None):  # type: ignore[override]
        buf, ctx.acc.buf = ctx.acc.buf, None
        if grad is not None:  # a use of the table that went through autograd (fallback path)
            buf = grad if buf is None else buf.add_(grad)
        return buf, None


class TrainingTable(NamedTuple):
    """The entity table as the training reads of one forward see it: ``weight`` (d_e, N) and the
    gradient accumulator they share (None when no gradient is needed; see :class:`TableGrad`)."""

    weight: torch.Tensor
    grad: TableGrad | None


def table_for_training(table: torch.Tensor) -> TrainingTable:
    """The :class:`TrainingTable` for one training forward."""
    if not (torch.is_grad_enabled() and table.requires_grad):
        return TrainingTable(table, None)
    acc = TableGrad()
    return TrainingTable(_TableSink.apply(table, acc), acc)


class _TrainRead(torch.autograd.Function):
    """One fp32 training read: ``scores = q @ E``, ``probs = softmax(scores)``, per-mention
    ``nll = logsumexp(scores) − scores[gold]``, ``retrieved = probs @ Eᵀ`` (when ``with_output``).

    The same operations as ``q @ E`` → :class:`_SoftmaxNLL` → ``probs @ Eᵀ`` (same values), with
    one M×N buffer from the score product to the saved probabilities (no second M×N in forward),
    the score gradient computed in place in the M×N ``d probs`` buffer, and the table gradient
    added into ``acc`` (no table-sized temporaries).

    ``compute``: a low-precision copy of ``table`` (mixed precision): the three products with the
    table use it, while scores, softmax, NLL and the table gradient stay fp32. None = all fp32
    (every cast below is then a no-op and the arithmetic is the fp32 path's, bit for bit).
    """

    @staticmethod
    def forward(ctx, query, table, gold, entity_mask, with_output, acc, trace, compute=None):  # type: ignore[override]
        mat = table if compute is None else compute
        with torch.autocast(query.device.type, enabled=False):
            return _TrainRead._forward(ctx, query, mat, gold, entity_mask, with_output, acc, trace)

    @staticmethod
    def _forward(ctx, query, mat, gold, entity_mask, with_output, acc, trace):
        scores = (query.to(mat.dtype) @ mat).float()
        masked = None
        if entity_mask is not None:
            masked = entity_mask.to(device=scores.device).bool()
            scores.masked_fill_(masked, torch.finfo(scores.dtype).min)
        if trace is not None:
            trace.append(scores.clone())
        probs, nll = softmax_nll_(scores, gold)
        retrieved = (probs.to(mat.dtype) @ mat.t()).to(query.dtype) if with_output else None
        ctx.save_for_backward(query, mat, probs, gold, masked)
        ctx.acc = acc
        ctx.set_materialize_grads(False)
        return retrieved, nll

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_ret, g_nll):  # type: ignore[override]
        with torch.autocast(g_nll.device.type if g_nll is not None else g_ret.device.type, enabled=False):
            return _TrainRead._backward(ctx, g_ret, g_nll)

    @staticmethod
    def _backward(ctx, g_ret, g_nll):
        query, table, probs, gold, masked = ctx.saved_tensors   # table: the fp32 one or its copy
        acc: TableGrad = ctx.acc
        g_probs = None
        if g_ret is not None:
            g_probs = (g_ret.to(table.dtype) @ table).float()   # d probs, (M, N)
            acc.add(g_ret.t().float(), probs)           # retrieval part of d table
        grad = softmax_nll_backward_(g_probs, probs, gold, g_nll, inplace=True)  # d scores, (M, N)
        if masked is not None:
            grad.masked_fill_(masked, 0.0)
        acc.add(query.t().float(), grad)                # score part of d table (fp32)
        g_query = (grad.to(table.dtype) @ table.t()).to(query.dtype) if ctx.needs_input_grad[0] else None
        return g_query, None, None, None, None, None, None, None


def _autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The autocast dtype in force for ``x``'s device type, or None outside autocast."""
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None


def mean_nll(nll: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """Mean NLL over non-NIL golds (``NLLLoss(ignore_index=0)``); 0 (not NaN) when there are none (docs/quirks.md Q10).

    The result stays connected to the graph even when it is 0, so ``backward()`` always works.
    """
    keep = (gold != NIL_ENTITY).to(nll.dtype)
    return (nll * keep).sum() / keep.sum().clamp(min=1.0)


@dataclass
class MemoryAccess:
    """What one memory read produced (positions are [row, col] in ``torch.nonzero`` order).

    ``loss`` in training (None without golds), ``topk_ids``/``topk_scores`` (M, K) in eval,
    ``output`` (B, T, d) for readers with an output projection. ``query``/``scores`` only when traced.
    """

    positions: torch.Tensor
    loss: torch.Tensor | None = None
    output: torch.Tensor | None = None
    topk_ids: torch.Tensor | None = None
    topk_scores: torch.Tensor | None = None
    query: torch.Tensor | None = None
    scores: torch.Tensor | None = None


def mention_positions(token_ids: torch.Tensor, entity_start_id: int, last_only: bool) -> torch.Tensor:
    """(M, 2) [row, col] of every ``<E_s>`` (row-major), or of the last column of every row.

    ``last_only`` requires that the last token of every row is ``<E_s>`` (the original asserts it).
    """
    if not last_only:
        return torch.nonzero(token_ids == entity_start_id)
    rows = torch.arange(token_ids.shape[0], device=token_ids.device)
    last = torch.full_like(rows, token_ids.shape[1] - 1)
    if not bool((token_ids[:, -1] == entity_start_id).all()):
        raise ValueError("the entity-linking head reads the last decoder position, which must be <E_s> "
                         f"(id {entity_start_id}) in every row; got {token_ids[:, -1].tolist()}")
    return torch.stack([rows, last], dim=1)


class EntityMemory(nn.Module):
    """One reader of the entity table: ``InputLayer`` (d → d_e), the shared ``EntityEmbedding`` and,
    for the encoder/decoder memories, ``OutputLayer`` (d_e → d). The EL head has no output layer."""

    def __init__(self, config: EDMemConfig, table: EntityTable, output_embedding: bool):
        super().__init__()
        self.entity_start_id = config.entity_start_token_id
        self.top_k = config.inference_nearest_k_entity
        self.chunk_size = config.memory_chunk_size
        self.InputLayer = Projection(config.d_model, config.entity_embed_size, config.dropout)
        self.EntityEmbedding = table
        self.OutputLayer = (Projection(config.entity_embed_size, config.d_model, config.dropout)
                            if output_embedding else None)

    def forward(self, token_ids: torch.Tensor, hidden: torch.Tensor, gold: torch.Tensor | None = None,
                last_only: bool = False, entity_mask: torch.Tensor | None = None,
                trace: bool = False, table: TrainingTable | None = None,
                cue: torch.Tensor | None = None) -> MemoryAccess:
        """Read the memory at the ``<E_s>`` positions of ``token_ids`` using ``hidden`` (B, T, d).

        ``gold`` (B, T) entity rows (training loss); ``entity_mask`` (N,) 1 = masked entity.
        Training mode: full softmax over N (loss + dense retrieval). Eval mode: top-K only.
        ``table``: ``table_for_training(weight)`` shared by the reads of one forward (the model
        passes it so that the table gradient has one buffer); None → this read's own.
        ``cue`` (B, T): where 1, the read returns the gold row itself (memory-cue pretraining,
        docs/pretraining.md); the scores, top-K and loss are the read's own.
        """
        positions = mention_positions(token_ids, self.entity_start_id, last_only)  # (M, 2)
        rows, cols = positions[:, 0], positions[:, 1]
        query = self.InputLayer(hidden[rows, cols])  # (M, d) -> (M, d_e)
        access = MemoryAccess(positions=positions, query=query if trace else None)
        lowp = _autocast_dtype(query)
        if self.training:
            weight, acc = table if table is not None else table_for_training(self.EntityEmbedding.weight)
            retrieved = self._train_read(access, query, weight, acc, gold[rows, cols] if gold is not None else None,
                                         entity_mask, trace, lowp)
        else:
            weight = self.EntityEmbedding.weight
            if lowp is not None and weight.dtype == torch.float32:
                weight = self.EntityEmbedding.compute_copy(lowp)   # unchanged weights: cast once
            retrieved = self._eval_read(access, query, weight, entity_mask, trace)
        if cue is not None and retrieved is not None:
            retrieved = _with_cue_rows(retrieved, cue[rows, cols], None if gold is None else gold[rows, cols],
                                       weight, entity_mask)
        if self.OutputLayer is not None and retrieved is not None:
            projected = self.OutputLayer(retrieved.to(hidden.dtype))
            access.output = hidden.new_zeros(hidden.shape).index_put((rows, cols), projected.to(hidden.dtype))
        return access

    # ------------------------------------------------------------------ training
    def _train_read(self, access: MemoryAccess, query: torch.Tensor, table: torch.Tensor, acc: TableGrad | None,
                    gold: torch.Tensor | None, entity_mask: torch.Tensor | None,
                    trace: bool, lowp: torch.dtype | None = None) -> torch.Tensor | None:
        needs_output = self.OutputLayer is not None
        if gold is None and not needs_output:
            return None
        if acc is not None and table.dtype == torch.float32 and (
                lowp is not None or query.dtype == torch.float32):
            # fp32, or autocast: products with the once-per-step low-precision copy of the table,
            # softmax / NLL / table gradient in fp32 (docs/training.md, "Mixed precision").
            compute = self.EntityEmbedding.compute_copy(lowp) if lowp is not None else None
            gold_cols = torch.zeros(query.shape[0], dtype=torch.long, device=query.device) if gold is None \
                else _gold_columns(gold, entity_mask)
            traced: list[torch.Tensor] | None = [] if trace else None
            retrieved, nll = _TrainRead.apply(query, table, gold_cols, entity_mask, needs_output, acc, traced,
                                              compute)
            if traced:
                access.scores = traced[0]
            if gold is not None:
                access.loss = mean_nll(nll, gold)
            return retrieved
        # Generic path (autocast, half precision, no gradient): autograd through the same math.
        # Softmax and NLL in fp32 even under autocast: N is large and probabilities are tiny.
        if lowp is not None and table.dtype == torch.float32 and not table.requires_grad:
            table = self.EntityEmbedding.compute_copy(lowp)   # a frozen table: cast once
        scores = (query @ table).float()
        scores = _apply_entity_mask(scores, entity_mask)
        if trace:
            access.scores = scores.detach()
        gold_cols = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device) if gold is None \
            else _gold_columns(gold, entity_mask)
        probs, nll = _SoftmaxNLL.apply(scores, gold_cols)
        del scores
        if gold is not None:
            access.loss = mean_nll(nll, gold)
        if not needs_output:
            return None
        return probs.to(table.dtype) @ table.t()  # (M, d_e): weighted sum over ALL entities

    # ------------------------------------------------------------------ evaluation
    def _eval_read(self, access: MemoryAccess, query: torch.Tensor, table: torch.Tensor,
                   entity_mask: torch.Tensor | None, trace: bool) -> torch.Tensor:
        index = self.EntityEmbedding.index
        if index is not None and entity_mask is None and not trace:  # docs/model.md, "Memory indexes"
            values, ids = index.search(query, self.top_k)
            rows = index.gather(ids)
        else:
            values, ids = chunked_topk(query, table, min(self.top_k, table.shape[1]), self.chunk_size,
                                       entity_mask, keep_scores=trace, access=access)
            rows = DenseRows(table, columns=True).gather(ids)   # (M, K, d_e) float32
        access.topk_ids, access.topk_scores = ids, values
        beta = F.softmax(values.float(), dim=-1)  # (M, K); the weighted sum runs in fp32
        return torch.bmm(beta.unsqueeze(1), rows).squeeze(1).to(query.dtype)  # (M, d_e)


def _with_cue_rows(retrieved: torch.Tensor, cue: torch.Tensor, gold: torch.Tensor | None,
                   table: torch.Tensor, entity_mask: torch.Tensor | None) -> torch.Tensor:
    """``retrieved`` (M, d_e) with the gold row's embedding at the mentions flagged in ``cue`` (M,);
    ``gold`` (M,) are the mentions' entity links.

    The row goes through autograd (in training its gradient reaches the table through the
    ``TableGrad`` sink's fallback), so the passage's loss trains the cue entity's own row.
    """
    flagged = cue.bool()
    if not bool(flagged.any()):
        return retrieved
    if gold is None:
        raise ValueError("a memory cue needs the gold entity links of its mentions (input_entity_link)")
    if bool((flagged & (gold == NIL_ENTITY)).any()):
        raise ValueError("a memory cue sits on a mention without an entity (NIL link)")
    cols = torch.where(flagged, _gold_columns(gold, entity_mask), 0)
    given = DenseRows(table, columns=True).gather(cols).to(retrieved.dtype)
    return torch.where(flagged[:, None], given, retrieved)


def _apply_entity_mask(scores: torch.Tensor, entity_mask: torch.Tensor | None,
                       start: int = 0) -> torch.Tensor:
    """Masked entities get ``finfo(dtype).min`` (the original's value, docs/quirks.md Q11) → probability 0."""
    if entity_mask is None:
        return scores
    masked = entity_mask[start:start + scores.shape[1]].to(device=scores.device).bool()
    return scores.masked_fill(masked, torch.finfo(scores.dtype).min)


def _gold_columns(gold: torch.Tensor, entity_mask: torch.Tensor | None) -> torch.Tensor:
    """Column of each gold id. With an entity mask the original's labels are COMPACT ids (re-indexed
    over the unmasked entities, docs/quirks.md Q11) and its NLL runs over the unmasked columns only; mapping the
    compact id back to its column gives the same value without building an M×N' copy."""
    if entity_mask is None:
        return gold
    unmasked = torch.nonzero(entity_mask.to(gold.device) == 0).squeeze(1)
    if gold.numel() and int(gold.max()) >= unmasked.numel():
        raise ValueError(f"gold entity id {int(gold.max())} is outside the {unmasked.numel()} unmasked "
                         "entities (with an entity mask gold ids must be re-indexed, see docs/model.md)")
    return unmasked[gold]


def chunked_topk(query: torch.Tensor, table: torch.Tensor, k: int, chunk_size: int,
                 entity_mask: torch.Tensor | None = None, keep_scores: bool = False,
                 access: MemoryAccess | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of ``query @ table`` over entities, scoring ``chunk_size`` entities at a time.

    Peak extra memory is M × chunk_size scores instead of M × N. Returns (values, ids), both
    (M, k), sorted by descending score. Without ``keep_scores`` this is the fused blocked kernel
    (:func:`edmem.modeling.topk.fused_topk`: equal to ``topk(scores, k)`` up to ties).
    """
    if not keep_scores:
        return fused_topk(query, DenseRows(table, columns=True), k, chunk_size, entity_mask)
    num = table.shape[1]
    best_vals: torch.Tensor | None = None
    best_ids: torch.Tensor | None = None
    kept: list[torch.Tensor] = []
    for start in range(0, num, chunk_size):
        scores = _apply_entity_mask(query @ table[:, start:start + chunk_size], entity_mask, start)
        kept.append(scores)
        vals, ids = scores.topk(min(k, scores.shape[1]), dim=1)
        ids = ids + start
        if best_vals is None:
            best_vals, best_ids = vals, ids
        else:
            merged_vals = torch.cat([best_vals, vals], dim=1)
            merged_ids = torch.cat([best_ids, ids], dim=1)
            best_vals, order = merged_vals.topk(k, dim=1)
            best_ids = merged_ids.gather(1, order)
    if access is not None:
        access.scores = torch.cat(kept, dim=1)
    assert best_vals is not None and best_ids is not None
    return best_vals, best_ids
