"""The stages of ``edmem demo``: KB → tokenizer → pretraining → fine-tuning (+ the no-pretraining
baseline) → prediction → evaluation → report.

Each stage calls the public, in-process API of the package that owns the step (the demo only
chooses settings and file locations), so the demo exercises exactly what a user runs by hand:

* knowledge base: :func:`edmem.demo.build.build_demo_data`
* tokenizer: :func:`edmem.data.tokenization.train_bpe_tokenizer` (+ the model shape written into
  its ``config.json``, which is what ``--model_name`` reads the architecture from)
* pretraining: :func:`edmem.apps.pretrain.pretrain` with ``edmem pretrain`` flags
* fine-tuning / prediction: :func:`edmem.apps.run_qa.run` with ``run_QA.py`` flags
* evaluation: ``edmem evaluate all`` (the original exact_match / entity_linking_eval lines, hits@k)
* baselines: :func:`edmem.demo.questions.most_frequent_answer_baseline` and the same fine-tuning
  from a random initialisation (what the memory's pretraining is worth).

Every artefact lands under one output folder (layout in :data:`LAYOUT` and docs/demo.md).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from edmem.errors import EDMemError

# What the demo writes under --output_dir (also what --overwrite removes; nothing else is touched).
LAYOUT: dict[str, str] = {
    "data": "knowledge base, EL questions, pretraining passages (original formats)",
    "tokenizer": "byte-level BPE + the tiny BART config (the --model_name directory)",
    "cache": "tokenised pretraining corpus",
    "pretrain": "pretrained checkpoint (a --pretrain_ckpt), pretrain_metrics.json, log, TensorBoard",
    "finetune": "EL model fine-tuned from the pretrained checkpoint, predictions.json, log, TensorBoard",
    "baseline_no_pretrain": "the same fine-tuning from a random initialisation, predictions.json",
    "model": "the fine-tuned model as a self-describing model directory (edmem ask / serve --model)",
    "baseline_most_frequent": "predictions.json of the most-frequent-answer-per-relation baseline",
    "eval": "<system>.txt (the original scripts' printed lines) and <system>.json (every figure)",
    "summary.json": "every figure of the summary table",
    "summary.txt": "the summary table as printed",
    "curves.png": "training curves and hits@k bars",
    "demo.log": "log lines of every stage (the console shows progress bars and the table)",
    "settings.json": "the settings of this run",
}
HITS_KS = (1, 5, 10, 100)
SYSTEMS = ("edmem", "no_pretrain", "most_frequent")
MODEL_STAGES = ("finetune", "baseline_no_pretrain")


@dataclass
class DemoSettings:
    """Every knob of the demo. Defaults: the ≤10-minute run on 2 CPU cores (docs/demo.md)."""

    output_dir: Path = Path("runs/demo")
    seed: int = 0
    # knowledge base (edmem.demo.build.build_demo_data)
    num_cities: int = 400
    # Statements in the question lexicon's words too, 4 per fact: +11 to +13 dev points in every
    # group over 3 plain ones (3 seeds; docs/demo.md, "Phrasing breadth of the pretraining text").
    paraphrases_per_fact: int = 4
    broad_corpus_templates: bool = True
    train_questions_per_fact: int = 2     # EL training questions per train fact (frames drawn)
    lowercase_corpus: bool = True       # pretrain on lowercased passages, like the questions
    max_facts_per_relation: int = 0     # 0 = every fact gets questions (tests use a few)
    # tokenizer
    vocab_size: int = 2000
    # model shape (a tiny BART: lower + upper layers in encoder and decoder). Upper depth is what
    # lets fine-tuning route a question to what pretraining stored (docs/demo.md, experiments).
    d_model: int = 64
    num_lower_layers: int = 1
    num_upper_layers: int = 3
    attention_heads: int = 2
    ffn_dim: int = 256
    entity_embed_size: int = 64
    dropout: float = 0.0                        # memorising facts: dropout only slowed it down
    lower_decoder_attn: str = "upper_encoder"   # the README recipe's choice
    # pretraining (edmem pretrain)
    pretrain_steps: int = 1500
    pretrain_batch_size: int = 64
    pretrain_lr: float = 8e-3                   # dev study (docs/demo.md): 4e-3 -> 8e-3 moved every group
    mlm_probability: float = 0.15
    ssm_probability: float = 0.5
    mention_deletion_probability: float = 0.0   # not in the original; no gain on dev (docs/demo.md)
    ssm_single_mention_probability: float = 0.0  # not in the original (docs/demo.md)
    pretrain_eval_period: int = 500
    max_seq_length: int = 64
    # fine-tuning (run_QA.py --generate_target entity_linking)
    # Frequent evaluation and early stopping pick the step; with the memory frozen dev accuracy
    # kept rising past 6 epochs (dev study, docs/demo.md), so the budget is 15 with patience 8.
    finetune_epochs: int = 15
    finetune_batch_size: int = 32
    finetune_lr: float = 3e-4
    finetune_eval_period: int = 25
    wait_step: int = 8
    # Keep the pretrained entity table fixed while fine-tuning (run_QA --freeze_entity_memory):
    # the questions then cannot overwrite the facts of entities they do not ask about. Only for
    # the pretrained model; the no-pretraining baseline's random table has nothing to keep.
    freeze_entity_memory: bool = True
    # Rerank the EL head's top 100 by an answer-type prior fitted on the train questions (run_QA
    # --answer_type_weight; not in the original; 0 = off). Chosen on dev (docs/demo.md, "Answer types").
    answer_type_weight: float = 0.5
    # run control
    # One thread: this tiny model's matrices are too small to gain from a second one, and several
    # threads thrash on a shared machine (measured 10x slower per step under load; docs/demo.md).
    num_threads: int = 1
    device: str = "auto"   # --device of every stage (edmem.runtime.devices)
    skip_no_pretrain_baseline: bool = False
    verbose: bool = False
    # Soft time budget per stage, seconds (a stage over budget is flagged in the table).
    budgets: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_BUDGETS))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["output_dir"] = str(self.output_dir)
        return data


# The default run's plan on 2 shared CPU cores: 10 minutes in all (docs/demo.md has the measurements).
DEFAULT_BUDGETS: dict[str, float] = {
    "build_kb": 10, "tokenizer": 10, "pretrain": 380, "finetune": 115, "baseline_no_pretrain": 50,
    "predict": 10, "evaluate": 5, "report": 10,
}
TOTAL_BUDGET = 600.0


# ---------------------------------------------------------------------------- stage bookkeeping
class StageClock:
    """Wall and CPU seconds per stage, in order; prints one line when a stage starts and ends.

    CPU seconds (this process, all threads) are kept because wall time on a shared machine says
    more about the neighbours than about the demo; with one torch thread, CPU ≈ idle-machine wall.
    """

    def __init__(self, echo: Callable[[str], None]):
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self.count = 0
        self.echo = echo
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()

    @contextlib.contextmanager
    def stage(self, name: str, what: str) -> Iterator[None]:
        self.count += 1
        self.echo(f"[{self.count}] {what} ...")
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            took, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            self.seconds[name] = self.seconds.get(name, 0.0) + took
            self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + cpu
            self.echo(f"    {name}: {took:.1f}s (CPU {cpu:.1f}s)")

    def total(self) -> float:
        return time.perf_counter() - self.started


_LOG_LINE = re.compile(r"^\d\d/\d\d/\d{4} \d\d:\d\d:\d\d - ")


class _ConsoleRouter(io.TextIOBase):
    """stderr that sends the stages' log lines (the original's ``date - LEVEL - __main__ - ...``
    format) to ``demo.log`` and everything else (tqdm bars, warnings) to the real stderr.

    Why: the pretraining and training runners log every step to stderr, which would bury the
    progress bars; their own log.txt files keep those lines anyway. ``isatty`` is the real
    stream's, so tqdm still draws bars on a terminal and stays silent otherwise.
    """

    def __init__(self, real: Any, log: Any):
        self.real, self.log = real, log

    def write(self, text: str) -> int:
        (self.log if _LOG_LINE.match(text) else self.real).write(text)
        return len(text)

    def flush(self) -> None:
        self.real.flush()
        self.log.flush()

    def isatty(self) -> bool:
        return bool(getattr(self.real, "isatty", lambda: False)())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.real, "encoding", "utf-8")


@contextlib.contextmanager
def _quiet_logs(log_path: Path, verbose: bool) -> Iterator[None]:
    if verbose:
        yield
        return
    with log_path.open("a", encoding="utf-8") as log, \
            contextlib.redirect_stderr(_ConsoleRouter(sys.stderr, log)):
        yield


# ---------------------------------------------------------------------------- output folder
def prepare_output_dir(out: Path, overwrite: bool) -> None:
    """Refuse to mix two runs: a non-empty folder needs ``overwrite``, which then removes only
    the entries the demo writes (:data:`LAYOUT`) and leaves anything else alone."""
    import shutil

    if out.exists() and not out.is_dir():
        raise EDMemError(f"--output_dir {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise EDMemError(f"--output_dir {out} is not empty (an earlier run?); pass --overwrite to "
                             "replace the demo's files in it, or choose another folder")
        for name in LAYOUT:
            target = out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------------------- stages
def write_model_dir(texts: Sequence[str], directory: Path, s: DemoSettings) -> Path:
    """Tokenizer trained on ``texts`` + a BART ``config.json`` of the demo's size: together the
    ``--model_name`` directory both pretraining and fine-tuning read the architecture from."""
    from edmem.data.tokenization import train_bpe_tokenizer

    train_bpe_tokenizer(texts, directory, vocab_size=s.vocab_size)
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    layers = s.num_lower_layers + s.num_upper_layers
    config.update(d_model=s.d_model, encoder_layers=layers, decoder_layers=layers,
                  encoder_attention_heads=s.attention_heads, decoder_attention_heads=s.attention_heads,
                  encoder_ffn_dim=s.ffn_dim, decoder_ffn_dim=s.ffn_dim,
                  max_position_embeddings=max(128, s.max_seq_length), dropout=s.dropout,
                  attention_dropout=0.0, activation_dropout=0.0, activation_function="gelu",
                  init_std=0.02, scale_embedding=False)
    config_path.write_text(json.dumps(config, indent=1), encoding="utf-8")
    return directory


def lowercase_passages(source: Path, target: Path) -> Path:
    """A lowercased copy of a passage file, offsets kept (the data layer's
    :func:`~edmem.data.examples.lowercase_keep_length`).

    Why: ``run_QA.py`` lowercases questions (``--do_cased False``, and the demo's questions are
    lowercase anyway) while the KB writes passages in their natural case; with a BPE trained on
    both, "Lyon" in the text and "lyon" in a question are different tokens, so what pretraining
    taught the encoder to link would not transfer to the questions.
    """
    from edmem.data.examples import lowercase_keep_length
    from edmem.data.jsonio import iter_jsonl

    with target.open("w", encoding="utf-8", newline="\n") as handle:
        for _, obj in iter_jsonl(source):
            obj["text"] = lowercase_keep_length(obj["text"])
            handle.write(json.dumps(obj, ensure_ascii=False) + "\n")
    return target


def tokenizer_texts(paths: Any, corpus: Path) -> list[str]:
    """Pretraining passages (``corpus``) + train questions. Dev and test questions are left out:
    their held-out frames must not shape the vocabulary either (docs/demo.md, "Splits")."""
    from edmem.data.jsonio import iter_jsonl

    texts = [obj["text"] for _, obj in iter_jsonl(corpus)]
    texts += [obj["question"] for _, obj in iter_jsonl(paths.el["train"])]
    return texts


def _model_flags(s: DemoSettings) -> list[str]:
    """Model flags shared by pretraining and fine-tuning (they must agree for --pretrain_ckpt)."""
    return ["--num_lower_layers", str(s.num_lower_layers), "--num_upper_layers", str(s.num_upper_layers),
            "--entity_embed_size", str(s.entity_embed_size), "--lower_decoder_attn", s.lower_decoder_attn,
            "--compact_entity_memory", "True", "--dropout", str(s.dropout),
            "--num_threads", str(s.num_threads), "--device", s.device, "--seed", str(s.seed)]


def pretrain_argv(s: DemoSettings, corpus: dict[str, Path], model_dir: Path, out: Path,
                  paths: Any) -> list[str]:
    return ["--train_file", str(corpus["train"]), "--dev_file", str(corpus["dev"]),
            "--model_name", str(model_dir), "--id2entity_file", str(paths.entid2entityitemid),
            "--output_dir", str(out), "--cache_dir", str(s.output_dir / "cache"),
            "--overwrite_output", "True", "--max_steps", str(s.pretrain_steps),
            "--train_batch_size", str(s.pretrain_batch_size), "--predict_batch_size", "128",
            "--learning_rate", str(s.pretrain_lr), "--warmup_ratio", "0.05",
            "--max_grad_norm", "1.0", "--mlm_probability", str(s.mlm_probability),
            "--ssm_probability", str(s.ssm_probability),
            "--mention_deletion_probability", str(s.mention_deletion_probability),
            "--ssm_single_mention_probability", str(s.ssm_single_mention_probability),
            "--max_seq_length", str(s.max_seq_length),
            "--eval_period", str(s.pretrain_eval_period), "--selection_metric", "decoder_recall@1",
            "--save_training_state", "False", "--tensorboard", "True", *_model_flags(s)]


def run_qa_argv(s: DemoSettings, paths: Any, model_dir: Path, out: Path, *, train: bool,
                pretrain_ckpt: Path | None, split: str = "test") -> list[str]:
    """``run_QA.py`` flags for EL fine-tuning (``train``) or prediction of ``split`` with ``out``'s
    model (dev predictions go to ``dev_predictions.json``)."""
    argv = ["--task", paths.task, "--data_dir", str(paths.data_dir), "--datafile_prefix", paths.datafile_prefix,
            "--id2entity_file", str(paths.entid2entityitemid),
            "--id2entitytokens_file", str(paths.entity_tokens), "--model_name", str(model_dir),
            "--output_dir", str(out), "--generate_target", "entity_linking",
            "--inference_nearest_k_entity", str(max(HITS_KS)), "--predict_batch_size", "128",
            *_model_flags(s)]
    if train:
        if getattr(paths, "aliases", None) is not None:
            argv += ["--alias_file", str(paths.aliases)]
        argv += ["--do_train", "--overwrite_output", "True", "--train_batch_size", str(s.finetune_batch_size),
                 "--learning_rate", str(s.finetune_lr), "--num_train_epochs", str(s.finetune_epochs),
                 "--warmup_ratio", "0.05", "--max_grad_norm", "1.0",
                 "--eval_period", str(s.finetune_eval_period), "--wait_step", str(s.wait_step),
                 "--save_training_state", "False", "--tensorboard", "True",
                 "--answer_type_weight", str(s.answer_type_weight)]
        if pretrain_ckpt is not None:
            argv += ["--pretrain_ckpt", str(pretrain_ckpt),
                     "--freeze_entity_memory", str(s.freeze_entity_memory)]
    else:
        argv += ["--do_predict"] + (["--predict_on_dev", "--prefix", "dev_"] if split == "dev" else [])
    return argv


def run_qa(argv: list[str]) -> None:
    """Run ``run_QA.py`` in this process; raise on a non-zero status."""
    from edmem.training.args import parse_args
    from edmem.apps.run_qa import run

    args = parse_args(argv, mode="run_qa")
    status = run(args)
    if status:
        raise EDMemError(f"fine-tuning/prediction in {args.output_dir} ended with status {status} "
                         f"(see its log.txt)")


def most_frequent_predictions(paths: Any, k: int, split: str = "test") -> dict[str, list]:
    """Original-format predictions of the most-frequent-answer baseline, ranked to ``k`` ids.

    The top-1 answer is the one :func:`most_frequent_answer_baseline` picks (checked); the list
    continues with the relation's next most frequent train answers so hits@k is defined for the
    baseline too. Non-linkable test questions get the overall ranking (they are scored by EM only).
    """
    from edmem.data.jsonio import iter_jsonl
    from edmem.demo.questions import most_frequent_answer_baseline

    train = [obj for _, obj in iter_jsonl(paths.el["train"])]
    test = [obj for _, obj in iter_jsonl(paths.el[split])]
    reference = most_frequent_answer_baseline(train, test)["predictions"]
    by_rel: dict[str, Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    names: dict[int, str] = {}
    for q in train:
        for entity_id, name in {int(a[0]): a[1] for a in q.get("answer_entity", ())}.items():
            by_rel[q.get("relation", "")][entity_id] += 1
            overall[entity_id] += 1
            names[entity_id] = name

    def ranked(counter: Counter) -> list[int]:
        return sorted(counter, key=lambda e: (-counter[e], e))[:k]

    fallback = ranked(overall)
    predictions: dict[str, list] = {}
    for q in test:
        ids = ranked(by_rel[q["relation"]]) if by_rel.get(q.get("relation", "")) else fallback
        predictions[str(q["id"])] = [names.get(ids[0], "") if ids else "", ids]
        expected = reference.get(str(q["id"]))
        if expected is not None and expected[1][:1] != ids[:1]:
            raise AssertionError(f"question {q['id']}: ranking disagrees with the baseline's top-1")
    return predictions


@contextlib.contextmanager
def sealed_split(paths: Any, split: str, vault: Path) -> Iterator[None]:
    """Move ``split``'s EL and SLING files into ``vault`` for the duration, then put them back.

    Why: whatever runs inside (tokenizer, pretraining, fine-tuning with early stopping) cannot read
    the split even by mistake; a reader would fail on the missing file instead of quietly
    selecting on it. The files are put back even if a stage fails.
    """
    vault.mkdir(parents=True, exist_ok=True)
    moved = []
    try:
        for source in (paths.el[split], paths.sling[split]):
            target = vault / source.name
            source.replace(target)
            moved.append((source, target))
        yield
    finally:
        for source, target in moved:
            target.replace(source)
        with contextlib.suppress(OSError):
            vault.rmdir()


def score_groups(paths: Any, sources: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """hits@k per question group for each system, on dev (``dev_predictions.json``, the figures
    studies select on) and test (``predictions.json``)."""
    from edmem.data.jsonio import iter_jsonl, read_json
    from edmem.demo.groups import group_hits

    out: dict[str, dict[str, Any]] = {}
    for split, prefix in (("dev", "dev_"), ("test", "")):
        gold = [obj for _, obj in iter_jsonl(paths.el[split])]
        out[split] = {system: group_hits(read_json(directory / f"{prefix}predictions.json"), gold)
                      for system, directory in sources.items()
                      if (directory / f"{prefix}predictions.json").is_file()}
    return out


def evaluate_predictions(pred_path: Path, paths: Any, out_stem: Path) -> dict[str, Any]:
    """What ``edmem evaluate all`` computes for the test split, called in memory: the printed
    lines go to ``<stem>.txt``, every figure to ``<stem>.json``; returns that JSON document."""
    from edmem.evaluation.api import evaluate_files
    from edmem.runtime.atomic import atomic_write_text

    printed: list[str] = []
    report = evaluate_files(str(pred_path), str(paths.el["test"]), ans_link=str(paths.sling["test"]),
                            entity_vocab=str(paths.entity_names), echo=printed.append,
                            entity_linking="auto", ks=HITS_KS)
    printed += report.all_lines()
    document = {**report.as_dict(), "command": "all"}
    atomic_write_text(out_stem.with_suffix(".txt"), "".join(f"{line}\n" for line in printed))
    atomic_write_text(out_stem.with_suffix(".json"), json.dumps(
        document, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    return document


def headline(scores: dict[str, Any]) -> dict[str, float | int | None]:
    """The summary's figures from an evaluation document, rates as fractions in [0, 1].

    hits@k / MRR / el_accuracy are over the linkable test questions (those with a gold answer
    entity); ``em`` is the original exact_match over all test questions, ``em_linkable`` its
    -ans_link linkable figure, ``el_accuracy_all`` entity_linking_eval's first line."""
    def frac(percent: float | None) -> float | None:
        return None if percent is None else percent / 100.0

    em = scores["exact_match"]
    el = scores["entity_linking"]
    ranking = el["ranking"]
    row: dict[str, float | int | None] = {
        f"hits@{k}": ranking[f"hits@{k}"]["hits"] / max(1, ranking["questions"]) for k in HITS_KS}
    row.update(
        mrr=ranking["mrr"], em=frac(em["em"]),
        em_linkable=frac(em["answer_link"]["linkable"]["em"]) if em.get("answer_link") else None,
        el_accuracy=frac(el["linkable"]["em"]), el_accuracy_all=frac(el["em"]),
        questions=scores["questions"], linkable_questions=ranking["questions"])
    return row


# ---------------------------------------------------------------------------- the run
def run_demo(s: DemoSettings, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every stage; return the summary (also written to ``summary.json``)."""
    import torch

    from edmem.demo.build import build_demo_data, write_entity_tokens
    from edmem.demo.report import collect_curves, plot_curves, summary_table, write_summary
    from edmem.runtime.logging_setup import close_logging

    out = Path(s.output_dir)
    s.output_dir = out
    (out / "settings.json").write_text(json.dumps(s.to_json(), indent=1) + "\n", encoding="utf-8")
    clock = StageClock(echo)
    if s.num_threads > 0:
        torch.set_num_threads(s.num_threads)
    systems: dict[str, dict[str, Any]] = {}
    info: dict[str, Any] = {}

    with _quiet_logs(out / "demo.log", s.verbose):
        with clock.stage("build_kb", "building the geographic knowledge base"):
            paths = build_demo_data(out / "data", seed=s.seed, num_cities=s.num_cities or None,
                                    paraphrases_per_fact=s.paraphrases_per_fact,
                                    broad_corpus_templates=s.broad_corpus_templates,
                                    train_questions_per_fact=s.train_questions_per_fact,
                                    max_facts_per_relation=s.max_facts_per_relation or None)
            info["data"] = {k: v for k, v in paths.counts.items() if k != "build_ms"}
            info["data"]["memory_rows"] = paths.num_entity_rows
            corpus = {"train": paths.pretrain_train, "dev": paths.pretrain_dev}
            if s.lowercase_corpus:
                corpus = {split: lowercase_passages(src, src.with_name(src.stem + "-lowercase.jsonl"))
                          for split, src in corpus.items()}

        # Selection (tokenizer, pretraining checkpoint, fine-tuning early stopping) runs with the
        # test split moved out of reach; test is scored once, after (docs/demo.md, "Honest selection").
        with sealed_split(paths, "test", out / "data" / "sealed"):
            with clock.stage("tokenizer", f"training a {s.vocab_size}-token BPE tokenizer"):
                from edmem.data.tokenization import load_tokenizer
                model_dir = write_model_dir(tokenizer_texts(paths, corpus["train"]), out / "tokenizer", s)
                write_entity_tokens(_id2name(paths), load_tokenizer(model_dir), paths.entity_tokens)

            with clock.stage("pretrain", f"pretraining {s.pretrain_steps} steps (MLM + salient spans + EL)"):
                from edmem.pretraining.args import parse_args as pretrain_args
                from edmem.apps.pretrain import pretrain
                try:
                    result = pretrain(pretrain_args(pretrain_argv(s, corpus, model_dir, out / "pretrain", paths)))
                finally:
                    close_logging()
                info["pretrain"] = {"best_step": result.best_step, "global_step": result.global_step,
                                    "stopped_by": result.stopped_by, "best_metrics": result.best_metrics}

            finetunes = [("finetune", out / "pretrain", "fine-tuning entity linking from the pretrained memory")]
            if not s.skip_no_pretrain_baseline:
                finetunes.append(("baseline_no_pretrain", None,
                                  "baseline: the same fine-tuning from a random initialisation"))
            for name, ckpt, what in finetunes:
                with clock.stage(name, what):
                    try:
                        run_qa(run_qa_argv(s, paths, model_dir, out / name, train=True, pretrain_ckpt=ckpt))
                        run_qa(run_qa_argv(s, paths, model_dir, out / name, train=False, pretrain_ckpt=None,
                                           split="dev"))
                    finally:
                        close_logging()
                info[name] = _best_checkpoint_info(out / name)

        for name, _, _ in finetunes:
            with clock.stage("predict", f"predicting the test questions ({name})"):
                try:
                    run_qa(run_qa_argv(s, paths, model_dir, out / name, train=False, pretrain_ckpt=None))
                finally:
                    close_logging()

        with clock.stage("evaluate", "scoring test predictions (exact_match, entity_linking_eval, hits@k)"):
            (out / "eval").mkdir(exist_ok=True)
            baseline_dir = out / "baseline_most_frequent"
            baseline_dir.mkdir(exist_ok=True)
            for split, prefix in (("dev", "dev_"), ("test", "")):
                (baseline_dir / f"{prefix}predictions.json").write_text(
                    json.dumps(most_frequent_predictions(paths, max(HITS_KS), split=split)), encoding="utf-8")
            sources = {"edmem": out / "finetune", "most_frequent": baseline_dir}
            if not s.skip_no_pretrain_baseline:
                sources["no_pretrain"] = out / "baseline_no_pretrain"
            for system, directory in sources.items():
                systems[system] = headline(evaluate_predictions(directory / "predictions.json", paths,
                                                                out / "eval" / system))
            info["groups"] = score_groups(paths, sources)

        with clock.stage("report", "plotting curves.png, writing summary.json"):
            plot_curves(collect_curves(out), build_summary(s, systems, clock, info), out / "curves.png")
        summary = build_summary(s, systems, clock, info)
        write_summary(summary, out)
        publish_model(out / "finetune" / "model", out / "model")
    echo("")
    echo(summary_table(summary))
    echo("")
    echo("Ask the model yourself (paste either line):")
    for line in try_it_lines(out / "model", example_question(paths)):
        echo(f"  {line}")
    return summary


def publish_model(source: Path, target: Path) -> Path:
    """Copy the fine-tuned model directory to ``<output_dir>/model`` (built beside it, then
    renamed into place, so a half-copied folder is never seen)."""
    import shutil

    if not source.is_dir():
        raise EDMemError(f"{source}: fine-tuning wrote no model directory")
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return target


def example_question(paths: Any) -> str:
    """A test question to show off: the first linkable one."""
    from edmem.data.jsonio import iter_jsonl

    for _, obj in iter_jsonl(paths.el["test"]):
        if obj.get("answer_entity"):
            return str(obj["question"])
    return "what is the capital of japan?"


def edmem_command() -> str:
    """How to run ``edmem`` from the current directory, as a person would paste it: ``edmem``
    when that is the one on PATH, else this interpreter's script (``.venv/bin/edmem``)."""
    import os
    import shlex
    import shutil

    script = Path(sys.executable).parent / "edmem"
    on_path = shutil.which("edmem")
    if script.is_file():
        if on_path and Path(on_path).resolve() == script.resolve():
            return "edmem"
        try:
            return shlex.quote(os.path.relpath(script))
        except ValueError:
            return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m edmem"


def try_it_lines(model: Path, question: str) -> list[str]:
    """The two paste-able commands printed at the end of the demo."""
    import shlex

    prog = edmem_command()
    where = shlex.quote(str(model))
    return [f"{prog} ask --model {where} {shlex.quote(question)}",
            f"{prog} serve --model {where}"]


def _id2name(paths: Any) -> dict[int, str]:
    from edmem.data.jsonio import read_json

    return {int(k): v["entity"] for k, v in read_json(paths.entid2entityitemid).items()}


def _best_checkpoint_info(directory: Path) -> dict[str, Any]:
    """best_checkpoint.json written by the training runner (epoch, global step, dev EM)."""
    path = directory / "best_checkpoint.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def build_summary(s: DemoSettings, systems: dict[str, dict[str, Any]], clock: StageClock,
                  info: dict[str, Any]) -> dict[str, Any]:
    """The summary document: ``test`` (the model), ``baselines``, ``margin`` over the best
    baseline, ``goal`` checks, wall ``seconds`` and ``cpu_seconds`` per stage (+ budgets),
    settings and run facts."""
    from edmem.demo.questions import HELDOUT_BOTH, HELDOUT_FACT

    test = systems["edmem"]
    baselines = {name: systems[name] for name in SYSTEMS[1:] if name in systems}
    groups = info.get("groups", {}).get("test", {})

    def held_out_facts(name: str) -> float:
        """hits@1 on held-out facts in seen phrasings (the whole test file before groups existed)."""
        return groups.get(name, {}).get(HELDOUT_FACT, {}).get("hits@1", systems[name]["hits@1"])

    best_name = max(baselines, key=held_out_facts)
    margin = held_out_facts("edmem") - held_out_facts(best_name)
    both = groups.get("edmem", {}).get(HELDOUT_BOTH, {}).get("hits@1")
    return {
        "test": test,
        "baselines": baselines,
        "groups": info.get("groups", {}),
        "best_baseline": best_name,
        "margin_hits@1": margin,
        "goal": {"hits@1>=0.90": held_out_facts("edmem") >= 0.90, "margin>=0.30": margin >= 0.30,
                 "heldout_both_hits@1>=0.85": both is not None and both >= 0.85},
        "seconds": {k: round(v, 1) for k, v in clock.seconds.items()} | {"total": round(clock.total(), 1)},
        "cpu_seconds": {k: round(v, 1) for k, v in clock.cpu_seconds.items()}
        | {"total": round(time.process_time() - clock.cpu_started, 1)},
        "budgets": {**s.budgets, "total": TOTAL_BUDGET},
        "settings": s.to_json(),
        "run": {k: v for k, v in info.items() if k != "groups"},
    }
