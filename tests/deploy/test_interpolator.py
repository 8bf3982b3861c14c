"""The frame-interpolation wrapper (deploy/interpolator.py): arrays, the Python one-liner, ONNX, the
`interpolate` command on images and videos, the service route and `genforge eval`. A random-weights
tiny VFINet folder stands in for a trained model; clips are made here with PyAV."""

from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

import genforge
from genforge.cli import main
from genforge.data.io import decode_image, encode_image, write_image
from genforge.errors import UserError
from tests.conftest import make_clip, random_folder, run_cli


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return random_folder(tmp_path_factory.mktemp("vfi"), "interpolation", "vfinet")


@pytest.fixture(scope="module")
def vfi(folder):
    return genforge.load(str(folder), device="cpu")


def scene(k: int, w: int = 64, h: int = 48) -> np.ndarray:
    """A gradient with a square that moves 3 pixels right a frame."""
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 80)], axis=2).astype(np.uint8)
    x = (3 * k) % (w - 10)
    image[10:20, x:x + 10] = (240, 30, 30)
    return image


def clip(path, n: int, *, fps: int = 10, audio: bool = True):
    return make_clip(path, n, fps=fps, audio=audio, scene=scene)


def probe(path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = sum(1 for _ in c.decode(v))
        return {"frames": frames, "fps": v.average_rate, "size": (v.width, v.height),
                "duration": float(v.duration * v.time_base), "audio": [s.codec_context.name for s in c.streams.audio]}


def errors(stderr: str) -> list[str]:
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# -- arrays ----------------------------------------------------------------------------------------

def test_endpoints_are_the_inputs_and_t_is_checked(vfi):
    a, b = scene(0), scene(4)
    for t, want in ((0, a), (1.0, b)):
        out = vfi.interpolate_array(a, b, t)
        assert np.array_equal(out, want) and out is not want
    for t in (-0.1, 1.5, float("nan")):
        with pytest.raises(UserError, match="outside"):
            vfi.interpolate_array(a, b, t)


def test_shapes_dtypes_grey_rgba_and_16_bit(vfi):
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (37, 50, 3), dtype=np.uint8) for _ in range(2))  # not a multiple of 8
    mid = vfi.interpolate_array(a, b, 0.5)
    assert mid.shape == (37, 50, 3) and mid.dtype == np.uint8
    grey = vfi.interpolate_array(a[..., 0], b[..., 0], 0.3)
    assert grey.shape == (37, 50) and grey.dtype == np.uint8
    alpha_a, alpha_b = np.full((37, 50, 1), 255, np.uint8), np.zeros((37, 50, 1), np.uint8)
    rgba = vfi.interpolate_array(np.concatenate([a, alpha_a], 2), np.concatenate([b, alpha_b], 2), 0.25)
    assert rgba.shape == (37, 50, 4) and (rgba[..., 3] == 191).all()  # 0.75 * 255, blended by t
    assert np.array_equal(rgba[..., :3], vfi.interpolate_array(a, b, 0.25))
    a16, b16 = (x.astype(np.uint16) * 257 for x in (a, b))
    mid16 = vfi.interpolate_array(a16, b16, 0.5)
    assert mid16.dtype == np.uint16 and mid16.shape == (37, 50, 3)
    assert np.abs(mid16 / 257.0 - mid).max() <= 1.0


def test_different_sizes_or_depths_are_one_clear_error(vfi):
    with pytest.raises(UserError, match=r"differ in size: 64x48 and 50x37"):
        vfi.interpolate_array(scene(0), np.zeros((37, 50, 3), np.uint8))
    with pytest.raises(UserError, match="differ in bit depth: 8-bit and 16-bit"):
        vfi.interpolate_array(scene(0), scene(1).astype(np.uint16))


def test_python_one_liner(folder, tmp_path):
    write_image(tmp_path / "a.png", scene(0))
    write_image(tmp_path / "b.png", scene(2))
    genforge.load(str(folder)).interpolate(str(tmp_path / "a.png"), tmp_path / "b.png", t=0.5).save(tmp_path / "m.png")
    assert Image.open(tmp_path / "m.png").size == (64, 48)


def test_video_frames_stream_to_n_times_factor(vfi):
    frames = [scene(k) for k in range(4)]
    out = list(vfi.interpolate_frames(iter(frames), 3))
    assert len(out) == 12 and all(np.array_equal(out[3 * k], f) for k, f in enumerate(frames))
    assert all(np.array_equal(f, frames[-1]) for f in out[-3:])
    with pytest.raises(UserError, match="one frame only"):
        list(vfi.interpolate_frames(iter(frames[:1]), 2))
    with pytest.raises(UserError, match="at least 2"):
        list(vfi.interpolate_frames(iter(frames), 1))


def test_onnx_file_matches_torch(folder, vfi, tmp_path):
    from genforge.deploy.export import export_onnx
    result = export_onnx(str(folder), tmp_path / "vfi.onnx")
    assert max(result["max_abs_diff"].values()) <= 1e-4
    onnx = genforge.load(str(tmp_path / "vfi.onnx"))
    assert type(onnx) is type(vfi) and onnx.multiple == vfi.multiple
    x = torch.rand(2, 3, 37, 50, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(onnx._run(x[0], x[1], 0.4), vfi._run(x[0], x[1], 0.4), atol=1e-4)
    a, b = scene(0, 50, 37), scene(3, 50, 37)
    assert np.abs(onnx.interpolate_array(a, b, 0.4).astype(int) - vfi.interpolate_array(a, b, 0.4)).max() <= 1


# -- the command -------------------------------------------------------------------------------------

def test_cli_frames_between_two_images(folder, tmp_path):
    write_image(tmp_path / "a.png", scene(0))
    write_image(tmp_path / "b.png", scene(4))
    r = run_cli("interpolate", folder, tmp_path / "a.png", tmp_path / "b.png", "-n", "3", "-o", tmp_path / "frames")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["000001.png", "000002.png", "000003.png"]
    assert "t = 0.25, 0.5, 0.75" in r.stdout
    assert main(["interpolate", str(folder), str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--t", "0.3",
                 "-o", str(tmp_path / "mid.png")]) == 0
    assert Image.open(tmp_path / "mid.png").size == (64, 48)


@pytest.mark.parametrize("extra, message", [
    (["-n", "0"], "-n 0: at least 1"),
    (["--t", "1.5"], "outside [0, 1]"),
    (["--factor", "2"], "--factor applies to videos"),
    (["-n", "2", "-o", "one.png"], "names one image"),
])
def test_cli_bad_options_are_one_line(folder, tmp_path, capsys, extra, message):
    write_image(tmp_path / "a.png", scene(0))
    write_image(tmp_path / "b.png", scene(1))
    args = ["interpolate", str(folder), str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    args += extra if "-o" in extra else [*extra, "-o", str(tmp_path / "out")]
    assert main(args) == 1
    err = errors(capsys.readouterr().err)
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "one.png").exists()


def test_cli_different_sizes_is_one_line(folder, tmp_path):
    write_image(tmp_path / "a.png", scene(0))
    write_image(tmp_path / "b.png", scene(0, 50, 37))
    r = run_cli("interpolate", folder, tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "mid.png")
    assert r.returncode == 1 and errors(r.stderr) == ["error: the two frames differ in size: 64x48 and 50x37"]
    assert not (tmp_path / "mid.png").exists()


def test_cli_video_twice_the_frame_rate_same_duration_audio_kept(folder, tmp_path):
    src = clip(tmp_path / "clip.mp4", 10, fps=10)
    r = run_cli("interpolate", folder, src, "--factor", "2", "-o", tmp_path / "clip_2x.mp4", "--no-progress")
    assert r.returncode == 0, r.stderr
    a, b = probe(src), probe(tmp_path / "clip_2x.mp4")
    assert b["frames"] == 2 * a["frames"] == 20 and b["fps"] == 2 * a["fps"] == 20 and b["size"] == (64, 48)
    assert abs(a["duration"] - b["duration"]) < 1 / 20 and b["audio"] == ["aac"] and "audio aac kept" in r.stdout
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cli_video_batch_goes_on_after_bad_videos(folder, tmp_path, capsys):
    good = clip(tmp_path / "good.mp4", 3, audio=False)
    one = clip(tmp_path / "one.mp4", 1, audio=False)
    (tmp_path / "bad.mp4").write_bytes(b"not a video" * 100)
    out = tmp_path / "out"
    assert main(["interpolate", str(folder), str(tmp_path / "bad.mp4"), str(one), str(good), "--factor", "3",
                 "-o", str(out), "--no-progress"]) == 1
    err = errors(capsys.readouterr().err)
    assert len(err) == 2 and "bad.mp4" in err[0] and "one frame only" in err[1] and "one.mp4" in err[1]
    assert sorted(p.name for p in out.iterdir()) == ["good.mp4"]
    assert probe(out / "good.mp4")["frames"] == 9 and probe(out / "good.mp4")["fps"] == Fraction(30)
    assert main(["interpolate", str(folder), str(good), "--factor", "1", "-o", str(tmp_path / "x.mp4")]) == 1
    assert "--factor 1: must be" in capsys.readouterr().err and not (tmp_path / "x.mp4").exists()


# -- service and eval ----------------------------------------------------------------------------------

def test_service_route(vfi):
    from genforge.deploy.serve import Limits, create_app
    with TestClient(create_app({"vfi": vfi}, Limits(max_upload_bytes=50_000, max_pixels=64 * 64))) as client:
        assert {"name": "vfi", "task": "interpolation"}.items() <= client.get("/v1/models").json()["models"][0].items()
        assert 'id="interpolation"' in client.get("/").text

        def post(b=scene(3), **form):
            files = {"a": ("a.png", encode_image(scene(0)), "image/png")}
            if b is not None:
                files["b"] = ("b.png", encode_image(b), "image/png")
            return client.post("/v1/interpolate", data={"model": "vfi", **form}, files=files)
        r = post(t="0.5")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert decode_image(r.content).shape == (48, 64, 3)
        assert decode_image(post(n="3").content).shape == (48, 3 * 64, 3)
        r = post(b=scene(0, 50, 37))
        assert r.status_code == 400 and "differ in size" in r.json()["error"]
        assert post(b=None).status_code == 422 and post(t="2").status_code == 422
        assert post(t="0.2", n="2").status_code == 400


def test_eval_prints_the_four_methods(folder, tmp_path):
    r = run_cli("eval", folder, "--metrics", "psnr,ssim", "-n", "2", "-o", tmp_path / "eval.json")
    assert r.returncode == 0, r.stderr
    header = next(line for line in r.stdout.splitlines() if line.startswith("psnr"))
    assert header.split() == ["psnr", "repeat", "blend", "dis", "model"]
    assert "synthetic" in r.stdout and (tmp_path / "eval.json").exists()
