"""Discriminator for adversarial fine-tuning of super-resolution networks (SRGAN-style VGG stack).

Stages of [3x3 conv, 3x3 stride-2 conv] double the width and halve the resolution; a global
average pool makes the head independent of the patch size (any patch >= 32 pixels works, smaller
ones run but leave the deepest stage little to see). Spectral norm on every conv and linear layer
(Miyato et al. 2018) bounds the discriminator's Lipschitz constant, which keeps fine-tuning stable
without a gradient penalty; for the same reason there is no batch norm, which would also make one
image's score depend on the rest of the batch.
"""

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from genforge.nn import apply_spectral


class SRDiscriminatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    width: int = Field(32, ge=4, le=256, description="Channels of the first stage; doubled per stage.")
    depth: int = Field(4, ge=1, le=5, description="Stride-2 stages; the deepest sees the patch at 1/2**depth.")


def sn_conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    conv = apply_spectral(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), "spectral")
    return nn.Sequential(conv, nn.LeakyReLU(0.2, inplace=True))


class SRDiscriminator(nn.Module):
    """images (B, channels, H, W) in [0, 1] -> one logit per image (B,)."""

    def __init__(self, cfg: SRDiscriminatorConfig | None = None, channels: int = 3):
        super().__init__()
        cfg = cfg or SRDiscriminatorConfig()
        widths = [cfg.width * 2 ** i for i in range(cfg.depth)]
        self.stem = sn_conv(channels, widths[0], 1)
        self.stages = nn.ModuleList(
            nn.Sequential(sn_conv(cin, cout, 1), sn_conv(cout, cout, 2))
            for cin, cout in zip([widths[0]] + widths[:-1], widths))
        self.head = nn.Sequential(apply_spectral(nn.Linear(widths[-1], widths[-1]), "spectral"),
                                  nn.LeakyReLU(0.2, inplace=True),
                                  apply_spectral(nn.Linear(widths[-1], 1), "spectral"))

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """With return_features, also the output of every stage (for a feature-matching loss)."""
        # [-1, 1]: a spectrally normalised first conv cannot rescale its input freely
        h = self.stem(x * 2 - 1)
        features = []
        for stage in self.stages:
            h = stage(h)
            features.append(h)
        score = self.head(h.mean(dim=(2, 3))).squeeze(1)
        return (score, features) if return_features else score
