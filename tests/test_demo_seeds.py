"""benchmarks/demo_seeds_summary.py: mean ± sd of every hits@1 figure over seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bench_scripts


def _module():
    return bench_scripts.load("demo_seeds_summary")


def _summary(h_all: float, h_fact: float, h_both: float) -> dict:
    return {"test": {"hits@1": h_all}, "baselines": {"most_frequent": {"hits@1": 0.1}},
            "groups": {"test": {"edmem": {"heldout_fact/seen_phrasing": {"hits@1": h_fact},
                                          "heldout_fact/heldout_phrasing": {"hits@1": h_both}}}},
            "margin_hits@1": h_fact - 0.1, "cpu_seconds": {"total": 400.0}, "seconds": {"total": 500.0}}


def test_mean_and_sample_sd_per_figure(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    paths = []
    for i, (a, f, b) in enumerate([(0.5, 0.6, 0.4), (0.7, 0.8, 0.6), (0.6, 0.7, 0.5)]):
        paths.append(tmp_path / f"s{i}.json")
        paths[-1].write_text(json.dumps(_summary(a, f, b)))
    out = tmp_path / "seeds.json"
    assert _module().main(["--json", str(out), *map(str, paths)]) == 0
    figures = json.loads(out.read_text())
    fact = figures["test/edmem/heldout_fact/seen_phrasing"]
    assert fact["mean"] == pytest.approx(0.7) and fact["sd"] == pytest.approx(0.1)
    assert figures["test/most_frequent/all"]["sd"] == 0.0
    assert figures["margin_hits@1 (held-out facts)"]["mean"] == pytest.approx(0.6)
    assert "70.0 ±  10.0" in capsys.readouterr().out


def test_unreadable_summary_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _module().main([str(tmp_path / "missing.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("demo_seeds_summary: error:") and err.count("\n") == 1
