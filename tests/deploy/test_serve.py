"""The HTTP service through the ASGI interface: shipped digits generators and a tiny exported SR model."""

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from genforge.data.io import decode_image, encode_image
from genforge.deploy.serve import Limits, create_app, load_models
from genforge.errors import UserError
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def models(tiny_models):
    """The shipped digits generators and tiny random-weight SR and translation folders (what is tested is
    the service, not a training)."""
    tiny = [str(tiny_models[name]) for name in ("tiny-sr-x2", "tiny-cyclegan", "tiny-spade")]
    return load_models(["digits-wgangp", "digits-cgan", *tiny], device="cpu")


@pytest.fixture(scope="module")
def client(models):
    with TestClient(create_app(models, Limits(max_upload_bytes=50_000, max_pixels=64 * 64))) as c:
        yield c


def png(array) -> bytes:
    return encode_image(np.asarray(array))


def upload(client, data: bytes, model="tiny-sr-x2", filename="x.png"):
    return client.post("/v1/upscale", data={"model": model}, files={"image": (filename, data, "image/png")})


def test_health_models_and_page(client):
    assert client.get("/healthz").json()["status"] == "ok"
    listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert listed["digits-cgan"]["task"] == "generation" and listed["digits-cgan"]["num_classes"] == 10
    assert listed["digits-wgangp"]["num_classes"] == 0 and listed["digits-wgangp"]["latent_dim"] > 0
    assert listed["tiny-sr-x2"] == {**listed["tiny-sr-x2"], "task": "super-resolution", "scale": 2}
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/v1/models" in page.text and "image-rendering: pixelated" in page.text
    assert client.get("/docs").status_code == 200 and "/v1/upscale" in client.get("/openapi.json").text


def test_generate_grid_size_and_determinism(client):
    r = client.post("/v1/generate", json={"model": "digits-cgan", "n": 10, "seed": 3, "label": 7, "nrow": 5})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    grid = decode_image(r.content)
    assert grid.shape == (2 * 18 + 2, 5 * 18 + 2, 3) and grid.dtype == np.uint8  # 16x16 digits, padding 2
    again = client.post("/v1/generate", json={"model": "digits-cgan", "n": 10, "seed": 3, "label": 7, "nrow": 5})
    assert again.content == r.content


@pytest.mark.parametrize("body, status", [
    ({"model": "digits-cgan", "n": 4, "label": 10}, 422),
    ({"model": "digits-wgangp", "n": 4, "label": 1}, 422),   # not conditional
    ({"model": "digits-cgan", "n": 0}, 422),
    ({"model": "digits-cgan", "n": 257}, 422),
    ({"model": "nope", "n": 4}, 404),
    ({"model": "tiny-sr-x2", "n": 4}, 400),                  # wrong task
    ({"model": "../etc/passwd", "n": 4}, 404),               # names only, never paths
])
def test_generate_errors_are_json(client, body, status):
    r = client.post("/v1/generate", json=body)
    assert r.status_code == status and r.json()["error"]


def test_bad_json_is_422(client):
    r = client.post("/v1/generate", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "error" in r.json()


def test_upscale_8_bit_rgba_and_16_bit(client):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (12, 20, 4), dtype=np.uint8)
    r = upload(client, png(rgba))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    out = decode_image(r.content)
    assert out.shape == (24, 40, 4) and out.dtype == np.uint8
    deep = rng.integers(0, 65536, (10, 8, 3), dtype=np.uint16)
    out = decode_image(upload(client, png(deep)).content)
    assert out.shape == (20, 16, 3) and out.dtype == np.uint16


def test_upscale_errors(client):
    good = png(np.zeros((8, 8, 3), np.uint8))
    assert upload(client, b"hello, not an image").status_code == 400
    noisy = png(np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    r = upload(client, noisy[: len(noisy) * 2 // 3])  # cut inside the pixel data
    assert r.status_code == 400 and "truncated" in r.json()["error"]
    assert upload(client, png(np.zeros((65, 64, 3), np.uint8))).status_code == 413   # pixels, from the header
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 4), dtype=np.uint8)
    for side in (120, 200):  # over the file limit; over the whole-body limit (refused from Content-Length)
        big = png(noise[:side, :side])
        assert len(big) > 50_000
        r = upload(client, big)
        assert r.status_code == 413 and "bytes" in r.json()["error"]
    assert upload(client, good, model="nope").status_code == 404
    assert upload(client, good, model="digits-cgan").status_code == 400
    assert client.post("/v1/upscale", data={"model": "tiny-sr-x2"}).status_code == 422  # no file
    assert client.get("/healthz").status_code == 200  # still serving


def translate(client, data: bytes, model="tiny-cyclegan", **form):
    files = {"image": ("x.png", data, "image/png")}
    if "style" in form:
        files["style"] = ("s.png", form.pop("style"), "image/png")
    return client.post("/v1/translate", data={"model": model, **form}, files=files)


def test_translate(client):
    img = png((np.random.default_rng(0).random((20, 28, 3)) * 255).astype(np.uint8))
    ab, ba = translate(client, img), translate(client, img, direction="b2a")
    assert ab.status_code == ba.status_code == 200 and ab.headers["content-type"] == "image/png"
    assert decode_image(ab.content).shape == (20, 28, 3) and ab.content != ba.content
    r = translate(client, img, direction="sideways")
    assert r.status_code == 400 and "a2b or b2a" in r.json()["error"]
    ids = np.zeros((24, 32), np.uint8)
    ids[:, 16:] = 5
    out = translate(client, png(ids), model="tiny-spade")
    assert out.status_code == 200 and decode_image(out.content).shape == (24, 32, 3)
    styled = translate(client, png(ids), model="tiny-spade",
                       style=png((np.random.default_rng(1).random((40, 40, 3)) * 255).astype(np.uint8)))
    assert styled.status_code == 200 and styled.content != out.content
    ids[0, 0] = 9
    r = translate(client, png(ids), model="tiny-spade")
    assert r.status_code == 400 and "class id 9" in r.json()["error"]
    r = translate(client, img, model="tiny-spade")  # a colour photo is not a label map
    assert r.status_code == 400 and "label map" in r.json()["error"]
    assert translate(client, img, model="tiny-sr-x2").status_code == 400  # wrong task
    assert translate(client, b"not an image").status_code == 400
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert models["tiny-cyclegan"]["directions"] == ["a2b", "b2a"] and models["tiny-spade"]["style"] is True


def test_full_queue_is_503_with_retry_after_and_timeout_is_504(models, monkeypatch):
    gen = models["digits-wgangp"]
    real_generate = gen.generate
    started, release = threading.Event(), threading.Event()

    def slow_generate(n, label=None, seed=0):  # blocks the only worker until the test lets it go
        started.set()
        release.wait(10)
        return real_generate(n, label=label, seed=seed)

    monkeypatch.setattr(gen, "generate", slow_generate)
    app = create_app(models, Limits(concurrency=1, queue=0, timeout=0.5))

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            first = asyncio.create_task(c.post("/v1/generate", json={"model": "digits-wgangp", "n": 2}))
            await asyncio.to_thread(started.wait, 5)
            busy = await c.post("/v1/generate", json={"model": "digits-cgan", "n": 2})
            timed_out = await first
            still_busy = await c.post("/v1/generate", json={"model": "digits-cgan", "n": 2})
            release.set()
            for _ in range(100):  # the slot frees when the blocked call really finishes
                if app.state.pool.pending == 0:
                    break
                await asyncio.sleep(0.05)
            after = await c.post("/v1/generate", json={"model": "digits-cgan", "n": 2})
            return busy, timed_out, still_busy, after

    try:
        busy, timed_out, still_busy, after = asyncio.run(scenario())
    finally:
        release.set()
        app.state.pool.shutdown()
    assert busy.status_code == 503 and int(busy.headers["retry-after"]) > 0 and busy.json()["error"]
    assert timed_out.status_code == 504 and "error" in timed_out.json()
    assert still_busy.status_code == 503  # a timed-out call keeps its slot until it really ends
    assert after.status_code == 200


def test_unknown_model_fails_at_start():
    with pytest.raises(UserError, match="no model 'digits-nope'"):
        load_models(["digits-nope"])


def test_streamed_body_over_the_limit_is_413(models):
    app = create_app(models, Limits(max_upload_bytes=1000))

    async def chunks():  # a well-formed multipart file part that never ends
        yield (b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n'
               b"Content-Type: image/png\r\n\r\n")
        for _ in range(100):
            yield b"x" * 2000

    async def scenario():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            return await c.post("/v1/upscale", content=chunks(),
                                headers={"content-type": "multipart/form-data; boundary=b"})

    r = asyncio.run(scenario())  # chunked: no Content-Length, counted while it streams
    assert r.status_code == 413 and "bytes" in r.json()["error"]
    app.state.pool.shutdown()


def test_cli_serve(tmp_path):
    bad = run_cli("serve", "--models", "digits-wgangp,digits-nope", timeout=120)
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "digits-nope" in bad.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "genforge", "serve", "--models", "digits-vae", "--port",
                             str(port), "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()
                time.sleep(0.3)
        assert health.json()["models"] == ["digits-vae"]
        r = httpx.post(f"http://127.0.0.1:{port}/v1/generate", json={"model": "digits-vae", "n": 4}, timeout=30)
        assert r.status_code == 200 and decode_image(r.content).shape == (20, 74, 3)
    finally:
        proc.terminate()
        proc.wait(20)
