"""Shared fixtures. Data-dependent tests skip with a reason when ../shared/data is absent."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """The data folder: $RAWPROOF_DATA, else ``shared/data`` beside the project root."""
    return Path(os.environ.get("RAWPROOF_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_root()
    if not (root / "manifest.json").is_file():
        pytest.skip(f"shared data not present (set RAWPROOF_DATA); looked for manifest.json in {root.name}/")
    return root


@pytest.fixture(scope="session")
def data_manifest(shared_data: Path) -> dict:
    return json.loads((shared_data / "manifest.json").read_text())
