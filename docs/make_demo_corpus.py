"""Regenerate colbert/resources/demo_corpus.tsv, the passages `colbert demo` indexes: this library's own docs.

    python docs/make_demo_corpus.py

Each section of README.md and docs/*.md (config.md aside: a generated table) becomes passages of at most
MAX_WORDS words, cut at paragraph ends; code blocks and tables are left out, and so are the brackets of
special tokens ([MASK] would be read as the tokenizer's own mask token). Ids are `file#section-n`. The file is
a snapshot shipped with the package (the docs are MIT-licensed like the code), so it is not required to follow
every later edit of the docs; rerun this script when they change a lot.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "colbert" / "resources" / "demo_corpus.tsv"
SOURCES = ["README.md", "docs/modeling.md", "docs/indexing.md", "docs/search.md", "docs/updates.md",
           "docs/training.md", "docs/compat.md"]
MAX_WORDS = 80
MIN_WORDS = 12


def plain(markdown: str) -> str:
    """Markdown inline markup dropped: links keep their text, no backticks or bold, one line."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", markdown)
    text = text.replace("**", "").replace("`", "")
    text = re.sub(r"\[(MASK|CLS|SEP|PAD|UNK|Q|D|unused\d+)\]", r"\1", text)  # would read as special tokens
    return " ".join(text.split())


def sections(text: str) -> list[tuple[str, list[str]]]:
    """(heading, paragraphs) of a markdown text, without fenced code blocks and tables."""
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)  # front matter
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    out: list[tuple[str, list[str]]] = [("", [])]
    for block in re.split(r"\n\s*\n", text):
        block = block.strip()
        heading = re.match(r"^#+\s+(.*)", block)
        if heading:
            out.append((heading.group(1).strip(), []))
            block = block[heading.end():].strip()
        if block and not block.startswith("|"):
            out[-1][1].append(plain(block))
    return [(h, ps) for h, ps in out if ps]


def passages(name: str, text: str) -> list[tuple[str, str]]:
    found = []
    for heading, paragraphs in sections(text):
        slug = re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-") or "top"
        current: list[str] = []
        for paragraph in paragraphs + [None]:
            words = sum(len(p.split()) for p in current)
            if paragraph is None or (current and words + len(paragraph.split()) > MAX_WORDS):
                body = " ".join(current)
                if len(body.split()) >= MIN_WORDS:
                    title = f"{heading}: " if heading else ""
                    found.append((f"{name}#{slug}-{len(found)}", title + body))
                current = []
            if paragraph is not None:
                current.append(paragraph)
    return found


def build() -> str:
    rows = [p for name in SOURCES for p in passages(name, (ROOT / name).read_text(encoding="utf-8"))]
    return "".join(f"{pid}\t{text.replace(chr(9), ' ')}\n" for pid, text in rows)


if __name__ == "__main__":
    OUT.write_text(build(), encoding="utf-8")
    print(f"wrote {OUT}: {len(OUT.read_text(encoding='utf-8').splitlines())} passages")
