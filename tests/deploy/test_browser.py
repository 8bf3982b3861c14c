"""The web page in a real headless Chromium against a real `genforge serve`: upscale an uploaded
PNG and generate a grid, as a user would.

Uses the system's Chromium (Debian package `chromium`, installed by `make test` when missing; or
GENFORGE_CHROMIUM=/path/to/chromium) through Playwright's Python API. Playwright never downloads a
browser here; without Chromium or Playwright the test is skipped and says why."""

import os
import shutil

import numpy as np
import pytest

from genforge.data.io import encode_image

TIMEOUT_MS = 60_000  # any single wait in the page; generous for a loaded 2-core machine


def chromium_path() -> str | None:
    explicit = os.environ.get("GENFORGE_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (pip install -e '.[dev]')")
    path = chromium_path()
    if path is None:
        where = (f"GENFORGE_CHROMIUM={os.environ['GENFORGE_CHROMIUM']} is not an executable"
                 if os.environ.get("GENFORGE_CHROMIUM") else "no chromium on PATH")
        pytest.skip(f"{where}: `make test` installs Debian's chromium with apt-get where it can; "
                    "or set GENFORGE_CHROMIUM=/path/to/chromium")
    with sync_api.sync_playwright() as pw:
        # --no-sandbox: Chromium refuses to run its sandbox as root, which CI is
        b = pw.chromium.launch(executable_path=path, headless=True, timeout=TIMEOUT_MS,
                               args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def server(live_server):
    with live_server(["isrnet-x2", "digits-wgangp", "pix2pix-edges2photos", "chargpt-pydoc"]) as url:
        yield url


@pytest.fixture
def page(browser, server):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)  # the page has no icon
    page.on("console", lambda msg: errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
    page.goto(server + "/")
    page.wait_for_function("document.querySelectorAll('#model option').length >= 3")
    yield page
    context.close()
    assert not errors, f"errors in the page: {errors}"


def natural_size(page, selector: str) -> tuple[int, int]:
    return tuple(page.eval_on_selector(selector, "img => [img.naturalWidth, img.naturalHeight]"))


def wait_for_image(page, selector: str) -> None:
    page.wait_for_function("sel => { const img = document.querySelector(sel);"
                           " return img && img.complete && img.naturalWidth > 0; }", arg=selector)


@pytest.mark.timeout(240)
def test_upscale_in_the_browser(page):
    page.select_option("#model", "isrnet-x2")
    assert page.is_visible("#superres") and not page.is_visible("#generation")
    assert "×2" in page.inner_text("#model-info")
    rgb = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)  # 24 wide, 20 high
    page.set_input_files("#image", files=[{"name": "small.png", "mimeType": "image/png",
                                           "buffer": encode_image(rgb, ".png")}])
    page.click("#sr-button")
    wait_for_image(page, "#after")
    wait_for_image(page, "#before")
    assert page.inner_text("#status") == "Done."
    assert natural_size(page, "#before") == (24, 20)
    assert natural_size(page, "#after") == (48, 40)
    page.wait_for_function("document.getElementById('after-cap').textContent.includes('48×40')")
    assert page.get_attribute("#download", "download") == "small_x2.png" and page.is_visible("#download")


@pytest.mark.timeout(240)
def test_generate_in_the_browser(page):
    page.select_option("#model", "digits-wgangp")
    assert page.is_visible("#generation") and not page.is_visible("#superres")
    assert not page.is_visible("#label")  # unconditional model: no class choice
    page.fill("#n", "16")
    page.fill("#seed", "3")
    page.click("#gen-button")
    wait_for_image(page, "#grid img")
    assert page.inner_text("#status") == "Generated 16 images."
    # 16 digits of 16x16 in rows of 8, 2-pixel padding: 8 * 18 + 2 by 2 * 18 + 2
    assert natural_size(page, "#grid img") == (146, 38)


@pytest.mark.timeout(240)
def test_translate_in_the_browser(page):
    page.select_option("#model", "pix2pix-edges2photos")
    assert page.is_visible("#superres") and page.inner_text("#sr-button") == "Translate"
    assert not page.is_visible("#direction") and not page.is_visible("#style")  # pix2pix: one way, no style
    edges = (np.random.default_rng(1).random((24, 40)) > 0.85).astype(np.uint8) * 255
    page.set_input_files("#image", files=[{"name": "edges.png", "mimeType": "image/png",
                                           "buffer": encode_image(edges, ".png")}])
    page.click("#sr-button")
    wait_for_image(page, "#after")
    assert page.inner_text("#status") == "Done."
    assert natural_size(page, "#after") == (40, 24)  # translation keeps the size
    assert page.get_attribute("#download", "download") == "edges_pix2pix-edges2photos.png"


@pytest.mark.timeout(240)
def test_generate_text_in_the_browser(page):
    page.select_option("#model", "chargpt-pydoc")
    assert page.is_visible("#text") and not page.is_visible("#superres") and not page.is_visible("#generation")
    page.fill("#prompt", "A class definition")
    page.fill("#tokens", "40")
    page.click("#text-button")
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('Generated')")
    text = page.inner_text("#text-out")
    assert text.startswith("A class definition") and len(text) > len("A class definition")
    assert page.get_attribute("#download", "download") == "chargpt-pydoc-seed0.txt"
