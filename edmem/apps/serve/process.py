"""Run ``edmem serve`` as a child process on a free loopback port, for the browser test,
``benchmarks/bench_serve.py`` and the screenshot script: started with ``--port 0``, it prints the
port it got; :class:`ServerProcess` waits for ``/v1/health`` and stops the child on exit."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

_LISTENING = re.compile(r"listening on (http://\S+?/) ")


class ServerProcess:
    """``with ServerProcess(model_dir) as server: server.url`` -> ``"http://127.0.0.1:PORT/"``."""

    def __init__(self, model_dir: str | Path, *args: str, start_timeout: float = 120.0,
                 env: dict[str, str] | None = None):
        self.command = [sys.executable, "-m", "edmem", "serve", "--model", str(model_dir),
                        "--host", "127.0.0.1", "--port", "0", *args]
        self.start_timeout = start_timeout
        self.env = env
        self.url: str | None = None
        self.output: list[str] = []  # everything the child printed (for error messages)
        self._process: subprocess.Popen | None = None
        self._found = threading.Event()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def __enter__(self) -> "ServerProcess":
        self._process = subprocess.Popen(self.command, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True, env=self.env)
        threading.Thread(target=self._drain, daemon=True).start()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _drain(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self.output.append(line)
            match = _LISTENING.search(line)
            if match and self.url is None:
                self.url = match.group(1)
                self._found.set()
        self._found.set()  # the child ended

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        self._found.wait(self.start_timeout)
        if self.url is None:
            raise RuntimeError(f"edmem serve did not start:\n{''.join(self.output)[-4000:]}")
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "v1/health", timeout=5) as response:
                    if json.load(response).get("status") == "ok":
                        return
            except OSError:
                if self._process is not None and self._process.poll() is not None:
                    break
            time.sleep(0.1)
        raise RuntimeError(f"edmem serve is not healthy:\n{''.join(self.output)[-4000:]}")

    def stop(self, timeout: float = 20.0) -> int | None:
        """Stop the child as Ctrl-C does (uvicorn finishes open requests; exit status 0), kill it
        if it hangs."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode
