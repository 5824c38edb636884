"""The reference's `colbert.training.training`: `train(config, triples, queries, collection)` and `set_bert_grad`.

Both are thin: training itself is colbert.training.train, driven by the Trainer facade.
"""

from __future__ import annotations

from typing import Any

from colbert.infra.config import ColBERTConfig
from colbert.training.train import _set_encoder_trainable

__all__ = ["train", "set_bert_grad"]


def train(config: ColBERTConfig, triples: Any, queries: Any = None, collection: Any = None) -> str:
    """Train from `config.checkpoint` on the triples; returns the saved checkpoint's folder."""
    from colbert.trainer import Trainer

    return Trainer(triples=triples, queries=queries, collection=collection, config=config).train(
        checkpoint=config.checkpoint)


def set_bert_grad(colbert: Any, value: bool) -> None:
    """Freeze (False) or unfreeze (True) the encoder's weights; the linear head is left as it is."""
    _set_encoder_trainable(getattr(colbert, "module", colbert), value)
