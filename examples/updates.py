"""Keep an index current: add and remove passages, persist them in one atomic commit, search the result.

    python examples/updates.py

Builds an index of half the shipped corpus, adds a new passage with its own id, removes another, persists, and
shows that a fresh Searcher sees both changes (no rebuild, no re-encoding of the old passages).
"""

from __future__ import annotations

import tempfile

from colbert import ColBERTConfig, Indexer, IndexUpdater, Run, RunConfig, Searcher
from colbert.demo import default_checkpoint, demo_corpus

NEW_ID = "faq#gpu"
NEW_TEXT = ("Searching on a GPU: pass ColBERTConfig(gpus=1) to the Searcher; the index is then read into GPU memory "
            "instead of being memory-mapped.")


def main() -> None:
    corpus = demo_corpus()
    first_half = dict(list(corpus.items())[: len(corpus) // 2])
    removed = next(iter(first_half))
    with tempfile.TemporaryDirectory() as root, Run().context(RunConfig(nranks=1, root=root, experiment="updates")):
        checkpoint = default_checkpoint()[0]
        Indexer(checkpoint=checkpoint, config=ColBERTConfig(nbits=2, doc_maxlen=180), verbose=0).index(
            name="docs", collection=first_half, overwrite=True)
        searcher = Searcher(index="docs", verbose=0)
        updater = IndexUpdater(config=searcher.config, searcher=searcher)
        updater.add({NEW_ID: NEW_TEXT})
        updater.remove([removed])
        updater.persist_to_disk()  # one atomic commit: readers see the old index or the new one, never half

        fresh = Searcher(index="docs", verbose=0)
        ids, _, _ = fresh.search("How do I search on a GPU?", k=3)
        print(f"{fresh.loaded.num_passages} passages after adding {NEW_ID!r} and removing {removed!r}")
        print(f"top 3 for 'How do I search on a GPU?': {ids}")
        everything = fresh.search(corpus[removed], k=len(first_half))[0]
        own = fresh.search(NEW_TEXT, k=1)[0]
        print(f"{removed!r} still found: {removed in everything}; {NEW_ID!r} found by its own text: {own == [NEW_ID]}")


if __name__ == "__main__":
    main()
