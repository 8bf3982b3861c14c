"""The service's budgets against a real `genforge serve` over TCP: a stalled upload or stalled headers
free their connection within --read-timeout, 16 concurrent clients of small images all get 200 at the
default limits, and a request past --timeout stops its tiled work at the next tile (in process)."""

import asyncio
import socket
import time

import httpx
import numpy as np
import pytest

from genforge.data.io import decode_image, encode_image
from genforge.deploy.loadtest import post_many
from genforge.deploy.serve import Limits, create_app, load_models
from genforge.errors import UserError

READ_TIMEOUT = 1.5


def png(side: int, seed: int = 0) -> bytes:
    return encode_image(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8), ".png")


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """(everything the server sent until it closed the connection, seconds it took); fails after limit."""
    t0, data = time.monotonic(), b""
    sock.settimeout(limit)
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data, time.monotonic() - t0
        data += chunk


def stalled_upload(port: int) -> socket.socket:
    """Headers of a 10 kB multipart upload and a first few bytes of its body, then nothing."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1/upscale HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                 b"Content-Length: 10000\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n")
    return sock


@pytest.mark.timeout(180)
def test_stalled_clients_free_their_connection(live_server, tiny_models):
    with live_server([str(tiny_models["tiny-sr-x2"])], "--read-timeout", str(READ_TIMEOUT)) as url:
        port = int(url.rsplit(":", 1)[1])
        body = stalled_upload(port)
        headers = socket.create_connection(("127.0.0.1", port))
        headers.sendall(b"POST /v1/upscale HTTP/1.1\r\nHost: x\r\nContent-Le")  # headers never end
        idle = socket.create_connection(("127.0.0.1", port))  # sends nothing at all
        answer, seconds = read_until_closed(body, 15)
        assert answer.startswith(b"HTTP/1.1 408") and b"not received within" in answer
        assert READ_TIMEOUT - 0.2 <= seconds <= READ_TIMEOUT + 5
        for sock in (headers, idle):
            answer, _ = read_until_closed(sock, 15)
            assert answer.startswith(b"HTTP/1.1 408")
        # the service is unharmed and keeps answering at full speed
        r = httpx.post(f"{url}/v1/upscale", data={"model": "tiny-sr-x2"}, files={"image": ("x.png", png(16))},
                       timeout=30)
        assert r.status_code == 200 and decode_image(r.content).shape == (32, 32, 3)
        assert httpx.get(f"{url}/healthz", timeout=5).json()["pending"] == 0
        for sock in (body, headers, idle):
            sock.close()


@pytest.mark.timeout(240)
def test_16_clients_at_the_default_limits_all_get_200(live_server, tiny_models):
    files = {"image": ("x.png", png(32), "image/png")}
    with live_server([str(tiny_models["tiny-sr-x2"])], threads=0) as url:  # no limit options: the defaults
        calls = post_many(url, "/v1/upscale", total=64, in_flight=16, data={"model": "tiny-sr-x2"}, files=files,
                          timeout=60)
        results = asyncio.run(asyncio.wait_for(calls, timeout=180))
        assert httpx.get(f"{url}/healthz", timeout=5).json()["pending"] == 0
    statuses = [status for status, _, _ in results]
    assert statuses.count(200) == 64, f"statuses: {sorted(set(statuses))}"


def test_defaults_admit_16_and_limits_are_checked():
    limits = Limits()
    assert limits.concurrency + limits.queue >= 16 and 0 < limits.read_timeout <= 30
    with pytest.raises(UserError, match="read timeout > 0"):
        create_app({"x": object()}, Limits(read_timeout=0))


def test_timed_out_request_stops_its_tiles_and_frees_the_worker(tiny_models, monkeypatch):
    models = load_models([str(tiny_models["tiny-sr-x2"])], device="cpu")
    up = models["tiny-sr-x2"]
    real_run, calls = up._run, []

    def slow_run(x):  # 0.2 s a tile: the 128x128 image in 16-pixel tiles would take 64 x 0.2 s
        calls.append(time.monotonic())
        time.sleep(0.2)
        return real_run(x)

    monkeypatch.setattr(up, "_run", slow_run)
    app = create_app(models, Limits(concurrency=1, queue=0, timeout=0.5, tile=16))

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            r = await c.post("/v1/upscale", data={"model": "tiny-sr-x2"}, files={"image": ("x.png", png(128))})
            answered = time.monotonic()
            for _ in range(100):
                if app.state.pool.pending == 0:
                    break
                await asyncio.sleep(0.05)
            return r, answered, time.monotonic()

    try:
        r, answered, freed = asyncio.run(scenario())
    finally:
        app.state.pool.shutdown()
    assert r.status_code == 504 and "longer than 0.5 s" in r.json()["error"]
    assert freed - answered < 1.0  # the worker stopped at the next tile
    assert 1 <= len(calls) < 10
