"""Host-device synchronisations, counted. Every place the training path waits for the device to
answer goes through host_bool/host_float, so a test can read how many a step makes, on the CPU as
well (torch.cuda.set_sync_debug_mode only sees CUDA). The common path makes one per optimizer step
(the combined finite check in Task.optimize); logging every log_every steps adds the metric means."""

import torch

_count = 0


def host_bool(t: torch.Tensor) -> bool:
    global _count
    _count += 1
    return bool(t)


def host_list(t: torch.Tensor) -> list:
    global _count
    _count += 1
    return t.cpu().tolist()


def count() -> int:
    """Syncs so far in this process."""
    return _count
