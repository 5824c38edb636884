"""`colbert serve`: search, rerank, encoding and document updates over HTTP (FastAPI + uvicorn).

The optional extra `pip install 'colbert-ai[server]'`; `import colbert` never imports this package. Modules:
config (ServerConfig, --index parsing), indexes (published states, one writer per index), service (what each
endpoint does), batching (model thread, query batches), auth, limits, metrics, schemas, app (routes), run (uvicorn,
exposure check, graceful shutdown). See docs/serving.md.
"""

from __future__ import annotations

from colbert.server.app import create_app
from colbert.server.config import IndexSpec, ServerConfig, parse_index_spec
from colbert.server.run import serve

__all__ = ["IndexSpec", "ServerConfig", "create_app", "parse_index_spec", "serve"]
