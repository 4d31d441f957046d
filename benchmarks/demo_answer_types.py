"""How much of the demo's dev error is the answer's *type*, and what type information would recover.

For each demo run (``--run DIR``, an ``edmem demo --output_dir``) the fine-tuned model predicts
the dev split with its top-100 scores (``python -m edmem.run_qa --model DIR/finetune/model
--do_predict --predict_on_dev --save_scores``, written under ``DIR/answer_types/``), and dev
hits@1 per group (held-out facts / held-out phrasings / both) is printed for four rankings:

* ``model``: the model's own ranking (the demo's figure);
* ``oracle_type``: only entities of the gold answer's type (an upper bound, not a system);
* ``type_marginal@w``: log p(e) + w · log P(type(e)), P = the softmax mass per type over the top
  100 — the model's own belief about the type;
* ``naive_bayes@w``: log p(e) + w · log Q(type(e) | question), Q = a Bernoulli naive-Bayes model
  of the answer type from the *train* questions' words (mention text blanked).

Entity types come from the run's ``entid2entityitemid_geo.json``. Dev only: nothing here reads
test. Used in docs/demo.md ("Answer types")::

    python benchmarks/demo_answer_types.py --run runs/demo-s0 --run runs/demo-s1 --run runs/demo-s2
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections import Counter, defaultdict
from pathlib import Path

from edmem.demo.groups import group_hits
from edmem.demo.questions import EVAL_GROUPS
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


def question_words(row: dict) -> set[str]:
    """The question's words with every mention replaced by one placeholder."""
    text = row["question"]
    for offset, length in sorted(zip(row["link_offset"], row["link_length"]), reverse=True):
        text = text[:offset] + " @ " + text[offset + length:]
    return {"ENT" if w == "@" else w for w in re.findall(r"[a-z']+|@", text.lower())}


class NaiveBayesTypes:
    """Bernoulli naive Bayes over question words → answer type (add-0.1 smoothing)."""

    def __init__(self, rows: list[dict], types: dict[int, str]):
        self.docs: Counter = Counter()
        self.words: dict[str, Counter] = defaultdict(Counter)
        for row in rows:
            t = types[row["answer_entity"][0][0]]
            self.docs[t] += 1
            self.words[t].update(question_words(row))
        self.vocab = set().union(*self.words.values())

    def log_probs(self, row: dict) -> dict[str, float]:
        present = question_words(row) & self.vocab
        scores = {}
        for t, n in self.docs.items():
            score = math.log(n)
            for w in self.vocab:
                p = (self.words[t][w] + 0.1) / (n + 0.2)
                score += math.log(p if w in present else 1.0 - p)
            scores[t] = score
        top = max(scores.values())
        z = math.log(sum(math.exp(s - top) for s in scores.values())) + top
        return {t: s - z for t, s in scores.items()}


def log_softmax(scores: list[float]) -> list[float]:
    top = max(scores)
    z = math.log(sum(math.exp(s - top) for s in scores)) + top
    return [s - z for s in scores]


def rankings(row: dict, pred: dict, types: dict[int, str], nb: NaiveBayesTypes) -> dict[str, int]:
    """Top-1 entity id under each ranking."""
    ids, logp = pred["ids"], log_softmax(pred["scores"])
    gold_types = {types[e] for e, _ in row["answer_entity"]}
    mass: Counter = Counter()
    for e, lp in zip(ids, logp):
        mass[types.get(e)] += math.exp(lp)
    q = nb.log_probs(row)
    out = {"model": ids[0],
           "oracle_type": next((e for e in ids if types.get(e) in gold_types), ids[0])}
    for w in WEIGHTS:
        out[f"type_marginal@{w}"] = max(zip(ids, logp), key=lambda x: x[1] + w * math.log(mass[types.get(x[0])] + 1e-30))[0]
        out[f"naive_bayes@{w}"] = max(zip(ids, logp), key=lambda x: x[1] + w * q.get(types.get(x[0]), -30.0))[0]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", required=True, type=Path, help="an edmem demo --output_dir")
    args = parser.parse_args()
    table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in args.run:
        types = entity_types(run)
        nb = NaiveBayesTypes(el_rows(run, "train"), types)
        scores = dev_scores(run)
        dev = el_rows(run, "dev")
        top1: dict[str, dict[str, list]] = defaultdict(dict)
        for row in dev:
            for name, entity in rankings(row, scores[str(row["id"])], types, nb).items():
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
