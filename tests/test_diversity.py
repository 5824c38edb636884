"""Diverse results (MMR): near-duplicates are spread out, diversity=0 is plain search, search_all agrees with search."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from colbert import ColBERTConfig, Indexer, Run, RunConfig, Searcher
from colbert.search.diversity import candidates_for, evidence, mmr, similarity_to

WORDS = "protein cell gene cancer therapy immune virus brain heart blood drug trial risk patient mouse".split()
DUPLICATE = "cancer therapy trial with immune drug for patient risk"
COPIES = {"copy-0", "copy-1", "copy-2", "near-0", "near-1"}


def texts(n: int, seed: int = 0) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    return [" ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (int(l),), generator=g))
            for l in torch.randint(3, 30, (n,), generator=g)]


@pytest.fixture(scope="module")
def searcher(_tiny_checkpoint_master, tmp_path_factory) -> Searcher:
    collection = {f"doc-{i}": text for i, text in enumerate(texts(40))}
    collection.update({f"copy-{j}": DUPLICATE for j in range(3)})  # exact copies
    collection.update({f"near-{j}": f"{DUPLICATE} {WORDS[j]}" for j in range(2)})  # one word more
    with Run().context(RunConfig(root=str(tmp_path_factory.mktemp("mmr")), experiment="test")):
        path = Indexer(str(_tiny_checkpoint_master), config=ColBERTConfig(nbits=2), verbose=0).index("m", collection)
    return Searcher(path, verbose=0)


@pytest.fixture(scope="module")
def Q(searcher) -> torch.Tensor:
    """A query that the copies answer best: the duplicated text's own vectors (the tiny model is random)."""
    return searcher.checkpoint.docFromText([DUPLICATE], keep_dims=False)[0].float()


@pytest.mark.parametrize("exact", [False, True])
def test_near_duplicates_are_spread_out(searcher, Q, exact):
    plain, _, _ = searcher.dense_search(Q, k=5, exact=exact)
    assert set(plain) == COPIES  # without diversity the five copies fill the top 5
    diverse, ranks, scores = searcher.dense_search(Q, k=5, diversity=0.5, exact=exact)
    assert diverse[0] == plain[0] and ranks == [1, 2, 3, 4, 5]
    assert len(COPIES & set(diverse)) == 1  # one copy stands for them all
    assert len(set(diverse)) == 5


def test_no_diversity_is_plain_search(searcher, Q):
    for exact in (False, True):
        assert searcher.dense_search(Q, k=7, exact=exact) == searcher.dense_search(Q, k=7, exact=exact, diversity=0)
    assert searcher.search("immune virus", k=4) == searcher.search("immune virus", k=4, diversity=0.0)


@pytest.mark.parametrize("exact", [False, True])
def test_search_all_diversifies_each_query_as_search_does(searcher, exact):
    queries = {"a": "cancer therapy trial", "b": "immune virus brain", "c": DUPLICATE}
    ranking = searcher.search_all(queries, k=4, diversity=0.7, exact=exact)
    for qid, text in queries.items():
        ids, ranks, scores = searcher.search(text, k=4, diversity=0.7, exact=exact)
        got = ranking.data[qid]
        assert [d for d, _, _ in got] == ids and [r for _, r, _ in got] == ranks
        assert [s for _, _, s in got] == pytest.approx(scores, rel=1e-5)


@pytest.mark.parametrize("bad", [-0.1, 1.5, "0.5", True, None])
def test_bad_diversity_is_refused(searcher, bad):
    with pytest.raises(ValueError, match="diversity"):
        searcher.search("immune virus", k=3, diversity=bad)


def test_evidence_and_similarity_are_maxsim_terms():
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([3, 1, 5])
    D = torch.nn.functional.normalize(torch.randn(9, 8, generator=g), dim=-1)
    Q = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1)
    E = evidence(Q, D, lengths)
    for doc, vectors in enumerate(D.split(lengths.tolist())):
        torch.testing.assert_close(E[doc], vectors[(vectors @ Q.T).argmax(dim=0)])
        torch.testing.assert_close((E[doc] * Q).sum(-1), (vectors @ Q.T).amax(dim=0))  # the MaxSim terms
    sims = similarity_to(E, 2)
    for doc in range(3):
        S = E[doc] @ E[2].T
        torch.testing.assert_close(sims[doc], 0.5 * (S.amax(1).mean() + S.amax(0).mean()))
    torch.testing.assert_close(sims[2], torch.tensor(1.0))


def test_mmr_with_full_diversity_still_starts_with_the_best():
    E = torch.eye(3)[:, None, :].repeat(1, 2, 1)  # (3, 2, 3): three unrelated documents
    assert mmr(torch.tensor([0.2, 0.9, 0.5]), E, 3, 1.0).tolist()[0] == 1
    assert candidates_for(10) == 100 and candidates_for(500) == 1000
