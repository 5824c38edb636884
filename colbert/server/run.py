"""Run the app under uvicorn: one process, refusing to listen beyond loopback without a key.

On SIGTERM or SIGINT uvicorn stops accepting connections, lets the requests in flight finish (for at most
`GRACEFUL_SHUTDOWN_S`), then the app's shutdown stops the batchers and joins the worker threads (a commit in
progress completes).
"""

from __future__ import annotations

import logging

from colbert.server.config import ServerConfig

logger = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 30  # in-flight requests get this long after SIGTERM


def serve(config: ServerConfig, log_level: str = "info") -> None:
    """Serve until SIGTERM/SIGINT. Raises ValueError before binding when the exposure check fails."""
    import torch
    import uvicorn

    from colbert.indexing.platform import SERVER_MMAP_THRESHOLD, fix_mmap_threshold
    from colbert.server.app import create_app

    config.check_exposure()
    if not config.indexes:
        raise ValueError("no index to serve; pass --index NAME=PATH (repeatable) or --index PATH")
    for spec in config.indexes:
        if not (spec.path / "metadata.json").is_file():
            raise FileNotFoundError(f"--index {spec.name}={spec.path}: no metadata.json there; pass an index "
                                    "folder built by `colbert index` or Indexer")
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    if fix_mmap_threshold():  # memory stays flat across commits and concurrent searches (indexing/platform.py)
        logger.debug("glibc mmap threshold fixed at %d bytes", SERVER_MMAP_THRESHOLD)
    app = create_app(config)
    uv = uvicorn.Config(app, host=config.host, port=config.port, log_level=log_level, access_log=False,
                        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, limit_concurrency=None)
    logger.info("colbert serve on http://%s:%d (%s), auth %s", config.host, config.port,
                ", ".join(s.name for s in config.indexes), "on" if config.api_key else "off")
    uvicorn.Server(uv).run()
