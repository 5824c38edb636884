"""Collection, Queries, Ranking, Examples: loading, ids, chunking, round trips and errors that name the line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from colbert.data import Collection, Examples, Queries, Ranking

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------- Collection


def test_collection_of_the_reference_layout_has_pid_ids(tmp_path):
    c = Collection(path=write(tmp_path / "c.tsv", "0\t  first passage \r\n1\tsecond\n2\tthird\ttitle\n\n"))
    assert c.ids is None and len(c) == 3
    assert list(c) == ["first passage", "second", "title | third"]  # stripped ends; a title column as the reference
    assert c[1] == "second" and c.id_of(2) == 2


def test_collection_keeps_string_and_int_ids(tmp_path):
    strings = Collection(path=write(tmp_path / "s.tsv", "doc-b\tb\ndoc-a\ta\n"))
    assert strings.ids == ["doc-b", "doc-a"] and strings.id_of(1) == "doc-a"
    ints = Collection(path=write(tmp_path / "i.tsv", "id\ttext\n40\tforty\n7\tseven\n"))  # header skipped
    assert ints.ids == [40, 7] and list(ints) == ["forty", "seven"]
    mixed = Collection(path=write(tmp_path / "m.tsv", "1\tone\n007\tseven\n"))
    assert mixed.ids == ["1", "007"]


def test_collection_from_list_and_dict():
    assert Collection(data=["a", "b"]).ids is None
    assert Collection(data={0: "a", 1: "b"}).ids is None
    c = Collection(data={"x": "a", 5: "b"})
    assert c.ids == ["x", 5] and list(c) == ["a", "b"]
    assert Collection.cast(c) is c and Collection.cast(["z"]).data == ["z"]


@pytest.mark.parametrize(
    "text, error, match",
    [
        ("0\ta\n1\tb\n0\tc\n", ValueError, r"c\.tsv:3: document id '0' is repeated \(first on line 1\)"),
        ("0\ta\njust text\n", ValueError, r"c\.tsv:2: expected 'pid<TAB>passage"),
        ("\n\n", ValueError, "holds no passages"),
    ],
)
def test_collection_file_errors_name_the_line(tmp_path, text, error, match):
    with pytest.raises(error, match=match):
        Collection(path=write(tmp_path / "c.tsv", text))


def test_collection_data_errors():
    with pytest.raises(TypeError, match=r"passage 1 \(id 'b'\) is a int"):
        Collection(data={"a": "text", "b": 3})
    with pytest.raises(TypeError, match="passage 0 is a NoneType"):
        Collection(data=[None])
    with pytest.raises(ValueError, match="empty"):
        Collection(data=[])
    with pytest.raises(TypeError, match="ids must be ints or strings"):
        Collection(data={(1, 2): "a"})
    with pytest.raises(TypeError, match="exactly one"):
        Collection()


@pytest.mark.parametrize("nranks", [1, 2, 3])
@pytest.mark.parametrize("chunksize", [None, 1, 4, 100])
def test_chunks_cover_the_collection_once(nranks, chunksize):
    c = Collection(data=[f"p{i}" for i in range(10)])
    size = chunksize or c.get_chunksize(nranks)
    seen = []
    for rank in range(nranks):
        mine = []
        for chunk_idx, offset, texts in c.enumerate_batches(rank=rank, nranks=nranks, chunksize=chunksize):
            assert chunk_idx % nranks == rank and offset == chunk_idx * size and 0 < len(texts) <= size
            mine += [(offset + i, t) for i, t in enumerate(texts)]
        assert list(c.enumerate(rank=rank, nranks=nranks, chunksize=chunksize)) == mine
        seen += mine
    assert sorted(seen) == [(i, f"p{i}") for i in range(10)]
    assert c.get_chunksize(nranks) == min(25_000, 1 + 10 // nranks)


def test_collection_save_round_trip(tmp_path):
    c = Collection(data={"d1": "alpha", "d2": "beta"})
    path = c.save(tmp_path / "out.tsv")
    assert Path(path).read_text() == "d1\talpha\nd2\tbeta\n"
    again = Collection(path=path)
    assert again.ids == c.ids and list(again) == list(c)
    with pytest.raises(FileExistsError):
        c.save(path)
    with pytest.raises(ValueError, match="tab or a line break"):
        Collection(data=["a\tb"]).save(tmp_path / "bad.tsv", overwrite=True)
    assert not (tmp_path / "bad.tsv").exists()


@pytest.mark.compat
def test_scifact_collections():
    if not (SHARED / "compat").is_dir():
        pytest.skip(f"{SHARED} is missing: the shared data lives in ../shared beside the checkout")
    small = Collection(path=SHARED / "compat" / "collection-scifact1k.tsv")
    assert len(small) == 1000 and small.ids is None
    full = Collection(path=SHARED / "data" / "scifact" / "collection.tsv")
    assert len(full) == 5183 and full.ids[:3] == [4983, 5836, 7912]
    assert full[0] == small[0]  # the 1k collection is the first 1,000 lines, renumbered


# ----------------------------------------------------------------------------------------------- Queries


def test_queries_from_files(tmp_path):
    with pytest.warns(UserWarning, match=r"q\.tsv:1: queries have more than two"):
        q = Queries(path=write(tmp_path / "q.tsv", "3\tfirst query\textra\n1\tsecond\n"))
    assert list(q.keys()) == [3, 1] and q[1] == "second" and list(q) == [(3, "first query"), (1, "second")]
    s = Queries(path=write(tmp_path / "s.tsv", "q-1\tx\nq-2\t\n"))
    assert dict(s.items()) == {"q-1": "x", "q-2": ""}
    with pytest.raises(KeyError, match="ints when all of them are integers"):
        q["3"]
    records = [{"qid": "a", "question": "what?", "answers": ["b"]}]
    j = Queries(path=write(tmp_path / "q.jsonl", "\n".join(json.dumps(r) for r in records)))
    assert j["a"] == "what?" and j.qas()["a"]["answers"] == ["b"]


def test_queries_from_data_and_round_trip(tmp_path):
    assert dict(Queries(data=["x", "y"]).items()) == {0: "x", 1: "y"}
    q = Queries(data={"q1": {"question": "why?", "id": 1}, "q2": "how?"})
    assert list(q.values()) == ["why?", "how?"] and len(q) == 2 and "q1" in q
    again = Queries(path=q.save(tmp_path / "out.tsv"))
    assert dict(again.items()) == dict(q.items())


def test_queries_errors(tmp_path):
    with pytest.raises(ValueError, match=r"q\.tsv:2: qid '1' is repeated \(first on line 1\)"):
        Queries(path=write(tmp_path / "q.tsv", "1\ta\n1\tb\n"))
    with pytest.raises(ValueError, match=r"q\.tsv:1: expected 'qid<TAB>query'"):
        Queries(path=write(tmp_path / "q.tsv", "no tab here\n"))
    with pytest.raises(TypeError, match="query 'q' is a int"):
        Queries(data={"q": 5})
    with pytest.raises(ValueError, match="no queries"):
        Queries(data={})


@pytest.mark.compat
def test_scifact_queries():
    if not (SHARED / "data" / "scifact" / "queries.tsv").exists():
        pytest.skip(f"{SHARED} is missing: the shared data lives in ../shared beside the checkout")
    q = Queries(path=SHARED / "data" / "scifact" / "queries.tsv")
    assert len(q) == 300 and list(q.keys())[:3] == [1, 3, 5]  # int qids, as the reference reads them


# ----------------------------------------------------------------------------------------------- Ranking


def test_ranking_views():
    r = Ranking(data={"q1": [(7, 1, 12.5), (3, 2, 11.0)], "q2": [[9, 1, 3.0]]})
    assert r.todict() == {"q1": [(7, 1, 12.5), (3, 2, 11.0)], "q2": [[9, 1, 3.0]]}  # rows keep their type
    assert r.tolist() == r.flatten() == r.flat_ranking == [("q1", 7, 1, 12.5), ("q1", 3, 2, 11.0), ["q2", 9, 1, 3.0]]
    assert [qid for qid, _ in r] == ["q1", "q2"] and len(r) == 2 and r["q2"] == [[9, 1, 3.0]]
    flat = Ranking(data=r.tolist())
    assert flat.todict() == r.todict()


@pytest.mark.parametrize(
    "data",
    [
        {1: [(10, 1, 0.1 + 0.2), (4, 2, -1e-05)], 2: [(4, 1, 3.0)]},
        {"q1": [("doc-9", 1, 12.783958435058594)], "q2": [("doc-1", 1, 1e30)]},
    ],
)
def test_ranking_save_load_round_trip(tmp_path, data):
    r = Ranking(data=data)
    path = r.save(tmp_path / "ranking.tsv")
    assert Path(path).read_text().splitlines()[0].count("\t") == 3
    loaded = Ranking.load(path)
    assert {q: [tuple(row) for row in rows] for q, rows in loaded.items()} == r.todict()  # ids and floats exactly
    assert all(isinstance(row, list) for row in loaded.flat_ranking)  # rows read back are lists, as the reference
    assert Path(f"{path}.meta").is_file() and Path(path).is_absolute()


def test_ranking_save_puts_a_relative_path_under_its_run_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = Ranking(data={1: [(2, 1, 0.5)]}, run_dir=tmp_path / "exp" / "run").save("out/r.tsv")
    assert path == str(tmp_path / "exp" / "run" / "out" / "r.tsv")
    assert json.loads(Path(path + ".meta").read_text())["provenance"] is None
    assert Ranking(data=[[1, 2, 1, 0.5]]).save("here.tsv") == str(tmp_path / "here.tsv")


def test_ranking_errors(tmp_path):
    with pytest.raises(ValueError, match=r"r\.tsv:2: rank '1\.5' is not an integer"):
        Ranking.load(write(tmp_path / "r.tsv", "1\t2\t1\t0.5\n1\t3\t1.5\t0.4\n"))
    with pytest.raises(ValueError, match=r"r\.tsv:1: 'high' is not a number"):
        Ranking.load(write(tmp_path / "r.tsv", "1\t2\t1\thigh\n"))
    with pytest.raises(ValueError, match=r"r\.tsv:1: expected 'qid<TAB>pid<TAB>rank"):
        Ranking.load(write(tmp_path / "r.tsv", "1\t2\n"))
    with pytest.raises(TypeError, match="each entry must be a tuple"):
        Ranking(data={"q": [5]})


# ----------------------------------------------------------------------------------------------- Examples


def test_examples_triples_and_distillation(tmp_path):
    lines = [[1, 10, 20, 30], ["q2", ["d1", 0.9], ["d2", -1.5], ["d3", 0]]]
    path = write(tmp_path / "triples.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    assert Examples(path=path).tolist() == lines and len(Examples(path=path)) == 2
    cut = Examples(path=path, nway=2)
    assert list(cut) == [[1, 10, 20], ["q2", ["d1", 0.9], ["d2", -1.5]]]
    assert Examples(path=cut.save(tmp_path / "out.jsonl")).tolist() == cut.tolist()


def test_examples_split_across_ranks():
    ex = Examples(data=[[i, i + 100] for i in range(5)])
    assert ex.tolist(rank=1, nranks=2) == [[1, 101], [3, 103]]
    assert ex.tolist(rank=0, nranks=2) + ex.tolist(rank=1, nranks=2) != ex.tolist()  # interleaved, not halves
    with pytest.raises(ValueError, match="0 <= rank < nranks"):
        ex.tolist(rank=2, nranks=2)


@pytest.mark.parametrize(
    "line, match",
    [
        ("[1, 2", "not valid JSON"),
        ('{"qid": 1}', r"expected \[qid, passage"),
        ("[1]", r"expected \[qid, passage"),
        ("[1, 2, [3, 0.5]]", "mixes plain pids"),
        ("[1, [2, 0.5, 7]]", r"expected \[pid, score\] pairs"),
        ("[1, [2, \"high\"]]", r"expected \[pid, score\] pairs"),
        ("[1.5, 2, 3]", "the qid is 1.5"),
        ("[1, 2, null]", "the pid is None"),
        ("[1, 2]", "has 1 passages but nway=2"),
    ],
)
def test_malformed_examples_name_the_line(tmp_path, line, match):
    path = write(tmp_path / "t.jsonl", f"[0, 1, 2]\n{line}\n")
    with pytest.raises(ValueError, match=match) as error:
        Examples(path=path, nway=2)
    assert "t.jsonl:2:" in str(error.value)
