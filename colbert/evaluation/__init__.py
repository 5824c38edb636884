"""Evaluation: read BEIR-format and TSV test collections, search them, score the run with ir-measures.

    from colbert import Searcher
    from colbert.evaluation import evaluate, load_dataset

    data = load_dataset("scifact/")                    # BEIR (corpus.jsonl, queries.jsonl, qrels/test.tsv) or TSV
    searcher = Searcher("./indexes/scifact")
    evaluate(searcher, data.queries, data.qrels)       # {"nDCG@10": ..., "R@100": ..., "RR@10": ...}

The numbers are ir-measures' own (`ir_measures.calc_aggregate` on the same run), so they equal what ir-measures
gives on the run file. MRR@10 is ir-measures' RR@10. Needs `pip install colbert-ai[eval]` (ir-measures).
`colbert.evaluation.loaders` keeps the reference's TSV loaders (load_queries, load_qrels, load_collection, ...).
"""

from __future__ import annotations

from colbert.evaluation.datasets import Dataset, load_beir, load_dataset, load_tsv, read_qrels
from colbert.evaluation.measures import DEFAULT_MEASURES, read_run, score_run, write_trec_run
from colbert.evaluation.runs import evaluate

__all__ = ["DEFAULT_MEASURES", "Dataset", "evaluate", "load_beir", "load_dataset", "load_tsv", "read_qrels",
           "read_run", "score_run", "write_trec_run"]
