"""The on-disk index format (colbert.index.format) and LoadedIndex, on the reference-built compat index."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from unittest.mock import Mock

import numpy as np
import pytest
import torch

from colbert.errors import IndexFormatError
from colbert.index import format as index_format
from colbert.infra.config import ColBERTConfig
from colbert.index.loaded import LoadedIndex

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
COMPAT_INDEX = SHARED / "compat" / "index-scifact1k-nbits2"

pytestmark = pytest.mark.compat


@pytest.fixture(scope="module")
def compat_index() -> Path:
    if not COMPAT_INDEX.is_dir():
        pytest.skip(f"{COMPAT_INDEX} is missing: the reference-built index lives in ../shared beside the checkout")
    return COMPAT_INDEX


@pytest.fixture
def index_copy(compat_index: Path, tmp_path: Path) -> Path:
    """A writable copy of the compat index (the originals are read-only)."""
    out = tmp_path / "index"
    out.mkdir()
    for f in compat_index.iterdir():
        shutil.copyfile(f, out / f.name)
    return out


@pytest.fixture(scope="module")
def loaded(compat_index: Path) -> LoadedIndex:
    return LoadedIndex.open(compat_index)


# ----------------------------------------------------------------------------------------------- reading


def test_reads_the_reference_index(compat_index):
    meta = index_format.read_metadata(compat_index)
    assert (meta["num_chunks"], meta["num_partitions"], meta["num_embeddings"]) == (1, 4096, 157337)
    codec = index_format.read_codec(compat_index, dim=128, nbits=2, num_partitions=4096)
    assert codec.centroids.shape == (4096, 128) and codec.avg_residual.shape == ()
    chunk = index_format.read_chunk(compat_index, 0, dim=128, nbits=2, mmap=True)
    assert chunk.residuals.shape == (157337, 32) and chunk.doclens.sum() == 157337
    ivf, lengths = index_format.read_ivf(compat_index, 4096)
    assert lengths.sum() == 81661 and ivf.numel() == 81812  # the reference pads the IVF with max(lengths) zeros
    assert index_format.read_plan(compat_index)["avg_doclen_est"] == pytest.approx(157.337)
    assert index_format.read_doc_ids(compat_index, 1000) is None
    assert index_format.is_complete(compat_index) and index_format.chunk_is_complete(compat_index, 0)


def test_rewriting_the_reference_index_gives_the_same_files(compat_index, tmp_path):
    meta, plan = index_format.read_metadata(compat_index), index_format.read_plan(compat_index)
    codec = index_format.read_codec(compat_index, 128, 2, 4096)
    chunk = index_format.read_chunk(compat_index, 0, 128, 2)
    index_format.write_plan(tmp_path, plan)
    index_format.write_codec(tmp_path, *codec)
    index_format.write_chunk(tmp_path, 0, chunk.codes, chunk.residuals, chunk.doclens, 0, embedding_offset=0)
    index_format.write_ivf(tmp_path, *index_format.read_ivf(compat_index, 4096))
    index_format.write_metadata(tmp_path, meta)
    for name in ["doclens.0.json", "0.metadata.json"]:  # byte for byte
        assert (tmp_path / name).read_bytes() == (compat_index / name).read_bytes(), name
    for name in ["plan.json", "metadata.json"]:  # same keys in the same order; the reference escapes '/' as '\/'
        ours, theirs = json.loads((tmp_path / name).read_text()), json.loads((compat_index / name).read_text())
        assert ours == theirs and list(ours) == list(theirs) and list(ours["config"]) == list(theirs["config"])
        assert (tmp_path / name).read_text().startswith('{\n    "config": {\n        "query_token_id"')
    for name in ["centroids.pt", "buckets.pt", "avg_residual.pt", "0.codes.pt", "0.residuals.pt", "ivf.pid.pt"]:
        ours, theirs = torch.load(tmp_path / name), torch.load(compat_index / name)
        for a, b in zip(*((x if isinstance(x, tuple) else (x,)) for x in (ours, theirs))):
            assert a.dtype == b.dtype and torch.equal(a, b), name
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    assert LoadedIndex.open(tmp_path, mmap=False).num_embeddings == 157337


def test_write_chunk_of_a_view_saves_only_the_view(tmp_path):
    big = torch.zeros(100_000, dtype=torch.int32)
    index_format.write_chunk(tmp_path, 0, big[:10], torch.zeros(10, 4, dtype=torch.uint8), [4, 6], 0)
    assert (tmp_path / "0.codes.pt").stat().st_size < 4_000
    assert index_format.read_chunk_metadata(tmp_path, 0) == {"passage_offset": 0, "num_passages": 2,
                                                             "num_embeddings": 10}
    assert index_format.chunk_is_complete(tmp_path, 0)


def test_build_time_embeddings_read_back_window_by_window(tmp_path):
    embeddings = torch.randn(1000, 16).half()
    doclens = [300, 1, 699]
    index_format.write_chunk_embeddings(tmp_path, 3, embeddings, doclens)
    stored = index_format.read_chunk_embeddings(tmp_path, 3)
    assert len(stored) == 1000 and stored.doclens == doclens
    windows = list(stored.windows(128))
    assert [start for start, _ in windows] == list(range(0, 1000, 128))
    assert torch.equal(torch.cat([w for _, w in windows]), embeddings)
    assert torch.equal(stored.rows(990, 5000), embeddings[990:]) and stored.rows(1000, 1010).shape == (0, 16)
    index_format.write_chunk_embeddings(tmp_path, 4, embeddings[:10], [10])  # a view: only its rows are written
    assert torch.equal(index_format.read_chunk_embeddings(tmp_path, 4).rows(0, 10), embeddings[:10])
    assert (tmp_path / index_format.embeddings_file(4)).stat().st_size < 10 * 16 * 2 + 200


@pytest.mark.parametrize("damage", ["truncate", "no doclens", "wrong doclens", "no embeddings"])
def test_damaged_build_time_embeddings_read_as_absent(tmp_path, damage):
    index_format.write_chunk_embeddings(tmp_path, 0, torch.randn(10, 4), [4, 6])
    npy, side = tmp_path / index_format.embeddings_file(0), tmp_path / index_format.embeddings_doclens_file(0)
    if damage == "truncate":
        npy.write_bytes(npy.read_bytes()[:-2])
    elif damage == "no doclens":
        side.unlink()
    elif damage == "wrong doclens":
        side.write_text(json.dumps({"shape": [10, 4], "doclens": [4, 5]}))
    else:
        npy.unlink()
    assert index_format.read_chunk_embeddings(tmp_path, 0) is None  # the build encodes that chunk again
    index_format.remove_chunk_embeddings(tmp_path, 0)
    assert not npy.exists() and not side.exists()


def test_rows_are_written_piece_by_piece_and_checked_on_reading(tmp_path):
    rows = torch.randn(70, 8).half()
    path = tmp_path / "rows.npy"
    index_format.write_rows(path, 70, 8, rows.split(32))
    assert np.array_equal(np.load(path), rows.numpy())  # a plain .npy
    stored = index_format.read_rows(path)
    assert stored.shape == (70, 8) and torch.equal(stored.rows(30, 45), rows[30:45])
    with pytest.raises(ValueError, match="to hold 80 rows, but 70"):
        index_format.write_rows(tmp_path / "short.npy", 80, 8, rows.split(32))
    with pytest.raises(ValueError, match="8 columns expected"):
        index_format.write_rows(tmp_path / "wide.npy", 70, 8, [torch.zeros(70, 9)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.npy"]  # nothing half-written left behind
    path.write_bytes(path.read_bytes()[:-1])
    assert index_format.read_rows(path) is None and index_format.read_rows(tmp_path / "absent.npy") is None
    np.save(tmp_path / "f32.npy", np.zeros((3, 8), dtype=np.float32))
    assert index_format.read_rows(tmp_path / "f32.npy") is None


def test_writers_refuse_inconsistent_input(tmp_path):
    with pytest.raises(ValueError, match="doclens sum to 5"):
        index_format.write_chunk(tmp_path, 0, torch.zeros(4, dtype=torch.int32), torch.zeros(4, 4, dtype=torch.uint8),
                                 [2, 3], 0)
    with pytest.raises(ValueError, match="missing \\['avg_doclen'\\]"):
        index_format.write_metadata(tmp_path, {"config": {}, "num_chunks": 1, "num_partitions": 1,
                                               "num_embeddings": 1})
    assert not (tmp_path / "metadata.json").exists()


def test_metadata_accepts_a_config_object(tmp_path):
    meta = {"config": ColBERTConfig(nbits=4), "num_chunks": 0, "num_partitions": 2, "num_embeddings": 0,
            "avg_doclen": 0.0}
    index_format.write_metadata(tmp_path, meta)
    assert index_format.read_metadata(tmp_path)["config"]["nbits"] == 4


# ----------------------------------------------------------------------------------------------- crash safety


def test_interrupted_write_keeps_the_old_index(index_copy, monkeypatch):
    meta = index_format.read_metadata(index_copy)
    before = (index_copy / "metadata.json").read_bytes()
    monkeypatch.setattr(os, "replace", Mock(side_effect=OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        index_format.write_metadata(index_copy, {**meta, "num_embeddings": 1})
    monkeypatch.undo()
    assert (index_copy / "metadata.json").read_bytes() == before
    assert not any(p.name.endswith(".tmp") for p in index_copy.iterdir())
    assert LoadedIndex.open(index_copy).num_passages == 1000  # the old, whole index still opens


def test_completeness_markers_and_removal(index_copy):
    (index_copy / "notes.txt").write_text("mine")
    (index_copy / "documents.jsonl").write_text("")  # stored documents are part of the index
    (index_copy / "0.metadata.json").unlink()
    assert not index_format.chunk_is_complete(index_copy, 0) and not index_format.is_complete(index_copy)
    removed = index_format.remove_index_files(index_copy)
    assert removed[0] == "metadata.json" and "0.residuals.pt" in removed and "doclens.0.json" in removed
    assert [p.name for p in index_copy.iterdir()] == ["notes.txt"]
    assert not index_format.is_complete(index_copy)


# ----------------------------------------------------------------------------------------------- LoadedIndex


def test_loaded_index_exposes_the_index(loaded):
    assert (loaded.num_passages, loaded.num_embeddings, loaded.num_partitions) == (1000, 157337, 4096)
    assert (loaded.nbits, loaded.dim, loaded.config.doc_maxlen) == (2, 128, 180)
    assert loaded.centroids.dtype == torch.float32 and loaded.codes.dtype == torch.int32  # fp16 on disk, exact
    assert loaded.ivf_offsets[-1] == loaded.ivf_lengths.sum() and loaded.doc_offsets[-1] == 157337
    assert loaded.bucket_cutoffs.shape == (3,) and loaded.bucket_weights.shape == (4,)
    assert loaded.doc_ids is None and loaded.pid_of(7) == 7 and loaded.id_of(999) == 999
    with pytest.raises(KeyError):
        loaded.pid_of(1000)
    # find: pid_of without the KeyError, for the server's many ids
    assert loaded.find(7) == 7 and loaded.find(1000) is None and loaded.find("7") is None and loaded.find(True) is None
    assert 7 in loaded and 1000 not in loaded and [] not in loaded


def test_mmap_and_ram_loads_agree(compat_index, loaded):
    ram = LoadedIndex.open(compat_index, mmap=False)
    for name in ["centroids", "bucket_cutoffs", "bucket_weights", "avg_residual", "ivf", "ivf_lengths",
                 "ivf_offsets", "doclens", "doc_offsets", "codes", "chunk_offsets"]:
        assert torch.equal(getattr(ram, name), getattr(loaded, name)), name
    assert torch.equal(ram.residual_chunks[0], loaded.residual_chunks[0])


def test_lookup_returns_the_documents_slices(compat_index, loaded):
    codes = torch.load(compat_index / "0.codes.pt")
    residuals = torch.load(compat_index / "0.residuals.pt")
    doclens = json.loads((compat_index / "doclens.0.json").read_text())
    starts = np.cumsum([0] + doclens)
    got_codes, got_residuals, lengths = loaded.lookup(torch.tensor([5, 0, 999]))
    rows = [range(starts[p], starts[p + 1]) for p in (5, 0, 999)]
    rows = torch.tensor([r for rr in rows for r in rr])
    assert lengths.tolist() == [doclens[5], doclens[0], doclens[999]]
    assert torch.equal(got_codes, codes[rows]) and torch.equal(got_residuals, residuals[rows])
    empty = loaded.lookup(torch.tensor([], dtype=torch.int64))
    assert empty[0].numel() == 0 and empty[1].shape == (0, 32)
    with pytest.raises(IndexError, match="1,000"):
        loaded.lookup(torch.tensor([1000]))


def test_lookup_decompresses_to_the_reference_vectors(compat_index, loaded):
    """The README's recipe on what lookup returns gives the reference kernel's output exactly."""
    stages = np.load(COMPAT_INDEX.parent / "plaid_stages.npz")
    codes, packed, lengths = loaded.lookup(torch.from_numpy(stages["decompressed_pids"]).long())
    assert lengths.tolist() == stages["decompressed_doclens"].tolist()
    bits = torch.from_numpy(np.unpackbits(packed.numpy(), axis=1)).long().view(len(packed), 128, 2)  # (n, d, nbits)
    buckets = bits[..., 0] + 2 * bits[..., 1]  # (n, d), the first bit is the least significant
    raw = loaded.centroids[codes.long()].float() + loaded.bucket_weights[buckets]  # (n, d)
    assert torch.equal(raw, torch.from_numpy(stages["decompressed_raw"]))


def test_several_chunks_load_like_one(compat_index, loaded, tmp_path):
    chunk = index_format.read_chunk(compat_index, 0, 128, 2)
    split_pid = 400
    split_emb = int(chunk.doclens[:split_pid].sum())
    for k, (pids, embs) in enumerate([(slice(0, split_pid), slice(0, split_emb)), (slice(split_pid, None),
                                                                                   slice(split_emb, None))]):
        index_format.write_chunk(tmp_path, k, chunk.codes[embs], chunk.residuals[embs], chunk.doclens[pids],
                                 passage_offset=pids.start)
    assert index_format.write_embedding_offsets(tmp_path, 2) == 157337
    assert index_format.read_chunk_metadata(tmp_path, 1)["embedding_offset"] == split_emb
    index_format.write_codec(tmp_path, *index_format.read_codec(compat_index, 128, 2, 4096))
    index_format.write_ivf(tmp_path, *index_format.read_ivf(compat_index, 4096))
    index_format.write_doc_ids(tmp_path, [f"doc{p}" for p in range(1000)])
    index_format.write_metadata(tmp_path, {**index_format.read_metadata(compat_index), "num_chunks": 2})
    pids = torch.tensor([999, split_pid - 1, split_pid, 0, 5])
    for mmap in (True, False):
        two = LoadedIndex.open(tmp_path, mmap=mmap)
        assert len(two.residual_chunks) == (2 if mmap else 1) and torch.equal(two.codes, loaded.codes)
        for a, b in zip(two.lookup(pids), loaded.lookup(pids)):
            assert torch.equal(a, b)
    assert two.pid_of("doc17") == 17 and two.id_of(17) == "doc17"
    assert two.find("doc17") == 17 and two.find("doc1000") is None and two.find(["doc17"]) is None  # unhashable


# ----------------------------------------------------------------------------------------------- broken indexes


def _resave(path: Path, change) -> None:
    torch.save(change(torch.load(path)), path)


def _rejson(path: Path, change) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


BREAKAGES = {
    "missing metadata": ("metadata.json", lambda p: p.unlink()),
    "missing centroids": ("centroids.pt", lambda p: p.unlink()),
    "missing residuals": ("0.residuals.pt", lambda p: p.unlink()),
    "missing doclens": ("doclens.0.json", lambda p: p.unlink()),
    "missing ivf": ("ivf.pid.pt", lambda p: p.unlink()),
    "truncated residuals": ("0.residuals.pt", _truncate),
    "truncated codes": ("0.codes.pt", _truncate),
    "truncated metadata": ("metadata.json", _truncate),
    "garbage centroids": ("centroids.pt", lambda p: p.write_bytes(b"not a tensor at all")),
    "fp32 centroids": ("centroids.pt", lambda p: _resave(p, lambda t: t.float())),
    "int64 codes": ("0.codes.pt", lambda p: _resave(p, lambda t: t.long())),
    "code out of range": ("0.codes.pt", lambda p: _resave(p, lambda t: torch.cat([t[:-1], t.new_tensor([4096])]))),
    "narrow residuals": ("0.residuals.pt", lambda p: _resave(p, lambda t: t[:, :16].clone())),
    "1-bit buckets": ("buckets.pt", lambda p: _resave(p, lambda b: (b[0][:1], b[1][:2]))),
    "short ivf lengths": ("ivf.pid.pt", lambda p: _resave(p, lambda b: (b[0], b[1][:-1]))),
    "ivf pid out of range": ("ivf.pid.pt", lambda p: _resave(p, lambda b: (b[0] + 1000, b[1]))),
    "doclens one short": ("doclens.0.json", lambda p: _rejson(p, lambda d: d[:-1])),
    "chunk metadata count": ("0.metadata.json", lambda p: _rejson(p, lambda d: {**d, "num_embeddings": 5})),
    "chunk passage offset": ("0.metadata.json", lambda p: _rejson(p, lambda d: {**d, "passage_offset": 3})),
    "total embeddings": ("metadata.json", lambda p: _rejson(p, lambda d: {**d, "num_embeddings": 157336})),  # fewer
    "bad nbits": ("metadata.json", lambda p: _rejson(p, lambda d: {**d, "config": {**d["config"], "nbits": 3}})),
    "doc ids too few": ("doc_ids.json", lambda p: p.write_text(json.dumps(["a", "b"]))),
    "doc ids repeated": ("doc_ids.json", lambda p: p.write_text(json.dumps(["a"] * 1000))),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_broken_index_raises_naming_the_file(index_copy, breakage):
    name, corrupt = BREAKAGES[breakage]
    corrupt(index_copy / name)
    for mmap in (True, False):
        with pytest.raises(IndexFormatError) as error:
            LoadedIndex.open(index_copy, mmap=mmap)
        assert name in str(error.value)
        assert "Indexer.index(" in str(error.value)  # and what to do about it


def test_what_colbert_ai_updates_leave_is_tolerated(index_copy):
    """colbert-ai's IndexUpdater overcounts num_embeddings, never rewrites avg_doclen and may leave a stale
    embedding_offset; the chunk files are authoritative (docs/compat.md)."""
    _rejson(index_copy / "metadata.json", lambda d: {**d, "num_embeddings": 2 * 157337, "avg_doclen": 1.0})
    _rejson(index_copy / "0.metadata.json", lambda d: {**d, "embedding_offset": 480})
    from colbert import verify_index

    assert LoadedIndex.open(index_copy).num_embeddings == 157337 and verify_index(index_copy) == []
