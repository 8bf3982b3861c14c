"""VFINet: genforge's frame-interpolation network, flow-based and coarse to fine in the spirit of
IFNet (RIFE, Huang et al. 2022).

Given two frames a, b and a time t in (0, 1), it estimates the two intermediate flows F_t0, F_t1
(where each output pixel comes from in a and in b) and an occlusion mask, refining them from a
coarse grid to a finer one. With dis_init (the default) they start from classical flows: DIS
optical flow both ways turned into linear-motion intermediate flows, computed outside the network
by the inference wrapper and by the training data (trained from zero flow on a CPU, the network
had not started to move after 650 steps: README, frame interpolation). Block k sees the frames
(and the frames as warped by the flows so far) downscaled by scales[k], works two further stride-2
convolutions below that, and adds its correction to the flows and the mask. Both frames are
backward-warped to t, blended with the mask, and a small U-Net adds an RGB residual (what warping
cannot bring: newly uncovered pixels, brightness changes). Flows are in full-resolution pixels
throughout; forward() returns the frame and forward_all() also the per-block flows the task's
distillation loss supervises.

Attributes the inference wrapper reads: channels (3), dis_init (1: pass the classical flows),
size_multiple (input height and width must be multiples of it: 4 * the coarsest scale, and the
U-Net's 8), receptive_radius (0: the flows make the receptive field content-dependent, so tiles
are never exact)."""

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from genforge.registry import register_model


class VFINetConfig(BaseModel):
    """Shape of a VFINet. The defaults are the CPU preset (~0.7 M parameters)."""

    model_config = ConfigDict(extra="forbid")
    name: Literal["vfinet"] = "vfinet"
    channels: Literal[3] = Field(3, description="RGB frames.")
    scales: list[int] = Field([4, 2, 1], min_length=1, description="Downscale factor each flow block sees, "
                              "coarse to fine (powers of two, decreasing); each works 4x below its scale.")
    widths: list[int] = Field([96, 64, 48], min_length=1, description="Channels of each flow block.")
    block_convs: int = Field(4, ge=1, le=16, description="Residual 3x3 convolutions per flow block.")
    refine_width: int = Field(16, ge=0, description="Width of the residual U-Net (0: none, mask blend only).")
    dis_init: bool = Field(True, description="Start from classical flows: the inference wrapper (and the "
                           "training data) compute DIS optical flow both ways and the linear-motion intermediate "
                           "flows, which the blocks refine; off: the first block starts from zero flow.")

    def model_post_init(self, _):
        if len(self.scales) != len(self.widths):
            raise ValueError(f"model.scales ({len(self.scales)}) and model.widths ({len(self.widths)}) "
                             "need one entry per flow block")
        if any(s < 1 or s & (s - 1) for s in self.scales) or sorted(self.scales, reverse=True) != self.scales:
            raise ValueError(f"model.scales {self.scales}: powers of two, from coarse to fine")


def conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.1))


def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample image at p + flow(p) (bilinear, edges replicated); flow N x 2 x H x W in pixels (dx, dy)."""
    n, _, h, w = image.shape
    ys = torch.arange(h, dtype=image.dtype, device=image.device).view(1, h, 1).expand(n, h, w)
    xs = torch.arange(w, dtype=image.dtype, device=image.device).view(1, 1, w).expand(n, h, w)
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    return F.grid_sample(image, torch.stack([gx, gy], dim=3), mode="bilinear", padding_mode="border",
                         align_corners=True)


def resize(x: torch.Tensor, factor: float) -> torch.Tensor:
    return x if factor == 1 else F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


class FlowBlock(nn.Module):
    """One refinement level: (frames, warped frames, mask, t, flows) at 1/scale -> (flow, mask) corrections."""

    IN = 3 + 3 + 3 + 3 + 1 + 1 + 4  # a, b, warped a, warped b, mask, t, flows

    def __init__(self, width: int, convs: int, scale: int):
        super().__init__()
        self.scale = scale
        self.down = nn.Sequential(conv(self.IN, width // 2, 2), conv(width // 2, width, 2))
        self.body = nn.Sequential(*[conv(width, width) for _ in range(convs)])
        # x2 by pixel shuffle to 1/(2 scale), then bilinear to full resolution
        self.out = nn.Sequential(nn.Conv2d(width, 5 * 4, 3, 1, 1), nn.PixelShuffle(2))
        nn.init.zeros_(self.out[0].weight)  # a new block starts as "no correction"
        nn.init.zeros_(self.out[0].bias)

    def forward(self, x: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.scale
        h = self.down(torch.cat([resize(x, 1 / s), resize(flow, 1 / s) / s], dim=1))
        d = resize(self.out(h + self.body(h)), 2 * s)
        return d[:, :4] * (2 * s), d[:, 4:5]


class RefineUNet(nn.Module):
    """A three-level residual U-Net over (a, b, warped a, warped b, mask, flows) -> an RGB residual."""

    IN = 3 + 3 + 3 + 3 + 1 + 4

    def __init__(self, width: int):
        super().__init__()
        c = width
        self.e1, self.e2, self.e3 = conv(self.IN, c, 2), conv(c, 2 * c, 2), conv(2 * c, 4 * c, 2)
        self.d3 = nn.Sequential(conv(4 * c, 4 * c), nn.Conv2d(4 * c, 2 * c * 4, 3, 1, 1), nn.PixelShuffle(2))
        self.d2 = nn.Sequential(conv(4 * c, 2 * c), nn.Conv2d(2 * c, c * 4, 3, 1, 1), nn.PixelShuffle(2))
        self.d1 = nn.Sequential(conv(2 * c, c), nn.Conv2d(c, 3 * 4, 3, 1, 1), nn.PixelShuffle(2))
        nn.init.zeros_(self.d1[1].weight)  # starts as "no residual": the mask blend alone
        nn.init.zeros_(self.d1[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.e1(x)
        e2 = self.e2(e1)
        e3 = self.e3(e2)
        y = self.d3(e3)
        y = self.d2(torch.cat([y, e2], dim=1))
        return self.d1(torch.cat([y, e1], dim=1))


@register_model("vfinet", VFINetConfig, tiny={"scales": [2, 1], "widths": [8, 8], "block_convs": 1,
                                              "refine_width": 4})
class VFINet(nn.Module):
    """(a, b, t[, flow]) -> the frame at time t. a, b: N x 3 x H x W in [0, 1]; t: N (or N x 1 x 1 x 1,
    or one value for all) in [0, 1]; flow: N x 4 x H x W starting intermediate flows (dis_init: the
    classical ones of metrics.flow.intermediate_flows). H and W must be multiples of size_multiple;
    the output is not clamped."""

    channels = 3
    receptive_radius = 0

    def __init__(self, cfg: VFINetConfig):
        super().__init__()
        self.size_multiple = max(4 * cfg.scales[0], 8 if cfg.refine_width else 1)
        self.dis_init = int(cfg.dis_init)
        self.blocks = nn.ModuleList(FlowBlock(w, cfg.block_convs, s) for w, s in zip(cfg.widths, cfg.scales))
        self.refine = RefineUNet(cfg.refine_width) if cfg.refine_width else None

    def forward_all(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor,
                    flow: torch.Tensor | None = None) -> tuple[torch.Tensor, list]:
        """The frame at t and the flows (N x 4 x H x W: F_t0 then F_t1) after every block, starting
        from `flow` (the classical intermediate flows, with dis_init) or from zero."""
        n, _, h, w = a.shape
        m = self.size_multiple
        if h % m or w % m:  # a shape check, not a value one: fine for export
            raise ValueError(f"VFINet input height and width must be multiples of {m}, got {(h, w)}: "
                             "pad the frames (the Interpolator does)")
        t = t.to(a.dtype).reshape(-1, 1, 1, 1).expand(n, 1, h, w)
        if flow is None:
            flow = a.new_zeros(n, 4, h, w)
            wa, wb = a, b
        else:
            wa, wb = backward_warp(a, flow[:, :2]), backward_warp(b, flow[:, 2:])
        mask = a.new_zeros(n, 1, h, w)
        flows = []
        for block in self.blocks:
            df, dm = block(torch.cat([a, b, wa, wb, mask, t], dim=1), flow)
            flow, mask = flow + df, mask + dm
            wa, wb = backward_warp(a, flow[:, :2]), backward_warp(b, flow[:, 2:])
            flows.append(flow)
        # the mask's zero start is the plain time weighting: (1 - t) of a and t of b
        weight = torch.sigmoid(mask + torch.logit((1 - t).clamp(1e-3, 1 - 1e-3)))
        out = wa * weight + wb * (1 - weight)
        if self.refine is not None:
            out = out + self.refine(torch.cat([a, b, wa, wb, mask, flow], dim=1))
        return out, flows

    def forward(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor,
                flow: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_all(a, b, t, flow)[0]
