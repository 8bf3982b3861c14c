"""One bad file never stops a batch (issue 13), through the real `upscale` / `translate` commands: outputs
over a format's size limit, names near or over NAME_MAX, symlink loops, corrupt TIFFs and 16-bit PNGs,
decompression bombs, write errors. Each bad file is exactly one `error:` line (a size fallback one
`note:` line), nothing else reaches stderr, later files are written and the exit code is 1."""

import argparse
import io
import os
import re
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from genforge.data.formats import PNG_SIGNATURE, png_chunk
from genforge.data.io import read_image, write_image
from genforge.deploy.files import process_files
from genforge.errors import UserError
from tests.conftest import random_folder, run_cli
from tests.data.test_io_faults import noisy_tiff, png16


@pytest.fixture(scope="module")
def sr_model(tmp_path_factory):
    return random_folder(tmp_path_factory.mktemp("sr"), "superres", "isrnet")


def lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def still(path, h, w, **save):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path, **save)


def test_one_bad_file_never_stops_the_batch(tmp_path, sr_model):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    still(src / "a_wide.gif", 1, 32768)  # x2: 65536 wide, over GIF's 65535
    still(src / "b_wide.webp", 1, 8192, lossless=True)  # 16384 > WebP's 16383
    still(src / "c_wide.jpg", 1, 32751)  # 65502 > JPEG's 65500
    long_name = "d" * 235 + ".png"  # the temporary name used to overflow NAME_MAX
    still(src / long_name, 4, 4)
    os.symlink("e_self.png", src / "e_self.png")
    os.symlink("e_loop2.png", src / "e_loop1.png")
    os.symlink("e_loop1.png", src / "e_loop2.png")
    (src / "f_libtiff.tif").write_bytes(noisy_tiff())  # libtiff prints to the C stderr
    buffer = io.BytesIO()
    still(buffer, 64, 64, format="TIFF", compression="tiff_lzw")
    (src / "g_warns.tif").write_bytes(buffer.getvalue()[:2000])  # Pillow warns "Corrupt EXIF data"
    ihdr = struct.pack(">IIBBBBB", 9500, 9500, 8, 0, 0, 0, 0)  # over Pillow's bomb warning, under 2x
    (src / "h_bomb.png").write_bytes(PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0"))
                                     + png_chunk(b"IEND", b""))
    image16 = np.random.default_rng(1).integers(0, 65536, (4, 4, 3)).astype(np.uint16)
    (src / "i_filter16.png").write_bytes(png16(image16, filters=[0, 7, 0, 0]))  # libpng would print
    still(src / "z_ok.png", 4, 4)

    r = run_cli("upscale", sr_model, src, "-o", out, "--max-pixels", 1_000_000, "--no-progress")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "Warning" not in r.stderr and "tempfile.tif" not in r.stderr
    assert "libpng" not in r.stderr
    notes = [line for line in lines(r.stderr) if line.startswith("note: ")]
    errors = [line for line in lines(r.stderr) if line.startswith("error: ")]
    assert len(notes) + len(errors) == len(lines(r.stderr)), r.stderr
    assert notes == [
        f"note: a_wide.gif: 65536x2 pixels is over the GIF limit of 65535 pixels a side; writing {out / 'a_wide.png'} "
        "instead",
        f"note: b_wide.webp: 16384x2 pixels is over the WebP limit of 16383 pixels a side; writing "
        f"{out / 'b_wide.png'} instead",
        f"note: c_wide.jpg: 65502x2 pixels is over the JPEG limit of 65500 pixels a side; writing {out / 'c_wide.png'} "
        "instead"]
    loop = "symlink loop (too many levels of symbolic links)"
    assert errors == [
        f"error: bad image '{src / 'e_loop1.png'}': {loop}",
        f"error: bad image '{src / 'e_loop2.png'}': {loop}",
        f"error: bad image '{src / 'e_self.png'}': {loop}",
        f"error: bad image '{src / 'f_libtiff.tif'}': corrupt image data (decoder error -2)",
        f"error: bad image '{src / 'g_warns.tif'}': not an image or unsupported format",
        f"error: bad image '{src / 'h_bomb.png'}': too large (9500x9500 pixels, limit 1000000)",
        f"error: bad image '{src / 'i_filter16.png'}': corrupt image data (unknown PNG filter)"]
    assert sorted(p.name for p in out.iterdir()) == ["a_wide.png", "b_wide.png", "c_wide.png", long_name, "z_ok.png"]
    assert read_image(out / "a_wide.png").shape == (2, 65536, 3) and read_image(out / "z_ok.png").shape == (8, 8, 3)
    assert r.stdout.strip().endswith("; 7 failed")


def test_an_output_name_over_name_max_is_one_error(tmp_path, sr_model):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    still(src / ("n" * 250 + ".png"), 4, 4)  # 254 bytes: readable; with _x2, 257: not writable
    still(src / "ok.png", 4, 4)
    r = run_cli("upscale", sr_model, src, "-o", out, "--suffix", "_x2", "--no-progress")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert lines(r.stderr) == [f"error: cannot write image '{out / ('n' * 250 + '_x2.png')}': file name too long "
                               "(257 bytes, the limit is 255)"]
    assert os.listdir(out) == ["ok_x2.png"]  # and no temporary file left behind


def test_o_with_an_image_extension_is_one_file(tmp_path, sr_model, tiny_models):
    still(tmp_path / "a.png", 32, 24)
    r = run_cli("upscale", sr_model, tmp_path / "a.png", "-o", tmp_path / "big.jpg", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "big.jpg").is_file() and read_image(tmp_path / "big.jpg").shape == (64, 48, 3)
    r = run_cli("translate", tiny_models["tiny-cyclegan"], tmp_path / "a.png", "-o", tmp_path / "t.webp",
                "--no-progress")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "t.webp").is_file() and read_image(tmp_path / "t.webp").shape == (32, 24, 3)


def test_o_file_takes_one_input_and_its_own_format(tmp_path):
    for name in ("a.png", "b.png"):
        write_image(tmp_path / name, np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(UserError, match=f"^-o {tmp_path / 'two.png'}: an image file takes one input image, not 2; "
                                        "give a folder as -o for several$"):
        process_files([str(tmp_path / "a.png"), str(tmp_path / "b.png")], str(tmp_path / "two.png"), lambda x: x)
    with pytest.raises(UserError, match="the output file's extension is its format"):
        process_files([str(tmp_path / "a.png")], str(tmp_path / "o.png"), lambda x: x, ext="jpg", progress=False)
    assert not (tmp_path / "two.png").exists() and not (tmp_path / "o.png").exists()
    with pytest.raises(UserError, match=f"-o {tmp_path / 'a.png' / 'sub'}: cannot create the output folder: Not a "
                                        "directory"):
        process_files([str(tmp_path / "b.png")], str(tmp_path / "a.png" / "sub"), lambda x: x, progress=False)
    (tmp_path / "folder.png").mkdir()  # an existing folder with an image-like name stays a folder
    assert process_files([str(tmp_path / "a.png")], str(tmp_path / "folder.png"), lambda x: x, progress=False) == (1, 0)
    assert (tmp_path / "folder.png" / "a.png").is_file()


def test_upscale_self_ensemble_is_eval_srs(tmp_path, sr_model):
    from genforge.deploy.upscaler import Upscaler, ensemble_x8
    lr = np.random.default_rng(2).integers(0, 255, (9, 7, 3), dtype=np.uint8)
    write_image(tmp_path / "lr.png", lr)
    r = run_cli("upscale", sr_model, tmp_path / "lr.png", "-o", tmp_path / "se.png", "--self-ensemble",
                "--no-progress")
    assert r.returncode == 0, r.stderr
    up = Upscaler(str(sr_model), device="cpu")
    expected = ensemble_x8(up.upscale_array, lr)
    got = read_image(tmp_path / "se.png")
    assert got.shape == (18, 14, 3) and np.abs(got.astype(int) - expected).max() <= 1
    assert np.abs(up.upscale_array(lr).astype(int) - expected).max() > 1  # the ensemble did something


def test_write_errors_fail_one_file_each(tmp_path, monkeypatch, capsys):
    for name in ("a.png", "b.png", "c.png", "d.png"):
        write_image(tmp_path / "in" / name, np.zeros((2, 2, 3), np.uint8))
    faults = iter([PermissionError(13, "Permission denied"), OSError(28, "No space left on device"), None])
    real_replace = os.replace

    def replace(src, dst):
        fault = next(faults, None)
        if fault:
            raise fault
        real_replace(src, dst)

    def model(image):
        model.calls += 1
        if model.calls == 3:
            raise RuntimeError("the network broke\nsecond line")
        return image

    model.calls = 0
    monkeypatch.setattr(os, "replace", replace)
    assert process_files([str(tmp_path / "in")], str(tmp_path / "out"), model, progress=False) == (1, 3)
    out = tmp_path / "out"
    assert lines(capsys.readouterr().err) == [
        f"error: cannot write image '{out / 'a.png'}': Permission denied",
        f"error: cannot write image '{out / 'b.png'}': No space left on device",
        f"error: {tmp_path / 'in' / 'c.png'}: RuntimeError: the network broke"]
    assert os.listdir(out) == ["d.png"]


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # genforge's own filter, as at run time
def test_python_api_has_the_clis_pixel_limit(tmp_path, sr_model, tiny_models):
    """genforge.load(...).upscale / translate / interpolate on a path refuse what the CLI refuses, from the
    header and at once (a bit-flipped GIF declaring 12288x12288 took 148 s and 3.6 GB); max_pixels= changes
    the limit, None lifts it."""
    import time

    import genforge
    from genforge.data.io import DEFAULT_MAX_PIXELS
    from genforge.deploy.files import add_output_options
    from genforge.errors import ImageTooLargeError
    from tests.conftest import random_folder

    parser = argparse.ArgumentParser()
    add_output_options(parser, ext_help="")
    assert parser.parse_args([]).max_pixels == DEFAULT_MAX_PIXELS == 100_000_000
    buffer = io.BytesIO()
    still(buffer, 8, 8, format="GIF")
    data = bytearray(buffer.getvalue())
    data[6:10] = struct.pack("<HH", 12288, 12288)  # the logical screen: 151 M pixels, under Pillow's bomb error
    (tmp_path / "flipped.gif").write_bytes(bytes(data))
    still(tmp_path / "small.png", 24, 32)
    flipped, small = tmp_path / "flipped.gif", str(tmp_path / "small.png")
    too_large = (rf"^bad (image|label map) '{re.escape(str(flipped))}': too large \(12288x12288 pixels, limit "
                 r"100000000\); pass max_pixels= a larger limit, or None, to read it$")
    up = genforge.load(str(sr_model), device="cpu")
    tr = genforge.load(str(tiny_models["tiny-cyclegan"]), device="cpu")
    spade = genforge.load(str(tiny_models["tiny-spade"]), device="cpu")
    vfi = genforge.load(str(random_folder(tmp_path, "interpolation", "vfinet")), device="cpu")
    start = time.perf_counter()
    for call in (lambda **kw: up.upscale(flipped, **kw), lambda **kw: tr.translate(flipped, **kw),
                 lambda **kw: spade.translate(flipped, **kw), lambda **kw: vfi.interpolate(small, flipped, **kw),
                 lambda **kw: tr.translate(np.zeros((32, 32, 3), np.uint8), style=flipped, **kw)):
        with pytest.raises(ImageTooLargeError, match=too_large):
            call()
        with pytest.raises(ImageTooLargeError, match=r"too large \(12288x12288 pixels, limit 1000\)"):
            call(max_pixels=1000)
    assert time.perf_counter() - start < 10  # refused from the header, nothing decoded
    with pytest.raises(ImageTooLargeError, match=r"too large \(32x24 pixels, limit 100\)"):
        up.upscale(small, max_pixels=100)
    assert up.upscale(small, max_pixels=None).size == (64, 48)
    assert up.upscale(small).size == (64, 48) and tr.translate(small, max_pixels=768).size == (32, 24)
    assert vfi.interpolate(small, small, max_pixels=None).size == (32, 24)
