"""``edmem predict`` on a checkpoint written by the ORIGINAL code (the parity vectors of
../shared): the pytorch_model.bin with alias keys, with and without ``LMLoss.weight``, gives the
original's predictions.json entries. The shared files are copied only into a temporary dir."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edmem.apps.run_qa import predict_main as predict_cli


def _layout(parity: Path, root: Path, weights: str) -> list[str]:
    model = root / "tiny-bart"
    model.mkdir(parents=True)
    shutil.copy(parity / "tiny-bart_config.json", model / "config.json")
    shutil.copy(parity / "tiny-bart_vocab.json", model / "vocab.json")
    shutil.copy(parity / "tiny-bart_merges.txt", model / "merges.txt")
    task = root / "data" / "wq"
    task.mkdir(parents=True)
    # the four vector examples are training lines: predict them as the "test" split
    shutil.copy(parity / "data" / "el_wq-train.jsonl", task / "el_wq-test.jsonl")
    out = root / "out"
    out.mkdir()
    shutil.copy(parity / weights, out / "pytorch_model.bin")
    return ["--task", "wq", "--data_dir", str(root / "data"), "--datafile_prefix", "el_",
            "--id2entity_file", str(parity / "entity_files" / "entid2entityitemid_tiny.json"),
            "--model_name", str(model), "--output_dir", str(out),
            "--generate_target", "entity_linking", "--num_lower_layers", "1",
            "--num_upper_layers", "2", "--entity_embed_size", "32", "--entity_vocab_size", "1000",
            "--inference_nearest_k_entity", "10", "--lower_decoder_attn", "upper_encoder",
            "--predict_batch_size", "4", "--num_threads", "1"]


@pytest.mark.shared
@pytest.mark.parametrize("weights, token_weight", [
    ("model_state_dict.pt", "1.0"),                      # fine-tuning state: has LMLoss.weight
    ("pretrain_ckpt_pytorch_model.bin", "None"),         # pretrain checkpoint: no LMLoss.weight
    ("pretrain_ckpt_pytorch_model.bin", "1.0"),          # Q16: missing LMLoss.weight is filled
])
def test_predict_with_an_original_checkpoint(parity_dir, tmp_path, weights, token_weight):
    flags = _layout(parity_dir, tmp_path, weights) + ["--entity_token_weight", token_weight]
    assert predict_cli(flags) == 0
    ours = json.loads((tmp_path / "out" / "predictions.json").read_text())
    expected = json.loads((parity_dir / "eval_outputs.json").read_text())["predictions_json_format"]
    for qid, value in expected.items():
        assert ours[qid] == value, qid
