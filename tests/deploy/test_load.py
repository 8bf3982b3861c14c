"""Load on a real `genforge serve`: 200 upscale requests, 16 in flight at a time, over TCP.

The server runs one model call at a time (--concurrency 1) and lets 16 wait (--queue 16), so 16
clients in flight always fit: every request must succeed, none may see a 5xx (a 503 here would mean
the queue admits fewer requests than it says)."""

import asyncio
import time

import httpx
import numpy as np
import pytest

from genforge.data.io import decode_image, encode_image
from genforge.deploy.loadtest import post_many

REQUESTS, IN_FLIGHT = 200, 16


@pytest.mark.timeout(180)
def test_200_upscales_at_concurrency_16(live_server):
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    files = {"image": ("x.png", encode_image(image, ".png"), "image/png")}
    with live_server(["isrnet-x2"], "--concurrency", "1", "--queue", str(IN_FLIGHT)) as url:
        t0 = time.perf_counter()
        calls = post_many(url, "/v1/upscale", total=REQUESTS, in_flight=IN_FLIGHT, data={"model": "isrnet-x2"},
                          files=files, timeout=60)
        results = asyncio.run(asyncio.wait_for(calls, timeout=120))
        seconds = time.perf_counter() - t0
        assert httpx.get(f"{url}/healthz", timeout=5).json()["pending"] == 0  # every slot was given back
    statuses = [status for status, _, _ in results]
    assert len(results) == REQUESTS
    assert not [s for s in statuses if s >= 500], f"5xx answers: {sorted(set(statuses))}"
    assert statuses.count(200) == REQUESTS, f"statuses: {sorted(set(statuses))}"
    shapes = {decode_image(body).shape for _, _, body in results}
    assert shapes == {(64, 64, 3)}
    latencies = sorted(s for _, s, _ in results)
    print(f"\n{REQUESTS} requests in {seconds:.1f} s ({REQUESTS / seconds:.1f}/s), "
          f"p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")
