"""Entity-linking items (docs/data.md): question -> encoder ids/links -> decoder side.

Items are dicts of Python int lists with the original field names (see docs/architecture.md).
The question is encoded once (:func:`encode_question`); the answer entity is drawn per fetch
(:func:`build_el_item`), as in the original (docs/quirks.md Q26).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from edmem.constants import NIL_ENTITY
from edmem.data.formats import ELExample, Mention
from edmem.data.markers import AlignmentError, encode_with_mentions
from edmem.errors import DataError

IdToRow = Callable[[int], int]


class ChoiceRNG(Protocol):
    """What we need from ``numpy.random.RandomState`` (or the ``numpy.random`` module)."""

    def choice(self, a: int) -> Any: ...


@dataclass(frozen=True)
class ELEncodingOptions:
    """The preprocessing switches of the original ``run_QA.py`` that shape an EL item."""

    max_input_length: int = 50
    do_cased: bool = False
    add_another_bos: bool = True
    prepend_question_in_decoder_input: bool = True

    @classmethod
    def from_args(cls, args: Any) -> "ELEncodingOptions":
        """Read the fields from an argparse Namespace / mapping holding the original flags."""
        get = args.get if isinstance(args, dict) else lambda k, d: getattr(args, k, d)
        return cls(**{name: get(name, default) for name, default in (
            ("max_input_length", cls.max_input_length), ("do_cased", cls.do_cased),
            ("add_another_bos", cls.add_another_bos),
            ("prepend_question_in_decoder_input", cls.prepend_question_in_decoder_input))})


def lowercase_keep_length(text: str) -> str:
    """``text.lower()`` except characters whose lowercase has another length (e.g. 'İ').

    Fix of docs/quirks.md Q14: the offsets were computed on the original string, so lowercasing must not
    move them. Identical to ``str.lower`` for every string where that keeps the length.
    """
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(low if len(low := ch.lower()) == 1 else ch for ch in text)


def normalize_question(question: str, do_cased: bool) -> str:
    """Append ``?`` when missing (docs/quirks.md Q15, kept for parity), lowercase unless ``do_cased``."""
    if not question.endswith("?"):
        question += "?"
    return question if do_cased else lowercase_keep_length(question)


def encode_question(tokenizer: Any, example: ELExample, options: ELEncodingOptions,
                    id_to_row: IdToRow | None = None) -> tuple[list[int], list[int]]:
    """(input_ids, input_entity_link) of a question, markers around its gold mentions."""
    text = normalize_question(example.question, options.do_cased)
    try:
        return encode_with_mentions(tokenizer, text, example.mentions, options.max_input_length,
                                    bos_prefix=options.add_another_bos, id_to_row=id_to_row)
    except AlignmentError as exc:
        raise DataError(f"question {example.id!r}: mention spans do not fit the tokens ({exc})",
                        line=example.line or None, field="link_offset") from None


def choose_answer_entity(answer_entities: Sequence[tuple[int, str]], rng: ChoiceRNG) -> int:
    """The gold answer id: the only one, or a uniform draw ``rng.choice(n)`` among several.

    ``RandomState.choice(n)`` consumes the stream exactly like the original's ``np.random.choice``
    over the list (duplicates make an entity proportionally more likely; docs/quirks.md Q26).
    """
    if not answer_entities:
        raise ValueError("no answer entity to choose from")
    if len(answer_entities) == 1:
        return int(answer_entities[0][0])
    return int(answer_entities[int(rng.choice(len(answer_entities)))][0])


def decoder_side(values: Sequence[int], last: int, options: ELEncodingOptions) -> list[int]:
    """The decoder sequence before shifting: (question or its ``<s>`` prefix) + [last, final]."""
    if options.prepend_question_in_decoder_input:
        head = list(values[:-1])
    else:
        head = list(values[:2] if options.add_another_bos else values[:1])
    return head + [last, values[-1]]


def build_el_item(example: ELExample, input_ids: Sequence[int], input_entity_link: Sequence[int],
                  options: ELEncodingOptions, entity_start_id: int, *, is_training: bool,
                  rng: ChoiceRNG | None = None, id_to_row: IdToRow | None = None) -> dict[str, Any]:
    """One original EL item. Training items draw the answer entity with ``rng`` when needed.

    ``input_entity_link`` must already be in memory rows (see :func:`encode_question`);
    ``id_to_row`` maps the answer entity the same way.
    """
    item: dict[str, Any] = {
        "id": example.id,
        "input_ids": list(input_ids),
        "decoder_input_ids": decoder_side(input_ids, entity_start_id, options),
    }
    if not is_training:
        return item
    if not example.answer_entities:
        raise ValueError(f"training example {example.id!r} (line {example.line}) has no answer entity")
    if rng is None and len(example.answer_entities) > 1:
        raise ValueError("a training item with several answer entities needs an rng")
    answer = choose_answer_entity(example.answer_entities, rng)  # type: ignore[arg-type]
    if id_to_row is not None and answer != NIL_ENTITY:
        answer = id_to_row(answer)
    item["input_entity_link"] = list(input_entity_link)
    item["output_entity_link"] = decoder_side(input_entity_link, answer, options)
    item["labels"] = list(item["decoder_input_ids"])
    return item


def example_from_text(id: str, question: str, spans: Sequence[tuple[int, int, int]] = (),
                      answer_entities: Sequence[tuple[int, str]] | None = None) -> ELExample:
    """A hand-made example (demo, tests): spans as (offset, length, entity id), assumed valid."""
    mentions = sorted(Mention(*span) for span in spans)
    return ELExample(id, question, [], mentions,
                     list(answer_entities) if answer_entities else None, 0)
