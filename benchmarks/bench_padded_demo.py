"""Scale test with a trained memory: the demo's fine-tuned model answers its test questions from
its 1,218 trained rows padded with ~1M distractor rows, through each memory-read backend.

Distractors are drawn from a Gaussian with the trained rows' per-dimension mean and covariance
(so they look like entities to the model), appended after the trained rows; an answer landing on
a distractor counts as wrong. hits@1 = top-1 among the gold answer entities, over the linkable
test questions (``answer_entity`` of the EL test file). The reference is the exact read of the
unpadded 1,218-row memory. Needs a finished demo run (``make demo`` / ``edmem demo``)::

    python benchmarks/bench_padded_demo.py --demo_dir runs/demo [--distractors 1000000] \\
        [--backends exact,ivf,ivfpq,hnsw] [--dtypes fp32,int8] [--threads 2]

Prints one JSON line per backend × dtype: hits@1, its difference in points from the unpadded
exact read (``diff_points``) and from the exact read of the same padded memory
(``diff_points_vs_padded_exact``), top-1 agreement with that exact read, questions/s of the
prediction pass (tokenisation included), index build-or-load seconds.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edmem.data.entity_rows import EntityRows


class PaddedRows:
    """Row → id for a memory whose rows past ``real`` are distractors (id −1: never an answer)."""

    def __init__(self, rows: EntityRows):
        self.rows = rows

    def rows_to_ids(self, rows: np.ndarray) -> np.ndarray:
        out = np.full(rows.shape, -1, dtype=np.int64)
        real = rows < self.rows.num_rows
        out[real] = self.rows.rows_to_ids(rows[real])
        return out


def distractors(table: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """(d, count) rows ~ N(mean, cov) of the trained rows (columns of ``table``, (d, N))."""
    rows = table.t().double()
    mean = rows.mean(dim=0)
    cov = torch.cov(rows.t()) + 1e-6 * torch.eye(rows.shape[1], dtype=torch.float64)
    chol = torch.linalg.cholesky(cov)
    g = torch.Generator().manual_seed(seed)
    out = torch.empty(table.shape[0], count)
    for start in range(0, count, 65536):
        stop = min(count, start + 65536)
        z = torch.randn(stop - start, rows.shape[1], generator=g, dtype=torch.float64)
        out[:, start:stop] = (z @ chol.t() + mean).t().float()
    return out


def hits_at_1(examples, topk: dict[str, list[int]]) -> tuple[float, int]:
    linkable = [e for e in examples if e.answer_entities]
    hits = sum(topk[e.id][0] in {i for i, _ in e.answer_entities} for e in linkable)
    return hits / max(1, len(linkable)), len(linkable)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo_dir", required=True, help="output folder of a finished demo run")
    ap.add_argument("--distractors", type=int, default=1_000_000)
    ap.add_argument("--backends", default="exact,ivf,ivfpq,hnsw")
    ap.add_argument("--dtypes", default="fp32,int8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--nprobe", type=int, default=32)
    ap.add_argument("--ef_search", type=int, default=128)
    ap.add_argument("--pq_bytes", type=int, default=16)
    ap.add_argument("--work_dir", default=None, help="where the indexes are saved (default: a temp dir)")
    args = ap.parse_args(argv)

    import faiss

    from edmem.data.collate import ELCollator
    from edmem.data.dataset import ELDataset
    from edmem.data.examples import ELEncodingOptions
    from edmem.data.formats import load_el_split
    from edmem.index import attach_memory_index, load_memory_index
    from edmem.inference.predict import predict_entities
    from edmem.modeling.model import EDMemModel
    from edmem.training.args import parse_args
    from edmem.runtime.distributed import DistInfo
    from edmem.apps.common import build_config, load_tokenizer, load_weights

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    demo = Path(args.demo_dir)
    finetune = demo / "finetune"
    if not (finetune / "config.json").is_file():
        print(f"bench_padded_demo: error: {finetune}: no fine-tuned model (run the demo first)", file=sys.stderr)
        return 1
    flags = parse_args([
        "--task", "geo", "--data_dir", str(demo / "data" / "openqa"), "--datafile_prefix", "entity_linking/el_",
        "--id2entity_file", str(demo / "data" / "wikipedia" / "entid2entityitemid_geo.json"),
        "--model_name", str(demo / "tokenizer"), "--output_dir", str(finetune),
        "--num_lower_layers", "1", "--num_upper_layers", "3", "--entity_embed_size", "64",
        "--lower_decoder_attn", "upper_encoder", "--generate_target", "entity_linking"], mode="predict")
    rows = EntityRows.load(finetune)
    tokenizer = load_tokenizer(flags.model_name)
    model = EDMemModel(build_config(flags, tokenizer, rows.num_rows))
    load_weights(model, finetune, "demo model")
    model.eval()
    examples, _ = load_el_split(flags.data_dir, flags.task, flags.datafile_prefix, "test")
    dataset = ELDataset(examples, tokenizer, ELEncodingOptions.from_args(flags), is_training=False,
                        id_to_row=lambda i: rows.id_to_row(i) if i in rows else 0)
    collate = ELCollator(pad_token_id=model.config.pad_token_id,
                         decoder_start_token_id=model.config.decoder_start_token_id)

    def run(label: dict) -> None:
        start = time.perf_counter()
        pred = predict_entities(model, dataset, collate, 64, DistInfo(), PaddedRows(rows))
        took = time.perf_counter() - start
        hits, count = hits_at_1(examples, pred.topk)
        if "padded_exact" in results:   # the same questions through the exact read of the same memory
            ref = results["padded_exact"]
            label["top1_agreement_with_padded_exact"] = round(
                sum(pred.topk[q][0] == ref[q][0] for q in ref) / len(ref), 4)
            label["diff_points_vs_padded_exact"] = round(100 * (hits - results["padded_exact_hits"]), 2)
        label.update(hits_at_1=round(hits, 4), questions=count, questions_per_s=round(len(examples) / took, 1),
                     peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
        if "reference_hits_at_1" in results:
            label["diff_points"] = round(100 * (hits - results["reference_hits_at_1"]), 2)
        print(json.dumps(label), flush=True)
        results.setdefault("reference_hits_at_1", hits)

    results: dict = {}
    run({"memory": "trained", "rows": rows.num_rows, "backend": "builtin", "dtype": "fp32"})
    trained = model.EntityEmbedding.weight.detach()
    padded = torch.cat([trained, distractors(trained, args.distractors, args.seed)], dim=1)
    model.EntityEmbedding.weight = torch.nn.Parameter(padded, requires_grad=False)
    n = padded.shape[1]
    start = time.perf_counter()
    pred = predict_entities(model, dataset, collate, 64, DistInfo(), PaddedRows(rows))
    results["padded_exact"], results["padded_exact_hits"] = pred.topk, hits_at_1(examples, pred.topk)[0]
    print(json.dumps({"memory": "padded", "rows": n, "backend": "builtin", "dtype": "fp32",
                      "hits_at_1": round(results["padded_exact_hits"], 4),
                      "diff_points": round(100 * (results["padded_exact_hits"] - results["reference_hits_at_1"]), 2),
                      "questions_per_s": round(len(examples) / (time.perf_counter() - start), 1)}), flush=True)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="padded_demo_"))
    knobs = dict(nprobe=args.nprobe, ef_search=args.ef_search, pq_bytes=args.pq_bytes)
    for backend in args.backends.split(","):
        for dtype in args.dtypes.split(","):
            start = time.perf_counter()
            index = load_memory_index(work, padded, backend, dtype, **knobs)
            built = time.perf_counter() - start
            attach_memory_index(model, index)
            run({"memory": "padded", "rows": n, "backend": backend, "dtype": dtype,
                 "build_or_load_s": round(built, 2), **{k: v for k, v in knobs.items()}})
            attach_memory_index(model, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
