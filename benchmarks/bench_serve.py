"""``edmem serve`` under load on loopback, against the same model used in-process (docs/server.md).

Starts ``edmem serve`` as a child process on 127.0.0.1 (a free port), sends ``--requests`` requests
of one question each from ``--clients`` concurrent clients (keep-alive HTTP/1.1 connections, one
thread each), stops after ``--requests`` or ``--max_seconds``, whichever comes first, and stops
the server. Then compares with the throughput of ``EntityLinker.batch`` in this process on the
same questions (batch size ``--max_batch``, the server's largest model call), measured just before
and just after the load and averaged, so a change in the machine's load affects both sides. CPU
time per question is reported for both sides (the server process's own, from /proc), and for
``linker.batch`` at a batch of ``--clients`` questions: the most the server can merge when each
client sends one question.

Model: ``--model DIR``, or ``runs/demo/model`` when ``make demo`` has written it, else the tiny
model of ``edmem.testing.build_tiny_model_dir`` (built in a temporary folder). Questions:
``--questions FILE`` (one per line, or JSONL objects with a "question" field: the demo's
``el_geo-dev.jsonl``), else the tiny model's own questions. The last line printed is one JSON
object; the exit status is 1 when any request failed.

    .venv/bin/python benchmarks/bench_serve.py [--model DIR] [--questions FILE] [--clients 16]
        [--requests 800] [--max_seconds 60] [--threads 1] [--max_batch 32] [--max_wait_ms 5]
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
DEMO_MODEL = REPO / "runs" / "demo" / "model"
GOAL_RATIO = 0.7


def load_questions(path: Path | None) -> list[str]:
    if path is None:
        from edmem.testing import tiny_questions

        return [question for question, *_ in tiny_questions()]
    from edmem.inference.textio import iter_json_objects, iter_lines

    if path.suffix == ".jsonl":
        return [obj["question"] for _, obj in iter_json_objects(path) if obj.get("question")]
    return [text for _, text in iter_lines(path) if text.strip()]


def in_process(linker, questions: list[str], batch_size: int, max_seconds: float
               ) -> tuple[float, float]:
    """(questions per second, CPU ms per question) of ``linker.batch`` over ``questions``
    (bounded by ``max_seconds``)."""
    done, started, cpu = 0, time.perf_counter(), time.process_time()
    for first in range(0, len(questions), batch_size * 4):
        done += len(linker.batch(questions[first:first + batch_size * 4], batch_size=batch_size))
        if time.perf_counter() - started > max_seconds:
            break
    return done / (time.perf_counter() - started), 1000 * (time.process_time() - cpu) / done


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Load:
    """``clients`` threads posting one question per request until ``requests`` or the deadline."""

    def __init__(self, url: str, questions: list[str], requests: int, max_seconds: float):
        self.address = urlsplit(url)
        self.questions = itertools.cycle(questions)
        self.remaining = requests
        self.deadline = time.monotonic() + max_seconds
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.errors: list[str] = []

    def _next(self) -> str | None:
        with self.lock:
            if self.remaining <= 0 or time.monotonic() > self.deadline:
                return None
            self.remaining -= 1
            return next(self.questions)

    def client(self) -> None:
        connection = http.client.HTTPConnection(self.address.hostname, self.address.port, timeout=60)
        try:
            while (question := self._next()) is not None:
                body = json.dumps({"questions": [question]})
                started = time.perf_counter()
                try:
                    connection.request("POST", "/v1/link", body=body,
                                       headers={"Content-Type": "application/json"})
                    response = connection.getresponse()
                    payload = response.read()
                    elapsed = time.perf_counter() - started
                    results = json.loads(payload).get("results") if response.status == 200 else None
                    if not results or results[0].get("question") != question:
                        raise RuntimeError(f"HTTP {response.status}: {payload[:200]!r}")
                    with self.lock:
                        self.latencies.append(elapsed)
                except Exception as exc:  # counted, reported; the load goes on
                    with self.lock:
                        self.errors.append(f"{type(exc).__name__}: {exc}")
                    connection.close()
                    connection = http.client.HTTPConnection(self.address.hostname,
                                                            self.address.port, timeout=60)
        finally:
            connection.close()

    def run(self, clients: int) -> float:
        threads = [threading.Thread(target=self.client) for _ in range(clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def get_json(url: str, path: str) -> dict:
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        connection.request("GET", path)
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model directory (default: runs/demo/model, "
                                                   "else the tiny test model)")
    parser.add_argument("--questions", type=Path, help="text (one per line) or JSONL with 'question'")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=800, help="requests in all (one question each)")
    parser.add_argument("--max_seconds", type=float, default=60.0, help="stop the load after this")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, server and in-process")
    parser.add_argument("--max_batch", type=int, default=32)
    parser.add_argument("--max_wait_ms", type=float, default=5.0)
    args = parser.parse_args(argv)

    import torch

    from edmem.apps.serve.process import ServerProcess
    from edmem.inference.linker import EntityLinker

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model, kind = args.model, "given"
        if model is None and DEMO_MODEL.is_dir():
            model, kind = DEMO_MODEL, "demo"
        if model is None:
            from edmem.testing import build_tiny_model_dir

            model, kind = build_tiny_model_dir(Path(tmp) / "tiny"), "tiny (edmem.testing)"
        questions = load_questions(args.questions)
        if not questions:
            print("bench_serve: error: no questions", file=sys.stderr)
            return 1
        sample = list(itertools.islice(itertools.cycle(questions), args.requests))

        linker = EntityLinker.from_pretrained(model, device="cpu")
        linker.batch(sample[:args.max_batch], batch_size=args.max_batch)  # warm-up
        before, cpu_before = in_process(linker, sample, args.max_batch, args.max_seconds)

        with ServerProcess(model, "--quiet", "--num_threads", str(args.threads), "--max_batch",
                           str(args.max_batch), "--max_wait_ms", str(args.max_wait_ms)) as server:
            Load(server.url, questions, args.clients * 2, 30).run(args.clients)  # warm-up
            first = get_json(server.url, "/v1/health")["stats"]
            server_cpu = process_cpu_s(server.pid)
            load = Load(server.url, questions, args.requests, args.max_seconds)
            seconds = load.run(args.clients)
            if server_cpu is not None:
                server_cpu = process_cpu_s(server.pid) - server_cpu
            last = get_json(server.url, "/v1/health")["stats"]

        after, cpu_after = in_process(linker, sample, args.max_batch, args.max_seconds)
        # The largest batch the server can form from one-question requests is one per client.
        _, cpu_at_clients = in_process(linker, sample, args.clients, args.max_seconds)
    in_process_q_per_s = (before + after) / 2
    in_process_cpu_ms = (cpu_before + cpu_after) / 2
    served = len(load.latencies)
    server_q_per_s = served / seconds
    result = {
        "model": str(args.model or model), "model_kind": kind, "questions": len(questions),
        "clients": args.clients, "requests": served + len(load.errors), "errors": len(load.errors),
        "seconds": round(seconds, 2), "stopped_by": "count" if load.remaining <= 0 else "time",
        "server_q_per_s": round(server_q_per_s, 1),
        "latency_ms_p50": round(1000 * percentile(load.latencies, 50), 1) if served else None,
        "latency_ms_p95": round(1000 * percentile(load.latencies, 95), 1) if served else None,
        "in_process_q_per_s": round(in_process_q_per_s, 1),
        "in_process_q_per_s_before_after": [round(before, 1), round(after, 1)],
        "ratio_server_to_in_process": round(server_q_per_s / in_process_q_per_s, 3),
        "goal_ratio": GOAL_RATIO,
        # CPU per question: what each side costs, whatever else runs on the machine.
        "server_cpu_ms_per_question": round(1000 * server_cpu / served, 3) if server_cpu and served else None,
        "in_process_cpu_ms_per_question": round(in_process_cpu_ms, 3),
        "in_process_cpu_ms_per_question_at_batch_of_clients": round(cpu_at_clients, 3),
        "cpu_ratio_in_process_to_server": (round(in_process_cpu_ms / (1000 * server_cpu / served), 3)
                                           if server_cpu and served else None),
        "load_average_1min": round(os.getloadavg()[0], 1),
        "model_calls": last["model_calls"] - first["model_calls"],
        "mean_questions_per_model_call": round((last["questions"] - first["questions"])
                                               / max(1, last["model_calls"] - first["model_calls"]), 2),
        "threads": args.threads, "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms,
        "first_errors": load.errors[:3],
    }
    print(json.dumps(result))
    return 1 if load.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
