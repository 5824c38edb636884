"""Bearer-key auth, checked before the body is read.

Three levels: probes (/health, /ready, /metrics: open with `open_health_metrics`), reads (every other /v1 route)
and writes (the document endpoints, which need the write key when one is set). A read key on a write endpoint gets
403; no key or a wrong key 401. Keys are compared as SHA-256 digests with `hmac.compare_digest`, so neither the
time taken nor the digests' length tells an attacker how much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Optional

from colbert.server.limits import ApiError, send_json

PROBES = ("/health", "/ready", "/metrics")
OPEN = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")  # the API's description holds no data
WRITES = ("/v1/documents",)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyCheck:
    """Which keys open which routes."""

    def __init__(self, api_key: Optional[str], write_key: Optional[str], open_health_metrics: bool) -> None:
        self.read = _digest(api_key) if api_key else None
        self.write = _digest(write_key) if write_key else self.read
        self.open_probes = open_health_metrics

    def check(self, path: str, authorization: Optional[str]) -> Optional[ApiError]:
        """None when the request may go on, else the refusal."""
        if self.read is None or path in OPEN or (self.open_probes and path in PROBES):
            return None
        given = _bearer(authorization)
        if given is None:
            return ApiError(401, "unauthorized", "this server needs an API key: send 'Authorization: Bearer <key>'",
                            headers={"WWW-Authenticate": "Bearer"})
        digest = _digest(given)
        is_write = hmac.compare_digest(digest, self.write)  # both comparisons always run
        is_read = hmac.compare_digest(digest, self.read)
        if path in WRITES:
            if is_write:
                return None
            if is_read:
                return ApiError(403, "forbidden", "this key may read but not change the indexes; use the write key")
        elif is_read or is_write:
            return None
        return ApiError(401, "unauthorized", "invalid API key", headers={"WWW-Authenticate": "Bearer"})


def _bearer(header: Optional[str]) -> Optional[str]:
    if not header:
        return None
    scheme, _, key = header.partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


class AuthMiddleware:
    """ASGI middleware applying KeyCheck to every HTTP request."""

    def __init__(self, app: Any, keys: KeyCheck) -> None:
        self.app, self.keys = app, keys

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            header = dict(scope["headers"]).get(b"authorization")
            refusal = self.keys.check(scope["path"], header.decode("latin-1") if header is not None else None)
            if refusal is not None:
                await send_json(send, refusal.status, refusal.body(), refusal.headers)
                return
        await self.app(scope, receive, send)
