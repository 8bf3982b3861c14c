"""Inference wrappers: one per task kind, used by the CLI, the Python API and (later) the service."""

import numpy as np
import torch

from genforge.data.color import match_channels, rgb_to_ycbcr, ycbcr_to_rgb
from genforge.data.grid import save_grid
from genforge.deploy.pretrained import ModelSource, build_export_module, read_source
from genforge.device import select_device
from genforge.errors import UserError
from genforge.models.sampling import generate, interpolation_latents

TRANSLATION_KINDS = ("pix2pix", "cyclegan", "spade")


def is_onnx(name_or_path) -> bool:
    return str(name_or_path).lower().endswith(".onnx")


def open_model(name_or_path: str, device: str, source=None):
    """(source, module, device): the torch network, or for an .onnx file an ONNX Runtime runner
    with the same call signature (CPU), so the wrappers below serve both unchanged."""
    if is_onnx(name_or_path) and source is None:
        from genforge.deploy.export import OnnxRunner
        runner = OnnxRunner(name_or_path)
        return ModelSource(runner.name, runner.config, {}), runner, torch.device("cpu")
    source = source or read_source(name_or_path)
    device = select_device(device)
    return source, build_export_module(source, device), device


class Generation:
    """A generator that maps z [+ label] to images in [-1, 1]."""

    def __init__(self, name_or_path: str, device: str = "auto", *, opened=None):
        self.source, self.module, self.device = opened or open_model(name_or_path, device)
        kind = self.source.config["task"]["kind"]
        if kind not in ("gan", "vae"):
            raise UserError(f"model {self.source.name!r} is a {kind} model, not a generator "
                            f"(use genforge upscale for super-resolution)")
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
    opened = open_model(name_or_path, device)  # read the file once; the wrapper takes it as it is
    kind = opened[0].config["task"]["kind"]
    if kind in ("gan", "vae"):
        return Generation(name_or_path, opened=opened)
    if kind == "superres":
        return Upscaler(name_or_path, opened=opened)
    if kind in TRANSLATION_KINDS:
        return Translator(name_or_path, opened=opened)
    raise UserError(f"model {name_or_path!r}: task {kind!r} has no inference wrapper yet")


class Upscaler:
    """A super-resolution network with everything around it: grey/RGB/RGBA (alpha upscaled
    separately with bicubic), 8 and 16 bit, padding to the network's size multiple, tiling with
    overlap for bounded memory, inference mode, clamping to the valid range."""

    def __init__(self, name_or_path: str, device: str = "auto", *, source=None, opened=None):
        from genforge.config import SR_MODELS
        self.source, self.module, self.device = opened or open_model(name_or_path, device, source)
        name = self.source.config["model"]["name"]
        if name not in SR_MODELS and not name.startswith("spandrel:"):  # spandrel: deploy/thirdparty.py
            raise UserError(f"model {self.source.name!r} is not a super-resolution model")
        self.scale = int(self.module.scale)
        self.channels = int(self.module.channels)
        self.multiple = int(getattr(self.module, "size_multiple", 1))
        radius = getattr(self.module, "receptive_radius", None)
        self.default_overlap = int(radius) if radius else 16

    # tensors -------------------------------------------------------------------------------
    @torch.inference_mode()
    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """x: 1 x C x h x w float in [0, 1] -> 1 x C x sh x sw, padded to the size multiple. A grey
        (luma) model given RGB upscales the BT.601 luma and leaves chroma to bicubic, as SRCNN and
        FSRCNN do: the eye and the Y-PSNR protocol both look at luma."""
        import torch.nn.functional as F
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        if ph or pw:
            mode = "reflect" if h > ph and w > pw else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        x = x.to(self.device)
        if self.channels == 1 and x.shape[1] == 3:  # a luma model on a colour image
            ycc = rgb_to_ycbcr(x)
            y = self.module(ycc[:, :1].contiguous(memory_format=torch.channels_last)).to(x.dtype)
            chroma = F.interpolate(ycc[:, 1:], scale_factor=self.scale, mode="bicubic", align_corners=False)
            y = ycbcr_to_rgb(torch.cat([y, chroma], dim=1))
        else:
            y = self.module(x.contiguous(memory_format=torch.channels_last))
        return y[..., : h * self.scale, : w * self.scale].clamp_(0, 1).float().cpu()

    def upscale_tensor(self, x: torch.Tensor, *, tile: int = 0, overlap: int | None = None,
                       out_max: int = 255) -> np.ndarray:
        """x: C x H x W float [0, 1] -> (sH x sW x C) array quantised to out_max (255 or 65535).

        With tile > 0 the image is processed in tile x tile pieces, each read with `overlap` extra
        pixels on every side (multiples of the network's size multiple, so the strided levels stay
        aligned) and only its centre kept: the result then equals the untiled one wherever the
        overlap covers the receptive field."""
        c, H, W = x.shape
        s = self.scale
        dtype = np.uint16 if out_max > 255 else np.uint8
        if not tile or (H <= tile and W <= tile):
            y = (self._run(x[None])[0] * out_max).round_().permute(1, 2, 0)
            return np.ascontiguousarray(y.numpy(), dtype=dtype)
        out = np.empty((H * s, W * s, c), dtype=dtype)
        m = self.multiple
        tile = max(m, tile - tile % m)
        pad = self.default_overlap if overlap is None else overlap
        pad = pad + (-pad) % m
        for top in range(0, H, tile):
            for left in range(0, W, tile):
                t0, l0 = max(0, top - pad), max(0, left - pad)
                t1, l1 = min(H, top + tile + pad), min(W, left + tile + pad)
                y = self._run(x[None, :, t0:t1, l0:l1])[0]
                bottom, right = min(H, top + tile), min(W, left + tile)
                core = y[:, (top - t0) * s:(bottom - t0) * s, (left - l0) * s:(right - l0) * s]
                out[top * s:bottom * s, left * s:right * s] = \
                    (core * out_max).round_().permute(1, 2, 0).numpy().astype(dtype)
        return out

    # arrays --------------------------------------------------------------------------------
    def upscale_array(self, image: np.ndarray, *, tile: int = 0, overlap: int | None = None) -> np.ndarray:
        """H x W x C (C = 1, 3 or 4) uint8/uint16 -> sH x sW x C of the same dtype."""
        from genforge.data.degrade import imresize
        if image.ndim == 2:
            image = image[:, :, None]
        out_max = 65535 if image.dtype == np.uint16 else 255
        c = image.shape[2]
        colour = image[:, :, :3] if c in (3, 4) else image[:, :, :1]
        x = torch.from_numpy(colour.astype(np.float32) / out_max).permute(2, 0, 1)
        grey_in = x.shape[0] == 1
        if self.channels == 3 and grey_in:
            x = x.expand(3, -1, -1)
        y = self.upscale_tensor(x, tile=tile, overlap=overlap, out_max=out_max)
        if grey_in and y.shape[2] == 3:
            y = np.round(y.astype(np.float32).mean(axis=2, keepdims=True)).astype(y.dtype)
        if c in (2, 4):  # alpha: bicubic, so edges of cut-outs are not hallucinated
            a = torch.from_numpy(image[:, :, -1:].astype(np.float32) / out_max).permute(2, 0, 1)[None]
            a = imresize(a, scale=self.scale, antialias=False)[0].clamp_(0, 1)
            a = (a * out_max).round_().permute(1, 2, 0).numpy().astype(y.dtype)
            y = np.concatenate([y, a[: y.shape[0], : y.shape[1]]], axis=2)
        return y

    def upscale(self, image, **kwargs):
        """A path, PIL image or array in; a PIL image out (for the Python one-liner)."""
        from PIL import Image

        from genforge.data.io import read_image
        if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
            image = read_image(image)
        elif isinstance(image, Image.Image):
            image = np.asarray(image)
        out = self.upscale_array(np.asarray(image), **kwargs)
        return Image.fromarray(out[:, :, 0] if out.shape[2] == 1 else out) if out.dtype == np.uint8 else out


def _to_unit(image: np.ndarray) -> tuple[torch.Tensor, np.ndarray | None]:
    """H x W x C uint8/uint16 -> (C' x H x W float in [-1, 1] without alpha, alpha channel or None)."""
    if image.ndim == 2:
        image = image[:, :, None]
    peak = 65535.0 if image.dtype == np.uint16 else 255.0
    alpha = image[:, :, -1] if image.shape[2] in (2, 4) else None
    colour = image[:, :, :3] if image.shape[2] in (3, 4) else image[:, :, :1]
    x = torch.from_numpy(colour.astype(np.float32) / peak).permute(2, 0, 1)
    return x * 2 - 1, (None if alpha is None else (alpha.astype(np.float32) / peak * 255).round().astype(np.uint8))


class Translator:
    """An image-to-image network (Pix2Pix, CycleGAN, SPADE) with everything around it: grey/RGB/RGBA
    inputs (alpha passed through), 16-bit inputs, padding to the network's size multiple and
    cropping back, CycleGAN's direction, SPADE's label maps (class ids, 255 = don't care) and its
    optional style image or random style."""

    def __init__(self, name_or_path: str, device: str = "auto", *, opened=None):
        self.source, self.module, self.device = opened or open_model(name_or_path, device)
        self.kind = self.source.config["task"]["kind"]
        if self.kind not in TRANSLATION_KINDS:
            raise UserError(f"model {self.source.name!r} is a {self.kind} model, not an image translation model")
        self.multiple = int(self.module.size_multiple)
        self.out_channels = int(self.module.out_channels)
        self.label_nc = int(getattr(self.module, "label_nc", 0) or 0)
        self.use_style = bool(getattr(self.module, "use_style", False))

    def network(self, direction: str):
        if direction not in ("a2b", "b2a"):
            raise UserError(f"--direction {direction!r}: choose a2b or b2a")
        if direction == "a2b":
            return self.module
        if self.kind != "cyclegan":
            raise UserError(f"model {self.source.name!r} ({self.kind}) translates one way only: --direction b2a "
                            "needs a CycleGAN model")
        if not hasattr(self.module, "direction"):
            raise UserError("this ONNX file holds the A -> B generator only: export the model folder instead "
                            "for --direction b2a")
        return self.module.direction("b2a")

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        if self.kind == "spade" and max(h + ph, w + pw) < 2 * self.multiple:
            pw += self.multiple  # instance norm needs more than a 1x1 bottom grid
        if ph or pw:
            mode = "reflect" if h > ph and w > pw else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        return x

    def label_map(self, ids: np.ndarray) -> torch.Tensor:
        """H x W (or H x W x 1) class ids -> 1 x label_nc x H x W one-hot; 255 is 'don't care'."""
        from genforge.models.spade import one_hot_labels
        if ids.ndim == 3:
            if ids.shape[2] != 1:
                raise UserError("a label map must be one channel of class ids (an L, P or 16-bit PNG), "
                                f"not a {ids.shape[2]}-channel image")
            ids = ids[:, :, 0]
        ids = ids.astype(np.int64)
        bad = np.unique(ids[(ids >= self.label_nc) & (ids != 255)])
        if bad.size:
            raise UserError(f"class id {int(bad[0])} is out of range: model {self.source.name!r} has "
                            f"label_nc {self.label_nc} (ids 0..{self.label_nc - 1}, 255 = don't care)")
        return one_hot_labels(torch.from_numpy(ids)[None], self.label_nc)

    @torch.inference_mode()
    def style_code(self, style: np.ndarray | None, seed: int | None) -> torch.Tensor | None:
        """z for SPADE: the style image's encoding, a random draw for a seed, else None (the mean)."""
        if style is None and seed is None:
            return None
        if not self.use_style:
            raise UserError(f"model {self.source.name!r} has no style encoder: --style/--seed do not apply")
        if style is not None:
            if min(style.shape[:2]) < 32:
                raise UserError(f"--style image is {style.shape[1]}x{style.shape[0]}: the style encoder needs "
                                "at least 32x32 pixels")
            x, _ = _to_unit(style)
            mu, _ = self.module.encode(match_channels(x, 3)[None].to(self.device))
            return mu
        g = torch.Generator().manual_seed(seed)
        return torch.randn(1, self.module.z_dim, generator=g).to(self.device)

    @torch.inference_mode()
    def translate_array(self, image: np.ndarray, *, direction: str = "a2b", style: np.ndarray | None = None,
                        seed: int | None = None) -> np.ndarray:
        """An image (or for SPADE a label map of class ids) -> H x W x C uint8 output of the same size."""
        h, w = image.shape[:2]
        alpha = None
        if self.kind == "spade":
            z = self.style_code(style, seed)
            if z is None and self.use_style:  # the prior's mean: what the torch module does for z=None
                z = torch.zeros(1, int(self.module.z_dim), device=self.device)
            x = self._pad(self.label_map(image)).to(self.device)
            y = self.module(x, z) if z is not None else self.module(x)
        else:
            net = self.network(direction)
            x, alpha = _to_unit(image)
            x = match_channels(x, int(net.in_channels))[None]
            y = net(self._pad(x).to(self.device))
        y = ((y[0, :, :h, :w].float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        out = y.permute(1, 2, 0).numpy()
        if alpha is not None:
            out = np.concatenate([np.repeat(out, 3, axis=2) if out.shape[2] == 1 else out, alpha[:, :, None]], 2)
        return np.ascontiguousarray(out)

    def translate(self, image, **kwargs):
        """A path, PIL image or array in; a PIL image out (for the Python one-liner)."""
        from PIL import Image

        from genforge.data.io import read_image, read_label_map
        if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
            image = read_label_map(image) if self.kind == "spade" else read_image(image)
        elif isinstance(image, Image.Image):
            image = np.asarray(image)
        out = self.translate_array(np.asarray(image), **kwargs)
        return Image.fromarray(out[:, :, 0] if out.shape[2] == 1 else out)
