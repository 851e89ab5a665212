"""Answer stage: the best passages -> the sentence that answers, and its span.

1. Every sentence (or clause between ；) of the top passages is a candidate.
2. A candidate scores by how much of the question it covers (IDF-weighted
   query terms and character bigrams, so paraphrases with shared words and
   typos still count), plus the rank of its passage.
3. For a question about a figure, date, count or target, the short answer is
   the quantity span in that sentence nearest to the question's terms
   ("91%以上", "600名", "三年一轮").
4. Whether to answer at all is a calibrated decision (``Confidence``): with
   nothing in the corpus that covers the question, no answer is returned.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from indexer.chunk import CLAUSE_END
from search.query import Query, normalize_query
from search.types import Answer, Hit

# Sentence and clause ends.
SUBCLAUSE_END = re.compile(r"[^，,。；;！!？?\n]+[，,。；;！!？?]?")
ANSWER_MAX_CHARS = 150

# Digits may carry a 万/亿 multiplier: "7.2万平米", "1.5万人次".
_NUM = r"(?:\d+(?:\.\d+)?[万亿]?|[一二三四五六七八九十两百千万]+)"
_UNIT = (
    r"(?:%|‰|个百分点|亿元|万元|千元|元|万平方米|平方米|平米|万人|人次|人|名|所|个|家|项|次|场|届|批|"
    r"课时|学时|节|小时|天|周|个月|月|年|亩|台|套|间|本|期|轮)"
)
# Quantity spans, most specific first. Each is a whole answer on its own.
QUANTITY_PATTERNS = (
    # 三年一轮, 三年评估一次, 每学期至少召开1次
    re.compile(rf"{_NUM}(?:个)?(?:年|学年|学期|个月|月|周)(?:评估|考核|召开|开展|举办|换届)?{_NUM}(?:轮|次|届)"),
    re.compile(rf"每(?:年|学年|学期|月|季度|周|天)[^，,。；;]{{0,8}}?{_NUM}{_UNIT}"),
    # 不少于12课时, 91%以上, 控制在5%以内, 3.98亿元
    re.compile(
        rf"(?:不少于|不低于|不超过|不高于|至少|超过|达到|提高到|降低到|控制在|保持在)?{_NUM}\s?{_UNIT}"
        rf"(?:以上|以内|以下|左右|及以上)?"
    ),
    re.compile(r"\d{4}年(?:\d{1,2}月)?(?:底|前|内)?"),
)


@dataclass(frozen=True)
class Candidate:
    hit: Hit
    text: str
    start: int
    end: int
    coverage: float
    score: float


def clauses(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence or ；-clause of a shown text."""
    return [(m.start(), m.end()) for m in CLAUSE_END.finditer(text) if m.group().strip()]


def bigrams(text: str) -> set[str]:
    """Character bigrams within each whitespace-separated run: a space marks a
    removed stop-phrase or a word break, and no text holds the pair across it."""
    return {a + b for word in text.split() for a, b in itertools.pairwise(word)}


class AnswerFinder:
    """Picks the answering sentence from ranked hits."""

    def __init__(self, idf: dict[str, float], passages_considered: int = 3) -> None:
        self.idf = idf  # token -> IDF, from the BM25 index
        self.passages_considered = passages_considered

    def coverage(self, query: Query, text: str) -> float:
        """Share of the question found in ``text``: IDF-weighted tokens, and
        character bigrams for what tokenisation splits differently."""
        folded = normalize_query(text).lower()
        weights = {t: self.idf.get(t, 1.0) for t in query.tokens}
        total = sum(weights.values())
        token_part = sum(w for t, w in weights.items() if t in folded) / total if total else 0.0
        query_bigrams = bigrams(query.lexical.lower())
        bigram_part = len(query_bigrams & bigrams(folded)) / len(query_bigrams) if query_bigrams else 0.0
        return 0.6 * token_part + 0.4 * bigram_part

    def candidates(self, query: Query, hits: Sequence[Hit]) -> list[Candidate]:
        found: list[Candidate] = []
        for rank, hit in enumerate(hits[: self.passages_considered]):
            text = hit.passage.text
            for start, end in clauses(text):
                start, end = _window(text, start, end, query)
                sentence = text[start:end].strip()
                start += len(text[start:end]) - len(text[start:end].lstrip())  # offsets of the stripped text
                if len(sentence) < 4:
                    continue
                cover = self.coverage(query, sentence)
                figure_bonus = 0.15 if query.asks_figure and quantity_span(sentence, query) else 0.0
                score = cover + figure_bonus - 0.08 * rank
                found.append(Candidate(hit, sentence, start, start + len(sentence), cover, score))
        return sorted(found, key=lambda c: -c.score)

    def best(self, query: Query, hits: Sequence[Hit], confidence: float) -> Answer | None:
        ranked = self.candidates(query, hits)
        if not ranked:
            return None
        top = ranked[0]
        short = quantity_span(top.text, query) if query.asks_figure else None
        return Answer(
            text=top.text,
            short_answer=short,
            hit=top.hit,
            confidence=confidence,
            start=top.start,
            end=top.end,
        )


def _window(text: str, start: int, end: int, query: Query) -> tuple[int, int]:
    """A sentence longer than ANSWER_MAX_CHARS is narrowed to the run of its
    comma-clauses that best covers the query."""
    if end - start <= ANSWER_MAX_CHARS:
        return start, end
    parts = [(start + m.start(), start + m.end()) for m in SUBCLAUSE_END.finditer(text[start:end])]
    query_bigrams = bigrams(query.lexical.lower()) or bigrams(query.text.lower())
    best, best_score = (start, min(end, start + ANSWER_MAX_CHARS)), -1.0
    for i in range(len(parts)):
        j = i
        while j + 1 < len(parts) and parts[j + 1][1] - parts[i][0] <= ANSWER_MAX_CHARS:
            j += 1
        # A single comma-clause longer than the limit is cut at it too.
        window_end = min(parts[j][1], parts[i][0] + ANSWER_MAX_CHARS)
        window = text[parts[i][0] : window_end]
        score = len(query_bigrams & bigrams(window.lower()))
        if score > best_score:
            best, best_score = (parts[i][0], window_end), score
    return best


# Verbs in front of a quantity that say nothing about its value.
LEADING_VERB = re.compile(r"^(?:达到|提高到|降低到|控制在|保持在)")

# What a question asks for -> the units its answer is written in.
EXPECTED_UNITS = (
    (re.compile(r"多少钱|资金|投资|投入|经费|费用|how much"), ("亿元", "万元", "千元", "元")),
    (re.compile(r"多少名|多少人|几名|几个人|how many (teachers|students|people)"), ("名", "人", "人次", "万人")),
    (re.compile(r"几次|多少次|几回|how often"), ("次",)),
    (re.compile(r"多久|多长时间|几年|周期|how long"), ("年", "轮", "学期", "月", "周", "天", "次", "届")),
    (re.compile(r"比例|比率|率|百分|percentage|rate|proportion"), ("%", "‰", "个百分点")),
    (re.compile(r"几节|多少节|课时|学时"), ("课时", "学时", "节")),
    (re.compile(r"几所|多少所"), ("所",)),
)


def quantity_span(sentence: str, query: Query) -> str | None:
    """The quantity in ``sentence`` that answers the question.

    Candidates are every quantity span (a span inside a longer one yields to
    it, so "三年一轮" beats "一轮"); spans the question itself contains ("学前
    三年", "2023年") are not answers; among the rest, a span in the unit the
    question asks for wins, then the one nearest after the question's terms.
    """
    folded_query = normalize_query(query.text).lower()
    found: list[tuple[int, int, str]] = []
    for pattern in QUANTITY_PATTERNS:
        for m in pattern.finditer(sentence):
            span = m.group().strip()
            if re.search(r"\d|[一二三四五六七八九十两]", span) and span.lower() not in folded_query:
                found.append((m.start(), m.end(), span))
    spans = [
        (start, end, span)
        for start, end, span in found
        if not any(o_start <= start and end <= o_end and (o_end - o_start) > (end - start)
                   for o_start, o_end, _ in found)
    ]
    if not spans:
        return None
    units = next((u for pattern, u in EXPECTED_UNITS if pattern.search(folded_query)), ())
    matches = [m for t in query.tokens if len(t) > 1 for m in re.finditer(re.escape(t), sentence)]
    anchors = [m.end() for m in matches]
    term_starts = {m.start() for m in matches}

    def rank(item: tuple[int, int, str]) -> tuple[int, int, float]:
        start, end, span = item
        unit_ok = 0 if any(u in span for u in units) else 1
        # A count written right before a question term counts that thing:
        # for 特殊教育学校建几所, "3所特殊教育学校" beats "8所公办幼儿园".
        counts_term = 0 if end in term_starts else 1
        # Distance from the nearest question term before the span; a span
        # before every term counts as far.
        before = [start - a for a in anchors if a <= start]
        distance = min(before) if before else 1000 + min((abs(start - a) for a in anchors), default=0)
        return unit_ok, counts_term, distance

    # "达到91%以上" answers as "91%以上"; bounds like 不少于 or 至少 stay, they are the answer.
    return LEADING_VERB.sub("", min(spans, key=rank)[2]) or None


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))
