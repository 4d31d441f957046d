"""Command-line flags of the original ``run_QA.py``, shared by ``python -m edmem.run_qa``,
``edmem train`` and ``edmem predict``.

One table (:data:`FLAGS`) defines every flag once — name, default, type, group and help — so the
three entry points cannot drift apart. ``run_qa`` keeps the original names, defaults and meaning
(docs/training.md); the friendlier commands only change which flags are shown, the grouping and the
epilog, and imply ``--do_train`` / ``--do_predict``.

Booleans use :func:`str2bool`, which accepts exactly ``true/True/false/False`` like the
original. Every boolean may also be given bare (``--debug`` == ``--debug True``) because the
original mixes ``store_true`` flags and ``str2bool`` flags and users mix them up.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from edmem.config import SETTINGS_FIELDS
from edmem.constants import GENERATE_TARGETS


def task_name(text: str) -> str:
    """A dataset name: one path component (it names a sub-directory and a file stem)."""
    if not text or "/" in text or "\\" in text or text in (".", ".."):
        raise argparse.ArgumentTypeError(f"invalid task name {text!r}: one directory name expected")
    return text


def file_prefix(text: str) -> str:
    """A file-name prefix: no path separators, so ``{prefix}predictions.json`` stays inside
    ``--output_dir`` (``--prefix ../x_`` would write outside it)."""
    if any(sep in text for sep in ("/", "\\", os.sep, "\0")):
        raise argparse.ArgumentTypeError(f"invalid prefix {text!r}: a file-name prefix cannot "
                                         "contain path separators")
    return text


def finite_float(text: str) -> float:
    """A float that is a real number (``nan`` / ``inf`` would only fail later, during training)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


# Groups, in the order `--help` shows them.
G_DATA = "data and files"
G_MODEL = "model"
G_TASK = "entity-linking task"
G_GEN = "answer generation (accepted for compatibility; not built in edmem)"
G_OPT = "optimisation"
G_RUN = "run control (edmem additions are marked [edmem])"


def str2bool(value: str | bool) -> bool:
    """The original's boolean parser: exactly true/True/false/False (anything else is an error)."""
    if isinstance(value, bool):
        return value
    if value in ("true", "True"):
        return True
    if value in ("false", "False"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/True/false/False, got '{value}'")


def none_or_str(value: str) -> str | None:
    """``--pretrain_ckpt None`` (the original's README spelling) means no checkpoint."""
    return None if value in ("None", "none", "") else value


def none_or_float(value: str) -> float | None:
    return None if value in ("None", "none") else finite_float(value)


@dataclass(frozen=True)
class Flag:
    """One command-line flag. ``modes`` says which entry points show it: run_qa shows all."""

    name: str
    default: Any
    group: str
    help: str
    type: Callable[[str], Any] | None = str
    choices: tuple[Any, ...] | None = None
    boolean: bool = False
    store_true: bool = False
    modes: frozenset[str] = field(default_factory=lambda: frozenset({"train", "predict"}))
    aliases: tuple[str, ...] = ()


_TRAIN = frozenset({"train"})
_PRED = frozenset({"predict"})
_BOTH = frozenset({"train", "predict"})
_NONE: frozenset[str] = frozenset()

FLAGS: tuple[Flag, ...] = (
    # ---- data / IO ----
    Flag("data_dir", "./data", G_DATA, "root of the data; files are read from <data_dir>/<task>/"),
    Flag("id2entity_file", None, G_DATA,
         "entity vocabulary: JSON {\"<entity id>\": {\"entity\": name, ...}} (entid2entityitemid_*.json)"),
    Flag("id2entitytokens_file", None, G_DATA,
         "entity_tokens_*.json; optional (only answer generation uses it) [edmem: optional]"),
    Flag("task", None, G_DATA,
         "dataset: the sub-directory and file stem under --data_dir (the original's nq / tqa / wq, "
         "or [edmem] any dataset laid out the same way, e.g. the demo's geo)", type=task_name),
    Flag("datafile_prefix", "", G_DATA,
         "prepended to <task>-<split>.jsonl, may hold sub-directories (EL: entity_linking/el_)"),
    Flag("output_dir", None, G_DATA,
         "holds log.txt, args, the best checkpoint, predictions and the resume state"),
    Flag("overwrite_output", False, G_DATA,
         "with --do_train, allow an output_dir that already holds a checkpoint", boolean=True,
         modes=_TRAIN),
    Flag("do_train", False, G_RUN, "train on <task>-train, selecting on <task>-dev",
         store_true=True, type=None, modes=_NONE),
    Flag("do_predict", False, G_RUN,
         "predict the test split (or dev, --predict_on_dev) with the best checkpoint of --output_dir",
         store_true=True, type=None, modes=_TRAIN),
    Flag("predict_on_dev", False, G_RUN,
         "predict the dev split instead of test (the file is still {prefix}predictions.json)",
         boolean=True),
    Flag("prefix", "", G_RUN,
         "prefix of the prediction file names (and of the log file when not training); no path "
         "separators", type=file_prefix),
    Flag("debug", False, G_RUN,
         "use the first 10 training examples as train, dev and test; sequential order",
         boolean=True),
    Flag("seed", 42, G_RUN, "seeds python, numpy and torch (README value: 3518)", type=int),
    Flag("local_rank", int(os.environ.get("LOCAL_RANK", -1)), G_RUN,
         "set by the launcher (torch.distributed.launch); torchrun sets LOCAL_RANK instead",
         type=int, aliases=("--local-rank",)),
    Flag("log_level", 20, G_RUN, "logging level of rank 0 (20 = INFO)", type=int),
    Flag("log_level_replica", 30, G_RUN, "logging level of the other ranks (30 = WARNING)", type=int),
    Flag("output_scores", False, G_GEN, "generation only", boolean=True, modes=_NONE),
    # ---- model ----
    Flag("model_name", "facebook/bart-large", G_MODEL,
         "hub name or local directory with a BART config.json and tokenizer files "
         "(vocab.json + merges.txt); the source of the architecture and the tokenizer"),
    Flag("pretrain_ckpt", None, G_MODEL,
         "directory whose pytorch_model.bin (or model.safetensors) initialises training; "
         "None = train from scratch (random initialisation)", type=none_or_str, modes=_TRAIN),
    Flag("num_lower_layers", 4, G_MODEL, "BART layers below the entity memory", type=int),
    Flag("num_upper_layers", 8, G_MODEL, "BART layers above the entity memory", type=int),
    Flag("entity_embed_size", 256, G_MODEL, "entity embedding size d_e", type=int),
    Flag("entity_vocab_size", 1000010, G_MODEL,
         "rows of the entity memory (1000010 for the official checkpoints)", type=int),
    Flag("dropout", 0.1, G_MODEL, "hidden dropout of every layer and of the memory", type=finite_float,
         modes=_TRAIN),
    Flag("elloss_weight", 1.0, G_MODEL, "no effect in entity linking (answer generation only)",
         type=finite_float, modes=_NONE),
    Flag("entity_token_weight", None, G_MODEL,
         "LM class weight of the marker tokens; only decides whether checkpoints carry LMLoss.weight",
         type=none_or_float),
    Flag("lower_decoder_attn", "lower_encoder", G_MODEL,
         "which encoder output the lower decoder cross-attends to (README: upper_encoder)",
         choices=("lower_encoder", "upper_encoder")),
    Flag("entity_mask_file", None, G_MODEL,
         "torch-saved 0/1 LongTensor of length entity_vocab_size (ablation)", type=none_or_str),
    Flag("inference_nearest_k_entity", 100, G_MODEL,
         "top-k entities kept per memory access at inference (length of the predicted id list)",
         type=int),
    Flag("do_cased", False, G_MODEL, "keep the question's case (default: lowercase it)",
         boolean=True),
    Flag("compact_entity_memory", False, G_MODEL,
         "[edmem] give the memory rows only for the ids of --id2entity_file (plus reserved rows "
         "0-9); outputs stay in original ids. Off for the official 1,000,010-row checkpoints",
         boolean=True),
    Flag("freeze_entity_memory", False, G_MODEL,
         "[edmem] keep the entity table fixed while fine-tuning (the pretrained memory then stays "
         "the knowledge source; helps facts not seen in fine-tuning)", boolean=True, modes=_TRAIN),
    # ---- task / decoding ----
    Flag("generate_target", "answer", G_TASK,
         "entity_linking is the task edmem implements; answer / qa_pair are not built",
         choices=GENERATE_TARGETS),
    Flag("final_layer_loss", "answer_only", G_TASK,
         "EL-head loss at the answer position only, or at every decoder <E_s>",
         choices=("answer_only", "all"), modes=_TRAIN),
    Flag("apply_el_loss", "all", G_TASK, "mean of the three EL losses, or the head's only",
         choices=("all", "final"), modes=_TRAIN),
    Flag("prepend_question_in_decoder_input", True, G_TASK,
         "the decoder sees the question before the answer <E_s>", boolean=True),
    Flag("add_another_bos", True, G_TASK,
         "prefix the question with '<s> ' so its first word gets a leading-space token", boolean=True),
    Flag("max_input_length", 50, G_TASK, "truncation length of the encoded question", type=int),
    Flag("max_output_length", 20, G_GEN, "generation only", type=int, modes=_NONE),
    Flag("num_beams", 5, G_GEN, "generation only", type=int, modes=_NONE),
    Flag("do_sample", False, G_GEN, "generation only", boolean=True, modes=_NONE),
    Flag("no_repeat_ngram_size", 3, G_GEN, "generation only (copied into config.json)", type=int,
         modes=_NONE),
    Flag("dev_entity_trie", None, G_GEN, "generation only", type=none_or_str, modes=_NONE),
    Flag("test_entity_trie", None, G_GEN, "generation only", type=none_or_str, modes=_NONE),
    Flag("trie_for_each_instance", True, G_GEN, "generation only", boolean=True, modes=_NONE),
    Flag("entity_copy", 0, G_GEN, "generation only", type=int, modes=_NONE),
    Flag("rescale_logits", "none", G_GEN, "generation only", modes=_NONE),
    # ---- optimisation ----
    Flag("train_batch_size", 64, G_OPT, "examples per process and micro-step", type=int,
         modes=_TRAIN),
    Flag("predict_batch_size", 64, G_OPT, "examples per process at evaluation/prediction", type=int),
    Flag("learning_rate", 1e-5, G_OPT, "peak learning rate (AdamW)", type=finite_float, modes=_TRAIN),
    Flag("weight_decay", 0.01, G_OPT,
         "decoupled weight decay; never applied to biases, LayerNorms or embedding tables",
         type=finite_float, modes=_TRAIN),
    Flag("adam_epsilon", 1e-8, G_OPT, "AdamW epsilon", type=finite_float, modes=_TRAIN),
    Flag("max_grad_norm", 0.1, G_OPT, "gradient clipping (global L2 norm)", type=finite_float, modes=_TRAIN),
    Flag("gradient_accumulation_steps", 1, G_OPT, "micro-steps per optimizer step", type=int,
         modes=_TRAIN),
    Flag("num_train_epochs", 1000, G_OPT, "epoch budget (early stopping usually ends training)",
         type=int, modes=_TRAIN),
    Flag("warmup_ratio", 0.1, G_OPT, "fraction of the planned optimizer steps used for warm-up",
         type=finite_float, modes=_TRAIN),
    Flag("wait_step", 10, G_OPT, "stop after this many evaluations without a strict improvement",
         type=int, modes=_TRAIN),
    Flag("eval_period", 1000, G_OPT, "evaluate on dev every this many optimizer steps", type=int,
         modes=_TRAIN),
    # ---- edmem additions ----
    Flag("resume", False, G_RUN,
         "[edmem] continue an interrupted run of --output_dir from its last saved training state",
         boolean=True, modes=_TRAIN),
    Flag("resume_force", False, G_RUN,
         "[edmem] with --resume, continue even if flags that change the result (learning rate, "
         "seed, data, model shape, ...) differ from the run being resumed (each is logged)",
         boolean=True, modes=_TRAIN),
    Flag("save_training_state", True, G_RUN,
         "[edmem] save model+optimizer+RNG state at every evaluation so --resume can continue",
         boolean=True, modes=_TRAIN),
    Flag("answer_type_weight", 0.0, G_RUN,
         "[edmem] > 0: fit an answer-type prior (naive Bayes over the train questions' words, the "
         "answers' types from --id2entity_file) and rerank every prediction's top-k by "
         "log p + weight * log Q(type | question); saved as answer_types.json with the model "
         "(not in the original; 0 = off; docs/linking.md)", type=finite_float, modes=_TRAIN),
    Flag("save_scores", False, G_RUN,
         "[edmem] also write {prefix}prediction_scores.json (the top-k scores)", boolean=True),
    Flag("tensorboard", True, G_RUN, "[edmem] write TensorBoard scalars to <output_dir>/tensorboard",
         boolean=True, modes=_TRAIN),
    Flag("gradient_checkpointing", False, G_RUN,
         "[edmem] keep only each transformer layer's input and recompute the layer in backward: "
         "less activation memory for about a third more transformer compute; same gradients",
         boolean=True, modes=_TRAIN),
    Flag("model", None, G_MODEL,
         "[edmem] a model directory (written by training as <output_dir>/model, by `edmem demo` or "
         "by `edmem convert`): architecture, tokenizer, entity vocabulary and weights come from "
         "it, so --model_name, --id2entity_file and the model flags are not needed",
         type=none_or_str, modes=_PRED),
    Flag("alias_file", None, G_DATA,
         "[edmem] aliases for mention detection, JSONL {\"id\": int, \"aliases\": [str]}; copied "
         "into the model directory training writes (<output_dir>/model)", type=none_or_str,
         modes=_TRAIN),
    Flag("memory_index", "exact", G_RUN,
         "[edmem] backend of the eval-mode memory reads when predicting: exact (every row scored) "
         "or a FAISS index (hnsw / ivf / ivfpq), built once into <output_dir>/memory_index/",
         choices=("exact", "hnsw", "ivf", "ivfpq")),
    Flag("memory_index_dtype", "fp32", G_RUN,
         "[edmem] storage of the rows the memory index reads (int8: per-row scale, 4x smaller)",
         choices=("fp32", "fp16", "bf16", "int8")),
    Flag("nprobe", 32, G_RUN, "[edmem] ivf / ivfpq: inverted lists searched per read", type=int),
    Flag("nlist", 0, G_RUN, "[edmem] ivf / ivfpq: inverted lists of a newly built index "
         "(0 = sqrt(rows))", type=int),
    Flag("ef_search", 128, G_RUN, "[edmem] hnsw: search beam width", type=int),
    Flag("pq_bytes", 32, G_RUN, "[edmem] ivfpq: code bytes per row (divides the row size)", type=int),
    Flag("num_threads", 0, G_RUN, "[edmem] torch CPU threads per process (0 = torch default)",
         type=int),
    Flag("device", "auto", G_RUN,
         "[edmem] where to run: auto = CUDA when a GPU is visible (GPU <local rank> under several "
         "processes, NCCL), else CPU (gloo); cpu or cuda to insist",
         choices=("auto", "cpu", "cuda")),
    Flag("fp16", False, G_RUN,
         "[edmem: now meaningful] train and predict under CUDA autocast float16 with a gradient "
         "scaler (CUDA only); the memory softmax, the losses and the optimizer stay fp32",
         boolean=True),
    Flag("bf16", False, G_RUN,
         "[edmem] autocast bfloat16 (the fast GPU path; on CPU it runs autocast-cpu, for tests); "
         "the memory softmax, the losses and the optimizer stay fp32", boolean=True),
    Flag("dist_timeout", 1800, G_RUN,
         "[edmem] seconds a rank waits for the others before the job fails (no silent hang)",
         type=int),
)


# The original's add_argument order: argparse fills the Namespace in this order, so the `args`
# file and the first log line list the flags exactly like run_QA.py. edmem additions come last.
ORIGINAL_ORDER = (
    "data_dir", "id2entity_file", "id2entitytokens_file", "task", "datafile_prefix", "output_dir",
    "overwrite_output", "do_train", "do_predict", "predict_on_dev", "model_name", "pretrain_ckpt",
    "num_lower_layers", "num_upper_layers", "entity_embed_size", "entity_vocab_size", "dropout",
    "elloss_weight", "entity_token_weight", "lower_decoder_attn", "entity_mask_file",
    "inference_nearest_k_entity", "do_cased", "generate_target", "dev_entity_trie",
    "test_entity_trie", "trie_for_each_instance", "entity_copy", "rescale_logits",
    "max_input_length", "max_output_length", "num_beams", "do_sample", "no_repeat_ngram_size",
    "add_another_bos", "final_layer_loss", "apply_el_loss", "prepend_question_in_decoder_input",
    "train_batch_size", "predict_batch_size", "learning_rate", "weight_decay", "adam_epsilon",
    "max_grad_norm", "gradient_accumulation_steps", "num_train_epochs", "warmup_ratio", "wait_step",
    "local_rank", "log_level", "log_level_replica", "eval_period", "prefix", "output_scores",
    "debug", "seed",
)
FLAGS = tuple(sorted(FLAGS, key=lambda f: ORIGINAL_ORDER.index(f.name)
                     if f.name in ORIGINAL_ORDER else len(ORIGINAL_ORDER)))


def add_flag(group: argparse._ArgumentGroup, flag: Flag, required: bool = False,
             default: Any = None, use_default: bool = False) -> None:
    """Add ``flag`` to an argparse group (``default`` replaces its default when ``use_default``)."""
    names = [f"--{flag.name}", *flag.aliases]
    default = default if use_default else flag.default
    if flag.store_true:
        group.add_argument(*names, action="store_true", default=default, help=flag.help)
    elif flag.boolean:
        group.add_argument(*names, type=str2bool, nargs="?", const=True, default=default,
                           metavar="True/False", help=f"{flag.help} (default: {default})")
    else:
        shown = "" if default in (None, "") else f" (default: {default})"
        group.add_argument(*names, type=flag.type, choices=flag.choices, default=default,
                           required=required, help=flag.help + shown,
                           **({"dest": flag.name} if flag.aliases else {}))


RUN_QA_EPILOG = """\
Entity linking on WebQuestions (the README recipe, one process):
  python -m edmem.run_qa --task wq --data_dir data/openqa --datafile_prefix entity_linking/el_ \\
      --id2entity_file data/wikipedia/entid2entityitemid_1M.json --generate_target entity_linking \\
      --model_name facebook/bart-large --pretrain_ckpt ckpt/pretrain --output_dir out/wq \\
      --do_train --do_predict --train_batch_size 16 --eval_period 50 --wait_step 30 \\
      --lower_decoder_attn upper_encoder --seed 3518
Several processes: torchrun --nproc_per_node 8 -m edmem.run_qa ...
"""

TRAIN_EPILOG = """\
examples:
  # fine-tune on WebQuestions entity linking, then predict the test split
  edmem train --task wq --data_dir data/openqa --datafile_prefix entity_linking/el_ \\
      --id2entity_file data/wikipedia/entid2entityitemid_1M.json \\
      --model_name facebook/bart-large --pretrain_ckpt ckpt/pretrain \\
      --output_dir out/wq --train_batch_size 16 --eval_period 50 --wait_step 30 --do_predict

  # continue the same run after a crash or a kill (same flags plus --resume)
  edmem train ... --output_dir out/wq --resume

  # two processes on one machine (CPU: gloo, GPU: NCCL)
  torchrun --nproc_per_node 2 -m edmem train ...

The flags are those of the original run_QA.py (python -m edmem.run_qa accepts all of them);
--generate_target is entity_linking here. Files written to --output_dir: args, log.txt,
pytorch_model.bin + config.json (original layout), model.safetensors, training_state/ (resume),
tensorboard/, model/ (the self-describing model directory of the best checkpoint: use it with
`edmem ask --model`, `edmem predict --model`, edmem.EntityLinker) and with --do_predict
{prefix}predictions.json.
"""

PREDICT_EPILOG = """\
examples:
  # predict the test split with the best checkpoint of out/wq
  edmem predict --task wq --data_dir data/openqa --datafile_prefix entity_linking/el_ \\
      --id2entity_file data/wikipedia/entid2entityitemid_1M.json \\
      --model_name facebook/bart-large --output_dir out/wq

  # the same with a model directory: no --model_name, --id2entity_file or model flags
  edmem predict --model out/wq/model --task wq --data_dir data/openqa \
      --datafile_prefix entity_linking/el_ --output_dir out/wq_test

  # the dev split, scores too, files named dev_predictions.json / dev_prediction_scores.json
  edmem predict ... --predict_on_dev --prefix dev_ --save_scores

--output_dir may hold a checkpoint written by the original code (pytorch_model.bin with or
without LMLoss.weight) or by edmem. Output: {id: [entity_name, [k entity ids, best first]]}.
"""


def build_parser(mode: str = "run_qa", prog: str | None = None) -> argparse.ArgumentParser:
    """The parser of one entry point: ``run_qa`` (every original flag), ``train`` or ``predict``."""
    if mode not in ("run_qa", "train", "predict"):
        raise ValueError(mode)
    epilog = {"run_qa": RUN_QA_EPILOG, "train": TRAIN_EPILOG, "predict": PREDICT_EPILOG}[mode]
    description = {
        "run_qa": "EDMem fine-tuning and prediction with the flags of the original run_QA.py.",
        "train": "Fine-tune an EDMem model for entity linking (optionally predict afterwards).",
        "predict": "Write {prefix}predictions.json with the best checkpoint of --output_dir.",
    }[mode]
    parser = argparse.ArgumentParser(
        prog=prog, description=description, epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    groups: dict[str, argparse._ArgumentGroup] = {}
    order = (G_DATA, G_MODEL, G_TASK, G_OPT, G_RUN, G_GEN)
    for name in order:
        if mode == "run_qa" or name != G_GEN:
            groups[name] = parser.add_argument_group(name)
    for flag in FLAGS:
        if mode != "run_qa" and mode not in flag.modes:
            continue
        required = flag.name in ("task", "output_dir")
        if mode != "run_qa" and flag.name == "generate_target":
            # The friendly commands do entity linking; the flag stays for copy-pasted commands.
            add_flag(groups[G_TASK], flag, default="entity_linking", use_default=True)
            continue
        add_flag(groups[flag.group], flag, required=required)
    if mode != "run_qa":
        # Every other run_QA.py flag still parses (hidden from --help), so an original command
        # line works after replacing the program name; generation flags are validated later.
        hidden = parser.add_argument_group()
        for flag in FLAGS:
            if mode not in flag.modes:
                _add_hidden(hidden, flag)
    return parser


def _add_hidden(group: argparse._ArgumentGroup, flag: Flag) -> None:
    names = [f"--{flag.name}", *flag.aliases]
    if flag.store_true:
        group.add_argument(*names, action="store_true", default=flag.default, help=argparse.SUPPRESS)
    elif flag.boolean:
        group.add_argument(*names, type=str2bool, nargs="?", const=True, default=flag.default,
                           help=argparse.SUPPRESS)
    else:
        group.add_argument(*names, type=flag.type, choices=flag.choices, default=flag.default,
                           help=argparse.SUPPRESS)


def finalize_args(args: argparse.Namespace) -> argparse.Namespace:
    """The fields the original adds after parsing (docs/training.md): ``do_lowercase``,
    ``train_from_scratch``, ``n_gpu`` (informational here: the world size comes from the
    launcher, not from the GPU count — Q4). The original forced ``fp16 = False`` here; in edmem
    ``--fp16`` is a real flag (CUDA autocast float16); it is moved after ``do_lowercase`` so the
    ``args`` file lists the fields in the original's order."""
    fp16 = bool(vars(args).pop("fp16", False))
    args.do_lowercase = not args.do_cased
    args.fp16 = fp16
    args.train_from_scratch = True
    try:
        import torch
        args.n_gpu = torch.cuda.device_count()
    except ImportError:  # pragma: no cover - torch is a dependency
        args.n_gpu = 0
    return args


def parse_args(argv: list[str] | None, mode: str = "run_qa", prog: str | None = None) -> argparse.Namespace:
    """Parse, apply the mode's implied flags and the original's post-processing."""
    args = build_parser(mode, prog).parse_args(argv)
    if mode == "train":
        args.do_train = True
    elif mode == "predict":
        args.do_predict = True
        args.do_train = False
    return finalize_args(args)


# ---------------------------------------------------------------------------- flags -> config
#: The model flags that are EDMemConfig fields of the same name and meaning.
CONFIG_FLAGS = tuple(name for name in SETTINGS_FIELDS if any(flag.name == name for flag in FLAGS))


def config_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The model settings the flags give, as ``EDMemConfig.from_bart_config(model_name,
    config_settings(args))`` takes them (``--entity_token_weight None`` is a value: an unweighted
    LM loss)."""
    flags = vars(args)
    return {name: flags[name] for name in CONFIG_FLAGS
            if name in flags and (flags[name] is not None or name == "entity_token_weight")}
