"""Text generation: a causal transformer over byte tokens (models/chargpt.py) trained by next-token
cross-entropy on random windows of a corpus (data/text.py); validation in holdout bits per character,
the figure the n-gram baselines of metrics/ngram.py are scored in."""

import math
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from genforge import registry
from genforge.data.text import TokenBatches, as_tokens, holdout_windows, read_corpus
from genforge.engine.callbacks import Validation
from genforge.metrics.ngram import window_bits
from genforge.schema import Optim, Strict
from genforge.tasks.base import OneNetworkTask, evaluating


class TextTaskConfig(Strict):
    kind: Literal["text"] = "text"
    optim: Optim = Optim(learning_rate=1e-3, betas=(0.9, 0.99), schedule="cosine")
    max_grad_norm: float = Field(1.0, ge=0.0, description="Gradient clipping (0: none).")
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0)
    val_windows: int = Field(32, ge=0, description="Holdout windows (of model.block_size bytes) scored every "
                             "train.eval_every steps; genforge eval scores the whole holdout.")


@registry.register_task("text", TextTaskConfig, models=("chargpt",), family="text",
                        tiny={"data": {"dataset": "pydoc"}, "task": {"val_windows": 1},
                              "train": {"batch_size": 2}})
class TextTask(OneNetworkTask):
    @classmethod
    def setup(cls, cfg, dist):
        corpus = read_corpus(cfg.data.dataset)
        block = cfg.model.block_size
        batches = TokenBatches(as_tokens(corpus.train), block=block, batch_size=cfg.train.batch_size,
                               seed=cfg.seed, device=dist.device, rank=dist.rank)
        val = []
        if cfg.task.val_windows and dist.is_main:
            holdout = as_tokens(corpus.holdout)
            per_char = len(corpus.holdout) / corpus.holdout_chars  # bytes per character of the holdout
            val = [{"window": w.to(dist.device), "per_char": per_char}
                   for w in holdout_windows(holdout, block, cfg.task.val_windows)]

        def callbacks(out: Path):
            return [Validation(val, cfg.train.eval_every or cfg.train.checkpoint_every)] if val else []
        return batches, callbacks, []

    def training_step(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        G = self.networks["g"]
        with self.autocast():
            logits = G(batch["x"])
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), batch["y"].reshape(-1))
        if self.optimize("g", loss, max_norm=self.cfg.max_grad_norm) and self.ema is not None:
            self.ema.update(G)
        return {"loss": loss.detach(), "bits_per_byte": loss.detach() / math.log(2)}

    @torch.no_grad()
    def validation_step(self, batch: dict) -> dict[str, float]:
        with evaluating(self.export_module()) as net:
            bits, n = window_bits(net, batch["window"])
        return {"bpc": bits / n * batch["per_char"]}
