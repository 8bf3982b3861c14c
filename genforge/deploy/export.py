"""ONNX export of the network deployment receives, verified with ONNX Runtime, and the runner that
lets the inference wrappers (infer.py) call an .onnx file as if it were the torch module.

An exported file carries what the wrappers need in its metadata_props (genforge_format, task (the
family), config, and the integer attributes of the family's onnx_signature, e.g. scale, channels,
size_multiple, and tensor_attributes: JSON of named float tensors), so it stands alone."""

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from genforge import registry
from genforge.deploy.infer import family_of_source
from genforge.deploy.pretrained import FORMAT, build_export_module, make_dir, read_source
from genforge.errors import DiskError, UserError

TOLERANCE = 1e-4


def export_onnx(name_or_path: str, out_path, *, opset: int = 17) -> dict:
    """Export a model (shipped name, folder, run directory or checkpoint) to ONNX, check it
    against PyTorch with ONNX Runtime and return the measured max abs differences. What the file
    takes and carries is the family's wrapper's onnx_signature()."""
    import onnx

    out_path = Path(out_path)
    if out_path.suffix.lower() != ".onnx" or out_path.is_dir():
        raise UserError(f"-o {out_path}: give a file name ending in .onnx")
    source = read_source(name_or_path)
    module = build_export_module(source)
    family = family_of_source(source)
    signature = registry.wrapper_row(family).wrapper.onnx_signature(module, torch.Generator().manual_seed(0))
    if signature is None:
        raise UserError(f"model {source.name!r}: {family} models cannot be exported to ONNX")
    meta = {"genforge_format": FORMAT, "task": family, **signature.meta, "config": json.dumps(source.config),
            "integer_inputs": json.dumps(list(signature.integer_inputs))}
    make_dir(out_path.parent, "output folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{out_path.name}-", suffix=".onnx", dir=out_path.parent)
    except OSError as err:
        raise _write_error(err, out_path) from None
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes on ISRNet's shape check, constant folding
            torch.onnx.export(module, signature.inputs, tmp, input_names=signature.input_names,
                              output_names=[signature.output_name], dynamic_axes=signature.dynamic_axes,
                              opset_version=opset, dynamo=False)
        model = onnx.load(tmp)
        for key, value in meta.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, str(value)
        onnx.checker.check_model(model)
        onnx.save(model, tmp)
        runner = OnnxRunner(tmp)
        diffs = {}
        for label, args in signature.checks.items():
            with torch.no_grad():
                expected = module(*args)
            if signature.output_shape and tuple(expected.shape) != tuple(signature.output_shape(*args)):
                raise UserError(f"model {source.name!r}: output of shape {tuple(expected.shape)} for the "
                                f"{label} input, expected {tuple(signature.output_shape(*args))}")
            diffs[label] = float((runner(*args) - expected).abs().max())
        bad = {k: v for k, v in diffs.items() if not v <= TOLERANCE}
        if bad:
            raise UserError(f"ONNX export of {source.name!r} does not match PyTorch: max abs difference "
                            + ", ".join(f"{k} {v:.3g}" for k, v in bad.items()) + f" (tolerance {TOLERANCE})")
        os.chmod(tmp, 0o644)
        os.replace(tmp, out_path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _write_error(err, out_path) from None
        raise
    return {"path": str(out_path), "max_abs_diff": diffs, "opset": opset}


def _write_error(err: OSError, out_path: Path) -> BaseException:
    if not DiskError.matches(err):
        return err
    return DiskError.from_os(err, f"cannot write ONNX model {out_path}", name_file=False)


CUDA_PROVIDER = "CUDAExecutionProvider"


def execution_providers(provider: str) -> list[str]:
    """ONNX Runtime's provider list for `provider` (cpu or cuda). CUDA keeps the CPU provider
    behind it for the few operators the CUDA one lacks."""
    import onnxruntime as ort
    if provider == "cpu":
        return ["CPUExecutionProvider"]
    if provider != "cuda":
        raise UserError(f"--provider {provider!r}: choose cpu or cuda")
    if CUDA_PROVIDER not in ort.get_available_providers():
        raise UserError("ONNX Runtime's CUDA provider is not installed: pip install onnxruntime-gpu")
    return [CUDA_PROVIDER, "CPUExecutionProvider"]


class OnnxRunner:
    """An .onnx file made by export_onnx, callable like the torch module it came from
    (tensors in, tensor out, on the CPU: ONNX Runtime copies to and from the GPU with the cuda
    provider), with the module's attributes read from the metadata."""

    def __init__(self, path, provider: str = "cpu"):
        import onnxruntime as ort
        path = Path(path)
        providers = execution_providers(provider)
        try:
            options = ort.SessionOptions()
            threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
            options.intra_op_num_threads = threads
            options.log_severity_level = 3
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as err:  # noqa: BLE001  (protobuf/ORT errors all mean: not a usable ONNX file)
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise UserError(f"cannot read ONNX model {path}: {first}") from None
        if provider == "cuda" and self.session.get_providers()[0] != CUDA_PROVIDER:
            # installed but unusable (no CUDA or cuDNN libraries, no GPU): ORT would run on the CPU silently
            raise UserError("ONNX Runtime's CUDA provider could not start (CUDA/cuDNN libraries or a GPU missing); "
                            "use --provider cpu")
        self.provider = provider
        meta = self.session.get_modelmeta().custom_metadata_map
        if "genforge_format" not in meta or "config" not in meta:
            raise UserError(f"{path} is an ONNX model but not one exported by genforge (no genforge metadata)")
        self.meta = meta
        self.name = path.stem
        self.task = meta["task"]
        self.config = json.loads(meta["config"])
        # the module attributes the wrappers read, as onnx_signature().meta wrote them
        for key, value in meta.items():
            if key not in ("genforge_format", "task", "config") and value.lstrip("-").isdigit():
                setattr(self, key, int(value))
        for key, value in json.loads(meta.get("tensor_attributes", "{}")).items():  # e.g. a VAE's latent mixture
            setattr(self, key, torch.tensor(value, dtype=torch.float32))
        if getattr(self, "receptive_radius", None) == 0:
            self.receptive_radius = None  # unknown: the default tile overlap
        self.integer_inputs = set(json.loads(meta.get("integer_inputs", '["labels"]')))
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        feeds = {}
        for name, arg in zip(self.input_names, args):
            arr = arg.detach().cpu().contiguous().numpy()
            feeds[name] = arr.astype(np.int64 if name in self.integer_inputs else np.float32, copy=False)
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
