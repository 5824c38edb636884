"""Search on the reference-built index (../shared/compat/index-scifact1k-nbits2) against the reference's results.

The 300 SciFact queries are encoded once per module. Stage results come from plaid_stages.npz, final rankings from
search-k{10,100}.tsv, exhaustive fp32 MaxSim from exact-top100.tsv (see ../shared/compat/README.md).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
import torch

from colbert import Searcher, kernels
from colbert.data import Queries
from colbert.search import candidates, plaid
from colbert.search.params import search_params
from conftest import COMPAT, SCIFACT

pytestmark = pytest.mark.compat

INDEX = COMPAT / "index-scifact1k-nbits2"
SCORE_TOLERANCE = 1e-3  # the README measured 1e-4; the reference's CPU MaxSim also clamps negative maxima at 0
ORDER_TOLERANCE = 1e-5  # stage-3 scores closer than this may come out in either order (GEMM rounding, 2 ulps)


def read_results(path) -> dict[int, list[tuple[int, float]]]:
    """qid -> [(pid, score), ...] in rank order, from a `qid pid doc_id rank score` TSV."""
    out: dict[int, list[tuple[int, float]]] = defaultdict(list)
    with open(path) as f:
        for line in f:
            qid, pid, _, _, score = line.rstrip("\n").split("\t")
            out[int(qid)].append((int(pid), float(score)))
    return out


def ragged(stages, name: str, i: int) -> np.ndarray:
    offsets = stages[f"{name}_offsets"]
    return stages[name][offsets[i]:offsets[i + 1]]


@pytest.fixture(scope="module")
def searcher(minilm_checkpoint) -> Searcher:
    return Searcher(str(INDEX), checkpoint=str(minilm_checkpoint), verbose=0)


@pytest.fixture(scope="module")
def queries() -> Queries:
    return Queries(path=SCIFACT / "queries.tsv")


@pytest.fixture(scope="module")
def encoded(searcher, queries) -> torch.Tensor:
    return searcher.encode(list(queries.values()))  # (300, 32, 128)


@pytest.fixture(scope="module")
def stages():
    return np.load(COMPAT / "plaid_stages.npz")


@pytest.fixture(scope="module")
def rankings(searcher, queries, encoded) -> dict[int, dict[int, list[tuple[int, float]]]]:
    """Our results for k = 10 and 100, per qid, from dense_search on the shared encodings."""
    out = {}
    for k in (10, 100):
        out[k] = {}
        for qid, Q in zip(queries.keys(), encoded):
            pids, ranks, scores = searcher.dense_search(Q[None], k)
            assert ranks == list(range(1, len(pids) + 1))
            out[k][qid] = list(zip(pids, scores))
    return out


def test_the_index_config_and_checkpoint_are_used(searcher):
    assert searcher.config.query_maxlen == 32 and searcher.config.doc_maxlen == 180
    assert searcher.loaded.num_passages == 1000 and searcher.loaded.nbits == 2
    assert searcher.config.ncells is None  # nothing written back by the searches of this module


@pytest.mark.parametrize("k", [10, 100])
def test_top10_equals_the_references(rankings, k):
    expected = read_results(COMPAT / f"search-k{k}.tsv")
    ours = rankings[k]
    assert set(ours) == set(expected) and len(ours) == 300
    same = [qid for qid in ours if {p for p, _ in ours[qid][:10]} == {p for p, _ in expected[qid][:10]}]
    assert len(same) == 300
    for qid in ours:
        theirs = dict(expected[qid])
        for pid, score in ours[qid][:10]:
            assert score == pytest.approx(theirs[pid], abs=SCORE_TOLERANCE)


def test_top100_sets_equal_the_references_up_to_ties(rankings):
    expected = read_results(COMPAT / "search-k100.tsv")
    differing = 0
    for qid, ours in rankings[100].items():
        assert len(ours) == 100
        ours_set, theirs = {p for p, _ in ours}, dict(expected[qid])
        if ours_set != set(theirs):
            differing += 1  # only where rank 100 and 101 are closer than float noise (4 queries in the README)
            boundary = ours[-1][1]
            assert all(abs(theirs[p] - boundary) < 1e-4 for p in set(theirs) - ours_set)
    assert differing <= 4


@pytest.mark.parametrize("k", [10, 100])
def test_plaid_stages_equal_the_references(searcher, encoded, stages, k):
    params = search_params(k, searcher.config)
    index = searcher.ranker
    for i, Q in enumerate(encoded):
        scores = candidates.centroid_scores(index.centroids, Q)
        cells = candidates.probe_cells(scores, params.ncells)
        np.testing.assert_array_equal(cells.numpy(), ragged(stages, f"k{k}_cells", i))
        pids = candidates.ivf_candidates(index.ivf, index.ivf_offsets, cells)
        np.testing.assert_array_equal(pids.numpy(), ragged(stages, f"k{k}_stage1_pids", i))
        survivors = plaid.prune(index, scores, pids.long(), params)
        reference = ragged(stages, f"k{k}_stage23_pids", i)
        assert set(survivors.tolist()) == set(reference.tolist())
        # The reference's order is descending in our stage-3 scores, up to float noise between near-ties.
        approx = kernels.centroid_maxsim(scores, index.codes, index.doc_offsets, torch.from_numpy(reference).long())
        assert torch.all(approx[1:] <= approx[:-1] + ORDER_TOLERANCE)
        final_pids, final_scores = plaid.rank(index, Q, survivors, params.nfinal)
        ours = dict(zip(final_pids.tolist(), final_scores.tolist()))
        for pid, score in zip(ragged(stages, f"k{k}_final_pids", i), ragged(stages, f"k{k}_final_scores", i)):
            assert ours[int(pid)] == pytest.approx(float(score), abs=SCORE_TOLERANCE)


@pytest.mark.parametrize("k, reference_overlap", [(10, 0.77), (100, 0.80)])
def test_overlap_with_exhaustive_fp32_maxsim(rankings, k, reference_overlap):
    exact = read_results(COMPAT / "exact-top100.tsv")
    overlaps = [len({p for p, _ in ours[:10]} & {p for p, _ in exact[qid][:10]}) / 10
                for qid, ours in rankings[k].items()]
    assert np.mean(overlaps) >= reference_overlap - 1e-9


def test_exact_mode_equals_brute_force_over_decompressed_embeddings(searcher, encoded):
    index = searcher.loaded
    codes, packed, lengths = index.lookup(torch.arange(index.num_passages))
    D = kernels.decompress_residuals(codes, packed, index.centroids, index.bucket_weights, index.nbits)  # (N, d)
    for i in range(0, 300, 30):
        expected = kernels.segmented_maxsim(D @ encoded[i].T, lengths).topk(20)
        pids, _, scores = searcher.dense_search(encoded[i][None], 20, exact=True)
        assert pids[:10] == expected.indices[:10].tolist()
        np.testing.assert_allclose(scores, expected.values.numpy(), atol=1e-4)


def test_batched_exact_search_all_equals_one_query_at_a_time(searcher, queries):
    some = {qid: text for qid, text in list(queries.items())[:5]}
    ranking = searcher.search_all(some, k=10, exact=True)
    for qid, text in some.items():
        pids, ranks, scores = searcher.search(text, k=10, exact=True)
        assert [row[0] for row in ranking[qid]] == pids
        np.testing.assert_allclose([row[2] for row in ranking[qid]], scores, atol=1e-5)


def test_allow_list_scores_every_listed_document_exactly(searcher, encoded):
    allowed = list(range(0, 1000, 7))
    pids, _, scores = searcher.dense_search(encoded[0][None], 10, pids=allowed)
    exact_pids, _, exact_scores = searcher.dense_search(encoded[0][None], 1000, exact=True)
    expected = [(p, s) for p, s in zip(exact_pids, exact_scores) if p % 7 == 0][:10]
    assert pids == [p for p, _ in expected]
    np.testing.assert_allclose(scores, [s for _, s in expected], atol=1e-5)
    assert searcher.dense_search(encoded[0][None], 10, pids=torch.tensor(allowed))[0] == pids
    with pytest.raises(ValueError, match="1 of the 3 ids .*: 1000"):
        searcher.dense_search(encoded[0][None], 10, pids=[5, 1000, 7])


def test_filter_fn_runs_before_the_cut_to_k(searcher, encoded):
    unfiltered, _, _ = searcher.dense_search(encoded[3][None], 10)
    banned = torch.tensor(unfiltered, dtype=torch.int32)
    seen = []

    def drop_the_unfiltered_top10(pids: torch.Tensor) -> torch.Tensor:
        seen.append(pids.dtype)
        return pids[~torch.isin(pids, banned)]

    pids, _, _ = searcher.dense_search(encoded[3][None], 10, filter_fn=drop_the_unfiltered_top10)
    assert len(pids) == 10 and not set(pids) & set(unfiltered)
    assert seen == [torch.int32]  # the candidates, as the reference passes them
