import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from genforge.data.formats import PNG_SIGNATURE, png_chunk
from genforge.data.io import from_float, list_image_files, read_image, read_label_map, to_float, write_image
from genforge.errors import BadImageError, ImageTooLargeError, UserError

RNG = np.random.default_rng(0)


def random_image(h, w, c, dtype=np.uint8):
    return RNG.integers(0, np.iinfo(dtype).max + 1, (h, w, c), dtype=np.int64).astype(dtype)


@pytest.mark.parametrize(
    "channels, dtype",
    [(1, np.uint8), (3, np.uint8), (4, np.uint8), (1, np.uint16), (3, np.uint16), (4, np.uint16)],
)
def test_png_round_trip_is_exact(tmp_path, channels, dtype):
    image = random_image(13, 21, channels, dtype)
    write_image(tmp_path / "x.png", image)
    back = read_image(tmp_path / "x.png")
    assert back.dtype == dtype and back.shape == image.shape
    np.testing.assert_array_equal(back, image)


def test_two_dimensional_input_reads_back_as_one_channel(tmp_path):
    image = random_image(5, 6, 1)[:, :, 0]
    write_image(tmp_path / "g.png", image)
    np.testing.assert_array_equal(read_image(tmp_path / "g.png"), image[:, :, None])


def test_palette_becomes_rgb_or_rgba(tmp_path):
    pil = Image.fromarray(random_image(8, 9, 3)).convert("P")
    pil.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), np.asarray(pil.convert("RGB")))
    pil.save(tmp_path / "pt.png", transparency=0)
    assert read_image(tmp_path / "pt.png").shape == (8, 9, 4)


def test_grey_alpha_becomes_rgba_with_grey_replicated(tmp_path):
    la = random_image(6, 7, 2)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    back = read_image(tmp_path / "la.png")
    np.testing.assert_array_equal(back, la[:, :, [0, 0, 0, 1]])


def _png(width, height, ctype, body, interlace=0):
    ihdr = struct.pack(">IIBBBBB", width, height, 16, ctype, 0, 0, interlace)
    chunks = [(b"IHDR", ihdr), (b"IDAT", zlib.compress(body)), (b"IEND", b"")]
    return PNG_SIGNATURE + b"".join(png_chunk(k, v) for k, v in chunks)


def _filter_row(kind, cur, prev, bpp):
    """Reference PNG filter, straight from the specification."""
    out = []
    for i, value in enumerate(cur):
        a = cur[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        p = a + b - c
        paeth = min((abs(p - a), 0, a), (abs(p - b), 1, b), (abs(p - c), 2, c))[2]
        pred = [0, a, b, (a + b) // 2, paeth][kind]
        out.append((value - pred) & 255)
    return bytes([kind, *out])


def test_16_bit_decoder_handles_all_five_filters(tmp_path):
    image = random_image(10, 7, 4, np.uint16)
    rows = image.astype(">u2").view(np.uint8).reshape(10, -1).tolist()
    prev, body = [0] * len(rows[0]), b""
    for y, row in enumerate(rows):
        body += _filter_row(y % 5, row, prev, bpp=8)
        prev = row
    (tmp_path / "f.png").write_bytes(_png(7, 10, 6, body))
    np.testing.assert_array_equal(read_image(tmp_path / "f.png"), image)


ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def test_interlaced_16_bit_colour_decodes(tmp_path):
    image = random_image(11, 9, 3, np.uint16)
    body = b""
    for x0, y0, dx, dy in ADAM7:  # the seven Adam7 passes, rows unfiltered
        sub = image[y0::dy, x0::dx]
        if sub.size:
            body += b"".join(b"\0" + row.astype(">u2").tobytes() for row in sub)
    (tmp_path / "i.png").write_bytes(_png(9, 11, 2, body, interlace=1))
    np.testing.assert_array_equal(read_image(tmp_path / "i.png"), image)


def test_exif_orientation_6_rotates_jpeg(tmp_path):
    pil = Image.new("RGB", (40, 20), "red")  # 40 wide, 20 high
    exif = Image.Exif()
    exif[0x0112] = 6
    pil.save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert read_image(tmp_path / "r.jpg").shape == (40, 20, 3)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(random_image(5, 7, 3)).save(tmp_path / "o.png", exif=exif.tobytes())
    with Image.open(tmp_path / "o.png") as pil:
        expected = np.asarray(ImageOps.exif_transpose(pil))
    np.testing.assert_array_equal(read_image(tmp_path / "o.png"), expected)


IDS = np.array([[0, 1, 2, 255], [3, 3, 255, 0], [4, 1, 1, 2]], np.uint8)


@pytest.mark.parametrize("mode", ["L", "P", "I;16", "I"])
def test_label_map_is_the_raw_ids_of_every_single_channel_mode(tmp_path, mode):
    image = Image.fromarray(IDS.astype(np.uint16 if mode == "I;16" else np.int32 if mode == "I" else np.uint8))
    if mode == "P":
        image = Image.fromarray(IDS, "P")
        image.putpalette([(7 * i + 40) % 256 for i in range(768)])  # colours that are not the ids
    image.save(tmp_path / "ids.png" if mode != "I" else tmp_path / "ids.tif")
    path = tmp_path / ("ids.png" if mode != "I" else "ids.tif")
    with Image.open(path) as pil:
        assert pil.mode == mode
    ids = read_label_map(path)
    assert ids.dtype == np.uint8
    np.testing.assert_array_equal(ids, IDS)
    np.testing.assert_array_equal(read_label_map(path.read_bytes()), IDS)


def test_label_map_of_mode_1_and_wide_or_negative_ids(tmp_path):
    Image.fromarray(IDS > 1).save(tmp_path / "bits.png")
    np.testing.assert_array_equal(read_label_map(tmp_path / "bits.png"), (IDS > 1).astype(np.uint8))
    Image.fromarray(np.array([[0, 300]], np.uint16)).save(tmp_path / "wide.png")
    wide = read_label_map(tmp_path / "wide.png")
    assert wide.dtype == np.int32 and wide.tolist() == [[0, 300]]
    Image.fromarray(np.array([[-1, 3]], np.int32)).save(tmp_path / "negative.tif")
    negative = read_label_map(tmp_path / "negative.tif")  # not wrapped round to 255 (don't care)
    assert negative.dtype == np.int32 and negative.tolist() == [[-1, 3]]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_label_map_is_oriented_like_its_photo(tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    ids = np.arange(35, dtype=np.uint8).reshape(5, 7)
    Image.fromarray(ids, "L").save(tmp_path / "ids.png", exif=exif.tobytes())
    Image.fromarray(np.repeat(ids[:, :, None], 3, axis=2)).save(tmp_path / "photo.png", exif=exif.tobytes())
    np.testing.assert_array_equal(read_label_map(tmp_path / "ids.png"), read_image(tmp_path / "photo.png")[:, :, 0])


def test_label_map_refusals_name_the_file(tmp_path):
    write_image(tmp_path / "colour.png", random_image(3, 3, 3))
    with pytest.raises(BadImageError, match="colour.png' is RGB, not single-channel.*not colours"):
        read_label_map(tmp_path / "colour.png")
    (tmp_path / "junk.png").write_bytes(b"junk")
    with pytest.raises(BadImageError, match="bad label map '.*junk.png': not an image"):
        read_label_map(tmp_path / "junk.png")
    Image.fromarray(random_image(64, 64, 1)[:, :, 0], "L").save(tmp_path / "whole.png")
    with pytest.raises(BadImageError, match="bad label map 'image': truncated"):
        read_label_map((tmp_path / "whole.png").read_bytes()[:300], name="image")


def test_label_map_max_pixels_is_checked_from_the_header(tmp_path):
    huge = struct.pack(">IIBBBBB", 2000, 2000, 8, 0, 0, 0, 0)  # grey, with no pixel data to decode
    (tmp_path / "bomb.png").write_bytes(PNG_SIGNATURE + png_chunk(b"IHDR", huge) + png_chunk(b"IDAT", b"x"))
    with pytest.raises(ImageTooLargeError, match="bomb.png': too large"):
        read_label_map(tmp_path / "bomb.png", max_pixels=10**6)
    Image.fromarray(IDS, "L").save(tmp_path / "small.png")
    assert read_label_map(tmp_path / "small.png", max_pixels=12).shape == (3, 4)
    with pytest.raises(ImageTooLargeError, match="too large"):
        read_label_map((tmp_path / "small.png").read_bytes(), max_pixels=11)


def _bad_files(tmp_path):
    write_image(tmp_path / "ok.png", random_image(32, 32, 3))
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    write_image(tmp_path / "ok16.png", random_image(32, 32, 3, np.uint16))
    data16 = (tmp_path / "ok16.png").read_bytes()
    (tmp_path / "truncated16.png").write_bytes(data16[: len(data16) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello, not an image\n")
    return {
        "truncated.png": "truncated",
        "truncated16.png": "truncated",
        "empty.png": "empty",
        "text.png": "not an image",
        "missing.png": "no such file",
    }


def test_bad_files_raise_one_line_naming_the_file(tmp_path):
    for name, reason in _bad_files(tmp_path).items():
        with pytest.raises(BadImageError) as info:
            read_image(tmp_path / name)
        message = str(info.value)
        assert f"'{tmp_path / name}'" in message and reason in message
        assert "\n" not in message


def test_max_pixels_is_checked_from_the_header(tmp_path):
    # Headers claiming 100000 x 100000 pixels with almost no data: a size check after
    # decoding would fail differently (or exhaust memory).
    huge = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    (tmp_path / "bomb8.png").write_bytes(
        PNG_SIGNATURE + png_chunk(b"IHDR", huge) + png_chunk(b"IDAT", b"x")
    )
    (tmp_path / "bomb16.png").write_bytes(_png(100_000, 100_000, 2, b"\0"))
    for name in ("bomb8.png", "bomb16.png"):
        with pytest.raises(BadImageError, match="too large"):
            read_image(tmp_path / name, max_pixels=10**6)
    write_image(tmp_path / "small.png", random_image(10, 10, 3))
    assert read_image(tmp_path / "small.png", max_pixels=100).shape == (10, 10, 3)
    with pytest.raises(BadImageError, match="too large"):
        read_image(tmp_path / "small.png", max_pixels=99)


def test_write_is_atomic_and_creates_parents(tmp_path, monkeypatch):
    out = tmp_path / "a" / "b" / "x.png"
    write_image(out, random_image(4, 4, 3))
    write_image(out, random_image(4, 4, 3))  # overwrite in place
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.png"]

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(UserError, match="No space left"):
        write_image(tmp_path / "a" / "b" / "y.png", random_image(4, 4, 3))
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.png"]


def test_write_rejects_unknown_suffix_without_leaving_files(tmp_path):
    with pytest.raises(UserError, match="unknown format"):
        write_image(tmp_path / "x.xyz", random_image(4, 4, 3))
    assert list(tmp_path.iterdir()) == []


def test_jpeg_gets_rgb_on_white_and_8_bits(tmp_path):
    rgba = random_image(16, 16, 4)
    rgba[:, :, 3] = 0  # fully transparent: white after compositing
    write_image(tmp_path / "a.jpg", rgba)
    back = read_image(tmp_path / "a.jpg")
    assert back.shape == (16, 16, 3) and back.dtype == np.uint8 and back.min() >= 250
    grey16 = np.full((8, 8, 3), 65535, np.uint16)
    write_image(tmp_path / "b.jpg", grey16)
    assert read_image(tmp_path / "b.jpg").dtype == np.uint8


def test_float_conversions():
    assert to_float(np.array([0, 255], np.uint8)).tolist() == [0.0, 1.0]
    assert to_float(np.array([65535], np.uint16)).dtype == np.float32
    for dtype in (np.uint8, np.uint16):
        image = random_image(3, 4, 3, dtype)
        np.testing.assert_array_equal(from_float(to_float(image), dtype), image)
    assert from_float(np.array([-0.5, 0.5, 2.0]), np.uint8).tolist() == [0, 128, 255]


def test_list_image_files_is_sorted_recursive_and_skips_hidden(tmp_path):
    for rel in ["b.png", "a/c.JPG", "a/z/d.webp", ".hidden.png", ".git/e.png", "notes.txt"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in list_image_files(tmp_path)]
    assert found == ["a/c.JPG", "a/z/d.webp", "b.png"]
