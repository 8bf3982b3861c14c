"""The translation family's inference wrapper (Pix2Pix, CycleGAN, SPADE), its ONNX signature, its
service endpoint (POST /v1/translate) and `genforge eval` on the holdout images against their
ground truth.

Tiles (`--tile`; auto: on CUDA from free memory, on the CPU above --max-memory) read a bound of
the generator's receptive radius around them, so a generator without per-image statistics (norm
none, or batch norm, which deployment runs in eval mode) gives exactly the untiled output.
Instance norm (CycleGAN's and SPADE's defaults) normalises each tile by its own statistics, and a
U-Net's bottleneck sees the whole crop: their tiles are close to the whole image's output, not
equal to it."""

import numpy as np
import torch
from fastapi import File, Form, UploadFile
from fastapi.responses import Response
from torch import nn

from genforge.data.color import match_channels
from genforge.data.io import DEFAULT_MAX_PIXELS, decode_image, encode_image, read_image, read_label_map
from genforge.data.preprocess import read_run_data
from genforge.deploy.files import add_output_options, add_runtime_options, add_tile_option, check_tile, process_files
from genforge.deploy.infer import (
    AUTO,
    InferenceWrapper,
    LazyImage,
    OnnxSignature,
    pad_to_multiple,
    read_input,
    split_image,
    to_pil,
    to_tensor,
    with_alpha,
)
from genforge.errors import UserError
from genforge.models.spade import one_hot_labels
from genforge.registry import register_wrapper

PAIRED_METRICS = ("l1", "psnr", "ssim", "checkerboard")  # per image against the ground truth, then the mean
DEFAULT_OVERLAP = 32  # tile overlap when the receptive field cannot be bounded (an .onnx file)
MAX_OVERLAP = 128  # beyond this a wider read costs more than the context it adds (a U-Net sees the whole crop)


def receptive_radius_bound(modules, run, probe: torch.Tensor) -> int:
    """An upper bound of a generator's receptive radius in input pixels: every path from an input
    pixel to an output pixel goes through a subset of its convolutions, so the sum over all of them
    of each one's reach (half its dilated kernel, times the spacing of its input grid, read from a
    probe call) bounds every path; a transposed convolution's reach is in its output grid, plus one
    input pixel for the rounding of where a fine pixel falls. Interpolations are not counted (each
    moves a pixel by less than one coarse pixel, which the rounding up to the size multiple covers
    in practice); instance norm makes every output depend on the whole image, which no overlap covers."""
    reach, side = 0.0, probe.shape[-1]

    def add(conv, args):
        nonlocal reach
        spacing = side / args[0].shape[-1]
        half = (conv.kernel_size[-1] - 1) / 2 * conv.dilation[-1]
        reach += (half / conv.stride[-1] + 1) * spacing if isinstance(conv, nn.ConvTranspose2d) else half * spacing

    convs = {id(m): m for module in modules for m in module.modules()  # once each: a pair's nets are inside it
             if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))}.values()
    handles = [conv.register_forward_pre_hook(add) for conv in convs]
    try:
        run(probe)
    finally:
        for handle in handles:
            handle.remove()
    return int(np.ceil(reach))


@register_wrapper("translation")
class Translator(InferenceWrapper):
    """An image-to-image network with everything around it: grey/RGB/RGBA inputs (alpha passed
    through), 8- and 16-bit inputs (16-bit in gives 16-bit out), padding to the network's size
    multiple and cropping back, CycleGAN's direction, SPADE's label maps (class ids, 255 = don't
    care) and its optional style image or random style."""

    noun = "image translation model"
    metrics = (*PAIRED_METRICS, "fid", "kid")
    default_metrics = PAIRED_METRICS  # fid/kid need a photo feature network (--features), so only on request
    upload_routes = {"/v1/translate": 2}  # the image and a style photo
    # --half in bfloat16: instance-norm chains (CycleGAN, SPADE) can reach activations past float16's
    # 65504 before a norm brings them back; bfloat16 has float32's range, and its 8 significant bits
    # still resolve 8-bit outputs in [-1, 1] to about a level (the SR and generation wrappers keep
    # float16, whose 11 bits their pixel-exact outputs need and whose range their activations fit)
    half_dtype = torch.bfloat16

    def __init__(self, name_or_path: str, device: str = "auto", *, opened=None):
        super().__init__(name_or_path, device, opened=opened)
        self.kind = self.source.config["task"]["kind"]
        self.multiple = int(self.module.size_multiple)
        self.out_channels = int(self.module.out_channels)
        self.label_nc = int(getattr(self.module, "label_nc", 0) or 0)
        self.use_style = bool(getattr(self.module, "use_style", False))
        # a generator pair (CycleGAN), or an ONNX file exported from one (which holds A -> B only)
        self.two_way = hasattr(self.module, "direction") or getattr(self.module, "directions", 1) == 2
        self._overlaps: dict[str, int] = {}

    def describe(self) -> dict:
        return {**super().describe(), "kind": self.kind, "label_nc": self.label_nc, "style": self.use_style,
                "directions": ["a2b", "b2a"] if self.two_way else ["a2b"],
                "input": "label map (class ids)" if self.label_nc else "image"}

    def read(self, source, **kwargs) -> np.ndarray:
        """The input file (or upload bytes) as the network takes it: a label map or an image."""
        if self.label_nc:
            return read_label_map(source, **kwargs)
        if isinstance(source, bytes):
            return decode_image(source, **kwargs)
        kwargs.pop("name", None)
        return read_image(source, **kwargs)

    def network(self, direction: str):
        if direction not in ("a2b", "b2a"):
            raise UserError(f"--direction {direction!r}: choose a2b or b2a")
        if direction == "a2b":
            return self.module
        if not self.two_way:
            raise UserError(f"model {self.source.name!r} ({self.kind}) translates one way only: --direction b2a "
                            "needs a CycleGAN model")
        if not hasattr(self.module, "direction"):
            raise UserError("this ONNX file holds the A -> B generator only: export the model folder instead "
                            "for --direction b2a")
        return self.module.direction("b2a")

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = self.multiple
        # SPADE's instance norm needs more than a 1x1 bottom grid
        small = self.label_nc and max(h + (-h) % m, w + (-w) % m) < 2 * m
        return pad_to_multiple(x, m, extra_width=m if small else 0)

    def label_map(self, ids: np.ndarray) -> torch.Tensor:
        """H x W (or H x W x 1) class ids -> 1 x label_nc x H x W one-hot; 255 is 'don't care'."""
        if ids.ndim == 3:
            if ids.shape[2] != 1:
                raise UserError("a label map must be one channel of class ids (an L, P or 16-bit PNG), "
                                f"not a {ids.shape[2]}-channel image")
            ids = ids[:, :, 0]
        ids = ids.astype(np.int64)
        bad = np.unique(ids[((ids >= self.label_nc) & (ids != 255)) | (ids < 0)])
        if bad.size:
            raise UserError(f"class id {int(bad[0])} is out of range: model {self.source.name!r} has "
                            f"label_nc {self.label_nc} (ids 0..{self.label_nc - 1}, 255 = don't care)")
        return one_hot_labels(torch.from_numpy(ids)[None], self.label_nc, check=False)  # checked above

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
            colour, _, peak = split_image(style)
            x = to_tensor(colour, peak) * 2 - 1
            mu, _ = self.module.encode(match_channels(x, 3)[None].to(self.device, self.dtype))
            return mu.float()
        g = torch.Generator().manual_seed(seed)
        return torch.randn(1, self.module.z_dim, generator=g).to(self.device)

    def half_modules(self) -> list[nn.Module]:
        pair = [self.module.direction(d) for d in ("a2b", "b2a")] if hasattr(self.module, "direction") else []
        return [self.module, *pair]

    def _runner(self, net, z: torch.Tensor | None):
        @torch.inference_mode()
        def run(x: torch.Tensor) -> torch.Tensor:  # 1 x C x h x w -> 1 x C' x h x w float32, on the CPU
            h, w = x.shape[-2:]
            x = self._pad(x).to(self.device)
            y = net(x, z) if z is not None else net(x)
            return y[..., :h, :w].float().cpu()
        return run

    def tile_overlap(self, run, channels: int, direction: str) -> int:
        """The receptive-radius bound (at most MAX_OVERLAP), once per direction: it costs a probe call."""
        if direction not in self._overlaps:
            if isinstance(self.module, nn.Module):
                # instance norm needs more than 1x1 at the bottom
                side = 2 * self.multiple * max(1, 32 // self.multiple)
                bound = receptive_radius_bound(self.half_modules(), run, torch.zeros(1, channels, side, side))
            else:
                bound = DEFAULT_OVERLAP
            self._overlaps[direction] = min(bound, MAX_OVERLAP)
        return self._overlaps[direction]

    @torch.inference_mode()
    def translate_array(self, image: np.ndarray, *, direction: str = "a2b", style: np.ndarray | None = None,
                        seed: int | None = None, tile=AUTO, overlap: int | None = None) -> np.ndarray:
        """An image (or for SPADE a label map of class ids) -> H x W x C output of the same size, at
        the input's bit depth (label maps: 8 bits), with the input's alpha passed through; in tiles
        as `tile` says (a number of pixels, 0 = whole, auto: see InferenceWrapper.tile_size), each
        read with `overlap` pixels around it (default: the receptive-radius bound)."""
        alpha, peak = None, 255
        if self.label_nc:
            z = self.style_code(style, seed)
            if z is None and self.use_style:  # the prior's mean: what the torch module does for z=None
                z = torch.zeros(1, int(self.module.z_dim), device=self.device)
            self.label_map(image[:1, :1])  # the map's shape is checked before anything runs
            net, x = self.module, LazyImage(image, lambda a: self.label_map(a)[0], self.label_nc)
        else:
            net, z = self.network(direction), None
            colour, alpha, peak = split_image(image)
            want = int(net.in_channels)
            channels = match_channels(torch.zeros(colour.shape[2], 1, 1), want).shape[0]
            x = LazyImage(colour, lambda a: match_channels(to_tensor(a, peak) * 2 - 1, want), channels)
        run = self._runner(net, z)
        if overlap is None:
            overlap = self.tile_overlap(run, x.shape[0], direction) if self.may_tile(tile) else 0
        out = self.run_tiled(run, x, tile=tile, overlap=overlap, scale=1, peak=peak, signed=True, key=direction)
        return with_alpha(out, alpha)

    def translate(self, image, *, style=None, max_pixels: int | None = DEFAULT_MAX_PIXELS, **kwargs):
        """A path, PIL image or array in (and for `style`); a PIL image out (for the Python one-liner).
        A path over max_pixels (the CLI's --max-pixels default; None: no limit) is one ImageTooLargeError."""
        style = None if style is None else read_input(style, read_image, max_pixels)
        return to_pil(self.translate_array(read_input(image, self.read, max_pixels), style=style, **kwargs))

    @classmethod
    def onnx_signature(cls, module, gen: torch.Generator) -> OnnxSignature:
        # CycleGAN exports its A -> B generator; SPADE takes the one-hot label map (and z with a style encoder)
        m = int(module.size_multiple)
        label_nc = int(getattr(module, "label_nc", 0) or 0)
        use_style = bool(getattr(module, "use_style", False))
        in_channels = label_nc or int(module.in_channels)

        def inputs(n, h, w):
            if label_nc:
                ids = torch.randint(0, label_nc, (n, h, w), generator=gen)
                x = torch.nn.functional.one_hot(ids, label_nc).permute(0, 3, 1, 2).float()
            else:
                x = torch.rand(n, in_channels, h, w, generator=gen) * 2 - 1
            return (x, torch.randn(n, module.z_dim, generator=gen)) if use_style else (x,)
        s = m * max(1, 16 // m)  # reflection padding and SPADE's instance norm need more than 1x1 at the bottom
        names = ["label_map", "z"] if use_style else ["label_map" if label_nc else "image"]
        axes = {names[0]: {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch", 2: "height", 3: "width"}}
        if use_style:
            axes["z"] = {0: "batch"}
        return OnnxSignature(
            inputs=inputs(1, 2 * s, s), input_names=names, output_name="output", dynamic_axes=axes,
            checks={"random": inputs(2, 2 * s, s), "random_other_size": inputs(1, s + m, 3 * s)},
            meta={"channels": int(module.out_channels), "size_multiple": m, "in_channels": in_channels,
                  "out_channels": int(module.out_channels), "label_nc": label_nc, "use_style": int(use_style),
                  "z_dim": int(getattr(module, "z_dim", 0) or 0),
                  "directions": 2 if hasattr(module, "direction") else 1},
            output_shape=lambda x, *_: (len(x), int(module.out_channels), *x.shape[2:]))

    @classmethod
    def add_routes(cls, app, service) -> None:
        @app.post("/v1/translate", summary="image-to-image translation: Pix2Pix, CycleGAN, SPADE (PNG out)",
                  responses={200: {"content": {"image/png": {}}, "description": "translated PNG"}},
                  response_class=Response)
        async def translate(image: UploadFile = File(description="the input image; SPADE: a label map of class "
                                                                 "ids (grey, palette or 16-bit PNG)"),
                            model: str = Form(description="name of a loaded translation model"),
                            style: UploadFile | None = File(None, description="SPADE with a style encoder: "
                                                                              "style photo"),
                            direction: str = Form("a2b", description="CycleGAN: a2b or b2a"),
                            seed: int | None = Form(None, description="SPADE with a style encoder: a random style")):
            tr = service.model_for(model, cls)
            data = await service.read_upload(image)
            style_data = await service.read_upload(style) if style is not None and style.filename else None
            limit = service.limits.max_pixels

            def work():
                array = tr.read(data, max_pixels=limit, name="image")
                style_array = decode_image(style_data, max_pixels=limit, name="style") \
                    if style_data is not None else None
                out = tr.translate_array(array, direction=direction, style=style_array, seed=seed)
                return encode_image(out, ".png")

            return Response(await service.run(work), media_type="image/png",
                            headers={"Content-Disposition": 'inline; filename="translated.png"'})

    def evaluate(self, metrics: list[str], *, features: str = "auto", seed: int = 0, split: str = "holdout",
                 **_) -> dict:
        """Translate every image of the model's dataset split (holdout by default; in the run's
        data.direction, resized as its data.preprocess resized the training images) whole and compare
        with its ground truth: the paired target, or for the unpaired bundled pair the known true
        mapping. L1 is the mean absolute error in [0, 1] units; PSNR/SSIM are on RGB (8-bit);
        checkerboard is the output's period-2/4 grid energy over the ground truth's
        (genforge.metrics.checkerboard: 1 = the same, above 1 a grid the truth does not have). Baselines
        beside them: the input returned unchanged (where it has the target's shape) and, for paired data,
        a flat image of the training targets' mean colour (mean_colour_l1, mean_colour_psnr)."""
        from genforge.metrics.checkerboard import checkerboard
        from genforge.metrics.psnr_ssim import psnr, ssim
        cfg = self.source.config
        data = read_run_data(cfg, split)
        targets = data.truth if data.kind == "unpaired" else data.b
        if targets is None:
            raise UserError(f"dataset {cfg['data']['dataset']!r} has no ground truth for its {split} split "
                            "(unpaired data without a known mapping)")
        colour = None
        if data.kind != "unpaired" and {"l1", "psnr"} & set(metrics):  # a guess that knows only the colours
            train_b = read_run_data(cfg, "train").b
            colour = np.round(np.mean([b.reshape(-1, b.shape[2]).mean(0) for b in train_b], axis=0)).astype(np.uint8)
        outputs, per_image = [], {}
        baselines: dict[str, list] = {"input_unchanged": [], "mean_colour": []}  # (psnr, l1) per image
        for name, a, target in zip(data.names_a, data.a, targets):
            if a.shape == target.shape:  # the input itself as the answer: the bar a model must clear
                baselines["input_unchanged"].append((psnr(a, target), _l1(a, target)))
            out = self.translate_array(a, tile=0)  # whole, as the scores are defined
            if out.shape[2] != target.shape[2]:  # a grey model output scored against RGB, or the reverse
                out, target = _rgb(out), _rgb(target)
            outputs.append((out, target))
            if colour is not None:
                flat = np.broadcast_to(colour, target.shape)
                baselines["mean_colour"].append((psnr(flat, target), _l1(flat, target)))
            row = {}
            if "l1" in metrics:
                row["l1"] = _l1(out, target)
            if "psnr" in metrics:
                row["psnr"] = psnr(out, target)
            if "ssim" in metrics:
                row["ssim"] = ssim(out, target)
            if "checkerboard" in metrics:
                # below 8 px a side there is no spectrum to speak of: left out of the mean
                row["checkerboard"] = checkerboard(out, target) if min(out.shape[:2]) >= 8 else float("nan")
            per_image[name] = row
        result: dict = {"dataset": cfg["data"]["dataset"], "split": split, "images": len(outputs)}
        for m in PAIRED_METRICS:
            if m in metrics:
                result[m] = float(np.nanmean([r[m] for r in per_image.values()]))
        for key, scores in baselines.items():
            if scores and len(scores) == len(outputs):
                result[f"{key}_psnr"] = float(np.mean([u[0] for u in scores]))
                result[f"{key}_l1"] = float(np.mean([u[1] for u in scores]))
        if "fid" in metrics or "kid" in metrics:
            from genforge.metrics.fid import feature_network, fid_kid
            if features == "auto":
                raise UserError("fid/kid of translations need a feature network for photos: pass "
                                "--features torchscript:PATH or inception:WEIGHTS")
            fake, real = _tiles([_rgb(o) for o, _ in outputs]), _tiles([_rgb(t) for _, t in outputs])
            scores = fid_kid(real, fake, feature_network(features, "cpu"), seed=seed)
            result.update(features=features, tiles=len(fake))
            for m in ("fid", "kid"):
                if m in metrics:
                    result[m] = scores[m]
        result["per_image"] = per_image
        return result

    @classmethod
    def add_commands(cls, sub) -> None:
        s = sub.add_parser("translate",
                           help="image-to-image translation (Pix2Pix, CycleGAN, SPADE) of files or folders")
        s.add_argument("model", help="shipped model name (pix2pix-edges2photos, ...), model folder, run directory "
                                     "or .onnx")
        s.add_argument("inputs", nargs="+", help="image files or folders (SPADE: label maps of class ids)")
        s.add_argument("-o", "--output", required=True, help="output folder (inputs keep their names), or an image "
                                                             "file (out.png, ...) for one input image")
        s.add_argument("--direction", default="a2b", choices=("a2b", "b2a"), help="CycleGAN: which generator")
        s.add_argument("--style", help="SPADE with a style encoder: take the style from this photo")
        s.add_argument("--seed", type=int, help="SPADE with a style encoder: a random style from this seed")
        add_tile_option(s, ". Exact for generators without instance norm whose receptive field the overlap covers; "
                           "instance norm (CycleGAN, SPADE) normalises per tile: close, not equal")
        s.add_argument("--overlap", type=int, help="tile overlap in pixels (default: a bound of the generator's "
                                                   f"receptive radius, at most {MAX_OVERLAP})")
        add_output_options(s, ext_help="output format (default png)")
        add_runtime_options(s)
        s.set_defaults(func=cmd_translate)



def _l1(a: np.ndarray, b: np.ndarray) -> float:  # mean absolute difference of uint8 images, in [0, 1] units
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean() / 255)


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


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


def cmd_translate(args) -> int:
    check_tile(args.tile)
    tr = Translator.from_options(args.model, args)
    style = read_image(args.style, max_pixels=args.max_pixels) if args.style else None
    if style is not None or args.seed is not None:
        tr.style_code(style, args.seed)  # refuse --style/--seed for models without a style encoder, once
    tr.network(args.direction)  # refuse a wrong direction before touching any file
    written, failed = process_files(
        args.inputs, args.output,
        lambda img: tr.translate_array(img, direction=args.direction, style=style, seed=args.seed, tile=args.tile,
                                       overlap=args.overlap),
        suffix=args.suffix, ext=args.ext, default_ext="png", max_pixels=args.max_pixels, progress=not args.no_progress,
        reader=tr.read)
    print(f"translated {written} image(s) into {args.output}" + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0
