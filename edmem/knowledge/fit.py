"""Train chosen rows of the entity table, and nothing else, with the pretraining losses.

The objective is pretraining's (docs/pretraining.md): MLM + salient-span masking (+ mention
deletion, ``mention_deletion_probability``) on the given passages, loss = LM cross-entropy +
``elloss_weight`` × the three memory reads' NLLs. Mention deletion removes one mention from the
encoder input while the decoder still reconstructs it, so at its ``<E_s>`` the EL head must name it
from the other mentions' rows (for "The currency of X is the Y." with Y deleted: Y's row learns to
be the answer after "the currency of X is the") — the route a question's answer takes; on the
demo models the answer reads the answer's row, not the subject's (docs/knowledge.md). Every
parameter except the entity table is frozen (``requires_grad=False``), and of the table only the
chosen columns move: after each backward the columns' gradient is handed to an Adam optimiser that
owns a copy of just those columns, whose new values are written back. Other rows therefore stay
bit-identical (checked in tests/test_knowledge_core.py), whatever the optimiser's weight decay or
momentum would otherwise do. ``norm_cap`` c > 0 keeps each fitted row's norm at most
c × max(its norm before fitting, the mean norm of the table's real rows) (0 = no cap): the memory scores a row by
a dot product, so a row that only grew would win reads it has nothing to do with (measured on
the demo: uncapped edits turned the edited rows into answers for unrelated questions,
docs/knowledge.md). ``anchor`` adds ``anchor · ‖row − row₀‖²`` (row₀ = the value before
fitting), which keeps an edited row near what it was — its other facts — while it learns the new
statements.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from edmem.data.entity_rows import NUM_RESERVED, EntityRows
from edmem.data.examples import lowercase_keep_length
from edmem.data.markers import AlignmentError, encode_with_mentions
from edmem.pretraining.collate import MODEL_FIELDS, PretrainCollator
from edmem.pretraining.corpus import Passage
from edmem.pretraining.dataset import PretrainDataset, row_map
from edmem.pretraining.masking import MaskingConfig, SpecialTokenIds

logger = logging.getLogger(__name__)


@dataclass
class FitSettings:
    """Defaults for ``add``, chosen on the demo's dev entities (docs/knowledge.md, "Settings");
    ``edit`` uses :func:`edit_defaults`."""

    steps: int = 150
    batch_size: int = 32
    learning_rate: float = 0.1
    anchor: float = 0.0
    norm_cap: float = 1.0
    mlm_probability: float = 0.15
    ssm_probability: float = 0.5
    mention_deletion_probability: float = 1.0
    delete_fitted_mentions: bool = False  # False: only mentions of frozen rows are deleted
    max_length: int = 64
    lowercase: bool = True
    seed: int = 0
    progress: bool = True


def edit_defaults() -> FitSettings:
    """``edit``'s defaults (docs/knowledge.md, "Settings"): a few passages, so few steps; every
    linked row is re-fitted by default, so deletion must be allowed to remove their mentions."""
    return FitSettings(steps=20, learning_rate=0.05, mention_deletion_probability=0.5, delete_fitted_mentions=True)


@dataclass
class FitReport:
    rows: list[int]
    steps: int
    seconds: float
    passages: int
    unalignable: int
    first_loss: float | None
    last_loss: float | None
    losses: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"rows": len(self.rows), "steps": self.steps, "seconds": round(self.seconds, 3),
                "passages": self.passages, "unalignable_passages": self.unalignable,
                "first_loss": self.first_loss, "last_loss": self.last_loss}


class _Encoded:
    """The token-cache interface :class:`PretrainDataset` reads (``len``, ``[i]`` → ids, links)."""

    def __init__(self, items: list[tuple[np.ndarray, np.ndarray]]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.items[index]


def encode_passages(tokenizer: Any, passages: Sequence[Passage], *, max_length: int, lowercase: bool,
                    bos_prefix: bool = True) -> tuple[_Encoded, int]:
    """Encode like pretraining does (markers, ``<s>`` prefix, truncation); unalignable passages
    are skipped and counted (returned second), as the pretraining cache does."""
    items: list[tuple[np.ndarray, np.ndarray]] = []
    skipped = 0
    for p in passages:
        text = lowercase_keep_length(p.text) if lowercase else p.text
        try:
            ids, links = encode_with_mentions(tokenizer, text, p.mentions, max_length, bos_prefix=bos_prefix)
        except AlignmentError as exc:
            skipped += 1
            logger.warning("passage %s (line %d) skipped: its spans do not align with tokens (%s)",
                           p.id, p.line, exc)
            continue
        items.append((np.asarray(ids, dtype=np.int64), np.asarray(links, dtype=np.int64)))
    return _Encoded(items), skipped


@contextlib.contextmanager
def pretraining_mode(model: Any) -> Iterator[None]:
    """The model in LM+EL (pretraining) mode, train mode, all parameters frozen; restored after."""
    cfg = model.config
    target, was_training = cfg.generate_target, model.training
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    cfg.generate_target = "pretraining"
    for p in model.parameters():
        p.requires_grad_(False)
    model.train()
    try:
        yield
    finally:
        cfg.generate_target = target
        model.train(was_training)
        for name, p in model.named_parameters():
            p.requires_grad_(flags.get(name, True))


def _batches(n: int, batch_size: int, seed: int) -> Iterator[tuple[int, list[int]]]:
    """(epoch, indices) forever: a fresh seeded shuffle per epoch."""
    epoch = 0
    while True:
        order = np.random.default_rng([seed, epoch]).permutation(n).tolist()
        for start in range(0, n, batch_size):
            yield epoch, order[start:start + batch_size]
        epoch += 1


def fit_dataset(tokenizer: Any, rows: EntityRows, passages: Sequence[Passage], settings: FitSettings,
                train_rows: Sequence[int] = ()) -> tuple[PretrainDataset, int]:
    """The passages encoded and masked as pretraining does, with the fit's masking settings
    (MLM, salient spans, mention deletion); returns it and the number of unalignable passages.

    Unless ``settings.delete_fitted_mentions``, a mention of one of ``train_rows`` is never the
    deleted one: the fitted rows are the cue from which the decoder must name the deleted entity,
    which is what a question about them asks (docs/knowledge.md)."""
    data, skipped = encode_passages(tokenizer, passages, max_length=settings.max_length,
                                    lowercase=settings.lowercase)
    masking = MaskingConfig(mlm_probability=settings.mlm_probability, ssm_probability=settings.ssm_probability,
                            mention_deletion_probability=settings.mention_deletion_probability)
    special = SpecialTokenIds.from_tokenizer(tokenizer)
    cues = None if settings.delete_fitted_mentions else [int(r) for r in train_rows]
    return PretrainDataset(data, special, masking, row_map(rows), seed=settings.seed,  # type: ignore[arg-type]
                           cue_rows=cues), skipped


def fit_rows(model: Any, tokenizer: Any, rows: EntityRows, passages: Sequence[Passage],
             train_rows: Sequence[int], settings: FitSettings) -> FitReport:
    """Fit the table columns ``train_rows`` on ``passages``; every other weight stays as it is."""
    started = time.perf_counter()
    train_rows = sorted(set(int(r) for r in train_rows))
    dataset, skipped = fit_dataset(tokenizer, rows, passages, settings, train_rows)
    report = FitReport(train_rows, 0, 0.0, len(dataset), skipped, None, None)
    if not len(dataset) or not train_rows or settings.steps <= 0:
        report.seconds = time.perf_counter() - started
        return report
    collate = PretrainCollator(dataset.special.pad)

    table = model.EntityEmbedding.weight
    cols = torch.as_tensor(train_rows, dtype=torch.long, device=table.device)
    start_values = table.detach()[:, cols].clone()
    chosen = torch.nn.Parameter(start_values.clone())
    caps = None
    if settings.norm_cap > 0:
        real = table.detach()[:, NUM_RESERVED:] if table.shape[1] > NUM_RESERVED else table.detach()
        caps = settings.norm_cap * start_values.norm(dim=0).clamp(min=float(real.norm(dim=0).mean()))
    optimizer = torch.optim.Adam([chosen], lr=settings.learning_rate)
    steps: Any = range(settings.steps)
    if settings.progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc=f"fitting {len(train_rows)} row(s)", unit="step", disable=None)
    batches = _batches(len(dataset), settings.batch_size, settings.seed)
    with pretraining_mode(model):
        table.requires_grad_(True)
        for _ in steps:
            epoch, indices = next(batches)
            dataset.set_epoch(epoch)
            batch = collate([dataset[i] for i in indices])
            inputs = {k: batch[k].to(table.device) for k in MODEL_FIELDS}
            table.grad = None
            loss = model(**inputs, return_dict=True).loss
            loss.backward()
            grad = table.grad[:, cols]
            if settings.anchor > 0:
                grad = grad + 2.0 * settings.anchor * (chosen.detach() - start_values)
            chosen.grad = grad
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                if caps is not None:
                    chosen.mul_((caps / chosen.norm(dim=0).clamp(min=1e-12)).clamp(max=1.0))
                table[:, cols] = chosen
            value = float(loss.detach())
            report.losses.append(value)
            report.steps += 1
        table.grad = None
    report.first_loss, report.last_loss = report.losses[0], report.losses[-1]
    report.seconds = time.perf_counter() - started
    logger.info("fitted %d row(s) on %d passage(s): %d steps, loss %.3f -> %.3f, %.1fs", len(train_rows),
                len(dataset), report.steps, report.first_loss, report.last_loss, report.seconds)
    return report
