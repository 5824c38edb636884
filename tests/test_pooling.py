"""Token pooling: the reference's semantics (Ward clusters of rows of the similarity matrix), in docFromText, the
Indexer and the IndexUpdater."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from colbert import ColBERTConfig, IndexUpdater, Indexer, Run, RunConfig, Searcher
from colbert.modeling.checkpoint import Checkpoint
from colbert.modeling.pooling import pool_documents, pooled_length, row_distances
from colbert.search.index import LoadedIndex

scipy_hierarchy = pytest.importorskip("scipy.cluster.hierarchy", reason="pooling clusters with scipy")

WORDS = "protein cell gene cancer therapy immune virus brain heart blood drug trial risk patient mouse".split()


def texts(n: int, seed: int = 0) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    return [" ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (int(l),), generator=g))
            for l in torch.randint(3, 30, (n,), generator=g)]


def reference_pool(E: Tensor, doclens: list[int], pool_factor: int, protected: int):
    """The reference's recipe written out plainly: scipy on the (n, n) matrix 1 - S as observations."""
    out, lens = [], []
    for doc in E.split(doclens):
        kept, body = doc[:protected], doc[protected:]
        clusters = max(1, doc.size(0) // pool_factor)
        if body.size(0) <= clusters:
            pooled = [body]
        else:
            Z = scipy_hierarchy.linkage(1 - (body @ body.T).double().numpy(), metric="euclidean", method="ward")
            labels = scipy_hierarchy.fcluster(Z, t=clusters, criterion="maxclust")
            pooled = [body[torch.from_numpy(labels == c)].mean(0, keepdim=True) for c in range(1, clusters + 1)
                      if (labels == c).any()]
        out.append(torch.cat([*pooled, kept]))
        lens.append(out[-1].size(0))
    return torch.cat(out), lens


def unit_vectors(lengths: list[int], d: int = 16, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(sum(lengths), d, generator=g), dim=-1)


@pytest.mark.parametrize("pool_factor, protected", [(2, 0), (3, 0), (2, 1), (4, 3)])
@pytest.mark.filterwarnings("ignore:The symmetric non-negative hollow")
def test_pooling_equals_the_references_recipe(pool_factor, protected):
    lengths = [1, 2, 3, 5, 17, 40, 64, 9]
    E = unit_vectors(lengths, seed=pool_factor + protected)
    pooled, lens = pool_documents(E, lengths, pool_factor, protected)
    expected, expected_lens = reference_pool(E, lengths, pool_factor, protected)
    assert lens == expected_lens == [pooled_length(n, pool_factor, protected) for n in lengths]
    torch.testing.assert_close(pooled, expected, atol=1e-6, rtol=1e-6)


def test_row_distances_are_scipys():
    from scipy.spatial.distance import cdist

    E = unit_vectors([12]).double()
    S = E @ E.T
    torch.testing.assert_close(row_distances(E[None])[0], torch.from_numpy(cdist(S.numpy(), S.numpy())))


def test_pooling_merges_repeated_tokens_first():
    base = unit_vectors([3], d=8, seed=1)
    doc = base[torch.tensor([0, 1, 2, 2, 0, 1])]  # 6 vectors, 3 distinct: 3 clusters are exactly the repeats
    pooled, lens = pool_documents(doc, [6], pool_factor=2)
    assert lens == [3]
    cosines = pooled @ base.T  # (3, 3): each pooled vector is one base vector
    assert torch.allclose(cosines.amax(dim=1), torch.ones(3), atol=1e-6)
    assert sorted(cosines.argmax(dim=1).tolist()) == [0, 1, 2]


def test_docfromtext_pools_and_refuses_what_it_cannot(tiny_checkpoint):
    ckpt = Checkpoint(str(tiny_checkpoint), verbose=0)
    docs = texts(12)
    D, doclens = ckpt.docFromText(docs, keep_dims="flatten")
    P, pooled_lens = ckpt.docFromText(docs, keep_dims="flatten", pool_factor=2, protected_tokens=1)
    assert pooled_lens == [pooled_length(n, 2, 1) for n in doclens]
    torch.testing.assert_close(P, pool_documents(D, doclens, 2, 1)[0])
    per_doc = ckpt.docFromText(docs, keep_dims=False, pool_factor=3)
    assert [d.size(0) for d in per_doc] == [pooled_length(n, 3, 0) for n in doclens]
    with pytest.raises(ValueError, match="keep_dims='flatten'"):
        ckpt.docFromText(docs, pool_factor=2)
    with pytest.raises(ValueError, match="pool_factor"):
        ckpt.docFromText(docs, keep_dims="flatten", pool_factor=0)
    with pytest.raises(ValueError, match="clustering_mode"):
        ckpt.docFromText(docs, keep_dims="flatten", pool_factor=2, clustering_mode="kmeans")


def build(checkpoint: Path, root: Path, collection, **config) -> Path:
    with Run().context(RunConfig(root=str(root), experiment="test")):
        indexer = Indexer(str(checkpoint), config=ColBERTConfig(nbits=2, **config), verbose=0)
        return Path(indexer.index("idx", collection))


def test_a_pooled_index_holds_the_pooled_vectors_and_searches(tiny_checkpoint, tmp_path):
    docs = texts(50)
    path = build(tiny_checkpoint, tmp_path / "p", docs, pool_factor=2, protected_tokens=1)
    plain = build(tiny_checkpoint, tmp_path / "u", docs)
    index, unpooled = LoadedIndex.open(path), LoadedIndex.open(plain)
    expected = [pooled_length(n, 2, 1) for n in unpooled.doclens.tolist()]
    assert index.doclens.tolist() == expected
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["num_embeddings"] == sum(expected) and meta["config"]["pool_factor"] == 2
    searcher = Searcher(str(path), verbose=0)
    ids, _, _ = searcher.search(docs[7], k=5)
    assert 7 in ids


def test_the_updater_pools_added_passages_as_the_index_was_pooled(tiny_checkpoint, tmp_path):
    path = build(tiny_checkpoint, tmp_path, texts(40), pool_factor=3)
    updater = IndexUpdater(searcher=str(path), checkpoint=str(tiny_checkpoint))
    new = texts(5, seed=9)
    updater.add(new)
    updater.persist_to_disk()
    _, doclens = Checkpoint(str(tiny_checkpoint), verbose=0).docFromText(new, keep_dims="flatten")
    assert LoadedIndex.open(path).doclens[-5:].tolist() == [pooled_length(n, 3, 0) for n in doclens]


def test_bad_pooling_settings_are_refused_before_any_work(tiny_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="clustering_mode"):
        build(tiny_checkpoint, tmp_path, texts(10), pool_factor=2, clustering_mode="spectral")
    assert not (tmp_path / "test" / "indexes" / "idx").exists()
