"""The search engine: retrieve -> fuse -> (answer), over one loaded index.

``Searcher.search`` returns ranked, de-duplicated, highlighted passages;
``Searcher.ask`` adds the answering sentence, or None when the corpus does
not answer the question.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from indexer.build import compatibility
from indexer.config import Settings
from indexer.embed import Embedder, make_embedder
from indexer.index import Index
from indexer.tokenize import Tokenizer
from search.answer import AnswerFinder, sigmoid
from search.fuse import RankFusion, ScoreFusion
from search.highlight import merge_spans, term_spans
from search.query import Query, parse_query
from search.retrieve import DenseRetriever, LexicalRetriever, Ranking
from search.types import AskResult, Filters, Hit, SearchResult, Span

MODES = ("hybrid", "dense", "lexical")


@dataclass(frozen=True)
class Confidence:
    """Whether the best passage answers the question at all.

    A logistic model over two signals that mean "the corpus covers this":
    the e5 cosine of the best passage and how much of the question the best
    answer sentence covers. Its parameters come from ``search.calibrate``
    (answerable vs. unanswerable synthetic questions), not from the dev set.
    """

    bias: float = -33.0
    dense_weight: float = 38.0
    coverage_weight: float = 6.0

    def __call__(self, dense_score: float | None, coverage: float) -> float:
        return sigmoid(self.bias + self.dense_weight * (dense_score or 0.0) + self.coverage_weight * coverage)


class Searcher:
    def __init__(
        self,
        index: Index,
        embedder: Embedder,
        settings: Settings | None = None,
        tokenizer: Tokenizer | None = None,
        mode: str = "hybrid",
        confidence: Confidence | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} (expected one of {', '.join(MODES)})")
        self.index = index
        self.embedder = embedder
        self.settings = settings or Settings.from_env()
        self.tokenizer = tokenizer or Tokenizer()
        self.mode = mode
        self.dense = DenseRetriever(index)
        self.lexical = LexicalRetriever(index)
        weight = self.settings.dense_weight
        self.fusion: RankFusion | ScoreFusion = ScoreFusion({"dense": weight, "lexical": 1 - weight})
        self.confidence = confidence or Confidence()
        bm25 = index.bm25
        bm25.scores([])  # computes IDFs once, before the first query
        idf = bm25._idf if bm25._idf is not None else np.zeros(0)
        self.answers = AnswerFinder({term: float(idf[i]) for term, i in bm25.vocab.items()})

    @classmethod
    def open(cls, settings: Settings | None = None, mode: str = "hybrid") -> Searcher:
        """Load the index and the query embedder named by the settings."""
        settings = settings or Settings.from_env()
        index = Index.load(settings.resolved_index_dir, compatibility(settings))
        embedder = make_embedder(settings.query_runtime, settings.resolved_model_dir)
        return cls(index, embedder, settings, mode=mode)

    # -- filters ---------------------------------------------------------
    def allowed(self, filters: Filters | None) -> np.ndarray | None:
        """Boolean mask over passages, or None for no restriction."""
        if filters is None or filters.empty:
            return None
        keep_docs = [
            n
            for n, doc in enumerate(self.index.documents)
            if (not filters.doc_ids or doc.doc_id in filters.doc_ids)
            and (not filters.source_files or doc.source_file in filters.source_files)
            and (not filters.years or doc.year in filters.years)
            and (not filters.regions or doc.region in filters.regions)
        ]
        return np.isin(self.index.passage_doc, keep_docs)

    # -- ranking ---------------------------------------------------------
    def rankings(self, query: Query, allowed: np.ndarray | None) -> dict[str, Ranking]:
        depth = self.settings.candidates
        runs: dict[str, Ranking] = {}
        if self.mode in ("hybrid", "dense"):
            vector = self.embedder.encode_queries([query.text])[0]
            runs["dense"] = self.dense.search(vector, depth, allowed)
        if self.mode in ("hybrid", "lexical"):
            runs["lexical"] = self.lexical.search(query.tokens, depth, allowed)
        return runs

    def rank(self, query: Query, k: int, filters: Filters | None = None) -> list[Hit]:
        if query.empty or k <= 0:
            return []
        runs = self.rankings(query, self.allowed(filters))
        dense_scores = dict(runs.get("dense", []))
        lexical_scores = dict(runs.get("lexical", []))
        fused = self.fusion.fuse(runs) if len(runs) > 1 else next(iter(runs.values()), [])
        hits: list[Hit] = []
        seen_units: set[str] = set()
        for row, score in fused:
            passage = self.index.passage(row)
            if passage.unit_key in seen_units:
                continue  # the same item reached through another of its passages
            seen_units.add(passage.unit_key)
            hits.append(
                Hit(
                    row=row,
                    passage=passage,
                    score=score,
                    dense_score=dense_scores.get(row),
                    lexical_score=lexical_scores.get(row),
                    highlights=merge_spans(term_spans(passage.text, query.tokens)),
                )
            )
            if len(hits) >= k:
                break
        return hits

    # -- public API -------------------------------------------------------
    def search(self, raw: str, k: int | None = None, filters: Filters | None = None) -> SearchResult:
        started = time.perf_counter()
        query = parse_query(raw, self.tokenizer)
        hits = self.rank(query, k or self.settings.top_k, filters)
        return SearchResult(query=raw, hits=hits, took_ms=(time.perf_counter() - started) * 1000)

    def ask(self, raw: str, k: int = 5, filters: Filters | None = None) -> AskResult:
        started = time.perf_counter()
        query = parse_query(raw, self.tokenizer)
        hits = self.rank(query, max(k, self.answers.passages_considered), filters)
        answer = None
        if hits:
            best_dense = self._best_dense(query, hits)
            candidate = self.answers.best(query, hits, 0.0)
            if candidate is not None:
                coverage = self.answers.coverage(query, candidate.text)
                conf = self.confidence(best_dense, coverage)
                if conf >= self.settings.answer_threshold:
                    answer = replace(candidate, confidence=conf)
        if answer is not None:
            hits = [self._with_answer_span(h, answer.hit.row, answer.start, answer.end) for h in hits]
            answer = replace(answer, hit=next(h for h in hits if h.row == answer.hit.row))
        return AskResult(query=raw, answer=answer, hits=hits[:k], took_ms=(time.perf_counter() - started) * 1000)

    @staticmethod
    def _best_dense(query: Query, hits: Sequence[Hit]) -> float | None:
        scores = [h.dense_score for h in hits if h.dense_score is not None]
        return max(scores) if scores else None

    @staticmethod
    def _with_answer_span(hit: Hit, row: int, start: int, end: int) -> Hit:
        if hit.row != row:
            return hit
        return replace(hit, highlights=merge_spans([*hit.highlights, Span(start, end, "answer")]))
