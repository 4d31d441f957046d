"""`edmem pretrain` end to end on a tiny model: loss goes down, the output is a valid
--pretrain_ckpt, resume continues exactly, the CLI reports clearly."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch

from edmem.apps.common import build_config, load_entity_rows, load_weights
from edmem.apps.pretrain import build_model, entity_rows_for, main, masking_configs, pretrain
from edmem.data.entity_vocab import load_id2entity
from edmem.data.markers import encode_with_mentions
from edmem.data.tokenization import load_tokenizer, train_bpe_tokenizer
from edmem.modeling.model import EDMemModel
from edmem.pretraining.args import parse_args
from edmem.pretraining.collate import MODEL_FIELDS, PretrainCollator
from edmem.pretraining.corpus import open_or_build_cache
from edmem.pretraining.dataset import PretrainDataset, row_map
from edmem.pretraining.masking import MaskingConfig, SpecialTokenIds
from edmem.training.args import parse_args as parse_train_args
from edmem.runtime.logging_setup import close_logging
from edmem.training.checkpointing import load_training_state
from edmem.training.optim import build_optimizer

CORPUS = Path(__file__).resolve().parent / "fixtures" / "pretraining"
TINY_BART = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                 decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                 max_position_embeddings=256)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BART config + BPE tokenizer trained on the fixture corpus (the hub is unreachable)."""
    texts = [json.loads(line)["text"] for line in (CORPUS / "train.jsonl").open()]
    out = train_bpe_tokenizer(texts, tmp_path_factory.mktemp("tiny-bart"), vocab_size=300)
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, **TINY_BART}))
    return out


def _argv(model_dir: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["--train_file", str(CORPUS / "train.jsonl"), "--dev_file", str(CORPUS / "dev.jsonl"),
            "--model_name", str(model_dir), "--id2entity_file", str(CORPUS / "entid2entityitemid.json"),
            "--compact_entity_memory", "--num_lower_layers", "1", "--num_upper_layers", "1",
            "--entity_embed_size", "16", "--output_dir", str(tmp_path / "out"),
            "--cache_dir", str(tmp_path / "cache"), "--train_batch_size", "8", "--learning_rate", "1e-3",
            "--max_steps", "8", "--eval_period", "4", "--tensorboard", "False", *extra]


@pytest.fixture(autouse=True)
def _close_logs():
    yield
    close_logging()


def test_a_few_optimizer_steps_reduce_the_loss(model_dir: Path, tmp_path: Path) -> None:
    args = parse_args(_argv(model_dir, tmp_path, "--dropout", "0"))
    tokenizer = load_tokenizer(model_dir)
    rows = entity_rows_for(args, tmp_path)
    encode = functools.partial(encode_with_mentions, tokenizer, max_length=128, bos_prefix=True)
    cache = open_or_build_cache(CORPUS / "train.jsonl", encode, tokenizer, {}, tmp_path / "cache")
    special = SpecialTokenIds.from_tokenizer(tokenizer)
    data = PretrainDataset(cache, special, MaskingConfig(), row_map(rows))
    batch = PretrainCollator(special.pad)([data[i] for i in range(8)])
    torch.manual_seed(0)
    model = build_model(args, tokenizer, rows.num_rows)
    assert model.config.generate_target == "pretraining"
    optimizer = build_optimizer(model, 3e-3, 0.01, 1e-8)
    losses = []
    for _ in range(15):
        out = model(**{k: batch[k] for k in MODEL_FIELDS})
        detail = out.detail_loss.detach()
        # LM + EL mode: loss = LM CE + elloss_weight * mean of the three EL NLLs.
        el = (detail.encoder_elloss + detail.decoder_elloss + detail.final_elloss) / 3
        assert torch.allclose(out.loss, detail.lm_loss + el)
        assert float(detail.lm_loss) > 0 and all(float(x) > 0 for x in
                                                 (detail.encoder_elloss, detail.decoder_elloss, detail.final_elloss))
        losses.append(out.loss.item())
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
    assert losses[-1] < losses[0] - 0.5


def test_objective_flags_reach_training_masks_and_dev_keeps_the_original(model_dir: Path, tmp_path: Path) -> None:
    args = parse_args(_argv(model_dir, tmp_path, "--ssm_single_mention_probability", "1",
                            "--mention_deletion_probability", "0.25", "--ssm_probability", "0.4"))
    train, dev = masking_configs(args)
    assert (train.ssm_single_mention_probability, train.mention_deletion_probability,
            train.ssm_probability) == (1.0, 0.25, 0.4)
    assert (dev.ssm_single_mention_probability, dev.mention_deletion_probability,
            dev.memory_cue_probability, dev.ssm_probability) == (0.0, 0.0, 0.0, 0.4)
    assert parse_args(_argv(model_dir, tmp_path)).ssm_single_mention_probability == 0.0  # the original


def test_mention_deletion_batches_train_with_a_shorter_encoder_side(model_dir: Path, tmp_path: Path) -> None:
    args = parse_args(_argv(model_dir, tmp_path, "--dropout", "0", "--mention_deletion_probability", "1"))
    assert args.mention_deletion_probability == 1.0
    tokenizer = load_tokenizer(model_dir)
    rows = entity_rows_for(args, tmp_path)
    encode = functools.partial(encode_with_mentions, tokenizer, max_length=128, bos_prefix=True)
    cache = open_or_build_cache(CORPUS / "train.jsonl", encode, tokenizer, {}, tmp_path / "cache")
    special = SpecialTokenIds.from_tokenizer(tokenizer)
    data = PretrainDataset(cache, special, MaskingConfig(mention_deletion_probability=1.0), row_map(rows))
    items = [data[i] for i in range(8)]
    shorter = [it for it in items if len(it["input_ids"]) < len(it["labels"])]
    assert shorter, "no passage of the fixture lost a mention"
    for it in items:
        assert len(it["input_entity_link"]) == len(it["input_ids"])
        assert len(it["output_entity_link"]) == len(it["labels"])
        starts = sum(t == special.entity_start for t in it["input_ids"])
        assert starts == sum(t == special.entity_start for t in it["labels"]) - (it in shorter)
    batch = PretrainCollator(special.pad)(items)
    assert batch["input_ids"].shape[1] <= batch["labels"].shape[1]
    torch.manual_seed(0)
    model = build_model(args, tokenizer, rows.num_rows)
    optimizer = build_optimizer(model, 3e-3, 0.01, 1e-8)
    losses = []
    for _ in range(10):
        out = model(**{k: batch[k] for k in MODEL_FIELDS})
        assert torch.isfinite(out.detail_loss.final_elloss)
        losses.append(out.loss.item())
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert losses[-1] < losses[0] - 0.5


def _load_as_pretrain_ckpt(model_dir: Path, ckpt: Path, tmp_path: Path) -> EDMemModel:
    """Exactly what run_qa / edmem train do with --pretrain_ckpt: rows and config from the
    fine-tuning flags, a fresh EL-mode model, a strict load of ckpt/pytorch_model.bin."""
    args = parse_train_args(["--task", "wq", "--output_dir", str(tmp_path / "finetune"),
                             "--model_name", str(model_dir), "--pretrain_ckpt", str(ckpt),
                             "--id2entity_file", str(CORPUS / "entid2entityitemid.json"),
                             "--compact_entity_memory", "True", "--num_lower_layers", "1",
                             "--num_upper_layers", "1", "--entity_embed_size", "16",
                             "--lower_decoder_attn", "upper_encoder"], mode="train")
    rows = load_entity_rows(args, tmp_path / "finetune", load_id2entity(args.id2entity_file))
    model = EDMemModel(build_config(args, load_tokenizer(args.model_name), rows.num_rows))
    load_weights(model, args.pretrain_ckpt, "--pretrain_ckpt")
    return model


def test_pretrain_writes_a_valid_pretrain_ckpt(model_dir: Path, tmp_path: Path) -> None:
    result = pretrain(parse_args(_argv(model_dir, tmp_path)))
    out = tmp_path / "out"
    assert result.output_dir == out and result.checkpoint == out / "pytorch_model.bin"
    assert result.global_step == 8 and result.stopped_by == "steps"
    assert result.best_step in (4, 8) and result.selection_metric == "final_recall@1"
    for key in ("encoder_recall@1", "decoder_recall@10", "final_recall@100", "perplexity"):
        assert key in result.best_metrics
    assert result.best_metrics["salient_mentions"] > 0
    metrics = json.loads((out / "pretrain_metrics.json").read_text())
    assert [h["step"] for h in metrics["history"]] == [4, 8] and metrics["best_step"] == result.best_step

    state = torch.load(out / "pytorch_model.bin", weights_only=True)
    assert "LMHead.weight" in state and "EncoderEntityMemory.EntityEmbedding.weight" in state  # aliases
    model = _load_as_pretrain_ckpt(model_dir, out, tmp_path)
    assert model.config.generate_target == "entity_linking"
    assert torch.equal(model.EntityEmbedding.weight, state["EntityEmbedding.weight"])


def test_resume_continues_exactly(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    straight = tmp_path / "straight"
    pretrain(parse_args(_argv(model_dir, straight)))

    resumed = tmp_path / "resumed"
    monkeypatch.setenv("EDMEM_FAULT", "crash@0:6")  # dies after the step-4 state was saved
    with pytest.raises(RuntimeError, match="injected crash"):
        pretrain(parse_args(_argv(model_dir, resumed)))
    assert load_training_state(resumed / "out")["loop"]["global_step"] == 4
    monkeypatch.delenv("EDMEM_FAULT")
    result = pretrain(parse_args(_argv(model_dir, resumed, "--resume")))
    assert result.global_step == 8

    a = load_training_state(straight / "out")["model"]
    b = load_training_state(resumed / "out")["model"]
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    history = json.loads((resumed / "out" / "pretrain_metrics.json").read_text())["history"]
    assert [h["step"] for h in history] == [4, 8]


def test_cli_refuses_to_overwrite_and_prints_help(model_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "pytorch_model.bin").write_bytes(b"")
    assert main(_argv(model_dir, tmp_path)) == 1
    assert "--overwrite_output" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    for flag in ("--train_file", "--mlm_probability", "--ssm_probability", "--max_steps", "--resume",
                 "--selection_metric", "--pretrain_ckpt"):
        assert flag in help_text


def test_memory_cue_pretraining_runs_end_to_end_and_feeds_the_cue(model_dir: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    forward = EDMemModel.forward

    def spy(self, *args, **kwargs):
        cue = kwargs.get("input_entity_cue")
        if self.training:
            seen.append(-1 if cue is None else int(cue.sum()))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(EDMemModel, "forward", spy)
    result = pretrain(parse_args(_argv(model_dir, tmp_path, "--memory_cue_probability", "1")))
    assert result.global_step == 8 and len(seen) == 8
    assert all(n > 0 for n in seen)  # every training batch carried cues to the encoder reads
    assert result.best_metrics["salient_mentions"] > 0  # dev keeps plain masks (no cue, no deletion)
