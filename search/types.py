"""Records the search stages hand to each other and to callers."""

from __future__ import annotations

from dataclasses import dataclass, field

from indexer.types import Passage


@dataclass(frozen=True)
class Span:
    """A highlighted range [start, end) of a shown text, and why."""

    start: int
    end: int
    kind: str  # "term" (a query term) or "answer" (the answer sentence)


@dataclass(frozen=True)
class Hit:
    """One ranked result: a passage, its fused score and what matched."""

    row: int
    passage: Passage
    score: float
    dense_score: float | None = None
    lexical_score: float | None = None
    highlights: tuple[Span, ...] = ()


@dataclass(frozen=True)
class Answer:
    """The sentence that answers a question, with its citation."""

    text: str
    short_answer: str | None
    hit: Hit
    confidence: float
    # Offsets of ``text`` inside the passage's shown text.
    start: int = 0
    end: int = 0


@dataclass(frozen=True)
class Filters:
    """Restrict results to documents, files, years or regions (None = any)."""

    doc_ids: frozenset[str] | None = None
    source_files: frozenset[str] | None = None
    years: frozenset[int] | None = None
    regions: frozenset[str] | None = None

    @property
    def empty(self) -> bool:
        return not (self.doc_ids or self.source_files or self.years or self.regions)


@dataclass
class SearchResult:
    query: str
    hits: list[Hit] = field(default_factory=list)
    took_ms: float = 0.0


@dataclass
class AskResult:
    query: str
    answer: Answer | None
    hits: list[Hit] = field(default_factory=list)
    took_ms: float = 0.0
