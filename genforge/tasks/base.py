"""The Task interface the engine trains (see DESIGN.md).

A task owns its networks, optimizers, schedulers, EMA and losses, and steps its own optimizers
(GAN alternation and n_critic need it). Subclasses fill the dicts and write training_step."""

import math
import re
import warnings

import torch
from torch import nn

from genforge.engine import distributed
from genforge.engine.ema import EMA


def make_optimizer(optim_cfg, params) -> torch.optim.Optimizer:
    if optim_cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=optim_cfg.learning_rate)
    return torch.optim.Adam(params, lr=optim_cfg.learning_rate, betas=tuple(optim_cfg.betas))


def make_scheduler(optimizer, optim_cfg, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """constant, or constant until decay_start * total_steps then cosine/linear down to 0."""
    start = int(optim_cfg.decay_start * total_steps)
    kind = optim_cfg.schedule

    def factor(step: int) -> float:
        if kind == "constant" or step < start:
            return 1.0
        t = min(1.0, (step - start) / max(1, total_steps - start))
        return 0.5 * (1 + math.cos(math.pi * t)) if kind == "cosine" else 1.0 - t
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Task:
    def __init__(self, device: torch.device):
        self.device = device
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        self.ema: EMA | None = None
        self.skipped_step = False  # set by a step whose loss was not finite

    # --- what subclasses implement -------------------------------------------------------
    def training_step(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def validation_step(self, batch: dict) -> dict[str, float]:
        return {}

    @classmethod
    def setup(cls, cfg, dist):
        """Read and check the data before anything is written: (batches, callbacks(run_dir) -> list,
        class names). batches.batch(step) must be a pure function of the step (exact resume)."""
        raise NotImplementedError

    def trained_network(self) -> nn.Module:
        """The live network whose weights deployment receives (and `init:` starts)."""
        raise NotImplementedError

    def export_module(self) -> nn.Module:
        """The network deployment receives: the EMA copy when there is one."""
        return self.ema.module if self.ema is not None else self.trained_network()

    def init_from(self, state: dict) -> None:
        """Start from the exported weights of another run or model folder (`init:`)."""
        self.trained_network().load_state_dict(state)
        if self.ema is not None:
            self.ema.module.load_state_dict(state)

    @torch.no_grad()
    def sample_images(self, n: int) -> torch.Tensor | None:
        """A fixed set of outputs for sample grids, or None."""
        return None

    # --- shared machinery -----------------------------------------------------------------
    def optimize(self, name: str, loss: torch.Tensor, max_norm: float = 0.0) -> bool:
        """zero_grad, backward, average gradients across processes, step; refuse non-finite losses
        and gradients.

        Returns False (and leaves the weights untouched) when the loss is not finite anywhere or a
        gradient is not finite (after the all-reduce, so every process decides alike)."""
        opt = self.optimizers[name]
        finite = distributed.all_true(bool(torch.isfinite(loss.detach())), self.device)
        if not finite:
            self.skipped_step = True
            return False
        opt.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for group in opt.param_groups for p in group["params"]]
        distributed.all_reduce_grads(params)
        with_grad = [p for p in params if p.grad is not None]
        # a finite loss can still have an overflowing gradient; one check per step, like AMP's scaler.
        # With max_norm the gradient is also scaled down to that norm: a huge but finite gradient
        # would otherwise overflow Adam's second moment and stall the network for good.
        norm = (torch.nn.utils.clip_grad_norm_(with_grad, max_norm) if max_norm > 0
                else torch.stack([torch.isfinite(p.grad).all() for p in with_grad]).all()) if with_grad else None
        if norm is not None and not bool(torch.isfinite(norm).all()):
            opt.zero_grad(set_to_none=True)
            self.skipped_step = True
            return False
        opt.step()
        return True

    def begin_step(self) -> None:
        self.skipped_step = False
        for net in self.networks.values():
            net.train()

    def end_step(self) -> None:
        """Schedules count training steps (not optimizer calls: G steps only every n_critic)."""
        with warnings.catch_warnings():  # G has not stepped yet in the first n_critic steps: expected
            warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()`"))
            for sched in self.schedulers.values():
                sched.step()

    def learning_rates(self) -> dict[str, float]:
        return {f"lr_{k}": opt.param_groups[0]["lr"] for k, opt in self.optimizers.items()}

    def scale_learning_rate(self, factor: float) -> None:
        for name, opt in self.optimizers.items():
            sched = self.schedulers[name]
            sched.base_lrs = [lr * factor for lr in sched.base_lrs]
            for group in opt.param_groups:
                group["lr"] *= factor

    def state_dict(self) -> dict:
        state = {
            "networks": {k: v.state_dict() for k, v in self.networks.items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        try:
            for k, net in self.networks.items():
                net.load_state_dict(state["networks"][k])
            for k, opt in self.optimizers.items():
                opt.load_state_dict(state["optimizers"][k])
            for k, sched in self.schedulers.items():
                sched.load_state_dict(state["schedulers"][k])
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])
        except (KeyError, RuntimeError, ValueError) as err:
            from genforge.errors import UserError
            first = str(err).strip().splitlines()[0][:300]
            raise UserError(f"checkpoint does not fit this model: {first}") from None
