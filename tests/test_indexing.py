from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from colbert import ColBERTConfig, Indexer, Run, RunConfig
from colbert.errors import IndexExistsError
from colbert.index import format as index_format
from colbert.indexing import plan as index_plan
from colbert.index.codec import ResidualCodec
from colbert.indexing.plan import make_plan, num_partitions_for
from colbert.modeling.checkpoint import Checkpoint
from colbert.index.loaded import LoadedIndex

WORDS = "protein cell gene cancer therapy immune virus brain heart blood drug trial risk patient mouse".split()


def texts(n: int, seed: int = 0) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    return [" ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (int(l),), generator=g))
            for l in torch.randint(3, 30, (n,), generator=g)]


def build(checkpoint: Path, root: Path, collection, name: str = "idx", overwrite=False, **config) -> Path:
    with Run().context(RunConfig(nranks=config.pop("nranks", 1), root=str(root), experiment="test")):
        indexer = Indexer(str(checkpoint), config=ColBERTConfig(**{"nbits": 2, **config}), verbose=0)
        return Path(indexer.index(name, collection, overwrite=overwrite))


def test_index_layout_is_the_references(tiny_checkpoint, tmp_path):
    path = build(tiny_checkpoint, tmp_path, texts(40))
    names = {p.name for p in path.iterdir()}
    assert names == {"plan.json", "metadata.json", "centroids.pt", "buckets.pt", "avg_residual.pt", "ivf.pid.pt",
                     "0.codes.pt", "0.residuals.pt", "doclens.0.json", "0.metadata.json"}
    meta = json.loads((path / "metadata.json").read_text())
    assert list(meta) == ["config", "num_chunks", "num_partitions", "num_embeddings", "avg_doclen"]
    assert meta["num_partitions"] == num_partitions_for(meta["num_embeddings"])
    centroids = torch.load(path / "centroids.pt")
    assert centroids.dtype == torch.float16 and centroids.shape == (meta["num_partitions"], 16)
    cutoffs, weights = torch.load(path / "buckets.pt")
    assert cutoffs.shape == (3,) and weights.shape == (4,) and torch.all(cutoffs[1:] >= cutoffs[:-1])
    residuals = torch.load(path / "0.residuals.pt")
    assert residuals.dtype == torch.uint8 and residuals.shape == (meta["num_embeddings"], 16 * 2 // 8)
    assert torch.load(path / "0.codes.pt").dtype == torch.int32
    index = LoadedIndex.open(path)
    assert index.num_passages == 40 and index.doc_ids is None


@pytest.mark.parametrize("nbits", [1, 2, 4])
def test_decompressed_embeddings_approximate_the_originals(tiny_checkpoint, tmp_path, nbits):
    docs = texts(60, seed=nbits)
    path = build(tiny_checkpoint, tmp_path, docs, nbits=nbits, amp=False)  # fp32 encoding: compare like with like
    index = LoadedIndex.open(path)
    original, doclens = Checkpoint(str(tiny_checkpoint), verbose=0).docFromText(docs, keep_dims="flatten")
    assert index.doclens.tolist() == doclens
    codes, residuals, _ = index.lookup(torch.arange(len(docs)))
    codec = index.codec
    cosine = (codec.decompress(codes, residuals) * original).sum(-1).mean()
    centroid_only = (index.centroids.float()[codes.long()] * original).sum(-1).mean()
    assert cosine > {1: 0.85, 2: 0.9, 4: 0.95}[nbits]
    assert cosine > centroid_only  # the residuals carry information


def test_string_ids_are_kept_in_the_index(tiny_checkpoint, tmp_path):
    collection = {f"doc-{i}": t for i, t in enumerate(texts(25))}
    path = build(tiny_checkpoint, tmp_path, collection)
    index = LoadedIndex.open(path)
    assert index.doc_ids == list(collection) and index.pid_of("doc-7") == 7


def test_tsv_with_string_ids(tiny_checkpoint, tmp_path):
    tsv = tmp_path / "c.tsv"
    tsv.write_text("".join(f"d{i}\t{t}\n" for i, t in enumerate(texts(20))))
    index = LoadedIndex.open(build(tiny_checkpoint, tmp_path, str(tsv)))
    assert index.doc_ids[:2] == ["d0", "d1"]


def test_overwrite_policies(tiny_checkpoint, tmp_path):
    path = build(tiny_checkpoint, tmp_path, texts(20))
    before = (path / "0.codes.pt").stat().st_mtime_ns
    with pytest.raises(IndexExistsError, match="overwrite=True"):
        build(tiny_checkpoint, tmp_path, texts(20))
    build(tiny_checkpoint, tmp_path, texts(30), overwrite="reuse")
    assert (path / "0.codes.pt").stat().st_mtime_ns == before and LoadedIndex.open(path).num_passages == 20
    build(tiny_checkpoint, tmp_path, texts(30), overwrite=True)
    assert LoadedIndex.open(path).num_passages == 30
    assert not any(p.name.startswith(".") for p in path.parent.iterdir())  # no staging or old folders left


def test_a_failed_rebuild_keeps_the_old_index(tiny_checkpoint, tmp_path, monkeypatch):
    path = build(tiny_checkpoint, tmp_path, texts(20))
    import colbert.indexing as indexing

    monkeypatch.setattr(indexing, "_finalize", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        build(tiny_checkpoint, tmp_path, texts(30), overwrite=True)
    assert LoadedIndex.open(path).num_passages == 20


def test_resume_continues_from_the_last_complete_chunk(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(index_plan, "CHUNK_EMBEDDINGS_BUDGET", 16 * 64)  # 16 passages a chunk at doc_maxlen 64
    docs = texts(50)
    import colbert.indexing as indexing

    real = indexing._compress_chunk
    calls = []

    def crash_on_third(index_dir, k, *args):
        calls.append(k)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        real(index_dir, k, *args)

    monkeypatch.setattr(indexing, "_compress_chunk", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        build(tiny_checkpoint, tmp_path, docs)
    monkeypatch.setattr(indexing, "_compress_chunk", real)
    encoded = []
    real_encode = indexing.encode_passages
    monkeypatch.setattr(indexing, "encode_passages", lambda ckpt, p, *a, **k: encoded.append(len(p)) or
                        real_encode(ckpt, p, *a, **k))
    path = build(tiny_checkpoint, tmp_path, docs, overwrite="resume")
    assert encoded == []  # every chunk was encoded before the crash: nothing is encoded twice
    resumed = LoadedIndex.open(path)
    assert resumed.config.nbits == 2 and resumed.num_passages == 50 and len(resumed.metadata) >= 1
    fresh = LoadedIndex.open(build(tiny_checkpoint, tmp_path, docs, name="fresh"))
    assert torch.equal(resumed.codes, fresh.codes) and torch.equal(resumed.ivf, fresh.ivf)


def test_resume_on_a_complete_index_saves_it_again_as_colbert_ai_does(tiny_checkpoint, tmp_path, monkeypatch):
    """colbert-ai's resumed build finds the plan, the codec and every chunk written, so it only finalizes again:
    offsets, IVF and metadata.json (with the current settings) are derived anew. Nothing is encoded."""
    import colbert.indexing as indexing

    docs = texts(30)
    path = build(tiny_checkpoint, tmp_path, docs)
    before, codes_inode = LoadedIndex.open(path), (path / "0.codes.pt").stat().st_ino
    monkeypatch.setattr(indexing, "encode_passages", lambda *a, **k: pytest.fail("a complete index was re-encoded"))
    assert build(tiny_checkpoint, tmp_path, docs, overwrite="resume", index_bsize=7) == path
    config = json.loads((path / "metadata.json").read_text())["config"]
    assert (config["resume"], config["index_bsize"], config["bsize"]) == (True, 7, 64)  # this call's settings
    after = LoadedIndex.open(path)
    assert torch.equal(after.codes, before.codes) and torch.equal(after.ivf, before.ivf)
    assert after.doclens.tolist() == before.doclens.tolist()
    assert (path / "0.codes.pt").stat().st_ino == codes_inode  # the chunks are hard-linked into the new version
    assert not any(p.name.startswith(".") for p in path.parent.iterdir())


@pytest.mark.parametrize("change", [{"docs": 31}, {"nbits": 1}])
def test_resume_on_a_complete_index_refuses_another_collection_or_nbits(tiny_checkpoint, tmp_path, change):
    path = build(tiny_checkpoint, tmp_path, texts(30))
    metadata = (path / "metadata.json").read_bytes()
    with pytest.raises(ValueError, match="saves it again from its chunks, but"):
        build(tiny_checkpoint, tmp_path, texts(change.get("docs", 30)), overwrite="resume",
              nbits=change.get("nbits", 2))
    assert (path / "metadata.json").read_bytes() == metadata and LoadedIndex.open(path).num_passages == 30


def test_resume_continues_an_interrupted_rebuild_beside_a_complete_index(tiny_checkpoint, tmp_path, monkeypatch):
    import colbert.indexing as indexing

    path = build(tiny_checkpoint, tmp_path, texts(20))
    monkeypatch.setattr(indexing, "_finalize", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt("killed")))
    with pytest.raises(KeyboardInterrupt):
        build(tiny_checkpoint, tmp_path, texts(40), overwrite=True)
    assert LoadedIndex.open(path).num_passages == 20  # the old index still serves
    monkeypatch.undo()
    build(tiny_checkpoint, tmp_path, texts(40), overwrite="resume")  # as in colbert-ai: the rebuild goes on
    assert LoadedIndex.open(path).num_passages == 40


def test_small_read_windows_build_the_same_index(tiny_checkpoint, tmp_path, monkeypatch):
    import colbert.indexing as indexing

    monkeypatch.setattr(index_plan, "CHUNK_EMBEDDINGS_BUDGET", 16 * 64)  # several chunks
    docs = texts(60)
    whole = LoadedIndex.open(build(tiny_checkpoint, tmp_path, docs, name="whole"))
    monkeypatch.setattr(indexing, "READ_WINDOW", 7)  # sample and compression read 7 embeddings at a time
    windowed = LoadedIndex.open(build(tiny_checkpoint, tmp_path, docs, name="windowed"))
    assert torch.equal(whole.centroids, windowed.centroids)
    assert torch.equal(whole.codes, windowed.codes) and torch.equal(whole.ivf, windowed.ivf)
    assert torch.equal(torch.cat(whole.residual_chunks), torch.cat(windowed.residual_chunks))


@pytest.mark.parametrize("bad", [{"nbits": 3}, {"nbits": 8}])
def test_bad_nbits(tiny_checkpoint, tmp_path, bad):
    with pytest.raises(ValueError, match="nbits must be one of 1, 2, 4"):  # refused by the config, before any work
        build(tiny_checkpoint, tmp_path, texts(10), **bad)


# "" builds in index_root itself and "a/b" or an absolute path are joined to it (the reference's rules,
# tests/test_locations.py); what would escape it or collide with the hidden build folders is refused.
@pytest.mark.parametrize("name", ["../x", "a/../b", "a/./b", ".hidden", "a/.hidden"])
def test_index_names_that_escape_or_hide_are_refused(tiny_checkpoint, tmp_path, name):
    with pytest.raises(ValueError, match="parts are not '.' or '..' and whose last part does not start with '.'"):
        build(tiny_checkpoint, tmp_path, texts(5), name=name)
    assert not (tmp_path / "test").exists()  # nothing was written


def test_empty_collection_and_bad_items(tiny_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="empty"):
        build(tiny_checkpoint, tmp_path, [])
    with pytest.raises(TypeError, match="passage 1"):
        build(tiny_checkpoint, tmp_path, ["fine", None])


def test_duplicate_ids_in_a_tsv_are_refused(tiny_checkpoint, tmp_path):
    tsv = tmp_path / "dup.tsv"
    tsv.write_text("a\tone\nb\ttwo\na\tthree\n")
    with pytest.raises(ValueError, match="repeated"):
        build(tiny_checkpoint, tmp_path, str(tsv))


def test_bad_overwrite_value(tiny_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="overwrite must be one of"):
        build(tiny_checkpoint, tmp_path, texts(5), overwrite="yes")


def test_plan_follows_the_reference_formulas():
    plan = make_plan(5183, nranks=1, doc_maxlen=180)
    assert len(plan.sampled_pids) == 5183 and plan.num_chunks == 1
    big = make_plan(1_000_000, nranks=2, doc_maxlen=180)
    assert len(big.sampled_pids) == 1 + int(16 * (120 * 1_000_000) ** 0.5)
    assert big.chunksize * 180 <= index_plan.CHUNK_EMBEDDINGS_BUDGET
    assert num_partitions_for(157_337) == 4096


def test_the_codec_sample_picks_rows_of_the_sampled_passages():
    from colbert import indexing
    from colbert.index.codec import draw_codec_sample

    plan = index_plan.Plan(50, 20, tuple(range(0, 50, 3)))  # 3 chunks, every third passage sampled
    g = torch.Generator().manual_seed(0)
    all_doclens = [torch.randint(1, 6, (end - start,), generator=g).tolist()
                   for start, end in map(plan.chunk_range, range(plan.num_chunks))]
    candidates = []  # brute force: (chunk, row) of every embedding of a sampled passage, in index order
    for k, doclens in enumerate(all_doclens):
        rows = torch.tensor([0] + doclens).cumsum(0).tolist()
        for i, n in enumerate(doclens):
            if plan.chunk_range(k)[0] + i in plan.sampled_pids:
                candidates += [(k, rows[i] + j) for j in range(n)]
    positions = torch.randperm(len(candidates), generator=g)[: len(candidates) // 2].sort().values
    chosen = indexing._select(plan, all_doclens, positions)
    assert [(k, int(r)) for k, rows in enumerate(chosen) for r in rows] == [candidates[p] for p in positions.tolist()]

    sample = draw_codec_sample(100_000, 1_000_000)
    assert sample.num_partitions == num_partitions_for(1_000_000) == 8192
    assert (sample.kmeans.numel(), sample.heldout.numel()) == (95_000, 5_000)  # 5 % held out, the rest clustered
    assert not set(sample.kmeans.tolist()) & set(sample.heldout.tolist())
    assert torch.equal(sample.kmeans, sample.kmeans.sort().values)
    assert draw_codec_sample(300, 300).heldout.numel() == 0  # under 16 held-out points: the buckets use the sample


def test_two_processes_build_the_same_index_as_one(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(index_plan, "CHUNK_EMBEDDINGS_BUDGET", 8 * 64)  # several chunks, dealt to both ranks
    docs = texts(30)
    one = LoadedIndex.open(build(tiny_checkpoint, tmp_path, docs, name="one"))
    two = LoadedIndex.open(build(tiny_checkpoint, tmp_path, docs, name="two", nranks=2))
    assert two.metadata["num_chunks"] == one.metadata["num_chunks"] > 1
    assert torch.equal(one.doclens, two.doclens) and two.num_embeddings == one.num_embeddings
    # Ranks run with one thread each, so float sums may differ in the last bits: codes agree almost everywhere.
    assert (one.codes == two.codes).float().mean() > 0.95


def test_kmeans_leaves_the_callers_random_state_alone():
    import numpy as np

    from colbert.indexing.kmeans import train_centroids

    points = torch.randn(2000, 16).half()
    torch.manual_seed(5)
    np.random.seed(5)
    expected = (torch.rand(3), np.random.rand(3))
    torch.manual_seed(5)
    np.random.seed(5)
    first = train_centroids(points, 32, 2, torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected[0]) and np.array_equal(np.random.rand(3), expected[1])
    assert torch.equal(first, train_centroids(points, 32, 2, torch.device("cpu")))  # seeded: deterministic


@pytest.mark.parametrize("screen", ["int8", "bf16"])
def test_low_precision_screening_picks_the_fp32_nearest_centroid(screen):
    import torch.nn.functional as F

    from colbert.index.assign import choose_screen, int8_matmul_available, nearest_centroids

    if screen == "int8" and not int8_matmul_available():
        pytest.skip("this torch has no int8 CPU matmul (torch._int_mm)")
    assert choose_screen(False) == "exact" and choose_screen(True) == ("int8" if int8_matmul_available() else "bf16")
    g = torch.Generator().manual_seed(0)
    centroids = F.normalize(torch.randn(1024, 32, generator=g), dim=1).half()
    near = centroids.float()[torch.randint(0, 1024, (5000,), generator=g)]
    points = F.normalize(near + 0.15 * torch.randn(5000, 32, generator=g), dim=1)
    exact = nearest_centroids(points, centroids)
    screened = nearest_centroids(points, centroids, screen=screen)
    assert screened.dtype == torch.int32 and torch.equal(screened, exact)  # the screen's slack is a true bound
    assert torch.equal(nearest_centroids(points, centroids, batch=77, screen=screen), exact)  # one shared buffer
    few = centroids[:4]
    assert torch.equal(nearest_centroids(points, few, screen=screen), nearest_centroids(points, few))
    means = centroids.float() * torch.rand(1024, 1, generator=g)  # unnormalised, as in k-means, with its bias
    bias = -0.5 * means.pow(2).sum(dim=1)
    assert torch.equal(nearest_centroids(points, means, screen=screen, bias=bias), nearest_centroids(points, means,
                                                                                                    bias=bias))
    with pytest.raises(ValueError, match="screen must be one of"):
        nearest_centroids(points, centroids, screen="fp8")


def test_int8_scores_stay_within_half_their_slack():
    import torch.nn.functional as F

    from colbert.index.assign import Int8Centroids, int8_matmul_available, int8_score_slack, quantize_rows

    if not int8_matmul_available():
        pytest.skip("this torch has no int8 CPU matmul (torch._int_mm)")
    g = torch.Generator().manual_seed(3)
    centroids = F.normalize(torch.randn(2048, 128, generator=g), dim=1).half().float()
    x = F.normalize(torch.randn(3000, 128, generator=g), dim=1)
    x[0] = 0.0  # an all-zero row: scale 1, no error
    q, scale = quantize_rows(x)
    assert q.dtype == torch.int8 and int(q.abs().max()) <= 127
    assert bool(((x / scale[:, None] - q.float()).abs() <= 0.5 + 2 ** -16).all())
    low = Int8Centroids.of(centroids)
    approx = torch._int_mm(q, low.q.T).float() * (scale * low.scale)[:, None]
    bias = -0.5 * centroids.pow(2).sum(dim=1)
    error = (approx - x @ centroids.T).abs().amax(dim=1)
    slack = int8_score_slack(q, scale, x, low)
    assert bool((2 * error <= slack).all()) and float(slack.mean()) < 0.2  # a bound, and not a vacuous one
    assert bool((int8_score_slack(q, scale, x, low, bias) >= slack).all())


def test_indexing_precision_follows_amp_and_the_cpu(monkeypatch):
    from colbert.infra import device as devices

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert devices.indexing_uses_bf16(ColBERTConfig(), cpu)
    assert not devices.indexing_uses_bf16(ColBERTConfig(amp=False), cpu)
    assert not devices.indexing_uses_bf16(ColBERTConfig(), cuda)  # CUDA has its own fp16 autocast
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    assert not devices.indexing_uses_bf16(ColBERTConfig(), cpu)


def test_a_bf16_index_approximates_the_fp32_embeddings_as_well(tiny_checkpoint, tmp_path, monkeypatch):
    from colbert.indexing.encoder import encode_passages
    from colbert.infra import device as devices

    docs = texts(60, seed=3)
    checkpoint = Checkpoint(str(tiny_checkpoint), verbose=0)
    original, doclens = encode_passages(checkpoint, docs, 16, show_progress=False)
    low, low_doclens = encode_passages(checkpoint, docs, 16, show_progress=False, bf16=True)
    assert low_doclens == doclens and not torch.equal(low, original)  # bf16 autocast did run
    assert (low.float() * original.float()).sum(-1).min() > 0.99

    def cosine(path: Path) -> float:
        index = LoadedIndex.open(path)
        codes, residuals, _ = index.lookup(torch.arange(len(docs)))
        codec = index.codec
        return float((codec.decompress(codes, residuals) * original.float()).sum(-1).mean())

    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    fp32 = cosine(build(tiny_checkpoint, tmp_path, docs, name="fp32", amp=False))
    bf16 = cosine(build(tiny_checkpoint, tmp_path, docs, name="bf16"))
    assert bf16 > fp32 - 0.01


def test_kmeans_in_bf16_is_deterministic_and_as_good():
    import torch.nn.functional as F

    from colbert.indexing.kmeans import train_centroids

    g = torch.Generator().manual_seed(1)
    points = F.normalize(torch.randn(4000, 16, generator=g), dim=1).half()
    fp32 = train_centroids(points, 64, 4, torch.device("cpu"))
    bf16 = train_centroids(points, 64, 4, torch.device("cpu"), bf16=True)
    assert torch.equal(bf16, train_centroids(points, 64, 4, torch.device("cpu"), bf16=True))

    def fit(centroids: torch.Tensor) -> float:
        return float((points.float() @ centroids.float().T).max(dim=1).values.mean())

    assert fit(bf16) > fit(fp32) - 0.01


def test_lloyd_is_fastkmeans_with_exact_assignments():
    import torch.nn.functional as F

    from colbert.indexing.kmeans import _fastkmeans, lloyd

    g = torch.Generator().manual_seed(2)
    centers = F.normalize(torch.randn(40, 24, generator=g), dim=1)
    points = F.normalize(centers.repeat(50, 1) + 0.2 * torch.randn(2000, 24, generator=g), dim=1).half()  # as stored
    ours = lloyd(points, 40, 5, seed=7)
    theirs = _fastkmeans(points, 40, 5, torch.device("cpu"), seed=7)  # fp32 on CPU: the oracle
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)  # same start (randperm of seed 7), same updates
    torch.testing.assert_close(lloyd(points, 40, 5, seed=7, bf16=True), ours, atol=1e-5, rtol=0)  # bf16: same result
    assert not torch.equal(lloyd(points, 40, 5, seed=8), ours)  # the seed matters


def test_lloyd_resets_an_empty_cluster_to_a_point():
    from colbert.indexing.kmeans import lloyd

    points = torch.tensor([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5)  # two distinct points, three centroids
    centroids = lloyd(points, 3, 3, seed=0)
    assert all(any(torch.equal(c, p) for p in points[[0, 5]]) for c in centroids)  # every centroid is a real point


def test_lloyd_streams_points_from_disk_with_the_same_result(tmp_path, monkeypatch):
    from colbert.indexing import kmeans

    monkeypatch.setattr(kmeans, "LLOYD_WINDOW", 14)  # many windows, each updated in blocks of 8, then 6 rows
    monkeypatch.setattr(kmeans, "LLOYD_BLOCK", 8)
    g = torch.Generator().manual_seed(3)
    points = torch.randn(203, 12, generator=g).half()
    points[100:] = points[0]  # many duplicates: some of 64 centroids start equal and end empty, then are reset
    path = tmp_path / "sample.npy"
    index_format.write_rows(path, 203, 12, points.split(50))
    on_disk = index_format.read_rows(path)
    for bf16 in (False, True):
        assert torch.equal(kmeans.lloyd(on_disk, 64, 4, seed=5, bf16=bf16), kmeans.lloyd(points, 64, 4, seed=5, bf16=bf16))
    index = torch.tensor([202, 0, 17, 17, 150, 31])
    assert torch.equal(kmeans._take(on_disk, index), points[index].float())


def test_a_build_leaves_no_build_time_files(tiny_checkpoint, tmp_path, monkeypatch):
    import colbert.indexing as indexing

    real, seen = indexing.train_centroids, []

    def spy(sample, *args, **kwargs):  # k-means is given the sample on disk, not in memory
        seen.append((type(sample).__name__, sorted(p.name for p in sample.path.parent.glob("*.build.*"))))
        return real(sample, *args, **kwargs)

    monkeypatch.setattr(indexing, "train_centroids", spy)
    monkeypatch.setattr(index_plan, "CHUNK_EMBEDDINGS_BUDGET", 16 * 64)
    path = build(tiny_checkpoint, tmp_path, texts(40))
    assert seen[0][0] == "ChunkEmbeddings" and index_format.KMEANS_SAMPLE_FILE in seen[0][1]
    assert not list(Path(path).glob("*.build.*"))


def test_resume_removes_an_earlier_versions_build_files(tiny_checkpoint, tmp_path, monkeypatch):
    import colbert.indexing as indexing

    monkeypatch.setattr(indexing, "_train_codec", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt("killed")))
    with pytest.raises(KeyboardInterrupt):
        build(tiny_checkpoint, tmp_path, texts(20))
    staging = next(p for p in tmp_path.rglob("*") if p.is_dir() and list(p.glob("*.embeddings.build.npy")))
    torch.save(torch.zeros(3, 4), staging / "7.embeddings.build.pt")  # what earlier versions wrote
    monkeypatch.undo()
    path = build(tiny_checkpoint, tmp_path, texts(20), overwrite="resume")
    assert not list(Path(path).glob("*.build.*")) and LoadedIndex.open(path).num_passages == 20


@pytest.mark.gpu
def test_a_gpu_build_clusters_on_the_gpu(tiny_checkpoint, tmp_path, monkeypatch):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    import colbert.indexing as indexing

    real, devices = indexing.train_centroids, []

    def spy(sample, *args, device, **kwargs):
        devices.append(device)
        return real(sample, *args, device=device, **kwargs)

    monkeypatch.setattr(indexing, "train_centroids", spy)
    index = LoadedIndex.open(build(tiny_checkpoint, tmp_path, texts(40)))
    assert devices[0].type == "cuda"  # fastkmeans on the encoder's GPU
    assert index.centroids.shape[0] == index.metadata["num_partitions"] and index.num_passages == 40


@pytest.mark.parametrize("nbits", [1, 2, 4])
def test_codec_fit_in_place_gives_the_same_codec(nbits):
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(nbits)
    centroids = F.normalize(torch.randn(32, 16, generator=g), dim=1).half()
    heldout = F.normalize(torch.randn(500, 16, generator=g), dim=1).half()
    copied = ResidualCodec.fit(centroids, heldout, nbits)
    buffer = heldout.float()
    in_place = ResidualCodec.fit(centroids, buffer, nbits, in_place=True)
    for field in ("bucket_cutoffs", "bucket_weights", "avg_residual"):
        assert torch.equal(getattr(copied, field), getattr(in_place, field)), field
    assert not torch.equal(buffer, heldout.float())  # the buffer became the residuals; the fp16 input is untouched
    quantiles = torch.quantile((heldout.float() - centroids.float()[torch.tensor(
        [int(i) for i in (heldout.float() @ centroids.float().T).argmax(1)])]).flatten(),
        torch.arange(1, 2**nbits) / 2**nbits)
    torch.testing.assert_close(copied.bucket_cutoffs, quantiles, rtol=0, atol=1e-6)  # torch.quantile's values


def test_the_encoder_output_has_a_storage_glibc_always_maps():
    from colbert.indexing.platform import OUTPUT_MIN_BYTES, output_buffer as _output_buffer

    small = _output_buffer(10, 128)
    assert small.shape == (10, 128) and small.dtype == torch.float16 and small.is_contiguous()
    assert small.untyped_storage().nbytes() >= OUTPUT_MIN_BYTES
    big = _output_buffer(200_000, 128)  # past the minimum: exactly its rows
    assert big.untyped_storage().nbytes() == 200_000 * 128 * 2


def test_the_platform_workarounds_change_memory_not_the_vectors(tiny_checkpoint):
    from colbert.indexing.encoder import encode_passages
    from colbert.indexing.platform import Workarounds

    checkpoint = Checkpoint(str(tiny_checkpoint), verbose=0)
    docs = texts(23, seed=5)
    on, on_lens = encode_passages(checkpoint, docs, 8, show_progress=False)
    off, off_lens = encode_passages(checkpoint, docs, 8, show_progress=False, workarounds=Workarounds(enabled=False))
    assert on_lens == off_lens and on.shape == off.shape
    torch.testing.assert_close(on, off, rtol=0, atol=2e-3)  # only the padding of the CPU batches differs
    assert off.untyped_storage().nbytes() == off.numel() * 2  # no 33 MiB reservation when switched off
    assert Workarounds(enabled=False).padded_length(21, 180) is None and Workarounds().padded_length(21, 180) == 24


@pytest.mark.parametrize("enabled", [True, False])
def test_the_config_switches_the_platform_workarounds(tiny_checkpoint, tmp_path, monkeypatch, enabled):
    from colbert.indexing import platform
    from colbert.indexing.encoder import encode_passages

    trims = []
    monkeypatch.setattr(platform, "release_free_memory", lambda: trims.append(1))
    config = ColBERTConfig(platform_workarounds=enabled)
    out, _ = encode_passages(Checkpoint(str(tiny_checkpoint), colbert_config=config, verbose=0), texts(5), 8,
                             show_progress=False)
    assert (out.untyped_storage().nbytes() > out.numel() * 2) == enabled  # the 33 MiB output buffer, or none
    path = build(tiny_checkpoint, tmp_path, texts(30), platform_workarounds=enabled)
    assert bool(trims) == enabled  # the build's malloc_trim calls, or none
    stored = json.loads((path / "metadata.json").read_text())["config"]
    assert "platform_workarounds" not in stored  # a setting of this machine, not of the index
