"""The generation family's inference wrapper: a generator z [+ label] -> images in [-1, 1], its ONNX
signature, its service endpoint (POST /v1/generate) and `genforge eval` (FID/KID against the
training data, class coverage and label accuracy with the shipped digits classifier)."""

import json
from pathlib import Path

import torch
from fastapi import HTTPException
from fastapi.responses import Response
from pydantic import BaseModel, Field

from genforge import registry
from genforge.data import load_dataset
from genforge.data.grid import save_grid, to_grid, to_uint8
from genforge.data.io import encode_image, write_image
from genforge.deploy.files import add_runtime_options
from genforge.deploy.infer import InferenceWrapper, OnnxSignature, family_of_source, open_model
from genforge.errors import UserError
from genforge.metrics.digits_net import class_histogram, load_digits_net, predict_logits, requested_label_fraction
from genforge.metrics.precision_recall import FEATURE_METRICS, GENERATION_METRICS, generation_scores, native_size
from genforge.models.sampling import generate, interpolation_latents, prior_tensors
from genforge.registry import register_wrapper

MAX_SAMPLES = 256  # per service request


class GenerateRequest(BaseModel):
    model: str = Field(description="name of a loaded generation model (see /v1/models)")
    n: int = Field(16, ge=1, le=MAX_SAMPLES, description="number of samples in the grid")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="random seed; the same seed gives the same grid")
    label: int | None = Field(None, description="class label, for class-conditional models only")
    nrow: int = Field(8, ge=1, le=MAX_SAMPLES, description="images per grid row")

    model_config = {"extra": "forbid"}


class GeneratorWrapper(InferenceWrapper):
    """What the generation wrappers share (images here, clips in deploy/videogen.py): the class label a
    conditional model takes, a service route that draws a grid from a seed, and eval's features."""

    def __init__(self, name_or_path: str, device: str = "auto", *, opened=None):
        super().__init__(name_or_path, device, opened=opened)
        self.num_classes = int(self.module.num_classes or 0)

    def check_label(self, label: int | None) -> None:
        if label is None:
            return
        if not self.num_classes:
            raise UserError(f"model {self.source.name!r} is not class-conditional: --label does not apply")
        if not 0 <= label < self.num_classes:
            raise UserError(f"--label {label} is out of range: model {self.source.name!r} has classes "
                            f"0..{self.num_classes - 1}")

    def _labels(self, label: int | None, n: int) -> torch.Tensor | None:
        self.check_label(label)
        return None if label is None else torch.full((n,), label, dtype=torch.long)

    @classmethod
    def add_grid_route(cls, app, service, path: str, request: type[BaseModel], render, *, name: str, summary: str,
                       media_type: str, description: str, filename: str) -> None:
        """POST `path`: a `request` body (model, n, seed, label, ...) -> render(wrapper, request) bytes of
        `media_type`, drawn on the service's worker; a label the model does not take is a 422."""
        @app.post(path, name=name, summary=summary, response_class=Response,
                  responses={200: {"content": {media_type: {}}, "description": description}})
        async def route(req: request):  # an annotation object, not a string: FastAPI reads the body's type
            wrapper = service.model_for(req.model, cls)
            try:
                wrapper.check_label(req.label)
            except UserError as err:
                raise HTTPException(422, str(err).replace("--label", "label")) from None
            return Response(await service.run(lambda: render(wrapper, req)), media_type=media_type,
                            headers={"Content-Disposition": f'inline; filename="{filename}"'})

    def eval_features(self, features: str, digits_dataset: str, result: dict):
        """The feature network of `genforge eval --features` ("auto": the digits features for models
        trained on `digits_dataset`), its name noted in `result`."""
        from genforge.metrics.fid import feature_network
        dataset = self.source.config["data"]["dataset"]
        spec = ("digits" if dataset == digits_dataset else None) if features == "auto" else features
        if spec is None:
            raise UserError("no feature network for this dataset: pass --features torchscript:PATH "
                            "or inception:WEIGHTS")
        net = feature_network(spec, "cpu")
        result["features"] = spec
        return net


@register_wrapper("generation")
class Generation(GeneratorWrapper):
    """A generator that maps z [+ label] to images in [-1, 1]."""

    noun = "generator"
    hint = " (use genforge upscale for super-resolution)"
    metrics = (*GENERATION_METRICS, "coverage", "accuracy")
    default_metrics = GENERATION_METRICS  # precision/recall and pixel FD catch blur and contrast FID misses

    def __init__(self, name_or_path: str, device: str = "auto", *, opened=None):
        super().__init__(name_or_path, device, opened=opened)
        self.latent_dim = int(self.module.latent_dim)

    def describe(self) -> dict:
        model = self.source.config["model"]
        return {**super().describe(), "latent_dim": self.latent_dim, "num_classes": self.num_classes,
                "image_size": int(model.get("image_size", 0)), "channels": int(model.get("channels", 0))}

    def generate(self, n: int, *, label: int | None = None, seed: int = 0) -> torch.Tensor:
        return generate(self.module, n, labels=self._labels(label, n), seed=seed).cpu()

    def interpolate(self, rows: int, steps: int, *, label: int | None = None, seed: int = 0) -> torch.Tensor:
        z = interpolation_latents(self.module, rows, steps, seed=seed)
        labels = self._labels(label, len(z))
        if labels is None and self.num_classes:  # one class per row, so the walk stays within it
            labels = (torch.arange(rows) % self.num_classes).repeat_interleave(steps)
        return generate(self.module, len(z), labels=labels, seed=seed, z=z).cpu()

    def save(self, images: torch.Tensor, path, nrow: int = 8):
        return save_grid(images, path, nrow=nrow)

    @classmethod
    def onnx_signature(cls, module, gen: torch.Generator) -> OnnxSignature:
        num_classes = int(module.num_classes or 0)

        def inputs(n):
            z = torch.randn(n, module.latent_dim, generator=gen)
            return (z, torch.randint(0, num_classes, (n,), generator=gen)) if num_classes else (z,)
        names = ["z", "labels"] if num_classes else ["z"]
        prior = {k: v.tolist() for k, v in prior_tensors(module).items()}  # a VAE's fitted latent mixture
        return OnnxSignature(  # generators: the batch is the dynamic axis
            inputs=inputs(2), input_names=names, output_name="images",
            dynamic_axes={n: {0: "batch"} for n in [*names, "images"]},
            checks={"random": inputs(3), "random_other_batch": inputs(7)},
            meta={"channels": int(module.channels), "latent_dim": int(module.latent_dim),
                  "num_classes": num_classes, "image_size": int(module.image_size),
                  **({"tensor_attributes": json.dumps(prior)} if prior else {})},
            integer_inputs=("labels",),
            output_shape=lambda z, *_: (len(z), int(module.channels), int(module.image_size), int(module.image_size)))

    @classmethod
    def add_routes(cls, app, service) -> None:
        def render(gen, req: GenerateRequest) -> bytes:
            images = gen.generate(req.n, label=req.label, seed=req.seed)
            return encode_image(to_uint8(to_grid(images, nrow=req.nrow)), ".png")
        cls.add_grid_route(app, service, "/v1/generate", GenerateRequest, render, name="generate_grid",
                           summary="a PNG grid of samples from a generation model", media_type="image/png",
                           description="PNG grid", filename="samples.png")

    def evaluate(self, metrics: list[str], *, n: int = 2000, features: str = "auto", seed: int = 0,
                 **_) -> dict:
        cfg = self.source.config
        result: dict = {"n": n, "seed": seed}
        wanted = [m for m in metrics if m in GENERATION_METRICS]
        net = self.eval_features(features, "digits", result) if set(FEATURE_METRICS) & set(wanted) else None
        if wanted:
            real = _real_images(cfg)
            size = native_size(cfg["data"]["dataset"], cfg["data"].get("split", "train"), real.shape[-1])
            result.update(generation_scores(real, self.generate(n, seed=seed), wanted, features=net, size=size,
                                            seed=seed))
        classifier = _classifier(cfg) if {"coverage", "accuracy"} & set(metrics) else None
        if "coverage" in metrics:
            frac = class_histogram(predict_logits(classifier, self.generate(n, seed=seed + 1)))
            result["coverage"] = {str(c): round(float(f), 4) for c, f in enumerate(frac)}
            result["coverage_min"] = float(frac.min())
        if "accuracy" in metrics:
            if not self.num_classes:
                raise UserError("accuracy needs a class-conditional model")
            per_label = {}
            for label in range(self.num_classes):
                images = self.generate(max(1, n // self.num_classes), label=label, seed=seed + 2 + label)
                per_label[str(label)] = requested_label_fraction(predict_logits(classifier, images), label)
            result["accuracy"] = sum(per_label.values()) / self.num_classes
            result["accuracy_per_label"] = per_label
        return result

    @classmethod
    def add_commands(cls, sub) -> None:
        s = sub.add_parser("sample", help="draw samples from a generator (images, or clips from a video generator)")
        s.add_argument("model", help="shipped model name, model folder, run directory or .onnx file")
        s.add_argument("-n", type=int, default=64, help="number of samples")
        s.add_argument("-o", "--output", required=True, help="grid PNG (video generators: .gif or .mp4), or a "
                                                             "folder ending in / for one file per sample")
        s.add_argument("--label", type=int, help="class label (conditional models)")
        s.add_argument("--interpolate", type=int, metavar="STEPS",
                       help="latent interpolation rows with STEPS images each")
        s.add_argument("--rows", type=int, default=8, help="rows for --interpolate")
        s.add_argument("--nrow", type=int, default=8, help="images per grid row")
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
        add_runtime_options(s)
        s.set_defaults(func=cmd_sample)



def _real_images(cfg: dict) -> torch.Tensor:
    model, data = cfg["model"], cfg["data"]
    images = load_dataset(data["dataset"], image_size=model["image_size"], channels=model["channels"],
                          split=data.get("split", "train")).images
    return images.float().div(127.5).sub(1.0)


def _classifier(cfg: dict):
    if cfg["data"]["dataset"] != "digits":
        raise UserError("coverage and accuracy need the digits classifier: only for models trained on digits")
    return load_digits_net()


def cmd_sample(args) -> int:
    if args.n < 1 or args.n > 100_000:
        raise UserError("-n must be between 1 and 100000")
    opened = open_model(args.model, args.device, provider=args.provider)
    sampler = getattr(registry.wrapper_row(family_of_source(opened[0])).wrapper, "sample_command", None)
    if sampler is not None:  # another family's generators (video generation: clips) answer the same command
        return sampler(args, opened)
    # from_options opens the model itself when --provider is given (an .onnx file opened again)
    gen = Generation.from_options(args.model, args, opened=None if args.provider else opened)
    out = Path(args.output)
    if args.interpolate:
        if args.interpolate < 2:
            raise UserError("--interpolate needs at least 2 steps")
        images = gen.interpolate(args.rows, args.interpolate, label=args.label, seed=args.seed)
        nrow = args.interpolate
    else:
        images = gen.generate(args.n, label=args.label, seed=args.seed)
        nrow = args.nrow
    if args.output.endswith(("/", "\\")) or out.is_dir():
        for i, img in enumerate(images):
            write_image(out / f"sample_{i:05d}.png", to_uint8((img + 1) / 2))
        print(f"wrote {len(images)} images to {out}/")
    else:
        if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"):
            raise UserError(f"-o {out}: give an image file name (.png) or a folder ending in /")
        save_grid(images, out, nrow=nrow)
        print(f"wrote {out} ({len(images)} samples)")
    return 0
