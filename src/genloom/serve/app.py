"""The HTTP server: OpenAI-compatible completions and embeddings, genloom's translate, summarize and fill-mask,
health, Prometheus metrics, and the playground page, on FastAPI.

Generating endpoints hand their rows to the model's ``Scheduler`` (continuous batching) and stream its events as
server-sent events in OpenAI's format (``data: {json}`` chunks, then ``data: [DONE]``). Every error is an
OpenAI-style object (``{"error": {"message", "type", "param", "code"}}``) naming the field and its limit.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException

from genloom.api import LoadedModel, load
from genloom.decoding.config import GenerationConfig
from genloom.errors import UserError
from genloom.serve.metrics import Metrics
from genloom.serve.scheduler import Busy, Event, Job, Scheduler
from genloom.serve.schemas import CompletionRequest, Decoding, EmbeddingRequest, FillMaskRequest, TransduceRequest

STATIC = Path(__file__).parent / "static"


@dataclass
class ServeSettings:
    """How the server runs.

    Attributes:
        api_key: when set, ``/v1/*`` and ``/metrics`` need ``Authorization: Bearer <key>``.
        cors_origins: origins a browser may call the API from (none: CORS stays off).
        max_batch: the most rows one model decodes together (also the most outputs one request may ask for).
        max_waiting: the most requests waiting for room in a model's batch; past it, 429.
        max_body_bytes: the largest request body.
        max_tokens: the most new tokens one output may ask for (and, with the prompt, no more than a model's context).
        max_inputs: the most texts one embeddings request may hold.
    """

    api_key: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    max_batch: int = 64
    max_waiting: int = 256
    max_body_bytes: int = 1 << 20
    max_tokens: int = 2048
    max_inputs: int = 2048


class ApiError(Exception):
    """An answer other than 200, as an OpenAI error object."""

    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error",
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.kind, self.code = status, message, param, kind, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


# GenerationConfig's names for the request fields that have other names on the wire.
WIRE_NAMES = {"max_new_tokens": "max_tokens", "min_new_tokens": "min_tokens", "stop_strings": "stop",
              "num_return_sequences": "n"}


def _user_error(error: UserError) -> ApiError:
    """A genloom error about a request's value; its first word names the field when it is one."""
    message = str(error)
    first = message.split(" ", 1)[0].strip(":,")
    known = {f.name for f in fields(GenerationConfig)} | set(WIRE_NAMES.values())
    param = WIRE_NAMES.get(first, first) if first in known else None
    return ApiError(400, message, param=param)


@dataclass
class Served:
    """A model the server holds, under its name; generators have a scheduler."""

    name: str
    model: LoadedModel
    scheduler: Scheduler | None
    created: int

    @property
    def capabilities(self) -> list[str]:
        if self.model.conditional:
            return ["translate", "summarize", "completions"]
        if self.scheduler is not None:
            return ["completions"]
        return ["fill-mask", "embeddings"] if self.model.model.config.mlm_head else ["embeddings"]

    @property
    def context_length(self) -> int | None:
        limit = getattr(self.model.model, "max_context", None)
        return limit if limit is not None else getattr(getattr(self.model.model, "config", None), "context_length",
                                                       None)


def create_app(models: dict[str, LoadedModel], settings: ServeSettings | None = None) -> FastAPI:
    """The server for ``models`` (name → loaded model)."""
    settings = settings or ServeSettings()
    metrics = Metrics()
    served = {name: Served(name, model,
                           Scheduler(name, model, metrics, settings.max_batch, settings.max_waiting)
                           if hasattr(model.model, "step") else None,
                           int((Path(model.path) / "config.json").stat().st_mtime)
                           if (Path(model.path) / "config.json").exists() else int(time.time()))
              for name, model in models.items()}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        for entry in served.values():
            if entry.scheduler is not None:
                entry.scheduler.close()

    app = FastAPI(title="genloom", version="1", lifespan=lifespan,
                  description="Text generation with genloom models: OpenAI-compatible completions and embeddings, "
                              "translation, summarization, fill-mask.")
    app.state.served, app.state.metrics, app.state.settings = served, metrics, settings
    schema = app.openapi

    def openapi() -> dict[str, Any]:
        """The schema, with the served names as the values ``model`` may take."""
        document = schema()
        for component in document.get("components", {}).get("schemas", {}).values():
            if "model" in component.get("properties", {}):
                component["properties"]["model"]["enum"] = sorted(served)
        return document

    app.openapi = openapi
    _errors(app, metrics)
    app.add_middleware(ApiKey, key=settings.api_key)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    if settings.cors_origins:  # outermost, so that a browser's preflight is answered before the key is asked for
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def find(name: str, capability: str) -> Served:
        if name not in served:
            raise ApiError(400, f"model: unknown model {name!r}; this server has {', '.join(sorted(served))}.",
                           param="model", code="model_not_found")
        entry = served[name]
        if capability not in entry.capabilities:
            raise ApiError(400, f"model: {name!r} is a {entry.model.family} model, which does not do {capability} "
                                f"(it does {', '.join(entry.capabilities)}).", param="model")
        return entry

    @app.get("/", include_in_schema=False)
    async def playground() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness, with each model's requests in flight."""
        return {"status": "ok", "models": {name: {"active_requests": e.scheduler.active if e.scheduler else 0}
                                           for name, e in served.items()}}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        """The served models (OpenAI's list), with genloom's family, context length and capabilities."""
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": e.created, "owned_by": "genloom", "family": e.model.family,
             "context_length": e.context_length, "capabilities": e.capabilities} for name, e in served.items()]}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Any:
        """OpenAI's completions: continue each prompt ``n`` times; ``stream`` sends server-sent events."""
        started = time.perf_counter()
        entry = find(body.model, "completions")
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        cfg = _config(body, "sample", n=body.n)
        job = _job(entry, prompts, cfg, body, settings, copies=body.n)
        ident, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(event: Event) -> dict[str, Any]:
            choice = {"index": event.row, "text": event.text, "logprobs": None,
                      "finish_reason": event.reason if event.kind == "end" else None, **_flagged(event)}
            return {"id": ident, "object": "text_completion", "created": created, "model": body.model,
                    "choices": [choice]}

        if body.stream:
            return _sse(entry, job, chunk, metrics, "completions")
        texts, reasons, ends = await _collect(entry, job, request)
        prompt_tokens, completion_tokens = job.prompt_tokens, job.generated
        _answered(metrics, "completions", started)
        return {"id": ident, "object": "text_completion", "created": created, "model": body.model,
                "choices": [{"index": i, "text": t, "logprobs": None, "finish_reason": r, **_flagged(ends.get(i))}
                            for i, (t, r) in enumerate(zip(texts, reasons))],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}

    async def transduce(body: TransduceRequest, request: Request, what: str) -> Any:
        started = time.perf_counter()
        entry = find(body.model, what)
        sources = [body.input] if isinstance(body.input, str) else body.input
        cfg = _config(body, "greedy")
        job = _job(entry, sources, cfg, body, settings, attention=body.attention)
        obj = "translation" if what == "translate" else "summary"
        source_tokens = entry.model.source_tokens(job.request.engine["context"]) if job.request else job.source_tokens

        def details(event: Event) -> dict[str, Any]:
            row = {"index": event.row, "text": event.text}
            if event.kind == "end":
                row.update(finish_reason=event.reason, **_tokens_of(entry, job, event, source_tokens),
                           **_flagged(event))
            return {"object": f"{obj}.chunk", "model": body.model, "outputs": [row]}

        if body.stream:
            return _sse(entry, job, details, metrics, what)
        texts, reasons, ends = await _collect(entry, job, request)
        _answered(metrics, what, started)
        return {"object": obj, "model": body.model, "outputs": [
            {"index": i, "text": t, "finish_reason": r, **_tokens_of(entry, job, ends.get(i), source_tokens),
             **_flagged(ends.get(i))}
            for i, (t, r) in enumerate(zip(texts, reasons))]}

    @app.post("/v1/translate")
    async def translate(body: TransduceRequest, request: Request) -> Any:
        """Translate each input with a seq2seq model (greedy unless told); ``attention`` adds the attention."""
        return await transduce(body, request, "translate")

    @app.post("/v1/summarize")
    async def summarize(body: TransduceRequest, request: Request) -> Any:
        """Summarize each input with a seq2seq model (greedy unless told); ``attention`` adds the attention."""
        return await transduce(body, request, "summarize")

    @app.post("/v1/fill-mask")
    def fill_mask(body: FillMaskRequest) -> dict[str, Any]:
        """The ``top_k`` likeliest fillers of each [MASK], with their probabilities."""
        started = time.perf_counter()
        entry = find(body.model, "fill-mask")
        try:
            positions = entry.model.fill_mask(body.input, body.top_k)
        except UserError as error:
            raise _user_error(error) from None
        _answered(metrics, "fill-mask", started)
        return {"object": "fill_mask", "model": body.model, "masks": [
            {"index": i, "candidates": [{"token": t, "probability": p} for t, p in candidates]}
            for i, candidates in enumerate(positions)]}

    @app.post("/v1/embeddings")
    def embeddings(body: EmbeddingRequest) -> dict[str, Any]:
        """OpenAI's embeddings: each text's mean-pooled, unit-length vector from an encoder."""
        started = time.perf_counter()
        entry = find(body.model, "embeddings")
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or len(texts) > settings.max_inputs:
            raise ApiError(400, f"input: give 1 to {settings.max_inputs} texts, got {len(texts)}.", param="input")
        try:
            vectors = entry.model.embed(texts)
        except UserError as error:
            raise ApiError(400, f"input: {error}", param="input") from None
        tokens = sum(len(entry.model.tokenizer.encode(entry.model.prepare(t))) + 2 for t in texts)
        _answered(metrics, "embeddings", started)
        return {"object": "list", "model": body.model,
                "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors.tolist())],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    return app


def _answered(metrics: Metrics, endpoint: str, started: float) -> None:
    metrics.requests.labels(endpoint, "200").inc()
    metrics.latency.labels(endpoint).observe(time.perf_counter() - started)


def _flagged(end: Event | None) -> dict[str, Any]:
    """``{"flagged": [...]}`` for an output screened by ``safety``, else nothing."""
    return {"flagged": end.flagged} if end is not None and end.flagged is not None else {}


def _config(body: Decoding, default_method: str, n: int = 1) -> GenerationConfig:
    """The request's decoding settings; OpenAI's temperature 0 means greedy."""
    method = body.method or ("greedy" if body.temperature == 0 else default_method)
    if method == "sample" and body.temperature == 0:
        raise ApiError(400, "temperature: sampling needs a temperature > 0 (0 means greedy: omit method or use "
                            "greedy).", param="temperature")
    if body.min_tokens > body.max_tokens:
        raise ApiError(400, f"min_tokens: must be ≤ max_tokens ({body.max_tokens}), got {body.min_tokens}.",
                       param="min_tokens")
    if method == "beam" and n > body.num_beams:
        raise ApiError(400, f"n: beam search returns at most num_beams ({body.num_beams}) outputs, got {n}.",
                       param="n")
    options = dict(method=method, max_new_tokens=body.max_tokens, min_new_tokens=body.min_tokens,
                   temperature=body.temperature if body.temperature else 1.0, top_k=body.top_k, top_p=body.top_p,
                   repetition_penalty=body.repetition_penalty, no_repeat_ngram_size=body.no_repeat_ngram_size,
                   num_beams=body.num_beams, length_penalty=body.length_penalty, stop_strings=body.stop or [],
                   seed=body.seed, no_unk=body.no_unk, ban_words=body.ban_words, bias=body.bias, redact=body.redact,
                   safety=body.safety, num_return_sequences=n if method == "beam" else 1)
    try:
        return GenerationConfig(**options)
    except UserError as error:
        raise _user_error(error) from None


def _job(entry: Served, prompts: list[str], cfg: GenerationConfig, body: Decoding, settings: ServeSettings,
         copies: int = 1, attention: bool = False) -> Job:
    """Check a generating request against the model and the server's limits and make its ``Job``."""
    if not prompts:
        raise ApiError(400, "prompt: the list is empty; give at least one text.", param="prompt")
    if len(prompts) * copies > settings.max_batch:
        raise ApiError(400, f"n: {len(prompts)} prompts × n={copies} outputs is more than this server's "
                            f"{settings.max_batch} per request.", param="n")
    if cfg.max_new_tokens > settings.max_tokens:
        raise ApiError(400, f"max_tokens: at most {settings.max_tokens} on this server, got {cfg.max_new_tokens}.",
                       param="max_tokens")
    model = entry.model
    try:
        prepared = model.request(prompts, cfg, copies=1 if cfg.method == "beam" else copies)
    except UserError as error:  # a prompt too long, a banned phrase the tokenizer cannot write
        raise ApiError(400, str(error), param=_user_error(error).param or "prompt") from None
    limit = prepared.engine.get("max_context")
    longest = max(len(ids) for ids in prepared.ids)
    if limit is not None and longest + cfg.max_new_tokens > limit:
        raise ApiError(400, f"max_tokens: the prompt takes {longest} tokens and max_tokens asks for "
                            f"{cfg.max_new_tokens}; together they must fit the model's context of {limit} tokens.",
                       param="max_tokens")
    loop = asyncio.get_running_loop()
    prompt_tokens = sum(len(ids) for ids in prepared.ids[:: 1 if cfg.method == "beam" else copies])
    if cfg.method != "beam":
        return Job(prepared, cfg, loop, want_attention=attention, prompt_tokens=prompt_tokens)
    job = Job(None, cfg, loop, prompt_tokens=prompt_tokens)
    job.work = lambda: _beam_events(model, prompts, cfg, job, attention)
    return job


def _beam_events(model: LoadedModel, prompts: list[str], cfg: GenerationConfig, job: Job,
                 attention: bool) -> list[Event]:
    """Beam search, whole (it keeps its own batch): each prompt's n best outputs as events, rows prompt-major."""
    events = []
    for row, output in enumerate(output for nbest in model.outputs(prompts, **asdict(cfg)) for output in nbest):
        job.generated += len(output.target_tokens)
        job.target_tokens[row], job.source_tokens[row] = output.target_tokens, output.source_tokens
        reason = "length" if len(output.target_tokens) >= cfg.max_new_tokens else "stop"
        rows = output.attention.float().tolist() if attention and output.attention is not None else None
        events += [Event("text", row=row, text=output.text),
                   Event("end", row=row, reason=reason, attention=rows, flagged=output.flagged if cfg.safety else None)]
    return events


def _tokens_of(entry: Served, job: Job, end: Event | None, source_tokens: list[list[str]] | None) -> dict[str, Any]:
    """A seq2seq output's tokens on both sides, and its attention when asked."""
    if end is None:
        return {}
    if job.request is not None:
        stream = job.request.streams[end.row]
        target = entry.model.shown_tokens(stream.new_ids, stream.oov, job.cfg)
    else:
        target = job.target_tokens.get(end.row, [])
    details: dict[str, Any] = {"target_tokens": target}
    if source_tokens is not None:
        details["source_tokens"] = source_tokens[end.row]
    if end.attention is not None:
        details["attention"] = end.attention
    return details


def _submit(entry: Served, job: Job) -> None:
    try:
        entry.scheduler.submit(job)
    except Busy as busy:
        raise ApiError(429, f"{entry.name} is at capacity (its batch and queue are full); retry after "
                            f"{busy.retry_after} s.", kind="rate_limit_error", code="busy",
                       headers={"Retry-After": str(busy.retry_after)}) from None


async def _collect(entry: Served, job: Job, request: Request) -> tuple[list[str], list[str | None], dict]:
    """Wait for a whole answer: each row's text and finish reason, and its ``end`` event. A client that goes
    away cancels the request."""
    _submit(entry, job)
    texts: dict[int, list[str]] = {}
    reasons: dict[int, str | None] = {}
    ends: dict[int, Event] = {}
    try:
        while True:
            try:
                event = await asyncio.wait_for(job.events.get(), timeout=0.5)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    return [], [], {}
                continue
            if event.kind == "error":
                raise _failure(event.error)
            if event.kind == "done":
                break
            texts.setdefault(event.row, []).append(event.text)
            if event.kind == "end":
                reasons[event.row], ends[event.row] = event.reason, event
    finally:
        entry.scheduler.cancel(job)
    rows = range(max(list(texts) + list(reasons), default=-1) + 1)
    return ["".join(texts.get(r, [])) for r in rows], [reasons.get(r) for r in rows], ends


def _failure(error: BaseException | None) -> ApiError:
    if isinstance(error, UserError):
        return _user_error(error)
    return ApiError(500, f"decoding failed: {error}", kind="server_error")


def _sse(entry: Served, job: Job, chunk: Callable[[Event], dict[str, Any]], metrics: Metrics,
         endpoint: str) -> StreamingResponse:
    """Stream ``job``'s events as server-sent events; a client that disconnects cancels the request."""
    _submit(entry, job)
    started = time.perf_counter()

    async def events() -> AsyncIterator[str]:
        try:
            while True:
                event = await job.events.get()
                if event.kind == "error":
                    yield f"data: {json.dumps(_failure(event.error).body())}\n\n"
                    break
                if event.kind == "done":
                    yield "data: [DONE]\n\n"
                    break
                yield f"data: {json.dumps(chunk(event))}\n\n"
        finally:
            entry.scheduler.cancel(job)
            metrics.latency.labels(endpoint).observe(time.perf_counter() - started)

    metrics.requests.labels(endpoint, "200").inc()
    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _errors(app: FastAPI, metrics: Metrics) -> None:
    """Every error as an OpenAI error object, and counted."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        metrics.requests.labels(_endpoint(request), str(error.status)).inc()
        return error.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return await api_error(request, _validation_error(error))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        kind = "not_found_error" if error.status_code == 404 else "invalid_request_error"
        return await api_error(request, ApiError(error.status_code, str(error.detail), kind=kind))


def _validation_error(error: RequestValidationError) -> ApiError:
    """The first problem pydantic found, as one sentence that names the field."""
    problem = error.errors()[0]
    where = [str(part) for part in problem.get("loc", ()) if part != "body"]
    # A union's member names ("str", "list[str]") are not fields: keep the field and its list index.
    where = [part for part in where if not part.startswith(("str", "list[", "float", "int", "dict["))]
    param = where[0] if where else None
    if problem["type"] == "extra_forbidden":
        message = f"{param}: unsupported field; genloom does not implement it (see GET /docs for the fields)."
    elif problem["type"] == "json_invalid":
        message, param = "the body is not valid JSON.", None
    elif problem["type"] == "missing":
        message = f"{param}: this field is required."
    else:
        message = f"{'.'.join(where) or 'body'}: {problem['msg']}."
    return ApiError(400, message, param=param)


def _endpoint(request: Request) -> str:
    path = request.url.path
    return path.rsplit("/", 1)[-1] if path.startswith("/v1/") else "other"


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes (413), by their Content-Length or as they arrive."""

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        too_big = ApiError(413, f"the request body is larger than this server's limit of {self.limit} bytes.")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await too_big.response()(scope, receive, send)
            return
        received = 0

        async def counted() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await too_big.response()(scope, receive, send)


class _TooLarge(Exception):
    pass


class ApiKey:
    """With a key set, ``/v1/*`` and ``/metrics`` need ``Authorization: Bearer <key>`` (compared in constant time);
    the playground page, its files and ``/health`` stay open."""

    def __init__(self, app: Any, key: str | None):
        self.app, self.key = app, key.encode() if key else None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        path = scope.get("path", "")
        if self.key is None or scope["type"] != "http" or not (path.startswith("/v1/") or path == "/metrics"):
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = given.partition(b" ")
        if not (scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)):
            error = ApiError(401, "a valid API key is needed: send 'Authorization: Bearer <key>'.",
                             kind="authentication_error", code="invalid_api_key",
                             headers={"WWW-Authenticate": "Bearer"})
            await error.response()(scope, receive, send)
            return
        await self.app(scope, receive, send)


def load_named(checkpoints: list[str], device: str | None = None) -> dict[str, LoadedModel]:
    """Load ``[NAME=]PATH`` checkpoints under their names (a folder's name by default); names must differ."""
    models: dict[str, LoadedModel] = {}
    for item in checkpoints:
        name, _, path = item.partition("=") if "=" in item else ("", "", item)
        name = name or Path(path).resolve().name
        if name in models:
            raise UserError(f"two checkpoints would be served as {name!r}; name them apart: NAME=PATH.")
        models[name] = load(path, device=device)
    return models


def from_environment() -> FastAPI:
    """The app for ``uvicorn --factory genloom.serve:from_environment`` (several worker processes on one port):
    the checkpoints from ``$GENLOOM_MODELS`` (``[NAME=]PATH`` separated by commas), the key from
    ``$GENLOOM_API_KEY``."""
    listed = [item for item in os.environ.get("GENLOOM_MODELS", "").split(",") if item.strip()]
    if not listed:
        raise UserError("set GENLOOM_MODELS to the checkpoints to serve: [NAME=]PATH, separated by commas.")
    settings = ServeSettings(api_key=os.environ.get("GENLOOM_API_KEY") or None)
    check_settings(settings)
    return create_app(load_named(listed, os.environ.get("GENLOOM_DEVICE") or None), settings)


def check_settings(settings: ServeSettings) -> None:
    """Server limits that make sense, or one sentence saying which does not."""
    for name in ("max_batch", "max_body_bytes", "max_tokens", "max_inputs"):
        if getattr(settings, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(settings, name)}.")
    if settings.max_waiting < 0:
        raise UserError(f"--max-waiting must be ≥ 0, got {settings.max_waiting}.")
    if settings.api_key is not None and not settings.api_key.strip():
        raise UserError("the API key is empty; give a non-empty --api-key (or GENLOOM_API_KEY), or none.")


__all__ = ["create_app", "ServeSettings", "check_settings", "load_named", "from_environment"]
