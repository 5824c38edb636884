"""ServerConfig: everything `colbert serve` can be told, in one flat dataclass; and `--index NAME=PATH` parsing."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

INDEX_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # what a served index may be called (never a path)
LOOPBACK_NAMES = ("localhost", "ip6-localhost")


@dataclass(frozen=True)
class IndexSpec:
    """One served index: the name requests use, the folder it is read from, and optionally its passages' texts."""

    name: str
    path: Path
    collection: Optional[Path] = None


def parse_index_spec(spec: str) -> IndexSpec:
    """`NAME=PATH` or `PATH` (named after its folder).

    >>> parse_index_spec("sci=/data/scifact.nbits2")
    IndexSpec(name='sci', path=PosixPath('/data/scifact.nbits2'), collection=None)
    >>> parse_index_spec("/data/scifact.nbits2").name
    'scifact.nbits2'
    """
    name, sep, path = spec.partition("=")
    if not sep:
        name, path = Path(spec.rstrip("/")).name, spec
    if not path:
        raise ValueError(f"--index {spec!r} names no folder; use --index NAME=PATH or --index PATH")
    check_index_name(name, f"--index {spec!r}")
    return IndexSpec(name=name, path=Path(path).expanduser())


def check_index_name(name: str, where: str) -> None:
    if not INDEX_NAME.match(name):
        raise ValueError(f"{where}: the index name {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting "
                         "with a letter or digit; give it one with --index NAME=PATH")


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine.

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, True, False)
    """
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class ServerConfig:
    """How the service runs. `colbert serve --help` lists the same settings as flags."""

    indexes: list[IndexSpec] = field(default_factory=list)
    checkpoint: Optional[str] = None  # encode queries with this model instead of the one each index names
    # --- network and auth ---
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: Optional[str] = None  # read key (and write key when write_key is None); None: no auth
    write_key: Optional[str] = None  # when set, only this key may call the document endpoints
    open_health_metrics: bool = False  # /health, /ready and /metrics answer without a key
    insecure: bool = False  # allow listening beyond loopback without a key
    # --- limits ---
    max_body_bytes: int = 4 << 20
    max_k: int = 1000
    max_batch: int = 64  # queries per search, texts per encode
    max_documents: int = 1000  # documents per rerank, doc_ids per request, documents per add or delete
    max_text_chars: int = 20_000
    # --- concurrency ---
    batch_window_ms: float = 3.0  # how long a query waits for others to be encoded with it
    encode_batch: int = 32  # queries encoded together at most
    search_threads: int = 2  # PLAID searches run at once (each also uses torch's intra-op threads)
    threads: Optional[int] = None  # torch.set_num_threads; None keeps torch's default
    write_wait_s: float = 10.0  # a second writer on an index waits this long, then gets 409
    rerank_precision: str = "auto"  # rerank's query and texts; "auto": bf16 on CPUs with native bf16, else fp32
    query_precision: str = "fp32"  # search and encode queries; "bf16": faster on CPU, answers differ slightly

    def __post_init__(self) -> None:
        if self.api_key is None:
            self.api_key = os.environ.get("COLBERT_API_KEY") or None
        if self.write_key is None:
            self.write_key = os.environ.get("COLBERT_WRITE_KEY") or None
        if self.rerank_precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"rerank_precision must be 'auto', 'fp32' or 'bf16', got {self.rerank_precision!r}")
        if self.query_precision not in ("fp32", "bf16"):
            raise ValueError(f"query_precision must be 'fp32' or 'bf16', got {self.query_precision!r}")
        names = [spec.name for spec in self.indexes]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"index names must be unique, got {', '.join(repeated)} more than once; name them with "
                             "--index NAME=PATH")
        for name, value in (("max_body_bytes", self.max_body_bytes), ("max_k", self.max_k),
                            ("max_batch", self.max_batch), ("max_documents", self.max_documents),
                            ("max_text_chars", self.max_text_chars), ("encode_batch", self.encode_batch),
                            ("search_threads", self.search_threads)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.write_key is not None and self.api_key is None:
            raise ValueError("a write key without an API key would leave reads open and writes closed; set "
                             "--api-key (or COLBERT_API_KEY) too")

    def check_exposure(self) -> None:
        """Refuse to listen beyond loopback without a key, unless `insecure`."""
        if self.api_key is None and not self.insecure and not is_loopback(self.host):
            raise ValueError(f"refusing to listen on {self.host} without an API key: anyone who can reach it could "
                             "read and change the indexes. Set --api-key (or COLBERT_API_KEY), listen on 127.0.0.1, "
                             "or pass --insecure if something in front of it does the auth.")
