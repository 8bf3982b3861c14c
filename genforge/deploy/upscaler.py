"""The super-resolution family's inference wrapper (genforge's networks, ONNX files and spandrel's
third-party weights alike), its ONNX signature, its service endpoint (POST /v1/upscale) and the
benchmark evaluation behind `genforge eval-sr`."""

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from fastapi import File, Form, UploadFile
from fastapi.responses import Response

from genforge.checkpoint_files import save_text
from genforge.data.color import match_channels, rgb_to_ycbcr, ycbcr_to_rgb
from genforge.data.degrade import imresize
from genforge.data.io import DEFAULT_MAX_PIXELS, decode_image, encode_image, read_image
from genforge.deploy.files import (
    add_output_options,
    add_runtime_options,
    add_tile_option,
    add_video_options,
    check_tile,
    process_files,
    process_videos,
    split_media,
)
from genforge.deploy.infer import (
    AUTO,
    DEFAULT_MAX_MEMORY,
    InferenceWrapper,
    LazyImage,
    OnnxSignature,
    pad_to_multiple,
    read_input,
    split_image,
    tiled,
    to_pil,
    to_tensor,
    with_alpha,
)
from genforge.errors import UserError
from genforge.registry import register_wrapper

DEFAULT_OVERLAP = 16  # tile overlap for networks that do not state their receptive field
ALPHA_TILE, ALPHA_OVERLAP = 512, 4  # alpha is bicubic (4 taps: 2 LR pixels each side), in bounded pieces too


def _probe(channels: int, h: int, w: int, seed: int) -> torch.Tensor:
    """A real-looking image for the ONNX check: a smooth gradient with mild noise, in [0, 1]."""
    rng = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([(0.2 + 0.6 * xx) * (0.5 + 0.5 * yy)] * channels)
    return (base + 0.03 * torch.randn(channels, h, w, generator=rng)).clamp(0, 1)[None]


@register_wrapper("super-resolution")
class Upscaler(InferenceWrapper):
    """A super-resolution network with everything around it: grey/RGB/RGBA (alpha upscaled
    separately with bicubic), 8 and 16 bit, padding to the network's size multiple, tiling with
    overlap for bounded memory, inference mode, clamping to the valid range."""

    noun = "super-resolution model"
    upload_routes = {"/v1/upscale": 1}

    def __init__(self, name_or_path: str, device: str = "auto", *, source=None, opened=None):
        super().__init__(name_or_path, device, source=source, opened=opened)
        self.scale = int(self.module.scale)
        self.channels = int(self.module.channels)
        self.multiple = int(getattr(self.module, "size_multiple", 1))
        self.default_overlap = int(getattr(self.module, "receptive_radius", 0) or DEFAULT_OVERLAP)

    def describe(self) -> dict:
        return {**super().describe(), "scale": self.scale, "channels": self.channels}

    # tensors -------------------------------------------------------------------------------
    @torch.inference_mode()
    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """x: 1 x C x h x w float in [0, 1] -> 1 x C x sh x sw. A grey (luma) model given RGB
        upscales the BT.601 luma and leaves chroma to bicubic, as SRCNN and FSRCNN do: the eye and
        the Y-PSNR protocol both look at luma."""
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.multiple).to(self.device)
        if self.channels == 1 and x.shape[1] == 3:  # a luma model on a colour image
            ycc = rgb_to_ycbcr(x)
            y = self.module(ycc[:, :1].contiguous(memory_format=torch.channels_last)).to(x.dtype)
            chroma = F.interpolate(ycc[:, 1:], scale_factor=self.scale, mode="bicubic", align_corners=False)
            y = ycbcr_to_rgb(torch.cat([y, chroma], dim=1))
        else:
            y = self.module(x.contiguous(memory_format=torch.channels_last))
        return y[..., : h * self.scale, : w * self.scale].clamp_(0, 1).float().cpu()

    def upscale_tensor(self, x, *, tile=AUTO, overlap: int | None = None, out_max: int = 255) -> np.ndarray:
        """x: C x H x W float [0, 1] (a tensor, or a LazyImage converting crops of an integer array)
        -> (sH x sW x C) array quantised to out_max (255 or 65535), in tiles of at most tile x tile
        when tile > 0, the whole image for 0, and for auto as InferenceWrapper.tile_size chooses
        (see tiling.tiled)."""
        return self.run_tiled(self._run, x, tile=tile, overlap=self.default_overlap if overlap is None else overlap,
                              scale=self.scale, peak=out_max, key=x.shape[0])

    # arrays --------------------------------------------------------------------------------
    def upscale_array(self, image: np.ndarray, *, tile=AUTO, overlap: int | None = None) -> np.ndarray:
        """H x W x C (C = 1, 2, 3 or 4) uint8/uint16 -> sH x sW x C of the same dtype."""
        colour, alpha, peak = split_image(image)
        grey_in = colour.shape[2] == 1
        channels = 3 if self.channels == 3 else colour.shape[2]
        # converted to float a tile at a time: never a float copy of the whole image
        x = LazyImage(colour, lambda a: match_channels(to_tensor(a, peak), channels), channels)
        y = self.upscale_tensor(x, tile=tile, overlap=overlap, out_max=peak)
        if grey_in and y.shape[2] == 3:
            y = np.round(y.astype(np.float32).mean(axis=2, keepdims=True)).astype(y.dtype)
        if alpha is not None:  # bicubic, so edges of cut-outs are not hallucinated
            alpha = tiled(lambda t: imresize(t, scale=self.scale, antialias=False), LazyImage(
                alpha, lambda a: to_tensor(a, peak), 1), tile=ALPHA_TILE, overlap=ALPHA_OVERLAP, scale=self.scale,
                multiple=1, peak=peak)
        return with_alpha(y, alpha, rgb=False)

    def upscale(self, image, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, **kwargs):
        """A path, PIL image or array in; a PIL image out (for the Python one-liner). A path over
        max_pixels (the CLI's --max-pixels default; None: no limit) is one ImageTooLargeError."""
        return to_pil(self.upscale_array(read_input(image, read_image, max_pixels), **kwargs))

    @classmethod
    def onnx_signature(cls, module, gen: torch.Generator) -> OnnxSignature:
        m, c = int(getattr(module, "size_multiple", 1)), int(module.channels)
        size = max(16, m)
        return OnnxSignature(
            inputs=(torch.rand(1, c, size, size, generator=gen),), input_names=["lr"], output_name="sr",
            dynamic_axes={"lr": {0: "batch", 2: "height", 3: "width"},
                          "sr": {0: "batch", 2: "out_height", 3: "out_width"}},
            checks={"random": (torch.rand(2, c, size + m, 2 * size, generator=gen),),
                    "random_other_size": (torch.rand(1, c, 2 * size + m, size + 2 * m, generator=gen),),
                    "gradient_image": (_probe(c, 3 * m * max(1, 24 // m), 5 * m * max(1, 8 // m), 1),)},
            meta={"channels": c, "scale": int(module.scale), "size_multiple": m,
                  "receptive_radius": int(getattr(module, "receptive_radius", 0) or 0)},
            output_shape=lambda lr: (*lr.shape[:2], lr.shape[2] * int(module.scale), lr.shape[3] * int(module.scale)))

    @classmethod
    def add_routes(cls, app, service) -> None:
        @app.post("/v1/upscale", summary="super-resolve one image (PNG out; 16-bit in gives 16-bit out)",
                  responses={200: {"content": {"image/png": {}}, "description": "upscaled PNG"}},
                  response_class=Response)
        async def upscale(image: UploadFile = File(description="the image (PNG, JPEG, WebP, TIFF, ...)"),
                          model: str = Form(description="name of a loaded super-resolution model")):
            up = service.model_for(model, cls)
            data = await service.read_upload(image)

            def work():
                array = decode_image(data, max_pixels=service.limits.max_pixels, name="image")
                return encode_image(up.upscale_array(array, tile=service.limits.tile), ".png")

            return Response(await service.run(work), media_type="image/png",
                            headers={"Content-Disposition": f'inline; filename="upscaled_x{up.scale}.png"'})

    def evaluate(self, metrics: list[str], **options) -> dict:
        raise UserError("super-resolution models are scored on a benchmark set: genforge eval-sr MODEL "
                        "--benchmark ../shared/benchmarks/Set5 --scale N")

    @classmethod
    def add_commands(cls, sub) -> None:
        s = sub.add_parser("upscale", help="super-resolve images or folders")
        s.add_argument("model", nargs="?", help="shipped model name (isrnet-x2, ...), model folder, run directory "
                                                "or .onnx file; omitted with --weights")
        s.add_argument("inputs", nargs="*", help="image files or folders (recursive), videos (.mp4 .mkv .mov .webm "
                                                 ".avi, animated .gif)")
        s.add_argument("--weights", metavar="FILE", help="third-party super-resolution weights (.pth, .pt, .ckpt, "
                                                         ".safetensors: ESRGAN, Real-ESRGAN, SwinIR, ...) via spandrel")
        s.add_argument("-o", "--output", required=True, help="output folder (inputs keep their names), an image file "
                                                             "(out.png, ...) for one input image, or a video file "
                                                             "(.mp4, ...) for one video or frames-folder input")
        s.add_argument("--self-ensemble", action="store_true", help="average the 8 flipped/rotated outputs (x8 time; "
                                                                    "about +0.2 dB PSNR)")
        add_tile_option(s)
        s.add_argument("--overlap", type=int, help="tile overlap in LR pixels (default: the receptive-field radius)")
        add_output_options(s, ext_help="output format (png, jpg, ...; for videos mp4, mkv, ... or png for a frames "
                                       "folder); default: the input's")
        add_video_options(s)
        s.add_argument("--reference", metavar="HR_VIDEO", help="with one video input: print the mean per-frame PSNR "
                                                               "against this ground truth and the flicker figure")
        add_runtime_options(s)
        # with an optional model, argparse takes both positionals at their first appearance: inputs given
        # after an option (upscale MODEL -o out/ in.png) arrive as leftovers and are added here
        s.set_defaults(func=cmd_upscale, leftover_inputs="inputs")

        s = sub.add_parser("eval-sr", help="PSNR/SSIM on a benchmark set with the published protocol")
        s.add_argument("model", help="model name, folder, run directory, or 'bicubic'")
        s.add_argument("--benchmark", required=True,
                       help="folder with HR/ and LR_bicubic/X{s}/ (e.g. Set5), or of HR images only, LR made by "
                            "MATLAB-style bicubic (BSD100: BSDS500/data/images/val)")
        s.add_argument("--scale", type=int, required=True)
        s.add_argument("--mode", choices=("y", "rgb"), default="y", help="Y of BT.601 (papers) or RGB")
        s.add_argument("--self-ensemble", action="store_true", help="average the 8 flipped/rotated outputs")
        add_tile_option(s, " (tiles read the receptive-field radius around them: the scores do not change)")
        s.add_argument("-o", "--output", help="write the per-image table as JSON")
        s.set_defaults(func=cmd_eval_sr)



def sr_upscale_fn(model: str, scale: int, *, self_ensemble: bool = False, tile=AUTO, max_memory=DEFAULT_MAX_MEMORY):
    """(lr array, scale) -> sr array, for a model name/path or the 'bicubic' baseline."""
    from genforge.metrics.psnr_ssim import upscale_bicubic
    if model == "bicubic":
        return upscale_bicubic
    up = Upscaler(model, device="auto")
    if up.scale != scale:
        raise UserError(f"model {model!r} upscales x{up.scale}, not x{scale}: pass --scale {up.scale}")
    up.max_memory = max_memory

    def run(lr, s):
        if not self_ensemble:
            return up.upscale_array(lr, tile=tile)
        return ensemble_x8(lambda x: up.upscale_array(x, tile=tile), lr)
    return run


def ensemble_x8(upscale, lr: np.ndarray) -> np.ndarray:
    """x8 geometric self-ensemble (Lim et al. 2017): `upscale` (array -> array) of the 8 flips and
    transposes of `lr`, turned back and averaged, in lr's dtype."""
    acc = None
    for k in range(8):
        x = np.rot90(lr, k % 4)
        x = x[:, ::-1] if k >= 4 else x
        y = upscale(np.ascontiguousarray(x)).astype(np.float64)
        y = y[:, ::-1] if k >= 4 else y
        y = np.rot90(y, -(k % 4))
        acc = y if acc is None else acc + y
    return np.round(acc / 8).astype(lr.dtype)


def evaluate_sr(model: str, benchmark: str, scale: int, *, mode: str = "y", self_ensemble: bool = False,
                tile=AUTO, max_memory=DEFAULT_MAX_MEMORY) -> dict:
    from genforge.metrics.psnr_ssim import evaluate_benchmark, load_benchmark
    images = load_benchmark(benchmark, scale)
    result = evaluate_benchmark(images, scale, sr_upscale_fn(model, scale, self_ensemble=self_ensemble,
                                                             tile=tile, max_memory=max_memory), mode=mode)
    return {"model": model, "benchmark": str(Path(benchmark).name), "scale": scale, "mode": mode,
            "self_ensemble": self_ensemble, **result}


def format_sr_table(result: dict, baseline: dict | None = None) -> str:
    head = f"{'image':<12}{'PSNR':>9}{'SSIM':>8}{'detail':>8}"
    if baseline:
        head += f"{'bicubic':>10}{'gain':>8}"
    lines = [f"{result['benchmark']} x{result['scale']} ({result['mode'].upper()})", head]
    for name, r in result["images"].items():
        row = f"{name:<12}{r['psnr']:>9.2f}{r['ssim']:>8.4f}{r['detail']:>8.2f}"
        if baseline:
            b = baseline["images"][name]["psnr"]
            row += f"{b:>10.2f}{r['psnr'] - b:>+8.2f}"
        lines.append(row)
    row = f"{'mean':<12}{result['psnr']:>9.2f}{result['ssim']:>8.4f}{result['detail']:>8.2f}"
    if baseline:
        row += f"{baseline['psnr']:>10.2f}{result['psnr'] - baseline['psnr']:>+8.2f}"
    lines.append(row)
    lines.append("detail: Laplacian energy over the ground truth's (1 = as much fine detail; blur < 1)")
    return "\n".join(lines)


def cmd_upscale(args) -> int:
    check_tile(args.tile)
    inputs = [args.model, *args.inputs] if args.model else []
    if args.weights:  # no model positional: the first one is an input
        from genforge.deploy.pretrained import names_a_model
        from genforge.deploy.thirdparty import load_weights
        if inputs and names_a_model(inputs[0]):
            raise UserError(f"give a model or --weights, not both ({inputs[0]} is a model)")
        if not inputs:
            raise UserError("upscale needs at least one input image or folder")
        up = Upscaler.from_options(args.weights, args, opened=load_weights(args.weights, args.device))
    else:
        if len(inputs) < 2:
            raise UserError("upscale needs a model (or --weights FILE) and at least one input image or folder")
        inputs = inputs[1:]
        up = Upscaler.from_options(args.model, args)
    from genforge.deploy.video import VIDEO_EXTENSIONS
    images, videos = split_media(inputs, args.output, suffix=args.suffix, ext=args.ext)
    if args.reference and (images or len(videos) != 1):
        raise UserError("--reference applies to one video input")
    written = failed = 0

    def fn(img):
        if args.self_ensemble:
            return ensemble_x8(lambda x: up.upscale_array(x, tile=args.tile, overlap=args.overlap), img)
        return up.upscale_array(img, tile=args.tile, overlap=args.overlap)

    if images:
        image_ext = None if args.ext and "." + args.ext.lstrip(".").lower() in VIDEO_EXTENSIONS else args.ext
        written, failed = process_files(images, args.output, fn, suffix=args.suffix, ext=image_ext,
                                        max_pixels=args.max_pixels, progress=not args.no_progress)
    report = (lambda src, dst: print(reference_report(src, dst, args.reference, up.scale))) if args.reference else None
    done, bad = process_videos(videos, lambda frames, src: map(fn, frames), codec=args.codec, crf=args.crf,
                               progress=not args.no_progress, after=report)
    failed += bad
    parts = ([f"{written} image(s)"] if images or not videos else []) + ([f"{done} video(s)"] if videos else [])
    what = " and ".join(parts)
    print(f"upscaled {what} x{up.scale} into {args.output}" + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0


def reference_report(src, dst, reference, scale: int) -> str:
    """Mean per-frame RGB PSNR of the written video (and of per-frame bicubic) against a ground-truth video,
    and the flicker figure of both (genforge.metrics.flow.flicker: lower is steadier)."""
    from genforge.deploy.video import open_video
    from genforge.metrics.flow import flicker
    from genforge.metrics.psnr_ssim import psnr, upscale_bicubic

    def bicubic():
        return (upscale_bicubic(f, scale) for f in open_video(src))

    ours, base = [], []
    for out, bic, ref in zip(open_video(dst), bicubic(), open_video(reference)):
        if ref.shape != out.shape:
            raise UserError(f"--reference {reference}: frames are {ref.shape[1]}x{ref.shape[0]}, the output's "
                            f"{out.shape[1]}x{out.shape[0]}")
        ours.append(psnr(out, ref))
        base.append(psnr(bic, ref))
    fl, fl_bic = flicker(open_video(dst), open_video(src)), flicker(bicubic(), open_video(src))
    return (f"reference {Path(reference).name}: PSNR {np.mean(ours):.2f} dB (bicubic {np.mean(base):.2f}) over "
            f"{len(ours)} frames; flicker {fl:.2f} (bicubic {fl_bic:.2f}) 8-bit levels")


def cmd_eval_sr(args) -> int:
    check_tile(args.tile)
    result = evaluate_sr(args.model, args.benchmark, args.scale, mode=args.mode,
                         self_ensemble=args.self_ensemble, tile=args.tile, max_memory=args.max_memory)
    baseline = evaluate_sr("bicubic", args.benchmark, args.scale, mode=args.mode) if args.model != "bicubic" else None
    print(format_sr_table(result, baseline))
    if args.output:
        save_text(Path(args.output), json.dumps({"result": result, "bicubic": baseline}, indent=2) + "\n")
        print(f"wrote {args.output}")
    return 0
