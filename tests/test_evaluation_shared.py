"""Parity with the original scripts on ../shared (skipped when it is absent):

* the published WQ predictions score exactly the authors' figures;
* the printed output of the original scripts in parity/edmem-tiny/e2e_run/*/eval.txt is
  reproduced line for line (numpy's RuntimeWarning lines, which went to stderr, excepted).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edmem.evaluation import cli
from edmem.evaluation.entity_linking_eval import main as el_main
from edmem.evaluation.exact_match import main as em_main

pytestmark = pytest.mark.shared

PUBLISHED = {  # EM / linkable ("entity answers") / non-linkable, from the data README
    "static": ("41.09", "45.87", "3.49"),
    "dynamic": ("39.71", "44.32", "3.49"),
    "freeform": ("36.56", "40.21", "7.86"),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_wq_scores(wq_dir: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    pred = wq_dir / "published" / "wq" / f"{name}_predictions.json"
    status = em_main(["-pred", str(pred), "-gold", str(wq_dir / "openqa/wq/edmem_wq-test.jsonl"),
                      "-ans_link", str(wq_dir / "openqa/wq/entity_linking/sling_invocab-test.json"),
                      "-entity_vocab", str(wq_dir / "wikipedia/entity_wq.json")])
    out = capsys.readouterr().out.splitlines()
    assert status == 0
    em, linkable, non_linkable = PUBLISHED[name]
    assert out[3] == f"Exact Match:  {em}"
    assert f"Linkable QA Exact Match:  {linkable}" in out
    assert f"Non-linkable QA Exact Match:  {non_linkable}" in out
    assert "Linkable questions: 1803" in out and "Non-linkable questions: 229" in out


def test_published_predictions_are_answer_strings(wq_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """entity_linking_eval refuses them clearly (the original would index into the string and
    report 0.0); `all` scores EM and notes that the id metrics do not apply."""
    pred = str(wq_dir / "published/wq/static_predictions.json")
    gold = str(wq_dir / "openqa/wq/entity_linking/el_wq-test.jsonl")
    assert el_main(["-pred", pred, "-gold", gold]) == 1
    assert "string prediction" in capsys.readouterr().err
    assert cli.main(["all", "-pred", pred, "-gold", gold]) == 0
    out = capsys.readouterr().out
    assert "Exact Match:  41.09" in out and "entity-linking metrics skipped" in out


def _expected_sections(eval_txt: Path) -> dict[str, list[str]]:
    """eval.txt split into its '==== script' sections, stderr warning lines removed."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in eval_txt.read_text(encoding="utf-8").splitlines():
        if line.startswith("==== "):
            current = line[5:].strip()
            sections[current] = []
        elif "RuntimeWarning" in line or line.startswith("  "):
            continue  # numpy's warning and its source line (stderr in the original run)
        else:
            sections[current].append(line)
    return sections


def _shown_paths(lines: list[str]) -> tuple[str, str]:
    gold = re.fullmatch(r"Load \d+ ground-truth data from (.+)\.", lines[1]).group(1)
    pred = re.fullmatch(r"Load \d+ predictions from (.+)\.", lines[2]).group(1)
    return gold, pred


# run -> (gold file the run scored against, inside parity/edmem-tiny, with or without -ans_link)
E2E_RUNS = {
    "main": ("data/el_wq-test.jsonl", True),
    "lr1e-3": ("data/el_wq-test.jsonl", True),
    # dev = test = the 20 training lines in that run (see the parity README), no -ans_link
    "overfit": ("data/el_wq-train.jsonl", False),
}


@pytest.mark.parametrize("run", sorted(E2E_RUNS))
def test_e2e_eval_txt_reproduced(parity_dir: Path, run: str, capsys: pytest.CaptureFixture[str]) -> None:
    gold_rel, with_links = E2E_RUNS[run]
    gold = str(parity_dir / gold_rel)
    pred = str(parity_dir / "e2e_run" / run / "predictions.json")
    expected = _expected_sections(parity_dir / "e2e_run" / run / "eval.txt")
    shown_gold, shown_pred = _shown_paths(expected["exact_match.py"])

    def ours(status: int) -> list[str]:
        assert status == 0
        out = capsys.readouterr().out.replace(gold, shown_gold).replace(pred, shown_pred)
        return out.splitlines()

    links = ["-ans_link", str(parity_dir / "data/sling_invocab-test.json")] if with_links else []
    assert ours(em_main(["-pred", pred, "-gold", gold, *links, "-entity_vocab",
                         str(parity_dir / "entity_files/entity_tiny.json")])) == expected["exact_match.py"]
    assert ours(el_main(["-pred", pred, "-gold", gold])) == expected["entity_linking_eval.py"]
