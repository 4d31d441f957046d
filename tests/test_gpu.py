"""The CUDA path against the CPU path (marker ``gpu``; skipped with a reason without CUDA):
training steps match within float tolerance, predictions have the CPU's top-1, bf16 autocast
trains with a finite loss close to fp32's, and ``--resume`` continues a CUDA run exactly."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import el_tiny
from edmem.modeling.model import EDMemModel
from edmem.run_qa import main as run_qa
from edmem.runtime import precision as amp
from edmem.training.optim import build_optimizer
from test_model import el_batch, tiny_config

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (no GPU visible)")]

REPO = Path(__file__).resolve().parent.parent
CUDA = torch.device("cuda", 0)


def _train_steps(model: EDMemModel, device: torch.device, precision: str = "fp32",
                 steps: int = 3) -> list[float]:
    model.to(device).train()
    optimizer = build_optimizer(model, 1e-2, 0.01, 1e-6)   # foreach on CUDA, per-tensor on CPU
    batch = {k: v.to(device) for k, v in el_batch().items()}
    losses = []
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        with amp.autocast(device, precision):
            loss = model(**batch, return_dict=True).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss))
    return losses


def test_training_steps_on_cuda_match_the_cpu() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    base = EDMemModel(tiny_config(entity_vocab_size=300))
    cpu, gpu = copy.deepcopy(base), copy.deepcopy(base)
    cpu_losses = _train_steps(cpu, torch.device("cpu"))
    gpu_losses = _train_steps(gpu, CUDA)
    assert gpu_losses == pytest.approx(cpu_losses, rel=1e-4, abs=1e-5)
    worst = max(float((a.detach() - b.detach().cpu()).abs().max())
                for a, b in zip(cpu.parameters(), gpu.parameters()))
    assert worst < 1e-4, worst


def test_bf16_autocast_training_on_cuda_has_a_finite_loss_close_to_fp32() -> None:
    torch.manual_seed(0)
    base = EDMemModel(tiny_config(entity_vocab_size=300))
    fp32 = _train_steps(copy.deepcopy(base), CUDA, "fp32")
    bf16 = _train_steps(copy.deepcopy(base), CUDA, "bf16")
    assert all(torch.isfinite(torch.tensor(bf16)))
    assert bf16[0] == pytest.approx(fp32[0], rel=0.02)
    assert bf16[-1] == pytest.approx(fp32[-1], rel=0.1)


def test_predictions_on_cuda_have_the_cpu_top1(tmp_path) -> None:
    paths = el_tiny.build(tmp_path / "task")
    out = tmp_path / "out"
    assert run_qa(el_tiny.flags(paths, out, "--do_train", "--do_predict", "--device", "cpu",
                                "--num_train_epochs", "3")) == 0
    assert run_qa(el_tiny.flags(paths, out, "--do_predict", "--device", "cuda",
                                "--prefix", "cuda_")) == 0
    cpu = json.loads((out / "predictions.json").read_text())
    gpu = json.loads((out / "cuda_predictions.json").read_text())
    assert list(cpu) == list(gpu)
    assert [v[1][0] for v in cpu.values()] == [v[1][0] for v in gpu.values()]


def test_bf16_run_qa_on_cuda_trains_and_predicts(tmp_path) -> None:
    paths = el_tiny.build(tmp_path / "task")
    out = tmp_path / "out"
    assert run_qa(el_tiny.flags(paths, out, "--do_train", "--do_predict", "--device", "cuda",
                                "--bf16", "--num_train_epochs", "3")) == 0
    log = (out / "log.txt").read_text()
    assert "Mixed precision: autocast bf16 on cuda" in log and "EM on test data" in log


def test_resume_on_cuda_continues_the_run_exactly(tmp_path) -> None:
    paths = el_tiny.build(tmp_path / "task")
    extra = ("--do_train", "--do_predict", "--device", "cuda", "--num_train_epochs", "6",
             "--wait_step", "8", "--learning_rate", "1e-2", "--max_grad_norm", "1.0")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("EDMEM_FAULT", None)

    def run(out: Path, *more: str, fault: str | None = None) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "edmem.run_qa", *el_tiny.flags(paths, out, *extra, *more)]
        return subprocess.run(cmd, env=dict(env, **({"EDMEM_FAULT": fault} if fault else {})),
                              capture_output=True, text=True, timeout=300)

    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    first = run(crashed, fault="crash@0:10")          # dies at step 10; state saved at step 8
    assert first.returncode != 0 and "injected crash" in first.stderr, first.stderr[-4000:]
    whole = run(straight)
    assert whole.returncode == 0, whole.stderr[-4000:]
    resumed = run(crashed, "--resume", "True")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "global step 8" in resumed.stderr
    best = [json.loads((d / "best_checkpoint.json").read_text()) for d in (straight, crashed)]
    assert best[0] == best[1]
    assert (straight / "predictions.json").read_bytes() == (crashed / "predictions.json").read_bytes()
