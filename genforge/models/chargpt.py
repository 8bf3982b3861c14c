"""CharGPT: this project's small causal transformer over byte tokens (GPT-2 shape, written here).

    bytes -> token embedding + position embedding -> [pre-norm block] x layers -> LayerNorm -> tied head
    block: x + attn(LN(x)) (causal, torch's scaled_dot_product_attention), then x + MLP(LN(x)) (4x, GELU)

The output head shares the token embedding's weights (Press and Wolf 2017). ``forward_cached``
takes a per-layer key/value cache (``forward(idx)``, what training and ONNX see, has none), so
sampling costs one position per new token instead of re-running the whole context (``generate`` uses
it; tested equal to the uncached path). Generation samples with temperature, top-k and top-p
(nucleus) from a seeded generator: the same seed gives the same text on the same machine.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from genforge.registry import register_model

VOCAB = 256  # byte-level tokens


class CharGPTConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Literal["chargpt"] = "chargpt"
    block_size: int = Field(256, ge=2, le=8192, description="Longest context, in bytes.")
    layers: int = Field(4, ge=1, le=48)
    heads: int = Field(4, ge=1, le=64)
    width: int = Field(192, ge=8, le=4096, description="Embedding width (a multiple of heads).")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)


class Block(nn.Module):
    def __init__(self, cfg: CharGPTConfig):
        super().__init__()
        self.heads, self.dropout = cfg.heads, cfg.dropout
        self.ln1, self.ln2 = nn.LayerNorm(cfg.width), nn.LayerNorm(cfg.width)
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.width)
        self.mlp = nn.Sequential(nn.Linear(cfg.width, 4 * cfg.width), nn.GELU(), nn.Linear(4 * cfg.width, cfg.width),
                                 nn.Dropout(cfg.dropout))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        if cache is not None:
            if cache:  # keys and values of the earlier positions
                k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
            cache[:] = [k, v]
        past = k.shape[2] - t
        if past == 0:  # training, ONNX, a fresh cache
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                               dropout_p=self.dropout if self.training else 0.0)
        elif t == 1:  # one new query sees every cached key
            y = F.scaled_dot_product_attention(q, k, v)
        else:  # several new queries after cached ones: the causal mask shifted by the past
            mask = torch.ones(t, k.shape[2], dtype=torch.bool, device=x.device).tril(past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.drop(self.proj(y.transpose(1, 2).reshape(b, t, c)))
        return x + self.mlp(self.ln2(x))


@register_model("chargpt", CharGPTConfig, tiny={"block_size": 16, "layers": 1, "heads": 2, "width": 16,
                                                 "dropout": 0.0})
class CharGPT(nn.Module):
    def __init__(self, cfg: CharGPTConfig):
        super().__init__()
        if cfg.width % cfg.heads:
            raise ValueError(f"model.width {cfg.width} is not a multiple of model.heads {cfg.heads}")
        self.block_size = cfg.block_size
        self.tokens = nn.Embedding(VOCAB, cfg.width)
        self.positions = nn.Embedding(cfg.block_size, cfg.width)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.ln = nn.LayerNorm(cfg.width)
        self.apply(self._init)
        for block in self.blocks:  # GPT-2: residual projections scaled by the depth
            for proj in (block.proj, block.mlp[2]):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * cfg.layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, 256) for tokens idx (B, T <= block_size) (what training and ONNX see)."""
        return self.forward_cached(idx, None, 0)

    def forward_cached(self, idx: torch.Tensor, cache: list[list] | None, start: int) -> torch.Tensor:
        """Logits for tokens idx at positions start..start+T-1; ``cache``: one list per layer of keys and
        values of the positions before, filled and extended in place."""
        t = idx.shape[1]
        if start + t > self.block_size:
            raise ValueError(f"positions up to {start + t} exceed the context of {self.block_size}")
        pos = torch.arange(start, start + t, device=idx.device)
        x = self.drop(self.tokens(idx) + self.positions(pos))
        for i, block in enumerate(self.blocks):
            x = block(x, None if cache is None else cache[i])
        return self.ln(x) @ self.tokens.weight.t()

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, generator: torch.Generator | None = None,
                 use_cache: bool = True) -> torch.Tensor:
        """prompt (B, T >= 1) -> (B, T + tokens). Without the cache every step sees the last block_size
        tokens; with it, once the context is full it restarts from the last block_size // 2 tokens (so the
        two agree exactly until the context first fills, and the cached path stays O(1) per token)."""
        if not use_cache:
            return generate_uncached(self, prompt, tokens, self.block_size, temperature=temperature, top_k=top_k,
                                     top_p=top_p, generator=generator)
        out = prompt
        cache, start = None, 0
        for _ in range(tokens):
            if cache is not None and start < self.block_size:
                logits = self.forward_cached(out[:, -1:], cache, start)
                start += 1
            else:
                context = out[:, -(self.block_size if cache is None else self.block_size // 2):]
                cache = [[] for _ in self.blocks]
                logits = self.forward_cached(context, cache, 0)
                start = context.shape[1]
            out = torch.cat([out, sample(logits[:, -1], temperature, top_k, top_p, generator)], dim=1)
        return out


def generate_uncached(forward, prompt: torch.Tensor, tokens: int, block_size: int, **options) -> torch.Tensor:
    """Sampling with any callable idx -> logits (an ONNX Runtime session too): every step re-reads the
    last block_size tokens."""
    out = prompt
    for _ in range(tokens):
        logits = forward(out[:, -block_size:])
        out = torch.cat([out, sample(logits[:, -1], **options).to(out.device)], dim=1)
    return out


def sample(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of logits (B, V): greedy at temperature 0, else softmax(logits / T) restricted
    to the top_k most likely and to the smallest set whose probability reaches top_p."""
    if temperature <= 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        ordered, order = logits.sort(dim=-1, descending=True)
        cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative - ordered.softmax(dim=-1) >= top_p  # keep the first token that crosses top_p
        logits = logits.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).to(logits.device)


class TextDiscriminatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    width: int = Field(64, ge=4, le=1024, description="Byte embedding width.")
    kernels: list[int] = Field([2, 3, 4, 5, 6, 8, 12, 16], min_length=1, description=(
        "Convolution widths in bytes, one bank of filters each (SeqGAN's discriminator has widths 1-20)."))
    filters: int = Field(48, ge=1, le=1024, description="Filters per width.")
    dropout: float = Field(0.25, ge=0.0, lt=1.0)


class TextDiscriminator(nn.Module):
    """SeqGAN's discriminator (Yu et al. 2017, after Kim 2014's sentence CNN), on bytes: embeddings ->
    banks of 1-D convolutions of several widths -> ReLU -> max over time -> a highway layer -> dropout ->
    one logit per sequence, high for real text. (B, T) -> (B,)."""

    def __init__(self, cfg: TextDiscriminatorConfig):
        super().__init__()
        self.reach = max(cfg.kernels)
        self.embed = nn.Embedding(VOCAB, cfg.width)
        self.convs = nn.ModuleList(nn.Conv1d(cfg.width, cfg.filters, k) for k in cfg.kernels)
        features = cfg.filters * len(cfg.kernels)
        self.highway = nn.Linear(features, 2 * features)  # gate and transform
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(features, 1)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.embed(idx).transpose(1, 2)  # (B, width, T)
        if x.shape[2] < self.reach:  # a sequence shorter than the widest filter: zeros after it
            x = F.pad(x, (0, self.reach - x.shape[2]))
        h = torch.cat([F.relu(conv(x)).amax(dim=2) for conv in self.convs], dim=1)
        gate, transform = self.highway(h).chunk(2, dim=1)
        gate = torch.sigmoid(gate)
        h = gate * F.relu(transform) + (1 - gate) * h
        return self.out(self.drop(h)).squeeze(1)


@torch.no_grad()
def rollout_values(model: CharGPT, score, seqs: torch.Tensor, generated: int, rollouts: int, *, every: int = 1,
                   temperature: float = 1.0) -> torch.Tensor:
    """SeqGAN's Monte-Carlo rewards for the last ``generated`` tokens of seqs (B, T <= block_size): the value
    of keeping the first t of them is the mean score of ``rollouts`` completions sampled by ``model`` after
    them (``score``: sequences (N, T) -> rewards (N,)), and of the last token the score of the sequence itself.
    Prefixes are rolled out every ``every`` tokens (and the last); a token between takes the value of the next
    one rolled out. One pass over seqs gives every prefix's keys and values (the attention is causal): each
    rollout continues from the cache cut at its prefix. -> (B, generated)"""
    b, total = seqs.shape
    if not 1 <= generated < total:
        raise ValueError(f"generated {generated}: must leave at least one token before it (sequence {total})")
    first = total - generated  # position of the first generated token
    cache = [[] for _ in model.blocks]
    logits = model.forward_cached(seqs[:, :-1], cache, 0)
    values = torch.empty(b, generated, device=seqs.device)
    values[:, -1] = score(seqs)
    points = set(range(every, generated, every))
    for t in sorted(points):
        keep = first + t
        branch = [[kv[:, :, :keep].repeat_interleave(rollouts, 0) for kv in layer] for layer in cache]
        token = sample(logits[:, keep - 1].repeat_interleave(rollouts, 0), temperature)
        pieces = [seqs[:, :keep].repeat_interleave(rollouts, 0), token]
        for pos in range(keep, total - 1):
            token = sample(model.forward_cached(token, branch, pos)[:, -1], temperature)
            pieces.append(token)
        values[:, t - 1] = score(torch.cat(pieces, dim=1)).view(b, rollouts).mean(dim=1)
    for i in range(generated - 2, -1, -1):
        if i + 1 not in points:
            values[:, i] = values[:, i + 1]
    return values
