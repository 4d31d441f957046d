"""Entity-memory benchmark: EL inference (and optionally one training step) with the full-size memory.

Builds an EDMem model with the original 1,000,010 × 256 entity table and a small BART shape
(default d_model 256, 2 lower + 4 upper layers, 4 heads, FFN 1024, vocabulary 50,267), then times
eval-mode EL forward passes on batches of 32 questions (~20 tokens, 2 marked mentions each) and
reports peak RSS. Usage::

    python benchmarks/bench_memory.py [--threads 2] [--repeats 5] [--chunk-sizes 65536,1000010] [--train]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from edmem.config import EDMemConfig
from edmem.modeling.model import EDMemModel

ES, EE, PAD, BOS, EOS = 50265, 50266, 1, 0, 2


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--entities", type=int, default=1000010)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--words", type=int, default=20)
    ap.add_argument("--top-k", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--chunk-sizes", default="65536,1000010")
    ap.add_argument("--train", action="store_true", help="also time one training step (full softmax)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    t0 = time.perf_counter()
    cfg = EDMemConfig(vocab_size=50267, d_model=args.d_model, encoder_layers=6, decoder_layers=6,
                      encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=4 * args.d_model,
                      decoder_ffn_dim=4 * args.d_model, num_lower_layers=2, num_upper_layers=4,
                      entity_vocab_size=args.entities, entity_embed_size=256,
                      inference_nearest_k_entity=args.top_k, generate_target="entity_linking",
                      lower_decoder_attn="upper_encoder")
    model = EDMemModel(cfg).eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"model: d_model {cfg.d_model}, layers {cfg.num_lower_layers}+{cfg.num_upper_layers}, vocab {cfg.vocab_size}, "
          f"memory {cfg.entity_vocab_size} x {cfg.entity_embed_size}, K {cfg.inference_nearest_k_entity}; "
          f"{n_params / 1e6:.1f}M parameters; built in {time.perf_counter() - t0:.1f}s; "
          f"RSS after build {peak_rss_mb():.0f} MB")

    batch = el_batch(args.batch_size, args.words, args.entities)
    eval_inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask")}
    mentions = int((batch["input_ids"] == ES).sum()), int((batch["decoder_input_ids"] == ES).sum())
    print(f"batch: {args.batch_size} questions, encoder len {batch['input_ids'].shape[1]}, decoder len "
          f"{batch['decoder_input_ids'].shape[1]}, memory reads enc/dec/head = {mentions[0]}/{mentions[1]}/"
          f"{args.batch_size}")
    for chunk in (int(c) for c in args.chunk_sizes.split(",")):
        for reader in model.memory_readers():
            reader.chunk_size = chunk
        times = []
        with torch.no_grad():
            model(**eval_inputs)  # warm-up
            for _ in range(args.repeats):
                t = time.perf_counter()
                out = model(**eval_inputs)
                times.append(time.perf_counter() - t)
        print(f"EL inference, chunk {chunk}: median {statistics.median(times) * 1000:.0f} ms/batch "
              f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}; {args.repeats} runs); "
              f"peak RSS so far {peak_rss_mb():.0f} MB; top-k shape {tuple(out.topk_entity[2].shape)}")

    if args.train:
        model.train()
        t = time.perf_counter()
        out = model(**batch)
        out.loss.backward()
        print(f"training step (forward+backward, full softmax over {args.entities} rows): "
              f"{time.perf_counter() - t:.1f}s, loss {out.loss.item():.3f}; peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
