"""Video generation: moving digits (determinism, bouncing, splits), videos:PATH, VideoGAN shapes, a few
real training steps through the engine (and an exact resume), sampling to GIF / MP4 / a folder through
the CLI, the service route, eval on a random-weight model, and bad input as one clear line."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import genforge
from genforge.data import movingdigits as md
from genforge.errors import BadVideoError, ConfigError, UserError
from tests.conftest import assert_same_state, make_clip, random_folder, run_cli, straight_and_resumed, weights


def gif_frames(path_or_bytes) -> tuple[int, tuple[int, int]]:
    with Image.open(path_or_bytes) as im:
        return im.n_frames, im.size


# --- data -------------------------------------------------------------------------------------------
def test_bounce_stays_inside_and_flips_the_velocity_only_at_walls():
    g = torch.Generator().manual_seed(0)
    room = 16.0
    positions, velocities = md.trajectories(200, 2, 40, room, g)  # long clips: many bounces
    assert positions.shape == velocities.shape == (200, 2, 40, 2)
    assert positions.min() >= 0 and positions.max() <= room
    speed = velocities.abs()
    assert torch.allclose(speed, speed[:, :, :1].expand_as(speed))  # constant speed along each axis
    flips = torch.sign(velocities[:, :, 1:]) != torch.sign(velocities[:, :, :-1])
    step = positions[:, :, 1:] - positions[:, :, :-1]
    assert flips.any()
    # no wall in between: the position moves by exactly the velocity
    assert torch.allclose(step[~flips], velocities[:, :, :-1][~flips], atol=1e-9)
    # a flip: a wall lies between the two frames (within one step of one of them)
    near_wall = torch.minimum(positions, room - positions)
    reach = speed[:, :, :-1][flips] + 1e-9
    assert (torch.minimum(near_wall[:, :, :-1][flips], near_wall[:, :, 1:][flips]) <= reach).all()


def test_render_puts_the_digit_where_the_path_says():
    sprite = torch.zeros(1, 1, 4, 4)
    sprite[..., 1:3, 1:3] = 1.0
    positions = torch.tensor([[[[0.0, 0.0], [2.4, 5.6], [12.0, 12.0]]]])  # (1 clip, 1 digit, 3 frames, yx)
    clip = md.render(sprite, positions, 16)
    assert clip.shape == (1, 3, 16, 16)
    for t, (y, x) in enumerate([(0, 0), (2, 6), (12, 12)]):
        ys, xs = torch.nonzero(clip[0, t], as_tuple=True)
        assert (ys.min().item(), xs.min().item()) == (y + 1, x + 1) and clip[0, t].sum() == 4


def test_batches_are_a_function_of_seed_step_and_rank():
    def make(**kw):
        return md.ClipBatches(batch_size=4, seed=kw.pop("seed", 1), frames=6, canvas=32, labels=True, **kw)
    a, b = make().batch(5), make().batch(5)
    assert a["video"].shape == (4, 6, 1, 32, 32) and a["label"].shape == (4,)
    assert torch.equal(a["video"], b["video"]) and torch.equal(a["label"], b["label"])
    assert not torch.equal(a["video"], make().batch(6)["video"])
    assert not torch.equal(a["video"], make(rank=1).batch(5)["video"])
    assert not torch.equal(a["video"], make(seed=2).batch(5)["video"])
    assert a["video"].min() == -1 and a["video"].max() <= 1
    two = md.ClipBatches(batch_size=2, seed=0, frames=3, canvas=48, digits=2).batch(0)
    assert two["video"].shape == (2, 3, 1, 48, 48) and "label" not in two


def test_holdout_is_fixed_and_made_of_other_digit_images():
    train, held = md._digit_indices("train"), md._digit_indices("holdout")
    assert len(train) + len(held) == 1797 and not set(train.tolist()) & set(held.tolist())
    clips, labels = md.holdout_clips(32, 16, 16, 1)
    again, _ = md.holdout_clips(32, 16, 16, 1)
    assert clips.shape == (md.HOLDOUT_CLIPS, 16, 1, 32, 32) and torch.equal(clips, again)
    assert labels.shape == (md.HOLDOUT_CLIPS, 1) and set(labels[:, 0].tolist()) == set(range(10))
    assert (clips.amax(dim=(2, 3, 4)) > 0.5).all()  # a digit in every frame of every clip
    with pytest.raises(UserError, match="no split 'test'"):
        md.sprites(16, "test")
    with pytest.raises(ConfigError, match="digit_size"):
        md.ClipBatches(batch_size=2, seed=0, frames=4, canvas=16, digit_size=20)


def test_videos_folder_windows_and_bad_clips(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    make_clip(folder / "a.mp4", n=10)
    make_clip(folder / "b.mp4", n=3)  # shorter than the clips asked for: skipped
    clips = md.read_videos(f"videos:{folder}", "train", size=16, channels=1, frames=6)
    assert len(clips) == 1 and clips[0].shape == (10, 1, 16, 16) and clips[0].dtype == torch.uint8
    batches = md.ClipBatches(batch_size=3, seed=0, frames=6, canvas=16, clips=clips)
    assert batches.batch(2)["video"].shape == (3, 6, 1, 16, 16)
    assert torch.equal(batches.batch(2)["video"], batches.batch(2)["video"])
    assert md.video_windows(clips, 4, 5).shape == (2, 4, 1, 16, 16)  # two windows fit in 10 frames
    with pytest.raises(UserError, match="no clip of the train split has 12 frames"):
        md.read_videos(f"videos:{folder}", "train", size=16, channels=1, frames=12)
    (folder / "c.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    with pytest.raises(BadVideoError, match="c.mp4"):
        md.read_videos(f"videos:{folder}", "train", size=16, channels=1, frames=6)
    for spec, match in (("videos:", "needs a folder"), (f"videos:{tmp_path / 'none'}", "does not exist"),
                        (f"videos:{tmp_path / 'empty'}", "no video files")):
        (tmp_path / "empty").mkdir(exist_ok=True)
        with pytest.raises(UserError, match=match):
            md.read_videos(spec, "train", size=16, channels=1, frames=4)


# --- model ------------------------------------------------------------------------------------------
def test_generator_and_critics_shapes():
    from genforge.models.videogan import (
        VideoDiscriminator,
        VideoGANConfig,
        VideoGenerator,
        generate_clips,
        image_discriminator,
    )
    cfg = VideoGANConfig(image_size=16, frames=6, width=8, content_dim=8, motion_dim=4, noise_dim=3, num_classes=10)
    G, Dv, Di = VideoGenerator(cfg).eval(), VideoDiscriminator(cfg), image_discriminator(cfg)
    labels = torch.tensor([1, 7])
    clips = G(torch.randn(2, 8), torch.randn(2, 6, 3), labels)
    assert clips.shape == (2, 6, 1, 16, 16) and clips.abs().max() <= 1
    assert G(torch.randn(2, 8), torch.randn(2, 11, 3), labels).shape == (2, 11, 1, 16, 16)  # longer clips
    assert Dv(clips, labels).shape == (2,) and Di(clips.flatten(0, 1), labels.repeat_interleave(6)).shape == (12,)
    a = generate_clips(G, 3, seed=4, frames=5)
    assert a.shape == (3, 5, 1, 16, 16) and torch.equal(a, generate_clips(G, 3, seed=4, frames=5))
    with pytest.raises(ValueError, match="class-conditional"):
        G(torch.randn(2, 8), torch.randn(2, 6, 3))


def test_translate_moves_one_frame_a_clip():
    from genforge.models.videogan import VideoGANConfig, VideoGenerator
    torch.manual_seed(0)
    cfg = VideoGANConfig(image_size=16, frames=5, width=8, content_dim=8, motion_dim=4, noise_dim=3, num_classes=10,
                         motion="translate")
    G = VideoGenerator(cfg).eval()
    assert G.frame.latent_dim == 8  # the frame generator reads the content code alone
    z, labels = torch.randn(2, 8), torch.tensor([3, 4])
    with torch.no_grad():
        sprite = G.frame(z, labels)
        G.place.weight.zero_()
        G.place.bias.zero_()
        assert torch.allclose(G(z, torch.randn(2, 5, 3), labels), sprite[:, None].expand(-1, 5, -1, -1, -1), atol=1e-6)
        # a shift of 2 pixels right (tanh(b) * 2 * max_shift grid units, the side spans 2 units = 16 pixels)
        G.place.bias.copy_(torch.tensor([float(torch.atanh(torch.tensor(2 / 16 * 2 / (2 * cfg.max_shift)))), 0.0]))
        moved = G(z, torch.randn(2, 11, 3), labels)  # longer clips too
    assert moved.shape == (2, 11, 1, 16, 16)
    assert torch.allclose(moved[..., 2:], sprite[:, None, :, :, :-2].expand(-1, 11, -1, -1, -1), atol=1e-5)
    assert torch.equal(moved[..., :2], torch.full_like(moved[..., :2], -1.0))  # uncovered pixels are black
    # the motion code moves the frame, and gradients reach the position map
    G.place.weight.data.normal_()
    clips = G(z, torch.randn(2, 5, 3), labels)
    assert not torch.allclose(clips[:, 0], clips[:, -1])
    clips.sum().backward()
    assert G.place.weight.grad.abs().sum() > 0


def test_snap_copies_the_sprite_at_whole_pixels_and_still_trains_the_position():
    from genforge.models.videogan import VideoGANConfig, VideoGenerator
    torch.manual_seed(0)
    cfg = VideoGANConfig(image_size=16, frames=3, width=8, content_dim=8, motion_dim=4, noise_dim=3,
                         motion="translate", snap=True)
    G = VideoGenerator(cfg).eval()
    z = torch.randn(2, 8)
    with torch.no_grad():
        sprite = G.frame(z)
        G.place.weight.zero_()
        # 2.4 pixels right and 0.4 down: snapped to exactly 2 and 0, a copy with no resampling blur
        shift = torch.tensor([2.4, 0.4]) / 16 * 2 / (2 * cfg.max_shift)
        G.place.bias.copy_(torch.atanh(shift))
        moved = G(z, torch.randn(2, 3, 3))
    assert torch.allclose(moved[..., 2:], sprite[:, None, :, :, :-2].expand(-1, 3, -1, -1, -1), atol=1e-5)
    assert torch.equal(moved[..., :2], torch.full_like(moved[..., :2], -1.0))
    G.place.weight.data.normal_()
    G(z, torch.randn(2, 3, 3)).sum().backward()
    assert G.place.weight.grad.abs().sum() > 0  # straight through the rounding


def test_video_critic_flatten_keeps_every_time_step():
    from genforge.models.videogan import VideoDiscriminator, VideoGANConfig
    torch.manual_seed(0)
    mean = VideoDiscriminator(VideoGANConfig(image_size=16, frames=8, width=8, video_pool="mean"))
    flat = VideoDiscriminator(VideoGANConfig(image_size=16, frames=8, width=8, video_pool="flatten")).eval()
    clips = torch.randn(3, 8, 1, 16, 16)
    # 16 -> 8 -> 4 pixels, 8 -> 4 time steps: the flattened head reads 4 times the mean's features
    assert flat.features(clips).shape[1] == 4 * mean.features(clips).shape[1]
    assert flat(clips).shape == (3,)
    # (eval: spectral norm leaves its weights alone) the first time step reads the first frames, the last does not
    changed = clips.clone()
    changed[:, :2] = torch.randn(3, 2, 1, 16, 16)
    f0, f1 = flat.features(clips).unflatten(1, (-1, 4, 4, 4)), flat.features(changed).unflatten(1, (-1, 4, 4, 4))
    assert not torch.allclose(f0[:, :, 0], f1[:, :, 0]) and torch.allclose(f0[:, :, 3], f1[:, :, 3])


# --- training ---------------------------------------------------------------------------------------
def tiny_run(tmp_path: Path, **task) -> Path:
    raw = {"name": "vg", "seed": 0, "data": {"dataset": "movingdigits"},
           "model": {"name": "videogan", "image_size": 16, "frames": 4, "width": 8, "content_dim": 8, "motion_dim": 4,
                     "noise_dim": 4, "num_classes": 10},
           "task": {"kind": "videogan", "digit_size": 8, "ema_decay": 0.9, "image_frames": 2, **task},
           "train": {"device": "cpu", "steps": 4, "batch_size": 4, "checkpoint_every": 2, "log_every": 1,
                     "sample_every": 2, "eval_every": 0, "eval_samples": 16, "features": "digits", "threads": 1}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_training_steps_through_the_engine_and_the_run_generates(tmp_path):
    from genforge.train import train
    run = train(str(tiny_run(tmp_path)), run_dir=str(tmp_path / "run"), progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss_d" in r]
    assert steps and all(np.isfinite(r["loss_d"]) for r in steps) and any("loss_g" in r for r in steps)
    assert {"dv_real", "di_fake"} <= set(steps[-1])
    assert any("fid" in r for r in rows)  # per-frame FID at the start and the end
    assert (run / "samples" / "step_00000004.png").is_file()
    video = genforge.load(str(run), device="cpu")
    clips = video.generate(3, label=5, seed=1)
    assert clips.shape == (3, 4, 1, 16, 16) and torch.equal(clips, video.generate(3, label=5, seed=1))
    with pytest.raises(UserError, match="out of range"):
        video.generate(2, label=10)


def test_wgan_gp_resumes_exactly(tmp_path):
    config = tiny_run(tmp_path, loss="wgan-gp", n_critic=2)
    raw = yaml.safe_load(config.read_text())
    raw["train"]["features"] = "none"
    config.write_text(yaml.safe_dump(raw))
    straight, resumed = straight_and_resumed(str(config), tmp_path, stop_at=2)
    assert_same_state(weights(straight), weights(resumed))


def test_bad_configs_are_one_line(tmp_path, write_config):
    from genforge.train import train
    raw = yaml.safe_load(tiny_run(tmp_path).read_text())
    for change, match in ((("task", "digits", 2), "task.digits 1"), (("model", "channels", 3), "clips are grey"),
                          (("data", "dataset", "digits"), "unknown video dataset"),
                          (("task", "digit_size", 32), "digit_size")):
        bad = json.loads(json.dumps(raw))
        bad[change[0]][change[1]] = change[2]
        with pytest.raises(UserError, match=match):
            train(str(write_config(bad)), run_dir=str(tmp_path / "never"), progress=False)
        assert not (tmp_path / "never").exists()


# --- deployment -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def video_folder(tmp_path_factory) -> Path:
    return random_folder(tmp_path_factory.mktemp("video"), "videogan", "videogan", num_classes=10)


@pytest.fixture(scope="module")
def translate_folder(tmp_path_factory) -> Path:
    return random_folder(tmp_path_factory.mktemp("video"), "videogan", "videogan", num_classes=10, motion="translate")


@pytest.fixture(scope="module")
def snap_folder(tmp_path_factory) -> Path:
    return random_folder(tmp_path_factory.mktemp("video"), "videogan", "videogan", motion="translate", snap=True)


def test_sample_to_gif_mp4_and_folder_through_the_cli(video_folder, tmp_path):
    gif = tmp_path / "clips.gif"
    r = run_cli("sample", video_folder, "-n", "6", "--nrow", "3", "--label", "3", "-o", gif)
    assert r.returncode == 0, r.stderr
    assert gif_frames(gif) == (4, (3 * 18 + 2, 2 * 18 + 2))  # 4 frames of a 3 x 2 grid of 16-pixel clips
    out = tmp_path / "clips"
    r = run_cli("sample", video_folder, "-n", "3", "--frames", "6", "-o", f"{out}/")
    assert r.returncode == 0, r.stderr
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"clip_{i:05d}.gif" for i in range(3)] and gif_frames(files[0])[0] == 6
    mp4 = tmp_path / "clips.mp4"
    r = run_cli("sample", video_folder, "-n", "4", "--fps", "12", "-o", mp4)
    assert r.returncode == 0, r.stderr
    from genforge.deploy.video import open_video
    with open_video(mp4) as reader:
        assert len(list(reader)) == 4 and reader.fps == 12


def test_bad_sample_options_are_one_line(video_folder, tmp_path, capsys):
    from genforge.cli import main
    for args, match in ((("--label", "12"), "--label 12 is out of range"), (("-n", "0"), "-n must be"),
                        (("-o", tmp_path / "x.png"), "animated .gif or a video"),
                        (("--interpolate", "4"), "--interpolate applies to image generators"),
                        (("--frames", "1"), "--frames 1"), (("--fps", "0"), "--fps 0")):
        full = args if "-o" in args else ("-o", tmp_path / "bad.gif", *args)
        assert main(["sample", str(video_folder), *map(str, full)]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and match in err and "\n" not in err, err
    assert not (tmp_path / "bad.gif").exists() and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("folder", ["video_folder", "translate_folder", "snap_folder"])
def test_onnx_video_generator_samples(folder, tmp_path, request):
    from genforge.deploy.export import export_onnx
    label = None if folder == "snap_folder" else 1
    folder = request.getfixturevalue(folder)
    export_onnx(str(folder), tmp_path / "v.onnx")
    video = genforge.load(str(tmp_path / "v.onnx"))
    torch_clips = genforge.load(str(folder), device="cpu").generate(2, label=label, seed=3, frames=7)
    assert torch.allclose(video.generate(2, label=label, seed=3, frames=7), torch_clips, atol=1e-4)


def test_service_returns_an_animated_gif(video_folder):
    from fastapi.testclient import TestClient

    from genforge.deploy.serve import create_app
    client = TestClient(create_app([str(video_folder)]))
    listed = client.get("/v1/models").json()["models"][0]
    assert listed["task"] == "video-generation" and listed["frames"] == 4 and listed["num_classes"] == 10
    r = client.post("/v1/generate-video", json={"model": listed["name"], "n": 4, "nrow": 2, "label": 2, "seed": 1})
    assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
    import io
    assert gif_frames(io.BytesIO(r.content)) == (4, (2 * 18 + 2, 2 * 18 + 2))
    for body in ({"n": 0}, {"n": 65}, {"label": 10}, {"frames": 1000}, {"fps": 0}):
        r = client.post("/v1/generate-video", json={"model": listed["name"], **body})
        assert r.status_code == 422 and "error" in r.json(), body
    assert client.post("/v1/generate-video", json={"model": "nope"}).status_code == 404
    assert client.post("/v1/generate", json={"model": listed["name"]}).status_code == 400  # not an image generator
    assert "/v1/generate-video" in client.get("/").text


def test_eval_on_a_random_model_returns_the_keys(video_folder, tmp_path, capsys):
    out = tmp_path / "eval.json"
    r = run_cli("eval", video_folder, "-n", "24", "--metrics", "fid,kid,identity,accuracy", "-o", out)
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    for key in ("fid", "fid_real_halves", "fid_crops", "kid", "identity", "identity_real", "identity_frames",
                "accuracy", "accuracy_per_label"):
        assert key in result, key
    assert 0 <= result["identity"] <= 1 and result["identity_real"] > 0.5  # real clips keep their digit
    assert result["fid_real_halves"] < result["fid"]
    from genforge.cli import main
    assert main(["eval", str(video_folder), "--metrics", "coverage"]) == 1
    assert "do not apply to video-generation models" in capsys.readouterr().err


def test_datasets_lists_movingdigits_and_corrupt_clips_stop_training(tmp_path):
    r = run_cli("datasets")
    assert r.returncode == 0 and "movingdigits" in r.stdout
    folder = tmp_path / "clips"
    folder.mkdir()
    make_clip(folder / "good.mp4", n=8)
    (folder / "broken.mp4").write_bytes(b"not a video at all" * 20)
    raw = yaml.safe_load(tiny_run(tmp_path).read_text())
    raw["data"]["dataset"] = f"videos:{folder}"
    raw["model"]["num_classes"] = 0
    config = tmp_path / "videos.yaml"
    config.write_text(yaml.safe_dump(raw))
    r = run_cli("train", config, "--run-dir", tmp_path / "run")
    assert r.returncode != 0 and "Traceback" not in r.stderr and "broken.mp4" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
    (folder / "broken.mp4").unlink()
    r = run_cli("train", config, "--run-dir", tmp_path / "run", "--set", "train.steps=2", "--set",
                "train.features=none", "--no-progress")
    assert r.returncode == 0, r.stderr
