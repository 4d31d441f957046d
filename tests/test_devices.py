"""Device handling (``edmem.runtime.devices``) and the loop's device-explicit loss numbers, on
any machine: ``--device auto`` follows what torch sees, ``--device cuda`` without a GPU and a
local rank without its own GPU are one clear error line."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import el_tiny
from edmem.modeling.outputs import DetailLoss
from edmem.run_qa import main as run_qa
from edmem.runtime import devices
from edmem.training.loop import _loss_numbers

HAS_CUDA = torch.cuda.is_available()


def test_auto_follows_what_torch_sees() -> None:
    expected = torch.device("cuda", 0) if HAS_CUDA else torch.device("cpu")
    assert devices.resolve_device("auto") == expected
    assert devices.resolve_device("cpu", local_rank=3) == torch.device("cpu")
    assert devices.backend_for(torch.device("cpu")) == "gloo"
    assert devices.backend_for(torch.device("cuda", 1)) == "nccl"


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA: --device cuda is valid here")
def test_device_cuda_without_cuda_is_a_clear_error() -> None:
    assert devices.resolve_device("auto", local_rank=1) == torch.device("cpu")
    with pytest.raises(devices.DeviceError, match="--device cuda: CUDA is not available"):
        devices.resolve_device("cuda")


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA: --device cuda is valid here")
def test_run_qa_device_cuda_without_cuda_is_one_line_and_exit_1(tmp_path, capsys) -> None:
    paths = el_tiny.build(tmp_path / "task")
    assert run_qa(el_tiny.flags(paths, tmp_path / "out", "--do_train", "--device", "cuda")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ": error: --device cuda: CUDA is not available" in err[0], err
    assert not (tmp_path / "out").exists()     # refused before anything was written


def test_a_local_rank_without_its_own_gpu_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(devices, "cuda_count", lambda: 1)   # a one-GPU machine
    assert devices.resolve_device("auto", local_rank=0) == torch.device("cuda", 0)
    assert devices.resolve_device("cuda") == torch.device("cuda", 0)
    for name in ("auto", "cuda"):
        with pytest.raises(devices.DeviceError, match=r"local rank 1 has no GPU \(1 visible\)"):
            devices.resolve_device(name, local_rank=1)
    assert devices.resolve_device("cpu", local_rank=1) == torch.device("cpu")


def test_to_cpu_moves_nested_tensors_and_keeps_the_rest() -> None:
    state = {"a": [torch.ones(2), 3],
             "b": (torch.zeros(1, requires_grad=True) * 2, "x")}
    moved = devices.to_cpu(state)
    assert moved["a"][1] == 3 and moved["b"][1] == "x" and isinstance(moved["b"], tuple)
    assert not moved["b"][0].requires_grad and moved["b"][0].device.type == "cpu"


def test_loss_numbers_live_on_the_loss_device_whatever_the_detail_losses() -> None:
    # The model's DetailLoss fills missing parts with CPU zeros; on a GPU the loss is on the GPU.
    # "meta" stands for "another device than the CPU" here: mixing them in one stack would raise.
    loss = torch.tensor(2.0).to("meta")
    out = SimpleNamespace(loss=loss, detail_loss=DetailLoss(lm_loss=loss, el_loss=None))
    numbers = _loss_numbers(out, 2)
    assert numbers.device.type == "meta" and numbers.shape == (6,) and numbers.dtype == torch.float32
    cpu = SimpleNamespace(loss=torch.tensor(3.0), detail_loss=DetailLoss(lm_loss=torch.tensor(1.0)))
    assert _loss_numbers(cpu, 2).tolist() == [1.5, 0.5, 0.0, 0.0, 0.0, 0.0]
