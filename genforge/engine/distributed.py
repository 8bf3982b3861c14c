"""Device choice and torchrun-launched data parallelism (gloo on CPU, nccl on GPU).

Gradients are averaged explicitly (`all_reduce_grads`, one flat all-reduce after backward) instead of
wrapping networks in DDP: GAN steps run the discriminator several times per backward (real, fake,
gradient penalty with its double backward), which DDP's reducer handles only with static graphs and
no_sync juggling, and measured side by side (bench/ddp.py: 2 CPU processes, ISRNet) DDP's overlap
bought nothing: 1.03x the hand-written step time, the all-reduce being 5% of a step. Batch norm is
per process, as DCGAN and pix2pix define it (per-batch statistics); SyncBatchNorm would add a
blocking collective per norm layer per forward. Running statistics are rank 0's, and the EMA
generator's are recomputed at export anyway (standing statistics)."""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from genforge.device import select_device, set_cpu_threads  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init(device: str = "auto") -> Dist:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Dist(device=select_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = select_device(device, local_rank)
    if dev.type == "cuda" and local_rank >= torch.cuda.device_count():
        from genforge.errors import UserError
        raise UserError(f"torchrun started {os.environ.get('LOCAL_WORLD_SIZE', local_rank + 1)} processes on this "
                        f"machine but it has {torch.cuda.device_count()} GPU(s): use --nproc_per_node "
                        f"{torch.cuda.device_count()} (one process per GPU), or train.device: cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return Dist(rank=rank, world_size=world_size, device=dev)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def is_enabled() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def broadcast_module(module: torch.nn.Module) -> None:
    """Start every rank from rank 0's weights."""
    if is_enabled():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def all_reduce_grads(params) -> None:
    if not is_enabled():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def all_true(flag: bool, device: torch.device) -> bool:
    """True only if `flag` holds on every rank, so that ranks skip steps together."""
    if not is_enabled():
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def max_value(value: float, device: torch.device) -> float:
    """The largest `value` over the ranks (every rank gets it)."""
    if not is_enabled():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def barrier() -> None:
    if is_enabled():
        dist.barrier()
