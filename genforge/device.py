"""Device choice and CPU threads, shared by training and deployment."""

import os

import torch

from genforge.errors import UserError


def select_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UserError("device 'cuda' requested but CUDA is not available here")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def set_cpu_threads(threads: int = 0, world_size: int = 1) -> None:
    """Share the cores this process may use between the local processes."""
    if threads <= 0:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        threads = max(1, (cores or 1) // max(1, world_size))
    torch.set_num_threads(threads)
