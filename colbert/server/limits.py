"""Limits on what a request may ask, and the one JSON error shape every refusal uses.

Every error response is `{"error": {"type", "message", "field"?}}`; `field` names the request field at fault (a
dotted path such as `queries.3`). Nothing else is said: no stack trace, no server path.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Optional, Sequence

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """A refusal with its HTTP status, error type, message and (optionally) the request field at fault."""

    def __init__(self, status: int, type_: str, message: str, field: Optional[str] = None,
                 headers: Optional[dict] = None) -> None:
        super().__init__(message)
        self.status, self.type, self.message, self.field, self.headers = status, type_, message, field, headers

    def body(self) -> dict:
        error = {"type": self.type, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


def invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "invalid_request", message, field)


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (`colbert serve --max-...`)."""

    max_body_bytes: int
    max_k: int
    max_batch: int
    max_documents: int
    max_text_chars: int

    def k(self, k: int, field: str = "k") -> int:
        if k < 1 or k > self.max_k:
            raise invalid(field, f"k must be between 1 and {self.max_k:,} (--max-k), got {k}")
        return k

    def texts(self, texts: Sequence[str], field: str, most: int, flag: str) -> list[str]:
        if not texts:
            raise invalid(field, f"{field} is empty; send at least one text")
        if len(texts) > most:
            raise invalid(field, f"{field} holds {len(texts):,} texts; at most {most:,} per request ({flag})")
        for i, text in enumerate(texts):
            self.text(text, f"{field}.{i}")
        return list(texts)

    def text(self, text: str, field: str) -> str:
        if len(text) > self.max_text_chars:
            raise invalid(field, f"{field} is {len(text):,} characters long; at most {self.max_text_chars:,} "
                          "(--max-text-chars)")
        return text

    def ids(self, ids: Sequence[Any], field: str) -> list:
        if len(ids) > self.max_documents:
            raise invalid(field, f"{field} holds {len(ids):,} ids; at most {self.max_documents:,} per request "
                          "(--max-documents)")
        return list(ids)


class BodyLimit:
    """ASGI middleware: refuse a request body over `max_bytes` with 413 before the app parses any of it.

    A declared Content-Length over the limit is refused at once; a streamed body is counted as it arrives. The body
    is then handed to the app in one piece (it is small: at most `max_bytes`).
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            total += len(body)
            if total > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server would

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any) -> None:
        error = ApiError(413, "body_too_large", f"the request body exceeds {self.max_bytes:,} bytes "
                         "(--max-body-bytes); send fewer or shorter texts per request", "body")
        await send_json(send, error.status, error.body())


async def send_json(send: Any, status: int, body: dict, headers: Optional[dict] = None) -> None:
    """Send a whole JSON response from ASGI middleware."""
    payload = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})
