"""HTTP service and web page: every registered family's routes (InferenceWrapper.add_routes) over
JSON and multipart.

Models load once at start-up and are addressed by name only, so no request can make the server
read or write a path. Every model call runs in a small thread pool (``concurrency`` workers, each
with cores / concurrency torch threads) under ``torch.inference_mode``; at most ``queue`` further
requests wait for a worker and the rest are turned away at once with 503 + Retry-After, which
keeps latency bounded instead of letting a backlog grow. The defaults (2 workers of 1 thread, a
queue of 32) answer 16 clients of small images at once without a 503 on 2 cores (bench/deploy.py).

Budgets per request: the upload's size and the image's declared pixels (413, checked before
decoding); ``read_timeout`` seconds to send the headers and the whole body (a stalled or trickling
client gets 408, or is disconnected when its headers never end, so slow clients cannot hold every
connection); ``timeout`` seconds for the answer, waiting included (504). A timed-out request's
model call is told to stop: tiled work (upscaling, translation) ends at the next tile and frees its
worker; a call that cannot be cut (generation, one whole small image) finishes first, and holds its
slot until then, so timed-out requests cannot pile up behind the limit. Every error is a JSON
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
from genforge.deploy.tiling import Stopped, stoppable
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
    """Seconds a request may take, waiting included (504 after; its tiled work stops at the next tile)."""
    read_timeout: float = 20.0
    """Seconds a client has to send a request's headers and its whole body (408 or disconnect after)."""
    concurrency: int = 2
    """Model calls running at once (threads in the inference pool)."""
    queue: int = 32
    """Requests that may wait for a worker; beyond that 503 with Retry-After."""
    tile: int = 256
    """Upscale in tiles of at most this many input pixels (bounded memory for large images on any
    device, and a point every tile where a timed-out request stops); translation tiles as `auto`
    does: under the wrapper's --max-memory budget on the CPU, from free memory on CUDA."""
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

    def submit(self, fn, *args, stop: threading.Event | None = None) -> Future:
        """Run fn(*args) in a worker; setting `stop` asks tiled work to end at its next tile."""
        with self._lock:
            if self.pending >= self.capacity:
                raise Busy
            self.pending += 1
        try:
            future = self.executor.submit(_inference, fn, stop, *args)
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


def _inference(fn, stop, *args):
    with torch.inference_mode(), stoppable(stop):  # thread-local: must be entered in the worker thread
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


class _ReadTimeout:
    """408 for a request whose body is not all in within read_timeout seconds of its start (the
    route's multipart parsing is waiting on it): a trickling or stalled upload frees its connection
    and never reaches the inference pool."""

    def __init__(self, app, limits: Limits):
        self.app, self.seconds = app, limits.read_timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        done = False

        async def timed_receive():
            nonlocal done
            if done:  # the body is in: later receives wait for a disconnect, which may take any time
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.001))
            except TimeoutError:
                raise HTTPException(408, f"request body not received within {self.seconds:g} s",
                                    headers={"Connection": "close"}) from None
            done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, timed_receive, send)


def header_timeout_protocol(seconds: float):
    """uvicorn's h11 protocol, closing a connection whose request headers are not complete within
    `seconds` of it opening or of the previous response (uvicorn waits for headers forever, so a
    client sending them a byte at a time would hold a connection, and enough such clients every
    connection the server allows)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11(H11Protocol):
        _header_timer = None

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(seconds, self._headers_late)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
                self.transport.write(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                                     b"Content-Length: 0\r\n\r\n")
                self.transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None and not self.cycle.response_complete:
                self._disarm()  # headers complete: the body's deadline is _ReadTimeout's

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

    return HeaderTimeoutH11


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
        stop = threading.Event()
        try:
            future = self.pool.submit(fn, *args, stop=stop)
        except Busy:
            raise HTTPException(503, "server busy: too many requests waiting, retry later",
                                headers={"Retry-After": str(self.limits.retry_after)}) from None
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.limits.timeout)
        except TimeoutError:
            future.cancel()  # drops it if it never started
            stop.set()  # a running call ends at its next tile (tiling.checkpoint)
            raise HTTPException(504, f"request took longer than {self.limits.timeout:g} s") from None
        except Stopped:
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
    if limits.concurrency < 1 or limits.queue < 0 or limits.timeout <= 0 or limits.read_timeout <= 0 \
            or limits.max_pixels < 1 or limits.max_upload_bytes < 1:
        raise UserError("serve limits: concurrency >= 1, queue >= 0, timeout and read timeout > 0, max sizes >= 1")
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
    app.add_middleware(_ReadTimeout, limits=limits)  # outermost: its deadline covers the whole body

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
                limit_concurrency=max(64, 4 * (limits.concurrency + limits.queue)),
                http=header_timeout_protocol(limits.read_timeout))


__all__ = ["Limits", "create_app", "load_models", "serve"]
