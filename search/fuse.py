"""Fuse stage: several rankings -> one.

``RankFusion`` is weighted reciprocal rank fusion: each retriever adds
weight / (k + rank) for every passage it ranks. It needs no score calibration
across retrievers, which matters here because BM25 scores are unbounded and
e5 cosines sit in a narrow band.
"""

from __future__ import annotations

from collections.abc import Mapping

from search.retrieve import Ranking


class RankFusion:
    def __init__(self, k: int = 60, weights: Mapping[str, float] | None = None) -> None:
        self.k = k
        self.weights = dict(weights or {})

    def fuse(self, rankings: Mapping[str, Ranking]) -> Ranking:
        fused: dict[int, float] = {}
        for name, ranking in rankings.items():
            weight = self.weights.get(name, 1.0)
            for rank, (row, _score) in enumerate(ranking, start=1):
                fused[row] = fused.get(row, 0.0) + weight / (self.k + rank)
        return sorted(fused.items(), key=lambda pair: (-pair[1], pair[0]))
