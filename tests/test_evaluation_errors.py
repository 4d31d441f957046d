"""Every bad input gives exit status 1 (2 for usage) and ONE clear line on stderr, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edmem.cli import main as edmem_main
from edmem.errors import DataError
from edmem.evaluation import cli
from edmem.evaluation.api import evaluate
from edmem.evaluation.entity_linking_eval import main as el_main
from edmem.evaluation.exact_match import main as em_main
from edmem.evaluation.loaders import load_gold

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def ev(fixtures_dir: Path) -> Path:
    return fixtures_dir / "eval"


def _write(path: Path, data: object) -> str:
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return str(path)


def _fails(capsys: pytest.CaptureFixture[str], status: int, code: int, *needles: str) -> str:
    err = capsys.readouterr().err
    assert status == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _el(ev: Path, pred: str | None = None, gold: str | None = None) -> int:
    return el_main(["-pred", pred or str(ev / "el_predictions.json"), "-gold", gold or str(ev / "gold.jsonl")])


def _em(ev: Path, *extra: str, pred: str | None = None, gold: str | None = None) -> int:
    return em_main(["-pred", pred or str(ev / "el_predictions.json"), "-gold", gold or str(ev / "gold.jsonl"),
                    "-entity_vocab", str(ev / "vocab.json"), *extra])


# ---- gold file ---------------------------------------------------------------------------------

def test_gold_missing(ev: Path, capsys) -> None:
    _fails(capsys, _el(ev, gold=str(ev / "nope.jsonl")), 1, "nope.jsonl", "file not found")


def test_gold_bad_extension(ev: Path, tmp_path: Path, capsys) -> None:
    gold = _write(tmp_path / "gold.txt", "{}")
    _fails(capsys, _el(ev, gold=gold), 1, "gold.txt", "expected .jsonl or .json")


def test_gold_invalid_json_line(ev: Path, tmp_path: Path, capsys) -> None:
    gold = _write(tmp_path / "g.jsonl", '{"id": "q1", "answer": []}\n{"id": \n')
    _fails(capsys, _el(ev, gold=gold), 1, "g.jsonl", "line 2", "invalid JSON")


def test_gold_duplicate_id(ev: Path, tmp_path: Path, capsys) -> None:
    gold = _write(tmp_path / "g.jsonl", '{"id": "q1", "answer": []}\n{"id": "q1", "answer": []}\n')
    _fails(capsys, _el(ev, gold=gold), 1, "line 2", "duplicate question id 'q1'")


@pytest.mark.parametrize("line, needle", [
    ({"id": 1, "answer": []}, "field 'id'"),
    ({"id": "q1", "answer": [1]}, "field 'answer'"),
    ({"id": "q1", "answer": [], "answer_entity": [["101", "Lake"]]}, "[int entity_id, str name]"),
    ({"id": "q1", "answer": [], "answer_entity": []}, "non-empty list"),
    ({"id": "q1", "answer": [], "answer_entity": [[True, "x"]]}, "field 'answer_entity'"),
])
def test_gold_bad_fields(ev: Path, tmp_path: Path, capsys, line: dict, needle: str) -> None:
    gold = _write(tmp_path / "g.jsonl", json.dumps(line) + "\n")
    _fails(capsys, _el(ev, gold=gold), 1, "line 1", needle)


def test_gold_json_must_be_a_list(ev: Path, tmp_path: Path, capsys) -> None:
    gold = _write(tmp_path / "g.json", {"q1": {}})
    _fails(capsys, _el(ev, gold=gold), 1, "must hold a list")


def test_gold_json_item_error_names_the_item(ev: Path, tmp_path: Path, capsys) -> None:
    gold = _write(tmp_path / "g.json", [{"id": "q1"}, "oops"])
    _fails(capsys, _el(ev, gold=gold), 1, "item 1", "expected a JSON object")


def test_exact_match_needs_answers(ev: Path, tmp_path: Path, capsys) -> None:
    gold = _write(tmp_path / "g.jsonl", '{"id": "a", "answer": ["x"]}\n{"id": "b"}\n')
    pred = _write(tmp_path / "p.json", {"a": "x", "b": "y"})
    _fails(capsys, _em(ev, pred=pred, gold=gold), 1, "line 2", "field 'answer'", "'b'")


def test_non_utf8_file(ev: Path, tmp_path: Path, capsys) -> None:
    pred = tmp_path / "p.json"
    pred.write_bytes(b'{"q1": "caf\xe9"}')
    _fails(capsys, _el(ev, pred=str(pred)), 1, "not UTF-8")


# ---- predictions ----------------------------------------------------------------------------------

def test_predictions_must_be_an_object(ev: Path, tmp_path: Path, capsys) -> None:
    pred = _write(tmp_path / "p.json", [["x", [1]]])
    _fails(capsys, _el(ev, pred=pred), 1, "p.json", "JSON object")


def test_missing_and_extra_ids_are_named(ev: Path, tmp_path: Path, capsys) -> None:
    preds = json.loads((ev / "el_predictions.json").read_text(encoding="utf-8"))
    del preds["q2"], preds["q6"]
    preds["zz"] = ["x", [1]]
    pred = _write(tmp_path / "p.json", preds)
    line = _fails(capsys, _el(ev, pred=pred), 1, "2 gold question(s) without a prediction ('q2', 'q6')",
                  "1 prediction(s) for ids not in", "('zz')")
    assert line.startswith("python -m edmem.evaluation.entity_linking_eval: error: ")


def test_same_size_but_different_ids(ev: Path, tmp_path: Path, capsys) -> None:
    """The original's size assert passes here and then it crashes with KeyError; we name ids."""
    preds = json.loads((ev / "el_predictions.json").read_text(encoding="utf-8"))
    preds["other"] = preds.pop("q7")
    _fails(capsys, _em(ev, pred=_write(tmp_path / "p.json", preds)), 1, "'q7'", "'other'")


def test_many_missing_ids_are_abbreviated(tmp_path: Path) -> None:
    gold = load_gold(_write(tmp_path / "g.jsonl", "".join(
        json.dumps({"id": str(i), "answer": []}) + "\n" for i in range(20))))
    with pytest.raises(DataError, match=r"20 gold question\(s\) without a prediction \('0', '1', '2', '3', '4', \.\.\.\)"):
        evaluate({}, gold)


def test_string_predictions_refused_by_entity_linking(ev: Path, capsys) -> None:
    _fails(capsys, _el(ev, pred=str(ev / "gen_predictions.json")), 1, "question 'q7'", "string prediction",
           "[entity_name, [entity ids, best first]]")


@pytest.mark.parametrize("value, needle", [
    (["Lake Verno", 101], "expected [entity_name"),
    (["Lake Verno"], "expected [entity_name"),
    ([101, [101]], "expected [entity_name"),
    (["Lake Verno", []], "list of entity ids is empty"),
    (["Lake Verno", ["101"]], "entity ids must be integers, got '101'"),
    (["Lake Verno", [1.5]], "must be integers"),
    ({"output": "Lake Verno"}, "expected [entity_name"),
])
def test_entity_linking_shape_errors(ev: Path, tmp_path: Path, capsys, value: object, needle: str) -> None:
    preds = json.loads((ev / "el_predictions.json").read_text(encoding="utf-8"))
    preds["q3"] = value
    _fails(capsys, _el(ev, pred=_write(tmp_path / "p.json", preds)), 1, "question 'q3'", needle)


@pytest.mark.parametrize("value, needle", [
    (42, "expected a string"),
    ({"text": "x"}, "needs an 'output' field"),
    ([], "must start with the entity name"),
    ([7, [1]], "must start with the entity name"),
    (None, "got NoneType"),
])
def test_exact_match_shape_errors(ev: Path, tmp_path: Path, capsys, value: object, needle: str) -> None:
    preds = json.loads((ev / "gen_predictions.json").read_text(encoding="utf-8"))
    preds["q4"] = value
    _fails(capsys, _em(ev, pred=_write(tmp_path / "p.json", preds)), 1, "question 'q4'", needle)


def test_mixed_shapes_refused_by_all(ev: Path, tmp_path: Path, capsys) -> None:
    preds = json.loads((ev / "el_predictions.json").read_text(encoding="utf-8"))
    preds["q4"] = "forty-two"
    pred = _write(tmp_path / "p.json", preds)
    _fails(capsys, cli.main(["all", "-pred", pred, "-gold", str(ev / "gold.jsonl")]), 1,
           "mixed prediction shapes", "'q4'", "p.json")


# ---- answer links, vocabulary, output --------------------------------------------------------------

def test_ans_link_missing_ids(ev: Path, tmp_path: Path, capsys) -> None:
    links = json.loads((ev / "sling.json").read_text(encoding="utf-8"))
    del links["q5"]
    link_path = _write(tmp_path / "s.json", links)
    _fails(capsys, _em(ev, "-ans_link", link_path), 1, "s.json", "1 question(s) have no entry ('q5')")


def test_ans_link_bad_value(ev: Path, tmp_path: Path, capsys) -> None:
    links = json.loads((ev / "sling.json").read_text(encoding="utf-8"))
    links["q4"] = "nope"
    _fails(capsys, _em(ev, "-ans_link", _write(tmp_path / "s.json", links)), 1, "question 'q4'",
           "expected null or an object")


def test_ans_link_not_an_object(ev: Path, tmp_path: Path, capsys) -> None:
    _fails(capsys, _em(ev, "-ans_link", _write(tmp_path / "s.json", [1])), 1, "JSON object")


@pytest.mark.parametrize("vocab, needle", [({"a": 1}, "JSON list"), (["a", 3], "entry 1 is not a string")])
def test_bad_entity_vocab(ev: Path, tmp_path: Path, capsys, vocab: object, needle: str) -> None:
    path = _write(tmp_path / "v.json", vocab)
    status = em_main(["-pred", str(ev / "el_predictions.json"), "-gold", str(ev / "gold.jsonl"),
                      "-entity_vocab", path])
    _fails(capsys, status, 1, "v.json", needle)


def test_json_output_to_missing_directory(ev: Path, tmp_path: Path, capsys) -> None:
    status = el_main(["-pred", str(ev / "el_predictions.json"), "-gold", str(ev / "gold.jsonl"),
                      "--json", str(tmp_path / "no" / "such" / "dir.json")])
    _fails(capsys, status, 1, "dir.json", "No such file or directory")


# ---- usage -----------------------------------------------------------------------------------------

def test_usage_errors_exit_2(ev: Path, capsys) -> None:
    _fails(capsys, el_main(["-gold", str(ev / "gold.jsonl")]), 2, "-pred", "see --help")
    _fails(capsys, em_main(["-pred", "p", "-gold", "g"]), 2, "-entity_vocab")   # required, like the original
    _fails(capsys, cli.main(["nonsense"]), 2, "unknown metric 'nonsense'")
    _fails(capsys, cli.main(["all", "-pred", "p", "-gold", "g", "--ks", "x"]), 2, "--ks")


def test_help_returns_0(capsys) -> None:
    assert cli.main(["--help"]) == 0 and "edmem evaluate" in capsys.readouterr().out
    assert cli.main(["all", "--help"]) == 0 and "--json" in capsys.readouterr().out
    assert em_main(["-h"]) == 0 and "-ans_link" in capsys.readouterr().out


def test_edmem_dispatcher_reaches_evaluate(ev: Path, capsys) -> None:
    assert edmem_main(["evaluate", "entity_linking", "-pred", str(ev / "el_predictions.json"),
                       "-gold", str(ev / "gold.jsonl")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "Linkable EM:  40.0"
    assert edmem_main(["evaluate", "entity_linking_eval", "-pred", str(ev / "gen_predictions.json"),
                       "-gold", str(ev / "gold.jsonl")]) == 1


def test_entity_linking_api_value_check() -> None:
    with pytest.raises(ValueError, match="entity_linking must be"):
        evaluate({}, [], entity_linking="sometimes")


# ---- no torch --------------------------------------------------------------------------------------

def test_scoring_imports_neither_torch_nor_transformers() -> None:
    code = ("import edmem.evaluation.exact_match, edmem.evaluation.entity_linking_eval, "
            "edmem.evaluation.cli, edmem.evaluation.api; import sys; "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_python_dash_m_entry_point(ev: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "edmem.evaluation.entity_linking_eval", "-pred",
                           str(ev / "gen_predictions.json"), "-gold", str(ev / "gold.jsonl")],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "string prediction" in done.stderr
    assert "torch" not in done.stderr
