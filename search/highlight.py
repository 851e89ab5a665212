"""Highlighting: character offsets, in a passage's shown text, of the query
terms and of the answer sentence.

Matching happens on the NFKC, lower-cased form of the text (so a query "1+x"
finds "1+X" and full-width digits match), and offsets are mapped back to the
original text, which is what the page and CLI display.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from search.types import Span

# Each character's NFKC-lowered form, remembered: highlighting folds every
# shown passage on every query, and a corpus uses a few thousand distinct
# characters (a dictionary lookup is ~5x cheaper than normalising again).
_FOLDED: dict[str, str] = {}
_FOLDED_MAX = 100_000


def _fold(char: str) -> str:
    folded = _FOLDED.get(char)
    if folded is None:
        folded = unicodedata.normalize("NFKC", char).lower()
        if len(_FOLDED) < _FOLDED_MAX:
            _FOLDED[char] = folded
    return folded


def normalized_with_map(text: str) -> tuple[str, list[int]]:
    """NFKC-lowered text and, for each of its characters, the original offset."""
    folded = [_fold(char) for char in text]
    if all(len(piece) == 1 for piece in folded):  # the usual case: one character each
        return "".join(folded), list(range(len(text)))
    origin: list[int] = []
    for offset, piece in enumerate(folded):
        origin.extend([offset] * len(piece))
    return "".join(folded), origin


def term_spans(text: str, terms: Iterable[str]) -> list[Span]:
    """Non-overlapping spans of the terms: longer matches first, and among
    equally long ones the leftmost, so the result never depends on the order
    the terms come in."""
    folded, origin = normalized_with_map(text)
    occurrences: list[tuple[int, int]] = []
    for term in {t for t in terms if t and (len(t) > 1 or t.isdigit())}:
        start = folded.find(term)
        while start != -1:
            occurrences.append((start, start + len(term)))
            start = folded.find(term, start + 1)
    taken = [False] * len(folded)
    spans: list[Span] = []
    for start, end in sorted(occurrences, key=lambda o: (o[0] - o[1], o[0])):
        if any(taken[start:end]):
            continue
        for i in range(start, end):
            taken[i] = True
        spans.append(Span(origin[start], origin[end - 1] + 1, "term"))
    return sorted(spans, key=lambda span: span.start)


def merge_spans(spans: Iterable[Span]) -> tuple[Span, ...]:
    """Spans in order; touching spans of the same kind are joined."""
    merged: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, s.kind)):
        last = merged[-1] if merged else None
        if last and last.kind == span.kind and span.start <= last.end:
            merged[-1] = Span(last.start, max(last.end, span.end), last.kind)
        else:
            merged.append(span)
    return tuple(merged)
