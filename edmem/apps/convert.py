"""``edmem convert``: a model directory from an original-layout checkpoint and its flags.

The authors' (or an edmem run's) ``pytorch_model.bin`` only makes sense together with the flags
it was trained with: ``--model_name`` (the BART config + tokenizer), ``--id2entity_file`` and the
model flags of ``run_QA.py``. ``edmem convert`` takes exactly those once and writes a
self-describing model directory (docs/linking.md), so that ``edmem ask``, ``edmem predict
--model`` and ``edmem.EntityLinker`` need nothing else.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edmem.apps.linker_cli import guarded

PROG = "edmem convert"
# run_QA.py flags that shape the model or the encoding of a question (edmem.training.args.FLAGS)
MODEL_FLAGS = ("num_lower_layers", "num_upper_layers", "entity_embed_size", "entity_vocab_size",
               "entity_token_weight", "lower_decoder_attn", "inference_nearest_k_entity", "dropout",
               "compact_entity_memory", "do_cased", "add_another_bos",
               "prepend_question_in_decoder_input", "max_input_length")


def build_parser() -> argparse.ArgumentParser:
    from edmem.training.args import FLAGS, add_flag

    parser = argparse.ArgumentParser(
        prog=PROG, description="Build a self-describing model directory from an original-layout "
        "checkpoint (pytorch_model.bin or model.safetensors) and the flags it was trained with.",
        epilog="example (the README's WebQuestions model):\n"
               "  edmem convert --checkpoint out/wq_el --model_name facebook/bart-large \\\n"
               "      --id2entity_file data/wikipedia/entid2entityitemid_1M.json \\\n"
               "      --lower_decoder_attn upper_encoder --output models/wq",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    io = parser.add_argument_group("files")
    io.add_argument("--checkpoint", "--pretrain_ckpt", dest="checkpoint", required=True,
                    help="folder holding pytorch_model.bin / model.safetensors (or the file)")
    io.add_argument("--output", required=True, help="the model directory to write (replaced if it exists)")
    io.add_argument("--name", default=None, help="model name shown by `edmem serve` (default: the folder name)")
    by_name = {flag.name: flag for flag in FLAGS}
    for name in ("model_name", "id2entity_file", "alias_file"):
        add_flag(io, by_name[name], required=name == "id2entity_file")
    model = parser.add_argument_group("model flags (as given to run_QA.py when it was trained)")
    for name in MODEL_FLAGS:
        add_flag(model, by_name[name])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(PROG, lambda: run(args))


def run(args: argparse.Namespace) -> int:
    from edmem.data.entity_rows import EntityRows
    from edmem.data.entity_vocab import load_entity_names
    from edmem.data.examples import ELEncodingOptions
    from edmem.errors import DataError
    from edmem.runtime.hub import resolve_model_name
    from edmem.inference.export import export_model_dir
    from edmem.apps.common import build_config, load_tokenizer

    checkpoint = Path(args.checkpoint)
    if not checkpoint.exists():
        raise DataError("checkpoint not found", checkpoint, field="--checkpoint")
    args.model_name = resolve_model_name(args.model_name)
    names = load_entity_names(args.id2entity_file)
    saved = EntityRows.load(checkpoint) if checkpoint.is_dir() else None
    if saved is not None:
        rows = saved
    elif args.compact_entity_memory:
        rows = EntityRows.compact_from_ids(names.ids())
    else:
        rows = EntityRows.identity(args.entity_vocab_size)
    tokenizer = load_tokenizer(args.model_name)
    config = build_config(args, tokenizer, rows.num_rows)
    target = export_model_dir(checkpoint, args.output, config=config, tokenizer=tokenizer,
                              id2entity_file=args.id2entity_file, rows=rows,
                              encoding=ELEncodingOptions.from_args(args), alias_file=args.alias_file,
                              name=args.name, extra={"converted_from": str(checkpoint),
                                                     "model_name": str(args.model_name)})
    print(f"{PROG}: wrote {target} ({rows.num_rows} memory rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
