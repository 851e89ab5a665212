"""Retrieve stage: candidates from the dense (FAISS) and lexical (BM25) indexes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from indexer.index import Index

Ranking = list[tuple[int, float]]  # (passage row, score), best first

# A filter that leaves at most this many units is searched exactly, without
# FAISS: an inverted-file index probes only some lists and could miss them.
EXACT_FILTER_MAX = 50_000


class DenseRetriever:
    """Passages by e5 similarity, over their unit vectors.

    FAISS finds the nearest units (whole passages and single clauses); each
    candidate passage is then scored exactly, from its stored vectors, as
    ``whole_weight * cos(whole passage) + (1 - whole_weight) * max cos(clause)``,
    so a passage counts both for its overall topic and for its one clause that
    says what the question asks.
    """

    def __init__(self, index: Index, whole_weight: float = 0.3, units_per_result: int = 4) -> None:
        self.index = index
        self.whole_weight = whole_weight
        self.units_per_result = units_per_result

    def search(self, query_vector: np.ndarray, k: int, allowed: np.ndarray | None = None) -> Ranking:
        index = self.index
        if index.size == 0 or k <= 0:
            return []
        query = np.ascontiguousarray(query_vector.reshape(-1), dtype=np.float32)
        if allowed is not None:
            rows = np.flatnonzero(allowed)
            if rows.size == 0:
                return []
            n_units = int((index.unit_offsets[rows + 1] - index.unit_offsets[rows]).sum())
            candidates = rows if n_units <= EXACT_FILTER_MAX else self._nearest(query, k, rows)
        else:
            candidates = self._nearest(query, k, None)
        scores = self.score_passages(candidates, query)
        order = np.lexsort((candidates, -scores))[:k]
        return [(int(candidates[i]), float(scores[i])) for i in order]

    def _nearest(self, query: np.ndarray, k: int, rows: np.ndarray | None) -> np.ndarray:
        """Passages owning the FAISS-nearest units (within ``rows`` if given), over every segment."""
        import faiss

        index = self.index
        depth = min(k * self.units_per_result, index.units)
        allowed_units = None if rows is None else np.flatnonzero(np.isin(index.unit_passage, rows))
        found_scores: list[np.ndarray] = []
        found_units: list[np.ndarray] = []
        for n, segment in enumerate(index.segments):
            base = int(index.unit_start[n])
            params = None
            segment_depth = min(depth, segment.units)
            if allowed_units is not None:
                local = allowed_units[(allowed_units >= base) & (allowed_units < base + segment.units)] - base
                if local.size == 0:
                    continue
                segment_depth = min(segment_depth, int(local.size))
                selector = faiss.IDSelectorBatch(local.astype(np.int64))
                ivf = faiss.try_extract_index_ivf(segment.faiss)
                params = (
                    faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nprobe)
                    if ivf is not None
                    else faiss.SearchParameters(sel=selector)
                )
            if segment_depth <= 0:
                continue
            scores, units = segment.faiss.search(query.reshape(1, -1), segment_depth, params=params)
            keep = units[0] >= 0
            found_scores.append(scores[0][keep])
            found_units.append(units[0][keep] + base)
        if not found_units:
            return np.zeros(0, dtype=np.int64)
        scores, units = np.concatenate(found_scores), np.concatenate(found_units)
        best = units[np.argsort(-scores, kind="stable")[:depth]]
        return np.unique(index.unit_passage[best])

    def score_passages(self, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        """The exact score of each passage row (see the class docstring)."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return np.zeros(0, dtype=np.float32)
        starts = self.index.unit_offsets[rows]
        counts = self.index.unit_offsets[rows + 1] - starts
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])  # each passage's whole-text unit
        unit_ids = np.repeat(starts - first, counts) + np.arange(int(counts.sum()))
        sims = self.index.vectors_at(unit_ids) @ query
        whole = sims[first]
        clauses = sims.copy()
        clauses[first[counts > 1]] = -np.inf  # the best clause, not the whole text
        best = np.where(counts > 1, np.maximum.reduceat(clauses, first), whole)
        return (self.whole_weight * whole + (1 - self.whole_weight) * best).astype(np.float32)

    def passage_score(self, row: int, query: np.ndarray) -> float:
        return float(self.score_passages(np.asarray([row]), np.asarray(query, dtype=np.float32).reshape(-1))[0])


class LexicalRetriever:
    """BM25 over jieba tokens of the passages' heading path and text."""

    def __init__(self, index: Index) -> None:
        self.index = index

    def search(self, tokens: Sequence[str], k: int, allowed: np.ndarray | None = None) -> Ranking:
        if not tokens or k <= 0:
            return []
        return self.index.bm25.top_k(tokens, k, allowed)
