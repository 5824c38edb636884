"""`colbert serve` as a real uvicorn process on 127.0.0.1 (a free port), started and stopped by each test:
readers during writers, two writers at once, SIGTERM with requests in flight. Tiny random model."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed: pip install 'colbert-ai[server]'")
httpx = pytest.importorskip("httpx", reason="the tests talk to the server with httpx")

from colbert import ColBERTConfig, Indexer, Run, RunConfig, Searcher  # noqa: E402
from conftest import ROOT  # noqa: E402

DOCS = {f"d{i}": f"{w} cell protein {i}" for i, w in enumerate("gene heart brain drug trial virus mouse risk".split() * 5)}
START_S = 180  # a busy machine may take this long to import torch and load the model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def master(_tiny_checkpoint_master, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("served")
    with Run().context(RunConfig(nranks=1, root=str(root), experiment="test")):
        return Path(Indexer(str(_tiny_checkpoint_master), config=ColBERTConfig(nbits=2), verbose=0).index(
            "docs", DOCS, overwrite=True))


class Server:
    """`python -m colbert serve` in a child process; `url` once /ready answers 200."""

    def __init__(self, index: Path, log: Path, *flags: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("COLBERT_")}
        self.log = open(log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "colbert", "serve", "--index", f"docs={index}",
                                      "--port", str(self.port), *flags], cwd=ROOT, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.logfile = log
        deadline = time.monotonic() + START_S
        while True:
            assert self.proc.poll() is None, f"the server exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"the server was not ready in {START_S} s:\n{log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{self.url}/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def index(master, tmp_path) -> Path:
    return Path(shutil.copytree(master, tmp_path / "docs"))


def test_readers_during_writers_see_whole_states_and_no_write_is_lost(index, tmp_path):
    server = Server(index, tmp_path / "server.log", "--write-wait-s", "60")
    try:
        seen, failures, done = [], [], threading.Event()

        def read() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as http:
                while not done.is_set():
                    r = http.post("/v1/search", json={"query": "protein cell", "k": 5})
                    if r.status_code != 200:
                        failures.append(r.text)
                        continue
                    seen.append(r.json()["documents"])
                    r = http.post("/v1/rerank", json={"query": "gene", "doc_ids": ["d1", "d2", "d3"], "k": 3})
                    if r.status_code != 200:
                        failures.append(r.text)

        readers = [threading.Thread(target=read) for _ in range(3)]
        for t in readers:
            t.start()
        results = {}

        def write(name: str, payload: dict, method: str = "POST") -> None:
            with httpx.Client(base_url=server.url, timeout=120) as http:
                results[name] = http.request(method, "/v1/documents", json=payload)

        # two writers at once: the second waits for the first; both land
        writers = [threading.Thread(target=write, args=(f"add{j}", {"documents": {f"w{j}-{i}": f"new text {j} {i}"
                                                                               for i in range(5)}}))
                   for j in range(2)]
        for t in writers:
            t.start()
        for t in writers:
            t.join()
        write("remove", {"doc_ids": [f"w0-{i}" for i in range(5)]}, "DELETE")
        time.sleep(0.5)
        done.set()
        for t in readers:
            t.join()
        assert not failures, failures[:3]
        assert [results[n].status_code for n in ("add0", "add1", "remove")] == [200, 200, 200], \
            ({n: r.text for n, r in results.items()}, server.logfile.read_text()[-3000:])
        assert sorted(results[n].json()["documents"] for n in ("add0", "add1")) == [45, 50]
        assert results["remove"].json()["documents"] == 45
        assert seen and set(seen) <= {40, 45, 50}, sorted(set(seen))  # never a state between two commits
        final = httpx.post(f"{server.url}/v1/search", json={"query": "new text", "k": 100}).json()
        assert final["documents"] == 45
    finally:
        server.stop()
    ids = Searcher(str(index), verbose=0).loaded.live_ids
    assert sorted(ids) == sorted([*DOCS, *(f"w1-{i}" for i in range(5))])  # none lost, none twice


def test_sigterm_lets_requests_in_flight_finish(index, tmp_path):
    # While other queries are in flight each waits 2 s for company (a query alone in the server does not wait, so
    # the first of the four may be answered at once).
    server = Server(index, tmp_path / "server.log", "--batch-window-ms", "2000")
    answers, together = [], threading.Barrier(4)

    def ask(i: int) -> None:
        together.wait(timeout=30)  # the four leave at once, so that they find each other in the server
        answers.append(httpx.post(f"{server.url}/v1/search", json={"query": f"gene {i}", "k": 3}, timeout=60))

    clients = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in clients:
        t.start()
    deadline = time.monotonic() + 30
    while True:  # until the four are inside the server or answered, at least two inside (/metrics is one more)
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        inside = float(re.search(r"^colbert_requests_in_flight (\S+)$", metrics, re.M).group(1)) - 1
        if inside >= 2 and inside + len(answers) >= 4:
            break
        assert time.monotonic() < deadline, f"the requests never reached the server: {inside} inside, " \
                                            f"{len(answers)} answered"
        time.sleep(0.05)
    server.proc.send_signal(signal.SIGTERM)
    for t in clients:
        t.join(timeout=60)
    code = server.stop()
    assert [a.status_code for a in answers] == [200] * 4, ([a.text for a in answers], server.logfile.read_text()[-3000:])
    assert all(len(a.json()["results"]) == 3 for a in answers)
    assert code in (0, -signal.SIGTERM), server.logfile.read_text()[-2000:]  # uvicorn re-raises the signal it caught
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/health", timeout=5)
