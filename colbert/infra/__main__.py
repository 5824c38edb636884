"""`python -m colbert.infra > docs/config.md`: the ColBERTConfig reference, generated from the field metadata."""

import sys

from colbert.infra.config import config_markdown

sys.stdout.write(config_markdown())
