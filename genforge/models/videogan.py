"""VideoGAN: this project's video GAN in the spirit of MoCoGAN (Tulyakov et al. 2018), written here.

    z_content (B, content_dim)        one code per clip: what moves (the digit, its style)
    z_motion  (B, T, noise_dim)       per-frame noise -> GRU -> motion codes (B, T, motion_dim): how
    [content | motion_t] per frame -> a DCGAN frame generator (models/dcgan.py) -> (B, T, C, H, W)

or, with model.motion: translate, a layered sprite model: the frame generator draws one frame a clip
from the content code alone, and frame t is that frame shifted by a position read from motion_t (a
linear map and tanh; uncovered pixels black). The identity cannot drift within a clip; only rigid
motion (a moving object on black, a camera pan) can be drawn.

Two critics judge the result: an image discriminator on single frames (dcgan.Discriminator: is
each frame a plausible digit?) and a video discriminator of 3D convolutions on whole clips (is the
motion plausible: constant velocity, bounces, one identity throughout?). Class conditioning (which
digit moves) embeds the label in the frame generator and adds projection terms to both critics
(Miyato & Koyama 2018). The GRU runs over any number of frames, so a trained model can draw clips
longer than it was trained on (the exported ONNX graph has a dynamic frames axis too).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from genforge.models.dcgan import (
    Activation,
    ConvNetConfig,
    Discriminator,
    Generator,
    Norm,
    ProjectionCritic,
    power_of_two_side,
)
from genforge.nn import activation, apply_spectral
from genforge.registry import register_model

FrameSide = power_of_two_side(256)


class VideoGANConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Literal["videogan"] = "videogan"
    image_size: FrameSide = Field(32, description="Side of the square frames, a power of two >= 8 (the canvas).")
    channels: int = Field(1, ge=1, le=4, description="Frame channels: 1 grey, 3 RGB.")
    frames: int = Field(16, ge=2, le=128, description="Frames per training clip (and per sample by default).")
    content_dim: int = Field(48, ge=1, le=4096, description="Size of the content code, fixed for a clip.")
    motion_dim: int = Field(16, ge=1, le=1024, description="Size of the per-frame motion code (the GRU's state).")
    noise_dim: int = Field(8, ge=1, le=1024, description="Size of the per-frame noise the GRU reads (z_motion).")
    width: int = Field(32, ge=4, le=1024, description="Frame generator channels at full resolution; doubled per "
                       "halving.")
    d_width: int | None = Field(None, ge=4, le=1024, description="The image discriminator's width (default: width).")
    video_width: int | None = Field(None, ge=4, le=1024, description="The video discriminator's width (default: "
                                    "d_width).")
    max_width: int = Field(256, ge=4, description="Cap on channels at low resolution.")
    g_activation: Activation = "relu"
    d_activation: Activation = "leaky_relu"
    g_norm: Norm = "batch"
    d_norm: Norm = Field("spectral", description="Both discriminators' normalisation.")
    num_classes: int = Field(0, ge=0, description="> 0: class-conditional (the label says which digit moves).")
    video_pool: Literal["mean", "flatten"] = Field("mean", description=(
        "How the video critic's last features meet its head: mean (averaged over time: it judges local motion "
        "windows) or flatten (every time step kept: it sees the whole clip at once, so a digit that changes "
        "identity or stops moving over the clip costs more)."))

    motion: Literal["codes", "translate"] = Field("codes", description=(
        "How motion reaches the frames: codes (MoCoGAN: each frame is drawn from [content | motion_t], so the "
        "appearance may drift over a clip) or translate (one frame a clip is drawn from the content code and "
        "shifted per frame by a position the motion code gives, uncovered pixels black: the identity cannot "
        "change, only rigid motion is possible)."))
    max_shift: float = Field(0.5, gt=0.0, le=1.0, description="motion: translate: the largest shift along each "
                             "axis, a fraction of the frame side.")
    snap: bool = Field(False, description="motion: translate: round every shift to whole pixels (a straight-through "
                       "gradient in training), so the sprite is copied, not resampled, as real clips are pasted. "
                       "Measured: switched on for the last 2,500 of 14,500 steps it collapsed the generator; "
                       "off in the preset.")

    def frame_config(self) -> ConvNetConfig:
        """The DCGAN shape of the frame generator and the image discriminator."""
        motion = self.motion_dim if self.motion == "codes" else 0
        return ConvNetConfig(image_size=self.image_size, channels=self.channels,
                             latent_dim=self.content_dim + motion, width=self.width, d_width=self.d_width,
                             max_width=self.max_width, g_activation=self.g_activation, d_activation=self.d_activation,
                             g_norm=self.g_norm, d_norm=self.d_norm, num_classes=self.num_classes)


def norm3d(name: str, channels: int) -> nn.Module:
    if name == "batch":
        return nn.BatchNorm3d(channels)
    if name == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    return nn.Identity()  # spectral (on the convolution) or none


@register_model("videogan", VideoGANConfig, tiny={"width": 8, "content_dim": 8, "motion_dim": 4, "noise_dim": 4,
                                                   "frames": 4, "image_size": 16})
class VideoGenerator(nn.Module):
    """(z_content (B, content_dim), z_motion (B, T, noise_dim) [, labels (B,)]) -> clips (B, T, C, H, W)
    in [-1, 1]."""

    def __init__(self, cfg: VideoGANConfig):
        super().__init__()
        self.content_dim, self.noise_dim, self.motion_dim = cfg.content_dim, cfg.noise_dim, cfg.motion_dim
        self.frames, self.num_classes = cfg.frames, cfg.num_classes
        self.image_size, self.channels = cfg.image_size, cfg.channels
        self.motion = nn.GRU(cfg.noise_dim, cfg.motion_dim, batch_first=True)
        self.frame = Generator(cfg.frame_config())
        self.translate = cfg.motion == "translate"
        if self.translate:
            self.place = nn.Linear(cfg.motion_dim, 2)  # motion code -> (x, y) shift before tanh
            self.shift_range = 2 * cfg.max_shift  # in grid units: the frame spans [-1, 1]
            self.snap = cfg.snap
            side = (torch.arange(cfg.image_size) * 2 + 1) / cfg.image_size - 1  # pixel centres (align_corners off)
            ys, xs = torch.meshgrid(side, side, indexing="ij")
            self.register_buffer("grid", torch.stack([xs, ys], 2)[None], persistent=False)  # (1, H, W, 2)

    def motion_codes(self, z_motion: torch.Tensor) -> torch.Tensor:
        return self.motion(z_motion)[0]  # (B, T, motion_dim), from a zero state

    def forward(self, z_content: torch.Tensor, z_motion: torch.Tensor,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes and labels is None:
            raise ValueError("this generator is class-conditional: pass labels")
        motion = self.motion_codes(z_motion)
        b, t = motion.shape[:2]
        if self.translate:
            return self.shifted(self.frame(z_content, *((labels,) if self.num_classes else ())), motion)
        codes = torch.cat([z_content[:, None].expand(-1, t, -1), motion], dim=2).flatten(0, 1)
        extra = (labels[:, None].expand(-1, t).reshape(-1),) if self.num_classes else ()
        frames = self.frame(codes, *extra)
        return frames.unflatten(0, (b, t))

    def shifted(self, sprite: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """One frame a clip (B, C, H, W) moved to each frame's position (B, T, 2) -> (B, T, C, H, W): frame t
        at pixel p is the sprite at p - shift_t (bilinear), black where that falls outside it."""
        b, t = motion.shape[:2]
        shift = torch.tanh(self.place(motion)) * self.shift_range
        if self.snap:  # whole pixels (one pixel is 2 / side in grid units); the gradient passes straight through
            pixels = self.image_size / 2
            shift = shift + (torch.round(shift * pixels) / pixels - shift).detach()
        grid = self.grid - shift.reshape(b * t, 1, 1, 2)
        frames = nn.functional.grid_sample(sprite.repeat_interleave(t, 0) + 1, grid, mode="bilinear",
                                           padding_mode="zeros", align_corners=False) - 1
        return frames.unflatten(0, (b, t))


def image_discriminator(cfg: VideoGANConfig) -> Discriminator:
    """Single frames (N, C, H, W) -> one score each: the DCGAN discriminator at the frame shape."""
    return Discriminator(cfg.frame_config())


class VideoDiscriminator(ProjectionCritic):
    """Clips (B, T, C, H, W) -> one score per clip. Strided 3D convolutions (3 frames x 4 x 4 pixels)
    halve the frame side from the first layer on down to 4x4, and the time axis while it is longer
    than 2 (none at full resolution: a clip is 16 times a frame's work); the features are kept per
    position (where a digit is matters: the bounces happen at the walls) and averaged over time, or with
    model.video_pool: flatten kept per time step too (the head then sees the whole clip)."""

    def __init__(self, cfg: VideoGANConfig):
        super().__init__()
        width = cfg.video_width or cfg.d_width or cfg.width
        levels = int(math.log2(cfg.image_size)) - 2
        widths = [min(width * 2 ** i, cfg.max_width) for i in range(levels)]
        norm, act = cfg.d_norm, cfg.d_activation
        layers, t = [], cfg.frames
        for i, (cin, cout) in enumerate(zip([cfg.channels, *widths[:-1]], widths)):
            stride = 2 if t > 2 and i > 0 else 1
            t = -(-t // stride)
            normed = i > 0 and norm in ("batch", "instance")  # no norm on the input layer, as in DCGAN
            conv = nn.Conv3d(cin, cout, (3, 4, 4), (stride, 2, 2), (1, 1, 1), bias=not normed)
            layers += [apply_spectral(conv, norm), norm3d(norm, cout) if normed else nn.Identity(), activation(act)]
        self.body = nn.Sequential(*layers)
        self.flatten_time = cfg.video_pool == "flatten"
        self.add_head(widths[-1] * 16 * (t if self.flatten_time else 1), cfg.num_classes, norm)

    def features(self, clips: torch.Tensor) -> torch.Tensor:
        out = self.body(clips.transpose(1, 2))  # (B, C, T, H, W) for Conv3d
        return (out if self.flatten_time else out.mean(2)).flatten(1)


def sample_codes(net, n: int, frames: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(z_content (n, content_dim), z_motion (n, frames, noise_dim)), standard normal, from `generator`
    (CPU): what the exported network takes."""
    z_content = torch.randn(n, int(net.content_dim), generator=generator)
    return z_content, torch.randn(n, frames, int(net.noise_dim), generator=generator)


@torch.inference_mode()
def generate_clips(net, n: int, *, labels: torch.Tensor | None = None, seed: int = 0, frames: int | None = None,
                   batch_size: int = 64) -> torch.Tensor:
    """n clips (n, T, C, H, W) in [-1, 1] on the CPU from a private RNG (the training stream is left
    alone); random labels for a conditional network when none are given. `net` is a VideoGenerator
    or an ONNX runner of one."""
    device = next(net.parameters()).device
    rng = torch.Generator().manual_seed(seed)
    frames = int(frames or net.frames)
    z_content, z_motion = sample_codes(net, n, frames, rng)
    num_classes = int(net.num_classes or 0)
    if num_classes and labels is None:
        labels = torch.randint(0, num_classes, (n,), generator=rng)
    was_training = net.training
    net.eval()
    out = []
    for i in range(0, n, batch_size):
        extra = (labels[i:i + batch_size].to(device),) if num_classes else ()
        out.append(net(z_content[i:i + batch_size].to(device), z_motion[i:i + batch_size].to(device), *extra).cpu())
    net.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, frames, int(net.channels), int(net.image_size),
                                                  int(net.image_size))
