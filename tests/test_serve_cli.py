"""``edmem serve`` as a command: flags and start-up errors, then the real server in a child process
on a free loopback port with the REAL tiny model, and its web page in a real headless Chromium
(skipped, saying why, when no Chromium is installed: ``apt-get install chromium``)."""

from __future__ import annotations

import json
import socket
import urllib.request

import pytest

pytest.importorskip("fastapi")
from edmem.apps.serve import cli  # noqa: E402
from edmem.apps.serve.browser import ask_in_browser, find_chromium  # noqa: E402
from edmem.apps.serve.process import ServerProcess  # noqa: E402

QUESTION = "what is the capital of france?"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from edmem.testing import build_tiny_model_dir

    return build_tiny_model_dir(tmp_path_factory.mktemp("serve-cli") / "model")


def test_serve_is_an_edmem_command(capsys):
    from edmem.cli import main

    assert main(["--help"]) == 0
    assert "serve" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--model", "--host", "--port", "--max_batch", "--max_wait_ms",
                 "--max_question_chars", "--max_questions", "--max_body_bytes"):
        assert flag in out


def test_a_missing_model_directory_is_one_error_line(tmp_path, capsys):
    assert cli.main(["--model", str(tmp_path / "nowhere"), "--port", "0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edmem serve: error: ") and "nowhere" in err[0]


def test_a_busy_port_is_one_error_line(model_dir, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert cli.main(["--model", str(model_dir), "--port", str(port)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"edmem serve: error: cannot listen on 127.0.0.1:{port}")


def test_impossible_limits_are_refused(model_dir, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--model", str(model_dir), "--max_batch", "0"])
    assert exit_.value.code == 2
    assert "max_batch must be >= 1" in capsys.readouterr().err


@pytest.fixture(scope="module")
def server(model_dir):
    with ServerProcess(model_dir, "--quiet", "--num_threads", "1") as running:
        yield running
    assert running.stop() == 0  # as after Ctrl-C: a clean shutdown


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def test_the_command_serves_over_http(server):
    assert server.url.startswith("http://127.0.0.1:")
    [result] = post_json(server.url + "v1/link", {"questions": [QUESTION], "top_k": 3})["results"]
    assert result["question"] == QUESTION and len(result["top_k"]) == 3
    assert [m["text"] for m in result["mentions"]] == ["france"]
    with urllib.request.urlopen(server.url + "v1/model", timeout=60) as response:
        assert json.load(response)["model"]["num_entities"] > 0


def test_the_web_page_in_a_real_browser(server, tmp_path):
    pytest.importorskip("playwright", reason="the playwright package is not installed (dev extra)")
    if find_chromium() is None:
        pytest.skip("no Chromium installed: 'apt-get install chromium' (Debian) to run the web-page "
                    "test (or set EDMEM_CHROMIUM)")
    [expected] = post_json(server.url + "v1/link", {"questions": [QUESTION], "top_k": 4})["results"]
    shot = tmp_path / "page.png"
    view = ask_in_browser(server.url, QUESTION, top_k=4, screenshot=shot)
    assert view.error is None
    answer = expected["answer"]
    assert view.answer == (answer["name"] or f"entity {answer['id']}")
    assert f"entity {answer['id']}" in view.answer_meta
    assert len(view.top_k) == 4
    assert view.top_k[0][0].startswith(answer["name"] or f"entity {answer['id']}")
    assert view.highlighted == ["france"] and view.mention_note == "1 mention found"
    assert shot.stat().st_size > 10_000  # a real rendering, not an empty page
