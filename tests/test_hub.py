"""Hub-shaped checkpoint names that cannot be loaded fail at construction, in bounded time, naming why.

Before: transformers' client retried an unreachable hub for about three minutes, then raised its own error. The
hub here is a real HTTP server on 127.0.0.1 (HF_ENDPOINT), or a closed port, or offline mode.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time

import pytest

from colbert import Indexer, Searcher
from colbert.errors import CheckpointError
from colbert.modeling import hub
from colbert.modeling.checkpoint import Checkpoint
from colbert.modeling.hf_format import check_checkpoint_name


class _Hub(http.server.BaseHTTPRequestHandler):
    known = {"/api/models/org/real-model"}

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200 if self.path in self.known else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def local_hub(monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    yield
    server.shutdown()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_name_the_hub_does_not_have_is_refused_at_once(local_hub):
    start = time.monotonic()
    for make in (lambda: Checkpoint("org/no-such-model", verbose=0), lambda: Indexer("org/no-such-model"),
                 lambda: check_checkpoint_name("no-such-model")):
        with pytest.raises(CheckpointError, match="has no public model of that name. Check the spelling"):
            make()
    assert time.monotonic() - start < 10


def test_a_name_the_hub_has_passes_the_check(local_hub):
    assert check_checkpoint_name("org/real-model") == "org/real-model"
    assert hub.hub_status("org/real-model") == hub.FOUND and hub.hub_reachable("org/real-model")


def test_an_unreachable_hub_is_named_within_the_timeout(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    start = time.monotonic()
    with pytest.raises(CheckpointError, match=r"did not answer within 3 s\. Give a local checkpoint folder"):
        Searcher(str(tmp_path), checkpoint="org/model", verbose=0)  # refused before the index is looked for
    assert time.monotonic() - start < 10


def test_offline_mode_refuses_a_hub_name_without_asking(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://10.255.255.1")  # unroutable: asking would hang
    start = time.monotonic()
    with pytest.raises(CheckpointError, match=r"offline mode is set \(HF_HUB_OFFLINE"):
        Checkpoint("colbert-ir/colbertv2.0", verbose=0)
    assert time.monotonic() - start < 2
    assert hub.hub_status("colbert-ir/colbertv2.0", timeout=30) == hub.UNREACHABLE


def test_a_local_folder_never_asks_the_hub(monkeypatch, tmp_path):
    monkeypatch.setattr(hub, "hub_status", lambda *a, **k: pytest.fail("the hub was asked about a local folder"))
    (tmp_path / "org").mkdir()
    monkeypatch.chdir(tmp_path)
    assert check_checkpoint_name("org") == "org"  # exists here: a folder, not a hub name
