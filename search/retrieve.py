"""Retrieve stage: candidates from the dense (FAISS) and lexical (BM25) indexes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from indexer.index import Index

Ranking = list[tuple[int, float]]  # (passage row, score), best first


class DenseRetriever:
    """Passages by e5 similarity, over their unit vectors.

    FAISS finds the nearest units (whole passages and single clauses); each
    candidate passage is then scored exactly as
    ``whole_weight * cos(whole passage) + (1 - whole_weight) * max cos(clause)``,
    so a passage counts both for its overall topic and for its one clause that
    says what the question asks.
    """

    def __init__(self, index: Index, whole_weight: float = 0.3, units_per_result: int = 4) -> None:
        self.index = index
        self.whole_weight = whole_weight
        self.units_per_result = units_per_result

    def search(self, query_vector: np.ndarray, k: int, allowed: np.ndarray | None = None) -> Ranking:
        import faiss

        index = self.index
        if index.size == 0 or k <= 0:
            return []
        query = np.ascontiguousarray(query_vector.reshape(1, -1), dtype=np.float32)
        n_units = int(index.unit_offsets[-1])
        depth = min(k * self.units_per_result, n_units)
        params = None
        if allowed is not None:
            unit_ids = np.flatnonzero(allowed[index.unit_passage]).astype(np.int64)
            if unit_ids.size == 0:
                return []
            depth = min(depth, int(unit_ids.size))
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(unit_ids))
        _scores, units = index.faiss.search(query, depth, params=params)
        candidates = np.unique(index.unit_passage[units[0][units[0] >= 0]])
        scored = [(int(row), self.passage_score(int(row), query[0])) for row in candidates]
        scored.sort(key=lambda pair: (-pair[1], pair[0]))
        return scored[:k]

    def passage_score(self, row: int, query: np.ndarray) -> float:
        sims = self.index.unit_vectors(row) @ query
        best_clause = float(sims[1:].max()) if sims.shape[0] > 1 else float(sims[0])
        return self.whole_weight * float(sims[0]) + (1 - self.whole_weight) * best_clause


class LexicalRetriever:
    """BM25 over jieba tokens of the passages' heading path and text."""

    def __init__(self, index: Index) -> None:
        self.index = index

    def search(self, tokens: Sequence[str], k: int, allowed: np.ndarray | None = None) -> Ranking:
        if not tokens or k <= 0:
            return []
        return self.index.bm25.top_k(tokens, k, allowed)
