"""Faults found by fuzzing the image reader and writer (issue 13): formats' size limits, long names,
symlink loops, corrupt 16-bit PNGs (decoded by OpenCV after genforge's own checks), libtiff's and
Pillow's messages. Each is one exception naming the file, and nothing on stderr."""

import io
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genforge.data.formats import PNG_SIGNATURE, png_chunk, png_header
from genforge.data.io import NAME_MAX, decode_image, encode_image, read_image, write_image
from genforge.errors import BadImageError, UserError

RNG = np.random.default_rng(0)


def png16(image: np.ndarray, filters=None, interlace=0, extra=b"", trns=None) -> bytes:
    """A 16-bit PNG of H x W x C image (C 2, 3, 4), rows unfiltered unless `filters` (a byte per row)."""
    h, w, c = image.shape
    rows = image.astype(">u2").view(np.uint8).reshape(h, -1)
    kinds = filters if filters is not None else [0] * h
    body = b"".join(bytes([k]) + row.tobytes() for k, row in zip(kinds, rows)) + extra
    ihdr = struct.pack(">IIBBBBB", w, h, 16, {2: 4, 3: 2, 4: 6}[c], 0, 0, interlace)
    chunks = [(b"IHDR", ihdr)] + ([(b"tRNS", trns)] if trns else []) + [(b"IDAT", zlib.compress(body))]
    return PNG_SIGNATURE + b"".join(png_chunk(k, v) for k, v in chunks + [(b"IEND", b"")])


def noisy_tiff() -> bytes:
    """An LZW TIFF with bytes flipped, on which libtiff prints 'Using code not yet in table.'."""
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, "TIFF", compression="tiff_lzw")
    data = bytearray(buffer.getvalue())
    for k in range(200, len(data) - 300, 97):
        data[k] ^= 0xFF
    return bytes(data)


@pytest.mark.parametrize("suffix, side, limit", [(".gif", 65536, 65535), (".webp", 16384, 16383),
                                                 (".jpg", 65501, 65500), (".jpeg", 65501, 65500)])
def test_sizes_a_format_cannot_hold_are_one_user_error(tmp_path, suffix, side, limit):
    wide = np.zeros((1, side, 3), np.uint8)
    with pytest.raises(UserError, match=f"cannot write image '.*x{suffix}': {side}x1 pixels is over the "
                                        f".* limit of {limit} pixels a side"):
        write_image(tmp_path / f"x{suffix}", wide)
    with pytest.raises(UserError, match="over the"):
        encode_image(wide, suffix)
    assert list(tmp_path.iterdir()) == []
    write_image(tmp_path / f"ok{suffix}", np.zeros((1, limit, 3), np.uint8))  # the limit itself fits
    assert read_image(tmp_path / f"ok{suffix}").shape[:2] == (1, limit)


def test_long_names_keep_a_short_temp_name_and_too_long_is_one_error(tmp_path, monkeypatch):
    image = np.zeros((2, 2, 3), np.uint8)
    longest = "é" * ((NAME_MAX - 4) // 2) + "x.png"  # multi-byte: the limit is in bytes
    assert len(os.fsencode(longest)) == NAME_MAX
    write_image(tmp_path / longest, image)
    assert os.listdir(tmp_path) == [longest]
    with pytest.raises(UserError, match=r"file name too long \(256 bytes, the limit is 255\)"):
        write_image(tmp_path / ("y" * 252 + ".png"), image)

    def no_space(src, dst):
        raise OSError(28, "No space left on device")

    def unlink_fails(self, missing_ok=False):
        raise OSError(36, "File name too long")

    monkeypatch.setattr(os, "replace", no_space)
    monkeypatch.setattr(Path, "unlink", unlink_fails)  # the cleanup fails too: the first error is reported
    with pytest.raises(UserError, match="No space left on device"):
        write_image(tmp_path / "z.png", image)


def test_symlink_loops_are_one_error(tmp_path):
    os.symlink("self.png", tmp_path / "self.png")
    os.symlink("b.png", tmp_path / "a.png")
    os.symlink("a.png", tmp_path / "b.png")
    for name in ("self.png", "a.png"):
        with pytest.raises(BadImageError, match=f"'{tmp_path / name}': symlink loop"):
            read_image(tmp_path / name)


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_16_bit_paeth_png_decodes_natively_and_exactly(channels, capfd):
    image = RNG.integers(0, 65536, (40, 33, channels)).astype(np.uint16)
    rows = image.astype(">u2").view(np.uint8).reshape(40, -1).astype(np.int16)
    bpp = 2 * channels
    a, b, c = np.zeros_like(rows), np.zeros_like(rows), np.zeros_like(rows)
    a[:, bpp:], b[1:], c[1:, bpp:] = rows[:, :-bpp], rows[:-1], rows[:-1, :-bpp]
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    predicted = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    filtered = ((rows - predicted) & 255).astype(np.uint8)
    body = b"".join(b"\4" + row.tobytes() for row in filtered)
    ihdr = struct.pack(">IIBBBBB", 33, 40, 16, {2: 4, 3: 2, 4: 6}[channels], 0, 0, 0)
    data = PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(body)) + png_chunk(b"IEND", b"")
    expected = image[:, :, [0, 0, 0, 1]] if channels == 2 else image
    np.testing.assert_array_equal(decode_image(data), expected)
    assert capfd.readouterr().err == ""


def test_16_bit_colour_key_becomes_alpha():
    image = RNG.integers(0, 65536, (4, 5, 3)).astype(np.uint16)
    image[1, 2] = (7, 8, 9)
    rgba = decode_image(png16(image, trns=struct.pack(">HHH", 7, 8, 9)))
    assert rgba.shape == (4, 5, 4) and rgba[1, 2, 3] == 0 and (np.delete(rgba[..., 3].ravel(), 7) == 65535).all()


def _raw(width, height, idat: bytes, method=0) -> bytes:
    """A 16-bit RGB PNG with these IHDR fields and IDAT payload, every CRC right."""
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, method, 0, 0)
    return PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def test_corrupt_16_bit_pngs_are_one_line_and_libpng_stays_quiet(capfd):
    image = RNG.integers(0, 65536, (6, 5, 3)).astype(np.uint16)
    rows = b"".join(b"\0" + row.tobytes() for row in image.astype(">u2").view(np.uint8).reshape(6, -1))
    bad_crc = bytearray(png16(image))
    bad_crc[-20] ^= 1
    cases = {
        "unknown PNG filter": png16(image, filters=[0, 0, 9, 0, 0, 0]),
        "more pixel data than the header declares": png16(image, extra=b"\0" * 40),
        "truncated file": _raw(5, 7, zlib.compress(rows)),  # the rows of 6 under a header of 7
        "CRC mismatch": bytes(bad_crc),
        "corrupt image data": _raw(5, 6, b"\x78\x9c" + b"\xff" * 30),  # not deflate data
        "corrupt PNG header": _raw(5, 6, zlib.compress(rows), method=1),  # compression method 1
        "truncated": png16(image)[:-30],
    }
    for reason, data in cases.items():
        with pytest.raises(BadImageError, match=f"bad image 'f.png': .*{reason}"):
            decode_image(data, name="f.png")
    np.testing.assert_array_equal(decode_image(_raw(5, 6, zlib.compress(rows))), image)
    assert capfd.readouterr().err == ""


def test_16_bit_size_is_checked_before_inflating(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("inflated before the size check")

    monkeypatch.setattr(zlib, "decompressobj", never)
    data = png16(np.zeros((30, 40, 3), np.uint16))
    with pytest.raises(BadImageError, match=r"too large \(40x30 pixels, limit 1000\)"):
        decode_image(data, max_pixels=1000)


def test_libtiff_messages_stay_off_stderr(tmp_path, capfd):
    (tmp_path / "noisy.tif").write_bytes(noisy_tiff())
    with pytest.raises(BadImageError, match="noisy.tif': corrupt image data"):
        read_image(tmp_path / "noisy.tif")
    assert capfd.readouterr().err == ""


def test_16_bit_colour_round_trips_through_opencv(tmp_path):
    for channels in (1, 3, 4):
        image = RNG.integers(0, 65536, (9, 11, channels)).astype(np.uint16)
        write_image(tmp_path / "x.png", image)
        with Image.open(tmp_path / "x.png") as im:  # a standard 16-bit PNG, as other readers see it
            assert im.size == (11, 9)
        np.testing.assert_array_equal(read_image(tmp_path / "x.png"), image)


def _png(image: np.ndarray, mode: str | None = None) -> bytes:
    """A PNG as genforge writes it (Pillow for 8 bits and 16-bit grey, OpenCV for 16-bit colour), or
    through Pillow in `mode` (P: palette)."""
    if mode is None:
        return encode_image(image, ".png")
    buffer = io.BytesIO()
    Image.fromarray(image).convert(mode).save(buffer, "PNG")
    return buffer.getvalue()


_GRADIENT = (np.arange(40 * 50).reshape(40, 50) * 37 % 65536).astype(np.uint16)
TRUNCATABLE = {  # bit depth and colour type -> the PNG's bytes
    "8-bit grey": _png((_GRADIENT >> 8).astype(np.uint8)[:, :, None]),
    "8-bit RGB": _png(np.stack([(_GRADIENT >> 8).astype(np.uint8)] * 3, 2)),
    "8-bit RGBA": _png(RNG.integers(0, 256, (40, 50, 4)).astype(np.uint8)),
    "8-bit palette": _png(RNG.integers(0, 256, (40, 50, 3)).astype(np.uint8), "P"),
    "16-bit grey": _png(_GRADIENT[:, :, None]),
    "16-bit RGB": _png(np.stack([_GRADIENT, _GRADIENT // 2, _GRADIENT // 3], 2)),
    "16-bit RGBA": _png(RNG.integers(0, 65536, (40, 50, 4)).astype(np.uint16)),
    "16-bit grey+alpha": png16(RNG.integers(0, 65536, (7, 9, 2)).astype(np.uint16)),
    "16-bit grey, by hand": PNG_SIGNATURE + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 9, 7, 16, 0, 0, 0, 0))
    + png_chunk(b"IDAT", zlib.compress(b"".join(b"\0" + RNG.bytes(18) for _ in range(7)))) + png_chunk(b"IEND", b""),
}


@pytest.mark.parametrize("kind", list(TRUNCATABLE))
@pytest.mark.parametrize("load_truncated", [False, True])
def test_truncated_pngs_are_truncated_whatever_the_depth(kind, load_truncated, tmp_path, monkeypatch):
    """Cut anywhere, including in the last 20 bytes (zlib's checksum, the last IDAT's CRC, IEND), where
    Pillow used to decode 8-bit and 16-bit grey files without a word, and whatever Pillow's global
    LOAD_TRUNCATED_IMAGES says."""
    from PIL import ImageFile
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", load_truncated)
    data = TRUNCATABLE[kind]
    depth_and_type = {"8-bit grey": (8, 0), "8-bit RGB": (8, 2), "8-bit RGBA": (8, 6), "8-bit palette": (8, 3),
                      "16-bit grey": (16, 0), "16-bit RGB": (16, 2), "16-bit RGBA": (16, 6),
                      "16-bit grey+alpha": (16, 4), "16-bit grey, by hand": (16, 0)}
    assert png_header(data)[2:4] == depth_and_type[kind]
    whole = decode_image(data)
    assert whole.shape[:2] in ((40, 50), (7, 9))
    cuts = sorted({len(data) // 3, len(data) // 2, *range(len(data) - 20, len(data))})
    for cut in cuts:
        with pytest.raises(BadImageError, match=r"^bad image 'upload': truncated file$"):
            decode_image(data[:cut])
    (tmp_path / "cut.png").write_bytes(data[:-7])  # from a file too, named in the message
    with pytest.raises(BadImageError, match=rf"^bad image '{re.escape(str(tmp_path))}/cut.png': truncated file$"):
        read_image(tmp_path / "cut.png")
    (tmp_path / "whole.png").write_bytes(data)
    np.testing.assert_array_equal(read_image(tmp_path / "whole.png"), whole)


def test_16_bit_colour_png_is_encoded_without_copying_the_pixels(tmp_path, monkeypatch):
    """The encoder takes the caller's array (R and B swapped in place for OpenCV, then back): no copy of
    the image, where the BGR copy and a contiguous copy of it added ~430 MB for a 6000x6000 output."""
    import tracemalloc

    import cv2
    y, x = np.mgrid[0:1200, 0:1000].astype(np.uint16)
    for channels in (3, 4):
        image = np.stack([x * 100, y * 90, x + y, 65535 - x][:channels], 2).astype(np.uint16)  # 7.2/9.6 MB
        before = image.copy()
        tracemalloc.start()
        data = encode_image(image, ".png")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < image.nbytes / 2, (peak, image.nbytes)  # a copy was 1x, and there were two
        np.testing.assert_array_equal(image, before)  # swapped back
        np.testing.assert_array_equal(decode_image(data), before)
        frozen = before.copy()
        frozen.flags.writeable = False  # read-only, or not contiguous: one copy, the same file
        assert encode_image(frozen, ".png") == data
        assert encode_image(before.repeat(2, axis=1)[:, ::2], ".png") == data

    def fail(*args, **kwargs):
        raise cv2.error("no space in the encoder")
    monkeypatch.setattr(cv2, "imencode", fail)
    with pytest.raises(UserError, match="the png encoder failed"):
        write_image(tmp_path / "x.png", image)
    np.testing.assert_array_equal(image, before)  # and back after a failure too
    assert not list(tmp_path.iterdir())
