"""Measure ``edmem memory add`` and ``edmem memory edit`` on the demo KB (docs/knowledge.md).

Two steps::

    # once (~10-15 min on an idle 2-core machine): the demo (pretraining with mention deletion
    # 0.5) with 60 cities held out entirely
    python benchmarks/knowledge_updates.py prepare --demo_dir runs/knowledge-demo

    # the measurements (prints one JSON document; --sweep: the dev grids --add_grid/--edit_grid)
    python benchmarks/knowledge_updates.py measure --demo_dir runs/knowledge-demo [--sweep]

``measure --only edit`` also works on any ``edmem demo`` output folder (no held-out cities
needed); the model directories it writes go under ``--work_dir`` (default
``<demo_dir>/knowledge-work``).

(a) *add*: the held-out cities are split (seeded) into 10 dev entities (settings are chosen on
them) and 50 test entities. Their questions are answered before (no row: 0) and after adding
the 50 with their passages; compared with the hits@1 the same model reaches on pretrained
entities' test questions of the same relations, and the old test set before/after.

(b) *edit*: counterfactual currency edits — country X's currency becomes another currency Y,
stated by two passages in the corpus's own templates ("The currency of X is the Y.", "X uses
the Y as its currency."). ``--dev_edits`` dev edits (settings; 20, or 100 for the final
choice), 100 test edits, applied one at a time (sequentially, each on the result of the
previous) and all in one batch. Efficacy: hits@1 of Y on X's question in the first question
frame EL fine-tuning asks in (edmem.demo.phrasing); generalisation: the relation's other
frames (seen and held-out phrasings reported apart); specificity: hits@1 on 500 dev/test questions that involve none of the edited countries
(before - after); also (no goal) hits@1 on the edited countries' other facts; seconds per edit.

Each operation runs the package's own functions (``edmem.knowledge``: append, initialise, fit)
in process on a copy of the model; ``api_seconds`` times the full ``edmem.knowledge`` API call
(load the model directory, validate, fit, write the new directory) once for each operation.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

QA_BATCH = 128


@dataclass
class World:
    """The demo's fine-tuned model and everything needed to ask it questions."""

    demo_dir: Path
    model: Any
    tokenizer: Any
    rows: Any
    names: dict[int, str]
    types: dict[int, str | None]
    options: Any
    kb: Any = None
    cache: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    prior: Any = None       # the fine-tuned model's answer-type prior, when it has one


def load_world(demo_dir: Path) -> World:
    from edmem.config import EDMemConfig
    from edmem.data.entity_rows import EntityRows
    from edmem.data.examples import ELEncodingOptions
    from edmem.data.tokenization import load_tokenizer
    from edmem.demo.knowledge_base import build_knowledge_base
    from edmem.inference.answer_types import load_answer_types
    from edmem.modeling.checkpoints import load_original_state_dict
    from edmem.modeling.model import EDMemModel

    finetune = demo_dir / "finetune"
    config = EDMemConfig.from_json_file(str(finetune / "config.json"))
    model = EDMemModel(config)
    load_original_state_dict(model, finetune, strict=True)
    model.eval()
    vocab = json.loads((demo_dir / "data" / "wikipedia" / "entid2entityitemid_geo.json").read_text())
    names = {int(k): v["entity"] for k, v in vocab.items()}
    types = {int(k): v.get("type") for k, v in vocab.items()}
    settings = json.loads((demo_dir / "settings.json").read_text())
    kb = build_knowledge_base(num_cities=settings["num_cities"] or None)
    return World(demo_dir, model, load_tokenizer(demo_dir / "tokenizer"), EntityRows.load(finetune), names, types,
                 ELEncodingOptions(), kb, seed=int(settings.get("seed", 0)), prior=load_answer_types(finetune))


# ---------------------------------------------------------------------------- asking questions
def top1(world: World, model: Any, rows: Any, examples: Sequence[Any], overrides: Any = None) -> dict[str, int]:
    """The best entity id per question on the product's prediction path: the EL head's top K,
    reranked by the model's answer-type prior when it has one, then ``overrides`` (fact
    overrides, ``edmem.inference.fact_overrides``) when given."""
    from edmem.data.collate import ELCollator
    from edmem.data.dataset import ELDataset
    from edmem.inference.predict import apply_rankers, predict_entities
    from edmem.runtime.distributed import DistInfo

    if not examples:
        return {}
    lenient = lambda i: rows.id_to_row(i) if i in rows else 0  # noqa: E731
    dataset = ELDataset(list(examples), world.tokenizer, world.options, is_training=False, id_to_row=lenient)
    collate = ELCollator(pad_token_id=model.config.pad_token_id,
                         decoder_start_token_id=model.config.decoder_start_token_id)
    preds = predict_entities(model, dataset, collate, QA_BATCH, DistInfo(), rows)
    apply_rankers(preds, examples, world.types.get, world.prior, overrides)
    return {qid: int(ids[0]) for qid, ids in preds.topk.items()}


def mention_recall1(world: World, model: Any, rows: Any, examples: Sequence[Any]) -> float:
    """Share of questions whose first mention the encoder's memory read links to the mention's
    own entity (top-1): does the memory find the entity when the question names it?"""
    import torch

    from edmem.data.collate import ELCollator
    from edmem.data.dataset import ELDataset

    if not examples:
        return 0.0
    lenient = lambda i: rows.id_to_row(i) if i in rows else 0  # noqa: E731
    dataset = ELDataset(list(examples), world.tokenizer, world.options, is_training=False, id_to_row=lenient)
    collate = ELCollator(pad_token_id=model.config.pad_token_id,
                         decoder_start_token_id=model.config.decoder_start_token_id)
    start = model.config.entity_start_token_id
    good = 0
    model.eval()
    with torch.no_grad():
        for first in range(0, len(dataset), QA_BATCH):
            idx = list(range(first, min(first + QA_BATCH, len(dataset))))
            batch = collate([dataset[i] for i in idx])
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        decoder_input_ids=batch["decoder_input_ids"],
                        decoder_attention_mask=batch["decoder_attention_mask"])
            positions = torch.nonzero(batch["input_ids"] == start)
            seen = set()
            for (row, _), top in zip(positions.tolist(), out.topk_entity[0][:, 0].tolist()):
                if row in seen:
                    continue
                seen.add(row)
                example = dataset.examples[idx[row]]
                good += rows.row_to_id(top) == example.mentions[0].target
    return good / len(dataset)


def hits1(world: World, model: Any, rows: Any, examples: Sequence[Any], overrides: Any = None) -> float:
    best = top1(world, model, rows, examples, overrides)
    good = sum(best[e.id] in {a for a, _ in e.answer_entities or []} for e in examples)
    return good / max(1, len(examples))


def read_questions(path: Path) -> tuple[list[Any], dict[str, dict]]:
    """Linkable EL examples of a file and the raw rows (for relation / subject)."""
    from edmem.data.formats import load_el_examples

    examples, _ = load_el_examples(path, is_training=False, log=None)
    raw = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            obj = json.loads(line)
            raw[str(obj["id"])] = obj
    return [e for e in examples if e.answer_entities], raw


def question(qid: str, template: str, subject: Any, answer: Any) -> Any:
    """An EL example asking ``template`` about ``subject`` with gold ``answer`` (KB entities)."""
    from edmem.data.formats import ELExample, Mention
    from edmem.demo.corpus import Slot, render

    r = render(template, {"s": Slot(subject.surface.lower(), subject.id, subject.article)}, transform=str.lower)
    return ELExample(qid, r.text, [answer.name], [Mention(r.offsets[0], r.lengths[0], subject.id)],
                     [(answer.id, answer.name)], 0)


# ---------------------------------------------------------------------------- (a) add
def add_split(world: World, seed: int = 0) -> tuple[list[int], list[int]]:
    held = json.loads((world.demo_dir / "data" / "heldout" / "heldout.json").read_text())["ids"]
    order = sorted(held)
    random.Random(f"add-dev-{seed}").shuffle(order)
    return sorted(order[:10]), sorted(order[10:])


def heldout_inputs(world: World, ids: Sequence[int]) -> tuple[list[Any], list[Any], list[dict]]:
    """(new entities, their passages, their linkable questions) for ``ids``."""
    from edmem.data.formats import LoadReport
    from edmem.knowledge.inputs import NewEntity
    from edmem.pretraining.corpus import parse_passage

    root = world.demo_dir / "data" / "heldout"
    wanted = set(ids)
    entities = [NewEntity(o["id"], o["name"], tuple(o["aliases"]), o.get("type"))
                for o in map(json.loads, (root / "entities.jsonl").read_text().splitlines()) if o["id"] in wanted]
    passages = []
    for line, text in enumerate((root / "passages.jsonl").read_text().splitlines(), start=1):
        obj = json.loads(text)
        if set(obj["hyperlinks"]["link_target"]) & wanted:
            passages.append(parse_passage(obj, root / "passages.jsonl", line, LoadReport("heldout")))
    examples, raw = read_questions(root / "questions.jsonl")
    asked = [e for e in examples if int(raw[e.id]["subject_entity"][0]) in wanted]
    return entities, passages, asked


def passage_overrides(world: World, passages: Sequence[Any], subjects: set[int] | None = None,
                      overrides: Any = None) -> Any:
    """Fact overrides from ``passages`` the way ``edmem memory add/edit`` builds them (added to
    ``overrides`` when given)."""
    from edmem.inference.fact_overrides import FactOverrides
    from edmem.knowledge.inputs import passage_statements

    overrides = overrides if overrides is not None else FactOverrides()
    overrides.add_statements(passage_statements(passages), world.types.get,
                             subjects.__contains__ if subjects is not None else None)
    return overrides


def run_add(world: World, ids: Sequence[int], *, init: str, settings: Any, overrides: bool = True) -> dict[str, Any]:
    from edmem.knowledge.fit import fit_rows
    from edmem.knowledge.table import append_rows, initialise_rows

    entities, passages, asked = heldout_inputs(world, ids)
    model = copy.deepcopy(world.model)
    before = hits1(world, model, world.rows, asked)
    wall, cpu = time.perf_counter(), time.process_time()
    rows, new_rows = append_rows(model, world.rows, [e.id for e in entities])
    row_types = {world.rows.id_to_row(i): t for i, t in world.types.items() if i in world.rows}
    initialise_rows(model, world.tokenizer, new_rows, method=init, names=[e.names() for e in entities],
                    types=[e.type for e in entities], row_types=row_types, bos_prefix=True,
                    max_length=settings.max_length)
    fit = fit_rows(model, world.tokenizer, rows, passages, new_rows, settings)
    facts = passage_overrides(world, passages, {e.id for e in entities}) if overrides else None
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    model.eval()
    return {"entities": len(entities), "passages": len(passages), "questions": len(asked),
            "hits@1_before": before, "hits@1_after": hits1(world, model, rows, asked, facts),
            "hits@1_after_rows_only": hits1(world, model, rows, asked) if overrides else None,
            "fact_overrides": len(facts) if facts is not None else None,
            "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), "fit": fit.to_json(),
            "_model": model, "_rows": rows, "_overrides": facts}


def source_model_dir(world: World, work: Path) -> Path:
    """The demo's fine-tuned model as a model directory: the one ``edmem demo`` published
    (``<demo_dir>/model`` or ``finetune/model``), else one written once to ``<work>/source-model``."""
    from edmem.inference.model_dir import METADATA, EntityTable, save_model_dir

    for published in (world.demo_dir / "model", world.demo_dir / "finetune" / "model"):
        if (published / METADATA).is_file():
            return published
    path = work / "source-model"
    if not (path / METADATA).is_file():
        aliases = {e.id: [a for a in dict.fromkeys([e.surface, *e.aliases]) if a != e.name]
                   for e in world.kb.entities if e.id in world.names}
        save_model_dir(path, model=world.model, tokenizer=world.tokenizer,
                       entities=EntityTable(dict(world.names), dict(world.types)), rows=world.rows,
                       encoding=world.options, aliases={i: a for i, a in aliases.items() if a},
                       name="knowledge-demo")
    return path


def run_add_api(world: World, ids: Sequence[int], *, init: str, settings: Any, work: Path,
                source: Path, overrides: bool = True) -> dict[str, Any]:
    """``edmem.knowledge.add_entities`` end to end (model directory in, model directory out),
    then the new directory answers the held-out questions."""
    from edmem.inference.model_dir import load_model_dir
    from edmem.knowledge import add_entities

    entities, passages, asked = heldout_inputs(world, ids)
    root = world.demo_dir / "data" / "heldout"
    work.mkdir(parents=True, exist_ok=True)
    wanted = set(ids)
    (work / "new.jsonl").write_text("".join(line + "\n" for line in (root / "entities.jsonl").read_text().splitlines()
                                            if json.loads(line)["id"] in wanted), encoding="utf-8")
    (work / "passages.jsonl").write_text("".join(
        line + "\n" for line in (root / "passages.jsonl").read_text().splitlines()
        if set(json.loads(line)["hyperlinks"]["link_target"]) & wanted), encoding="utf-8")
    wall, cpu = time.perf_counter(), time.process_time()
    record = add_entities(source, work / "new.jsonl", work / "passages.jsonl", work / "model", init=init,
                          settings=settings, overwrite=True, overrides=overrides)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    added = load_model_dir(work / "model")
    return {"entities": len(entities), "passages": len(passages), "questions": len(asked),
            "hits@1_before": hits1(world, world.model, world.rows, asked),
            "hits@1_after": hits1(world, added.model, added.rows, asked, added.fact_overrides),
            "hits@1_after_rows_only": hits1(world, added.model, added.rows, asked),
            "fact_overrides": record["fact_overrides"] and {k: v for k, v in record["fact_overrides"].items()
                                                            if k != "entries"},
            "mention_recall@1_after": mention_recall1(world, added.model, added.rows, asked),
            "api_seconds": round(wall, 2), "api_cpu_seconds": round(cpu, 2), "fit": record["fit"],
            "name_mismatches": record["passages"]["name_mismatches"], "_model": added.model, "_rows": added.rows,
            "_overrides": added.fact_overrides}


def reference_hits(world: World, relations: set[str]) -> dict[str, Any]:
    """hits@1 on the (non-held-out) test questions of ``relations``: facts the model saw only in
    pretraining text, like the added entities' facts in their passages."""
    path = world.demo_dir / "data" / "openqa" / "geo" / "entity_linking" / "el_geo-test.jsonl"
    examples, raw = read_questions(path)
    same = [e for e in examples if raw[e.id].get("relation") in relations]
    subjects = {int(raw[e.id]["subject_entity"][0]) for e in same}
    return {"questions": len(same), "hits@1": hits1(world, world.model, world.rows, same),
            "mention_recall@1": mention_recall1(world, world.model, world.rows, same),
            "hits@1_subject_rows_zeroed": hits1(world, without_rows(world, subjects), world.rows, same)}


def without_rows(world: World, ids: set[int]) -> Any:
    """A copy of the model whose rows of ``ids`` are zero: how much of an answer comes from the
    subject's row rather than from the rest of the model (its reading of the name)."""
    import torch

    model = copy.deepcopy(world.model)
    with torch.no_grad():
        for i in ids:
            if i in world.rows:
                model.EntityEmbedding.weight[:, world.rows.id_to_row(i)] = 0.0
    model.eval()
    return model


def memory_route(world: World) -> dict[str, Any]:
    """Where the answers come from: old test hits@1 with the encoder's (then the decoder's)
    memory read output zeroed. A read whose removal changes nothing carries no fact to the
    answer, and then neither can a row fitted behind it (docs/knowledge.md)."""
    import torch

    test = old_split(world, "test")
    out: dict[str, Any] = {"questions": len(test), "hits@1": hits1(world, world.model, world.rows, test)}
    for name in ("EncoderEntityMemory", "DecoderEntityMemory"):
        model = copy.deepcopy(world.model)
        with torch.no_grad():
            for p in getattr(model, name).OutputLayer.parameters():
                p.zero_()
        model.eval()
        out[f"hits@1_{name}_output_zeroed"] = hits1(world, model, world.rows, test)
    return out


def old_test(world: World) -> list[Any]:
    path = world.demo_dir / "data" / "openqa" / "geo" / "entity_linking" / "el_geo-test.jsonl"
    return read_questions(path)[0]


# ---------------------------------------------------------------------------- (b) edit
@dataclass
class Edit:
    country: Any
    old: Any
    new: Any
    passages: list[Any]
    efficacy: Any
    generalisation: list[Any]
    raw: list[dict] = field(default_factory=list)
    efficacy_template: str = ""
    heldout_phrasing: list[bool] = field(default_factory=list)  # per generalisation question


def edit_frames(seed: int) -> tuple[Any, list[Any], set[str]]:
    """The demo's question frames of country_currency: (the efficacy frame = the first frame EL
    fine-tuning asks in, every other frame, the keys of the frames fine-tuning never saw)."""
    from edmem.demo.phrasing import frames_of, split_frames

    split = split_frames(seed=seed)
    efficacy = split.frames["train"]["country_currency"][0]
    seen = {f.key for f in split.frames["train"]["country_currency"]}
    others = [f for f in frames_of("country_currency") if f.key != efficacy.key]
    return efficacy, others, {f.key for f in others if f.key not in seen}


def make_edits(world: World, seed: int = 0, dev: int = 20) -> tuple[list[Edit], list[Edit]]:
    """(``dev``, 100 test) counterfactual currency edits, seeded: edits 0-19 and, for ``dev`` > 20,
    120 onwards are dev; 20-119 are test (the same whatever ``dev``)."""
    from edmem.data.formats import LoadReport
    from edmem.demo.corpus import CORPUS_TEMPLATES, Slot, render
    from edmem.demo.knowledge_base import article_for
    from edmem.demo.phrasing import realise
    from edmem.pretraining.corpus import parse_passage

    kb = world.kb
    facts = [f for f in kb.facts if f.relation == "country_currency" and f.subject in world.rows
             and f.object in world.rows]
    currencies = sorted({e.id for e in kb.entities if e.type == "currency" and e.id in world.rows})
    rng = random.Random(f"edits-{seed}")
    rng.shuffle(facts)
    efficacy_frame, other_frames, heldout = edit_frames(world.seed)
    statements = CORPUS_TEMPLATES["country_currency"][:2]
    edits = []
    for k, fact in enumerate(facts[:100 + max(20, dev)]):
        country, old = kb.entity(fact.subject), kb.entity(fact.object)
        new = kb.entity(rng.choice([c for c in currencies if c != old.id]))
        passages, raw = [], []
        for t, template in enumerate(statements):
            r = render(template, {"s": Slot(country.surface, country.id, article_for(country, country.surface)),
                                  "o": Slot(new.surface, new.id)})
            obj = {"id": f"edit-{k}-{t}", "text": r.text,
                   "hyperlinks": {"link_offset": list(r.offsets), "link_length": list(r.lengths),
                                  "link_target": list(r.targets)}}
            passages.append(parse_passage(obj, "edits", t + 1, LoadReport("edits")))
            raw.append(obj)
        ask_rng = random.Random(f"edit-questions-{seed}-{k}")
        template = realise(efficacy_frame, ask_rng) + "?"
        others = [(f, realise(f, ask_rng) + "?") for f in other_frames]
        edits.append(Edit(country, old, new, passages, question(f"edit-{k}-q", template, country, new),
                          [question(f"edit-{k}-q{f.index}", t, country, new) for f, t in others], raw,
                          template, [f.key in heldout for f, _ in others]))
    return edits[:min(20, dev)] + edits[120:], edits[20:120]


def specificity_set(world: World, edits: Sequence[Edit], count: int = 500, seed: int = 0) -> list[Any]:
    """``count`` linkable questions that involve none of the edited countries: every such dev/test
    question (facts seen only in pretraining), filled up with a seeded sample of train questions."""
    root = world.demo_dir / "data" / "openqa" / "geo" / "entity_linking"
    touched = {e.country.id for e in edits}
    pools: dict[str, list[Any]] = {}
    for split in ("dev", "test", "train"):
        examples, raw = read_questions(root / f"el_geo-{split}.jsonl")
        for e in examples:
            ids = {m.target for m in e.mentions} | {a for a, _ in e.answer_entities or []}
            ids.add(int(raw[e.id].get("subject_entity", [0])[0]))
            if not ids & touched:
                pools.setdefault(split, []).append(e)
    held_out = pools.get("dev", []) + pools.get("test", [])
    random.Random(f"specificity-{seed}").shuffle(held_out)
    train = pools.get("train", [])
    random.Random(f"specificity-train-{seed}").shuffle(train)
    return (held_out + train)[:count]


def subject_facts(world: World, edits: Sequence[Edit], count: int = 300, seed: int = 0) -> list[Any]:
    """Up to ``count`` linkable questions (all splits) about the edited countries' *other*
    relations: what an edit of a row may break besides the edited fact (reported, no goal)."""
    root = world.demo_dir / "data" / "openqa" / "geo" / "entity_linking"
    touched = {e.country.id for e in edits}
    pool = []
    for split in ("dev", "test", "train"):
        examples, raw = read_questions(root / f"el_geo-{split}.jsonl")
        pool += [e for e in examples if int(raw[e.id].get("subject_entity", [0])[0]) in touched
                 and raw[e.id].get("relation") != "country_currency"]
    random.Random(f"subject-facts-{seed}").shuffle(pool)
    return pool[:count]


def edit_rows(world: World, edit: Edit, rows_mode: str) -> list[int]:
    ids = {"subject": [edit.country.id], "object": [edit.new.id],
           "linked": [edit.country.id, edit.new.id], "none": []}[rows_mode]
    return [world.rows.id_to_row(i) for i in ids]


def score_edits(world: World, model: Any, edits: Sequence[Edit], overrides: Any = None) -> dict[str, float]:
    """Efficacy, generalisation (every other frame), and generalisation split into the frames EL
    fine-tuning asked in and the ones it never saw (held-out phrasings)."""
    best = top1(world, model, world.rows, [e.efficacy for e in edits]
                + [q for e in edits for q in e.generalisation], overrides)
    right = lambda q: best[q.id] in {a for a, _ in q.answer_entities}  # noqa: E731
    mean = lambda xs: sum(xs) / max(1, len(xs))  # noqa: E731
    gen = [(right(q), held) for e in edits for q, held in zip(e.generalisation, e.heldout_phrasing)]
    return {"efficacy": mean([right(e.efficacy) for e in edits]), "generalisation": mean([r for r, _ in gen]),
            "generalisation_seen_frames": mean([r for r, h in gen if not h]),
            "generalisation_heldout_frames": mean([r for r, h in gen if h])}


def run_edits(world: World, edits: Sequence[Edit], specificity: Sequence[Any], *, settings: Any,
              batch_settings: Any, rows_mode: str, batch: bool = True, overrides: bool = True) -> dict[str, Any]:
    """The edits one at a time (each on the previous result) and in one batch: rows re-fitted
    per ``rows_mode`` (``none``: no row moves) and, with ``overrides``, the edits' statements
    kept as fact overrides."""
    from edmem.inference.fact_overrides import FactOverrides
    from edmem.knowledge.fit import fit_rows

    base = world.model
    old_facts = [question(f"old-{k}", e.efficacy_template, e.country, e.old) for k, e in enumerate(edits)]
    others = subject_facts(world, edits)
    out: dict[str, Any] = {"edits": len(edits), "rows_mode": rows_mode, "fact_overrides": overrides,
                           "subject_other_questions": len(others),
                           "before": {**score_edits(world, base, edits),
                                      "old_answer_hits@1": hits1(world, base, world.rows, old_facts),
                                      "old_answer_hits@1_subject_rows_zeroed": hits1(
                                          world, without_rows(world, {e.country.id for e in edits}), world.rows,
                                          old_facts),
                                      "specificity_hits@1": hits1(world, base, world.rows, specificity),
                                      "subject_other_facts_hits@1": hits1(world, base, world.rows, others)}}
    # one at a time, each on the result of the previous
    model = copy.deepcopy(base)
    facts = FactOverrides() if overrides else None
    seconds, cpu, immediate = [], [], 0
    for edit in edits:
        t, c = time.perf_counter(), time.process_time()
        rows = edit_rows(world, edit, rows_mode)
        if rows:
            fit_rows(model, world.tokenizer, world.rows, edit.passages, rows, settings)
        if facts is not None:
            passage_overrides(world, edit.passages, overrides=facts)
        seconds.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        model.eval()
        immediate += hits1(world, model, world.rows, [edit.efficacy], facts) == 1.0
    out["sequential"] = {**score_edits(world, model, edits, facts), "efficacy_right_after_each": immediate / len(edits),
                         "specificity_hits@1": hits1(world, model, world.rows, specificity, facts),
                         "subject_other_facts_hits@1": hits1(world, model, world.rows, others, facts),
                         "seconds_per_edit": round(sum(seconds) / len(seconds), 3),
                         "cpu_seconds_per_edit": round(sum(cpu) / len(cpu), 3),
                         "max_seconds": round(max(seconds), 3)}
    if batch:
        model = copy.deepcopy(base)
        rows = sorted({r for e in edits for r in edit_rows(world, e, rows_mode)})
        t, c = time.perf_counter(), time.process_time()
        if rows:
            fit_rows(model, world.tokenizer, world.rows, [p for e in edits for p in e.passages], rows,
                     batch_settings)
        facts = passage_overrides(world, [p for e in edits for p in e.passages]) if overrides else None
        took, took_cpu = time.perf_counter() - t, time.process_time() - c
        model.eval()
        out["batch"] = {**score_edits(world, model, edits, facts),
                        "specificity_hits@1": hits1(world, model, world.rows, specificity, facts),
                        "subject_other_facts_hits@1": hits1(world, model, world.rows, others, facts),
                        "seconds": round(took, 2), "seconds_per_edit": round(took / len(edits), 3),
                        "cpu_seconds": round(took_cpu, 2),
                        "rows": len(rows), "fact_overrides": len(facts) if facts is not None else None}
    for mode in ("sequential", "batch"):
        if mode in out:
            out[mode]["specificity_drop_points"] = round(
                100 * (out["before"]["specificity_hits@1"] - out[mode]["specificity_hits@1"]), 2)
    return out


# ---------------------------------------------------------------------------- commands
ADD_GRID = [{"deletion": 0.0}, {"deletion": 0.5}, {"deletion": 1.0}, {"deletion": 1.0, "lr": 0.3},
            {"deletion": 1.0, "steps": 300}]
EDIT_GRID = [{"rows": "linked", "deletion": 0.0}, {"rows": "subject", "deletion": 0.0},
             {"rows": "subject", "deletion": 0.5}, {"rows": "subject", "deletion": 1.0},
             {"rows": "subject", "deletion": 1.0, "lr": 0.2}, {"rows": "subject", "deletion": 1.0, "steps": 40},
             {"rows": "subject", "deletion": 1.0, "anchor": 0.1}, {"rows": "subject", "deletion": 1.0, "anchor": 1.0}]


def fit_settings(args: argparse.Namespace, kind: str, **override: Any) -> Any:
    """The FitSettings of ``kind`` (add / edit / batch) from the flags, with ``override``
    (grid keys: lr, steps, deletion, delete_fitted, norm_cap, anchor) applied."""
    from edmem.knowledge.fit import FitSettings

    edit = {"lr": args.edit_lr, "deletion": args.edit_deletion, "anchor": args.edit_anchor,
            "delete_fitted": args.edit_delete_fitted}
    base = {"add": {"steps": args.add_steps, "lr": args.add_lr, "deletion": args.add_deletion, "anchor": 0.0},
            "edit": {"steps": args.edit_steps, **edit}, "batch": {"steps": args.batch_steps, **edit}}[kind]
    v = {"norm_cap": args.norm_cap, **base, **{k: x for k, x in override.items() if k not in ("rows", "init")}}
    return FitSettings(steps=int(v["steps"]), learning_rate=float(v["lr"]), anchor=float(v["anchor"]),
                       norm_cap=float(v["norm_cap"]), mention_deletion_probability=float(v["deletion"]),
                       delete_fitted_mentions=bool(v.get("delete_fitted", False)), batch_size=32, progress=False)


def old_split(world: World, split: str) -> list[Any]:
    path = world.demo_dir / "data" / "openqa" / "geo" / "entity_linking" / f"el_geo-{split}.jsonl"
    return read_questions(path)[0]


def sweep(args: argparse.Namespace, world: World, dev_ids: list[int], dev_edits: list[Edit]) -> dict[str, Any]:
    """Settings on dev data only: 10 dev entities (+ the old dev questions) for add, the dev edits
    and 200 specificity questions for edit, one line per grid point on stderr."""
    result: dict[str, Any] = {"add_dev": [], "edit_dev": []}
    dev = old_split(world, "dev")
    dev_before = hits1(world, world.model, world.rows, dev) if args.add_grid else None
    for point in args.add_grid:
        init = point.get("init", args.init)
        r = run_add(world, dev_ids, init=init, settings=fit_settings(args, "add", **point),
                    overrides=bool(point.get("overrides", args.fact_overrides)))
        _, _, asked = heldout_inputs(world, dev_ids)
        after = hits1(world, r["_model"], r["_rows"], dev, r["_overrides"])
        result["add_dev"].append({"grid": point, "init": init, **{k: v for k, v in r.items() if k[0] != "_"},
                                  "mention_recall@1_after": mention_recall1(world, r["_model"], r["_rows"], asked),
                                  "old_dev_drop_points": round(100 * (dev_before - after), 2)})
        print(json.dumps(result["add_dev"][-1]), file=sys.stderr)
    spec = specificity_set(world, dev_edits, count=200) if args.edit_grid else []
    for point in args.edit_grid:
        rows_mode = point.get("rows", args.rows_mode)
        r = run_edits(world, dev_edits, spec, settings=fit_settings(args, "edit", **point),
                      batch_settings=fit_settings(args, "batch", **point), rows_mode=rows_mode,
                      batch=args.sweep_batch, overrides=bool(point.get("overrides", args.fact_overrides)))
        result["edit_dev"].append({"grid": point, **r})
        print(json.dumps(result["edit_dev"][-1]), file=sys.stderr)
    return result


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.num_threads)
    world = load_world(Path(args.demo_dir))
    dev_ids, test_ids = add_split(world) if args.only != "edit" else ([], [])
    dev_edits, test_edits = make_edits(world, dev=args.dev_edits)
    result: dict[str, Any] = {"demo_dir": str(args.demo_dir), "threads": args.num_threads}
    if args.sweep:
        if args.only == "edit":
            args.add_grid = []
        if args.only == "add":
            args.edit_grid = []
        result.update(sweep(args, world, dev_ids, dev_edits))
        return result
    result["memory_route"] = memory_route(world)
    print(json.dumps(result["memory_route"]), file=sys.stderr)
    if args.only != "edit":
        result["add"] = measure_add(args, world, test_ids)
        print(json.dumps(result["add"]), file=sys.stderr)
    if args.only != "add":
        result["edit"] = measure_edits(args, world, test_edits)
    return result


def measure_add(args: argparse.Namespace, world: World, test_ids: list[int]) -> dict[str, Any]:
    """(a) add, test entities, through ``edmem.knowledge.add_entities`` (directory in and out)."""
    settings = fit_settings(args, "add")
    r = run_add_api(world, test_ids, init=args.init, settings=settings, work=work_dir(args) / "add",
                    source=source_model_dir(world, work_dir(args)), overrides=bool(args.fact_overrides))
    relations = {json.loads(line)["relation"] for line in
                 (world.demo_dir / "data" / "heldout" / "questions.jsonl").read_text().splitlines()}
    ref = reference_hits(world, relations)
    test = old_split(world, "test")
    old_before = hits1(world, world.model, world.rows, test)
    old_after = hits1(world, r["_model"], r["_rows"], test, r["_overrides"])
    return {**{k: v for k, v in r.items() if k[0] != "_"}, "init": args.init, "settings": asdict(settings),
            "reference": {"relations": sorted(relations), **ref},
            "ratio_to_reference": r["hits@1_after"] / max(1e-9, ref["hits@1"]),
            "old_test": {"questions": len(test), "hits@1_before": old_before, "hits@1_after": old_after,
                         "drop_points": round(100 * (old_before - old_after), 2)}}


def measure_edits(args: argparse.Namespace, world: World, test_edits: list[Edit]) -> dict[str, Any]:
    """(b) edits, test edits: one at a time and one batch, then one edit through the product path
    (``edmem.knowledge.edit_entities``, model directory in and out), timed."""
    from edmem.knowledge import edit_entities

    settings = fit_settings(args, "edit")
    spec = specificity_set(world, test_edits, count=500)
    out = run_edits(world, test_edits, spec, settings=settings, batch_settings=fit_settings(args, "batch"),
                    rows_mode=args.rows_mode, overrides=bool(args.fact_overrides))
    out["specificity_questions"] = len(spec)
    work = work_dir(args) / "edit"
    work.mkdir(parents=True, exist_ok=True)
    first = test_edits[0]
    (work / "edit.jsonl").write_text("".join(json.dumps(o) + "\n" for o in first.raw), encoding="utf-8")
    source = source_model_dir(world, work_dir(args))
    t, c = time.perf_counter(), time.process_time()
    record = edit_entities(source, work / "edit.jsonl", work / "model", settings=settings, overwrite=True,
                           refit={"subject": "subjects", "none": "none"}.get(args.rows_mode, "linked"),
                           ids=[first.new.id] if args.rows_mode == "object" else None,
                           overrides=bool(args.fact_overrides))
    out["api_seconds_one_edit"] = round(time.perf_counter() - t, 2)
    out["api_cpu_seconds_one_edit"] = round(time.process_time() - c, 2)
    out["api_fit_seconds_one_edit"] = record["fit"]["seconds"] if record["fit"] else 0.0
    out["settings"] = {"edit": asdict(settings), "batch_steps": args.batch_steps, "rows_mode": args.rows_mode}
    return out


def work_dir(args: argparse.Namespace) -> Path:
    return Path(args.work_dir) if args.work_dir else Path(args.demo_dir) / "knowledge-work"


def _grid(text: str) -> list[dict[str, Any]]:
    value = json.loads(text)
    if not isinstance(value, list) or not all(isinstance(p, dict) for p in value):
        raise argparse.ArgumentTypeError("expected a JSON list of objects")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="run the demo with held-out cities (once)")
    prep.add_argument("--demo_dir", default="runs/knowledge-demo")
    prep.add_argument("--heldout", type=int, default=60)
    prep.add_argument("--mention_deletion_probability", type=float, default=0.5,
                      help="pretraining's mention deletion (docs/pretraining.md; 0 = the original)")
    ft = sub.add_parser("finetune", help="the demo's fine-tuning + prediction from a given pretraining "
                                         "checkpoint (when pretraining had to be stopped early)")
    ft.add_argument("--demo_dir", default="runs/knowledge-demo")
    ft.add_argument("--pretrain_ckpt", required=True, help="a copy of <demo_dir>/pretrain at some step")
    m = sub.add_parser("measure", help="the add and edit measurements (JSON on stdout)")
    m.add_argument("--demo_dir", default="runs/knowledge-demo")
    m.add_argument("--work_dir", default=None,
                   help="where model directories are written (default <demo_dir>/knowledge-work)")
    m.add_argument("--sweep", action="store_true", help="the dev grids instead of the test figures")
    m.add_argument("--add_grid", type=_grid, default=ADD_GRID,
                   help="JSON list of add settings to try on dev (keys: init, lr, steps, deletion, norm_cap)")
    m.add_argument("--edit_grid", type=_grid, default=EDIT_GRID,
                   help="JSON list of edit settings to try on dev (keys: rows, lr, steps, deletion, "
                        "norm_cap, anchor)")
    m.add_argument("--dev_edits", type=int, default=20, help="dev edits for --sweep (at most 120)")
    m.add_argument("--sweep_batch", action="store_true", help="in --sweep, also the dev edits as one batch")
    m.add_argument("--only", choices=("add", "edit"), default=None, help="only one of the two measurements")
    m.add_argument("--norm_cap", type=float, default=1.0)
    m.add_argument("--num_threads", type=int, default=1)
    m.add_argument("--init", default="name")
    m.add_argument("--add_steps", type=int, default=150)
    m.add_argument("--add_lr", type=float, default=0.1)
    m.add_argument("--add_deletion", type=float, default=1.0)
    m.add_argument("--edit_steps", type=int, default=20)
    m.add_argument("--batch_steps", type=int, default=150)
    m.add_argument("--edit_lr", type=float, default=0.05)
    m.add_argument("--edit_anchor", type=float, default=0.0)
    m.add_argument("--edit_deletion", type=float, default=0.5)
    m.add_argument("--edit_delete_fitted", type=int, choices=(0, 1), default=1,
                   help="1: mention deletion may remove mentions of the re-fitted rows (with --rows_mode "
                        "linked every mention is one)")
    m.add_argument("--rows_mode", choices=("linked", "subject", "object", "none"), default="linked")
    m.add_argument("--fact_overrides", type=int, choices=(0, 1), default=1,
                   help="1: the passages' statements also become fact overrides, as `edmem memory "
                        "add/edit` make them by default (grid key: overrides)")
    m.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        from knowledge_holdout import run_demo_with_heldout
        summary = run_demo_with_heldout(Path(args.demo_dir), args.heldout, skip_no_pretrain_baseline=True,
                                        mention_deletion_probability=args.mention_deletion_probability)
        print(json.dumps({"test": summary["test"], "seconds": summary["seconds"]}))
        return 0
    if args.command == "finetune":
        from knowledge_holdout import finetune_from
        finetune_from(Path(args.demo_dir), Path(args.pretrain_ckpt), skip_no_pretrain_baseline=True)
        return 0
    result = measure(args)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
