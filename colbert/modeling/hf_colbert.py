"""The reference's `colbert.modeling.hf_colbert`: `class_factory(name_or_path)` -> an HF_ColBERT class.

Loading is colbert.modeling.hf_format's (the one module that knows the checkpoint layout). Difference: HF_ColBERT
here is a torch Module holding the backbone (`LM`) and the linear head, not a subclass of the backbone's
PreTrainedModel; `from_pretrained(name_or_path, colbert_config)` and `raw_tokenizer_from_pretrained` behave as
the reference's for checkpoint folders and hub names (docs/compat.md).
"""

from __future__ import annotations

from typing import Any, Optional

import torch.nn as nn
import transformers

from colbert.infra.config import ColBERTConfig
from colbert.modeling import hf_format

__all__ = ["class_factory", "find_class_names", "model_object_mapping", "base_class_mapping",
           "transformers_module", "XLMRobertaPreTrainedModel"]

XLMRobertaPreTrainedModel = transformers.XLMRobertaPreTrainedModel
transformers_module = dir(transformers)
model_object_mapping = {name: getattr(transformers, cls) for name, cls in {
    "roberta-base": "RobertaModel", "google/electra-base-discriminator": "ElectraModel",
    "xlm-roberta-base": "XLMRobertaModel", "xlm-roberta-large": "XLMRobertaModel", "bert-base-uncased": "BertModel",
    "bert-large-uncased": "BertModel", "microsoft/mdeberta-v3-base": "DebertaV2Model",
    "bert-base-multilingual-uncased": "BertModel"}.items()}
base_class_mapping = {name: getattr(transformers, cls.__name__.replace("Model", "PreTrainedModel"))
                      for name, cls in model_object_mapping.items()}


def find_class_names(model_type: str, class_type: str) -> Optional[str]:
    """The transformers class named model_type + class_type, case and dashes ignored ('bert', 'model' ->
    'BertModel'), or None."""
    wanted = model_type.replace("-", "").lower() + class_type.lower()
    return next((name for name in transformers_module if name.lower() == wanted), None)


def class_factory(name_or_path: str) -> type:
    """The HF_ColBERT class for a checkpoint (one class serves every backbone here)."""
    return HF_ColBERT


class HF_ColBERT(nn.Module):
    """A backbone (`LM`) and a linear head (hidden -> dim, no bias), as loaded from a ColBERT checkpoint."""

    def __init__(self, backbone: nn.Module, linear: nn.Linear, colbert_config: ColBERTConfig) -> None:
        super().__init__()
        self.config = backbone.config
        self.base_model_prefix = getattr(backbone, "base_model_prefix", "bert")
        self.LM, self.linear, self.dim = backbone, linear, colbert_config.dim
        self.colbert_config = colbert_config

    @classmethod
    def from_pretrained(cls, name_or_path: str, colbert_config: Optional[ColBERTConfig] = None) -> HF_ColBERT:
        from colbert.modeling.colbert import ColBERT

        model = ColBERT(name_or_path, colbert_config)
        obj = cls(model.bert, model.linear, model.colbert_config)
        obj.base = str(name_or_path)
        return obj

    @staticmethod
    def raw_tokenizer_from_pretrained(name_or_path: str) -> Any:
        return hf_format.load_tokenizer(str(name_or_path))
