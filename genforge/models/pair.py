"""CycleGAN's two generators as one deployable network: A -> B by default, B -> A on request."""

import torch
from torch import nn

from genforge import registry


class GeneratorPair(nn.Module):
    def __init__(self, a2b: nn.Module, b2a: nn.Module):
        super().__init__()
        self.a2b, self.b2a = a2b, b2a
        self.in_channels, self.out_channels = a2b.in_channels, a2b.out_channels
        self.size_multiple = max(a2b.size_multiple, b2a.size_multiple)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a2b(x)

    def direction(self, name: str) -> nn.Module:
        return {"a2b": self.a2b, "b2a": self.b2a}[name]


def build_generator_pair(cfg) -> GeneratorPair:
    """A -> B as configured, and B -> A with the channel counts swapped."""
    build = registry.model_row(cfg.name).build
    back = cfg.model_copy(update={"in_channels": cfg.out_channels, "out_channels": cfg.in_channels})
    return GeneratorPair(build(cfg), build(back))
