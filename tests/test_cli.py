"""The `colbert` command line: every subcommand on a small collection, exit codes, --json output, error lines.

Most tests call `main([...])` in-process (capsys holds stdout/stderr); a few run `python -m colbert` in a
subprocess. The tiny random checkpoint matches exact words well enough for a query to find the document it was cut
from; one test runs the MiniLM checkpoint on SciFact passages.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from colbert.cli import SUBCOMMANDS, format_table, main

from conftest import ROOT, SCIFACT

TOPICS = ["protein folding", "black holes", "tax policy", "jazz piano", "coral reefs", "rust compilers",
          "medieval castles", "vaccine trials", "desert lizards", "glacier melting", "opera singers", "solar panels"]
DOCS = {f"doc-{i}": f"{TOPICS[i % len(TOPICS)]} {'and more ' * (i % 3)}passage {i} about {TOPICS[i % len(TOPICS)]}"
        for i in range(36)}


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture, *argv: str) -> dict:
    code, out, err = run_cli(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def write_tsv(path: Path, docs: dict) -> Path:
    path.write_text("".join(f"{k}\t{v}\n" for k, v in docs.items()))
    return path


@pytest.fixture(scope="module")
def tiny(_tiny_checkpoint_master: Path) -> Path:
    return _tiny_checkpoint_master


@pytest.fixture(scope="module")
def built(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An nbits-2 index of DOCS built by `colbert index` (read-only for the tests that use it)."""
    root = tmp_path_factory.mktemp("cli")
    collection = write_tsv(root / "collection.tsv", DOCS)
    index = root / "indexes" / "topics"
    assert main(["index", "-c", str(tiny), "--collection", str(collection), "--index", str(index), "--nbits", "2"]) == 0
    return {"root": root, "collection": collection, "index": index}


@pytest.fixture
def index_copy(built: dict, tmp_path: Path) -> Path:
    """A private copy of the built index, for tests that change it."""
    import shutil

    return Path(shutil.copytree(built["index"], tmp_path / "topics"))


# ----------------------------------------------------------------------------------------------- the parser


def test_help_lists_every_subcommand_and_each_has_an_example(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    for name in SUBCOMMANDS:
        assert name in out
        code, sub, _ = run_cli(capsys, name, "--help")
        assert code == 0 and "example:" in sub and f"colbert {name}" in sub.split("example:")[1], name


@pytest.mark.parametrize("argv", [[], ["no-such-command"], ["search"], ["search", "--index"],
                                  ["index", "--collection", "x.tsv"], ["search", "--index", "x", "q", "-k", "ten"],
                                  ["index", "-c", "m", "--collection", "c", "--index", "i", "--nbits", "3"]])
def test_usage_errors_exit_2(capsys, argv):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert out == ""
    assert "usage:" in err and "Traceback" not in err


def test_arguments_that_do_not_fit_together_exit_2_with_one_line(capsys, built):
    code, out, err = run_cli(capsys, "search", "--index", built["index"], "a query", "--queries", "q.tsv")
    assert (code, out) == (2, "")
    assert err.strip().count("\n") == 0 and err.startswith("colbert search: error: give queries as arguments")
    code, _, err = run_cli(capsys, "update", built["index"])
    assert code == 2 and "nothing to do" in err


def test_a_failure_is_one_line_without_traceback_and_debug_shows_it(capsys, tmp_path):
    code, out, err = run_cli(capsys, "info", tmp_path / "missing")
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("colbert info: error: IndexFormatError:") and "metadata.json is missing" in err
    code, _, err = run_cli(capsys, "info", tmp_path / "missing", "--debug")
    assert code == 1
    assert "Traceback (most recent call last)" in err and err.strip().endswith(err.strip().splitlines()[-1])
    assert err.strip().splitlines()[-1].startswith("colbert info: error: IndexFormatError:")


def test_common_options_go_before_or_after_the_subcommand(capsys, built):
    before = main(["--json", "info", str(built["index"])])
    out_before = capsys.readouterr().out
    after = main(["info", str(built["index"]), "--json"])
    out_after = capsys.readouterr().out
    assert before == after == 0 and json.loads(out_before) == json.loads(out_after)


def test_main_leaves_the_colbert_logger_as_it_found_it(capsys, tmp_path):
    import logging

    logger = logging.getLogger("colbert")
    state = (list(logger.handlers), logger.level, logger.propagate)
    run_cli(capsys, "info", tmp_path, "-v")
    assert (list(logger.handlers), logger.level, logger.propagate) == state


def test_format_table_aligns_columns():
    table = format_table([[1, "a", 0.5], [10, "bbb", 12.25]], ["rank", "doc_id", "score"])
    assert table.splitlines() == ["rank  doc_id    score", "   1  a        0.5000", "  10  bbb     12.2500"]


# ----------------------------------------------------------------------------------------------- index, info, verify


def test_index_then_info_and_verify(capsys, built):
    info = run_json(capsys, "info", built["index"])
    assert info["documents"] == len(DOCS) and info["nbits"] == 2 and info["dim"] == 16
    assert info["embeddings"] > len(DOCS) and info["size_bytes"] > 0
    assert info["checkpoint"].endswith("tiny-colbert") and info["doc_ids"] == "own ids" and info["texts_stored"]
    code, out, _ = run_cli(capsys, "info", built["index"])
    assert code == 0 and f"documents     {len(DOCS)}" in out
    assert run_json(capsys, "verify", built["index"]) == {"index": str(built["index"]), "ok": True, "problems": []}


def test_verify_exits_1_listing_the_problems(capsys, index_copy):
    (index_copy / "ivf.pid.pt").unlink()
    code, out, err = run_cli(capsys, "verify", index_copy, "--json")
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False and any("ivf.pid.pt" in p for p in report["problems"])
    assert "problem" in err.splitlines()[-1]


def test_an_existing_index_is_kept_without_overwrite(capsys, tiny, built):
    code, _, err = run_cli(capsys, "index", "-c", tiny, "--collection", built["collection"], "--index",
                           built["index"])
    assert code == 1 and "IndexExistsError" in err and "overwrite" in err
    info = run_json(capsys, "index", "-c", tiny, "--collection", built["collection"], "--index", built["index"],
                    "--reuse")
    assert info["documents"] == len(DOCS)


def test_index_a_folder_of_text_files_ids_are_relative_paths(capsys, tiny, tmp_path):
    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    expected = []
    for i, topic in enumerate(TOPICS[:6]):
        name = f"{'sub/' if i % 2 else ''}{topic.replace(' ', '_')}.{'md' if i % 3 else 'txt'}"
        (folder / name).write_text(f"# {topic}\n\n{topic} {topic}\n")
        expected.append(name)
    (folder / "image.png").write_bytes(b"\x89PNG")
    (folder / ".hidden" / "secret.txt").write_text("not indexed")
    (folder / "empty.md").write_text("  \n")
    info = run_json(capsys, "index", "-c", tiny, "--collection", folder, "--index", tmp_path / "idx")
    assert info["documents"] == 6
    result = run_json(capsys, "search", "--index", tmp_path / "idx", "# jazz piano jazz piano jazz piano", "--text")
    hits = result["queries"][0]["results"]
    assert sorted(h["doc_id"] for h in hits) == sorted(expected)
    assert hits[0]["doc_id"] == "sub/jazz_piano.txt" and hits[0]["text"] == "# jazz piano\n\njazz piano jazz piano"


def test_index_a_jsonl_collection_keeps_other_fields_as_metadata(capsys, tiny, tmp_path):
    from colbert import Searcher

    records = [{"id": key, "text": text, "title": text.split()[0], "n": i}
               for i, (key, text) in enumerate(list(DOCS.items())[:12])]
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    info = run_json(capsys, "index", "-c", tiny, "--collection", path, "--index", tmp_path / "idx", "--nbits", "2")
    assert info["documents"] == 12
    text = f"jazz | {DOCS['doc-3']}"
    hits = run_json(capsys, "search", "--index", tmp_path / "idx", text, "--text")["queries"][0]["results"]
    assert hits[0]["doc_id"] == "doc-3" and hits[0]["text"] == text
    assert Searcher(str(tmp_path / "idx"), verbose=0).document("doc-3") == {"id": "doc-3", "text": text,
                                                                            "metadata": {"n": 3}}


def test_bad_collection_is_one_line_naming_the_file(capsys, tiny, tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"id": "a", "text": "fine"}\n{"id": "b"}\n')
    code, _, err = run_cli(capsys, "index", "-c", tiny, "--collection", path, "--index", tmp_path / "idx")
    assert code == 1 and f"{path}:2" in err and err.count("\n") == 1
    assert not (tmp_path / "idx").exists()


# ----------------------------------------------------------------------------------------------- search


def test_search_json_equals_the_searcher(capsys, built):
    from colbert import Searcher

    result = run_json(capsys, "search", "--index", built["index"], DOCS["doc-7"], "-k", "5")
    assert result["k"] == 5 and len(result["queries"]) == 1
    hits = result["queries"][0]["results"]
    ids, ranks, scores = Searcher(str(built["index"]), verbose=0).search(DOCS["doc-7"], k=5)
    assert [h["doc_id"] for h in hits] == ids and [h["rank"] for h in hits] == ranks == [1, 2, 3, 4, 5]
    assert [h["score"] for h in hits] == pytest.approx(scores)
    assert ids[0] == "doc-7"


def test_search_diversity_equals_the_searcher(capsys, built):
    from colbert import Searcher

    result = run_json(capsys, "search", "--index", built["index"], DOCS["doc-7"], "-k", "5", "--diversity", "0.5")
    expected = Searcher(str(built["index"]), verbose=0).search(DOCS["doc-7"], k=5, diversity=0.5)
    assert [h["doc_id"] for h in result["queries"][0]["results"]] == expected[0]
    code, _, err = run_cli(capsys, "search", "--index", built["index"], "q", "--diversity", "1.5")
    assert code == 1 and "diversity" in err and err.count("\n") == 1


def test_search_table_shows_rank_id_score_and_text(capsys, built):
    code, out, _ = run_cli(capsys, "search", "--index", built["index"], DOCS["doc-4"], "-k", "2", "--text")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["rank", "doc_id", "score", "text"]
    assert lines[1].split()[:2] == ["1", "doc-4"] and DOCS["doc-4"][:30] in lines[1] and len(lines) == 3


def test_search_queries_from_stdin(capsys, built, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{DOCS['doc-1']}\n\n{DOCS['doc-2']}\n"))
    result = run_json(capsys, "search", "--index", built["index"], "-", "-k", "3")
    assert [q["qid"] for q in result["queries"]] == [0, 1]
    assert [q["results"][0]["doc_id"] for q in result["queries"]] == ["doc-1", "doc-2"]


def test_search_queries_from_a_file_saves_the_ranking(capsys, built, tmp_path):
    from colbert.data import Ranking

    queries = tmp_path / "queries.tsv"
    queries.write_text("".join(f"q{i}\t{DOCS[f'doc-{i}']}\n" for i in (5, 6, 8)))
    run_path = tmp_path / "run.tsv"
    result = run_json(capsys, "search", "--index", built["index"], "--queries", queries, "-k", "4", "-o", run_path)
    assert [q["qid"] for q in result["queries"]] == ["q5", "q6", "q8"]
    saved = Ranking.load(run_path)
    assert [row[0] for row in saved["q6"]] == [h["doc_id"] for h in result["queries"][1]["results"]]
    code, out, _ = run_cli(capsys, "search", "--index", built["index"], "--queries", queries, "-k", "2")
    assert code == 0 and out.count("query q") == 3


def test_search_of_a_missing_index_fails_in_one_line(capsys, tmp_path):
    code, out, err = run_cli(capsys, "search", "--index", tmp_path / "nope", "query")
    assert (code, out) == (1, "") and "FileNotFoundError" in err and err.count("\n") == 1


def test_search_without_a_query_is_a_usage_error(capsys, built):
    code, _, err = run_cli(capsys, "search", "--index", built["index"])
    assert code == 2 and "no query" in err


# ----------------------------------------------------------------------------------------------- rerank


def test_rerank_texts_from_stdin(capsys, tiny, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("jazz piano trio\ncoral reefs bleaching\ntax policy debate\n"))
    result = run_json(capsys, "rerank", "-c", tiny, "--query", "coral reefs", "--documents", "-")
    hits = result["results"]
    assert [h["rank"] for h in hits] == [1, 2, 3] and hits[0]["doc_id"] == 1 and hits[0]["index"] == 1
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


def test_rerank_by_id_equals_searcher_restricted_to_the_ids(capsys, built):
    from colbert import Searcher

    ids = ["doc-1", "doc-9", "doc-13", "doc-20"]
    result = run_json(capsys, "rerank", "--index", built["index"], "--query", DOCS["doc-13"], "--doc-ids", *ids)
    expected = Searcher(str(built["index"]), verbose=0).search(DOCS["doc-13"], k=4, pids=ids)
    assert [h["doc_id"] for h in result["results"]] == expected[0] and expected[0][0] == "doc-13"
    assert [h["score"] for h in result["results"]] == pytest.approx(expected[2])


def test_rerank_unknown_id_and_missing_arguments(capsys, built):
    code, _, err = run_cli(capsys, "rerank", "--index", built["index"], "--query", "q", "--doc-ids", "doc-1", "zzz")
    assert code == 1 and "'zzz'" in err
    code, _, err = run_cli(capsys, "rerank", "--query", "q")
    assert code == 2 and "--documents" in err


# ----------------------------------------------------------------------------------------------- update


def test_update_adds_and_removes_in_one_commit(capsys, index_copy, tmp_path):
    new = write_tsv(tmp_path / "new.tsv", {"new-1": "volcano eruptions and lava flows", "doc-2": "replaced text"})
    remove = tmp_path / "remove.txt"
    remove.write_text("doc-2\ndoc-3\n")
    result = run_json(capsys, "update", index_copy, "--add", new, "--remove", remove)
    assert result == {"index": str(index_copy), "added": 2, "removed": 2, "documents": len(DOCS)}
    hits = run_json(capsys, "search", "--index", index_copy, "volcano", "-k", "100", "--exact", "--text")
    texts = {h["doc_id"]: h["text"] for h in hits["queries"][0]["results"]}
    assert set(texts) == set(DOCS) - {"doc-3"} | {"new-1"}
    assert texts["doc-2"] == "replaced text" and texts["new-1"] == "volcano eruptions and lava flows"
    assert run_json(capsys, "verify", index_copy)["ok"]


def test_search_text_from_the_collection_file_when_the_index_stores_none(capsys, tiny, built, tmp_path):
    index = tmp_path / "idx"
    run_json(capsys, "index", "-c", tiny, "--collection", built["collection"], "--index", index,
             "--no-store-documents")
    assert not (index / "documents.jsonl").exists() and not run_json(capsys, "info", index)["texts_stored"]
    hits = run_json(capsys, "search", "--index", index, DOCS["doc-5"], "--text")["queries"][0]["results"]
    assert {h["doc_id"]: h["text"] for h in hits}["doc-5"] == DOCS["doc-5"]
    new = write_tsv(tmp_path / "new.tsv", {"new-1": "volcano eruptions and lava flows"})
    run_json(capsys, "update", index, "--add", new)
    code, out, err = run_cli(capsys, "search", "--index", index, "volcano", "-k", "100", "--exact", "--text",
                             "--json")
    texts = {h["doc_id"]: h["text"] for h in json.loads(out)["queries"][0]["results"]}
    assert code == 0 and texts["new-1"] is None and "lacks the documents added since" in err
    hits = run_json(capsys, "search", "--index", index, "volcano", "-k", "100", "--exact", "--text",
                    "--collection", new)["queries"][0]["results"]
    assert {h["doc_id"]: h["text"] for h in hits}["new-1"] == "volcano eruptions and lava flows"


def test_update_with_an_unknown_id_changes_nothing(capsys, index_copy, tmp_path):
    remove = tmp_path / "remove.txt"
    remove.write_text("doc-1\nno-such-doc\n")
    before = sorted(p.name for p in index_copy.iterdir())
    code, _, err = run_cli(capsys, "update", index_copy, "--remove", remove)
    assert code == 1 and "'no-such-doc'" in err and err.count("\n") == 1
    assert sorted(p.name for p in index_copy.iterdir()) == before
    assert run_json(capsys, "info", index_copy)["documents"] == len(DOCS)


def test_update_matches_integer_ids(capsys, tiny, tmp_path):
    collection = write_tsv(tmp_path / "c.tsv", {i: text for i, text in enumerate(DOCS.values())})
    run_json(capsys, "index", "-c", tiny, "--collection", collection, "--index", tmp_path / "idx")
    (tmp_path / "rm.txt").write_text("4\n17\n")
    assert run_json(capsys, "update", tmp_path / "idx", "--remove", tmp_path / "rm.txt")["removed"] == 2


# ----------------------------------------------------------------------------------------------- eval


def _eval_files(tmp_path: Path) -> tuple[Path, Path]:
    queries, qrels = tmp_path / "queries.tsv", tmp_path / "qrels.tsv"
    queries.write_text("".join(f"{i}\t{TOPICS[i]}\n" for i in range(len(TOPICS))))
    qrels.write_text("".join(f"{i} 0 doc-{i} 1\n{i} 0 doc-{i + len(TOPICS)} 2\n" for i in range(len(TOPICS))))
    return queries, qrels


def test_eval_search_equals_ir_measures_on_the_run_file(capsys, built, tmp_path):
    import ir_measures

    queries, qrels = _eval_files(tmp_path)
    run_path = tmp_path / "run.trec"
    result = run_json(capsys, "eval", "--index", built["index"], "--queries", queries, "--qrels", qrels,
                      "-k", "20", "-o", run_path)
    measures = [ir_measures.parse_measure(m) for m in ("nDCG@10", "R@100", "RR@10")]
    expected = ir_measures.calc_aggregate(measures, ir_measures.read_trec_qrels(str(qrels)),
                                          ir_measures.read_trec_run(str(run_path)))
    assert result["nDCG@10"] == pytest.approx(expected[measures[0]], abs=1e-12)
    assert result["R@100"] == pytest.approx(expected[measures[1]], abs=1e-12)
    assert result["MRR@10"] == pytest.approx(expected[measures[2]], abs=1e-12)
    assert result["queries"] == len(TOPICS) and result["k"] == 20 and 0 < result["nDCG@10"] <= 1
    again = run_json(capsys, "eval", "--run", run_path, "--qrels", qrels)
    assert {k: again[k] for k in ("nDCG@10", "R@100", "MRR@10")} == {k: result[k] for k in ("nDCG@10", "R@100",
                                                                                         "MRR@10")}


def test_eval_table_and_per_query(capsys, built, tmp_path):
    queries, qrels = _eval_files(tmp_path)
    code, out, _ = run_cli(capsys, "eval", "--index", built["index"], "--queries", queries, "--qrels", qrels,
                           "--per-query", "--measures", "nDCG@10", "P@5")
    assert code == 0
    assert out.splitlines()[0].split() == ["measure", "value"] and "nDCG@10" in out and "P@5" in out
    assert "(12 judged queries)" in out and "qid" in out


def test_eval_a_beir_folder(capsys, built, tmp_path):
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": TOPICS[i]}) + "\n"
                                                for i in range(len(TOPICS))))
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" +
                                             "".join(f"q{i}\tdoc-{i}\t1\n" for i in range(4)))
    result = run_json(capsys, "eval", "--index", built["index"], "--data", beir, "-k", "10")
    assert result["queries"] == 4 and 0 < result["nDCG@10"] <= 1
    code, _, err = run_cli(capsys, "eval", "--index", built["index"], "--data", beir, "--split", "dev")
    assert code == 1 and "dev.tsv does not exist" in err and "['test']" in err


def test_eval_usage_errors(capsys, tmp_path):
    code, _, err = run_cli(capsys, "eval", "--qrels", "q.tsv")
    assert code == 2 and "--run" in err
    code, _, err = run_cli(capsys, "eval", "--run", "r", "--index", "i", "--qrels", "q.tsv")
    assert code == 2
    (tmp_path / "run").write_text("1 Q0 d 1 2.0 x\n")
    (tmp_path / "qrels").write_text("1\td\t1\n")
    code, _, err = run_cli(capsys, "eval", "--run", tmp_path / "run", "--qrels", tmp_path / "qrels",
                           "--measures", "Bogus@3")
    assert code == 1 and "'Bogus@3' is not a measure" in err


# ----------------------------------------------------------------------------------------------- train


def test_train_a_few_steps_then_index_with_the_result(capsys, tiny, tmp_path):
    queries = tmp_path / "queries.tsv"
    queries.write_text("".join(f"q-{i}\twhat about {t}?\n" for i, t in enumerate(TOPICS)))
    collection = write_tsv(tmp_path / "collection.tsv", DOCS)
    triples = tmp_path / "triples.jsonl"
    triples.write_text("".join(json.dumps([f"q-{i}", f"doc-{i}", f"doc-{(i + 1) % 12}"]) + "\n" for i in range(12)))
    result = run_json(capsys, "train", "--triples", triples, "--queries", queries, "--collection", collection,
                      "-c", tiny, "--root", tmp_path / "exp", "--name", "run", "--bsize", "4", "--nway", "2",
                      "--maxsteps", "2")
    checkpoint = Path(result["checkpoint"])
    assert checkpoint == tmp_path / "exp" / "default" / "none" / "run" / "checkpoints" / "colbert"  # colbert-ai's
    assert (checkpoint / "artifact.metadata").is_file() and result["steps"] == 2
    info = run_json(capsys, "index", "-c", checkpoint, "--collection", collection, "--index", tmp_path / "idx")
    assert info["documents"] == len(DOCS)


def test_train_bad_settings_fail_before_training(capsys, tiny, tmp_path):
    collection = write_tsv(tmp_path / "c.tsv", DOCS)
    (tmp_path / "q.tsv").write_text("q\tquery\n")
    (tmp_path / "t.jsonl").write_text('["q", "doc-1", "doc-2"]\n')
    code, _, err = run_cli(capsys, "train", "--triples", tmp_path / "t.jsonl", "--queries", tmp_path / "q.tsv",
                           "--collection", collection, "-c", tiny, "--root", tmp_path / "exp", "--bsize", "3",
                           "--accumsteps", "2", "--set", "nway=2")
    assert code == 1 and "accumsteps" in err and err.count("\n") == 1
    code, _, err = run_cli(capsys, "train", "--triples", "t", "--queries", "q", "--collection", collection,
                           "--set", "nbit=2")
    assert code == 1 and "nbit" in err


# ----------------------------------------------------------------------------------------------- subprocess


def _python_m(*argv: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "colbert", *map(str, argv)], input=stdin, capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=300)


def test_python_m_colbert_exit_codes():
    assert _python_m("--help").returncode == 0
    bad = _python_m("search")
    assert bad.returncode == 2 and "required" in bad.stderr
    failed = _python_m("info", "/no/such/index")
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.count("\n") == 1 and "Traceback" not in failed.stderr


def test_python_m_colbert_search_reads_stdin(built):
    done = _python_m("search", "--index", built["index"], "-", "--json", "-k", "2", stdin=DOCS["doc-11"] + "\n")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["queries"][0]["results"][0]["doc_id"] == "doc-11"


# ----------------------------------------------------------------------------------------------- MiniLM


def test_minilm_index_search_and_eval_on_scifact(capsys, minilm_checkpoint, tmp_path):
    """200 SciFact passages (those judged for the first 40 queries, then others) with the real model."""
    from colbert.evaluation import load_dataset

    data = load_dataset(SCIFACT)
    qids = list(data.queries.keys())[:40]
    wanted = {doc for qid in qids for doc in data.qrels[str(qid)]}
    ids = [data.corpus.id_of(pid) for pid in range(len(data.corpus))]
    keep = [pid for pid, doc in enumerate(ids) if str(doc) in wanted]
    keep += [pid for pid in range(len(ids)) if str(ids[pid]) not in wanted][:200 - len(keep)]
    write_tsv(tmp_path / "collection.tsv", {ids[pid]: data.corpus[pid] for pid in keep})
    (tmp_path / "queries.tsv").write_text("".join(f"{qid}\t{data.queries[qid]}\n" for qid in qids))
    (tmp_path / "qrels.tsv").write_text("".join(f"{qid}\t{doc}\t{rel}\n" for qid in qids
                                                for doc, rel in data.qrels[str(qid)].items()))
    info = run_json(capsys, "index", "-c", minilm_checkpoint, "--collection", tmp_path / "collection.tsv",
                    "--index", tmp_path / "idx", "--nbits", "2")
    assert info["documents"] == 200 and info["dim"] == 128
    result = run_json(capsys, "eval", "--index", tmp_path / "idx", "--queries", tmp_path / "queries.tsv",
                      "--qrels", tmp_path / "qrels.tsv", "-o", tmp_path / "run.trec")
    assert result["queries"] == 40 and result["nDCG@10"] > 0.6 and result["R@100"] > 0.9
    searched = run_json(capsys, "search", "--index", tmp_path / "idx", "--queries", tmp_path / "queries.tsv",
                        "-k", "100")
    from colbert.evaluation import read_run

    run = read_run(tmp_path / "run.trec")  # the same search: PLAID's settings follow k, so k is the same too
    for query in searched["queries"]:
        assert [str(h["doc_id"]) for h in query["results"]] == [row[0] for row in run[str(query["qid"])]]


def test_doctests_of_the_cli_and_folder_reader():
    import doctest

    import colbert.cli
    import colbert.data.folder

    for module in (colbert.cli, colbert.data.folder):
        failed, attempted = doctest.testmod(module)
        assert attempted > 0 and failed == 0, module.__name__


def test_docs_cli_names_every_subcommand():
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    missing = [name for name in SUBCOMMANDS if f"colbert {name}" not in text]
    assert not missing, f"docs/cli.md does not mention: {missing}"


@pytest.mark.parametrize("env, expected", [({}, "10000"), ({"GOMP_SPINCOUNT": "5"}, "5"),
                                           ({"OMP_WAIT_POLICY": "active"}, None)])
def test_serve_shortens_the_openmp_spin_unless_told_otherwise(env, expected):
    code = ("import os, sys; from colbert.cli import serve; serve._shorter_openmp_spin(); "
            "first = os.environ.get('GOMP_SPINCOUNT'); import torch; os.environ.pop('GOMP_SPINCOUNT', None); "
            "serve._shorter_openmp_spin(); print(first, os.environ.get('GOMP_SPINCOUNT'))")
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout.split()
    assert out == [str(expected), "None"]  # once torch is loaded, setting it would change nothing: left alone
