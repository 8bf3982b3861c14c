"""Reading and writing single image files.

Every image in genforge passes through here as an H x W x C numpy array (C in 1, 3, 4), so the
rest of the package never deals with Pillow modes. 16-bit data stays 16-bit end to end: Pillow has
no 48/64-bit modes (it drops 16-bit RGB(A) PNGs to 8 bits and cannot write them), so those go
through OpenCV's libpng (see ``formats.decode_png16``). Every PNG is checked complete (each chunk
through IEND, CRCs right) before it is decoded, whatever its depth, so a cut file is always "truncated
file", never a picture with its last bytes missing. Any unreadable file becomes one
``BadImageError`` whose message names the file, so a bad file in a large folder is reported as
one line instead of a traceback, and the imaging libraries' own warnings are kept off stderr.
"""

from __future__ import annotations

import errno
import io
import os
import secrets
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from genforge.data.formats import (
    PNG_SIGNATURE,
    check_png_complete,
    decode_png16,
    encode_png16,
    format_limit,
    png_header,
    quiet_libtiff,
)
from genforge.errors import BadImageError, ImageTooLargeError, UserError

# Our own max_pixels check (from the header, before decoding) is the size guard: Pillow's bomb
# warning would only add a second line. Pillow's UserWarnings ("Corrupt EXIF data", ...) describe
# files that either decode (then the picture is what counts) or fail (then the error says why).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")

IMAGE_EXTENSIONS = {
    ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm",
}  # fmt: skip

_ORIENTATION_TAG = 0x0112
_NO_ALPHA = {".jpg", ".jpeg", ".bmp", ".ppm", ".pgm"}  # Pillow cannot store (or re-read) alpha
_GREY16 = {".png", ".tif", ".tiff", ".ppm", ".pgm"}  # Pillow writes 16-bit grey ("I;16")
_LABEL_MODES = ("1", "L", "P", "I;16", "I;16L", "I;16B", "I")  # one raw value per pixel: the class id
_SAVE_OPTIONS = {".jpg": {"quality": 95}, ".jpeg": {"quality": 95}, ".webp": {"lossless": True}}
NAME_MAX = 255  # bytes in one file name on Linux, macOS and Windows file systems
DEFAULT_MAX_PIXELS = 100_000_000
"""The pixel limit of every entry point that reads files: the CLI's --max-pixels default and the Python
API's max_pixels=. A header declaring more is refused before any pixel is decoded (a bit-flipped GIF
can declare 65535x65535)."""


def read_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image file to H x W x C uint8 (or uint16 for 16-bit sources).

    C is 1 (grey), 3 (RGB) or 4 (RGBA; grey+alpha is replicated to RGBA so callers only handle
    three layouts). EXIF orientation is applied, so the array is the picture as people see it.
    ``max_pixels`` is checked from the header before any pixel is decoded.
    """
    path = Path(path)
    try:
        return _read(path, max_pixels)
    except Exception as exc:  # noqa: BLE001 - every decoder failure is the file's fault
        raise _bad_image(path, exc) from exc


def decode_image(data: bytes, *, max_pixels: int | None = None, name: str = "upload") -> np.ndarray:
    """``read_image`` for bytes already in memory (an HTTP upload); ``name`` labels errors."""
    try:
        return _read(bytes(data), max_pixels)
    except Exception as exc:  # noqa: BLE001 - every decoder failure is the data's fault
        raise _bad_image(name, exc) from exc


def read_label_map(source: str | os.PathLike | bytes, *, max_pixels: int | None = None,
                   name: str | None = None) -> np.ndarray:
    """A semantic label map: H x W class ids, the raw values of a single-channel image.

    Palette images give their indices, not their colours, and colour images are refused: their
    colours would need an id table the file does not carry. EXIF orientation and ``max_pixels``
    are handled as in ``read_image``, so a map stays aligned with its photo. The result is uint8
    when every id fits, else int32, so that wide or negative ids reach the caller's range check
    instead of wrapping around.
    """
    label = name or (str(source) if not isinstance(source, bytes) else "upload")
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            _check_pixels(im.width, im.height, max_pixels)
            if im.mode not in _LABEL_MODES:
                raise BadImageError(f"label map '{label}' is {im.mode}, not single-channel: a label map must "
                                    "hold one class id per pixel (grey L, palette P or 16-bit PNG), not colours; "
                                    "convert colours to ids first")
            if im.format == "TIFF":
                quiet_libtiff()
            im.load()
            ids = _orient(np.asarray(im), im.getexif().get(_ORIENTATION_TAG, 1))
    except BadImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - every decoder failure is the file's fault
        raise _bad_image(label, exc, "label map") from exc
    narrow = ids.min(initial=0) >= 0 and ids.max(initial=0) < 256
    return np.ascontiguousarray(ids.astype(np.uint8 if narrow else np.int32))


def _read(source: Path | bytes, max_pixels: int | None) -> np.ndarray:
    """Decode a file (read lazily, header first) or bytes in memory through the same code."""
    in_memory = isinstance(source, bytes)
    if in_memory:
        start = source[:33]
    else:
        with open(source, "rb") as f:
            start = f.read(33)
    if not start:
        raise ValueError("empty file")
    head = png_header(start)
    if head is not None and head[2] == 16 and head[3] != 0:  # 16-bit colour: Pillow drops bits
        image, exif_bytes = decode_png16(source if in_memory else source.read_bytes(), max_pixels)
        orientation = 1
        if exif_bytes:
            exif = Image.Exif()
            exif.load(exif_bytes)
            orientation = exif.get(_ORIENTATION_TAG, 1)
    elif start.startswith(PNG_SIGNATURE) and head is None:
        raise ValueError("truncated or corrupt PNG header")
    else:
        with Image.open(io.BytesIO(source) if in_memory else source) as im:  # lazy: header only so far
            _check_pixels(im.width, im.height, max_pixels)
            if head is not None:  # every chunk there, CRCs right: Pillow alone decodes PNGs cut in the last bytes
                with io.BytesIO(source) if in_memory else open(source, "rb") as f:
                    check_png_complete(f)
            if im.format == "TIFF":
                quiet_libtiff()
            im.load()
            orientation = im.getexif().get(_ORIENTATION_TAG, 1)
            image = _pil_to_array(im)
    if image.shape[2] == 2:
        image = image[:, :, [0, 0, 0, 1]]
    return np.ascontiguousarray(_orient(image, orientation))


def _check_pixels(width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ValueError(f"too large ({width}x{height} pixels, limit {max_pixels})")


def _pil_to_array(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16)[:, :, None]
    if mode == "I":
        array = np.asarray(im)
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise ValueError("32-bit integer pixels outside 0..65535 are unsupported")
        return array.astype(np.uint16)[:, :, None]
    if mode == "F":
        array = np.asarray(im)
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise ValueError("floating-point pixels outside [0, 1] are unsupported")
        return from_float(array, np.uint16)[:, :, None]
    transparent = "transparency" in im.info
    if mode in ("1", "L") and not transparent:
        target = "L"
    elif mode in ("LA", "La"):
        target = "LA"
    elif mode in ("PA", "RGBA", "RGBa") or transparent:
        target = "RGBA"
    else:  # RGB, P, CMYK, YCbCr, LAB, HSV, RGBX ...
        target = "RGB"
    array = np.asarray(im if im.mode == target else im.convert(target))
    return array[:, :, None] if array.ndim == 2 else array


def _orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (same result as ``PIL.ImageOps.exif_transpose``)."""
    if orientation in (5, 6, 7, 8):
        image = image.swapaxes(0, 1)  # transpose; then flip to reach the other three
    flips = {2: (1,), 3: (0, 1), 4: (0,), 6: (1,), 7: (0, 1), 8: (0,)}.get(orientation, ())
    return np.flip(image, flips) if flips else image


def _bad_image(name, exc: BaseException, what: str = "image") -> BadImageError:
    reason = _reason(exc)
    kind = ImageTooLargeError if reason.startswith("too large") else BadImageError
    return kind(f"bad {what} '{name}': {reason}")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        return "symlink loop (too many levels of symbolic links)"
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
        return "file name too long"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image or unsupported format"
    if isinstance(exc, Image.DecompressionBombError):
        return "too large (decompression bomb guard)"
    text = (str(exc).strip().splitlines() or [""])[0]
    if isinstance(exc, EOFError) or "truncated" in text.lower():
        return "truncated file"
    if text.startswith("decoder error"):  # Pillow's code for what libtiff, libjpeg... refused
        return f"corrupt image data ({text})"
    return text or type(exc).__name__


def write_image(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write H x W x C or H x W uint8/uint16 pixels; the format follows the suffix.

    The file appears complete or not at all (temp file + ``os.replace``), so a crash or a
    full disk never leaves a half-written sample that a later run would trip over. What a
    format cannot store is converted: 16 bits fall to 8 except for PNG (all) and grey
    TIFF/PPM/PGM, and alpha is composited on white for JPEG, BMP, PPM and PGM. A size the
    format cannot hold (see ``format_limit``) or any failure is one ``UserError`` naming the file.
    """
    path = Path(path)
    image = _check_array(array)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        known = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise UserError(f"cannot write image '{path}': unknown format '{suffix}' (use {known})")
    size = len(os.fsencode(path.name))
    reason = format_limit(suffix, image.shape) or (
        f"file name too long ({size} bytes, the limit is {NAME_MAX})" if size > NAME_MAX else None)
    if reason:
        raise UserError(f"cannot write image '{path}': {reason}")
    try:
        data = _encode(image, suffix)
    except Exception as exc:  # noqa: BLE001 - an encoder refusing these pixels fails this file only
        raise UserError(f"cannot write image '{path}': the {suffix[1:]} encoder failed ({_reason(exc)})") from exc
    write_file(path, data, what="image")


def write_file(path: str | os.PathLike, data: bytes, *, what: str = "file") -> None:
    """Write bytes whole or not at all: a hidden temporary name beside the target (short enough for
    any name), then a rename. Any OS failure is one UserError naming the file (`what`: its kind)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"cannot write {what} '{path}': it is a folder; give a file name")
    tail = f".{os.getpid()}.{secrets.token_hex(4)}.tmp"
    tmp = path.with_name("." + os.fsdecode(os.fsencode(path.name)[: NAME_MAX - 1 - len(tail)]) + tail)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise UserError(f"cannot write {what} '{path}': {exc.strerror or exc}") from exc
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp: Path) -> None:
    """Clean up a temp file; never raises, so the error that led here is the one reported."""
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass


def encode_image(array: np.ndarray, fmt: str = ".png") -> bytes:
    """The bytes ``write_image`` would write for a file with suffix ``fmt`` (e.g. an HTTP reply)."""
    suffix = fmt.lower() if fmt.startswith(".") else f".{fmt.lower()}"
    if suffix not in IMAGE_EXTENSIONS:
        raise UserError(f"cannot encode image: unknown format '{suffix}'")
    image = _check_array(array)
    reason = format_limit(suffix, image.shape)
    if reason:
        raise UserError(f"cannot encode image: {reason}")
    return _encode(image, suffix)


def _check_array(array: np.ndarray) -> np.ndarray:
    image = np.asarray(array)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or 0 in image.shape:
        raise ValueError(f"expected an H x W x C image with C in 1, 3, 4; got {image.shape}")
    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected uint8 or uint16 pixels, got {image.dtype}")
    return image


def _encode(image: np.ndarray, suffix: str) -> bytes:
    if image.dtype == np.uint16 and suffix == ".png":  # Pillow cannot write 16-bit colour
        return encode_png16(image)
    if image.shape[2] == 4 and suffix in _NO_ALPHA:
        pixels = to_float(image)
        rgb, alpha = pixels[:, :, :3], pixels[:, :, 3:]
        image = from_float(rgb * alpha + (1.0 - alpha), image.dtype)
    if image.dtype == np.uint16 and not (image.shape[2] == 1 and suffix in _GREY16):
        image = from_float(to_float(image), np.uint8)
    pil = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
    buffer = io.BytesIO()
    pil.save(buffer, format=Image.registered_extensions()[suffix], **_SAVE_OPTIONS.get(suffix, {}))
    return buffer.getvalue()


def to_float(array: np.ndarray) -> np.ndarray:
    """uint8/uint16 pixels to float32 in [0, 1]; the scale follows the dtype, not the data."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if array.dtype == np.bool_ or np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32)
    raise TypeError(f"cannot convert {array.dtype} pixels to float")


def from_float(array: np.ndarray, dtype: type | np.dtype = np.uint8) -> np.ndarray:
    """Float pixels in [0, 1] to uint8/uint16, rounding to nearest and clipping out-of-range."""
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.uint16):
        raise TypeError(f"cannot convert float pixels to {dtype}")
    top = np.iinfo(dtype).max
    scaled = np.nan_to_num(np.asarray(array, np.float32), nan=0.0) * top
    return np.rint(np.clip(scaled, 0, top)).astype(dtype)


def list_image_files(root: str | os.PathLike) -> list[Path]:
    """Image files under ``root`` by extension, recursively, in a stable sorted order.

    Hidden files and folders are skipped: they are editor backups, ``.git`` or our own
    half-written temp files, never training data. Symlinked folders are followed once.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"not a directory: '{root}'")
    found, seen = [], set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a symlink loop or a second link to the same folder
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [
            Path(folder, name)
            for name in files
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS
        ]
    return sorted(found)
