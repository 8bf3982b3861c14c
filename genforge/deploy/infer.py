"""Inference wrappers: one per task kind, used by the CLI, the Python API and (later) the service."""

import torch

from genforge.data.grid import save_grid
from genforge.deploy.pretrained import build_export_module, read_source
from genforge.engine.distributed import select_device
from genforge.errors import UserError
from genforge.models.sampling import generate, interpolation_latents


class Generation:
    """A generator that maps z [+ label] to images in [-1, 1]."""

    def __init__(self, name_or_path: str, device: str = "auto"):
        self.source = read_source(name_or_path)
        self.device = select_device(device)
        self.module = build_export_module(self.source, self.device)
        self.num_classes = self.module.num_classes
        self.latent_dim = self.module.latent_dim

    def _labels(self, label: int | None, n: int) -> torch.Tensor | None:
        if label is None:
            return None
        if not self.num_classes:
            raise UserError(f"model {self.source.name!r} is not class-conditional: --label does not apply")
        if not 0 <= label < self.num_classes:
            raise UserError(f"--label {label} is out of range: model {self.source.name!r} has classes 0..{self.num_classes - 1}")
        return torch.full((n,), label, dtype=torch.long)

    def generate(self, n: int, *, label: int | None = None, seed: int = 0) -> torch.Tensor:
        return generate(self.module, n, labels=self._labels(label, n), seed=seed).cpu()

    def interpolate(self, rows: int, steps: int, *, label: int | None = None, seed: int = 0) -> torch.Tensor:
        z = interpolation_latents(self.latent_dim, rows, steps, seed=seed)
        labels = self._labels(label, len(z))
        if labels is None and self.num_classes:  # one class per row, so the walk stays within it
            labels = (torch.arange(rows) % self.num_classes).repeat_interleave(steps)
        return generate(self.module, len(z), labels=labels, seed=seed, z=z).cpu()

    def save(self, images: torch.Tensor, path, nrow: int = 8):
        return save_grid(images, path, nrow=nrow)


def load(name_or_path: str, device: str = "auto"):
    """The inference object for a shipped model name, a model folder or a run directory."""
    kind = read_source(name_or_path).config["task"]["kind"]
    if kind in ("gan", "vae"):
        return Generation(name_or_path, device)
    raise UserError(f"model {name_or_path!r}: task {kind!r} has no inference wrapper yet")
