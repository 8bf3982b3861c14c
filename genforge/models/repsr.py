"""RepSR: the fast super-resolution network, for users without a GPU.

A plain stack of 3x3 convolutions at the low resolution, a pixel shuffle and a bicubic upscale of
the input added back (the global residual of VDSR: the network learns only the missing detail and
starts as bicubic; a nearest-neighbour base, ECBSR's, started 2.6 dB lower on BSD100 crops). Each
3x3 convolution trains as a multi-branch block (nn/reparam.py: 3x3, 1x1, 1x1 -> 3x3, edge filters,
identity) and is folded into one convolution for inference, so a deployed RepSR is exactly
``blocks + 2`` convolutions and PReLUs: the cost of an FSRCNN-sized net with more capacity during
training (the ECBSR idea of Zhang et al. 2021, written here for genforge).

    lr -> RepConv(1, C) -> PReLU -> [RepConv(C, C) -> PReLU] x blocks -> RepConv(C, s*s) -> shuffle
    lr -> bicubic x scale -----------------------------------------------------------------> + -> sr

Deployment loads the training form and folds it (``fold_()``, called by build_export_module), so
model folders keep the trainable weights and ONNX holds the folded graph.
"""

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from genforge.nn.reparam import RepConv3x3, fold_reparameterized_
from genforge.registry import register_model


class RepSRConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Literal["repsr"] = "repsr"
    scale: Literal[2, 3, 4] = Field(2, description="Upscaling factor.")
    channels: Literal[1, 3] = Field(1, description="Image channels: 1 luma (chroma bicubic at inference), 3 RGB.")
    width: int = Field(16, ge=4, le=256, description="Feature channels of every layer.")
    blocks: int = Field(4, ge=0, le=32, description="Body convolutions between the first and the last.")
    expand: int = Field(2, ge=0, le=8, description="Width factor of the 1x1 -> 3x3 training branch (0: none).")
    edges: bool = Field(True, description="Sobel / Laplacian training branches.")


@register_model("repsr", RepSRConfig, tiny={"width": 4, "blocks": 1, "expand": 1})
class RepSR(nn.Module):
    size_multiple = 1

    def __init__(self, cfg: RepSRConfig):
        super().__init__()
        self.scale, self.channels = cfg.scale, cfg.channels
        self.receptive_radius = cfg.blocks + 2  # one pixel per 3x3 convolution, in input pixels
        widths = [cfg.channels] + [cfg.width] * (cfg.blocks + 1) + [cfg.channels * cfg.scale ** 2]
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(RepConv3x3(cin, cout, expand=cfg.expand, edges=cfg.edges))
            if i < len(widths) - 2:
                layers.append(nn.PReLU(cout))
        self.body = nn.Sequential(*layers)
        self.shuffle = nn.PixelShuffle(cfg.scale)
        last = layers[-1]
        with torch.no_grad():  # start as bicubic upscaling: the last layer's output is ~0
            for conv in (last.conv3, last.conv1, last.expand_out, last.edge_in):
                if conv is not None:
                    conv.weight.zero_()
                    conv.bias.zero_()
            if last.edge_scale is not None:
                last.edge_scale.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return self.shuffle(self.body(x - 0.5)) + base

    def fold_(self) -> "RepSR":
        """The inference form: every RepConv3x3 becomes one Conv2d (same outputs to float error)."""
        return fold_reparameterized_(self)
