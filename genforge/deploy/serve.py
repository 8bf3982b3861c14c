"""HTTP service and web page: generation, super-resolution and translation over JSON and multipart.

Models load once at start-up and are addressed by name only, so no request can make the server
read or write a path. Every model call runs in a small thread pool (``concurrency`` workers) under
``torch.inference_mode``; at most ``queue`` further requests wait for a worker and the rest are
turned away at once with 503 + Retry-After, which keeps latency bounded instead of letting a
backlog grow. A request that outlives ``timeout`` gets 504; its work still holds its slot until
it finishes, so timed-out requests cannot pile up behind the limit. Every error is a JSON
``{"error": "..."}`` with a 4xx/5xx status, and the server keeps serving.
"""

import asyncio
import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from genforge.data.grid import to_grid, to_uint8
from genforge.data.io import decode_image, encode_image, read_label_map
from genforge.deploy.infer import Generation, Translator, Upscaler, load
from genforge.errors import BadImageError, ImageTooLargeError, UserError

log = logging.getLogger("genforge.serve")
STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_SAMPLES = 256
_FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the small text fields around the file
_JSON_LIMIT = 64 * 1024


@dataclass
class Limits:
    max_upload_bytes: int = 20 * 1024 * 1024
    """Largest accepted upload (413 above)."""
    max_pixels: int = 4_000_000
    """Largest input image in pixels, read from its header before decoding (413 above)."""
    timeout: float = 60.0
    """Seconds a request may take, waiting included (504 after)."""
    concurrency: int = 1
    """Model calls running at once (threads in the inference pool)."""
    queue: int = 8
    """Requests that may wait for a worker; beyond that 503 with Retry-After."""
    tile: int = 256
    """Upscale in tiles of this many input pixels (bounded memory for large images)."""
    retry_after: int = 2
    """Seconds suggested to a client turned away with 503."""


class GenerateRequest(BaseModel):
    model: str = Field(description="name of a loaded generation model (see /v1/models)")
    n: int = Field(16, ge=1, le=MAX_SAMPLES, description="number of samples in the grid")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="random seed; the same seed gives the same grid")
    label: int | None = Field(None, description="class label, for class-conditional models only")
    nrow: int = Field(8, ge=1, le=MAX_SAMPLES, description="images per grid row")

    model_config = {"extra": "forbid"}


class Busy(Exception):
    """Every worker is busy and the queue is full."""


class Pool:
    """A thread pool that admits at most concurrency + queue unfinished jobs."""

    def __init__(self, concurrency: int, queue: int):
        self.capacity = concurrency + queue
        self.executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="genforge-infer")
        self._lock = threading.Lock()
        self.pending = 0  # admitted and not finished (running or waiting)

    def submit(self, fn, *args) -> Future:
        with self._lock:
            if self.pending >= self.capacity:
                raise Busy
            self.pending += 1
        try:
            future = self.executor.submit(_inference, fn, *args)
        except BaseException:
            self._release(None)
            raise
        future.add_done_callback(self._release)  # on completion, not when the client gives up
        return future

    def _release(self, _future) -> None:
        with self._lock:
            self.pending -= 1

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def _inference(fn, *args):
    with torch.inference_mode():  # thread-local: must be entered in the worker thread
        return fn(*args)


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class _BodyLimit:
    """Refuse oversized request bodies before they are read (Content-Length) or while they stream."""

    def __init__(self, app, limits: Limits):
        self.app = app
        self.upload_limit = limits.max_upload_bytes + _FORM_OVERHEAD

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        limit = {"/v1/upscale": self.upload_limit, "/v1/translate": 2 * self.upload_limit}.get(scope["path"],
                                                                                            _JSON_LIMIT)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return await _too_large(limit)(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:  # raised inside the route, so the JSON error handler answers
                raise HTTPException(413, f"request body larger than {limit} bytes")
            return message

        await self.app(scope, limited_receive, send)


def _too_large(limit: int) -> JSONResponse:
    return _error(413, f"request body larger than {limit} bytes")


def _describe(name: str, wrapper) -> dict:
    cfg = wrapper.source.config
    info = {"name": name, "network": cfg["model"]["name"]}
    if isinstance(wrapper, Generation):
        info.update(task="generation", latent_dim=int(wrapper.latent_dim),
                    num_classes=int(wrapper.num_classes or 0), image_size=int(cfg["model"].get("image_size", 0)),
                    channels=int(cfg["model"].get("channels", 0)))
    elif isinstance(wrapper, Translator):
        info.update(task="translation", kind=wrapper.kind, label_nc=wrapper.label_nc, style=wrapper.use_style,
                    directions=["a2b", "b2a"] if wrapper.kind == "cyclegan" else ["a2b"],
                    input="label map (class ids)" if wrapper.kind == "spade" else "image")
    else:
        info.update(task="super-resolution", scale=wrapper.scale, channels=wrapper.channels)
    return info


def load_models(names: list[str], device: str = "cpu") -> dict:
    """Name -> inference wrapper; a path is served under its folder name."""
    models = {}
    for name_or_path in names:
        wrapper = load(name_or_path, device)
        name = wrapper.source.name
        if name in models:
            raise UserError(f"two models are both named {name!r}; serve them from folders with distinct names")
        models[name] = wrapper
    return models


def create_app(models: dict | list[str], limits: Limits | None = None, *, device: str = "cpu") -> FastAPI:
    """The FastAPI application. `models` are names/paths (loaded now) or already-loaded wrappers."""
    limits = limits or Limits()
    if limits.concurrency < 1 or limits.queue < 0 or limits.timeout <= 0 or limits.max_pixels < 1 \
            or limits.max_upload_bytes < 1:
        raise UserError("serve limits: concurrency >= 1, queue >= 0, timeout > 0, max sizes >= 1")
    if not isinstance(models, dict):
        models = load_models(list(models), device)
    if not models:
        raise UserError("no models to serve: give --models NAME[,NAME...]")
    pool = Pool(limits.concurrency, limits.queue)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        pool.shutdown()

    app = FastAPI(title="genforge", version="1", lifespan=lifespan,
                  description="Generate images, upscale and translate them with genforge models. "
                              "Errors are JSON objects {\"error\": \"...\"}.")
    app.state.models, app.state.limits, app.state.pool = models, limits, pool
    app.add_middleware(_BodyLimit, limits=limits)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, exc: RequestValidationError):
        parts = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query"))
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return _error(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(Exception)
    async def internal_error(_request, exc: Exception):
        log.exception("unexpected error", exc_info=exc)
        return _error(500, "internal error")

    async def run(fn, *args):
        try:
            future = pool.submit(fn, *args)
        except Busy:
            raise HTTPException(503, "server busy: too many requests waiting, retry later",
                                headers={"Retry-After": str(limits.retry_after)}) from None
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), limits.timeout)
        except TimeoutError:
            future.cancel()  # drops it if it never started; a running call finishes in its thread
            raise HTTPException(504, f"request took longer than {limits.timeout:g} s") from None
        except ImageTooLargeError as err:
            raise HTTPException(413, str(err)) from None
        except (BadImageError, UserError) as err:
            raise HTTPException(400, str(err)) from None

    def model_for(name: str, kind: type, task: str):
        wrapper = models.get(name)
        if wrapper is None:
            raise HTTPException(404, f"no model {name!r}; loaded: {', '.join(models)}")
        if not isinstance(wrapper, kind):
            raise HTTPException(400, f"model {name!r} is a {_describe(name, wrapper)['task']} model, "
                                     f"not a {task} model")
        return wrapper

    async def read_upload(upload: UploadFile) -> bytes:
        data = await upload.read(limits.max_upload_bytes + 1)
        await upload.close()
        if len(data) > limits.max_upload_bytes:
            raise HTTPException(413, f"upload larger than {limits.max_upload_bytes} bytes")
        return data

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return HTMLResponse((STATIC_DIR / "index.html").read_text(encoding="utf-8"),
                            headers={"X-Content-Type-Options": "nosniff"})

    @app.get("/healthz", summary="liveness and loaded models")
    def healthz():
        return {"status": "ok", "models": list(models), "pending": pool.pending}

    @app.get("/v1/models", summary="loaded models with their task and parameters")
    def list_served():
        return {"models": [_describe(name, w) for name, w in models.items()]}

    @app.post("/v1/generate", summary="a PNG grid of samples from a generation model",
              responses={200: {"content": {"image/png": {}}, "description": "PNG grid"}},
              response_class=Response)
    async def generate(req: GenerateRequest):
        gen = model_for(req.model, Generation, "generation")
        if req.label is not None:
            if not gen.num_classes:
                raise HTTPException(422, f"model {req.model!r} is not class-conditional: label does not apply")
            if not 0 <= req.label < gen.num_classes:
                raise HTTPException(422, f"label {req.label} is out of range: model {req.model!r} has classes "
                                         f"0..{gen.num_classes - 1}")

        def work():
            images = gen.generate(req.n, label=req.label, seed=req.seed)
            return encode_image(to_uint8(to_grid(images, nrow=req.nrow)), ".png")

        return Response(await run(work), media_type="image/png",
                        headers={"Content-Disposition": 'inline; filename="samples.png"'})

    @app.post("/v1/upscale", summary="super-resolve one image (PNG out; 16-bit in gives 16-bit out)",
              responses={200: {"content": {"image/png": {}}, "description": "upscaled PNG"}},
              response_class=Response)
    async def upscale(image: UploadFile = File(description="the image (PNG, JPEG, WebP, TIFF, ...)"),
                      model: str = Form(description="name of a loaded super-resolution model")):
        up = model_for(model, Upscaler, "super-resolution")
        data = await read_upload(image)

        def work():
            array = decode_image(data, max_pixels=limits.max_pixels, name="image")
            return encode_image(up.upscale_array(array, tile=limits.tile), ".png")

        return Response(await run(work), media_type="image/png",
                        headers={"Content-Disposition": f'inline; filename="upscaled_x{up.scale}.png"'})

    @app.post("/v1/translate", summary="image-to-image translation: Pix2Pix, CycleGAN, SPADE (PNG out)",
              responses={200: {"content": {"image/png": {}}, "description": "translated PNG"}},
              response_class=Response)
    async def translate(image: UploadFile = File(description="the input image; SPADE: a label map of class ids "
                                                             "(grey, palette or 16-bit PNG)"),
                        model: str = Form(description="name of a loaded translation model"),
                        style: UploadFile | None = File(None, description="SPADE with a style encoder: style photo"),
                        direction: str = Form("a2b", description="CycleGAN: a2b or b2a"),
                        seed: int | None = Form(None, description="SPADE with a style encoder: a random style")):
        tr = model_for(model, Translator, "translation")
        data = await read_upload(image)
        style_data = await read_upload(style) if style is not None and style.filename else None

        def work():
            if tr.kind == "spade":
                array = read_label_map(data, max_pixels=limits.max_pixels, name="image")
            else:
                array = decode_image(data, max_pixels=limits.max_pixels, name="image")
            style_array = decode_image(style_data, max_pixels=limits.max_pixels, name="style") \
                if style_data is not None else None
            return encode_image(tr.translate_array(array, direction=direction, style=style_array, seed=seed), ".png")

        return Response(await run(work), media_type="image/png",
                        headers={"Content-Disposition": 'inline; filename="translated.png"'})

    return app


def serve(models: list[str], *, host: str = "127.0.0.1", port: int = 8000, limits: Limits | None = None,
          device: str = "cpu", threads: int = 0, log_level: str = "info") -> None:
    """Load the models, then serve until interrupted."""
    import uvicorn
    limits = limits or Limits()
    # concurrency workers share the cores; each with all cores would oversubscribe them
    torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // limits.concurrency))
    app = create_app(models, limits, device=device)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: the service has no authentication", host)
    print(f"serving {', '.join(app.state.models)} on http://{host}:{port}/ (API docs at /docs)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_keep_alive=5,
                limit_concurrency=max(64, 4 * (limits.concurrency + limits.queue)))


__all__ = ["Limits", "create_app", "load_models", "serve"]
