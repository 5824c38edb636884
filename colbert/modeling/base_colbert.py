"""The reference's `colbert.modeling.base_colbert`: BaseColBERT(name_or_path, colbert_config) is ColBERT here.

The reference splits the model into BaseColBERT (loading and saving) and ColBERT (scoring); here one class does
both, with the same attributes (colbert_config, bert, linear, raw_tokenizer, device, save).
"""

from colbert.modeling.colbert import ColBERT as BaseColBERT

__all__ = ["BaseColBERT"]
