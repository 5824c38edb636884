"""`colbert serve --index NAME=PATH ...`: the HTTP service (colbert.server; needs the `server` extra)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from colbert.cli import PROG, UsageError, add_command, option

INSTALL_HINT = "pip install 'colbert-ai[server]'"
OPENMP_SPINCOUNT = "10000"  # libgomp's spin before an idle OpenMP thread sleeps (its default: 300,000)


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers, "serve", help="serve indexes over HTTP: search, rerank, encode, add/remove documents",
        description="Serve one or more indexes over HTTP (FastAPI + uvicorn): POST /v1/search, /v1/rerank, "
                    "/v1/encode, POST and DELETE /v1/documents, GET /health, /ready, /metrics, and the OpenAPI "
                    "page at /docs. Keys come from --api-key/--write-key or COLBERT_API_KEY/COLBERT_WRITE_KEY "
                    "(the environment keeps them out of `ps`). See docs/serving.md.",
        example="COLBERT_API_KEY=secret colbert serve --index scifact=./indexes/scifact --port 8000\n"
                "colbert serve --index ./indexes/a --index b=./indexes/b --collection b=./b.tsv")
    parser.add_argument("--index", action="append", required=True, metavar="NAME=PATH",
                        help="an index to serve, repeatable; PATH alone names it after its folder")
    parser.add_argument("--collection", action="append", default=[], metavar="NAME=PATH",
                        help="the texts of an index's documents (TSV), for include_text; default: the collection "
                             "file the index names, if it exists here")
    parser.add_argument("--checkpoint", help="encode with this model instead of the one each index names")
    net = parser.add_argument_group("network and auth")
    net.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    net.add_argument("--port", type=int, default=8000, help="port (default %(default)s)")
    net.add_argument("--api-key", help="the key every request must send as 'Authorization: Bearer KEY' "
                     "(default $COLBERT_API_KEY; none: no auth, loopback only)")
    net.add_argument("--write-key", help="a separate key for POST/DELETE /v1/documents (default $COLBERT_WRITE_KEY)")
    net.add_argument("--open-health-metrics", action="store_true",
                     help="answer /health, /ready and /metrics without a key")
    net.add_argument("--insecure", action="store_true",
                     help="allow listening beyond loopback without a key (something in front does the auth)")
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-body-bytes", type=int, default=4 << 20, help="larger bodies get 413 (%(default)s)")
    limits.add_argument("--max-k", type=int, default=1000, help="largest k (%(default)s)")
    limits.add_argument("--max-batch", type=int, default=64, help="queries per search, texts per encode (%(default)s)")
    limits.add_argument("--max-documents", type=int, default=1000,
                        help="documents per rerank, ids per request, documents per add or delete (%(default)s)")
    limits.add_argument("--max-text-chars", type=int, default=20_000, help="longest text (%(default)s)")
    work = parser.add_argument_group("concurrency")
    work.add_argument("--batch-window-ms", type=float, default=3.0,
                      help="how long a query waits to be encoded with others (%(default)s ms)")
    work.add_argument("--encode-batch", type=int, default=32, help="queries encoded together at most (%(default)s)")
    work.add_argument("--search-threads", type=int, default=2, help="searches run at once (%(default)s)")
    work.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    work.add_argument("--write-wait-s", type=float, default=10.0,
                      help="a second writer waits this long for the first, then gets 409 (%(default)s)")
    work.add_argument("--rerank-precision", choices=("auto", "fp32", "bf16"), default="auto",
                      help="how /v1/rerank encodes its query and texts: auto = bf16 on CPUs with native bf16, "
                           "else fp32")
    work.add_argument("--query-precision", choices=("fp32", "bf16"), default="fp32",
                      help="how search and encode queries are encoded on CPU: fp32 (the default, as Searcher) "
                           "or bf16 (faster on CPUs with native bf16; scores differ slightly)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int | None:
    _shorter_openmp_spin()  # before torch is imported, which reads it
    try:
        from colbert.server import IndexSpec, ServerConfig, parse_index_spec, serve
    except ImportError as e:
        print(f"{PROG} serve: error: the server extra is not installed ({e.name or e}): {INSTALL_HINT}",
              file=sys.stderr)
        return 1
    try:
        specs = [parse_index_spec(spec) for spec in args.index]
        texts = dict(_pair(spec, "--collection") for spec in args.collection)
        unknown = sorted(set(texts) - {s.name for s in specs})
        if unknown:
            raise ValueError(f"--collection names {', '.join(unknown)}, which no --index serves")
        specs = [IndexSpec(s.name, s.path, texts.get(s.name)) for s in specs]
        config = ServerConfig(
            indexes=specs, checkpoint=args.checkpoint, host=args.host, port=args.port, api_key=args.api_key,
            write_key=args.write_key, open_health_metrics=args.open_health_metrics, insecure=args.insecure,
            max_body_bytes=args.max_body_bytes, max_k=args.max_k, max_batch=args.max_batch,
            max_documents=args.max_documents, max_text_chars=args.max_text_chars,
            batch_window_ms=args.batch_window_ms, encode_batch=args.encode_batch, search_threads=args.search_threads,
            threads=args.threads, write_wait_s=args.write_wait_s, rerank_precision=args.rerank_precision,
            query_precision=args.query_precision)
        config.check_exposure()
    except ValueError as e:
        raise UsageError(str(e)) from None
    serve(config, log_level="debug" if option(args, "debug") else "info")
    return None


def _shorter_openmp_spin() -> None:
    """GOMP_SPINCOUNT=OPENMP_SPINCOUNT for this process, unless the environment sets the OpenMP wait already.

    After each parallel region torch's OpenMP threads (libgomp) spin for a while, waiting for the next one. Between
    the ops of one forward pass that saves a wake-up; after the forward pass the spinning threads hold the cores
    that the request's next step (MaxSim, on the kernels' own threads) needs; docs/serving.md has the figures.
    libgomp reads the variable when torch loads it, so this runs before anything imports torch.
    """
    if "torch" not in sys.modules and not {"GOMP_SPINCOUNT", "OMP_WAIT_POLICY"} & set(os.environ):
        os.environ["GOMP_SPINCOUNT"] = OPENMP_SPINCOUNT


def _pair(spec: str, flag: str) -> tuple[str, Any]:
    from pathlib import Path

    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"{flag} {spec!r}: expected NAME=PATH")
    return name, Path(path).expanduser()
