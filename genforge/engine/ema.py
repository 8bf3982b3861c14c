"""Exponential moving average of a network's weights (as in ProGAN/StyleGAN sampling).

The decay ramps up as min(decay, (1 + n) / (10 + n)) over the first updates, so that a short run's
EMA is not dominated by the random initial weights."""

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.num_updates = 0
        self.module = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.num_updates += 1
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        # one foreach call each instead of a loop over tensors (fewer kernel launches on a GPU)
        torch._foreach_lerp_(list(self.module.parameters()), [p.detach() for p in module.parameters()], 1.0 - decay)
        buffers = list(self.module.buffers())
        if buffers:  # running statistics of batch norm follow the live network
            torch._foreach_copy_(buffers, list(module.buffers()))

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "num_updates": self.num_updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.num_updates = int(state["num_updates"])
