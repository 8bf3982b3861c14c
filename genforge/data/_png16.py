"""A minimal 16-bit PNG codec.

Pillow has no 48/64-bit image modes: it silently reduces 16-bit RGB/RGBA PNGs to 8 bits on
read and cannot write them at all. Super-resolution and HDR-ish data need those bits, so this
module reads and writes non-interlaced 16-bit PNGs itself (zlib plus the five PNG filters).
Errors are raised as ``ValueError`` with a short reason; ``io`` turns them into
``BadImageError`` naming the file.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> channels
_COLOUR_TYPE = {c: t for t, c in _CHANNELS.items()}


def header(data: bytes) -> tuple[int, int, int, int, int] | None:
    """(width, height, bit depth, colour type, interlace) of a PNG, or None if not a PNG."""
    if len(data) < 33 or data[:8] != SIGNATURE or data[12:16] != b"IHDR":
        return None
    width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return width, height, depth, ctype, interlace


def _chunks(data: bytes):
    pos = len(SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise ValueError("truncated file")
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 8 + length
        if end + 4 > len(data):
            raise ValueError("truncated file")
        body = data[pos + 8 : end]
        (crc,) = struct.unpack(">I", data[end : end + 4])
        if zlib.crc32(kind + body) != crc:
            raise ValueError(f"corrupt PNG chunk {kind.decode('latin-1')!r} (CRC mismatch)")
        yield kind, body
        if kind == b"IEND":
            return
        pos = end + 4


def _unfilter(raw: np.ndarray, height: int, stride: int, bpp: int) -> np.ndarray:
    """Undo the per-row PNG filters.

    None/Sub/Up vectorise with numpy (Sub is a wrapping cumulative sum per byte lane), which
    covers what ``encode`` writes. Average and Paeth depend on the byte just decoded, so they
    fall back to a plain Python loop: slow, but only for 16-bit files from other encoders.
    """
    rows = raw.reshape(height, stride + 1)
    out = np.empty((height, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(height):
        kind, line = rows[y, 0], rows[y, 1:]
        if kind == 0:
            cur = line
        elif kind == 1:
            cur = np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).reshape(-1)
        elif kind == 2:
            cur = line + prev
        elif kind in (3, 4):
            cur = np.array(_unfilter_slow(line.tolist(), prev.tolist(), bpp, kind), np.uint8)
        else:
            raise ValueError(f"corrupt image data (unknown PNG filter {kind})")
        out[y] = cur
        prev = out[y]
    return out


def _unfilter_slow(cur: list[int], up: list[int], bpp: int, kind: int) -> list[int]:
    for i in range(len(cur)):
        left = cur[i - bpp] if i >= bpp else 0
        if kind == 3:
            cur[i] = (cur[i] + ((left + up[i]) >> 1)) & 255
            continue
        upleft = up[i - bpp] if i >= bpp else 0
        pa, pb, pc = abs(up[i] - upleft), abs(left - upleft), abs(left + up[i] - 2 * upleft)
        pred = left if pa <= pb and pa <= pc else (up[i] if pb <= pc else upleft)
        cur[i] = (cur[i] + pred) & 255
    return cur


def decode(data: bytes, max_pixels: int | None = None) -> tuple[np.ndarray, bytes | None]:
    """Decode a non-interlaced 16-bit PNG to (H x W x C uint16, raw eXIf payload or None).

    A tRNS colour key becomes an alpha channel, so the caller sees transparency as data.
    """
    head = header(data)
    if head is None:
        raise ValueError("not a PNG file")
    width, height, depth, ctype, interlace = head
    if depth != 16 or ctype not in _CHANNELS:
        raise ValueError(f"unsupported PNG (bit depth {depth}, colour type {ctype})")
    if interlace:
        raise ValueError("interlaced 16-bit colour PNG is unsupported")
    if width == 0 or height == 0:
        raise ValueError("image has zero size")
    if max_pixels is not None and width * height > max_pixels:
        raise ValueError(f"too large ({width}x{height} pixels, limit {max_pixels})")
    channels = _CHANNELS[ctype]
    idat, trns, exif = [], None, None
    for kind, body in _chunks(data):
        if kind == b"IDAT":
            idat.append(body)
        elif kind == b"tRNS":
            trns = body
        elif kind == b"eXIf":
            exif = body
    bpp = 2 * channels
    stride = width * bpp
    expected = height * (stride + 1)
    try:
        # max_length bounds memory even if the stream claims more (a zip bomb).
        raw = zlib.decompressobj().decompress(b"".join(idat), expected)
    except zlib.error as exc:
        raise ValueError(f"corrupt image data ({exc})") from None
    if len(raw) < expected:
        raise ValueError("truncated file")
    pixels = _unfilter(np.frombuffer(raw, np.uint8), height, stride, bpp)
    image = pixels.view(">u2").reshape(height, width, channels).astype(np.uint16)
    if trns is not None and ctype in (0, 2) and len(trns) == 2 * channels:
        key = np.frombuffer(trns, ">u2").astype(np.uint16)
        alpha = np.where((image == key).all(axis=2, keepdims=True), 0, 65535).astype(np.uint16)
        image = np.concatenate([image, alpha], axis=2)
    return image, exif


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def encode(image: np.ndarray) -> bytes:
    """Encode H x W x C (C in 1..4) uint16 as a 16-bit PNG, every row Sub-filtered.

    Sub is a good cheap filter for photographs and decodes vectorised in ``_unfilter``.
    """
    height, width, channels = image.shape
    bpp = 2 * channels
    rows = image.astype(">u2").view(np.uint8).reshape(height, width * bpp)
    filtered = rows.copy()
    filtered[:, bpp:] -= rows[:, :-bpp]  # uint8 arithmetic wraps modulo 256, as PNG wants
    body = np.concatenate([np.ones((height, 1), np.uint8), filtered], axis=1)
    ihdr = struct.pack(">IIBBBBB", width, height, 16, _COLOUR_TYPE[channels], 0, 0, 0)
    return b"".join(
        [
            SIGNATURE,
            _chunk(b"IHDR", ihdr),
            _chunk(b"IDAT", zlib.compress(body.tobytes(), 6)),
            _chunk(b"IEND", b""),
        ]
    )
