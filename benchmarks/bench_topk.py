"""Exact top-k kernel A/B at 1M rows: where the exact read's time goes (docs/model.md, "The exact kernel").

One process, alternating configurations, each timed batch preceded by its own 2048³ GEMM
yardstick (the machine's load moves): ``plain`` (``q @ E`` + ``topk`` per 65,536 rows), ``fused<B>``
(``edmem.modeling.topk.fused_topk`` with B-row blocks over the model's (d, N) layout), ``int8``
(the kernel over the int8 lean table), ``*_unsharded`` / ``*_always_sharded`` (the same with the
per-thread sharding of scans of ≥ ``SHARD_MIN_ROWS`` rows per thread switched off / forced at any
size; ``--rows 100000`` shows why small tables are not split) and ``gemm_only`` (the block products
alone, no top-k: the kernel's ceiling). Reads of one EL batch of 32 questions: 64 + 96 + 32 queries, k = 100. Prints
one JSON line: per configuration [median, min, max] of the fraction of the GEMM bound.
Needs the synthetic tables of ``benchmarks/bench_memory.py`` (run it once at 1M first)::

    python benchmarks/bench_topk.py [--threads 2] [--repeats 3] [--cache /tmp/edmem-bench-memory]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_memory import bound_seconds, gemm_seconds, plain_topk, queries, table_file  # noqa: E402

from edmem.index import LeanTable  # noqa: E402
from edmem.modeling import topk as topk_module  # noqa: E402
from edmem.modeling.topk import DEFAULT_BLOCK_ROWS, DenseRows, fused_topk  # noqa: E402


def with_shard_min(read, rows: int):
    """``read`` with the kernel's ``SHARD_MIN_ROWS`` set to ``rows`` (0: always sharded, huge: never)."""
    def run(q):
        saved, topk_module.SHARD_MIN_ROWS = topk_module.SHARD_MIN_ROWS, rows
        try:
            return read(q)
        finally:
            topk_module.SHARD_MIN_ROWS = saved
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--clusters", type=int, default=4096)
    ap.add_argument("--cache", default="/tmp/edmem-bench-memory")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    weight = LeanTable.load(table_file(cache, args.rows, "fp32", args.clusters, 0)).rows.t()   # (d, N)
    int8 = LeanTable.load(table_file(cache, args.rows, "int8", args.clusters, 0))
    n, qs = weight.shape[1], queries(192, args.clusters, 0)

    def batch(read) -> float:
        start, offset = time.perf_counter(), 0
        for m in (64, 96, 32):
            read(qs[offset:offset + m])
            offset += m
        return time.perf_counter() - start

    b = DEFAULT_BLOCK_ROWS
    configs = {
        "plain": lambda q: plain_topk(q, weight, 100),
        f"fused{b}": lambda q: fused_topk(q, DenseRows(weight, columns=True), 100, b),
        "fused65536": lambda q: fused_topk(q, DenseRows(weight, columns=True), 100, 65536),
        f"int8_{b}": lambda q: fused_topk(q, int8, 100, b),
        f"gemm_only{b}": lambda q: [weight[:, s:s + b].t() @ q.t() for s in range(0, n, b)],
    }
    configs[f"fused{b}_unsharded"] = with_shard_min(configs[f"fused{b}"], 1 << 62)
    configs[f"fused{b}_always_sharded"] = with_shard_min(configs[f"fused{b}"], 0)
    configs[f"int8_{b}_unsharded"] = with_shard_min(configs[f"int8_{b}"], 1 << 62)
    for read in configs.values():
        batch(read)
    fractions: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(args.repeats):
        for name, read in configs.items():
            gemm = gemm_seconds(2)
            fractions[name].append(bound_seconds(gemm, n) / batch(read))
    print(json.dumps({"rows": n, "threads": args.threads, **{
        name: [round(statistics.median(v), 3), round(min(v), 3), round(max(v), 3)] for name, v in fractions.items()}}))


if __name__ == "__main__":
    main()
