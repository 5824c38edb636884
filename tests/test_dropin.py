"""Drop-in for code written for colbert-ai 0.2.22: its module paths and names import, the shims behave, and a
replaced CollectionIndexer._train_kmeans (RAGatouille's monkeypatch) is the k-means a build uses."""

from __future__ import annotations

import copy
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from colbert import ColBERTConfig, Indexer, Run, RunConfig

# What colbert-ai's colbert/infra/config/__init__.py (`from .config import *; from .settings import *`) and hence
# colbert/infra/__init__.py expose besides the two configs (dir() of both in the reference venv). Left out on purpose:
# what those star-imports leak from the modules' own imports (os, torch, dataclass, timestamp, and in colbert.infra
# atexit, contextmanager, create_directory, print_message).
CONFIG_PACKAGE_NAMES = ["BaseConfig", "DefaultVal", "DocSettings", "IndexingSettings", "QuerySettings",
                        "ResourceSettings", "RunSettings", "SearchSettings", "TokenizerSettings", "TrainingSettings"]

# Every module path of colbert-ai 0.2.22 that user code imports, with the public names its source defines at top
# level (for packages, what their __init__ imports). Derived from the reference's sources with the ast module
# (def, class and assignments not starting with "_"), plus the names its star-imports bring in.
REFERENCE_NAMES = {
    "colbert": ["Checkpoint", "IndexUpdater", "Indexer", "Searcher", "Trainer"],
    "colbert.infra": ["ColBERTConfig", "Run", "RunConfig"] + CONFIG_PACKAGE_NAMES,
    "colbert.infra.config": ["ColBERTConfig", "RunConfig"] + CONFIG_PACKAGE_NAMES,
    "colbert.infra.config.config": ["ColBERTConfig", "RunConfig"],
    "colbert.infra.config.settings": ["DocSettings", "IndexingSettings", "QuerySettings", "ResourceSettings",
                                      "RunSettings", "SearchSettings", "TokenizerSettings", "TrainingSettings"],
    "colbert.infra.config.base_config": ["BaseConfig"],
    "colbert.infra.config.core_config": ["CoreConfig", "DefaultVal"],
    "colbert.infra.run": ["Run"],
    "colbert.infra.launcher": ["Launcher", "print_memory_stats", "run_process_without_mp", "set_seed",
                               "setup_new_process"],
    "colbert.infra.provenance": ["Provenance"],
    "colbert.data": ["Collection", "Examples", "Queries", "Ranking"],
    "colbert.modeling.checkpoint": ["Checkpoint", "pool_embeddings_hierarchical"],
    "colbert.modeling.colbert": ["ColBERT", "colbert_score", "colbert_score_packed", "colbert_score_reduce"],
    "colbert.modeling.tokenization": ["DocTokenizer", "QueryTokenizer", "tensorize_triples"],
    "colbert.modeling.tokenization.query_tokenization": ["QueryTokenizer"],
    "colbert.modeling.tokenization.doc_tokenization": ["DocTokenizer"],
    "colbert.modeling.tokenization.utils": ["tensorize_triples"],
    "colbert.modeling.hf_colbert": ["XLMRobertaPreTrainedModel", "base_class_mapping", "class_factory",
                                    "find_class_names", "model_object_mapping", "transformers_module"],
    "colbert.modeling.base_colbert": ["BaseColBERT"],
    "colbert.indexer": ["Indexer"],
    "colbert.searcher": ["Searcher", "TextQueries"],
    "colbert.trainer": ["Trainer"],
    "colbert.index_updater": ["DEFAULT_CHUNKSIZE", "IndexUpdater"],
    "colbert.indexing.collection_indexer": ["CollectionIndexer", "compute_faiss_kmeans", "encode"],
    "colbert.indexing.collection_encoder": ["CollectionEncoder"],
    "colbert.indexing.codecs.residual": ["ResidualCodec"],
    "colbert.indexing.codecs.residual_embeddings": ["ResidualEmbeddings", "get_codes_size", "get_dim_and_nbits",
                                                    "get_residuals_size"],
    "colbert.indexing.codecs.residual_embeddings_strided": ["ResidualEmbeddingsStrided"],
    "colbert.search.index_storage": ["IndexScorer"],
    "colbert.search.strided_tensor": ["StridedTensor"],
    "colbert.search.index_loader": ["IndexLoader"],
    "colbert.evaluation.loaders": ["load_colbert", "load_collection", "load_qrels", "load_queries", "load_topK",
                                   "load_topK_pids"],
    "colbert.training.training": ["set_bert_grad", "train"],
    "colbert.utils.utils": ["NullContextManager", "batch", "create_directory", "dotdict", "dotdict_lax", "f7",
                            "file_tqdm", "flatten", "groupby_first_item", "grouper", "int_or_float", "lengths2offsets",
                            "load_batch_backgrounds", "load_checkpoint", "load_checkpoint_raw", "load_ranking",
                            "print_message", "process_grouped_by_first_item", "save_checkpoint", "save_ranking",
                            "timestamp", "torch_load_dnn", "zip_first", "zipstar"],
    "colbert.utils.amp": ["MixedPrecisionManager"],
    "colbert.utils.distributed": ["ALREADY_INITALIZED", "barrier", "init"],
    "colbert.parameters": ["DEVICE", "SAVED_CHECKPOINTS"],
}

# Names deliberately absent, each with its reason (docs/compat.md lists them too).
NOT_PROVIDED = {
    ("colbert.infra.launcher", "print_memory_stats"): "process plumbing internal to the reference's launcher",
    ("colbert.infra.launcher", "run_process_without_mp"): "process plumbing internal to the reference's launcher",
    ("colbert.infra.launcher", "setup_new_process"): "process plumbing internal to the reference's launcher",
    ("colbert.modeling.checkpoint", "pool_embeddings_hierarchical"): "token pooling is not implemented",
}


@pytest.mark.parametrize("module", sorted(REFERENCE_NAMES))
def test_every_reference_module_path_and_name_imports(module):
    imported = importlib.import_module(module)
    missing = [name for name in REFERENCE_NAMES[module]
               if (module, name) not in NOT_PROVIDED and not hasattr(imported, name)]
    assert not missing, f"{module} lacks {missing}"


def test_the_reference_paths_are_thin_re_exports_of_one_implementation():
    from colbert.indexing.codec import ResidualCodec
    from colbert.indexing.codecs.residual import ResidualCodec as ReferenceCodec
    from colbert.infra.config.config import ColBERTConfig as ReferenceConfig
    from colbert.modeling.tokenization import DocTokenizer, QueryTokenizer
    from colbert.modeling.tokenization.doc_tokenization import DocTokenizer as ReferenceDoc
    from colbert.modeling.tokenization.query_tokenization import QueryTokenizer as ReferenceQuery

    assert ReferenceCodec is ResidualCodec and ReferenceConfig is ColBERTConfig
    assert ReferenceQuery is QueryTokenizer and ReferenceDoc is DocTokenizer
    import colbert.infra
    import colbert.infra.config
    from colbert.infra.config import core_config, settings

    for name in CONFIG_PACKAGE_NAMES:  # one object under every path the reference offers it
        objects = {getattr(m, name) for m in (colbert.infra, colbert.infra.config, settings, core_config)
                   if hasattr(m, name)}
        assert len(objects) == 1, name
    assert colbert.infra.config.IndexingSettings is ColBERTConfig and colbert.infra.BaseConfig is ColBERTConfig


def test_verbose_may_be_a_bool_as_ragatouille_passes_it(tiny_checkpoint):
    assert Indexer(str(tiny_checkpoint), verbose=False).verbose == 0  # RAGatouille: verbose=self.verbose != 0
    assert Indexer(str(tiny_checkpoint), verbose=True).verbose == 1


def test_importing_colbert_stays_light():
    code = ("import sys, colbert, colbert.utils.utils, colbert.infra.config.settings, colbert.parameters; "
            "print(sorted(m for m in ('transformers', 'fastkmeans') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"


def test_utils_helpers_behave_as_the_reference():
    from colbert.utils.utils import batch, dotdict, f7, flatten, groupby_first_item, lengths2offsets, zipstar

    assert zipstar([(1, "a"), (2, "b")]) == [[1, 2], ["a", "b"]] and flatten([[1], [2, 3]]) == [1, 2, 3]
    assert list(lengths2offsets([2, 0, 3])) == [(0, 2), (2, 2), (2, 5)] and f7([3, 1, 3, 2]) == [3, 1, 2]
    assert list(batch([1, 2, 3], 2, provide_offset=True)) == [(0, [1, 2]), (2, [3])]
    assert dotdict(a=1).a == 1 and groupby_first_item([(1, "x"), (1, "y"), (2, "z")]) == {1: ["x", "y"], 2: ["z"]}
    with pytest.raises(AttributeError):
        dotdict().missing


def test_strided_tensor_lookup_packed_and_padded():
    from colbert.search.strided_tensor import StridedTensor

    st = StridedTensor(torch.arange(6), torch.tensor([2, 0, 3, 1]))
    packed, lengths = st.lookup([2, 0])
    assert packed.tolist() == [2, 3, 4, 0, 1] and lengths.tolist() == [3, 2]
    padded, mask = st.lookup([3, 2], output="padded")
    assert padded.tolist() == [[5, 0, 0], [2, 3, 4]] and mask.sum(1).tolist() == [1, 3]


def test_tokenizers_from_a_config_tokenize_and_encode(tiny_checkpoint):
    from colbert.modeling.tokenization.doc_tokenization import DocTokenizer
    from colbert.modeling.tokenization.query_tokenization import QueryTokenizer

    config = ColBERTConfig(checkpoint=str(tiny_checkpoint), query_maxlen=8)
    qt, dt = QueryTokenizer(config), DocTokenizer(config)  # used to crash: the tokenizer came from the argument
    assert qt.tokenize(["hello world"]) == [["hello", "world"]]
    assert qt.tokenize(["hello world"], add_special_tokens=True) == [
        ["[CLS]", "[Q]", "hello", "world", "[SEP]", "[MASK]", "[MASK]", "[MASK]"]]
    ids = qt.encode(["hello world"], add_special_tokens=True)[0]
    assert ids[:2] == [qt.cls_token_id, qt.Q_marker_token_id] and len(ids) == 8
    assert ids == qt.tensorize(["hello world"])[0][0].tolist()  # the same ids the model sees
    assert dt.tokenize(["hello world"], add_special_tokens=True) == [["[CLS]", "[D]", "hello", "world", "[SEP]"]]
    assert dt.encode(["hello world"], add_special_tokens=True)[0] == dt.tensorize(["hello world"])[0][0].tolist()


# ----------------------------------------------------------------------------------------------- _train_kmeans


def build(checkpoint: Path, root: Path, name: str) -> Path:
    docs = [f"passage {i} about {w}" for i, w in enumerate("protein cell gene virus brain heart drug".split() * 4)]
    with Run().context(RunConfig(nranks=1, root=str(root), experiment="dropin")):
        return Path(Indexer(str(checkpoint), config=ColBERTConfig(nbits=2), verbose=0).index(name, docs))


def test_a_replaced_train_kmeans_fits_the_centroids_and_a_restored_one_does_not(tiny_checkpoint, tmp_path,
                                                                                   monkeypatch):
    from colbert.indexing.collection_indexer import CollectionIndexer

    original = copy.deepcopy(CollectionIndexer._train_kmeans)  # as RAGatouille keeps it
    calls = []

    def pytorch_kmeans(self, sample, shared_lists):  # RAGatouille's signature and use of self
        calls.append((tuple(sample.shape), sample.dtype, self.num_partitions, self.config.kmeans_niters))
        return torch.nn.functional.normalize(sample[: self.num_partitions].float() + 1.0, dim=-1)

    monkeypatch.setattr(CollectionIndexer, "_train_kmeans", pytorch_kmeans)
    path = build(tiny_checkpoint, tmp_path, "patched")
    (shape, dtype, num_partitions, niters), = calls
    assert dtype == torch.float16 and shape[1] == 16 and niters == ColBERTConfig().kmeans_niters
    centroids = torch.load(path / "centroids.pt")
    assert centroids.shape == (num_partitions, 16) and centroids.dtype == torch.float16
    monkeypatch.setattr(CollectionIndexer, "_train_kmeans", original)
    other = build(tiny_checkpoint, tmp_path, "restored")
    assert len(calls) == 1 and not torch.equal(torch.load(other / "centroids.pt"), centroids)
    assert json.loads((other / "metadata.json").read_text())["num_partitions"] == num_partitions


def test_a_saved_checkpoint_has_the_slow_tokenizer_files(tiny_checkpoint):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_checkpoint))
    lines = (tiny_checkpoint / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert lines == [t for t, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])]
    assert json.loads((tiny_checkpoint / "special_tokens_map.json").read_text())["mask_token"] == "[MASK]"
