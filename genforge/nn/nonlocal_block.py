"""Non-local block (Wang et al. 2018), embedded-Gaussian form: every position attends to every
other one, so a network with convolutions of limited reach can use self-similar structure
anywhere in the image (repeated windows, bricks, text).

    z = x + W(softmax(theta(x)^T phi(x) / sqrt(d)) g(x))

theta, phi, g are 1x1 convolutions to d = channels // reduction; W is a 1x1 convolution back to
`channels`, initialised to zero so that inserting the block into a trained network starts as the
identity (the paper zero-initialises a batch norm after W for the same reason; we use no batch
norm in super-resolution). The 1/sqrt(d) temperature (as in Transformers) is only a fixed
rescaling of the learned theta, so this is still the embedded-Gaussian affinity; it keeps the
softmax out of saturation at initialisation.

Cost, with N = H*W positions of the feature map and batch B:
  compute  ~ 2 * B * N^2 * d multiply-adds (quadratic in the number of pixels),
  memory   the full attention matrix would be B * N^2 floats: for a 64x64 bottleneck
           (a 256x256 input after two halvings) 16.8 M floats = 67 MB per image; for a
           256x256 bottleneck 4.3 G floats = 17 GB.
Queries are therefore processed in chunks of Q rows so that at most B * Q * N scores exist at a
time (`max_attention_elements`, default 2**22 = 16 MB in fp32); the result is the same as the
unchunked computation (each query's softmax only involves its own row). The compute does not
shrink, though chunks that fit in cache run faster (measured, 1 CPU thread, d = 16: a 128x128
map takes 1.1 s chunked vs 3.1 s and 1 GB of scores unchunked; a 256x256 map, ~0.14 T
multiply-adds, is 16x that: ~20 s). When gradients are needed, chunks are recomputed in the
backward pass (activation checkpointing); otherwise autograd would keep every chunk's attention
matrix and the peak would be N^2 again. Exported graphs (ONNX, torch.export, jit.trace) get the
unchunked form: a traced loop would be frozen to the number of chunks of the example input.
"""

import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q (B, Q, d), k (B, d, N), v (B, N, d) -> (B, Q, d)."""
    return torch.softmax(torch.bmm(q, k), dim=-1).bmm(v)


def _exporting() -> bool:
    # export/tracing records one graph for all input sizes: a Python loop whose length depends
    # on H*W would be frozen to the traced size, so the graph gets the unchunked form
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()


class NonLocalBlock(nn.Module):
    """(B, C, H, W) -> (B, C, H, W); identity at initialisation."""

    def __init__(self, channels: int, reduction: int = 2, max_attention_elements: int = 2 ** 22):
        super().__init__()
        inner = max(1, channels // reduction)
        self.theta = nn.Conv2d(channels, inner, 1)
        self.phi = nn.Conv2d(channels, inner, 1)
        self.g = nn.Conv2d(channels, inner, 1)
        self.out = nn.Conv2d(inner, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.inner = inner
        self.max_attention_elements = max_attention_elements

    def forward(self, x: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        """`chunk_size`: queries per chunk; None picks the largest within max_attention_elements."""
        b, _, h, w = x.shape
        n = h * w
        q = self.theta(x).flatten(2).transpose(1, 2) * (1.0 / math.sqrt(self.inner))  # B, N, d
        k = self.phi(x).flatten(2)  # B, d, N
        v = self.g(x).flatten(2).transpose(1, 2)  # B, N, d
        if not _exporting() and chunk_size is None:
            chunk_size = max(1, self.max_attention_elements // max(1, b * n))
        if _exporting() or chunk_size >= n:
            y = _attend(q, k, v)
        else:
            recompute = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad)
            parts = []
            for start in range(0, n, chunk_size):
                qc = q[:, start:start + chunk_size]
                parts.append(checkpoint(_attend, qc, k, v, use_reentrant=False) if recompute
                             else _attend(qc, k, v))
            y = torch.cat(parts, dim=1)
        y = y.transpose(1, 2).reshape(b, self.inner, h, w)
        return x + self.out(y)
