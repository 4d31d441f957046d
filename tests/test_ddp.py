"""Two CPU processes (gloo, pinned with ``--device cpu`` so the tests mean the same on a GPU
machine) under torchrun on the tiny task: a whole run and its claimed equivalence with one process
at twice the batch (docs/training.md), a NaN on one rank stopping every rank (Q20), and a crashed
rank ending the job with a non-zero exit (no hang). A failing child's stderr is in the message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import el_tiny

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 120


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> dict[str, str]:
    return el_tiny.build(tmp_path_factory.mktemp("ddp"))


def _run_flags(paths: dict[str, str], out: Path, batch: int, *extra: str) -> list[str]:
    return el_tiny.flags(paths, out, "--do_train", "--do_predict", "--dropout", "0",
                         "--max_grad_norm", "1.0", "--learning_rate", "1e-2",
                         "--train_batch_size", str(batch), "--dist_timeout", "60",
                         "--device", "cpu", *extra)


def _failure(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}; child stderr (tail):\n{proc.stderr[-4000:]}"


def _torchrun(paths: dict[str, str], out: Path, fault: str | None = None,
              *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "edmem.run_qa", *_run_flags(paths, out, 2, *extra)]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("EDMEM_FAULT", None)
    if fault:
        env["EDMEM_FAULT"] = fault
    start = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    return proc, time.time() - start


@pytest.mark.slow
def test_two_processes_train_and_write_one_merged_predictions_file(task, tmp_path):
    out = tmp_path / "out"
    proc, _ = _torchrun(task, out)
    assert proc.returncode == 0, _failure(proc)
    log = (out / "log.txt").read_text()
    assert "World size 2 (backend gloo)" in log
    # 16 training examples, 2 per process and step -> 4 optimizer steps per epoch, 12 epochs
    assert "Total global training steps: 48, Total local training steps: 48" in log
    test_ids = [json.loads(l)["id"] for l in open(Path(task["data_dir"]) / "wq" / "el_wq-test.jsonl")]
    predictions = json.loads((out / "predictions.json").read_text())
    assert list(predictions) == test_ids        # merged, no duplicates, dataset order
    assert not list(out.glob("predictions_ps*.json"))
    assert "Best EM on validation data" in log and "EM on test data" in log

    # The claim of docs/training.md: one process with twice the batch (4) takes the same steps,
    # selects the same best checkpoint and writes byte-identical predictions.
    single = tmp_path / "single"
    one = subprocess.run([sys.executable, "-m", "edmem.run_qa", *_run_flags(task, single, 4)],
                         env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"),
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert one.returncode == 0, _failure(one)
    assert "Total global training steps: 48" in (single / "log.txt").read_text()
    two_best = json.loads((out / "best_checkpoint.json").read_text())
    one_best = json.loads((single / "best_checkpoint.json").read_text())
    assert one_best == two_best
    assert (single / "predictions.json").read_bytes() == (out / "predictions.json").read_bytes()
    a = torch.load(out / "pytorch_model.bin", map_location="cpu", weights_only=True)
    b = torch.load(single / "pytorch_model.bin", map_location="cpu", weights_only=True)
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst < 1e-4, worst   # equal up to the summation order of the gradient all-reduce
    print(f"\n[ddp] best {two_best}; max weight difference 2x2 vs 1x4: {worst:.2e}")


@pytest.mark.slow
def test_nan_on_one_rank_stops_every_rank(task, tmp_path):
    out = tmp_path / "nan"
    proc, seconds = _torchrun(task, out, "nan@1:6")
    assert proc.returncode != 0 and seconds < TIMEOUT, _failure(proc)
    log = (out / "log.txt").read_text()
    assert "NaN/inf loss at global step 6" in log        # seen by rank 0 although rank 1 had it
    assert "Step 8," not in log                          # no rank trained on
    assert (out / "predictions.json").is_file()          # predicted with the best checkpoint


@pytest.mark.slow
def test_a_crashed_rank_ends_the_job_with_an_error_instead_of_a_hang(task, tmp_path):
    # A hang would last the process-group timeout (600 s here) and hit the subprocess limit; a
    # torn-down job ends within startup time (seconds alone, ~1 min on a loaded 2-core machine).
    proc, seconds = _torchrun(task, tmp_path / "crash", "crash@1:3", "--dist_timeout", "600")
    assert proc.returncode != 0, _failure(proc)
    assert seconds < TIMEOUT, _failure(proc)
    assert "injected crash on rank 1" in proc.stderr, _failure(proc)
