"""IndexHandle: one published state per search, writers exclusive, searches in threads while an updater edits.

Tiny random model, an index of 40 passages built once and copied per test."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from colbert import ColBERTConfig, Indexer, IndexUpdater, Run, RunConfig, Searcher
from colbert.index.loaded import IndexBusyError, IndexHandle

WORDS = "protein cell gene cancer therapy immune virus brain heart blood drug trial risk patient mouse".split()
DOCS = {f"d{i}": " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(3 + i % 9)) for i in range(40)}


@pytest.fixture(scope="module")
def master_index(_tiny_checkpoint_master, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("handle")
    with Run().context(RunConfig(nranks=1, root=str(root), experiment="test")):
        indexer = Indexer(str(_tiny_checkpoint_master), config=ColBERTConfig(nbits=2), verbose=0)
        return Path(indexer.index("idx", DOCS, overwrite=True))


@pytest.fixture
def searcher(master_index, tmp_path, _tiny_checkpoint_master) -> Searcher:
    index = shutil.copytree(master_index, tmp_path / "indexes" / "idx")
    return Searcher(str(index), checkpoint=str(_tiny_checkpoint_master), verbose=0)


def fake_loaded(name: str) -> SimpleNamespace:
    """A stand-in for a LoadedIndex: `to(device)` names what it made."""
    return SimpleNamespace(path=Path(name), to=lambda device: ("view of", name, str(device)))


# ----------------------------------------------------------------------------------------------- the handle alone


def test_publish_replaces_the_snapshot_and_old_snapshots_stay_whole():
    handle = IndexHandle(fake_loaded("a"))
    first = handle.snapshot()
    assert first.view == ("view of", "a", "cpu") and first.generation == 0 and not first.pending
    with handle.writing():
        second = handle.publish(fake_loaded("b"), pending=True, edits="state-b")
        assert handle.edits == "state-b"
    assert handle.snapshot() is second and second.generation == 1 and second.pending
    assert second.view == ("view of", "b", "cpu")
    assert first.view == ("view of", "a", "cpu") and first.loaded.path.name == "a"  # a reader holding it is unaffected


def test_publishing_or_reading_edits_outside_writing_raises():
    handle = IndexHandle(fake_loaded("a"))
    with pytest.raises(RuntimeError, match="writing"):
        handle.publish(fake_loaded("b"), pending=False)
    with pytest.raises(RuntimeError, match="writing"):
        handle.edits
    assert handle.snapshot().generation == 0


def test_writing_is_reentrant_in_one_thread_and_exclusive_across_threads():
    handle = IndexHandle(fake_loaded("a"))
    held, release = threading.Event(), threading.Event()

    def first_writer():
        with handle.writing():
            with handle.writing():  # nested: the same thread does not wait for itself
                held.set()
                release.wait(10)

    thread = threading.Thread(target=first_writer)
    thread.start()
    assert held.wait(10)
    start = time.monotonic()
    with pytest.raises(IndexBusyError, match="lock_timeout"):
        with handle.writing(timeout=0.2):
            pass
    assert time.monotonic() - start >= 0.2
    release.set()
    thread.join(10)
    with handle.writing(timeout=5):  # free again after the first writer left both blocks
        handle.publish(fake_loaded("c"), pending=False)
    assert handle.snapshot().loaded.path.name == "c"


# ----------------------------------------------------------------------------------------------- with real searches


def test_searches_in_threads_each_see_one_published_state_while_an_updater_edits(searcher):
    updater = IndexUpdater(searcher.config, searcher)
    states = [frozenset(updater.ids)]  # every state the writer publishes, in order
    results: list[tuple[str, frozenset, int]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader(exact: bool):
        try:
            while not stop.is_set():
                ids, ranks, scores = searcher.search("protein cell virus", k=1000, exact=exact)
                assert len(ids) == len(set(ids)) and ranks == list(range(1, len(ids) + 1))
                assert scores == sorted(scores, reverse=True)
                results.append(("exact" if exact else "plaid", frozenset(ids), len(ids)))
                ranking = searcher.search_all({"q1": "gene therapy", "q2": "heart blood"}, k=1000, exact=True)
                for qid in ("q1", "q2"):
                    results.append(("search_all", frozenset(i for i, _, _ in ranking.data[qid]), 0))
        except BaseException as e:  # handed to the main thread, which fails the test with it
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(exact,)) for exact in (True, True, False)]
    for thread in threads:
        thread.start()
    try:
        for step in range(6):
            updater.add({f"new-{step}-{j}": f"virus protein {WORDS[(step + j) % len(WORDS)]}" for j in range(3)})
            states.append(frozenset(updater.ids))
            updater.remove([f"d{step}", f"d{step + 10}"])
            states.append(frozenset(updater.ids))
            if step == 3:
                updater.persist_to_disk()  # publishes the committed version read back from disk
                states.append(frozenset(updater.ids))
            time.sleep(0.05)  # let the readers run against this state
    finally:
        stop.set()
        for thread in threads:
            thread.join(120)
    assert not errors, errors[0]
    exact_sets = [ids for kind, ids, _ in results if kind in ("exact", "search_all")]
    assert len(exact_sets) >= 6
    assert all(ids in states for ids in exact_sets)  # exact search returns every document of its state
    assert len(set(exact_sets)) > 1  # the readers did run while states changed
    union = frozenset().union(*states)
    assert all(ids <= union for kind, ids, _ in results if kind == "plaid")
    # pids are stable (main's pid-stable edits): removed passages keep their place, added ones get new pids
    assert searcher.loaded.num_live == len(states[-1]) and searcher.loaded.num_passages == len(states[0]) + 6 * 3


def test_two_updaters_of_one_searcher_share_their_edits(searcher):
    first, second = IndexUpdater(searcher.config, searcher), IndexUpdater(searcher.config, searcher)
    first.add({"one": "virus brain"})
    second.add({"two": "heart blood"})
    first.remove(["d1"])
    assert "one" in second and "two" in first and "d1" not in second
    second.persist_to_disk()
    assert not first.pending
    fresh = Searcher(searcher.index, checkpoint=searcher.config.checkpoint, verbose=0)
    ids = fresh.loaded.doc_ids  # pid-stable: the removed d1 keeps its pid with a null id
    assert set(ids) - {None} == set(DOCS) - {"d1"} | {"one", "two"} and ids.count(None) == 1
    assert ids[list(DOCS).index("d1")] is None and fresh.loaded.num_live == len(DOCS) + 1


def test_a_second_writer_waits_a_bounded_time(searcher):
    updater = IndexUpdater(searcher.config, searcher, lock_timeout=0.2)
    held, release = threading.Event(), threading.Event()

    def busy_writer():
        with searcher.index_handle.writing():
            held.set()
            release.wait(10)

    thread = threading.Thread(target=busy_writer)
    thread.start()
    assert held.wait(10)
    try:
        with pytest.raises(IndexBusyError):
            updater.add({"late": "virus"})
        assert "late" not in updater and searcher.search("virus", k=5)[0]  # searches never wait for writers
    finally:
        release.set()
        thread.join(10)
    assert updater.add({"late": "virus"}) == ["late"]
