"""Frame interpolation: a flow network (models/vfinet.py) trained self-supervised on frame triplets
(data/triplets.py): from frames 0 and 1 and t, reproduce the true frame t. Losses: Charbonnier plus
a census term on the frame, and flow distillation (L1 between every block's intermediate flows
and the exact synthetic flows or the DIS teacher flows, where those are valid), which is what
makes a network trained on a CPU for hours start moving rather than blend."""

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from genforge import registry
from genforge.data.triplets import TripletBatches, holdout_triplets, read_clips, read_photos, read_triplet_folders
from genforge.engine.callbacks import Validation
from genforge.errors import ConfigError
from genforge.losses import census, charbonnier
from genforge.metrics.flow import intermediate_flows
from genforge.metrics.psnr_ssim import batch_psnr
from genforge.models.vfinet import backward_warp
from genforge.schema import Optim, Strict
from genforge.tasks.base import OneNetworkTask, evaluating


class InterpolationTaskConfig(Strict):
    kind: Literal["interpolation"] = "interpolation"
    patch_size: int = Field(192, ge=16, le=1024, description="Training crop side; a multiple of the network's "
                            "size multiple (16 for the default VFINet).")
    synthetic: float = Field(0.5, ge=0.0, le=1.0, description="Fraction of synthetic-motion triplets (from "
                             "task.photos) in every batch; the rest come from data.dataset.")
    photos: list[str] = Field(["photos"], description="Datasets of still photos for the synthetic motion "
                              "(photos, folder:PATH, ...; their train split).")
    val_photos: list[str] = Field(["photos:holdout"], description="Photos of the synthetic holdout triplets "
                                  "(never trained on): dataset specs, ':holdout' picks a bundled set's holdout split.")
    max_motion: float = Field(32.0, ge=0.0, description="Synthetic motion between frame 0 and 1, in pixels "
                              "(the largest; most are smaller).")
    teacher: bool = Field(True, description="DIS flows from the true middle frame supervise the flows of "
                          "real triplets (where they reproduce it).")
    pixel_loss: Literal["charbonnier", "l1"] = "charbonnier"
    census_weight: float = Field(0.1, ge=0.0, description="Weight of the census (local structure) loss.")
    flow_weight: float = Field(0.01, ge=0.0, description="Weight of the flow distillation (per pixel of flow).")
    optim: Optim = Optim(learning_rate=3e-4, betas=(0.9, 0.999), schedule="cosine")
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0)
    val_triplets: int = Field(8, ge=0, description="Holdout triplets (centre crops) for validation PSNR.")
    val_size: int = Field(256, ge=16, description="Side of the validation crops.")


def _centre_crops(sets: dict, count: int, size: int, multiple: int, dis_init: bool, device) -> list[dict]:
    rows = [row for triplets in sets.values() for row in triplets[::max(1, len(triplets) // 2)]][:count]
    out = []
    for a, g, b, t in rows:
        h, w = a.shape[:2]
        sh, sw = min(size, h) // multiple * multiple, min(size, w) // multiple * multiple
        top, left = (h - sh) // 2, (w - sw) // 2
        crop = [torch.from_numpy(np.ascontiguousarray(x[top:top + sh, left:left + sw])).permute(2, 0, 1)[None]
                .float().div(255).to(device) for x in (a, g, b)]
        item = {"a": crop[0], "g": crop[1], "b": crop[2], "t": torch.tensor([t], device=device)}
        if dis_init:
            a, b = (np.ascontiguousarray(x[top:top + sh, left:left + sw]) for x in (a, b))
            item["init"] = torch.from_numpy(np.concatenate(intermediate_flows(a, b, t)[:2], axis=2)).permute(2, 0, 1)[
                None].to(device)
        out.append(item)
    return out


@registry.register_task("interpolation", InterpolationTaskConfig, models=("vfinet",), family="interpolation",
                        tiny={"data": {"dataset": "none"},
                              "task": {"patch_size": 16, "synthetic": 1.0, "max_motion": 4, "val_triplets": 1,
                                       "val_size": 16},
                              "train": {"batch_size": 2, "checkpoint_every": 1, "eval_every": 1, "log_every": 1}})
class InterpolationTask(OneNetworkTask):
    @classmethod
    def setup(cls, cfg, dist):
        t, spec = cfg.task, cfg.data.dataset
        net = registry.model_row(cfg.model.name).build(cfg.model)
        multiple, dis_init = net.size_multiple, bool(getattr(net, "dis_init", 0))
        if t.patch_size % multiple:
            raise ConfigError(f"config error: task.patch_size: {t.patch_size} is not a multiple of the network's "
                              f"size multiple {multiple}")
        triplets = read_triplet_folders(spec, "train") if spec.startswith("triplets:") else []
        clips = [] if triplets else read_clips(spec, "train")
        photos = read_photos(t.photos, "train") if t.synthetic > 0 else []
        batches = TripletBatches(clips, triplets, photos, patch_size=t.patch_size, batch_size=cfg.train.batch_size,
                                 seed=cfg.seed, synthetic=t.synthetic if (clips or triplets) else 1.0,
                                 max_motion=t.max_motion, teacher=t.teacher, dis_init=dis_init, device=dist.device,
                                 rank=dist.rank)
        val = []
        if t.val_triplets and dist.is_main:
            sets = holdout_triplets(spec, photos=read_photos(t.val_photos), synthetic=max(1, t.val_triplets // 2),
                                    size=t.val_size, max_motion=t.max_motion)
            val = _centre_crops(sets, t.val_triplets, t.val_size, multiple, dis_init, dist.device)

        def callbacks(out: Path):
            return [Validation(val, cfg.train.eval_every or cfg.train.checkpoint_every)] if val else []
        return batches, callbacks, []

    def training_step(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        G = self.networks["g"]
        out, flows = G.forward_all(batch["a"], batch["b"], batch["t"], batch.get("init"))
        pixel = charbonnier(out, batch["g"]) if self.cfg.pixel_loss == "charbonnier" else \
            (out - batch["g"]).abs().mean()
        loss = pixel
        metrics = {"loss_pixel": pixel.detach()}
        if self.cfg.census_weight > 0:
            structure = census(out, batch["g"])
            loss = loss + self.cfg.census_weight * structure
            metrics["loss_census"] = structure.detach()
        if self.cfg.flow_weight > 0:
            valid = batch["flow_valid"]
            distill = sum(((f - batch["flow"]).abs() * valid).mean() for f in flows) / len(flows)
            loss = loss + self.cfg.flow_weight * distill
            metrics["loss_flow"] = distill.detach()
        if self.optimize("g", loss, max_norm=1.0) and self.ema is not None:
            self.ema.update(G)
        metrics["loss"] = loss.detach()
        return metrics

    @torch.no_grad()
    def validation_step(self, batch: dict) -> dict[str, float]:
        with evaluating(self.export_module()) as net:
            out = net(batch["a"], batch["b"], batch["t"], batch.get("init")).clamp(0, 1)
        blend = batch["a"] * (1 - batch["t"].view(-1, 1, 1, 1)) + batch["b"] * batch["t"].view(-1, 1, 1, 1)
        scores = {"psnr": float(batch_psnr(out, batch["g"])), "psnr_blend": float(batch_psnr(blend, batch["g"]))}
        if "init" in batch:  # where the network starts: the classical flows, warped and time-weighted
            w = batch["t"].view(-1, 1, 1, 1)
            start = backward_warp(batch["a"], batch["init"][:, :2]) * (1 - w) + \
                backward_warp(batch["b"], batch["init"][:, 2:]) * w
            scores["psnr_dis_start"] = float(batch_psnr(start, batch["g"]))
        return scores
