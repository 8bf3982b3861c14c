"""ONNX export of the network deployment receives, verified with ONNX Runtime, and the runner that
lets the inference wrappers (infer.py) call an .onnx file as if it were the torch module.

An exported file carries what the wrappers need in its metadata_props (genforge_format, task,
scale, channels, size_multiple, receptive_radius, latent_dim, num_classes, config), so it stands alone."""

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from genforge.deploy.pretrained import FORMAT, TASK_KINDS, build_export_module, read_source
from genforge.errors import UserError

TOLERANCE = 1e-4


def _sr_probe(channels: int, h: int, w: int, seed: int) -> torch.Tensor:
    """A real-looking image: a smooth gradient with mild noise, in [0, 1]."""
    rng = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([(0.2 + 0.6 * xx) * (0.5 + 0.5 * yy)] * channels)
    return (base + 0.03 * torch.randn(channels, h, w, generator=rng)).clamp(0, 1)[None]


def export_onnx(name_or_path: str, out_path, *, opset: int = 17) -> dict:
    """Export a model (shipped name, folder, run directory or checkpoint) to ONNX, check it
    against PyTorch with ONNX Runtime and return the measured max abs differences."""
    import onnx

    out_path = Path(out_path)
    if out_path.suffix.lower() != ".onnx" or out_path.is_dir():
        raise UserError(f"-o {out_path}: give a file name ending in .onnx")
    source = read_source(name_or_path)
    module = build_export_module(source)
    kind = TASK_KINDS.get(source.config["task"]["kind"], "other")
    channels = int(getattr(module, "channels", 0) or getattr(module, "out_channels", 0))
    meta = {"genforge_format": FORMAT, "task": kind, "channels": channels, "config": json.dumps(source.config)}
    gen = torch.Generator().manual_seed(0)
    if kind == "super-resolution":
        m = int(getattr(module, "size_multiple", 1))
        meta.update(scale=int(module.scale), size_multiple=m,
                    receptive_radius=int(getattr(module, "receptive_radius", 0) or 0))
        size = max(16, m)
        inputs = (torch.rand(1, module.channels, size, size, generator=gen),)
        names, out_name = ["lr"], "sr"
        axes = {"lr": {0: "batch", 2: "height", 3: "width"}, "sr": {0: "batch", 2: "out_height", 3: "out_width"}}
        checks = {"random": (torch.rand(2, module.channels, size + m, 2 * size, generator=gen),),
                  "random_other_size": (torch.rand(1, module.channels, 2 * size + m, size + 2 * m, generator=gen),),
                  "gradient_image": (_sr_probe(module.channels, 3 * m * max(1, 24 // m), 5 * m * max(1, 8 // m), 1),)}
    elif kind == "generation":
        meta.update(latent_dim=int(module.latent_dim), num_classes=int(module.num_classes or 0),
                    image_size=int(module.image_size))

        def gen_inputs(n):
            z = torch.randn(n, module.latent_dim, generator=gen)
            if module.num_classes:
                return z, torch.randint(0, module.num_classes, (n,), generator=gen)
            return (z,)
        inputs = gen_inputs(2)
        names = ["z", "labels"] if module.num_classes else ["z"]
        out_name = "images"
        axes = {n: {0: "batch"} for n in names + ["images"]}
        checks = {"random": gen_inputs(3), "random_other_batch": gen_inputs(7)}  # generators: batch is the dynamic axis
    elif kind == "translation":
        # CycleGAN exports its A -> B generator; SPADE takes the one-hot label map (and z with a style encoder)
        m = int(module.size_multiple)
        label_nc = int(getattr(module, "label_nc", 0) or 0)
        use_style = bool(getattr(module, "use_style", False))
        in_channels = label_nc or int(module.in_channels)
        meta.update(size_multiple=m, in_channels=in_channels, out_channels=int(module.out_channels),
                    label_nc=label_nc, use_style=int(use_style), z_dim=int(getattr(module, "z_dim", 0) or 0))

        def image_inputs(n, h, w):
            if label_nc:
                ids = torch.randint(0, label_nc, (n, h, w), generator=gen)
                x = torch.nn.functional.one_hot(ids, label_nc).permute(0, 3, 1, 2).float()
            else:
                x = torch.rand(n, in_channels, h, w, generator=gen) * 2 - 1
            return (x, torch.randn(n, module.z_dim, generator=gen)) if use_style else (x,)
        s = m * max(1, 16 // m)  # reflection padding and SPADE's instance norm need more than 1x1 at the bottom
        inputs = image_inputs(1, 2 * s, s)
        names = ["label_map", "z"] if use_style else ["label_map" if label_nc else "image"]
        out_name = "output"
        axes = {names[0]: {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch", 2: "height", 3: "width"}}
        if use_style:
            axes["z"] = {0: "batch"}
        checks = {"random": image_inputs(2, 2 * s, s), "random_other_size": image_inputs(1, s + m, 3 * s)}
    else:
        raise UserError(f"model {source.name!r}: task {source.config['task']['kind']!r} cannot be exported to ONNX")

    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{out_path.name}-", suffix=".onnx", dir=out_path.parent)
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes on ISRNet's shape check, constant folding
            torch.onnx.export(module, inputs, tmp, input_names=names, output_names=[out_name],
                              dynamic_axes=axes, opset_version=opset, dynamo=False)
        model = onnx.load(tmp)
        for key, value in meta.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, str(value)
        onnx.checker.check_model(model)
        onnx.save(model, tmp)
        runner = OnnxRunner(tmp)
        diffs = {}
        for label, args in checks.items():
            with torch.no_grad():
                expected = module(*args)
            diffs[label] = float((runner(*args) - expected).abs().max())
        bad = {k: v for k, v in diffs.items() if not v <= TOLERANCE}
        if bad:
            raise UserError(f"ONNX export of {source.name!r} does not match PyTorch: max abs difference "
                            + ", ".join(f"{k} {v:.3g}" for k, v in bad.items()) + f" (tolerance {TOLERANCE})")
        os.chmod(tmp, 0o644)
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"path": str(out_path), "max_abs_diff": diffs, "opset": opset}


class OnnxRunner:
    """An .onnx file made by export_onnx, callable like the torch module it came from
    (tensors in, tensor out), with the module's attributes read from the metadata."""

    def __init__(self, path):
        import onnxruntime as ort
        path = Path(path)
        try:
            options = ort.SessionOptions()
            threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
            options.intra_op_num_threads = threads
            options.log_severity_level = 3
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001  (protobuf/ORT errors all mean: not a usable ONNX file)
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise UserError(f"cannot read ONNX model {path}: {first}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "genforge_format" not in meta or "config" not in meta:
            raise UserError(f"{path} is an ONNX model but not one exported by genforge (no genforge metadata)")
        self.meta = meta
        self.name = path.stem
        self.task = meta["task"]
        self.config = json.loads(meta["config"])
        self.channels = int(meta["channels"])
        self.scale = int(meta.get("scale", 1))
        self.size_multiple = int(meta.get("size_multiple", 1))
        self.receptive_radius = int(meta.get("receptive_radius", 0)) or None  # tiling overlap
        self.latent_dim = int(meta.get("latent_dim", 0))
        self.num_classes = int(meta.get("num_classes", 0))
        self.in_channels = int(meta.get("in_channels", self.channels))
        self.out_channels = int(meta.get("out_channels", self.channels))
        self.label_nc = int(meta.get("label_nc", 0))
        self.use_style = bool(int(meta.get("use_style", 0)))
        self.z_dim = int(meta.get("z_dim", 0))
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        feeds = {}
        for name, arg in zip(self.input_names, args):
            arr = arg.detach().cpu().contiguous().numpy()
            feeds[name] = arr.astype(np.int64 if name == "labels" else np.float32, copy=False)
        return torch.from_numpy(self.session.run(None, feeds)[0])

    # what the torch helpers (sampling.generate, Upscaler._run) ask of a module
    def to(self, *args, **kwargs):
        return self

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self

    training = False

    def parameters(self):
        yield torch.empty(0)  # CPU: where inputs are placed
