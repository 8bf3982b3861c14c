"""GAN task wiring that the end-to-end runs in tests/engine do not show."""

import pytest
import torch

from genforge.config import validate
from genforge.registry import build_task
from tests.conftest import tiny_raw


def _step_with_spy(diff_augment: bool):
    raw = tiny_raw(task={"kind": "gan", "loss": "wgan-gp", "n_critic": 1, "ema_decay": 0.0,
                         "diff_augment": diff_augment},
                   data={"dataset": "digits", "augment": {"hflip": True}})
    task = build_task(validate(raw), torch.device("cpu"))
    seen = []

    def spy(x):  # a deterministic, differentiable stand-in for the random augmentation
        seen.append(x.requires_grad)
        return x.flip(3)

    task.augment = spy
    G = task.networks["g"]
    batch = {"image": torch.rand(4, 1, 8, 8) * 2 - 1, "label": torch.zeros(4, dtype=torch.long)}
    torch.manual_seed(0)
    task.begin_step()
    before = [p.detach().clone() for p in G.parameters()]
    task.training_step(batch, 0)
    moved = any(not torch.equal(a, p) for a, p in zip(before, G.parameters()))
    return seen, moved


@pytest.mark.parametrize("diff_augment", [False, True])
def test_diff_augment_puts_the_augmentation_in_front_of_d_for_fakes_too(diff_augment):
    seen, g_moved = _step_with_spy(diff_augment)
    # reals always; with DiffAugment also the D step's fakes (no graph) and the G step's fakes (graph to G)
    assert seen == ([False, False, True] if diff_augment else [False])
    assert g_moved


def _diversity_after(weight: float, steps: int = 15) -> tuple[float, dict]:
    """Mean |G(z1) - G(z2)| for one label after `steps` training steps of a tiny conditional GAN."""
    raw = tiny_raw(task={"kind": "gan", "loss": "hinge", "n_critic": 1, "ema_decay": 0.0,
                         "mode_seeking_weight": weight, "g_optim": {"learning_rate": 0.002}},
                   data={"dataset": "digits"}, model={"num_classes": 10})
    torch.manual_seed(0)
    task = build_task(validate(raw), torch.device("cpu"))
    batch = {"image": torch.rand(8, 1, 8, 8) * 2 - 1, "label": torch.arange(8) % 2}
    for step in range(steps):
        task.begin_step()
        metrics = task.training_step(batch, step)
    G = task.networks["g"].eval()
    with torch.no_grad():
        gen = torch.Generator().manual_seed(1)
        z1, z2 = (torch.randn(16, G.latent_dim, generator=gen) for _ in range(2))
        label = torch.zeros(16, dtype=torch.long)
        return (G(z1, label) - G(z2, label)).abs().mean().item(), metrics


def test_mode_seeking_term_makes_codes_matter_within_a_class():
    plain, metrics = _diversity_after(0.0)
    assert "ms_ratio" not in metrics
    seeking, metrics = _diversity_after(5.0)
    assert metrics["ms_ratio"] > 0
    assert seeking > 1.2 * plain
