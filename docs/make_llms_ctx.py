"""Regenerate llms.txt and llms_ctx.txt from the docs site's sources (mkdocs.yml's nav and the pages).

    python docs/make_llms_ctx.py          # write both files
    python docs/make_llms_ctx.py --check  # exit 1 if either is out of date (the test suite runs this check)

llms.txt is docs/index.md (the summary, setup and example) followed by one line per page of the nav, in the nav's
order, each with the `description` of its front matter (else its first paragraph). llms_ctx.txt is llms.txt
followed by README.md and every page's text, so a language model gets the whole documentation in one file.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n+", re.S)
OPTIONAL = [("Full context for LLMs", "llms_ctx.txt", "README and every docs page in one file"),
            ("Roadmap", "ROADMAP.md", "what is done, next and later")]


def nav() -> list[tuple[str, str]]:
    """(title, page) pairs of mkdocs.yml's nav, in order (read as text: the nav is a flat list)."""
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    block = text[text.index("\nnav:"):]
    return re.findall(r"^\s+- ([^:\n]+): (\S+\.md)\s*$", block, re.M)


def split_page(text: str) -> tuple[dict[str, str], str]:
    """A page's front matter (simple `key: value` lines) and its body."""
    match = FRONT_MATTER.match(text)
    if not match:
        return {}, text
    meta = dict(line.split(": ", 1) for line in match.group(1).splitlines() if ": " in line)
    return meta, text[match.end():]


def description(body: str) -> str:
    for block in re.split(r"\n\s*\n", re.sub(r"```.*?```", "", body, flags=re.S)):
        block = block.strip()
        if block and not block.startswith(("#", "|", ">")):
            return " ".join(block.split())
    return ""


def page(name: str) -> tuple[dict[str, str], str]:
    return split_page((DOCS / name).read_text(encoding="utf-8"))


def llms_txt() -> str:
    pages = nav()
    _, home = page(pages[0][1])
    lines = [home.strip(), "", "## Docs", "- [README](README.md): the two set-up commands, checkpoints, warnings, how "
             "this library compares (measured)"]
    for title, name in pages[1:]:
        meta, body = page(name)
        lines.append(f"- [{title}](docs/{name}): {meta.get('description') or description(body)}")
    lines += ["", "## Optional", *(f"- [{t}]({p}): {d}" for t, p, d in OPTIONAL)]
    return "\n".join(lines) + "\n"


def llms_ctx_txt() -> str:
    parts = [llms_txt().strip(), f'<doc path="README.md">\n{(ROOT / "README.md").read_text(encoding="utf-8").strip()}\n</doc>']
    for _, name in nav()[1:]:
        _, body = page(name)
        parts.append(f'<doc path="docs/{name}">\n{body.strip()}\n</doc>')
    return "\n\n".join(parts) + "\n"


def build() -> str:
    """llms_ctx.txt's text (the name tests/test_config.py and older callers use)."""
    return llms_ctx_txt()


def outputs() -> dict[Path, str]:
    return {ROOT / "llms.txt": llms_txt(), ROOT / "llms_ctx.txt": llms_ctx_txt()}


def stale() -> list[Path]:
    """The generated files whose content differs from what the sources give."""
    return [path for path, text in outputs().items()
            if not path.is_file() or path.read_text(encoding="utf-8") != text]


if __name__ == "__main__":
    if "--check" in sys.argv[1:]:
        out_of_date = stale()
        for path in out_of_date:
            print(f"{path.name} is out of date: run python docs/make_llms_ctx.py", file=sys.stderr)
        sys.exit(1 if out_of_date else 0)
    for path, text in outputs().items():
        path.write_text(text, encoding="utf-8")
