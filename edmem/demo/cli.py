"""``edmem demo``: the README's one command — build a geographic KB, pretrain the entity memory,
fine-tune entity linking, predict and score the test questions (held-out facts, held-out
phrasings, both) against two baselines, all on a laptop CPU in about ten minutes (docs/demo.md)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from edmem.demo.pipeline import DEFAULT_BUDGETS, LAYOUT, TOTAL_BUDGET, DemoSettings
from edmem.runtime.devices import DEVICE_CHOICES

EPILOG = f"""\
stages (soft time budgets of the default size, seconds, {TOTAL_BUDGET:.0f} in all on 2 CPU cores):
  {", ".join(f"{k} {v:.0f}" for k, v in DEFAULT_BUDGETS.items())}

--output_dir receives:
""" + "\n".join(f"  {name:<24}{what}" for name, what in LAYOUT.items()) + """

examples:
  edmem demo                                    # the default run, into runs/demo
  edmem demo --output_dir /tmp/d --overwrite    # replace an earlier run's files
  edmem demo --num_cities 50 --pretrain_steps 300 --finetune_epochs 5   # a one-minute smoke run
"""

# flag -> (group, help); the default comes from DemoSettings, so the two cannot drift.
HELP: dict[str, tuple[str, str]] = {
    "seed": ("run", "seeds the KB's text/splits, the masks, the initialisation and data order"),
    "num_cities": ("knowledge base", "largest GeoNames cities in the KB (plus capitals and homonyms; "
                                     "0 = all ~33k)"),
    "paraphrases_per_fact": ("knowledge base", "pretraining sentences per fact"),
    "broad_corpus_templates": ("knowledge base", "also state facts in the words of the question lexicon "
                                                 "(money, tongue, seat of government, ...)"),
    "train_questions_per_fact": ("knowledge base", "EL training questions per train fact, each in a "
                                                   "train frame"),
    "max_facts_per_relation": ("knowledge base", "cap on the facts asked about per relation (0 = no cap; "
                                                 "tests use a few)"),
    "lowercase_corpus": ("knowledge base", "pretrain on lowercased passages (the questions are "
                                           "lowercase; BPE tokens differ by case)"),
    "vocab_size": ("model", "BPE vocabulary size of the tokenizer trained on the corpus"),
    "d_model": ("model", "hidden size of the tiny BART"),
    "num_lower_layers": ("model", "layers below the entity memory (encoder and decoder)"),
    "num_upper_layers": ("model", "layers above the entity memory (encoder and decoder)"),
    "attention_heads": ("model", "attention heads (must divide --d_model)"),
    "ffn_dim": ("model", "feed-forward width"),
    "entity_embed_size": ("model", "entity embedding size d_e of the memory"),
    "lower_decoder_attn": ("model", "encoder output the lower decoder cross-attends to "
                                    "(upper_encoder | lower_encoder)"),
    "dropout": ("model", "dropout of every layer and of the memory"),
    "pretrain_steps": ("pretraining", "optimizer steps of pretraining"),
    "pretrain_batch_size": ("pretraining", "passages per step"),
    "pretrain_lr": ("pretraining", "peak learning rate (linear warm-up 5%% and decay)"),
    "mlm_probability": ("pretraining", "share of ordinary tokens masked"),
    "ssm_probability": ("pretraining", "share of entity mentions masked whole (salient spans): the "
                                       "memory must then supply the entity"),
    "ssm_single_mention_probability": ("pretraining", "share of passages with 2+ mentions that get exactly "
                                                      "one mention masked, the others visible (not in the "
                                                      "original)"),
    "mention_deletion_probability": ("pretraining", "share of passages whose one mention is removed from "
                                                    "the encoder input and must be named by the decoder "
                                                    "(not in the original)"),
    "pretrain_eval_period": ("pretraining", "steps between dev recall@k evaluations"),
    "max_seq_length": ("pretraining", "token limit of a passage"),
    "finetune_epochs": ("fine-tuning", "epoch budget (early stopping on dev usually ends it)"),
    "finetune_batch_size": ("fine-tuning", "questions per step"),
    "finetune_lr": ("fine-tuning", "peak learning rate"),
    "finetune_eval_period": ("fine-tuning", "steps between dev evaluations"),
    "wait_step": ("fine-tuning", "evaluations without dev improvement before stopping"),
    "freeze_entity_memory": ("fine-tuning", "keep the pretrained entity table fixed while fine-tuning "
                                            "(not for the no-pretraining baseline)"),
    "answer_type_weight": ("fine-tuning", "weight of the answer-type prior that reranks the EL head's "
                                          "top 100 (0 = off; not in the original)"),
    "num_threads": ("run", "torch CPU threads (0 = torch's default; 1 is fastest for this tiny model)"),
    "device": ("run", "auto = CUDA when a GPU is visible, else CPU; cpu or cuda to insist"),
    "skip_no_pretrain_baseline": ("run", "skip the random-initialisation baseline (saves ~1.5 min)"),
    "verbose": ("run", "show every stage's log lines on the console instead of demo.log"),
}


def _bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {value!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edmem demo", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build a geographic knowledge base, pretrain EDMem's entity memory on its text, "
                    "fine-tune entity linking for questions, and score the test questions — facts that "
                    "appear only in the pretraining text and/or question shapes never trained on "
                    "— against two baselines (the most "
                    "frequent answer per relation; the same model without pretraining). Prints a "
                    "summary table; writes summary.json and curves.png.")
    parser.add_argument("--output_dir", type=Path, default=DemoSettings.output_dir,
                        help="folder for every artefact (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="allow a non-empty --output_dir: the demo's own files in it are replaced")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in fields(DemoSettings):
        if f.name not in HELP:
            continue
        group_name, help_ = HELP[f.name]
        group = groups.setdefault(group_name, parser.add_argument_group(group_name))
        default = getattr(DemoSettings(), f.name)
        if isinstance(default, bool):
            group.add_argument(f"--{f.name}", type=_bool, nargs="?", const=True, default=default,
                               metavar="BOOL", help=f"{help_} (default: {default})")
        else:
            group.add_argument(f"--{f.name}", type=type(default), default=default,
                               choices=DEVICE_CHOICES if f.name == "device" else None,
                               help=f"{help_} (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = DemoSettings(**{f.name: getattr(args, f.name) for f in fields(DemoSettings)
                               if hasattr(args, f.name)})
    from edmem.demo.pipeline import prepare_output_dir, run_demo
    from edmem.errors import USER_ERRORS

    try:
        prepare_output_dir(settings.output_dir, args.overwrite)
        run_demo(settings)
    except USER_ERRORS as exc:
        print(f"edmem demo: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
