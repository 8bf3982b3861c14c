"""HTTP service and web page: every registered family's routes (InferenceWrapper.add_routes) over
JSON and multipart.

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
from fastapi import FastAPI, HTTPException, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from genforge import registry
from genforge.deploy.infer import load
from genforge.errors import BadImageError, ImageTooLargeError, UserError

log = logging.getLogger("genforge.serve")
STATIC_DIR = Path(__file__).resolve().parent / "static"
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
    """Upscale in tiles of this many input pixels (bounded memory for large images on any device;
    translation tiles as `auto` does: whole images on the CPU, a tile from free memory on CUDA)."""
    retry_after: int = 2
    """Seconds suggested to a client turned away with 503."""


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
        upload = limits.max_upload_bytes + _FORM_OVERHEAD
        # each family's upload routes, by how many files a request may carry
        self.limits = {route: files * upload for row in registry.wrappers().values()
                       for route, files in row.wrapper.upload_routes.items()}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        limit = self.limits.get(scope["path"], _JSON_LIMIT)
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


@dataclass
class Service:
    """What a family's routes (InferenceWrapper.add_routes) use: the loaded models, the limits,
    the bounded pool and the upload reader."""

    models: dict
    limits: Limits
    pool: "Pool"

    async def run(self, fn, *args):
        """fn(*args) in the inference pool, with the service's limits turned into 503/504/4xx."""
        try:
            future = self.pool.submit(fn, *args)
        except Busy:
            raise HTTPException(503, "server busy: too many requests waiting, retry later",
                                headers={"Retry-After": str(self.limits.retry_after)}) from None
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.limits.timeout)
        except TimeoutError:
            future.cancel()  # drops it if it never started; a running call finishes in its thread
            raise HTTPException(504, f"request took longer than {self.limits.timeout:g} s") from None
        except ImageTooLargeError as err:
            raise HTTPException(413, str(err)) from None
        except (BadImageError, UserError) as err:
            raise HTTPException(400, str(err)) from None

    def model_for(self, name: str, wrapper_class: type):
        wrapper = self.models.get(name)
        if wrapper is None:
            raise HTTPException(404, f"no model {name!r}; loaded: {', '.join(self.models)}")
        if not isinstance(wrapper, wrapper_class):
            raise HTTPException(400, f"model {name!r} is a {wrapper.family} model, "
                                     f"not a {wrapper_class.family} model")
        return wrapper

    async def read_upload(self, upload: UploadFile) -> bytes:
        data = await upload.read(self.limits.max_upload_bytes + 1)
        await upload.close()
        if len(data) > self.limits.max_upload_bytes:
            raise HTTPException(413, f"upload larger than {self.limits.max_upload_bytes} bytes")
        return data


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

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return HTMLResponse((STATIC_DIR / "index.html").read_text(encoding="utf-8"),
                            headers={"X-Content-Type-Options": "nosniff"})

    @app.get("/healthz", summary="liveness and loaded models")
    def healthz():
        return {"status": "ok", "models": list(models), "pending": pool.pending}

    @app.get("/v1/models", summary="loaded models with their task and parameters")
    def list_served():
        return {"models": [{**w.describe(), "name": name} for name, w in models.items()]}

    service = Service(models, limits, pool)
    for row in registry.wrappers().values():
        row.wrapper.add_routes(app, service)
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
