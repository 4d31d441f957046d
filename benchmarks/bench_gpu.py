"""GPU speed of edmem at the original's shapes, fp32 against bf16 autocast (docs/training.md).

Prints ONE JSON line with:

* ``gpu``: the device name; ``gemm_bf16_tflops``: a 8192³ bfloat16 matmul, the yardstick;
* per shape (``bart-base``: d_model 768, 12 heads, FFN 3072, 6+6 layers split 2 lower / 4 upper;
  ``bart-large``: d_model 1024, 16 heads, FFN 4096, 12+12 layers split 4 lower / 8 upper; both
  with the 50,267-token vocabulary and a 1,000,010 × 256 entity memory, K 100):
  ``train_s_fp32`` / ``train_s_bf16`` — one optimizer step (forward + backward + clip + edmem's
  AdamW, multi-tensor on CUDA) on a batch of 16 synthetic questions, median after warm-up;
  ``el_qps_{fp32,bf16}_b{32,256}`` — entity-linking inference (eval forward + top-K to the host);
  ``peak_gb``; ``mfu_*``: model FLOPs per second (estimate below) over the GEMM yardstick and,
  for known cards, over the nominal dense bf16 peak.
* ratios ``bf16_train_speedup`` and ``bf16_el_speedup_b32``.

FLOPs estimate of a training step: 6 × (non-embedding parameters + the LM head) × tokens, plus
12 × M × N × d_e per memory read (M mentions, N rows: the score and retrieval products forward,
their three gradient products backward). Inference: a third of that without the LM head.

    python benchmarks/bench_gpu.py            # on a CUDA machine, ≤ 4 minutes
    python benchmarks/bench_gpu.py --dry-run  # tiny shapes on the CPU: checks the script only
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

NOMINAL_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}


@dataclass(frozen=True)
class Shape:
    name: str
    d_model: int
    heads: int
    ffn: int
    layers: int          # per stack (encoder and decoder each)
    lower: int
    vocab: int = 50267
    rows: int = 1_000_010
    d_e: int = 256
    top_k: int = 100


SHAPES = (Shape("bart-base", 768, 12, 3072, 6, 2), Shape("bart-large", 1024, 16, 4096, 12, 4))
TINY = (Shape("tiny", 32, 2, 64, 2, 1, vocab=300, rows=1000, d_e=16, top_k=10),)


def build_model(shape: Shape, device: torch.device):
    from edmem.config import EDMemConfig
    from edmem.modeling.model import EDMemModel

    es, ee = shape.vocab - 2, shape.vocab - 1
    config = EDMemConfig(vocab_size=shape.vocab, d_model=shape.d_model, encoder_layers=shape.layers,
                         decoder_layers=shape.layers, encoder_attention_heads=shape.heads,
                         decoder_attention_heads=shape.heads, encoder_ffn_dim=shape.ffn,
                         decoder_ffn_dim=shape.ffn, max_position_embeddings=128,
                         num_lower_layers=shape.lower, num_upper_layers=shape.layers - shape.lower,
                         entity_vocab_size=shape.rows, entity_embed_size=shape.d_e,
                         inference_nearest_k_entity=shape.top_k, entity_start_token_id=es,
                         entity_end_token_id=ee, generate_target="entity_linking",
                         lower_decoder_attn="upper_encoder")
    with device:                       # initialise on the device (the 1M-row table in seconds)
        model = EDMemModel(config)
    return model


def make_batch(shape: Shape, batch: int, device: torch.device, gen: torch.Generator) -> dict:
    """Synthetic questions like WQ's: 24 encoder tokens with one linked mention; the decoder
    input is the question with its mention and a final ``<E_s>`` (the answer slot)."""
    es, ee = shape.vocab - 2, shape.vocab - 1
    length = 24
    words = torch.randint(4, shape.vocab - 3, (batch, length), generator=gen)
    enc = words.clone()
    enc[:, 0], enc[:, -1] = 0, 2
    enc[:, 6], enc[:, 9] = es, ee
    dec = torch.cat([torch.full((batch, 1), 2), enc[:, :-1], torch.full((batch, 1), es)], dim=1)
    enc_link = torch.zeros_like(enc)
    dec_link = torch.zeros_like(dec)
    gold = torch.randint(10, shape.rows, (batch, 2), generator=gen)
    enc_link[:, 6] = gold[:, 0]
    dec_link[:, 7] = gold[:, 0]
    dec_link[:, -1] = gold[:, 1]
    out = dict(input_ids=enc, attention_mask=torch.ones_like(enc), labels=dec.clone(),
               decoder_input_ids=dec, decoder_attention_mask=torch.ones_like(dec),
               input_entity_link=enc_link, output_entity_link=dec_link)
    return {k: v.to(device) for k, v in out.items()}


def sig(x: float) -> float:
    """Four significant digits (CPU dry-run values are tiny; rounding to decimals gives 0)."""
    return float(f"{x:.4g}")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, warmup: int, reps: int) -> float:
    """Median seconds of ``fn()`` after ``warmup`` calls (device-synchronised)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gemm_tflops(device: torch.device, n: int) -> float:
    dtype = torch.bfloat16
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = timed(lambda: a @ b, device, 3, 10)
    return 2 * n ** 3 / seconds / 1e12


def dense_params(model) -> int:
    """Parameters that do matrix work per token: all but the embedding tables and the memory,
    plus the LM head (the tied token embedding used as a projection)."""
    skip = {id(model.EntityEmbedding.weight)}
    total = sum(p.numel() for p in model.parameters() if id(p) not in skip)
    embeddings = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
    return total - embeddings + model.shared.weight.numel()


def train_flops(shape: Shape, model, batch: dict) -> float:
    tokens = batch["input_ids"].numel() + batch["decoder_input_ids"].numel()
    mentions = int((batch["input_ids"] == shape.vocab - 2).sum() + 2 * (batch["decoder_input_ids"]
                                                                        == shape.vocab - 2).sum())
    return 6.0 * dense_params(model) * tokens + 12.0 * mentions * shape.rows * shape.d_e


def measure_shape(shape: Shape, device: torch.device, args) -> dict:
    from edmem.runtime import precision as amp
    from edmem.training.optim import build_optimizer

    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model = build_model(shape, device)
    optimizer = build_optimizer(model, 1e-5, 0.01, 1e-8)
    train_batch = make_batch(shape, args.train_batch, device, gen)
    result: dict = {}

    for precision in ("fp32", "bf16"):
        model.train()

        def step() -> None:
            with amp.autocast(device, precision):
                loss = model(**train_batch, return_dict=True).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        result[f"train_s_{precision}"] = round(timed(step, device, args.warmup, args.reps), 4)

    model.eval()
    inputs = ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask")
    for batch_size in (32, 256):
        batch = make_batch(shape, batch_size, device, gen)
        feed = {k: batch[k] for k in inputs}
        for precision in ("fp32", "bf16"):
            @torch.no_grad()
            def predict() -> None:
                with amp.autocast(device, precision):
                    out = model(**feed, return_dict=True)
                out.topk_entity[2].cpu()              # the ids reach the host, as in prediction

            seconds = timed(predict, device, args.warmup, args.reps)
            result[f"el_qps_{precision}_b{batch_size}"] = round(batch_size / seconds, 1)

    flops = train_flops(shape, model, train_batch)
    result["train_tflop_per_step"] = sig(flops / 1e12)
    for precision in ("fp32", "bf16"):
        result[f"achieved_tflops_{precision}"] = sig(flops / result[f"train_s_{precision}"] / 1e12)
    if device.type == "cuda":
        result["peak_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 2)
    result["bf16_train_speedup"] = round(result["train_s_fp32"] / result["train_s_bf16"], 2)
    result["bf16_el_speedup_b32"] = round(result["el_qps_bf16_b32"] / result["el_qps_fp32_b32"], 2)
    del model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny shapes on the CPU (checks the script; the numbers mean nothing)")
    parser.add_argument("--shapes", default="bart-base,bart-large")
    parser.add_argument("--train_batch", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--reps", type=int, default=10)
    args = parser.parse_args(argv)

    if args.dry_run:
        device, shapes, gemm_n = torch.device("cpu"), TINY, 128
        args.warmup, args.reps = 1, 2
        torch.set_num_threads(2)
    else:
        if not torch.cuda.is_available():
            print("bench_gpu.py: error: no CUDA device visible (torch "
                  f"{torch.__version__}, CUDA {torch.version.cuda or 'none'}); run it on a GPU "
                  "machine, or pass --dry-run to check the script on the CPU", file=sys.stderr)
            return 2
        device, gemm_n = torch.device("cuda", 0), 8192
        torch.backends.cuda.matmul.allow_tf32 = False   # fp32 means fp32 (the parity setting)
        wanted = set(args.shapes.split(","))
        shapes = tuple(s for s in SHAPES if s.name in wanted)
    start = time.time()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)"
    report: dict = {"gpu": name, "torch": torch.__version__, "dry_run": args.dry_run}
    report["gemm_bf16_tflops"] = sig(gemm_tflops(device, gemm_n))
    nominal = next((v for k, v in NOMINAL_BF16_TFLOPS.items() if k in name), None)
    for shape in shapes:
        result = measure_shape(shape, device, args)
        for precision in ("fp32", "bf16"):
            achieved = result[f"achieved_tflops_{precision}"]
            result[f"mfu_{precision}_vs_gemm"] = sig(achieved / report["gemm_bf16_tflops"])
            if nominal:
                result[f"mfu_{precision}_vs_nominal"] = sig(achieved / nominal)
        report[shape.name] = result
    report["seconds"] = round(time.time() - start, 1)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
