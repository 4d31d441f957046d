"""SIGKILL a training run midway, ``--resume`` it, and get exactly what an uninterrupted run with
the same seed gets: the same best step and score, the same checkpoint, the same predictions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import el_tiny

REPO = Path(__file__).resolve().parent.parent
# dropout stays on (0.1) so the restored torch RNG matters; a long epoch budget so the kill lands
# midway; wait_step large enough that early stopping comes well after the first evaluations.
EXTRA = ("--do_train", "--do_predict", "--num_train_epochs", "40", "--wait_step", "8",
         "--learning_rate", "1e-2", "--max_grad_norm", "1.0", "--device", "cpu")


def _cmd(paths: dict[str, str], out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "edmem.run_qa", *el_tiny.flags(paths, out, *EXTRA, *extra)]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


def _state_step(out: Path) -> int:
    try:
        return torch.load(out / "training_state.pt", map_location="cpu",
                          weights_only=True)["loop"]["global_step"]
    except (FileNotFoundError, RuntimeError, EOFError, KeyError):
        return 0


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    paths = el_tiny.build(tmp_path / "task")
    straight, killed = tmp_path / "straight", tmp_path / "killed"

    stderr_file = tmp_path / "killed.stderr"
    with stderr_file.open("wb") as stderr:   # a file, not a pipe: nobody reads it while it runs
        proc = subprocess.Popen(_cmd(paths, killed), env=_env(), stdout=subprocess.DEVNULL,
                                stderr=stderr)
        deadline = time.time() + 60
        while _state_step(killed) < 8 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    child = stderr_file.read_text(errors="replace")[-4000:]
    assert proc.returncode == -signal.SIGKILL, f"exit {proc.returncode}; child stderr:\n{child}"
    state = torch.load(killed / "training_state.pt", map_location="cpu", weights_only=True)
    assert not state["loop"]["finished"]            # killed midway
    killed_at = state["loop"]["global_step"]

    whole = subprocess.run(_cmd(paths, straight), env=_env(), capture_output=True, text=True)
    assert whole.returncode == 0, f"exit {whole.returncode}; child stderr:\n{whole.stderr[-4000:]}"
    resumed = subprocess.run(_cmd(paths, killed, "--resume", "True"), env=_env(),
                             capture_output=True, text=True)
    assert resumed.returncode == 0, f"exit {resumed.returncode}; child stderr:\n{resumed.stderr[-4000:]}"
    assert f"global step {killed_at}" in resumed.stderr            # "Resumed from ...: ..."

    best_a = json.loads((straight / "best_checkpoint.json").read_text())
    best_b = json.loads((killed / "best_checkpoint.json").read_text())
    assert best_a == best_b
    assert (straight / "predictions.json").read_bytes() == (killed / "predictions.json").read_bytes()
    a = torch.load(straight / "pytorch_model.bin", map_location="cpu", weights_only=True)
    b = torch.load(killed / "pytorch_model.bin", map_location="cpu", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    last = lambda out: [l.split(" - ")[-1] for l in (out / "log.txt").read_text().splitlines()
                        if "Best EM on validation data" in l][-1]
    assert last(straight) == last(killed)
    print(f"\n[resume] killed at global step {killed_at}; best {best_b}; {last(killed).strip()}")
