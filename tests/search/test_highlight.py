"""Highlight spans: offsets in the original text, longest term first, no overlaps, merging."""

from __future__ import annotations

import itertools

import pytest

from search.highlight import merge_spans, normalized_with_map, term_spans
from search.types import Span


def texts(text: str, spans: list[Span]) -> list[str]:
    return [text[s.start : s.end] for s in spans]


def assert_disjoint(spans: list[Span]) -> None:
    ordered = sorted(spans, key=lambda s: s.start)
    for a, b in itertools.pairwise(ordered):
        assert a.end <= b.start, f"{a} overlaps {b}"


def test_plain_terms_cover_exactly_the_matches() -> None:
    text = "加强教师队伍建设,提高教师待遇。"
    spans = term_spans(text, ["教师", "待遇"])
    assert texts(text, spans) == ["教师", "教师", "待遇"]
    assert [(s.start, s.end) for s in spans] == [(2, 4), (11, 13), (13, 15)]
    assert all(s.kind == "term" for s in spans)


def test_full_width_text_maps_back_to_original_offsets() -> None:
    text = "推进１＋Ｘ证书制度试点，完成ＡＢＣ项目"
    spans = term_spans(text, ["1+x", "abc", "证书"])
    assert texts(text, spans) == ["１＋Ｘ", "证书", "ＡＢＣ"]
    assert spans[0] == Span(2, 5, "term")


def test_circled_number_that_nfkc_changes() -> None:
    text = "重点任务①校舍改造②食堂建设"
    spans = term_spans(text, ["1校舍", "2食堂"])
    assert texts(text, spans) == ["①校舍", "②食堂"]
    assert [(s.start, s.end) for s in spans] == [(4, 7), (9, 12)]


def test_characters_that_expand_under_nfkc() -> None:
    # ㎡ -> "m2" and ⑩ -> "10": two folded characters for one original one.
    text = "新建校舍5000㎡,第⑩项"
    spans = term_spans(text, ["5000m2", "10"])
    assert texts(text, spans) == ["5000㎡", "⑩"]
    # Offsets after an expanding character are still right.
    after = term_spans("共⑩所学校", ["学校"])
    assert texts("共⑩所学校", after) == ["学校"]


def test_match_is_case_insensitive_in_the_text() -> None:
    text = "开展STEAM教育和Steam课程"
    assert texts(text, term_spans(text, ["steam"])) == ["STEAM", "Steam"]


def test_overlapping_terms_longest_wins() -> None:
    text = "天门市教育局工作要点"
    spans = term_spans(text, ["教育", "教育局", "市教"])
    assert texts(text, spans) == ["教育局"]
    assert_disjoint(spans)


def test_no_overlapping_spans_on_many_terms() -> None:
    text = "义务教育优质均衡发展,县域义务教育优质均衡,均衡发展督导评估"
    terms = ["义务教育", "教育优质", "优质均衡", "均衡", "均衡发展", "发展督导", "督导评估", "县域"]
    spans = term_spans(text, terms)
    assert spans
    assert_disjoint(spans)
    covered = set().union(*(range(s.start, s.end) for s in spans))
    assert all(text[i] in "".join(terms) for i in covered)
    assert "义务教育" in texts(text, spans)


def test_single_cjk_characters_are_not_highlighted() -> None:
    text = "学校食堂和学校超市"
    assert term_spans(text, ["校", "食", "堂"]) == []
    assert texts(text, term_spans(text, ["校", "学校"])) == ["学校", "学校"]


def test_single_digits_are_highlighted() -> None:
    text = "每学期至少召开1次会议"
    assert texts(text, term_spans(text, ["1"])) == ["1"]


def test_empty_terms_and_no_match() -> None:
    assert term_spans("学校食堂", []) == []
    assert term_spans("学校食堂", ["", "教师"]) == []
    assert term_spans("", ["学校"]) == []


def test_normalized_with_map_gives_an_origin_per_folded_character() -> None:
    folded, origin = normalized_with_map("Ａ㎡①b")
    assert folded == "am21b"
    assert origin == [0, 1, 1, 2, 3]


def test_merge_spans_joins_touching_spans_of_the_same_kind() -> None:
    merged = merge_spans([Span(4, 6, "term"), Span(0, 2, "term"), Span(2, 4, "term"), Span(8, 9, "term")])
    assert merged == (Span(0, 6, "term"), Span(8, 9, "term"))


def test_merge_spans_joins_overlapping_spans() -> None:
    assert merge_spans([Span(0, 5, "term"), Span(3, 8, "term"), Span(4, 6, "term")]) == (Span(0, 8, "term"),)


def test_merge_spans_keeps_kinds_apart() -> None:
    merged = merge_spans([Span(0, 20, "answer"), Span(2, 4, "term"), Span(4, 6, "term")])
    assert merged == (Span(0, 20, "answer"), Span(2, 6, "term"))


def test_merge_spans_leaves_gaps() -> None:
    assert merge_spans([Span(0, 2, "term"), Span(3, 5, "term")]) == (Span(0, 2, "term"), Span(3, 5, "term"))
    assert merge_spans([]) == ()


@pytest.mark.parametrize("query", ["特岗教师服务期满考核安置", "ＳＴＥＡＭ教育", "竟陵讀書會"])
def test_search_highlights_are_query_terms_in_the_shown_text(searcher, query: str) -> None:  # type: ignore[no-untyped-def]
    from search.query import parse_query

    parsed = parse_query(query, searcher.tokenizer)
    for hit in searcher.search(query, k=5).hits:
        spans = [s for s in hit.highlights if s.kind == "term"]
        assert_disjoint(spans)
        for span in spans:
            shown, _ = normalized_with_map(hit.passage.text[span.start : span.end])
            assert 0 <= span.start < span.end <= len(hit.passage.text)
            # A merged span is a run of query terms.
            assert any(token in shown for token in parsed.tokens)
