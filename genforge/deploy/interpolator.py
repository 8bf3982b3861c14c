"""The frame-interpolation family's inference wrapper (VFINet and its ONNX files): the frame at any time
t between two frames, the intermediate frames of a video, its ONNX signature, its service endpoint
(POST /v1/interpolate), the `interpolate` command and `genforge eval` on the holdout triplets beside
the repeat, blend and DIS-flow baselines.

The endpoints are the inputs: t = 0 returns frame a and t = 1 frame b exactly (copies), not the
network's reconstruction of them. A video at --factor N gets N output frames per input frame (the
input frame, then the N - 1 frames at t = j/N; the last input frame is repeated N times), so at N
times the frame rate its duration is unchanged."""

from pathlib import Path

import numpy as np
import torch
from fastapi import File, Form, HTTPException, UploadFile
from fastapi.responses import Response

from genforge.data.color import match_channels
from genforge.data.io import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, decode_image, encode_image, read_image, write_image
from genforge.deploy.files import (
    add_output_options,
    add_runtime_options,
    add_video_options,
    process_videos,
    split_media,
)
from genforge.deploy.infer import (
    InferenceWrapper,
    OnnxSignature,
    pad_to_multiple,
    quantise,
    read_input,
    split_image,
    to_pil,
    to_tensor,
    with_alpha,
)
from genforge.errors import UserError
from genforge.metrics.flow import intermediate_flows
from genforge.registry import register_wrapper

METHODS = ("repeat", "blend", "dis", "model")  # the columns of `genforge eval`
EVAL_SYNTHETIC = 16  # synthetic holdout triplets (at most -n)
EVAL_SIZE = 256  # their side, in pixels
PSNR_CAP = 100.0  # dB for an exact answer (a clip's repeated frame), so that the means stay finite
MAX_STRIP = 16  # frames one service request may ask for (n)


def check_t(t) -> float:
    t = float(t)
    if not 0.0 <= t <= 1.0:  # also refuses nan
        raise UserError(f"t = {t:g} is outside [0, 1] (0 is frame a, 1 is frame b)")
    return t


def check_factor(factor) -> int:
    if int(factor) != factor or factor < 2:
        raise UserError(f"--factor {factor}: must be a whole number of at least 2 (output frames per input frame)")
    return int(factor)


def check_pair(a: np.ndarray, b: np.ndarray) -> None:
    """Two frames of one size and bit depth (grey, RGB and alpha may mix), else one clear line."""
    if a.shape[:2] != b.shape[:2]:
        raise UserError(f"the two frames differ in size: {a.shape[1]}x{a.shape[0]} and {b.shape[1]}x{b.shape[0]}")
    if a.dtype != b.dtype or a.dtype not in (np.uint8, np.uint16):
        bits = [{np.dtype(np.uint8): "8-bit", np.dtype(np.uint16): "16-bit"}.get(x.dtype, str(x.dtype)) for x in (a, b)]
        raise UserError(f"the two frames differ in bit depth: {bits[0]} and {bits[1]}" if bits[0] != bits[1]
                        else f"frames must be 8- or 16-bit images, not {bits[0]}")


def _probe_pair(h: int, w: int) -> tuple:
    """A real-looking motion for the ONNX check: a textured gradient and the same moved by (3, 2) pixels."""
    rng = torch.Generator().manual_seed(3)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h + 8), torch.linspace(0, 1, w + 8), indexing="ij")
    base = torch.stack([0.2 + 0.6 * xx, 0.3 + 0.5 * yy, 0.5 + 0.3 * torch.sin(9 * xx + 5 * yy)])
    base = (base + 0.04 * torch.randn(base.shape, generator=rng)).clamp(0, 1)
    return base[None, :, 4:4 + h, 4:4 + w], base[None, :, 2:2 + h, 1:1 + w], torch.tensor([0.5])


def start_flows(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """The classical intermediate flows a dis_init VFINet refines (metrics.flow.intermediate_flows on
    the 8-bit frames): 3 x H x W floats in [0, 1] -> 1 x 4 x H x W (F_t0, F_t1)."""
    def to8(x):
        return x.permute(1, 2, 0).mul(255).round_().clamp_(0, 255).to(torch.uint8).numpy()
    ft0, ft1, _, _ = intermediate_flows(to8(a), to8(b), t)
    return torch.from_numpy(np.concatenate([ft0, ft1], axis=2)).permute(2, 0, 1)[None]


@register_wrapper("interpolation")
class Interpolator(InferenceWrapper):
    """A frame-interpolation network with everything around it: grey/RGB/RGBA frames (grey runs as
    RGB and comes back grey, alpha is blended linearly by t), 8 and 16 bit (16-bit in, 16-bit out),
    padding to the network's size multiple and cropping back, clamping and quantising."""

    noun = "frame-interpolation model"
    metrics = ("psnr", "ssim")
    upload_routes = {"/v1/interpolate": 2}

    def __init__(self, name_or_path: str, device: str = "auto", *, opened=None):
        super().__init__(name_or_path, device, opened=opened)
        self.channels = int(self.module.channels)
        self.multiple = int(getattr(self.module, "size_multiple", 1))
        self.dis_init = bool(int(getattr(self.module, "dis_init", 0)))

    def describe(self) -> dict:
        return {**super().describe(), "channels": self.channels, "size_multiple": self.multiple}

    @torch.inference_mode()
    def _run(self, a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
        """a, b: 3 x H x W float in [0, 1] -> the frame at t, 3 x H x W float in [0, 1], on the CPU."""
        h, w = a.shape[-2:]
        pair = pad_to_multiple(torch.stack([a, b]), self.multiple).to(self.device)
        pair = pair.contiguous(memory_format=torch.channels_last)
        args = [pair[:1], pair[1:], torch.tensor([t], dtype=torch.float32, device=self.device)]
        if self.dis_init:  # the network refines classical flows, computed on the unpadded frames
            args.append(pad_to_multiple(start_flows(a, b, t), self.multiple).to(self.device))
        y = self.module(*args)
        return y[0, :, :h, :w].float().clamp_(0, 1).cpu()

    def interpolate_array(self, a: np.ndarray, b: np.ndarray, t: float = 0.5) -> np.ndarray:
        """H x W [x C] uint8/uint16 frames -> the frame at t in [0, 1], of their dtype: grey when both
        are grey (H x W when both are), with alpha when either has it (a missing alpha is opaque).
        t = 0 and 1 return copies of a and b."""
        t = check_t(t)
        a, b = np.asarray(a), np.asarray(b)
        check_pair(a, b)
        if t in (0.0, 1.0):
            return (a if t == 0 else b).copy()
        (ca, alpha_a, peak), (cb, alpha_b, _) = split_image(a), split_image(b)
        y = self._run(match_channels(to_tensor(ca, peak), 3), match_channels(to_tensor(cb, peak), 3), t)
        if ca.shape[2] == 1 and cb.shape[2] == 1:
            y = y.mean(0, keepdim=True)
        out = quantise(y, peak)
        if alpha_a is None and alpha_b is None:
            return out[:, :, 0] if a.ndim == 2 and b.ndim == 2 else out
        opaque = np.full(out.shape[:2] + (1,), peak, out.dtype)
        alpha_a, alpha_b = (opaque if x is None else x for x in (alpha_a, alpha_b))
        alpha = np.round((1 - t) * alpha_a.astype(np.float64) + t * alpha_b).astype(out.dtype)
        return with_alpha(out, alpha, rgb=False)

    def interpolate(self, a, b, t: float = 0.5, *, max_pixels: int | None = DEFAULT_MAX_PIXELS):
        """Paths, PIL images or arrays in; a PIL image out (for the Python one-liner). A path over
        max_pixels (the CLI's --max-pixels default; None: no limit) is one ImageTooLargeError."""
        a, b = (read_input(x, read_image, max_pixels) for x in (a, b))
        return to_pil(self.interpolate_array(a, b, t))

    def interpolate_frames(self, frames, factor: int, *, name: str = "the video"):
        """A video's frames -> factor times as many: for each consecutive pair (f_k, f_k+1), f_k then
        the factor - 1 frames at t = j / factor; the last frame is repeated factor times, so n frames
        give exactly n * factor and at factor times the frame rate the duration is unchanged.
        Streams: only the previous and the current frame are held. One frame only is an error."""
        factor = check_factor(factor)
        frames = iter(frames)
        prev = next(frames, None)
        if prev is None:
            return
        current = next(frames, None)
        if current is None:
            raise UserError(f"{name} has one frame only: nothing to interpolate")
        while current is not None:
            yield prev
            for j in range(1, factor):
                yield self.interpolate_array(prev, current, j / factor)
            prev, current = current, next(frames, None)
        for _ in range(factor):
            yield prev

    @classmethod
    def onnx_signature(cls, module, gen: torch.Generator) -> OnnxSignature:
        m = int(getattr(module, "size_multiple", 1))
        s = m * max(1, 16 // m)

        dis_init = int(getattr(module, "dis_init", 0))

        def inputs(n, h, w):
            frames = (torch.rand(n, 3, h, w, generator=gen), torch.rand(n, 3, h, w, generator=gen),
                      torch.rand(n, generator=gen))
            return frames + ((8 * torch.rand(n, 4, h, w, generator=gen) - 4,) if dis_init else ())
        image_axes = {0: "batch", 2: "height", 3: "width"}
        probe = _probe_pair(3 * s, 4 * s)
        if dis_init:
            probe = (*probe, start_flows(probe[0][0], probe[1][0], 0.5))
        return OnnxSignature(
            inputs=inputs(1, 2 * s, s), input_names=["frame0", "frame1", "t"] + (["flow"] if dis_init else []),
            output_name="frame",
            dynamic_axes={"frame0": image_axes, "frame1": image_axes, "t": {0: "batch"}, "frame": image_axes,
                          **({"flow": image_axes} if dis_init else {})},
            checks={"random": inputs(2, s + m, 2 * s), "random_other_size": inputs(1, 2 * s + m, s + 2 * m),
                    "moving_gradient": probe},
            meta={"channels": int(module.channels), "size_multiple": m, "dis_init": dis_init},
            output_shape=lambda a, *_: tuple(a.shape))

    @classmethod
    def add_routes(cls, app, service) -> None:
        @app.post("/v1/interpolate", summary="the frame between two images at time t, or a strip of n frames "
                                             "(PNG out; 16-bit in gives 16-bit out)",
                  responses={200: {"content": {"image/png": {}}, "description": "the frame, or a strip"}},
                  response_class=Response)
        async def interpolate(a: UploadFile = File(description="frame 0 (PNG, JPEG, WebP, TIFF, ...)"),
                              b: UploadFile = File(description="frame 1, of the same size and bit depth"),
                              model: str = Form(description="name of a loaded frame-interpolation model"),
                              t: float | None = Form(None, ge=0, le=1, description="time in [0, 1] (default 0.5)"),
                              n: int | None = Form(None, ge=1, le=MAX_STRIP, description="instead of t: n frames "
                                                   "at t = k/(n+1), side by side in one PNG strip")):
            vfi = service.model_for(model, cls)
            if t is not None and n is not None:
                raise HTTPException(400, "give t or n, not both")
            data_a, data_b = await service.read_upload(a), await service.read_upload(b)
            times = [0.5 if t is None else t] if n is None else [k / (n + 1) for k in range(1, n + 1)]

            def work():
                fa = decode_image(data_a, max_pixels=service.limits.max_pixels, name="a")
                fb = decode_image(data_b, max_pixels=service.limits.max_pixels, name="b")
                check_pair(fa, fb)
                return encode_image(np.concatenate([vfi.interpolate_array(fa, fb, x) for x in times], axis=1))

            name = f"interpolated_n{n}.png" if n else f"interpolated_t{times[0]:.3f}.png"
            return Response(await service.run(work), media_type="image/png",
                            headers={"Content-Disposition": f'inline; filename="{name}"'})

    def evaluate(self, metrics: list[str], *, n: int = 2000, **_) -> dict:
        """PSNR/SSIM (RGB, 8-bit) on the holdout triplets of the model's data.dataset (each clip's
        holdout section) and on EVAL_SYNTHETIC synthetic triplets of EVAL_SIZE pixels from its
        task.val_photos, for every method in METHODS; at most n triplets a set. Whole frames."""
        from genforge.data.triplets import holdout_triplets, read_photos
        from genforge.metrics.flow import dis_interpolate
        from genforge.metrics.psnr_ssim import psnr, ssim
        if n < 1:
            raise UserError(f"-n {n}: at least 1 triplet a set")
        cfg, task = self.source.config, self.source.config.get("task", {})
        photos = read_photos(task.get("val_photos", []))
        size = min([EVAL_SIZE, *(min(p.shape[:2]) for p in photos)])
        sets = holdout_triplets(cfg["data"]["dataset"], photos=photos, synthetic=min(EVAL_SYNTHETIC, n) if photos
                                else 0, size=size, max_motion=float(task.get("max_motion", 24.0)))
        sets = {name: rows[:n] for name, rows in sets.items() if rows}
        if not sets:
            raise UserError(f"model {self.source.name!r}: no holdout triplets (dataset {cfg['data']['dataset']!r}, "
                            "no task.val_photos)")
        scores = {m: {} for m in metrics}
        for name, rows in sets.items():
            per = {m: {k: [] for k in METHODS} for m in metrics}
            for a, g, b, t in rows:
                blend = np.round((1 - t) * a.astype(np.float64) + t * b).astype(np.uint8)
                outs = {"repeat": a, "blend": blend, "dis": dis_interpolate(a, b, t),
                        "model": self.interpolate_array(a, b, t)}
                for k, out in outs.items():
                    if "psnr" in per:
                        per["psnr"][k].append(min(psnr(out, g), PSNR_CAP))
                    if "ssim" in per:
                        per["ssim"][k].append(ssim(out, g))
            for m in metrics:
                scores[m][name] = {k: float(np.mean(v)) for k, v in per[m].items()}
        result = {"dataset": cfg["data"]["dataset"], "synthetic_size": size if "synthetic" in sets else None,
                  "triplets": {name: len(rows) for name, rows in sets.items()}, **scores}
        if "psnr" in scores:
            result["model_minus_dis_psnr"] = {k: v["model"] - v["dis"] for k, v in scores["psnr"].items()}
        return result

    @classmethod
    def add_commands(cls, sub) -> None:
        s = sub.add_parser("interpolate", help="frames between two images, or a video at N times its frame rate")
        s.add_argument("model", help="model folder, run directory or .onnx file of a frame-interpolation model")
        s.add_argument("inputs", nargs="+", help="two images (a b), or videos (.mp4 .mkv .mov .webm .avi, animated "
                                                 ".gif) and folders of numbered frames")
        s.add_argument("-o", "--output", required=True, help="two images: an image file (one frame) or a folder "
                                                             "(numbered frames); videos: a video file or a folder")
        s.add_argument("-n", type=int, help="two images: this many frames between them, at t = k/(n+1) (default 1)")
        s.add_argument("--t", type=float, help="two images: one frame at this time in [0, 1]")
        s.add_argument("--factor", type=int, help="videos: output frames per input frame (default 2): N times "
                                                  "the frame rate, the same duration")
        add_output_options(s, ext_help="two images into a folder: the frames' format (default png); videos: mp4, "
                                       "mkv, ... or png for frames folders (default: the input's)")
        add_video_options(s)
        add_runtime_options(s)
        s.set_defaults(func=cmd_interpolate)


def cmd_interpolate(args) -> int:
    from genforge.deploy.video import is_video
    videos = [p for p in args.inputs if Path(p).is_dir() or is_video(p)]
    if videos and len(videos) != len(args.inputs):
        raise UserError("give two images, or videos and frames folders, not both")
    return _interpolate_videos(args) if videos else _interpolate_pair(args)


def _interpolate_pair(args) -> int:
    from genforge.deploy.video import VIDEO_EXTENSIONS
    if args.factor is not None:
        raise UserError("--factor applies to videos; between two images give -n N or --t T")
    if len(args.inputs) != 2:
        raise UserError(f"interpolate takes two images (a and b) or videos; got {len(args.inputs)} image(s)")
    if args.t is not None and args.n is not None:
        raise UserError("give -n or --t, not both")
    if args.n is not None and args.n < 1:
        raise UserError(f"-n {args.n}: at least 1 frame")
    count = args.n or 1
    times = [check_t(args.t)] if args.t is not None else [k / (count + 1) for k in range(1, count + 1)]
    out = Path(args.output)
    suffix = out.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        raise UserError(f"-o {out}: between two images give an image file or a folder (videos take --factor)")
    single = suffix in IMAGE_EXTENSIONS
    if single and len(times) > 1:
        raise UserError(f"-o {out} names one image: give a folder for -n {count}")
    if not single and out.exists() and not out.is_dir():
        raise UserError(f"-o {out}: exists and is not a folder")
    ext = "." + (args.ext or "png").lstrip(".").lower()
    if not single and ext not in IMAGE_EXTENSIONS:
        raise UserError(f"--ext {args.ext}: not an image format ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    a, b = (read_image(p, max_pixels=args.max_pixels) for p in args.inputs)
    check_pair(a, b)
    vfi = Interpolator.from_options(args.model, args)
    frames = [vfi.interpolate_array(a, b, t) for t in times]  # every frame before any file is written
    targets = [out] if single else [out / f"{k:06d}{args.suffix}{ext}" for k in range(1, len(frames) + 1)]
    for dst, frame in zip(targets, frames):
        write_image(dst, frame)
    where = f"into {out}" if not single else f"to {out}"
    print(f"wrote {len(frames)} frame(s) at t = {', '.join(f'{t:.4g}' for t in times)} {where}")
    return 0


def _video_targets(args) -> list[tuple[Path, Path]]:
    """(input, output) per video or frames folder, as split_media names them; a frames folder going into
    an output folder becomes a frames folder of its name (or a video with a video --ext)."""
    from genforge.deploy.video import VIDEO_EXTENSIONS
    folders, videos = split_media(args.inputs, args.output, suffix=args.suffix, ext=args.ext)
    ext = ("." + args.ext.lstrip(".")).lower() if args.ext else ""
    for name in folders:
        videos.append((Path(name), Path(args.output) / (Path(name).name + args.suffix +
                                                         (ext if ext in VIDEO_EXTENSIONS else ""))))
    if len({dst for _, dst in videos}) != len(videos):
        raise UserError("two inputs would be written to the same output name; use separate runs or --suffix")
    return videos


def _interpolate_videos(args) -> int:
    if args.n is not None or args.t is not None:
        raise UserError("-n and --t apply to two images; for videos give --factor N")
    factor = check_factor(2 if args.factor is None else args.factor)
    pairs = _video_targets(args)
    vfi = Interpolator.from_options(args.model, args)
    done, failed = process_videos(pairs, lambda frames, src: vfi.interpolate_frames(frames, factor, name=f"'{src}'"),
                                  fps_factor=factor, codec=args.codec, crf=args.crf, progress=not args.no_progress)
    print(f"interpolated {done} video(s) x{factor} into {args.output}" + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0
