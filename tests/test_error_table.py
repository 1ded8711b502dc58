"""README.md documents every exception class of rawproof.errors in its "## Errors" table."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import rawproof.errors

README = Path(__file__).resolve().parents[1] / "README.md"
DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"


def _error_classes() -> list[str]:
    return [name for name in rawproof.errors.__all__
            if inspect.isclass(getattr(rawproof.errors, name)) and issubclass(getattr(rawproof.errors, name), Exception)]


def _table_rows(text: str) -> set[str]:
    """Names in backticks in the first cell of each markdown table row."""
    return set(re.findall(r"^\|\s*`(\w+)`", text, flags=re.MULTILINE))


def _errors_section(text: str) -> str:
    m = re.search(r"^## Errors\s*$(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert m, "README.md has no '## Errors' section"
    return m.group(1)


def test_every_error_class_is_exported() -> None:
    defined = {n for n, c in inspect.getmembers(rawproof.errors, inspect.isclass)
               if issubclass(c, Exception) and c.__module__ == rawproof.errors.__name__}
    assert defined == set(_error_classes())


def test_readme_error_table_lists_every_class() -> None:
    rows = _table_rows(_errors_section(README.read_text(encoding="utf-8")))
    missing = [n for n in _error_classes() if n not in rows]
    assert not missing, f"README.md '## Errors' table lacks rows for {missing}"


def test_docs_errors_lists_every_class() -> None:
    rows = _table_rows(DOC.read_text(encoding="utf-8"))
    missing = [n for n in _error_classes() if n not in rows]
    assert not missing, f"docs/errors.md lacks rows for {missing}"
    assert not rows - set(_error_classes()) - {"ValueError", "TypeError", "OSError"}, "rows for unknown classes"
