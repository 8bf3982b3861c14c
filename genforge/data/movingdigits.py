"""Clips for the video-generation family, as float tensors (B, T, C, H, W) in [-1, 1].

    movingdigits   Moving MNIST made from scikit-learn's digits: each 8x8 digit upscaled to
                   task.digit_size (16) pixels, task.digits (1 or 2) of them moving at a constant
                   velocity (1 to 2.5 pixels a frame, any direction) and bouncing off the walls of a
                   model.image_size canvas (32), model.frames frames (16), pasted with max so that
                   two digits overlap as strokes do; the label is which digit moves. Digit images
                   are split by index: train = index % 5 != 4 (1,437 images), holdout = the other
                   360. Training clips are drawn on the fly; the holdout is HOLDOUT_CLIPS fixed
                   clips (seed HOLDOUT_SEED) of holdout images, what evaluation compares against.
    videos:PATH    a folder of short clips (.mp4 .mkv .mov .webm .avi, animated .gif; recursive,
                   sorted), decoded with PyAV, centre-cropped square, resized to model.image_size
                   (grey by BT.601 luma for one channel); training takes random windows of
                   model.frames consecutive frames. Holdout: every tenth clip by sorted path (none
                   when there are fewer than ten). A corrupt clip is one clear error naming it; a
                   clip shorter than model.frames is skipped with one warning.

Batches are a pure function of (seed, step, rank), as in every family (data/patches.py
step_generator), so a resumed run sees exactly the clips an uninterrupted one would."""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path

import torch

from genforge.data.patches import step_generator
from genforge.errors import ConfigError, UserError

log = logging.getLogger(__name__)

NAME = "movingdigits"
PREFIX = "videos:"
HOLDOUT_EVERY = 5  # digit image i is held out when i % 5 == 4
HOLDOUT_CLIPS = 500
HOLDOUT_SEED = 16_2016  # fixed: the holdout clips never change with the run's seed
SPEED = (1.0, 2.5)  # pixels per frame
MAX_CLIP_FRAMES = 1024  # frames kept per clip of videos:PATH (the clips live in memory)
VIDEO_HOLDOUT_EVERY = 10


def _digit_indices(split: str) -> torch.Tensor:
    from genforge.data.builtin import _digits
    n = len(_digits()[1])
    index = torch.arange(n)
    if split == "train":
        return index[index % HOLDOUT_EVERY != HOLDOUT_EVERY - 1]
    if split == "holdout":
        return index[index % HOLDOUT_EVERY == HOLDOUT_EVERY - 1]
    if split == "all":
        return index
    raise UserError(f"dataset '{NAME}' has no split '{split}' (splits: train, holdout, all)")


@functools.cache
def sprites(size: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The split's digits as (N, size, size) float in [0, 1] and their labels (N,)."""
    from genforge.data import to_tensor
    from genforge.data.builtin import _digits
    pixels, labels = _digits()
    index = _digit_indices(split)
    images = to_tensor([pixels[i] for i in index.tolist()], size, 1)[:, 0].float().div_(255)
    return images, torch.from_numpy(labels)[index]


def bounce(start: torch.Tensor, velocity: torch.Tensor, frames: int, room: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions and velocities (..., frames) of a point starting at `start` in [0, room] with a
    constant `velocity` that reflects off 0 and room: the path folded into [0, room] (a triangle
    wave), so a wall flips the velocity's sign and keeps its size."""
    t = torch.arange(frames, dtype=start.dtype)
    free = start[..., None] + velocity[..., None] * t
    if room <= 0:
        return torch.zeros_like(free), torch.zeros_like(free)
    r = torch.remainder(free, 2 * room)
    position = room - (room - r).abs()
    forward = r < room  # on the way out from 0 (the path's own direction); on the way back: reversed
    return position, torch.where(forward, velocity[..., None], -velocity[..., None])


def trajectories(n: int, digits: int, frames: int, room: float, g: torch.Generator):
    """Start positions, directions and speeds drawn from g: positions and velocities
    (n, digits, frames, 2) as (y, x)."""
    start = torch.rand(n, digits, 2, generator=g, dtype=torch.float64) * room
    angle = torch.rand(n, digits, generator=g, dtype=torch.float64) * (2 * math.pi)
    speed = SPEED[0] + (SPEED[1] - SPEED[0]) * torch.rand(n, digits, generator=g, dtype=torch.float64)
    velocity = torch.stack([speed * torch.sin(angle), speed * torch.cos(angle)], dim=-1)
    position, moving = bounce(start, velocity, frames, room)
    return position.movedim(-1, 2), moving.movedim(-1, 2)  # (n, digits, 2, T) -> (n, digits, T, 2)


def render(images: torch.Tensor, positions: torch.Tensor, canvas: int) -> torch.Tensor:
    """Sprites images (n, digits, s, s) in [0, 1] pasted at rounded positions (n, digits, T, 2) into
    (n, T, canvas, canvas), the brighter pixel winning where digits overlap."""
    n, digits, frames, _ = positions.shape
    s = images.shape[-1]
    yx = positions.round().long().clamp_(0, canvas - s)
    oy, ox = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    frame = torch.arange(n * frames).view(n, 1, frames)
    base = (frame * canvas + yx[..., 0]) * canvas + yx[..., 1]  # (n, digits, T): top-left of each paste
    index = base[..., None, None] + oy * canvas + ox  # (n, digits, T, s, s)
    values = images[:, :, None].expand(-1, -1, frames, -1, -1)
    out = torch.zeros(n * frames * canvas * canvas)
    out.scatter_reduce_(0, index.reshape(-1), values.reshape(-1), reduce="amax")
    return out.view(n, frames, canvas, canvas)


def moving_digits(n: int, g: torch.Generator, *, split: str = "train", canvas: int = 32, frames: int = 16,
                  digit_size: int = 16, digits: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """n clips (n, frames, 1, canvas, canvas) in [-1, 1] and their digits' labels (n, digits)."""
    check_sizes(canvas, digit_size, digits)
    pool, labels = sprites(digit_size, split)
    pick = torch.randint(0, len(pool), (n, digits), generator=g)
    positions, _ = trajectories(n, digits, frames, canvas - digit_size, g)
    clips = render(pool[pick], positions, canvas)
    return clips.mul_(2).sub_(1)[:, :, None], labels[pick]


def check_sizes(canvas: int, digit_size: int, digits: int) -> None:
    if digit_size > canvas:
        raise ConfigError(f"config error: task.digit_size: {digit_size} is larger than the {canvas}-pixel canvas "
                          "(model.image_size)")
    if digits not in (1, 2):
        raise ConfigError(f"config error: task.digits: {digits}: moving digits clips hold 1 or 2 digits")


@functools.cache
def _holdout(canvas: int, frames: int, digit_size: int, digits: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(HOLDOUT_SEED)
    return moving_digits(HOLDOUT_CLIPS, g, split="holdout", canvas=canvas, frames=frames, digit_size=digit_size,
                         digits=digits)


def holdout_clips(canvas: int = 32, frames: int = 16, digit_size: int = 16,
                  digits: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed holdout clips (HOLDOUT_CLIPS, frames, 1, canvas, canvas) and labels (HOLDOUT_CLIPS, digits)."""
    clips, labels = _holdout(canvas, frames, digit_size, digits)
    return clips.clone(), labels.clone()


# --- videos:PATH ------------------------------------------------------------------------------
def video_files(spec: str) -> list[Path]:
    from genforge.deploy.video import is_video
    given = spec[len(PREFIX):]
    if not given:
        raise UserError(f"dataset '{spec}' needs a folder, e.g. videos:/data/clips")
    root = Path(given).expanduser()
    if not root.exists():
        raise UserError(f"dataset '{spec}': '{root}' does not exist")
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and is_video(p))
    if not files:
        raise UserError(f"dataset '{spec}': no video files (.mp4 .mkv .mov .webm .avi .gif) under '{root}'")
    return files


def read_videos(spec: str, split: str, *, size: int, channels: int, frames: int) -> list[torch.Tensor]:
    """The split's clips of videos:PATH as uint8 (F, channels, size, size), each at least `frames` long."""
    from genforge.data import to_tensor
    from genforge.deploy.video import open_video
    files = video_files(spec)
    if split in ("train", "holdout") and len(files) >= VIDEO_HOLDOUT_EVERY:
        held = {i for i in range(len(files)) if i % VIDEO_HOLDOUT_EVERY == VIDEO_HOLDOUT_EVERY - 1}
        files = [f for i, f in enumerate(files) if (i in held) == (split == "holdout")]
    elif split == "holdout":
        raise UserError(f"dataset '{spec}' has {len(files)} clips: a holdout (every tenth clip) needs at least "
                        f"{VIDEO_HOLDOUT_EVERY}")
    clips, short = [], []
    for path in files:
        with open_video(path) as reader:  # a corrupt file raises BadVideoError: one line naming it
            decoded = []
            for image in reader:
                decoded.append(image)
                if len(decoded) == MAX_CLIP_FRAMES:
                    break
        if len(decoded) < frames:
            short.append(path)
        else:
            clips.append(to_tensor(decoded, size, channels))
    if short:
        log.warning("%d clip(s) shorter than %d frames skipped, e.g. '%s'", len(short), frames, short[0])
    if not clips:
        raise UserError(f"dataset '{spec}': no clip of the {split} split has {frames} frames (model.frames)")
    return clips


def video_windows(clips: list[torch.Tensor], frames: int, count: int) -> torch.Tensor:
    """Up to `count` fixed clips of `frames` frames in [-1, 1]: the start of each clip, then further
    windows along them, for evaluation."""
    out, start = [], 0
    while len(out) < count:
        fresh = [c[start:start + frames] for c in clips if len(c) >= start + frames]
        if not fresh:
            break
        out += fresh
        start += frames
    return torch.stack(out[:count]).float().div_(127.5).sub_(1.0)


def reference_clips(cfg, count: int | None = None) -> torch.Tensor:
    """Fixed real clips (N, T, C, H, W) in [-1, 1] to compare generated ones with: the movingdigits
    holdout, or windows of the holdout clips of videos:PATH (all clips when there is no holdout).
    cfg: the run config as a dict (what a model folder keeps)."""
    data, model, task = cfg["data"], cfg["model"], cfg["task"]
    spec = data["dataset"]
    if spec == NAME:
        clips = holdout_clips(model["image_size"], model["frames"], task["digit_size"], task["digits"])[0]
    else:
        split = "holdout" if len(video_files(spec)) >= VIDEO_HOLDOUT_EVERY else "all"
        decoded = read_videos(spec, split, size=model["image_size"], channels=model["channels"],
                              frames=model["frames"])
        clips = video_windows(decoded, model["frames"], count or HOLDOUT_CLIPS)
    return clips[:count] if count else clips


# --- batches ----------------------------------------------------------------------------------
class ClipBatches:
    """{"video": (B, T, C, H, W) in [-1, 1] [, "label": (B,)]} for step s, a pure function of
    (seed, s, rank): fresh moving-digit clips, or random windows of the clips of videos:PATH."""

    host_side = True  # made on the CPU: engine.batches.Prefetcher may build them ahead

    def __init__(self, *, batch_size: int, seed: int, frames: int, canvas: int, split: str = "train",
                 digit_size: int = 16, digits: int = 1, labels: bool = False,
                 clips: list[torch.Tensor] | None = None, device=torch.device("cpu"), rank: int = 0):
        self.batch_size, self.seed, self.rank, self.device = batch_size, seed, rank, torch.device(device)
        self.frames, self.canvas, self.split = frames, canvas, split
        self.digit_size, self.digits, self.labels, self.clips = digit_size, digits, labels, clips
        if clips is None:
            check_sizes(canvas, digit_size, digits)
            sprites(digit_size, split)  # read the digits now: a bad split fails before training

    def batch(self, step: int) -> dict:
        g = step_generator(self.seed, step, self.rank)
        if self.clips is not None:
            pick = torch.randint(0, len(self.clips), (self.batch_size,), generator=g).tolist()
            starts = [int(torch.randint(0, len(self.clips[i]) - self.frames + 1, (1,), generator=g)) for i in pick]
            video = torch.stack([self.clips[i][s:s + self.frames] for i, s in zip(pick, starts)])
            return {"video": video.float().div_(127.5).sub_(1.0).to(self.device)}
        video, labels = moving_digits(self.batch_size, g, split=self.split, canvas=self.canvas, frames=self.frames,
                                      digit_size=self.digit_size, digits=self.digits)
        out = {"video": video.to(self.device)}
        if self.labels:
            out["label"] = labels[:, 0].to(self.device)
        return out


def list_clip_sets() -> list[dict]:
    """What `genforge datasets` shows for video generation."""
    total = len(_digit_indices("all"))
    return [{"name": NAME, "images": total, "size": "16x32x32", "channels": 1, "labels": True, "classes": 10,
             "splits": ["train", "holdout", "all"],
             "description": f"video: Moving-MNIST-style clips of the digits (1-2 digits of 16 px bouncing in a "
                            f"32x32 canvas, 16 frames, drawn on the fly); holdout: {HOLDOUT_CLIPS} fixed clips "
                            f"of every fifth digit image. Also videos:PATH, a folder of clips"}]
