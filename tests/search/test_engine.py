"""The search engine over the real seed index: ranking, de-duplication, filters, answers, confidence.

None of the questions here is in the dev set (../shared/eval/dev.jsonl).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from indexer.patterns import label_number
from search.engine import CONFIDENCE_FILE, Confidence, Searcher
from search.types import Filters

FILE_000 = "000_699d69580ee34bfa.txt"
DOC_000_1 = "000_699d69580ee34bfa-1"
TIANMEN = "001_b5818a88827ebf16"
CANGZHOU = "003_9ac541179e48cb99"
ZHUANGLANG = "004_a2a3b87c571a2f00"


def labels(passage) -> tuple[int | None, int | None, int | None]:  # type: ignore[no-untyped-def]
    return label_number(passage.section), label_number(passage.item), label_number(passage.subitem)


# -- ranking -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "doc_id", "wanted_labels", "snippet"),
    [
        ("特岗教师服务期满考核安置", CANGZHOU, (3, 8, 3), "特岗教师服务期满考核安置"),
        ("竟陵读书会", TIANMEN, (1, 4, None), "竟陵读书会"),
        ("school toilet renovation", CANGZHOU, (3, 4, 4), "改厕"),
        ("竟陵讀書會", TIANMEN, (1, 4, None), "竟陵读书会"),  # traditional characters
        ("學生體質健康監測及干預", DOC_000_1, (1, 2, None), "学生体质健康监测及干预"),
    ],
)
def test_search_ranks_the_right_item_first(  # type: ignore[no-untyped-def]
    searcher, query: str, doc_id: str, wanted_labels: tuple, snippet: str
) -> None:
    result = searcher.search(query, k=5)
    assert result.query == query
    assert result.took_ms > 0
    first = result.hits[0].passage
    assert first.doc_id == doc_id
    assert labels(first) == wanted_labels
    assert snippet in first.text
    scores = [h.score for h in result.hits]
    assert scores == sorted(scores, reverse=True)


def test_search_hits_carry_both_retrievers_scores(searcher) -> None:  # type: ignore[no-untyped-def]
    hit = searcher.search("特岗教师服务期满考核安置", k=1).hits[0]
    assert hit.dense_score is not None and 0 < hit.dense_score <= 1
    assert hit.lexical_score is not None and hit.lexical_score > 0
    assert hit.score == pytest.approx(1.0)  # best in both rankings
    terms = [hit.passage.text[s.start : s.end] for s in hit.highlights if s.kind == "term"]
    assert "特岗教师" in "".join(terms)


def test_search_collapses_passages_of_one_item(searcher) -> None:  # type: ignore[no-untyped-def]
    # 000-1 item 10. is long enough to be split; both parts hold this sentence (the overlap).
    rows = searcher.index.file_passages(FILE_000)
    split = Counter(searcher.index.passage(r).unit_key for r in rows)
    key = next(k for k, n in split.items() if k.startswith(f"{DOC_000_1}|") and "|10.|" in k)
    assert split[key] >= 2
    result = searcher.search("减负增效措施 中小学校作业管理办法", k=10)
    keys = [h.passage.unit_key for h in result.hits]
    assert keys.count(key) == 1
    assert result.hits[0].passage.unit_key == key


@pytest.mark.parametrize("query", ["学校安全", "教师培训", "课后服务", "作业管理", "school safety"])
def test_no_two_hits_share_a_unit(searcher, query: str) -> None:  # type: ignore[no-untyped-def]
    keys = [h.passage.unit_key for h in searcher.search(query, k=20).hits]
    assert len(keys) == 20
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("k", [1, 3, 7, 25])
def test_k_respected(searcher, k: int) -> None:  # type: ignore[no-untyped-def]
    assert len(searcher.search("加强教师队伍建设", k=k).hits) == k


def test_default_k_is_the_settings_top_k(searcher) -> None:  # type: ignore[no-untyped-def]
    assert len(searcher.search("加强教师队伍建设").hits) == searcher.settings.top_k


def test_k_larger_than_corpus_returns_each_item_once(searcher) -> None:  # type: ignore[no-untyped-def]
    hits = searcher.search("教育", k=10_000).hits
    units = {searcher.index.passage(r).unit_key for r in range(searcher.index.size)}
    assert 0 < len(hits) <= len(units)
    assert len({h.passage.unit_key for h in hits}) == len(hits)


@pytest.mark.parametrize("query", ["", "   ", "\x00\u200b"])
def test_empty_query_returns_nothing(searcher, query: str) -> None:  # type: ignore[no-untyped-def]
    assert searcher.search(query).hits == []
    result = searcher.ask(query)
    assert result.answer is None
    assert result.hits == []


@pytest.mark.parametrize(
    "query", [r".*[(\\", "<script>alert(1)</script>", "\ud800学校", "学校" * 5_000, "'; DROP TABLE x; --"]
)
def test_hostile_queries_do_not_raise(searcher, query: str) -> None:  # type: ignore[no-untyped-def]
    hits = searcher.search(query, k=5).hits
    assert len(hits) <= 5
    for hit in hits:
        for span in hit.highlights:
            assert 0 <= span.start < span.end <= len(hit.passage.text)
    searcher.ask(query)


# -- filters -------------------------------------------------------------------------


QUERY_EVERYWHERE = "加强学校安全和教师队伍建设"


@pytest.mark.parametrize(
    ("filters", "check"),
    [
        (Filters(doc_ids=frozenset({TIANMEN})), lambda p: p.doc_id == TIANMEN),
        (Filters(doc_ids=frozenset({TIANMEN, ZHUANGLANG})), lambda p: p.doc_id in {TIANMEN, ZHUANGLANG}),
        (Filters(source_files=frozenset({FILE_000})), lambda p: p.source_file == FILE_000),
        (Filters(years=frozenset({2018})), lambda p: p.year == 2018),
        (Filters(years=frozenset({2020})), lambda p: p.year == 2020),
        (Filters(regions=frozenset({"庄浪县"})), lambda p: p.region == "庄浪县"),
        (Filters(years=frozenset({2020}), regions=frozenset({"沧州市"})), lambda p: p.doc_id == CANGZHOU),
    ],
)
def test_filters_restrict_results(searcher, filters: Filters, check) -> None:  # type: ignore[no-untyped-def]
    hits = searcher.search(QUERY_EVERYWHERE, k=20, filters=filters).hits
    assert hits
    assert all(check(h.passage) for h in hits)
    unfiltered = searcher.search(QUERY_EVERYWHERE, k=20).hits
    assert not all(check(h.passage) for h in unfiltered)  # the filter did something


def test_year_filter_spans_every_document_of_that_year(searcher) -> None:  # type: ignore[no-untyped-def]
    hits = searcher.search(QUERY_EVERYWHERE, k=50, filters=Filters(years=frozenset({2020}))).hits
    assert {h.passage.doc_id for h in hits} <= {DOC_000_1, "000_699d69580ee34bfa-2", CANGZHOU}
    assert len({h.passage.doc_id for h in hits}) >= 2


def test_filter_moves_a_query_to_the_allowed_document(searcher) -> None:  # type: ignore[no-untyped-def]
    # 竟陵读书会 is only in the 天门 plan; restricted to 庄浪县 the best is a reading item there.
    hits = searcher.search("竟陵读书会", k=3, filters=Filters(regions=frozenset({"庄浪县"}))).hits
    assert hits and all(h.passage.doc_id == ZHUANGLANG for h in hits)
    answer = searcher.ask("竟陵读书会", filters=Filters(regions=frozenset({"庄浪县"})))
    assert all(h.passage.doc_id == ZHUANGLANG for h in answer.hits)


@pytest.mark.parametrize(
    "filters",
    [
        Filters(doc_ids=frozenset({"no-such-doc"})),
        Filters(source_files=frozenset({"missing.txt"})),
        Filters(years=frozenset({1999})),
        Filters(regions=frozenset({"北京市"})),
        Filters(years=frozenset({2018}), regions=frozenset({"庄浪县"})),  # each matches, not together
    ],
)
def test_filter_matching_nothing_returns_nothing(searcher, filters: Filters) -> None:  # type: ignore[no-untyped-def]
    assert searcher.search(QUERY_EVERYWHERE, filters=filters).hits == []
    result = searcher.ask("冰雪运动特色校要建几所", filters=filters)
    assert result.hits == []
    assert result.answer is None


def test_empty_filters_are_no_filter(searcher) -> None:  # type: ignore[no-untyped-def]
    plain = [h.row for h in searcher.search(QUERY_EVERYWHERE, k=10).hits]
    assert [h.row for h in searcher.search(QUERY_EVERYWHERE, k=10, filters=Filters()).hits] == plain
    empty_sets = Filters(doc_ids=frozenset(), years=frozenset())
    assert [h.row for h in searcher.search(QUERY_EVERYWHERE, k=10, filters=empty_sets).hits] == plain


# -- answers ------------------------------------------------------------------------


def answer_span_text(answer) -> str:  # type: ignore[no-untyped-def]
    spans = [s for s in answer.hit.highlights if s.kind == "answer"]
    assert len(spans) == 1
    return answer.hit.passage.text[spans[0].start : spans[0].end]


@pytest.mark.parametrize(
    ("question", "short", "doc_id", "snippet"),
    [
        ("安全巡检点要建多少个", "2000", "002_ccc843b0910a49b6", "安全巡检点不少于2000个"),
        ("冰雪运动特色校要建几所", "4所", CANGZHOU, "4所冰雪运动特色校"),
        ("奥林匹克示范校要建几所", "7所", CANGZHOU, "7所奥林匹克示范校"),
        ("中小学改厕要改造多少平米厕所", "7.2万平米", CANGZHOU, "7.2万平米"),
    ],
)
def test_ask_answers_a_figure_question_with_citation(  # type: ignore[no-untyped-def]
    searcher, question: str, short: str, doc_id: str, snippet: str
) -> None:
    result = searcher.ask(question)
    answer = result.answer
    assert answer is not None, question
    assert answer.short_answer is not None and short in answer.short_answer
    assert answer.short_answer in answer.text
    assert snippet in answer.text
    assert len(answer.text) <= 150
    assert answer.hit.passage.doc_id == doc_id
    assert answer.hit.passage.citation
    assert answer.hit in result.hits
    assert 0 < answer.confidence <= 1
    # The answer sentence is highlighted where it is in the passage.
    assert answer.hit.passage.text[answer.start : answer.end] == answer.text
    assert answer_span_text(answer) == answer.text
    # Only the answering hit carries an answer span.
    assert sum(1 for h in result.hits for s in h.highlights if s.kind == "answer") == 1


def test_ask_answers_a_non_figure_question_without_short_answer(searcher) -> None:  # type: ignore[no-untyped-def]
    answer = searcher.ask("天门市的竟陵读书会").answer
    assert answer is not None
    assert answer.short_answer is None
    assert "竟陵读书会" in answer.text
    assert answer.hit.passage.doc_id == TIANMEN
    assert answer_span_text(answer) == answer.text


@pytest.mark.parametrize(
    "question",
    [
        "驾驶证到期换证需要什么材料",
        "How do I renew my passport?",
        "医保报销比例是多少",
        "新冠疫苗第三针在哪里打",
        "What is the best recipe for dumplings?",
    ],
)
def test_ask_declines_off_corpus_questions(searcher, question: str) -> None:  # type: ignore[no-untyped-def]
    result = searcher.ask(question)
    assert result.answer is None
    assert result.hits  # the search still shows its best passages


def test_ask_k_limits_hits_but_answers_from_the_top_passages(searcher) -> None:  # type: ignore[no-untyped-def]
    result = searcher.ask("冰雪运动特色校要建几所", k=1)
    assert len(result.hits) == 1
    assert result.answer is not None
    assert len(searcher.ask("冰雪运动特色校要建几所", k=8).hits) == 8


# -- confidence ---------------------------------------------------------------------


def test_confidence_load_reads_the_calibrated_file() -> None:
    raw = json.loads(CONFIDENCE_FILE.read_text(encoding="utf-8"))
    loaded = Confidence.load()
    assert loaded.bias == pytest.approx(raw["bias"])
    assert loaded.margin_weight == pytest.approx(raw["margin_weight"])
    assert loaded.coverage_weight == pytest.approx(raw["coverage_weight"])
    assert loaded.threshold == pytest.approx(raw["threshold"])
    assert loaded != Confidence()  # not the fallback


def test_confidence_load_from_a_file_and_fallback(tmp_path: Path) -> None:
    path = tmp_path / "confidence.json"
    path.write_text(json.dumps({"bias": -1.0, "margin_weight": 10.0, "threshold": 0.7, "fitted_on": "x"}))
    loaded = Confidence.load(path)
    assert (loaded.bias, loaded.margin_weight, loaded.coverage_weight, loaded.threshold) == (-1.0, 10.0, 0.0, 0.7)
    assert loaded(0.1, 0.0, 0.0) == pytest.approx(0.5)
    assert loaded(0.3, 0.0, 0.0) == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert Confidence.load(tmp_path / "missing.json") == Confidence()


def test_confidence_grows_with_margin_and_coverage() -> None:
    confidence = Confidence.load()
    assert confidence(0.05, 0.5, 0.8) > confidence(-0.05, 0.5, 0.8)
    assert confidence(0.0, 1.0, 0.8) >= confidence(0.0, 0.0, 0.8)
    assert 0.0 < confidence(-1.0, 0.0, 0.0) < confidence(1.0, 1.0, 1.0) < 1.0 + 1e-12


def test_searcher_uses_the_calibrated_confidence(searcher) -> None:  # type: ignore[no-untyped-def]
    assert searcher.confidence == Confidence.load()
    assert searcher.settings.answer_threshold is None


@pytest.fixture(scope="module")
def searcher_with_threshold(searcher):  # type: ignore[no-untyped-def]
    def make(threshold: float) -> Searcher:
        settings = replace(searcher.settings, answer_threshold=threshold)
        return Searcher(searcher.index, searcher.embedder, settings, tokenizer=searcher.tokenizer)

    return make


QUESTIONS = ["安全巡检点要建多少个", "竟陵读书会", "驾驶证到期换证需要什么材料", "How do I renew my passport?"]


@pytest.mark.parametrize("question", QUESTIONS)
def test_threshold_zero_always_answers(searcher_with_threshold, question: str) -> None:  # type: ignore[no-untyped-def]
    answer = searcher_with_threshold(0.0).ask(question).answer
    assert answer is not None
    assert answer.hit.passage.text[answer.start : answer.end] == answer.text


@pytest.mark.parametrize("question", QUESTIONS)
def test_threshold_above_one_never_answers(searcher_with_threshold, question: str) -> None:  # type: ignore[no-untyped-def]
    result = searcher_with_threshold(1.01).ask(question)
    assert result.answer is None
    assert result.hits
    assert not any(s.kind == "answer" for h in result.hits for s in h.highlights)


def test_threshold_between_answers_only_the_confident(searcher_with_threshold, searcher) -> None:  # type: ignore[no-untyped-def]
    confident = searcher.ask("安全巡检点要建多少个").answer
    assert confident is not None
    just_above = searcher_with_threshold(min(confident.confidence + 1e-6, 1.0))
    just_below = searcher_with_threshold(confident.confidence - 1e-6)
    assert just_above.ask("安全巡检点要建多少个").answer is None
    assert just_below.ask("安全巡检点要建多少个").answer is not None


def test_background_score(searcher) -> None:  # type: ignore[no-untyped-def]
    assert searcher.index.background.shape[0] >= 3
    on_topic = searcher.embedder.encode_queries(["特岗教师服务期满考核安置"])[0]
    off_topic = searcher.embedder.encode_queries(["驾驶证到期换证需要什么材料"])[0]
    assert searcher.background_score(off_topic) > searcher.background_score(on_topic)
    assert searcher.background_score(None) == 0.0
    top1 = searcher.background_score(off_topic, top=1)
    assert top1 >= searcher.background_score(off_topic, top=3)


def test_unknown_mode_is_refused(searcher) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="unknown mode"):
        Searcher(searcher.index, searcher.embedder, searcher.settings, mode="fancy")


@pytest.mark.parametrize("mode", ["dense", "lexical"])
def test_single_retriever_modes(searcher, mode: str) -> None:  # type: ignore[no-untyped-def]
    single = Searcher(searcher.index, searcher.embedder, searcher.settings, tokenizer=searcher.tokenizer, mode=mode)
    hits = single.search("竟陵读书会", k=3).hits
    assert hits[0].passage.doc_id == TIANMEN
    if mode == "dense":
        assert all(h.lexical_score is None and h.dense_score is not None for h in hits)
    else:
        assert all(h.dense_score is None and h.lexical_score is not None for h in hits)
