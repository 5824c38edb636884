"""Explanations: why a document scored what it did, token by token.

A ColBERT score is a sum of MaxSim terms: each query vector contributes its best similarity with any of the
document's vectors. `Checkpoint.explain(query, text)` and `Searcher.explain(query, doc_id)` return those terms as an
`Explanation`: for each query token, the document token it matched and what it contributed (the contributions sum to
the score), and for each document token its best similarity with any query token (the heatmap). `to_html()` writes a
self-contained page (the document's text, each token shaded by its best match, hover for the query token and the
value); `to_text()` a compact terminal view.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor

logger = logging.getLogger(__name__)


@dataclass
class Match:
    """One MaxSim term: query token `query_position` matched document token `doc_position` with `score`."""

    query_position: int
    query_token: str
    doc_position: Optional[int]  # position in Explanation.doc_tokens; None when vectors are not tokens (pooled)
    doc_token: str
    score: float


@dataclass
class Explanation:
    """The MaxSim terms of one (query, document) pair; see the module docstring.

    Attributes:
        query, text: what was compared (text is "" when the document's text was not available).
        score: the document's score, the sum of `matches[i].score`.
        query_tokens: one per query vector ([CLS], [Q], wordpieces, the [MASK] padding).
        doc_tokens: every token of the document as encoded (markers and punctuation included).
        doc_spans: each document token's (start, end) characters in `text`; (0, 0) for markers.
        doc_best: for each document token, (query position, similarity) of the query token most similar to it;
            None for tokens without a vector (punctuation, or all of them for a pooled index).
        matches: one per query vector, in query order.
    """

    query: str
    text: str
    score: float
    query_tokens: list[str]
    doc_tokens: list[str]
    doc_spans: list[tuple[int, int]]
    doc_best: list[Optional[tuple[int, float]]]
    matches: list[Match] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Plain data (for JSON)."""
        return {"query": self.query, "score": self.score, "text": self.text, "query_tokens": self.query_tokens,
                "doc_tokens": self.doc_tokens, "doc_spans": self.doc_spans, "doc_best": self.doc_best,
                "matches": [vars(m) for m in self.matches]}

    def to_text(self, top: int = 10, width: int = 24) -> str:
        """A compact view: the score, then the `top` largest contributions with bars, then the rest summed."""
        ranked = sorted(self.matches, key=lambda m: -m.score)
        scale = max((m.score for m in ranked), default=1.0) or 1.0
        lines = [f"score {self.score:.4f} = sum of {len(self.matches)} query-token maxima", ""]
        for m in ranked[:top]:
            bar = "#" * max(0, round(width * m.score / scale))
            where = "" if m.doc_position is None else f" @{m.doc_position}"
            lines.append(f"  {m.query_token[:14]:>14} -> {(m.doc_token + where)[:22]:<22} {m.score:7.4f}  {bar}")
        rest = ranked[top:]
        if rest:
            lines.append(f"  {'':>14}    {f'{len(rest)} more':<22} {sum(m.score for m in rest):7.4f}")
        return "\n".join(lines)

    def to_html(self, title: Optional[str] = None) -> str:
        """A self-contained HTML page (no scripts, no external files): the heatmap and the table of matches."""
        title = title or f"ColBERT explanation: {self.query}"
        chosen = {m.doc_position for m in self.matches if m.doc_position is not None}
        top = max((b[1] for b in self.doc_best if b is not None), default=1.0) or 1.0
        if not self.text:
            body = "<p>(the document's text is not available)</p>"
        elif all(b is None for b in self.doc_best):  # the stored vectors do not map to tokens (a pooled index)
            body = ("<p>(the document's vectors do not stand for its tokens, e.g. they were pooled: no heatmap)</p>"
                    f"<p class='plain'>{html.escape(self.text)}</p>")
        else:
            body = _heatmap(self, chosen, top)
        rows = "\n".join(
            f"<tr><td>{m.query_position}</td><td>{html.escape(m.query_token)}</td>"
            f"<td>{html.escape(m.doc_token)}</td><td>{'' if m.doc_position is None else m.doc_position}</td>"
            f"<td class='num'>{m.score:.4f}</td></tr>" for m in self.matches)
        return _PAGE.format(title=html.escape(title), query=html.escape(self.query), score=f"{self.score:.4f}",
                            n=len(self.matches), body=body, rows=rows)


def _heatmap(e: Explanation, chosen: set, top: float) -> str:
    """The text with each token's span shaded by its best similarity (text between tokens kept as it is)."""
    out, at = [], 0
    for pos, ((start, end), best) in enumerate(zip(e.doc_spans, e.doc_best)):
        if end <= start or start < at:  # markers, and spans already covered
            continue
        out.append(html.escape(e.text[at:start]))
        piece = html.escape(e.text[start:end])
        if best is None:
            out.append(f"<span class='tok none' title='no vector (punctuation)'>{piece}</span>")
        else:
            q, sim = best
            alpha = max(0.0, sim) / top
            tip = f"best match: query token {e.query_tokens[q]!r} (#{q}), similarity {sim:.3f}"
            cls = "tok chosen" if pos in chosen else "tok"
            if pos in chosen:
                terms = [m for m in e.matches if m.doc_position == pos]
                tip += "; MaxSim term of " + ", ".join(f"{m.query_token!r} (+{m.score:.3f})" for m in terms)
            out.append(f"<span class='{cls}' style='background: rgba(230, 85, 13, {alpha:.3f})' "
                       f"title=\"{html.escape(tip)}\">{piece}</span>")
        at = end
    out.append(html.escape(e.text[at:]))
    return "<p class='doc'>" + "".join(out) + "</p>"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }}
.doc {{ line-height: 2; font-size: 1.1em; }}
.tok {{ border-radius: 3px; padding: 0.1em 0; }}
.tok.chosen {{ border-bottom: 2px solid #7f2704; }}
.tok.none {{ color: #999; }}
table {{ border-collapse: collapse; margin-top: 1.5em; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 0.2em 0.8em; text-align: left; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.legend span {{ padding: 0.1em 0.6em; }}
</style></head>
<body>
<h1>Why this document scored {score}</h1>
<p>Query: <b>{query}</b>. The score is the sum of {n} MaxSim terms: each query token's best similarity with a
document token. Each token below is shaded by its best similarity with any query token; underlined tokens are some
query token's best match. Hover over a token for details.</p>
<p class="legend">low <span style="background: rgba(230, 85, 13, 0.15)">&nbsp;</span>
<span style="background: rgba(230, 85, 13, 0.5)">&nbsp;</span>
<span style="background: rgba(230, 85, 13, 1)">&nbsp;</span> high</p>
{body}
<table><thead><tr><th>#</th><th>query token</th><th>matched document token</th><th>position</th>
<th>contribution</th></tr></thead>
<tbody>
{rows}
</tbody></table>
</body></html>
"""


def explain_vectors(Q: Tensor, D: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The MaxSim terms of Q against D, and each document vector's best query vector.

    Returns:
        (term (Lq,), matched document row (Lq,), best query row per document vector (n,), its similarity (n,)).

    Shapes: Q (Lq, d), D (n, d).

    >>> explain_vectors(torch.tensor([[1., 0.], [0., 1.]]), torch.tensor([[0.5, 0.1], [0.2, 0.9]]))[:2]
    (tensor([0.5000, 0.9000]), tensor([0, 1]))
    """
    S = Q.float() @ D.float().T  # (Lq, n)
    terms, matched = S.max(dim=1)  # (Lq,), (Lq,)
    best_sim, best_q = S.max(dim=0)  # (n,), (n,)
    return terms, matched, best_q, best_sim


def build_explanation(query: str, text: str, query_tokens: list[str], doc_tokens: list[str],
                      doc_spans: list[tuple[int, int]], vector_positions: Optional[list[int]], Q: Tensor,
                      D: Tensor) -> Explanation:
    """An Explanation from the vectors. `vector_positions[i]` is the document token of D's row i; None when D's rows
    are not tokens (a pooled index), in which case matches name the vector instead.

    Shapes: Q (Lq, d), D (n, d).
    """
    terms, matched, best_q, best_sim = explain_vectors(Q, D)
    doc_best: list[Optional[tuple[int, float]]] = [None] * len(doc_tokens)
    if vector_positions is not None:
        for row, pos in enumerate(vector_positions):
            doc_best[pos] = (int(best_q[row]), float(best_sim[row]))
    matches = []
    for q, (term, row) in enumerate(zip(terms.tolist(), matched.tolist())):
        pos = None if vector_positions is None else vector_positions[row]
        token = f"<vector {row}>" if pos is None else doc_tokens[pos]
        matches.append(Match(q, query_tokens[q], pos, token, term))
    return Explanation(query=query, text=text, score=float(terms.sum()), query_tokens=query_tokens,
                       doc_tokens=doc_tokens, doc_spans=doc_spans, doc_best=doc_best, matches=matches)


def tokenize_document(checkpoint: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """The document's token ids exactly as `DocTokenizer.encode_unpadded` makes them, with character spans.

    Returns (ids, spans): spans[i] is token i's (start, end) in `text`, (0, 0) for [CLS], [D] and [SEP].
    """
    tokenizer = checkpoint.doc_tokenizer
    prompt = getattr(tokenizer, "prompt", None)
    if prompt is not None:  # a text prompt (or nothing) before the text instead of a marker (layouts.Encoding)
        enc = tokenizer.tok(prompt + text, truncation="longest_first", max_length=tokenizer.doc_maxlen,
                            return_offsets_mapping=True, return_attention_mask=False)
        shift = len(prompt)
        spans = [(0, 0) if e <= shift else (max(s - shift, 0), e - shift) for s, e in enc["offset_mapping"]]
        return enc["input_ids"], spans
    enc = tokenizer.tok(text, truncation="longest_first", max_length=tokenizer.doc_maxlen - 1,
                        return_offsets_mapping=True, return_attention_mask=False)
    ids = enc["input_ids"][:1] + [tokenizer.D_marker_token_id] + enc["input_ids"][1:]
    spans = [tuple(s) for s in enc["offset_mapping"]]
    spans = spans[:1] + [(0, 0)] + spans[1:]
    return ids, spans


def kept_positions(checkpoint: Any, ids: list[int]) -> list[int]:
    """Positions of the tokens that get a vector (not [PAD], not the punctuation skiplist), in order."""
    return checkpoint.kept_positions(ids)


def query_tokens(checkpoint: Any, query: str, full_length_search: bool = False) -> list[str]:
    """The query's tokens as encoded (markers and [MASK] padding included)."""
    ids, _ = checkpoint.query_tokenizer.tensorize([query], full_length_search=full_length_search)
    ids = ids[0].tolist()
    return marker_names(checkpoint, checkpoint.query_tokenizer.tok.convert_ids_to_tokens(ids), ids)


def marker_names(checkpoint: Any, tokens: list[str], ids: list[int]) -> list[str]:
    """Tokens with the [Q]/[D] markers shown by their display names instead of [unused0]/[unused1]."""
    config = checkpoint.colbert_config
    names = {checkpoint.doc_tokenizer.D_marker_token_id: config.doc_token,
             checkpoint.query_tokenizer.Q_marker_token_id: config.query_token}
    return [names.get(i, t) for t, i in zip(tokens, ids)]


def document_tokens(checkpoint: Any, text: str) -> tuple[list[int], list[str], list[tuple[int, int]]]:
    """The document's ids, their display names and character spans (see tokenize_document)."""
    ids, spans = tokenize_document(checkpoint, text)
    names = marker_names(checkpoint, checkpoint.doc_tokenizer.tok.convert_ids_to_tokens(ids), ids)
    return ids, names, spans
