"""BART byte-level BPE tokenizer with the two entity marker tokens, and a tiny-BPE trainer.

The original used the slow ``BartTokenizer``; we default to ``BartTokenizerFast``, whose
``tokenize()`` is verified token-for-token against the slow one on every WQ question
(``tests/test_data_tokenization.py``). ``transformers`` is imported lazily so that importing this
module (e.g. for :func:`bytes_to_unicode`) stays cheap.
"""

from __future__ import annotations

import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from edmem.constants import ENTITY_END_TOKEN, ENTITY_START_TOKEN

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # BART order: ids 0..4 of a new vocab


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """Map each byte 0..255 to a printable character, as GPT-2 / BART byte-level BPE does.

    Printable Latin-1 bytes map to themselves; the other 68 bytes (controls, space, ...) map, in
    increasing byte order, to U+0100, U+0101, ... so that a space becomes 'Ġ' (U+0120).
    """
    printable = set(range(ord("!"), ord("~") + 1))
    printable |= set(range(0xA1, 0xAC + 1)) | set(range(0xAE, 0xFF + 1))
    mapping: dict[int, str] = {}
    extra = 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(0x100 + extra)
            extra += 1
    return mapping


def byte_level(text: str) -> str:
    """The byte-level BPE surface form of ``text`` (its UTF-8 bytes through the byte encoder)."""
    encoder = bytes_to_unicode()
    return "".join(encoder[b] for b in text.encode("utf-8"))


def add_entity_markers(tokenizer: Any) -> Any:
    """Add ``<E_s>``/``<E_e>`` as additional special tokens (ids len(vocab), len(vocab)+1)."""
    tokenizer.add_special_tokens({"additional_special_tokens": [ENTITY_START_TOKEN, ENTITY_END_TOKEN]})
    return tokenizer


def load_tokenizer(model_name_or_path: str | Path | None = None, *, vocab_file: str | Path | None = None,
                   merges_file: str | Path | None = None, fast: bool = True) -> Any:
    """A BART tokenizer with the entity markers added.

    Either ``model_name_or_path`` (hub name, or a local directory holding vocab.json/merges.txt or
    tokenizer.json) or an explicit ``vocab_file`` + ``merges_file`` pair. ``fast=False`` gives the
    original's slow ``BartTokenizer``.
    """
    from transformers import BartTokenizer, BartTokenizerFast

    cls = BartTokenizerFast if fast else BartTokenizer
    if vocab_file is not None or merges_file is not None:
        if vocab_file is None or merges_file is None:
            raise ValueError("give both vocab_file and merges_file")
        tokenizer = cls(vocab_file=str(vocab_file), merges_file=str(merges_file))
    elif model_name_or_path is not None:
        tokenizer = cls.from_pretrained(str(model_name_or_path))
    else:
        raise ValueError("give model_name_or_path or vocab_file + merges_file")
    return add_entity_markers(tokenizer)


def marker_ids(tokenizer: Any) -> tuple[int, int]:
    """(``<E_s>`` id, ``<E_e>`` id) of a tokenizer returned by :func:`load_tokenizer`."""
    start, end = tokenizer.convert_tokens_to_ids([ENTITY_START_TOKEN, ENTITY_END_TOKEN])
    unk = tokenizer.unk_token_id
    if start == unk or end == unk:
        raise ValueError("tokenizer lacks the <E_s>/<E_e> markers: load it with load_tokenizer()")
    return int(start), int(end)


def _stderr_is_terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def train_bpe_tokenizer(texts: Iterable[str], out_dir: str | Path, vocab_size: int,
                        min_frequency: int = 1) -> Path:
    """Train a small byte-level BPE on ``texts`` and save a directory BART tokenizers load.

    Used by the demo and the tests, since the hub is unreachable. Each text is also fed with a
    leading space so that words at the start of a question get their 'Ġ' form (the original
    tokenizes ``"<s> " + question``). Writes vocab.json, merges.txt, tokenizer_config.json and
    a minimal BART config.json; special tokens get ids 0..4 (``<s> <pad> </s> <unk> <mask>``).
    """
    from tokenizers import ByteLevelBPETokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus = list(texts)
    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    # The trainer's progress display writes bare newlines when stderr is not a terminal (a log
    # file would get empty lines), so it is shown on terminals only.
    bpe.train_from_iterator(corpus + [" " + t for t in corpus], vocab_size=vocab_size,
                            min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
                            show_progress=_stderr_is_terminal())
    bpe.save_model(str(out))
    vocab = json.loads((out / "vocab.json").read_text(encoding="utf-8"))
    config = {
        "model_type": "bart", "vocab_size": len(vocab), "pad_token_id": 1, "bos_token_id": 0,
        "eos_token_id": 2, "decoder_start_token_id": 2, "forced_eos_token_id": 2,
    }
    tokenizer_config = {
        "tokenizer_class": "BartTokenizer", "add_prefix_space": False, "model_max_length": 1024,
        "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
        "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
    }
    (out / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=1), encoding="utf-8")
    return out
