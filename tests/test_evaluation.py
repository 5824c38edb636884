"""colbert.evaluation: dataset and run readers, and scores identical to ir-measures' on the run file."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from colbert.data import Ranking
from colbert.evaluation import (DEFAULT_MEASURES, evaluate, load_beir, load_dataset, load_tsv, read_qrels, read_run,
                                score_run, write_trec_run)

from conftest import SCIFACT

ir_measures = pytest.importorskip("ir_measures", reason="colbert.evaluation scores with ir-measures")


def random_run(seed: int, nq: int = 30, ndocs: int = 200, depth: int = 120) -> dict:
    """{qid: [(doc, rank, score)]} with tied scores on purpose (rounded to one decimal)."""
    rng = random.Random(seed)
    run = {}
    for q in range(nq):
        docs = rng.sample(range(ndocs), depth)
        scores = sorted((round(rng.uniform(0, 5), 1) for _ in docs), reverse=True)
        run[f"q{q}"] = [(f"d{d}", rank, s) for rank, (d, s) in enumerate(zip(docs, scores), start=1)]
    return run


def random_qrels(seed: int, nq: int = 32, ndocs: int = 200) -> dict:
    rng = random.Random(seed + 1000)
    return {f"q{q}": {f"d{d}": rng.choice([1, 1, 2, 3]) for d in rng.sample(range(ndocs), rng.randint(1, 6))}
            for q in range(nq)}


def write_qrels(qrels: dict, path: Path) -> Path:
    path.write_text("".join(f"{q} 0 {d} {r}\n" for q, docs in qrels.items() for d, r in docs.items()))
    return path


@pytest.mark.parametrize("seed", range(5))
def test_scores_equal_ir_measures_on_the_run_file(seed, tmp_path):
    run, qrels = random_run(seed), random_qrels(seed)
    run_file = write_trec_run(run, tmp_path / "run.trec")
    qrels_file = write_qrels(qrels, tmp_path / "qrels")
    names = ["nDCG@10", "R@100", "RR@10", "MRR@10", "P@5", "MAP"]
    measures = [ir_measures.parse_measure(n) for n in names]
    expected = ir_measures.calc_aggregate(measures, ir_measures.read_trec_qrels(str(qrels_file)),
                                          ir_measures.read_trec_run(str(run_file)))
    for source in (run, read_run(run_file), run_file, Ranking(data=run)):
        got = score_run(source, qrels, names)
        for name, measure in zip(names, measures):
            assert got[name] == expected[measure], (name, type(source))
    assert got["queries"] == 32 and got["queries_without_results"] == 2  # q30 and q31 are judged, not in the run


def test_per_query_values_average_to_the_aggregate():
    run, qrels = random_run(7), random_qrels(7)
    got = score_run(run, qrels, DEFAULT_MEASURES, per_query=True)
    per_query = got["per_query"]
    assert set(per_query) == set(qrels)
    for name in DEFAULT_MEASURES:
        assert sum(v[name] for v in per_query.values()) / len(per_query) == pytest.approx(got[name])


def test_a_hand_computed_example():
    qrels = {"1": {"a": 1, "b": 1}, "2": {"c": 2}}
    run = {"1": [("x", 1, 3.0), ("a", 2, 2.0)], "2": [("c", 1, 1.0)]}
    got = score_run(run, qrels)
    assert got["RR@10"] == pytest.approx((1 / 2 + 1) / 2)
    assert got["R@100"] == pytest.approx((1 / 2 + 1) / 2)
    ideal_1 = 1 + 1 / 1.584962500721156  # two relevant docs at ranks 1, 2
    assert got["nDCG@10"] == pytest.approx(((1 / 1.584962500721156) / ideal_1 + 1) / 2)


def test_read_qrels_formats(tmp_path):
    beir = tmp_path / "beir.tsv"
    beir.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t2\nq2\td1\t0\n")
    trec = tmp_path / "trec"
    trec.write_text("q1 0 d1 1\nq1 0 d2 2\nq2 0 d1 0\n")
    plain = tmp_path / "plain.tsv"
    plain.write_text("\ufeffq1\td1\t1\n\nq1\td2\t2\nq2\td1\t0\n")
    expected = {"q1": {"d1": 1, "d2": 2}, "q2": {"d1": 0}}
    assert read_qrels(beir) == read_qrels(trec) == read_qrels(plain) == expected


@pytest.mark.parametrize("text, message", [("q1\td1\n", ":1: expected 'qid doc_id relevance'"),
                                           ("q1\td1\t1\nq1\td2\thigh\n", ":2: relevance 'high' is not an integer"),
                                           ("\n", "holds no judgements")])
def test_bad_qrels_name_the_line(tmp_path, text, message):
    path = tmp_path / "qrels.tsv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_qrels(path)


def test_read_run_formats(tmp_path):
    trec = tmp_path / "run.trec"
    trec.write_text("q1 Q0 d1 1 2.5 tag\nq1 Q0 d2 2 1.5 tag\n")
    colbert = tmp_path / "ranking.tsv"
    colbert.write_text("q1\td1\t1\t2.5\nq1\td2\t2\t1.5\n")
    no_scores = tmp_path / "ranks.tsv"
    no_scores.write_text("q1\td1\t1\nq1\td2\t2\n")
    assert read_run(trec) == read_run(colbert) == {"q1": [("d1", 1, 2.5), ("d2", 2, 1.5)]}
    assert read_run(no_scores) == {"q1": [("d1", 1, -1.0), ("d2", 2, -2.0)]}
    bad = tmp_path / "bad"
    bad.write_text("q1 d1\n")
    with pytest.raises(ValueError, match=r"bad:1: expected TREC"):
        read_run(bad)


def test_a_saved_ranking_scores_as_the_run(tmp_path):
    run, qrels = random_run(3), random_qrels(3)
    Ranking(data=run).save(tmp_path / "ranking.tsv")
    assert score_run(tmp_path / "ranking.tsv", qrels) == score_run(run, qrels)


def test_unknown_measure_is_named():
    with pytest.raises(ValueError, match="'nDCG@ten' is not a measure"):
        score_run({"1": [("a", 1, 1.0)]}, {"1": {"a": 1}}, ["nDCG@ten"])


def make_beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    corpus = [{"_id": "d1", "title": "Tides", "text": "the moon pulls the sea"},
              {"_id": "d2", "title": "", "text": "sunlight heats the land"},
              {"_id": "3", "text": "no title field"}]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    queries = [{"_id": "q1", "text": "what causes tides"}, {"_id": "q2", "text": "why is it warm"},
               {"_id": "q3", "text": "never judged in test"}]
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq3\t3\t1\n")
    return folder


def test_load_beir(tmp_path):
    data = load_beir(make_beir(tmp_path / "tiny"))
    assert data.name == "tiny" and list(data.queries.items()) == [("q1", "what causes tides"),
                                                                  ("q2", "why is it warm")]
    assert data.corpus.ids == ["d1", "d2", "3"]
    assert list(data.corpus) == ["Tides | the moon pulls the sea", "sunlight heats the land", "no title field"]
    assert data.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}}
    dev = load_dataset(tmp_path / "tiny", split="dev", corpus=False)
    assert dev.corpus is None and list(dev.queries.keys()) == ["q3"]
    with pytest.raises(FileNotFoundError, match=r"train.tsv does not exist; the splits here are \['dev', 'test'\]"):
        load_beir(tmp_path / "tiny", split="train")


def test_beir_qrels_naming_a_missing_query_raise(tmp_path):
    folder = make_beir(tmp_path / "tiny")
    (folder / "qrels" / "test.tsv").write_text("q9\td1\t1\n")
    with pytest.raises(ValueError, match="judges 1 queries that queries.jsonl lacks"):
        load_beir(folder)


def test_load_dataset_reads_the_scifact_tsv_folder(shared_dir):
    data = load_dataset(SCIFACT)
    assert len(data.corpus) == 5183 and len(data.queries) == 300 and sum(map(len, data.qrels.values())) == 339
    assert all(str(qid) in data.qrels for qid in data.queries.keys())


def test_load_tsv_keeps_only_judged_queries(tmp_path):
    (tmp_path / "q.tsv").write_text("1\tjudged\n2\tnot judged\n")
    (tmp_path / "qrels.tsv").write_text("1\t10\t1\n")
    data = load_tsv(None, tmp_path / "q.tsv", tmp_path / "qrels.tsv")
    assert list(data.queries.items()) == [(1, "judged")] and data.corpus is None
    with pytest.raises(FileNotFoundError, match="neither a BEIR folder"):
        load_dataset(tmp_path / "nothing")


class FakeSearcher:
    """search_all returning a fixed run, to test evaluate() without a model."""

    def __init__(self, run: dict) -> None:
        self.run, self.calls = run, []

    def search_all(self, queries, k=10, **kwargs):
        self.calls.append((dict(queries.items()) if hasattr(queries, "items") else queries, k, kwargs))
        return Ranking(data={qid: rows[:k] for qid, rows in self.run.items()})


def test_evaluate_searches_then_scores_and_saves_the_run(tmp_path):
    run, qrels = random_run(11), random_qrels(11)
    searcher = FakeSearcher(run)
    queries = {qid: f"text of {qid}" for qid in run}
    got = evaluate(searcher, queries, qrels, k=50, run_path=str(tmp_path / "run.trec"), exact=True)
    assert searcher.calls == [(queries, 50, {"exact": True})]
    truncated = {qid: rows[:50] for qid, rows in run.items()}
    assert got == {**score_run(truncated, qrels), "k": 50}
    assert score_run(tmp_path / "run.trec", qrels) == score_run(truncated, qrels)


def test_evaluate_warns_when_k_is_below_a_cutoff(caplog):
    run, qrels = random_run(2), random_qrels(2)
    with caplog.at_level("WARNING", logger="colbert.evaluation"):
        evaluate(FakeSearcher(run), {q: q for q in run}, qrels, k=10)
    assert "k=10 is below the cutoff of a measure (100)" in caplog.text
