"""Evaluation helpers; `colbert.evaluation.loaders` keeps the reference's TSV loaders."""
