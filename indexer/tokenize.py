"""Lexical tokens for BM25, shared by indexing and querying.

A ``Tokenizer`` normalises text (NFKC, lower case), splits it with a
pluggable splitter (jieba's search mode by default, with a user dictionary of
plan-document terms so 控辍保学 or 县管校聘 stay whole), and drops
punctuation and function words.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable
from pathlib import Path

# Bump when tokens change: BM25 postings of another version are rebuilt.
TOKENIZER_VERSION = "1"
USER_DICT = Path(__file__).with_name("data") / "plan_terms.txt"

# Function words that carry no meaning for retrieval.
STOPWORDS = frozenset(
    "的 了 和 与 及 等 在 是 对 为 将 把 要 并 或 以 于 中 其 这 那 也 都 就 而 被 从 向 到 让 给 之 "
    "个 着 又 还 做 好 进一步 a an the of and or to in on for is are be by with at as".split()
)
# A token must contain a letter, digit or CJK character.
WORDLIKE = re.compile(r"[0-9a-z\u3400-\u9fff]")

Splitter = Callable[[str], Iterable[str]]

_jieba_lock = threading.Lock()
_jieba_tokenizer = None


def jieba_splitter(text: str) -> Iterable[str]:
    """jieba's search mode: words plus the shorter words inside long ones."""
    return _jieba().cut_for_search(text, HMM=True)


def _jieba():  # type: ignore[no-untyped-def]
    # Loaded on first use, not at import: jieba's dictionary takes ~0.5 s.
    global _jieba_tokenizer
    with _jieba_lock:
        if _jieba_tokenizer is None:
            import jieba

            jieba.setLogLevel(logging.WARNING)
            tokenizer = jieba.Tokenizer()
            tokenizer.initialize()
            tokenizer.load_userdict(str(USER_DICT))
            _jieba_tokenizer = tokenizer
    return _jieba_tokenizer


def normalize(text: str) -> str:
    """NFKC folds full-width letters, digits and punctuation; then lower case."""
    return unicodedata.normalize("NFKC", text).lower()


class Tokenizer:
    """Text -> BM25 tokens."""

    def __init__(
        self,
        splitter: Splitter | None = None,
        stopwords: frozenset[str] = STOPWORDS,
    ) -> None:
        self.splitter = splitter or jieba_splitter
        self.stopwords = stopwords

    def __call__(self, text: str) -> list[str]:
        tokens = []
        for token in self.splitter(normalize(text)):
            token = token.strip()
            if token and token not in self.stopwords and WORDLIKE.search(token):
                tokens.append(token)
        return tokens

    def many(self, texts: Iterable[str]) -> list[list[str]]:
        return [self(text) for text in texts]
