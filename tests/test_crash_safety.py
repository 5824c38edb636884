"""Crash safety: processes SIGKILLed at random moments of updates, persists and builds leave the old or the new
index, whole; readers in another process keep serving while a writer commits; leftovers are cleaned up.

Children fork from a forkserver that imported colbert once, so each costs milliseconds rather than an import.
Each writer logs what it is about to commit ("persist") and when the commit returned ("done"); after a kill the
index must verify clean and hold exactly the last committed state or the one being committed.
"""

from __future__ import annotations

import itertools
import json
import logging
import multiprocessing
import random
import shutil
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import torch

from colbert import ColBERTConfig, Indexer, IndexUpdater, Run, RunConfig, verify_index
from colbert.index import versions
from colbert.index.loaded import LoadedIndex
from test_index_updater import STRING_DOCS, build, texts

# What the forkserver imports once: colbert, and the parts of transformers its Auto classes import lazily (~10 s).
PRELOAD = ["colbert.index_updater", "colbert.indexer", "colbert.modeling.checkpoint", "colbert.searcher",
           "transformers.modeling_utils", "transformers.activations", "transformers.modeling_layers",
           "transformers.masking_utils", "transformers.models.bert.modeling_bert",
           "transformers.models.auto.modeling_auto", "transformers.models.auto.tokenization_auto",
           "transformers.tokenization_utils_tokenizers"]
State = dict  # {doc id: text}


@pytest.fixture(scope="module")
def ctx() -> Any:
    from colbert import kernels

    kernels.backend_info()  # build or load the native kernels here, once, never inside a child about to be killed
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


@pytest.fixture(scope="module")
def doclen(_tiny_checkpoint_master) -> Callable[[str], int]:
    """Vectors a text gets in the index, from the tokenizer alone: the parent's independent check of contents."""
    from colbert.indexing.encoder import kept_lengths
    from colbert.modeling.checkpoint import Checkpoint

    checkpoint = Checkpoint(str(_tiny_checkpoint_master), verbose=0)
    cache: dict[str, int] = {}

    def count(text: str) -> int:
        if text not in cache:
            cache[text] = kept_lengths(checkpoint, checkpoint.doc_tokenizer.encode_unpadded([text]))[0]
        return cache[text]

    return count


# ----------------------------------------------------------------------------------------------- children


def _quiet() -> None:
    torch.set_num_threads(1)
    logging.getLogger("colbert").setLevel(logging.ERROR)


class _Log:
    def __init__(self, path: str) -> None:
        self.file = open(path, "a", encoding="utf-8")

    def __call__(self, *fields: Any) -> None:
        self.file.write(json.dumps(fields) + "\n")
        self.file.flush()  # in the kernel before the next step: a SIGKILL cannot lose it


def update_loop(index: str, checkpoint: str, log_path: str, seed: int, iterations: Optional[int] = None) -> None:
    """Forever (or `iterations` times): remove 1-3 passages, add 1-3 (sometimes re-adding a removed id with new
    text), persist. Logs the changes before persisting and "done" after."""
    _quiet()
    from colbert.modeling.checkpoint import Checkpoint

    rng, log = random.Random(seed), _Log(log_path)
    updater = IndexUpdater(None, index, checkpoint=Checkpoint(checkpoint, verbose=0))
    updater.add({"warm-up": "warm up"})  # in memory only: first encoding and kernel loading happen before any kill
    updater.remove(["warm-up"])
    log("ready")
    for i in itertools.count() if iterations is None else range(iterations):
        ids = updater.ids
        removed = rng.sample(ids, min(len(ids) - 1, rng.randint(1, 3)))
        added = {f"s{seed}-{i}-{j}": text for j, text in enumerate(texts(rng.randint(1, 3), seed=seed * 1000 + i))}
        if rng.random() < 0.3:
            added[removed[0]] = f"again {i} " + texts(1, seed=i)[0]
        updater.remove(removed)
        updater.add(added)
        log("persist", {"remove": removed, "add": added})
        updater.persist_to_disk()
        log("done")


def build_loop(root: str, name: str, checkpoint: str, log_path: str, collections: dict) -> None:
    """Rebuild the index with overwrite=True, alternating between two collections."""
    _quiet()
    log = _Log(log_path)
    with Run().context(RunConfig(nranks=1, root=root, experiment="test")):
        indexer = Indexer(checkpoint, config=ColBERTConfig(nbits=2), verbose=0)
        log("ready")
        for i in itertools.count():
            which = "B" if i % 2 == 0 else "A"
            log("persist", {"collection": which})
            indexer.index(name, collections[which], overwrite=True)
            log("done")


def reader_loop(index: str, checkpoint: str, out_path: str, seconds: float) -> None:
    """Search one Searcher opened at the start, and open the index afresh, again and again."""
    _quiet()
    from colbert import Searcher

    result: dict[str, Any] = {"searches": 0, "opens": 0, "states": [], "error": None}
    try:
        searcher = Searcher(index, checkpoint=checkpoint, verbose=0)
        initial = set(searcher.loaded.doc_ids)
        states = set()
        end = time.time() + seconds
        while time.time() < end:
            for exact in (False, True):
                ids, _, _ = searcher.search("protein cell virus", k=50, exact=exact)
                if not set(ids) <= initial:
                    raise AssertionError(f"the open searcher returned ids it never had: {set(ids) - initial}")
                result["searches"] += 1
            loaded = LoadedIndex.open(index)
            states.add(tuple(sorted(i for i in loaded.doc_ids if i is not None)))
            result["opens"] += 1
        result["states"] = [list(s) for s in states]
    except Exception:  # reported to the parent, which fails the test with it
        result["error"] = traceback.format_exc()
    Path(out_path).write_text(json.dumps(result))


# ----------------------------------------------------------------------------------------------- the parent


def _replay(state: State, change: dict, collections: dict) -> State:
    if "collection" in change:
        return dict(collections[change["collection"]])
    state = {k: v for k, v in state.items() if k not in set(change["remove"])}
    return {**state, **change["add"]}


def _allowed(log_path: Path, state: State, collections: dict) -> tuple[State, Optional[State]]:
    """(last committed state, the state being committed when the writer died, if any)."""
    committed, pending = state, None
    for line in log_path.read_text().splitlines():
        entry = json.loads(line)
        if entry[0] == "persist":
            pending = _replay(committed, entry[1], collections)
        elif entry[0] == "done":
            committed, pending = pending, None
    return committed, pending


def _on_disk(index: Path, doclen: Callable[[str], int], state: State) -> bool:
    loaded = LoadedIndex.open(index)
    ids = loaded.doc_ids if loaded.doc_ids is not None else list(range(loaded.num_passages))
    live = [(i, n) for i, n in zip(ids, loaded.doclens.tolist()) if n > 0]  # removed passages keep doclen 0
    if {i for i, _ in live} != set(state) or len(live) != len(state):
        return False
    return all(int(n) == doclen(state[i]) for i, n in live)


def _wait_for(log_path: Path, process: Any, prefix: str, timeout: float = 120.0) -> None:
    """Until the child has logged a line starting with `prefix`."""
    end = time.time() + timeout
    while time.time() < end:
        if log_path.exists() and any(line.startswith(prefix) for line in log_path.read_text().splitlines()):
            return
        if not process.is_alive():
            raise AssertionError(f"the child died before logging {prefix} (exit code {process.exitcode})")
        time.sleep(0.002)
    raise AssertionError(f"the child never logged {prefix}")


def _wait_ready(log_path: Path, process: Any) -> None:
    _wait_for(log_path, process, '["ready"]', timeout=600.0)


def kill_at_random(ctx: Any, target: Callable, args: Callable[[Path, int], tuple], index: Path, state: State,
                   kills: int, window: float, commit_window: float, doclen: Callable[[str], int], tmp_path: Path,
                   collections: Optional[dict] = None, seed: int = 0) -> dict:
    """Start `target` (with `args(log path, kill number)`), SIGKILL it at a random moment, check the index;
    `kills` times. Returns counts.

    Every other kill comes within `commit_window` seconds of the child logging a commit under way; the others
    within `window` seconds of it being ready."""
    rng = random.Random(seed)
    stats = {"kills": 0, "during_commit": 0, "new_state": 0}
    for k in range(kills):
        log_path = tmp_path / f"log-{k}.jsonl"
        process = ctx.Process(target=target, args=args(log_path, k))
        process.start()
        _wait_ready(log_path, process)
        if k % 2:  # half the kills aim at a commit: soon after the child announces one
            _wait_for(log_path, process, '["persist"')
            time.sleep(rng.uniform(0.0, commit_window))
        else:  # the others at any moment
            time.sleep(rng.uniform(0.0, window))
        process.kill()
        process.join()
        committed, pending = _allowed(log_path, state, collections or {})
        assert verify_index(index) == [], f"kill {k}: the index does not verify"
        if _on_disk(index, doclen, committed):
            state = committed
        else:
            assert pending is not None and _on_disk(index, doclen, pending), \
                f"kill {k}: the index holds neither the committed state nor the one being committed"
            state, stats["new_state"] = pending, stats["new_state"] + 1
        stats["kills"] += 1
        stats["during_commit"] += pending is not None
    return stats


@pytest.mark.parametrize("kills", [pytest.param(16, id="16"), pytest.param(150, id="150", marks=pytest.mark.slow)])
def test_killed_updates_leave_the_old_or_the_new_index(ctx, _tiny_checkpoint_master, doclen, tmp_path, kills):
    index = build(_tiny_checkpoint_master, tmp_path, STRING_DOCS)
    stats = kill_at_random(ctx, update_loop, lambda log, k: (str(index), str(_tiny_checkpoint_master), str(log), k),
                           index, dict(STRING_DOCS), kills, window=0.8, commit_window=0.2, doclen=doclen,
                           tmp_path=tmp_path)
    logging.getLogger(__name__).info("update kills: %s", stats)
    assert stats["kills"] == kills and stats["during_commit"] >= kills // 3 and stats["new_state"] > 0
    IndexUpdater(None, str(index), checkpoint=str(_tiny_checkpoint_master)).add(["after"])  # still writable
    leftovers_before = [p for p in index.parent.iterdir() if p.name.startswith(".")]
    updater = IndexUpdater(None, str(index), checkpoint=str(_tiny_checkpoint_master))
    updater.add(["one more"])
    updater.persist_to_disk()
    assert not [p for p in index.parent.iterdir() if p.name.startswith(".")], leftovers_before


@pytest.mark.parametrize("kills", [pytest.param(4, id="4"), pytest.param(30, id="30", marks=pytest.mark.slow)])
def test_killed_builds_leave_the_old_or_the_new_index(ctx, _tiny_checkpoint_master, doclen, tmp_path, kills):
    collections = {"A": dict(STRING_DOCS), "B": {f"b{i}": t for i, t in enumerate(texts(30, seed=3))}}
    index = build(_tiny_checkpoint_master, tmp_path, collections["A"])
    root = str(tmp_path)
    stats = kill_at_random(ctx, build_loop, lambda log, k: (root, "idx", str(_tiny_checkpoint_master), str(log),
                                                         collections), index, collections["A"], kills, window=4.0,
                           commit_window=2.0, doclen=doclen, tmp_path=tmp_path, collections=collections, seed=1)
    assert stats["kills"] == kills and stats["during_commit"] == kills  # a build is always under way


def test_readers_keep_serving_while_another_process_persists(ctx, _tiny_checkpoint_master, tmp_path):
    index = build(_tiny_checkpoint_master, tmp_path, STRING_DOCS)
    writer_log, reader_out = tmp_path / "writer.jsonl", tmp_path / "reader.json"
    writer = ctx.Process(target=update_loop, args=(str(index), str(_tiny_checkpoint_master), str(writer_log), 11))
    writer.start()
    _wait_ready(writer_log, writer)
    reader = ctx.Process(target=reader_loop, args=(str(index), str(_tiny_checkpoint_master), str(reader_out), 4.0))
    reader.start()
    reader.join(timeout=120)
    writer.kill()
    writer.join()
    result = json.loads(reader_out.read_text())
    assert result["error"] is None, result["error"]
    states, state = [set(STRING_DOCS)], dict(STRING_DOCS)
    for line in writer_log.read_text().splitlines():
        entry = json.loads(line)
        if entry[0] == "persist":
            state = _replay(state, entry[1], {})
            states.append(set(state))
    assert sum(line.startswith('["done"]') for line in writer_log.read_text().splitlines()) >= 3
    assert result["opens"] >= 3 and result["searches"] >= 6
    assert all(set(seen) in states for seen in result["states"])  # every open saw one whole version
    assert len(result["states"]) >= 2  # and the versions did change under the reader


# ----------------------------------------------------------------------------------------------- mechanics


def test_leftovers_of_dead_writers_are_removed_but_a_live_writers_are_kept(tmp_path):
    index = tmp_path / "idx"
    index.mkdir()
    dead, live = tmp_path / ".idx.update-1-0", tmp_path / ".idx.update-2-0"
    dead.mkdir()
    live.mkdir()
    (tmp_path / ".other.update-1-0").mkdir()
    pin = versions.Pin(live)
    assert pin.lock(wait=False)
    assert versions.collect_garbage(index) == [".idx.update-1-0"]
    assert live.exists() and (tmp_path / ".other.update-1-0").exists()
    pin.close()


def test_without_an_atomic_exchange_a_commit_killed_between_renames_is_recovered(searcher_free_index, monkeypatch):
    index, ids = searcher_free_index
    monkeypatch.setattr(versions, "exchange", lambda a, b: (_ for _ in ()).throw(NotImplementedError("test")))
    updater = IndexUpdater(None, str(index))
    updater.remove(ids[:2])
    real_rename, calls = versions.os.rename, []

    def die_after_first(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed between the renames")
        real_rename(src, dst)

    monkeypatch.setattr(versions.os, "rename", die_after_first)
    with pytest.raises(KeyboardInterrupt):
        updater.persist_to_disk()
    monkeypatch.setattr(versions.os, "rename", real_rename)
    assert not index.exists() and versions.recover(index)
    assert verify_index(index) == [] and LoadedIndex.open(index).doc_ids == ids
    updater = IndexUpdater(None, str(index))
    updater.remove(ids[:2])
    updater.persist_to_disk()  # the two-rename commit, to the end
    assert LoadedIndex.open(index).doc_ids == [None, None] + ids[2:] and verify_index(index) == []


@pytest.fixture
def searcher_free_index(_tiny_checkpoint_master, tmp_path) -> tuple[Path, list]:
    index = build(_tiny_checkpoint_master, tmp_path, dict(list(STRING_DOCS.items())[:12]))
    return index, list(STRING_DOCS)[:12]
