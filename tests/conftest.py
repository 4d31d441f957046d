"""Shared fixtures. Tests that read ../shared (reference vectors, WQ data) skip cleanly without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = Path(os.environ.get("EDMEM_SHARED", REPO_ROOT.parent / "shared"))
PARITY = SHARED / "parity" / "edmem-tiny"
WQ = SHARED / "data" / "edmem-wq"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not available (../shared is absent)")
    return path


@pytest.fixture
def parity_dir() -> Path:
    """../shared/parity/edmem-tiny, or skip."""
    return _need(PARITY)


@pytest.fixture
def wq_dir() -> Path:
    """../shared/data/edmem-wq, or skip."""
    return _need(WQ)


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A trained tiny model directory (edmem.testing), built once per test process."""
    import torch

    from edmem.testing import build_tiny_model_dir

    torch.set_num_threads(1)
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny-model") / "model", train_steps=80)
