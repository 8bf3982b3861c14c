"""A real `genforge serve` in a child process, for the tests that talk to it over TCP."""

import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(models: list[str], *options: str, threads: int = 1, start_timeout: float = 90):
    """Yield the base URL of `genforge serve` on 127.0.0.1; the process is always ended afterwards.

    Its output goes to a file (a pipe nobody reads would block the server once it fills), and is
    shown if the server does not come up."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}
    with tempfile.TemporaryFile() as log:
        for attempt in range(3):  # the free port can be taken between choosing and binding it
            port = free_port()
            proc = subprocess.Popen([sys.executable, "-m", "genforge", "serve", "--models", ",".join(models),
                                     "--port", str(port), "--threads", str(threads), *options],
                                    stdout=log, stderr=subprocess.STDOUT, env=env)
            url = f"http://127.0.0.1:{port}"
            try:
                deadline = time.monotonic() + start_timeout
                while proc.poll() is None and time.monotonic() < deadline:
                    try:
                        if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.2)
                if proc.poll() is None and time.monotonic() < deadline:
                    yield url
                    return
                log.seek(0)
                output = log.read().decode(errors="replace")
                if "address already in use" in output.lower() and attempt < 2:
                    continue
                raise AssertionError(f"genforge serve did not start within {start_timeout:g} s:\n{output[-3000:]}")
            finally:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


@pytest.fixture(scope="session")
def live_server():
    """running_server, for tests: `with live_server(["isrnet-x2"], "--queue", "16") as url: ...`"""
    return running_server
