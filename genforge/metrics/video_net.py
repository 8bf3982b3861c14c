"""Video-generation metrics: a small 3D-conv feature network trained on moving digits, the video
Frechet distance on its features, identity consistency, per-frame scores in the digits features and
the baselines a benchmark sets beside a model.

* :class:`VideoNet`: four 3D convolutions over (T, 32, 32) clips, features pooled over space and into
  TIME_BINS spans of time (so *when* something happens survives), a 64-d embedding: the features of
  :func:`video_fd`. Trained on fresh one-digit moving-digits clips of the *train* digit images to
  tell which digit moves and its velocity (y, x, in pixels a frame) in each time span, bounces
  included: features that must follow one identity along a constant motion, the temporal
  coherence a video generator has to get right (a still clip, or one whose frames come from
  different clips, is far from anything it saw).
* :func:`identity_scores` / :meth:`VideoScorer.identity`: the share of clips whose frames the shipped
  digits classifier puts in one class (it sees a digit_size window centred on each frame's centre
  of brightness). Two-digit clips: each frame's bright pixels are split into two blobs (2-means on
  their coordinates), both windows classified, and the frame's identity is the unordered pair of
  classes; frames whose two blobs are closer than 3/4 of a digit (digits overlapping) are left out,
  and a clip counts when at least two of its frames are left in.
* :class:`VideoScorer`: everything against one fixed set of real clips, features computed once:
  per-frame FID (all frames, digits features), precision/recall (Kynkaanniemi et al. 2019; one
  frame per clip, drawn by the seed, so that a clip's own neighbouring frames do not set the
  manifold's radii; the digit crops for one-digit clips), identity and the video FD.
* Baselines from real clips: :func:`independent_frames` (each frame from another clip: perfect
  frames, no temporal model) and :func:`repeated_frame` (one real frame for the whole clip: no
  motion); :func:`video_baselines` scores them with real clips themselves, the floor.

Clips are float tensors (N, T, C, H, W) in [-1, 1]. Weights ship in weights/video_net.safetensors:

    python -m genforge.metrics.video_net --out genforge/metrics/weights/video_net.safetensors
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genforge.data import movingdigits as md
from genforge.data.color import luma
from genforge.errors import UserError
from genforge.metrics.digits_net import load_digits_net, predict_logits, resize_images
from genforge.metrics.fid import as_image_features, extract_features, frechet_distance
from genforge.metrics.precision_recall import precision_recall
from genforge.metrics.weights_io import load_weights, save_weights

__all__ = ["VideoNet", "WEIGHTS_PATH", "train_video_net", "load_video_net", "clip_features", "video_fd",
           "centred_crops", "identity_scores", "VideoScorer", "independent_frames", "repeated_frame",
           "video_baselines", "train_clips"]

WEIGHTS_PATH = Path(__file__).parent / "weights" / "video_net.safetensors"
INPUT_SIZE, TIME_BINS, NUM_CLASSES = 32, 4, 10
SCORES = ("fid", "precision", "recall", "identity", "video_fd")
_VAL_SEED = 7_2016  # the validation clips (holdout digit images) of the training summary


# --------------------------------------------------------------------------- the network
def _block(cin: int, cout: int, stride: tuple[int, int, int]) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True))


class VideoNet(nn.Module):
    """Clips (B, T, C, H, W) -> (digit logits (B, 10), velocities (B, TIME_BINS * 2)); features (B, 64)."""

    def __init__(self, num_features: int = 64, widths: tuple[int, ...] = (8, 16, 32, 48)) -> None:
        super().__init__()
        self.num_features = int(num_features)
        w = [1, *widths]
        strides = [(1, 2, 2), (1, 2, 2), (2, 2, 2), (1, 1, 1)]  # 32x32 -> 4x4, time halved once
        self.body = nn.Sequential(*(_block(a, b, s) for a, b, s in zip(w[:-1], w[1:], strides)))
        self.embed = nn.Sequential(nn.Linear(widths[-1] * TIME_BINS, self.num_features), nn.ReLU(inplace=True))
        self.classify = nn.Linear(self.num_features, NUM_CLASSES)
        self.velocity = nn.Linear(self.num_features, TIME_BINS * 2)

    @staticmethod
    def prepare(clips: Tensor) -> Tensor:
        """(B, T, 1|3, H, W) in [-1, 1] -> (B, 1, T, 32, 32) float32, grey by luma, frames resized."""
        if clips.dim() != 5 or clips.shape[2] not in (1, 3):
            raise ValueError(f"VideoNet expects clips (B, T, 1|3, H, W), got shape {tuple(clips.shape)}")
        b, t = clips.shape[:2]
        x = clips.float().flatten(0, 1)
        x = resize_images(luma(x) if x.shape[1] == 3 else x, INPUT_SIZE)
        return x.view(b, t, 1, INPUT_SIZE, INPUT_SIZE).transpose(1, 2)

    def features(self, clips: Tensor) -> Tensor:
        h = self.body(self.prepare(clips)).mean((3, 4))  # (B, C, T'): pooled over space
        return self.embed(F.adaptive_avg_pool1d(h, TIME_BINS).flatten(1))

    def forward(self, clips: Tensor) -> tuple[Tensor, Tensor]:
        f = self.features(clips)
        return self.classify(f), self.velocity(f)


# --------------------------------------------------------------------------- training data
def _clips_with_motion(n: int, g: torch.Generator, split: str, *, frames: int = 16, canvas: int = 32,
                       digit_size: int = 16) -> tuple[Tensor, Tensor, Tensor]:
    """One-digit clips (n, T, 1, canvas, canvas), labels (n,) and velocity targets (n, TIME_BINS * 2):
    each span's mean velocity in pixels a frame, divided by the top speed."""
    pool, labels = md.sprites(digit_size, split)
    pick = torch.randint(0, len(pool), (n, 1), generator=g)
    positions, velocities = md.trajectories(n, 1, frames, canvas - digit_size, g)
    clips = md.render(pool[pick], positions, canvas)
    target = F.adaptive_avg_pool1d(velocities[:, 0].transpose(1, 2).float(), TIME_BINS) / md.SPEED[1]
    return clips, labels[pick[:, 0]], target.flatten(1)


def _jitter(clips: Tensor, g: torch.Generator) -> Tensor:
    """[0, 1] clips (n, T, H, W) -> [-1, 1] (n, T, 1, H, W), contrast and noise varied per clip (a
    generator's frames are never exactly the renderer's)."""
    n = len(clips)
    contrast = 0.7 + 0.3 * torch.rand(n, 1, 1, 1, generator=g)
    noise = torch.rand(n, 1, 1, 1, generator=g) * 0.1 * (torch.rand(n, 1, 1, 1, generator=g) < 0.5)
    x = clips * contrast + noise * torch.randn(clips.shape, generator=g)
    return x.clamp_(0, 1).mul_(2).sub_(1)[:, :, None]


@torch.inference_mode()
def _validate(net: VideoNet, clips: Tensor, labels: Tensor, target: Tensor) -> dict:
    net.eval()
    logits, velocity = zip(*(net(clips[i:i + 100]) for i in range(0, len(clips), 100)))
    error = (torch.cat(velocity) - target).abs() * md.SPEED[1]
    return {"digit_accuracy": float((torch.cat(logits).argmax(1) == labels).float().mean()),
            "velocity_mae_px": float(error.mean()),
            "velocity_sign_accuracy": float(((torch.cat(velocity) > 0) == (target > 0))[target.abs() > 0.1]
                                             .float().mean())}


def train_video_net(out_path: str | Path | None = WEIGHTS_PATH, *, seed: int = 0, steps: int = 3000,
                    batch_size: int = 32, lr: float = 3e-3, velocity_weight: float = 10.0, val_clips: int = 1000,
                    verbose: bool = True) -> dict:
    """Train :class:`VideoNet` on fresh clips of the train digit images (one 16-pixel digit, 32x32, 16
    frames), measure it on `val_clips` clips of the holdout digit images, save it (``out_path=None``: not)."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = VideoNet()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    val_clips, val_labels, val_target = _clips_with_motion(val_clips, torch.Generator().manual_seed(_VAL_SEED),
                                                           "holdout")
    val_clips = val_clips.mul(2).sub(1)[:, :, None]
    for step in range(steps):
        net.train()
        clips, labels, target = _clips_with_motion(batch_size, g, "train")
        logits, velocity = net(_jitter(clips, g))
        loss = F.cross_entropy(logits, labels, label_smoothing=0.05) + velocity_weight * F.mse_loss(velocity, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if verbose and (step + 1) % 250 == 0:
            scores = _validate(net, val_clips, val_labels, val_target)
            print(f"step {step + 1} loss {loss.item():.3f} {scores} {time.perf_counter() - t0:.0f}s", flush=True)
    net.eval()
    summary = {**{f"holdout_{k}": v for k, v in _validate(net, val_clips, val_labels, val_target).items()},
               "holdout_clips": len(val_clips), "seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr,
               "velocity_weight": velocity_weight, "num_features": net.num_features,
               "num_parameters": sum(p.numel() for p in net.parameters()),
               "train_seconds": round(time.perf_counter() - t0, 1), "threads": torch.get_num_threads(),
               "torch": torch.__version__}
    return save_weights(net, out_path, summary, verbose)


def load_video_net(device: str | torch.device = "cpu", path: str | Path | None = None) -> VideoNet:
    """The shipped :class:`VideoNet` in eval mode, frozen."""
    return load_weights(lambda meta: VideoNet(num_features=int(meta.get("num_features", 64))),
                        Path(path) if path is not None else WEIGHTS_PATH, "VideoNet", "genforge.metrics.video_net",
                        device)


# --------------------------------------------------------------------------- video Frechet distance
@torch.inference_mode()
def clip_features(clips: Tensor, net: VideoNet, batch_size: int = 64) -> Tensor:
    """Float64 (N, num_features) features of N clips, on the CPU."""
    net.eval()
    dev = next(net.parameters()).device
    out = [net.features(clips[i:i + batch_size].to(dev)).double().cpu() for i in range(0, len(clips), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, net.num_features, dtype=torch.float64)


def video_fd(real: Tensor, fake: Tensor, net: VideoNet | None = None) -> float:
    """Frechet distance between two sets of clips in :class:`VideoNet` features (the shipped one by default)."""
    if min(len(real), len(fake)) < 2:
        raise UserError(f"the video FD needs at least 2 real and 2 generated clips, got {len(real)} and {len(fake)}")
    net = net or load_video_net()
    return frechet_distance(clip_features(real, net), clip_features(fake, net))


# --------------------------------------------------------------------------- identity consistency
def crops_at(frames: Tensor, centres: Tensor, size: int) -> Tensor:
    """(N, C, H, W) frames -> (N, C, size, size) windows centred on `centres` (N, 2) (y, x), inside the frame."""
    n, c, h, w = frames.shape
    if size >= min(h, w):
        return frames
    top = (centres[:, 0] - (size - 1) / 2).round().long().clamp_(0, h - size)
    left = (centres[:, 1] - (size - 1) / 2).round().long().clamp_(0, w - size)
    rows = (top[:, None] + torch.arange(size))[:, None, :, None]
    cols = (left[:, None] + torch.arange(size))[:, None, None, :]
    return frames[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]


def centred_crops(frames: Tensor, size: int) -> Tensor:
    """The window on each frame's centre of brightness (clamped to the frame), where the digit is."""
    _, _, h, w = frames.shape
    weight = (frames.mean(1) + 1).clamp_(min=0) + 1e-6  # (N, H, W): brightness, never all zero
    total = weight.sum((1, 2))
    cy = (weight.sum(2) * torch.arange(h)).sum(1) / total
    cx = (weight.sum(1) * torch.arange(w)).sum(1) / total
    return crops_at(frames, torch.stack([cy, cx], 1), size)


def two_centres(frames: Tensor, iterations: int = 10) -> Tensor:
    """(N, C, H, W) frames -> (N, 2, 2): the centres (y, x) of two blobs of bright pixels, by 2-means on
    the pixels' coordinates weighted by brightness, started on the main axis of the bright pixels."""
    n, _, h, w = frames.shape
    weight = ((frames.mean(1) + 1) / 2 - 0.1).clamp(min=0).flatten(1) + 1e-9  # (N, HW); faint noise ignored
    yx = torch.stack(torch.meshgrid(torch.arange(h, dtype=torch.float32),
                                    torch.arange(w, dtype=torch.float32), indexing="ij"), -1).view(-1, 2)
    total = weight.sum(1, keepdim=True)
    mean = weight @ yx / total
    d = yx[None] - mean[:, None]
    cov = torch.einsum("np,npi,npj->nij", weight, d, d) / total[..., None]
    values, vectors = torch.linalg.eigh(cov)
    axis = vectors[..., -1] * values[..., -1:].clamp(min=0).sqrt()
    centres = [mean - axis, mean + axis]
    for _ in range(iterations):
        # squared distance to a centre less the pixel's own |yx|^2 (the same for both): (N, HW)
        first = (centres[0] ** 2).sum(1, keepdim=True) - 2 * centres[0] @ yx.T
        second = (centres[1] ** 2).sum(1, keepdim=True) - 2 * centres[1] @ yx.T
        nearer = (first <= second).float()
        for i, part in enumerate((weight * nearer, weight * (1 - nearer))):
            mass = part.sum(1, keepdim=True)
            centres[i] = torch.where(mass > 1e-6, part @ yx / mass.clamp(min=1e-9), centres[i])
    return torch.stack(centres, 1)


def identity_scores(predicted: Tensor, valid: Tensor | None = None, num_classes: int = NUM_CLASSES) -> tuple:
    """Predicted classes (clips, T) [and which frames count] -> (share of clips whose counted frames all
    share one class, mean share of a clip's counted frames in its most common class), over the clips
    with at least two counted frames (NaN when none has)."""
    valid = torch.ones_like(predicted, dtype=torch.bool) if valid is None else valid
    counts = torch.zeros(len(predicted), num_classes).scatter_add_(1, predicted.long(), valid.float())
    top, counted = counts.max(1).values, valid.sum(1)
    keep = counted >= min(2, predicted.shape[1])
    if not keep.any():
        return float("nan"), float("nan")
    return float((top == counted)[keep].float().mean()), float((top / counted.clamp(min=1))[keep].mean())


# --------------------------------------------------------------------------- all against one real set
def _one_frame(clips: Tensor, seed: int) -> Tensor:
    pick = torch.randint(0, clips.shape[1], (len(clips),), generator=torch.Generator().manual_seed(seed))
    return clips[torch.arange(len(clips)), pick]


class VideoScorer:
    """:data:`SCORES` of sets of clips against one fixed `reference` set, its features computed once.
    digits: clips hold 1 or 2 digits of digit_size pixels (identity and the crops); None: not digits."""

    def __init__(self, reference: Tensor, *, digit_size: int = 16, digits: int | None = 1, seed: int = 0,
                 metrics: tuple[str, ...] = SCORES, features: nn.Module | str = "digits",
                 video_net: VideoNet | None = None,
                 k: int = 3) -> None:
        unknown = set(metrics) - set(SCORES)
        if unknown:
            raise ValueError(f"unknown video scores {', '.join(sorted(unknown))}")
        if "identity" in metrics and digits not in (1, 2):
            raise UserError("identity consistency needs moving-digits clips (the digits classifier)")
        self.metrics, self.digit_size, self.digits, self.seed, self.k = tuple(metrics), digit_size, digits, seed, k
        self.frame_net = as_image_features(features) if {"fid", "precision", "recall"} & set(metrics) else None
        self.classifier = load_digits_net() if "identity" in metrics else None
        self.video_net = (video_net or load_video_net()) if "video_fd" in metrics else None
        self.reference = {name: self._features(name, reference) for name in ("fid", "pr", "video_fd")
                          if self._wants(name)}

    def _wants(self, name: str) -> bool:
        return name in self.metrics or (name == "pr" and {"precision", "recall"} & set(self.metrics))

    def _features(self, name: str, clips: Tensor) -> Tensor:
        if name == "fid":
            return extract_features(clips.flatten(0, 1), self.frame_net)
        if name == "pr":
            frames = _one_frame(clips, self.seed)
            return extract_features(centred_crops(frames, self.digit_size) if self.digits == 1 else frames,
                                    self.frame_net)
        return clip_features(clips, self.video_net)

    def identity(self, clips: Tensor) -> tuple[float, float]:
        """(identity consistency, mean majority share) of `clips` (see :func:`identity_scores`)."""
        frames, (n, t), size = clips.flatten(0, 1), clips.shape[:2], self.digit_size
        if self.digits == 1:
            return identity_scores(predict_logits(self.classifier, centred_crops(frames, size)).argmax(1).view(n, t))
        centres = two_centres(frames)
        valid = (centres[:, 0] - centres[:, 1]).norm(dim=1) >= 0.75 * size
        crops = torch.cat([crops_at(frames, centres[:, 0], size), crops_at(frames, centres[:, 1], size)])
        pair = predict_logits(self.classifier, crops).argmax(1).view(2, -1).sort(0).values
        return identity_scores((pair[0] * NUM_CLASSES + pair[1]).view(n, t), valid.view(n, t), NUM_CLASSES ** 2)

    def __call__(self, clips: Tensor, metrics: tuple[str, ...] | None = None) -> dict:
        """The scores (the scorer's metrics, or those of them in `metrics`) of `clips`."""
        if len(clips) < 2:
            raise UserError(f"video scores need at least 2 clips, got {len(clips)}")
        wanted = [m for m in self.metrics if metrics is None or m in metrics]
        out: dict = {}
        if "fid" in wanted:
            out["fid"] = frechet_distance(self.reference["fid"], self._features("fid", clips))
        if {"precision", "recall"} & set(wanted):
            pr = precision_recall(self.reference["pr"], self._features("pr", clips), k=self.k)
            out.update({m: v for m, v in pr.items() if m in wanted})
        if "identity" in wanted:
            out["identity"], out["identity_frames"] = self.identity(clips)
        if "video_fd" in wanted:
            out["video_fd"] = frechet_distance(self.reference["video_fd"], self._features("video_fd", clips))
        return out


# --------------------------------------------------------------------------- baselines
def independent_frames(clips: Tensor, seed: int = 0) -> Tensor:
    """Frame t of clip i taken from frame t of another real clip, all T sources of a clip distinct (every
    real frame used once): real frames, no temporal model. Needs at least T clips."""
    n, t = clips.shape[:2]
    if n < t:
        raise UserError(f"independent frames need at least as many clips as frames ({t}), got {n}")
    g = torch.Generator().manual_seed(seed)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), torch.randperm(n - 1, generator=g)[:t - 1] + 1])
    source = torch.randperm(n, generator=g)[(torch.arange(n)[:, None] + offsets) % n]  # (n, t), distinct per row
    return clips[source, torch.arange(t)]


def repeated_frame(clips: Tensor, seed: int = 0) -> Tensor:
    """One random frame of each real clip shown for the whole clip: real frames, no motion."""
    n, t = clips.shape[:2]
    pick = torch.randint(0, t, (n,), generator=torch.Generator().manual_seed(seed))
    return clips[torch.arange(n), pick][:, None].expand_as(clips).clone()


def video_baselines(scorer: VideoScorer, real: Tensor, seed: int = 0) -> dict[str, dict]:
    """The scorer's figures for the `real` clips themselves (the floor: a perfect generator) and for the
    two baselines made from them."""
    return {"real": scorer(real), "independent frames": scorer(independent_frames(real, seed)),
            "repeated frame": scorer(repeated_frame(real, seed))}


def train_clips(cfg: dict, count: int, seed: int = 0) -> Tensor:
    """`count` real clips of the run's training data (cfg: a run config as a dict): fresh moving-digits
    clips of the train digit images, or windows of the train clips of videos:PATH."""
    data, model, task = cfg["data"], cfg["model"], cfg["task"]
    if data["dataset"] == md.NAME:
        g = torch.Generator().manual_seed(seed + 1)  # never the holdout's seed
        return md.moving_digits(count, g, split="train", canvas=model["image_size"], frames=model["frames"],
                                digit_size=task["digit_size"], digits=task["digits"])[0]
    split = "train" if len(md.video_files(data["dataset"])) >= md.VIDEO_HOLDOUT_EVERY else "all"
    decoded = md.read_videos(data["dataset"], split, size=model["image_size"], channels=model["channels"],
                             frames=model["frames"])
    return md.video_windows(decoded, model["frames"], count)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m genforge.metrics.video_net",
                                 description="Train the VideoNet feature network on moving digits (one thread).")
    ap.add_argument("--out", default=str(WEIGHTS_PATH), help="where to write the safetensors weights")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    train_video_net(args.out, seed=args.seed, steps=args.steps, batch_size=args.batch_size, lr=args.lr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
