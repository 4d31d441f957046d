"""``EntityLinker``: raw questions in, answer entity + top-k + linked mentions out.

    linker = edmem.EntityLinker.from_pretrained("runs/demo/model", device="cpu")
    linker("what currency is used in japan?").answer     # EntityScore(id, name, score, type)
    linker.batch(questions, batch_size=32)                # same results, in input order

Each question goes through the same steps as training and ``edmem predict``: mentions (detected
by :class:`~edmem.inference.mentions.MentionDetector`, or given as spans in the original format)
become ``<E_s> … <E_e>`` markers (``edmem.data.examples.encode_question``), the item and batch
are built by the data layer, and the model runs in evaluation mode. Scores are softmax
probabilities over the K candidates the memory read returns (``inference_nearest_k_entity`` of
the model's config: the same K and softmax the memory itself uses), so they do not depend on how
many are shown. docs/linking.md describes the rules and the result fields.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from edmem.data.entity_rows import NUM_RESERVED
from edmem.inference.mentions import DetectedMention, MentionDetector

DEFAULT_MAX_QUESTION_CHARS = 1000


@dataclass
class EntityScore:
    id: int
    name: str
    score: float
    type: str | None = None


@dataclass
class MentionLink:
    """A mention of the question (``question[start:end] == text``) and the entities the
    encoder's memory read returned at its ``<E_s>`` (empty when truncation cut the mention off)."""

    start: int
    end: int
    text: str
    entities: list[EntityScore]


@dataclass
class LinkResult:
    question: str
    answer: EntityScore | None
    top_k: list[EntityScore]
    mentions: list[MentionLink]
    no_mention: bool
    # set when a fact override (edmem.inference.fact_overrides) chose the answer: {"subject",
    # "answer_type", "object", "source", "subject_name", "replaced", "replaced_name"} (replaced:
    # the model's own top-1)
    fact_override: dict | None = None

    def to_dict(self) -> dict:
        return _plain(self)


def _plain(value: Any) -> Any:
    """Dataclasses and lists -> dicts and lists. What ``dataclasses.asdict`` returns for these
    results, 4x faster (no deep copy of every field): ``edmem serve`` pays it once per question."""
    if hasattr(value, "__dataclass_fields__"):
        return {name: _plain(getattr(value, name)) for name in value.__dataclass_fields__}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


class EntityLinker:
    """Entity linking for raw questions with a model directory (``edmem.inference.model_dir``).

    Safe to call from several threads at once (a server's workers): encoding is serialised,
    the forward passes are not."""

    def __init__(self, model_dir: Any, device: str = "cpu", top_k: int = 5,
                 max_question_chars: int = DEFAULT_MAX_QUESTION_CHARS,
                 detector: MentionDetector | None = None):
        import torch

        from edmem.data.collate import ELCollator
        from edmem.data.tokenization import marker_ids

        self.model_dir = model_dir
        self.model = model_dir.model
        self.tokenizer = model_dir.tokenizer
        self.config = model_dir.config
        self.device = linker_device(device)
        self.max_k = int(self.config.inference_nearest_k_entity)
        self.top_k = self._check_top_k(top_k)
        self.max_question_chars = int(max_question_chars)
        self.detector = detector or MentionDetector(model_dir.entities.names, model_dir.aliases)
        self.collate = ELCollator(pad_token_id=self.config.pad_token_id,
                                  decoder_start_token_id=self.config.decoder_start_token_id)
        self.entity_start_id = marker_ids(self.tokenizer)[0]
        # A fast tokenizer's Rust object can refuse concurrent use ("Already borrowed") when a
        # call changes its truncation/padding settings; forward passes are safe to run from
        # several threads. So only encoding is serialised (it is ~5% of a call).
        self._encode_lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str = "cpu", top_k: int = 5,
                        **kwargs: Any) -> "EntityLinker":
        """Load a model directory. ``kwargs``: ``alias_file`` (extra aliases, JSONL),
        ``max_question_chars``, ``min_chars`` / ``stop_words`` / ``backend`` of the detector."""
        from edmem.inference.model_dir import load_model_dir

        detector_kwargs = {k: kwargs.pop(k) for k in ("min_chars", "stop_words", "backend") if k in kwargs}
        device = str(linker_device(device))
        model_dir = load_model_dir(path, device=device, alias_file=kwargs.pop("alias_file", None))
        detector = MentionDetector(model_dir.entities.names, model_dir.aliases, **detector_kwargs)
        return cls(model_dir, device=device, top_k=top_k, detector=detector, **kwargs)

    # ------------------------------------------------------------------ public API
    def __call__(self, question: str | dict, top_k: int | None = None) -> LinkResult:
        return self.batch([question], batch_size=1, top_k=top_k)[0]

    def batch(self, questions: Sequence[str | dict], batch_size: int = 32,
              top_k: int | None = None) -> list[LinkResult]:
        """Results in input order; questions are run in batches of similar length."""
        return self.run_prepared([self.prepare(q) for q in questions], batch_size, top_k)

    def run_prepared(self, prepared: Sequence["Prepared"], batch_size: int = 32,
                     top_k: int | None = None) -> list[LinkResult]:
        """:meth:`batch` on questions already checked and encoded by :meth:`prepare`."""
        k = self._check_top_k(self.top_k if top_k is None else top_k)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        order = sorted(range(len(prepared)), key=lambda i: len(prepared[i].item["input_ids"]))
        results: list[LinkResult | None] = [None] * len(prepared)
        for first in range(0, len(order), batch_size):
            chunk = order[first:first + batch_size]
            for index, result in zip(chunk, self._run([prepared[i] for i in chunk], k)):
                results[index] = result
        return results  # type: ignore[return-value]

    def info(self) -> dict:
        cfg = self.config
        return {"name": self.model_dir.name, "num_entities": len(self.model_dir.entities),
                "config": cfg.to_diff_dict() if hasattr(cfg, "to_diff_dict") else cfg.to_dict(),
                "model_dir": str(self.model_dir.path)}

    # ------------------------------------------------------------------ steps
    def detect(self, question: str) -> list[DetectedMention]:
        return self.detector.detect(question)

    def prepare(self, question: str | dict) -> "Prepared":
        """Validate one question, find (or take) its mentions and build its evaluation item."""
        from edmem.data.examples import build_el_item, encode_question
        from edmem.data.formats import Mention

        text, spans = self._parse(question)
        if spans is None:
            detected = self.detect(text)
            spans = [(m.start, m.end, m.candidates[0] if m.candidates else 1) for m in detected]
            subjects = [i for m in detected for i in m.candidates]
        else:   # given spans: their target when one was given, else what the alias table says
            subjects = [i for start, end, target in spans
                        for i in ((target,) if target >= NUM_RESERVED else self.detector.lookup(text[start:end]))]
        mentions = [Mention(start, end - start, target) for start, end, target in spans]
        example = _example(text, mentions)
        with self._encode_lock:
            input_ids, links = encode_question(self.tokenizer, example, self.model_dir.encoding)
        item = build_el_item(example, input_ids, links, self.model_dir.encoding,
                             self.entity_start_id, is_training=False)
        return Prepared(text, [(s, e) for s, e, _ in spans], item, subjects)

    def _parse(self, question: str | dict) -> tuple[str, list[tuple[int, int, int]] | None]:
        spans = None
        if isinstance(question, dict):
            text = question.get("question")
            if not isinstance(text, str):
                raise ValueError("a question given as an object needs a string field 'question'")
            if question.get("mentions") is not None:
                spans = _spans(text, question["mentions"])
        elif isinstance(question, str):
            text = question
        else:
            raise ValueError(f"a question must be a string or an object, got {type(question).__name__}")
        if not text.strip():
            raise ValueError("empty question")
        if len(text) > self.max_question_chars:
            raise ValueError(f"question is {len(text)} characters long; the limit is "
                             f"{self.max_question_chars} (max_question_chars)")
        return text, spans

    def _check_top_k(self, top_k: int) -> int:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        if top_k > self.max_k:
            raise ValueError(f"top_k={top_k} is more than the {self.max_k} candidates this model "
                             "returns (inference_nearest_k_entity)")
        return top_k

    def _run(self, prepared: list["Prepared"], k: int) -> list[LinkResult]:
        import torch

        batch = self.collate([p.item for p in prepared])
        inputs = {name: batch[name].to(self.device) for name in
                  ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask")}
        with torch.inference_mode():
            out = self.model(**inputs, return_dict=True)
        enc_ids, final_ids = out.topk_entity[0].cpu(), out.topk_entity[2].cpu()
        enc_probs = torch.softmax(out.topk_scores[0].float(), dim=-1).cpu()
        final_scores = out.topk_scores[2].float().cpu()
        final_probs = torch.softmax(final_scores, dim=-1)
        # Encoder reads come in row-major <E_s> order: count them per question.
        per_row = (batch["input_ids"] == self.entity_start_id).sum(dim=1).tolist()
        results = []
        read = 0
        for row, p in enumerate(prepared):
            top, override = self._answers(p, final_ids[row], final_scores[row], final_probs[row], k)
            mentions = []
            for j, (start, end) in enumerate(p.spans):
                entities = (self._scores(enc_ids[read + j, :k], enc_probs[read + j, :k])
                            if j < per_row[row] else [])
                mentions.append(MentionLink(start, end, p.text[start:end], entities))
            read += per_row[row]
            results.append(LinkResult(p.text, top[0] if top else None, top, mentions,
                                      no_mention=not p.spans, fact_override=override))
        return results

    def _answers(self, p: "Prepared", rows: Any, scores: Any, probs: Any,
                 k: int) -> tuple[list[EntityScore], dict | None]:
        """The EL head's top ``k``: the model's order, or, when the model directory has an
        answer-type prior, all K candidates reranked by it (scores: the combined probabilities);
        then its fact overrides, if any (returned as the second value when one applied)."""
        prior, overrides = self.model_dir.answer_types, self.model_dir.fact_overrides
        if prior is None and not overrides:
            return self._scores(rows[:k], probs[:k]), None
        type_of = self.model_dir.entities.type_of
        ids = self.model_dir.rows.rows_to_ids(rows.numpy()).tolist()
        values = probs.tolist()
        if prior is not None:
            ids, log_probs = prior.rerank(ids, scores.tolist(), type_of, p.text, p.spans)
            values = [math.exp(lp) for lp in log_probs]
        applied = None
        if overrides:
            ids, values, applied = overrides.apply(ids, values, p.subjects, type_of)
        answers = [self._entity(i, v) for i, v in zip(ids[:k], values[:k])]
        if applied is None:
            return answers, None
        names = self.model_dir.entities
        return answers, {**asdict(applied.override), "subject_name": names.get(applied.override.subject),
                         "replaced": applied.replaced, "replaced_name": names.get(applied.replaced)}

    def _scores(self, rows: Any, probs: Any) -> list[EntityScore]:
        ids = self.model_dir.rows.rows_to_ids(rows.numpy())
        return [self._entity(i, p) for i, p in zip(ids, probs.tolist())]

    def _entity(self, entity_id: Any, probability: float) -> EntityScore:
        entities = self.model_dir.entities
        return EntityScore(int(entity_id), entities.get(int(entity_id)) or "", round(float(probability), 6),
                           entities.type_of(int(entity_id)))


def linker_device(device: Any) -> Any:
    """``auto`` / ``cpu`` / ``cuda`` as the training commands read them (``edmem.runtime.devices``:
    ``cuda`` without a GPU is a clear ValueError), or any torch device string (``cuda:1``)."""
    import torch

    from edmem.runtime.devices import DEVICE_CHOICES, resolve_device

    if isinstance(device, str) and device in DEVICE_CHOICES:
        return resolve_device(device)
    return torch.device(device)


@dataclass
class Prepared:
    """A checked question, its mention spans and its evaluation item (``EntityLinker.prepare``)."""

    text: str
    spans: list[tuple[int, int]]
    item: dict
    subjects: list[int] = field(default_factory=list)   # entities the mentions may name, text order


def _example(text: str, mentions: list) -> Any:
    from edmem.data.formats import ELExample
    return ELExample("q", text, [], mentions, None, 0)


def _spans(text: str, mentions: Any) -> list[tuple[int, int, int]]:
    """Given mentions ``[{"offset", "length", "target"?}]`` -> sorted, checked (start, end, target)."""
    if not isinstance(mentions, list):
        raise ValueError("'mentions' must be a list of {\"offset\", \"length\"} objects")
    spans = []
    for n, m in enumerate(mentions):
        if not isinstance(m, dict):
            raise ValueError(f"mention {n}: expected an object with 'offset' and 'length'")
        offset, length, target = m.get("offset"), m.get("length"), m.get("target", 1)
        for name, value in (("offset", offset), ("length", length), ("target", target)):
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"mention {n}: '{name}' must be an integer, got {value!r}")
            if name == "offset":
                offset = value
            elif name == "length":
                length = value
            else:
                target = value
        if offset < 0 or length < 1 or offset + length > len(text):
            raise ValueError(f"mention {n}: span [{offset}, {offset + length}) is outside the "
                             f"question ({len(text)} characters)")
        spans.append((offset, offset + length, target if target > 0 else 1))
    spans.sort()
    for (a0, a1, _), (b0, _, _) in zip(spans, spans[1:]):
        if b0 < a1:
            raise ValueError(f"mentions overlap at characters {b0}-{a1}")
    return spans
