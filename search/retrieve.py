"""Retrieve stage: candidates from the dense (FAISS) and lexical (BM25) indexes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from indexer.index import Index

Ranking = list[tuple[int, float]]  # (passage row, score), best first


class DenseRetriever:
    """Nearest passages by inner product of normalised e5 vectors."""

    def __init__(self, index: Index) -> None:
        self.index = index

    def search(self, query_vector: np.ndarray, k: int, allowed: np.ndarray | None = None) -> Ranking:
        import faiss

        if self.index.size == 0 or k <= 0:
            return []
        k = min(k, self.index.size)
        query = np.ascontiguousarray(query_vector.reshape(1, -1), dtype=np.float32)
        params = None
        if allowed is not None:
            ids = np.flatnonzero(allowed).astype(np.int64)
            if ids.size == 0:
                return []
            k = min(k, int(ids.size))
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(ids))
        scores, rows = self.index.faiss.search(query, k, params=params)
        return [(int(r), float(s)) for r, s in zip(rows[0], scores[0], strict=True) if r >= 0]


class LexicalRetriever:
    """BM25 over jieba tokens of the passages' heading path and text."""

    def __init__(self, index: Index) -> None:
        self.index = index

    def search(self, tokens: Sequence[str], k: int, allowed: np.ndarray | None = None) -> Ranking:
        if not tokens or k <= 0:
            return []
        return self.index.bm25.top_k(tokens, k, allowed)
