"""`genforge eval`: score a generator against its real data.

fid/kid use the pluggable feature network; coverage and accuracy use the shipped digits
classifier (fraction of samples per predicted class; fraction classified as the requested label)."""

import json
from pathlib import Path

import numpy as np
import torch

from genforge.data import load_dataset
from genforge.deploy.infer import Generation
from genforge.engine.checkpoint import save_text
from genforge.errors import UserError

METRICS = ("fid", "kid", "coverage", "accuracy", "l1", "psnr", "ssim")
PAIRED_METRICS = ("l1", "psnr", "ssim")


def parse_metrics(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise UserError(f"unknown metric {', '.join(bad) or '(none)'}; choose from {', '.join(METRICS)}")
    return names


def real_images(cfg: dict) -> torch.Tensor:
    model, data = cfg["model"], cfg["data"]
    images = load_dataset(data["dataset"], image_size=model["image_size"], channels=model["channels"],
                          split=data.get("split", "train")).images
    return images.float().div(127.5).sub(1.0)


def _classifier(cfg: dict):
    if cfg["data"]["dataset"] != "digits":
        raise UserError("coverage and accuracy need the digits classifier: only for models trained on digits")
    from genforge.metrics.digits_net import load_digits_net
    return load_digits_net()


@torch.inference_mode()
def _predict(net, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([net(images[i:i + 512]).argmax(1) for i in range(0, len(images), 512)])


def evaluate(model: str, metrics: list[str], *, n: int = 2000, features: str = "auto", seed: int = 0) -> dict:
    from genforge.deploy.infer import TRANSLATION_KINDS, open_model
    opened = open_model(model, "cpu")
    if opened[0].config["task"]["kind"] in TRANSLATION_KINDS:
        return evaluate_translation(model, metrics, features=features, seed=seed, opened=opened)
    if set(PAIRED_METRICS) & set(metrics):
        raise UserError(f"{', '.join(PAIRED_METRICS)} compare with a ground truth: they apply to translation models "
                        "(super-resolution: genforge eval-sr)")
    gen = Generation(model, opened=opened)
    cfg = gen.source.config
    result: dict = {"model": model, "n": n, "seed": seed}
    if "fid" in metrics or "kid" in metrics:
        from genforge.metrics.fid import feature_network, fid_kid
        spec = ("digits" if cfg["data"]["dataset"] == "digits" else None) if features == "auto" else features
        if spec is None:
            raise UserError("no feature network for this dataset: pass --features torchscript:PATH "
                            "or inception:WEIGHTS")
        real = real_images(cfg)
        net = feature_network(spec, "cpu")
        scores = fid_kid(real, gen.generate(n, seed=seed), net)
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(real), generator=g)
        half = len(real) // 2
        reference = fid_kid(real[perm[:half]], real[perm[half:2 * half]], net)
        result["features"] = spec
        for m in ("fid", "kid"):
            if m in metrics:
                result[m] = scores[m]
                result[f"{m}_real_halves"] = reference[m]
        if "kid" in metrics:
            result["kid_std"] = scores["kid_std"]
    classifier = _classifier(cfg) if {"coverage", "accuracy"} & set(metrics) else None
    if "coverage" in metrics:
        pred = _predict(classifier, gen.generate(n, seed=seed + 1))
        frac = torch.bincount(pred, minlength=10).float() / len(pred)
        result["coverage"] = {str(c): round(float(f), 4) for c, f in enumerate(frac)}
        result["coverage_min"] = float(frac.min())
    if "accuracy" in metrics:
        if not gen.num_classes:
            raise UserError("accuracy needs a class-conditional model")
        net, per_label, total = classifier, {}, 0
        for label in range(gen.num_classes):
            pred = _predict(net, gen.generate(max(1, n // gen.num_classes), label=label, seed=seed + 2 + label))
            per_label[str(label)] = float((pred == label).float().mean())
            total += per_label[str(label)]
        result["accuracy"] = total / gen.num_classes
        result["accuracy_per_label"] = per_label
    return result


def _tiles(images: list[np.ndarray], size: int = 64) -> torch.Tensor:
    """Non-overlapping size x size tiles of H x W x 3 uint8 images, in [-1, 1]: FID needs many samples
    and the holdout has few, large images."""
    tiles = []
    for im in images:
        x = torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1).float() / 127.5 - 1
        for top in range(0, x.shape[1] - size + 1, size):
            for left in range(0, x.shape[2] - size + 1, size):
                tiles.append(x[:, top:top + size, left:left + size])
    return torch.stack(tiles)


def evaluate_translation(model: str, metrics: list[str], *, features: str = "auto", seed: int = 0,
                         split: str = "holdout", opened=None) -> dict:
    """Translate every image of the model's dataset split (holdout by default) whole and compare with
    its ground truth: the paired target, or for the unpaired bundled pair the known true mapping.
    L1 is the mean absolute error in [0, 1] units; PSNR/SSIM are on RGB (8-bit)."""
    from genforge.data.translation import read_translation
    from genforge.deploy.infer import Translator
    from genforge.metrics.psnr_ssim import psnr, ssim
    bad = [m for m in metrics if m in ("coverage", "accuracy")]
    if bad:
        raise UserError(f"{', '.join(bad)} apply to digit generators, not to translation models")
    tr = Translator(model, opened=opened)
    cfg = tr.source.config
    data = read_translation(cfg["data"]["dataset"], split, label_nc=cfg["model"].get("label_nc"))
    targets = data.truth if data.kind == "unpaired" else data.b
    if targets is None:
        raise UserError(f"dataset {cfg['data']['dataset']!r} has no ground truth for its {split} split "
                        "(unpaired data without a known mapping)")
    outputs, per_image, unchanged = [], {}, []
    for name, a, target in zip(data.names_a, data.a, targets):
        if a.shape == target.shape:  # the input itself as the answer: the bar a model must clear
            unchanged.append((psnr(a, target), float(np.abs(a.astype(np.float64) - target).mean() / 255)))
        out = tr.translate_array(a)
        if out.shape[2] != target.shape[2]:  # a grey model output scored against RGB, or the reverse
            out = np.repeat(out, 3, axis=2) if out.shape[2] == 1 else out
            target = np.repeat(target, 3, axis=2) if target.shape[2] == 1 else target
        outputs.append((out, target))
        row = {}
        if "l1" in metrics:
            row["l1"] = float(np.abs(out.astype(np.float64) - target.astype(np.float64)).mean() / 255)
        if "psnr" in metrics:
            row["psnr"] = psnr(out, target)
        if "ssim" in metrics:
            row["ssim"] = ssim(out, target)
        per_image[name] = row
    result: dict = {"model": model, "dataset": cfg["data"]["dataset"], "split": split, "images": len(outputs)}
    for m in PAIRED_METRICS:
        if m in metrics:
            result[m] = float(np.mean([r[m] for r in per_image.values()]))
    if unchanged and len(unchanged) == len(outputs):
        result["input_unchanged_psnr"] = float(np.mean([u[0] for u in unchanged]))
        result["input_unchanged_l1"] = float(np.mean([u[1] for u in unchanged]))
    if "fid" in metrics or "kid" in metrics:
        from genforge.metrics.fid import feature_network, fid_kid
        if features == "auto":
            raise UserError("fid/kid of translations need a feature network for photos: pass "
                            "--features torchscript:PATH or inception:WEIGHTS")
        rgb = [np.repeat(x, 3, axis=2) if x.shape[2] == 1 else x for pair in outputs for x in pair]
        fake, real = _tiles(rgb[0::2]), _tiles(rgb[1::2])
        scores = fid_kid(real, fake, feature_network(features, "cpu"), seed=seed)
        result["features"] = features
        result["tiles"] = len(fake)
        for m in ("fid", "kid"):
            if m in metrics:
                result[m] = scores[m]
    result["per_image"] = per_image
    return result


def write_report(result: dict, model: str, out: str | None) -> Path:
    path = Path(out) if out else (Path(model) / "eval.json" if Path(model).is_dir() and
                                  (Path(model) / "checkpoints").is_dir() else Path("eval.json"))
    save_text(path, json.dumps(result, indent=2) + "\n")
    return path


def format_table(result: dict) -> str:
    rows = [("metric", "value")]
    for k, v in result.items():
        if isinstance(v, float):
            rows.append((k, f"{v:.4f}"))
        elif isinstance(v, dict) and k == "per_image":
            rows += [(f"  {name}", " ".join(f"{a} {b:.4f}" for a, b in r.items())) for name, r in v.items()]
        elif isinstance(v, dict):
            rows.append((k, " ".join(f"{a}:{b:.3f}" for a, b in v.items())))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{a:<{width}}  {b}" for a, b in rows)


def sr_upscale_fn(model: str, scale: int, *, self_ensemble: bool = False, tile: int = 0):
    """(lr array, scale) -> sr array, for a model name/path or the 'bicubic' baseline."""
    from genforge.metrics.psnr_ssim import upscale_bicubic
    if model == "bicubic":
        return upscale_bicubic
    from genforge.deploy.infer import Upscaler
    up = Upscaler(model, device="auto")
    if up.scale != scale:
        raise UserError(f"model {model!r} upscales x{up.scale}, not x{scale}: pass --scale {up.scale}")

    def run(lr, s):
        if not self_ensemble:
            return up.upscale_array(lr, tile=tile)
        # x8 geometric self-ensemble (Lim et al. 2017): average over flips and transposes
        acc = None
        for k in range(8):
            x = np.rot90(lr, k % 4)
            x = x[:, ::-1] if k >= 4 else x
            y = up.upscale_array(np.ascontiguousarray(x), tile=tile).astype(np.float64)
            y = y[:, ::-1] if k >= 4 else y
            y = np.rot90(y, -(k % 4))
            acc = y if acc is None else acc + y
        return np.round(acc / 8).astype(lr.dtype)
    return run


def evaluate_sr(model: str, benchmark: str, scale: int, *, mode: str = "y", self_ensemble: bool = False,
                tile: int = 0) -> dict:
    from genforge.metrics.psnr_ssim import evaluate_benchmark, load_benchmark
    images = load_benchmark(benchmark, scale)
    result = evaluate_benchmark(images, scale, sr_upscale_fn(model, scale, self_ensemble=self_ensemble,
                                                             tile=tile), mode=mode)
    return {"model": model, "benchmark": str(Path(benchmark).name), "scale": scale, "mode": mode,
            "self_ensemble": self_ensemble, **result}


def format_sr_table(result: dict, baseline: dict | None = None) -> str:
    head = f"{'image':<12}{'PSNR':>9}{'SSIM':>8}"
    if baseline:
        head += f"{'bicubic':>10}{'gain':>8}"
    lines = [f"{result['benchmark']} x{result['scale']} ({result['mode'].upper()})", head]
    for name, r in result["images"].items():
        row = f"{name:<12}{r['psnr']:>9.2f}{r['ssim']:>8.4f}"
        if baseline:
            b = baseline["images"][name]["psnr"]
            row += f"{b:>10.2f}{r['psnr'] - b:>+8.2f}"
        lines.append(row)
    row = f"{'mean':<12}{result['psnr']:>9.2f}{result['ssim']:>8.4f}"
    if baseline:
        row += f"{baseline['psnr']:>10.2f}{result['psnr'] - baseline['psnr']:>+8.2f}"
    lines.append(row)
    return "\n".join(lines)
