"""The FastAPI app: routes only. What each endpoint does lives in colbert.server.service.

    from colbert.server import ServerConfig, create_app
    app = create_app(ServerConfig(indexes=[parse_index_spec("scifact=/data/scifact.nbits2")]))

Middleware, outermost first: metrics (every response counted, refusals included), auth (before the body is read),
body size (413). Errors are `{"error": {"type", "message", "field"?}}`; an unexpected exception is logged with its
traceback and answered 500 without any detail.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

import colbert
from colbert.server import schemas
from colbert.server.auth import AuthMiddleware, KeyCheck
from colbert.server.config import ServerConfig
from colbert.server.limits import ApiError, BodyLimit
from colbert.server.metrics import MetricsMiddleware
from colbert.server.service import Service

logger = logging.getLogger(__name__)


def create_app(config: ServerConfig) -> FastAPI:
    """The service for `config`; its indexes load in the background once the app starts (see /ready)."""
    service = Service(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        await service.start()
        yield
        await service.stop()

    app = FastAPI(title="colbert", version=colbert.__version__, lifespan=lifespan,
                  description="ColBERT late-interaction search, rerank and encoding over HTTP. See docs/serving.md.")
    app.state.service = service
    _errors(app)

    @app.post("/v1/search", response_model=schemas.SearchResponse, response_model_exclude_none=True)
    async def search(body: schemas.SearchRequest) -> Any:
        """Top-k documents of the index for one query (`query`) or several (`queries`)."""
        timing: dict = {}
        return _timed(await service.search(body, timing), timing)

    @app.post("/v1/rerank", response_model=schemas.RerankResponse, response_model_exclude_none=True)
    async def rerank(body: schemas.RerankRequest) -> Any:
        """Reorder `documents` (texts) or `doc_ids` (documents of the index, from their stored embeddings)."""
        timing: dict = {}
        return _timed(await service.rerank(body, timing), timing)

    @app.post("/v1/encode", response_model=schemas.EncodeResponse)
    async def encode(body: schemas.EncodeRequest) -> Any:
        """Token embeddings of queries or documents, with the index's checkpoint."""
        return JSONResponse(await service.encode(body))

    @app.post("/v1/documents", response_model=schemas.WriteResponse, response_model_exclude_none=True)
    async def add_documents(body: schemas.AddRequest) -> Any:
        """Add documents (encoded here) and commit; searches see them once the commit is published."""
        return JSONResponse(await service.add(body))

    @app.delete("/v1/documents", response_model=schemas.WriteResponse, response_model_exclude_none=True)
    async def delete_documents(body: schemas.DeleteRequest) -> Any:
        """Remove documents by id and commit."""
        return JSONResponse(await service.remove(body))

    @app.get("/health")
    async def health() -> dict:
        """The process is up (the indexes may still be loading)."""
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> Any:
        """200 once every index is loaded, else 503."""
        state = service.readiness()
        return JSONResponse(state, status_code=200 if state["ready"] else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus text format."""
        payload, content_type = service.metrics.render()
        return Response(payload, media_type=content_type)

    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    app.add_middleware(AuthMiddleware, keys=KeyCheck(config.api_key, config.write_key, config.open_health_metrics))
    app.add_middleware(MetricsMiddleware, metrics=service.metrics)
    return app


def _timed(payload: dict, timing: dict) -> JSONResponse:
    """The answer, with its stages' milliseconds in a Server-Timing header (`encode;dur=15.2, score;dur=3.1`)."""
    header = ", ".join(f"{stage};dur={ms:.2f}" for stage, ms in timing.items())
    return JSONResponse(payload, headers={"Server-Timing": header} if header else None)


def _error(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return _error(e)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {"loc": (), "msg": "invalid request", "type": ""}
        if first.get("type") == "json_invalid":
            return _error(ApiError(400, "malformed_json", "the body is not valid JSON", "body"))
        loc = [str(part) for part in first.get("loc", ()) if part != "body"]
        field = ".".join(loc) or "body"
        return _error(ApiError(422, "invalid_request", f"{field}: {first.get('msg', 'invalid')}", field))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return _error(ApiError(e.status_code, kind, str(e.detail)))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception) -> JSONResponse:
        logger.exception("Unexpected error answering %s %s", request.method, request.url.path)
        return _error(ApiError(500, "internal", "internal error; the server log has the details"))
