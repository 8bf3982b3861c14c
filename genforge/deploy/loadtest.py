"""A real `genforge serve` in a child process and many concurrent requests against it: what the
load and browser tests and bench/deploy.py share. Needs httpx (the dev extra)."""

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_process(models: list[str], *options: str, threads: int = 1, start_timeout: float = 90, cwd=None):
    """Yield (base URL, Popen) of `genforge serve` on 127.0.0.1 once /healthz answers; the process
    is always ended afterwards. `threads` is passed as --threads (0: the server's default).

    Its output goes to a file (a pipe nobody reads would block the server once it fills), and is
    shown if the server does not come up."""
    # threads=0: the server's own choice (cores / concurrency per model call)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    with tempfile.TemporaryFile() as log:
        for attempt in range(3):  # the free port can be taken between choosing and binding it
            log.seek(0)
            log.truncate()
            port = free_port()
            proc = subprocess.Popen([sys.executable, "-m", "genforge", "serve", "--models", ",".join(models),
                                     "--port", str(port), "--threads", str(threads), *options],
                                    stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
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
                    yield url, proc
                    return
                log.seek(0)
                output = log.read().decode(errors="replace")
                if "address already in use" in output.lower() and attempt < 2:
                    continue
                raise RuntimeError(f"genforge serve did not start within {start_timeout:g} s:\n{output[-3000:]}")
            finally:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


async def post_many(url: str, path: str, *, total: int, in_flight: int, data=None, files=None, json=None,
                    timeout: float = 120) -> list[tuple[int, float, bytes]]:
    """(status, seconds, body) per request: `in_flight` clients send exactly `total` POSTs between
    them, each client back to back, so the server always sees `in_flight` requests at once."""
    todo = iter(range(total))
    results = []
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        async def worker():
            for _ in todo:  # shared iterator: no client runs ahead of the total
                t0 = time.perf_counter()
                r = await client.post(path, data=data, files=files, json=json)
                results.append((r.status_code, time.perf_counter() - t0, r.content))
        await asyncio.gather(*(worker() for _ in range(in_flight)))
    return results
