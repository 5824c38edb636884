"""Retrieval for a generator: search an index and print the context a language model would be given.

    python examples/rag.py "How do I add documents to an existing index?"

No generator is called: the script prints the prompt (numbered passages with their ids, then the question), which is
what you would send to any LLM. Runs offline on the shipped corpus.
"""

from __future__ import annotations

import argparse
import tempfile

from colbert import ColBERTConfig, Indexer, Run, RunConfig, Searcher
from colbert.demo import default_checkpoint, demo_corpus

PROMPT = """Answer the question using only the passages below. Cite passages by their number.

{context}

Question: {question}
Answer:"""


def build_context(searcher: Searcher, corpus: dict[str, str], question: str, k: int, max_chars: int) -> str:
    """The top-k passages, numbered and cited by id, cut to `max_chars` in all."""
    ids, _, scores = searcher.search(question, k=k)
    parts, used = [], 0
    for n, (doc_id, score) in enumerate(zip(ids, scores), 1):
        part = f"[{n}] ({doc_id}, score {score:.2f}) {corpus[doc_id]}"
        if used + len(part) > max_chars:
            break
        parts.append(part)
        used += len(part)
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("question", nargs="?", default="How do I add documents to an existing index?")
    parser.add_argument("-k", type=int, default=4, help="passages to retrieve (default 4)")
    parser.add_argument("--max-chars", type=int, default=3000, help="context budget in characters")
    parser.add_argument("--checkpoint", help="a ColBERT checkpoint folder or hub name")
    args = parser.parse_args()
    corpus = demo_corpus()
    with tempfile.TemporaryDirectory() as root, Run().context(RunConfig(nranks=1, root=root, experiment="rag")):
        checkpoint = args.checkpoint or default_checkpoint()[0]
        Indexer(checkpoint=checkpoint, config=ColBERTConfig(nbits=2, doc_maxlen=180), verbose=0).index(
            name="docs", collection=corpus, overwrite=True)
        context = build_context(Searcher(index="docs", verbose=0), corpus, args.question, args.k, args.max_chars)
    print(PROMPT.format(context=context, question=args.question))


if __name__ == "__main__":
    main()
