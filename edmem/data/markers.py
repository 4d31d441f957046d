"""Character spans -> per-token entity labels -> ``<E_s> … <E_e>`` markers -> ids (docs/data.md).

Text-agnostic: questions (``edmem.data.examples``) and pretraining passages use the same
:func:`encode_with_mentions`; question-only steps (``?``, lowercasing, the extra ``<s>``) live in
the caller. Mentions must be sorted and disjoint, which ``edmem.data.formats`` guarantees.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from edmem.constants import ENTITY_END_TOKEN, ENTITY_START_TOKEN, NIL_ENTITY
from edmem.data.formats import Mention
from edmem.data.tokenization import byte_level

SPACE_MARK = "\u0120"  # 'Ġ': the byte-level form of a space


class AlignmentError(ValueError):
    """The tokens cannot be mapped back onto the text (malformed spans or a foreign tokenizer)."""


def align_spans(tokens: Sequence[str], text: str, mentions: Sequence[Mention]) -> list[int]:
    """One label per token: the entity id of the mention the token belongs to, or 0 (NIL).

    Reproduces the original ``identify_entity_mention`` including its heuristics: an offset that
    points at a space moves right; a mention starting inside a token is extended back to the token
    start; a mention ending inside a token covers that whole token; tokens that split a
    multi-byte character are glued to the next token(s) until they match the text.
    """
    if not mentions:
        return [NIL_ENTITY] * len(tokens)
    labels: list[int] = []
    k = 0
    start, length, target = mentions[0]
    remaining = 0  # characters of an open mention still to cover
    cur = 0
    i = 0
    n = len(tokens)

    def next_mention() -> None:
        nonlocal k, start, length, target
        if k < len(mentions) - 1:
            k += 1
            start, length, target = mentions[k]

    while i < n:
        tok = tokens[i]
        consumed = 1
        if remaining < 0:
            raise AlignmentError(f"mention {k} overran its span at token {i} of {text!r}")
        if tok.startswith(SPACE_MARK):
            if cur == start:
                start += 1
            tok = tok[1:]
            cur += 1
            if remaining == 1:
                raise AlignmentError(f"mention {k} of {text!r} ends on a space")
            if remaining > 0:
                remaining -= 1
        if text[cur:cur + len(tok)] != tok:
            if text[cur:cur + 1] == " ":
                cur += 1  # the tokenizer swallowed a space without a 'Ġ'
            if text[cur:cur + len(tok)] != tok:
                while True:
                    match = next((size for size in range(1, len(tok))
                                  if byte_level(text[cur:cur + size]) == tok), None)
                    if match is not None:
                        tok = text[cur:cur + match]
                        break
                    if i + 1 >= n:
                        raise AlignmentError(f"token {tokens[i]!r} does not match {text!r} at {cur}")
                    i += 1
                    consumed += 1
                    tok += tokens[i]
        if remaining > 0:
            labels.extend([labels[-1]] * consumed)
            cur += len(tok)
            i += 1
            remaining = 0 if remaining < len(tok) else remaining - len(tok)
            if remaining == 0:
                next_mention()
            continue
        if cur < start < cur + len(tok):
            length += start - cur
            start = cur
        if cur != start:
            labels.extend([NIL_ENTITY] * consumed)
            cur += len(tok)
            i += 1
            continue
        labels.extend([target] * consumed)
        cur += len(tok)
        i += 1
        remaining = 0 if length < len(tok) else length - len(tok)
        if remaining == 0:
            next_mention()
    return labels


def insert_markers(tokens: Sequence[str], labels: Sequence[int]) -> tuple[list[str], list[int]]:
    """Wrap labelled runs in ``<E_s>``/``<E_e>``; only ``<E_s>`` keeps the entity id.

    Consecutive tokens with the same label form one mention even when they came from two
    annotated mentions (docs/quirks.md Q12, kept for parity).
    """
    out_tokens: list[str] = []
    out_labels: list[int] = []

    def emit(token: str, label: int = NIL_ENTITY) -> None:
        out_tokens.append(token)
        out_labels.append(label)

    previous = NIL_ENTITY
    last = len(tokens) - 1
    for i, (token, label) in enumerate(zip(tokens, labels)):
        if label != NIL_ENTITY:
            if previous == NIL_ENTITY:
                emit(ENTITY_START_TOKEN, label)
            elif previous != label:
                emit(ENTITY_END_TOKEN)
                emit(ENTITY_START_TOKEN, label)
            emit(token)
            if i == last:
                emit(ENTITY_END_TOKEN)
        else:
            if previous != NIL_ENTITY:
                emit(ENTITY_END_TOKEN)
            emit(token)
        previous = label
    return out_tokens, out_labels


def wrap_and_truncate(ids: Sequence[int], links: Sequence[int], max_length: int,
                      bos_id: int, eos_id: int) -> tuple[list[int], list[int]]:
    """``[bos] + ids[:max_length-2] + [eos]``, links cut the same way and wrapped with NIL."""
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    body = max_length - 2
    return ([bos_id, *ids[:body], eos_id],
            [NIL_ENTITY, *links[:body], NIL_ENTITY])


def encode_with_mentions(tokenizer: Any, text: str, mentions: Sequence[Mention], max_length: int,
                         *, bos_prefix: bool = False,
                         id_to_row: Callable[[int], int] | None = None) -> tuple[list[int], list[int]]:
    """Encode ``text`` with markers around ``mentions``: (input_ids, entity_link), equal length.

    ``bos_prefix`` reproduces the original's ``"<s> " + text`` trick (docs/data.md): the text is
    tokenized as ``" " + text`` and the token ``<s>`` is put in front (label NIL), which equals
    the slow tokenizer's split of ``"<s> " + text`` without relying on added-token handling.
    ``id_to_row`` maps entity ids to memory rows (compact memories); NIL stays 0.
    """
    if bos_prefix:
        bos = tokenizer.bos_token
        tokens = [bos, *tokenizer.tokenize(" " + text)]
        shift = len(bos) + 1
        aligned_text = f"{bos} {text}"
        mentions = [Mention(m.offset + shift, m.length, m.target) for m in mentions]
    else:
        tokens = tokenizer.tokenize(text)
        aligned_text = text
    labels = align_spans(tokens, aligned_text, mentions)
    marked_tokens, marked_labels = insert_markers(tokens, labels)
    ids = tokenizer.convert_tokens_to_ids(marked_tokens)
    if id_to_row is not None:
        marked_labels = [id_to_row(x) if x != NIL_ENTITY else NIL_ENTITY for x in marked_labels]
    return wrap_and_truncate(ids, marked_labels, max_length,
                             tokenizer.bos_token_id, tokenizer.eos_token_id)
