"""Can the CycleGAN generator express photo2poster's true mapping at all? A supervised probe.

photo2poster's true mapping (``posterize``: a Gaussian blur of sigma 1, then 4 flat levels per channel)
is known, so the CycleGAN preset's generator can be trained on it directly: L1 to the true poster of
each training photo, on the preset's crops, its optimiser and learning rate, no GAN. A generator that
cannot get below the unchanged input this way cannot do it from unpaired data either. Variants: the
preset's generator without either key (the paper's), with `model.input_skip`, with `model.tone_curve`
(a learned per-channel output curve) and with both. Holdout L1 (whole holdout images, [0, 1] units)
beside two references: the unchanged input and quantising the input without the blur.

    python bench/value_maps.py [--steps 1000] [--variants plain,skip,skip_curve64]

Writes bench/results/value_maps.md and the README section between the bench:value_maps markers."""

import argparse
import statistics
import time

from common import RESULTS, ROOT, machine_line, write_readme_section  # noqa: E402  (path, OpenMP first)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from genforge.config import load_config  # noqa: E402
from genforge.data.builtin_pairs import POSTER_LEVELS, bundled_pairs, posterize  # noqa: E402
from genforge.data.grid import to_uint8  # noqa: E402
from genforge.data.pair_folders import TranslationData  # noqa: E402
from genforge.data.patches import TranslationPatches  # noqa: E402
from genforge.deploy.infer import pad_to_multiple, to_tensor  # noqa: E402
from genforge.registry import model_row  # noqa: E402

_OFF = ["model.input_skip=false", "model.tone_curve=0"]
VARIANTS = {  # name -> model overrides of configs/cyclegan_photo2poster.yaml (its width, blocks, upsampler)
    "plain": _OFF,
    "skip": [*_OFF, "model.input_skip=true"],
    "curve64": [*_OFF, "model.tone_curve=64"],
    "skip_curve32": [*_OFF, "model.input_skip=true", "model.tone_curve=32"],
    "skip_curve64": [*_OFF, "model.input_skip=true", "model.tone_curve=64"],
}


def _l1(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 images in [0, 1] units, as `genforge eval` scores."""
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean() / 255)


def holdout_l1(net, holdout: TranslationData) -> float:
    """Mean over the whole holdout images (padded to the network's multiple and cut back, 8-bit
    output, as `genforge translate` writes it) of the L1 to the true poster."""
    errors = []
    net.eval()
    with torch.no_grad():
        for photo, truth in zip(holdout.a, holdout.truth):
            x = pad_to_multiple(to_tensor(photo, 255)[None] * 2 - 1, net.size_multiple)
            out = net(x)[0, :, : photo.shape[0], : photo.shape[1]]
            errors.append(_l1(to_uint8((out + 1) / 2), truth))
    net.train()
    return statistics.mean(errors)


def probe(name: str, steps: int, train: TranslationData, holdout: TranslationData) -> dict:
    cfg = load_config(ROOT / "configs" / "cyclegan_photo2poster.yaml", VARIANTS[name])
    torch.manual_seed(cfg.seed)
    net = model_row(cfg.model.name).build(cfg.model)
    opt_cfg = cfg.task.g_optim
    opt = torch.optim.Adam(net.parameters(), opt_cfg.learning_rate, betas=tuple(opt_cfg.betas))
    paired = TranslationData("paired", train.a, train.truth, train.names_a, train.names_a, 3, 3)
    batches = TranslationPatches(paired, patch_size=cfg.task.patch_size, batch_size=cfg.train.batch_size,
                                 seed=cfg.seed)
    curve, busy = {}, 0.0
    for step in range(1, steps + 1):
        batch = batches.batch(step)
        t0 = time.perf_counter()
        loss = (net(batch["a"]) - batch["b"]).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        busy += time.perf_counter() - t0
        if step % (steps // 4) == 0:
            curve[step] = holdout_l1(net, holdout)
    return {"name": name, "overrides": VARIANTS[name], "curve": curve,
            "s_per_step": busy / steps}


def references(holdout: TranslationData) -> tuple[float, float]:
    """Holdout L1 of the unchanged input and of quantising it (posterize's levels, no blur)."""
    same = [_l1(photo, truth) for photo, truth in zip(holdout.a, holdout.truth)]
    quant = [_l1(POSTER_LEVELS[photo // 64], truth) for photo, truth in zip(holdout.a, holdout.truth)]
    return statistics.mean(same), statistics.mean(quant)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    train, holdout = bundled_pairs("photo2poster", "train"), bundled_pairs("photo2poster", "holdout")
    assert np.array_equal(holdout.truth[0], posterize(holdout.a[0]))  # the truth is the documented mapping
    same, quant = references(holdout)
    rows = [probe(name, args.steps, train, holdout) for name in args.variants.split(",")]
    checkpoints = sorted({s for r in rows for s in r["curve"]})
    lines = [f"Supervised probe (not CycleGAN training): the preset's generator trained with L1 to the true "
             f"poster of photo2poster's 5 domain-A training photos, the preset's 64 px crops, batch 4, Adam "
             f"2e-4, seed 0; holdout L1 to the true posters after each number of steps. References: the "
             f"unchanged input {same:.4f}, quantising the input to the 4 levels without the blur {quant:.4f}. "
             f"{machine_line()}.", "",
             "| generator | " + " | ".join(f"L1 at {s}" for s in checkpoints) + " | s/step |",
             "|---|" + "---|" * (len(checkpoints) + 1)]
    for r in rows:
        cells = " | ".join(f"{r['curve'][s]:.4f}" if s in r["curve"] else "" for s in checkpoints)
        label = ", ".join(o.split(".", 1)[1] for o in r["overrides"][len(_OFF):]) or "neither (the paper's)"
        lines.append(f"| {label} | {cells} | {r['s_per_step']:.3f} |")
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "value_maps.md").write_text(text)
    print(text)
    if not write_readme_section("value_maps", text):
        print("README has no bench:value_maps markers; table in bench/results/value_maps.md")


if __name__ == "__main__":
    main()
