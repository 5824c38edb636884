"""Which packages of colbert may import which: the layering of docs/architecture.md, checked on the source.

Every `import colbert.X` / `from colbert.X import ...` (at module level or inside a function) counts.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "colbert"

# package -> the packages it may import besides itself ("" is the top-level `colbert` package: only its
# __init__ re-exports, which would pull in the facades).
ALLOWED = {
    "errors": set(),
    "utils": {"errors"},
    "kernels": {"errors", "utils"},
    "infra": {"errors", "utils"},
    "data": {"errors", "utils", "infra"},
    "index": {"errors", "utils", "kernels", "infra"},
    "modeling": {"errors", "utils", "kernels", "infra", "data"},
    "search": {"errors", "utils", "kernels", "infra", "index"},
    "indexing": {"errors", "utils", "kernels", "infra", "data", "index", "modeling"},
    "training": {"errors", "utils", "kernels", "infra", "data", "modeling"},
}

# Known exceptions, each with its reason; the test fails when one is no longer needed, so the list stays true.
KNOWN_EXCEPTIONS = {
    ("colbert/infra/config.py", "modeling"): "the reference's ColBERTConfig.load_from_checkpoint reads through "
    "modeling.hf_format inside the method: a checkpoint's config is found by knowing its layout (artifact.metadata, "
    "sentence-transformers / PyLate modules, BGE-M3 heads, a head's weights), modeling's knowledge; the facades "
    "call hf_format directly",
    ("colbert/indexing/collection_indexer.py", "indexer"): "the reference's CollectionIndexer.run (a drop-in shim "
    "from issue 23) drives the Indexer facade, imported inside the method",
    ("colbert/training/training.py", "trainer"): "the reference's colbert.training.training.train (a drop-in shim "
    "from issue 23) drives the Trainer facade, imported inside the function",
}


def imported_packages(path: Path) -> set[str]:
    """The colbert packages a file imports: the part after `colbert.` (`colbert` alone gives "")."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "colbert":  # `from colbert import kernels`
                names = [f"colbert.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "colbert":
                found.add(parts[1] if len(parts) > 1 else "")
    return found


def package_of(path: Path) -> str:
    relative = path.relative_to(ROOT)
    return relative.parts[0].removesuffix(".py")


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_packages_import_only_the_layers_below_them(package):
    files = sorted((ROOT / package).rglob("*.py")) if (ROOT / package).is_dir() else [ROOT / f"{package}.py"]
    assert files
    wrong = {}
    for path in files:
        name = str(path.relative_to(ROOT.parent))
        extra = {p for p in imported_packages(path) - ALLOWED[package] - {package}
                 if (name, p) not in KNOWN_EXCEPTIONS}
        if extra:
            wrong[name] = sorted(extra)
    assert not wrong, f"imports across the layering of docs/architecture.md: {wrong}"


def test_known_exceptions_are_still_needed():
    for (name, package), reason in KNOWN_EXCEPTIONS.items():
        assert package in imported_packages(ROOT.parent / name), f"{name} no longer imports {package}: drop it"


def test_indexing_and_search_never_import_each_other():
    for package, other in (("indexing", "search"), ("search", "indexing")):
        for path in (ROOT / package).rglob("*.py"):
            assert other not in imported_packages(path), f"{path} imports colbert.{other}"


def test_the_checker_sees_function_level_and_from_colbert_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from colbert import kernels\n\ndef f():\n    from colbert.modeling.hf_format import x\n"
                      "    import colbert.search.plaid\n")
    assert imported_packages(source) == {"kernels", "modeling", "search"}
