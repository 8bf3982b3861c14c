"""A small CNN that classifies the bundled ``digits`` images.

It serves two purposes:

* its penultimate activations are the feature space of FID/KID on digits
  (``genforge.metrics.fid.feature_network("digits")``);
* its predictions judge generated digits: which classes a GAN covers
  (:func:`class_histogram`) and whether a conditional model draws the digit it
  was asked for (:func:`requested_label_fraction`).

Images follow the package convention: float tensors ``B x C x H x W`` in
``[-1, 1]``. Any size is accepted (the net resizes to 32x32 itself, the same way
the GANs resize their training data) and RGB input is turned grey by luma.

Weights ship with the package in ``weights/digits_net.safetensors``; they are
reproduced by::

    python -m genforge.metrics.digits_net --out genforge/metrics/weights/digits_net.safetensors
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genforge.data.color import luma
from genforge.metrics.weights_io import load_weights, save_weights

__all__ = ["DigitsNet", "WEIGHTS_PATH", "NUM_CLASSES", "real_digits", "resize_images", "holdout_split",
           "train_digits_net", "load_digits_net", "predict_logits", "class_histogram", "classes_covered",
           "requested_label_fraction"]

WEIGHTS_PATH = Path(__file__).parent / "weights" / "digits_net.safetensors"
NUM_CLASSES = 10
INPUT_SIZE = 32
_SPLIT_SEED = 0  # the 80/20 split never changes, whatever the training seed


# --------------------------------------------------------------------------- data


def resize_images(x: Tensor, size: int) -> Tensor:
    """Resize ``B x C x H x W`` float images to ``size x size`` the way genforge does everywhere."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def real_digits(size: int = 32) -> tuple[Tensor, Tensor]:
    """All 1,797 scikit-learn digits as ``(N, 1, size, size)`` float32 in [-1, 1], and their labels.

    Values 0..16 become uint8 by ``round(v * 255 / 16)``, then ``[-1, 1]`` floats,
    then are resized with bilinear antialiased interpolation.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    u8 = np.round(data.images * (255.0 / 16.0)).astype(np.uint8)
    x = torch.from_numpy(u8).float().div_(127.5).sub_(1.0).unsqueeze(1)
    x = resize_images(x, size).clamp_(-1.0, 1.0)
    y = torch.from_numpy(data.target.astype(np.int64))
    return x.contiguous(), y


def holdout_split(labels: Tensor | np.ndarray, test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, holdout)`` of the fixed stratified 80/20 split of digits."""
    from sklearn.model_selection import train_test_split

    y = np.asarray(labels)
    idx = np.arange(len(y))
    train_idx, test_idx = train_test_split(
        idx, test_size=test_fraction, stratify=y, random_state=_SPLIT_SEED, shuffle=True
    )
    return np.sort(train_idx), np.sort(test_idx)


# --------------------------------------------------------------------------- model


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class DigitsNet(nn.Module):
    """Digit classifier: ``forward(x) -> (B, 10)`` logits, ``features(x) -> (B, num_features)``.

    About 80k parameters (~320 KB of float32 weights).
    """

    input_size = INPUT_SIZE

    def __init__(self, num_features: int = 128, num_classes: int = NUM_CLASSES, dropout: float = 0.2) -> None:
        super().__init__()
        self.num_features = int(num_features)
        self.num_classes = int(num_classes)
        self.body = nn.Sequential(
            _conv_bn_relu(1, 16),
            nn.MaxPool2d(2),  # 16x16
            _conv_bn_relu(16, 32),
            _conv_bn_relu(32, 32),
            nn.MaxPool2d(2),  # 8x8
            _conv_bn_relu(32, 64),
            nn.MaxPool2d(2),  # 4x4
            _conv_bn_relu(64, 64),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.embed = nn.Sequential(nn.Linear(64, self.num_features), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.num_features, self.num_classes)

    @staticmethod
    def prepare(x: Tensor) -> Tensor:
        """Bring ``B x C x H x W`` images in [-1, 1] to ``B x 1 x 32 x 32`` float32."""
        if x.dim() != 4:
            raise ValueError(f"DigitsNet expects B x C x H x W images, got shape {tuple(x.shape)}")
        if x.dtype == torch.uint8:
            x = x.float() / 127.5 - 1.0
        x = x.float()
        c = x.shape[1]
        if c == 3:
            x = luma(x)
        elif c != 1:
            raise ValueError(f"DigitsNet expects 1 or 3 channels, got {c}")
        return resize_images(x, INPUT_SIZE)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations ``(B, num_features)``."""
        return self.embed(self.body(self.prepare(x)))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.features(x)))


# --------------------------------------------------------------------------- augmentation


def _gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Per-sample Gaussian blur of ``B x 1 x H x W``; ``sigma`` has shape ``(B,)``."""
    b = x.shape[0]
    r = 2
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k1 = torch.exp(-0.5 * (t.view(1, -1) / sigma.clamp_min(1e-3).view(-1, 1)) ** 2)
    k1 = k1 / k1.sum(dim=1, keepdim=True)  # (B, 5)
    k2 = (k1.unsqueeze(2) * k1.unsqueeze(1)).unsqueeze(1)  # (B, 1, 5, 5)
    padded = F.pad(x.reshape(1, b, *x.shape[-2:]), (r, r, r, r), mode="replicate")
    return F.conv2d(padded, k2, groups=b).reshape_as(x)


def augment(x: Tensor, gen: torch.Generator) -> Tensor:
    """Random geometric and photometric jitter, so the net tolerates GAN artefacts.

    ``x`` is ``B x 1 x 32 x 32`` in [-1, 1]; the background (-1) stays background.
    """
    b, _, h, w = x.shape
    dev, dt = x.device, x.dtype

    def u(lo: float, hi: float, n: int = b) -> Tensor:
        return torch.rand(n, generator=gen, device=dev, dtype=dt) * (hi - lo) + lo

    def coin(p: float) -> Tensor:
        return (torch.rand(b, generator=gen, device=dev) < p).view(b, 1, 1, 1)

    # affine: rotation, anisotropic scale, shear, translation (inverse map for grid_sample)
    angle = u(-14.0, 14.0) * (math.pi / 180.0)
    scale = u(0.85, 1.15)
    aspect = u(0.92, 1.08)
    shear = u(-0.15, 0.15)
    tx, ty = u(-0.15, 0.15), u(-0.15, 0.15)  # +-2.4 px at 32x32
    sx, sy = scale * aspect, scale / aspect
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [
            torch.stack([cos / sx, (-sin + shear * cos) / sx, tx], dim=1),
            torch.stack([sin / sy, (cos + shear * sin) / sy, ty], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    x = F.grid_sample(x + 1.0, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1.0

    # stroke thickness
    thick = F.max_pool2d(x, 3, stride=1, padding=1)
    thin = -F.max_pool2d(-x, 3, stride=1, padding=1)
    x = torch.where(coin(0.12), thick, x)
    x = torch.where(coin(0.12), thin, x)

    # resolution round trip (GANs also work at 16x16 and lower)
    for size, p in ((12, 0.1), (16, 0.2)):
        low = resize_images(resize_images(x, size), h)
        x = torch.where(coin(p), low, x)

    # blur
    x = torch.where(coin(0.3), _gaussian_blur(x, u(0.4, 1.2)), x)

    # contrast / brightness
    a = u(0.75, 1.1).view(b, 1, 1, 1)
    c = u(-0.15, 0.15).view(b, 1, 1, 1)
    x = torch.where(coin(0.4), x * a + c, x)

    # noise
    std = u(0.0, 0.2).view(b, 1, 1, 1)
    noise = torch.randn(x.shape, generator=gen, device=dev, dtype=dt) * std
    x = torch.where(coin(0.5), x + noise, x)
    return x.clamp_(-1.0, 1.0)


# --------------------------------------------------------------------------- train / load


@torch.inference_mode()
def predict_logits(net: nn.Module, images: Tensor, batch_size: int = 512) -> Tensor:
    """Logits ``(N, 10)`` on CPU for ``N`` images, computed in batches in eval mode."""
    was_training = net.training
    net.eval()
    try:
        dev = next(net.parameters()).device
        out = [net(images[i : i + batch_size].to(dev)).float().cpu() for i in range(0, len(images), batch_size)]
    finally:
        net.train(was_training)
    if not out:
        return torch.zeros(0, NUM_CLASSES)
    return torch.cat(out)


def _accuracy(net: nn.Module, x: Tensor, y: Tensor) -> float:
    return float((predict_logits(net, x).argmax(1) == y).float().mean())


def train_digits_net(
    out_path: str | Path | None = WEIGHTS_PATH,
    seed: int = 0,
    epochs: int = 40,
    batch_size: int = 64,
    lr: float = 3e-3,
    weight_decay: float = 5e-4,
    num_features: int = 128,
    verbose: bool = True,
) -> dict:
    """Train :class:`DigitsNet` on the fixed 80% split, measure it on the other 20%, save it.

    Returns a summary dict (holdout accuracy at 32x32 and at 16/64 input sizes,
    seed, epochs, seconds). ``out_path=None`` skips saving.
    """
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)

    x, y = real_digits(INPUT_SIZE)
    tr, te = holdout_split(y)
    x_tr, y_tr = x[tr], y[tr]
    x_te, y_te = x[te], y[te]

    net = DigitsNet(num_features=num_features)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(x_tr) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.2
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)

    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        total, n = 0.0, 0
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            if len(idx) < 2:  # BatchNorm needs more than one sample
                continue
            xb = augment(x_tr[idx].clone(), gen)
            loss = loss_fn(net(xb), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            n += len(idx)
        if verbose and (epoch % 5 == 4 or epoch == epochs - 1):
            acc = _accuracy(net, x_te, y_te)
            print(f"epoch {epoch + 1:3d}/{epochs}  loss {total / max(n, 1):.4f}  holdout acc {acc:.4f}", flush=True)

    net.eval()
    x_aug = augment(x_te.clone(), torch.Generator().manual_seed(1234))
    summary = {
        "holdout_accuracy": _accuracy(net, x_te, y_te),
        "holdout_accuracy_16": _accuracy(net, resize_images(resize_images(x_te, 16), 32), y_te),
        "holdout_accuracy_64": _accuracy(net, real_digits(64)[0][te], y_te),
        "holdout_accuracy_augmented": _accuracy(net, x_aug, y_te),
        "train_accuracy": _accuracy(net, x_tr, y_tr),
        "holdout_size": int(len(te)),
        "seed": int(seed),
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "num_features": int(num_features),
        "num_parameters": int(sum(p.numel() for p in net.parameters())),
        "train_seconds": round(time.perf_counter() - t0, 1),
        "torch": torch.__version__,
    }
    return save_weights(net, out_path, summary, verbose)


def load_digits_net(device: str | torch.device = "cpu", path: str | Path | None = None) -> DigitsNet:
    """The shipped :class:`DigitsNet` in eval mode (weights frozen)."""
    return load_weights(lambda meta: DigitsNet(num_features=int(meta.get("num_features", 128))),
                        Path(path) if path is not None else WEIGHTS_PATH, "DigitsNet", "genforge.metrics.digits_net",
                        device)


# --------------------------------------------------------------------------- judging helpers


def class_histogram(logits: Tensor | np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Fraction of samples predicted as each class, shape ``(num_classes,)``, summing to 1."""
    pred = np.asarray(torch.as_tensor(logits).argmax(dim=1).cpu())
    counts = np.bincount(pred, minlength=num_classes).astype(np.float64)
    return counts / max(len(pred), 1)


def classes_covered(logits: Tensor | np.ndarray, min_fraction: float = 0.01) -> int:
    """How many classes receive at least ``min_fraction`` of the predictions (mode coverage)."""
    return int((class_histogram(logits) >= min_fraction).sum())


def requested_label_fraction(logits: Tensor | np.ndarray, labels: Tensor | np.ndarray | int) -> float:
    """Fraction of samples the classifier assigns to the label they were generated for."""
    logits = torch.as_tensor(logits)
    pred = logits.argmax(dim=1).cpu()
    target = torch.as_tensor(labels).long().cpu()
    if target.dim() == 0:
        target = target.expand_as(pred)
    if target.shape != pred.shape:
        raise ValueError(f"{len(pred)} logits but labels of shape {tuple(target.shape)}")
    if len(pred) == 0:
        return float("nan")
    return float((pred == target).float().mean())


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m genforge.metrics.digits_net",
        description="Train the DigitsNet judge/feature network on scikit-learn digits.",
    )
    ap.add_argument("--out", default=str(WEIGHTS_PATH), help="where to write the safetensors weights")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    args = ap.parse_args(argv)
    train_digits_net(args.out, seed=args.seed, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
