"""The HTTP API (FastAPI): ``POST /v1/translate``, ``GET /v1/models``, ``/health``, ``/ready``,
``/metrics`` (Prometheus text: requests by status, latency, batch sizes, queue depth, lines
dropped for clients that went away), and the
page at ``/`` (``static/``: HTML, CSS and JavaScript served by the app itself, so it works
offline).

Every error a client can cause is a JSON body ``{"error": ...}`` with a 4xx status: malformed
JSON or wrong types 422, an unknown model 404, too many lines or characters 413, a full queue
503 with ``Retry-After``. Lines longer than the model's ``decode.max_input_len`` tokens are
translated from their beginning, with a ``warnings`` entry, as ``rnnseq translate`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from ..errors import UsageError
from ..inference.sampling import Sampling
from ..inference.translator import Translator
from .batcher import Batcher, QueueFull, estimate_tokens

log = logging.getLogger("rnnseq.serve")
STATIC = Path(__file__).with_name("static")


@dataclass
class Limits:
    max_lines: int = 256
    max_chars: int = 100_000  # per request, all lines together
    max_wait_ms: float = 5.0
    max_batch_tokens: int = 4096
    max_queue: int = 4096  # lines waiting per model


class TranslateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="model name (may be left out with one model)")
    text: list[str] = Field(..., min_length=1, description="lines to translate")
    beam_size: int | None = Field(None, ge=1, le=64)
    n_best: int = Field(1, ge=1, le=64)
    length_penalty: float | None = Field(None, ge=0.0, le=10.0, description="GNMT alpha")
    min_length: int | None = Field(None, ge=0, le=1000)
    block_ngram_repeat: int | None = Field(None, ge=0, le=100)
    coverage_penalty: float | None = Field(None, ge=0.0, le=100.0, description="GNMT beta")
    prefix: list[str] | None = Field(None, description="one target prefix per line of text "
                                     "(may be empty): each output starts with it")
    task: str | None = Field(None, description="a multi-task model's task (default: its "
                             "main task)")
    sample: bool = Field(False, description="draw n_best samples instead of searching")
    top_k: int | None = Field(None, ge=0, le=100_000, description="sampling: 0 = all tokens")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="sampling: nucleus mass")
    temperature: float | None = Field(None, ge=0.0, le=100.0, description="sampling")
    seed: int = Field(0, ge=0, le=2 ** 63 - 1, description="sampling: line i of the request "
                      "draws from the stream (seed, i)")
    return_scores: bool = False
    return_attention: bool = False


class Hypothesis(BaseModel):
    text: str
    score: float | None = None
    attention: list[list[float]] | None = None
    target_tokens: list[str] | None = None


class Translation(BaseModel):
    text: str
    score: float | None = None
    n_best: list[Hypothesis] | None = None
    attention: list[list[float]] | None = None
    source_tokens: list[str] | None = None
    target_tokens: list[str] | None = None


class TranslateResponse(BaseModel):
    model: str
    translations: list[Translation]
    warnings: list[str] = []


class ServeError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def create_app(translators: dict[str, Translator], limits: Limits | None = None) -> FastAPI:
    """An app serving ``translators`` by name."""
    limits = limits or Limits()
    batchers: dict[str, Batcher] = {}
    metrics = _Metrics(batchers)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        for name, translator in translators.items():
            batchers[name] = Batcher(_decoder(translator), limits.max_wait_ms,
                                     limits.max_batch_tokens, limits.max_queue,
                                     cost=lambda line: estimate_tokens(line.text))
            batchers[name].on_batch = metrics.batch_lines.labels(name).observe
            batchers[name].on_drop = metrics.dropped_lines.labels(name).inc
            batchers[name].start()
        yield
        for batcher in batchers.values():
            await batcher.stop()

    app = FastAPI(title="rnnseq", lifespan=lifespan,
                  description="Recurrent sequence-to-sequence models over HTTP.")

    app.add_middleware(_AccessLog, metrics=metrics)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.exception_handler(ServeError)
    async def serve_error(request: Request, err: ServeError):
        return JSONResponse({"error": err.message}, err.status, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError):
        problems = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
                    for e in err.errors()]
        return JSONResponse({"error": "invalid request: " + "; ".join(problems)}, 422)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        if len(batchers) == len(translators):
            return JSONResponse({"status": "ready", "models": list(translators)})
        return JSONResponse({"status": "loading"}, 503)

    @app.get("/v1/models")
    async def models() -> dict:
        return {"models": [_describe(name, t) for name, t in translators.items()]}

    @app.post("/v1/translate", response_model=TranslateResponse,
              response_model_exclude_none=True)
    async def translate(req: TranslateRequest, request: Request) -> TranslateResponse:
        name = _pick_model(req.model, translators)
        if len(req.text) > limits.max_lines:
            raise ServeError(413, f"{len(req.text)} lines; this server takes at most "
                             f"{limits.max_lines} per request (--max-lines)")
        chars = sum(map(len, req.text)) + sum(map(len, req.prefix or []))
        if chars > limits.max_chars:
            raise ServeError(413, f"{chars} characters; this server takes at most "
                             f"{limits.max_chars} per request (--max-chars)")
        translator = translators[name]
        options = _options(req, translator)
        lines = [_Line(text, None if req.prefix is None else req.prefix[i], i)
                 for i, text in enumerate(req.text)]
        try:
            results, batch = await _unless_disconnected(
                request, batchers[name].submit(lines, options))
        except QueueFull as err:
            raise ServeError(503, str(err), {"Retry-After": str(err.retry_after)}) from None
        except UsageError as err:  # an option this model cannot take
            raise ServeError(422, str(err)) from None
        request.state.access = f" model={name} lines={len(req.text)} batch={batch}"
        out = [_translation(hyps, req) for hyps in results]
        return TranslateResponse(model=name, translations=out,
                                 warnings=_truncation_warnings(translator, results))

    return app


async def _unless_disconnected(request: Request, work):
    """Await ``work``; if the client goes away first, cancel it (lines not yet in a batch are
    dropped from the queue) and answer nobody."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=0.05)
        if done:
            return task.result()
        if await request.is_disconnected():
            task.cancel()
            log.info("client went away; its waiting lines were dropped")
            raise ServeError(499, "client closed the request")


class _AccessLog:
    """One log line and the request metrics per request. Plain ASGI, not ``@app.middleware``:
    that wrapper hides a client's disconnection from the endpoint."""

    def __init__(self, app, metrics: _Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def send_noting_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            seconds = time.perf_counter() - start
            path = scope["path"]
            if path != "/metrics":
                self.metrics.requests.labels(path, str(status)).inc()
                self.metrics.latency.labels(path).observe(seconds)
            extra = scope.get("state", {}).get("access", "")
            log.info("%s %s %d %.1f ms%s", scope["method"], path, status, seconds * 1000, extra)


class _Line(NamedTuple):
    """One line of a request: its text, its target prefix (or None) and its number in the
    request (which seeds its samples)."""

    text: str
    prefix: str | None
    number: int


class _Options(NamedTuple):
    """A request's decoding options: requests batch together only when these are equal."""

    beam: int
    n_best: int
    alpha: float | None
    min_length: int | None
    block: int | None
    beta: float | None
    attention: bool
    sampling: Sampling | None
    task: str | None


def _options(req: TranslateRequest, translator: Translator) -> _Options:
    """The request's decoding options, or a 422 naming the field at fault."""
    if req.prefix is not None and len(req.prefix) != len(req.text):
        raise ServeError(422, f"prefix has {len(req.prefix)} entries for {len(req.text)} lines "
                         "of text; give one per line (an empty string for none)")
    if req.sample:
        if req.beam_size not in (None, 1):
            raise ServeError(422, f"sample draws one token at a time; drop beam_size "
                             f"({req.beam_size})")
        sampling = Sampling.given(top_k=req.top_k, top_p=req.top_p,
                                  temperature=req.temperature, seed=req.seed)
        beam = 1
    else:
        given = [name for name in ("top_k", "top_p", "temperature")
                 if getattr(req, name) is not None]
        if given:
            raise ServeError(422, f"{', '.join(given)} set how to sample; add \"sample\": true")
        sampling = None
        beam = req.beam_size or translator.config.decode.beam_size
        if req.n_best > beam:
            raise ServeError(422, f"n_best ({req.n_best}) cannot exceed beam_size ({beam})")
    try:
        translator.task_tag(req.task)  # refused here, before the request waits in a queue
    except UsageError as err:
        raise ServeError(422, str(err)) from None
    return _Options(beam, req.n_best, req.length_penalty, req.min_length,
                    req.block_ngram_repeat, req.coverage_penalty, req.return_attention, sampling,
                    req.task)


def _decoder(translator: Translator):
    def decode(lines: list[_Line], o: _Options):
        prefixes = [line.prefix or "" for line in lines]
        return translator.translate_nbest(
            [line.text for line in lines], beam_size=None if o.sampling else o.beam,
            n_best=o.n_best, length_penalty=o.alpha, min_length=o.min_length,
            block_ngram_repeat=o.block, coverage_penalty=o.beta, return_attention=o.attention,
            sampling=o.sampling, prefixes=prefixes if any(prefixes) else None,
            line_numbers=[line.number for line in lines], task=o.task)
    return decode


def _pick_model(name: str | None, translators: dict) -> str:
    if name is None:
        if len(translators) == 1:
            return next(iter(translators))
        raise ServeError(422, f"several models are served; name one of: "
                         f"{', '.join(translators)}")
    if name not in translators:
        raise ServeError(404, f"unknown model {name!r}; served: {', '.join(translators)}")
    return name


def _translation(hyps, req: TranslateRequest) -> Translation:
    best = hyps[0]
    return Translation(
        text=best.text,
        score=best.score if req.return_scores else None,
        n_best=([Hypothesis(text=h.text, score=h.score if req.return_scores else None,
                            attention=h.attention if req.return_attention else None,
                            target_tokens=h.tokens if req.return_attention else None)
                 for h in hyps] if req.n_best > 1 else None),
        attention=best.attention if req.return_attention else None,
        source_tokens=best.source_tokens if req.return_attention else None,
        target_tokens=best.tokens if req.return_attention else None,
    )


def _truncation_warnings(translator: Translator, results) -> list[str]:
    """A warning for each line the translator truncated (``Translation.truncated_from``)."""
    limit = translator.config.decode.max_input_len
    return [f"line {i} has {hyps[0].truncated_from} tokens; translated its first {limit} "
            "(decode.max_input_len)" for i, hyps in enumerate(results, 1)
            if hyps[0].truncated_from is not None]


def _describe(name: str, translator: Translator) -> dict:
    cfg = translator.config
    return {
        "name": name,
        "task": f"{cfg.data.src_tokenizer} -> {cfg.data.tgt_tokenizer}",
        "model": {"cell": cfg.model.cell, "attention": cfg.model.attention,
                  "copy_attention": cfg.model.copy_attention, "coverage": cfg.model.coverage,
                  "parameters": translator.num_parameters},
        "vocabulary": {"source": len(translator.bundle.src_vocab),
                       "target": len(translator.bundle.tgt_vocab)},
        "decoding": {"beam_size": cfg.decode.beam_size,
                     "length_penalty": cfg.decode.length_penalty,
                     "min_length": cfg.decode.min_length,
                     "block_ngram_repeat": cfg.decode.block_ngram_repeat,
                     "coverage_penalty": cfg.decode.coverage_penalty,
                     "max_input_len": cfg.decode.max_input_len},
        "tasks": translator.tasks or None,
        "precision": translator.precision, "quantize": translator.quantize,
    }


class _Metrics:
    """Prometheus metrics of one app, in a registry of its own."""

    def __init__(self, batchers: dict[str, Batcher]) -> None:
        from prometheus_client import (
            CONTENT_TYPE_LATEST,
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
        )

        self.registry = CollectorRegistry()
        self.content_type = CONTENT_TYPE_LATEST
        self.requests = Counter("rnnseq_requests", "HTTP requests by path and status",
                                ["path", "status"], registry=self.registry)
        self.latency = Histogram("rnnseq_request_seconds", "request latency", ["path"],
                                 registry=self.registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.batch_lines = Histogram("rnnseq_batch_lines", "lines per decoded batch", ["model"],
                                     registry=self.registry,
                                     buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
        self.dropped_lines = Counter("rnnseq_dropped_lines", "lines not decoded because their "
                                     "client went away", ["model"], registry=self.registry)
        queue = Gauge("rnnseq_queue_lines", "lines waiting to be decoded", ["model"],
                      registry=self.registry)
        self._queue, self._batchers = queue, batchers

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        for name, batcher in self._batchers.items():
            self._queue.labels(name).set(batcher.queued_lines)
        return generate_latest(self.registry)
