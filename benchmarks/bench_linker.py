"""Speed of ``EntityLinker`` on the demo model (docs/linking.md).

Prints one JSON object with, at ``--threads`` torch threads (default 1) and after a warm-up:

* ``single``: latency of ``linker(question)`` over the demo's test questions — p50 / p95 / mean
  milliseconds (detection + encoding + forward + result objects, one question at a time);
* ``batch``: questions per second of ``linker.batch(questions, batch_size)`` (raw text: mentions
  detected), median of ``--repeats`` passes;
* ``plain``: questions per second of the plain prediction path over the same questions with their
  gold spans (``ELDataset`` + ``edmem.inference.predict.predict_entities``, what ``edmem
  predict`` runs), median of ``--repeats`` passes;
* ``batch_over_plain``: the ratio (goal ≥ 0.9).

Each figure also comes as process CPU time (``cpu_*``, ``*_per_cpu_s``): on a shared machine the
wall clock mostly measures the neighbours; ``load_average_1min`` says how busy the machine was.

    .venv/bin/python benchmarks/bench_linker.py --model runs/demo/model --data runs/demo/data
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "runs" / "demo" / "model")
    parser.add_argument("--data", type=Path, default=REPO / "runs" / "demo" / "data")
    parser.add_argument("--split", default="test")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--top_k", type=int, default=5)
    args = parser.parse_args(argv)

    import torch

    from edmem.data.collate import ELCollator
    from edmem.data.dataset import ELDataset
    from edmem.data.formats import load_el_split
    from edmem.inference.linker import EntityLinker
    from edmem.inference.predict import predict_entities
    from edmem.runtime.distributed import DistInfo

    torch.set_num_threads(args.threads)
    linker = EntityLinker.from_pretrained(args.model, top_k=args.top_k)
    md = linker.model_dir
    examples, _ = load_el_split(args.data / "openqa", "geo", "entity_linking/el_", args.split,
                                is_training=False)
    texts = [e.question for e in examples]

    for text in texts[:20]:   # warm-up
        linker(text)
    single, single_cpu = [], []
    for text in texts:
        start, cpu = time.perf_counter(), time.process_time()
        linker(text)
        single.append((time.perf_counter() - start) * 1000)
        single_cpu.append((time.process_time() - cpu) * 1000)

    batch_runs, plain_runs, batch_cpu, plain_cpu = [], [], [], []
    collate = ELCollator(md.config.pad_token_id, md.config.decoder_start_token_id)
    dist = DistInfo(rank=0, world_size=1, local_rank=-1, device=torch.device("cpu"))
    lenient = lambda i: md.rows.id_to_row(i) if i in md.rows else 0  # noqa: E731 (as run_qa)
    for _ in range(args.repeats):   # interleaved, so machine noise hits both alike
        start, cpu = time.perf_counter(), time.process_time()
        linker.batch(texts, batch_size=args.batch_size)
        batch_runs.append(len(texts) / (time.perf_counter() - start))
        batch_cpu.append(len(texts) / (time.process_time() - cpu))
        start, cpu = time.perf_counter(), time.process_time()
        data = ELDataset(examples, md.tokenizer, md.encoding, is_training=False, id_to_row=lenient)
        predict_entities(md.model, data, collate, args.batch_size, dist, md.rows)
        plain_runs.append(len(texts) / (time.perf_counter() - start))
        plain_cpu.append(len(texts) / (time.process_time() - cpu))

    batch_qps, plain_qps = statistics.median(batch_runs), statistics.median(plain_runs)
    result = {
        "model": str(args.model), "questions": len(texts), "threads": args.threads,
        "batch_size": args.batch_size, "top_k": args.top_k,
        "single": {"p50_ms": round(percentile(single, 50), 2), "p95_ms": round(percentile(single, 95), 2),
                   "mean_ms": round(statistics.mean(single), 2),
                   "cpu_p50_ms": round(percentile(single_cpu, 50), 2),
                   "cpu_p95_ms": round(percentile(single_cpu, 95), 2)},
        "batch": {"questions_per_s": round(batch_qps, 1), "runs": [round(x, 1) for x in batch_runs],
                  "questions_per_cpu_s": round(statistics.median(batch_cpu), 1)},
        "plain": {"questions_per_s": round(plain_qps, 1), "runs": [round(x, 1) for x in plain_runs],
                  "questions_per_cpu_s": round(statistics.median(plain_cpu), 1)},
        "batch_over_plain": round(batch_qps / plain_qps, 3),
        "batch_over_plain_cpu": round(statistics.median(batch_cpu) / statistics.median(plain_cpu), 3),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
