"""What the linking commands (ask, link, convert) share: loading the linker, one-line errors."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from edmem.errors import EDMemError

EXIT_ERROR = 1


def add_linker_flags(parser: argparse.ArgumentParser) -> None:
    """``--model`` and the options of :meth:`edmem.inference.linker.EntityLinker.from_pretrained`."""
    parser.add_argument("--model", required=True,
                        help="model directory (training's <output_dir>/model, runs/demo/model, or "
                             "one written by `edmem convert`)")
    parser.add_argument("--top_k", type=int, default=5, help="entities listed per answer and mention "
                        "(default: 5; at most the model's inference_nearest_k_entity)")
    parser.add_argument("--alias_file", default=None,
                        help='extra aliases for mention detection, JSONL {"id": int, "aliases": [str]}')
    parser.add_argument("--device", default="cpu",
                        help="cpu, cuda, auto (a GPU when there is one) or a torch device such as "
                             "cuda:1 (default: cpu)")
    parser.add_argument("--num_threads", type=int, default=0,
                        help="torch CPU threads (0 = torch default)")
    parser.add_argument("--memory_index", default="exact", choices=("exact", "hnsw", "ivf", "ivfpq"),
                        help="backend of the memory reads: exact (every row scored, default) or a "
                             "FAISS index, built once into <model>/memory_index/ (docs/model.md)")
    parser.add_argument("--memory_index_dtype", default="fp32", choices=("fp32", "fp16", "bf16", "int8"),
                        help="storage of the rows the memory index reads (default: fp32)")
    parser.add_argument("--nprobe", type=int, default=32, help="ivf / ivfpq: lists searched per read")
    parser.add_argument("--nlist", type=int, default=0,
                        help="ivf / ivfpq: inverted lists of a newly built index (0 = sqrt(rows))")
    parser.add_argument("--ef_search", type=int, default=128, help="hnsw: search beam width")
    parser.add_argument("--pq_bytes", type=int, default=32, help="ivfpq: code bytes per row")


def load_linker(args: argparse.Namespace) -> Any:
    import torch

    from edmem.inference.linker import EntityLinker

    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    linker = EntityLinker.from_pretrained(args.model, device=args.device, top_k=args.top_k,
                                          alias_file=args.alias_file)
    if args.memory_index != "exact" or args.memory_index_dtype != "fp32":
        from edmem.index import attach_memory_index, load_memory_index

        index = load_memory_index(args.model, linker.model.EntityEmbedding.weight, args.memory_index,
                                  args.memory_index_dtype, nprobe=args.nprobe,
                                  ef_search=args.ef_search, pq_bytes=args.pq_bytes, nlist=args.nlist)
        attach_memory_index(linker.model, index)
    return linker


def error(prog: str, message: str) -> int:
    """Print ``<prog>: error: <message>`` (one line) and return the error status."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return EXIT_ERROR


def guarded(prog: str, body: Callable[[], int]) -> int:
    """Run ``body``; bad input (edmem errors, ValueError, OSError) becomes one error line."""
    try:
        return body()
    except (EDMemError, ValueError, OSError) as exc:
        message = str(exc) if isinstance(exc, (EDMemError, ValueError)) else \
            f"{exc.strerror or type(exc).__name__}: {exc.filename or exc}"
        return error(prog, message)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
