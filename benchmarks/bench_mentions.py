"""Mention detection on the demo's test questions (gold spans known) — docs/linking.md.

Prints one JSON object with:

* ``spans``: micro precision / recall / F1 of the detected spans against the gold mention spans
  (exact character match) over every test question, plus counts and up to 10 examples of each
  error kind;
* ``speed``: microseconds per question of the detector for both backends (pyahocorasick
  automaton vs a dict lookup of every token n-gram), median of ``--repeats`` passes, and whether
  they found the same spans;
* with ``--model``: ``hits@1`` of the model's answer from raw text (detected mentions) and from
  the gold spans, over the linkable test questions, and their difference (goal: within 1 point).

    .venv/bin/python benchmarks/bench_mentions.py --data runs/demo/data --model runs/demo/model

``--data`` is the demo's data folder (``runs/demo/data``); the alias file is its
``wikipedia/aliases_geo.jsonl`` unless ``--aliases`` says otherwise. ``--split dev`` measures
the dev questions (choose settings there, report test). ``--questions`` / ``--vocab`` measure
another dataset in the original format (e.g. WebQuestions: names only, no alias file).
``--scale 1000000`` measures building the detector for a vocabulary of that size instead.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def load_questions(data: Path, split: str) -> list[dict]:
    path = data / "openqa" / "geo" / "entity_linking" / f"el_geo-{split}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def gold_spans(q: dict) -> list[tuple[int, int]]:
    return sorted((int(o), int(o) + int(n)) for o, n in zip(q["link_offset"], q["link_length"]))


def span_scores(questions: list[dict], detected: list[list[tuple[int, int]]]) -> dict[str, Any]:
    tp = fp = fn = 0
    missed, spurious = [], []
    for q, found in zip(questions, detected):
        gold, got = set(gold_spans(q)), set(found)
        tp += len(gold & got)
        fp += len(got - gold)
        fn += len(gold - got)
        if gold - got and len(missed) < 10:
            missed.append({"question": q["question"], "gold": sorted(gold), "found": sorted(got)})
        if got - gold and len(spurious) < 10:
            spurious.append({"question": q["question"], "gold": sorted(gold), "found": sorted(got)})
    p = tp / max(1, tp + fp)
    r = tp / max(1, tp + fn)
    return {"precision": round(p, 4), "recall": round(r, 4),
            "f1": round(2 * p * r / max(1e-12, p + r), 4), "true_positives": tp,
            "false_positives": fp, "false_negatives": fn, "questions": len(questions),
            "examples_missed": missed, "examples_spurious": spurious}


def time_detector(detector: Any, texts: list[str], repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for text in texts:
            detector.detect(text)
        runs.append((time.perf_counter() - start) / len(texts) * 1e6)
    return round(statistics.median(runs), 2)


def hits_at_1(linker: Any, questions: list[dict]) -> dict[str, Any]:
    linkable = [q for q in questions if q.get("answer_entity")]
    raw = linker.batch([q["question"] for q in linkable], batch_size=64)
    given = linker.batch([{"question": q["question"], "mentions": [
        {"offset": o, "length": n, "target": t} for o, n, t in
        zip(q["link_offset"], q["link_length"], q["link_target"])]} for q in linkable], batch_size=64)

    def rate(results: list) -> float:
        hits = sum(r.answer.id in {int(a[0]) for a in q["answer_entity"]}
                   for r, q in zip(results, linkable))
        return hits / max(1, len(linkable))

    from_raw, from_gold = rate(raw), rate(given)
    return {"questions": len(linkable), "hits@1_raw_text": round(from_raw, 4),
            "hits@1_gold_spans": round(from_gold, 4),
            "difference_points": round((from_raw - from_gold) * 100, 2),
            "no_mention_questions": sum(r.no_mention for r in raw)}


def scale(count: int) -> dict[str, Any]:
    """Build time and memory of the detector for a vocabulary of ``count`` synthetic names."""
    import random
    import resource

    from edmem.inference.mentions import MentionDetector

    rng = random.Random(0)
    syllables = ["ka", "lo", "mi", "ran", "to", "shi", "ve", "dor", "al", "bu", "zen", "qua"]

    def word() -> str:
        return "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))).title()

    names = {10 + i: " ".join(word() for _ in range(rng.randint(1, 3))) for i in range(count)}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start, cpu = time.perf_counter(), time.process_time()
    detector = MentionDetector(names)
    build_s, build_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    question = f"what is the capital of {names[10 + count // 2].lower()}?"
    start = time.perf_counter()
    for _ in range(1000):
        found = detector.detect(question)
    return {"names": count, "surface_forms": len(detector), "build_s": round(build_s, 2),
            "build_cpu_s": round(build_cpu_s, 2), "load_average_1min": round(os.getloadavg()[0], 1),
            "peak_rss_growth_mb": round((after - before) / 1024, 1),
            "us_per_question": round((time.perf_counter() - start) * 1000, 1),
            "found_in_example": [m.text for m in found]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO / "runs" / "demo" / "data")
    parser.add_argument("--aliases", type=Path, default=None)
    parser.add_argument("--questions", type=Path, default=None,
                        help="an el_*.jsonl file instead of the demo's split (e.g. WebQuestions)")
    parser.add_argument("--vocab", type=Path, default=None,
                        help="entid2entityitemid_*.json instead of the demo's")
    parser.add_argument("--model", type=Path, default=None, help="model directory: adds hits@1")
    parser.add_argument("--split", default="test", choices=("train", "dev", "test"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scale", type=int, default=0,
                        help="instead: build a detector over this many synthetic names (1-3 random "
                             "words) and report build time and resident memory")
    args = parser.parse_args(argv)
    if args.scale:
        print(json.dumps(scale(args.scale), indent=1))
        return 0

    from edmem.data.entity_vocab import load_id2entity
    from edmem.inference.mentions import MentionDetector
    from edmem.inference.model_dir import read_aliases

    names = load_id2entity(args.vocab or args.data / "wikipedia" / "entid2entityitemid_geo.json")
    alias_path = args.aliases or args.data / "wikipedia" / "aliases_geo.jsonl"
    names_map = dict(names.items())
    aliases = read_aliases(alias_path, names_map) if alias_path.is_file() else {}
    if args.questions is not None:
        questions = [json.loads(line) for line in args.questions.read_text(encoding="utf-8").splitlines()
                     if line.strip()]
    else:
        questions = load_questions(args.data, args.split)
    texts = [q["question"] for q in questions]
    start = time.perf_counter()
    detectors = {b: MentionDetector(names_map, aliases, backend=b) for b in ("ahocorasick", "ngram")}
    build_s = time.perf_counter() - start
    found = {b: [[(m.start, m.end) for m in d.detect(t)] for t in texts] for b, d in detectors.items()}
    result: dict[str, Any] = {
        "split": str(args.questions or args.split), "entities": len(names_map), "alias_entities": len(aliases),
        "surface_forms": detectors["ahocorasick"].stats.forms,
        "dropped_short": detectors["ahocorasick"].stats.dropped_short,
        "dropped_stop_word": detectors["ahocorasick"].stats.dropped_stop_word,
        "spans": span_scores(questions, found["ahocorasick"]),
        "speed": {"us_per_question_ahocorasick": time_detector(detectors["ahocorasick"], texts, args.repeats),
                  "us_per_question_ngram": time_detector(detectors["ngram"], texts, args.repeats),
                  "build_both_s": round(build_s, 3),
                  "same_spans": found["ahocorasick"] == found["ngram"]},
    }
    sp = result["speed"]
    sp["ngram_over_ahocorasick"] = round(sp["us_per_question_ngram"] / sp["us_per_question_ahocorasick"], 2)
    if args.model is not None:
        import torch

        from edmem.inference.linker import EntityLinker

        torch.set_num_threads(args.threads)
        linker = EntityLinker.from_pretrained(args.model, alias_file=args.aliases)
        result["linking"] = hits_at_1(linker, questions)
    print(json.dumps(result, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
