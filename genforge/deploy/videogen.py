"""The video-generation family's inference wrapper: a generator (z_content, z_motion [, label]) -> clips
(B, T, C, H, W) in [-1, 1], its ONNX signature, `genforge sample` for it (a grid of clips as an
animated GIF or a video, or one GIF per clip), POST /v1/generate-video (an animated GIF grid) and
`genforge eval` (the measures live in metrics/video_net.py):

    fid, kid   per frame, in the digits features (or --features), against the fixed real holdout
               clips' frames; beside them the same between two halves of the real clips. The digits
               features also get a digit_size window centred on each frame's centre of mass (the
               digit itself, as the classifier was trained on whole digits): fid_crops, kid_crops
    precision, recall   per frame (one frame a clip; the digit crops for one-digit clips) against the
               holdout clips; beside them (_real) the same for as many real clips of the train split
    identity   the share of clips whose frames the shipped digits classifier puts in one class (two
               digits: one unordered pair of classes; video_net.py says how), beside the same for the
               real holdout clips, and the mean share of a clip's frames in its most common class
    video_fd   the Frechet distance to the holdout clips in the features of VideoNet, a 3D-conv network
               trained on real moving digits; beside it (_real) the same for real train-split clips
    accuracy   conditional models: the share of frames classified as the requested digit

model_vs_real puts each figure beside the real clips' own. GIFs are written with Pillow (an exact grey
palette; FFmpeg's GIF encoder quantises grey to its rgb8 palette); other video files with
deploy/video.py's writer (H.264, VP9)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, Field

from genforge.data.io import write_file
from genforge.deploy.generator import GeneratorWrapper
from genforge.deploy.infer import OnnxSignature
from genforge.errors import UserError
from genforge.models.videogan import generate_clips
from genforge.registry import register_wrapper

MAX_CLIPS = 64  # per service request
MAX_SAMPLE_CLIPS = 4096  # per `genforge sample`
MAX_GENERATE = 100_000  # per call (genforge eval -n)
MAX_FRAMES = 256
DEFAULT_FPS = 8.0
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".avi")


class VideoRequest(BaseModel):
    model: str = Field(description="name of a loaded video-generation model (see /v1/models)")
    n: int = Field(8, ge=1, le=MAX_CLIPS, description="number of clips in the grid")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="random seed; the same seed gives the same clips")
    label: int | None = Field(None, description="which digit moves, for class-conditional models only")
    nrow: int = Field(4, ge=1, le=MAX_CLIPS, description="clips per grid row")
    frames: int | None = Field(None, ge=2, le=MAX_FRAMES, description="frames per clip (default: the model's)")
    fps: float = Field(DEFAULT_FPS, ge=1.0, le=50.0, description="frames per second of the GIF")

    model_config = {"extra": "forbid"}


# --- clips -> pictures ----------------------------------------------------------------------------
def grid_frames(clips: torch.Tensor, nrow: int) -> list[np.ndarray]:
    """Clips (N, T, C, H, W) in [-1, 1] -> T grid frames, H' x W' x C uint8 (clips side by side)."""
    from genforge.data.grid import to_grid, to_uint8
    return [to_uint8(to_grid(clips[:, t], nrow=nrow)) for t in range(clips.shape[1])]


def encode_gif(frames: list[np.ndarray], fps: float) -> bytes:
    """An animated GIF that loops, from H x W x 1|3 uint8 frames."""
    from PIL import Image
    images = [Image.fromarray(f[:, :, 0] if f.shape[2] == 1 else f) for f in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=max(20, round(1000 / fps)), optimize=False)
    return buffer.getvalue()


def check_target(path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in (".gif", *VIDEO_SUFFIXES):
        raise UserError(f"-o {path}: give an animated .gif or a video file ({', '.join(VIDEO_SUFFIXES)}) for "
                        "clips, or a folder ending in / for one GIF per clip")
    return path


def write_clips(path, clips: torch.Tensor, *, nrow: int = 8, fps: float = DEFAULT_FPS) -> Path:
    """A grid of clips as an animated .gif or a video file (.mp4, .webm, ...); whole or not at all."""
    path = check_target(path)
    frames = grid_frames(clips, nrow)
    if path.suffix.lower() == ".gif":
        write_file(path, encode_gif(frames, fps), what="clips")
        return path
    from fractions import Fraction

    from genforge.deploy.video import VideoWriter
    h, w = frames[0].shape[:2]
    with VideoWriter(path, Fraction(fps).limit_denominator(1001), w, h, progress=False) as writer:
        for f in frames:
            writer.write(np.ascontiguousarray(np.repeat(f, 3, axis=2) if f.shape[2] == 1 else f))
    return path


@register_wrapper("video-generation")
class VideoGeneration(GeneratorWrapper):
    """A video generator: (z_content, z_motion [, label]) -> clips in [-1, 1]."""

    noun = "video generator"
    hint = " (genforge sample takes both image and video generators)"
    metrics = ("fid", "kid", "precision", "recall", "identity", "video_fd", "accuracy")
    default_metrics = ("fid", "kid", "precision", "recall", "identity", "video_fd")

    def __init__(self, name_or_path: str, device: str = "auto", *, opened=None):
        super().__init__(name_or_path, device, opened=opened)
        self.frames = int(self.module.frames)
        if self._digits() is None:  # videos:PATH: no digits classifier, no moving-digits features
            self.default_metrics = ("fid", "kid", "precision", "recall")

    def describe(self) -> dict:
        m = self.source.config["model"]
        return {**super().describe(), "frames": self.frames, "num_classes": self.num_classes,
                "image_size": int(m["image_size"]), "channels": int(m["channels"]),
                "content_dim": int(m["content_dim"]), "noise_dim": int(m["noise_dim"])}

    def generate(self, n: int, *, label: int | None = None, seed: int = 0, frames: int | None = None) -> torch.Tensor:
        """n clips (n, T, C, H, W) in [-1, 1] on the CPU; T: `frames` or the model's own."""
        if not 1 <= n <= MAX_GENERATE:
            raise UserError(f"-n {n}: must be between 1 and {MAX_GENERATE} clips")
        if frames is not None and not 2 <= frames <= MAX_FRAMES:
            raise UserError(f"--frames {frames}: must be between 2 and {MAX_FRAMES}")
        return generate_clips(self.module, n, labels=self._labels(label, n), seed=seed, frames=frames)

    def save(self, clips: torch.Tensor, path, nrow: int = 8, fps: float = DEFAULT_FPS) -> Path:
        return write_clips(path, clips, nrow=nrow, fps=fps)

    @classmethod
    def onnx_signature(cls, module, gen: torch.Generator) -> OnnxSignature:
        """(z_content, z_motion [, labels]) -> clips; batch and frames are dynamic."""
        num_classes, frames = int(module.num_classes or 0), int(module.frames)
        c, s = int(module.channels), int(module.image_size)

        def inputs(n, t):
            z = (torch.randn(n, module.content_dim, generator=gen), torch.randn(n, t, module.noise_dim, generator=gen))
            return (*z, torch.randint(0, num_classes, (n,), generator=gen)) if num_classes else z
        names = ["z_content", "z_motion", "labels"][:3 if num_classes else 2]
        axes = {"z_content": {0: "batch"}, "z_motion": {0: "batch", 1: "frames"}, "labels": {0: "batch"},
                "clips": {0: "batch", 1: "frames"}}
        return OnnxSignature(
            inputs=inputs(2, frames), input_names=names, output_name="clips",
            dynamic_axes={k: v for k, v in axes.items() if k in names or k == "clips"},
            checks={"random": inputs(3, frames), "random_longer": inputs(2, frames + 3)},
            meta={"channels": c, "image_size": s, "frames": frames, "num_classes": num_classes,
                  "content_dim": int(module.content_dim), "noise_dim": int(module.noise_dim)},
            integer_inputs=("labels",),
            output_shape=lambda z_content, z_motion, *_: (len(z_content), z_motion.shape[1], c, s, s))

    @classmethod
    def add_routes(cls, app, service) -> None:
        def render(video, req: VideoRequest) -> bytes:
            clips = video.generate(req.n, label=req.label, seed=req.seed, frames=req.frames)
            return encode_gif(grid_frames(clips, req.nrow), req.fps)
        cls.add_grid_route(app, service, "/v1/generate-video", VideoRequest, render, name="generate_video",
                           summary="an animated GIF grid of clips from a video-generation model",
                           media_type="image/gif", description="animated GIF", filename="clips.gif")

    @classmethod
    def add_commands(cls, sub) -> None:
        """`genforge sample` is the generation family's command, which hands video models to
        sample_command; its options for clips are added here."""
        sample = sub.choices.get("sample")
        if sample is not None:
            sample.add_argument("--fps", type=float, default=DEFAULT_FPS, help="video generators: frames per "
                                "second of the GIF or video")
            sample.add_argument("--frames", type=int, help="video generators: frames per clip (default: the "
                                "model's)")

    @classmethod
    def sample_command(cls, args, opened) -> int:
        """`genforge sample` for a video generator: -o a .gif or video file for a grid of clips (--nrow a
        row), or a folder ending in / for one GIF per clip."""
        if args.interpolate:
            raise UserError("--interpolate applies to image generators, not to video generators")
        if args.n > MAX_SAMPLE_CLIPS:
            raise UserError(f"-n {args.n}: a video generator writes at most {MAX_SAMPLE_CLIPS} clips at once")
        fps = getattr(args, "fps", DEFAULT_FPS)
        if not 0.1 <= fps <= 120:
            raise UserError(f"--fps {fps}: must be between 0.1 and 120")
        if args.nrow < 1:
            raise UserError("--nrow must be at least 1")
        video = cls(args.model, opened=opened)
        if args.half:
            video.use_half()
        out = Path(args.output)
        folder = args.output.endswith(("/", "\\")) or out.is_dir()
        if not folder:
            check_target(out)  # before any work
        clips = video.generate(args.n, label=args.label, seed=args.seed, frames=getattr(args, "frames", None))
        if folder:
            for i, clip in enumerate(clips):
                write_clips(out / f"clip_{i:05d}.gif", clip[None], nrow=1, fps=fps)
            print(f"wrote {len(clips)} clips to {out}/")
        else:
            write_clips(out, clips, nrow=args.nrow, fps=fps)
            print(f"wrote {out} ({len(clips)} clips of {clips.shape[1]} frames)")
        return 0

    # --- genforge eval ------------------------------------------------------------------------
    def _digits(self) -> int | None:
        """Digits per clip of a movingdigits model, None for other data."""
        cfg = self.source.config
        return int(cfg["task"].get("digits", 1)) if cfg["data"]["dataset"] == "movingdigits" else None

    def evaluate(self, metrics: list[str], *, n: int = 2000, features: str = "auto", seed: int = 0, **_) -> dict:
        from genforge.data.movingdigits import reference_clips
        from genforge.metrics.video_net import VideoScorer, centred_crops, train_clips
        cfg, digits = self.source.config, self._digits()
        if not 2 <= n <= MAX_GENERATE:
            raise UserError(f"-n {n}: must be between 2 and {MAX_GENERATE} clips")
        if "identity" in metrics and digits is None:
            raise UserError("identity needs the digits classifier: only for models trained on movingdigits clips "
                            "(choose --metrics fid,kid,precision,recall)")
        if "accuracy" in metrics and digits != 1:
            raise UserError("accuracy needs the digits classifier: only for models trained on one-digit "
                            "movingdigits clips")
        if "accuracy" in metrics and not self.num_classes:
            raise UserError("accuracy needs a class-conditional model")
        real = reference_clips(cfg)
        fake = self.generate(n, seed=seed)
        size = int(cfg["task"].get("digit_size", 16))
        result: dict = {"n": n, "seed": seed, "frames": self.frames, "real_clips": len(real)}
        net = self.eval_features(features, "movingdigits", result) if {"fid", "kid", "precision", "recall"} & \
            set(metrics) else None
        if "fid" in metrics or "kid" in metrics:
            from genforge.metrics.fid import extract_features, fid_kid_from_features
            half = len(real) // 2 * real.shape[1]  # frames of half the real clips
            for suffix, transform in (("", lambda x: x), ("_crops", lambda x: centred_crops(x, size))):
                if suffix and digits != 1:
                    continue
                real_f = extract_features(transform(real.flatten(0, 1)), net)
                fake_f = extract_features(transform(fake.flatten(0, 1)), net)
                # KID on subsets of the generated set's size in both comparisons: one estimator
                subset = min(1000, len(fake_f))
                scores = fid_kid_from_features(real_f, fake_f, kid_subset_size=subset, seed=seed)
                reference = fid_kid_from_features(real_f[:half], real_f[half:2 * half], kid_subset_size=subset,
                                                  seed=seed)
                for m in ("fid", "kid"):
                    if m in metrics:
                        result[f"{m}{suffix}"] = scores[m]
                        result[f"{m}{suffix}_real_halves"] = reference[m]
        scored = tuple(m for m in ("precision", "recall", "identity", "video_fd") if m in metrics)
        if scored:
            scorer = VideoScorer(real, digit_size=size, digits=digits, seed=seed, metrics=scored,
                                 features=net if net is not None else "digits")
            result.update(scorer(fake))
            if "identity" in scored:
                result["identity_real"], result["identity_frames_real"] = scorer.identity(real)
            against = tuple(m for m in scored if m != "identity")
            if against:  # as many real clips of the train split: what a perfect generator would score
                result.update({f"{m}_real": v for m, v in scorer(train_clips(cfg, n, seed), against).items()})
        if "accuracy" in metrics:
            from genforge.metrics.digits_net import load_digits_net, predict_logits
            classifier = load_digits_net()
            per_label = {}
            for label in range(self.num_classes):
                clips = self.generate(max(1, n // self.num_classes), label=label, seed=seed + 1 + label)
                logits = predict_logits(classifier, centred_crops(clips.flatten(0, 1), size))
                per_label[str(label)] = float((logits.argmax(1) == label).float().mean())
            result["accuracy"] = sum(per_label.values()) / self.num_classes
            result["accuracy_per_label"] = per_label
        pairs = {"fid per frame": ("fid", "fid_real_halves"), "fid on crops": ("fid_crops", "fid_crops_real_halves"),
                 "precision": ("precision", "precision_real"), "recall": ("recall", "recall_real"),
                 "identity": ("identity", "identity_real"), "video_fd": ("video_fd", "video_fd_real")}
        result["model_vs_real"] = {row: {"model": result[a], "real": result[b]} for row, (a, b) in pairs.items()
                                   if a in result and b in result}
        return result
