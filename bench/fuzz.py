"""Fuzzing harness for the image and video inputs of genforge's deployment paths (issue 13).

Generates hostile and odd inputs from a seed into a temporary folder (nothing is committed), runs them
through four entry points and tabulates what happened to each input:

* ``upscale`` CLI: one process over the whole folder (plus the video files, given directly);
* ``translate`` CLI: one process over the image folder;
* the Python API: ``Upscaler.upscale(path, max_pixels=...)`` (the CLIs' limit) on every input, in a
  child process (so its peak RSS and any
  crash are its own); a ``UserError`` is a clean refusal, any other exception a traceback;
* the service: ``genforge serve`` in a child process, ``POST /v1/upscale`` with every readable file; 4xx is
  a clean refusal, 5xx (or a dropped connection) a failure.

Outcomes: written, clean error (one ``error:`` line / UserError / 4xx), internal (the batch caught an exception
that is not a UserError and printed it as ``error: file: TypeName: ...``: reported, not failed), skipped (not
an input: folders named like images), traceback, lost (an input the CLI never reached: a batch abort), 5xx.
Valid control images are spread through the folder (and one sorts last): any control not written is a batch
abort.

    python bench/fuzz.py --quick            # a few hundred inputs; exits 1 on any traceback, abort or 5xx
    python bench/fuzz.py --count 10000      # full run, writes bench/results/fuzz.md
"""

import argparse
import io
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "fuzz.md"
PNG_SIG = b"\x89PNG\r\n\x1a\n"
FORMATS = {"png": "PNG", "jpg": "JPEG", "tif": "TIFF", "webp": "WEBP", "gif": "GIF", "bmp": "BMP", "ppm": "PPM"}
OK, CLEAN, INTERNAL, SKIPPED, TRACEBACK, LOST, E5XX = ("written", "clean", "internal", "skipped", "traceback",
                                                       "lost", "5xx")
OUTCOMES = [OK, CLEAN, INTERNAL, SKIPPED, TRACEBACK, LOST, E5XX]
FAILING = {TRACEBACK, LOST, E5XX}
SLOW_S = 30.0  # no single input may take longer


@dataclass
class Case:
    rel: str  # path relative to the input folder (videos: relative to the video folder)
    category: str
    kind: str = "image"  # image | video | dir | link
    control: bool = False  # a valid input that must be written by every entry point


# -- the generator -------------------------------------------------------------------------------------------

def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, *, depth: int = 8, colour: int = 0, rows=None, idat: bytes | None = None,
              fix_crc: bool = True) -> bytes:
    """A PNG written by hand (any depth, any declared size); `rows` yields the raw filtered scanlines."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    if idat is None:
        comp = zlib.compressobj(9)
        idat = b"".join(comp.compress(r) for r in rows) + comp.flush()
    return PNG_SIG + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def png16(array: np.ndarray) -> bytes:
    """H x W x C (1, 3, 4) uint16 as a 16-bit PNG, filter 0 on every row."""
    h, w, c = array.shape
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    data = array.astype(">u2").reshape(h, w * c)
    return png_bytes(w, h, depth=16, colour=colour, rows=(b"\0" + row.tobytes() for row in data))


def flat_png(width: int, height: int, depth: int = 8) -> bytes:
    """A tiny file that declares (and holds) a huge flat grey image: a zlib bomb."""
    row = b"\0" + b"\x80" * (width * depth // 8)
    comp = zlib.compressobj(9)
    parts = [comp.compress(row) for _ in range(height)]
    return png_bytes(width, height, depth=depth, idat=b"".join(parts) + comp.flush())


def picture(rng, h: int, w: int, mode: str = "RGB") -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // max(w, 1), yy * 255 // max(h, 1), (xx + yy) % 256], axis=2)
    noise = rng.integers(0, 40, (h, w, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).convert(mode)


def encode(img: Image.Image, fmt: str, **save) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


def valid_samples(rng) -> list[tuple[str, bytes]]:
    """(extension, bytes) of small valid images in every format, the seeds of the mutations."""
    out = []
    for ext, fmt in FORMATS.items():
        h, w = int(rng.integers(8, 40)), int(rng.integers(8, 40))
        img = picture(rng, h, w, "P" if ext == "gif" else "RGB")
        save = {"compression": "tiff_lzw"} if ext == "tif" else {}
        out.append((ext, encode(img, fmt, **save)))
    out.append(("jpg", encode(picture(rng, 24, 24), "JPEG", progressive=True)))
    out.append(("png", png16(rng.integers(0, 65536, (12, 10, 3)).astype(np.uint16))))
    out.append(("webp", encode(picture(rng, 16, 16, "RGBA"), "WEBP", lossless=True)))
    out.append(("png", png16(rng.integers(0, 65536, (9, 7, 4)).astype(np.uint16))))
    out.append(("png", png16(rng.integers(0, 65536, (7, 9, 1)).astype(np.uint16))))
    out.append(("png", encode(picture(rng, 12, 12, "P"), "PNG", transparency=1)))
    out.append(("jpg", encode(picture(rng, 12, 12, "CMYK"), "JPEG")))
    out.append(("tif", encode(Image.fromarray(rng.integers(0, 65535, (8, 8)).astype(np.uint16)), "TIFF")))
    exif = Image.Exif()
    exif[0x0112] = int(rng.integers(1, 9))
    out.append(("jpg", encode(picture(rng, 10, 12), "JPEG", exif=exif.tobytes())))
    frames = [picture(rng, 8, 8, "P") for _ in range(3)]
    out.append(("gif", encode(frames[0], "GIF", save_all=True, append_images=frames[1:])))
    return out


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]] | None:
    if not data.startswith(PNG_SIG):
        return None
    chunks, at = [], 8
    while at + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[at:at + 8])
        chunks.append((kind, data[at + 8:at + 8 + n]))
        at += 12 + n
    return chunks


def crc_fixed_flip(rng, data: bytes) -> bytes | None:
    """A PNG with bits flipped inside one chunk's data and every CRC recomputed: past the CRC check, into the
    header parser, zlib and the unfilter."""
    chunks = png_chunks(data)
    if not chunks:
        return None
    i = int(rng.integers(0, len(chunks)))
    kind, body = chunks[i]
    if body:
        chunks[i] = (kind, bitflip(rng, body))
    return PNG_SIG + b"".join(chunk(k, b) for k, b in chunks)


def bitflip(rng, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        i = int(rng.integers(0, len(buf)))
        buf[i] ^= 1 << int(rng.integers(0, 8))
    return bytes(buf)


def truncate(rng, data: bytes) -> bytes:
    return data[:int(rng.integers(1, max(2, len(data))))]


def make_clip(path: Path, rng, n: int = 6, w: int = 32, h: int = 24) -> None:
    import av
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(10))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for k in range(n):
            frame = av.VideoFrame.from_ndarray(np.asarray(picture(rng, h, w)), format="rgb24")
            frame.pts = k
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


class Generator:
    def __init__(self, root: Path, seed: int, max_pixels: int):
        self.images, self.videos = root / "images", root / "videos"
        self.images.mkdir(parents=True)
        self.videos.mkdir(parents=True)
        self.rng = np.random.default_rng(seed)
        self.max_pixels = max_pixels
        self.cases: list[Case] = []
        self.n = 0

    def name(self, category: str, ext: str) -> str:
        self.n += 1
        return f"{self.n:06d}_{category}.{ext}"

    def add(self, category: str, ext: str, data: bytes, *, control: bool = False, name: str | None = None) -> None:
        rel = name or self.name(category, ext)
        (self.images / rel).write_bytes(data)
        self.cases.append(Case(rel, category, control=control))

    def save(self, category: str, ext: str, img: Image.Image, **save) -> None:
        self.add(category, ext, encode(img, FORMATS.get(ext, ext.upper()), **save))

    def fixed(self) -> None:
        """The hand-picked cases: every category at least once."""
        rng, mp = self.rng, self.max_pixels
        side = int(mp ** 0.5)
        # header bombs: declared sizes far over any limit, a few bytes of data
        self.add("header_bomb", "png", png_bytes(100000, 100000, idat=zlib.compress(b"\0")))
        self.add("header_bomb", "png", png_bytes(2**31 - 1, 1, idat=zlib.compress(b"\0")))
        self.add("header_bomb", "png", png_bytes(0, 0, idat=zlib.compress(b"\0")))
        gif = bytearray(encode(picture(rng, 4, 4, "P"), "GIF"))
        gif[6:10] = struct.pack("<HH", 65535, 65535)
        self.add("header_bomb", "gif", bytes(gif))
        bmp = bytearray(encode(picture(rng, 4, 4), "BMP"))
        bmp[18:26] = struct.pack("<ii", 60000, -60000)
        self.add("header_bomb", "bmp", bytes(bmp))
        jpg = bytearray(encode(picture(rng, 8, 8), "JPEG"))
        sof = jpg.find(b"\xff\xc0")
        jpg[sof + 5:sof + 9] = struct.pack(">HH", 65000, 65000)
        self.add("header_bomb", "jpg", bytes(jpg))
        tif = bytearray(encode(picture(rng, 4, 4), "TIFF"))  # SamplesPerPixel (tag 277) = 40960
        ifd = struct.unpack("<I", tif[4:8])[0]
        for k in range(struct.unpack("<H", tif[ifd:ifd + 2])[0]):
            at = ifd + 2 + 12 * k
            if struct.unpack("<H", tif[at:at + 2])[0] == 277:
                tif[at + 8:at + 10] = struct.pack("<H", 40960)
        self.add("header_bomb", "tif", bytes(tif))
        # zlib bombs: flat images within and over --max-pixels, and a huge one
        self.add("zlib_bomb", "png", flat_png(side - 8, side - 8))
        self.add("zlib_bomb", "png", flat_png(side + 64, side + 64))
        self.add("zlib_bomb", "png", flat_png(20000, 20000))
        self.add("zlib_bomb", "png", flat_png(side + 64, side + 64, depth=16))
        # 16-bit PNGs, valid and corrupt
        for c in (1, 2, 3, 4):
            self.add("png16", "png", png16(rng.integers(0, 65536, (9, 13, c)).astype(np.uint16)))
        good16 = png16(rng.integers(0, 65536, (16, 16, 3)).astype(np.uint16))
        self.add("png16_corrupt", "png", good16[:-20])
        self.add("png16_corrupt", "png", good16[:60])
        self.add("png16_corrupt", "png", bitflip(rng, good16))
        idat_at = good16.find(b"IDAT")
        self.add("png16_corrupt", "png", good16[:idat_at + 10] + b"\xff" * 8 + good16[idat_at + 18:])  # bad CRC
        rows = (bytes([7]) + b"\0" * 32 for _ in range(4))  # filter type 7 does not exist
        self.add("png16_corrupt", "png", png_bytes(16, 4, depth=16, colour=0, rows=rows))
        # palette with transparency
        pal = picture(rng, 12, 12, "P")
        self.save("palette_trns", "png", pal, transparency=0)
        self.save("palette_trns", "gif", pal, transparency=3)
        self.save("palette_trns", "png", picture(rng, 10, 10, "LA"))
        self.save("palette_trns", "webp", picture(rng, 10, 10, "RGBA"))
        self.save("palette_trns", "tif", picture(rng, 10, 10, "RGBA"))
        # CMYK and other modes
        self.save("modes", "jpg", picture(rng, 16, 16, "CMYK"))
        self.save("modes", "tif", picture(rng, 16, 16, "CMYK"))
        self.save("modes", "jpg", picture(rng, 16, 16, "L"))
        self.save("modes", "tif", picture(rng, 16, 16, "1"))
        self.save("modes", "tif", Image.fromarray(rng.random((8, 8)).astype(np.float32), mode="F"))
        self.save("modes", "tif", Image.fromarray(rng.integers(0, 65535, (8, 8)).astype(np.uint16)))
        self.save("modes", "png", Image.fromarray(rng.integers(0, 65535, (8, 8)).astype(np.uint16)))
        self.save("modes", "png", picture(rng, 8, 8, "1"))
        # 1x1, 1xN, Nx1 (and the format limits: x2 of 32768 is over GIF's 65535)
        for h, w in ((1, 1), (1, 300), (300, 1), (1, 2), (2, 1)):
            for ext in ("png", "jpg", "gif"):
                self.save("thin", ext, picture(rng, h, w, "P" if ext == "gif" else "RGB"))
        self.save("thin", "gif", picture(rng, 1, 32768, "P"))
        self.save("thin", "webp", picture(rng, 1, 8192), lossless=True)
        # animated
        frames = [picture(rng, 12, 12, "P") for _ in range(3)]
        self.save("animated", "gif", frames[0], save_all=True, append_images=frames[1:], duration=50)
        rgb = [f.convert("RGB") for f in frames]
        self.save("animated", "png", rgb[0], save_all=True, append_images=rgb[1:], duration=50)
        self.save("animated", "webp", rgb[0], save_all=True, append_images=rgb[1:], duration=50)
        # EXIF orientations (and bogus ones)
        for orientation in (1, 2, 3, 4, 5, 6, 7, 8, 0, 9, 65535):
            exif = Image.Exif()
            exif[0x0112] = orientation
            self.save("exif", "jpg", picture(rng, 10, 14), exif=exif.tobytes())
        jpg = encode(picture(rng, 10, 14), "JPEG", exif=b"Exif\0\0" + b"MM\0*" + b"\xff" * 30)
        self.add("exif", "jpg", jpg)
        # zero-byte files with every image extension
        for ext in (*FORMATS, "jpeg", "tiff", "pgm"):
            self.add("empty", ext, b"")
        # odd and long names
        ok = encode(picture(rng, 6, 6), "PNG")
        for name in ("with space.png", "ünïcødé_画像.png", "emoji_🙂.png", "quote'\"$`.png", "-leading-dash.png",
                     "semi;colon&amp.png", "UPPER.PNG", "multi.dots.jpg.png", "tab\tname.png",
                     "é" * 100 + ".png",  # 204 bytes
                     "n" * 246 + ".png",  # 250 bytes: near NAME_MAX
                     "ü" * 125 + ".png"):  # 254 bytes
            self.add("names", "png", ok, name=name)
        (self.images / "sub dir" / "deeper").mkdir(parents=True)
        self.add("names", "png", ok, name="sub dir/deeper/inner.png")
        # folders and links named like images
        (self.images / "folder.png").mkdir()
        self.cases.append(Case("folder.png", "dirs_links", kind="dir"))
        (self.images / "folder_with_image.jpg").mkdir()
        self.add("dirs_links", "png", ok, name="folder_with_image.jpg/inside.png")
        os.symlink("self_loop.png", self.images / "self_loop.png")
        os.symlink("loop_b.png", self.images / "loop_a.png")
        os.symlink("loop_a.png", self.images / "loop_b.png")
        os.symlink("does_not_exist.png", self.images / "dangling.png")
        os.symlink(".", self.images / "dir_loop.png")
        os.symlink("/dev/null", self.images / "devnull.png")
        for rel in ("self_loop.png", "loop_a.png", "loop_b.png", "dangling.png", "devnull.png"):
            self.cases.append(Case(rel, "dirs_links", kind="link"))
        self.cases.append(Case("dir_loop.png", "dirs_links", kind="dir"))
        unreadable = self.images / self.name("dirs_links", "png")
        unreadable.write_bytes(ok)
        unreadable.chmod(0)
        self.cases.append(Case(unreadable.name, "dirs_links"))

    def videos_(self, n_mutants: int) -> None:
        rng = self.rng
        clip = self.videos / "v000_control.mp4"
        make_clip(clip, rng)
        self.cases.append(Case(clip.name, "video", kind="video", control=True))
        data = clip.read_bytes()
        mutants = [b"", rng.bytes(2000), data[:len(data) // 2], data[:64], data[:len(data) - 10]]
        mutants += [truncate(rng, data) if i % 2 else bitflip(rng, data) for i in range(n_mutants)]
        for i, blob in enumerate(mutants, 1):
            path = self.videos / f"v{i:03d}_video_corrupt.mp4"
            path.write_bytes(blob)
            self.cases.append(Case(path.name, "video_corrupt", kind="video"))

    def mutants(self, n: int) -> None:
        """n random inputs: truncated / bit-flipped valid images, random bytes, and valid controls."""
        rng = self.rng
        for k in range(n):
            if k % 100 == 0:  # fresh sources now and then: other sizes, other content
                seeds = valid_samples(rng)
            ext, data = seeds[int(rng.integers(0, len(seeds)))]
            roll = rng.random()
            flipped = crc_fixed_flip(rng, data) if roll >= 0.6 and roll < 0.8 else None
            if roll < 0.4:
                self.add("truncated", ext, truncate(rng, data))
            elif flipped is not None:
                self.add("png_crc_fixed_flip", ext, flipped)
            elif roll < 0.8:
                self.add("bitflip", ext, bitflip(rng, data))
            elif roll < 0.9:
                self.add("random_bytes", ext, rng.bytes(int(rng.integers(1, 4000))))
            else:
                self.add("control", ext, data, control=True)

    def finish(self) -> None:
        self.add("control", "png", encode(picture(self.rng, 8, 8), "PNG"), control=True, name="zzzz_last_control.png")


def generate(root: Path, count: int, seed: int, max_pixels: int) -> list[Case]:
    gen = Generator(root, seed, max_pixels)
    gen.fixed()
    n_videos = max(4, count // 40)
    gen.videos_(n_videos)
    gen.mutants(max(0, count - len(gen.cases) - 1))
    gen.finish()
    return gen.cases


# -- running the entry points ---------------------------------------------------------------------------------

def tiny_models(root: Path) -> tuple[Path, Path]:
    sys.path.insert(0, str(ROOT))
    from tests.conftest import random_folder
    return random_folder(root, "superres", "isrnet"), random_folder(root, "pix2pix", "unet")


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def run_child(argv: list[str], timeout: float) -> dict:
    """Runs argv, returns rc, stderr, wall time and peak RSS (ru_maxrss of this one child)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env(), cwd=ROOT,
                                start_new_session=True)
        timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    return {"rc": proc.returncode, "stderr": stderr, "wall": time.perf_counter() - start,
            "rss_mb": usage.ru_maxrss / 1024, "killed": proc.returncode == -signal.SIGKILL}


ERROR_LINE = re.compile(r"^error: ")
INTERNAL_LINE = re.compile(r": ([A-Z][A-Za-z0-9_]*(Error|Exception|Warning)|[A-Z][A-Za-z]+Interrupt): ")


def classify_cli(cases: list[Case], base: Path, out: Path, result: dict, ext: str | None) -> dict[str, str]:
    """Per input: written / clean / internal / skipped / lost, from the outputs and the stderr lines."""
    lines = [line for line in result["stderr"].splitlines() if line.strip()]
    errors = [line for line in lines if ERROR_LINE.match(line)]
    outcome = {}
    for case in cases:
        rel = Path(case.rel)
        stem = rel.with_name(rel.stem)
        target = out / (str(stem) + "." + (ext or rel.suffix.lstrip(".")))
        if case.kind == "dir":
            outcome[case.rel] = SKIPPED
        elif target.exists() or target.with_suffix(".png").exists() or (case.kind == "video" and target.is_dir()):
            outcome[case.rel] = OK
        else:
            mine = [e for e in errors if f"{base / case.rel}" in e or f"/{case.rel}" in e or f" {case.rel}" in e]
            if not mine:
                outcome[case.rel] = LOST
            elif any(INTERNAL_LINE.search(e) for e in mine):
                outcome[case.rel] = INTERNAL
            else:
                outcome[case.rel] = CLEAN
    return outcome


def slowest_gap(out: Path) -> float:
    """Largest time between consecutive outputs (one process writes them in order): about the slowest file."""
    times = sorted(p.stat().st_mtime for p in out.rglob("*") if p.is_file())
    return max((b - a for a, b in zip(times, times[1:])), default=0.0)


def run_cli_entry(name: str, argv: list[str], cases: list[Case], base: dict[str, Path], out: Path,
                  ext: str | None, timeout: float) -> dict:
    result = run_child(argv, timeout)
    outcome = {}
    for kind_base, group in (("images", [c for c in cases if c.kind != "video"]),
                             ("videos", [c for c in cases if c.kind == "video"])):
        if group:
            outcome.update(classify_cli(group, base[kind_base], out, result, ext))
    traceback = "Traceback" in result["stderr"]
    if traceback or result["rc"] not in (0, 1):
        for rel, what in outcome.items():  # the file being processed when it died, and everything after
            if what == LOST:
                outcome[rel] = TRACEBACK if traceback else LOST
    aborted = any(outcome[c.rel] != OK for c in cases if c.control)
    stray = [line for line in result["stderr"].splitlines()
             if line.strip() and not line.startswith(("error:", "note:", "wrote", "  "))]
    return {"entry": name, "outcome": outcome, "rc": result["rc"], "wall": result["wall"],
            "rss_mb": result["rss_mb"], "slowest": slowest_gap(out), "slowest_file": "",
            "traceback": traceback, "aborted": aborted or result["rc"] not in (0, 1), "stray": stray[:10],
            "messages": _messages(result["stderr"])}


def _messages(stderr: str) -> list[str]:
    if "Traceback" in stderr:
        return stderr.strip().splitlines()[-12:]
    return []


# -- the Python API, in a child process --------------------------------------------------------------------

def api_worker(model: str, base: str, listing: str, report: str, max_pixels: str) -> int:
    import torch
    torch.set_num_threads(1)
    from genforge.deploy.upscaler import Upscaler
    from genforge.errors import UserError
    up = Upscaler(model, device="cpu")
    with open(listing) as f, open(report, "w", buffering=1) as out:
        for rel in json.load(f):
            out.write(json.dumps({"start": rel}) + "\n")
            start = time.perf_counter()
            try:
                up.upscale(os.path.join(base, rel), max_pixels=int(max_pixels))  # the CLIs' limit
                what, msg = OK, ""
            except UserError as err:
                what, msg = CLEAN, str(err).splitlines()[0] if str(err) else ""
            except Exception as exc:  # noqa: BLE001 - what the harness is looking for
                what, msg = TRACEBACK, f"{type(exc).__name__}: {exc}"[:300]
            out.write(json.dumps({"rel": rel, "what": what, "msg": msg, "s": time.perf_counter() - start}) + "\n")
    return 0


def run_api_entry(model: Path, cases: list[Case], base: dict[str, Path], tmp: Path, timeout: float,
                  max_pixels: int) -> dict:
    listing, report = tmp / "api_list.json", tmp / "api_report.jsonl"
    rels = [str(base["videos" if c.kind == "video" else "images"] / c.rel) for c in cases]
    listing.write_text(json.dumps(rels))
    result = run_child([sys.executable, __file__, "--api-worker", str(model), "/", str(listing), str(report),
                        str(max_pixels)], timeout)
    done = {}
    for line in report.read_text().splitlines() if report.exists() else []:
        row = json.loads(line)
        if "rel" in row:
            done[row["rel"]] = row
    outcome, times, messages = {}, {}, []
    for case, full in zip(cases, rels):
        row = done.get(full)
        outcome[case.rel] = row["what"] if row else (TRACEBACK if result["rc"] not in (0,) else LOST)
        times[case.rel] = row["s"] if row else 0.0
        if row and row["what"] == TRACEBACK:
            messages.append(f"{case.category} {case.rel[:60]}: {row['msg']}")
    if result["rc"] != 0:
        messages.append(f"worker exited {result['rc']}: " + " | ".join(result["stderr"].strip().splitlines()[-3:]))
    slow = max(times, key=times.get) if times else ""
    return {"entry": "python API", "outcome": outcome, "rc": result["rc"], "wall": result["wall"],
            "rss_mb": result["rss_mb"], "slowest": times.get(slow, 0.0), "slowest_file": slow,
            "traceback": TRACEBACK in outcome.values(), "aborted": result["rc"] != 0, "stray": [],
            "messages": messages}


# -- the service --------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post_image(url: str, model: str, filename: str, data: bytes, timeout: float) -> tuple[int, str]:
    boundary = uuid.uuid4().hex
    safe = filename.encode("ascii", "replace").decode().replace('"', "_")
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{model}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{safe}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            r.read()
            return r.status, ""
    except urllib.error.HTTPError as err:
        return err.code, err.read()[:200].decode("utf-8", "replace")
    except OSError as err:  # reset, refused, timed out: the server failed this request
        return 599, f"{type(err).__name__}: {err}"


def vm_hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_service_entry(model: Path, cases: list[Case], base: dict[str, Path], max_pixels: int,
                      timeout: float) -> dict:
    port = free_port()
    log = tempfile.TemporaryFile()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "genforge", "serve", "--models", str(model), "--port", str(port),
                             "--max-pixels", str(max_pixels), "--timeout", "60"],
                            stdout=log, stderr=subprocess.STDOUT, env=env(), cwd=ROOT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    outcome, times, messages = {}, {}, []
    try:
        name = None
        while time.perf_counter() - start < 120 and proc.poll() is None:
            try:
                with urllib.request.urlopen(url + "/v1/models", timeout=2) as r:
                    listing = json.loads(r.read())
                models = listing.get("models", listing) if isinstance(listing, dict) else listing
                first = models[0]
                name = first["name"] if isinstance(first, dict) else first
                break
            except (OSError, ValueError, KeyError, IndexError):
                time.sleep(0.3)
        if name is None:
            log.seek(0)
            raise RuntimeError("the service did not start: " + log.read().decode("utf-8", "replace")[-800:])
        deadline = start + timeout
        for case in cases:
            path = base["videos" if case.kind == "video" else "images"] / case.rel
            try:
                data = path.read_bytes()
            except OSError:
                outcome[case.rel] = SKIPPED  # a folder, a loop: nothing a client could upload
                continue
            if time.perf_counter() > deadline:
                outcome[case.rel] = LOST
                continue
            t0 = time.perf_counter()
            code, msg = post_image(url + "/v1/upscale", name, Path(case.rel).name, data, 90)
            times[case.rel] = time.perf_counter() - t0
            if code == 200:
                outcome[case.rel] = OK
            elif 400 <= code < 500:
                outcome[case.rel] = CLEAN
            else:
                outcome[case.rel] = E5XX
                messages.append(f"{case.category} {case.rel[:60]}: HTTP {code} {msg}")
        rss = vm_hwm_mb(proc.pid)
        alive = proc.poll() is None
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.seek(0)
        server_log = log.read().decode("utf-8", "replace")
        log.close()
    if "Traceback" in server_log:
        messages.append("server log: " + " | ".join(server_log.strip().splitlines()[-6:]))
    slow = max(times, key=times.get) if times else ""
    return {"entry": "service", "outcome": outcome, "rc": 0 if alive else proc.returncode,
            "wall": time.perf_counter() - start, "rss_mb": rss, "slowest": times.get(slow, 0.0), "slowest_file": slow,
            "traceback": "Traceback" in server_log, "aborted": not alive, "stray": [], "messages": messages}


# -- the report ---------------------------------------------------------------------------------------------

def machine() -> str:
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), platform.processor())
    except OSError:
        cpu = platform.processor()
    return (f"{cpu}, {len(os.sched_getaffinity(0))} cores available, {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}; 1-minute load average {os.getloadavg()[0]:.1f}")


def table(cases: list[Case], runs: list[dict]) -> str:
    by_cat = defaultdict(list)
    for c in cases:
        by_cat[c.category].append(c)
    head = ("| category | entry point | inputs | written | clean error | internal | skipped | traceback | "
            "lost (abort) | 5xx |")
    rows = [head, "|" + "---|" * 10]
    for cat in sorted(by_cat):
        for run in runs:
            counts = Counter(run["outcome"][c.rel] for c in by_cat[cat] if c.rel in run["outcome"])
            if not counts:
                continue
            rows.append(f"| {cat} | {run['entry']} | {sum(counts.values())} | "
                        + " | ".join(str(counts.get(k, 0)) for k in OUTCOMES) + " |")
    summary = ["", "| entry point | inputs | exit | wall s | peak RSS MB | slowest file s | tracebacks | batch abort | "
               "5xx |", "|" + "---|" * 9]
    for run in runs:
        counts = Counter(run["outcome"].values())
        slow = f"{run['slowest']:.2f}" + (f" ({_short(run['slowest_file'])})" if run["slowest_file"] else "")
        tracebacks = counts.get(TRACEBACK, 0) or int(run["traceback"])
        summary.append(f"| {run['entry']} | {len(run['outcome'])} | {run['rc']} | {run['wall']:.1f} | "
                       f"{run['rss_mb']:,.0f} | {slow} | {tracebacks} | "
                       f"{'yes' if run['aborted'] else 'no'} ({counts.get(LOST, 0)} lost) | {counts.get(E5XX, 0)} |")
    return "\n".join(rows + summary)


def _short(rel: str) -> str:
    name = Path(rel).name
    return name if len(name) <= 40 else name[:37] + "..."


def failures(runs: list[dict], strict: bool = False) -> list[str]:
    """What fails the run: tracebacks, batch aborts, 5xx; with `strict` also an input over SLOW_S, stray
    stderr lines and exceptions a batch caught that are not UserErrors."""
    found = []
    for run in runs:
        counts = Counter(run["outcome"].values())
        slow = strict and run["slowest"] > SLOW_S
        if strict and (run["stray"] or counts.get(INTERNAL)):
            found.append(f"{run['entry']}: {counts.get(INTERNAL, 0)} internal, stray stderr lines: {run['stray'][:3]}")
        if run["traceback"] or run["aborted"] or slow or any(counts.get(k) for k in FAILING):
            found.append(f"{run['entry']}: " + ", ".join(f"{counts.get(k, 0)} {k}" for k in FAILING)
                         + (" (traceback in stderr)" if run["traceback"] else "")
                         + (" (batch aborted)" if run["aborted"] else "")
                         + (f" (an input took {run['slowest']:.0f} s: {run['slowest_file'] or '?'})" if slow else ""))
            found += ["    " + m for m in run["messages"][:15]]
    return found


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a few hundred inputs, under two minutes; no results file")
    p.add_argument("--count", type=int, default=10000, help="inputs in a full run (default 10000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-pixels", type=int, default=None, help="the limit given to every entry point "
                   "(default 1,000,000 quick, 4,000,000 full)")
    p.add_argument("--entries", default="upscale,translate,api,service", help="comma list of entry points")
    p.add_argument("--timeout", type=float, default=None, help="seconds per entry point")
    p.add_argument("--output", default=None, help=f"markdown report (default {RESULTS.relative_to(ROOT)} in full mode)")
    p.add_argument("--strict", action="store_true", help="also fail on an input over 30 s, on stray stderr "
                   "lines (not genforge's error:/note: lines) and on non-UserError exceptions a batch caught")
    p.add_argument("--keep", action="store_true", help="keep the generated folder (its path is printed)")
    p.add_argument("--api-worker", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.api_worker:
        return api_worker(*args.api_worker)
    count = 400 if args.quick else args.count
    max_pixels = args.max_pixels or (1_000_000 if args.quick else 4_000_000)
    timeout = args.timeout or (240 if args.quick else 6 * 3600)
    entries = set(args.entries.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="genforge_fuzz_"))
    t0 = time.perf_counter()
    try:
        cases = generate(tmp / "in", count, args.seed, max_pixels)
        base = {"images": tmp / "in" / "images", "videos": tmp / "in" / "videos"}
        sr, pix2pix = tiny_models(tmp / "models")
        print(f"{len(cases)} inputs (seed {args.seed}) in {time.perf_counter() - t0:.1f} s under {tmp}", flush=True)
        images = [c for c in cases if c.kind != "video"]
        videos = [c for c in cases if c.kind == "video"]
        common = ["--no-progress", "--max-pixels", str(max_pixels)]
        runs = []
        if "upscale" in entries:
            cmd = [sys.executable, "-m", "genforge", "upscale", str(sr), str(base["images"]),
                   *(str(base["videos"] / c.rel) for c in videos), "-o", str(tmp / "out_upscale"), *common]
            runs.append(run_cli_entry("upscale CLI", cmd, cases, base, tmp / "out_upscale", None, timeout))
        if "translate" in entries:
            cmd = [sys.executable, "-m", "genforge", "translate", str(pix2pix), str(base["images"]), "-o",
                   str(tmp / "out_translate"), *common]
            runs.append(run_cli_entry("translate CLI", cmd, images, base, tmp / "out_translate", "png", timeout))
        if "api" in entries:
            runs.append(run_api_entry(sr, cases, base, tmp, timeout, max_pixels))
        if "service" in entries:
            runs.append(run_service_entry(sr, cases, base, max_pixels, timeout))
        for run in runs:
            print(f"{run['entry']}: {run['wall']:.1f} s, exit {run['rc']}", flush=True)
        stray = sorted({line for run in runs for line in run["stray"]})
        command = " ".join(sys.argv[1:] if argv is None else argv)
        text = (f"Machine: {machine()}. Date: {date.today().isoformat()}. Command: `python bench/fuzz.py "
                f"{command}`; {len(cases)} inputs, seed {args.seed}, --max-pixels "
                f"{max_pixels:,}, {time.perf_counter() - t0:.0f} s in all.\n\n" + table(cases, runs) + "\n")
        found = failures(runs, args.strict)
        if stray:
            text += "\nstderr lines that are not genforge's `error:`/`note:` lines:\n\n" + "\n".join(
                f"    {line}" for line in stray[:20]) + "\n"
        if found:
            text += "\nFailures:\n\n" + "\n".join(found) + "\n"
        print(text)
        output = Path(args.output) if args.output else (None if args.quick else RESULTS)
        if output:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text("# Fuzzing genforge's inputs (`bench/fuzz.py`)\n\n" + text)
            print(f"wrote {output}")
        return 1 if found else 0
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            for p_ in tmp.rglob("*"):
                if not p_.is_symlink() and p_.is_file():
                    p_.chmod(0o644)
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
