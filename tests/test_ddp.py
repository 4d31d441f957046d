"""Two CPU processes (gloo) under torchrun on the tiny task: a whole run, a NaN on one rank
stopping every rank (Q20), and a crashed rank ending the job with a non-zero exit (no hang)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import el_tiny

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 120


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> dict[str, str]:
    return el_tiny.build(tmp_path_factory.mktemp("ddp"))


def _torchrun(paths: dict[str, str], out: Path, fault: str | None = None,
              *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "edmem.run_qa",
           *el_tiny.flags(paths, out, "--do_train", "--do_predict", "--dropout", "0",
                          "--max_grad_norm", "1.0", "--learning_rate", "1e-2",
                          "--train_batch_size", "2", "--dist_timeout", "60", *extra)]
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
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (out / "log.txt").read_text()
    assert "World size 2 (backend gloo)" in log
    # 16 training examples, 2 per process and step -> 4 optimizer steps per epoch, 12 epochs
    assert "Total global training steps: 48, Total local training steps: 48" in log
    test_ids = [json.loads(l)["id"] for l in open(Path(task["data_dir"]) / "wq" / "el_wq-test.jsonl")]
    predictions = json.loads((out / "predictions.json").read_text())
    assert list(predictions) == test_ids        # merged, no duplicates, dataset order
    assert not list(out.glob("predictions_ps*.json"))
    assert "Best EM on validation data" in log and "EM on test data" in log


@pytest.mark.slow
def test_nan_on_one_rank_stops_every_rank(task, tmp_path):
    out = tmp_path / "nan"
    proc, seconds = _torchrun(task, out, "nan@1:6")
    assert proc.returncode != 0 and seconds < TIMEOUT
    log = (out / "log.txt").read_text()
    assert "NaN/inf loss at global step 6" in log        # seen by rank 0 although rank 1 had it
    assert "Step 8," not in log                          # no rank trained on
    assert (out / "predictions.json").is_file()          # predicted with the best checkpoint


@pytest.mark.slow
def test_a_crashed_rank_ends_the_job_with_an_error_instead_of_a_hang(task, tmp_path):
    proc, seconds = _torchrun(task, tmp_path / "crash", "crash@1:3")
    assert proc.returncode != 0
    assert seconds < 60
    assert "injected crash on rank 1" in proc.stderr
