"""Bad input, as a new user gives it: every case raises the documented exception with a message that names the
problem, or gives the documented result. Never a silent wrong answer, a raw traceback from a library underneath, a
signal death or a hang (cases that need a process run in a subprocess with a timeout).

Areas: config construction and `configure`; the TSV/JSONL readers (dialect in colbert/data/readers.py); checkpoints
and Checkpoint methods (rerank); the Indexer; the Searcher; index files; the IndexUpdater and the writers' lock.
Plus hypothesis fuzzing of the readers and of config construction.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from colbert import ColBERTConfig, Indexer, IndexUpdater, Run, RunConfig, Searcher
from colbert.data import Collection, Examples, Queries, Ranking
from colbert.errors import CheckpointError, IndexFormatError
from colbert.indexing import format as index_format
from colbert.indexing import versions
from colbert.indexing.verify import verify_index
from colbert.search.index import LoadedIndex
from conftest import ROOT

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is needed for the fuzzing cases")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

WORDS = "protein cell gene cancer therapy immune virus brain heart blood drug trial".split()
DOCS = {f"doc-{i}": " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(3 + i % 9)) for i in range(30)}


# ------------------------------------------------------------------------------------------------------ fixtures


def _build(checkpoint: Path, root: Path, collection, name: str) -> Path:
    with Run().context(RunConfig(root=str(root), experiment="bad")):
        return Path(Indexer(str(checkpoint), config=ColBERTConfig(nbits=2), verbose=0).index(name, collection))


@pytest.fixture(scope="module")
def indexes(_tiny_checkpoint_master, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad-input")
    return {"str": _build(_tiny_checkpoint_master, root, DOCS, "strings"),
            "int": _build(_tiny_checkpoint_master, root, list(DOCS.values())[:20], "ints")}


@pytest.fixture(scope="module")
def searcher(indexes, _tiny_checkpoint_master) -> Searcher:
    return Searcher(str(indexes["str"]), checkpoint=str(_tiny_checkpoint_master), verbose=0)


@pytest.fixture(scope="module")
def checkpoint(searcher):
    return searcher.checkpoint


@pytest.fixture
def index_copy(indexes, tmp_path) -> Path:
    return Path(shutil.copytree(indexes["str"], tmp_path / "idx"))


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


# ------------------------------------------------------------------------------------------------------- config

CONFIG_CASES = [
    # (kwargs, exception, fragment of the message)
    ({"doc_maxlen": 0}, ValueError, "doc_maxlen must be an int >= 3; got 0"),
    ({"doc_maxlen": -5}, ValueError, "doc_maxlen must be an int >= 3; got -5"),
    ({"doc_maxlen": "180"}, TypeError, "doc_maxlen must be an int >= 3; got '180' (str)"),
    ({"doc_maxlen": 180.0}, TypeError, "doc_maxlen must be an int"),
    ({"doc_maxlen": True}, TypeError, "doc_maxlen must be an int"),
    ({"query_maxlen": 0}, ValueError, "query_maxlen must be an int in [3, 512]; got 0"),
    ({"query_maxlen": 2}, ValueError, "query_maxlen must be an int in [3, 512]"),
    ({"query_maxlen": 513}, ValueError, "query_maxlen must be an int in [3, 512]; got 513"),
    ({"nbits": 2.0}, TypeError, "nbits must be one of 1, 2, 4; got 2.0 (float)"),
    ({"nbits": 3}, ValueError, "nbits must be one of 1, 2, 4; got 3"),
    ({"nbits": 8}, ValueError, "nbits must be one of 1, 2, 4"),
    ({"nbits": 0}, ValueError, "nbits must be one of 1, 2, 4"),
    ({"nbits": "2"}, TypeError, "nbits must be one of 1, 2, 4"),
    ({"index_bsize": 0}, ValueError, "index_bsize must be an int >= 1; got 0"),
    ({"index_bsize": -1}, ValueError, "index_bsize must be an int >= 1"),
    ({"kmeans_niters": -1}, ValueError, "kmeans_niters must be an int >= 0; got -1"),
    ({"kmeans_niters": 2.5}, TypeError, "kmeans_niters must be an int >= 0"),
    ({"similarity": "dot"}, ValueError, "similarity must be one of 'cosine', 'l2'; got 'dot'"),
    ({"similarity": "COSINE"}, ValueError, "similarity must be one of 'cosine', 'l2'"),
    ({"interaction": "maxsim"}, ValueError, "interaction must be one of 'colbert', 'flipr'"),
    ({"dim": 0}, ValueError, "dim must be an int >= 1"),
    ({"dim": "128"}, TypeError, "dim must be an int >= 1"),
    ({"ncells": 0}, ValueError, "ncells must be an int >= 1, or None; got 0"),
    ({"ndocs": -10}, ValueError, "ndocs must be an int >= 4, or None"),
    ({"centroid_score_threshold": "0.5"}, TypeError, "centroid_score_threshold must be a finite float"),
    ({"centroid_score_threshold": math.nan}, ValueError, "centroid_score_threshold must be a finite float"),
    ({"centroid_score_threshold": math.inf}, ValueError, "centroid_score_threshold must be a finite float"),
    ({"lr": -1e-5}, ValueError, "lr must be a finite float >= 0"),
    ({"lr": math.nan}, ValueError, "lr must be a finite float >= 0; got nan"),
    ({"lr": "3e-6"}, TypeError, "lr must be a finite float"),
    ({"bsize": 0}, ValueError, "bsize must be an int >= 1"),
    ({"accumsteps": 0}, ValueError, "accumsteps must be an int >= 1"),
    ({"maxsteps": 0}, ValueError, "maxsteps must be an int >= 1"),
    ({"nway": 0}, ValueError, "nway must be an int >= 1"),
    ({"save_every": 0}, ValueError, "save_every must be an int >= 1, or None"),
    ({"warmup": -1}, ValueError, "warmup must be an int >= 0, or None"),
    ({"distillation_alpha": -0.5}, ValueError, "distillation_alpha must be a finite float >= 0"),
    ({"pool_factor": 0}, ValueError, "pool_factor must be an int >= 1"),
    ({"protected_tokens": -1}, ValueError, "protected_tokens must be an int >= 0"),
    ({"clustering_mode": "kmeans"}, ValueError, "clustering_mode must be one of 'hierarchical'"),
    ({"mask_punctuation": "yes"}, TypeError, "mask_punctuation must be True or False; got 'yes'"),
    ({"mask_punctuation": 1}, TypeError, "mask_punctuation must be True or False"),
    ({"amp": None}, None, None),  # None keeps the default, as the reference
    ({"load_index_with_mmap": "false"}, TypeError, "load_index_with_mmap must be True or False"),
    ({"checkpoint": 3}, TypeError, "checkpoint must be a str or os.PathLike path, or None; got 3 (int)"),
    ({"collection": ["a", "b"]}, TypeError, "collection must be a str or os.PathLike path"),
    ({"index_name": Path("x")}, TypeError, "index_name must be a str, or None"),
    ({"overwrite": 1}, TypeError, "overwrite must be one of False, True, 'reuse', 'resume'"),
    ({"overwrite": "yes"}, ValueError, "overwrite must be one of False, True, 'reuse', 'resume'"),
    ({"nranks": 0}, ValueError, "nranks must be an int >= 1"),
    ({"rank": -1}, ValueError, "rank must be an int >= 0"),
    ({"gpus": -1}, ValueError, "gpus must be an int >= 0, or None"),
    ({"gpus": "0,1"}, TypeError, "gpus must be an int >= 0, or None"),
    ({"root": 5}, TypeError, "root must be a str or os.PathLike path"),
    ({"experiment": None}, None, None),
    ({"nbit": 2}, TypeError, "ColBERTConfig has no field 'nbit'; did you mean 'nbits'?"),
    ({"docmaxlen": 180}, TypeError, "did you mean 'doc_maxlen'?"),
    ({"zzz": 1}, TypeError, "ColBERTConfig has no field 'zzz'; see help(ColBERTConfig)"),
]


@pytest.mark.parametrize("kwargs, exc, fragment", CONFIG_CASES, ids=[str(c[0]) for c in CONFIG_CASES])
def test_config_construction_checks_every_value(kwargs, exc, fragment):
    if exc is None:
        config = ColBERTConfig(**kwargs)
        assert set(kwargs) - set(config.assigned) == set(kwargs)  # None: default kept, not assigned
        return
    with pytest.raises(exc) as info:
        ColBERTConfig(**kwargs)
    assert fragment in str(info.value)


@pytest.mark.parametrize("kwargs, exc, fragment", [c for c in CONFIG_CASES if c[1] is not None][:20],
                         ids=[str(c[0]) for c in CONFIG_CASES if c[1] is not None][:20])
def test_configure_checks_before_setting_anything(kwargs, exc, fragment):
    config = ColBERTConfig(nbits=2)
    before = config.export()
    with pytest.raises(exc) as info:
        config.configure(**{"index_bsize": 7, **kwargs})  # a good value beside the bad one: neither is set
    assert fragment in str(info.value)
    assert config.export() == before and set(config.assigned) == {"nbits"}


@pytest.mark.parametrize("name, value, exc", [("nbits", 5, ValueError), ("doc_maxlen", "x", TypeError),
                                              ("similarity", "dot", ValueError), ("amp", "no", TypeError)])
def test_attribute_assignment_is_checked(name, value, exc):
    config = ColBERTConfig()
    with pytest.raises(exc, match=f"ColBERTConfig.{name} must be"):
        setattr(config, name, value)


@pytest.mark.parametrize("kwargs, exc, fragment", [
    ({"nranks": 0}, ValueError, "RunConfig.nranks must be an int >= 1"),
    ({"overwrite": "maybe"}, ValueError, "RunConfig.overwrite must be one of"),
    ({"experiment": 3}, TypeError, "RunConfig.experiment must be a str"),
    ({"nbits": 2}, TypeError, "RunConfig has no field 'nbits'"),
])
def test_run_config_checks_its_values(kwargs, exc, fragment):
    with pytest.raises(exc) as info:
        RunConfig(**kwargs)
    assert fragment in str(info.value)


@pytest.mark.parametrize("arg", ["nbits=2", {"nbits": 2}, 2])
def test_positional_arguments_must_be_configs(arg):
    with pytest.raises(TypeError, match="takes keyword arguments and configs to merge"):
        ColBERTConfig(arg)


def test_documented_normalisations():
    config = ColBERTConfig(checkpoint=Path("/ckpt"), lr=1, centroid_score_threshold=0)
    assert config.checkpoint == "/ckpt" and config.lr == 1.0 and isinstance(config.centroid_score_threshold, float)
    import numpy as np

    assert type(ColBERTConfig(doc_maxlen=np.int64(99)).doc_maxlen) is int


@pytest.mark.parametrize("content, fragment", [
    ({"nbits": 3}, "nbits must be one of 1, 2, 4"),
    ({"doc_maxlen": "long"}, "doc_maxlen must be an int"),
    ({"config": {"similarity": "dot"}}, "similarity must be one of"),
])
def test_a_config_file_with_a_bad_value_names_the_file(tmp_path, content, fragment):
    path = write(tmp_path / "c.json", json.dumps(content))
    with pytest.raises(ValueError) as info:
        ColBERTConfig.from_path(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_docs_config_md_shows_the_allowed_values():
    text = (ROOT / "docs" / "config.md").read_text()
    assert "| `nbits` | `1` | one of 1, 2, 4 |" in text and "an int in [3, 512]" in text


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(ColBERTConfig.__dataclass_fields__)),
                       st.one_of(st.none(), st.booleans(), st.integers(-10, 600), st.floats(allow_nan=True),
                                 st.text(max_size=8), st.lists(st.integers(), max_size=2)), max_size=4))
def test_fuzz_config_construction(kwargs):
    """Any values: a config whose every value is allowed, or TypeError / ValueError naming the field."""
    try:
        config = ColBERTConfig(**kwargs)
    except (TypeError, ValueError) as e:
        assert any(f"ColBERTConfig.{k} must be" in str(e) for k in kwargs), str(e)
        return
    again = ColBERTConfig.from_dict(json.loads(json.dumps(config.export())))  # every stored value re-validates
    assert again.export() == config.export()


# ------------------------------------------------------------------------------------------------------ readers

READER_ERRORS = [
    # (loader, file content, exception, fragment; "{path}" is replaced by the file's path)
    ("collection", b"1\tok\n2\tcaf\xe9\n", ValueError, "{path}:2: byte 0xe9 at column 6 is not UTF-8"),
    ("queries", b"\xff\xfe1\tq\n", ValueError, "{path}:1: byte 0xff at column 1 is not UTF-8"),
    ("ranking", b"1\t2\t1\t0.5\n1\t3\t\x80\t0.1\n", ValueError, "{path}:2: byte 0x80"),
    ("collection", "1\ta\tb\tc\n", ValueError, "{path}:1: expected 'pid<TAB>passage[<TAB>title]' (at most 3"),
    ("collection", "1\ta\n2\ttext\twith\ttabs\n", ValueError, "{path}:2: expected 'pid<TAB>passage[<TAB>title]'"),
    ("collection", "just text without an id\n", ValueError, "{path}:1: expected 'pid<TAB>passage[<TAB>title]' (2"),
    ("collection", "1\ta\n1\tb\n", ValueError, "{path}:2: document id '1' is repeated (first on line 1)"),
    ("collection", "\tno id\n", ValueError, "{path}:1: the id (first field) is empty"),
    ("collection", "", ValueError, "collection file {path} holds no passages"),
    ("collection", "\n\n  \n", ValueError, "collection file {path} holds no passages"),
    ("collection", "pid\tpassage\n", ValueError, "holds no passages"),  # a header only
    ("queries", "q1\n", ValueError, "{path}:1: expected 'qid<TAB>query' (2 tab-separated fields), got 1 field"),
    ("queries", "q1\ta\nq1\tb\n", ValueError, "{path}:2: qid 'q1' is repeated (first on line 1)"),
    ("queries", "", ValueError, "no queries in {path}"),
    ("ranking", "1\t2\n", ValueError, "{path}:1: expected 'qid<TAB>pid<TAB>rank[<TAB>score]'"),
    ("ranking", "1\t2\tfirst\t0.5\n", ValueError, "{path}:1: 'first' is not a number"),
    ("ranking", "1\t2\t1.5\t0.5\n", ValueError, "{path}:1: rank '1.5' is not an integer"),
    ("queries.jsonl", '{"qid": 1, "question": "a"}\n{"qid": 2, "question": \n', ValueError,
     "{path}:2: not valid JSON"),
    ("queries.jsonl", '{"qid": 1}\n', ValueError, "{path}:1: expected an object with 'qid' and a str 'question'"),
    ("queries.jsonl", '["q", "a"]\n', ValueError, "{path}:1: expected an object with 'qid'"),
    ("queries.jsonl", '{"qid": [1], "question": "a"}\n', ValueError, "{path}:1: the qid is [1] of type list"),
    ("queries.jsonl", '{"qid": 1, "question": "a"}\n{"qid": 1, "question": "b"}\n', ValueError,
     "{path}:2: qid 1 is repeated"),
    ("queries.jsonl", b'{"qid": 1, "question": "caf\xe9"}\n', ValueError, "{path}:1: byte 0xe9"),
    ("examples", '[1, 2, 3]\n[1]\n', ValueError, "{path}:2: expected [qid, passage, passage, ...]"),
    ("examples", '[1, 2, 3]\nnot json\n', ValueError, "{path}:2: not valid JSON"),
    ("examples", '[1, [2, 0.5], 3]\n', ValueError, "{path}:1: mixes plain pids and [pid, score] pairs"),
    ("examples", '[1, [2, "high"]]\n', ValueError, "{path}:1: expected [pid, score] pairs"),
    ("examples", '[1.5, 2, 3]\n', ValueError, "{path}:1: the qid is 1.5 of type float"),
    ("examples", '\n\n', ValueError, "no training examples in {path}"),
]


def load(loader: str, path: Path):
    if loader == "collection":
        return Collection(path=path)
    if loader.startswith("queries"):
        return Queries(path=path)
    if loader == "ranking":
        return Ranking.load(path)
    return Examples(path=path)


@pytest.mark.parametrize("loader, content, exc, fragment", READER_ERRORS,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(READER_ERRORS)])
def test_reader_errors_name_the_file_and_line(tmp_path, loader, content, exc, fragment):
    suffix = ".jsonl" if loader in ("queries.jsonl", "examples") else ".tsv"
    path = write(tmp_path / f"f{suffix}", content)
    with pytest.raises(exc) as info:
        load(loader, path)
    assert fragment.format(path=path) in str(info.value)


READER_RESULTS = [
    # (loader, file content, the documented result)
    ("collection", b"\xef\xbb\xbf4983\tfirst\n5\tsecond\n", ([4983, 5], ["first", "second"])),  # BOM skipped
    ("collection", "pid\tpassage\n7\tseven\n", ([7], ["seven"])),  # header by its first field
    ("collection", "ID\tText\n7\tseven\n", ([7], ["seven"])),  # case-insensitive
    ("collection", "docid\ttext\ttitle\n7\tseven\tT\n", ([7], ["T | seven"])),
    ("collection", "_id\ttext\n0\ta\n1\tb\n", (None, ["a", "b"])),  # ids 0..N-1: no ids kept
    ("collection", "7\tseven\npid\tnot a header on line 2\n", (["7", "pid"], ["seven", "not a header on line 2"])),
    ("collection", "1\ta\r\n2\tb\r\n", ([1, 2], ["a", "b"])),  # Windows line ends
    ("collection", "1\ta\n\n   \n2\tb", ([1, 2], ["a", "b"])),  # blank lines, no final newline
    ("collection", "1\t  padded passage  \n", ([1], ["padded passage"])),
    ("collection", '1\t"quoted" text\n', ([1], ['"quoted" text'])),  # no quoting: " is a character
    ("collection", "1\ttext\ttitle\n2\tonly text\n", ([1, 2], ["title | text", "only text"])),
    ("collection", "007\ta\n1\tb\n", (["007", "1"], ["a", "b"])),  # not all plain ints: all strings
    ("collection", "1\ta\r\x0bb\n", ([1], ["a\r\x0bb"])),  # a lone \r inside a line is a character
    ("queries", b"\xef\xbb\xbfq1\twhat\n", (["q1"], ["what"])),
    ("queries", "qid\tquery\n3\tthree\n", ([3], ["three"])),
    ("queries", "3\tthree\n4\t\n", ([3, 4], ["three", ""])),  # an empty query is a query
    ("queries.jsonl", b'\xef\xbb\xbf{"qid": "a", "question": "x"}\n\n', (["a"], ["x"])),
    ("ranking", b"\xef\xbb\xbf1\t7\t1\t2.5\n", ([1], [[[7, 1, 2.5]]])),  # rows read back are lists, as the reference
]


@pytest.mark.parametrize("loader, content, expected", READER_RESULTS,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(READER_RESULTS)])
def test_reader_dialect_gives_the_documented_result(tmp_path, loader, content, expected):
    suffix = ".jsonl" if loader == "queries.jsonl" else ".tsv"
    loaded = load(loader, write(tmp_path / f"f{suffix}", content))
    if loader == "collection":
        assert (loaded.ids, loaded.data) == expected
    elif loader == "ranking":
        assert (list(loaded.data), list(loaded.data.values())) == expected
    else:
        assert (list(loaded.keys()), list(loaded.values())) == expected


def test_extra_query_columns_are_read_as_documented_and_named_in_a_warning(tmp_path):
    path = write(tmp_path / "q.tsv", "1\tfirst\tgold answer\n2\tsecond\n")
    with pytest.warns(UserWarning, match=r"q\.tsv:1: queries have more than two tab-separated fields"):
        queries = Queries(path=path)
    assert dict(queries.items()) == {1: "first", 2: "second"}


TSV_LINE = st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12), min_size=1,
                    max_size=4).map("\t".join)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(TSV_LINE, max_size=6), bom=st.booleans(), crlf=st.booleans(),
       junk=st.one_of(st.none(), st.binary(min_size=1, max_size=3)))
def test_fuzz_tsv_readers(tmp_path_factory, lines, bom, crlf, junk):
    """Any bytes: a Collection / Queries / Ranking, or ValueError naming the file; never another exception."""
    data = (("\r\n" if crlf else "\n").join(lines)).encode()
    data = (b"\xef\xbb\xbf" if bom else b"") + data + (junk or b"")
    path = write(tmp_path_factory.mktemp("fuzz") / "f.tsv", data)
    for loader in ("collection", "queries", "ranking"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # extra query columns: documented, named in a warning
                loaded = load(loader, path)
        except ValueError as e:
            assert str(path) in str(e), str(e)
            continue
        if loader == "collection":
            assert len(loaded) >= 1 and all("\ufeff" not in str(i) for i in (loaded.ids or []))
            assert all(isinstance(t, str) and "\n" not in t for t in loaded.data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.one_of(st.text(max_size=20), st.builds(json.dumps, st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["qid", "question", "x"]), inner,
                                                                 max_size=3), max_leaves=6))), max_size=5))
def test_fuzz_jsonl_readers(tmp_path_factory, lines):
    path = write(tmp_path_factory.mktemp("fuzz") / "f.jsonl", "\n".join(lines))
    for loader in ("queries.jsonl", "examples"):
        try:
            loaded = load(loader, path)
        except ValueError as e:
            assert str(path) in str(e), str(e)
            continue
        assert len(loaded) >= 1


# --------------------------------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("name, fragment", [
    ("/no/such/checkpoint", "No such checkpoint folder: /no/such/checkpoint"),
    ("./missing-ckpt", "No such checkpoint folder: ./missing-ckpt"),
    ("tests/missing-ckpt", "No such checkpoint folder: tests/missing-ckpt"),
    ("a/b/c", "No such checkpoint folder: a/b/c"),
    ("README.md", "The checkpoint README.md is a file"),
])
@pytest.mark.parametrize("facade", ["Indexer", "Checkpoint"])
def test_a_missing_checkpoint_folder_is_named_at_construction(tmp_path, monkeypatch, name, fragment, facade):
    from colbert.modeling.checkpoint import Checkpoint

    monkeypatch.chdir(ROOT)
    with pytest.raises(CheckpointError, match=fragment.replace(".", r"\.")):
        Indexer(name, verbose=0) if facade == "Indexer" else Checkpoint(name, verbose=0)


def test_a_missing_checkpoint_is_refused_before_the_searcher_reads_or_the_indexer_writes(indexes, tmp_path):
    with pytest.raises(CheckpointError, match="No such checkpoint folder"):
        Searcher(str(indexes["str"]), checkpoint=str(tmp_path / "nope"), verbose=0)
    with Run().context(RunConfig(root=str(tmp_path), experiment="x")):
        with pytest.raises(CheckpointError, match="No such checkpoint folder"):
            Indexer(str(tmp_path / "nope"), verbose=0).index("idx", ["a"])
    assert not list(tmp_path.rglob("*building*")) and not (tmp_path / "x").exists()


def test_a_bad_value_in_artifact_metadata_is_a_checkpoint_error(tiny_checkpoint):
    meta = json.loads((tiny_checkpoint / "artifact.metadata").read_text())
    (tiny_checkpoint / "artifact.metadata").write_text(json.dumps({**meta, "doc_maxlen": -1}))
    with pytest.raises(CheckpointError, match="artifact.metadata .*doc_maxlen must be an int >= 3"):
        Indexer(str(tiny_checkpoint), verbose=0)


def test_doc_maxlen_beyond_the_encoders_positions_is_refused(_tiny_checkpoint_master):
    from colbert.modeling.checkpoint import Checkpoint

    with pytest.raises(ValueError, match="doc_maxlen=600 exceeds the 512 positions"):
        Checkpoint(str(_tiny_checkpoint_master), ColBERTConfig(doc_maxlen=600), verbose=0)


RERANK_CASES = [
    # (documents, query, k, exception, fragment)
    ("one string", "q", 3, TypeError, "got a str; wrap one text in a list"),
    ({"a": "x", "b": "y"}, "q", 3, TypeError, "a list of embedding tensors or a tuple (D, doclens), got a dict"),
    ({"x", "y"}, "q", 3, TypeError, "got a set"),
    (b"bytes", "q", 3, TypeError, "got a bytes"),
    (42, "q", 3, TypeError, "got a int"),
    (["a", 3], "q", 3, TypeError, "document at position 1 is int"),
    (["a", None], "q", 3, TypeError, "document at position 1 is NoneType"),
    ([torch.zeros(2, 16), "b"], "q", 3, TypeError, "documents mixes tensors and str (at position 1)"),
    ([torch.zeros(2, 8)], "q", 3, ValueError, "documents[0] must be a float tensor shaped (n, 16)"),
    ([torch.zeros(2, 16, dtype=torch.long)], "q", 3, ValueError, "documents[0] must be a float tensor"),
    ((torch.zeros(5, 16), [2, 2]), "q", 3, ValueError, "adding up to the 5 rows"),
    ((torch.zeros(5, 16), [6, -1]), "q", 3, ValueError, "one int >= 0 per document"),
    ((torch.zeros(5, 16), "2,3"), "q", 3, TypeError, "the doclens) must be a list of ints"),
    ((torch.zeros(5, 4), [2, 3]), "q", 3, ValueError, "documents[0] (the packed document embeddings) must be"),
    (["a"], 5, 3, TypeError, "query must be a str or a tensor of embeddings, got int"),
    (["a"], torch.zeros(4, 8), 3, ValueError, "query must be a float tensor shaped (n, 16)"),
    (["a"], torch.full((4, 16), math.nan), 3, ValueError, "the query embeddings hold NaN or infinite values"),
    (["a"], "q", 0, ValueError, "k must be a positive integer, got 0"),
    (["a"], "q", 2.5, TypeError, "k must be a positive integer, got 2.5"),
    (["a"], "q", True, TypeError, "k must be a positive integer, got True"),
]


@pytest.mark.parametrize("documents, query, k, exc, fragment", RERANK_CASES,
                         ids=[f"rerank-{i}" for i in range(len(RERANK_CASES))])
def test_rerank_refuses_what_it_cannot_rank(checkpoint, documents, query, k, exc, fragment):
    with pytest.raises(exc) as info:
        checkpoint.rerank(query, documents, k=k)
    assert fragment in str(info.value)


def test_rerank_of_a_list_ranks_positions_and_of_an_empty_list_nothing(checkpoint):
    hits = checkpoint.rerank("cancer therapy", ["cancer therapy trial", "brain heart"], k=5)
    assert sorted(i for i, _ in hits) == [0, 1]
    assert checkpoint.rerank("q", [], k=3) == []


@pytest.mark.parametrize("call, exc, fragment", [
    (lambda c: c.queryFromText("one query"), TypeError, "got a single str; wrap it in a list"),
    (lambda c: c.queryFromText({"q": "x"}), TypeError, "got a dict"),
    (lambda c: c.queryFromText(["x"], bsize=0), ValueError, "bsize must be a positive integer, got 0"),
    (lambda c: c.docFromText("one doc"), TypeError, "got a single str"),
    (lambda c: c.docFromText([b"bytes"]), TypeError, "document at position 0 is bytes"),
    (lambda c: c.docFromText(["x"], bsize=-2), ValueError, "bsize must be a positive integer"),
    (lambda c: c.docFromText(["x"], keep_dims="yes"), ValueError, "keep_dims must be True, False or 'flatten'"),
    (lambda c: c.docFromText(["x"], keep_dims=1), ValueError, "keep_dims must be True, False or 'flatten'"),
])
def test_checkpoint_methods_check_their_arguments(checkpoint, call, exc, fragment):
    with pytest.raises(exc) as info:
        call(checkpoint)
    assert fragment in str(info.value)


# ------------------------------------------------------------------------------------------------------- indexer


@pytest.mark.parametrize("call, exc, fragment", [
    (lambda ckpt: Indexer(ckpt, verbose=-1), ValueError, "verbose must be an integer >= 0"),
    (lambda ckpt: Indexer(ckpt, verbose=7), ValueError, "verbose must be 0 (silent), 1 (bars)"),
    (lambda ckpt: Indexer(ckpt, verbose="3"), TypeError, "verbose must be an integer >= 0"),
    (lambda ckpt: Indexer(ckpt, config={"nbits": 2}), TypeError, "config must be a ColBERTConfig (or None)"),
    (lambda ckpt: Indexer(None), TypeError, "checkpoint must be a str or a path, got None"),
    (lambda ckpt: Indexer(""), ValueError, "checkpoint must not be empty"),
    (lambda ckpt: Indexer(ckpt, verbose=0).index("../up", ["a"]), ValueError, "parts are not '.' or '..'"),
    (lambda ckpt: Indexer(ckpt, verbose=0).index(".hidden", ["a"]), ValueError, "last part does not start with '.'"),
    (lambda ckpt: Indexer(ckpt, verbose=0).index("a/./b", ["a"]), ValueError, "parts are not '.' or '..'"),
    (lambda ckpt: Indexer(ckpt, verbose=0).index(3, ["a"]), ValueError, "Index name 3 must be a non-empty str"),
    (lambda ckpt: Indexer(ckpt, verbose=0).index("i", ["a"], overwrite="yes"), ValueError,
     "overwrite must be one of"),
    (lambda ckpt: Indexer(ckpt, verbose=0).index("i", ["a"], overwrite=1), ValueError, "overwrite must be one of"),
    (lambda ckpt: Indexer(ckpt, verbose=0).index("i", []), ValueError, "the collection is empty"),
    (lambda ckpt: Indexer(ckpt, verbose=0).index("i", ["a", 3]), TypeError, "passage 1 is a int, not a str"),
    (lambda ckpt: Indexer(ckpt, verbose=0).index("i", {"a": "x", "b": None}), TypeError,
     "passage 1 (id 'b') is a NoneType"),
    (lambda ckpt: Indexer(ckpt, verbose=0).index("i", {(1, 2): "x"}), TypeError, "ids must be ints or strings"),
    (lambda ckpt: Indexer(ckpt, verbose=0).index("i", 42), TypeError, "cannot make Collection from a int"),
    (lambda ckpt: Indexer(ckpt, verbose=0).index("i", "/no/such/collection.tsv"), FileNotFoundError,
     "/no/such/collection.tsv"),
    (lambda ckpt: Indexer(ckpt, config=ColBERTConfig(similarity="l2"), verbose=0).index("i", ["a"]), ValueError,
     "similarity='l2' is not supported by indexing or search"),
    (lambda ckpt: Indexer(ckpt, verbose=0).configure(nbits=3), ValueError, "nbits must be one of 1, 2, 4"),
    (lambda ckpt: Indexer(ckpt, verbose=0).configure(doc_maxlen=0), ValueError, "doc_maxlen must be an int >= 3"),
])
def test_indexer_checks_at_the_door_and_writes_nothing(_tiny_checkpoint_master, tmp_path, call, exc, fragment):
    with Run().context(RunConfig(root=str(tmp_path), experiment="x")):
        with pytest.raises(exc) as info:
            call(str(_tiny_checkpoint_master))
    assert fragment in str(info.value)
    assert not (tmp_path / "x").exists() or not list((tmp_path / "x").rglob("*"))


def test_a_failed_build_leaves_no_staging_folder(_tiny_checkpoint_master, tmp_path, monkeypatch):
    import colbert.indexing as indexing

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(indexing, "_train_codec", fail)
    with Run().context(RunConfig(root=str(tmp_path), experiment="x")):
        with pytest.raises(RuntimeError, match="disk full"):
            Indexer(str(_tiny_checkpoint_master), verbose=0).index("idx", list(DOCS.values()))
    indexes = tmp_path / "x" / "indexes"
    assert not indexes.exists() or list(indexes.iterdir()) == []


# ------------------------------------------------------------------------------------------------------ searcher


@pytest.mark.parametrize("call, exc, fragment", [
    (lambda s: s.search(["two", "queries"]), TypeError, "search takes one query as a str, got list"),
    (lambda s: s.search(None), TypeError, "search takes one query as a str, got NoneType"),
    (lambda s: s.search("q", k=0), ValueError, "k must be a positive int, got 0"),
    (lambda s: s.search("q", k=-3), ValueError, "k must be a positive int"),
    (lambda s: s.search("q", k="10"), TypeError, "k must be a positive int, got str"),
    (lambda s: s.search("q", k=2.0), TypeError, "k must be a positive int, got float"),
    (lambda s: s.search("q", filter_fn="doc-1"), TypeError, "filter_fn must be a function of the candidate pids"),
    (lambda s: s.search("q", pids="doc-1"), TypeError, "not a single str; wrap it in a list"),
    (lambda s: s.search("q", pids=["doc-1", "nope"]), ValueError, "1 of the 2 ids in pids are not documents"),
    (lambda s: s.search("q", pids=[0, 1]), ValueError, "2 of the 2 ids in pids are not documents"),
    (lambda s: s.search_all("what is this"), FileNotFoundError, "search_all got the str 'what is this'"),
    (lambda s: s.search_all(42), TypeError, "cannot make Queries from a int"),
    (lambda s: s.search_all({"q1": 5}), TypeError, "query 'q1' is a int, not a str"),
    (lambda s: s.search_all(["a"], qid_to_pids={}), ValueError, "qid_to_pids has no entry for 1"),
    (lambda s: s.search_all(["a"], k=0), ValueError, "k must be a positive int"),
    (lambda s: s.dense_search([[0.1] * 16]), TypeError, "Q must be a torch.Tensor"),
    (lambda s: s.dense_search(torch.zeros(2, 4, 16)), ValueError, "Q must hold one query's embeddings"),
    (lambda s: s.dense_search(torch.zeros(4, 8)), ValueError, "shaped (1, Lq, 16) or (Lq, 16); got (4, 8)"),
    (lambda s: s.dense_search(torch.zeros(0, 16)), ValueError, "Q must hold one query's embeddings"),
    (lambda s: s.dense_search(torch.ones(4, 16, dtype=torch.long)), TypeError, "floating-point embeddings"),
    (lambda s: s.dense_search(torch.full((4, 16), math.nan)), ValueError, "hold NaN or infinite values"),
    (lambda s: s.dense_search(torch.full((1, 4, 16), math.inf)), ValueError, "hold NaN or infinite values"),
    (lambda s: s.configure(ncells=0), ValueError, "ncells must be an int >= 1, or None"),
    (lambda s: s.configure(ndocs="many"), TypeError, "ndocs must be an int >= 4, or None"),
    (lambda s: s.configure(nbits=4), ValueError, "nbits cannot change on an open Searcher"),
    (lambda s: s.configure(ncell=4), TypeError, "did you mean 'ncells'?"),
])
def test_searcher_calls_check_their_arguments(searcher, call, exc, fragment):
    before = searcher.config.export()
    with pytest.raises(exc) as info:
        call(searcher)
    assert fragment in str(info.value)
    assert searcher.config.export() == before


def test_nan_query_embeddings_from_the_model_are_an_error_not_minus_infinity(searcher, monkeypatch):
    monkeypatch.setattr(searcher.checkpoint, "queryFromText",
                        lambda queries, **kw: torch.full((len(queries), 16, 16), math.nan))
    with pytest.raises(ValueError, match="hold NaN or infinite values"):
        searcher.search("cancer")
    with pytest.raises(ValueError, match="the embeddings of the query 'cancer' hold NaN"):
        searcher.search_all({"q": "cancer"})


@pytest.mark.parametrize("call, exc, fragment", [
    (lambda idx, ck: Searcher(3, verbose=0), TypeError, "index must be a str or a path, got 3"),
    (lambda idx, ck: Searcher("  ", verbose=0), ValueError, "index must not be empty"),
    (lambda idx, ck: Searcher("", index_root=str(Path(idx).parent), verbose=0), FileNotFoundError,
     "No index named ''"),  # "" is index_root itself (the reference's rule), which holds no index here
    (lambda idx, ck: Searcher("no-such-index", verbose=0), FileNotFoundError, "No index named 'no-such-index'"),
    (lambda idx, ck: Searcher(idx, checkpoint=5, verbose=0), TypeError, "checkpoint must be a str or a path"),
    (lambda idx, ck: Searcher(idx, config="nbits=2", verbose=0), TypeError, "config must be a ColBERTConfig"),
    (lambda idx, ck: Searcher(idx, verbose=None), TypeError, "verbose must be an integer >= 0"),
    (lambda idx, ck: Searcher(idx, index_root=7, verbose=0), TypeError, "index_root must be a str or a path"),
    (lambda idx, ck: Searcher(idx, checkpoint=ck, config=ColBERTConfig(similarity="l2"), verbose=0), ValueError,
     "similarity='l2' is not supported by search"),
])
def test_searcher_construction_checks_its_arguments(indexes, _tiny_checkpoint_master, call, exc, fragment):
    with pytest.raises(exc) as info:
        call(str(indexes["str"]), str(_tiny_checkpoint_master))
    assert fragment in str(info.value)


# --------------------------------------------------------------------------------------------------- index files


def test_a_string_id_index_without_doc_ids_json_is_refused_by_open_and_verify(index_copy):
    assert json.loads((index_copy / "metadata.json").read_text())["doc_ids"] is True
    (index_copy / "doc_ids.json").unlink()
    with pytest.raises(IndexFormatError, match="doc_ids.json is missing, but metadata.json says"):
        LoadedIndex.open(index_copy)
    assert any("doc_ids.json is missing" in p for p in verify_index(index_copy))


def test_an_index_of_positions_has_no_doc_ids_flag(indexes):
    assert "doc_ids" not in json.loads((indexes["int"] / "metadata.json").read_text())


@pytest.mark.parametrize("edit, fragment", [
    (lambda m: m["config"].update(nbits=3), "holds a config that is not valid: ColBERTConfig.nbits must be"),
    (lambda m: m["config"].update(dim="16"), "has config dim='16'"),
    (lambda m: m["config"].update(doc_maxlen=0), "ColBERTConfig.doc_maxlen must be an int >= 3"),
])
def test_a_bad_config_in_metadata_json_is_an_index_format_error(index_copy, edit, fragment):
    meta = json.loads((index_copy / "metadata.json").read_text())
    edit(meta)
    (index_copy / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(IndexFormatError, match=fragment):
        LoadedIndex.open(index_copy)


@pytest.mark.parametrize("damage, fragment", [
    ("reverse_ivf", None),
    ("codes_out_of_range", "holds codes outside"),
    ("doclens_json", "doclens.0.json"),
])
def test_cheap_checks_on_open_and_the_rest_in_verify_index(index_copy, damage, fragment):
    """Open checks codes' range, sizes and offsets (cheap); verify_index also rebuilds the IVF from the codes."""
    if damage == "reverse_ivf":
        ivf, lengths = torch.load(index_copy / "ivf.pid.pt")
        torch.save((ivf.flip(0).contiguous(), lengths), index_copy / "ivf.pid.pt")
        LoadedIndex.open(index_copy)  # documented: the IVF's content is verify_index's job
        assert any("ivf" in p.lower() for p in verify_index(index_copy))
        return
    if damage == "codes_out_of_range":
        codes = torch.load(index_copy / "0.codes.pt")
        torch.save(torch.full_like(codes, 10_000_000), index_copy / "0.codes.pt")
    else:
        (index_copy / "doclens.0.json").write_text("[1, 2]")
    with pytest.raises(IndexFormatError, match=fragment):
        LoadedIndex.open(index_copy)
    assert verify_index(index_copy)


# ------------------------------------------------------------------------------------------------------- updater


@pytest.mark.parametrize("call, exc, fragment", [
    (lambda u: u.add("one text"), TypeError, "not one str; wrap it in a list"),
    (lambda u: u.add(["a", 3]), TypeError, "passage 1 is int, not a str"),
    (lambda u: u.add(5), TypeError, "passages must be a list of texts"),
    (lambda u: u.add({"doc-1": "again"}), ValueError, "already in the index"),
    (lambda u: u.add(["a", "b"], ids=["x"]), ValueError, "got 1 ids for 2 passages"),
    (lambda u: u.add(["a", "b"], ids=["x", "x"]), ValueError, "ids repeated in this add"),
    (lambda u: u.add(["a"], ids=[1.5]), TypeError, "ids must be ints or strings"),
    (lambda u: u.remove("doc-1"), TypeError, "remove takes a list of ids, got str"),
    (lambda u: u.remove(["nope"]), ValueError, "not in the index"),
    (lambda u: u.remove([None]), TypeError, "ids must be ints or strings"),
    (lambda u: u.remove(list(DOCS)), ValueError, "would leave an empty index"),
])
def test_updater_calls_check_their_arguments_and_change_nothing(index_copy, _tiny_checkpoint_master, call, exc,
                                                                 fragment):
    updater = IndexUpdater(searcher=str(index_copy), checkpoint=str(_tiny_checkpoint_master))
    with pytest.raises(exc) as info:
        call(updater)
    assert fragment in str(info.value) and not updater.pending and len(updater) == len(DOCS)


@pytest.mark.parametrize("kwargs, exc, fragment", [
    ({"lock_timeout": -1}, ValueError, "lock_timeout must be a number >= 0 or None"),
    ({"lock_timeout": "10"}, ValueError, "lock_timeout must be a number"),
    ({"drift_warning": math.nan}, ValueError, "drift_warning must be a number >= 0 or None"),
    ({"config": {"nbits": 2}}, TypeError, "config must be a ColBERTConfig or None"),
    ({"config": ColBERTConfig(nbits=4)}, ValueError, "config has nbits=4 but the index"),
    ({"searcher": 42}, TypeError, "searcher must be a Searcher or an index folder, got int"),
])
def test_updater_construction_checks_its_arguments(index_copy, kwargs, exc, fragment):
    kwargs = {"searcher": str(index_copy), **kwargs}
    with pytest.raises(exc) as info:
        IndexUpdater(**kwargs)
    assert fragment in str(info.value)


def _run(code: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_a_stopped_writer_makes_others_wait_a_bounded_time_and_names_its_pid(index_copy):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from colbert.indexing import versions
        pin = versions.Pin({str(index_copy)!r})
        pin.lock()
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        updater = IndexUpdater(searcher=str(index_copy), lock_timeout=0.3)
        updater.remove(["doc-1"])
        with pytest.raises(versions.IndexLockedError) as info:
            updater.persist_to_disk()
        assert str(index_copy) in str(info.value) and f"by process {holder.pid}" in str(info.value)
        assert updater.pending  # the change stays in memory; nothing was written
    finally:
        holder.kill()
        holder.wait()
    updater.persist_to_disk()  # the holder is gone: the lock is free
    assert "doc-1" not in IndexUpdater(searcher=str(index_copy)).ids


def test_files_changed_in_place_under_an_open_searcher_never_kill_it(indexes, _tiny_checkpoint_master, tmp_path):
    """`cp other_index/* live_index/` under a live Searcher (the issue's SIGBUS): the default Searcher reads the
    files into memory, so it keeps serving its old state; a new one opens the new files."""
    live = Path(shutil.copytree(indexes["str"], tmp_path / "live"))
    result = _run(f"""
        import shutil, pathlib
        from colbert import Searcher
        live, other = pathlib.Path({str(live)!r}), pathlib.Path({str(indexes["int"])!r})
        searcher = Searcher(str(live), checkpoint={str(_tiny_checkpoint_master)!r}, verbose=0)
        before = searcher.search("cancer therapy", k=3)
        for f in other.iterdir():
            with open(f, "rb") as src, open(live / f.name, "r+b" if (live / f.name).exists() else "wb") as dst:
                dst.truncate(0)
                dst.write(src.read())
        after = searcher.search("cancer therapy", k=3)
        assert before == after, (before, after)
        print("ok")
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def test_a_chunk_truncated_under_a_pending_updater_is_an_error_not_a_signal(indexes, _tiny_checkpoint_master,
                                                                             tmp_path):
    live = Path(shutil.copytree(indexes["str"], tmp_path / "live"))
    result = _run(f"""
        import os, pathlib
        from colbert import IndexUpdater
        from colbert.errors import ColBERTError
        live = pathlib.Path({str(live)!r})
        updater = IndexUpdater(searcher=str(live), checkpoint={str(_tiny_checkpoint_master)!r})
        updater.remove(["doc-1"])
        os.truncate(live / "0.residuals.pt", 100)
        os.truncate(live / "0.codes.pt", 10)
        try:
            updater.persist_to_disk()
        except (ColBERTError, OSError, ValueError, RuntimeError) as e:
            print("error:", type(e).__name__)
        print("alive")
    """)
    assert result.returncode == 0, result.stderr[-2000:]  # no SIGBUS (returncode -7)
    assert "alive" in result.stdout


def test_a_stale_kernel_build_lock_is_waited_for_a_bounded_time(tmp_path, monkeypatch):
    """A build killed while it held torch's lock file used to hang every later process (torch waits forever)."""
    from colbert.kernels import native

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(native, "BUILD_LOCK_WAIT_S", 0.3)
    monkeypatch.setattr(native, "jit_build", lambda *a: pytest.fail("must not build while the lock is held"))
    csrc = tmp_path / "csrc"
    csrc.mkdir()
    (csrc / "ops.cpp").write_text("// empty\n")
    directory = native.cache_dir(torch.__version__, None, native.hash_sources(csrc))
    monkeypatch.setattr(native, "build_with_cuda", lambda: (False, "test"))
    directory.mkdir(parents=True)
    (directory / native.BUILD_LOCK).touch()
    with pytest.warns(Warning, match="has been held by another build for more than 0.3 s"):
        assert native.build_tier("auto", csrc) == "reference (another process's build lock is held)"
    with pytest.raises(RuntimeError, match="COLBERT_KERNELS=native but .*lock has been held"):
        native.build_tier("native", csrc)


def test_the_empty_index_name_is_the_index_root_itself(indexes):
    idx = indexes["str"]
    searcher = Searcher("", index_root=str(idx), verbose=0)  # llama-index's ColbertIndex builds and searches so
    assert Path(searcher.index) == Path(idx)
