"""Diverse results (MMR): near-duplicates are spread out, diversity=0 is plain search, search_all agrees with search;
the evidence PLAID's last stage returns is the evidence found from scratch, and every pick of the MMR kernel (native
and its twin) is the greedy one."""

from __future__ import annotations

import pytest
import torch

import colbert.kernels as kernels
from colbert import ColBERTConfig, Indexer, Run, RunConfig, Searcher
from colbert.search import plaid
from colbert.kernels import native, reference
from colbert.search.diversity import candidates_for
from colbert.search.plaid import Evidence
from colbert.search.params import scoring_at_least, search_params

WORDS = "protein cell gene cancer therapy immune virus brain heart blood drug trial risk patient mouse".split()
DUPLICATE = "cancer therapy trial with immune drug for patient risk"
COPIES = {"copy-0", "copy-1", "copy-2", "near-0", "near-1"}
IMPLS = ["reference", pytest.param("native", marks=pytest.mark.native)]


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


def evidence_from_scratch(Q: torch.Tensor, D: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each document's vector that each query vector matches best, document by document. -> (n, Lq, d)"""
    return torch.stack([doc[(doc @ Q.T).argmax(dim=0)] for doc in D.split(lengths.tolist())])


def pair_similarity(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Symmetrised mean MaxSim of A[i] and B[i], as defined. Shapes: (p, Lq, d), (p, Lq, d) -> (p,)"""
    S = A @ B.transpose(1, 2)  # (p, Lq, Lq)
    return 0.5 * (S.amax(dim=2).mean(dim=1) + S.amax(dim=1).mean(dim=1))


def gains(relevance: torch.Tensor, E: torch.Tensor, picked: list[int], diversity: float) -> torch.Tensor:
    """Every document's MMR gain given the picks so far, as defined, on its Lq evidence vectors E (n, Lq, d)."""
    if not picked:
        return relevance.clone()
    closest = torch.stack([pair_similarity(E, E[s].expand_as(E)) for s in picked]).amax(0)  # (n,)
    gain = (1 - diversity) * relevance - diversity * closest
    gain[picked] = float("-inf")
    return gain


def greedy_mmr(relevance: torch.Tensor, E: torch.Tensor, k: int, diversity: float) -> list[int]:
    """MMR as defined: every gain recomputed against every pick, at every step."""
    picked: list[int] = []
    for _ in range(min(k, len(relevance))):
        picked.append(int(gains(relevance, E, picked, diversity).argmax()))
    return picked


def random_evidence(g: torch.Generator, n: int, Lq: int = 6, d: int = 8) -> Evidence:
    """Each document's query vectors match a few vectors of its own (repeats), some documents duplicates."""
    pool = 3
    vectors = torch.nn.functional.normalize(torch.randn(n, pool, d, generator=g), dim=-1)  # (n, pool, d)
    slots = torch.randint(pool, (n, Lq), generator=g)  # (n, Lq) which of its vectors each query vector matched
    vectors[1::7], slots[1::7] = vectors[0], slots[0]  # documents 1, 8, ... duplicate document 0
    vectors, index = vectors.reshape(n * pool, d), torch.arange(n)[:, None] * pool + slots  # (n * pool, d), (n, Lq)
    used, index = torch.unique(index, return_inverse=True)  # only the vectors some query vector matched
    return Evidence(vectors[used], index)


def mmr_by(impl: str):
    """kernels.mmr through its twin, or its native kernel (skipped when not loaded)."""
    if impl == "reference":
        return reference.mmr
    if not native.load().native[("mmr", "cpu")]:
        pytest.skip(f"no native mmr: {native.load().reasons[('mmr', 'cpu')]}")
    return kernels.mmr


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("seed", range(12))
def test_mmr_makes_the_greedy_pick_at_every_step(impl, seed):
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 60, (1,), generator=g))
    evidence = random_evidence(g, n)
    E, relevance = evidence.dense(), torch.rand(n, generator=g)
    assert evidence.vectors.size(0) < E.size(0) * E.size(1)  # some vectors serve several query vectors
    for diversity in (0.0, 0.3, 0.5, 0.9, 1.0):
        for k in (0, 1, 5, 12, n + 3):
            picked = mmr_by(impl)(relevance, evidence.vectors, evidence.index, k, diversity).tolist()
            assert len(picked) == min(k, n) == len(set(picked))
            for step, pick in enumerate(picked):  # its gain is the best (up to float rounding: duplicates tie)
                gain = gains(relevance, E, picked[:step], diversity)
                assert float(gain[pick]) >= float(gain.max()) - 1e-6


@pytest.mark.native
def test_native_mmr_picks_what_its_twin_picks():
    mmr = mmr_by("native")
    g = torch.Generator().manual_seed(7)
    for n, Lq, d in ((100, 32, 128), (37, 5, 96), (1, 3, 64)):
        vectors = torch.nn.functional.normalize(torch.randn(n * 4, d, generator=g), dim=-1)  # (4n, d)
        index = torch.arange(n)[:, None] * 4 + torch.randint(4, (n, Lq), generator=g)  # (n, Lq)
        relevance = torch.rand(n, generator=g)
        for diversity in (0.2, 0.5, 1.0):
            assert mmr(relevance, vectors, index, 10, diversity).tolist() == reference.mmr(
                relevance, vectors, index, 10, diversity).tolist()


def test_mmr_refuses_misuse():
    vectors, index = torch.eye(3), torch.tensor([[0, 1], [2, 2]])
    with pytest.raises(IndexError, match="3 vectors"):
        kernels.mmr(torch.rand(2), vectors, index + 1, 2, 0.5)
    with pytest.raises(ValueError, match="index has 2 rows"):
        kernels.mmr(torch.rand(3), vectors, index, 2, 0.5)
    with pytest.raises(ValueError, match="diversity"):
        kernels.mmr(torch.rand(2), vectors, index, 2, 1.5)


def test_last_stage_evidence_is_the_evidence_from_scratch(searcher, Q):
    view = searcher.ranker
    pids = torch.arange(view.num_passages)
    codes, packed, lengths = view.gather(pids)
    D = kernels.decompress_residuals(codes, packed, view.centroids, view.bucket_weights, view.nbits)
    expected = evidence_from_scratch(Q, D, lengths)  # (n, Lq, d)
    evidence = plaid.evidence(view, Q, pids)
    torch.testing.assert_close(evidence.dense(), expected)
    for doc in range(len(pids)):  # each document's distinct matched vectors are stored once
        assert len(torch.unique(evidence.index[doc])) == len(torch.unique(expected[doc], dim=0))
    ranked, scores, evidence = plaid.rank_with_evidence(view, Q, pids, 20)
    plain_pids, plain_scores = plaid.rank(view, Q, pids, 20)
    assert torch.equal(ranked, plain_pids) and torch.equal(scores, plain_scores)  # the same scores, bit for bit
    torch.testing.assert_close(evidence.dense(), expected[ranked])


EVEN = [f"doc-{i}" for i in range(0, 40, 2)] + sorted(COPIES)  # half the documents and every copy


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("filtered", [False, True])
def test_diverse_search_is_greedy_mmr_over_the_candidates_of_ks_settings(searcher, Q, k, filtered):
    view = searcher.ranker
    keep = searcher.pids_of(EVEN)
    filter_fn = (lambda pids: keep[torch.isin(keep, pids.long())]) if filtered else None
    params = scoring_at_least(search_params(k, searcher.config), candidates_for(k))
    pids, scores = plaid.plaid_search(view, Q, params, candidates_for(k), searcher.config.query_maxlen, filter_fn)
    codes, packed, lengths = view.gather(pids)
    D = kernels.decompress_residuals(codes, packed, view.centroids, view.bucket_weights, view.nbits)
    picked = greedy_mmr(scores / Q.size(0), evidence_from_scratch(Q, D, lengths), k, 0.6)
    ids, _, got = searcher.dense_search(Q, k=k, diversity=0.6, filter_fn=filter_fn)
    assert ids == [searcher.loaded.doc_ids[p] for p in pids[picked].tolist()]
    assert got == scores[picked].tolist()
    assert len({"copy-0", "copy-1", "copy-2"} & set(ids)) == 1  # exact copies: one stands for all
    assert not filtered or set(ids) <= set(EVEN)


def test_near_duplicates_are_spread_out_among_an_allow_list(searcher, Q):
    plain, _, _ = searcher.dense_search(Q, k=5, pids=EVEN)
    diverse, _, _ = searcher.dense_search(Q, k=5, diversity=0.5, pids=EVEN)
    assert set(plain) == COPIES and diverse[0] in {"copy-0", "copy-1", "copy-2"}  # equal scores: either is first
    assert len({"copy-0", "copy-1", "copy-2"} & set(diverse)) == 1 and len(COPIES & set(diverse)) <= 2
    assert set(diverse) <= set(EVEN)


def test_mmr_with_full_diversity_still_starts_with_the_best():
    index = torch.arange(3)[:, None].repeat(1, 2)  # three unrelated documents, Lq = 2
    assert kernels.mmr(torch.tensor([0.2, 0.9, 0.5]), torch.eye(3), index, 3, 1.0).tolist()[0] == 1
    assert candidates_for(10) == 100 and candidates_for(500) == 1000
