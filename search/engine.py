"""The search engine: retrieve -> fuse -> (answer), over one loaded index.

``Searcher.search`` returns ranked, de-duplicated, highlighted passages;
``Searcher.ask`` adds the answering sentence, or None when the corpus does
not answer the question.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

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


CONFIDENCE_FILE = Path(__file__).with_name("data") / "confidence.json"


@dataclass(frozen=True)
class Confidence:
    """Whether the best passage answers the question at all.

    A logistic model over four signals: ``margin``, how much closer the
    question is to its best passage than to reference texts on topics the
    corpus does not cover (``indexer/data/background.txt``); ``coverage``, how
    much of the question the answer sentence contains; ``dense``, the e5
    score of the best passage; and whether the question is in English (e5
    scores across languages run lower). Its weights are fitted by ``python -m
    search.calibrate`` on hand-written answerable and unanswerable questions
    (``search/data/calibration.jsonl``), never on the dev set.
    """

    bias: float = 0.0
    margin_weight: float = 100.0
    coverage_weight: float = 0.0
    dense_weight: float = 0.0
    english_weight: float = 0.0
    # Answer when the confidence reaches this (chosen by search.calibrate).
    threshold: float = 0.5

    @classmethod
    def load(cls, path: Path = CONFIDENCE_FILE) -> Confidence:
        if not path.is_file():
            return cls()
        raw = json.loads(path.read_text(encoding="utf-8"))
        fields = ("bias", "margin_weight", "coverage_weight", "dense_weight", "english_weight", "threshold")
        return cls(**{k: float(raw[k]) for k in fields if k in raw})

    def __call__(self, margin: float, coverage: float, dense: float, english: float = 0.0) -> float:
        return sigmoid(
            self.bias
            + self.margin_weight * margin
            + self.coverage_weight * coverage
            + self.dense_weight * dense
            + self.english_weight * english
        )


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
        self.confidence = confidence or Confidence.load()
        self.answers = AnswerFinder(index.bm25.idf())  # also computes the IDFs before the first query

    @classmethod
    def open(cls, settings: Settings | None = None, mode: str = "hybrid") -> Searcher:
        """Load the index and the query embedder named by the settings."""
        settings = settings or Settings.from_env()
        index = Index.load(settings.resolved_index_dir, compatibility(settings))
        embedder = make_embedder(settings.query_embedder, settings.resolved_model_dir)
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
    def rankings(self, query: Query, allowed: np.ndarray | None) -> tuple[dict[str, Ranking], np.ndarray | None]:
        """Each retriever's candidates, and the query vector (None without dense)."""
        depth = self.settings.candidates
        runs: dict[str, Ranking] = {}
        vector = None
        if self.mode in ("hybrid", "dense"):
            vector = self.embedder.encode_queries([query.text])[0]
            runs["dense"] = self.dense.search(vector, depth, allowed)
        if self.mode in ("hybrid", "lexical"):
            runs["lexical"] = self.lexical.search(query.tokens, depth, allowed)
        return runs, vector

    def rank(self, query: Query, k: int, filters: Filters | None = None) -> list[Hit]:
        return self._rank(query, k, filters)[0]

    def _rank(self, query: Query, k: int, filters: Filters | None) -> tuple[list[Hit], np.ndarray | None]:
        if query.empty or k <= 0:
            return [], None
        runs, vector = self.rankings(query, self.allowed(filters))
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
        return hits, vector

    def background_score(self, vector: np.ndarray | None, top: int = 3) -> float:
        """The question's similarity to off-corpus reference texts: the mean of
        its ``top`` best matches, so that one reference text that happens to
        share a word with the corpus does not decide alone (calibration:
        balanced accuracy 0.944 with the single best, 0.962 with the top 3)."""
        background = self.index.background
        if vector is None or background.shape[0] == 0:
            return 0.0
        scores = np.sort(background @ vector)[::-1][:top]
        return float(scores.mean())

    # -- public API -------------------------------------------------------
    def warm_up(self) -> None:
        """Before serving many queries: load what one query alone would not
        (the embedder's whole vocabulary), and read FAISS and jieba once."""
        self.embedder.warm_up()
        self.search("教育", k=1)

    def search(self, raw: str, k: int | None = None, filters: Filters | None = None) -> SearchResult:
        started = time.perf_counter()
        query = parse_query(raw, self.tokenizer)
        hits = self.rank(query, k or self.settings.top_k, filters)
        return SearchResult(query=raw, hits=hits, took_ms=(time.perf_counter() - started) * 1000)

    def ask(self, raw: str, k: int = 5, filters: Filters | None = None) -> AskResult:
        started = time.perf_counter()
        query = parse_query(raw, self.tokenizer)
        hits, vector = self._rank(query, max(k, self.answers.passages_considered), filters)
        answer = None
        candidate = self.answers.best(query, hits, 0.0) if hits else None
        if candidate is not None:
            conf = self.confidence(*self.answer_signals(query, hits, vector, candidate.text))
            threshold = self.settings.answer_threshold
            if conf >= (self.confidence.threshold if threshold is None else threshold):
                answer = replace(candidate, confidence=conf)
        if answer is not None:
            hits = [self._with_answer_span(h, answer.hit.row, answer.start, answer.end) for h in hits]
            answer = replace(answer, hit=next(h for h in hits if h.row == answer.hit.row))
        return AskResult(query=raw, answer=answer, hits=hits[:k], took_ms=(time.perf_counter() - started) * 1000)

    def answer_signals(
        self, query: Query, hits: Sequence[Hit], vector: np.ndarray | None, answer_text: str
    ) -> tuple[float, float, float, float]:
        """What ``Confidence`` weighs: (margin, coverage, dense, english).

        ``dense`` is the best e5 score among the hits; ``margin`` is how far it
        is above the question's similarity to off-corpus reference texts."""
        dense_scores = [h.dense_score for h in hits if h.dense_score is not None]
        dense = max(dense_scores) if dense_scores else 0.0
        margin = dense - self.background_score(vector) if vector is not None else 0.0
        english = 1.0 if query.is_english else 0.0
        return margin, self.answers.coverage(query, answer_text), dense, english

    @staticmethod
    def _with_answer_span(hit: Hit, row: int, start: int, end: int) -> Hit:
        if hit.row != row:
            return hit
        return replace(hit, highlights=merge_spans([*hit.highlights, Span(start, end, "answer")]))
