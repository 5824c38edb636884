"""Explanations: the MaxSim terms sum to the score, name the right tokens, render as a self-contained page."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from colbert import ColBERTConfig, Indexer, Run, RunConfig, Searcher
from colbert.cli import main
from colbert.explain import tokenize_document
from colbert.modeling.checkpoint import Checkpoint

QUERY = "cancer therapy trial"
TEXT = "A cancer therapy, in a new <b>trial</b>: immune drugs & more!"
COLLECTION = {"doc-0": TEXT, "doc-1": "brain heart blood", "doc-2": "mouse gene protein cell, virus risk"}


@pytest.fixture(scope="module")
def checkpoint(_tiny_checkpoint_master) -> Checkpoint:
    return Checkpoint(str(_tiny_checkpoint_master), verbose=0)


def build(checkpoint: Path, root: Path, **config) -> str:
    with Run().context(RunConfig(root=str(root), experiment="test")):
        return Indexer(str(checkpoint), config=ColBERTConfig(nbits=2, **config), verbose=0).index("idx", COLLECTION)


@pytest.fixture(scope="module")
def index(_tiny_checkpoint_master, tmp_path_factory) -> str:
    return build(_tiny_checkpoint_master, tmp_path_factory.mktemp("explain"))


def test_checkpoint_explain_is_the_maxsim_terms(checkpoint):
    e = checkpoint.explain(QUERY, TEXT)
    assert e.score == pytest.approx(checkpoint.rerank(QUERY, [TEXT])[0][1], rel=1e-5)
    assert e.score == pytest.approx(sum(m.score for m in e.matches), rel=1e-5)
    Q = checkpoint.queryFromText([QUERY])[0]
    D = checkpoint.docFromText([TEXT], keep_dims=False)[0]
    S = Q @ D.T  # (Lq, n)
    assert [m.score for m in e.matches] == pytest.approx(S.amax(dim=1).tolist(), rel=1e-5)
    kept = [pos for pos, best in enumerate(e.doc_best) if best is not None]
    assert [kept[i] for i in S.argmax(dim=1).tolist()] == [m.doc_position for m in e.matches]
    assert e.query_tokens[:3] == ["[CLS]", "[Q]", "cancer"] and e.doc_tokens[:2] == ["[CLS]", "[D]"]
    assert all(e.doc_tokens[m.doc_position] == m.doc_token for m in e.matches)
    assert e.doc_best[e.doc_tokens.index(",")] is None  # punctuation has no vector


def test_document_tokens_are_the_encoders_with_their_spans(checkpoint):
    ids, spans = tokenize_document(checkpoint, TEXT)
    assert ids == checkpoint.doc_tokenizer.encode_unpadded([TEXT])[0]
    words = [TEXT[a:b].lower() for a, b in spans if b > a]
    assert words[:3] == ["a", "cancer", "therapy"]


def test_searcher_explain_scores_the_stored_vectors_as_exact_search_does(index):
    searcher = Searcher(index, collection=COLLECTION, verbose=0)
    ids, _, scores = searcher.search(QUERY, k=3, exact=True)
    for doc_id, score in zip(ids, scores):
        e = searcher.explain(QUERY, doc_id)
        assert e.score == pytest.approx(score, rel=1e-5)
        assert e.text == COLLECTION[doc_id] and all(m.doc_position is not None for m in e.matches)
    with pytest.raises(KeyError, match="doc-9"):
        searcher.explain(QUERY, "doc-9")


def test_a_pooled_index_explains_vectors(_tiny_checkpoint_master, tmp_path):
    pytest.importorskip("scipy", reason="pooling clusters with scipy")
    searcher = Searcher(build(_tiny_checkpoint_master, tmp_path, pool_factor=2), collection=COLLECTION, verbose=0)
    ids, _, scores = searcher.search(QUERY, k=1, exact=True)
    e = searcher.explain(QUERY, ids[0])
    assert e.score == pytest.approx(scores[0], rel=1e-5)
    assert all(m.doc_position is None and m.doc_token.startswith("<vector") for m in e.matches)
    assert "<p class='doc'>" not in e.to_html()


def test_the_page_is_self_contained_and_escapes_the_text(checkpoint):
    page = checkpoint.explain(QUERY, TEXT).to_html()
    assert not re.search(r"<script|src=|href=|https?://|@import", page)
    assert "&lt;" in page and "&amp;" in page and "<b>trial</b>" not in page
    assert page.count("class='tok chosen'") >= 1 and "title=\"best match: query token" in page


def test_cli_explain_writes_the_page_and_prints_the_terms(index, tmp_path, capsys):
    out, tsv = tmp_path / "why.html", tmp_path / "collection.tsv"
    tsv.write_text("".join(f"{doc_id}\t{text}\n" for doc_id, text in COLLECTION.items()))
    assert main(["explain", "--index", index, QUERY, "doc-0", "--collection", str(tsv), "--html", str(out),
                 "--top", "3"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("score ") and "more" in printed and str(out) in printed
    assert "<span class='tok" in out.read_text()
    assert main(["explain", "--json", "--index", index, QUERY, "doc-0", "--html", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["html"] is None and len(data["matches"]) == len(data["query_tokens"])
    assert main(["explain", "--index", index, QUERY]) == 2  # no doc_id


@pytest.mark.slow
def test_the_page_renders_in_chromium(checkpoint, tmp_path):
    """Headless Chromium (Debian's `chromium` package) screenshots the page: the heatmap's colours are on it."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    Image = pytest.importorskip("PIL.Image", reason="Pillow reads the screenshot")
    page, png = tmp_path / "page.html", tmp_path / "page.png"
    page.write_text(checkpoint.explain(QUERY, TEXT).to_html(), encoding="utf-8")
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}", "--window-size=1000,800",
                    page.as_uri()], check=True, capture_output=True, timeout=120)
    image = Image.open(png).convert("RGB")
    assert image.size == (1000, 800)
    pixels = torch.from_numpy(np.asarray(image).reshape(-1, 3).astype("int32"))  # (H * W, 3)
    orange = (pixels[:, 0] > 200) & (pixels[:, 1] > 60) & (pixels[:, 1] < 200) & (pixels[:, 2] < 150)
    assert orange.sum() > 500  # shaded tokens were drawn
