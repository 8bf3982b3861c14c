"""The Task interface the engine trains (see DESIGN.md).

A task owns its networks, optimizers, schedulers, EMA and losses, and steps its own optimizers
(GAN alternation and n_critic need it). Subclasses fill the dicts and write training_step."""

import contextlib
import math
import re
import warnings

import torch
from torch import nn

from genforge.engine import distributed
from genforge.engine.ema import EMA
from genforge.engine.syncs import host_bool

AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def make_optimizer(optim_cfg, params) -> torch.optim.Optimizer:
    if optim_cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=optim_cfg.learning_rate)
    return torch.optim.Adam(params, lr=optim_cfg.learning_rate, betas=tuple(optim_cfg.betas))


class Schedule(torch.optim.lr_scheduler.LambdaLR):
    """A LambdaLR that may also follow a wall-clock budget (train.max_minutes): the engine hands it
    the share of the budget used (follow_clock), and its factor then reads progress as
    max(step progress, time progress). The clock is not part of its state: fit() rebuilds it from
    the checkpoint's elapsed time."""

    def __init__(self, optimizer, factor, clock: dict):
        self._clock = clock  # {"fraction": None or a () -> float in [0, 1]}, read by `factor`
        super().__init__(optimizer, factor)

    def follow_clock(self, fraction) -> None:
        self._clock["fraction"] = fraction

    def state_dict(self) -> dict:
        return {k: v for k, v in super().state_dict().items() if k != "_clock"}


def make_scheduler(optimizer, optim_cfg, total_steps: int) -> Schedule:
    """constant, or constant until decay_start of the run then cosine/linear down to 0. The run's
    progress is step / total_steps, or with a time budget whichever of that and elapsed / budget is
    further along (so the decay ends when the first of the two limits does)."""
    start = int(optim_cfg.decay_start * total_steps)
    kind, decay_start = optim_cfg.schedule, optim_cfg.decay_start
    clock: dict = {"fraction": None}

    def factor(step: int) -> float:
        if kind == "constant":
            return 1.0
        t = 0.0 if step < start else min(1.0, (step - start) / max(1, total_steps - start))
        if clock["fraction"] is not None:
            t = max(t, min(1.0, max(0.0, clock["fraction"]() - decay_start) / (1.0 - decay_start)))
        return 0.5 * (1 + math.cos(math.pi * t)) if kind == "cosine" else 1.0 - t
    return Schedule(optimizer, factor, clock)


@contextlib.contextmanager
def evaluating(net: nn.Module):
    """net in eval mode inside the block, back in its previous mode after (validation, previews)."""
    was = net.training
    net.eval()
    try:
        yield net
    finally:
        net.train(was)


class Task:
    def __init__(self, device: torch.device):
        self.device = device
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        self.ema: EMA | None = None
        self.skipped_step = False  # set by a step whose loss was not finite
        self.amp_dtype: torch.dtype | None = None  # autocast dtype of the forward passes (bf16, fp16)
        self.scalers: dict[str, torch.amp.GradScaler] = {}  # fp16: one per optimizer

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
    def set_precision(self, precision: str = "fp32", *, channels_last: bool = False) -> None:
        """train.precision: autocast dtype for the forward passes; fp16 also gets one GradScaler per
        optimizer (part of the checkpoint, so resume stays exact). Called by the engine before a
        resume loads the state."""
        self.amp_dtype = AMP_DTYPES[precision]
        self.scalers = {name: torch.amp.GradScaler(self.device.type) for name in self.optimizers} \
            if precision == "fp16" else {}
        if channels_last:
            for net in self.networks.values():
                net.to(memory_format=torch.channels_last)

    def compilable(self) -> list[str]:
        """The networks train.compile may compile."""
        return list(self.networks)

    def autocast(self):
        """The context the engine runs training_step in: mixed precision where configured."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def full_precision(self):
        """For what must not run under autocast: backward, optimizer steps, losses that need fp32."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, enabled=False)

    def optimize(self, name: str, loss: torch.Tensor, max_norm: float = 0.0) -> bool:
        """zero_grad, backward, average gradients across processes, clip (max_norm > 0), step; a
        non-finite loss or gradient skips the step and leaves the weights untouched.

        One host sync: loss and gradient norm are checked together after backward (a non-finite loss
        makes non-finite gradients, and after the all-reduce every process sees the same norm, so all
        decide alike). With fp16 an overflow is the GradScaler's business: the step is skipped and the
        scale lowered, and only a non-finite loss counts as a skipped step for the engine's guard."""
        opt, scaler = self.optimizers[name], self.scalers.get(name)
        with self.full_precision():
            opt.zero_grad(set_to_none=True)
            (scaler.scale(loss) if scaler is not None else loss).backward()
            params = [p for group in opt.param_groups for p in group["params"]]
            distributed.all_reduce_grads(params)
            grads = [p.grad for p in params if p.grad is not None]
            if scaler is not None and grads:
                scaler.unscale_(opt)
            # with max_norm the gradient is also scaled down to that norm: a huge but finite gradient
            # would otherwise overflow Adam's second moment and stall the network for good
            if not grads:
                norm = torch.zeros((), device=self.device)
            elif max_norm > 0:
                norm = torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], max_norm)
            else:
                norm = torch.nn.utils.get_total_norm(grads)
            ok = host_bool(torch.isfinite(norm) & torch.isfinite(loss.detach()).all())
            if ok:
                opt.step()
            else:
                opt.zero_grad(set_to_none=True)
                loss_bad = not distributed.all_true(bool(torch.isfinite(loss.detach()).all()), self.device)
                self.skipped_step = self.skipped_step or scaler is None or loss_bad
            if scaler is not None and grads:
                scaler.update()  # lowers the scale after an overflow, raises it after a run of good steps
        return ok

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
        if self.scalers:
            state["scalers"] = {k: v.state_dict() for k, v in self.scalers.items()}
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
            for k, scaler in self.scalers.items():
                if k in state.get("scalers", {}):  # a run that switches to fp16 starts a fresh scale
                    scaler.load_state_dict(state["scalers"][k])
        except (KeyError, RuntimeError, ValueError) as err:
            from genforge.errors import UserError
            first = str(err).strip().splitlines()[0][:300]
            raise UserError(f"checkpoint does not fit this model: {first}") from None


class OneNetworkTask(Task):
    """A task that trains one network "g" with task.optim and task.ema_decay (text, interpolation):
    the network, its optimizer, its schedule and the EMA copy when asked for."""

    def __init__(self, cfg, device: torch.device):
        super().__init__(device)
        from genforge import registry
        self.cfg = cfg.task
        net = registry.model_row(cfg.model.name).build(cfg.model).to(device)
        self.networks = {"g": net}
        self.optimizers = {"g": make_optimizer(cfg.task.optim, net.parameters())}
        self.schedulers = {"g": make_scheduler(self.optimizers["g"], cfg.task.optim, cfg.train.steps)}
        self.ema = EMA(net, cfg.task.ema_decay) if cfg.task.ema_decay > 0 else None

    def trained_network(self) -> nn.Module:
        return self.networks["g"]
