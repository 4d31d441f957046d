"""How much of the demo's dev error is the answer's *type*, and what type information would recover.

For each demo run (``--run DIR``, an ``edmem demo --output_dir``) the fine-tuned model predicts
the dev split with its top-100 scores (``python -m edmem.run_qa --model DIR/finetune/model
--do_predict --predict_on_dev --save_scores``, written under ``DIR/answer_types/``), and dev
hits@1 per group (held-out facts / held-out phrasings / both) is printed for four rankings:

* ``model``: the model's own ranking (the demo's figure);
* ``oracle_type``: only entities of the gold answer's type (an upper bound, not a system);
* ``type_marginal@w``: log p(e) + w · log P(type(e)), P = the softmax mass per type over the top
  100 — the model's own belief about the type;
* ``answer_type_prior@w``: log p(e) + w · log Q(type(e) | question), Q = the product's
  answer-type prior (``edmem.inference.answer_types``: a Bernoulli naive-Bayes model of the
  answer type from the *train* questions' words, mentions blanked) — what ``edmem demo
  --answer_type_weight w`` does at prediction time.

Entity types come from the run's ``entid2entityitemid_geo.json``. Dev only: nothing here reads
test. Used in docs/demo.md ("Answer types")::

    python benchmarks/demo_answer_types.py --run runs/demo-s0 --run runs/demo-s1 --run runs/demo-s2

``--timing`` also prints the prior's CPU cost: fitting it on the train split, and reranking one
dev question's top 100 (what every prediction pays with ``--answer_type_weight``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter, defaultdict
from pathlib import Path

from edmem.demo.groups import group_hits
from edmem.demo.questions import EVAL_GROUPS
from edmem.inference.answer_types import AnswerTypePrior, log_softmax
from edmem.demo.pipeline import run_qa

WEIGHTS = (0.5, 1.0, 2.0)
TOP_K = 100


def dev_scores(run: Path) -> dict[str, dict]:
    """The fine-tuned model's dev top-100 ids and scores (predicted once, then reused)."""
    out = run / "answer_types"
    path = out / "dev_prediction_scores.json"
    if not path.exists():
        run_qa(["--model", str(run / "finetune" / "model"), "--generate_target", "entity_linking",
                "--data_dir", str(run / "data" / "openqa"), "--task", "geo",
                "--datafile_prefix", "entity_linking/el_", "--output_dir", str(out), "--do_predict",
                "--predict_on_dev", "--prefix", "dev_", "--save_scores",
                "--inference_nearest_k_entity", str(TOP_K), "--predict_batch_size", "128", "--num_threads", "1"])
    return json.loads(path.read_text())


def entity_types(run: Path) -> dict[int, str]:
    vocab = json.loads((run / "data" / "wikipedia" / "entid2entityitemid_geo.json").read_text())
    return {int(k): v["type"] for k, v in vocab.items()}


def el_rows(run: Path, split: str) -> list[dict]:
    path = run / "data" / "openqa" / "geo" / "entity_linking" / f"el_geo-{split}.jsonl"
    rows = [json.loads(line) for line in path.open()]
    return [r for r in rows if r.get("answer_entity")]


def spans(row: dict) -> list[tuple[int, int]]:
    return [(o, o + n) for o, n in zip(row["link_offset"], row["link_length"])]


def fit_prior(rows: list[dict], types: dict[int, str]) -> AnswerTypePrior:
    """The answer-type prior of the train questions (weight set per ranking)."""
    return AnswerTypePrior.fit([(r["question"], spans(r), types[r["answer_entity"][0][0]]) for r in rows
                                if r["answer_entity"][0][0] in types], weight=1.0)


def rankings(row: dict, pred: dict, types: dict[int, str], priors: dict[float, AnswerTypePrior]) -> dict[str, int]:
    """Top-1 entity id under each ranking."""
    ids, logp = pred["ids"], log_softmax(pred["scores"])
    gold_types = {types[e] for e, _ in row["answer_entity"]}
    mass: Counter = Counter()
    for e, lp in zip(ids, logp):
        mass[types.get(e)] += math.exp(lp)
    out = {"model": ids[0],
           "oracle_type": next((e for e in ids if types.get(e) in gold_types), ids[0])}
    for w in WEIGHTS:
        out[f"type_marginal@{w}"] = max(zip(ids, logp), key=lambda x: x[1] + w * math.log(mass[types.get(x[0])] + 1e-30))[0]
        out[f"answer_type_prior@{w}"] = priors[w].rerank(ids, pred["scores"], types.get, row["question"], spans(row))[0][0]
    return out


def timing(run: Path, repeats: int = 5) -> dict[str, float]:
    """CPU seconds of fitting the prior on the train split and of reranking one dev question's
    top 100 (the work ``--answer_type_weight`` adds to every prediction)."""
    types, train, dev = entity_types(run), el_rows(run, "train"), el_rows(run, "dev")
    scores = dev_scores(run)
    start = time.process_time()
    for _ in range(repeats):
        prior = fit_prior(train, types)
    fit = (time.process_time() - start) / repeats
    start = time.process_time()
    for _ in range(repeats):
        for row in dev:
            pred = scores[str(row["id"])]
            prior.rerank(pred["ids"], pred["scores"], types.get, row["question"], spans(row))
    per_question = (time.process_time() - start) / repeats / len(dev)
    return {"fit_cpu_s": round(fit, 4), "rerank_cpu_ms_per_question": round(1000 * per_question, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", required=True, type=Path, help="an edmem demo --output_dir")
    parser.add_argument("--timing", action="store_true",
                        help="also time the prior's fit and its rerank of one dev question (CPU seconds)")
    args = parser.parse_args()
    if args.timing:
        for run in args.run:
            print(json.dumps({"run": str(run), **timing(run)}))
    table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in args.run:
        types = entity_types(run)
        prior = fit_prior(el_rows(run, "train"), types)
        priors = {w: AnswerTypePrior(w, prior.questions, prior.words) for w in WEIGHTS}
        scores = dev_scores(run)
        dev = el_rows(run, "dev")
        top1: dict[str, dict[str, list]] = defaultdict(dict)
        for row in dev:
            for name, entity in rankings(row, scores[str(row["id"])], types, priors).items():
                top1[name][str(row["id"])] = ["", [entity]]
        for name, predictions in top1.items():
            groups = group_hits(predictions, dev, ks=(1,))
            figures = [100.0 * groups[g]["hits@1"] for g in EVAL_GROUPS]
            table[name]["runs"].append(figures)
            print(json.dumps({"run": str(run), "ranking": name, "dev_hits@1": dict(zip(EVAL_GROUPS, figures))}))
    print(f"\nmean dev hits@1 over {len(args.run)} run(s): " + " / ".join(EVAL_GROUPS))
    for name, entry in table.items():
        runs = entry["runs"]
        print(f"{name:22s} " + " / ".join(f"{sum(r[i] for r in runs) / len(runs):5.1f}" for i in range(len(EVAL_GROUPS))))


if __name__ == "__main__":
    main()
