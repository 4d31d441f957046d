"""Mixed precision on any machine (autocast-cpu bfloat16 runs the same code as CUDA's): the
entity table is read through a low-precision copy made once per optimizer step, the memory
softmax / NLL and the table gradient stay fp32, the loss is close to fp32's; the flags' errors."""

from __future__ import annotations

import pytest
import torch

import el_tiny
from edmem.modeling.model import EDMemModel
from edmem.run_qa import main as run_qa
from edmem.runtime import precision as amp
from edmem.training.optim import AdamW
from test_model import el_batch, tiny_config


def _model() -> EDMemModel:
    torch.manual_seed(0)
    model = EDMemModel(tiny_config(entity_vocab_size=300))
    model.train()
    return model


def _loss_and_table_grad(model: EDMemModel, precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    with amp.autocast(torch.device("cpu"), precision):
        out = model(**el_batch(), return_dict=True)
    out.loss.backward()
    return out.loss.detach(), model.EntityEmbedding.weight.grad.clone()


def test_bf16_loss_is_finite_and_close_to_fp32_and_the_table_gradient_stays_fp32() -> None:
    model = _model()
    loss32, grad32 = _loss_and_table_grad(model, "fp32")
    loss16, grad16 = _loss_and_table_grad(model, "bf16")
    assert loss16.dtype == torch.float32 and torch.isfinite(loss16)
    assert abs(float(loss16) - float(loss32)) < 0.02 * float(loss32), (float(loss16), float(loss32))
    assert grad16.dtype == torch.float32
    cos = torch.nn.functional.cosine_similarity(grad16.flatten(), grad32.flatten(), dim=0)
    assert cos > 0.99, float(cos)


def test_the_low_precision_table_copy_is_made_once_per_optimizer_step() -> None:
    model = _model()
    table = model.EntityEmbedding
    optimizer = AdamW(model.parameters(), lr=1e-2)
    copies = []
    for _ in range(2):
        for _ in range(2):   # two forwards (e.g. gradient accumulation) between optimizer steps
            _loss_and_table_grad(model, "bf16")
            copies.append(table.compute_copy(torch.bfloat16))
        optimizer.step()
    assert copies[0] is copies[1] and copies[2] is copies[3]    # no cast while unchanged
    assert copies[1] is not copies[2]                             # refreshed after the step
    assert torch.equal(copies[2], table.weight.detach().to(torch.bfloat16)) is False  # stale now
    assert torch.equal(table.compute_copy(torch.bfloat16), table.weight.detach().to(torch.bfloat16))


def test_eval_under_bf16_reads_the_same_top_entities_mostly() -> None:
    model = _model().eval()
    batch = {k: v for k, v in el_batch().items() if k not in ("labels", "input_entity_link",
                                                               "output_entity_link")}
    with torch.no_grad():
        top32 = model(**batch, return_dict=True).topk_entity[2]
        with amp.autocast(torch.device("cpu"), "bf16"):
            top16 = model(**batch, return_dict=True).topk_entity[2]
    assert top16.shape == top32.shape
    assert (top16[:, 0] == top32[:, 0]).float().mean() >= 0.5


def test_precision_flags_are_checked() -> None:
    assert amp.precision_name() == "fp32" and amp.precision_name(bf16=True) == "bf16"
    with pytest.raises(amp.PrecisionError, match="exclude each other"):
        amp.precision_name(fp16=True, bf16=True)
    with pytest.raises(amp.PrecisionError, match="--fp16 needs a CUDA device"):
        amp.check_precision("fp16", torch.device("cpu"))
    amp.check_precision("bf16", torch.device("cpu"))
    assert amp.grad_scaler("bf16", torch.device("cpu")) is None


@pytest.mark.slow
def test_run_qa_bf16_on_cpu_trains_and_predicts(tmp_path, capsys) -> None:
    paths = el_tiny.build(tmp_path / "task")
    out = tmp_path / "out"
    assert run_qa(el_tiny.flags(paths, out, "--do_train", "--do_predict", "--device", "cpu",
                                "--bf16", "--num_train_epochs", "2")) == 0
    log = (out / "log.txt").read_text()
    assert "Mixed precision: autocast bf16 on cpu" in log and "EM on test data" in log
    assert run_qa(el_tiny.flags(paths, tmp_path / "o2", "--do_train", "--device", "cpu",
                                "--fp16")) == 1
    assert "--fp16 needs a CUDA device" in capsys.readouterr().err
