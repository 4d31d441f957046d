"""`edmem ask` and `edmem link` on the tiny model directory: output, stdin, resume, bad input."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edmem.apps import ask, link
from edmem.cli import main as edmem_main
from edmem.testing import tiny_questions

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir) -> Path:
    return tiny_model_dir


def one_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [l for l in err.splitlines() if ": error: " in l]
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------------------- ask
def test_ask_prints_a_table(model_dir, capsys):
    assert edmem_main(["ask", "--model", str(model_dir), "what is the capital of france?",
                       "--top_k", "3"]) == 0
    out = capsys.readouterr().out
    assert "question: what is the capital of france?" in out
    assert "mention:  [france] 23-29 -> France" in out
    assert "answer:   Paris (id 1001" in out
    table = [l for l in out.splitlines() if l.startswith("  ")]
    assert table[0].split() == ["rank", "id", "name", "type", "score"] and len(table) == 4


def test_ask_json_from_stdin(model_dir, capsys, monkeypatch):
    stdin = io.TextIOWrapper(io.BytesIO(b"what is the capital of peru?\n\nhello\n"))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert ask.main(["--model", str(model_dir), "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    results = [json.loads(l) for l in lines]
    assert [r["question"] for r in results] == ["what is the capital of peru?", "hello"]
    assert results[0]["answer"]["name"] == "Lima" and results[1]["no_mention"] is True


def test_ask_bad_input_is_one_line(model_dir, capsys, monkeypatch):
    assert ask.main(["--model", str(model_dir), "   "]) == 1
    assert one_error(capsys) == "edmem ask: error: empty question"
    stdin = io.TextIOWrapper(io.BytesIO(b"capital of \xff peru?\n" + b"x" * 1_000_000 + b"\n"))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert ask.main(["--model", str(model_dir), "--json"]) == 1
    err = capsys.readouterr().err
    assert "edmem ask: error: stdin, line 1: not UTF-8 text (byte 0xff at column 12)" in err
    assert "edmem ask: error: stdin, line 2: question is 1000000 characters long; the limit is 1000" in err
    assert "Traceback" not in err
    assert ask.main(["--model", str(model_dir.parent / "nope"), "q?"]) == 1
    assert "model directory not found" in one_error(capsys)


def test_ask_through_a_memory_index_gives_the_exact_answers(model_dir, tmp_path, capsys):
    """--memory_index builds the index once into <model>/memory_index/ and answers as exact does
    (the tiny table has few rows: every IVF list is probed, int8 keeps the order here)."""
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    questions = ["what is the capital of france?", "what is the capital of peru?"]

    def answers(*flags: str) -> list[list[int]]:
        ids = []
        for question in questions:
            assert ask.main(["--model", str(copy), "--json", *flags, question]) == 0
            ids.append([e["id"] for e in json.loads(capsys.readouterr().out)["top_k"]])
        return ids

    exact = answers()
    assert answers("--memory_index", "ivf", "--memory_index_dtype", "fp32") == exact
    assert sorted(p.name for p in (copy / "memory_index").iterdir()) == [
        "ivf-fp32.faiss", "ivf-fp32.json", "table-fp32.safetensors"]
    assert answers("--memory_index", "ivf", "--memory_index_dtype", "fp32") == exact  # reloaded


def test_ask_command_line_as_printed(model_dir):
    """Through the installed entry point, in a fresh process (what the demo prints)."""
    done = subprocess.run([sys.executable, "-m", "edmem", "ask", "--model", str(model_dir),
                           "which city is the capital of japan?"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "answer:   Tokyo" in done.stdout


# ---------------------------------------------------------------------------- link
def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines()]


def test_link_text_file(model_dir, tmp_path, capsys):
    questions = [q for q, *_ in tiny_questions()]
    source = tmp_path / "q.txt"
    source.write_text("\n".join(questions[:5]) + "\n\n" + "\n".join(questions[5:]) + "\n")
    out = tmp_path / "out.jsonl"
    assert link.main(["--model", str(model_dir), "--input", str(source), "--output", str(out),
                      "--batch_size", "4", "--top_k", "2"]) == 0
    rows = read_jsonl(out)
    assert [r["question"] for r in rows] == questions
    assert rows[5]["id"] == "7"              # ids are line numbers; line 6 was blank
    assert all(len(r["top_k"]) == 2 and r["mentions"] for r in rows)
    assert f"{len(questions)} questions linked, 0 already in" in capsys.readouterr().err


def test_link_jsonl_with_own_spans_and_resume(model_dir, tmp_path, capsys):
    source = tmp_path / "q.jsonl"
    lines = [{"id": f"q{n}", "question": q} for n, (q, *_) in enumerate(tiny_questions()[:6])]
    lines[1]["mentions"] = [{"offset": 0, "length": 5}]
    lines[2].update(link_offset=[9], link_length=[7], link_target=["1000"])
    source.write_text("".join(json.dumps(l) + "\n" for l in lines))
    out = tmp_path / "out.jsonl"
    first = [json.dumps({"id": "q0", "question": "kept as it was"}) + "\n",
             '{"id": "q1", "quest']           # a line cut off by a kill
    out.write_text("".join(first))
    assert link.main(["--model", str(model_dir), "--input", str(source), "--output", str(out)]) == 0
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == ["q0", "q1", "q2", "q3", "q4", "q5"]
    assert rows[0] == {"id": "q0", "question": "kept as it was"}      # not redone
    assert [m["start"] for m in rows[1]["mentions"]] == [0]
    assert [m["text"] for m in rows[2]["mentions"]] == ["capital"]
    assert "5 questions linked, 1 already in" in capsys.readouterr().err
    assert link.main(["--model", str(model_dir), "--input", str(source), "--output", str(out)]) == 0
    assert read_jsonl(out) == rows
    assert "0 questions linked, 6 already in" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    (b"what is the capital of peru?\ncapital of \xe9gypt?\n", "q.txt, line 2: not UTF-8 text (byte 0xe9"),
    (b"what is the capital of peru?\n" + b"y" * (1 << 20) + b"\n", "q.txt, line 2: line longer than 65536 bytes"),
    (b"what is the capital of peru?\n" + b"z" * 2000 + b"\n",
     "q.txt, line 2: question is 2000 characters long; the limit is 1000"),
])
def test_link_bad_text_lines_keep_what_was_read_before(model_dir, tmp_path, capsys, content, message):
    source = tmp_path / "q.txt"
    source.write_bytes(content)
    out = tmp_path / "out.jsonl"
    assert link.main(["--model", str(model_dir), "--input", str(source), "--output", str(out)]) == 1
    assert message in one_error(capsys)
    assert [r["id"] for r in read_jsonl(out)] == ["1"]   # line 1 written whole, nothing else


@pytest.mark.parametrize("line, message", [
    ('{"id": 1, "question": ""}', "q.jsonl, line 2, field 'question': empty question"),
    ('{"id": 1, "text": "x"}', "q.jsonl, line 2, field 'question': expected a string"),
    ('{"id": "a", "question": "x?"}', "q.jsonl, line 2, field 'id': id 'a' appears twice"),
    ('{"id": 2, "question": "x?', "q.jsonl, line 2: invalid JSON"),
    ('{"id": 2, "question": "capital?", "mentions": [{"offset": 40, "length": 2}]}',
     "q.jsonl, line 2, field 'question': mention 0: span [40, 42) is outside the question"),
])
def test_link_bad_jsonl_lines(model_dir, tmp_path, capsys, line, message):
    source = tmp_path / "q.jsonl"
    source.write_text('{"id": "a", "question": "what is the capital of peru?"}\n' + line + "\n")
    out = tmp_path / "out.jsonl"
    assert link.main(["--model", str(model_dir), "--input", str(source), "--output", str(out)]) == 1
    assert message in one_error(capsys)


def test_link_refuses_an_output_that_is_not_its_own(model_dir, tmp_path, capsys):
    source = tmp_path / "q.txt"
    source.write_text("what is the capital of peru?\n")
    other = tmp_path / "notes.jsonl"
    other.write_text('{"note": 1}\n')
    assert link.main(["--model", str(model_dir), "--input", str(source), "--output", str(other)]) == 1
    assert "notes.jsonl, line 1: not a result line of edmem link" in one_error(capsys)
    assert other.read_text() == '{"note": 1}\n'
