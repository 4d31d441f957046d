"""Entity-memory benchmark: the eval-mode memory reads through each backend × table dtype × size.

Table: synthetic *clustered* rows (``--clusters`` Gaussian centres, unit noise; d 256), the
shape that approximate indexes are built for. Queries: fresh points of the same clusters.
One EL batch of 32 questions makes 192 memory reads (64 encoder, 96 decoder, 32 head; the
bart-large-shaped bench below): timed as three searches of 64, 96 and 32 queries (batch 32)
and of 2, 3 and 1 queries (batch 1), k = 100.

Each configuration runs in its own process (so its peak RSS is its own) and prints ONE JSON
line: ``build_s`` (index built and saved, from the table on disk), ``load_s`` (reloaded from
its files, memory-mapped table), ``qps_b1`` / ``qps_b32`` (questions per second, memory reads
only), ``peak_rss_mb``, ``top1_agreement`` and ``recall_at_100`` against the exact fp32 read
(the exact read over the same stored table where no fp32 table is kept, ``reference`` says
which; ``plain-fp32`` is the unfused ``q @ E`` + ``topk`` read), ``gemm2048_s`` (a 2048³ fp32
matmul in the same process, the yardstick, taken again just before each timed batch) and
``fraction_of_bound`` (the 192 reads' arithmetic, 2·192·N·d flops, at the rate of the yardstick
taken just before, divided by the measured time; median over the repeats, with its range). With ``--el`` the whole EL model (d_model 256, 2+4 layers, vocab
50,267) runs its eval forward with the backend attached and the float table dropped:
``el_qps_b32`` and the peak RSS are then those of EL inference.

Backends: ``plain`` (the unfused read: ``q @ E`` + ``topk`` per 65,536 rows), ``builtin`` (the
model's own eval read: ``chunked_topk`` over its (d, N) float table, i.e. the fused kernel),
``exact``, ``hnsw``, ``ivf``, ``ivfpq`` (``edmem.index``). Usage::

    python benchmarks/bench_memory.py --sizes 1000000 --backends builtin,exact,ivf,ivfpq \\
        --dtypes fp32,int8 [--threads 2] [--el] [--nprobe 32] [--cache /tmp/edmem-bench-memory]
    python benchmarks/bench_memory.py --legacy [--train]   # the original EL timing (docs/model.md)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ES, EE, PAD, BOS, EOS = 50265, 50266, 1, 0, 2
DIM = 256
READS_B32 = (64, 96, 32)
READS_B1 = (2, 3, 1)
K = 100


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def gemm_seconds(repeats: int = 5) -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bound_seconds(gemm: float, n: int, reads: tuple[int, ...] = READS_B32) -> float:
    """Seconds of the reads' arithmetic (2·M·N·d flops) at the 2048³ yardstick's rate."""
    return 2 * sum(reads) * n * DIM / (2 * 2048 ** 3 / gemm)


def plain_topk(q: torch.Tensor, weight: torch.Tensor, k: int, chunk: int = 65536):
    """The read before the fused kernel: ``q @ E`` per chunk of the (d, N) table, ``topk`` of each
    chunk's (M, chunk) scores, merged with the running top-k (the reference of ``fraction_of_bound``
    comparisons and of the kernel's equality check)."""
    best_v = best_i = None
    for start in range(0, weight.shape[1], chunk):
        v, i = (q @ weight[:, start:start + chunk]).topk(min(k, weight.shape[1] - start), dim=1)
        i = i + start
        if best_v is not None:
            v, order = torch.cat([best_v, v], dim=1).topk(k, dim=1)
            i = torch.cat([best_i, i], dim=1).gather(1, order)
        best_v, best_i = v, i
    return best_v, best_i


# ---------------------------------------------------------------------------- synthetic data
def centres(clusters: int, seed: int) -> torch.Tensor:
    return torch.randn(clusters, DIM, generator=torch.Generator().manual_seed(seed)) * 0.5


def row_blocks(n: int, clusters: int, seed: int, block: int = 65536):
    """The table's rows in blocks (same rows for any block size given the seed)."""
    c = centres(clusters, seed)
    for start in range(0, n, block):
        g = torch.Generator().manual_seed(seed * 1_000_003 + start)
        stop = min(n, start + block)
        yield c[torch.randint(clusters, (stop - start,), generator=g)] + torch.randn(stop - start, DIM, generator=g) * 0.25


def queries(m: int, clusters: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 7)
    c = centres(clusters, seed)
    return c[torch.randint(clusters, (m,), generator=g)] + torch.randn(m, DIM, generator=g) * 0.25


def table_file(cache: Path, n: int, dtype: str, clusters: int, seed: int) -> Path:
    """The synthetic table stored as a lean table file (made once, then mapped)."""
    from edmem.index import LeanTable

    path = cache / f"rows-{n}-{clusters}-{seed}-{dtype}.safetensors"
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        table = LeanTable.from_blocks(row_blocks(n, clusters, seed), n, DIM, dtype,
                                      source_digest=f"synthetic:{n}:{clusters}:{seed}")
        table.save(path)
    return path


# ---------------------------------------------------------------------------- one configuration
def time_reads(search, qs: torch.Tensor, reads: tuple[int, ...], repeats: int) -> float:
    """Median seconds of one EL batch's reads (searches of ``reads`` queries in turn)."""
    return statistics.median(t for t, _ in timed_pairs(search, qs, reads, repeats, yardstick=False))


def timed_pairs(search, qs: torch.Tensor, reads: tuple[int, ...], repeats: int,
                yardstick: bool = True) -> list[tuple[float, float]]:
    """``repeats`` × (seconds of one EL batch's reads, seconds of the 2048³ GEMM taken just
    before them): on a loaded machine the yardstick moves, so each timing gets its own."""
    def batch() -> float:
        start = time.perf_counter()
        offset = 0
        for m in reads:
            search(qs[offset:offset + m], K)
            offset += m
        return time.perf_counter() - start

    batch()  # warm-up (pages of a mapped table, allocator)
    pairs = []
    for _ in range(repeats):
        gemm = gemm_seconds(2) if yardstick else 0.0
        pairs.append((batch(), gemm))
    return pairs


def agreement(found: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    top1 = float((found[:, 0] == ref[:, 0]).float().mean())
    recall = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, ref)) / ref.numel()
    return top1, recall


def run_one(args: argparse.Namespace) -> dict:
    from edmem.index import ExactIndex, LeanTable, load_memory_index
    from edmem.index.store import INDEX_DIR
    from edmem.modeling.memory import chunked_topk
    from edmem.modeling.topk import DEFAULT_BLOCK_ROWS

    torch.set_num_threads(args.threads)
    backend, dtype, n = args.one.split(":")
    if backend not in ("builtin", "plain", "exact"):   # FAISS only where it is used (~12 MB RSS)
        import faiss
        faiss.omp_set_num_threads(args.threads)
    n = int(n)
    cache = Path(args.cache)
    result: dict = {"backend": backend, "dtype": dtype, "rows": n, "dim": DIM, "k": K,
                    "threads": args.threads, "clusters": args.clusters}
    if backend == "exact":
        result["table_pages"] = "resident" if args.resident else "streamed"
    # table on disk; fp32 reference kept up to --fp32_max rows
    ref_dtype = "fp32" if n <= args.fp32_max else dtype
    path = table_file(cache, n, dtype, args.clusters, args.seed)
    table = LeanTable.load(path)
    qs = queries(max(sum(READS_B32), args.eval_queries), args.clusters, args.seed)
    knobs = dict(nprobe=args.nprobe, ef_search=args.ef_search, pq_bytes=args.pq_bytes, nlist=args.nlist,
                 rerank=args.rerank)
    workdir = cache / f"index-{n}-{args.clusters}-{args.seed}"
    if backend in ("builtin", "plain"):
        weight = table.rows.t()  # (d, N) view of the mapped fp32 rows: the model's layout
        if dtype != "fp32":
            raise SystemExit(f"{backend} reads the float32 table only")
        search = ((lambda q, k: chunked_topk(q, weight, k, DEFAULT_BLOCK_ROWS)) if backend == "builtin"
                  else (lambda q, k: plain_topk(q, weight, k)))
        result.update(build_s=0.0, load_s=0.0)
    else:
        start = time.perf_counter()
        if backend != "exact" and not (workdir / INDEX_DIR / f"{backend}-{dtype}.faiss").is_file():
            (workdir / INDEX_DIR).mkdir(parents=True, exist_ok=True)
            lean = workdir / INDEX_DIR / f"table-{dtype}.safetensors"
            if not lean.exists():
                os.symlink(path, lean)
            load_memory_index(workdir, None, backend, dtype, **knobs)  # builds from the lean table
            result["build_s"] = round(time.perf_counter() - start, 2)
        if backend == "exact":
            result["build_s"] = 0.0
        start = time.perf_counter()
        if backend == "exact":
            index = ExactIndex(LeanTable.load(path, resident=args.resident))
        else:
            index = load_memory_index(workdir, None, backend, dtype, **knobs)
        result["load_s"] = round(time.perf_counter() - start, 3)
        search = index.search
    result["table_mb"] = round(table.nbytes / 2 ** 20, 1)
    pairs = timed_pairs(search, qs, READS_B32, args.repeats)
    t32 = statistics.median(t for t, _ in pairs)
    gemm = statistics.median(g for _, g in pairs)
    t1 = time_reads(search, qs, READS_B1, args.repeats)
    result.update(qps_b32=round(32 / t32, 2), qps_b1=round(1 / t1, 2), s_per_batch32=round(t32, 4),
                  s_per_batch1=round(t1, 5))
    # each timing against the yardstick taken just before it; the median of those fractions
    fractions = [bound_seconds(g, n) / t for t, g in pairs]
    result.update(gemm2048_s=round(gemm, 4), fraction_of_bound=round(statistics.median(fractions), 3),
                  fraction_of_bound_range=[round(min(fractions), 3), round(max(fractions), 3)])
    if args.el and backend not in ("builtin", "plain"):
        result.update(el_inference(index, n, args.threads, args.repeats))
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)   # before the quality check loads the reference
    # quality against the exact read of the reference table
    ev = qs[:args.eval_queries]
    found = torch.cat([search(ev[i:i + 64], K)[1] for i in range(0, len(ev), 64)])
    ref_table = LeanTable.load(table_file(cache, n, ref_dtype, args.clusters, args.seed))
    if ref_dtype == "fp32":   # the plain read (q @ E, topk): also checks the fused kernel against it
        ref = torch.cat([plain_topk(ev[i:i + 64], ref_table.rows.t(), K)[1] for i in range(0, len(ev), 64)])
    else:
        ref = torch.cat([ExactIndex(ref_table).search(ev[i:i + 64], K)[1] for i in range(0, len(ev), 64)])
    result["top1_agreement"], result["recall_at_100"] = (round(x, 4) for x in agreement(found, ref))
    result["reference"] = f"plain-{ref_dtype}" if ref_dtype == "fp32" else f"exact-{ref_dtype}"
    if backend not in ("builtin", "plain", "exact") and dtype != ref_dtype:
        # the index's own error, apart from the table's quantisation: against the exact read of
        # the same stored table
        same = torch.cat([ExactIndex(table).search(ev[i:i + 64], K)[1] for i in range(0, len(ev), 64)])
        result["top1_vs_exact_same_dtype"], result["recall_vs_exact_same_dtype"] = (
            round(x, 4) for x in agreement(found, same))
    return result


def el_inference(index, n: int, threads: int, repeats: int) -> dict:
    """EL eval forward of the bench model with ``index`` attached and no float table."""
    from edmem.index import attach_memory_index

    cfg = bench_config(n_entities=16)
    from edmem.modeling.model import EDMemModel
    model = EDMemModel(cfg).eval()
    model.EntityEmbedding.weight = torch.nn.Parameter(torch.empty(DIM, n, device="meta"), requires_grad=False)
    model.config.entity_vocab_size = n
    attach_memory_index(model, index, drop_table=True)
    batch = el_batch(32, 20, n)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask")}
    times = []
    with torch.no_grad():
        model(**inputs)
        for _ in range(repeats):
            start = time.perf_counter()
            model(**inputs)
            times.append(time.perf_counter() - start)
    return {"el_s_per_batch32": round(statistics.median(times), 4),
            "el_qps_b32": round(32 / statistics.median(times), 2)}


# ---------------------------------------------------------------------------- the bench model
def bench_config(n_entities: int, d_model: int = 256, top_k: int = K):
    from edmem.config import EDMemConfig
    return EDMemConfig(vocab_size=50267, d_model=d_model, encoder_layers=6, decoder_layers=6,
                       encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=4 * d_model,
                       decoder_ffn_dim=4 * d_model, num_lower_layers=2, num_upper_layers=4,
                       entity_vocab_size=n_entities, entity_embed_size=DIM,
                       inference_nearest_k_entity=top_k, generate_target="entity_linking",
                       lower_decoder_attn="upper_encoder")


def el_batch(batch_size: int, words: int, n_entities: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Questions of ``words`` tokens with 2 marked mentions; decoder = shifted question + <E_s>."""
    g = torch.Generator().manual_seed(seed)
    enc_rows, links = [], []
    for _ in range(batch_size):
        toks = torch.randint(10, 50000, (words,), generator=g).tolist()
        row = [BOS, BOS] + toks[:3] + [ES] + toks[3:5] + [EE] + toks[5:12] + [ES] + toks[12:14] + [EE] + toks[14:] + [EOS]
        link = [0] * len(row)
        for pos, tok in enumerate(row):
            if tok == ES:
                link[pos] = int(torch.randint(10, n_entities, (1,), generator=g))
        enc_rows.append(row)
        links.append(link)
    enc = torch.tensor(enc_rows)
    dec = torch.cat([torch.full((batch_size, 1), EOS), enc[:, :-1], torch.full((batch_size, 1), ES)], dim=1)
    enc_link = torch.tensor(links)
    dec_link = torch.cat([torch.zeros(batch_size, 1, dtype=torch.long), enc_link[:, :-1],
                          torch.randint(10, n_entities, (batch_size, 1), generator=g)], dim=1)
    return dict(input_ids=enc, attention_mask=torch.ones_like(enc), decoder_input_ids=dec,
                decoder_attention_mask=torch.ones_like(dec), labels=dec.clone(),
                input_entity_link=enc_link, output_entity_link=dec_link)


def legacy(args: argparse.Namespace) -> None:
    """The original EL timing with the model's own 1M float table (docs/model.md)."""
    from edmem.modeling.model import EDMemModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    cfg = bench_config(args.entities)
    model = EDMemModel(cfg).eval()
    print(f"model built in {time.perf_counter() - t0:.1f}s; RSS after build {peak_rss_mb():.0f} MB")
    batch = el_batch(32, 20, args.entities)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask")}
    times = []
    with torch.no_grad():
        model(**inputs)
        for _ in range(args.repeats):
            t = time.perf_counter()
            model(**inputs)
            times.append(time.perf_counter() - t)
    print(json.dumps({"legacy_el_s_per_batch32": round(statistics.median(times), 3),
                      "peak_rss_mb": round(peak_rss_mb(), 1), "gemm2048_s": round(gemm_seconds(), 4)}))
    if args.train:
        model.train()
        t = time.perf_counter()
        out = model(**batch)
        out.loss.backward()
        print(json.dumps({"train_step_s": round(time.perf_counter() - t, 2), "peak_rss_mb": round(peak_rss_mb(), 1)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="1000000")
    ap.add_argument("--backends", default="plain,builtin,exact,ivf,ivfpq,hnsw")
    ap.add_argument("--dtypes", default="fp32,int8")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clusters", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval_queries", type=int, default=512, help="queries scored for agreement/recall")
    ap.add_argument("--fp32_max", type=int, default=1_000_000,
                    help="largest size whose fp32 table is written (the reference of the others)")
    ap.add_argument("--nprobe", type=int, default=32)
    ap.add_argument("--ef_search", type=int, default=128)
    ap.add_argument("--pq_bytes", type=int, default=32)
    ap.add_argument("--nlist", type=int, default=0)
    ap.add_argument("--rerank", type=int, default=0, help="candidates re-scored exactly (0 = max(k, 100))")
    ap.add_argument("--el", action="store_true", help="also time the EL model's eval forward")
    ap.add_argument("--resident", action="store_true",
                    help="exact: keep the mapped table's pages in the process (default: a scan streams "
                         "them, edmem.index.table)")
    ap.add_argument("--cache", default="/tmp/edmem-bench-memory")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--legacy", action="store_true", help="the original EL timing (1M float table)")
    ap.add_argument("--entities", type=int, default=1000010)
    ap.add_argument("--train", action="store_true", help="with --legacy: one training step too")
    args = ap.parse_args()
    if args.legacy:
        return legacy(args)
    if args.one:
        print(json.dumps(run_one(args)), flush=True)
        return
    passthrough = [a for a in sys.argv[1:]]
    for n in args.sizes.split(","):
        for backend in args.backends.split(","):
            for dtype in args.dtypes.split(","):
                if backend in ("builtin", "plain") and dtype != "fp32":
                    continue
                cmd = [sys.executable, __file__, *passthrough, "--one", f"{backend}:{dtype}:{int(n)}"]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
                if proc.returncode or not lines:
                    print(json.dumps({"backend": backend, "dtype": dtype, "rows": int(n),
                                      "error": proc.stderr.strip().splitlines()[-1:] }), flush=True)
                else:
                    print(lines[-1], flush=True)


if __name__ == "__main__":
    main()
