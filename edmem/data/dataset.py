"""torch ``Dataset`` over EL examples: each question is tokenized once, the answer drawn per fetch."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from torch.utils.data import Dataset

from edmem.data.examples import (ChoiceRNG, ELEncodingOptions, IdToRow, build_el_item,
                                 encode_question)
from edmem.data.formats import ELExample
from edmem.data.tokenization import marker_ids


class ELDataset(Dataset):
    """EL items in the original format (``edmem.data.examples.build_el_item``).

    ``rng``: source of the answer-entity draws; default a fresh ``numpy.random.RandomState(seed)``.
    Pass the ``numpy.random`` module to share the global stream as the original did.
    ``id_to_row`` maps entity ids to memory rows (default: identity).
    """

    def __init__(self, examples: Sequence[ELExample], tokenizer: Any, options: ELEncodingOptions,
                 *, is_training: bool, rng: ChoiceRNG | None = None, seed: int | None = None,
                 id_to_row: IdToRow | None = None):
        self.examples = list(examples)
        self.tokenizer = tokenizer
        self.options = options
        self.is_training = is_training
        self.rng = rng if rng is not None else np.random.RandomState(seed)
        self.id_to_row = id_to_row
        self.entity_start_id = marker_ids(tokenizer)[0]
        self._encoded: list[tuple[list[int], list[int]] | None] = [None] * len(self.examples)

    def __len__(self) -> int:
        return len(self.examples)

    def encoded(self, index: int) -> tuple[list[int], list[int]]:
        """(input_ids, input_entity_link) of example ``index``, tokenized on first use."""
        cached = self._encoded[index]
        if cached is None:
            cached = encode_question(self.tokenizer, self.examples[index], self.options, self.id_to_row)
            self._encoded[index] = cached
        return cached

    def __getitem__(self, index: int) -> dict[str, Any]:
        input_ids, links = self.encoded(index)
        return build_el_item(self.examples[index], input_ids, links, self.options,
                             self.entity_start_id, is_training=self.is_training, rng=self.rng,
                             id_to_row=self.id_to_row)
