"""Fixtures for the API, CLI and page tests: the seed index plus an index with a hostile document."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.api.hostile import EVIL_TEXT

CORPUS = Path(__file__).resolve().parents[2] / "corpus"


@pytest.fixture(scope="session")
def evil_settings(tmp_path_factory: pytest.TempPathFactory, model_dir: Path):  # type: ignore[no-untyped-def]
    """Settings of an index built (once) from the seed corpus plus ``evil.txt``."""
    from indexer.build import build_index
    from indexer.config import Settings

    home = tmp_path_factory.mktemp("plansearch-evil")
    corpus = home / "corpus"
    corpus.mkdir()
    for path in CORPUS.iterdir():
        if path.is_file():
            shutil.copy2(path, corpus / path.name)
    (corpus / "evil.txt").write_text(EVIL_TEXT, encoding="utf-8")
    settings = Settings.from_env(home=home, model_dir=model_dir, corpus_dir=corpus, index_dir=home / "index")
    report = build_index(settings, progress=False, say=lambda _line: None)
    assert "evil.txt" in report.files_parsed, report
    return settings
