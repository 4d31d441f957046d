"""Entity-linking speed and memory at the 'small' configuration (docs/training.md).

Measures, with ``--threads`` torch threads (default 2) and after warm-up:

* ``train_s_per_step``: one optimizer step (collate + forward + backward + clip + AdamW) on a
  batch of 32 questions, median over ``--steps``;
* ``predict_questions_per_s``: EL prediction (items + collate + eval forward + top-k), batch 32;
* ``peak_rss_mb``: the process's peak resident memory;
* ``gemm2048_s``: a fixed fp32 2048×2048×2048 matmul, median of 10 — a yardstick of the machine,
  so the ratios can be compared across machines.

Model: d_model 256, 6+6 BART layers split 2 lower / 4 upper, 8 heads, FFN 1024, 50,267-token
vocabulary (like bart-large), memory 100,000 × 256, max input 50. Questions: the real WQ training
questions with their mention links when ../shared is present, else synthetic questions of similar
length. The last line printed is one JSON object.

    .venv/bin/python benchmarks/bench_el.py [--threads 2] [--steps 10] [--profile]

``--same-tensors``: no data path at all — one fixed synthetic batch of 32 EL questions (2
mentions each, ~25 tokens; ``benchmarks/bench_memory.py``'s batch) through the same model:
``train_s_per_step`` (forward + backward + AdamW step) and ``infer_questions_per_s`` (eval
forward only, no tokenisation), optionally with ``--memory_index`` / ``--memory_index_dtype``
attached for the inference part (the float table is then dropped after training is timed; the
reads' top-1 agreement with the exact read is printed), and
``--gradient_checkpointing`` / ``--mmap_threshold`` for the training part's memory.
``infer_qps_at_gemm_0.10`` rescales the rate to a machine whose 2048³ GEMM takes 0.10 s.
``infer_gflop_per_batch`` counts the matrix products of one eval forward (``FlopCounterMode``:
transformer linears and attention, the memory reads' score products); ``infer_qps_gemm_bound``
is the rate if all of them ran at the 2048³ GEMM's speed and nothing else took any time, and
``infer_fraction_of_gemm_bound`` the share of it reached.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDMEM_SHARED", REPO.parent / "shared"))
WQ_TRAIN = SHARED / "data" / "edmem-wq" / "openqa" / "wq" / "entity_linking" / "el_wq-train.jsonl"
MEMORY_ROWS = 100_000
BATCH = 32


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def gemm_seconds(torch) -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    times = []
    for _ in range(10):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed_train_step(model, optimizer, next_batch) -> float:
    """Seconds of one optimizer step on ``next_batch()`` (batch making included, clip 0.1)."""
    import torch

    start = time.perf_counter()
    out = model(**next_batch(), return_dict=True)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def time_train_steps(model, optimizer, next_batch, warmup: int, steps: int) -> list[float]:
    """``warmup`` untimed steps, then the seconds of each of ``steps`` steps (train mode)."""
    model.train()
    for _ in range(warmup):
        timed_train_step(model, optimizer, next_batch)
    return [timed_train_step(model, optimizer, next_batch) for _ in range(steps)]


def load_examples():
    """Real WQ training questions (mentions + answer entities), or synthetic ones."""
    from edmem.data.examples import example_from_text
    from edmem.data.formats import load_el_examples

    if WQ_TRAIN.is_file():
        examples, _ = load_el_examples(WQ_TRAIN, is_training=True, log=None)
        return examples, "wq"
    rng = random.Random(0)
    words = ["what", "is", "the", "capital", "of", "who", "played", "in", "where", "was", "born",
             "which", "country", "does", "speak", "language", "team", "river", "city", "famous"]
    examples = []
    for i in range(3000):
        body = " ".join(rng.choice(words) for _ in range(rng.randint(4, 9)))
        mention = f"entity{rng.randint(0, 999)}"
        question = f"{body} {mention}?"
        examples.append(example_from_text(str(i), question,
                                          [(question.index(mention), len(mention), 10 + i)],
                                          [(10 + (i * 7) % 5000, "answer")]))
    return examples, "synthetic"


def build(threads: int):
    import numpy as np
    import torch

    from edmem.config import EDMemConfig
    from edmem.data.collate import ELCollator
    from edmem.data.dataset import ELDataset
    from edmem.data.examples import ELEncodingOptions
    from edmem.data.tokenization import load_tokenizer, train_bpe_tokenizer
    from edmem.modeling.model import EDMemModel

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    examples, source = load_examples()
    tok_dir = Path(tempfile.mkdtemp(prefix="bench_el_tok_"))
    train_bpe_tokenizer([e.question for e in examples], tok_dir, vocab_size=2000)
    tokenizer = load_tokenizer(tok_dir)
    # The token vocabulary has bart-large's size (50,267 with the markers), so embedding and
    # optimizer costs are realistic; the small BPE's ids (and its marker ids) all fit below it.
    config = EDMemConfig(vocab_size=50267, d_model=256,
                         encoder_layers=6, decoder_layers=6, encoder_attention_heads=8,
                         decoder_attention_heads=8, encoder_ffn_dim=1024, decoder_ffn_dim=1024,
                         max_position_embeddings=1024, num_lower_layers=2, num_upper_layers=4,
                         entity_vocab_size=MEMORY_ROWS, entity_embed_size=256,
                         entity_start_token_id=tokenizer.convert_tokens_to_ids("<E_s>"),
                         entity_end_token_id=tokenizer.convert_tokens_to_ids("<E_e>"),
                         generate_target="entity_linking", inference_nearest_k_entity=100,
                         lower_decoder_attn="upper_encoder")
    model = EDMemModel(config)
    id_to_row = lambda i: 10 + (int(i) % (MEMORY_ROWS - 10))   # fold the 1M ids into 100k rows
    options = ELEncodingOptions(max_input_length=50)
    train = ELDataset(examples, tokenizer, options, is_training=True,
                      rng=np.random.RandomState(0), id_to_row=id_to_row)
    evalset = ELDataset(examples, tokenizer, options, is_training=False, id_to_row=id_to_row)
    for i in range(len(examples)):          # tokenisation is cached per question; do it up front
        train.encoded(i)
        evalset.encoded(i)
    return torch, model, train, evalset, ELCollator(), source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--predict_batches", type=int, default=40)
    parser.add_argument("--profile", action="store_true", help="print where the time goes")
    parser.add_argument("--mmap_threshold", type=int, default=0,
                        help="glibc M_MMAP_THRESHOLD in bytes (0 = glibc default, dynamic)")
    parser.add_argument("--same-tensors", dest="same_tensors", action="store_true",
                        help="time model forward / training step on a fixed synthetic batch")
    parser.add_argument("--memory_index", default="exact", choices=("exact", "hnsw", "ivf", "ivfpq"))
    parser.add_argument("--memory_index_dtype", default="fp32", choices=("fp32", "fp16", "bf16", "int8"))
    parser.add_argument("--nprobe", type=int, default=32)
    parser.add_argument("--infer_batches", type=int, default=20)
    parser.add_argument("--gradient_checkpointing", action="store_true",
                        help="--same-tensors: train with the layers recomputed in backward")
    args = parser.parse_args(argv)
    if args.mmap_threshold:
        from edmem.runtime.malloc import fix_mmap_threshold
        fix_mmap_threshold(args.mmap_threshold)
    if args.same_tensors:
        return same_tensors(args)

    torch, model, train, evalset, collate, source = build(args.threads)
    gemm = gemm_seconds(torch)
    from edmem.training.optim import build_optimizer

    optimizer = build_optimizer(model, 1e-5, 0.01, 1e-8)
    inputs = ("input_ids", "attention_mask", "labels", "decoder_input_ids", "decoder_attention_mask",
              "input_entity_link", "output_entity_link")
    rng = random.Random(0)

    def next_batch() -> dict:
        batch = collate([train[rng.randrange(len(train))] for _ in range(BATCH)])
        return {k: batch[k] for k in inputs}

    step_times = time_train_steps(model, optimizer, next_batch, args.warmup, args.steps)

    from edmem.data.dataset import ELDataset
    from edmem.data.entity_rows import EntityRows
    from edmem.inference.predict import predict_entities
    from edmem.runtime.distributed import DistInfo

    rows = EntityRows.identity(MEMORY_ROWS)

    def predict(n_batches: int) -> float:
        """The product's prediction path (``edmem.inference.predict``) on the first
        ``n_batches × 32`` questions: tokenisation, items, collation, eval forward, top-k, ids."""
        subset = ELDataset(evalset.examples[:n_batches * BATCH], evalset.tokenizer, evalset.options,
                           is_training=False, id_to_row=evalset.id_to_row)
        start = time.perf_counter()
        predict_entities(model, subset, collate, BATCH, DistInfo(), rows)
        return n_batches * BATCH / (time.perf_counter() - start)

    model.eval()
    predict(2)
    qps = predict(args.predict_batches)

    if args.profile:
        from torch.profiler import ProfilerActivity, profile
        model.train()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            timed_train_step(model, optimizer, next_batch)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
        model.eval()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            predict(2)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))

    result = {
        "config": "small", "questions": source, "threads": args.threads,
        "train_s_per_step": round(statistics.median(step_times), 4),
        "predict_questions_per_s": round(qps, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "gemm2048_s": round(gemm, 4),
    }
    result["train_step_over_gemm"] = round(result["train_s_per_step"] / gemm, 2)
    result["predict_qps_times_gemm"] = round(qps * gemm, 2)
    print(json.dumps(result))
    return 0


def same_tensors(args: argparse.Namespace) -> int:
    """The 'small' benchmark on identical tensors (see the module docstring)."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_memory import el_batch

    from edmem.config import EDMemConfig
    from edmem.modeling.model import EDMemModel
    from edmem.training.optim import build_optimizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = EDMemConfig(vocab_size=50267, d_model=256, encoder_layers=6, decoder_layers=6,
                         encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_dim=1024,
                         decoder_ffn_dim=1024, max_position_embeddings=1024, num_lower_layers=2,
                         num_upper_layers=4, entity_vocab_size=MEMORY_ROWS, entity_embed_size=256,
                         generate_target="entity_linking", inference_nearest_k_entity=100,
                         lower_decoder_attn="upper_encoder")
    model = EDMemModel(config)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    batch = el_batch(BATCH, 20, MEMORY_ROWS)
    gemm = gemm_seconds(torch)
    optimizer = build_optimizer(model, 1e-5, 0.01, 1e-8)

    step_times = time_train_steps(model, optimizer, lambda: batch, args.warmup, args.steps)
    train_rss = peak_rss_mb()
    del optimizer
    model.eval()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask")}
    agreement = None
    if (args.memory_index, args.memory_index_dtype) != ("exact", "fp32"):
        from edmem.index import attach_memory_index, load_memory_index
        with torch.no_grad():
            exact_top = model(**inputs).topk_entity
        work = Path(tempfile.mkdtemp(prefix="bench_el_index_"))
        index = load_memory_index(work, model.EntityEmbedding.weight, args.memory_index,
                                  args.memory_index_dtype, nprobe=args.nprobe)
        attach_memory_index(model, index, drop_table=True)
        with torch.no_grad():   # top-1 of each read (encoder, decoder, EL head) against the exact read
            agreement = [round(float((a[:, 0] == b[:, 0]).float().mean()), 3)
                         for a, b in zip(model(**inputs).topk_entity, exact_top)]
    with torch.no_grad():
        model(**inputs)
        start = time.perf_counter()
        for _ in range(args.infer_batches):
            model(**inputs)
        qps = args.infer_batches * BATCH / (time.perf_counter() - start)
        from torch.utils.flop_counter import FlopCounterMode
        with FlopCounterMode(display=False) as counter:
            model(**inputs)
        gflop = counter.get_total_flops() / 1e9
        qps_bound = BATCH / (gflop / (2 * 2048 ** 3 / 1e9 / gemm))
        if args.profile:   # where one inference forward spends its time, by op and input shape
            from torch.profiler import ProfilerActivity, profile
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                model(**inputs)
            print(prof.key_averages(group_by_input_shape=True).table(
                sort_by="self_cpu_time_total", row_limit=15, max_shapes_column_width=60))
    result = {"config": "small-same-tensors", "threads": args.threads,
              "gradient_checkpointing": args.gradient_checkpointing, "mmap_threshold": args.mmap_threshold,
              "memory_index": args.memory_index, "memory_index_dtype": args.memory_index_dtype,
              "top1_agreement_with_exact_enc_dec_head": agreement,
              "train_s_per_step": round(statistics.median(step_times), 4),
              "infer_questions_per_s": round(qps, 1), "peak_rss_mb_after_train": round(train_rss, 1),
              "peak_rss_mb": round(peak_rss_mb(), 1), "gemm2048_s": round(gemm, 4),
              "infer_qps_at_gemm_0.10": round(qps * gemm / 0.10, 1),
              "infer_gflop_per_batch": round(gflop, 2), "infer_qps_gemm_bound": round(qps_bound, 1),
              "infer_qps_gemm_bound_at_gemm_0.10": round(qps_bound * gemm / 0.10, 1),
              "infer_fraction_of_gemm_bound": round(qps / qps_bound, 3),
              "train_step_at_gemm_0.10": round(statistics.median(step_times) * 0.10 / gemm, 3)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
