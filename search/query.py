"""Query handling: what a user typed -> the texts each retriever needs.

* NFKC folds full-width letters, digits and punctuation; control characters,
  lone surrogates and markup-like noise are dropped; whitespace collapses.
* Traditional characters are converted to simplified (OpenCC "t2s"), so
  學校 finds 学校.
* Question words and stop-phrases (怎么, 如何, 哪些, 是多少 …) are kept out of
  the BM25 query: they are in every question and in no answer.
* The dense query keeps the whole question (e5 reads questions well).
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass

# The tokenizer's own jieba instance (with the plan-term dictionary), in its
# precise mode: a partition of the text into words.
from indexer.tokenize import Tokenizer, _jieba

# Longest query text used; longer input is cut, never an error here (the API
# rejects it before, with a message).
MAX_QUERY_CHARS = 500

# Phrases that ask rather than name something. Longest first, so 是多少 goes
# before 多少.
STOP_PHRASES = tuple(
    sorted(
        """
        请问 请告诉我 我想知道 想知道 想问 是否 是不是 有没有 有什么 有哪些 都有哪些 哪些 什么样 什么
        怎么办 怎么样 怎么 怎样 如何 为什么 为何 是多少 多少 多久 多长时间 几次 几个 几 哪里 哪儿 哪个
        吗 呢 吧 啊 呀 么 能不能 可不可以 会不会 要不要 还要不要 需不需要 可以 能否 能 会 要 需要
        规定 措施 安排 方面 相关 情况 工作
        """.split(),
        key=len,
        reverse=True,
    )
)
SINGLE_CHAR_STOPS = frozenset(phrase for phrase in STOP_PHRASES if len(phrase) == 1)
# 几所, 几名, 几节 …: a question word that jieba keeps as one word.
COUNT_QUESTION = re.compile(r"几[个次名所项年节课门天回届期批轮位家间]")
# Stop-phrases are removed only for lexical matching; some of them are real
# content words in plan text (规定, 措施, 安排, 工作), which BM25 weighs down
# anyway, so removing them from the query loses little.
FIGURE_QUESTION = re.compile(
    r"(多少|几[个次名所项年节课]?|多久|多长时间|哪一?年|何时|什么时候|比例|比率|百分之|率|目标|"
    r"how (many|much|long|often)|what (percentage|rate|proportion|share|target|year)|when)",
    re.IGNORECASE,
)
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202f\ufeff]")
LATIN = re.compile(r"[A-Za-z]")
CJK = re.compile(r"[\u3400-\u9fff]")

_converter_lock = threading.Lock()
_converter = None


def to_simplified(text: str) -> str:
    global _converter
    with _converter_lock:
        if _converter is None:
            import opencc

            _converter = opencc.OpenCC("t2s")
    return _converter.convert(text)


def normalize_query(raw: str) -> str:
    """Clean, fold and simplify a query; never raises on any string."""
    text = raw.encode("utf-8", "replace").decode("utf-8")  # lone surrogates -> "?"
    text = unicodedata.normalize("NFKC", text[: MAX_QUERY_CHARS * 2])
    text = CONTROL.sub(" ", text)
    text = re.sub(r"\s+", " ", text).strip()[:MAX_QUERY_CHARS].rstrip()  # the cut may end on a space
    if CJK.search(text):
        text = to_simplified(text)
    return text


def validate_query(text: str | None) -> str:
    """The query, stripped; ValueError with a bilingual reason if unusable."""
    if text is None or not text.strip():
        raise ValueError("查询不能为空 / the query must not be empty")
    if len(text) > MAX_QUERY_CHARS:
        raise ValueError(
            f"查询不能超过{MAX_QUERY_CHARS}个字符 / the query must be at most {MAX_QUERY_CHARS} characters"
        )
    return text.strip()


def strip_stop_phrases(text: str) -> str:
    """Phrases of two or more characters go wherever they are; a single
    character (会, 能, 要, 几, 吗 …) only where it is a word of its own, so
    家长委员会, 技能, 人工智能 and 重要 keep their last or first character."""
    for phrase in STOP_PHRASES:
        if len(phrase) > 1:
            text = text.replace(phrase, " ")
    words = [
        " " if word in SINGLE_CHAR_STOPS or COUNT_QUESTION.fullmatch(word) else word
        for word in _jieba().lcut(text, HMM=False)
    ]
    return re.sub(r"\s+", " ", "".join(words)).strip()


@dataclass(frozen=True)
class Query:
    raw: str
    text: str  # normalised, for the dense retriever and highlighting
    lexical: str  # without stop-phrases, for BM25
    tokens: tuple[str, ...]  # BM25 tokens of ``lexical``
    asks_figure: bool  # a question about a number, date, count or target
    is_english: bool  # Latin script only: lexical matching cannot help

    @property
    def empty(self) -> bool:
        return not self.text


def parse_query(raw: str, tokenizer: Tokenizer) -> Query:
    text = normalize_query(raw)
    lexical = strip_stop_phrases(text) if CJK.search(text) else text
    tokens = tuple(tokenizer(lexical))
    return Query(
        raw=raw,
        text=text,
        lexical=lexical,
        tokens=tokens,
        asks_figure=bool(FIGURE_QUESTION.search(text)),
        is_english=bool(LATIN.search(text)) and not CJK.search(text),
    )
