"""PieceTokenizer gives the ids of the full tokenizer.json while loading only the pieces a text can use."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from indexer import pieces
from indexer.build import corpus_files, parse_file
from indexer.chunk import embedding_units
from indexer.config import Settings
from indexer.pieces import MAX_GROWTHS, PieceTokenizer

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS = REPO_ROOT / "corpus"
CALIBRATION = REPO_ROOT / "search" / "data" / "calibration.jsonl"


@pytest.fixture(scope="module")
def full(model_dir: Path):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(model_dir / "tokenizer.json"))


@pytest.fixture(scope="module")
def seed_units() -> list[str]:
    settings = Settings.from_env(environ={})
    texts = []
    for path in corpus_files(CORPUS):
        parsed = parse_file(path, CORPUS, settings)
        assert parsed is not None
        texts.extend("passage: " + unit for passage in parsed[1] for unit in embedding_units(passage))
    return texts


def questions() -> list[str]:
    lines = CALIBRATION.read_text(encoding="utf-8").splitlines()
    return ["query: " + json.loads(line)["query"] for line in lines if line.strip()]


def odd_texts() -> list[str]:
    """Mixed scripts, full-width forms, combining marks, emoji, controls, unknown characters, long runs."""
    rng = random.Random(7)
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x600, 0x6FF), (0x900, 0x97F),
              (0x3000, 0x303F), (0x3040, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xFF00, 0xFFEF),
              (0x1F300, 0x1F64F), (0x0300, 0x036F), (0x2000, 0x206F), (0x2460, 0x24FF), (0xE000, 0xE0FF)]
    texts = ["", " ", "  a  b  ", "\t\n", "……………", "。。。。", "<s></s><unk>", "ﬁ ﬂ ℡ ㈱ ①②③", "ＡＢＣ１２３，。",
             "e\u0301 a\u0308", "\x01\x02abc\x7f", "教育" * 400]
    for _ in range(300):
        low, high = rng.choice(ranges)
        texts.append("".join(chr(rng.randint(low, high)) for _ in range(rng.randint(1, 40))))
    return texts


def test_ids_equal_the_full_tokenizer_on_the_corpus_questions_and_odd_texts(
    model_dir: Path, full, seed_units: list[str]  # type: ignore[no-untyped-def]
) -> None:
    texts = seed_units + questions() + odd_texts()
    expected = [e.ids for e in full.encode_batch(texts)]
    # One text at a time (the model grows), and all at once (one model for all of them).
    one_by_one = PieceTokenizer(model_dir)
    got = [one_by_one.ids([text])[0].tolist() for text in texts[-40:]]
    assert got == expected[-40:]
    together = PieceTokenizer(model_dir)
    assert [ids.tolist() for ids in together.ids(texts)] == expected


def test_the_seed_corpus_needs_few_pieces(model_dir: Path, seed_units: list[str]) -> None:
    tokenizer = PieceTokenizer(model_dir)
    tokenizer.ids(seed_units)
    assert tokenizer.pieces_loaded < 20_000 and not tokenizer.complete  # of 250,002


def test_truncates_like_the_full_tokenizer(model_dir: Path, full) -> None:  # type: ignore[no-untyped-def]
    text = "passage: " + "推进义务教育优质均衡发展。" * 200
    ids = PieceTokenizer(model_dir).ids([text])[0]
    assert len(ids) == 512 and ids.tolist() == full.encode(text).ids


def test_a_question_needs_few_pieces(model_dir: Path) -> None:
    tokenizer = PieceTokenizer(model_dir)
    tokenizer.ids(["query: 学前三年毛入园率要达到多少?"])
    assert 0 < tokenizer.pieces_loaded < 1000 and not tokenizer.complete


def test_grows_a_few_times_then_loads_every_piece(model_dir: Path, full) -> None:  # type: ignore[no-untyped-def]
    tokenizer = PieceTokenizer(model_dir)
    texts = [f"query: {q}" for q in ("控辍保学", "课后服务", "校园安全", "English words", "智慧校园 Wi-Fi")]
    for n, text in enumerate(texts):
        assert tokenizer.ids([text])[0].tolist() == full.encode(text).ids
        assert tokenizer.complete == (n >= MAX_GROWTHS)
    assert tokenizer.pieces_loaded == full.get_vocab_size()


def test_load_all_and_empty_input(model_dir: Path, full) -> None:  # type: ignore[no-untyped-def]
    tokenizer = PieceTokenizer(model_dir)
    assert tokenizer.ids([]) == []
    tokenizer.load_all()
    tokenizer.load_all()  # once is enough; twice is harmless
    assert tokenizer.complete
    assert tokenizer.ids(["query: 教育"])[0].tolist() == full.encode("query: 教育").ids


def test_files_round_trip(tmp_path: Path, model_dir: Path, full) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    pieces.write_files(json.loads(full.to_str()), tmp_path)
    for name in (pieces.PIECES, pieces.BASE):
        assert (tmp_path / name).read_text(encoding="utf-8") == (model_dir / name).read_text(encoding="utf-8")
    assert np.allclose(np.load(tmp_path / pieces.SCORES), np.load(model_dir / pieces.SCORES), rtol=1e-6)
    broken = json.loads(full.to_str())
    broken["model"]["vocab"][5][0] = "a\nb"
    with pytest.raises(ValueError, match="newline"):
        pieces.write_files(broken, tmp_path / "broken")
