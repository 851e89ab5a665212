"""Dense and lexical retrievers over the real seed index."""

from __future__ import annotations

import numpy as np
import pytest

from search.query import parse_query
from search.retrieve import DenseRetriever, LexicalRetriever

QUERIES = ["特岗教师服务期满考核安置", "竟陵读书会", "学校食堂承包经营", "school toilet renovation"]
TIANMEN = "001_b5818a88827ebf16"
CANGZHOU = "003_9ac541179e48cb99"


@pytest.fixture(scope="module")
def dense(searcher) -> DenseRetriever:  # type: ignore[no-untyped-def]
    return DenseRetriever(searcher.index)


@pytest.fixture(scope="module")
def lexical(searcher) -> LexicalRetriever:  # type: ignore[no-untyped-def]
    return LexicalRetriever(searcher.index)


def vector(searcher, text: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    return searcher.embedder.encode_queries([parse_query(text, searcher.tokenizer).text])[0]


def tokens(searcher, text: str) -> tuple[str, ...]:  # type: ignore[no-untyped-def]
    return parse_query(text, searcher.tokenizer).tokens


def doc_mask(searcher, doc_id: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    return searcher.index.passage_doc == searcher.index.doc_by_id[doc_id]


def assert_ranking(ranking: list[tuple[int, float]], size: int) -> None:
    rows = [row for row, _ in ranking]
    values = [score for _, score in ranking]
    assert len(rows) == len(set(rows)), "a passage appears twice"
    assert all(0 <= row < size for row in rows)
    assert values == sorted(values, reverse=True), "not in score order"
    assert all(np.isfinite(values))


# -- dense -------------------------------------------------------------------------


@pytest.mark.parametrize("text", QUERIES)
def test_dense_rows_in_score_order(searcher, dense: DenseRetriever, text: str) -> None:  # type: ignore[no-untyped-def]
    ranking = dense.search(vector(searcher, text), 10)
    assert len(ranking) == 10
    assert_ranking(ranking, searcher.index.size)


def test_dense_score_is_whole_and_best_clause(searcher, dense: DenseRetriever) -> None:  # type: ignore[no-untyped-def]
    query = vector(searcher, "特岗教师服务期满考核安置")
    for row, score in dense.search(query, 5):
        sims = searcher.index.unit_vectors(row) @ query
        best_clause = sims[1:].max() if len(sims) > 1 else sims[0]
        assert score == pytest.approx(0.3 * sims[0] + 0.7 * best_clause, abs=1e-5)
        assert -1.0 <= score <= 1.0


def test_dense_finds_the_item(searcher, dense: DenseRetriever) -> None:  # type: ignore[no-untyped-def]
    row, _ = dense.search(vector(searcher, "特岗教师服务期满考核安置"), 5)[0]
    passage = searcher.index.passage(row)
    assert passage.doc_id == CANGZHOU
    assert "特岗教师服务期满考核安置" in passage.text


def test_dense_scores_do_not_depend_on_k(searcher, dense: DenseRetriever) -> None:  # type: ignore[no-untyped-def]
    query = vector(searcher, "学校食堂承包经营")
    short = dense.search(query, 3)
    long = dense.search(query, 20)
    assert dict(short).items() <= dict(long).items()


@pytest.mark.parametrize("doc_id", [TIANMEN, CANGZHOU])
def test_dense_allowed_mask_restricts(searcher, dense: DenseRetriever, doc_id: str) -> None:  # type: ignore[no-untyped-def]
    allowed = doc_mask(searcher, doc_id)
    for text in QUERIES:
        ranking = dense.search(vector(searcher, text), 10, allowed)
        assert ranking, text
        assert all(searcher.index.passage(row).doc_id == doc_id for row, _ in ranking)
        assert_ranking(ranking, searcher.index.size)


def test_dense_mask_with_few_passages_returns_only_them(searcher, dense: DenseRetriever) -> None:  # type: ignore[no-untyped-def]
    allowed = np.zeros(searcher.index.size, dtype=bool)
    allowed[[3, 40, 100]] = True
    ranking = dense.search(vector(searcher, "竟陵读书会"), 10, allowed)
    assert sorted(row for row, _ in ranking) == [3, 40, 100]


def test_dense_mask_allowing_nothing(searcher, dense: DenseRetriever) -> None:  # type: ignore[no-untyped-def]
    allowed = np.zeros(searcher.index.size, dtype=bool)
    assert dense.search(vector(searcher, "竟陵读书会"), 10, allowed) == []


def test_dense_k_larger_than_corpus(searcher, dense: DenseRetriever) -> None:  # type: ignore[no-untyped-def]
    ranking = dense.search(vector(searcher, "学校安全"), searcher.index.size * 10)
    assert len(ranking) == searcher.index.size  # every passage, once
    assert_ranking(ranking, searcher.index.size)


def test_dense_k_zero(searcher, dense: DenseRetriever) -> None:  # type: ignore[no-untyped-def]
    assert dense.search(vector(searcher, "学校安全"), 0) == []


# -- lexical -----------------------------------------------------------------------


@pytest.mark.parametrize("text", QUERIES[:3])
def test_lexical_rows_in_score_order(searcher, lexical: LexicalRetriever, text: str) -> None:  # type: ignore[no-untyped-def]
    ranking = lexical.search(tokens(searcher, text), 10)
    assert ranking
    assert_ranking(ranking, searcher.index.size)
    assert all(score > 0 for _, score in ranking)


def test_lexical_finds_a_rare_term(searcher, lexical: LexicalRetriever) -> None:  # type: ignore[no-untyped-def]
    row, _ = lexical.search(tokens(searcher, "竟陵读书会"), 5)[0]
    passage = searcher.index.passage(row)
    assert passage.doc_id == TIANMEN
    assert "竟陵读书会" in passage.text


@pytest.mark.parametrize("doc_id", [TIANMEN, CANGZHOU])
def test_lexical_allowed_mask_restricts(searcher, lexical: LexicalRetriever, doc_id: str) -> None:  # type: ignore[no-untyped-def]
    allowed = doc_mask(searcher, doc_id)
    for text in ["学校安全", "教师培训", "竟陵读书会"]:
        ranking = lexical.search(tokens(searcher, text), 10, allowed)
        assert all(searcher.index.passage(row).doc_id == doc_id for row, _ in ranking)
        assert_ranking(ranking, searcher.index.size)
    # A term only the other document has: nothing at all, rather than a wrong document.
    other = CANGZHOU if doc_id == TIANMEN else TIANMEN
    rare = "竟陵读书会" if other == TIANMEN else "改厕"
    assert lexical.search(tokens(searcher, rare), 10, doc_mask(searcher, other))
    assert lexical.search(tokens(searcher, rare), 10, allowed) == []


def test_lexical_k_larger_than_corpus(searcher, lexical: LexicalRetriever) -> None:  # type: ignore[no-untyped-def]
    ranking = lexical.search(tokens(searcher, "学校 教师 教育"), searcher.index.size * 10)
    assert 0 < len(ranking) <= searcher.index.size
    assert_ranking(ranking, searcher.index.size)


def test_lexical_empty_tokens(searcher, lexical: LexicalRetriever) -> None:  # type: ignore[no-untyped-def]
    assert lexical.search([], 10) == []
    assert lexical.search((), 10, doc_mask(searcher, TIANMEN)) == []
    assert lexical.search(tokens(searcher, "请问有哪些吗"), 10) == []  # only stop-phrases
    assert lexical.search(["学校"], 0) == []


def test_lexical_unknown_term(searcher, lexical: LexicalRetriever) -> None:  # type: ignore[no-untyped-def]
    assert lexical.search(["zzqxv不存在的词"], 10) == []
