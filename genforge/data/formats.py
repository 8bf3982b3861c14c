"""What the imaging libraries need around them, per format: 16-bit colour PNG through OpenCV (Pillow
has no 48/64-bit modes), libtiff kept off stderr, and the largest side each format can hold.

OpenCV's libpng prints its complaints about a bad file to the C stderr, where Python cannot catch
them, so ``decode_png16`` checks a file first (chunk CRCs, the zlib stream, one valid filter byte per
row: all in C, through zlib and numpy) and hands OpenCV only the chunks it needs; ``check_png_complete``
does the chunk part for the PNGs Pillow decodes (8-bit, 16-bit grey). Errors are
``ValueError`` with a short reason; ``io`` turns them into ``BadImageError`` naming the file.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import struct
import zlib
from typing import BinaryIO

import numpy as np

_MAX_SIDE = {".gif": (65535, "GIF"), ".webp": (16383, "WebP"), ".jpg": (65500, "JPEG"), ".jpeg": (65500, "JPEG")}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> channels
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_CV_MAX_SIDE, _CV_MAX_PIXELS = 1 << 20, 1 << 30  # OpenCV's decoder limits (it refuses larger, with a log line)


def png_header(data: bytes) -> tuple[int, int, int, int, int] | None:
    """(width, height, bit depth, colour type, interlace) of a PNG, or None if not a PNG."""
    if len(data) < 33 or data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        return None
    width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return width, height, depth, ctype, interlace


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_chunks(f: BinaryIO, keep: frozenset[bytes] = frozenset()):
    """(kind, body) of each chunk of the PNG open as `f`, up to IEND, every one checked complete and
    against its CRC; a body is read into memory only for the kinds in `keep` (else None), so a file of
    any size is walked in 1 MB pieces. A file that ends before IEND raises "truncated file"."""
    f.seek(len(PNG_SIGNATURE))
    while True:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError("truncated file")
        length, kind = struct.unpack(">I4s", head)
        crc, left, body = zlib.crc32(kind), length, [] if kind in keep else None
        while left:
            piece = f.read(min(left, 1 << 20))
            if not piece:
                raise ValueError("truncated file")
            crc, left = zlib.crc32(piece, crc), left - len(piece)
            if body is not None:
                body.append(piece)
        tail = f.read(4)
        if len(tail) < 4:
            raise ValueError("truncated file")
        if crc != struct.unpack(">I", tail)[0]:
            raise ValueError(f"corrupt PNG chunk {kind.decode('latin-1')!r} (CRC mismatch)")
        yield kind, None if body is None else b"".join(body)
        if kind == b"IEND":
            return


def check_png_complete(f: BinaryIO) -> None:
    """Refuse a PNG that is cut short or has a damaged chunk, before it is decoded. Pillow stops reading
    once the pixels are inflated and never checks the last IDAT's CRC nor that IEND follows, so a file cut
    in its last bytes decoded (8-bit and 16-bit grey) where the 16-bit colour path refused it."""
    for _ in png_chunks(f):
        pass


def decode_png16(data: bytes, max_pixels: int | None) -> tuple[np.ndarray, bytes | None]:
    """A 16-bit colour PNG to (H x W x C uint16, raw eXIf payload or None), decoded by OpenCV once the
    checks above pass: a file that reaches libpng decodes. The size is checked from the header before
    anything is inflated. A tRNS colour key becomes an alpha channel, so the caller sees it as data."""
    import cv2  # here, not at import: most runs never read a 16-bit colour PNG

    width, height, depth, ctype, interlace = png_header(data)
    if ctype not in _PNG_CHANNELS or interlace > 1 or data[26:28] != b"\0\0" or data[8:12] != b"\0\0\0\x0d":
        raise ValueError(f"unsupported or corrupt PNG header (bit depth {depth}, colour type {ctype})")
    if width == 0 or height == 0:
        raise ValueError("image has zero size")
    if max_pixels is not None and width * height > max_pixels:
        raise ValueError(f"too large ({width}x{height} pixels, limit {max_pixels})")
    if max(width, height) > _CV_MAX_SIDE or width * height > _CV_MAX_PIXELS:
        raise ValueError(f"too large for the 16-bit PNG decoder ({width}x{height} pixels)")
    idat, trns, exif, ihdr = [], None, None, None
    for kind, body in png_chunks(io.BytesIO(data), frozenset({b"IHDR", b"IDAT", b"tRNS", b"eXIf"})):
        if kind == b"IHDR":
            ihdr = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"tRNS":
            trns = body
        elif kind == b"eXIf":
            exif = body
    stream = _check_png_stream(b"".join(idat), width, height, 2 * _PNG_CHANNELS[ctype], interlace)
    png = PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", stream) + png_chunk(b"IEND", b"")
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.dtype != np.uint16:
        raise ValueError("corrupt image data")
    image = image[:, :, None] if image.ndim == 2 else image[:, :, [2, 1, 0, 3][: image.shape[2]]]  # BGR(A)
    if trns is not None and ctype == 2 and len(trns) == 6:
        key = np.frombuffer(trns, ">u2").astype(np.uint16)
        alpha = np.where((image == key).all(axis=2, keepdims=True), 0, 65535).astype(np.uint16)
        image = np.concatenate([image, alpha], axis=2)
    return image, exif


def _check_png_stream(stream: bytes, width: int, height: int, bpp: int, interlace: int) -> bytes:
    """The zlib stream of a PNG's pixels, checked to inflate to exactly the declared rows, each with a
    valid filter byte, in bounded memory (4 MB pieces, however large the file claims to be); returns it
    without trailing bytes."""
    passes, total = [], 0  # (offset of the pass in the inflated data, rows, bytes per row with the filter byte)
    for x0, y0, dx, dy in _ADAM7 if interlace else ((0, 0, 1, 1),):
        w, h = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if w > 0 and h > 0:
            passes.append((total, h, w * bpp + 1))
            total += h * (w * bpp + 1)
    inflate, pos, rest = zlib.decompressobj(), 0, stream
    try:
        while not inflate.eof:
            piece = np.frombuffer(inflate.decompress(rest, 1 << 22), np.uint8)
            rest = inflate.unconsumed_tail
            if not piece.size and not rest:  # the data ran out before the stream's end
                break
            if pos + piece.size > total:
                raise ValueError("corrupt image data (more pixel data than the header declares)")
            for start, rows, stride in passes:
                first = max(0, -(-(pos - start) // stride))
                last = min(rows, -(-(pos + piece.size - start) // stride))
                if first < last and (piece[start + np.arange(first, last) * stride - pos] > 4).any():
                    raise ValueError("corrupt image data (unknown PNG filter)")
            pos += piece.size
    except zlib.error as exc:
        raise ValueError(f"corrupt image data ({exc})") from None
    if pos < total or not inflate.eof:
        raise ValueError("truncated file")
    return stream[: len(stream) - len(inflate.unused_data)]


_libtiff_quiet = False


def quiet_libtiff() -> None:
    """Switch off libtiff's messages (it prints "module: message" lines to the C stderr, beside our one
    line per bad file; Pillow's error says the file is bad). Done once, on the libtiff Pillow loaded."""
    global _libtiff_quiet
    if _libtiff_quiet:
        return
    _libtiff_quiet = True
    try:
        with open("/proc/self/maps") as maps:
            path = next((line.split()[-1] for line in maps if "/libtiff" in line), None)
    except OSError:
        path = None
    if path is None:
        path = ctypes.util.find_library("tiff")
    try:
        lib = ctypes.CDLL(path) if path else None
        for setter in (lib.TIFFSetErrorHandler, lib.TIFFSetWarningHandler) if lib else ():
            setter.restype, setter.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
            setter(None)
    except (OSError, AttributeError):  # another libtiff build: its lines may show, nothing else changes
        pass


def encode_png16(image: np.ndarray) -> bytes:
    """H x W x C (C in 1, 3, 4) uint16 as a 16-bit PNG, by OpenCV (BGR order on its side).

    No copy of the pixels: OpenCV takes the array as it is, so for colour its R and B are swapped in
    place (a few rows at a time) for the encoder and swapped back afterwards, also when it fails. A
    6000x6000 RGB image would otherwise cost 206 MB per copy. The caller's array reads BGR while this
    runs (do not encode one array from two threads at once); read-only or non-contiguous arrays are
    copied once instead."""
    import cv2

    params = [cv2.IMWRITE_PNG_COMPRESSION, 6]
    if image.shape[2] == 1:
        return _imencode(np.ascontiguousarray(image), params)
    if not (image.flags.writeable and image.flags.c_contiguous):
        pixels = np.empty(image.shape, np.uint16)  # one copy, in BGR(A) order
        for k, channel in enumerate((2, 1, 0, 3)[: image.shape[2]]):
            pixels[:, :, k] = image[:, :, channel]
        return _imencode(pixels, params)
    _swap_red_blue(image)
    try:
        return _imencode(image, params)
    finally:
        _swap_red_blue(image)


def _swap_red_blue(image: np.ndarray, strip_bytes: int = 1 << 22) -> None:
    """Swap channels 0 and 2 in place, in strips of rows: the temporary is one channel of one strip."""
    rows = max(1, strip_bytes // max(1, image[0].nbytes))
    for top in range(0, image.shape[0], rows):
        strip = image[top : top + rows]
        red = strip[:, :, 0].copy()
        strip[:, :, 0] = strip[:, :, 2]
        strip[:, :, 2] = red


def _imencode(pixels: np.ndarray, params: list[int]) -> bytes:
    import cv2

    ok, data = cv2.imencode(".png", pixels, params)
    if not ok:
        raise ValueError("OpenCV's PNG encoder failed")
    return data.tobytes()


def format_limit(suffix: str, shape: tuple[int, ...]) -> str | None:
    """Why a format cannot hold an image of this shape (e.g. a GIF side over 65535), or None."""
    limit, name = _MAX_SIDE.get(suffix.lower(), (None, ""))
    if limit is None or max(shape[:2]) <= limit:
        return None
    return f"{shape[1]}x{shape[0]} pixels is over the {name} limit of {limit} pixels a side"
