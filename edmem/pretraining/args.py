"""``edmem pretrain`` flags.

Flags shared with fine-tuning (model shape, optimisation, run control) come from the training
package's table (:data:`edmem.training.args.FLAGS`) so names, types and help cannot drift; only
their defaults change to the original pretraining recipe (docs/pretraining.md: lr 1e-4, 10% warm-up, wd 0.01,
grad-norm 0.1, ``lower_decoder_attn=upper_encoder``). Pretraining-only flags are defined here.
"""

from __future__ import annotations

import argparse
import dataclasses

from edmem.training.args import FLAGS, G_DATA, G_MODEL, G_OPT, G_RUN, Flag, add_flag, finite_float, none_or_str

G_OBJ = "pretraining objectives"
G_EVAL = "evaluation and checkpoint selection"

# Shared flags, with the pretraining recipe's defaults where it differs from fine-tuning.
SHARED: dict[str, dict] = {
    "id2entity_file": {"help": "entity vocabulary JSON (entid2entityitemid_*.json); with "
                               "--compact_entity_memory the memory gets one row per entry"},
    "output_dir": {"help": "receives the best checkpoint (a valid --pretrain_ckpt), metrics, logs "
                           "and the resume state"},
    "overwrite_output": {"help": "allow an --output_dir that already holds a checkpoint "
                                 "(without --resume the run starts over)"},
    "model_name": {"help": "hub name or local directory with a BART config.json and tokenizer files "
                           "(vocab.json + merges.txt): the architecture and the tokenizer. Weights "
                           "are NOT taken from it (the original pretrained from scratch)"},
    "pretrain_ckpt": {"help": "optional: initialise from this checkpoint directory instead of "
                              "random weights (e.g. to continue pretraining with new settings)"},
    "num_lower_layers": {}, "num_upper_layers": {}, "entity_embed_size": {}, "entity_vocab_size": {},
    "compact_entity_memory": {}, "dropout": {},
    "elloss_weight": {"help": "loss = LM cross-entropy + elloss_weight * mean of the three "
                              "entity-linking NLLs (encoder memory, decoder memory, EL head)"},
    "entity_token_weight": {"help": "LM class weight of <E_s>/<E_e> (None = unweighted, as the "
                                    "official pretraining; a value adds LMLoss.weight to the checkpoint)"},
    "lower_decoder_attn": {"default": "upper_encoder"},
    "inference_nearest_k_entity": {"help": "top-k entities per memory access at evaluation; "
                                           "raised to the largest recall@k if smaller"},
    "add_another_bos": {"group": G_DATA, "help": "prefix each passage with '<s> ' so its first word gets a "
                                "leading-space token, docs/data.md"},
    "train_batch_size": {"default": 16, "help": "passages per process and micro-step "
                                                "(official: 16 x 8 GPUs x 16 accumulation)"},
    "predict_batch_size": {"default": 32, "help": "passages per process at evaluation"},
    "learning_rate": {"default": 1e-4},
    "weight_decay": {}, "adam_epsilon": {}, "max_grad_norm": {}, "gradient_accumulation_steps": {},
    "num_train_epochs": {"default": 1, "help": "passes over --train_file (ignored with --max_steps)"},
    "warmup_ratio": {},
    "eval_period": {"help": "evaluate on --dev_file (and save the training state) every this many "
                            "optimizer steps, and after the last one"},
    "wait_step": {"default": 0, "help": "stop after this many evaluations without a strict "
                                        "improvement of the selection metric (0 = never stop early)"},
    "seed": {}, "local_rank": {}, "log_level": {}, "log_level_replica": {},
    "resume": {}, "resume_force": {}, "save_training_state": {}, "tensorboard": {},
    "gradient_checkpointing": {}, "num_threads": {},
    "device": {}, "fp16": {}, "bf16": {}, "dist_timeout": {},
}

OWN: tuple[Flag, ...] = (
    Flag("train_file", None, G_DATA, "jsonl of entity-annotated passages: {\"id\", \"text\", "
         "\"hyperlinks\": {\"link_offset\": [...], \"link_length\": [...], \"link_target\": [...]}}"),
    Flag("dev_file", None, G_DATA, "passages in the same format for recall@k / perplexity "
         "(optional: without it the last step is saved)", type=none_or_str),
    Flag("cache_dir", None, G_DATA, "where tokenised corpora are cached (default $EDMEM_CACHE_DIR "
         "or ~/.cache/edmem/corpus); reused when file, tokenizer and settings are unchanged",
         type=none_or_str),
    Flag("max_seq_length", 128, G_DATA, "truncation length of an encoded passage (with BOS/EOS)",
         type=int),
    Flag("max_dev_passages", 0, G_EVAL, "evaluate on the first N dev passages only (0 = all)", type=int),
    Flag("mlm_probability", 0.3, G_OBJ, "chance that a non-special token is masked", type=finite_float),
    Flag("ssm_probability", 0.5, G_OBJ,
         "chance that a mention's tokens (between <E_s> and <E_e>) are all masked", type=finite_float),
    Flag("mlm_random_replace", 0.0, G_OBJ,
         "share of MLM-selected tokens replaced by a random token instead of <mask>", type=finite_float),
    Flag("ssm_single_mention_probability", 0.0, G_OBJ,
         "chance that a passage with 2+ mentions has exactly one mention (drawn uniformly) span-masked "
         "instead of each mention independently with --ssm_probability; the others stay visible "
         "(not in the original; 0 = the original objective)", type=finite_float),
    Flag("mention_deletion_probability", 0.0, G_OBJ,
         "chance that a passage with 2+ mentions loses one mention (markers and tokens) from the encoder "
         "input while the decoder still reconstructs it, so the entity must come from the other "
         "mentions' memory (not in the original; 0 = the original objective)", type=finite_float),
    Flag("memory_cue_probability", 0.0, G_OBJ,
         "chance that a passage with 2+ mentions loses one mention from the encoder input while "
         "another becomes the cue: its tokens are masked and its memory read returns its own row, so "
         "the lost entity must come from the cue's row (not in the original; 0 = the original "
         "objective)", type=finite_float),
    Flag("loss_on_mask_tokens", False, G_OBJ,
         "LM loss on masked positions only (default: on every non-pad token, as the original)",
         boolean=True),
    Flag("max_steps", 0, G_OPT, "total optimizer steps; overrides --num_train_epochs when > 0 "
         "(official: 1,000,000)", type=int),
    Flag("selection_metric", "final_recall@1", G_EVAL,
         "dev metric that selects the checkpoint kept in --output_dir (higher is better; "
         "'perplexity' is minimised). Any of {encoder,decoder,final}_recall@{1,5,10,20,100}"),
)

EPILOG = """\
examples:
  # pretrain a small model on an annotated corpus, evaluating every 500 steps
  edmem pretrain --train_file corpus/train.jsonl --dev_file corpus/dev.jsonl \\
      --model_name tiny-bart/ --id2entity_file corpus/entid2entityitemid.json \\
      --compact_entity_memory --output_dir ckpt/pretrain --max_steps 20000 --eval_period 500

  # continue after an interruption (same flags plus --resume)
  edmem pretrain ... --output_dir ckpt/pretrain --resume

  # then fine-tune entity linking from it
  edmem train ... --model_name tiny-bart/ --pretrain_ckpt ckpt/pretrain

Several processes: torchrun --nproc_per_node 8 -m edmem pretrain ...
--output_dir receives: pytorch_model.bin + config.json (the best checkpoint, original layout: a
valid --pretrain_ckpt), model.safetensors, entity_rows.json (compact memory), pretrain_metrics.json,
best_checkpoint.json, args, log.txt, tensorboard/, training_state.pt (for --resume).
See docs/pretraining.md.
"""


def build_parser(prog: str | None = "edmem pretrain") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Pretrain EDMem's entity memory on entity-annotated passages: masked language "
                    "modelling + salient-span masking + entity-linking losses at every <E_s>.")
    groups = {name: parser.add_argument_group(name) for name in (G_DATA, G_OBJ, G_MODEL, G_OPT, G_EVAL, G_RUN)}
    by_name = {flag.name: flag for flag in FLAGS}
    for name, changes in SHARED.items():
        flag = dataclasses.replace(by_name[name], **changes)
        add_flag(groups[flag.group], flag, required=name == "output_dir")
    for flag in OWN:
        add_flag(groups[flag.group], flag, required=flag.name == "train_file")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.do_train = True  # read by the training package's output-dir and entity-row helpers
    return args
