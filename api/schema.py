"""The JSON shapes of the HTTP API and the CLI's --json, in one place.

Pydantic models document the API (OpenAPI at /docs); ``*_payload``
functions turn search results into them.
"""

from __future__ import annotations

from pydantic import BaseModel

from search.types import Answer, AskResult, Hit, SearchResult, Span


class HighlightOut(BaseModel):
    start: int
    end: int
    kind: str


class ResultOut(BaseModel):
    rank: int
    score: float
    text: str
    source_file: str
    doc_id: str
    doc_title: str
    year: int | None
    region: str | None
    section: str | None
    item: str | None
    subitem: str | None
    citation: str
    highlights: list[HighlightOut]


class SearchOut(BaseModel):
    query: str
    took_ms: float
    total: int
    results: list[ResultOut]


class AnswerOut(BaseModel):
    text: str
    short_answer: str | None
    source_file: str
    doc_id: str
    doc_title: str
    section: str | None
    item: str | None
    subitem: str | None
    citation: str
    score: float
    highlights: list[HighlightOut]


class AskOut(BaseModel):
    query: str
    took_ms: float
    answer: AnswerOut | None
    passages: list[ResultOut]


class ErrorOut(BaseModel):
    error: str
    detail: str


def _spans(spans: tuple[Span, ...] | list[Span]) -> list[dict[str, object]]:
    return [{"start": s.start, "end": s.end, "kind": s.kind} for s in spans]


def hit_payload(hit: Hit, rank: int) -> dict[str, object]:
    p = hit.passage
    return {
        "rank": rank,
        "score": round(hit.score, 6),
        "text": p.text,
        "source_file": p.source_file,
        "doc_id": p.doc_id,
        "doc_title": p.doc_title,
        "year": p.year,
        "region": p.region,
        "section": p.section,
        "item": p.item,
        "subitem": p.subitem,
        "citation": p.citation,
        "highlights": _spans(hit.highlights),
    }


def answer_payload(answer: Answer) -> dict[str, object]:
    p = answer.hit.passage
    # Offsets relative to the answer text: the query terms inside it.
    inner = [
        Span(max(s.start, answer.start) - answer.start, min(s.end, answer.end) - answer.start, s.kind)
        for s in answer.hit.highlights
        if s.kind == "term" and s.start < answer.end and s.end > answer.start
    ]
    return {
        "text": answer.text,
        "short_answer": answer.short_answer,
        "source_file": p.source_file,
        "doc_id": p.doc_id,
        "doc_title": p.doc_title,
        "section": p.section,
        "item": p.item,
        "subitem": p.subitem,
        "citation": p.citation,
        "score": round(answer.confidence, 4),
        "highlights": _spans(inner),
    }


def search_payload(result: SearchResult) -> dict[str, object]:
    return {
        "query": result.query,
        "took_ms": round(result.took_ms, 2),
        "total": len(result.hits),
        "results": [hit_payload(h, n) for n, h in enumerate(result.hits, start=1)],
    }


def ask_payload(result: AskResult) -> dict[str, object]:
    return {
        "query": result.query,
        "took_ms": round(result.took_ms, 2),
        "answer": answer_payload(result.answer) if result.answer else None,
        "passages": [hit_payload(h, n) for n, h in enumerate(result.hits, start=1)],
    }
