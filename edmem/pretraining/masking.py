"""Masked language modelling + salient-span masking of one encoded passage (docs/pretraining.md).

Masking is done per example with a numpy generator derived from ``(seed, epoch, example index)``
(see :func:`example_rng`). That makes the masks a pure function of the data position: identical
under any batch size, number of DDP ranks or data-loader workers, reproduced exactly after a
resume, and fixed across evaluations of the dev set (so recall@k numbers are comparable).

Order as in the original collator: MLM first, then SSM on top of it.

* **MLM**: each token that is not special (BOS/EOS/PAD/UNK/MASK/``<E_s>``/``<E_e>``) is selected
  with ``mlm_probability``. A selected token becomes ``<mask>``, or with ``mlm_random_replace`` a
  random ordinary text id (below the marker ids, like the original's ``vocab - NUM_ADDED_VOCAB``).
* **SSM**: each mention (an ``<E_s>``) is chosen with ``ssm_probability``; every token after its
  ``<E_s>`` up to the next ``<E_e>`` / ``</s>`` becomes ``<mask>``. Markers are kept, so the model
  still knows where to read the memory, but must recall the entity from context alone.
* **Single salient span** (``ssm_single_mention_probability``, this project's addition; 0 = the
  original): with that chance a passage with at least two mentions has exactly one of them,
  chosen uniformly, span-masked instead of the independent per-mention draw; the others stay
  visible. Independent draws at 0.5 leave a two-mention statement with no masked mention or with
  both masked half the time; a single span makes every such passage ask for one entity given the
  other, the way a question asks for its answer given its subject (docs/pretraining.md).
* **Mention deletion** (``mention_deletion_probability``, this project's addition; 0 = the
  original): with that chance a passage with at least two mentions loses one of them, chosen
  uniformly, from the *encoder* input — its ``<E_s>``, tokens and ``<E_e>`` are removed, not masked —
  and no other mention is span-masked (they are the cue). The decoder still reconstructs the whole
  passage, so at the deleted mention's ``<E_s>`` it must name the entity from what it reads of the
  other mentions' memory: the route a question's answer takes (docs/pretraining.md).
* **Memory cue** (``memory_cue_probability``, this project's addition; 0 = the original): with that
  chance a passage with at least two mentions loses one mention as above, and a second one becomes
  the *cue*: its tokens are masked (markers kept) and the encoder's memory read there returns the
  cue entity's own row instead of its soft read (``cue`` marks its ``<E_s>``; the model reads the
  gold row where ``input_entity_cue`` is 1). The cue's tokens are hidden from the decoder as well
  (labels −100: not scored, ``<pad>`` in the shifted decoder input). The only way to the deleted
  entity is then through the cue's row, so the facts a passage states are written into the rows
  (docs/pretraining.md).
* **labels** = the *unmasked* input (the model shifts them right to form the decoder input); the
  collator turns padding into -100. With ``loss_on_mask_tokens`` only masked positions are scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edmem.constants import LABEL_IGNORE as IGNORE_INDEX
from edmem.data.tokenization import marker_ids


@dataclass(frozen=True)
class SpecialTokenIds:
    """Token ids the masking rules need. ``text_vocab_size`` bounds random replacement ids."""

    bos: int
    eos: int
    pad: int
    unk: int
    mask: int
    entity_start: int
    entity_end: int
    text_vocab_size: int

    @property
    def never_masked(self) -> tuple[int, ...]:
        return (self.bos, self.eos, self.pad, self.unk, self.mask, self.entity_start, self.entity_end)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> "SpecialTokenIds":
        """Read the ids from a BART-style tokenizer that holds the two entity markers."""
        start, end = marker_ids(tokenizer)
        return cls(bos=tokenizer.bos_token_id, eos=tokenizer.eos_token_id, pad=tokenizer.pad_token_id,
                   unk=tokenizer.unk_token_id, mask=tokenizer.mask_token_id, entity_start=start,
                   entity_end=end, text_vocab_size=min(start, end))


@dataclass(frozen=True)
class MaskingConfig:
    """The original's pretraining defaults (docs/pretraining.md)."""

    mlm_probability: float = 0.3
    ssm_probability: float = 0.5
    mlm_random_replace: float = 0.0
    loss_on_mask_tokens: bool = False
    mention_deletion_probability: float = 0.0
    memory_cue_probability: float = 0.0
    ssm_single_mention_probability: float = 0.0

    def __post_init__(self) -> None:
        for name in ("mlm_probability", "ssm_probability", "mlm_random_replace",
                     "mention_deletion_probability", "memory_cue_probability",
                     "ssm_single_mention_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")


@dataclass
class MaskedExample:
    """One masked passage. ``labels`` and ``salient`` have the length of the encoded passage;
    ``input_ids`` too unless a mention was deleted, and then ``kept`` holds the passage positions
    it keeps (apply it to every encoder-side array, e.g. the entity links).

    ``salient`` is 1 at the ``<E_s>`` of every SSM-masked mention: evaluation scores recall@k of
    the memory on exactly those mentions. ``cue`` (passage positions, or None) is 1 at the
    ``<E_s>`` of the memory-cue mention, whose encoder read is its own row.
    """

    input_ids: np.ndarray
    labels: np.ndarray
    salient: np.ndarray
    kept: np.ndarray | None = None
    cue: np.ndarray | None = None


def example_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """Independent stream per (seed, epoch, example): masks do not depend on batching or ranks."""
    return np.random.default_rng([seed & 0xFFFFFFFF, epoch, index])


def salient_spans(input_ids: np.ndarray, special: SpecialTokenIds, chosen_starts: np.ndarray) -> np.ndarray:
    """Boolean mask of the tokens inside the mentions whose ``<E_s>`` is flagged in ``chosen_starts``.

    A span runs from just after ``<E_s>`` to just before the next ``<E_e>``, ``</s>`` or pad (or the
    next ``<E_s>``, which only a malformed sequence could have). Vectorised: for every position find
    the last "event" (a start or a stop token) at or before it; the position is inside a span iff
    it is not an event itself and that last event is a chosen start.
    """
    ids = np.asarray(input_ids)
    starts = ids == special.entity_start
    events = starts | (ids == special.entity_end) | (ids == special.eos) | (ids == special.pad)
    positions = np.arange(ids.shape[-1])
    last_event = np.maximum.accumulate(np.where(events, positions, -1), axis=-1)
    has_event = last_event >= 0
    opened_by_chosen = np.where(has_event, np.asarray(chosen_starts, dtype=bool)[np.maximum(last_event, 0)], False)
    return opened_by_chosen & ~events


def mask_example(input_ids: np.ndarray | list[int], special: SpecialTokenIds, config: MaskingConfig,
                 rng: np.random.Generator, deletable: np.ndarray | None = None,
                 linked: np.ndarray | None = None) -> MaskedExample:
    """Apply MLM then SSM to one encoded passage (no padding inside).

    ``deletable`` (bool, one per position; None = every mention): only a mention whose ``<E_s>``
    is flagged may be deleted — ``edmem memory`` keeps the mentions of the rows it fits as the
    cue (docs/knowledge.md). ``linked`` (bool per position; None = every mention): the mentions
    that have a memory row, the only ones a memory cue may sit on."""
    clean = np.asarray(input_ids, dtype=np.int64)
    maskable = ~np.isin(clean, special.never_masked)
    selected = maskable & (rng.random(clean.shape) < config.mlm_probability)

    masked = clean.copy()
    if config.mlm_random_replace > 0.0:
        randomise = selected & (rng.random(clean.shape) < config.mlm_random_replace)
        # BART's specials are ids 0..3 and <mask> is just below the markers; draw plain text ids.
        randoms = rng.integers(0, special.text_vocab_size, size=clean.shape)
        masked[randomise] = randoms[randomise]
        masked[selected & ~randomise] = special.mask
    else:
        masked[selected] = special.mask

    starts = clean == special.entity_start
    chosen = starts & (rng.random(clean.shape) < config.ssm_probability)
    single = _single_span(starts, config.ssm_single_mention_probability, rng)
    if single is not None:
        chosen = single
    picked = _memory_cue(clean, special, starts, config.memory_cue_probability, rng, deletable, linked)
    cue = None
    if picked is not None:
        deleted, cue = picked
        chosen = cue.astype(bool)  # only the cue's tokens are masked: its row is the only way in
    else:
        deleted = _deleted_mention(clean, special, starts, config.mention_deletion_probability, rng, deletable)
        if deleted is not None:
            chosen[:] = False  # the remaining mentions are the cue
    in_span = salient_spans(clean, special, chosen)
    masked[in_span] = special.mask

    labels = clean.copy()
    if config.loss_on_mask_tokens:
        labels[~(selected | in_span | (deleted if deleted is not None else False))] = IGNORE_INDEX
    if cue is not None:
        # hidden from the decoder too (the shifted decoder input shows <pad> there, nothing is
        # scored): like a question's decoder, it must take the cue entity from the encoder's row
        labels[in_span] = IGNORE_INDEX
    kept = None if deleted is None else np.flatnonzero(~deleted)
    return MaskedExample(input_ids=masked if kept is None else masked[kept], labels=labels,
                         salient=chosen.astype(np.int64), kept=kept, cue=cue)


def mention_positions(input_ids: np.ndarray, special: SpecialTokenIds, start: int) -> np.ndarray:
    """Boolean mask of the whole mention that opens at ``<E_s>`` position ``start``: the marker, its
    tokens and the closing ``<E_e>`` (when the passage has one before ``</s>``/padding)."""
    ids = np.asarray(input_ids)
    one = np.zeros(ids.shape, dtype=bool)
    one[start] = True
    span = salient_spans(ids, special, one)
    span[start] = True
    end = start + 1 + int(span[start + 1:].sum())
    if end < ids.shape[-1] and ids[end] == special.entity_end:
        span[end] = True
    return span


def _fires(num_mentions: int, probability: float, rng: np.random.Generator) -> bool:
    """Whether a passage-level option (single span, deletion, cue) applies to this passage: it
    needs two or more mentions, and draws one number only then — none at all when
    ``probability`` is 0, so the original masks are reproduced exactly."""
    return probability > 0.0 and num_mentions >= 2 and rng.random() < probability


def _single_span(starts: np.ndarray, probability: float, rng: np.random.Generator) -> np.ndarray | None:
    """The ``<E_s>`` flags of one mention drawn uniformly (the only one span-masked), or None to
    keep the independent draws. Draws nothing when ``probability`` is 0 (the original masks)."""
    mentions = np.flatnonzero(starts)
    if not _fires(mentions.size, probability, rng):
        return None
    one = np.zeros(starts.shape, dtype=bool)
    one[mentions[rng.integers(mentions.size)]] = True
    return one


def _deleted_mention(clean: np.ndarray, special: SpecialTokenIds, starts: np.ndarray, probability: float,
                     rng: np.random.Generator, deletable: np.ndarray | None = None) -> np.ndarray | None:
    """Positions of the one mention (``<E_s>`` .. ``<E_e>``) deleted from the encoder input, or None.

    Draws nothing when ``probability`` is 0, so the original masks are reproduced exactly.
    """
    if probability <= 0.0:
        return None
    mentions = np.flatnonzero(starts)
    candidates = mentions if deletable is None else np.flatnonzero(starts & np.asarray(deletable, dtype=bool))
    if candidates.size == 0 or not _fires(mentions.size, probability, rng):
        return None
    return mention_positions(clean, special, int(candidates[rng.integers(candidates.size)]))


def _memory_cue(clean: np.ndarray, special: SpecialTokenIds, starts: np.ndarray, probability: float,
                rng: np.random.Generator, deletable: np.ndarray | None,
                linked: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    """``(deleted, cue)`` for memory-cue masking, or None: a linked mention chosen as the cue (int,
    1 at its ``<E_s>``) and another (deletable) one deleted as in :func:`_deleted_mention`.
    Draws nothing when ``probability`` is 0."""
    if not _fires(int(np.count_nonzero(starts)), probability, rng):
        return None
    cues = np.flatnonzero(starts & (True if linked is None else np.asarray(linked, dtype=bool)))
    if cues.size == 0:
        return None
    cue_at = int(cues[rng.integers(cues.size)])
    victims = np.flatnonzero(starts & (True if deletable is None else np.asarray(deletable, dtype=bool)))
    victims = victims[victims != cue_at]
    if victims.size == 0:
        return None
    cue = np.zeros(clean.shape, dtype=np.int64)
    cue[cue_at] = 1
    return mention_positions(clean, special, int(victims[rng.integers(victims.size)])), cue
