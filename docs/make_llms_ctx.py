"""Regenerate llms_ctx.txt: llms.txt followed by README.md and every docs/*.md, in llms.txt's order.

    python docs/make_llms_ctx.py
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build() -> str:
    index = (ROOT / "llms.txt").read_text(encoding="utf-8")
    names = [n for n in re.findall(r"\]\(([^)]+\.md)\)", index) if (ROOT / n).is_file() and n != "ROADMAP.md"]
    parts = [index.strip()]
    for name in names:
        parts.append(f'<doc path="{name}">\n{(ROOT / name).read_text(encoding="utf-8").strip()}\n</doc>')
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    (ROOT / "llms_ctx.txt").write_text(build(), encoding="utf-8")
